//! Every transition of the restart policy, the scenarios of the issue, and a
//! property test over random event sequences.

use super::*;
use proptest::prelude::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The `[watchdog]` defaults (docs/formats.md), without jitter unless a test adds it.
fn policy() -> Policy {
    Policy {
        max_restarts: 2,
        restart_window: secs(300),
        restart_delay: secs(1),
        restart_delay_max: secs(60),
        restart_jitter: 0.0,
        healthy_after: secs(60),
        stop_grace: secs(10),
        start_timeout: secs(60),
        cool_off: None,
    }
}

/// A child driven through events on a fake clock, recording every action.
struct Sim {
    p: Policy,
    t0: Instant,
    now: Instant,
    s: ChildState,
    next_pid: u32,
    log: Vec<(Duration, Action)>,
}

impl Sim {
    fn new(p: Policy) -> Sim {
        let t0 = Instant::now();
        Sim {
            p,
            t0,
            now: t0,
            s: ChildState::new(true),
            next_pid: 100,
            log: Vec::new(),
        }
    }

    /// Feed one event; perform `Spawn` the way the shell does (feed `Spawned`).
    fn ev(&mut self, e: Event) -> Vec<Action> {
        let (s, acts) = next(
            &self.s,
            e,
            &self.p,
            Ctx {
                now: self.now,
                jitter: 0.0,
            },
        );
        self.s = s;
        let mut all = acts.clone();
        for a in &acts {
            self.log.push((self.now - self.t0, *a));
            if *a == Action::Spawn {
                self.next_pid += 1;
                let pid = self.next_pid;
                all.extend(self.ev(Event::Spawned { pid }));
            }
        }
        all
    }

    fn at(&mut self, d: Duration) -> &mut Sim {
        self.now = self.t0 + d;
        self
    }

    fn tick_at(&mut self, d: Duration) -> Vec<Action> {
        self.at(d);
        self.ev(Event::Tick)
    }

    fn pid(&self) -> u32 {
        self.s.phase.pid().expect("a live child")
    }

    fn exit(&mut self, code: i32) -> Vec<Action> {
        let pid = self.pid();
        self.ev(Event::Exited {
            pid,
            exit: Exit::code(code),
        })
    }

    fn beat(&mut self) -> Vec<Action> {
        let pid = self.pid();
        self.ev(Event::FirstHeartbeat { pid })
    }

    fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.log.iter().filter(|(_, a)| f(a)).count()
    }

    fn spawns(&self) -> usize {
        self.count(|a| *a == Action::Spawn)
    }

    fn alerts(&self) -> usize {
        self.count(|a| matches!(a, Action::RaiseAlert { .. }))
    }
}

fn started(p: Policy) -> Sim {
    let mut sim = Sim::new(p);
    let acts = sim.ev(Event::Start);
    assert_eq!(acts[0], Action::Spawn);
    assert!(matches!(sim.s.phase, Phase::Starting { .. }));
    sim
}

// ---------------------------------------------------------------- the delay

#[test]
fn delay_doubles_from_restart_delay_and_caps_at_restart_delay_max() {
    let p = policy();
    let want = [1, 2, 4, 8, 16, 32, 60, 60, 60];
    for (n, w) in want.iter().enumerate() {
        assert_eq!(p.delay(n as u32, 0.0), secs(*w), "attempt {n}");
    }
    // Huge attempt numbers neither overflow nor exceed the cap.
    assert_eq!(p.delay(u32::MAX, 0.99), secs(60));
}

#[test]
fn jitter_lengthens_by_at_most_the_configured_fraction_and_never_past_the_cap() {
    let p = Policy {
        restart_jitter: 0.5,
        ..policy()
    };
    assert_eq!(p.delay(0, 0.0), secs(1));
    assert_eq!(p.delay(0, 0.5), ms(1250));
    assert_eq!(p.delay(1, 1.0), secs(3));
    assert_eq!(p.delay(5, 1.0), secs(48));
    assert_eq!(p.delay(6, 1.0), secs(60), "capped");
    // Out-of-range inputs are clamped.
    assert_eq!(p.delay(0, 7.0), ms(1500));
    assert_eq!(p.delay(0, -1.0), secs(1));
}

#[test]
fn jitter_reaches_the_scheduled_restart() {
    let p = Policy {
        restart_jitter: 0.2,
        ..policy()
    };
    let mut s = ChildState::new(true);
    let t = Instant::now();
    let ctx = Ctx {
        now: t,
        jitter: 0.5,
    };
    (s, _) = next(&s, Event::Start, &p, ctx);
    (s, _) = next(&s, Event::Spawned { pid: 7 }, &p, ctx);
    let (s, acts) = next(
        &s,
        Event::Exited {
            pid: 7,
            exit: Exit::code(1),
        },
        &p,
        ctx,
    );
    assert_eq!(
        acts[0],
        Action::ScheduleRestart {
            delay: ms(1100),
            restarts_in_window: 1
        }
    );
    assert_eq!(
        s.phase,
        Phase::Backoff {
            until: t + ms(1100)
        }
    );
}

