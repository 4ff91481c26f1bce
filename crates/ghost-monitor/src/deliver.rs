//! Delivery: the outbox (`alerts/outbox/<id>.json`, one [`OutboxItem`] per
//! notification) and the channels — Slack, JSON webhooks, Alertmanager
//! (docs/monitor.md, "Channels").
//!
//! Invariants:
//! - a notification is in the outbox (durably) before the alert book records
//!   it as sent, and an outbox file the book does not account for is set
//!   aside unsent (see [`ghost_core::alerting::Book::committed`]); so a
//!   restart neither loses nor repeats a message;
//! - each channel is tried on its own schedule (timeout, exponential backoff
//!   with jitter, `429 Retry-After` honoured): a failing channel never holds
//!   up or repeats another;
//! - every notification and every attempt's result is a line in
//!   `alerts/alerts.jsonl`; the first failure of a remote channel adds a line
//!   to `alerts/LOCAL_ALERTS` (and to `alerts/CRITICAL_ALERT` when critical);
//! - the Slack URL is a secret: it is never logged or written anywhere.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use tracing::{info, warn};

use ghost_core::alert::Severity;
use ghost_core::alerting::{ChannelState, Notification, NotificationKind, OutboxItem};
use ghost_core::config::{AlertsConfig, ConfigSecret};
use ghost_core::Layout;

use crate::MonitorError;

/// One remote destination.
#[derive(Debug, Clone)]
pub enum Channel {
    Slack(ConfigSecret),
    Webhook(String),
    Alertmanager(String),
}

impl Channel {
    /// The name the outbox and `alerts.jsonl` use (never the Slack URL).
    pub fn name(&self, index: usize) -> String {
        match self {
            Channel::Slack(_) => "slack".into(),
            Channel::Webhook(_) => format!("webhook:{index}"),
            Channel::Alertmanager(_) => "alertmanager".into(),
        }
    }
}

/// The channels configured: `[alerts]` (the Slack URL also from
/// `GHOST_SLACK_WEBHOOK_URL`).
pub fn channels(a: &AlertsConfig) -> BTreeMap<String, Channel> {
    let mut out = BTreeMap::new();
    let slack = a.slack_webhook_url.clone().or_else(|| {
        std::env::var("GHOST_SLACK_WEBHOOK_URL")
            .ok()
            .filter(|s| !s.is_empty())
            .map(ConfigSecret::new)
    });
    if let Some(s) = slack {
        out.insert("slack".into(), Channel::Slack(s));
    }
    for (i, w) in a.webhooks.iter().enumerate() {
        let c = Channel::Webhook(w.clone());
        out.insert(c.name(i), c);
    }
    if let Some(u) = &a.alertmanager_url {
        out.insert("alertmanager".into(), Channel::Alertmanager(u.clone()));
    }
    out
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Delivered,
    /// Failed; retry no sooner than `retry_after` when the server said so.
    Failed {
        error: String,
        retry_after: Option<Duration>,
    },
}

/// Does the HTTP work; `Sender::Http` in production, anything in tests.
pub struct Sender {
    client: reqwest::blocking::Client,
    /// For the Alertmanager's `endsAt` of a firing alert.
    pub firing_ttl: Duration,
}

impl Sender {
    pub fn new(a: &AlertsConfig, firing_ttl: Duration) -> Result<Sender, MonitorError> {
        let client = reqwest::blocking::Client::builder()
            .timeout(a.timeout)
            .connect_timeout(a.timeout)
            .build()
            .map_err(|e| MonitorError::Http(e.to_string()))?;
        Ok(Sender { client, firing_ttl })
    }

