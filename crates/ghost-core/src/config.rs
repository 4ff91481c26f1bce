//! Configuration: TOML, unknown keys are errors, durations are human strings
//! (`"30s"`, `"5m"`, `"250ms"`), sizes are bytes or strings (`"5MiB"`).
//!
//! Every key has an embedded default, so no file is needed to start. Loading
//! reports every problem at once: each key is checked on its own before the
//! section is read whole, so one typo does not hide the next.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::patch::{CommandPolicy, RelPath, TargetSpec};

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file (or `embedded defaults`) the problems are in.
    pub origin: String,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad configuration in {}:", self.origin)?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// A secret from the configuration file (a token, a key, a webhook URL): its
/// `Debug` never shows the value, so a logged configuration leaks nothing.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfigSecret(String);

impl ConfigSecret {
    pub fn new(s: impl Into<String>) -> Self {
        ConfigSecret(s.into())
    }

    /// The value itself: for authentication only, never for a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ConfigSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConfigSecret(<redacted>)")
    }
}

/// `serde` glue for human durations.
pub mod duration {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration ({e}); write e.g. \"30s\", \"5m\", \"250ms\""
            ))
        })
    }
}

/// `serde` glue for optional human durations (absent = `None`).
pub mod duration_opt {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        duration::deserialize(d).map(Some)
    }
}

/// `serde` glue for byte sizes: an integer, or a string such as `"5MiB"`, `"512 KiB"`, `"8MB"`.
pub mod size {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn parse(s: &str) -> Result<u64, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a size; write e.g. 1048576 or \"5MiB\""))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            u => {
                return Err(format!(
                    "{s:?}: unknown size unit {u:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
                ))
            }
        };
        n.checked_mul(mult)
            .ok_or_else(|| format!("{s:?} is too large"))
    }

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(n),
            Raw::S(s) => parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    /// The working tree, relative to the root or absolute. Default `workspaces/<name>`.
    pub path: Option<PathBuf>,
    /// Legacy target names that mean this target.
    pub aliases: Vec<String>,
    /// Absolute prefix legacy patches use for this tree.
    pub legacy_root: Option<String>,
    /// Which commands a patch may run: `"none"` (the default), `"any"`, or
    /// an allowlist of argv prefixes such as `[["cargo", "test"]]`.
    pub commands: CommandPolicy,
    /// Also run shell commands (`{"shell": …}`, legacy shell strings, `sh -c`
    /// in an argv); they need `commands = "any"` as well.
    pub allow_shell: bool,
    /// Commit each applied patch in the tree's git repository.
    pub git_commit: bool,
    /// Extra environment variables for check commands (the environment is
    /// otherwise cleared but for PATH, HOME and LANG).
    pub env: BTreeMap<String, String>,
    /// Run checks (and git) as this user, with its primary group; the
    /// executor must run as root to switch.
    pub run_as: Option<String>,
    /// Path prefixes (relative to the tree) that no operation may touch, on
    /// top of every `.git` component; compared ignoring case.
    pub protected_paths: Vec<String>,
    /// Let patches set setuid, setgid and sticky bits.
    pub allow_special_modes: bool,
}

