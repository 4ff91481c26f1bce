//! Small helpers for human output: aligned tables, short durations, and
//! sanitising text that came from outside (patch ids, messages) before it
//! reaches a terminal.

use std::time::{Duration, SystemTime};

pub use ghost_core::text::clean;

/// One table cell: [`clean`], then cut to at most `max` characters.
pub fn cell(s: &str, max: usize) -> String {
    ghost_core::text::clip(&clean(s), max)
}

/// Simple aligned columns: every column but the last padded to its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 < n {
                l.push_str(c);
                for _ in c.chars().count()..widths[i] + 2 {
                    l.push(' ');
                }
            } else {
                l.push_str(c);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

/// A short human duration: `850ms`, `42s`, `17m`, `5h`, `3d`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        format!("{}ms", d.as_millis())
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86400 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86400)
    }
}

/// `12s ago`, or `in 30s` for a time in the future.
pub fn relative(t: SystemTime) -> String {
    match SystemTime::now().duration_since(t) {
        Ok(d) => format!("{} ago", short_duration(d)),
        Err(e) => format!("in {}", short_duration(e.duration())),
    }
}

/// `relative` for an RFC 3339 timestamp, or the text itself if it does not parse.
pub fn relative_str(ts: &str) -> String {
    match ghost_core::time::parse_rfc3339(ts) {
        Some(t) => relative(t),
        None => clean(ts),
    }
}

/// Who is acting, for operator records: `$USER` (or `unknown`) and the uid.
pub fn who() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "unknown".into());
    format!("{} (uid {})", clean(&user), nix::unistd::getuid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_all_but_the_last_column() {
        let t = table(
            &["A", "LONG", "C"],
            &[vec!["xx".into(), "y".into(), "zzz".into()]],
        );
        assert_eq!(t, "A   LONG  C\nxx  y     zzz\n");
    }

    #[test]
    fn durations_and_cleaning() {
        assert_eq!(short_duration(Duration::from_millis(5)), "5ms");
        assert_eq!(short_duration(Duration::from_secs(61)), "1m");
        assert_eq!(short_duration(Duration::from_secs(3 * 86400)), "3d");
        assert_eq!(cell("a\nbcdef", 4), "a?b…");
        assert!(who().contains("uid "));
    }
}