    /// One attempt to deliver `n` on `ch`.
    pub fn send(&self, ch: &Channel, n: &Notification) -> Attempt {
        let (url, body) = match ch {
            Channel::Slack(u) => (u.expose().to_string(), slack_payload(n)),
            Channel::Webhook(u) => (u.clone(), webhook_payload(n)),
            Channel::Alertmanager(u) => (
                format!("{}/api/v2/alerts", u.trim_end_matches('/')),
                alertmanager_payload(n, self.firing_ttl),
            ),
        };
        let res = self
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).expect("JSON values serialise"))
            .send();
        match res {
            Ok(r) if r.status().is_success() => Attempt::Delivered,
            Ok(r) => {
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let status = r.status();
                let text: String = r.text().unwrap_or_default().chars().take(200).collect();
                Attempt::Failed {
                    error: format!("HTTP {status}: {}", text.trim()),
                    retry_after,
                }
            }
            // reqwest's error text includes the URL: keep it out (the Slack
            // URL is a secret), name only what went wrong.
            Err(e) => Attempt::Failed {
                error: describe(&e),
                retry_after: None,
            },
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_request() {
        "request failed"
    } else {
        "failed"
    };
    let mut src = std::error::Error::source(e);
    let mut root = None;
    while let Some(s) = src {
        root = Some(s.to_string());
        src = s.source();
    }
    match root {
        Some(r) => format!("{what}: {r}"),
        None => what.to_string(),
    }
}

fn kind_word(k: NotificationKind) -> &'static str {
    match k {
        NotificationKind::Firing => "FIRING",
        NotificationKind::Reminder => "STILL FIRING",
        NotificationKind::Escalated => "ESCALATED",
        NotificationKind::Resolved => "RESOLVED",
    }
}

fn sev_word(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// The readable text of a notification (Slack's `text`, LOCAL_ALERTS lines).
pub fn text(n: &Notification) -> String {
    let head = format!(
        "[{}] {} {} — {}",
        kind_word(n.kind),
        sev_word(n.severity).to_uppercase(),
        n.rule,
        n.alerts.first().map(|a| a.title.as_str()).unwrap_or("")
    );
    let more = if n.alerts.len() > 1 {
        format!(" (+{} more)", n.alerts.len() - 1)
    } else {
        String::new()
    };
    format!("{head}{more}")
}

/// Slack: `text` for notifications and old clients, `blocks` for the message.
pub fn slack_payload(n: &Notification) -> serde_json::Value {
    let mut lines = Vec::new();
    for a in n.alerts.iter().take(20) {
        lines.push(format!(
            "• *{}* — {}\n   `{}` episode `{}`",
            a.title, a.message, a.fingerprint, a.uuid
        ));
    }
    if n.alerts.len() > 20 {
        lines.push(format!(
            "… and {} more (`ghostctl alerts` lists them all)",
            n.alerts.len() - 20
        ));
    }
    let uuids: Vec<&str> = n.alerts.iter().map(|a| a.uuid.as_str()).collect();
    json!({
        "text": format!("{}\nepisode {}", text(n), uuids.first().copied().unwrap_or("")),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": text(n).chars().take(150).collect::<String>()}},
            {"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n").chars().take(2900).collect::<String>()}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                "ghostbridge monitor · notification `{}` · {} alert(s) · silence with `ghostctl silence {}:* --for 2h --reason …`",
                n.id, n.alerts.len(), n.rule)}]}
        ]
    })
}

/// A generic webhook: the notification as it is, with a format version.
pub fn webhook_payload(n: &Notification) -> serde_json::Value {
    let mut v = serde_json::to_value(n).expect("a notification serialises");
    v["version"] = json!(1);
    v["text"] = json!(text(n));
    v
}

fn ms_rfc3339(ms: u64) -> String {
    ghost_core::time::rfc3339(std::time::UNIX_EPOCH + Duration::from_millis(ms))
}

/// Alertmanager's `POST /api/v2/alerts` body: one alert per episode, labels
/// carrying the fingerprint, annotations the episode UUID. A firing alert
/// ends `firing_ttl` from now unless re-sent (a reminder) or resolved.
pub fn alertmanager_payload(n: &Notification, firing_ttl: Duration) -> serde_json::Value {
    let alerts: Vec<serde_json::Value> = n
        .alerts
        .iter()
        .map(|a| {
            let ends = match (n.kind, a.resolved_ms) {
                (NotificationKind::Resolved, Some(r)) => ms_rfc3339(r),
                (NotificationKind::Resolved, None) => ms_rfc3339(n.created_ms),
                _ => ms_rfc3339(n.created_ms + firing_ttl.as_millis() as u64),
            };
            json!({
                "labels": {
                    "alertname": a.rule,
                    "fingerprint": a.fingerprint,
                    "severity": sev_word(a.severity),
                    "component": a.component,
                    "subject": a.subject,
                    "system": "ghostbridge",
                },
                "annotations": {
                    "uuid": a.uuid,
                    "summary": a.title,
                    "description": a.message,
                },
                "startsAt": ms_rfc3339(a.started_ms),
                "endsAt": ends,
            })
        })
        .collect();
    serde_json::Value::Array(alerts)
}

