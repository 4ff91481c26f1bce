//! The log writer: one thread per process that owns `logs/<component>.log`.
//!
//! Callers hand it whole lines through a bounded channel and never wait: when
//! the channel is full the line is counted as dropped, and the count is
//! written to the log (`LOG_LINES_DROPPED`) as soon as lines flow again and
//! shown in the heartbeat. The thread:
//!
//! - writes whole lines only, several per `write(2)` on an `O_APPEND` file, so
//!   lines of this and any other process never tear or interleave; a short
//!   write is cut back to the last whole line and counts as a failure;
//! - `fdatasync`s at most once a second while lines flow, and on flush and
//!   shutdown;
//! - rotates by rename before a line would take the file past `max_bytes`, or
//!   once the file is `max_age` old (see [`super::rotate`], [`super::ledger`]);
//! - on any failed open, write, fsync or rotation of the primary, or when the
//!   log directory disappears, switches to the fallback directory, raises a
//!   critical alert, retries the primary every `retry_interval`, and switches
//!   back with a resolved alert once a write and fsync there succeed. A failed
//!   fsync is never retried on the same descriptor: the file is reopened;
//! - rotates the fallback file like the primary (size, age, count); when the
//!   primary works again (or at start-up, for lines an earlier process left
//!   there), copies the fallback's lines back into the primary, in order,
//!   before any new line, and keeps each fallback file renamed as copied
//!   (`LOG_PRIMARY_RECOVERED` / `LOG_FALLBACK_COPIED`, and a `fallback_copied`
//!   ledger record per file);
//! - while lines flow, naps when the channel is empty rather than blocking on
//!   it, so that a caller's send never has to wake it (see [`NAP`]).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::fallback;
use super::health::LogHealth;
use super::ledger::{self, RapidWindow, Reason, RotationRecord};
use super::rotate;
use crate::alert::{Alert, AlertStatus, Severity};
use crate::config::LogsConfig;
use crate::error::{Error, Result};
use crate::layout::Layout;

/// The time source for rotation by age; tests inject a [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    pub fn new(t: SystemTime) -> Self {
        ManualClock(Arc::new(Mutex::new(t)))
    }
    pub fn advance(&self, d: Duration) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What one writer needs to know.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub component: String,
    /// The data root: lines go to `<root>/logs/`, alerts to `<root>/alerts/`.
    pub root: PathBuf,
    pub logs: LogsConfig,
    /// Lines the channel holds; more are dropped (and counted).
    pub capacity: usize,
}

impl WriterConfig {
    pub fn new(component: &str, root: &Path, logs: &LogsConfig) -> Self {
        WriterConfig {
            component: component.to_string(),
            root: root.to_path_buf(),
            logs: logs.clone(),
            capacity: DEFAULT_CAPACITY,
        }
    }
}

pub const DEFAULT_CAPACITY: usize = 16 * 1024;
/// Lines are gathered into one `write` up to this many bytes.
const BATCH_BYTES: usize = 64 * 1024;
/// How often data is synced and the log file's identity checked while lines flow.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// While lines flow, the writer naps this long when the channel is empty
/// instead of blocking on it: a sender wakes a blocked receiver with a
/// syscall on the sender's own thread (the caller's tail latency), and a
/// napping one needs no wake. At the default capacity the channel holds
/// far more than a nap's worth of lines.
const NAP: Duration = Duration::from_millis(1);
/// Empty naps before the writer blocks on the channel again (an idle
/// process wakes the writer only for the first line of a burst).
const NAPS: u32 = 20;
/// How much of the ledger is read at start-up to remember the last hour.
const LEDGER_TAIL: u64 = 256 * 1024;

enum Msg {
    Line(String),
    Flush(SyncSender<()>),
    Shutdown,
}

/// The callers' end: cheap to clone, never blocks.
#[derive(Clone)]
pub struct LogSink {
    tx: SyncSender<Msg>,
    health: LogHealth,
}

impl LogSink {
    /// Queue one line (ending in `\n`); count it as dropped if the writer is behind.
    pub fn send(&self, line: String) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.health.add_dropped(1)
            }
        }
    }

    /// Wait until every line queued before this call is written and synced
    /// (or `timeout`). Returns whether that happened in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = mpsc::sync_channel(1);
        let deadline = Instant::now() + timeout;
        let mut msg = Msg::Flush(tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    pub fn health(&self) -> &LogHealth {
        &self.health
    }
}

