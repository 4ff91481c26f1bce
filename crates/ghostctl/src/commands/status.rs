//! `ghostctl status`: queue counts per target, heartbeats, and what needs a person.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use ghost_core::cli::EXIT_OK;
use ghost_core::heartbeat;
use ghost_core::queue::QueueState;
use ghost_core::watchdog::{self, ChildState, WatchdogState, WatchdogStatus};
use ghost_core::{Config, Layout};

use crate::entries::all_targets;
use crate::util::{clean, relative_str, short_duration, table};
use crate::{io, json_text, CtlError};

/// `ghostctl status`.
pub fn run(config: &Config, json: bool, out: &mut dyn std::io::Write) -> Result<u8, CtlError> {
    let s = status(config)?;
    if json {
        writeln!(out, "{}", json_text(&s)).map_err(io)?;
    } else {
        write!(out, "{}", render(&s, config.heartbeat.stale_after)).map_err(io)?;
    }
    Ok(EXIT_OK)
}

/// The components whose heartbeat is always reported, present or not.
pub const EXPECTED_HEARTBEATS: [&str; 1] = ["executor"];

#[derive(Debug, Clone, Serialize)]
pub struct TargetCounts {
    pub target: String,
    /// Entries per state name (`pending`, …, `stuck`, `trash`).
    pub counts: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeartbeatState {
    pub component: String,
    /// `ok`, `stale`, `gone` (the heartbeat's process no longer exists, as
    /// after a SIGKILL: it is not running, however fresh the file),
    /// `stopped`, `absent` or `unreadable`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The component's log health (`details.logs` of its heartbeat).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<ghost_core::logging::LogHealthReport>,
}

/// The watchdog's view of its children (`state/watchdog.json`), and whether
/// the watchdog that wrote it is still alive.
#[derive(Debug, Clone, Serialize)]
pub struct WatchdogView {
    /// The watchdog is running now: its state says so and its heartbeat is
    /// fresh. False: the table is what it last wrote.
    pub alive: bool,
    /// Children whose recorded pid no longer exists (the watchdog died, or
    /// was hard-stopped, before it saw them go): not running, whatever the
    /// state says.
    pub gone: Vec<String>,
    #[serde(flatten)]
    pub state: WatchdogState,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub root: String,
    pub config: String,
    pub targets: Vec<TargetCounts>,
    pub heartbeats: Vec<HeartbeatState>,
    /// Entries in `.stuck/` over every target: each needs a person.
    pub stuck: usize,
    /// Entries in `failed/` over every target.
    pub failed: usize,
    /// `state/watchdog.json`, when a watchdog ever ran on this root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<WatchdogView>,
    /// Why `state/watchdog.json` could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watchdog_error: Option<String>,
    /// Why intake is paused (the operator, an executor's failing log); empty: open.
    pub pause: Vec<ghost_core::logging::pause::PauseCause>,
    /// The monitor's health model (`state/health.json`), when a monitor ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<ghost_core::health::Health>,
    /// Alerts firing now, from the monitor's alert book.
    pub firing: Vec<FiringAlert>,
}

/// One firing alert, as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FiringAlert {
    pub fingerprint: String,
    pub severity: String,
    pub title: String,
    pub uuid: String,
    pub started_ms: u64,
}

fn heartbeat_state(
    component: &str,
    path: &std::path::Path,
    stale_after: Duration,
) -> HeartbeatState {
    let mut hs = HeartbeatState {
        component: component.to_string(),
        state: "absent".into(),
        status: None,
        pid: None,
        updated_at: None,
        version: None,
        error: None,
        logs: None,
    };
    if !path.exists() {
        return hs;
    }
    match heartbeat::read(path) {
        Ok(hb) => {
            // A component that said it stopped is not hanging: say so.
            hs.state = if hb.status == "stopped" {
                "stopped"
            } else if !pid_exists(hb.pid) {
                "gone"
            } else if hb.is_stale(stale_after) {
                "stale"
            } else {
                "ok"
            }
            .into();
            hs.status = Some(hb.status);
            hs.pid = Some(hb.pid);
            hs.updated_at = Some(hb.updated_at);
            hs.version = Some(hb.version);
            hs.logs = serde_json::from_value(hb.details["logs"].clone()).ok();
        }
        Err(e) => {
            hs.state = "unreadable".into();
            hs.error = Some(e.to_string());
        }
    }
    hs
}

