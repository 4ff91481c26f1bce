//! Where lines go when `logs/` cannot be written, and how people are told.
//!
//! The fallback directory is `[logs] fallback_dir`, by default
//! `<system temp dir>/ghostbridge-<hash of the root>/logs`, which is usually
//! another filesystem than the data root. Alerts go to `alerts/inbox/` (the
//! monitor's input) and, when critical, as one line to `alerts/CRITICAL_ALERT`
//! (fsynced); if even that fails, to stderr, so the failure is never silent.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::layout::Layout;

/// The fallback directory for a data root.
pub fn default_dir(root: &Path) -> PathBuf {
    let hash = crate::md5_hex(root.as_os_str().as_encoded_bytes());
    std::env::temp_dir()
        .join(format!("ghostbridge-{}", &hash[..12]))
        .join("logs")
}

/// `alerts/CRITICAL_ALERT`, the file a person reads.
pub fn critical_alert_path(layout: &Layout) -> PathBuf {
    layout.alerts().join("CRITICAL_ALERT")
}

/// An alert in the shape the monitor consumes (`docs/formats.md`, "Alert files").
pub struct AlertText<'a> {
    pub fingerprint: String,
    pub severity: &'a str,
    /// `firing` or `resolved`.
    pub status: &'a str,
    pub component: &'a str,
    pub title: String,
    pub message: String,
    /// Extra fields (merged into the JSON object).
    pub extra: Value,
}

/// Drop the alert into `alerts/inbox/`; a critical one (or its resolution)
/// also gets a line in `alerts/CRITICAL_ALERT`. Returns false, after saying
/// so on stderr, when neither could be written.
pub fn raise(layout: &Layout, a: &AlertText<'_>) -> bool {
    let at = crate::time::now_rfc3339();
    let mut v = json!({
        "fingerprint": a.fingerprint,
        "severity": a.severity,
        "status": a.status,
        "source": a.component,
        "title": a.title,
        "message": a.message,
        "component": a.component,
        "at": at,
    });
    if let (Value::Object(m), Value::Object(extra)) = (&mut v, &a.extra) {
        for (k, x) in extra {
            m.insert(k.clone(), x.clone());
        }
    }
    let inbox = layout.alerts_inbox();
    let file = inbox.join(format!("{}.json", crate::queue::new_name()));
    let inbox_ok = match crate::fs::ensure_dir(&inbox).and_then(|_| crate::fs::write_json(&file, &v)) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("{}: cannot raise an alert in {}: {e}", super::writer::program(a.component), inbox.display());
            false
        }
    };
    let mut line_ok = true;
    if a.severity == "critical" {
        let word = if a.status == "resolved" { "RESOLVED" } else { "CRITICAL" };
        let line = format!("{at} {word} {}: {}: {}", super::writer::program(a.component), a.title, a.message);
        if let Err(e) = append_critical_line(layout, &line) {
            eprintln!(
                "{}: cannot append to {}: {e}",
                super::writer::program(a.component),
                critical_alert_path(layout).display()
            );
            line_ok = false;
        }
    }
    if !inbox_ok && !line_ok {
        eprintln!("{}: ALERT {}: {}: {}", super::writer::program(a.component), a.severity, a.title, a.message);
    }
    inbox_ok || line_ok
}

/// Append one line (control characters replaced) to `alerts/CRITICAL_ALERT`,
/// created 0600, and fsync it.
pub fn append_critical_line(layout: &Layout, line: &str) -> std::io::Result<()> {
    let path = critical_alert_path(layout);
    let mut clean: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    clean.push('\n');
    let existed = path.exists();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(crate::fs::FILE_MODE)
        .open(&path)?;
    f.write_all(clean.as_bytes())?;
    f.sync_data()?;
    if !existed {
        crate::fs::fsync_dir(layout.alerts().as_path()).map_err(std::io::Error::other)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dir_is_per_root_under_the_temp_dir() {
        let a = default_dir(Path::new("/srv/a"));
        assert!(a.starts_with(std::env::temp_dir()));
        assert!(a.ends_with("logs"));
        assert_ne!(a, default_dir(Path::new("/srv/b")));
    }

    #[test]
    fn a_critical_alert_reaches_the_inbox_and_critical_alert() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        assert!(raise(
            &l,
            &AlertText {
                fingerprint: "log_write_failed:executor".into(),
                severity: "critical",
                status: "firing",
                component: "executor",
                title: "t".into(),
                message: "line\nbreak".into(),
                extra: json!({"fallback_path": "/f"}),
            }
        ));
        let files: Vec<_> = std::fs::read_dir(l.alerts_inbox()).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let v: Value = crate::fs::read_json(&files[0].path()).unwrap();
        assert_eq!(v["fingerprint"], "log_write_failed:executor");
        assert_eq!(v["fallback_path"], "/f");
        assert_eq!(v["source"], "executor");
        let text = std::fs::read_to_string(critical_alert_path(&l)).unwrap();
        assert!(text.ends_with("CRITICAL ghost-executor: t: line break\n"), "{text}");
    }
}
