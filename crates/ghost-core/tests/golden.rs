//! Every file more than one process shares still reads in the format written
//! before (the samples in `tests/golden/`), through its module's own read
//! function at its `Layout` path, and writes back to the same JSON.

use std::path::{Path, PathBuf};

use serde_json::Value;

use ghost_core::alert::{self, AlertSource, AlertStatus, Severity};
use ghost_core::pause::{self, Pause};
use ghost_core::watchdog::{
    self, ChildState, ExitCause, RequestAction, StopReason, WatchdogStatus,
};
use ghost_core::{heartbeat, Layout};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(golden(name)).unwrap()).unwrap()
}

/// A temporary root with the sample copied to `dest`.
fn root_with(name: &str, dest: impl Fn(&Layout) -> PathBuf) -> (tempfile::TempDir, Layout) {
    let d = tempfile::tempdir().unwrap();
    let layout = Layout::new(d.path());
    let to = dest(&layout);
    ghost_core::fs::ensure_dir(to.parent().unwrap()).unwrap();
    ghost_core::fs::durable_write(&to, &std::fs::read(golden(name)).unwrap(), 0o600).unwrap();
    (d, layout)
}

/// `value` serialised is exactly the sample (field for field).
fn same_json<T: serde::Serialize>(value: &T, name: &str) {
    assert_eq!(serde_json::to_value(value).unwrap(), json(name), "{name}");
}

#[test]
fn watchdog_state_reads_and_round_trips() {
    let (_d, layout) = root_with("watchdog.json", Layout::watchdog_state);
    let st = watchdog::read_state(&layout).unwrap().unwrap();
    assert_eq!(st.status, WatchdogStatus::Running);
    let ex = &st.children["executor"];
    assert_eq!(ex.state, ChildState::GivenUp);
    let last = ex.last_exit.as_ref().unwrap();
    assert_eq!(
        (last.cause, last.describe().as_str()),
        (ExitCause::Hang, "killed by SIGKILL")
    );
    assert_eq!(
        ex.last_request.as_ref().unwrap().action,
        RequestAction::Restart
    );
    assert_eq!(st.children["monitor"].state, ChildState::Missing);
    assert_eq!(
        st.children["monitor"].last_exit.as_ref().unwrap().cause,
        ExitCause::SpawnFailed
    );
    assert_eq!(
        st.children["sidecar"].stop_reason,
        Some(StopReason::OperatorRestart)
    );
    same_json(&st, "watchdog.json");
    watchdog::write_state(&layout, &st).unwrap();
    assert_eq!(watchdog::read_state(&layout).unwrap(), Some(st));
}

#[test]
fn watchdog_request_reads_and_round_trips() {
    let (_d, layout) = root_with("watchdog_request.json", |l| {
        l.watchdog_requests().join("executor.json")
    });
    let reqs = watchdog::pending_requests(&layout);
    assert_eq!(reqs.len(), 1);
    let r = reqs[0].1.as_ref().unwrap();
    assert_eq!(
        (r.child.as_str(), r.action),
        ("executor", RequestAction::Restart)
    );
    same_json(r, "watchdog_request.json");
}

#[test]
fn pause_records_read_and_round_trip() {
    let (_d, layout) = root_with("pause.json", Layout::pause_file);
    assert!(pause::is_paused(&layout));
    let Some(Pause::Record(r)) = pause::read(&layout).unwrap() else {
        panic!("the sample reads as a record");
    };
    assert_eq!(r.reason, "disk swap");
    same_json(&r, "pause.json");
    let kept: pause::PauseRecord = ghost_core::fs::read_json(&golden("pause_kept.json")).unwrap();
    assert_eq!(kept.resumed_by.as_deref(), Some("bob (uid 1001)"));
    same_json(&kept, "pause_kept.json");
    let (lifted, path) = pause::lift(&layout, "carol (uid 1002)").unwrap().unwrap();
    assert_eq!(lifted.paused_by, "alice (uid 1000)");
    assert_eq!(
        ghost_core::fs::read_json::<pause::PauseRecord>(&path).unwrap(),
        lifted
    );
}

