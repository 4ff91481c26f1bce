//! What a patch may not do, against the real executor: run commands its target
//! does not allow, touch `.git` or a protected path, set special mode bits,
//! blow up staging, or get a secret into its summary; and checks running as
//! another user (`run_as`) cannot read the secrets.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use ghost_core::queue::QueueState;

use crate::harness::*;

/// The failure message recorded for a failed entry.
fn failure(env: &TestEnv, name: &str) -> String {
    let r = env.reason("default", QueueState::Failed, name);
    r["reason"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn assert_failed_with(env: &TestEnv, name: &str, needles: &[&str]) {
    assert_eq!(
        env.state_of("default", name),
        Some(QueueState::Failed),
        "{name}: {:?}",
        env.state_of("default", name)
    );
    let msg = failure(env, name);
    for n in needles {
        assert!(msg.contains(n), "{name}: {n:?} not in {msg:?}");
    }
}

#[test]
fn sh_c_on_a_target_without_commands_fails_before_anything_runs() {
    let env = TestEnv::new("[targets.default]\ncommands = \"none\"\nallow_shell = true\n");
    let marker = env.dir.path().join("ran");
    let touch = format!("touch '{}'", marker.display());
    let sneaky = env.enqueue_json(
        "default",
        &json!({"operations": [{"op": "write", "path": "a.txt", "content": "a\n"}],
                "checks": {"before": [{"argv": ["sh", "-c", touch]}]}}),
    );
    let plain = env.enqueue_json(
        "default",
        &json!({"operations": [{"op": "write", "path": "b.txt", "content": "b\n"}],
                "checks": {"after": [{"argv": ["touch", marker.to_str().unwrap()]}]}}),
    );
    env.drain();
    assert_failed_with(&env, &sneaky, &["sh -c", "targets.default.commands"]);
    assert_failed_with(&env, &plain, &["touch", "targets.default.commands"]);
    assert!(!marker.exists(), "a refused command ran");
    assert!(snapshot(&env.tree("default")).is_empty());
}

#[test]
fn an_allowlisted_prefix_runs_and_nothing_else_does() {
    let env = TestEnv::new(
        "[targets.default]\ncommands = [[\"touch\"], [\"test\", \"-f\"]]\nallow_shell = true\n",
    );
    let d = env.dir.path();
    let (made, not_made, not_shell) = (d.join("made"), d.join("not-made"), d.join("not-shell"));
    let ok = env.enqueue_json(
        "default",
        &json!({"operations": [{"op": "write", "path": "a.txt", "content": "a\n"}],
                "checks": {"after": [{"argv": ["test", "-f", "a.txt"]}, {"argv": ["touch", made.to_str().unwrap()]}]}}),
    );
    let other = env.enqueue_json(
        "default",
        &json!({"operations": [{"op": "write", "path": "b.txt", "content": "b\n"}],
                "checks": {"after": [{"argv": ["mkdir", not_made.to_str().unwrap()]}]}}),
    );
    // An allowlist never admits a shell, even with allow_shell.
    let shell = env.enqueue_json(
        "default",
        &json!({"operations": [{"op": "write", "path": "c.txt", "content": "c\n"}],
                "checks": {"after": [{"argv": ["sh", "-c", format!("touch '{}'", not_shell.display())]}]}}),
    );
    env.drain();
    assert_eq!(env.state_of("default", &ok), Some(QueueState::Done));
    assert!(made.exists());
    assert_failed_with(
        &env,
        &other,
        &["mkdir", "none of the prefixes", "targets.default.commands"],
    );
    assert_failed_with(&env, &shell, &["shell command", "allow_shell"]);
    assert!(!not_made.exists() && !not_shell.exists());
    assert_eq!(
        snapshot(&env.tree("default")).keys().collect::<Vec<_>>(),
        ["a.txt"]
    );
}

#[test]
fn patches_touching_git_or_a_protected_path_are_refused() {
    let env = TestEnv::new("[targets.default]\nprotected_paths = [\".github/workflows\"]\n");
    let tree = env.tree("default");
    std::fs::create_dir_all(&tree).unwrap();
    git(&tree, &["init", "-q"]);
    let seed = env.enqueue_json(
        "default",
        &json!({"operations": [{"op": "write", "path": "x", "content": "x\n"}]}),
    );
    env.drain();
    assert_eq!(env.state_of("default", &seed), Some(QueueState::Done));
    let before = snapshot(&tree);
    let w = |p: &str| json!({"operations": [{"op": "write", "path": p, "content": "#!/bin/sh\ntouch /tmp/pwned\n", "mode": "0755"}]});
    let cases = [
        w(".git/hooks/post-commit"),
        w(".GIT/config"),
        w("sub/.git"),
        w(".GitHub/Workflows/ci.yml"),
        json!({"operations": [{"op": "rename", "from": "x", "to": ".git/hooks/pre-commit"}]}),
        json!({"operations": [{"op": "diff", "diff": "diff --git a/x b/.git/x\nsimilarity index 100%\nrename from x\nrename to .git/x\n"}]}),
        json!({"operations": [{"op": "diff", "diff": "--- /dev/null\n+++ b/.git/config\n@@ -0,0 +1 @@\n+[core]\n"}]}),
        json!({"blockId": "legacy", "target": "default", "mutations": [{"path": ".git/config", "contents": "[core]\n"}]}),
    ];
    let names: Vec<String> = cases
        .iter()
        .map(|c| env.enqueue_json("default", c))
        .collect();
    env.drain();
    for (n, c) in names.iter().zip(&cases) {
        let expect = if c.to_string().contains("Workflows") {
            "protected_paths"
        } else {
            ".git"
        };
        assert_failed_with(&env, n, &[expect]);
    }
    assert_eq!(
        snapshot(&tree),
        before,
        "the tree (and .git) must be unchanged"
    );
}

#[test]
fn hooks_and_fsmonitor_placed_by_hand_do_not_run_on_commit() {
    let env = TestEnv::new("[targets.default]\ngit_commit = true\n");
    let tree = env.tree("default");
    std::fs::create_dir_all(&tree).unwrap();
    git(&tree, &["init", "-q"]);
    let marker = env.dir.path().join("hook-ran");
    let script = format!("#!/bin/sh\necho \"$0\" >> '{}'\n", marker.display());
    for hook in [
        "pre-commit",
        "post-commit",
        "commit-msg",
        "prepare-commit-msg",
    ] {
        let p = tree.join(".git/hooks").join(hook);
        ghost_core::fs::durable_write(&p, script.as_bytes(), 0o755).unwrap();
    }
    let monitor = env.dir.path().join("fsmonitor.sh");
    ghost_core::fs::durable_write(&monitor, script.as_bytes(), 0o755).unwrap();
    git(
        &tree,
        &["config", "core.fsmonitor", monitor.to_str().unwrap()],
    );
    let p = env.enqueue_json(
        "default",
        &json!({"id": "commit-me", "operations": [{"op": "write", "path": "a.txt", "content": "a\n"}],
                "git": {"commit": "Add a.txt"}}),
    );
    env.drain();
    assert_eq!(env.state_of("default", &p), Some(QueueState::Done));
    assert_eq!(git(&tree, &["log", "--format=%s"]), "Add a.txt");
    assert!(
        !marker.exists(),
        "a hook ran: {:?}",
        std::fs::read_to_string(&marker)
    );
    // The hooks are live: a plain commit runs them. So the test can fail.
    git(
        &tree,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "by hand",
        ],
    );
    assert!(marker.exists(), "the hooks placed by hand are not runnable");
}

#[test]
fn setuid_setgid_and_sticky_bits_are_refused() {
    let env = TestEnv::new("");
    let tree = env.tree("default");
    let seed = env.enqueue_json(
        "default",
        &json!({"operations": [{"op": "write", "path": "tool", "content": "#!/bin/sh\n", "mode": "0755"}]}),
    );
    env.drain();
    assert_eq!(env.state_of("default", &seed), Some(QueueState::Done));
    // A setuid file placed by hand: a patch may not rewrite it either.
    ghost_core::fs::durable_write(&tree.join("suid"), b"x", 0o755).unwrap();
    std::fs::set_permissions(tree.join("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    let before = snapshot(&tree);
    let cases = [
        (
            json!({"operations": [{"op": "write", "path": "w", "content": "x", "mode": "4755"}]}),
            "setuid",
        ),
        (
            json!({"operations": [{"op": "chmod", "path": "tool", "mode": "2755"}]}),
            "setgid",
        ),
        (
            json!({"operations": [{"op": "chmod", "path": "tool", "mode": "1755"}]}),
            "sticky",
        ),
        (
            json!({"operations": [{"op": "diff", "diff": "diff --git a/d b/d\nnew file mode 104755\n--- /dev/null\n+++ b/d\n@@ -0,0 +1 @@\n+x\n"}]}),
            "setuid",
        ),
        (
            json!({"operations": [{"op": "diff", "diff": "diff --git a/tool b/tool\nold mode 100755\nnew mode 106755\n"}]}),
            "setuid and setgid",
        ),
        (
            json!({"operations": [{"op": "replace", "path": "suid", "find": "x", "replace": "y"}]}),
            "setuid",
        ),
    ];
    let names: Vec<String> = cases
        .iter()
        .map(|(c, _)| env.enqueue_json("default", c))
        .collect();
    env.drain();
    for (n, (_, why)) in names.iter().zip(&cases) {
        assert_failed_with(&env, n, &[why, "allow_special_modes"]);
    }
    assert_eq!(snapshot(&tree), before);

    // A target that opts in gets the bits.
    let env = TestEnv::new("[targets.default]\nallow_special_modes = true\n");
    let p = env.enqueue_json(
        "default",
        &json!({"operations": [{"op": "write", "path": "w", "content": "x", "mode": "4755"}]}),
    );
    env.drain();
    assert_eq!(env.state_of("default", &p), Some(QueueState::Done));
    let mode = std::fs::metadata(env.tree("default").join("w"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o4755);
}

#[test]
fn the_regex_bomb_fails_on_its_limit_and_the_executor_goes_on() {
    let mut env = TestEnv::new("[limits]\nmax_file_bytes = \"1MiB\"\n");
    let mut ops = vec![json!({"op": "write", "path": "a", "content": "a"})];
    ops.extend(
        (0..40).map(|_| json!({"op": "regex", "path": "a", "pattern": "a", "replacement": "aa"})),
    );
    let bomb = json!({"id": "bomb", "operations": ops});
    assert!(bomb.to_string().len() < 3 * 1024);
    let bomb = env.enqueue_json("default", &bomb);
    let next = env.enqueue_json(
        "default",
        &json!({"id": "next", "operations": [{"op": "write", "path": "b", "content": "b\n"}]}),
    );
    let pid = env.spawn_executor();
    assert!(wait_until(Duration::from_secs(60), || env
        .state_of("default", &next)
        == Some(QueueState::Done)));
    env.assert_alive(pid);
    assert_failed_with(
        &env,
        &bomb,
        &["operations[21]", "limit is 1048576 (limits.max_file_bytes)"],
    );
    let r = env.reason("default", QueueState::Failed, &bomb);
    assert_eq!(r["reason"]["kind"], "limit");
    assert_eq!(r["attempts"], 1, "a patch over a limit is not retried");
    // Staging never held much more than the limit.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(hwm_kib < 100 * 1024, "executor peak RSS {hwm_kib} KiB");
    assert_eq!(
        snapshot(&env.tree("default")).keys().collect::<Vec<_>>(),
        ["b"]
    );
}

#[test]
fn a_patch_over_a_count_limit_is_refused_naming_the_limit() {
    let env = TestEnv::new("[limits]\nmax_regex_operations = 2\nmax_operations = 5\n");
    let ops: Vec<Value> = (0..6)
        .map(|_| json!({"op": "regex", "path": "a", "pattern": "a", "replacement": "b"}))
        .collect();
    let p = env.enqueue_json("default", &json!({"operations": ops}));
    env.drain();
    assert_failed_with(
        &env,
        &p,
        &[
            "the limit is 5 (limits.max_operations)",
            "the limit is 2 (limits.max_regex_operations)",
        ],
    );
}

/// `abc-def` as `abc-""def`: the same word to a shell, not the same text.
fn split(secret: &str) -> String {
    let (a, b) = secret.split_at(secret.len() / 2);
    format!("{a}\"\"{b}")
}

#[test]
fn check_output_with_a_secret_is_scrubbed_everywhere() {
    const FILE_SECRET: &str = "file-secret-7f3a9c2e41";
    const CONFIG_SECRET: &str = "config-secret-0b1d2e3f";
    const ENV_SECRET: &str = "env-secret-55aa66bb77";
    let env = TestEnv::new(&format!(
        "[targets.default]\nallow_shell = true\n[bridge]\ntoken = \"{CONFIG_SECRET}\"\n"
    ));
    let secrets = env.layout().secrets();
    std::fs::create_dir_all(&secrets).unwrap();
    ghost_core::fs::durable_write(&secrets.join("bridge_token"), FILE_SECRET.as_bytes(), 0o600)
        .unwrap();
    let p = env.enqueue_json(
        "default",
        &json!({"operations": [{"op": "write", "path": "a", "content": "a"}],
        "checks": {"before": [{"argv": ["env"]}], "after": [{"shell": format!(
            // Quotes split the values: the patch's own text holds none of them.
            "cat '{}'; echo; echo {}; echo {e}; echo {e} >&2; exit 3",
            secrets.join("bridge_token").display(),
            split(CONFIG_SECRET),
            e = split(ENV_SECRET)
        )}]}}),
    );
    let out = env
        .cmd(EXECUTOR)
        .arg("--drain")
        .env("GHOST_HMAC_KEY", ENV_SECRET)
        .output()
        .unwrap();
    assert_success(&out);
    let s = env.summary("default", &p);
    // The executor's secret variables never reach a check's environment.
    let seen = s["checks"][0]["stdout_tail"].as_str().unwrap();
    assert!(
        seen.contains("GHOST_PATCH_ID=") && !seen.contains("GHOST_HMAC_KEY"),
        "{seen}"
    );
    assert_eq!(s["checks"][1]["exit_code"], 3, "{s}");
    assert_eq!(
        s["checks"][1]["stdout_tail"],
        "[redacted]\n[redacted]\n[redacted]\n"
    );
    assert_eq!(s["checks"][1]["stderr_tail"], "[redacted]\n");
    // Nowhere in what the system wrote: summaries, queue records, logs.
    for dir in [
        env.layout().summaries("default"),
        env.layout().queue("default").dir(QueueState::Failed),
        env.layout().logs(),
    ] {
        for (path, (bytes, _)) in snapshot(&dir) {
            let text = String::from_utf8_lossy(&bytes);
            for secret in [FILE_SECRET, CONFIG_SECRET, ENV_SECRET] {
                assert!(
                    !text.contains(secret),
                    "{secret} in {}/{path}",
                    dir.display()
                );
            }
        }
    }
}

#[test]
fn checks_run_as_another_user_cannot_read_the_secrets() {
    if !nix::unistd::geteuid().is_root() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI runs the tests as root; this one needs it");
        }
        eprintln!("skipped checks_run_as_another_user_cannot_read_the_secrets: needs root to switch users");
        return;
    }
    const SECRET: &str = "bridge-token-abcdef0123456789";
    let env = TestEnv::new("");
    let tree = env.dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    // The tree is reachable by the check's user; the data root's secrets are not.
    for p in [env.dir.path(), &tree] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    env.write_config(&merge_toml(
        FAST,
        &format!(
            "[targets.default]\npath = \"{}\"\nallow_shell = true\nrun_as = \"nobody\"\n",
            tree.display()
        ),
    ));
    std::fs::set_permissions(&env.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let secrets = env.layout().secrets();
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700)).unwrap();
    let token = secrets.join("bridge_token");
    ghost_core::fs::durable_write(&token, SECRET.as_bytes(), 0o600).unwrap();
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a nobody user");
    // Exit 3 only when both reads fail; 10/11 say which one succeeded.
    let script = format!(
        "id -u; if cat '{}'; then exit 10; fi; if cat /proc/$PPID/environ; then exit 11; fi; exit 3",
        token.display()
    );
    let p = env.enqueue_json(
        "default",
        &json!({"operations": [{"op": "write", "path": "a", "content": "a"}],
                "checks": {"after": [{"argv": ["sh", "-c", script]}]}}),
    );
    let out = env
        .cmd(EXECUTOR)
        .arg("--drain")
        .env("GHOST_BRIDGE_TOKEN", SECRET)
        .output()
        .unwrap();
    assert_success(&out);
    let s = env.summary("default", &p);
    let check = &s["checks"][0];
    assert_eq!(check["stdout_tail"], format!("{}\n", nobody.uid), "{s}");
    assert_eq!(check["exit_code"], 3, "{s}");
    assert!(
        check["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{s}"
    );
}

#[test]
fn the_examples_apply_with_their_configuration_and_the_defaults_run_no_commands() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let example = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let env = TestEnv::new(&std::fs::read_to_string(dir.join("ghost.toml")).unwrap());
    let hello = env.enqueue_raw("default", &example("hello.json"));
    let rename = env.enqueue_raw("default", &example("rename-and-edit.json"));
    let failing = env.enqueue_raw("default", &example("failing-check.json"));
    env.drain();
    assert_eq!(env.state_of("default", &hello), Some(QueueState::Done));
    assert_eq!(env.state_of("default", &rename), Some(QueueState::Done));
    assert_eq!(env.state_of("default", &failing), Some(QueueState::Failed));
    assert_eq!(env.summary("default", &failing)["status"], "rolled_back");

    // The embedded defaults: hello.json (file changes only) applies; a patch
    // with a check is refused before anything changes, naming the key to set.
    let env = TestEnv::new("");
    std::fs::remove_file(env.root.join("ghost.toml")).unwrap();
    let hello = env.enqueue_raw("default", &example("hello.json"));
    env.drain();
    assert_eq!(env.state_of("default", &hello), Some(QueueState::Done));
    let before = snapshot(&env.tree("default"));
    let rename = env.enqueue_raw("default", &example("rename-and-edit.json"));
    env.drain();
    assert_failed_with(
        &env,
        &rename,
        &["sh bin/greet.sh", "targets.default.commands"],
    );
    assert_eq!(snapshot(&env.tree("default")), before);
}
