//! What a target lets a patch do, beyond being well formed: which commands it
//! may run, which paths it may never touch, and which file modes it may set.
//! Pure rules on a parsed [`Patch`]; the parser applies them to every patch
//! (so the bridge refuses at admission and the executor before anything runs),
//! and staging enforces the path and mode rules again on what it computes.
//!
//! Rules (see docs/security.md):
//! - Commands: `commands = "none"` (the default) runs nothing; an allowlist of
//!   argv prefixes runs an argv that starts with one of them, element by
//!   element; `"any"` runs every argv. A shell string (`{"shell": …}`, legacy
//!   shell arrays) and an argv that is a shell in disguise (`sh -c …`,
//!   `bash -ec …`, anything under `env`) are shell commands: they need
//!   `commands = "any"` and `allow_shell = true`.
//! - Protected paths: no operation may name a path with a component `.git`
//!   (any case), nor one under a `protected_paths` prefix of the target
//!   (compared component by component, ignoring case, so a case-insensitive
//!   file system cannot be used to slip past it).
//! - Modes: setuid, setgid and sticky bits are refused unless the target sets
//!   `allow_special_modes = true`.

use super::{
    Command, CommandKind, CommandPolicy, FieldError, Operation, Patch, RelPath, TargetSpec,
};

/// setuid, setgid and sticky.
pub const SPECIAL_MODE_BITS: u32 = 0o7000;

/// Programs that run whatever their arguments say: an argv starting with one
/// of these is judged as a shell command, never as a prefix match.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "fish", "csh", "tcsh", "busybox",
    "toybox",
];

/// Programs that run another program named in their arguments.
const WRAPPERS: &[&str] = &["env"];