// ---------------------------------------------------------- the restart loop

#[test]
fn a_child_that_exits_at_once_is_restarted_exactly_twice_then_given_up_with_one_alert() {
    let mut sim = started(policy());
    // First run dies at once: restart 1 after 1 s.
    let acts = sim.exit(1);
    assert_eq!(
        acts,
        [
            Action::ScheduleRestart {
                delay: secs(1),
                restarts_in_window: 1
            },
            Action::WriteState
        ]
    );
    assert_eq!(
        sim.s.phase,
        Phase::Backoff {
            until: sim.t0 + secs(1)
        }
    );
    assert!(sim.tick_at(ms(999)).is_empty(), "not before the delay");
    assert_eq!(sim.tick_at(secs(1))[0], Action::Spawn);
    // Second run dies at once: restart 2 after 2 s.
    let acts = sim.exit(1);
    assert_eq!(
        acts[0],
        Action::ScheduleRestart {
            delay: secs(2),
            restarts_in_window: 2
        }
    );
    assert!(sim.tick_at(ms(2999)).is_empty());
    assert_eq!(sim.tick_at(secs(3))[0], Action::Spawn);
    // Third run dies: budget spent.
    let acts = sim.exit(3);
    assert_eq!(
        acts,
        [
            Action::RaiseAlert {
                restarts_in_window: 2,
                last_exit: Some(Exit::code(3))
            },
            Action::WriteState
        ]
    );
    assert_eq!(sim.s.phase, Phase::GivenUp { since: sim.now });
    assert_eq!(sim.s.restarts_in_window(&sim.p, sim.now), 2);
    // Nothing more happens, however long we wait, and no second alert.
    for t in [4, 60, 299, 301, 3600, 86_400] {
        assert!(sim.tick_at(secs(t)).is_empty(), "at {t}s");
    }
    assert_eq!(sim.spawns(), 3, "the first start and exactly two restarts");
    assert_eq!(sim.alerts(), 1);
    assert_eq!(sim.s.last_exit, Some(Exit::code(3)));
}

#[test]
fn failures_spread_wider_than_the_window_never_give_up() {
    let mut sim = started(policy());
    let mut t = 0;
    for round in 0..10 {
        sim.beat();
        // Crash after 50 s of running: less than healthy_after, so only the
        // window's passing frees the budget.
        t += 50;
        sim.at(secs(t));
        let acts = sim.exit(1);
        assert!(
            matches!(acts[0], Action::ScheduleRestart { .. }),
            "round {round}: {acts:?}"
        );
        // Wait out the delay and a full window before the next crash.
        t += 301;
        assert_eq!(sim.tick_at(secs(t))[0], Action::Spawn, "round {round}");
    }
    assert_eq!(sim.alerts(), 0);
    // Never healthy for 60 s: the delay kept doubling up to its cap.
    assert_eq!(sim.s.attempt, 10);
}

#[test]
fn the_budget_counts_restarts_within_the_window_only() {
    let mut sim = started(policy());
    sim.at(secs(10));
    sim.exit(1); // restart 1 at 10 s
    sim.tick_at(secs(11));
    sim.at(secs(20));
    sim.exit(1); // restart 2 at 20 s
    sim.tick_at(secs(22));
    // At 311 s the first restart (10 s) has left the window: one more allowed.
    sim.at(secs(311));
    let acts = sim.exit(1);
    assert_eq!(
        acts[0],
        Action::ScheduleRestart {
            delay: secs(4),
            restarts_in_window: 2
        }
    );
    sim.tick_at(secs(315));
    sim.at(secs(316));
    let acts = sim.exit(1);
    assert!(matches!(acts[0], Action::RaiseAlert { .. }), "{acts:?}");
}

#[test]
fn the_budget_resets_after_healthy_after_of_running() {
    let mut sim = started(policy());
    sim.exit(1);
    sim.tick_at(secs(1));
    sim.at(ms(1500));
    sim.beat();
    assert_eq!(sim.s.deadline(&sim.p), Some(sim.t0 + ms(61_500)));
    assert!(
        sim.tick_at(ms(61_499)).is_empty(),
        "not yet healthy long enough"
    );
    let acts = sim.tick_at(ms(61_500));
    assert_eq!(
        acts,
        [
            Action::BudgetReset {
                why: ResetWhy::Healthy
            },
            Action::WriteState
        ]
    );
    assert!(sim.s.restarts.is_empty());
    assert_eq!(sim.s.attempt, 0);
    assert_eq!(sim.s.deadline(&sim.p), None, "nothing left to reset");
    assert!(sim.tick_at(secs(100)).is_empty());
    // The next crash starts over: delay 1 s, and two restarts again.
    sim.at(secs(120));
    assert_eq!(
        sim.exit(1)[0],
        Action::ScheduleRestart {
            delay: secs(1),
            restarts_in_window: 1
        }
    );
    sim.tick_at(secs(121));
    sim.at(secs(122));
    assert!(matches!(sim.exit(1)[0], Action::ScheduleRestart { .. }));
    sim.tick_at(secs(124));
    sim.at(secs(125));
    assert!(matches!(sim.exit(1)[0], Action::RaiseAlert { .. }));
}

