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

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("ghost");
        let m = Metrics {
            queue_depth: Family::default(),
            queue_oldest: Family::default(),
            outcomes: Family::default(),
            apply: Family::new_with_constructor(seconds_buckets as fn() -> Histogram),
            check: Family::new_with_constructor(seconds_buckets as fn() -> Histogram),
            firing: Gauge::default(),
            restarts: Family::default(),
            log_failing: Family::default(),
            dropped: Family::default(),
            heartbeat_up: Family::default(),
            paused: Gauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "queue_depth",
            "Entries per target and queue state",
            m.queue_depth.clone(),
        );
        r.register(
            "queue_oldest_age_seconds",
            "Age of the oldest entry per target and queue state (since its arrival)",
            m.queue_oldest.clone(),
        );
        r.register(
            "patches",
            "Finished patches by target and outcome (from their summaries, since the monitor started)",
            m.outcomes.clone(),
        );
        r.register(
            "apply_duration_seconds",
            "How long applying a patch took (its summary's duration)",
            m.apply.clone(),
        );
        r.register(
            "check_duration_seconds",
            "How long a check command took, by phase (before, after)",
            m.check.clone(),
        );
        r.register("alerts_firing", "Alert episodes firing", m.firing.clone());
        r.register(
            "restarts",
            "Restarts of a watchdog child since the watchdog started",
            m.restarts.clone(),
        );
        r.register(
            "log_write_failing",
            "1 while a component cannot write its primary log",
            m.log_failing.clone(),
        );
        r.register(
            "log_dropped_lines",
            "Log lines a component had to drop (its heartbeat's count)",
            m.dropped.clone(),
        );
        r.register(
            "heartbeat_ok",
            "1 while a component's heartbeat is fresh",
            m.heartbeat_up.clone(),
        );
        r.register(
            "intake_paused",
            "1 while intake is paused",
            m.paused.clone(),
        );
        Metrics { registry: r, ..m }
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

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
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
}
