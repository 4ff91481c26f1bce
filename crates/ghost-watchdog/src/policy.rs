//! The restart policy: a pure state machine, one per child.
//!
//! [`next`] takes a child's state, an [`Event`], the child's [`Policy`] and a
//! [`Ctx`] (the time and a random fraction for the jitter, both passed in so
//! that tests are exact) and returns the new state and the [`Action`]s for the
//! shell (`supervisor.rs`) to perform. Nothing here reads a clock, touches a
//! file or sends a signal.
//!
//! ```text
//!            Start / reset / config change
//!   Idle ───────────────▶ Spawning ──spawned──▶ Starting ──first heartbeat──▶ Running
//!                           │  ▲  │ missing          │ exit, start timeout       │ exit, stale heartbeat
//!                           │  │  ▼                  ▼                           ▼
//!                           │  │ Missing        (failure) ◀── Stopping{Hang} ◀───┘ (TERM, KILL after grace)
//!                           │  │                    │
//!                           │  └── delay elapsed ── Backoff ◀── budget left
//!                           │                       │
//!                           └─ reset / cool-off ─ GivenUp ◀── budget spent (one alert)
//! ```
//!
//! Invariants (each has a test):
//! - at most `max_restarts` counted restarts of a child start within any
//!   `restart_window`; the next failure gives up on it;
//! - giving up raises exactly one alert per episode (until a reset or cool-off);
//! - the budget and the delay reset after `healthy_after` of running;
//! - a hang (stale heartbeat, no first heartbeat in time) is a failure that
//!   counts; restarts for a configuration change or an operator's request do not;
//! - after `StopRequested` nothing is ever spawned again.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What governs one child's restarts (from `[watchdog]` and the child's settings).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub max_restarts: u32,
    pub restart_window: Duration,
    pub restart_delay: Duration,
    pub restart_delay_max: Duration,
    /// Fraction (0..=1) by which a delay may be lengthened at random.
    pub restart_jitter: f64,
    pub healthy_after: Duration,
    /// SIGTERM, then SIGKILL after this long.
    pub stop_grace: Duration,
    /// Without a first heartbeat this long after the spawn, the child is hung.
    pub start_timeout: Duration,
    pub cool_off: Option<Duration>,
}

impl Policy {
    /// The delay before counted restart number `attempt` (0-based):
    /// `restart_delay × 2^attempt`, lengthened by `jitter × restart_jitter`,
    /// capped at `restart_delay_max`.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let base = self
            .restart_delay
            .saturating_mul(2u32.saturating_pow(attempt.min(31)));
        let nominal = base.min(self.restart_delay_max);
        let extra = nominal.mul_f64(self.restart_jitter.clamp(0.0, 1.0) * jitter.clamp(0.0, 1.0));
        (nominal + extra).min(self.restart_delay_max)
    }
}

/// The time and randomness a transition may use.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub now: Instant,
    /// A random fraction in `[0, 1)` for the restart jitter.
    pub jitter: f64,
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
}

impl Exit {
    pub fn code(c: i32) -> Exit {
        Exit {
            code: Some(c),
            signal: None,
        }
    }
    pub fn signal(s: i32) -> Exit {
        Exit {
            code: None,
            signal: Some(s),
        }
    }
    /// Could not be started at all (exec failed).
    pub const SPAWN_FAILED: Exit = Exit {
        code: None,
        signal: None,
    };
}

/// Why a live child is being stopped; decides what follows its exit. The
/// type lives in ghost-core because `state/watchdog.json` reports it.
pub use ghost_core::watchdog::StopReason;

/// Where a child is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet.
    Idle,
    /// A spawn was asked for; `Spawned` or `SpawnFailed` follows at once.
    Spawning,
    /// Spawned, no heartbeat yet.
    Starting { pid: u32, since: Instant },
    /// Heartbeat seen; `since` is when the first one was.
    Running { pid: u32, since: Instant },
    /// SIGTERM sent to its group; SIGKILL at `kill_at` unless it exits first.
    Stopping {
        pid: u32,
        reason: StopReason,
        kill_at: Instant,
        killed: bool,
    },
    /// Failed; will be started again at `until`.
    Backoff { until: Instant },
    /// Restart budget spent: left alone until reset or cool-off.
    GivenUp { since: Instant },
    /// Its program does not exist: reported, not started.
    Missing,
    /// Disabled by the configuration.
    Disabled,
    /// Stopped with the watchdog.
    Stopped,
}

