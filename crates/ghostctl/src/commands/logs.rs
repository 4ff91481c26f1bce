//! `ghostctl logs`: read the JSON-lines logs in `logs/<component>.log`.
//!
//! Without `--component`, every `<component>.log` is read and the lines are
//! merged by timestamp. `--patch ID` keeps the lines whose `patch_id` or
//! `queue_name` is ID, or is the queue name / patch id of an entry ID names
//! (so a patch id also finds the claim line, which carries only the queue
//! name). `-f` follows: every 200 ms the files are read from where the last
//! read ended; a file that shrank or was replaced (rotation) is read again from
//! its start, and new component files are picked up.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
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
    pub component: Option<String>,
    pub patch: Option<String>,
    /// Only the last N lines of what is there already.
    pub lines: Option<usize>,
    pub json: bool,
}

/// The current (not rotated) log file of each component: `logs/<component>.log`.
pub fn log_files(layout: &Layout, component: Option<&str>) -> Vec<(String, PathBuf)> {
    if let Some(c) = component {
        return vec![(c.to_string(), layout.log_file(c))];
    }
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(layout.logs())
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

/// The values a line's `patch_id` or `queue_name` may have to match `id`:
/// `id` itself, and the queue names and patch ids of the entries the root's
/// one lookup finds for it.
pub fn ids_for(config: &Config, id: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::from([id.to_string()]);
    let layout = Layout::new(&config.root);
    for e in ghost_core::entry::find_all(&layout, id).unwrap_or_default() {
        ids.insert(e.name);
        ids.extend(e.patch_id);
    }
    ids
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

    fn matches(&self, ids: Option<&BTreeSet<String>>) -> bool {
        let Some(ids) = ids else { return true };
        let Some(v) = &self.json else { return false };
        ["patch_id", "queue_name"].iter().any(|k| {
            v.get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| ids.contains(s))
        })
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
    path: PathBuf,
    offset: u64,
    ino: Option<u64>,
    partial: Vec<u8>,
}

impl Tail {
    fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            offset: 0,
            ino: None,
            partial: Vec::new(),
        }
    }

    /// The complete lines written since the last call.
    fn read_new(&mut self) -> Vec<Line> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let Ok(meta) = f.metadata() else {
            return Vec::new();
        };
        if self.ino.is_some_and(|i| i != meta.ino()) || meta.len() < self.offset {
            // Rotated or truncated: start over on the new file.
            self.offset = 0;
            self.partial.clear();
        }
        self.ino = Some(meta.ino());
        if meta.len() == self.offset || f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        let Ok(n) = f.read_to_end(&mut buf) else {
            return Vec::new();
        };
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        let Some(last_nl) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last_nl + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        String::from_utf8_lossy(&done)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| Line::new(l.to_string()))
            .collect()
    }
}

/// Print the logs (and with `follow`, keep printing until `stop` says so).
pub fn logs(
    config: &Config,
    opts: &LogsOptions,
    out: &mut dyn Write,
    stop: &dyn Fn() -> bool,
) -> Result<(), CtlError> {
    if let Some(c) = &opts.component {
        if c.is_empty() || c.contains('/') || c.contains('.') {
            return Err(CtlError::Usage(format!(
                "{:?} is not a component name (executor, bridge, monitor, watchdog, ghostctl, …)",
                clean(c)
            )));
        }
    }
    let layout = Layout::new(&config.root);
    let dir = layout.logs();
    let ids = opts.patch.as_deref().map(|p| ids_for(config, p));
    let mut tails: Vec<(String, Tail)> = log_files(&layout, opts.component.as_deref())
        .into_iter()
        .map(|(c, p)| (c, Tail::new(p)))
        .collect();
    if !opts.follow && tails.iter().all(|(_, t)| !t.path.exists()) {
        let what = match &opts.component {
            Some(c) => format!("no log file {}", layout.log_file(c).display()),
            None => format!("no log files in {}", dir.display()),
        };
        return Err(CtlError::Failed(what));
    }
    let mut first: Vec<Line> = Vec::new();
    for (_, t) in tails.iter_mut() {
        first.extend(t.read_new().into_iter().filter(|l| l.matches(ids.as_ref())));
    }
    if tails.len() > 1 {
        first.sort_by(|a, b| a.ts().cmp(b.ts()));
    }
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
        if opts.component.is_none() {
            for (c, p) in log_files(&layout, None) {
                if !tails.iter().any(|(k, _)| *k == c) {
                    tails.push((c, Tail::new(p)));
                }
            }
        }
        for (_, t) in tails.iter_mut() {
            for l in t.read_new() {
                if l.matches(ids.as_ref()) {
                    write(out, &l)?;
                }
            }
        }
        out.flush().map_err(|e| CtlError::Other(e.into()))?;
    }
    Ok(())
}
