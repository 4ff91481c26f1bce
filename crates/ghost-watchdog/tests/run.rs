//! `ghost_watchdog::run` in-process, with stand-in children (shell commands
//! without heartbeats): give-up, operator reset through a request file, the
//! resolution of the alert, missing built-in children, and the stop.

// Tests: fixtures are set up and damaged directly, not durably.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use ghost_core::watchdog::{self as state, ChildState, WatchdogStatus};
use ghost_core::{Config, Layout};
use ghost_watchdog::RunOptions;
use tokio_util::sync::CancellationToken;

fn config(root: &Path, extra: &str) -> Config {
    let text = format!(
        "[heartbeat]\ninterval = \"50ms\"\nstale_after = \"1s\"\n\
         [watchdog]\nrestart_delay = \"50ms\"\nrestart_window = \"30s\"\nstop_grace = \"1s\"\nrestart_jitter = 0\n{extra}"
    );
    let mut c = Config::from_toml(root, &text, "test").unwrap();
    c.root = root.to_path_buf();
    c
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn child_state(layout: &Layout, name: &str) -> String {
    state::read_state(layout)
        .ok()
        .flatten()
        .and_then(|s| s.children.get(name).map(|c| c.state.as_str().to_string()))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn give_up_then_reset_resolves_the_alert_and_missing_builtins_do_not_block() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let marker = d.path().join("fixed");
    // Fails until the marker exists, then runs.
    let extra = format!(
        "[watchdog.children.flaky]\ncommand = \"/bin/sh\"\n\
         args = [\"-c\", \"test -e {} || exit 3; exec sleep 1000\"]\n\
         root_args = false\nheartbeat = false\n",
        marker.display()
    );
    let cfg = config(&root, &extra);
    let layout = Layout::new(&root);
    let shutdown = CancellationToken::new();
    // No built-in binaries in an empty directory: bridge, executor and
    // monitor are all `missing`, and do not hold the watchdog back.
    let exe_dir = d.path().join("empty");
    std::fs::create_dir_all(&exe_dir).unwrap();
    let opts = RunOptions {
        exe_dir: Some(exe_dir),
        ..RunOptions::default()
    };
    let task = tokio::spawn(ghost_watchdog::run(cfg, shutdown.clone(), opts));

    until("flaky given up", || {
        child_state(&layout, "flaky") == "given_up"
    })
    .await;
    let st = state::read_state(&layout).unwrap().unwrap();
    for b in ["bridge", "executor", "monitor"] {
        assert_eq!(st.children[b].state, ChildState::Missing, "{b}");
        assert!(st.children[b]
            .message
            .as_deref()
            .unwrap()
            .contains("not found"));
    }
    let f = &st.children["flaky"];
    assert_eq!(f.restarts_in_window, 2);
    assert_eq!(f.last_exit.as_ref().unwrap().code, Some(3));
    assert!(!st.ready);
    let alerts = std::fs::read_to_string(layout.alerts().join("CRITICAL_ALERT")).unwrap();
    assert_eq!(alerts.lines().count(), 1, "{alerts}");

    // Fixed; an operator resets it through a request file.
    ghost_core::fs::durable_write(&marker, b"", 0o600).unwrap();
    state::write_request(&layout, "flaky", "tester (uid 0)").unwrap();
    until("flaky running", || {
        child_state(&layout, "flaky") == "running"
    })
    .await;
    until("ready", || {
        state::read_state(&layout)
            .ok()
            .flatten()
            .is_some_and(|s| s.ready)
    })
    .await;
    until("resolved", || {
        std::fs::read_to_string(layout.alerts().join("CRITICAL_ALERT"))
            .unwrap_or_default()
            .contains("RESOLVED ghost-watchdog: flaky is running again (reset by tester (uid 0))")
    })
    .await;
    let st = state::read_state(&layout).unwrap().unwrap();
    assert_eq!(st.children["flaky"].restarts_in_window, 0, "fresh budget");
    assert_eq!(
        st.children["flaky"].last_request.as_ref().unwrap().by,
        "tester (uid 0)"
    );
    assert!(state::pending_requests(&layout).is_empty());
    let pid = st.children["flaky"].pid.unwrap();

    shutdown.cancel();
    let r = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("run returns after the stop")
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
    let st = state::read_state(&layout).unwrap().unwrap();
    assert_eq!(st.status, WatchdogStatus::Stopped);
    assert_eq!(st.children["flaky"].state, ChildState::Stopped);
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err(),
        "the child is gone (and reaped)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_root_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let extra = "[watchdog.children.bridge]\nenabled = false\n[watchdog.children.executor]\nenabled = false\n[watchdog.children.monitor]\nenabled = false\n";
    let layout = Layout::new(&root);
    let shutdown = CancellationToken::new();
    let first = tokio::spawn(ghost_watchdog::run(
        config(&root, extra),
        shutdown.clone(),
        RunOptions::default(),
    ));
    until("the first runs", || {
        state::read_state(&layout)
            .ok()
            .flatten()
            .is_some_and(|s| s.status == WatchdogStatus::Running)
    })
    .await;
    let second = ghost_watchdog::run(
        config(&root, extra),
        CancellationToken::new(),
        RunOptions::default(),
    )
    .await;
    match second {
        Err(ghost_watchdog::WatchdogError::Locked { pid, .. }) => {
            assert_eq!(pid, Some(std::process::id()))
        }
        other => panic!("{other:?}"),
    }
    shutdown.cancel();
    assert!(first.await.unwrap().is_ok());
}
