//! The thin shell around [`crate::policy`]: it turns the world into events
//! (child exits, heartbeats read from disk, operator requests, the clock,
//! signals) and performs the actions (spawns, signals to process groups,
//! alerts, `state/watchdog.json`).
//!
//! Everything runs on one task. Children are spawned from it (never from a
//! blocking-pool thread: see [`crate::spawn`]), and each child's exit is
//! awaited by a small task that reports it on a channel. The task wakes at the
//! policy's next deadline, at each poll (`min(heartbeat.interval, 1 s)`), and
//! at each `WATCHDOG=1` ping; between those it sleeps.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use ghost_core::fs::LockFile;
use ghost_core::heartbeat::{self, HeartbeatWriter};
use ghost_core::text::clip;
use ghost_core::time::rfc3339;
use ghost_core::watchdog::{
    self as state, ChildReport, ExitCause, LastExit, Request, WatchdogState, WatchdogStatus,
};
use ghost_core::{Config, Layout};

use crate::notify::Notifier;
use crate::policy::{self, Action, ChildState, Ctx, Event, Exit, Phase, Policy, Sig, StopReason};
use crate::spec::{self, ChildSpec, SpecCtx};
use crate::{alert, banner, spawn, RunOptions, WatchdogError};

/// Extra time, past the longest grace, for the last exits to be reaped.
const REAP_MARGIN: Duration = Duration::from_secs(5);

struct Child {
    spec: ChildSpec,
    policy: Policy,
    st: ChildState,
    spawned_at: Option<SystemTime>,
    running_since: Option<SystemTime>,
    last_exit: Option<LastExit>,
    /// The last time a new heartbeat of the current process was seen.
    last_ok: Instant,
    /// Its `updated_at` then.
    last_beat: Option<String>,
    given_up_at: Option<SystemTime>,
    restarts_total: u64,
    last_request: Option<Request>,
    message: Option<String>,
    /// Given up, then reset: resolve the alert once it runs again.
    resolve_on_running: Option<String>,
    /// Removed from the configuration: forget it once it has stopped.
    removed: bool,
    /// The missing program already warned about (once per program).
    missing_reported: Option<PathBuf>,
}

impl Child {
    fn new(spec: ChildSpec, policy: Policy) -> Child {
        Child {
            st: ChildState::new(spec.enabled),
            spec,
            policy,
            spawned_at: None,
            running_since: None,
            last_exit: None,
            last_ok: Instant::now(),
            last_beat: None,
            given_up_at: None,
            restarts_total: 0,
            last_request: None,
            message: None,
            resolve_on_running: None,
            removed: false,
            missing_reported: None,
        }
    }
}

struct Sup {
    layout: Layout,
    root: PathBuf,
    config: Config,
    ctx: SpecCtx,
    children: BTreeMap<String, Child>,
    exits: mpsc::UnboundedSender<(String, u32, Exit)>,
    rng: u64,
    notifier: Option<Notifier>,
    ready_sent: bool,
    status_line: String,
    hb: HeartbeatWriter,
    started_at: String,
    /// The last `watchdog.json` written, without its `updated_at`, and when.
    last_state: Option<(String, Instant)>,
    shutting: bool,
    banner: bool,
    /// Every child has been through its first start (running, or not).
    settled: bool,
}