#[test]
fn alerts_of_every_writer_read_and_round_trip() {
    // The executor's, from before alerts had a status: firing.
    let a = alert::read(&golden("alert_patch_stuck.json")).unwrap();
    assert_eq!(
        (a.source, a.severity, a.status),
        (
            AlertSource::Executor,
            Severity::Critical,
            AlertStatus::Firing
        )
    );
    assert_eq!(a.patch_id.as_deref(), Some("example-hello"));
    let mut expected = json("alert_patch_stuck.json");
    expected["status"] = "firing".into();
    assert_eq!(serde_json::to_value(&a).unwrap(), expected);
    // What the executor writes now is that same shape.
    let now = alert::Alert::patch_stuck(
        "default",
        "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "example-hello",
        "attempts spent (3 of 3): I/O error writing src/hello.txt",
    );
    assert_eq!(
        alert::Alert {
            at: a.at.clone(),
            ..now
        },
        a
    );

    let g = alert::read(&golden("alert_watchdog_gave_up.json")).unwrap();
    assert_eq!(
        (g.source, g.cause),
        (AlertSource::Watchdog, Some(ExitCause::Exited))
    );
    same_json(&g, "alert_watchdog_gave_up.json");
    let r = alert::read(&golden("alert_watchdog_resolved.json")).unwrap();
    assert_eq!(r.status, AlertStatus::Resolved);
    same_json(&r, "alert_watchdog_resolved.json");

    // Written into the inbox, each reads back as it was.
    let d = tempfile::tempdir().unwrap();
    let layout = Layout::new(d.path());
    for x in [&a, &g, &r] {
        alert::write(&layout, x).unwrap();
    }
    let back: Vec<_> = alert::inbox(&layout)
        .unwrap()
        .iter()
        .map(|p| alert::read(p).unwrap())
        .collect();
    assert_eq!(back, [a, g, r]);
}

#[test]
fn heartbeat_reads_and_round_trips() {
    let (_d, layout) = root_with("heartbeat.json", |l| l.heartbeat("executor"));
    let hb = heartbeat::read(&layout.heartbeat("executor")).unwrap();
    assert_eq!((hb.component.as_str(), hb.pid), ("executor", 4244));
    same_json(&hb, "heartbeat.json");
}

#[test]
fn health_reads_and_round_trips() {
    use ghost_core::health::{self, BeatState};
    let (_d, layout) = root_with("health.json", Layout::health);
    let h = health::read(&layout).unwrap().unwrap();
    assert_eq!(h.components["executor"].state, BeatState::Late);
    assert_eq!(h.components["bridge"].state, BeatState::Absent);
    assert!(!h.components["executor"].logs.as_ref().unwrap().primary_ok);
    assert_eq!(h.targets["default"].states["pending"].count, 2);
    same_json(&h, "health.json");
}

#[test]
fn alert_book_and_requests_read_and_round_trip() {
    use ghost_core::alerting::{self, EpisodeStatus, Origin, Request};
    let (_d, layout) = root_with("alert_book.json", Layout::alerts_state);
    let b = alerting::read_book(&layout).unwrap();
    let e = b.episodes.values().next().unwrap();
    assert_eq!((e.status, e.origin), (EpisodeStatus::Firing, Origin::Inbox));
    assert_eq!(e.acked_by.as_deref(), Some("alice (uid 1000)"));
    assert!(b.silences[0].matches("heartbeat:bridge"));
    same_json(&b, "alert_book.json");
    let r: Request = serde_json::from_value(json("alert_request_silence.json")).unwrap();
    assert!(matches!(&r, Request::Silence { duration, .. } if duration == "2h"));
    same_json(&r, "alert_request_silence.json");
}
