//! Alert rules: what in the health model needs a person (docs/monitor.md,
//! "Rules"). [`evaluate`] is pure: a model and the configuration in, the
//! signals that hold now out. A rule's fingerprint is `rule:component` or
//! `rule:target:subject`, the same the other processes use for the same
//! problem, so an inbox alert and a rule finding are one episode.

use ghost_core::alert::Severity;
use ghost_core::alerting::Origin;
use ghost_core::health::{BeatState, Health};
use ghost_core::Config;

use crate::collect::Findings;
use crate::correlate::Signal;

/// Every rule the monitor evaluates, with its default severity and threshold
/// (the table in docs/monitor.md).
pub const RULES: [(&str, &str); 12] = [
    ("queue_depth_high", "warning: pending > monitor.queue_depth_warn (10)"),
    ("pending_stale", "warning: a pending entry older than monitor.stale_pending_after (15m)"),
    ("patch_stuck", "critical: an entry in .stuck/"),
    ("claim_orphaned", "warning: an active entry whose executor process is gone"),
    ("heartbeat", "warning when late (> heartbeat.interval), critical when down (> heartbeat.stale_after or pid gone)"),
    ("executor_paused", "critical: intake paused, or the executor paused claiming"),
    ("log_write_failed", "critical: a component cannot write its log"),
    ("log_rapid_rotation", "warning: > logs.rapid_rotations_per_hour rotations of one log in an hour"),
    ("summary_corrupt", "critical: a terminal entry's summary is missing or differs from its backup"),
    ("disk_low", "critical: free space < monitor.disk_free_min_percent (10 %)"),
    ("watchdog_gave_up", "critical: the watchdog gave up restarting a child"),
    ("patch_failed", "info: an entry reached failed/"),
];

/// Most per-patch episodes one rule keeps on one target. Past it the rule
/// raises one episode for the whole target (`rule:target:*`) naming the count
/// and the first few: 100,000 corrupt summaries are one problem to a person,
/// and one episode each would make `alerts/state.json` grow with them.
pub const PER_PATCH_EPISODES: usize = 100;

/// The per-patch signals of one rule on target `t`: one each for `names`,
/// or, when `count` exceeds [`PER_PATCH_EPISODES`], one for all of them.
#[allow(clippy::too_many_arguments)]
fn per_patch(
    out: &mut Vec<Signal>,
    rule: &str,
    t: &str,
    names: &[String],
    count: usize,
    severity: Severity,
    one: impl Fn(&str) -> (String, String),
    many: impl Fn(usize, &str) -> (String, String),
) {
    if count > PER_PATCH_EPISODES {
        let first: Vec<&str> = names.iter().take(5).map(|n| n.as_str()).collect();
        let (title, message) = many(count, &first.join(", "));
        out.push(sig(
            format!("{rule}:{t}:*"),
            "executor",
            "*",
            severity,
            title,
            message,
        ));
        return;
    }
    for n in names {
        let (title, message) = one(n);
        out.push(sig(
            format!("{rule}:{t}:{n}"),
            "executor",
            n,
            severity,
            title,
            message,
        ));
    }
}

fn sig(
    fingerprint: String,
    component: &str,
    subject: &str,
    severity: Severity,
    title: String,
    message: String,
) -> Signal {
    Signal {
        fingerprint,
        component: component.to_string(),
        subject: subject.to_string(),
        severity,
        title,
        message,
        origin: Origin::Rule,
    }
}

/// `(target, name)` pairs grouped by target, in order.
fn by_target(pairs: impl Iterator<Item = (String, String)>) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (t, n) in pairs {
        match out.iter_mut().find(|(x, _)| *x == t) {
            Some((_, v)) => v.push(n),
            None => out.push((t, vec![n])),
        }
    }
    out
}