/// The outbox directory's items, oldest first.
pub fn outbox(layout: &Layout) -> Vec<PathBuf> {
    json_files(&layout.alerts_outbox())
}

/// The `.json` files directly in `dir` (hidden ones left out), sorted by
/// name: oldest first for the time-ordered names used here. A missing or
/// unreadable directory has none.
pub(crate) fn json_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.ends_with(".json") && !f.starts_with('.'))
        })
        .collect();
    v.sort();
    v
}

fn outbox_path(layout: &Layout, id: &str) -> PathBuf {
    layout.alerts_outbox().join(format!("{id}.json"))
}

/// One line of `alerts/alerts.jsonl`.
fn record(layout: &Layout, v: serde_json::Value) {
    if let Err(e) = ghost_core::fs::append_line(&layout.alerts_log(), &v.to_string()) {
        warn!(event = "ALERT_LOG_FAILED", error = %e, "cannot append to alerts/alerts.jsonl");
    }
}

/// Put `n` in the outbox for every channel, durably, and record it.
pub fn enqueue(
    layout: &Layout,
    n: &Notification,
    channels: &BTreeMap<String, Channel>,
) -> Result<(), MonitorError> {
    ghost_core::fs::ensure_dir(&layout.alerts_outbox())?;
    let item = OutboxItem {
        notification: n.clone(),
        channels: channels
            .keys()
            .map(|k| (k.clone(), ChannelState::default()))
            .collect(),
    };
    ghost_core::fs::write_json(&outbox_path(layout, &n.id), &item)?;
    Ok(())
}

/// Record a notification that the book now accounts for (after the book is written).
pub fn announce(layout: &Layout, n: &Notification, channels: &BTreeMap<String, Channel>) {
    let uuids: Vec<&str> = n.alerts.iter().map(|a| a.uuid.as_str()).collect();
    info!(
        event = "ALERT_NOTIFICATION",
        notification = %n.id,
        kind = kind_word(n.kind),
        rule = %n.rule,
        severity = sev_word(n.severity),
        alerts = n.alerts.len(),
        uuids = %uuids.join(","),
        "{}", text(n)
    );
    record(
        layout,
        json!({"at": ghost_core::time::now_rfc3339(), "type": "notification",
               "channels": channels.keys().collect::<Vec<_>>(), "notification": n}),
    );
    if channels.is_empty() {
        // No remote channel: the local file is where a person looks.
        local_line(layout, n, "no remote channel configured");
    }
}

fn local_line(layout: &Layout, n: &Notification, why: &str) {
    let uuids: Vec<&str> = n.alerts.iter().map(|a| a.uuid.as_str()).collect();
    let line = format!(
        "{} {} {} [{}] ({why})",
        ghost_core::time::now_rfc3339(),
        text(n),
        n.id,
        uuids.join(",")
    );
    if let Err(e) = ghost_core::fs::append_line(&layout.local_alerts(), &line) {
        warn!(event = "ALERT_LOG_FAILED", error = %e, "cannot append to alerts/LOCAL_ALERTS");
    }
    if n.severity == Severity::Critical && n.kind != NotificationKind::Resolved {
        if let Err(e) = ghost_core::fs::append_line(&layout.critical_alert(), &line) {
            warn!(event = "ALERT_LOG_FAILED", error = %e, "cannot append to alerts/CRITICAL_ALERT");
        }
    }
}