#[test]
fn healthy_is_counted_from_the_first_heartbeat_not_the_spawn() {
    let mut sim = started(policy());
    sim.exit(1);
    sim.tick_at(secs(1)); // spawned at 1 s
    sim.at(secs(50));
    sim.beat(); // first heartbeat at 50 s
    assert!(sim.tick_at(secs(100)).is_empty());
    assert!(!sim.s.restarts.is_empty());
    assert_eq!(
        sim.tick_at(secs(110))[0],
        Action::BudgetReset {
            why: ResetWhy::Healthy
        }
    );
}

// ------------------------------------------------------------------- hangs

#[test]
fn a_stale_heartbeat_gets_term_then_kill_after_the_grace_and_counts() {
    let mut sim = started(policy());
    sim.beat();
    let pid = sim.pid();
    sim.at(secs(90));
    let acts = sim.ev(Event::HeartbeatStale { pid });
    assert_eq!(
        acts,
        [
            Action::Signal {
                pgid: pid,
                sig: Sig::Term
            },
            Action::WriteState
        ]
    );
    assert_eq!(
        sim.s.phase,
        Phase::Stopping {
            pid,
            reason: StopReason::Hang,
            kill_at: sim.t0 + secs(100),
            killed: false
        }
    );
    assert!(sim.tick_at(ms(99_999)).is_empty());
    assert_eq!(
        sim.tick_at(secs(100)),
        [
            Action::Signal {
                pgid: pid,
                sig: Sig::Kill
            },
            Action::WriteState
        ]
    );
    assert!(sim.tick_at(secs(105)).is_empty(), "SIGKILL only once");
    sim.at(secs(101));
    let acts = sim.ev(Event::Exited {
        pid,
        exit: Exit::signal(9),
    });
    assert_eq!(
        acts[0],
        Action::ScheduleRestart {
            delay: secs(1),
            restarts_in_window: 1
        }
    );
    assert_eq!(sim.s.last_exit, Some(Exit::signal(9)));
    assert_eq!(sim.tick_at(secs(102))[0], Action::Spawn);
}

#[test]
fn a_hung_child_that_exits_on_term_is_not_killed() {
    let mut sim = started(policy());
    sim.beat();
    let pid = sim.pid();
    sim.ev(Event::HeartbeatStale { pid });
    sim.at(secs(2));
    sim.ev(Event::Exited {
        pid,
        exit: Exit::code(0),
    });
    assert!(matches!(sim.s.phase, Phase::Backoff { .. }));
    assert_eq!(
        sim.count(|a| matches!(a, Action::Signal { sig: Sig::Kill, .. })),
        0
    );
}

#[test]
fn hangs_spend_the_budget_like_crashes() {
    let mut sim = started(policy());
    for i in 0..3u64 {
        sim.beat();
        let pid = sim.pid();
        sim.at(secs(100 * i + 10));
        sim.ev(Event::HeartbeatStale { pid });
        sim.at(secs(100 * i + 11));
        let acts = sim.ev(Event::Exited {
            pid,
            exit: Exit::signal(15),
        });
        if i < 2 {
            assert!(
                matches!(acts[0], Action::ScheduleRestart { .. }),
                "{i}: {acts:?}"
            );
            sim.tick_at(secs(100 * i + 20));
        } else {
            assert!(matches!(acts[0], Action::RaiseAlert { .. }), "{acts:?}");
        }
    }
}

#[test]
fn no_first_heartbeat_within_start_timeout_is_a_hang() {
    let mut sim = started(policy());
    let pid = sim.pid();
    assert_eq!(sim.s.deadline(&sim.p), Some(sim.t0 + secs(60)));
    assert!(sim.tick_at(ms(59_999)).is_empty());
    let acts = sim.tick_at(secs(60));
    assert_eq!(
        acts[0],
        Action::Signal {
            pgid: pid,
            sig: Sig::Term
        }
    );
    assert!(matches!(
        sim.s.phase,
        Phase::Stopping {
            reason: StopReason::StartTimeout,
            ..
        }
    ));
    sim.ev(Event::Exited {
        pid,
        exit: Exit::signal(15),
    });
    assert!(matches!(sim.s.phase, Phase::Backoff { .. }));
    assert_eq!(sim.s.restarts.len(), 1);
}