/// The signals that hold in `h`.
pub fn evaluate(config: &Config, h: &Health, f: &Findings) -> Vec<Signal> {
    let m = &config.monitor;
    let mut out = Vec::new();
    for (t, th) in &h.targets {
        let pending = th.states.get("pending").map(|s| s.count).unwrap_or(0);
        if pending > m.queue_depth_warn as usize {
            out.push(sig(
                format!("queue_depth_high:{t}"),
                "executor",
                t,
                Severity::Warning,
                format!("{pending} patches pending on target {t}"),
                format!(
                    "More than {} entries wait in queue/{t}/pending/; the oldest arrived {}s ago.",
                    m.queue_depth_warn,
                    th.states["pending"].oldest_age_s.unwrap_or(0)
                ),
            ));
        }
        if th.stale_pending > 0 {
            out.push(sig(
                format!("pending_stale:{t}"),
                "executor",
                t,
                Severity::Warning,
                format!("{} pending patches on target {t} are stale", th.stale_pending),
                format!(
                    "They arrived more than {} ago and are not applied yet: is the executor running and claiming?",
                    humantime::format_duration(m.stale_pending_after)
                ),
            ));
        }
        let stuck = th.states.get("stuck").map_or(0, |s| s.count);
        per_patch(
            &mut out,
            "patch_stuck",
            t,
            &th.stuck,
            stuck.max(th.stuck.len()),
            Severity::Critical,
            |n| {
                (
                format!("patch {n} is stuck on target {t}"),
                format!("queue/{t}/.stuck/{n}.json needs a person: `ghostctl show {n}`, then `ghostctl retry` or `ghostctl delete --reason …`."),
            )
            },
            |count, first| {
                (
                format!("{count} patches are stuck on target {t}"),
                format!("queue/{t}/.stuck/ holds {count} entries that need a person (first: {first}): `ghostctl ls --state stuck --target {t}`."),
            )
            },
        );
        per_patch(
            &mut out,
            "claim_orphaned",
            t,
            &th.orphaned_claims,
            th.orphaned_claims.len(),
            Severity::Warning,
            |n| {
                (
                format!("patch {n} is claimed by an executor that is gone"),
                format!("queue/{t}/active/{n}.json: the executor's recovery at start-up rolls it back; is the executor running?"),
            )
            },
            |count, first| {
                (
                format!("{count} patches on target {t} are claimed by an executor that is gone"),
                format!("queue/{t}/active/ (first: {first}): the executor's recovery at start-up rolls them back; is the executor running?"),
            )
            },
        );
    }
    for (c, ch) in &h.components {
        let stopped = ch.status.as_deref() == Some("stopped");
        match ch.state {
            BeatState::Late => out.push(sig(
                format!("heartbeat:{c}"),
                c,
                c,
                Severity::Warning,
                format!("ghost-{c} heartbeat is late"),
                format!(
                    "Its heartbeat is {:.0}s old (interval {}).",
                    ch.age_s.unwrap_or(0.0),
                    humantime::format_duration(config.heartbeat.interval)
                ),
            )),
            BeatState::Down if !stopped => out.push(sig(
                format!("heartbeat:{c}"),
                c,
                c,
                Severity::Critical,
                format!("ghost-{c} is down"),
                format!(
                    "Its heartbeat is {} (stale after {}){}.",
                    ch.age_s
                        .map(|a| format!("{a:.0}s old"))
                        .unwrap_or_else(|| "unreadable".into()),
                    humantime::format_duration(config.heartbeat.stale_after),
                    ch.pid
                        .filter(|p| !crate::collect::pid_alive(*p))
                        .map(|p| format!(" and its process {p} is gone"))
                        .unwrap_or_default()
                ),
            )),
            _ => {}
        }
        if let Some(l) = &ch.logs {
            if !l.primary_ok {
                out.push(sig(
                    format!("log_write_failed:{c}"),
                    c,
                    c,
                    Severity::Critical,
                    format!("ghost-{c} cannot write its log"),
                    format!(
                        "{}; lines go to {}",
                        l.last_error.as_deref().unwrap_or("the primary log failed"),
                        l.fallback_path.as_deref().unwrap_or("the fallback")
                    ),
                ));
            }
        }
    }
    if let Some(why) = &h.paused {
        out.push(sig(
            "executor_paused".into(),
            "executor",
            "",
            Severity::Critical,
            "patches are not being applied: paused".into(),
            format!(
                "{why}. `ghostctl status` shows the pause; `ghostctl resume --force` lifts it."
            ),
        ));
    }
    for (c, n) in &h.rotations_last_hour {
        if *n > config.logs.rapid_rotations_per_hour {
            out.push(sig(
                format!("log_rapid_rotation:{c}"),
                c,
                c,
                Severity::Warning,
                format!("logs/{c}.log rotated {n} times in an hour"),
                format!("More than logs.rapid_rotations_per_hour ({}): something logs far more than usual.", config.logs.rapid_rotations_per_hour),
            ));
        }
    }
    for (t, names) in by_target(h.summaries.corrupt.iter().map(|id| {
        let (t, n) = id.split_once('/').unwrap_or((id, ""));
        (t.to_string(), n.to_string())
    })) {
        // The list is bounded; the count per target is not.
        let count = h.summaries.corrupt_count.get(&t).copied().unwrap_or(0);
        per_patch(
            &mut out,
            "summary_corrupt",
            &t,
            &names,
            count.max(names.len()),
            Severity::Critical,
            |n| {
                (
                format!("summary of {n} on target {t} is not intact"),
                format!("summaries/{t}/{n}.json is missing or differs from its backup: `ghostctl verify` repairs it from the intact copy."),
            )
            },
            |count, first| {
                (
                format!("{count} summaries on target {t} are not intact"),
                format!("Missing or different from their backups (first: {first}): `ghostctl verify` repairs them from the intact copies."),
            )
            },
        );
    }
    for d in &h.disks {
        if d.free_percent < m.disk_free_min_percent {
            out.push(sig(
                format!("disk_low:{}", d.name),
                "monitor",
                &d.name,
                Severity::Critical,
                format!(
                    "disk low: {:.1} % free at {}",
                    d.free_percent,
                    d.path.display()
                ),
                format!(
                    "{} MiB free of {} MiB (alert below {} %).",
                    d.free_bytes >> 20,
                    d.total_bytes >> 20,
                    m.disk_free_min_percent
                ),
            ));
        }
    }
    for c in &h.given_up {
        out.push(sig(
            format!("watchdog_gave_up:{c}"),
            "watchdog",
            c,
            Severity::Critical,
            format!("the watchdog gave up on ghost-{c}"),
            format!("It failed more often than watchdog.max_restarts allows. Fix the cause (logs/{c}.stderr.log), then `ghostctl restart {c}`."),
        ));
    }
    for (t, names) in by_target(f.newly_failed.iter().cloned()) {
        let start = out.len();
        per_patch(
            &mut out,
            "patch_failed",
            &t,
            &names,
            names.len(),
            Severity::Info,
            |n| {
                (
                format!("patch {n} failed on target {t}"),
                format!("`ghostctl show {n}` has the reason; fix the patch and `ghostctl retry {n}`."),
            )
            },
            |count, first| {
                (
                format!("{count} patches failed on target {t}"),
                format!("First: {first}. `ghostctl ls --state failed --target {t}` lists them; `ghostctl show ID` has each reason."),
            )
            },
        );
        // Told once: it is not cleared by the rule (it is over once told).
        for s in &mut out[start..] {
            s.origin = Origin::Inbox;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghost_core::health::{ComponentHealth, DiskHealth, StateHealth, TargetHealth};

    fn comp(state: BeatState, status: &str) -> ComponentHealth {
        ComponentHealth {
            state,
            status: Some(status.into()),
            pid: Some(std::process::id()),
            updated_at: None,
            age_s: Some(5.0),
            cpu_percent: None,
            rss_bytes: None,
            logs: None,
        }
    }

    #[test]
    fn each_rule_fires_on_its_condition() {
        let config = Config::default();
        let mut h = Health::default();
        let mut th = TargetHealth::default();
        th.states.insert(
            "pending".into(),
            StateHealth {
                count: 11,
                oldest_age_s: Some(1000),
                buckets: vec![],
            },
        );
        th.stale_pending = 2;
        th.stuck = vec!["n1".into()];
        th.orphaned_claims = vec!["n2".into()];
        h.targets.insert("default".into(), th);
        h.components
            .insert("bridge".into(), comp(BeatState::Late, "running"));
        h.components
            .insert("executor".into(), comp(BeatState::Down, "running"));
        h.components
            .insert("watchdog".into(), comp(BeatState::Down, "stopped"));
        let mut m = comp(BeatState::Ok, "running");
        m.logs = Some(ghost_core::health::LogHealthView {
            primary_ok: false,
            ..Default::default()
        });
        h.components.insert("monitor".into(), m);
        h.paused = Some("x".into());
        h.rotations_last_hour.insert("bridge".into(), 4);
        h.rotations_last_hour.insert("executor".into(), 3);
        h.summaries.corrupt = vec!["default/n3".into()];
        h.disks.push(DiskHealth {
            name: "root".into(),
            path: "/".into(),
            total_bytes: 100,
            free_bytes: 5,
            free_percent: 5.0,
        });
        h.given_up = vec!["bridge".into()];
        let f = Findings {
            newly_failed: vec![("default".into(), "n4".into())],
            ..Default::default()
        };
        let s = evaluate(&config, &h, &f);
        let fps: Vec<(&str, Severity)> = s
            .iter()
            .map(|s| (s.fingerprint.as_str(), s.severity))
            .collect();
        let want = [
            ("queue_depth_high:default", Severity::Warning),
            ("pending_stale:default", Severity::Warning),
            ("patch_stuck:default:n1", Severity::Critical),
            ("claim_orphaned:default:n2", Severity::Warning),
            ("heartbeat:bridge", Severity::Warning),
            ("heartbeat:executor", Severity::Critical),
            ("log_write_failed:monitor", Severity::Critical),
            ("executor_paused", Severity::Critical),
            ("log_rapid_rotation:bridge", Severity::Warning),
            ("summary_corrupt:default:n3", Severity::Critical),
            ("disk_low:root", Severity::Critical),
            ("watchdog_gave_up:bridge", Severity::Critical),
            ("patch_failed:default:n4", Severity::Info),
        ];
        assert_eq!(fps, want);
        // Every rule in the table has a case here.
        for (r, _) in RULES {
            assert!(
                want.iter().any(|(f, _)| f.split(':').next() == Some(r)),
                "{r}"
            );
        }
        assert!(evaluate(&config, &Health::default(), &Findings::default()).is_empty());
    }

    #[test]
    fn a_flood_of_per_patch_problems_is_one_episode_per_rule_and_target() {
        let config = Config::default();
        let names = |n: usize| (0..n).map(|i| format!("n{i}")).collect::<Vec<_>>();
        let fps = |h: &Health, f: &Findings| {
            evaluate(&config, h, f)
                .into_iter()
                .map(|s| s.fingerprint)
                .collect::<Vec<_>>()
        };
        // At the limit: one episode per patch.
        let mut h = Health::default();
        let mut th = TargetHealth {
            stuck: names(PER_PATCH_EPISODES),
            ..Default::default()
        };
        h.targets.insert("default".into(), th.clone());
        assert_eq!(fps(&h, &Findings::default()).len(), PER_PATCH_EPISODES);
        // Past it: one for the target, whatever the listed names.
        th.states.insert(
            "stuck".into(),
            StateHealth {
                count: 5000,
                oldest_age_s: Some(1),
                buckets: vec![],
            },
        );
        h.targets.insert("default".into(), th);
        let got = evaluate(&config, &h, &Findings::default());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].fingerprint, "patch_stuck:default:*");
        assert!(
            got[0].title.starts_with("5000 patches are stuck"),
            "{}",
            got[0].title
        );
        // Corrupt summaries: the bounded list and the full count per target.
        let mut h = Health::default();
        h.summaries.corrupt = names(1000)
            .into_iter()
            .map(|n| format!("default/{n}"))
            .chain(["other/x".to_string()])
            .collect();
        h.summaries.corrupt_count = [("default".to_string(), 100_000), ("other".to_string(), 1)]
            .into_iter()
            .collect();
        assert_eq!(
            fps(&h, &Findings::default()),
            ["summary_corrupt:default:*", "summary_corrupt:other:x"]
        );
        // A burst of failures: told once, as one.
        let f = Findings {
            newly_failed: names(PER_PATCH_EPISODES + 1)
                .into_iter()
                .map(|n| ("default".to_string(), n))
                .collect(),
            ..Default::default()
        };
        let got = evaluate(&config, &Health::default(), &f);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].fingerprint, "patch_failed:default:*");
        assert_eq!(got[0].origin, Origin::Inbox);
    }
}
