//! The executor's claim/retry/stuck policy as a pure function: given how an
//! attempt ended, where does the entry go next. No I/O here; the engine performs
//! what this decides, and the tests below cover every case.

use std::time::Duration;

use ghost_core::queue::QueueState;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every operation applied and every check passed.
    Applied,
    /// The patch can never apply as it is: invalid, precondition mismatch, a
    /// check failed (after a rollback when the tree had changed).
    Permanent,
    /// Might work later: an I/O error, a check that timed out.
    Transient,
    /// Active longer than `stuck_after`: its commands were killed and the tree
    /// rolled back.
    StuckTimeout,
    /// The executor was asked to stop and rolled the patch back.
    Interrupted,
    /// Found in `active/` at start-up: the executor that claimed it died.
    Crashed,
    /// The rollback itself could not be verified: the tree needs a person.
    RollbackUnverified,
}

/// Where the entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    MoveTo(QueueState),
    /// To `deferred/`, due after this delay.
    Defer(Duration),
}

/// Retry pacing: attempt n (1-based) that failed waits `base × 4^(n-1)`, capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn delay(&self, failed_attempt: u32) -> Duration {
        let exp = failed_attempt.saturating_sub(1).min(16);
        let factor = 4u32.saturating_pow(exp);
        self.base
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// Decide the next state. `attempt` is the attempt that just ended (1-based);
/// `max_attempts` the patch's budget.
pub fn decide(outcome: Outcome, attempt: u32, max_attempts: u32, backoff: Backoff) -> Decision {
    let spent = attempt >= max_attempts;
    match outcome {
        Outcome::Applied => Decision::MoveTo(QueueState::Done),
        Outcome::Permanent => Decision::MoveTo(QueueState::Failed),
        Outcome::Transient if spent => Decision::MoveTo(QueueState::Stuck),
        Outcome::Transient => Decision::Defer(backoff.delay(attempt)),
        Outcome::StuckTimeout | Outcome::RollbackUnverified => Decision::MoveTo(QueueState::Stuck),
        // A stop asked for by a person does not use up an attempt.
        Outcome::Interrupted => Decision::MoveTo(QueueState::Pending),
        Outcome::Crashed if spent => Decision::MoveTo(QueueState::Stuck),
        Outcome::Crashed => Decision::MoveTo(QueueState::Pending),
    }
}

/// Whether the attempt that ended this way counts against the budget.
pub fn counts_as_attempt(outcome: Outcome) -> bool {
    !matches!(outcome, Outcome::Interrupted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_secs(5),
        max: Duration::from_secs(300),
    };

    #[test]
    fn backoff_is_5s_times_4_pow_n_capped_at_5m() {
        let d: Vec<u64> = (1..=6).map(|n| B.delay(n).as_secs()).collect();
        assert_eq!(d, [5, 20, 80, 300, 300, 300]);
        assert_eq!(B.delay(u32::MAX), Duration::from_secs(300));
        let tiny = Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(25),
        };
        assert_eq!(tiny.delay(2), Duration::from_millis(25));
    }

    #[test]
    fn every_outcome_with_budget_left_and_spent() {
        use Decision::*;
        use Outcome::*;
        use QueueState as S;
        let cases = [
            (Applied, 1, MoveTo(S::Done)),
            (Applied, 3, MoveTo(S::Done)),
            (Permanent, 1, MoveTo(S::Failed)),
            (Permanent, 3, MoveTo(S::Failed)),
            (Transient, 1, Defer(Duration::from_secs(5))),
            (Transient, 2, Defer(Duration::from_secs(20))),
            (Transient, 3, MoveTo(S::Stuck)),
            (StuckTimeout, 1, MoveTo(S::Stuck)),
            (StuckTimeout, 3, MoveTo(S::Stuck)),
            (Interrupted, 1, MoveTo(S::Pending)),
            (Interrupted, 3, MoveTo(S::Pending)),
            (Crashed, 1, MoveTo(S::Pending)),
            (Crashed, 2, MoveTo(S::Pending)),
            (Crashed, 3, MoveTo(S::Stuck)),
            (RollbackUnverified, 1, MoveTo(S::Stuck)),
        ];
        for (outcome, attempt, want) in cases {
            assert_eq!(
                decide(outcome, attempt, 3, B),
                want,
                "{outcome:?} at attempt {attempt}"
            );
        }
        // A budget of one: the first transient failure or crash parks the patch.
        assert_eq!(decide(Transient, 1, 1, B), MoveTo(S::Stuck));
        assert_eq!(decide(Crashed, 1, 1, B), MoveTo(S::Stuck));
        assert!(!counts_as_attempt(Interrupted));
        assert!(counts_as_attempt(Crashed));
    }
}
