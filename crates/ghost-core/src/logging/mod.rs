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

use std::cell::RefCell;
use std::fmt::Write as _;
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
    /// `,"component":…,"pid":…`, the same for every line of this layer.
    fixed: String,
    sink: LogSink,
}

impl JsonLayer {
    pub fn new(component: &str, sink: LogSink) -> Self {
        let mut fixed = String::from(",\"component\":");
        push_json_str(&mut fixed, component);
        fixed.push_str(",\"pid\":");
        fixed.push_str(&std::process::id().to_string());
        JsonLayer { fixed, sink }
    }
}

/// Appends `s` JSON-escaped, without the quotes.
fn push_json_escaped(out: &mut String, s: &str) {
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
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    push_json_escaped(out, s);
    out.push('"');
}

/// A `fmt::Write` that JSON-escapes into a string: `Debug` values are
/// formatted straight into the line, with no string of their own.
struct Escaper<'a>(&'a mut String);

impl std::fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        push_json_escaped(self.0, s);
        Ok(())
    }
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

/// One event's fields, JSON-escaped, in buffers each thread keeps and reuses:
/// the caller's thread allocates nothing per event but the line it sends.
#[derive(Default)]
struct Scratch {
    /// Whether the event has an `event` field, and its text (escaped).
    has_event: bool,
    event_text: String,
    /// The message (escaped).
    message: String,
    /// `,"key":value` for every other field.
    rest: String,
}

impl Scratch {
    fn clear(&mut self) {
        self.has_event = false;
        self.event_text.clear();
        self.message.clear();
        self.rest.clear();
    }

    fn key(&mut self, field: &Field) {
        self.rest.push(',');
        push_json_str(&mut self.rest, field.name());
        self.rest.push(':');
    }

    /// The line: `{"ts":…,…,"msg":…<rest>}\n`, allocated once at its size.
    fn line(&self, fixed: &str, level: &str) -> String {
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let event = if self.has_event {
            self.event_text.as_str()
        } else {
            "LOG"
        };
        // ts is 24 bytes; the rest is the fields' own text and the punctuation.
        let len =
            64 + fixed.len() + level.len() + event.len() + self.message.len() + self.rest.len();
        let mut out = String::with_capacity(len);
        out.push_str("{\"ts\":\"");
        let _ = write!(out, "{ts}");
        out.push_str("\",\"level\":\"");
        out.push_str(level);
        out.push('"');
        out.push_str(fixed);
        out.push_str(",\"event\":\"");
        out.push_str(event);
        out.push_str("\",\"msg\":\"");
        out.push_str(&self.message);
        out.push('"');
        out.push_str(&self.rest);
        out.push_str("}\n");
        out
    }
}

impl Visit for Scratch {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "event" => {
                self.has_event = true;
                self.event_text.clear();
                let _ = write!(Escaper(&mut self.event_text), "{value:?}");
            }
            "message" => {
                self.message.clear();
                let _ = write!(Escaper(&mut self.message), "{value:?}");
            }
            _ => {
                self.key(field);
                self.rest.push('"');
                let _ = write!(Escaper(&mut self.rest), "{value:?}");
                self.rest.push('"');
            }
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "event" => {
                self.has_event = true;
                self.event_text.clear();
                push_json_escaped(&mut self.event_text, value);
            }
            "message" => {
                self.message.clear();
                push_json_escaped(&mut self.message, value);
            }
            _ => {
                self.key(field);
                push_json_str(&mut self.rest, value);
            }
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.rest, "{value}");
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.rest, "{value}");
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.key(field);
            let _ = write!(self.rest, "{value}");
        } else {
            self.record_str(field, &value.to_string());
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.rest.push_str(if value { "true" } else { "false" });
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Past this size a thread's buffers are given back after the event, so that
/// one huge event does not pin its memory on the thread for good.
const SCRATCH_KEEP: usize = 16 * 1024;

impl<S: Subscriber> Layer<S> for JsonLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = event.metadata().level().as_str();
        let format = |s: &mut Scratch| {
            s.clear();
            event.record(s);
            s.line(&self.fixed, level)
        };
        // The thread's buffers, unless they are in use (an event logged while
        // formatting one, from a `Debug` impl) or gone (thread exit).
        let line = SCRATCH
            .try_with(|cell| match cell.try_borrow_mut() {
                Ok(mut s) => {
                    let line = format(&mut s);
                    if s.rest.capacity() + s.message.capacity() > SCRATCH_KEEP {
                        *s = Scratch::default();
                    }
                    line
                }
                Err(_) => format(&mut Scratch::default()),
            })
            .unwrap_or_else(|_| format(&mut Scratch::default()));
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