#[test]
fn heartbeat_staleness_before_the_first_heartbeat_is_the_start_timeouts_job() {
    let mut sim = started(policy());
    let pid = sim.pid();
    assert!(sim.ev(Event::HeartbeatStale { pid }).is_empty());
    assert!(matches!(sim.s.phase, Phase::Starting { .. }));
}

// ----------------------------------------------------------------- stopping

#[test]
fn stop_terms_every_live_child_kills_after_the_grace_and_ends_stopped() {
    let mut sim = started(policy());
    sim.beat();
    let pid = sim.pid();
    sim.at(secs(5));
    let acts = sim.ev(Event::StopRequested);
    assert_eq!(
        acts[0],
        Action::Signal {
            pgid: pid,
            sig: Sig::Term
        }
    );
    assert_eq!(sim.s.deadline(&sim.p), Some(sim.t0 + secs(15)));
    assert_eq!(
        sim.tick_at(secs(15))[0],
        Action::Signal {
            pgid: pid,
            sig: Sig::Kill
        }
    );
    sim.ev(Event::Exited {
        pid,
        exit: Exit::signal(9),
    });
    assert_eq!(sim.s.phase, Phase::Stopped);
    assert!(!sim.s.is_live());
    assert_eq!(sim.alerts(), 0, "a stop is not a failure");
}

#[test]
fn stop_during_a_pending_restart_cancels_it() {
    let mut sim = started(policy());
    sim.exit(1);
    assert!(matches!(sim.s.phase, Phase::Backoff { .. }));
    let acts = sim.ev(Event::StopRequested);
    assert_eq!(acts, [Action::WriteState]);
    assert_eq!(sim.s.phase, Phase::Stopped);
    assert_eq!(sim.s.deadline(&sim.p), None);
    for t in [1, 2, 100] {
        assert!(sim.tick_at(secs(t)).is_empty());
    }
    assert_eq!(sim.spawns(), 1);
}

#[test]
fn after_a_stop_nothing_is_ever_spawned() {
    let p = Policy {
        cool_off: Some(secs(10)),
        ..policy()
    };
    let mut sim = started(p);
    sim.beat();
    let pid = sim.pid();
    sim.ev(Event::StopRequested);
    // Everything that would otherwise spawn:
    for e in [
        Event::OperatorReset,
        Event::ConfigChanged { enabled: true },
        Event::Start,
        Event::HeartbeatStale { pid },
        Event::Tick,
    ] {
        let acts = sim.ev(e);
        assert!(!acts.contains(&Action::Spawn), "{e:?}: {acts:?}");
    }
    sim.ev(Event::Exited {
        pid,
        exit: Exit::code(0),
    });
    assert_eq!(sim.s.phase, Phase::Stopped);
    for e in [
        Event::OperatorReset,
        Event::ConfigChanged { enabled: true },
        Event::Start,
        Event::Tick,
    ] {
        assert!(sim.ev(e).is_empty(), "{e:?}");
    }
    assert_eq!(sim.spawns(), 1);
}

#[test]
fn stop_while_stopping_for_a_hang_keeps_the_kill_deadline_and_does_not_restart() {
    let mut sim = started(policy());
    sim.beat();
    let pid = sim.pid();
    sim.at(secs(1));
    sim.ev(Event::HeartbeatStale { pid });
    sim.at(secs(5));
    assert_eq!(sim.ev(Event::StopRequested), [Action::WriteState]);
    assert!(matches!(
        sim.s.phase,
        Phase::Stopping {
            reason: StopReason::Shutdown,
            ..
        }
    ));
    assert_eq!(sim.s.deadline(&sim.p), Some(sim.t0 + secs(11)));
    sim.ev(Event::Exited {
        pid,
        exit: Exit::signal(15),
    });
    assert_eq!(sim.s.phase, Phase::Stopped);
    assert_eq!(sim.spawns(), 1);
}

#[test]
fn stop_of_given_up_missing_and_disabled_children() {
    for phase in [
        Phase::GivenUp {
            since: Instant::now(),
        },
        Phase::Missing,
        Phase::Idle,
    ] {
        let s = ChildState {
            phase,
            ..ChildState::new(true)
        };
        let (s, acts) = next(
            &s,
            Event::StopRequested,
            &policy(),
            Ctx {
                now: Instant::now(),
                jitter: 0.0,
            },
        );
        assert_eq!((s.phase, acts), (Phase::Stopped, vec![Action::WriteState]));
    }
    let s = ChildState::new(false);
    let (s2, acts) = next(
        &s,
        Event::StopRequested,
        &policy(),
        Ctx {
            now: Instant::now(),
            jitter: 0.0,
        },
    );
    assert_eq!(s2.phase, Phase::Disabled);
    assert!(acts.is_empty());
}

// ------------------------------------------------------------ the operator

