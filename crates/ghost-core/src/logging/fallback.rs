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

use crate::alert::{Alert, AlertSource, AlertStatus, Severity};
use crate::layout::Layout;

/// The fallback directory for a data root.
pub fn default_dir(root: &Path) -> PathBuf {
    let hash = crate::md5_hex(root.as_os_str().as_encoded_bytes());
    std::env::temp_dir()
        .join(format!("ghostbridge-{}", &hash[..12]))
        .join("logs")
}

/// The `source` of an alert a component raises.
pub fn source(component: &str) -> AlertSource {
    serde_json::from_value(serde_json::Value::String(component.to_string()))
        .unwrap_or(AlertSource::Unknown)
}

/// Drop the alert into `alerts/inbox/`; a critical one (or its resolution)
/// also gets a line in `alerts/CRITICAL_ALERT`. Returns false, after saying
/// so on stderr, when neither could be written.
pub fn raise(layout: &Layout, component: &str, a: &Alert) -> bool {
    let program = super::writer::program(component);
    let inbox_ok = match crate::alert::write(layout, a) {
        Ok(_) => true,
        Err(e) => {
            eprintln!(
                "{program}: cannot raise an alert in {}: {e}",
                layout.alerts_inbox().display()
            );
            false
        }
    };
    let mut line_ok = true;
    if a.severity == Severity::Critical {
        let word = match a.status {
            AlertStatus::Resolved => "RESOLVED",
            AlertStatus::Firing => "CRITICAL",
        };
        let line = format!("{} {word} {program}: {}: {}", a.at, a.title, a.message);
        if let Err(e) = append_critical_line(layout, &line) {
            eprintln!(
                "{program}: cannot append to {}: {e}",
                layout.critical_alert().display()
            );
            line_ok = false;
        }
    }
    if !inbox_ok && !line_ok {
        eprintln!(
            "{program}: ALERT {:?}: {}: {}",
            a.severity, a.title, a.message
        );
    }
    inbox_ok || line_ok
}

/// Append one line (control characters replaced) to `alerts/CRITICAL_ALERT`,
/// created 0600, and fsync it.
pub fn append_critical_line(layout: &Layout, line: &str) -> std::io::Result<()> {
    let path = layout.critical_alert();
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
        let a = Alert {
            component: Some("executor".into()),
            fallback_path: Some("/f".into()),
            ..Alert::new(
                "log_write_failed:executor",
                Severity::Critical,
                source("executor"),
                "t",
                "line\nbreak",
            )
        };
        assert!(raise(&l, "executor", &a));
        let files = crate::alert::inbox(&l).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(crate::alert::read(&files[0]).unwrap(), a);
        let v: serde_json::Value = crate::fs::read_json(&files[0]).unwrap();
        assert_eq!(v["fallback_path"], "/f");
        assert_eq!(v["source"], "executor");
        assert_eq!(source("unit"), AlertSource::Unknown);
        let text = std::fs::read_to_string(l.critical_alert()).unwrap();
        assert!(
            text.ends_with("CRITICAL ghost-executor: t: line break\n"),
            "{text}"
        );
    }
}