macro_rules! section {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty = $default:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name { $($(#[$fm])* pub $field: $ty),* }
        impl Default for $name {
            fn default() -> Self { $name { $($field: $default),* } }
        }
    };
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

section!(HeartbeatConfig {
    #[serde(with = "duration")]
    interval: Duration = secs(30),
    #[serde(with = "duration")]
    stale_after: Duration = secs(60),
});

section!(LogsConfig {
    /// A log file is rotated before it would grow past this size …
    #[serde(with = "size")] max_bytes: u64 = 5 << 20,
    /// … or once its first line is this old, whichever comes first.
    #[serde(with = "duration")] max_age: Duration = secs(7 * 24 * 3600),
    /// Rotated files kept per component; older ones are purged.
    keep: u32 = 10,
    /// More rotations of one component than this within a sliding hour raise an alert.
    rapid_rotations_per_hour: u32 = 3,
    /// An executor whose primary log has failed this long stops claiming patches.
    #[serde(with = "duration")] pause_after: Duration = secs(30),
    /// Where lines go while `logs/` cannot be written (default: under the
    /// system temporary directory, `ghostbridge-<hash of the root>/logs`).
    fallback_dir: Option<PathBuf> = None,
    /// Gzip rotated files.
    compress: bool = true,
    /// While on the fallback, how often the primary log is tried again.
    #[serde(with = "duration")] retry_interval: Duration = secs(5),
});

section!(ExecutorConfig {
    /// A patch active longer than this is killed, rolled back and parked in `.stuck/`.
    #[serde(with = "duration")]
    stuck_after: Duration = secs(15 * 60),
    max_attempts: u32 = 3,
    /// Retry n (1-based) waits `backoff_base × 4^(n-1)`, capped at `backoff_max`.
    #[serde(with = "duration")]
    backoff_base: Duration = secs(5),
    #[serde(with = "duration")]
    backoff_max: Duration = secs(5 * 60),
    #[serde(with = "duration")]
    command_timeout: Duration = secs(10 * 60),
    /// Full rescan of the queues, in case the file-system watcher missed an event.
    #[serde(with = "duration")]
    scan_interval: Duration = secs(5),
    /// On SIGTERM, how long the current patch may still run before it is rolled back.
    #[serde(with = "duration")]
    shutdown_grace: Duration = secs(20),
    /// Temp files older than this are cleared at start-up.
    #[serde(with = "duration")]
    tmp_max_age: Duration = secs(5 * 60),
    /// How much of each command's stdout and stderr the summary keeps.
    #[serde(with = "size")]
    output_tail_bytes: u64 = 4096,
    /// Mode of files a patch creates without giving one.
    default_file_mode: String = "0644".into(),
    /// Most patches of one target applied as one group commit (each still its
    /// own transaction); 1 applies them one by one.
    batch_max: u32 = 64,
});

section!(
    /// `[limits]`: bounds on the work one patch may cause, checked by the
    /// bridge at admission and by the executor while staging.
    LimitsConfig {
    /// Largest file a patch may leave in the tree (staged content, per file).
    #[serde(with = "size")]
    max_file_bytes: u64 = 64 << 20,
    /// Largest total of the files a patch writes.
    #[serde(with = "size")]
    max_staged_bytes: u64 = 256 << 20,
    max_operations: u32 = 10_000,
    max_regex_operations: u32 = 100,
    #[serde(with = "size")]
    max_pattern_bytes: u64 = 4 << 10,
    /// The `regex` crate's `size_limit`: compiled program size per pattern.
    #[serde(with = "size")]
    regex_size_limit: u64 = 1 << 20,
    /// The `regex` crate's `dfa_size_limit`: lazy DFA cache per pattern.
    #[serde(with = "size")]
    regex_dfa_size_limit: u64 = 2 << 20,
    /// Hunks over all the diffs of one patch.
    max_diff_hunks: u32 = 10_000,
});

section!(BridgeConfig {
    listen: String = "127.0.0.1:7878".into(),
    #[serde(with = "size")]
    max_patch_bytes: u64 = 8 << 20,
    /// Largest request body (a transcript or an array of patches).
    #[serde(with = "size")]
    max_body_bytes: u64 = 32 << 20,
    /// With this many entries in a target's pending/, new patches get 429 (0: no limit).
    high_water_mark: u32 = 10_000,
    /// What a client is told to wait (Retry-After) when the queue is full.
    #[serde(with = "duration")]
    retry_after: Duration = secs(30),
    /// The bearer token (else GHOST_BRIDGE_TOKEN, else generated into state/secrets/).
    token: Option<ConfigSecret> = None,
    /// The HMAC-SHA256 key for X-Ghost-Signature (else GHOST_HMAC_KEY, else generated).
    hmac_key: Option<ConfigSecret> = None,
    /// A file in the inbox is taken once its size has not changed for this long.
    #[serde(with = "duration")]
    inbox_settle: Duration = Duration::from_millis(500),
    /// Full rescan of the inbox, in case the watcher missed an event.
    #[serde(with = "duration")]
    inbox_scan_interval: Duration = secs(2),
    /// A connection must deliver a request's headers within this long (and an
    /// idle keep-alive connection is closed after it).
    #[serde(with = "duration")]
    header_timeout: Duration = secs(10),
    /// A request body must arrive whole within this long (a trickle is cut off).
    #[serde(with = "duration")]
    body_timeout: Duration = secs(30),
    /// Concurrent connections; more are answered 503 and closed. Clamped at
    /// start-up below the open-file limit, keeping a reserve for the queue,
    /// the inbox, the logs and the heartbeat.
    max_connections: u32 = 512,
    /// Requests per second per client address (0: no limit); more get 429.
    rate_limit: u32 = 50,
    /// How many requests a client may send at once above `rate_limit`.
    rate_burst: u32 = 100,
    /// How far the `X-Ghost-Timestamp` of a signed request may be from now.
    #[serde(with = "duration")]
    signature_window: Duration = secs(5 * 60),
    /// Memory for bodies of signed requests not yet verified, all clients
    /// together; past it such requests get 503.
    #[serde(with = "size")]
    unverified_body_budget: u64 = 64 << 20,
    /// Repeated refusals are logged once per client and reason per interval, with a count.
    #[serde(with = "duration")]
    refusal_log_interval: Duration = secs(10),
});

section!(
    /// `[monitor]`: the health model and the alert rules (docs/monitor.md).
    MonitorConfig {
    /// Where the dashboard and `/metrics` listen (docs/dashboard.md); empty: no dashboard.
    listen: String = "127.0.0.1:7879".into(),
    /// A full cycle at least this often (file events trigger one sooner).
    #[serde(with = "duration")]
    interval: Duration = secs(30),
    /// After a file event, wait this long for more before a cycle.
    #[serde(with = "duration")]
    debounce: Duration = Duration::from_millis(250),
    /// A pending entry older than this is stale (rule `pending_stale`).
    #[serde(with = "duration")]
    stale_pending_after: Duration = secs(15 * 60),
    /// More pending entries than this in one target (rule `queue_depth_high`).
    queue_depth_warn: u32 = 10,
    /// Free space below this percentage of a disk (rule `disk_low`).
    disk_free_min_percent: f64 = 10.0,
    /// A queue directory no file event touched is listed again after this
    /// long anyway (in case the watcher missed an event).
    #[serde(with = "duration")]
    full_rescan_interval: Duration = secs(10 * 60),
    /// How long a summary check may wait before every summary is checked again.
    #[serde(with = "duration")]
    summary_sweep_interval: Duration = secs(24 * 3600),
    /// How much history `state/history/` keeps (at one sample a minute).
    #[serde(with = "duration")]
    history_keep: Duration = secs(25 * 3600),
    /// A fingerprint that fires again this soon after its last notification
    /// is not notified again.
    #[serde(with = "duration")]
    dedup_window: Duration = secs(5 * 60),
    /// While an episode fires (not acknowledged), a reminder this often.
    #[serde(with = "duration")]
    repeat_interval: Duration = secs(4 * 3600),
    /// New episodes of one rule within this long go out as one message.
    #[serde(with = "duration")]
    group_wait: Duration = secs(30),
});

/// A retention: a duration, or `"forever"` (never archived).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Forever,
    After(Duration),
}

impl Retention {
    /// The age past which an item is archived, if ever.
    pub fn after(self) -> Option<Duration> {
        match self {
            Retention::Forever => None,
            Retention::After(d) => Some(d),
        }
    }
}

impl Serialize for Retention {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Retention::Forever => s.serialize_str("forever"),
            Retention::After(d) => duration::serialize(d, s),
        }
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().eq_ignore_ascii_case("forever") {
            return Ok(Retention::Forever);
        }
        humantime::parse_duration(s.trim())
            .map(Retention::After)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "{s:?} is neither \"forever\" nor a duration ({e}); write e.g. \"30d\", \"12h\""
                ))
            })
    }
}

const fn days(n: u64) -> Retention {
    Retention::After(secs(n * 24 * 3600))
}

/// `[retention.targets.<name>]`: one target's own retention of its entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetRetention {
    pub done: Option<Retention>,
    pub failed: Option<Retention>,
    pub trash: Option<Retention>,
}