/// Run the watchdog until `shutdown`, then stop every child and return.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    opts: RunOptions,
) -> Result<(), WatchdogError> {
    let targets: Vec<String> = config.targets.keys().cloned().collect();
    Layout::new(&config.root).create(targets.iter().map(String::as_str))?;
    let root = config
        .root
        .canonicalize()
        .map_err(|e| ghost_core::Error::io("resolve the data root", &config.root, e))?;
    let layout = Layout::new(&root);
    // A killed predecessor's child may hold the lock until it execs.
    let _lock = match LockFile::try_acquire_after(
        &layout.lock("watchdog"),
        std::time::Duration::from_secs(2),
    ) {
        Ok(l) => l,
        Err(ghost_core::Error::Locked { path, pid }) => {
            return Err(WatchdogError::Locked { path, pid })
        }
        Err(e) => return Err(e.into()),
    };
    let exe_dir = match opts.exe_dir.clone() {
        Some(d) => d,
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .ok_or_else(|| WatchdogError::Other("cannot tell where ghost-watchdog is".into()))?,
    };
    let config_file = match &opts.config_file {
        Some(f) => {
            Some(std::path::absolute(f).map_err(|e| ghost_core::Error::io("resolve", f, e))?)
        }
        None => None,
    };
    let ctx = SpecCtx {
        root: root.clone(),
        config_file,
        exe_dir,
    };
    let mut config = config;
    config.root = root.clone();
    let specs = spec::resolve(&config, &ctx);

    // Requests made while no watchdog ran are moot: every child starts afresh.
    for (p, r) in state::pending_requests(&layout) {
        info!(event = "REQUEST_DISCARDED", path = %p.display(), child = ?r.ok().map(|r| r.child), "request from before this start: every child starts afresh");
        let _ = ghost_core::fs::durable_remove(&p);
    }
    ghost_core::fs::ensure_dir(&layout.watchdog_requests())?;

    let notifier = match Notifier::from_env() {
        Ok(n) => n,
        Err(e) => {
            warn!(event = "NOTIFY_UNAVAILABLE", error = %e, "NOTIFY_SOCKET is set but unusable; no notifications to the service manager");
            None
        }
    };
    let ping_every = crate::notify::watchdog_interval_from_env().filter(|_| notifier.is_some());

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut sup = Sup {
        hb: HeartbeatWriter::new(&layout, "watchdog", config.heartbeat.interval),
        layout,
        root,
        children: specs
            .into_iter()
            .map(|(n, s)| {
                let p = spec::policy(&config, &n);
                (n, Child::new(s, p))
            })
            .collect(),
        config,
        ctx,
        exits: tx,
        rng: seed(),
        notifier,
        ready_sent: false,
        status_line: String::new(),
        started_at: ghost_core::time::now_rfc3339(),
        last_state: None,
        shutting: false,
        banner: opts.banner,
        settled: false,
    };
    if sup.banner {
        println!("{}", sup.banner_text());
    }
    info!(event = "WATCHDOG_STARTED", root = %sup.root.display(), config = %sup.config.source,
        children = ?sup.children.keys().collect::<Vec<_>>(), "watchdog started");
    let _ = sup.hb.beat("starting", json!({}));

    let names: Vec<String> = sup.children.keys().cloned().collect();
    for n in &names {
        sup.apply(n, Event::Start);
    }
    sup.after_wake();

    let mut next_poll = Instant::now();
    let mut next_ping = Instant::now();
    let mut hard_deadline: Option<Instant> = None;
    let mut hard_stopped = false;
    loop {
        if sup.shutting && sup.children.values().all(|c| !c.st.is_live()) {
            break;
        }
        let mut wake = next_poll;
        for c in sup.children.values() {
            if let Some(d) = c.st.deadline(&c.policy) {
                wake = wake.min(d);
            }
        }
        if ping_every.is_some() {
            wake = wake.min(next_ping);
        }
        if let Some(d) = hard_deadline {
            wake = wake.min(d);
        }
        tokio::select! {
            _ = shutdown.cancelled(), if !sup.shutting => {
                let longest = sup.children.values().map(|c| c.policy.stop_grace).max().unwrap_or_default();
                hard_deadline = Some(Instant::now() + longest + REAP_MARGIN);
                sup.stop_all();
            }
            _ = opts.hard_stop.cancelled(), if !hard_stopped => {
                hard_stopped = true;
                warn!(event = "HARD_STOP", "second stop signal: SIGKILL to every child now");
                for c in sup.children.values() {
                    if let Some(pid) = c.st.phase.pid() {
                        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    }
                }
            }
            Some((name, pid, exit)) = rx.recv() => {
                // Anything it left in its group goes with it.
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                sup.apply(&name, Event::Exited { pid, exit });
            }
            _ = opts.reload.notified(), if !sup.shutting => sup.reload(),
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
        let now = Instant::now();
        if now >= next_poll {
            sup.poll();
            next_poll = now + sup.poll_interval();
        }
        if let Some(every) = ping_every {
            if now >= next_ping {
                sup.notify("WATCHDOG=1");
                next_ping = now + every;
            }
        }
        for n in sup.children.keys().cloned().collect::<Vec<_>>() {
            sup.apply(&n, Event::Tick);
        }
        sup.after_wake();
        // A child that just started is looked at again soon.
        next_poll = next_poll.min(Instant::now() + sup.poll_interval());
        if hard_deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }

    let left: Vec<String> = sup
        .children
        .iter()
        .filter(|(_, c)| c.st.is_live())
        .map(|(n, c)| format!("{n} (pid {:?})", c.st.phase.pid()))
        .collect();
    sup.write_state(true);
    let _ = sup.hb.beat("stopped", sup.heartbeat_details());
    if !left.is_empty() {
        error!(event = "WATCHDOG_STOP_INCOMPLETE", children = ?left, "children did not exit even after SIGKILL");
        return Err(WatchdogError::Other(format!(
            "children did not exit even after SIGKILL: {}",
            left.join(", ")
        )));
    }
    info!(
        event = "WATCHDOG_STOPPED",
        "watchdog stopped; every child has exited"
    );
    Ok(())
}

fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ ((std::process::id() as u64) << 32) ^ 0x9E37_79B9_7F4A_7C15
}

