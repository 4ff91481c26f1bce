use super::*;

const P: Params = Params {
    dedup_window_ms: 300_000,
    repeat_interval_ms: 4 * 3_600_000,
    group_wait_ms: 30_000,
};

struct M {
    book: Book,
    n: u64,
}

impl M {
    fn new() -> M {
        M {
            book: Book::default(),
            n: 0,
        }
    }
    fn ev(&mut self, e: Event, now: u64) -> Vec<Notification> {
        let mut n = self.n;
        let out = next(&mut self.book, e, now, &P, &mut || {
            n += 1;
            format!("id-{n}")
        });
        self.n = n;
        out
    }
    fn fire(&mut self, fp: &str, sev: Severity, origin: Origin, now: u64) {
        assert!(self.ev(Event::Fire(sig(fp, sev, origin)), now).is_empty());
    }
    fn clear(&mut self, fp: &str, by: Origin, now: u64) {
        assert!(self
            .ev(
                Event::Clear {
                    fingerprint: fp.into(),
                    by
                },
                now
            )
            .is_empty());
    }
    fn tick(&mut self, now: u64) -> Vec<Notification> {
        self.ev(Event::Tick, now)
    }
    fn uuid(&self, fp: &str) -> String {
        self.book.episodes[fp].uuid.clone()
    }
}

fn sig(fp: &str, severity: Severity, origin: Origin) -> Signal {
    Signal {
        fingerprint: fp.into(),
        component: "executor".into(),
        subject: fp.rsplit(':').next().unwrap().into(),
        severity,
        title: format!("title {fp}"),
        message: "m".into(),
        origin,
    }
}

fn kinds(ns: &[Notification]) -> Vec<(NotificationKind, usize)> {
    ns.iter().map(|n| (n.kind, n.alerts.len())).collect()
}

const C: Severity = Severity::Critical;
const W: Severity = Severity::Warning;
const R: Origin = Origin::Rule;
const I: Origin = Origin::Inbox;

#[test]
fn new_episode_waits_group_wait_then_one_message_then_nothing() {
    let mut m = M::new();
    m.fire("patch_stuck:default:a", C, R, 1_000);
    assert!(m.tick(1_000).is_empty());
    assert!(m.tick(30_999).is_empty());
    let n = m.tick(31_000);
    assert_eq!(kinds(&n), [(NotificationKind::Firing, 1)]);
    assert_eq!(n[0].alerts[0].uuid, m.uuid("patch_stuck:default:a"));
    assert_eq!(n[0].severity, C);
    // Firing again, any number of times: no new message.
    for t in [32_000, 100_000, 1_000_000] {
        m.fire("patch_stuck:default:a", C, R, t);
        assert!(m.tick(t).is_empty());
    }
    assert_eq!(m.book.notifications, 1);
}

#[test]
fn a_burst_of_one_rule_is_one_message() {
    let mut m = M::new();
    for i in 0..100 {
        m.fire(&format!("patch_stuck:default:{i}"), C, R, 1_000 + i);
    }
    m.fire("heartbeat:bridge", W, R, 2_000);
    let n = m.tick(40_000);
    assert_eq!(
        kinds(&n),
        [
            (NotificationKind::Firing, 1),
            (NotificationKind::Firing, 100)
        ]
    );
    let uuids: std::collections::BTreeSet<_> = n[1].alerts.iter().map(|a| &a.uuid).collect();
    assert_eq!(uuids.len(), 100, "one UUID per episode");
}

#[test]
fn fire_and_clear_within_group_wait_sends_nothing() {
    let mut m = M::new();
    m.fire("disk_low:root", W, R, 0);
    m.clear("disk_low:root", R, 10_000);
    assert!(m.tick(60_000).is_empty());
    assert!(m.book.episodes.is_empty());
    assert_eq!(m.book.resolved.len(), 1);
}

#[test]
fn resolved_once_with_the_same_uuid() {
    let mut m = M::new();
    m.fire("patch_stuck:default:a", C, R, 0);
    let f = m.tick(30_000);
    let uuid = f[0].alerts[0].uuid.clone();
    m.clear("patch_stuck:default:a", R, 40_000);
    m.clear("patch_stuck:default:a", R, 41_000);
    assert!(m.tick(69_999).is_empty());
    let r = m.tick(70_000);
    assert_eq!(kinds(&r), [(NotificationKind::Resolved, 1)]);
    assert_eq!(r[0].alerts[0].uuid, uuid);
    assert_eq!(r[0].alerts[0].resolved_ms, Some(40_000));
    for t in [80_000, 400_000, 10_000_000] {
        m.clear("patch_stuck:default:a", R, t);
        assert!(m.tick(t).is_empty());
    }
    assert!(m.book.episodes.is_empty(), "retired after the dedup window");
    assert_eq!(m.book.resolved[0].uuid, uuid);
}

