//! The monitor's alert files (docs/formats.md, "Alert book", "Alert requests",
//! "Notifications"); [`crate::alert`] is the inbox file other processes raise.
//!
//! - `alerts/state.json` ([`Book`]): every episode (one per firing of one
//!   fingerprint, with its UUID), the silences, and the recently resolved
//!   episodes. Written by the monitor only, whole, durably; read by `ghostctl`.
//! - `alerts/requests/<name>.json` ([`Request`]): a silence or an
//!   acknowledgement from `ghostctl`, taken in and moved to
//!   `alerts/requests/.done/` by the monitor.
//! - `alerts/outbox/<notification id>.json` ([`OutboxItem`]): a notification
//!   and its delivery state per channel, until every channel has it.
//!
//! Times inside the book are Unix milliseconds, so the monitor's state machine
//! does arithmetic on them without parsing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::alert::Severity;
use crate::error::Result;
use crate::layout::Layout;

/// The whole of `alerts/state.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Book {
    /// Episodes by fingerprint: firing ones, and resolved ones until their
    /// resolved message is out and `dedup_window` has passed.
    #[serde(default)]
    pub episodes: BTreeMap<String, Episode>,
    #[serde(default)]
    pub silences: Vec<Silence>,
    /// Episodes over and notified, newest last (at most [`RESOLVED_KEPT`]).
    #[serde(default)]
    pub resolved: Vec<Episode>,
    /// Notifications created so far (`ghostctl alerts` shows it).
    #[serde(default)]
    pub notifications: u64,
    /// Ids of the latest notifications this book accounts for (at most
    /// [`COMMITTED_KEPT`]): an outbox file whose id is not here was written
    /// by a monitor that stopped before recording it, and is not sent (the
    /// episodes it was about are still owed a message, and get a new one).
    #[serde(default)]
    pub committed: Vec<String>,
    /// Per target, the sorted names in `failed/` as last taken in: a name in
    /// `failed/` that is not here failed since, even while no monitor ran,
    /// and is owed its `patch_failed` notification. Absent until a monitor
    /// first ran on the root (that one records what it finds and tells
    /// nobody about failures older than itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_seen: Option<BTreeMap<String, Vec<String>>>,
}

/// How many notification ids [`Book::committed`] keeps.
pub const COMMITTED_KEPT: usize = 1000;

/// How many resolved episodes the book keeps.
pub const RESOLVED_KEPT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeStatus {
    Firing,
    Resolved,
}

/// Who raises and clears an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A monitor rule: clears when the rule no longer holds.
    Rule,
    /// An alert file in `alerts/inbox/`: clears with a `resolved` one (or
    /// when a monitor rule for the same fingerprint saw it and no longer does).
    Inbox,
}

/// What is waiting to go out about an episode (after `group_wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pending {
    Firing,
    Resolved,
}

/// One firing of one fingerprint, from first seen to resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    pub fingerprint: String,
    /// Carried by every notification, log line and channel about this episode.
    pub uuid: String,
    /// The rule (the fingerprint's part before the first `:`).
    pub rule: String,
    pub component: String,
    /// What it is about (a queue name, a path, …), may be empty.
    pub subject: String,
    pub severity: Severity,
    pub title: String,
    pub message: String,
    pub status: EpisodeStatus,
    pub origin: Origin,
    /// A monitor rule has seen this fingerprint hold during the episode.
    #[serde(default)]
    pub seen_by_rule: bool,
    pub started_ms: u64,
    pub last_seen_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_ms: Option<u64>,
    /// What waits for the group to go out, and since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_since_ms: Option<u64>,
    /// A firing message about it went out (so a resolved one is owed).
    #[serde(default)]
    pub firing_sent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_notified_ms: Option<u64>,
    #[serde(default)]
    pub reminders: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_ms: Option<u64>,
}

/// A silence: notifications about matching episodes are held back until `until_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    /// A fingerprint, or a pattern where `*` matches any run of characters
    /// (`patch_stuck:*`, `heartbeat:executor`).
    pub matcher: String,
    pub until_ms: u64,
    pub reason: String,
    pub by: String,
    pub created_ms: u64,
}

