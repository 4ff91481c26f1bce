//! `ghostctl logs`: read the JSON-lines logs in `logs/`.
//!
//! Without `--component`, every `<component>.log` is read; `--component`
//! names one or more (repeated, or comma-separated). Each is read with its
//! rotated files (`<component>.<stamp>.log[.gz]`, gzip read transparently)
//! and the lines it wrote to the fallback directory during an outage, and the
//! lines are merged by timestamp. `--patch ID` resolves ID like every verb
//! ([`crate::entries::find`]: queue name, patch id, or an unambiguous prefix
//! or suffix; unknown or ambiguous is a usage error) and keeps the lines whose
//! `patch_id` is the entry's patch id or whose `queue_name` is its queue name
//! (so the claim line, which carries only the queue name, is found too);
//! `--level L` keeps L and more severe; `--correlation-id ID` keeps the lines
//! with that `correlation_id`. `-f` follows: every 200 ms the files are read
//! from where the last read ended, and what every component wrote meanwhile
//! is printed merged by timestamp; when a file was rotated, the rest of the
//! rotated file is read first (so no line is missed), then the new file from
//! its start, and new component files are picked up.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use ghost_core::cli::EXIT_OK;

use ghost_core::{Config, Layout};

use crate::util::clean;
use crate::CtlError;

/// `ghostctl logs`; `-f` runs until the process is interrupted.
pub fn run(config: &Config, opts: LogsOptions, out: &mut dyn Write) -> Result<u8, CtlError> {
    logs(config, &opts, out, &|| false)?;
    Ok(EXIT_OK)
}

/// How often `-f` looks for new lines.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub follow: bool,
    /// Only these components; empty: every one.
    pub components: Vec<String>,
    pub patch: Option<String>,
    /// Only the last N lines of what is there already.
    pub lines: Option<usize>,
    pub json: bool,
    /// Only lines of this level or more severe (`error`, `warn`, `info`, `debug`, `trace`).
    pub level: Option<String>,
    /// Only lines with this `correlation_id`.
    pub correlation_id: Option<String>,
}

/// `error` 0 … `trace` 4; `None` for anything else.
fn severity(level: &str) -> Option<u8> {
    match level.to_ascii_lowercase().as_str() {
        "error" => Some(0),
        "warn" | "warning" => Some(1),
        "info" => Some(2),
        "debug" => Some(3),
        "trace" => Some(4),
        _ => None,
    }
}

/// What a line must match.
struct Filter {
    ids: Option<Ids>,
    max_severity: Option<u8>,
    correlation_id: Option<String>,
}

impl Filter {
    fn keeps(&self, l: &Line) -> bool {
        if !l.matches(self.ids.as_ref()) {
            return false;
        }
        let field = |k: &str| {
            l.json
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
        };
        if let Some(max) = self.max_severity {
            if field("level").and_then(severity).is_none_or(|s| s > max) {
                return false;
            }
        }
        if let Some(c) = &self.correlation_id {
            if field("correlation_id") != Some(c.as_str()) {
                return false;
            }
        }
        true
    }
}

/// Every line of a finished file (plain or gzip), as lines.
fn read_whole(path: &Path) -> Vec<Line> {
    let bytes = ghost_core::logging::rotate::read_log(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Line::new(l.to_string()))
        .collect()
}

/// The current (not rotated) log file of each component: `logs/<component>.log`
/// of `components`, or of every component when it is empty.
pub fn log_files(layout: &Layout, components: &[String]) -> Vec<(String, PathBuf)> {
    log_files_in(&layout.logs(), components)
}

/// The same for another directory (the fallback directory).
fn log_files_in(dir: &Path, components: &[String]) -> Vec<(String, PathBuf)> {
    if !components.is_empty() {
        return components
            .iter()
            .map(|c| (c.clone(), dir.join(format!("{c}.log"))))
            .collect();
    }
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let f = e.file_name().to_str()?.to_string();
            let stem = f.strip_suffix(".log")?;
            (!stem.is_empty() && !stem.contains('.')).then(|| (stem.to_string(), e.path()))
        })
        .collect();
    out.sort();
    out
}

/// What `--patch ID` matches: the `patch_id` and the `queue_name` of the one
/// entry ID names, resolved as every verb resolves an ID (an unknown or
/// ambiguous ID is a usage error).
pub fn ids_for(config: &Config, id: &str) -> Result<Ids, CtlError> {
    let e = crate::entries::find(config, id)?;
    Ok(Ids {
        patch_id: e.patch_id,
        queue_name: e.name,
    })
}