section!(
    /// `[retention]`: when finished things move into `archive/`
    /// (docs/retention.md). Nothing is deleted without an archived copy.
    RetentionConfig {
    /// Entries in `done/` (with their records and summaries), by the age of their last move.
    done: Retention = days(30),
    /// Entries in `failed/`.
    failed: Retention = days(90),
    /// Entries in `trash/`.
    trash: Retention = days(30),
    /// Summaries whose entry is in no queue state any more.
    summaries: Retention = days(90),
    /// Alerts and requests the monitor has taken in (`.done/`).
    alerts: Retention = days(90),
    /// How often the monitor runs the maintenance cycle.
    #[serde(with = "duration")]
    interval: Duration = secs(3600),
    /// At most this many items are archived per cycle, so a backlog is
    /// worked off over several cycles instead of competing with the patch flow.
    max_per_cycle: u32 = 1000,
    /// Per-target overrides of `done`, `failed` and `trash`.
    targets: BTreeMap<String, TargetRetention> = BTreeMap::new(),
});

impl RetentionConfig {
    /// The retention of `state` entries of `target` (`None` for open states).
    pub fn of(&self, target: &str, state: crate::queue::QueueState) -> Option<Retention> {
        use crate::queue::QueueState as S;
        let o = self.targets.get(target);
        match state {
            S::Done => Some(o.and_then(|o| o.done).unwrap_or(self.done)),
            S::Failed => Some(o.and_then(|o| o.failed).unwrap_or(self.failed)),
            S::Trash => Some(o.and_then(|o| o.trash).unwrap_or(self.trash)),
            _ => None,
        }
    }
}

section!(WatchdogConfig {
    /// Restarts of one child allowed within `restart_window`; one more failure
    /// and the watchdog gives up on it (one critical alert) until an operator
    /// resets it (`ghostctl restart CHILD`) or `cool_off` passes.
    max_restarts: u32 = 2,
    #[serde(with = "duration")]
    restart_window: Duration = secs(5 * 60),
    /// The first restart waits this long; each further one twice as long …
    #[serde(with = "duration")]
    restart_delay: Duration = secs(1),
    /// … at most this.
    #[serde(with = "duration")]
    restart_delay_max: Duration = secs(60),
    /// Each delay is lengthened by a random fraction up to this (0 to 1), so
    /// children that failed together do not restart in lockstep.
    restart_jitter: f64 = 0.1,
    /// Running (heartbeat fresh) this long resets the restart budget and delay.
    #[serde(with = "duration")]
    healthy_after: Duration = secs(60),
    /// SIGTERM to a child's process group, SIGKILL after this long. The
    /// executor gets `executor.shutdown_grace` on top, to finish or roll back
    /// its patch.
    #[serde(with = "duration")]
    stop_grace: Duration = secs(10),
    /// A child without a first heartbeat this long after its start counts as hung.
    #[serde(with = "duration")]
    start_timeout: Duration = secs(60),
    /// After giving up on a child, try it again after this long (unset: only
    /// an operator's `ghostctl restart CHILD` does).
    #[serde(with = "duration_opt", skip_serializing_if = "Option::is_none")]
    cool_off: Option<Duration> = None,
    /// Per-child settings over the built-in children (`bridge`, `executor`,
    /// `monitor`); other names add children (they need a `command`).
    children: BTreeMap<String, ChildConfig> = BTreeMap::new(),
});

section!(
    /// `[watchdog.children.<name>]`: how the watchdog runs one child.
    ChildConfig {
    /// Start and supervise this child.
    enabled: bool = true,
    /// The program: an absolute path, a path relative to the data root, or a
    /// bare name looked up in PATH. Default: `ghost-<name>` next to the
    /// `ghost-watchdog` executable.
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<PathBuf> = None,
    /// Arguments after the standard ones.
    args: Vec<String> = Vec::new(),
    /// Pass the standard `--root ROOT` (and `--config FILE` when the watchdog
    /// got one) before `args`.
    root_args: bool = true,
    /// Added to the environment the child inherits from the watchdog.
    env: BTreeMap<String, String> = BTreeMap::new(),
    /// The child writes `state/heartbeats/<name>.json`: it counts as started at
    /// its first heartbeat and as hung when the heartbeat goes stale. Without
    /// one it counts as started when spawned and is never judged hung.
    heartbeat: bool = true,
    /// Overrides the stop grace for this child.
    #[serde(with = "duration_opt", skip_serializing_if = "Option::is_none")]
    stop_grace: Option<Duration> = None,
});

/// The children the watchdog runs unless configured otherwise.
pub const BUILTIN_CHILDREN: [&str; 3] = ["bridge", "executor", "monitor"];

impl WatchdogConfig {
    /// Every child: the built-in ones (with their configured settings, if
    /// any) and the extra ones configured, by name.
    pub fn children(&self) -> BTreeMap<String, ChildConfig> {
        let mut all: BTreeMap<String, ChildConfig> = BUILTIN_CHILDREN
            .iter()
            .map(|n| (n.to_string(), ChildConfig::default()))
            .collect();
        all.extend(self.children.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }

    /// The stop grace of child `name`: its own `stop_grace`, else
    /// `watchdog.stop_grace`, plus `executor.shutdown_grace` for the executor
    /// (it may spend that finishing its patch before rolling back).
    pub fn stop_grace_of(&self, name: &str, executor: &ExecutorConfig) -> Duration {
        let own = self
            .children
            .get(name)
            .and_then(|c| c.stop_grace)
            .unwrap_or(self.stop_grace);
        if name == "executor" && self.children.get(name).and_then(|c| c.stop_grace).is_none() {
            own + executor.shutdown_grace
        } else {
            own
        }
    }
}

section!(
    /// `[alerts]`: where notifications go (docs/monitor.md, "Channels").
    AlertsConfig {
    /// Slack incoming webhook (else GHOST_SLACK_WEBHOOK_URL); a secret, never logged.
    slack_webhook_url: Option<ConfigSecret> = None,
    /// Generic JSON webhooks: each gets every notification as one JSON POST.
    webhooks: Vec<String> = Vec::new(),
    /// An Alertmanager base URL such as `http://127.0.0.1:9093`.
    alertmanager_url: Option<String> = None,
    /// Per attempt, per channel.
    #[serde(with = "duration")]
    timeout: Duration = secs(10),
    /// The first retry waits this long, each further one twice as long (plus jitter) …
    #[serde(with = "duration")]
    retry_base: Duration = secs(5),
    /// … at most this.
    #[serde(with = "duration")]
    retry_max: Duration = secs(10 * 60),
});

/// The whole configuration, plus the data root it applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    #[serde(skip)]
    pub root: PathBuf,
    /// Where the configuration came from (`embedded defaults` or a file path).
    #[serde(skip)]
    pub source: String,
    pub targets: BTreeMap<String, TargetConfig>,
    pub heartbeat: HeartbeatConfig,
    pub logs: LogsConfig,
    pub executor: ExecutorConfig,
    pub limits: LimitsConfig,
    pub bridge: BridgeConfig,
    pub monitor: MonitorConfig,
    pub watchdog: WatchdogConfig,
    pub alerts: AlertsConfig,
    pub retention: RetentionConfig,
}