#[test]
fn flap_inside_group_wait_of_resolved_is_absorbed() {
    let mut m = M::new();
    m.fire("heartbeat:executor", W, R, 0);
    m.tick(30_000);
    let uuid = m.uuid("heartbeat:executor");
    m.clear("heartbeat:executor", R, 31_000);
    m.fire("heartbeat:executor", W, R, 35_000);
    assert!(
        m.tick(100_000).is_empty(),
        "resolved cancelled, firing not resent"
    );
    assert_eq!(m.uuid("heartbeat:executor"), uuid);
}

#[test]
fn fire_again_after_resolved_message_waits_the_dedup_window_and_keeps_the_uuid() {
    let mut m = M::new();
    m.fire("disk_low:root", W, R, 0);
    m.tick(30_000);
    let uuid = m.uuid("disk_low:root");
    m.clear("disk_low:root", R, 40_000);
    assert_eq!(kinds(&m.tick(70_000)), [(NotificationKind::Resolved, 1)]);
    m.fire("disk_low:root", W, R, 100_000);
    assert!(m.tick(200_000).is_empty(), "inside the dedup window");
    let n = m.tick(370_000);
    assert_eq!(kinds(&n), [(NotificationKind::Firing, 1)]);
    assert_eq!(n[0].alerts[0].uuid, uuid);
}

#[test]
fn fire_again_after_the_dedup_window_is_a_new_episode() {
    let mut m = M::new();
    m.fire("disk_low:root", W, R, 0);
    m.tick(30_000);
    let uuid = m.uuid("disk_low:root");
    m.clear("disk_low:root", R, 40_000);
    m.tick(70_000);
    m.tick(370_001);
    assert!(m.book.episodes.is_empty());
    m.fire("disk_low:root", W, R, 400_000);
    let n = m.tick(430_000);
    assert_eq!(kinds(&n), [(NotificationKind::Firing, 1)]);
    assert_ne!(n[0].alerts[0].uuid, uuid);
}

#[test]
fn reminders_every_repeat_interval_unless_acknowledged() {
    let mut m = M::new();
    m.fire("patch_stuck:default:a", C, R, 0);
    m.tick(30_000);
    assert!(m.tick(30_000 + P.repeat_interval_ms - 1).is_empty());
    let r = m.tick(30_000 + P.repeat_interval_ms);
    assert_eq!(kinds(&r), [(NotificationKind::Reminder, 1)]);
    assert!(m.tick(30_000 + P.repeat_interval_ms + 1).is_empty());
    assert!(m
        .ev(
            Event::Ack {
                matcher: m.uuid("patch_stuck:default:a"),
                by: "op".into()
            },
            40_000 + P.repeat_interval_ms
        )
        .is_empty());
    assert!(m.tick(30_000 + 3 * P.repeat_interval_ms).is_empty());
    // The resolved message still goes out.
    m.clear(
        "patch_stuck:default:a",
        R,
        50_000 + 3 * P.repeat_interval_ms,
    );
    assert_eq!(
        kinds(&m.tick(80_000 + 3 * P.repeat_interval_ms)),
        [(NotificationKind::Resolved, 1)]
    );
}

#[test]
fn escalation_is_sent_at_once_with_the_same_uuid() {
    let mut m = M::new();
    m.fire("heartbeat:executor", W, R, 0);
    m.tick(30_000);
    m.fire("heartbeat:executor", C, R, 40_000);
    let n = m.tick(40_000);
    assert_eq!(kinds(&n), [(NotificationKind::Escalated, 1)]);
    assert_eq!(n[0].severity, C);
    // A lower severity later changes nothing.
    m.fire("heartbeat:executor", W, R, 50_000);
    assert!(m.tick(50_000).is_empty());
    assert_eq!(m.book.episodes["heartbeat:executor"].severity, C);
}

#[test]
fn silence_holds_back_then_expires() {
    let mut m = M::new();
    m.ev(
        Event::Silence(Silence {
            id: "s".into(),
            matcher: "patch_stuck:*".into(),
            until_ms: 100_000,
            reason: "maintenance".into(),
            by: "op".into(),
            created_ms: 0,
        }),
        0,
    );
    m.fire("patch_stuck:default:a", C, R, 1_000);
    m.fire("disk_low:root", W, R, 1_000);
    assert_eq!(kinds(&m.tick(40_000)), [(NotificationKind::Firing, 1)]);
    assert!(m.tick(99_999).is_empty());
    let n = m.tick(100_000);
    assert_eq!(kinds(&n), [(NotificationKind::Firing, 1)]);
    assert_eq!(n[0].rule, "patch_stuck");
    assert!(m.book.silences.is_empty(), "expired silences are dropped");
}