/// The identity of the entry `--patch` names.
#[derive(Debug, Clone)]
pub struct Ids {
    pub patch_id: Option<String>,
    pub queue_name: String,
}

/// One log line, parsed once.
struct Line {
    raw: String,
    json: Option<Value>,
}

impl Line {
    fn new(raw: String) -> Line {
        let json = serde_json::from_str::<Value>(&raw)
            .ok()
            .filter(Value::is_object);
        Line { raw, json }
    }

    fn ts(&self) -> &str {
        self.json
            .as_ref()
            .and_then(|v| v.get("ts"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    fn matches(&self, ids: Option<&Ids>) -> bool {
        let Some(ids) = ids else { return true };
        let Some(v) = &self.json else { return false };
        let field = |k: &str| v.get(k).and_then(Value::as_str);
        // A line may carry only one of the two (the claim names the queue
        // entry, the admission the patch); a line naming another queue entry
        // is about another entry, even with the same patch id.
        match field("queue_name") {
            Some(q) => q == ids.queue_name,
            None => field("patch_id").is_some_and(|p| Some(p) == ids.patch_id.as_deref()),
        }
    }

    fn render(&self, json: bool) -> String {
        if json {
            return self.raw.clone();
        }
        let Some(Value::Object(m)) = &self.json else {
            return clean(&self.raw);
        };
        let s = |k: &str| match m.get(k) {
            Some(Value::String(s)) => clean(s),
            Some(Value::Null) | None => "-".into(),
            Some(v) => clean(&v.to_string()),
        };
        let mut out = format!(
            "{} {:<5} {} {} {}",
            s("ts"),
            s("level"),
            s("component"),
            s("event"),
            s("msg")
        );
        for (k, v) in m {
            if matches!(
                k.as_str(),
                "ts" | "level" | "component" | "event" | "msg" | "pid"
            ) {
                continue;
            }
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!(" {}={}", clean(k), clean(&v)));
        }
        out
    }
}

/// Where the reading of one file stands.
struct Tail {
    /// The component whose rotated files to look in when the file is rotated.
    component: Option<String>,
    path: PathBuf,
    offset: u64,
    ino: Option<u64>,
    partial: Vec<u8>,
}

impl Tail {
    fn new(path: PathBuf) -> Tail {
        Tail {
            component: None,
            path,
            offset: 0,
            ino: None,
            partial: Vec::new(),
        }
    }

    fn rotating(component: &str, path: PathBuf) -> Tail {
        Tail {
            component: Some(component.to_string()),
            ..Tail::new(path)
        }
    }

    /// What was added to the file we were reading before it was rotated: the
    /// rotated file with our inode, or (compressed meanwhile) the newest one.
    fn rest_of_rotated(&mut self) -> Vec<Line> {
        let (Some(c), Some(dir), Some(ino)) = (&self.component, self.path.parent(), self.ino)
        else {
            return Vec::new();
        };
        let rotated = ghost_core::logging::rotate::list(dir, c);
        let same = rotated
            .iter()
            .rev()
            .find(|r| std::fs::metadata(&r.path).is_ok_and(|m| m.ino() == ino));
        let Some(r) = same.or(rotated.last()) else {
            return Vec::new();
        };
        let bytes = ghost_core::logging::rotate::read_log(&r.path).unwrap_or_default();
        let from = (self.offset as usize).min(bytes.len());
        let mut rest = std::mem::take(&mut self.partial);
        rest.extend_from_slice(&bytes[from..]);
        String::from_utf8_lossy(&rest)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| Line::new(l.to_string()))
            .collect()
    }

    /// The complete lines written since the last call.
    fn read_new(&mut self) -> Vec<Line> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let Ok(meta) = f.metadata() else {
            return Vec::new();
        };
        let mut before = Vec::new();
        if self.ino.is_some_and(|i| i != meta.ino()) || meta.len() < self.offset {
            // Rotated (or truncated): finish the old file, then start over on the new one.
            if self.ino.is_some_and(|i| i != meta.ino()) {
                before = self.rest_of_rotated();
            }
            self.offset = 0;
            self.partial.clear();
        }
        self.ino = Some(meta.ino());
        if meta.len() == self.offset || f.seek(SeekFrom::Start(self.offset)).is_err() {
            return before;
        }
        let mut buf = Vec::new();
        let Ok(n) = f.read_to_end(&mut buf) else {
            return before;
        };
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        let Some(last_nl) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return before;
        };
        let rest = self.partial.split_off(last_nl + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        before.extend(
            String::from_utf8_lossy(&done)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| Line::new(l.to_string())),
        );
        before
    }
}