impl Default for Config {
    fn default() -> Self {
        let mut targets = BTreeMap::new();
        targets.insert("default".to_string(), TargetConfig::default());
        Config {
            root: PathBuf::from("ghost-data"),
            source: "embedded defaults".into(),
            targets,
            heartbeat: HeartbeatConfig::default(),
            logs: LogsConfig::default(),
            executor: ExecutorConfig::default(),
            limits: LimitsConfig::default(),
            bridge: BridgeConfig::default(),
            monitor: MonitorConfig::default(),
            watchdog: WatchdogConfig::default(),
            alerts: AlertsConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

/// Check each key of `table` alone against `T`, then the whole table.
fn check_section<T: serde::de::DeserializeOwned + Default>(
    prefix: &str,
    table: &toml::Table,
    problems: &mut Vec<String>,
) -> Option<T> {
    let mut ok = true;
    for (k, v) in table {
        let mut one = toml::Table::new();
        one.insert(k.clone(), v.clone());
        if let Err(e) = toml::Value::Table(one).try_into::<T>() {
            ok = false;
            problems.push(format!("{prefix}.{k}: {}", e.message().trim()));
        }
    }
    if !ok {
        return None;
    }
    match toml::Value::Table(table.clone()).try_into::<T>() {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(format!("{prefix}: {}", e.message().trim()));
            None
        }
    }
}

/// `[watchdog]`, with each `[watchdog.children.<name>]` checked key by key
/// like a section of its own, so a typo in one child names that child and key.
fn check_watchdog(table: &toml::Table, problems: &mut Vec<String>) -> Option<WatchdogConfig> {
    let mut rest = table.clone();
    let children = rest.remove("children");
    let mut w = check_section::<WatchdogConfig>("watchdog", &rest, problems);
    let mut ok = true;
    let mut parsed = BTreeMap::new();
    match children {
        None => {}
        Some(toml::Value::Table(t)) => {
            for (name, c) in t {
                let prefix = format!("watchdog.children.{name}");
                match c.as_table() {
                    Some(ct) => match check_section::<ChildConfig>(&prefix, ct, problems) {
                        Some(cc) => {
                            parsed.insert(name, cc);
                        }
                        None => ok = false,
                    },
                    None => {
                        ok = false;
                        problems.push(format!("{prefix}: expected a [{prefix}] table"));
                    }
                }
            }
        }
        Some(_) => {
            ok = false;
            problems.push(
                "watchdog.children: expected tables such as [watchdog.children.executor]".into(),
            );
        }
    }
    if !ok {
        return None;
    }
    if let Some(w) = &mut w {
        w.children = parsed;
    }
    w
}

fn parse_mode(s: &str) -> Option<u32> {
    let t = s.trim_start_matches("0o");
    u32::from_str_radix(t, 8).ok().filter(|m| *m <= 0o7777)
}

impl Config {
    /// Load the configuration for `root`: `file` if given (it must exist), else
    /// `<root>/ghost.toml` if it exists, else the embedded defaults.
    pub fn load(root: &Path, file: Option<&Path>) -> Result<Config, ConfigErrors> {
        let (path, required) = match file {
            Some(f) => (f.to_path_buf(), true),
            None => (root.join("ghost.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::from_toml(root, &text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Config {
                root: root.to_path_buf(),
                ..Config::default()
            }),
            Err(e) => Err(ConfigErrors {
                origin: path.display().to_string(),
                problems: vec![format!("cannot read: {e}")],
            }),
        }
    }

    /// Parse configuration text; `source` names it in errors.
    pub fn from_toml(root: &Path, text: &str, source: &str) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        let fail = |problems: Vec<String>| ConfigErrors {
            origin: source.to_string(),
            problems,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| fail(vec![e.to_string().trim().to_string()]))?;
        let mut cfg = Config {
            root: root.to_path_buf(),
            source: source.to_string(),
            targets: BTreeMap::new(),
            ..Config::default()
        };
        for (key, value) in &table {
            let Some(section) = value.as_table() else {
                problems.push(format!("{key}: expected a [{key}] table"));
                continue;
            };
            macro_rules! take {
                ($field:ident, $ty:ty) => {
                    if let Some(v) = check_section::<$ty>(key, section, &mut problems) {
                        cfg.$field = v;
                    }
                };
            }
            match key.as_str() {
                "targets" => {
                    for (name, t) in section {
                        let prefix = format!("targets.{name}");
                        match t.as_table() {
                            Some(tt) => {
                                if let Some(tc) = check_section::<TargetConfig>(&prefix, tt, &mut problems) {
                                    cfg.targets.insert(name.clone(), tc);
                                }
                            }
                            None => problems.push(format!("{prefix}: expected a [{prefix}] table")),
                        }
                    }
                }
                "heartbeat" => take!(heartbeat, HeartbeatConfig),
                "logs" => take!(logs, LogsConfig),
                "executor" => take!(executor, ExecutorConfig),
                "limits" => take!(limits, LimitsConfig),
                "bridge" => take!(bridge, BridgeConfig),
                "monitor" => take!(monitor, MonitorConfig),
                "watchdog" => {
                    if let Some(w) = check_watchdog(section, &mut problems) {
                        cfg.watchdog = w;
                    }
                }
                "alerts" => take!(alerts, AlertsConfig),
                "retention" => take!(retention, RetentionConfig),
                other => problems.push(format!(
                    "{other}: unknown section (known: targets, heartbeat, logs, executor, limits, bridge, monitor, watchdog, alerts, retention)"
                )),
            }
        }
        if !table.contains_key("targets") {
            cfg.targets
                .insert("default".into(), TargetConfig::default());
        }
        cfg.validate(&mut problems);
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(fail(problems))
        }
    }