#[test]
fn silenced_and_cleared_sends_nothing_ever() {
    let mut m = M::new();
    m.fire("patch_stuck:default:a", C, R, 0);
    m.tick(30_000);
    m.ev(
        Event::Silence(Silence {
            id: "s".into(),
            matcher: "patch_stuck:default:a".into(),
            until_ms: 1_000_000,
            reason: "r".into(),
            by: "op".into(),
            created_ms: 0,
        }),
        31_000,
    );
    m.clear("patch_stuck:default:a", R, 40_000);
    assert!(m.tick(100_000).is_empty());
    assert!(m.tick(2_000_000).is_empty());
    assert!(m.book.episodes.is_empty());
}

#[test]
fn unsilence_by_id_or_matcher() {
    let mut m = M::new();
    for (id, mt) in [("a", "x:*"), ("b", "y:1")] {
        m.ev(
            Event::Silence(Silence {
                id: id.into(),
                matcher: mt.into(),
                until_ms: 10,
                reason: "r".into(),
                by: "o".into(),
                created_ms: 0,
            }),
            0,
        );
    }
    m.ev(
        Event::Unsilence {
            matcher: "a".into(),
        },
        1,
    );
    m.ev(
        Event::Unsilence {
            matcher: "y:1".into(),
        },
        1,
    );
    assert!(m.book.silences.is_empty());
}

#[test]
fn inbox_alert_is_not_cleared_by_a_rule_that_never_saw_it() {
    let mut m = M::new();
    m.fire("patch_stuck:default:a", C, I, 0);
    m.clear("patch_stuck:default:a", R, 1_000);
    assert_eq!(kinds(&m.tick(30_000)), [(NotificationKind::Firing, 1)]);
    // Then the rule sees it, and later no longer does: resolved.
    m.fire("patch_stuck:default:a", C, R, 31_000);
    m.clear("patch_stuck:default:a", R, 32_000);
    assert_eq!(kinds(&m.tick(62_000)), [(NotificationKind::Resolved, 1)]);
}

#[test]
fn inbox_resolved_clears_and_same_fingerprint_from_rule_and_inbox_is_one_episode() {
    let mut m = M::new();
    m.fire("watchdog_gave_up:executor", C, I, 0);
    m.fire("watchdog_gave_up:executor", C, R, 500);
    assert_eq!(m.book.episodes.len(), 1);
    assert_eq!(kinds(&m.tick(30_000)), [(NotificationKind::Firing, 1)]);
    m.clear("watchdog_gave_up:executor", I, 40_000);
    assert_eq!(kinds(&m.tick(70_000)), [(NotificationKind::Resolved, 1)]);
}

#[test]
fn info_is_told_once_without_reminder_or_resolved() {
    let mut m = M::new();
    m.fire("patch_failed:default:a", Severity::Info, R, 0);
    assert_eq!(kinds(&m.tick(30_000)), [(NotificationKind::Firing, 1)]);
    assert!(m.tick(30_000 + 10 * P.repeat_interval_ms).is_empty());
    m.clear(
        "patch_failed:default:a",
        R,
        31_000 + 10 * P.repeat_interval_ms,
    );
    assert!(m.tick(40_000 + 20 * P.repeat_interval_ms).is_empty());
}

#[test]
fn the_book_survives_a_round_trip_mid_episode() {
    // What a restart does: the book is all the state there is.
    let mut m = M::new();
    m.fire("patch_stuck:default:a", C, R, 0);
    m.tick(30_000);
    let text = serde_json::to_string(&m.book).unwrap();
    let mut m2 = M {
        book: serde_json::from_str(&text).unwrap(),
        n: 100,
    };
    m2.fire("patch_stuck:default:a", C, R, 60_000);
    assert!(
        m2.tick(90_000).is_empty(),
        "nothing sent twice after a restart"
    );
    m2.clear("patch_stuck:default:a", R, 100_000);
    let r = m2.tick(130_000);
    assert_eq!(kinds(&r), [(NotificationKind::Resolved, 1)]);
    assert_eq!(r[0].alerts[0].uuid, "id-1");
}

#[test]
fn rule_of_fingerprints() {
    assert_eq!(rule_of("patch_stuck:default:a"), "patch_stuck");
    assert_eq!(rule_of("executor_paused"), "executor_paused");
}