impl Phase {
    /// The name used in `state/watchdog.json` and `ghostctl status`.
    pub fn name(&self) -> &'static str {
        self.report_state().as_str()
    }

    /// The state `state/watchdog.json` reports for this phase.
    pub fn report_state(&self) -> ghost_core::watchdog::ChildState {
        use ghost_core::watchdog::ChildState as S;
        match self {
            Phase::Idle => S::Idle,
            Phase::Spawning => S::Spawning,
            Phase::Starting { .. } => S::Starting,
            Phase::Running { .. } => S::Running,
            Phase::Stopping { .. } => S::Stopping,
            Phase::Backoff { .. } => S::Backoff,
            Phase::GivenUp { .. } => S::GivenUp,
            Phase::Missing => S::Missing,
            Phase::Disabled => S::Disabled,
            Phase::Stopped => S::Stopped,
        }
    }

    /// The process, while there is one.
    pub fn pid(&self) -> Option<u32> {
        match *self {
            Phase::Starting { pid, .. }
            | Phase::Running { pid, .. }
            | Phase::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }
}

/// One child's state.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildState {
    pub phase: Phase,
    /// When each counted restart was decided (pruned to the window).
    pub restarts: Vec<Instant>,
    /// Counted restarts since the child was last healthy: the delay's exponent.
    pub attempt: u32,
    pub last_exit: Option<Exit>,
    /// The given-up alert of this episode was raised.
    pub alerted: bool,
    /// `StopRequested` was seen: nothing is spawned any more.
    pub shutting_down: bool,
}

impl ChildState {
    pub fn new(enabled: bool) -> ChildState {
        ChildState {
            phase: if enabled {
                Phase::Idle
            } else {
                Phase::Disabled
            },
            restarts: Vec::new(),
            attempt: 0,
            last_exit: None,
            alerted: false,
            shutting_down: false,
        }
    }

    /// Counted restarts within the window ending at `now`.
    pub fn restarts_in_window(&self, policy: &Policy, now: Instant) -> u32 {
        self.restarts
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < policy.restart_window)
            .count() as u32
    }

    /// True while a process of this child may exist.
    pub fn is_live(&self) -> bool {
        matches!(
            self.phase,
            Phase::Spawning
                | Phase::Starting { .. }
                | Phase::Running { .. }
                | Phase::Stopping { .. }
        )
    }

    /// The next moment a `Tick` may change something.
    pub fn deadline(&self, policy: &Policy) -> Option<Instant> {
        match self.phase {
            Phase::Starting { since, .. } => Some(since + policy.start_timeout),
            Phase::Running { since, .. } if !self.restarts.is_empty() || self.attempt > 0 => {
                Some(since + policy.healthy_after)
            }
            Phase::Stopping {
                kill_at,
                killed: false,
                ..
            } => Some(kill_at),
            Phase::Backoff { until } => Some(until),
            Phase::GivenUp { since } => policy.cool_off.map(|c| since + c),
            _ => None,
        }
    }

    fn reset_budget(&mut self) {
        self.restarts.clear();
        self.attempt = 0;
        self.alerted = false;
    }
}

/// What happened to a child (or to the watchdog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Start the child (the watchdog starts).
    Start,
    /// The spawn asked for succeeded.
    Spawned { pid: u32 },
    /// The spawn failed: the program is missing, or exec failed otherwise.
    SpawnFailed { missing: bool },
    /// Its heartbeat appeared.
    FirstHeartbeat { pid: u32 },
    /// Its process exited (and was reaped).
    Exited { pid: u32, exit: Exit },
    /// A running child's heartbeat is older than `stale_after`.
    HeartbeatStale { pid: u32 },
    /// Time passed: the restart delay, the kill deadline, `healthy_after`,
    /// `start_timeout` and `cool_off` are checked against `Ctx::now`.
    Tick,
    /// `ghostctl restart CHILD`.
    OperatorReset,
    /// The child's settings changed on reload; `enabled` is the new setting.
    ConfigChanged { enabled: bool },
    /// The watchdog is stopping.
    StopRequested,
}