/// True when heartbeat pid `hb` is the child `pid` or in its process group.
fn belongs(hb: u32, pid: u32) -> bool {
    hb == pid
        || nix::unistd::getpgid(Some(Pid::from_raw(hb as i32)))
            .map(|g| g.as_raw() as u32 == pid)
            .unwrap_or(false)
}

fn wall(at: Instant) -> String {
    let now = Instant::now();
    let t = if at >= now {
        SystemTime::now() + (at - now)
    } else {
        SystemTime::now() - (now - at)
    };
    rfc3339(t)
}

impl Sup {
    /// A random fraction in [0, 1) (splitmix64: jitter needs no better).
    fn rand(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn notify(&self, msg: &str) {
        if let Some(n) = &self.notifier {
            if let Err(e) = n.send(msg) {
                debug!(error = %e, socket = n.name(), "cannot notify the service manager");
            }
        }
    }

    /// Feed `ev` to child `name`, perform the actions, and feed back what
    /// they cause (a spawn's result).
    fn apply(&mut self, name: &str, ev: Event) {
        let mut queue = VecDeque::from([ev]);
        while let Some(ev) = queue.pop_front() {
            let jitter = self.rand();
            let Some(c) = self.children.get_mut(name) else {
                return;
            };
            let before = c.st.phase;
            let (st, acts) = policy::next(
                &c.st,
                ev,
                &c.policy,
                Ctx {
                    now: Instant::now(),
                    jitter,
                },
            );
            c.st = st;
            observe(name, c, before, ev, &self.layout.child_output_log(name));
            for a in acts {
                match a {
                    Action::Spawn => {
                        queue.push_back(self.spawn(name));
                        let c = &self.children[name];
                        if !c.spec.heartbeat {
                            if let Some(Event::Spawned { pid }) = queue.back().copied() {
                                queue.push_back(Event::FirstHeartbeat { pid });
                            }
                        }
                    }
                    Action::Signal { pgid, sig } => {
                        let g = Pid::from_raw(pgid as i32);
                        match sig {
                            Sig::Term => {
                                let _ = killpg(g, Signal::SIGTERM);
                                // A stopped group cannot act on SIGTERM until continued.
                                let _ = killpg(g, Signal::SIGCONT);
                            }
                            Sig::Kill => {
                                warn!(event = "CHILD_KILLED", child = name, pid = pgid, "did not exit within its stop grace: SIGKILL to its process group");
                                let _ = killpg(g, Signal::SIGKILL);
                            }
                        }
                    }
                    Action::ScheduleRestart {
                        delay,
                        restarts_in_window,
                    } => {
                        let c = &self.children[name];
                        warn!(
                            event = "CHILD_RESTART_SCHEDULED",
                            child = name,
                            delay_ms = delay.as_millis() as u64,
                            restarts_in_window,
                            max_restarts = c.policy.max_restarts,
                            "restart {restarts_in_window} of {} in {} after {}",
                            c.policy.max_restarts,
                            humantime::format_duration(Duration::from_millis(
                                delay.as_millis() as u64
                            )),
                            c.last_exit
                                .as_ref()
                                .map(|e| e.describe())
                                .unwrap_or_default()
                        );
                    }
                    Action::RaiseAlert {
                        restarts_in_window, ..
                    } => self.give_up(name, restarts_in_window),
                    Action::BudgetReset { why } => {
                        info!(event = "RESTART_BUDGET_RESET", child = name, why = ?why, "restart budget reset");
                    }
                    // `after_wake` rewrites watchdog.json whenever its
                    // content changed, which every such transition does.
                    Action::WriteState => {}
                }
            }
        }
    }

    /// Spawn child `name`; the event to feed back.
    fn spawn(&mut self, name: &str) -> Event {
        let (root, log, max) = (
            self.root.clone(),
            self.layout.child_output_log(name),
            self.config.logs.max_bytes,
        );
        let c = self.children.get_mut(name).expect("known child");
        match spawn::spawn(&c.spec, &root, &log, max) {
            Ok(mut child) => {
                let Some(pid) = child.id() else {
                    return Event::SpawnFailed { missing: false };
                };
                c.spawned_at = Some(SystemTime::now());
                c.running_since = None;
                c.last_beat = None;
                c.message = None;
                if c.restarts_total > 0 || c.last_exit.is_some() {
                    c.restarts_total += 1;
                }
                info!(event = "CHILD_STARTED", child = name, pid, command = %c.spec.command_line(), "started");
                let (tx, n) = (self.exits.clone(), name.to_string());
                tokio::spawn(async move {
                    use std::os::unix::process::ExitStatusExt;
                    let exit = match child.wait().await {
                        Ok(st) => Exit {
                            code: st.code(),
                            signal: st.signal(),
                        },
                        Err(_) => Exit {
                            code: None,
                            signal: None,
                        },
                    };
                    let _ = tx.send((n, pid, exit));
                });
                Event::Spawned { pid }
            }
            Err(spawn::SpawnError::Missing { program }) => {
                let msg = format!("{} not found: not started", program.display());
                // Not installed is a choice as often as a fault: one warning
                // per program, saying how to silence it, not an error at
                // every start and reload.
                if c.missing_reported.as_ref() != Some(&program) {
                    warn!(event = "CHILD_MISSING", child = name, program = %program.display(),
                        "{msg}; install it, or set `enabled = false` under [watchdog.children.{name}] to run without it");
                    c.missing_reported = Some(program.clone());
                }
                c.message = Some(msg);
                Event::SpawnFailed { missing: true }
            }
            Err(e) => {
                error!(event = "CHILD_SPAWN_FAILED", child = name, error = %e, "cannot start");
                c.message = Some(e.to_string());
                Event::SpawnFailed { missing: false }
            }
        }
    }

    fn give_up(&mut self, name: &str, restarts: u32) {
        let log = self.layout.child_output_log(name);
        let c = self.children.get_mut(name).expect("known child");
        c.given_up_at = Some(SystemTime::now());
        let last = c.last_exit.clone();
        let last_exit = last.as_ref().map(|e| e.describe()).unwrap_or_default();
        let cause = last.as_ref().map(|e| e.cause);
        error!(event = "CHILD_GIVEN_UP", child = name, restarts_in_window = restarts, last_exit = %last_exit,
            "gave up after {restarts} restart(s) within {}: no more restarts until `ghostctl restart {name}`{}",
            humantime::format_duration(c.policy.restart_window),
            c.policy.cool_off.map(|d| format!(" or the cool-off of {}", humantime::format_duration(d))).unwrap_or_default());
        let reason = last.as_ref().and_then(|e| e.reason()).map(str::to_string);
        let stderr_tail = match last.as_ref().and_then(|e| e.stderr_tail.clone()) {
            Some(t) => t,
            None => ghost_core::watchdog::stderr_tail(&alert::tail(&log, 2048)),
        };
        if self.banner {
            println!(
                "not ready: {name} given up ({}{})",
                if last_exit.is_empty() {
                    "no exit recorded"
                } else {
                    &last_exit
                },
                reason
                    .as_deref()
                    .map(|r| format!(": {}", clip(r, 200)))
                    .unwrap_or_default()
            );
        }
        alert::raise(
            &self.layout,
            &alert::GaveUp {
                child: name,
                restarts,
                window: c.policy.restart_window,
                last_exit,
                kind: last.as_ref().map(|e| e.kind()),
                cause,
                reason,
                stderr_tail,
                stderr_log: &log,
                cool_off: c.policy.cool_off,
            },
        );
    }

    fn stop_all(&mut self) {
        self.shutting = true;
        info!(
            event = "WATCHDOG_STOPPING",
            "stopping: SIGTERM to every child's process group"
        );
        self.notify("STOPPING=1");
        for n in self.children.keys().cloned().collect::<Vec<_>>() {
            self.apply(&n, Event::StopRequested);
        }
    }

    /// How often heartbeats and requests are read: `min(heartbeat.interval,
    /// 1 s)`, and every 100 ms while a child waits for its first heartbeat
    /// (so that it counts as started, and READY=1 goes out, promptly).
    fn poll_interval(&self) -> Duration {
        let base = self
            .config
            .heartbeat
            .interval
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(20));
        if self
            .children
            .values()
            .any(|c| matches!(c.st.phase, Phase::Starting { .. }))
        {
            base.min(Duration::from_millis(100))
        } else {
            base
        }
    }

