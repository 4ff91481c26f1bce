//! What exactly each child runs: its program, arguments and environment as
//! resolved from the configuration, its restart [`Policy`], and a fingerprint
//! of everything that, when it changes on SIGHUP, calls for a restart.
//!
//! A child's settings are its `[watchdog.children.<name>]` entry and, for the
//! built-in children, the sections of the configuration they read:
//! `executor` → `[targets]`, `[executor]`, `[heartbeat]`, `[logs]`;
//! `bridge` → `[targets]`, `[bridge]`, `[heartbeat]`, `[logs]`;
//! `monitor` → every section but `[watchdog]`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use ghost_core::config::ChildConfig;
use ghost_core::Config;

use crate::policy::Policy;

/// Where the spec's relative parts are anchored.
#[derive(Debug, Clone)]
pub struct SpecCtx {
    /// The data root, absolute.
    pub root: PathBuf,
    /// `--config` as the watchdog got it, absolute; passed on to children.
    pub config_file: Option<PathBuf>,
    /// Where the built-in children's binaries are: the watchdog's own directory.
    pub exe_dir: PathBuf,
}

/// One child, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildSpec {
    pub name: String,
    pub enabled: bool,
    /// The program to run (may not exist: see [`ChildSpec::program_present`]).
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Added to the inherited environment.
    pub env: BTreeMap<String, String>,
    /// It writes `state/heartbeats/<name>.json`.
    pub heartbeat: bool,
    /// Changes when anything that calls for a restart changes.
    pub fingerprint: String,
}

impl ChildSpec {
    /// True when the program exists and is an executable file.
    pub fn program_present(&self) -> bool {
        is_executable(&self.program)
    }