/// The running writer thread. Dropping it (or [`WriterHandle::shutdown`])
/// writes what is queued, syncs, and stops the thread.
pub struct WriterHandle {
    sink: LogSink,
    thread: Option<JoinHandle<()>>,
    done: Receiver<()>,
}

impl WriterHandle {
    pub fn sink(&self) -> LogSink {
        self.sink.clone()
    }

    pub fn health(&self) -> LogHealth {
        self.sink.health.clone()
    }

    /// Stop after writing everything queued; give up waiting after `timeout`
    /// (a writer stuck on a hung disk must not hold up the process's exit).
    pub fn shutdown(mut self, timeout: Duration) {
        self.stop(timeout);
    }

    fn stop(&mut self, timeout: Duration) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + timeout;
        loop {
            match self.sink.tx.try_send(Msg::Shutdown) {
                Ok(()) => break,
                Err(TrySendError::Full(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(_) => return,
            }
        }
        if self
            .done
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
        {
            let _ = thread.join();
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Start the writer thread for one component.
pub fn start(cfg: WriterConfig, clock: Arc<dyn Clock>) -> Result<WriterHandle> {
    let (tx, rx) = mpsc::sync_channel(cfg.capacity.max(1));
    let (done_tx, done) = mpsc::sync_channel(1);
    let health = LogHealth::default();
    let layout = Layout::new(&cfg.root);
    let logs_dir = layout.logs();
    let fallback_dir = cfg
        .logs
        .fallback_dir
        .clone()
        .unwrap_or_else(|| fallback::default_dir(&cfg.root));
    let rapid = RapidWindow::from_ledger(
        &ledger::read_tail(&logs_dir, LEDGER_TAIL),
        &cfg.component,
        clock.now(),
    );
    let mut w = Writer {
        primary_path: logs_dir.join(format!("{}.log", cfg.component)),
        fallback_path: fallback_dir.join(format!("{}.log", cfg.component)),
        fallback_dir,
        logs_dir,
        layout,
        pid: std::process::id(),
        component: cfg.component,
        cfg: cfg.logs,
        clock,
        health: health.clone(),
        primary: None,
        fallback: None,
        failing: None,
        rapid,
        buf: Vec::with_capacity(BATCH_BYTES),
        buf_lines: 0,
        dirty: false,
        last_sync: Instant::now(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("log-{}", w.component))
        .spawn(move || {
            match crate::fs::ensure_dir(&w.logs_dir)
                .map_err(|e| e.to_string())
                .and_then(|_| w.open_primary().map_err(|e| w.describe(&e)))
            {
                Ok(o) => {
                    w.primary = Some(o);
                    w.copy_back_at_start();
                }
                Err(e) => w.fail(e),
            }
            w.run(rx);
            let _ = done_tx.send(());
        })
        .map_err(|e| Error::io("start the log writer thread", "logs", e))?;
    Ok(WriterHandle {
        sink: LogSink { tx, health },
        thread: Some(thread),
        done,
    })
}

struct Open {
    file: File,
    size: u64,
    born: SystemTime,
    id: (u64, u64),
}

struct Failing {
    since: SystemTime,
    next_retry: Instant,
    to_fallback: u64,
    fallback_warned: bool,
}

struct Writer {
    component: String,
    pid: u32,
    layout: Layout,
    logs_dir: PathBuf,
    primary_path: PathBuf,
    fallback_path: PathBuf,
    cfg: LogsConfig,
    clock: Arc<dyn Clock>,
    health: LogHealth,
    primary: Option<Open>,
    fallback_dir: PathBuf,
    fallback: Option<Open>,
    failing: Option<Failing>,
    rapid: RapidWindow,
    buf: Vec<u8>,
    buf_lines: u64,
    dirty: bool,
    last_sync: Instant,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Msg>) {
        let tick = Duration::from_millis(200).min(self.cfg.retry_interval);
        // Naps left before parking again (see NAP).
        let mut naps = 0u32;
        loop {
            let mut acks = Vec::new();
            let mut stop = false;
            let got = if naps > 0 {
                // Lines flowed a moment ago: nap rather than park, so that
                // the callers' sends find no waiting receiver to wake.
                match rx.try_recv() {
                    Err(TryRecvError::Empty) => {
                        std::thread::sleep(NAP);
                        naps -= 1;
                        rx.try_recv()
                    }
                    r => r,
                }
                .map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                rx.recv_timeout(tick)
            };
            match got {
                Ok(m) => {
                    naps = NAPS;
                    self.check_age();
                    self.take(m, &mut acks, &mut stop);
                    while self.buf.len() < BATCH_BYTES {
                        match rx.try_recv() {
                            Ok(m) => self.take(m, &mut acks, &mut stop),
                            Err(_) => break,
                        }
                    }
                    let n = self.health.take_unreported();
                    if n > 0 {
                        self.report_drops(n);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            if stop {
                // Lines other threads queued while we were told to stop.
                while let Ok(Msg::Line(l)) = rx.try_recv() {
                    self.push_line(l.as_bytes());
                }
            }
            self.flush_buf();
            self.housekeeping(!acks.is_empty() || stop);
            for a in acks {
                let _ = a.send(());
            }
            if stop {
                return;
            }
        }
    }

    fn take(&mut self, m: Msg, acks: &mut Vec<SyncSender<()>>, stop: &mut bool) {
        match m {
            Msg::Line(l) => self.push_line(l.as_bytes()),
            Msg::Flush(a) => {
                // Everything before the flush request must be on disk first.
                self.flush_buf();
                acks.push(a);
            }
            Msg::Shutdown => *stop = true,
        }
    }

    fn report_drops(&mut self, n: u64) {
        let line = self.own_line(
            "WARN",
            "LOG_LINES_DROPPED",
            &format!("{n} log line(s) were lost (the log writer was behind or no log file could be written)"),
            json!({ "dropped": n, "dropped_total": self.health.dropped_lines() }),
        );
        self.push_line(line.as_bytes());
        if !self.flush_buf() {
            // Not written either: report it (and itself) next time.
            self.health.return_unreported(n);
        }
    }

    /// Add a line to the batch, rotating first when it would take the file past `max_bytes`.
    fn push_line(&mut self, line: &[u8]) {
        if let Some(p) = &self.primary {
            let pending = p.size + self.buf.len() as u64;
            if pending > 0 && pending + line.len() as u64 > self.cfg.max_bytes {
                self.flush_buf();
                if self.primary.as_ref().is_some_and(|p| p.size > 0) {
                    self.rotate(Reason::Size);
                }
            }
        }
        self.buf.extend_from_slice(line);
        self.buf_lines += 1;
        if self.buf.len() >= BATCH_BYTES {
            self.flush_buf();
        }
    }

    /// Write the batch; false when it reached no file (and was counted as dropped).
    fn flush_buf(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        let buf = std::mem::take(&mut self.buf);
        let lines = std::mem::take(&mut self.buf_lines);
        if self.failing.is_none() {
            // A stat per batch: lines must not go to a file that was unlinked
            // with its directory.
            self.check_identity();
        }
        let written = self.failing.is_none() && {
            match self.write_primary(&buf) {
                Ok(()) => true,
                Err(e) => {
                    let e = self.describe(&e);
                    self.fail(e);
                    false
                }
            }
        };
        let ok = written || self.write_fallback(&buf, lines);
        self.buf = buf;
        self.buf.clear();
        ok
    }

    fn write_primary(&mut self, buf: &[u8]) -> io::Result<()> {
        let p = self
            .primary
            .as_mut()
            .ok_or_else(|| io::Error::other("the log file is not open"))?;
        match p.file.write(buf) {
            Ok(n) if n == buf.len() => {
                p.size += n as u64;
                self.dirty = true;
                Ok(())
            }
            Ok(n) => {
                // Cut the partial line off again, unless someone else wrote since.
                if p.file
                    .metadata()
                    .is_ok_and(|m| m.len() == p.size + n as u64)
                {
                    let _ = p.file.set_len(p.size);
                }
                Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!(
                        "short write ({n} of {} bytes; the disk is probably full)",
                        buf.len()
                    ),
                ))
            }
            Err(e) => Err(e),
        }
    }

    fn write_fallback(&mut self, buf: &[u8], lines: u64) -> bool {
        // The fallback rotates like the primary: before a line would take it
        // past max_bytes (and by age in housekeeping).
        let mut rest = buf;
        let mut ok = true;
        let mut rotated = false;
        while ok && !rest.is_empty() {
            if self.fallback.is_none() {
                self.fallback = self.open_fallback().ok();
            }
            let Some(f) = self.fallback.as_ref() else {
                ok = false;
                break;
            };
            let room = self.cfg.max_bytes.saturating_sub(f.size) as usize;
            let fits = rest[..room.min(rest.len())]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            let cut = match fits {
                0 if f.size > 0 && !rotated => {
                    // One rotation per batch: one that failed is not retried in a loop.
                    rotated = true;
                    self.rotate_fallback(Reason::Size);
                    continue;
                }
                // An empty file takes at least one line, however long.
                0 => rest
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(rest.len(), |i| i + 1),
                n => n,
            };
            let (now, later) = rest.split_at(cut);
            let f = self.fallback.as_mut().expect("opened above");
            ok = f.file.write_all(now).is_ok();
            f.size += now.len() as u64;
            rest = later;
            rotated = false;
        }
        let failing = self.failing.get_or_insert_with(|| Failing {
            since: self.clock.now(),
            next_retry: Instant::now(),
            to_fallback: 0,
            fallback_warned: false,
        });
        if ok {
            failing.to_fallback += lines;
        } else {
            self.fallback = None;
            self.health.add_dropped(lines);
            if !failing.fallback_warned {
                failing.fallback_warned = true;
                eprintln!(
                    "{}: cannot write the fallback log {} either; log lines are being lost",
                    program(&self.component),
                    self.fallback_path.display()
                );
            }
        }
        ok
    }

    fn open_fallback(&self) -> io::Result<Open> {
        crate::fs::ensure_dir(&self.fallback_dir).map_err(io::Error::other)?;
        self.open_log(&self.fallback_path)
    }

    /// Rotate the fallback file by rename in the fallback directory, with the
    /// primary's names, compression and count (its ledger is the fallback
    /// directory's own: `logs/` is the one that failed). Best effort: a
    /// rotation that fails leaves the lines where they are.
    fn rotate_fallback(&mut self, reason: Reason) {
        let Some(f) = self.fallback.take() else {
            return;
        };
        let _ = f.file.sync_data();
        let from_size = f.size;
        drop(f);
        let now = self.clock.now();
        let dest = rotate::free_name(&self.fallback_dir, &self.component, now);
        if crate::fs::durable_move(&self.fallback_path, &dest).is_err() {
            return;
        }
        let kept = if self.cfg.compress {
            rotate::compress(&dest).unwrap_or(dest)
        } else {
            dest
        };
        let rec = RotationRecord {
            component: self.component.clone(),
            at: crate::time::rfc3339(now),
            from_size,
            rotated: file_name(&kept),
            reason,
            dir: None,
        };
        let _ = ledger::append(&self.fallback_dir, &rec);
        let _ = rotate::purge(&self.fallback_dir, &self.component, self.cfg.keep as usize);
    }

    /// Whether the fallback directory holds lines of this component that
    /// were not copied back into the primary yet.
    fn fallback_has_lines(&self) -> bool {
        !rotate::list(&self.fallback_dir, &self.component).is_empty()
            || std::fs::metadata(&self.fallback_path).is_ok_and(|m| m.len() > 0)
    }

    /// Copy the lines of past outages back into the primary log (open in
    /// `self.primary`), in order: the fallback's rotated files, oldest first,
    /// then its current file. Once they are synced there, each fallback file
    /// is kept, renamed as copied (`<component>.<stamp>.copied.log`, under the
    /// rotation count), with a `fallback_copied` ledger record. A failure
    /// stops the copy and marks nothing copied: lines may then be copied
    /// twice by the next attempt, never lost.
    fn copy_back(&mut self) -> std::result::Result<CopiedBack, String> {
        if let Some(f) = self.fallback.take() {
            let _ = f.file.sync_data();
        }
        let mut files: Vec<PathBuf> = rotate::list(&self.fallback_dir, &self.component)
            .into_iter()
            .map(|r| r.path)
            .collect();
        if std::fs::metadata(&self.fallback_path).is_ok_and(|m| m.len() > 0) {
            files.push(self.fallback_path.clone());
        }
        let mut out = CopiedBack::default();
        if files.is_empty() {
            return Ok(out);
        }
        let mut sizes = Vec::new();
        for f in &files {
            let mut data = rotate::read_log(f).map_err(|e| format!("read {}: {e}", f.display()))?;
            sizes.push(data.len() as u64);
            // A line cut by a crash mid-write still ends as a line.
            if !data.is_empty() && !data.ends_with(b"\n") {
                data.push(b'\n');
            }
            for chunk in line_chunks(&data, BATCH_BYTES) {
                if self
                    .primary
                    .as_ref()
                    .is_some_and(|p| p.size > 0 && p.size + chunk.len() as u64 > self.cfg.max_bytes)
                {
                    self.rotate(Reason::Size);
                }
                if let Err(e) = self.write_primary(chunk) {
                    return Err(format!("copy {} back: {}", f.display(), self.describe(&e)));
                }
                out.lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            }
        }
        if let Some(p) = &self.primary {
            p.file
                .sync_data()
                .map_err(|e| format!("fdatasync {}", self.describe(&e)))?;
        }
        self.dirty = false;
        let now = self.clock.now();
        for (f, from_size) in files.iter().zip(sizes) {
            let mut dest = rotate::free_copied_name(&self.fallback_dir, &self.component, now);
            if f.extension().is_some_and(|e| e == "gz") {
                let mut n = dest.into_os_string();
                n.push(".gz");
                dest = PathBuf::from(n);
            }
            if let Err(e) = crate::fs::durable_move(f, &dest) {
                // Its lines are in the primary now; left as it is, they
                // would be copied again by the next recovery.
                out.problems
                    .push(format!("keep {} as copied: {e}", f.display()));
                continue;
            }
            let kept = if self.cfg.compress && dest.extension().is_none_or(|e| e != "gz") {
                rotate::compress(&dest).unwrap_or(dest)
            } else {
                dest
            };
            let rec = RotationRecord {
                component: self.component.clone(),
                at: crate::time::rfc3339(now),
                from_size,
                rotated: file_name(&kept),
                reason: Reason::FallbackCopied,
                dir: Some(self.fallback_dir.display().to_string()),
            };
            if let Err(e) = ledger::append(&self.logs_dir, &rec) {
                out.problems.push(format!("ledger: {e}"));
            }
            out.kept.push(kept);
        }
        if let Err(e) = rotate::purge(&self.fallback_dir, &self.component, self.cfg.keep as usize) {
            out.problems.push(format!("purge: {e}"));
        }
        Ok(out)
    }

    /// At start-up, with the primary open: lines an earlier process left in
    /// the fallback (it stopped before its log recovered) are copied back.
    fn copy_back_at_start(&mut self) {
        if !self.fallback_has_lines() {
            return;
        }
        match self.copy_back() {
            Ok(c) => {
                let line = self.copied_line(&c);
                self.push_line(line.as_bytes());
                for p in c.problems {
                    let line =
                        self.own_line("WARN", "LOG_ROTATION_PROBLEM", &p, json!({ "error": p }));
                    self.push_line(line.as_bytes());
                }
            }
            Err(e) => self.fail(e),
        }
    }

    /// `LOG_FALLBACK_COPIED`: what was copied back, and where the copies are kept.
    fn copied_line(&self, c: &CopiedBack) -> String {
        let kept: Vec<String> = c.kept.iter().map(|p| p.display().to_string()).collect();
        self.own_line(
            "WARN",
            "LOG_FALLBACK_COPIED",
            &format!(
                "{} line(s) written to the fallback during an outage copied back into this log; the fallback copies are kept as {}",
                c.lines,
                kept.join(", ")
            ),
            json!({ "lines_copied": c.lines, "kept": kept }),
        )
    }

    fn open_primary(&self) -> io::Result<Open> {
        self.open_log(&self.primary_path)
    }

    fn open_log(&self, path: &Path) -> io::Result<Open> {
        #[allow(clippy::disallowed_methods)]
        // long-lived log handle; the writer owns its sync policy
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(crate::fs::FILE_MODE)
            .open(path)?;
        let m = file.metadata()?;
        let born = if m.len() == 0 {
            self.clock.now()
        } else {
            first_line_time(path)
                .or_else(|| m.modified().ok())
                .unwrap_or_else(|| self.clock.now())
        };
        Ok(Open {
            file,
            size: m.len(),
            born,
            id: (m.dev(), m.ino()),
        })
    }

    fn describe(&self, e: &io::Error) -> String {
        format!("{}: {e}", self.primary_path.display())
    }

    /// The primary failed: go to the fallback and tell people.
    fn fail(&mut self, error: String) {
        self.primary = None;
        self.dirty = false;
        let retry = self.cfg.retry_interval;
        if self.failing.is_some() {
            self.health
                .set_failing(self.clock.now(), Some(self.fallback_path.clone()), error);
            return;
        }
        let now = self.clock.now();
        self.failing = Some(Failing {
            since: now,
            next_retry: Instant::now() + retry,
            to_fallback: 0,
            fallback_warned: false,
        });
        if self.fallback.is_none() {
            self.fallback = self.open_fallback().ok();
        }
        self.health
            .set_failing(now, Some(self.fallback_path.clone()), error.clone());
        eprintln!(
            "{}: cannot write the log ({error}); lines go to {} until it can be written again",
            program(&self.component),
            self.fallback_path.display()
        );
        let line = self.own_line(
            "ERROR",
            "LOG_PRIMARY_FAILED",
            &format!("cannot write the log: {error}"),
            json!({ "error": error, "primary_path": self.primary_path.display().to_string() }),
        );
        let _ = self.write_fallback(line.as_bytes(), 1);
        let alert = Alert {
            component: Some(self.component.clone()),
            error: Some(error.clone()),
            primary_path: Some(self.primary_path.display().to_string()),
            fallback_path: Some(self.fallback_path.display().to_string()),
            ..Alert::new(
                fingerprint_failed(&self.component),
                Severity::Critical,
                fallback::source(&self.component),
                format!("{} cannot write its log", program(&self.component)),
                format!(
                    "{error}. Lines go to {} until {} can be written again; retried every {}. An executor stops claiming patches after {} of this.",
                    self.fallback_path.display(),
                    self.primary_path.display(),
                    humantime::format_duration(retry),
                    humantime::format_duration(self.cfg.pause_after),
                ),
            )
        };
        fallback::raise(&self.layout, &self.component, &alert);
    }

    fn try_recover(&mut self) {
        let Some(f) = self.failing.as_mut() else {
            return;
        };
        f.next_retry = Instant::now() + self.cfg.retry_interval;
        let (since, to_fallback) = (f.since, f.to_fallback);
        let opened = crate::fs::ensure_dir(&self.logs_dir)
            .map_err(|e| e.to_string())
            .and_then(|_| self.open_primary().map_err(|e| self.describe(&e)));
        let copied = opened.and_then(|o| {
            self.primary = Some(o);
            // The outage's lines first, so the log reads in order.
            self.copy_back()
        });
        let copied = match copied {
            Ok(c) => c,
            Err(e) => {
                self.primary = None;
                self.health
                    .set_failing(since, Some(self.fallback_path.clone()), e);
                return;
            }
        };
        let kept: Vec<String> = copied
            .kept
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let line = self.own_line(
            "WARN",
            "LOG_PRIMARY_RECOVERED",
            &format!(
                "the log can be written again; {to_fallback} line(s) written since {} went to {}; {} line(s) of the fallback copied back above (the copies kept as {})",
                crate::time::rfc3339(since),
                self.fallback_path.display(),
                copied.lines,
                if kept.is_empty() { "nothing".to_string() } else { kept.join(", ") },
            ),
            json!({
                "failing_since": crate::time::rfc3339(since),
                "fallback_path": self.fallback_path.display().to_string(),
                "lines_in_fallback": to_fallback,
                "lines_copied": copied.lines,
                "kept": kept,
            }),
        );
        // The line and its fdatasync are the proof that the primary works.
        let attempt = self
            .write_primary(line.as_bytes())
            .and_then(|()| self.primary.as_ref().map_or(Ok(()), |p| p.file.sync_data()));
        match attempt {
            Ok(()) => {
                self.dirty = false;
                self.failing = None;
                self.health.set_ok();
                self.last_sync = Instant::now();
                for p in copied.problems {
                    let line =
                        self.own_line("WARN", "LOG_ROTATION_PROBLEM", &p, json!({ "error": p }));
                    self.buf.extend_from_slice(line.as_bytes());
                    self.buf_lines += 1;
                }
                let alert = Alert {
                    status: AlertStatus::Resolved,
                    component: Some(self.component.clone()),
                    fallback_path: Some(self.fallback_path.display().to_string()),
                    lines_in_fallback: Some(to_fallback),
                    ..Alert::new(
                        fingerprint_failed(&self.component),
                        Severity::Critical,
                        fallback::source(&self.component),
                        format!("{} writes its log again", program(&self.component)),
                        format!(
                            "{} can be written again; the {} line(s) of the outage were copied back into it from {}",
                            self.primary_path.display(),
                            copied.lines,
                            self.fallback_path.display()
                        ),
                    )
                };
                fallback::raise(&self.layout, &self.component, &alert);
            }
            Err(e) => {
                self.primary = None;
                let e = self.describe(&e);
                self.health
                    .set_failing(since, Some(self.fallback_path.clone()), e);
            }
        }
    }

    fn housekeeping(&mut self, force_sync: bool) {
        if self.failing.is_some() {
            if let Some(f) = self.fallback.as_mut() {
                if force_sync {
                    let _ = f.file.sync_data();
                }
            }
            if self.fallback.as_ref().is_some_and(|f| {
                f.size > 0
                    && self
                        .clock
                        .now()
                        .duration_since(f.born)
                        .is_ok_and(|a| a >= self.cfg.max_age)
            }) {
                self.rotate_fallback(Reason::Age);
            }
            if self
                .failing
                .as_ref()
                .is_some_and(|f| Instant::now() >= f.next_retry)
            {
                self.try_recover();
            }
            return;
        }
        self.check_age();
        if !(force_sync || self.last_sync.elapsed() >= SYNC_EVERY) {
            return;
        }
        self.last_sync = Instant::now();
        if self.dirty {
            if let Some(p) = &self.primary {
                if let Err(e) = p.file.sync_data() {
                    // Never retried on this descriptor: the pages may be gone.
                    let e = format!("fdatasync {}", self.describe(&e));
                    self.fail(e);
                    return;
                }
            }
            self.dirty = false;
        }
    }

    /// The file we write must still be `logs/<component>.log`: another process
    /// of the same name may have rotated it (reopen), or the directory may be
    /// gone (a failure).
    fn check_identity(&mut self) {
        let Some(p) = &self.primary else { return };
        match std::fs::metadata(&self.primary_path) {
            Ok(m) if (m.dev(), m.ino()) == p.id => {}
            _ if self.logs_dir.is_dir() => match self.open_primary() {
                Ok(o) => self.primary = Some(o),
                Err(e) => {
                    let e = self.describe(&e);
                    self.fail(e);
                }
            },
            _ => {
                let e = format!("{}: the log directory was removed", self.logs_dir.display());
                self.fail(e);
            }
        }
    }

    fn check_age(&mut self) {
        let Some(p) = &self.primary else { return };
        if p.size > 0
            && self
                .clock
                .now()
                .duration_since(p.born)
                .is_ok_and(|a| a >= self.cfg.max_age)
        {
            self.flush_buf();
            self.rotate(Reason::Age);
        }
    }

    fn rotate(&mut self, reason: Reason) {
        let Some(p) = self.primary.take() else { return };
        if let Err(e) = p.file.sync_data() {
            let e = format!("fdatasync {}", self.describe(&e));
            self.fail(e);
            return;
        }
        self.dirty = false;
        let from_size = p.size;
        drop(p);
        let now = self.clock.now();
        let dest = rotate::free_name(&self.logs_dir, &self.component, now);
        if let Err(e) = crate::fs::durable_move(&self.primary_path, &dest) {
            self.fail(format!("rotate: {e}"));
            return;
        }
        match self.open_primary() {
            Ok(o) => self.primary = Some(o),
            Err(e) => {
                let e = self.describe(&e);
                self.fail(e);
                return;
            }
        }
        let mut problems = Vec::new();
        let kept = if self.cfg.compress {
            match rotate::compress(&dest) {
                Ok(gz) => gz,
                Err(e) => {
                    problems.push(format!("compress: {e}"));
                    dest
                }
            }
        } else {
            dest
        };
        let rotated = file_name(&kept);
        let rec = RotationRecord {
            component: self.component.clone(),
            at: crate::time::rfc3339(now),
            from_size,
            rotated: rotated.clone(),
            reason,
            dir: None,
        };
        if let Err(e) = ledger::append(&self.logs_dir, &rec) {
            problems.push(format!("ledger: {e}"));
        }
        if let Err(e) = rotate::purge(&self.logs_dir, &self.component, self.cfg.keep as usize) {
            problems.push(format!("purge: {e}"));
        }
        self.health.add_rotation();
        let line = self.own_line(
            "INFO",
            "LOG_ROTATED",
            &format!("rotated to {rotated} ({reason:?}, {from_size} bytes)"),
            json!({ "rotated": rotated, "reason": reason, "from_size": from_size }),
        );
        self.buf.extend_from_slice(line.as_bytes());
        self.buf_lines += 1;
        for p in problems {
            let line = self.own_line("WARN", "LOG_ROTATION_PROBLEM", &p, json!({ "error": p }));
            self.buf.extend_from_slice(line.as_bytes());
            self.buf_lines += 1;
        }
        if let Some(n) = self.rapid.record(now, self.cfg.rapid_rotations_per_hour) {
            let alert = Alert {
                component: Some(self.component.clone()),
                rotations_in_hour: Some(n as u32),
                ..Alert::new(
                    format!("log_rapid_rotation:{}", self.component),
                    Severity::Warning,
                    fallback::source(&self.component),
                    format!("the {} log rotates too often", self.component),
                    format!(
                        "{n} rotations of logs/{}.log within an hour (more than {}); something is logging in a loop, or logs.max_bytes is too small",
                        self.component, self.cfg.rapid_rotations_per_hour
                    ),
                )
            };
            fallback::raise(&self.layout, &self.component, &alert);
        }
    }

    fn own_line(&self, level: &str, event: &str, msg: &str, extra: Value) -> String {
        let mut out = String::with_capacity(256);
        super::line_prefix(
            &mut out,
            &crate::time::now_rfc3339(),
            level,
            &self.component,
            self.pid,
            event,
            msg,
        );
        if let Value::Object(m) = extra {
            for (k, v) in m {
                out.push(',');
                super::push_json_str(&mut out, &k);
                out.push(':');
                out.push_str(&v.to_string());
            }
        }
        out.push_str("}\n");
        out
    }
}

/// The program a component is (`executor` → `ghost-executor`, `ghostctl` stays).
pub fn program(component: &str) -> String {
    if component.starts_with("ghost") {
        component.to_string()
    } else {
        format!("ghost-{component}")
    }
}

pub fn fingerprint_failed(component: &str) -> String {
    format!("log_write_failed:{component}")
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `data` (whole lines) in pieces of about `max` bytes, each ending with a
/// whole line (a longer line is a piece of its own).
fn line_chunks(data: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = if rest.len() <= max {
            rest.len()
        } else {
            match rest[..max].iter().rposition(|b| *b == b'\n') {
                Some(i) => i + 1,
                None => rest
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(rest.len(), |i| i + 1),
            }
        };
        let (a, b) = rest.split_at(cut);
        rest = b;
        Some(a)
    })
}

/// What [`Writer::copy_back`] did.
#[derive(Debug, Default)]
struct CopiedBack {
    lines: u64,
    /// The fallback files, renamed as copied.
    kept: Vec<PathBuf>,
    problems: Vec<String>,
}

/// The `ts` of a log file's first line.
fn first_line_time(path: &Path) -> Option<SystemTime> {
    let f = File::open(path).ok()?;
    let mut first = String::new();
    // At most 64 KiB: a longer first line is not one of ours.
    io::BufReader::new(io::Read::take(f, 64 * 1024))
        .read_line(&mut first)
        .ok()?;
    let v: Value = serde_json::from_str(&first).ok()?;
    crate::time::parse_rfc3339(v.get("ts")?.as_str()?)
}
