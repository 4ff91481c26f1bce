//! Correlation: the pure state machine that turns rule results and inbox
//! alerts into notifications, at most one per problem (docs/monitor.md,
//! "From a problem to a message").
//!
//! [`next`]`(book, event, now)` changes the [`Book`] and returns the
//! notifications to send; it does no I/O, reads no clock and draws no random
//! numbers (UUIDs come from the caller's `ids`), so every case is a unit test.
//!
//! Invariants:
//! - one fingerprint has at most one episode in the book, and an episode keeps
//!   its UUID from first firing to its resolved message (a fire again within
//!   `dedup_window` of its last message reopens it);
//! - only [`Event::Tick`] produces notifications: new episodes wait
//!   `group_wait` so a burst of one rule goes out as one message; an episode
//!   that fires and clears within that wait sends nothing;
//! - a resolved message goes out only for an episode whose firing message did;
//! - silenced episodes send nothing until the silence ends; acknowledged ones
//!   get no reminders; info episodes get neither reminders nor resolved messages.

use std::collections::BTreeMap;

use ghost_core::alert::Severity;
use ghost_core::alerting::{
    Book, Episode, EpisodeStatus, Notification, NotificationKind, NotifiedAlert, Origin, Pending,
    Silence, COMMITTED_KEPT, RESOLVED_KEPT,
};

/// The timings of `[monitor]`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub dedup_window_ms: u64,
    pub repeat_interval_ms: u64,
    pub group_wait_ms: u64,
}

impl Params {
    pub fn from_config(m: &ghost_core::config::MonitorConfig) -> Params {
        Params {
            dedup_window_ms: m.dedup_window.as_millis() as u64,
            repeat_interval_ms: m.repeat_interval.as_millis() as u64,
            group_wait_ms: m.group_wait.as_millis() as u64,
        }
    }
}

/// Something that holds now: a rule's finding or an inbox alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub fingerprint: String,
    pub component: String,
    pub subject: String,
    pub severity: Severity,
    pub title: String,
    pub message: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The fingerprint holds.
    Fire(Signal),
    /// The fingerprint no longer holds, as far as `by` can tell.
    Clear {
        fingerprint: String,
        by: Origin,
    },
    Silence(Silence),
    /// Remove silences whose id or matcher is this.
    Unsilence {
        matcher: String,
    },
    /// Acknowledge firing episodes matching a fingerprint pattern or a UUID.
    Ack {
        matcher: String,
        by: String,
    },
    /// Time passed: send what is due, expire what is over.
    Tick,
}

/// The rule of a fingerprint: its part before the first `:`.
pub fn rule_of(fingerprint: &str) -> &str {
    fingerprint.split(':').next().unwrap_or(fingerprint)
}

