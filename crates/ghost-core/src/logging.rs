//! Logging: `tracing` to stderr for people, and one JSON object a line to
//! `logs/<component>.log` for machines (`ts`, `level`, `component`, `pid`,
//! `event`, `msg`, and the event's other fields such as `patch_id`).
//!
//! Events name themselves with an `event` field (`PATCH_APPLIED`, …). Secrets are
//! never passed to `tracing`, so they cannot reach a log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::error::{IoContext, Result};

/// Writes JSON lines to a component's log file.
pub struct JsonFileLayer {
    component: String,
    pid: u32,
    file: Mutex<File>,
    path: PathBuf,
}

impl JsonFileLayer {
    pub fn open(path: &Path, component: &str) -> Result<Self> {
        if let Some(d) = path.parent() {
            crate::fs::ensure_dir(d)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(crate::fs::FILE_MODE)
            .open(path)
            .ctx("open log", path)?;
        Ok(JsonFileLayer {
            component: component.to_string(),
            pid: std::process::id(),
            file: Mutex::new(file),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
}

impl<S: Subscriber> Layer<S> for JsonFileLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        let mut line = Map::new();
        line.insert("ts".into(), Value::String(crate::time::now_rfc3339()));
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        line.insert("component".into(), Value::String(self.component.clone()));
        line.insert("pid".into(), Value::from(self.pid));
        let ev = fields
            .remove("event")
            .unwrap_or_else(|| Value::String("LOG".into()));
        line.insert("event".into(), ev);
        let msg = fields
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        line.insert("msg".into(), msg);
        line.extend(fields);
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        if let Ok(mut f) = self.file.lock() {
            // One write(2) per line on an O_APPEND file: lines never interleave.
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// Initialise tracing for a binary: human lines on stderr at the level chosen by
/// `-v`/`-q` (`RUST_LOG` overrides), and, when `log_file` is given, JSON lines
/// there at `info` and above (or what `RUST_LOG` says).
pub fn init(component: &str, verbosity: i8, log_file: Option<&Path>) -> Result<()> {
    let level = match verbosity {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let stderr_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(stderr_filter);
    let file = match log_file {
        Some(p) => {
            let filter =
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
            Some(JsonFileLayer::open(p, component)?.with_filter(filter))
        }
        None => None,
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_json_lines_with_the_contract_fields() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("logs/executor.log");
        let layer = JsonFileLayer::open(&p, "executor").unwrap();
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, || {
            tracing::info!(
                event = "PATCH_APPLIED",
                patch_id = "p-1",
                attempt = 2u64,
                "applied {}",
                "x"
            );
        });
        let text = std::fs::read_to_string(&p).unwrap();
        let v: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["event"], "PATCH_APPLIED");
        assert_eq!(v["component"], "executor");
        assert_eq!(v["msg"], "applied x");
        assert_eq!(v["patch_id"], "p-1");
        assert_eq!(v["attempt"], 2);
        assert_eq!(v["level"], "INFO");
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["pid"], std::process::id());
    }
}