#[test]
fn operator_reset_of_a_given_up_child_starts_it_with_a_fresh_budget() {
    let mut sim = started(policy());
    for t in [1, 3] {
        sim.exit(1);
        sim.tick_at(secs(t));
    }
    sim.exit(1);
    assert!(matches!(sim.s.phase, Phase::GivenUp { .. }));
    assert_eq!(sim.alerts(), 1);
    sim.at(secs(10));
    let acts = sim.ev(Event::OperatorReset);
    assert_eq!(
        acts[0],
        Action::BudgetReset {
            why: ResetWhy::Operator
        }
    );
    assert_eq!(acts[1], Action::Spawn);
    assert!(matches!(sim.s.phase, Phase::Starting { .. }));
    assert!(sim.s.restarts.is_empty());
    // A fresh budget: two more restarts, then a new episode with its own alert.
    for t in [11, 13] {
        assert!(matches!(sim.exit(1)[0], Action::ScheduleRestart { .. }));
        sim.tick_at(secs(t));
    }
    assert!(matches!(sim.exit(1)[0], Action::RaiseAlert { .. }));
    assert_eq!(sim.alerts(), 2);
}

#[test]
fn operator_reset_during_backoff_starts_at_once() {
    let mut sim = started(policy());
    sim.exit(1);
    let acts = sim.ev(Event::OperatorReset);
    assert!(acts.contains(&Action::Spawn));
    assert!(matches!(sim.s.phase, Phase::Starting { .. }));
    assert!(sim.s.restarts.is_empty());
}

#[test]
fn operator_restart_of_a_running_child_stops_it_and_starts_it_without_counting() {
    let mut sim = started(policy());
    sim.exit(1);
    sim.tick_at(secs(1));
    sim.beat();
    let pid = sim.pid();
    let acts = sim.ev(Event::OperatorReset);
    assert_eq!(
        acts[1],
        Action::Signal {
            pgid: pid,
            sig: Sig::Term
        }
    );
    assert!(sim.s.restarts.is_empty());
    let acts = sim.ev(Event::Exited {
        pid,
        exit: Exit::signal(15),
    });
    assert_eq!(acts, [Action::Spawn, Action::WriteState]);
    assert!(sim.s.restarts.is_empty());
    assert_eq!(sim.s.attempt, 0);
}

#[test]
fn operator_reset_while_a_hang_is_being_stopped_turns_it_into_an_uncounted_restart() {
    let mut sim = started(policy());
    sim.beat();
    let pid = sim.pid();
    sim.ev(Event::HeartbeatStale { pid });
    sim.ev(Event::OperatorReset);
    assert!(matches!(
        sim.s.phase,
        Phase::Stopping {
            reason: StopReason::OperatorRestart,
            ..
        }
    ));
    sim.ev(Event::Exited {
        pid,
        exit: Exit::signal(15),
    });
    assert!(matches!(sim.s.phase, Phase::Starting { .. }));
    assert!(sim.s.restarts.is_empty());
}

#[test]
fn operator_reset_of_a_missing_child_tries_again_and_a_disabled_one_stays_disabled() {
    let mut sim = Sim::new(policy());
    let (s, _) = next(
        &sim.s,
        Event::Start,
        &sim.p,
        Ctx {
            now: sim.now,
            jitter: 0.0,
        },
    );
    sim.s = s;
    sim.ev(Event::SpawnFailed { missing: true });
    assert_eq!(sim.s.phase, Phase::Missing);
    assert!(
        sim.tick_at(secs(1000)).is_empty(),
        "missing is not retried on its own"
    );
    let acts = sim.ev(Event::OperatorReset);
    assert!(acts.contains(&Action::Spawn));
    let mut d = Sim::new(policy());
    d.s = ChildState::new(false);
    assert!(d.ev(Event::OperatorReset).is_empty());
    assert_eq!(d.s.phase, Phase::Disabled);
}

#[test]
fn cool_off_restarts_a_given_up_child_and_a_new_give_up_alerts_again() {
    let p = Policy {
        cool_off: Some(secs(600)),
        ..policy()
    };
    let mut sim = started(p);
    for t in [1, 3] {
        sim.exit(1);
        sim.tick_at(secs(t));
    }
    sim.at(secs(4));
    sim.exit(1);
    assert_eq!(sim.s.deadline(&sim.p), Some(sim.t0 + secs(604)));
    assert!(sim.tick_at(secs(603)).is_empty());
    let acts = sim.tick_at(secs(604));
    assert_eq!(
        acts[0],
        Action::BudgetReset {
            why: ResetWhy::CoolOff
        }
    );
    assert_eq!(acts[1], Action::Spawn);
    for t in [606, 608] {
        sim.exit(1);
        sim.tick_at(secs(t));
    }
    sim.exit(1);
    assert_eq!(sim.alerts(), 2);
}

#[test]
fn without_cool_off_a_given_up_child_waits_for_a_person() {
    let mut sim = started(policy());
    for t in [1, 3] {
        sim.exit(1);
        sim.tick_at(secs(t));
    }
    sim.exit(1);
    assert_eq!(sim.s.deadline(&sim.p), None);
    assert!(sim.tick_at(secs(1_000_000)).is_empty());
}