    fn validate(&self, problems: &mut Vec<String>) {
        // (A target that failed its own checks was reported already.)
        if self.targets.is_empty() && !problems.iter().any(|p| p.starts_with("targets.")) {
            problems.push("targets: at least one target is needed".into());
        }
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (name, t) in &self.targets {
            if !crate::text::is_name(name) {
                problems.push(format!(
                    "targets.{name}: a target name is 1 to 64 characters of letters, digits, '-' and '_' (it names directories)"
                ));
            }
            for a in std::iter::once(name).chain(t.aliases.iter()) {
                if let Some(other) = seen.insert(a.to_ascii_lowercase(), name.clone()) {
                    if &other != name {
                        problems.push(format!(
                            "targets.{name}: name or alias {a:?} is also used by target {other:?}"
                        ));
                    }
                }
            }
            if let Some(lr) = &t.legacy_root {
                if !lr.starts_with('/') {
                    problems.push(format!(
                        "targets.{name}.legacy_root: {lr:?} must be an absolute path"
                    ));
                }
            }
            for k in t.env.keys() {
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    problems.push(format!(
                        "targets.{name}.env: {k:?} is not a valid variable name"
                    ));
                }
            }
            for p in &t.protected_paths {
                if let Err(why) = RelPath::parse(p) {
                    problems.push(format!("targets.{name}.protected_paths: {why}"));
                }
            }
            if let Some(u) = &t.run_as {
                if u.is_empty() || u.contains(['\0', ':', '/']) || u.trim() != u {
                    problems.push(format!("targets.{name}.run_as: {u:?} is not a user name"));
                }
            }
        }
        let e = &self.executor;
        if e.max_attempts == 0 {
            problems.push("executor.max_attempts: must be at least 1".into());
        }
        if e.batch_max == 0 {
            problems.push("executor.batch_max: must be at least 1".into());
        }
        if e.backoff_base > e.backoff_max {
            problems.push("executor.backoff_base: must not exceed executor.backoff_max".into());
        }
        for (k, d) in [
            ("executor.scan_interval", e.scan_interval),
            ("executor.command_timeout", e.command_timeout),
            ("executor.stuck_after", e.stuck_after),
            ("heartbeat.interval", self.heartbeat.interval),
            ("heartbeat.stale_after", self.heartbeat.stale_after),
            ("logs.max_age", self.logs.max_age),
            ("logs.retry_interval", self.logs.retry_interval),
        ] {
            if d.is_zero() {
                problems.push(format!("{k}: must be greater than zero"));
            }
        }
        if self.logs.max_bytes == 0 {
            problems.push("logs.max_bytes: must be greater than zero".into());
        }
        // A heartbeat written every `interval` must not count as stale
        // between two writes, or the watchdog declares every child hung.
        let hb = &self.heartbeat;
        if !hb.interval.is_zero() && hb.interval >= hb.stale_after {
            problems.push(format!(
                "heartbeat.interval: {} must be below heartbeat.stale_after ({}), or every \
                 component counts as hung between two heartbeats",
                humantime::format_duration(hb.interval),
                humantime::format_duration(hb.stale_after)
            ));
        }
        if self.logs.keep == 0 {
            problems
                .push("logs.keep: must be at least 1 (the rotated file is the only copy)".into());
        }
        if let Some(d) = &self.logs.fallback_dir {
            if !d.is_absolute() {
                problems.push(format!(
                    "logs.fallback_dir: {} must be an absolute path (ideally on another filesystem than the root)",
                    d.display()
                ));
            }
        }
        match parse_mode(&e.default_file_mode) {
            None => problems.push(format!(
                "executor.default_file_mode: {:?} is not an octal mode such as \"0644\"",
                e.default_file_mode
            )),
            Some(m) if m & crate::patch::policy::SPECIAL_MODE_BITS != 0 => problems.push(format!(
                "executor.default_file_mode: {:?} sets setuid, setgid or sticky bits; use permission bits only",
                e.default_file_mode
            )),
            Some(_) => {}
        }
        let l = &self.limits;
        for (k, v) in [
            ("limits.max_file_bytes", l.max_file_bytes),
            ("limits.max_staged_bytes", l.max_staged_bytes),
            ("limits.max_operations", u64::from(l.max_operations)),
            ("limits.max_pattern_bytes", l.max_pattern_bytes),
            ("limits.regex_size_limit", l.regex_size_limit),
            ("limits.regex_dfa_size_limit", l.regex_dfa_size_limit),
        ] {
            if v == 0 {
                problems.push(format!("{k}: must be greater than zero"));
            }
        }
        if l.max_file_bytes > l.max_staged_bytes {
            problems.push("limits.max_file_bytes: must not exceed limits.max_staged_bytes".into());
        }
        for (k, v) in [
            ("bridge.listen", &self.bridge.listen),
            ("monitor.listen", &self.monitor.listen),
        ] {
            if v.parse::<SocketAddr>().is_err() {
                problems.push(format!(
                    "{k}: {v:?} is not an address such as \"127.0.0.1:7878\""
                ));
            }
        }
        let m = &self.monitor;
        for (k, d) in [
            ("monitor.interval", m.interval),
            ("monitor.summary_sweep_interval", m.summary_sweep_interval),
            ("alerts.timeout", self.alerts.timeout),
            ("alerts.retry_base", self.alerts.retry_base),
        ] {
            if d.is_zero() {
                problems.push(format!("{k}: must be greater than zero"));
            }
        }
        if !(0.0..=100.0).contains(&m.disk_free_min_percent) {
            problems.push(format!(
                "monitor.disk_free_min_percent: {} is not a percentage between 0 and 100",
                m.disk_free_min_percent
            ));
        }
        if self.alerts.retry_base > self.alerts.retry_max {
            problems.push("alerts.retry_base: must not exceed alerts.retry_max".into());
        }
        let urls = self
            .alerts
            .webhooks
            .iter()
            .map(|u| ("alerts.webhooks", u.as_str()))
            .chain(
                self.alerts
                    .alertmanager_url
                    .iter()
                    .map(|u| ("alerts.alertmanager_url", u.as_str())),
            );
        for (k, u) in urls {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                problems.push(format!("{k}: {u:?} is not an http:// or https:// URL"));
            }
        }
        if self.bridge.max_patch_bytes == 0 {
            problems.push("bridge.max_patch_bytes: must be greater than zero".into());
        }
        self.validate_bridge(problems);
        self.validate_watchdog(problems);
        self.validate_retention(problems);
    }

    fn validate_bridge(&self, problems: &mut Vec<String>) {
        let b = &self.bridge;
        for (k, d) in [
            ("bridge.header_timeout", b.header_timeout),
            ("bridge.body_timeout", b.body_timeout),
            ("bridge.signature_window", b.signature_window),
            ("bridge.refusal_log_interval", b.refusal_log_interval),
        ] {
            if d.is_zero() {
                problems.push(format!("{k}: must be greater than zero"));
            }
        }
        if b.max_connections == 0 {
            problems.push("bridge.max_connections: must be at least 1".into());
        }
        if b.rate_limit > 0 && b.rate_burst == 0 {
            problems
                .push("bridge.rate_burst: must be at least 1 when bridge.rate_limit is set".into());
        }
        if b.unverified_body_budget < b.max_patch_bytes {
            problems.push(format!(
                "bridge.unverified_body_budget: must be at least bridge.max_patch_bytes ({} bytes), or no signed patch of the largest size could be verified",
                b.max_patch_bytes
            ));
        }
    }

    fn validate_retention(&self, problems: &mut Vec<String>) {
        let r = &self.retention;
        if r.interval.is_zero() {
            problems.push("retention.interval: must be greater than zero".into());
        }
        if r.max_per_cycle == 0 {
            problems.push("retention.max_per_cycle: must be at least 1".into());
        }
        for name in r.targets.keys() {
            if !self.targets.contains_key(name) {
                problems.push(format!(
                    "retention.targets.{name}: no such target (known: {})",
                    self.targets.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }

    fn validate_watchdog(&self, problems: &mut Vec<String>) {
        let w = &self.watchdog;
        if w.max_restarts == 0 {
            problems.push("watchdog.max_restarts: must be at least 1".into());
        }
        for (k, d) in [
            ("watchdog.restart_window", w.restart_window),
            ("watchdog.stop_grace", w.stop_grace),
            ("watchdog.start_timeout", w.start_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("{k}: must be greater than zero"));
            }
        }
        // The first heartbeat comes up to one interval after the start.
        let interval = self.heartbeat.interval;
        if !w.start_timeout.is_zero() && w.start_timeout <= interval {
            problems.push(format!(
                "watchdog.start_timeout: {} must be above heartbeat.interval ({}), or a child \
                 counts as hung before its first heartbeat is due",
                humantime::format_duration(w.start_timeout),
                humantime::format_duration(interval)
            ));
        }
        if w.restart_delay > w.restart_delay_max {
            problems
                .push("watchdog.restart_delay: must not exceed watchdog.restart_delay_max".into());
        }
        if !(0.0..=1.0).contains(&w.restart_jitter) {
            problems.push(format!(
                "watchdog.restart_jitter: {} is not a fraction between 0 and 1",
                w.restart_jitter
            ));
        }
        if w.cool_off.is_some_and(|c| c.is_zero()) {
            problems.push("watchdog.cool_off: must be greater than zero (or left out)".into());
        }
        for (name, c) in &w.children {
            let prefix = format!("watchdog.children.{name}");
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                problems.push(format!(
                    "{prefix}: a child name is 1 to 64 characters of lowercase letters, digits, '-' and '_' (it names files)"
                ));
            }
            if !BUILTIN_CHILDREN.contains(&name.as_str()) && c.command.is_none() {
                problems.push(format!(
                    "{prefix}.command: needed: {name:?} is not a built-in child ({})",
                    BUILTIN_CHILDREN.join(", ")
                ));
            }
            if c.command.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                problems.push(format!("{prefix}.command: must not be empty"));
            }
            for k in c.env.keys() {
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    problems.push(format!("{prefix}.env: {k:?} is not a valid variable name"));
                }
            }
            if c.stop_grace.is_some_and(|d| d.is_zero()) {
                problems.push(format!("{prefix}.stop_grace: must be greater than zero"));
            }
        }
    }

    /// The working tree of target `name`.
    pub fn target_path(&self, name: &str) -> PathBuf {
        let p = self
            .targets
            .get(name)
            .and_then(|t| t.path.clone())
            .unwrap_or_else(|| PathBuf::from("workspaces").join(name));
        if p.is_absolute() {
            p
        } else {
            self.root.join(p)
        }
    }

    /// What the patch parser needs to know about the targets.
    pub fn target_specs(&self) -> Vec<TargetSpec> {
        self.targets
            .iter()
            .map(|(name, t)| TargetSpec {
                name: name.clone(),
                aliases: t.aliases.clone(),
                legacy_root: t.legacy_root.clone(),
                allow_shell: t.allow_shell,
                commands: t.commands.clone(),
                protected_paths: t.protected_paths.clone(),
                allow_special_modes: t.allow_special_modes,
            })
            .collect()
    }

    /// Mode for new files that a patch creates without giving one.
    pub fn default_file_mode(&self) -> u32 {
        parse_mode(&self.executor.default_file_mode).unwrap_or(0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let c = Config::default();
        assert_eq!(c.heartbeat.interval, secs(30));
        assert_eq!(c.heartbeat.stale_after, secs(60));
        assert_eq!(c.logs.max_bytes, 5 << 20);
        assert_eq!(c.logs.keep, 10);
        assert_eq!(c.executor.stuck_after, secs(900));
        assert_eq!(c.executor.max_attempts, 3);
        assert_eq!(c.executor.backoff_base, secs(5));
        assert_eq!(c.executor.backoff_max, secs(300));
        assert_eq!(c.executor.command_timeout, secs(600));
        assert_eq!(c.bridge.listen, "127.0.0.1:7878");
        assert_eq!(c.bridge.max_patch_bytes, 8 << 20);
        assert_eq!(c.monitor.listen, "127.0.0.1:7879");
        assert_eq!(c.watchdog.max_restarts, 2);
        assert!(c.targets.contains_key("default"));
        // The embedded target changes files and runs nothing.
        let t = &c.targets["default"];
        assert_eq!(t.commands, CommandPolicy::None);
        assert!(!t.allow_shell && !t.allow_special_modes && t.run_as.is_none());
        assert_eq!(c.limits.max_file_bytes, 64 << 20);
        assert_eq!(c.limits.max_staged_bytes, 256 << 20);
    }

    #[test]
    fn target_policy_keys_parse_and_are_checked() {
        let text = r#"
[targets.default]
commands = [["cargo", "test"], ["npm", "test"]]
protected_paths = [".github/workflows"]
allow_special_modes = true
run_as = "nobody"

[targets.any]
commands = "any"

[limits]
max_file_bytes = "1MiB"
"#;
        let c = Config::from_toml(Path::new("/r"), text, "t").unwrap();
        assert_eq!(
            c.targets["default"].commands,
            CommandPolicy::Allow(vec![
                vec!["cargo".into(), "test".into()],
                vec!["npm".into(), "test".into()]
            ])
        );
        assert_eq!(c.targets["any"].commands, CommandPolicy::Any);
        assert_eq!(c.limits.max_file_bytes, 1 << 20);
        let spec = c.target_specs();
        assert!(spec[1].allow_special_modes);
        let text = r#"
[targets.a]
commands = "some"
[targets.b]
commands = [[]]
[targets.c]
protected_paths = ["/etc"]
run_as = "a:b"
[executor]
default_file_mode = "4755"
[limits]
max_file_bytes = 0
"#;
        let e = Config::from_toml(Path::new("/r"), text, "t").unwrap_err();
        let all = e.to_string();
        for needle in [
            "targets.a.commands: \"some\": expected \"none\", \"any\"",
            "targets.b.commands: [] is not an argv prefix",
            "targets.c.protected_paths",
            "targets.c.run_as",
            "executor.default_file_mode",
            "limits.max_file_bytes: must be greater than zero",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
    }

    #[test]
    fn parses_a_full_file() {
        let text = r#"
[targets.default]
path = "workspaces/default"
aliases = ["DEV", "CYOPS"]
legacy_root = "/Users/me/gitSync/app"
allow_shell = false
git_commit = false

[targets.web]
path = "/srv/web"

[executor]
stuck_after = "250ms"
backoff_base = "10ms"
max_attempts = 5

[logs]
max_bytes = "1MiB"
"#;
        let c = Config::from_toml(Path::new("/r"), text, "t").unwrap();
        assert_eq!(c.executor.stuck_after, Duration::from_millis(250));
        assert_eq!(c.executor.max_attempts, 5);
        assert_eq!(c.logs.max_bytes, 1 << 20);
        assert_eq!(
            c.target_path("default"),
            PathBuf::from("/r/workspaces/default")
        );
        assert_eq!(c.target_path("web"), PathBuf::from("/srv/web"));
        assert_eq!(c.target_specs()[0].aliases, ["DEV", "CYOPS"]);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let text = r#"
[executor]
stuck_aftr = "1s"
max_attempts = "three"
backoff_base = "soon"

[nonsense]
x = 1

[targets.default]
alias = ["x"]

[bridge]
listen = "not an address"
"#;
        let e = Config::from_toml(Path::new("/r"), text, "ghost.toml").unwrap_err();
        let all = e.to_string();
        for needle in [
            "executor.stuck_aftr",
            "executor.max_attempts",
            "executor.backoff_base",
            "nonsense: unknown section",
            "targets.default.alias",
            "bridge.listen",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        assert_eq!(e.problems.len(), 6, "{all}");
    }

    #[test]
    fn relations_between_settings_are_checked_together() {
        let text = "[heartbeat]\ninterval = \"4s\"\nstale_after = \"2s\"\n\
                    [watchdog]\nstart_timeout = \"3s\"\nrestart_delay = \"2m\"\n\
                    [executor]\nbackoff_base = \"10m\"\n";
        let e = Config::from_toml(Path::new("/r"), text, "t").unwrap_err();
        let all = e.to_string();
        for needle in [
            "heartbeat.interval: 4s must be below heartbeat.stale_after (2s)",
            "watchdog.start_timeout: 3s must be above heartbeat.interval (4s)",
            "watchdog.restart_delay: must not exceed",
            "executor.backoff_base: must not exceed",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        assert_eq!(e.problems.len(), 4, "{all}");
        // Equal is not enough either; below is fine.
        let eq = "[heartbeat]\ninterval = \"2s\"\nstale_after = \"2s\"\n";
        assert!(Config::from_toml(Path::new("/r"), eq, "t").is_err());
        let ok = "[heartbeat]\ninterval = \"1s\"\nstale_after = \"2s\"\n";
        assert!(Config::from_toml(Path::new("/r"), ok, "t").is_ok());
    }

    #[test]
    fn syntax_error_is_reported() {
        let e = Config::from_toml(Path::new("/r"), "[executor\n", "g.toml").unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert!(e.to_string().contains("g.toml"));
    }

    #[test]
    fn duplicate_aliases_rejected() {
        let text = "[targets.a]\naliases=[\"DEV\"]\n[targets.b]\naliases=[\"dev\"]\n";
        let e = Config::from_toml(Path::new("/r"), text, "t").unwrap_err();
        assert!(e.to_string().contains("also used by"), "{e}");
    }

    #[test]
    fn bridge_limits_have_safe_defaults_and_are_checked_together() {
        let b = Config::default().bridge;
        assert_eq!(
            (b.header_timeout, b.body_timeout, b.signature_window),
            (secs(10), secs(30), secs(300))
        );
        assert_eq!(
            (b.max_connections, b.rate_limit, b.rate_burst),
            (512, 50, 100)
        );
        assert!(b.unverified_body_budget >= b.max_patch_bytes);
        let text = "[bridge]\nheader_timeout = \"0s\"\nbody_timeout = \"0s\"\nmax_connections = 0\nrate_burst = 0\nunverified_body_budget = \"1MiB\"\n";
        let e = Config::from_toml(Path::new("/r"), text, "t").unwrap_err();
        let all = e.problems.join("\n");
        for key in [
            "bridge.header_timeout",
            "bridge.body_timeout",
            "bridge.max_connections",
            "bridge.rate_burst",
            "bridge.unverified_body_budget",
        ] {
            assert!(all.contains(key), "{key} not reported:\n{all}");
        }
    }

    #[test]
    fn watchdog_defaults_match_the_design() {
        let w = Config::default().watchdog;
        assert_eq!(w.max_restarts, 2);
        assert_eq!(w.restart_window, secs(300));
        assert_eq!(w.restart_delay, secs(1));
        assert_eq!(w.restart_delay_max, secs(60));
        assert_eq!(w.healthy_after, secs(60));
        assert_eq!(w.stop_grace, secs(10));
        assert_eq!(w.cool_off, None);
        let children = w.children();
        assert_eq!(
            children.keys().collect::<Vec<_>>(),
            ["bridge", "executor", "monitor"]
        );
        assert!(children
            .values()
            .all(|c| c.enabled && c.root_args && c.heartbeat));
        let e = ExecutorConfig::default();
        assert_eq!(w.stop_grace_of("bridge", &e), secs(10));
        assert_eq!(w.stop_grace_of("executor", &e), secs(10) + e.shutdown_grace);
    }

    #[test]
    fn watchdog_children_parse_and_override_the_builtins() {
        let text = r#"
[watchdog]
restart_delay = "100ms"
cool_off = "10m"
restart_jitter = 0

[watchdog.children.monitor]
enabled = false

[watchdog.children.executor]
command = "/bin/false"
args = ["-x"]
root_args = false
env = { A = "1" }
stop_grace = "2s"

[watchdog.children.sidecar]
command = "sleep"
args = ["1000"]
heartbeat = false
"#;
        let c = Config::from_toml(Path::new("/r"), text, "t").unwrap();
        let w = &c.watchdog;
        assert_eq!(w.restart_delay, Duration::from_millis(100));
        assert_eq!(w.cool_off, Some(secs(600)));
        let ch = w.children();
        assert_eq!(ch.len(), 4);
        assert!(!ch["monitor"].enabled);
        assert!(ch["bridge"].enabled);
        assert_eq!(
            ch["executor"].command.as_deref(),
            Some(Path::new("/bin/false"))
        );
        assert_eq!(ch["executor"].env["A"], "1");
        assert!(!ch["executor"].root_args);
        assert!(!ch["sidecar"].heartbeat);
        assert_eq!(w.stop_grace_of("executor", &c.executor), secs(2));
    }

    #[test]
    fn watchdog_problems_name_the_child_and_key() {
        let text = r#"
[watchdog]
max_restarts = 0
restart_jitter = 3.0
colloff = "1m"

[watchdog.children.executor]
comand = "/bin/false"

[watchdog.children.bridge]
stop_grace = "soon"

[watchdog.children.extra]
args = ["x"]

[watchdog.children.Bad]
command = "/bin/true"
"#;
        let e = Config::from_toml(Path::new("/r"), text, "t").unwrap_err();
        let all = e.to_string();
        for needle in [
            "watchdog.colloff",
            "watchdog.children.executor.comand",
            "watchdog.children.bridge.stop_grace",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        // The section failed its own checks: the cross-key checks wait.
        assert_eq!(e.problems.len(), 3, "{all}");
        let text = r#"
[watchdog]
max_restarts = 0
restart_jitter = 3.0
restart_delay = "2m"

[watchdog.children.extra]
args = ["x"]

[watchdog.children.Bad]
command = "/bin/true"
"#;
        let e = Config::from_toml(Path::new("/r"), text, "t").unwrap_err();
        let all = e.to_string();
        for needle in [
            "watchdog.max_restarts",
            "watchdog.restart_jitter",
            "watchdog.restart_delay: must not exceed",
            "watchdog.children.extra.command: needed",
            "watchdog.children.Bad: a child name",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        assert_eq!(e.problems.len(), 5, "{all}");
        let e = Config::from_toml(Path::new("/r"), "[watchdog]\nchildren = 3\n", "t").unwrap_err();
        assert!(
            e.to_string().contains("watchdog.children: expected tables"),
            "{e}"
        );
        let e = Config::from_toml(Path::new("/r"), "[watchdog.children]\nexecutor = 3\n", "t")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("watchdog.children.executor: expected a"),
            "{e}"
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let text = "[bridge]\ntoken = \"s3cr3t-token\"\nhmac_key = \"k3y\"\n[alerts]\nslack_webhook_url = \"https://hooks.example/T0/B0/xyz\"\n";
        let c = Config::from_toml(Path::new("/r"), text, "t").unwrap();
        assert_eq!(c.bridge.token.as_ref().unwrap().expose(), "s3cr3t-token");
        let dbg = format!("{c:?}");
        for secret in ["s3cr3t-token", "k3y\"", "hooks.example"] {
            assert!(!dbg.contains(secret), "{secret} in {dbg}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size::parse("5MiB").unwrap(), 5 << 20);
        assert_eq!(size::parse("512 KiB").unwrap(), 512 << 10);
        assert_eq!(size::parse("100").unwrap(), 100);
        assert!(size::parse("5 parsecs").is_err());
    }
    #[test]
    fn retention_forever_durations_overrides_and_every_problem() {
        let c = Config::from_toml(
            Path::new("/r"),
            "[retention]\ndone = \"forever\"\nfailed = \"12h\"\n[retention.targets.default]\ntrash = \"1d\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.retention.done, Retention::Forever);
        assert_eq!(c.retention.failed, Retention::After(secs(12 * 3600)));
        use crate::queue::QueueState as S;
        assert_eq!(
            c.retention.of("default", S::Trash),
            Some(Retention::After(secs(86400)))
        );
        assert_eq!(c.retention.of("default", S::Done), Some(Retention::Forever));
        assert_eq!(c.retention.of("default", S::Pending), None);
        assert_eq!(
            Config::default().retention.done,
            Retention::After(secs(30 * 86400))
        );
        let e = Config::from_toml(
            Path::new("/r"),
            "[retention]\ndone = \"soon\"\ntrash = \"never\"\nkeep = 1\n",
            "t",
        )
        .unwrap_err();
        let t = e.to_string();
        for k in ["retention.done", "retention.trash", "retention.keep"] {
            assert!(t.contains(k), "{k} in {t}");
        }
        let e = Config::from_toml(
            Path::new("/r"),
            "[retention.targets.web]\ndone = \"1d\"\n",
            "t",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("retention.targets.web: no such target"),
            "{e}"
        );
    }
}