/// Set aside outbox items the book does not account for (see the module
/// comment); returns how many.
pub fn set_aside_orphans(layout: &Layout, committed: &[String]) -> usize {
    let mut n = 0;
    for p in outbox(layout) {
        let id = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        if committed.contains(&id) {
            continue;
        }
        let dir = layout.alerts_outbox().join(".unsent");
        if ghost_core::fs::ensure_dir(&dir).is_ok()
            && ghost_core::fs::durable_move(&p, &dir.join(p.file_name().expect("a file"))).is_ok()
        {
            warn!(event = "ALERT_OUTBOX_ORPHAN", notification = %id, "an outbox item the alert book does not record was set aside, unsent (the monitor stopped between the two writes)");
            n += 1;
        }
    }
    n
}

/// The backoff before retry `attempts` (1 = after the first failure):
/// `base × 2^(attempts-1)`, at most `max`, plus up to a quarter more at random.
pub fn backoff(base: Duration, max: Duration, attempts: u32, jitter01: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let d = exp.min(max);
    d + d.mul_f64(0.25 * jitter01.clamp(0.0, 1.0))
}

fn jitter() -> f64 {
    // The random bits of a UUID v7 are all the randomness needed here.
    let r = uuid::Uuid::now_v7().as_u128() as u64;
    (r % 10_000) as f64 / 10_000.0
}

/// Try every channel of every outbox item that is due; returns the earliest
/// time (Unix ms) something is due again, if anything is left.
pub fn deliver_due(
    layout: &Layout,
    channels: &BTreeMap<String, Channel>,
    sender: &Sender,
    a: &AlertsConfig,
    now_ms: &dyn Fn() -> u64,
) -> Option<u64> {
    let mut next: Option<u64> = None;
    for path in outbox(layout) {
        let Ok(mut item) = ghost_core::fs::read_json::<OutboxItem>(&path) else {
            warn!(event = "ALERT_OUTBOX_UNREADABLE", path = %path.display(), "an outbox file does not read; left in place");
            continue;
        };
        let mut changed = false;
        for (name, st) in item.channels.iter_mut() {
            if st.delivered {
                continue;
            }
            let now = now_ms();
            if st.next_attempt_ms.is_some_and(|t| t > now) {
                next = Some(next.map_or(st.next_attempt_ms.unwrap(), |x: u64| {
                    x.min(st.next_attempt_ms.unwrap())
                }));
                continue;
            }
            let Some(ch) = channels.get(name) else {
                // The channel was removed from the configuration: nothing to send it to.
                st.delivered = true;
                st.last_error = Some("channel no longer configured".into());
                changed = true;
                continue;
            };
            st.attempts += 1;
            changed = true;
            let n = &item.notification;
            match sender.send(ch, n) {
                Attempt::Delivered => {
                    st.delivered = true;
                    st.next_attempt_ms = None;
                    info!(event = "ALERT_DELIVERED", notification = %n.id, channel = %name, attempts = st.attempts, "delivered");
                    record(
                        layout,
                        json!({"at": ghost_core::time::now_rfc3339(), "type": "delivery", "notification": n.id,
                               "channel": name, "result": "delivered", "attempt": st.attempts,
                               "uuids": n.alerts.iter().map(|a| &a.uuid).collect::<Vec<_>>()}),
                    );
                }
                Attempt::Failed { error, retry_after } => {
                    let wait = retry_after.unwrap_or_else(|| {
                        backoff(a.retry_base, a.retry_max, st.attempts, jitter())
                    });
                    let at = now_ms() + wait.as_millis() as u64;
                    st.next_attempt_ms = Some(at);
                    st.last_error = Some(error.clone());
                    next = Some(next.map_or(at, |x| x.min(at)));
                    warn!(event = "ALERT_DELIVERY_FAILED", notification = %n.id, channel = %name, attempts = st.attempts, error = %error, retry_in_ms = wait.as_millis() as u64, "delivery failed; will retry");
                    record(
                        layout,
                        json!({"at": ghost_core::time::now_rfc3339(), "type": "delivery", "notification": n.id,
                               "channel": name, "result": "failed", "attempt": st.attempts, "error": error,
                               "retry_at": ms_rfc3339(at)}),
                    );
                    if !st.local_written {
                        local_line(layout, n, &format!("{name} failed: {error}; retrying"));
                        st.local_written = true;
                    }
                }
            }
        }
        if item.channels.values().all(|c| c.delivered) {
            if let Err(e) = ghost_core::fs::durable_remove(&path) {
                warn!(event = "ALERT_OUTBOX_FAILED", error = %e, "cannot remove a delivered outbox item");
            }
        } else if changed {
            if let Err(e) = ghost_core::fs::write_json(&path, &item) {
                warn!(event = "ALERT_OUTBOX_FAILED", error = %e, "cannot update an outbox item");
            }
        }
    }
    next
}