// ------------------------------------------------------- reconfiguration

#[test]
fn a_changed_child_is_restarted_at_once_without_counting() {
    let mut sim = started(policy());
    sim.beat();
    let pid = sim.pid();
    let acts = sim.ev(Event::ConfigChanged { enabled: true });
    assert_eq!(
        acts[0],
        Action::Signal {
            pgid: pid,
            sig: Sig::Term
        }
    );
    let acts = sim.ev(Event::Exited {
        pid,
        exit: Exit::code(0),
    });
    assert_eq!(acts[0], Action::Spawn);
    assert!(sim.s.restarts.is_empty());
    assert_eq!(sim.alerts(), 0);
}

#[test]
fn a_disabled_child_is_stopped_and_an_enabled_one_started() {
    let mut sim = started(policy());
    sim.beat();
    let pid = sim.pid();
    sim.ev(Event::ConfigChanged { enabled: false });
    sim.ev(Event::Exited {
        pid,
        exit: Exit::code(0),
    });
    assert_eq!(sim.s.phase, Phase::Disabled);
    assert!(sim.tick_at(secs(1000)).is_empty());
    let acts = sim.ev(Event::ConfigChanged { enabled: true });
    assert!(acts.contains(&Action::Spawn));
    assert!(matches!(sim.s.phase, Phase::Starting { .. }));
}

#[test]
fn new_settings_give_a_given_up_child_a_fresh_try() {
    let mut sim = started(policy());
    for t in [1, 3] {
        sim.exit(1);
        sim.tick_at(secs(t));
    }
    sim.exit(1);
    let acts = sim.ev(Event::ConfigChanged { enabled: true });
    assert_eq!(
        acts[0],
        Action::BudgetReset {
            why: ResetWhy::Reconfigured
        }
    );
    assert!(matches!(sim.s.phase, Phase::Starting { .. }));
}

#[test]
fn disabling_a_child_in_backoff_cancels_its_restart() {
    let mut sim = started(policy());
    sim.exit(1);
    sim.ev(Event::ConfigChanged { enabled: false });
    assert_eq!(sim.s.phase, Phase::Disabled);
    assert!(sim.tick_at(secs(10)).is_empty());
}

#[test]
fn config_changes_while_stopping_retarget_what_follows() {
    let mut sim = started(policy());
    sim.beat();
    let pid = sim.pid();
    sim.ev(Event::HeartbeatStale { pid });
    sim.ev(Event::ConfigChanged { enabled: false });
    assert!(matches!(
        sim.s.phase,
        Phase::Stopping {
            reason: StopReason::Disable,
            ..
        }
    ));
    sim.ev(Event::ConfigChanged { enabled: true });
    assert!(matches!(
        sim.s.phase,
        Phase::Stopping {
            reason: StopReason::Reconfigure,
            ..
        }
    ));
    sim.ev(Event::Exited {
        pid,
        exit: Exit::signal(15),
    });
    assert!(matches!(sim.s.phase, Phase::Starting { .. }));
    assert!(sim.s.restarts.is_empty(), "the hang no longer counts");
}

// ---------------------------------------------------------- spawn results

#[test]
fn a_missing_program_is_reported_not_restarted() {
    let mut s = ChildState::new(true);
    let ctx = Ctx {
        now: Instant::now(),
        jitter: 0.0,
    };
    let p = policy();
    (s, _) = next(&s, Event::Start, &p, ctx);
    assert_eq!(s.phase, Phase::Spawning);
    let (s, acts) = next(&s, Event::SpawnFailed { missing: true }, &p, ctx);
    assert_eq!((s.phase, acts), (Phase::Missing, vec![Action::WriteState]));
    assert_eq!(s.deadline(&p), None);
}

#[test]
fn an_exec_failure_counts_like_a_crash() {
    let mut s = ChildState::new(true);
    let ctx = Ctx {
        now: Instant::now(),
        jitter: 0.0,
    };
    let p = policy();
    (s, _) = next(&s, Event::Start, &p, ctx);
    let (s, acts) = next(&s, Event::SpawnFailed { missing: false }, &p, ctx);
    assert!(matches!(acts[0], Action::ScheduleRestart { .. }));
    assert_eq!(s.last_exit, Some(Exit::SPAWN_FAILED));
}

// ----------------------------------------------- every phase × every event

fn all_phases(t: Instant) -> Vec<Phase> {
    let pid = 42;
    let mut v = vec![
        Phase::Idle,
        Phase::Spawning,
        Phase::Starting { pid, since: t },
        Phase::Running { pid, since: t },
        Phase::Backoff { until: t },
        Phase::GivenUp { since: t },
        Phase::Missing,
        Phase::Disabled,
        Phase::Stopped,
    ];
    for reason in [
        StopReason::Hang,
        StopReason::StartTimeout,
        StopReason::Shutdown,
        StopReason::Reconfigure,
        StopReason::OperatorRestart,
        StopReason::Disable,
    ] {
        for killed in [false, true] {
            v.push(Phase::Stopping {
                pid,
                reason,
                kill_at: t,
                killed,
            });
        }
    }
    v
}

