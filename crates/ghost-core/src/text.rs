//! Text that came from outside (patch ids, paths, messages) on its way to a
//! terminal, a log line or an answer, and the one rule for a name that
//! becomes a file or directory name (a target, a queue name).

/// Replace control characters (newlines, tabs, escape sequences) with `?`, so
/// that one value stays on one line and cannot drive a terminal.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `s` cut to at most `max` characters, the last one `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The longest name [`is_name`] accepts.
pub const MAX_NAME: usize = 64;

/// True for 1 to [`MAX_NAME`] ASCII letters, digits, `-` and `_`: safe as a
/// file or directory name (never a path, never hidden), like a target name
/// or a queue name.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_clip_and_names() {
        assert_eq!(clean("a\nb\tc\u{1b}"), "a?b?c?");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abcd", 4), "abcd");
        assert_eq!(clip("äöüß", 3).chars().count(), 3);
        assert!(is_name("0190abcd-ef_1"));
        for bad in ["", ".", "..", "a/b", ".hidden", "a b", "é"] {
            assert!(!is_name(bad), "{bad:?}");
        }
        assert!(is_name(&"a".repeat(MAX_NAME)));
        assert!(!is_name(&"a".repeat(MAX_NAME + 1)));
    }
}