    /// Read heartbeats (first heartbeat, staleness) and operator requests.
    fn poll(&mut self) {
        let stale_after = self.config.heartbeat.stale_after;
        let now = Instant::now();
        for name in self.children.keys().cloned().collect::<Vec<_>>() {
            let c = &self.children[&name];
            if !c.spec.heartbeat {
                continue;
            }
            let (pid, running) = match c.st.phase {
                Phase::Starting { pid, .. } => (pid, false),
                Phase::Running { pid, .. } => (pid, true),
                _ => continue,
            };
            // A sign of life is a heartbeat of this process (or its group)
            // that was not there at the last look. Hangs are then measured on
            // the monotonic clock: a wall-clock step neither fakes nor hides one.
            let beat = heartbeat::read(&self.layout.heartbeat(&name))
                .ok()
                .filter(|hb| belongs(hb.pid, pid));
            let c = self.children.get_mut(&name).expect("known");
            if let Some(hb) = beat {
                if c.last_beat.as_deref() != Some(hb.updated_at.as_str()) {
                    c.last_beat = Some(hb.updated_at);
                    c.last_ok = now;
                }
                if !running {
                    c.last_ok = now;
                    self.apply(&name, Event::FirstHeartbeat { pid });
                    continue;
                }
            }
            if running && now.duration_since(c.last_ok) > stale_after {
                error!(event = "CHILD_HUNG", child = %name, pid, stale_after_ms = stale_after.as_millis() as u64,
                    "no new heartbeat for {}: SIGTERM to its process group", humantime::format_duration(stale_after));
                self.apply(&name, Event::HeartbeatStale { pid });
            }
        }
        if !self.shutting {
            self.poll_requests();
        }
    }