/// Whether process `pid` exists (a process of another user counts: `EPERM`).
/// Only meaningful on the root's own host, which is where ghostctl runs.
fn pid_exists(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

pub fn status(config: &Config) -> Result<Status, CtlError> {
    let layout = Layout::new(&config.root);
    let mut targets = Vec::new();
    let (mut stuck, mut failed) = (0, 0);
    for t in all_targets(config) {
        let q = layout.queue(&t);
        let mut counts = BTreeMap::new();
        for s in QueueState::ALL {
            counts.insert(s.name().to_string(), q.list(s)?.len());
        }
        stuck += counts["stuck"];
        failed += counts["failed"];
        targets.push(TargetCounts { target: t, counts });
    }
    let mut components: Vec<String> = EXPECTED_HEARTBEATS.iter().map(|c| c.to_string()).collect();
    if let Ok(rd) = std::fs::read_dir(layout.heartbeats()) {
        let mut others: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|f| !f.starts_with('.'))
            .filter_map(|f| f.strip_suffix(".json").map(str::to_string))
            .filter(|c| !components.contains(c))
            .collect();
        others.sort();
        components.extend(others);
    }
    let heartbeats = components
        .iter()
        .map(|c| heartbeat_state(c, &layout.heartbeat(c), config.heartbeat.stale_after))
        .collect();
    let (watchdog, watchdog_error) = match watchdog::read_state(&layout) {
        Ok(Some(st)) => {
            let hb = heartbeat_state(
                "watchdog",
                &layout.heartbeat("watchdog"),
                config.heartbeat.stale_after,
            );
            let alive =
                st.status != WatchdogStatus::Stopped && hb.state == "ok" && hb.pid == Some(st.pid);
            let gone = st
                .children
                .iter()
                .filter(|(_, c)| c.pid.is_some_and(|p| !pid_exists(p)))
                .map(|(n, _)| n.clone())
                .collect();
            (
                Some(WatchdogView {
                    alive,
                    gone,
                    state: st,
                }),
                None,
            )
        }
        Ok(None) => (None, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let health = ghost_core::health::read(&layout).ok().flatten();
    let firing = ghost_core::alerting::read_book(&layout)
        .map(|b| {
            b.episodes
                .values()
                .filter(|e| e.status == ghost_core::alerting::EpisodeStatus::Firing)
                .map(|e| FiringAlert {
                    fingerprint: e.fingerprint.clone(),
                    severity: format!("{:?}", e.severity).to_lowercase(),
                    title: e.title.clone(),
                    uuid: e.uuid.clone(),
                    started_ms: e.started_ms,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Status {
        health,
        firing,
        root: config.root.display().to_string(),
        config: config.source.clone(),
        targets,
        heartbeats,
        stuck,
        failed,
        watchdog,
        watchdog_error,
        pause: ghost_core::logging::pause::causes(&layout),
    })
}

/// The pid of the watchdog running on this root, if one is: its
/// `state/watchdog.json` is not `stopped`, its heartbeat is fresh, and the
/// process exists.
pub fn live_watchdog(config: &Config) -> Option<u32> {
    let layout = Layout::new(&config.root);
    let st = watchdog::read_state(&layout).ok().flatten()?;
    let hb = heartbeat_state(
        "watchdog",
        &layout.heartbeat("watchdog"),
        config.heartbeat.stale_after,
    );
    let exists = nix::sys::signal::kill(nix::unistd::Pid::from_raw(st.pid as i32), None).is_ok();
    (st.status != WatchdogStatus::Stopped && hb.state == "ok" && hb.pid == Some(st.pid) && exists)
        .then_some(st.pid)
}

/// The children table of `ghostctl status`.
pub fn render_watchdog(w: &WatchdogView) -> String {
    let st = &w.state;
    let mut o = String::new();
    // `ready` (what READY=1 says) leaves out the children whose program is
    // missing: never call the family up then. Disabled ones are a choice.
    let missing: Vec<String> = st
        .children
        .iter()
        .filter(|(_, c)| c.state == ChildState::Missing)
        .map(|(n, _)| clean(n))
        .collect();
    let disabled = st
        .children
        .values()
        .any(|c| c.state == ChildState::Disabled);
    let head = if w.alive {
        let up = match (st.ready, missing.is_empty(), disabled) {
            (true, true, false) => " (every child up)".to_string(),
            (true, true, true) => " (every enabled child up)".to_string(),
            (true, false, _) => format!(" (ready, but missing: {})", missing.join(", ")),
            (false, _, _) => String::new(),
        };
        format!(
            "watchdog pid {} {}{up}, updated {}",
            st.pid,
            st.status.as_str(),
            relative_str(&st.updated_at)
        )
    } else if st.status == WatchdogStatus::Stopped {
        format!(
            "watchdog stopped (pid {} was last, {}); children as it left them:",
            st.pid,
            relative_str(&st.updated_at)
        )
    } else {
        format!(
            "WATCHDOG NOT RUNNING: pid {} wrote {} last, {}; its heartbeat is stale or absent. Children as it last saw them:",
            st.pid,
            st.status.as_str(),
            relative_str(&st.updated_at)
        )
    };
    let _ = writeln!(o, "\n{head}");
    let rows: Vec<Vec<String>> = st
        .children
        .iter()
        .map(|(name, c)| {
            let last = c
                .last_exit
                .as_ref()
                .map(|e| format!("{} ({}) {}", e.describe(), e.cause, relative_str(&e.at)))
                .unwrap_or_else(|| "-".into());
            let gone = w.gone.contains(name);
            let next = match c.state {
                ChildState::Backoff => c
                    .next_restart_at
                    .as_deref()
                    .map(relative_str)
                    .unwrap_or_else(|| "soon".into()),
                ChildState::GivenUp => match &c.retry_at {
                    Some(t) => format!(
                        "{} (cool-off), or `ghostctl restart {name}`",
                        relative_str(t)
                    ),
                    None => format!("none: `ghostctl restart {name}` once fixed"),
                },
                ChildState::Missing => clean(c.message.as_deref().unwrap_or("program not found")),
                _ => "-".into(),
            };
            let state = match c.state {
                _ if gone => format!("GONE (was {})", c.state),
                ChildState::GivenUp | ChildState::Missing => c.state.as_str().to_uppercase(),
                s => s.as_str().to_string(),
            };
            vec![
                format!("  {}", clean(name)),
                state,
                c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                format!(
                    "{}/{} in {}",
                    c.restarts_in_window,
                    c.max_restarts,
                    clean(&c.restart_window)
                ),
                last,
                next,
            ]
        })
        .collect();
    o.push_str(&table(
        &[
            "  CHILD",
            "STATE",
            "PID",
            "RESTARTS",
            "LAST EXIT",
            "NEXT RESTART",
        ],
        &rows,
    ));
    o
}

pub fn render(s: &Status, stale_after: Duration) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "root {} (configuration: {})\n", s.root, s.config);
    let states: Vec<&str> = QueueState::ALL.iter().map(|q| q.name()).collect();
    let headers: Vec<String> = std::iter::once("target")
        .chain(states.iter().copied())
        .map(str::to_uppercase)
        .collect();
    let rows: Vec<Vec<String>> = s
        .targets
        .iter()
        .map(|t| {
            let mut r = vec![t.target.clone()];
            for st in &states {
                let n = t.counts.get(*st).copied().unwrap_or(0);
                let mark = if n > 0 && (*st == "stuck" || *st == "failed") {
                    "!"
                } else {
                    ""
                };
                r.push(format!("{n}{mark}"));
            }
            r
        })
        .collect();
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    o.push_str(&table(&header_refs, &rows));
    let _ = writeln!(
        o,
        "\nheartbeats (stale after {}):",
        short_duration(stale_after)
    );
    let rows: Vec<Vec<String>> = s
        .heartbeats
        .iter()
        .map(|h| {
            let detail = match h.state.as_str() {
                "absent" => {
                    "no heartbeat file: not running, or never started on this root".to_string()
                }
                "unreadable" => clean(h.error.as_deref().unwrap_or("")),
                _ => format!(
                    "{} pid {} version {}, updated {}{}",
                    clean(h.status.as_deref().unwrap_or("-")),
                    h.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    clean(h.version.as_deref().unwrap_or("-")),
                    h.updated_at
                        .as_deref()
                        .map(relative_str)
                        .unwrap_or_else(|| "-".into()),
                    match &h.logs {
                        Some(l) if !l.primary_ok => format!(
                            "; LOG FAILING since {}, lines go to {}",
                            clean(l.failing_since.as_deref().unwrap_or("?")),
                            clean(l.fallback_path.as_deref().unwrap_or("nowhere"))
                        ),
                        Some(l) if l.dropped_lines > 0 => {
                            format!("; {} log line(s) lost", l.dropped_lines)
                        }
                        _ => String::new(),
                    }
                ),
            };
            let state = if h.state == "ok" {
                h.state.clone()
            } else {
                h.state.to_uppercase()
            };
            vec![format!("  {}", clean(&h.component)), state, detail]
        })
        .collect();
    o.push_str(&table(&["  COMPONENT", "STATE", "DETAIL"], &rows));
    if let Some(w) = &s.watchdog {
        o.push_str(&render_watchdog(w));
        for (name, c) in &w.state.children {
            if c.state == ChildState::GivenUp {
                let layout = Layout::new(&s.root);
                let why = c
                    .last_exit
                    .as_ref()
                    .map(|e| {
                        format!(
                            " ({}{})",
                            e.describe(),
                            e.reason()
                                .map(|r| format!(": {}", clean(r)))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "\n!! the watchdog gave up on {}{why}: see {} and {}, fix the cause, then `ghostctl restart {}`",
                    clean(name),
                    layout.critical_alert().display(),
                    layout.child_output_log(&clean(name)).display(),
                    clean(name)
                );
            }
        }
    } else if let Some(e) = &s.watchdog_error {
        let _ = writeln!(o, "\nstate/watchdog.json is unreadable: {}", clean(e));
    }
    for c in &s.pause {
        let _ = writeln!(
            o,
            "\n!! intake paused (the bridge answers 503): {}",
            clean(&c.describe())
        );
    }
    render_health(&mut o, s);
    if s.stuck + s.failed > 0 {
        let _ = writeln!(
            o,
            "\n!! needs attention: {} stuck, {} failed (see `ghostctl ls --state stuck,failed`, then `ghostctl show ID`)",
            s.stuck, s.failed
        );
    } else {
        let _ = writeln!(o, "\nnothing stuck or failed");
    }
    o
}

/// The monitor's part of `status`: components late or down, queues with
/// their oldest entry, firing alerts.
fn render_health(o: &mut String, s: &Status) {
    let Some(h) = &s.health else {
        let _ = writeln!(
            o,
            "\nmonitor: no state/health.json (ghost-monitor has not run on this root)"
        );
        return;
    };
    let _ = writeln!(
        o,
        "\nhealth (ghost-monitor pid {}, {}):",
        h.monitor_pid,
        relative_str(&h.generated_at)
    );
    let mut rows = Vec::new();
    for (c, ch) in &h.components {
        let state = match ch.state {
            ghost_core::health::BeatState::Ok => "ok".to_string(),
            st => st.as_str().to_uppercase(),
        };
        let usage = match (ch.cpu_percent, ch.rss_bytes) {
            (Some(cpu), Some(rss)) => format!("cpu {cpu:.1} % rss {} MiB", rss >> 20),
            (None, Some(rss)) => format!("rss {} MiB", rss >> 20),
            _ => "-".into(),
        };
        let logs = match &ch.logs {
            Some(l) if !l.primary_ok => "LOG FAILING".to_string(),
            _ => String::new(),
        };
        rows.push(vec![format!("  {}", clean(c)), state, usage, logs]);
    }
    o.push_str(&table(
        &["  COMPONENT", "HEARTBEAT", "USAGE", "LOGS"],
        &rows,
    ));
    let mut rows = Vec::new();
    for (t, th) in &h.targets {
        for (st, sh) in &th.states {
            if sh.count == 0 || st == "done" || st == "trash" {
                continue;
            }
            rows.push(vec![
                format!("  {}", clean(t)),
                st.clone(),
                sh.count.to_string(),
                sh.oldest_age_s
                    .map(|a| short_duration(Duration::from_secs(a)))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    if !rows.is_empty() {
        o.push_str(&table(&["  TARGET", "STATE", "COUNT", "OLDEST"], &rows));
    }
    if !h.summaries.corrupt.is_empty() {
        let _ = writeln!(
            o,
            "  !! {} summaries not intact (`ghostctl verify`)",
            h.summaries
                .corrupt_count
                .values()
                .sum::<usize>()
                .max(h.summaries.corrupt.len())
        );
    }
    if s.firing.is_empty() {
        let _ = writeln!(o, "  no alerts firing");
    } else {
        let _ = writeln!(
            o,
            "  !! {} alerts firing (`ghostctl alerts`):",
            s.firing.len()
        );
        for f in s.firing.iter().take(10) {
            let _ = writeln!(
                o,
                "     {} {} — {}",
                f.severity,
                clean(&f.fingerprint),
                clean(&f.title)
            );
        }
    }
}
