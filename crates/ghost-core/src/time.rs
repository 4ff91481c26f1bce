//! Timestamps: RFC 3339 UTC with milliseconds in every file and log line.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, as RFC 3339 UTC with milliseconds (`2026-01-02T03:04:05.678Z`).
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s).ok()
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// How long ago `t` was (zero if in the future).
pub fn age(t: SystemTime) -> Duration {
    SystemTime::now()
        .duration_since(t)
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let s = super::now_rfc3339();
        assert!(s.ends_with('Z'), "{s}");
        let t = super::parse_rfc3339(&s).unwrap();
        assert_eq!(super::rfc3339(t), s);
    }
}