    /// `program args…`, for logs and `watchdog.json`.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Resolve a configured `command`: absolute as is, a path with a `/` against
/// the root, a bare name through `PATH` (left as given when not found there,
/// so that it shows as missing).
fn resolve_command(cmd: &Path, root: &Path) -> PathBuf {
    if cmd.is_absolute() {
        return cmd.to_path_buf();
    }
    if cmd.components().count() > 1 {
        return root.join(cmd);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| is_executable(p))
        .unwrap_or_else(|| cmd.to_path_buf())
}

/// The configuration sections a built-in child reads.
fn sections(name: &str, c: &Config) -> serde_json::Value {
    match name {
        // The executor reads a few keys of `[bridge]` and `[alerts]` too: the
        // patch size limit, and the secrets it scrubs from check output.
        "executor" => json!({
            "targets": c.targets, "executor": c.executor, "limits": c.limits,
            "bridge": [c.bridge.max_patch_bytes, c.bridge.token, c.bridge.hmac_key],
            "alerts": c.alerts.slack_webhook_url, "heartbeat": c.heartbeat, "logs": c.logs,
        }),
        "bridge" => json!({
            "targets": c.targets, "bridge": c.bridge, "limits": c.limits, "heartbeat": c.heartbeat,
            "logs": c.logs,
        }),
        "monitor" => json!({
            "targets": c.targets, "executor": c.executor, "bridge": c.bridge, "monitor": c.monitor,
            "alerts": c.alerts, "heartbeat": c.heartbeat, "logs": c.logs,
        }),
        _ => serde_json::Value::Null,
    }
}

fn spec_of(name: &str, cc: &ChildConfig, config: &Config, ctx: &SpecCtx) -> ChildSpec {
    let program = match &cc.command {
        Some(cmd) => resolve_command(cmd, &ctx.root),
        None => ctx.exe_dir.join(format!("ghost-{name}")),
    };
    let mut args: Vec<OsString> = Vec::new();
    if cc.root_args {
        args.push("--root".into());
        args.push(ctx.root.clone().into_os_string());
        if let Some(f) = &ctx.config_file {
            args.push("--config".into());
            args.push(f.clone().into_os_string());
        }
    }
    args.extend(cc.args.iter().map(OsString::from));
    let fingerprint = ghost_core::md5_hex(
        json!({
            "program": program,
            "args": args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>(),
            "env": cc.env,
            "enabled": cc.enabled,
            "heartbeat": cc.heartbeat,
            "sections": sections(name, config),
        })
        .to_string()
        .as_bytes(),
    );
    ChildSpec {
        name: name.to_string(),
        enabled: cc.enabled,
        program,
        args,
        env: cc.env.clone(),
        heartbeat: cc.heartbeat,
        fingerprint,
    }
}

/// Every child of the configuration, resolved.
pub fn resolve(config: &Config, ctx: &SpecCtx) -> BTreeMap<String, ChildSpec> {
    config
        .watchdog
        .children()
        .iter()
        .map(|(name, cc)| (name.clone(), spec_of(name, cc, config, ctx)))
        .collect()
}

/// Child `name`'s restart policy.
pub fn policy(config: &Config, name: &str) -> Policy {
    let w = &config.watchdog;
    Policy {
        max_restarts: w.max_restarts,
        restart_window: w.restart_window,
        restart_delay: w.restart_delay,
        restart_delay_max: w.restart_delay_max,
        restart_jitter: w.restart_jitter,
        healthy_after: w.healthy_after,
        stop_grace: w.stop_grace_of(name, &config.executor),
        start_timeout: w.start_timeout,
        cool_off: w.cool_off,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(config_file: Option<&str>) -> SpecCtx {
        SpecCtx {
            root: PathBuf::from("/data"),
            config_file: config_file.map(PathBuf::from),
            exe_dir: PathBuf::from("/opt/ghost/bin"),
        }
    }

    fn cfg(text: &str) -> Config {
        Config::from_toml(Path::new("/data"), text, "t").unwrap()
    }

    #[test]
    fn built_in_children_run_the_binaries_next_to_the_watchdog_with_root_and_config() {
        let specs = resolve(&cfg(""), &ctx(Some("/etc/ghost.toml")));
        assert_eq!(specs.len(), 3);
        let e = &specs["executor"];
        assert_eq!(e.program, PathBuf::from("/opt/ghost/bin/ghost-executor"));
        assert_eq!(
            e.args,
            ["--root", "/data", "--config", "/etc/ghost.toml"].map(OsString::from)
        );
        assert!(e.enabled && e.heartbeat);
        assert_eq!(
            e.command_line(),
            "/opt/ghost/bin/ghost-executor --root /data --config /etc/ghost.toml"
        );
        let specs = resolve(&cfg(""), &ctx(None));
        assert_eq!(
            specs["bridge"].args,
            ["--root", "/data"].map(OsString::from)
        );
    }

    #[test]
    fn commands_resolve_absolute_relative_to_the_root_and_through_path() {
        let c = cfg(r#"
[watchdog.children.executor]
command = "/bin/false"
root_args = false
[watchdog.children.bridge]
command = "bin/my-bridge"
args = ["--listen", "127.0.0.1:1"]
[watchdog.children.extra]
command = "sh"
args = ["-c", "sleep 1000"]
[watchdog.children.ghost]
command = "no-such-program-anywhere"
"#);
        let s = resolve(&c, &ctx(None));
        assert_eq!(s["executor"].program, PathBuf::from("/bin/false"));
        assert!(s["executor"].args.is_empty());
        assert!(s["executor"].program_present());
        assert_eq!(s["bridge"].program, PathBuf::from("/data/bin/my-bridge"));
        assert_eq!(
            s["bridge"].args,
            ["--root", "/data", "--listen", "127.0.0.1:1"].map(OsString::from)
        );
        assert!(s["extra"].program.is_absolute(), "{:?}", s["extra"].program);
        assert!(s["extra"].program_present());
        assert!(!s["ghost"].program_present());
        assert!(!s["monitor"].program_present(), "no /opt/ghost/bin here");
    }

    #[test]
    fn fingerprints_change_with_the_childs_settings_and_sections_only() {
        let base = resolve(&cfg(""), &ctx(None));
        let fp = |text: &str| -> BTreeMap<String, String> {
            resolve(&cfg(text), &ctx(None))
                .into_iter()
                .map(|(k, v)| (k, v.fingerprint))
                .collect()
        };
        let same = |a: &BTreeMap<String, String>, name: &str| a[name] == base[name].fingerprint;
        let a = fp("[executor]\nmax_attempts = 9\n");
        assert!(!same(&a, "executor") && same(&a, "bridge") && !same(&a, "monitor"));
        let a = fp("[bridge]\nlisten = \"127.0.0.1:9999\"\n");
        assert!(same(&a, "executor") && !same(&a, "bridge") && !same(&a, "monitor"));
        let a = fp("[limits]\nmax_file_bytes = \"1MiB\"\n");
        assert!(!same(&a, "executor") && !same(&a, "bridge"));
        let a = fp("[bridge]\ntoken = \"a-new-token-value\"\n");
        assert!(!same(&a, "executor") && !same(&a, "bridge"));
        let a = fp("[heartbeat]\ninterval = \"1s\"\n");
        assert!(!same(&a, "executor") && !same(&a, "bridge") && !same(&a, "monitor"));
        let a = fp("[watchdog]\nmax_restarts = 5\n");
        assert!(same(&a, "executor") && same(&a, "bridge") && same(&a, "monitor"));
        let a = fp("[watchdog.children.bridge]\nenv = { X = \"1\" }\n");
        assert!(same(&a, "executor") && !same(&a, "bridge"));
        let a = fp("[watchdog.children.monitor]\nenabled = false\n");
        assert!(!same(&a, "monitor"));
    }

    #[test]
    fn the_policy_comes_from_the_watchdog_section() {
        let c = cfg("[watchdog]\nmax_restarts = 4\nrestart_delay = \"100ms\"\ncool_off = \"1m\"\n[executor]\nshutdown_grace = \"3s\"\n");
        let p = policy(&c, "bridge");
        assert_eq!(p.max_restarts, 4);
        assert_eq!(p.restart_delay, std::time::Duration::from_millis(100));
        assert_eq!(p.cool_off, Some(std::time::Duration::from_secs(60)));
        assert_eq!(p.stop_grace, std::time::Duration::from_secs(10));
        assert_eq!(
            policy(&c, "executor").stop_grace,
            std::time::Duration::from_secs(13)
        );
    }
}