/// Print the logs (and with `follow`, keep printing until `stop` says so).
pub fn logs(
    config: &Config,
    opts: &LogsOptions,
    out: &mut dyn Write,
    stop: &dyn Fn() -> bool,
) -> Result<(), CtlError> {
    for c in &opts.components {
        if !ghost_core::text::is_name(c) {
            return Err(CtlError::Usage(format!(
                "{:?} is not a component name (executor, bridge, monitor, watchdog, ghostctl, …; \
                 several: --component executor,bridge or the flag repeated)",
                clean(c)
            )));
        }
    }
    let max_severity = match &opts.level {
        Some(l) => Some(severity(l).ok_or_else(|| {
            CtlError::Usage(format!(
                "--level {:?}: use error, warn, info, debug or trace",
                clean(l)
            ))
        })?),
        None => None,
    };
    let layout = Layout::new(&config.root);
    let dir = layout.logs();
    let fallback_dir = config
        .logs
        .fallback_dir
        .clone()
        .unwrap_or_else(|| ghost_core::logging::fallback::default_dir(&config.root));
    let filter = Filter {
        ids: match opts.patch.as_deref() {
            Some(p) => Some(ids_for(config, p)?),
            None => None,
        },
        max_severity,
        correlation_id: opts.correlation_id.clone(),
    };
    let mut tails: Vec<(String, Tail)> = log_files(&layout, &opts.components)
        .into_iter()
        .map(|(c, p)| {
            let t = Tail::rotating(&c, p);
            (c, t)
        })
        .collect();
    // What went to the fallback directory while logs/ could not be written.
    let fallback_key = |c: &str| format!("{c} (fallback)");
    for (c, p) in log_files_in(&fallback_dir, &opts.components) {
        if p.exists() {
            tails.push((fallback_key(&c), Tail::new(p)));
        }
    }
    let components: Vec<String> = tails
        .iter()
        .filter(|(_, t)| t.component.is_some())
        .map(|(c, _)| c.clone())
        .collect();
    let rotated: Vec<PathBuf> = components
        .iter()
        .flat_map(|c| ghost_core::logging::rotate::list(&dir, c))
        .map(|r| r.path)
        .collect();
    if !opts.follow && rotated.is_empty() && tails.iter().all(|(_, t)| !t.path.exists()) {
        let what = if opts.components.is_empty() {
            format!("no log files in {}", dir.display())
        } else {
            let files: Vec<String> = opts
                .components
                .iter()
                .map(|c| layout.log_file(c).display().to_string())
                .collect();
            format!("no log file {}", files.join(", "))
        };
        return Err(CtlError::Failed(what));
    }
    let mut first: Vec<Line> = Vec::new();
    for p in &rotated {
        first.extend(read_whole(p).into_iter().filter(|l| filter.keeps(l)));
    }
    for (_, t) in tails.iter_mut() {
        first.extend(t.read_new().into_iter().filter(|l| filter.keeps(l)));
    }
    // A stable sort: lines of one file with equal stamps keep their order.
    first.sort_by(|a, b| a.ts().cmp(b.ts()));
    let skip = opts
        .lines
        .map(|n| first.len().saturating_sub(n))
        .unwrap_or(0);
    let write = |out: &mut dyn Write, l: &Line| -> Result<(), CtlError> {
        writeln!(out, "{}", l.render(opts.json)).map_err(|e| CtlError::Other(e.into()))
    };
    for l in &first[skip..] {
        write(out, l)?;
    }
    out.flush().map_err(|e| CtlError::Other(e.into()))?;
    if !opts.follow {
        return Ok(());
    }
    while !stop() {
        std::thread::sleep(FOLLOW_POLL);
        if opts.components.is_empty() {
            for (c, p) in log_files(&layout, &[]) {
                if !tails.iter().any(|(k, _)| *k == c) {
                    let t = Tail::rotating(&c, p);
                    tails.push((c, t));
                }
            }
            for (c, p) in log_files_in(&fallback_dir, &[]) {
                let k = fallback_key(&c);
                if !tails.iter().any(|(x, _)| *x == k) {
                    tails.push((k, Tail::new(p)));
                }
            }
        }
        // What every component wrote since the last look, merged by time.
        let mut new: Vec<Line> = Vec::new();
        for (_, t) in tails.iter_mut() {
            new.extend(t.read_new().into_iter().filter(|l| filter.keeps(l)));
        }
        new.sort_by(|a, b| a.ts().cmp(b.ts()));
        for l in &new {
            write(out, l)?;
        }
        out.flush().map_err(|e| CtlError::Other(e.into()))?;
    }
    Ok(())
}