fn program_name(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

/// True when `argv` runs shell code: a shell given a command string (`-c`,
/// alone or among other single-letter options such as `-ec`), or a wrapper
/// such as `env` that runs any program.
pub fn is_shell_like(argv: &[String]) -> bool {
    let Some(first) = argv.first() else {
        return false;
    };
    let prog = program_name(first);
    if WRAPPERS.contains(&prog) {
        return true;
    }
    if !SHELLS.contains(&prog) {
        return false;
    }
    argv[1..].iter().any(|a| {
        a == "--command"
            || (a.starts_with('-') && !a.starts_with("--") && a[1..].contains('c'))
            || (a.starts_with('+') && a[1..].contains('c'))
    })
}

/// Whether `cmd` may run on `target`; the error names the command and the
/// key to set.
pub fn command_allowed(cmd: &Command, target: &TargetSpec) -> Result<(), String> {
    let t = &target.name;
    let shown = cmd.display();
    let shell = match &cmd.kind {
        CommandKind::Shell(_) => true,
        CommandKind::Argv(argv) => is_shell_like(argv),
    };
    match (&target.commands, &cmd.kind) {
        (CommandPolicy::None, _) => Err(format!(
            "command `{shown}` is not allowed: target {t} runs no commands \
             (set targets.{t}.commands to an allowlist of argv prefixes, or to \"any\")"
        )),
        (CommandPolicy::Any, _) if shell && !target.allow_shell => Err(format!(
            "`{shown}` is a shell command: it needs allow_shell = true in [targets.{t}]"
        )),
        (CommandPolicy::Any, _) => Ok(()),
        (CommandPolicy::Allow(_), _) if shell => Err(format!(
            "`{shown}` is a shell command: an allowlist never admits one; it needs \
             commands = \"any\" and allow_shell = true in [targets.{t}]"
        )),
        (CommandPolicy::Allow(prefixes), CommandKind::Argv(argv)) => {
            if prefixes
                .iter()
                .any(|p| p.len() <= argv.len() && p.iter().zip(argv).all(|(a, b)| a == b))
            {
                Ok(())
            } else {
                Err(format!(
                    "command `{shown}` starts with none of the prefixes in targets.{t}.commands \
                     ({}); add one it starts with, or set commands = \"any\"",
                    target.commands
                ))
            }
        }
        (CommandPolicy::Allow(_), CommandKind::Shell(_)) => unreachable!("shell handled above"),
    }
}

/// Why `path` may not be touched on `target`, if it may not.
pub fn protected(path: &RelPath, target: &TargetSpec) -> Option<String> {
    let parts: Vec<&str> = path.as_str().split('/').collect();
    if parts.iter().any(|c| c.eq_ignore_ascii_case(".git")) {
        return Some(format!(
            "{path} is inside a .git directory (or is a .git file): a patch never changes \
             the repository's own files"
        ));
    }
    for prefix in &target.protected_paths {
        let pre: Vec<&str> = prefix
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if !pre.is_empty()
            && pre.len() <= parts.len()
            && pre
                .iter()
                .zip(&parts)
                .all(|(a, b)| a.to_lowercase() == b.to_lowercase())
        {
            return Some(format!(
                "{path} is under {prefix:?}, listed in targets.{}.protected_paths",
                target.name
            ));
        }
    }
    None
}

/// Why `mode` may not be set on `target`, if it may not.
pub fn special_mode(mode: u32, path: &RelPath, target: &TargetSpec) -> Option<String> {
    special_mode_reason(mode, path, target.allow_special_modes, &target.name)
}

/// [`special_mode`] without a [`TargetSpec`] (staging knows only the flag).
pub fn special_mode_reason(
    mode: u32,
    path: &RelPath,
    allowed: bool,
    target: &str,
) -> Option<String> {
    let bits = mode & SPECIAL_MODE_BITS;
    if allowed || bits == 0 {
        return None;
    }
    let mut names = Vec::new();
    if bits & 0o4000 != 0 {
        names.push("setuid");
    }
    if bits & 0o2000 != 0 {
        names.push("setgid");
    }
    if bits & 0o1000 != 0 {
        names.push("sticky");
    }
    Some(format!(
        "mode {:04o} for {path} sets the {} bit{}: refused (set allow_special_modes = true in [targets.{target}] to allow it)",
        mode & 0o7777,
        names.join(" and "),
        if names.len() > 1 { "s" } else { "" }
    ))
}

/// Every way `patch` breaks `target`'s policy, with locators in the normalised
/// patch (`operations[2].path`, `checks.after[0]`).
pub fn check(patch: &Patch, target: &TargetSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut err = |field: String, reason: String| errors.push(FieldError { field, reason });
    for (i, op) in patch.operations.iter().enumerate() {
        let at = |k: &str| format!("operations[{i}].{k}");
        let mut paths: Vec<(String, &RelPath)> = Vec::new();
        let mut modes: Vec<(String, u32, &RelPath)> = Vec::new();
        match op {
            Operation::Write { path, mode, .. } => {
                paths.push((at("path"), path));
                if let Some(m) = mode {
                    modes.push((at("mode"), *m, path));
                }
            }
            Operation::Replace { path, .. }
            | Operation::Regex { path, .. }
            | Operation::Delete { path, .. } => paths.push((at("path"), path)),
            Operation::Rename { from, to } => {
                paths.push((at("from"), from));
                paths.push((at("to"), to));
            }
            Operation::Chmod { path, mode } => {
                paths.push((at("path"), path));
                modes.push((at("mode"), *mode, path));
            }
            Operation::SearchReplace { path, .. } => paths.push((at("path"), path)),
            Operation::ApplyPatch { files } => {
                for (j, f) in files.iter().enumerate() {
                    let field = format!("operations[{i}].patch (file {})", j + 1);
                    paths.push((field.clone(), f.path()));
                    if let crate::patch::agent::FileEdit::Update {
                        move_to: Some(to), ..
                    } = f
                    {
                        paths.push((field, to));
                    }
                }
            }
            Operation::Diff { files } => {
                for (j, f) in files.iter().enumerate() {
                    let field = format!("operations[{i}].diff (file {})", j + 1);
                    for p in f.old_path.iter().chain(f.new_path.iter()) {
                        paths.push((field.clone(), p));
                    }
                    if let (Some(m), Some(p)) =
                        (f.new_mode, f.new_path.as_ref().or(f.old_path.as_ref()))
                    {
                        modes.push((field.clone(), m, p));
                    }
                }
            }
        }
        for (field, p) in paths {
            if let Some(why) = protected(p, target) {
                err(field, why);
            }
        }
        for (field, m, p) in modes {
            if let Some(why) = special_mode(m, p, target) {
                err(field, why);
            }
        }
    }
    for (phase, list) in [
        ("before", &patch.checks.before),
        ("after", &patch.checks.after),
    ] {
        for (i, c) in list.iter().enumerate() {
            if let Err(why) = command_allowed(c, target) {
                err(format!("checks.{phase}[{i}]"), why);
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(commands: CommandPolicy, allow_shell: bool) -> TargetSpec {
        TargetSpec {
            name: "t".into(),
            commands,
            allow_shell,
            protected_paths: vec![".github/workflows".into()],
            ..TargetSpec::default()
        }
    }

    fn argv(a: &[&str]) -> Command {
        Command {
            kind: CommandKind::Argv(a.iter().map(|s| s.to_string()).collect()),
            timeout: None,
        }
    }

    fn shell(s: &str) -> Command {
        Command {
            kind: CommandKind::Shell(s.into()),
            timeout: None,
        }
    }

    #[test]
    fn no_commands_by_default() {
        let t = spec(CommandPolicy::default(), true);
        let e = command_allowed(&argv(&["true"]), &t).unwrap_err();
        assert!(
            e.contains("`true`") && e.contains("targets.t.commands"),
            "{e}"
        );
        assert!(command_allowed(&shell("true"), &t).is_err());
    }

    #[test]
    fn allowlist_matches_prefixes_element_by_element() {
        let t = spec(
            CommandPolicy::Allow(vec![
                vec!["cargo".into(), "test".into()],
                vec!["make".into()],
            ]),
            true,
        );
        assert!(command_allowed(&argv(&["cargo", "test", "--all"]), &t).is_ok());
        assert!(command_allowed(&argv(&["make"]), &t).is_ok());
        for bad in [
            &["cargo"][..],
            &["cargo", "testx"],
            &["cargo", "build"],
            &["/usr/bin/cargo", "test"],
            &["makefile"],
        ] {
            let e = command_allowed(&argv(bad), &t).unwrap_err();
            assert!(e.contains("none of the prefixes"), "{bad:?}: {e}");
        }
        // Shell strings never match an allowlist, even with allow_shell.
        assert!(command_allowed(&shell("make"), &t).is_err());
    }

    #[test]
    fn shells_in_argv_are_shell_commands() {
        let any = spec(CommandPolicy::Any, false);
        for bad in [
            &["sh", "-c", "id"][..],
            &["/bin/bash", "-ec", "id"],
            &["dash", "-x", "-c", "id"],
            &["env", "sh", "x"],
            &["/usr/bin/env", "id"],
            &["busybox", "sh", "-c", "id"],
            &["zsh", "--command", "id"],
        ] {
            assert!(
                is_shell_like(&bad.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                "{bad:?}"
            );
            let e = command_allowed(&argv(bad), &any).unwrap_err();
            assert!(e.contains("allow_shell"), "{e}");
        }
        assert!(command_allowed(&argv(&["sh", "script.sh"]), &any).is_ok());
        assert!(
            command_allowed(&argv(&["sh", "-c", "id"]), &spec(CommandPolicy::Any, true)).is_ok()
        );
        // A prefix of just the shell does not let `-c` through.
        let t = spec(CommandPolicy::Allow(vec![vec!["sh".into()]]), true);
        assert!(command_allowed(&argv(&["sh", "ci.sh"]), &t).is_ok());
        assert!(command_allowed(&argv(&["sh", "-c", "id"]), &t).is_err());
    }

    #[test]
    fn git_and_listed_paths_are_protected_in_any_case() {
        let t = spec(CommandPolicy::None, false);
        for bad in [
            ".git/hooks/post-commit",
            ".GIT/config",
            "a/.Git/x",
            "sub/.git",
            ".github/workflows/ci.yml",
            ".GitHub/Workflows/x",
        ] {
            let p = RelPath::parse(bad).unwrap();
            assert!(protected(&p, &t).is_some(), "{bad} not protected");
        }
        for ok in [
            ".gitignore",
            "git/x",
            ".github/other",
            "a.git/x",
            ".github/workflowsx",
        ] {
            let p = RelPath::parse(ok).unwrap();
            assert!(protected(&p, &t).is_none(), "{ok} protected");
        }
    }

    #[test]
    fn special_modes_are_named() {
        let p = RelPath::parse("x").unwrap();
        let t = spec(CommandPolicy::None, false);
        assert!(special_mode(0o755, &p, &t).is_none());
        assert!(special_mode(0o4755, &p, &t).unwrap().contains("setuid"));
        assert!(special_mode(0o2755, &p, &t).unwrap().contains("setgid"));
        assert!(special_mode(0o1755, &p, &t).unwrap().contains("sticky"));
        assert!(special_mode(0o104755, &p, &t)
            .unwrap()
            .contains("allow_special_modes"));
        let allowed = TargetSpec {
            allow_special_modes: true,
            ..t
        };
        assert!(special_mode(0o6755, &p, &allowed).is_none());
    }
}
