use super::*;

fn actor() -> Actor {
    Actor::new("tester (uid 0)", "test")
}

/// The executor claims the entry between our look-up and our move: the
/// hold fails as a conflict, says where the entry is, and leaves nothing in held/.
#[test]
fn losing_the_race_to_the_executor_is_reported_and_leaves_nothing_behind() {
    let d = tempfile::tempdir().unwrap();
    let layout = Layout::new(d.path());
    layout.create(["default"]).unwrap();
    let q = layout.queue("default");
    let name = q.enqueue(b"{}").unwrap();
    let seen = crate::entry::locate(&q, QueueState::Pending, &name);
    // The executor's claim.
    q.transition(
        &name,
        QueueState::Pending,
        QueueState::Active,
        &EntryRecord::default(),
    )
    .unwrap();
    let err = act(
        &layout,
        &MoveRequest {
            action: Action::Hold,
            entry: &seen,
            reason: None,
            actor: &actor(),
        },
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Conflict(_)), "{msg}");
    assert!(
        msg.contains("moved meanwhile") && msg.contains("active/"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_dir(q.dir(QueueState::Held)).unwrap().count(),
        0
    );
    assert_eq!(q.find(&name), Some(QueueState::Active));
    assert!(
        !audit_path(&layout).exists(),
        "nothing audited for a move that did not happen"
    );
}

#[test]
fn destinations_follow_the_rules() {
    use QueueState::*;
    for (a, from, to) in [
        (Action::Retry, Stuck, Some(Pending)),
        (Action::Retry, Failed, Some(Pending)),
        (Action::Retry, Deferred, Some(Pending)),
        (Action::Retry, Pending, None),
        (Action::Retry, Done, None),
        (Action::Hold, Pending, Some(Held)),
        (Action::Hold, Deferred, Some(Held)),
        (Action::Hold, Active, None),
        (Action::Release, Held, Some(Pending)),
        (Action::Release, Pending, None),
        (Action::Delete, Done, Some(Trash)),
        (Action::Delete, Held, Some(Trash)),
        (Action::Delete, Active, None),
        (Action::Delete, Trash, None),
        (Action::Restore, Trash, Some(Pending)),
        (Action::RestoreHeld, Trash, Some(Held)),
        (Action::Restore, Done, None),
        (Action::Restore, Pending, None),
    ] {
        assert_eq!(a.destination(from).ok(), to, "{a:?} from {from:?}");
    }
}

/// A retry resets the attempts, records the operator action in the record
/// and appends one line to the audit log naming who, what, why and through what.
#[test]
fn a_move_is_recorded_and_audited() {
    let d = tempfile::tempdir().unwrap();
    let layout = Layout::new(d.path());
    layout.create(["default"]).unwrap();
    let q = layout.queue("default");
    let name = q.enqueue(br#"{"id":"p-1"}"#).unwrap();
    let rec = EntryRecord {
        attempts: 3,
        ..EntryRecord::default()
    };
    q.transition(&name, QueueState::Pending, QueueState::Stuck, &rec)
        .unwrap();
    let found = crate::entry::locate(&q, QueueState::Stuck, &name);
    let done = act(
        &layout,
        &MoveRequest {
            action: Action::Retry,
            entry: &found,
            reason: Some(" disk fixed "),
            actor: &Actor::new("alice", "dashboard"),
        },
    )
    .unwrap();
    assert_eq!(
        (done.from, done.to),
        (QueueState::Stuck, QueueState::Pending)
    );
    let r = q.read_record(QueueState::Pending, &name).unwrap();
    assert_eq!(r.attempts, 0);
    assert_eq!(
        r.operator.last().unwrap().reason.as_deref(),
        Some("disk fixed")
    );
    let audit = std::fs::read_to_string(audit_path(&layout)).unwrap();
    let line: serde_json::Value = serde_json::from_str(audit.trim()).unwrap();
    assert_eq!(line["action"], "retry");
    assert_eq!(line["by"], "alice");
    assert_eq!(line["via"], "dashboard");
    assert_eq!(line["reason"], "disk fixed");
    assert_eq!(line["detail"]["to"], "pending");
}

#[test]
fn delete_without_a_reason_is_refused_and_nothing_moves() {
    let d = tempfile::tempdir().unwrap();
    let layout = Layout::new(d.path());
    layout.create(["default"]).unwrap();
    let q = layout.queue("default");
    let name = q.enqueue(b"{}").unwrap();
    let found = crate::entry::locate(&q, QueueState::Pending, &name);
    for reason in [None, Some("   ")] {
        let e = act(
            &layout,
            &MoveRequest {
                action: Action::Delete,
                entry: &found,
                reason,
                actor: &actor(),
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::Refused(_)), "{e}");
    }
    assert_eq!(q.find(&name), Some(QueueState::Pending));
}

#[test]
fn pause_resume_ack_and_silence_are_audited() {
    let d = tempfile::tempdir().unwrap();
    let layout = Layout::new(d.path());
    layout.create(["default"]).unwrap();
    assert!(matches!(
        pause(&layout, " ", &actor()),
        Err(Error::Refused(_))
    ));
    assert!(pause(&layout, "maintenance", &actor()).unwrap().changed);
    assert!(!pause(&layout, "again", &actor()).unwrap().changed);
    assert!(matches!(
        resume(&layout, false, &actor()),
        Err(Error::Refused(_))
    ));
    let r = resume(&layout, true, &actor()).unwrap();
    assert!(r.changed && !r.paused);
    assert!(matches!(
        ack(&layout, "nothing:*", &actor()),
        Err(Error::Refused(_))
    ));
    assert!(matches!(
        silence(&layout, "x:*", "0s", "why", &actor()),
        Err(Error::Refused(_))
    ));
    let (s, d2) = silence(&layout, "x:*", "2h", "planned", &actor()).unwrap();
    assert_eq!(d2, Duration::from_secs(7200));
    assert!(s.request.exists());
    let audit = std::fs::read_to_string(audit_path(&layout)).unwrap();
    let actions: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(actions, ["pause", "resume", "silence"]);
}
