//! `ghost-watchdog --check`: what a process manager runs before the watchdog
//! (systemd `ExecStartPre=`, the PM2 and launchd wrappers in `deploy/`), so
//! that a deployment mistake fails loudly, naming itself, instead of as a
//! watchdog that is "online" and does nothing, or an `ENOENT` in the
//! manager's own log.
//!
//! It changes nothing: the data root must already exist, be a directory,
//! belong to the effective user and be writable by it (the daemons create
//! everything below it on their first start); the configuration must load
//! (that happens before this runs); every enabled child's program must exist
//! and be executable.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ghost_core::Config;

use crate::spec::{self, SpecCtx};

/// The outcome: what was verified, and every problem found (all of them, not
/// just the first).
#[derive(Debug, Default)]
pub struct CheckReport {
    pub ok: Vec<String>,
    pub problems: Vec<String>,
}

/// Check `config` (already loaded, so valid) for a start by the effective
/// user, with the children's binaries looked for in `exe_dir`.
pub fn check(config: &Config, config_file: Option<&Path>, exe_dir: &Path) -> CheckReport {
    let mut r = CheckReport::default();
    r.ok.push(format!("configuration valid ({})", config.source));
    let root = &config.root;
    let me = nix::unistd::geteuid();
    let user = nix::unistd::User::from_uid(me)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| me.to_string());
    match std::fs::metadata(root) {
        Err(e) => r.problems.push(format!(
            "data root {}: {e}; create it for the service user, e.g. \
             `install -d -o {user} -m 0700 {}`",
            root.display(),
            root.display()
        )),
        Ok(m) if !m.is_dir() => r
            .problems
            .push(format!("data root {} is not a directory", root.display())),
        Ok(m) => {
            let mut fine = true;
            if m.uid() != me.as_raw() {
                fine = false;
                let owner = nix::unistd::User::from_uid(m.uid().into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_else(|| m.uid().to_string());
                r.problems.push(format!(
                    "data root {} belongs to {owner} (uid {}), but this runs as {user} (uid {me}): \
                     run the service as {owner}, or `chown -R {user} {}`",
                    root.display(),
                    m.uid(),
                    root.display()
                ));
            }
            if let Err(e) = nix::unistd::access(
                root.as_path(),
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            ) {
                fine = false;
                r.problems.push(format!(
                    "data root {} is not writable by {user} (uid {me}): {e}",
                    root.display()
                ));
            }
            if fine {
                r.ok.push(format!(
                    "data root {} exists, owned by and writable for {user}",
                    root.display()
                ));
            }
        }
    }
    let ctx = SpecCtx {
        root: root.clone(),
        config_file: config_file.map(Path::to_path_buf),
        exe_dir: exe_dir.to_path_buf(),
    };
    for (name, s) in spec::resolve(config, &ctx) {
        if !s.enabled {
            r.ok.push(format!("{name}: disabled"));
        } else if s.program_present() {
            r.ok.push(format!("{name}: {}", s.program.display()));
        } else {
            r.problems.push(format!(
                "{name}: {} does not exist or is not executable; install it next to \
                 ghost-watchdog, or set `enabled = false` under [watchdog.children.{name}]",
                s.program.display()
            ));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_root_passes_and_a_missing_one_and_missing_binaries_are_named() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let toml = "[watchdog.children.bridge]\nenabled = false\n\
                    [watchdog.children.monitor]\nenabled = false\n\
                    [watchdog.children.executor]\ncommand = \"/bin/true\"\n";
        let cfg = Config::from_toml(&root, toml, "test").unwrap();
        let r = check(&cfg, None, &bin);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert!(r.ok.iter().any(|l| l.contains("bridge: disabled")));

        let gone = d.path().join("nope");
        let cfg = Config::from_toml(
            &gone,
            "[watchdog.children.monitor]\nenabled = false\n",
            "test",
        )
        .unwrap();
        let r = check(&cfg, None, &bin);
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("nope") && p.contains("install -d")),
            "{:?}",
            r.problems
        );
        // Every problem at once: the root and both missing binaries.
        assert!(r.problems.iter().any(|p| p.starts_with("bridge:")));
        assert!(r.problems.iter().any(|p| p.starts_with("executor:")));
        assert!(!r.problems.iter().any(|p| p.starts_with("monitor:")));
    }
}