fn all_events() -> Vec<Event> {
    let exit = Exit::code(1);
    vec![
        Event::Start,
        Event::Spawned { pid: 43 },
        Event::SpawnFailed { missing: true },
        Event::SpawnFailed { missing: false },
        Event::FirstHeartbeat { pid: 42 },
        Event::FirstHeartbeat { pid: 7 },
        Event::Exited { pid: 42, exit },
        Event::Exited { pid: 7, exit },
        Event::HeartbeatStale { pid: 42 },
        Event::HeartbeatStale { pid: 7 },
        Event::Tick,
        Event::OperatorReset,
        Event::ConfigChanged { enabled: true },
        Event::ConfigChanged { enabled: false },
        Event::StopRequested,
    ]
}

/// One line of the transition table: from, event, to, actions.
fn row(s: &ChildState, ev: Event, n: &ChildState, acts: &[Action]) -> String {
    let phase = |ph: &Phase| -> String {
        match ph {
            Phase::Stopping { reason, killed, .. } => format!(
                "stopping({reason:?}{})",
                if *killed { ",killed" } else { "" }
            ),
            other => other.name().to_string(),
        }
    };
    let ev = format!("{ev:?}")
        .replace(" exit: Exit { code: Some(1), signal: None }", "")
        .replace(" { ", "{")
        .replace(" }", "}");
    let to = if n.phase == s.phase {
        "=".to_string()
    } else {
        phase(&n.phase)
    };
    let acts: Vec<String> = acts
        .iter()
        .map(|a| match a {
            Action::Spawn => "spawn".into(),
            Action::Signal { pgid, sig } => format!("{sig:?}({pgid})").to_uppercase(),
            Action::ScheduleRestart { delay, .. } => format!("restart_in({delay:?})"),
            Action::RaiseAlert { .. } => "ALERT".into(),
            Action::BudgetReset { why } => format!("reset({why:?})"),
            Action::WriteState => "write".into(),
        })
        .collect();
    format!(
        "{}{:<33} {:<30} -> {:<33} {}\n",
        if s.shutting_down { "S " } else { "  " },
        phase(&s.phase),
        ev,
        to,
        acts.join(" ")
    )
}

/// The outcome of every (phase, event) pair, for a child with an unspent
/// budget, at a time past every deadline, pinned in `transitions.txt` (`=`:
/// phase unchanged; `S`: the watchdog is stopping).
#[test]
fn every_phase_and_event_has_a_defined_outcome() {
    let t0 = Instant::now();
    let now = t0 + secs(1);
    let p = Policy {
        cool_off: Some(ms(500)),
        start_timeout: ms(500),
        healthy_after: ms(500),
        ..policy()
    };
    let mut table = String::new();
    for shutting_down in [false, true] {
        for phase in all_phases(t0) {
            for ev in all_events() {
                // One restart already spent (so the healthy reset shows).
                let s = ChildState {
                    phase,
                    shutting_down,
                    restarts: vec![t0],
                    attempt: 1,
                    ..ChildState::new(true)
                };
                let (n, acts) = next(&s, ev, &p, Ctx { now, jitter: 0.0 });
                // Universal invariants.
                if shutting_down || ev == Event::StopRequested {
                    assert!(!acts.contains(&Action::Spawn), "{phase:?} {ev:?}");
                    assert!(n.shutting_down);
                }
                for a in &acts {
                    match a {
                        Action::Spawn => assert_eq!(n.phase, Phase::Spawning),
                        Action::Signal { pgid, .. } => assert!(
                            *pgid == 42 || matches!(ev, Event::Spawned { pid } if pid == *pgid),
                            "{phase:?} {ev:?} signals {pgid}"
                        ),
                        _ => {}
                    }
                }
                if n.phase != s.phase {
                    assert!(
                        acts.iter()
                            .any(|a| matches!(a, Action::WriteState | Action::Spawn)),
                        "a phase change is persisted: {phase:?} {ev:?}"
                    );
                }
                // Events with a foreign pid never change anything.
                if matches!(
                    ev,
                    Event::FirstHeartbeat { pid: 7 }
                        | Event::Exited { pid: 7, .. }
                        | Event::HeartbeatStale { pid: 7 }
                ) {
                    assert_eq!(n, s, "{phase:?} {ev:?}");
                    assert!(acts.is_empty());
                }
                table.push_str(&row(&s, ev, &n, &acts));
            }
        }
    }
    // The whole table, pinned: any change of behaviour shows up here.
    let want = include_str!("transitions.txt");
    if table != want {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/policy/transitions.actual.txt"
        );
        let _ = ghost_core::fs::durable_write(std::path::Path::new(path), table.as_bytes(), 0o644);
        panic!("the transition table changed; the new one is in {path}: review it and move it to transitions.txt");
    }
}

