//! What the watchdog prints for a person at its start: the banner (where the
//! data, the bridge, the dashboard, the tokens and the logs are, and how to
//! stop it) and the one line once every child is up. Text only: the
//! supervisor decides when to print it.
//!
//! Invariant: a secret is shown by where it comes from, never by its value.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ghost_core::secrets::SecretKind;
use ghost_core::{Config, Layout};

use crate::policy::Phase;
use crate::spec::ChildSpec;

/// The start-up banner for the children as configured.
pub(crate) fn banner(
    config: &Config,
    layout: &Layout,
    children: &BTreeMap<&str, &ChildSpec>,
) -> String {
    let root = layout.root().display();
    let mut o = String::new();
    let _ = writeln!(
        o,
        "ghost-watchdog {} (pid {}) is starting the ghostbridge processes",
        ghost_core::VERSION,
        std::process::id()
    );
    let _ = writeln!(o, "  data       {root}  (configuration: {})", config.source);
    let child_env = |child: &str, var: &str| -> Option<String> {
        children
            .get(child)
            .and_then(|c| c.env.get(var).cloned())
            .or_else(|| std::env::var(var).ok())
            .filter(|v| !v.is_empty())
    };
    // Where each secret is, never what it is; a file is promised only when
    // it exists or the child that creates it will start.
    let starts = |child: &str| {
        children
            .get(child)
            .is_some_and(|c| c.enabled && c.program_present())
    };
    let secret_where = |child: &str, configured: bool, kind: SecretKind| -> String {
        if let (true, Some(k)) = (configured, kind.config_key()) {
            return format!("from the configuration ({k})");
        }
        if child_env(child, kind.env_var()).is_some() {
            return format!("from ${}", kind.env_var());
        }
        let p = layout.secret(kind);
        if p.exists() {
            p.display().to_string()
        } else if starts(child) || kind == SecretKind::DashboardToken {
            format!("{} (created on first start)", p.display())
        } else {
            format!("none ({child} does not start here)")
        }
    };
    let up = |child: &str| -> &'static str {
        match children.get(child) {
            Some(c) if !c.enabled => "  [disabled]",
            Some(c) if !c.program_present() => "  [not installed]",
            None => "  [not configured]",
            _ => "",
        }
    };
    let b = &config.bridge;
    let _ = writeln!(o, "  bridge     http://{}{}", b.listen, up("bridge"));
    let _ = writeln!(
        o,
        "             token     {}",
        secret_where("bridge", b.token.is_some(), SecretKind::BridgeToken)
    );
    let _ = writeln!(
        o,
        "             HMAC key  {}",
        secret_where("bridge", b.hmac_key.is_some(), SecretKind::HmacKey)
    );
    let _ = writeln!(
        o,
        "  dashboard  http://{}{}",
        config.monitor.listen,
        up("monitor")
    );
    let _ = writeln!(
        o,
        "             token     {}",
        secret_where("monitor", false, SecretKind::DashboardToken)
    );
    // The sign-in link with the token left for the shell to fill in.
    let kind = SecretKind::DashboardToken;
    let fill = if child_env("monitor", kind.env_var()).is_some() {
        format!("${}", kind.env_var())
    } else {
        format!("$(cat {})", layout.secret(kind).display())
    };
    let _ = writeln!(
        o,
        "             sign in   http://{}/?token={fill}",
        config.monitor.listen
    );
    let _ = writeln!(
        o,
        "  inbox      {}  (drop patches and transcripts here)",
        layout.inbox().display()
    );
    let _ = writeln!(
        o,
        "  logs       {}  (<component>.log JSON lines; <child>.stderr.log output)",
        layout.logs().display()
    );
    for (n, c) in children {
        let what = if !c.enabled {
            "disabled".to_string()
        } else if !c.program_present() {
            format!("{} not found: not started", c.program.display())
        } else {
            c.program.display().to_string()
        };
        let _ = writeln!(o, "  child      {n:<9} {what}");
    }
    let _ = writeln!(o, "  status     ghostctl --root {root} status");
    let _ = write!(
        o,
        "  stop       Ctrl-C or kill -TERM {pid}  (reload: kill -HUP {pid})",
        pid = std::process::id()
    );
    o
}

/// `ready: bridge (pid 12), executor (pid 13) running; monitor missing`.
pub(crate) fn ready<'a>(children: impl Iterator<Item = (&'a str, Phase)>) -> String {
    let mut up = Vec::new();
    let mut not = Vec::new();
    for (n, phase) in children {
        if let Some(p) = phase.pid() {
            up.push(format!("{n} (pid {p})"));
        } else if matches!(phase, Phase::Missing | Phase::Disabled) {
            not.push(format!("{n} {}", phase.name()));
        }
    }
    let mut s = format!("ready: {} running", up.join(", "));
    if !not.is_empty() {
        s.push_str(&format!("; {}", not.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_says_where_secrets_are_never_what() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::from_toml(d.path(), "[bridge]\ntoken = \"sekrit\"\n", "test").unwrap();
        let layout = Layout::new(d.path());
        let text = banner(&cfg, &layout, &BTreeMap::new());
        assert!(
            text.contains("from the configuration (bridge.token)"),
            "{text}"
        );
        assert!(!text.contains("sekrit"), "{text}");
        // No bridge configured: no key file will be created; say none.
        assert!(
            text.contains("HMAC key  none (bridge does not start here)"),
            "{text}"
        );
        assert!(
            !text.contains("hmac_key (created on first start)"),
            "{text}"
        );
        assert!(text.contains("[not configured]"), "{text}");
        assert!(
            text.contains("sign in   http://127.0.0.1:7879/?token=$(cat ")
                && text.contains("state/secrets/dashboard_token)"),
            "{text}"
        );
    }

    #[test]
    fn ready_lists_the_running_and_the_missing() {
        let now = std::time::Instant::now();
        let line = ready(
            [
                (
                    "bridge",
                    Phase::Running {
                        pid: 12,
                        since: now,
                    },
                ),
                ("monitor", Phase::Missing),
                ("other", Phase::Idle),
            ]
            .into_iter(),
        );
        assert_eq!(line, "ready: bridge (pid 12) running; monitor missing");
    }
}
