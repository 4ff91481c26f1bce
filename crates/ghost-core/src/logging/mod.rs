//! Logging: `tracing` to stderr for people, and one JSON object a line to
//! `logs/<component>.log` for machines (`ts`, `level`, `component`, `pid`,
//! `event`, `msg`, and the event's other fields such as `patch_id`).
//!
//! Every binary calls [`init`] once and keeps the [`LogGuard`] it returns until
//! it exits (dropping it writes what is queued and syncs). The caller's thread
//! only formats the line and hands it to the writer thread ([`writer`]), which
//! rotates ([`rotate`], [`ledger`]) and falls back to another directory when
//! `logs/` cannot be written ([`fallback`]); a line is never lost without being
//! counted ([`LogHealth`]).
//!
//! Events name themselves with an `event` field (`PATCH_APPLIED`, …). Secrets are
//! never passed to `tracing`, so they cannot reach a log.

pub mod fallback;
pub mod health;
pub mod ledger;
pub mod pause;
pub mod rotate;
pub mod writer;

use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use health::{LogHealth, LogHealthReport};
pub use writer::{Clock, LogSink, ManualClock, SystemClock, WriterConfig, WriterHandle};

use crate::config::Config;
use crate::error::Result;

/// The `tracing` layer that turns events into JSON lines for a [`LogSink`].
pub struct JsonLayer {
    component: String,
    pid: u32,
    sink: LogSink,
}

impl JsonLayer {
    pub fn new(component: &str, sink: LogSink) -> Self {
        JsonLayer {
            component: component.to_string(),
            pid: std::process::id(),
            sink,
        }
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// `{"ts":…,"level":…,"component":…,"pid":…,"event":…,"msg":…` (no closing brace).
pub(crate) fn line_prefix(
    out: &mut String,
    ts: &str,
    level: &str,
    component: &str,
    pid: u32,
    event: &str,
    msg: &str,
) {
    out.push_str("{\"ts\":");
    push_json_str(out, ts);
    out.push_str(",\"level\":");
    push_json_str(out, level);
    out.push_str(",\"component\":");
    push_json_str(out, component);
    out.push_str(",\"pid\":");
    out.push_str(&pid.to_string());
    out.push_str(",\"event\":");
    push_json_str(out, event);
    out.push_str(",\"msg\":");
    push_json_str(out, msg);
}

#[derive(Default)]
struct LineVisitor {
    event: Option<String>,
    message: Option<String>,
    /// `,"key":value` for every other field.
    rest: String,
}

impl LineVisitor {
    fn key(&mut self, field: &Field) {
        self.rest.push(',');
        push_json_str(&mut self.rest, field.name());
        self.rest.push(':');
    }
}

impl Visit for LineVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "event" => self.event = Some(value.to_string()),
            "message" => self.message = Some(value.to_string()),
            _ => {
                self.key(field);
                push_json_str(&mut self.rest, value);
            }
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.rest.push_str(&value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.rest.push_str(&value.to_string());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.key(field);
            self.rest.push_str(&value.to_string());
        } else {
            self.record_str(field, &value.to_string());
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.rest.push_str(if value { "true" } else { "false" });
    }
}

impl<S: Subscriber> Layer<S> for JsonLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut v = LineVisitor::default();
        event.record(&mut v);
        let mut line = String::with_capacity(160 + v.rest.len());
        line_prefix(
            &mut line,
            &crate::time::now_rfc3339(),
            event.metadata().level().as_str(),
            &self.component,
            self.pid,
            v.event.as_deref().unwrap_or("LOG"),
            v.message.as_deref().unwrap_or(""),
        );
        line.push_str(&v.rest);
        line.push_str("}\n");
        self.sink.send(line);
    }
}

/// Keeps the log writer running; dropping it writes what is queued, syncs
/// and stops the writer (waiting at most a few seconds).
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    writer: Option<WriterHandle>,
}

impl LogGuard {
    /// The writer's health (`None` when this process logs to stderr only).
    pub fn health(&self) -> Option<LogHealth> {
        self.writer.as_ref().map(|w| w.health())
    }

    /// Wait until every line logged so far is written and synced.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.writer.as_ref().is_none_or(|w| w.sink().flush(timeout))
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            w.shutdown(Duration::from_secs(5));
        }
    }
}

static HEALTH: OnceLock<LogHealth> = OnceLock::new();

/// This process's log health, once [`init`] started a writer.
pub fn health() -> Option<LogHealth> {
    HEALTH.get().cloned()
}

/// The log health as heartbeats carry it under `details.logs` (`null` when
/// this process has no log file).
pub fn heartbeat_details() -> serde_json::Value {
    health()
        .map(|h| serde_json::to_value(h.report()).unwrap_or_default())
        .unwrap_or(serde_json::Value::Null)
}

/// Colour on stderr only for a terminal, and never with `NO_COLOR` set.
fn stderr_colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Initialise tracing for a binary: human lines on stderr at the level chosen by
/// `-v`/`-q` (`RUST_LOG` overrides), and, when `config` is given, JSON lines
/// to `<root>/logs/<component>.log` at `info` and above (or what `RUST_LOG`
/// says) through the writer thread, with the `[logs]` settings.
pub fn init(component: &str, verbosity: i8, config: Option<&Config>) -> Result<LogGuard> {
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
        .with_ansi(stderr_colour())
        .with_filter(stderr_filter);
    let (file, writer) = match config {
        Some(c) => {
            let handle = writer::start(
                WriterConfig::new(component, &c.root, &c.logs),
                Arc::new(SystemClock),
            )?;
            let _ = HEALTH.set(handle.health());
            let filter =
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
            (
                Some(JsonLayer::new(component, handle.sink()).with_filter(filter)),
                Some(handle),
            )
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    Ok(LogGuard { writer })
}

#[cfg(test)]
mod tests;