// ------------------------------------------------------------- properties

#[derive(Debug, Clone)]
enum Step {
    Wait(u64),
    Beat,
    Crash,
    Stale,
    Reset,
    Reconf(bool),
    Spawn(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u64..200_000).prop_map(Step::Wait),
        3 => Just(Step::Beat),
        4 => Just(Step::Crash),
        1 => Just(Step::Stale),
        1 => Just(Step::Reset),
        1 => any::<bool>().prop_map(Step::Reconf),
        1 => any::<bool>().prop_map(Step::Spawn),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever happens: counted restarts never exceed the budget within a
    /// window (between resets), at most one alert per episode, no spawn after
    /// the stop, and every live child is gone at the end of a stop.
    #[test]
    fn the_budget_and_the_single_alert_hold_for_any_history(
        steps in proptest::collection::vec(step(), 1..80),
        jitter in 0.0f64..1.0,
        cool in any::<bool>(),
    ) {
        let p = Policy {
            restart_jitter: 0.3,
            cool_off: cool.then(|| secs(900)),
            ..policy()
        };
        let t0 = Instant::now();
        let mut now = t0;
        let mut s = ChildState::new(true);
        let mut pid = 1000;
        // (time, action) since the last budget reset
        let mut counted: Vec<Instant> = Vec::new();
        let mut alerts_this_episode = 0;
        let mut pending: Vec<Event> = vec![Event::Start];
        let run = |s: &mut ChildState, e: Event, now: Instant, pid: &mut u32,
                       counted: &mut Vec<Instant>, alerts: &mut u32, spawn_ok: bool|
         -> Result<(), TestCaseError> {
            let mut queue = vec![e];
            while let Some(e) = queue.pop() {
                let (n, acts) = next(s, e, &p, Ctx { now, jitter });
                *s = n;
                for a in acts {
                    match a {
                        Action::Spawn => {
                            *pid += 1;
                            queue.push(if spawn_ok { Event::Spawned { pid: *pid } }
                                       else { Event::SpawnFailed { missing: false } });
                        }
                        Action::ScheduleRestart { .. } => {
                            counted.push(now);
                            let in_window = counted.iter()
                                .filter(|t| now.saturating_duration_since(**t) < p.restart_window)
                                .count();
                            prop_assert!(in_window as u32 <= p.max_restarts,
                                "{in_window} restarts in the window");
                        }
                        Action::RaiseAlert { .. } => {
                            *alerts += 1;
                            prop_assert_eq!(*alerts, 1, "a second alert in one episode");
                        }
                        Action::BudgetReset { .. } => {
                            counted.clear();
                            *alerts = 0;
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        };
        for e in pending.drain(..) {
            run(&mut s, e, now, &mut pid, &mut counted, &mut alerts_this_episode, true)?;
        }
        let mut spawn_ok = true;
        for st in steps {
            let ev = match st {
                Step::Wait(ms_) => { now += ms(ms_); Event::Tick }
                Step::Beat => match s.phase { Phase::Starting { pid, .. } => Event::FirstHeartbeat { pid }, _ => Event::Tick },
                Step::Crash => match s.phase.pid() { Some(pid) => Event::Exited { pid, exit: Exit::code(1) }, None => Event::Tick },
                Step::Stale => match s.phase.pid() { Some(pid) => Event::HeartbeatStale { pid }, None => Event::Tick },
                Step::Reset => Event::OperatorReset,
                Step::Reconf(en) => Event::ConfigChanged { enabled: en },
                Step::Spawn(ok) => { spawn_ok = ok; Event::Tick }
            };
            run(&mut s, ev, now, &mut pid, &mut counted, &mut alerts_this_episode, spawn_ok)?;
            prop_assert!(s.phase != Phase::Spawning, "Spawning never outlives an event");
        }
        // Stop: the child ends stopped (or disabled) after at most TERM,
        // KILL and its exit, and nothing is spawned any more.
        let before = pid;
        run(&mut s, Event::StopRequested, now, &mut pid, &mut counted, &mut alerts_this_episode, true)?;
        now += p.stop_grace;
        run(&mut s, Event::Tick, now, &mut pid, &mut counted, &mut alerts_this_episode, true)?;
        if let Some(live) = s.phase.pid() {
            run(&mut s, Event::Exited { pid: live, exit: Exit::signal(9) }, now, &mut pid, &mut counted, &mut alerts_this_episode, true)?;
        }
        prop_assert!(matches!(s.phase, Phase::Stopped | Phase::Disabled), "{:?}", s.phase);
        prop_assert_eq!(pid, before, "spawned during the stop");
    }
}