/// True when `dir` exists and holds no outbox item.
pub fn outbox_empty(layout: &Layout) -> bool {
    outbox(layout).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghost_core::alerting::NotifiedAlert;

    fn n(kind: NotificationKind, count: usize) -> Notification {
        Notification {
            id: "nid".into(),
            kind,
            rule: "patch_stuck".into(),
            severity: Severity::Critical,
            created_ms: 1_767_323_045_000,
            alerts: (0..count)
                .map(|i| NotifiedAlert {
                    fingerprint: format!("patch_stuck:default:{i}"),
                    uuid: format!("u{i}"),
                    rule: "patch_stuck".into(),
                    component: "executor".into(),
                    subject: format!("{i}"),
                    severity: Severity::Critical,
                    title: format!("patch {i} is stuck on target default"),
                    message: "m".into(),
                    started_ms: 1_767_323_000_000,
                    resolved_ms: (kind == NotificationKind::Resolved).then_some(1_767_323_040_000),
                })
                .collect(),
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        let b = Duration::from_secs(5);
        let m = Duration::from_secs(60);
        assert_eq!(backoff(b, m, 1, 0.0), b);
        assert_eq!(backoff(b, m, 2, 0.0), 2 * b);
        assert_eq!(backoff(b, m, 3, 0.0), 4 * b);
        assert_eq!(backoff(b, m, 30, 0.0), m);
        assert_eq!(backoff(b, m, 1, 1.0), b + b / 4);
    }

    #[test]
    fn payloads_carry_fingerprint_and_uuid() {
        let f = n(NotificationKind::Firing, 3);
        let s = slack_payload(&f);
        let t = s["text"].as_str().unwrap();
        assert!(
            t.starts_with(
                "[FIRING] CRITICAL patch_stuck — patch 0 is stuck on target default (+2 more)"
            ),
            "{t}"
        );
        assert!(t.contains("u0"));
        assert!(s["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("episode `u2`"));
        let am = alertmanager_payload(&f, Duration::from_secs(3600));
        assert_eq!(am.as_array().unwrap().len(), 3);
        assert_eq!(am[1]["labels"]["fingerprint"], "patch_stuck:default:1");
        assert_eq!(am[1]["labels"]["alertname"], "patch_stuck");
        assert_eq!(am[1]["annotations"]["uuid"], "u1");
        assert_eq!(am[0]["endsAt"], "2026-01-02T04:04:05.000Z");
        let r = alertmanager_payload(&n(NotificationKind::Resolved, 1), Duration::from_secs(3600));
        assert_eq!(r[0]["endsAt"], "2026-01-02T03:04:00.000Z");
        let w = webhook_payload(&f);
        assert_eq!(w["version"], 1);
        assert_eq!(w["alerts"][2]["uuid"], "u2");
    }

    #[test]
    fn orphans_are_set_aside_unsent() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        let chans = BTreeMap::new();
        let mut a = n(NotificationKind::Firing, 1);
        a.id = "a".into();
        let mut b = a.clone();
        b.id = "b".into();
        enqueue(&l, &a, &chans).unwrap();
        enqueue(&l, &b, &chans).unwrap();
        assert_eq!(set_aside_orphans(&l, &["a".into()]), 1);
        let left: Vec<_> = outbox(&l)
            .iter()
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["a"]);
        assert!(l.alerts_outbox().join(".unsent/b.json").exists());
    }
}