/// The signals the shell sends, always to the child's whole process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM (followed by SIGCONT, so that a stopped group can act on it).
    Term,
    Kill,
}

/// What the shell must do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Spawn the child, then report `Spawned` or `SpawnFailed`.
    Spawn,
    /// Signal the process group `pgid`.
    Signal { pgid: u32, sig: Sig },
    /// A restart was scheduled after `delay` (the shell wakes by `deadline`).
    ScheduleRestart {
        delay: Duration,
        restarts_in_window: u32,
    },
    /// The budget is spent: raise the critical alert (at most once per episode).
    RaiseAlert {
        restarts_in_window: u32,
        last_exit: Option<Exit>,
    },
    /// The restart budget was reset (healthy, operator, cool-off).
    BudgetReset { why: ResetWhy },
    /// Persist `state/watchdog.json`.
    WriteState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetWhy {
    Healthy,
    Operator,
    CoolOff,
    Reconfigured,
}

/// The transition function. Events that do not apply to the current phase
/// (a stale pid, a second exit) leave the state alone and ask for nothing.
pub fn next(s: &ChildState, ev: Event, p: &Policy, ctx: Ctx) -> (ChildState, Vec<Action>) {
    let mut st = s.clone();
    let mut acts = Vec::new();
    let now = ctx.now;
    // Keep only restarts that can still count.
    st.restarts
        .retain(|t| now.saturating_duration_since(*t) < p.restart_window);
    match (s.phase, ev) {
        // ---- stopping the watchdog wins over everything
        (_, Event::StopRequested) => {
            st.shutting_down = true;
            match s.phase {
                Phase::Starting { pid, .. } | Phase::Running { pid, .. } => {
                    stop(&mut st, &mut acts, pid, StopReason::Shutdown, p, now);
                }
                Phase::Stopping { reason, .. } if reason != StopReason::Shutdown => {
                    set_reason(&mut st, StopReason::Shutdown);
                    acts.push(Action::WriteState);
                }
                Phase::Stopping { .. } | Phase::Stopped | Phase::Disabled => {}
                Phase::Idle
                | Phase::Spawning
                | Phase::Backoff { .. }
                | Phase::GivenUp { .. }
                | Phase::Missing => {
                    st.phase = Phase::Stopped;
                    acts.push(Action::WriteState);
                }
            }
        }
        (_, _) if s.shutting_down => match (s.phase, ev) {
            // Only the stop itself proceeds.
            (Phase::Stopping { pid, .. }, Event::Exited { pid: e, exit }) if e == pid => {
                st.last_exit = Some(exit);
                st.phase = Phase::Stopped;
                acts.push(Action::WriteState);
            }
            (Phase::Stopping { .. }, Event::Tick) => kill_if_due(&mut st, &mut acts, now),
            (_, Event::Spawned { pid }) => {
                // Cannot happen (the stop clears Spawning), but never leave a
                // process behind.
                acts.push(Action::Signal {
                    pgid: pid,
                    sig: Sig::Kill,
                });
            }
            _ => {}
        },

        // ---- starting
        (Phase::Idle, Event::Start) => spawn(&mut st, &mut acts),
        (_, Event::Start) => {}
        (Phase::Spawning, Event::Spawned { pid }) => {
            st.phase = Phase::Starting { pid, since: now };
            acts.push(Action::WriteState);
        }
        (Phase::Spawning, Event::SpawnFailed { missing: true }) => {
            st.phase = Phase::Missing;
            acts.push(Action::WriteState);
        }
        (Phase::Spawning, Event::SpawnFailed { missing: false }) => {
            failed(&mut st, &mut acts, Exit::SPAWN_FAILED, p, ctx);
        }
        (_, Event::Spawned { pid }) => {
            // A process nobody asked for (cannot happen): never leave it behind.
            acts.push(Action::Signal {
                pgid: pid,
                sig: Sig::Kill,
            });
        }
        (_, Event::SpawnFailed { .. }) => {}
        (Phase::Starting { pid, .. }, Event::FirstHeartbeat { pid: h }) if h == pid => {
            st.phase = Phase::Running { pid, since: now };
            acts.push(Action::WriteState);
        }
        (_, Event::FirstHeartbeat { .. }) => {}

        // ---- exits
        (
            Phase::Starting { pid, .. } | Phase::Running { pid, .. },
            Event::Exited { pid: e, exit },
        ) if e == pid => {
            failed(&mut st, &mut acts, exit, p, ctx);
        }
        (Phase::Stopping { pid, reason, .. }, Event::Exited { pid: e, exit }) if e == pid => {
            st.last_exit = Some(exit);
            match reason {
                StopReason::Hang | StopReason::StartTimeout => {
                    // The exit the watchdog forced is not the cause; keep the
                    // record of why (last_exit shows the signal it took).
                    failed(&mut st, &mut acts, exit, p, ctx);
                }
                StopReason::Reconfigure | StopReason::OperatorRestart => spawn(&mut st, &mut acts),
                StopReason::Disable => {
                    st.phase = Phase::Disabled;
                    acts.push(Action::WriteState);
                }
                StopReason::Shutdown => {
                    st.phase = Phase::Stopped;
                    acts.push(Action::WriteState);
                }
            }
        }
        (_, Event::Exited { .. }) => {}

        // ---- hangs
        (Phase::Running { pid, .. }, Event::HeartbeatStale { pid: h }) if h == pid => {
            stop(&mut st, &mut acts, pid, StopReason::Hang, p, now);
        }
        (_, Event::HeartbeatStale { .. }) => {}

        // ---- time
        (Phase::Starting { pid, since }, Event::Tick) => {
            if now >= since + p.start_timeout {
                stop(&mut st, &mut acts, pid, StopReason::StartTimeout, p, now);
            }
        }
        (Phase::Running { since, .. }, Event::Tick) => {
            if (!s.restarts.is_empty() || s.attempt > 0) && now >= since + p.healthy_after {
                st.reset_budget();
                acts.push(Action::BudgetReset {
                    why: ResetWhy::Healthy,
                });
                acts.push(Action::WriteState);
            } else if st.restarts.len() != s.restarts.len() {
                acts.push(Action::WriteState);
            }
        }
        (Phase::Stopping { .. }, Event::Tick) => kill_if_due(&mut st, &mut acts, now),
        (Phase::Backoff { until }, Event::Tick) => {
            if now >= until {
                spawn(&mut st, &mut acts);
            }
        }
        (Phase::GivenUp { since }, Event::Tick) => {
            if p.cool_off.is_some_and(|c| now >= since + c) {
                st.reset_budget();
                acts.push(Action::BudgetReset {
                    why: ResetWhy::CoolOff,
                });
                spawn(&mut st, &mut acts);
            }
        }
        (
            Phase::Idle | Phase::Spawning | Phase::Missing | Phase::Disabled | Phase::Stopped,
            Event::Tick,
        ) => {}

        // A stop for shutdown is final (it only happens while shutting down,
        // handled above; kept here so the table has no surprise).
        (
            Phase::Stopping {
                reason: StopReason::Shutdown,
                ..
            },
            Event::OperatorReset | Event::ConfigChanged { .. },
        ) => {}

        // ---- the operator
        (
            Phase::GivenUp { .. } | Phase::Backoff { .. } | Phase::Missing | Phase::Idle,
            Event::OperatorReset,
        ) => {
            st.reset_budget();
            acts.push(Action::BudgetReset {
                why: ResetWhy::Operator,
            });
            spawn(&mut st, &mut acts);
        }
        (Phase::Starting { pid, .. } | Phase::Running { pid, .. }, Event::OperatorReset) => {
            st.reset_budget();
            acts.push(Action::BudgetReset {
                why: ResetWhy::Operator,
            });
            stop(&mut st, &mut acts, pid, StopReason::OperatorRestart, p, now);
        }
        (Phase::Stopping { reason, .. }, Event::OperatorReset) => {
            if reason != StopReason::Disable {
                st.reset_budget();
                acts.push(Action::BudgetReset {
                    why: ResetWhy::Operator,
                });
                if matches!(reason, StopReason::Hang | StopReason::StartTimeout) {
                    set_reason(&mut st, StopReason::OperatorRestart);
                }
                acts.push(Action::WriteState);
            }
        }
        (Phase::Spawning, Event::OperatorReset) => {
            st.reset_budget();
            acts.push(Action::BudgetReset {
                why: ResetWhy::Operator,
            });
        }
        // Disabled stays disabled: the configuration decides. Stopped only
        // happens while shutting down (handled above).
        (Phase::Disabled | Phase::Stopped, Event::OperatorReset) => {}

        // ---- reconfiguration
        (
            Phase::Starting { pid, .. } | Phase::Running { pid, .. },
            Event::ConfigChanged { enabled },
        ) => {
            let why = if enabled {
                StopReason::Reconfigure
            } else {
                StopReason::Disable
            };
            stop(&mut st, &mut acts, pid, why, p, now);
        }
        (Phase::Stopping { reason, .. }, Event::ConfigChanged { enabled }) => {
            let why = if enabled {
                if reason == StopReason::OperatorRestart {
                    StopReason::OperatorRestart
                } else {
                    StopReason::Reconfigure
                }
            } else {
                StopReason::Disable
            };
            if why != reason {
                set_reason(&mut st, why);
                acts.push(Action::WriteState);
            }
        }
        (
            Phase::Idle
            | Phase::Backoff { .. }
            | Phase::GivenUp { .. }
            | Phase::Missing
            | Phase::Disabled
            | Phase::Stopped,
            Event::ConfigChanged { enabled: true },
        ) => {
            // New settings deserve a fresh try, at once.
            st.reset_budget();
            acts.push(Action::BudgetReset {
                why: ResetWhy::Reconfigured,
            });
            spawn(&mut st, &mut acts);
        }
        (
            Phase::Idle
            | Phase::Backoff { .. }
            | Phase::GivenUp { .. }
            | Phase::Missing
            | Phase::Disabled
            | Phase::Stopped,
            Event::ConfigChanged { enabled: false },
        ) => {
            if st.phase != Phase::Disabled {
                st.phase = Phase::Disabled;
                acts.push(Action::WriteState);
            }
        }
        (Phase::Spawning, Event::ConfigChanged { .. }) => {}
    }
    (st, acts)
}