fn severity_rank(s: Severity) -> u8 {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

fn silenced(silences: &[Silence], fp: &str, now: u64) -> bool {
    silences.iter().any(|s| s.until_ms > now && s.matches(fp))
}

/// Apply `event` at time `now` (Unix ms); the notifications to send.
pub fn next(
    book: &mut Book,
    event: Event,
    now: u64,
    p: &Params,
    ids: &mut dyn FnMut() -> String,
) -> Vec<Notification> {
    match event {
        Event::Fire(sig) => {
            fire(book, sig, now, p, ids);
            Vec::new()
        }
        Event::Clear { fingerprint, by } => {
            clear(book, &fingerprint, by, now);
            Vec::new()
        }
        Event::Silence(s) => {
            book.silences.retain(|x| x.id != s.id);
            book.silences.push(s);
            Vec::new()
        }
        Event::Unsilence { matcher } => {
            book.silences
                .retain(|s| s.id != matcher && s.matcher != matcher);
            Vec::new()
        }
        Event::Ack { matcher, by } => {
            for e in book.episodes.values_mut() {
                if e.status == EpisodeStatus::Firing
                    && (e.uuid == matcher
                        || ghost_core::alerting::glob_match(&matcher, &e.fingerprint))
                {
                    e.acked_by = Some(by.clone());
                    e.acked_ms = Some(now);
                }
            }
            Vec::new()
        }
        Event::Tick => tick(book, now, p, ids),
    }
}

fn fire(book: &mut Book, sig: Signal, now: u64, p: &Params, ids: &mut dyn FnMut() -> String) {
    if let Some(e) = book.episodes.get_mut(&sig.fingerprint) {
        if sig.origin == Origin::Rule {
            e.seen_by_rule = true;
        }
        e.last_seen_ms = now;
        match e.status {
            EpisodeStatus::Firing => {
                if severity_rank(sig.severity) > severity_rank(e.severity) {
                    e.severity = sig.severity;
                    e.title = sig.title;
                    e.message = sig.message;
                    if e.firing_sent && e.pending.is_none() {
                        e.pending = Some(Pending::Firing);
                        e.pending_since_ms = Some(now);
                    }
                } else if severity_rank(sig.severity) == severity_rank(e.severity) {
                    e.title = sig.title;
                    e.message = sig.message;
                }
                return;
            }
            EpisodeStatus::Resolved => {
                // Within the dedup window of its last message: the same episode again.
                let since = e.last_notified_ms.or(e.resolved_ms).unwrap_or(e.started_ms);
                if now < since.saturating_add(p.dedup_window_ms) {
                    e.status = EpisodeStatus::Firing;
                    e.resolved_ms = None;
                    e.severity = sig.severity;
                    e.title = sig.title;
                    e.message = sig.message;
                    if e.pending == Some(Pending::Resolved) {
                        // The resolved message had not gone out: nothing changed for a person.
                        e.pending = None;
                        e.pending_since_ms = None;
                    } else if !e.firing_sent {
                        e.pending = Some(Pending::Firing);
                        e.pending_since_ms = Some(now);
                    }
                    return;
                }
                let old = book.episodes.remove(&sig.fingerprint).expect("present");
                retire(book, old);
            }
        }
    }
    let rule = rule_of(&sig.fingerprint).to_string();
    let e = Episode {
        uuid: ids(),
        rule,
        component: sig.component,
        subject: sig.subject,
        severity: sig.severity,
        title: sig.title,
        message: sig.message,
        status: EpisodeStatus::Firing,
        origin: sig.origin,
        seen_by_rule: sig.origin == Origin::Rule,
        started_ms: now,
        last_seen_ms: now,
        resolved_ms: None,
        pending: Some(Pending::Firing),
        pending_since_ms: Some(now),
        firing_sent: false,
        last_notified_ms: None,
        reminders: 0,
        acked_by: None,
        acked_ms: None,
        fingerprint: sig.fingerprint.clone(),
    };
    book.episodes.insert(sig.fingerprint, e);
}

fn clear(book: &mut Book, fp: &str, by: Origin, now: u64) {
    let Some(e) = book.episodes.get_mut(fp) else {
        return;
    };
    if e.status != EpisodeStatus::Firing {
        return;
    }
    // An inbox alert raised before the rule could see it (the executor
    // raises `patch_stuck` before the move) is not cleared by the rule's
    // silence until the rule has seen it hold.
    if by == Origin::Rule && e.origin == Origin::Inbox && !e.seen_by_rule {
        return;
    }
    e.status = EpisodeStatus::Resolved;
    e.resolved_ms = Some(now);
    if e.firing_sent && e.severity != Severity::Info {
        e.pending = Some(Pending::Resolved);
        e.pending_since_ms = Some(now);
    } else {
        // Never told anyone (still in its group wait, or silenced), or info:
        // there is nothing to take back.
        let old = book.episodes.remove(fp).expect("present");
        retire(book, old);
    }
}

fn retire(book: &mut Book, mut e: Episode) {
    e.pending = None;
    e.pending_since_ms = None;
    book.resolved.push(e);
    if book.resolved.len() > RESOLVED_KEPT {
        let extra = book.resolved.len() - RESOLVED_KEPT;
        book.resolved.drain(..extra);
    }
}

fn alert_of(e: &Episode) -> NotifiedAlert {
    NotifiedAlert {
        fingerprint: e.fingerprint.clone(),
        uuid: e.uuid.clone(),
        rule: e.rule.clone(),
        component: e.component.clone(),
        subject: e.subject.clone(),
        severity: e.severity,
        title: e.title.clone(),
        message: e.message.clone(),
        started_ms: e.started_ms,
        resolved_ms: e.resolved_ms,
    }
}

fn kind_rank(k: NotificationKind) -> u8 {
    match k {
        NotificationKind::Firing => 0,
        NotificationKind::Escalated => 1,
        NotificationKind::Reminder => 2,
        NotificationKind::Resolved => 3,
    }
}

fn tick(
    book: &mut Book,
    now: u64,
    p: &Params,
    ids: &mut dyn FnMut() -> String,
) -> Vec<Notification> {
    book.silences.retain(|s| s.until_ms > now);

    // What each episode owes, if it may go out now (groups decide when).
    // (rule, kind) → (oldest pending since, fingerprints)
    let mut groups: BTreeMap<(String, u8), (u64, Vec<String>)> = BTreeMap::new();
    let mut drop_silent_resolved = Vec::new();
    for e in book.episodes.values() {
        let is_silenced = silenced(&book.silences, &e.fingerprint, now);
        let kind = match (e.pending, e.status) {
            (Some(Pending::Firing), EpisodeStatus::Firing) => {
                if is_silenced {
                    continue;
                }
                if !e.firing_sent {
                    // A fire again after a resolved message waits out the dedup window.
                    if let Some(t) = e.last_notified_ms {
                        if now < t.saturating_add(p.dedup_window_ms) {
                            continue;
                        }
                    }
                    NotificationKind::Firing
                } else {
                    NotificationKind::Escalated
                }
            }
            (Some(Pending::Resolved), EpisodeStatus::Resolved) => {
                if is_silenced {
                    drop_silent_resolved.push(e.fingerprint.clone());
                    continue;
                }
                NotificationKind::Resolved
            }
            (None, EpisodeStatus::Firing)
                if e.firing_sent
                    && e.acked_by.is_none()
                    && e.severity != Severity::Info
                    && !is_silenced
                    && p.repeat_interval_ms > 0
                    && now
                        >= e.last_notified_ms
                            .unwrap_or(e.started_ms)
                            .saturating_add(p.repeat_interval_ms) =>
            {
                NotificationKind::Reminder
            }
            _ => continue,
        };
        let since = match kind {
            NotificationKind::Reminder => now.saturating_sub(p.group_wait_ms),
            NotificationKind::Escalated => now.saturating_sub(p.group_wait_ms),
            _ => e.pending_since_ms.unwrap_or(now),
        };
        let g = groups
            .entry((e.rule.clone(), kind_rank(kind)))
            .or_insert((u64::MAX, Vec::new()));
        g.0 = g.0.min(since);
        g.1.push(e.fingerprint.clone());
    }
    for fp in drop_silent_resolved {
        if let Some(e) = book.episodes.remove(&fp) {
            retire(book, e);
        }
    }

    let mut out = Vec::new();
    for ((rule, rank), (since, fps)) in groups {
        if now < since.saturating_add(p.group_wait_ms) {
            continue;
        }
        let kind = [
            NotificationKind::Firing,
            NotificationKind::Escalated,
            NotificationKind::Reminder,
            NotificationKind::Resolved,
        ][rank as usize];
        let mut alerts = Vec::new();
        for fp in &fps {
            let e = book.episodes.get_mut(fp).expect("grouped from the book");
            alerts.push(alert_of(e));
            e.pending = None;
            e.pending_since_ms = None;
            e.last_notified_ms = Some(now);
            match kind {
                NotificationKind::Firing | NotificationKind::Escalated => e.firing_sent = true,
                NotificationKind::Reminder => e.reminders += 1,
                NotificationKind::Resolved => e.firing_sent = false,
            }
        }
        let severity = alerts
            .iter()
            .map(|a| a.severity)
            .max_by_key(|s| severity_rank(*s))
            .unwrap_or(Severity::Info);
        book.notifications += 1;
        let id = ids();
        book.committed.push(id.clone());
        if book.committed.len() > COMMITTED_KEPT {
            let extra = book.committed.len() - COMMITTED_KEPT;
            book.committed.drain(..extra);
        }
        out.push(Notification {
            id,
            kind,
            rule,
            severity,
            created_ms: now,
            alerts,
        });
    }

    // Resolved and told: keep for the dedup window (a fire again reopens
    // it), then into the history. Info is told once and is over.
    let done: Vec<String> = book
        .episodes
        .values()
        .filter(|e| {
            (e.status == EpisodeStatus::Resolved
                && e.pending.is_none()
                && now
                    >= e.last_notified_ms
                        .unwrap_or(0)
                        .saturating_add(p.dedup_window_ms))
                || (e.severity == Severity::Info && e.firing_sent && e.pending.is_none())
        })
        .map(|e| e.fingerprint.clone())
        .collect();
    for fp in done {
        let e = book.episodes.remove(&fp).expect("present");
        retire(book, e);
    }
    out
}

#[cfg(test)]
mod tests;