impl Silence {
    pub fn matches(&self, fingerprint: &str) -> bool {
        glob_match(&self.matcher, fingerprint)
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// A request from `ghostctl` to the monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Request {
    Silence {
        matcher: String,
        /// How long, as a human duration (`2h`).
        #[serde(rename = "for")]
        duration: String,
        reason: String,
        by: String,
        at: String,
    },
    /// Remove silences by id or by exact matcher.
    Unsilence {
        matcher: String,
        by: String,
        at: String,
    },
    Ack {
        /// A fingerprint, a pattern, or an episode UUID.
        matcher: String,
        by: String,
        at: String,
    },
}

/// Write a request for the monitor durably; returns its path.
pub fn write_request(layout: &Layout, req: &Request) -> Result<PathBuf> {
    let dir = layout.alerts_requests();
    crate::fs::ensure_dir(&dir)?;
    let p = dir.join(format!("{}.json", crate::queue::new_name()));
    crate::fs::write_json(&p, req)?;
    Ok(p)
}

/// Kinds of notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    Firing,
    Reminder,
    /// The severity of a firing episode rose.
    Escalated,
    Resolved,
}

/// One episode as a notification reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifiedAlert {
    pub fingerprint: String,
    pub uuid: String,
    pub rule: String,
    pub component: String,
    pub subject: String,
    pub severity: Severity,
    pub title: String,
    pub message: String,
    pub started_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_ms: Option<u64>,
}

/// One message to a person, about one or more episodes of one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// A UUID of its own (the outbox file's name).
    pub id: String,
    pub kind: NotificationKind,
    pub rule: String,
    /// The highest severity among `alerts`.
    pub severity: Severity,
    pub created_ms: u64,
    pub alerts: Vec<NotifiedAlert>,
}

/// Delivery state of one notification on one channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelState {
    pub delivered: bool,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// A line about it went to `alerts/LOCAL_ALERTS` already.
    #[serde(default)]
    pub local_written: bool,
}

/// The whole of one `alerts/outbox/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    pub notification: Notification,
    /// Per channel name (`slack`, `webhook:0`, `alertmanager`).
    pub channels: BTreeMap<String, ChannelState>,
}

/// Read `alerts/state.json` (an empty book when there is none yet).
pub fn read_book(layout: &Layout) -> Result<Book> {
    let p = layout.alerts_state();
    if !p.exists() {
        return Ok(Book::default());
    }
    crate::fs::read_json(&p)
}

/// Replace `alerts/state.json` durably.
pub fn write_book(layout: &Layout, book: &Book) -> Result<()> {
    crate::fs::ensure_dir(&layout.alerts())?;
    crate::fs::write_json(&layout.alerts_state(), book)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("a:b", "a:b"));
        assert!(!glob_match("a:b", "a:bc"));
        assert!(glob_match("patch_stuck:*", "patch_stuck:default:x"));
        assert!(glob_match("*:executor", "heartbeat:executor"));
        assert!(glob_match("h*t:*x*", "heartbeat:executor"));
        assert!(!glob_match("patch_stuck:*", "patch_failed:default:x"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn book_and_requests_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        assert_eq!(read_book(&l).unwrap(), Book::default());
        let mut b = Book::default();
        b.silences.push(Silence {
            id: "s1".into(),
            matcher: "patch_stuck:*".into(),
            until_ms: 5,
            reason: "r".into(),
            by: "op".into(),
            created_ms: 1,
        });
        write_book(&l, &b).unwrap();
        assert_eq!(read_book(&l).unwrap(), b);
        let r = Request::Silence {
            matcher: "x".into(),
            duration: "1h".into(),
            reason: "why".into(),
            by: "op".into(),
            at: "t".into(),
        };
        let p = write_request(&l, &r).unwrap();
        let v: serde_json::Value = crate::fs::read_json(&p).unwrap();
        assert_eq!(v["action"], "silence");
        assert_eq!(v["for"], "1h");
    }
}
