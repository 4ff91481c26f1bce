//! `/metrics` in the Prometheus text format, through `prometheus-client`.
//!
//! The gauges are set from each cycle's health model ([`Metrics::update`]);
//! the outcome counters and the duration histograms are fed incrementally
//! from the summaries the collector reads anyway when an entry is first seen
//! finished ([`Metrics::observe`]), each summary once per monitor process.
//! Scrapes only encode: they never read the disk.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use ghost_core::health::Health;
use ghost_core::summary::Summary;
use ghost_core::watchdog::WatchdogState;

type Labels = Vec<(String, String)>;
type Hist = Family<Labels, Histogram, fn() -> Histogram>;

fn seconds_buckets() -> Histogram {
    // 10 ms … about 5.5 min, doubling.
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every metric the monitor exports.
pub struct Metrics {
    registry: Registry,
    queue_depth: Family<Labels, Gauge>,
    queue_oldest: Family<Labels, Gauge<f64, AtomicU64>>,
    outcomes: Family<Labels, Counter>,
    apply: Hist,
    check: Hist,
    firing: Gauge,
    restarts: Family<Labels, Gauge>,
    log_failing: Family<Labels, Gauge>,
    dropped: Family<Labels, Gauge>,
    heartbeat_up: Family<Labels, Gauge>,
    paused: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Register a metric of any kind made by `make` under `name`.
fn add<M: prometheus_client::registry::Metric + Clone>(
    r: &mut Registry,
    name: &str,
    help: &str,
    make: impl FnOnce() -> M,
) -> M {
    let m = make();
    r.register(name, help, m.clone());
    m
}

/// A histogram family of durations in seconds.
fn seconds_family() -> Hist {
    Family::new_with_constructor(seconds_buckets as fn() -> Histogram)
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("ghost");
        let r = &mut r;
        let m = Metrics {
            queue_depth: add(r, "queue_depth", "Entries per target and queue state", Default::default),
            queue_oldest: add(r, "queue_oldest_age_seconds", "Age of the oldest entry per target and queue state (since its arrival)", Default::default),
            outcomes: add(r, "patches", "Finished patches by target and outcome (from their summaries, since the monitor started)", Default::default),
            apply: add(r, "apply_duration_seconds", "How long applying a patch took (its summary's duration)", seconds_family),
            check: add(r, "check_duration_seconds", "How long a check command took, by phase (before, after)", seconds_family),
            firing: add(r, "alerts_firing", "Alert episodes firing", Default::default),
            restarts: add(r, "restarts", "Restarts of a watchdog child since the watchdog started", Default::default),
            log_failing: add(r, "log_write_failing", "1 while a component cannot write its primary log", Default::default),
            dropped: add(r, "log_dropped_lines", "Log lines a component had to drop (its heartbeat's count)", Default::default),
            heartbeat_up: add(r, "heartbeat_ok", "1 while a component's heartbeat is fresh", Default::default),
            paused: add(r, "intake_paused", "1 while intake is paused", Default::default),
            registry: Registry::default(),
        };
        Metrics {
            registry: std::mem::take(r),
            ..m
        }
    }

    /// Set the gauges from one cycle's model (and the watchdog's state).
    pub fn update(&self, h: &Health, watchdog: Option<&WatchdogState>) {
        for (t, th) in &h.targets {
            for (s, sh) in &th.states {
                let labels = l(&[("target", t), ("state", s)]);
                self.queue_depth.get_or_create(&labels).set(sh.count as i64);
                self.queue_oldest
                    .get_or_create(&labels)
                    .set(sh.oldest_age_s.unwrap_or(0) as f64);
            }
        }
        self.firing.set(h.firing.len() as i64);
        self.paused.set(i64::from(h.paused.is_some()));
        for (c, ch) in &h.components {
            let labels = l(&[("component", c)]);
            self.heartbeat_up
                .get_or_create(&labels)
                .set(i64::from(ch.state == ghost_core::health::BeatState::Ok));
            if let Some(lh) = &ch.logs {
                self.log_failing
                    .get_or_create(&labels)
                    .set(i64::from(!lh.primary_ok));
                self.dropped
                    .get_or_create(&labels)
                    .set(lh.dropped_lines as i64);
            }
        }
        if let Some(w) = watchdog {
            for (n, c) in &w.children {
                self.restarts
                    .get_or_create(&l(&[("child", n)]))
                    .set(c.restarts_total as i64);
            }
        }
    }

    /// Count one finished patch and its durations.
    pub fn observe(&self, s: &Summary) {
        self.outcomes
            .get_or_create(&l(&[("target", &s.target), ("outcome", s.status.as_str())]))
            .inc();
        self.apply
            .get_or_create(&l(&[("target", &s.target)]))
            .observe(s.duration_ms as f64 / 1000.0);
        for c in &s.checks {
            self.check
                .get_or_create(&l(&[("target", &s.target), ("phase", &c.phase)]))
                .observe(c.duration_ms as f64 / 1000.0);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// The Prometheus text format 0.0.4, for clients that do not ask for
    /// OpenMetrics (`curl`, `promtool check metrics`).
    pub fn encode_classic(&self) -> String {
        classic(&self.encode())
    }
}

/// OpenMetrics text as Prometheus text format 0.0.4. The two differ, for
/// what `prometheus-client` writes, in three places only: a counter family
/// is named with its `_total` in `# HELP`/`# TYPE` (OpenMetrics names the
/// family without it), `# UNIT` and `# EOF` are not part of it, and neither
/// are `_created` samples.
pub fn classic(open: &str) -> String {
    let counters: Vec<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|t| t.strip_suffix(" counter"))
        .collect();
    let created = |l: &str| {
        let name = l.split(['{', ' ']).next().unwrap_or("");
        name.strip_suffix("_created").is_some_and(|f| {
            counters.contains(&f) || open.contains(&format!("# TYPE {f} histogram"))
        })
    };
    let mut out = String::with_capacity(open.len());
    for l in open.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") || (!l.starts_with('#') && created(l)) {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|p| l.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((p, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(&name) {
                out.push_str(&format!("{p}{name}_total {tail}\n"));
                continue;
            }
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghost_core::health::{StateHealth, TargetHealth};

    #[test]
    fn the_exposition_names_every_family_and_its_labels() {
        let m = Metrics::new();
        let mut h = Health::default();
        let mut th = TargetHealth::default();
        th.states.insert(
            "pending".into(),
            StateHealth {
                count: 7,
                oldest_age_s: Some(90),
                buckets: vec![],
            },
        );
        h.targets.insert("default".into(), th);
        h.firing = vec!["x".into()];
        m.update(&h, None);
        let text = m.encode();
        assert!(
            text.contains("ghost_queue_depth{target=\"default\",state=\"pending\"} 7"),
            "{text}"
        );
        assert!(
            text.contains(
                "ghost_queue_oldest_age_seconds{target=\"default\",state=\"pending\"} 90.0"
            ),
            "{text}"
        );
        assert!(text.contains("ghost_alerts_firing 1"), "{text}");
        // A family with no sample yet is left out (the histograms until a
        // first summary).
        assert!(!text.contains("ghost_apply_duration_seconds"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[test]
    fn the_classic_format_names_counters_with_total_and_has_no_eof() {
        let open = "# HELP ghost_patches Finished.\n# TYPE ghost_patches counter\nghost_patches_total{outcome=\"applied\"} 1\nghost_patches_created{outcome=\"applied\"} 1.5\n# HELP ghost_d How long.\n# TYPE ghost_d histogram\n# UNIT ghost_d seconds\nghost_d_sum 0.5\nghost_d_count 1\nghost_d_created 1.5\nghost_d_bucket{le=\"+Inf\"} 1\n# HELP ghost_g A gauge.\n# TYPE ghost_g gauge\nghost_g 2\n# EOF\n";
        assert_eq!(
            classic(open),
            "# HELP ghost_patches_total Finished.\n# TYPE ghost_patches_total counter\nghost_patches_total{outcome=\"applied\"} 1\n# HELP ghost_d How long.\n# TYPE ghost_d histogram\nghost_d_sum 0.5\nghost_d_count 1\nghost_d_bucket{le=\"+Inf\"} 1\n# HELP ghost_g A gauge.\n# TYPE ghost_g gauge\nghost_g 2\n"
        );
        let m = Metrics::new();
        m.outcomes
            .get_or_create(&l(&[("target", "t"), ("outcome", "applied")]))
            .inc();
        let text = m.encode_classic();
        assert!(
            text.contains("# TYPE ghost_patches_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
    }
}