    fn poll_requests(&mut self) {
        for (path, req) in state::pending_requests(&self.layout) {
            if let Err(e) = ghost_core::fs::durable_remove(&path) {
                warn!(event = "REQUEST_UNREMOVABLE", path = %path.display(), error = %e, "cannot remove a request; it will be seen again");
            }
            match req {
                Ok(r) if self.children.contains_key(&r.child) => {
                    info!(event = "OPERATOR_RESET", child = %r.child, by = %r.by, requested_at = %r.at,
                        "operator asked to restart {}: restart budget reset", r.child);
                    let name = r.child.clone();
                    let c = self.children.get_mut(&name).expect("known");
                    if matches!(c.st.phase, Phase::GivenUp { .. }) {
                        c.resolve_on_running = Some(format!("reset by {}", r.by));
                    }
                    c.last_request = Some(r);
                    self.apply(&name, Event::OperatorReset);
                }
                Ok(r) => {
                    warn!(event = "REQUEST_IGNORED", child = %r.child, by = %r.by, "restart requested for an unknown child");
                }
                Err(e) => {
                    warn!(event = "REQUEST_IGNORED", path = %path.display(), error = %e, "unreadable request");
                }
            }
        }
    }

    /// SIGHUP: re-read the configuration; restart the children whose settings
    /// changed. A bad configuration is logged and the running one kept.
    fn reload(&mut self) {
        let new = match Config::load(&self.root, self.ctx.config_file.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                error!(event = "CONFIG_RELOAD_FAILED", error = %e, "SIGHUP: the new configuration is invalid; keeping the running one");
                return;
            }
        };
        info!(event = "CONFIG_RELOADED", config = %new.source, "SIGHUP: configuration reloaded");
        let specs = spec::resolve(&new, &self.ctx);
        for (name, s) in &specs {
            let policy = spec::policy(&new, name);
            match self.children.get_mut(name) {
                Some(c) => {
                    c.policy = policy;
                    c.removed = false;
                    // A disabled child that stays disabled has nothing to do.
                    let changed = c.spec.fingerprint != s.fingerprint
                        && (s.enabled || c.st.phase != Phase::Disabled);
                    let retry_missing = c.st.phase == Phase::Missing && s.enabled;
                    c.spec = s.clone();
                    if changed || retry_missing {
                        let what = if !s.enabled {
                            "disabled: stopping it"
                        } else if changed {
                            "settings changed: restarting it (not counted against its budget)"
                        } else {
                            "was missing: trying again"
                        };
                        info!(event = "CHILD_RECONFIGURED", child = %name, enabled = s.enabled, "{what}");
                        let enabled = s.enabled;
                        self.apply(name, Event::ConfigChanged { enabled });
                    }
                }
                None => {
                    info!(event = "CHILD_ADDED", child = %name, "new child in the configuration");
                    self.children
                        .insert(name.clone(), Child::new(s.clone(), policy));
                    self.apply(name, Event::Start);
                }
            }
        }
        for name in self.children.keys().cloned().collect::<Vec<_>>() {
            if !specs.contains_key(&name) {
                info!(event = "CHILD_REMOVED", child = %name, "no longer in the configuration: stopping it");
                if let Some(c) = self.children.get_mut(&name) {
                    c.removed = true;
                }
                self.apply(&name, Event::ConfigChanged { enabled: false });
            }
        }
        self.config = new;
        self.config.root = self.root.clone();
    }

    /// After every wake-up: forget removed children, persist the state,
    /// tell the service manager.
    fn after_wake(&mut self) {
        self.children
            .retain(|_, c| !(c.removed && c.st.phase == Phase::Disabled));
        for (name, c) in self.children.iter_mut() {
            if let (Phase::Running { .. }, Some(how)) = (c.st.phase, &c.resolve_on_running) {
                alert::resolve(&self.layout, name, how);
                c.resolve_on_running = None;
            }
        }
        let ready = self.ready();
        if !self.settled {
            self.settled = ready
                || self.children.values().all(|c| {
                    !matches!(
                        c.st.phase,
                        Phase::Idle | Phase::Spawning | Phase::Starting { .. }
                    )
                });
        }
        if ready && !self.ready_sent && !self.shutting {
            self.ready_sent = true;
            info!(event = "WATCHDOG_READY", "every child is running");
            if self.banner {
                println!("{}", self.ready_text());
            }
            self.notify("READY=1");
        }
        // Deduplicated by content: written on a change or every interval.
        let status = if self.shutting {
            "stopping"
        } else if self.settled {
            "running"
        } else {
            "starting"
        };
        let details = self.heartbeat_details();
        if let Err(e) = self.hb.beat(status, details) {
            warn!(event = "HEARTBEAT_FAILED", error = %e, "cannot write heartbeat");
        }
        let line = self.status();
        if line != self.status_line {
            self.notify(&format!("STATUS={line}"));
            self.status_line = line;
        }
        self.write_state(false);
    }

    /// Every enabled child whose program exists is running.
    fn ready(&self) -> bool {
        self.children
            .values()
            .filter(|c| c.spec.enabled && !matches!(c.st.phase, Phase::Missing | Phase::Disabled))
            .all(|c| matches!(c.st.phase, Phase::Running { .. }))
    }

    fn status(&self) -> String {
        self.children
            .iter()
            .map(|(n, c)| format!("{n} {}", c.st.phase.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn heartbeat_details(&self) -> serde_json::Value {
        let children: BTreeMap<&str, &str> = self
            .children
            .iter()
            .map(|(n, c)| (n.as_str(), c.st.phase.name()))
            .collect();
        json!({"children": children, "ready": self.ready()})
    }

    fn report(&self) -> WatchdogState {
        let now = Instant::now();
        let children = self
            .children
            .iter()
            .map(|(n, c)| {
                let p = &c.policy;
                let (next_restart_at, retry_at, stop_reason) = match c.st.phase {
                    Phase::Backoff { until } => (Some(wall(until)), None, None),
                    Phase::GivenUp { since } => (None, p.cool_off.map(|d| wall(since + d)), None),
                    Phase::Stopping { reason, .. } => (None, None, Some(reason)),
                    _ => (None, None, None),
                };
                let r = ChildReport {
                    state: c.st.phase.report_state(),
                    pid: c.st.phase.pid(),
                    enabled: c.spec.enabled,
                    command: c.spec.command_line(),
                    restarts_in_window: c.st.restarts_in_window(p, now),
                    max_restarts: p.max_restarts,
                    restart_window: humantime::format_duration(p.restart_window).to_string(),
                    restarts_total: c.restarts_total,
                    started_at: c.st.phase.pid().and(c.spawned_at).map(rfc3339),
                    running_since: c.running_since.map(rfc3339),
                    last_exit: c.last_exit.clone(),
                    next_restart_at,
                    given_up_at: match c.st.phase {
                        Phase::GivenUp { .. } => c.given_up_at.map(rfc3339),
                        _ => None,
                    },
                    retry_at,
                    stop_reason,
                    message: c.message.clone(),
                    last_request: c.last_request.clone(),
                };
                (n.clone(), r)
            })
            .collect();
        WatchdogState {
            pid: std::process::id(),
            status: if self.shutting {
                if self.children.values().any(|c| c.st.is_live()) {
                    WatchdogStatus::Stopping
                } else {
                    WatchdogStatus::Stopped
                }
            } else if self.settled {
                WatchdogStatus::Running
            } else {
                WatchdogStatus::Starting
            },
            ready: self.ready(),
            started_at: self.started_at.clone(),
            updated_at: String::new(),
            version: ghost_core::VERSION.to_string(),
            config: self.config.source.clone(),
            children,
        }
    }

    /// Write `state/watchdog.json` when its content changed, or when a
    /// heartbeat interval passed since the last write (or when `force`).
    fn write_state(&mut self, force: bool) {
        let mut st = self.report();
        let key = serde_json::to_string(&st).unwrap_or_default();
        let due = match &self.last_state {
            None => true,
            Some((k, at)) => *k != key || at.elapsed() >= self.config.heartbeat.interval,
        };
        if !(due || force) {
            return;
        }
        st.updated_at = ghost_core::time::now_rfc3339();
        match state::write_state(&self.layout, &st) {
            Ok(()) => self.last_state = Some((key, Instant::now())),
            Err(e) => {
                warn!(event = "STATE_WRITE_FAILED", error = %e, "cannot write state/watchdog.json")
            }
        }
    }

    fn banner_text(&self) -> String {
        let specs: BTreeMap<&str, &ChildSpec> = self
            .children
            .iter()
            .map(|(n, c)| (n.as_str(), &c.spec))
            .collect();
        banner::banner(&self.config, &self.layout, &specs)
    }

    fn ready_text(&self) -> String {
        banner::ready(self.children.iter().map(|(n, c)| (n.as_str(), c.st.phase)))
    }
}

/// The stderr tail a `CHILD_STOPPED` line carries: none for a stop that was
/// asked for and ended cleanly (code 0), where the tail is only the child's
/// start-up lines and says nothing about why it ended; the tail otherwise (a
/// hang, a start timeout, a stop that ended in a kill or a non-zero code).
fn stopped_tail(cause: ExitCause, le: &LastExit) -> Option<&str> {
    let clean_stop =
        cause == ExitCause::Stopped && le.kind() == ghost_core::watchdog::ExitKind::Clean;
    le.stderr_tail.as_deref().filter(|_| !clean_stop)
}

/// Bookkeeping and logs for one transition of child `name`.
fn observe(name: &str, c: &mut Child, before: Phase, ev: Event, stderr_log: &Path) {
    let after = c.st.phase;
    let now = SystemTime::now();
    match (before, ev) {
        (_, Event::Exited { pid, exit }) if before.pid() == Some(pid) => {
            let cause = match before {
                Phase::Stopping {
                    reason: StopReason::Hang,
                    ..
                } => ExitCause::Hang,
                Phase::Stopping {
                    reason: StopReason::StartTimeout,
                    ..
                } => ExitCause::StartTimeout,
                Phase::Stopping { .. } => ExitCause::Stopped,
                _ => ExitCause::Exited,
            };
            // The cause travels with the exit: the end of what it wrote.
            let le = LastExit::new(exit.code, exit.signal, cause, rfc3339(now))
                .with_stderr_tail(&alert::tail(stderr_log, 4096));
            let tail = le.stderr_tail.as_deref().unwrap_or("");
            if cause == ExitCause::Exited {
                warn!(event = "CHILD_EXITED", child = name, pid, code = ?exit.code, signal = ?le.signal_name,
                    kind = ?le.kind(), stderr_tail = %tail, "exited on its own ({}){}", le.describe(),
                    le.reason().map(|r| format!(": {r}")).unwrap_or_default());
            } else {
                let tail = stopped_tail(cause, &le);
                info!(event = "CHILD_STOPPED", child = name, pid, code = ?exit.code, signal = ?le.signal_name,
                    kind = ?le.kind(), cause = cause.as_str(), stderr_tail = tail, "exited ({})", le.describe());
            }
            c.last_exit = Some(le);
            c.running_since = None;
        }
        (Phase::GivenUp { .. }, _) if after == Phase::Spawning => {
            let why = match ev {
                Event::Tick => "after its cool-off".to_string(),
                Event::ConfigChanged { .. } => "after a configuration change".to_string(),
                _ => "after an operator's reset".to_string(),
            };
            c.resolve_on_running.get_or_insert(why);
        }
        (Phase::Spawning, Event::SpawnFailed { missing: false }) => {
            let exit = Exit::SPAWN_FAILED;
            c.last_exit = Some(LastExit::new(
                exit.code,
                exit.signal,
                ExitCause::SpawnFailed,
                rfc3339(now),
            ));
        }
        (Phase::Starting { pid, .. }, Event::FirstHeartbeat { .. }) if after != before => {
            c.running_since = Some(now);
            info!(
                event = "CHILD_RUNNING",
                child = name,
                pid,
                "first heartbeat: running"
            );
        }
        (Phase::Starting { pid, .. }, Event::Tick) if after != before => {
            error!(
                event = "CHILD_HUNG",
                child = name,
                pid,
                start_timeout_ms = c.policy.start_timeout.as_millis() as u64,
                "no first heartbeat within {}: SIGTERM to its process group",
                humantime::format_duration(c.policy.start_timeout)
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_requested_stop_logs_no_stderr_tail() {
        let exit = |code, signal, cause| {
            LastExit::new(code, signal, cause, "t".into())
                .with_stderr_tail("starting\nlistening on 127.0.0.1:1\n")
        };
        let clean = exit(Some(0), None, ExitCause::Stopped);
        assert!(clean.stderr_tail.is_some(), "the state keeps it");
        assert_eq!(stopped_tail(ExitCause::Stopped, &clean), None);
        for (le, cause) in [
            (exit(None, Some(9), ExitCause::Stopped), ExitCause::Stopped),
            (exit(Some(1), None, ExitCause::Stopped), ExitCause::Stopped),
            (exit(Some(0), None, ExitCause::Hang), ExitCause::Hang),
            (
                exit(None, Some(15), ExitCause::StartTimeout),
                ExitCause::StartTimeout,
            ),
        ] {
            assert_eq!(
                stopped_tail(cause, &le),
                Some("starting\nlistening on 127.0.0.1:1"),
                "{le:?}"
            );
        }
    }
}