fn spawn(st: &mut ChildState, acts: &mut Vec<Action>) {
    st.phase = Phase::Spawning;
    acts.push(Action::Spawn);
}

fn stop(
    st: &mut ChildState,
    acts: &mut Vec<Action>,
    pid: u32,
    reason: StopReason,
    p: &Policy,
    now: Instant,
) {
    st.phase = Phase::Stopping {
        pid,
        reason,
        kill_at: now + p.stop_grace,
        killed: false,
    };
    acts.push(Action::Signal {
        pgid: pid,
        sig: Sig::Term,
    });
    acts.push(Action::WriteState);
}

fn set_reason(st: &mut ChildState, r: StopReason) {
    if let Phase::Stopping { reason, .. } = &mut st.phase {
        *reason = r;
    }
}

fn kill_if_due(st: &mut ChildState, acts: &mut Vec<Action>, now: Instant) {
    if let Phase::Stopping {
        pid,
        kill_at,
        killed,
        ..
    } = &mut st.phase
    {
        if !*killed && now >= *kill_at {
            *killed = true;
            acts.push(Action::Signal {
                pgid: *pid,
                sig: Sig::Kill,
            });
            acts.push(Action::WriteState);
        }
    }
}

/// A failure (crash, hang, exec failure): restart after a delay while the
/// budget lasts, else give up with one alert.
fn failed(st: &mut ChildState, acts: &mut Vec<Action>, exit: Exit, p: &Policy, ctx: Ctx) {
    st.last_exit = Some(exit);
    let used = st.restarts_in_window(p, ctx.now);
    if used >= p.max_restarts {
        st.phase = Phase::GivenUp { since: ctx.now };
        if !st.alerted {
            st.alerted = true;
            acts.push(Action::RaiseAlert {
                restarts_in_window: used,
                last_exit: Some(exit),
            });
        }
    } else {
        let delay = p.delay(st.attempt, ctx.jitter);
        st.restarts.push(ctx.now);
        st.attempt = st.attempt.saturating_add(1);
        st.phase = Phase::Backoff {
            until: ctx.now + delay,
        };
        acts.push(Action::ScheduleRestart {
            delay,
            restarts_in_window: used + 1,
        });
    }
    acts.push(Action::WriteState);
}

#[cfg(test)]
mod tests;
