//! `ghostctl` end to end against the real executor: submit (native and legacy),
//! inspect, intervene, verify.

use std::path::PathBuf;

use ghost_core::queue::QueueState;
use serde_json::{json, Value};

use crate::harness::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/legacy")
        .join(name)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const LEGACY_TARGET: &str = r#"
[targets.default]
aliases = ["DEV", "CYOPS", "MAIN", "BRAUN", "ghost-system"]
legacy_root = "/tmp"
"#;

const PATCHES: [&str; 5] = [
    "dummy_patch.json",
    "patch-router-test-patch.json",
    "test-patch-gpt-interface.json",
    "test-patch-simple.json",
    "test-patch.json",
];
const WITH_SHELL: [&str; 3] = [
    "test-patch-gpt-interface.json",
    "test-patch-simple.json",
    "test-patch.json",
];

#[test]
fn every_legacy_fixture_normalises_and_shell_ones_are_refused_without_allow_shell() {
    // Without allow_shell: the shell-free fixtures go in, the others are refused naming the shell fields.
    let env = TestEnv::new(LEGACY_TARGET);
    for f in PATCHES {
        let out = env.ghostctl(&["submit", fixture(f).to_str().unwrap()]);
        if WITH_SHELL.contains(&f) {
            assert_eq!(out.status.code(), Some(1), "{f}: {}", stdout(&out));
            let err = stderr(&out);
            assert!(
                err.contains(".shell") && err.contains("allow_shell"),
                "{f}: {err}"
            );
        } else {
            assert!(out.status.success(), "{f}: {}", stderr(&out));
        }
    }
    assert_eq!(env.list("default", QueueState::Pending).len(), 2);
    // The JSON schema is not a patch.
    let out = env.ghostctl(&["submit", fixture("PATCH-SCHEMA.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("JSON Schema"), "{}", stderr(&out));

    // With allow_shell every patch fixture is accepted, byte-identical in the queue.
    let env = TestEnv::new(&format!("{LEGACY_TARGET}allow_shell = true\n"));
    let files: Vec<String> = PATCHES
        .iter()
        .map(|f| fixture(f).to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["submit"];
    args.extend(files.iter().map(String::as_str));
    let out = env.ghostctl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    let q = env.layout().queue("default");
    for (line, f) in lines.iter().zip(PATCHES) {
        let cols: Vec<&str> = line.split('\t').collect();
        let stored = std::fs::read(q.entry_path(QueueState::Pending, cols[1])).unwrap();
        assert_eq!(
            stored,
            std::fs::read(fixture(f)).unwrap(),
            "{f} stored as submitted"
        );
    }
    // Every one reaches a terminal state with a summary (the old fixtures' shell
    // checks call services that do not exist here, so some roll back).
    env.drain();
    assert!(env.list("default", QueueState::Pending).is_empty());
    assert_eq!(
        env.list("default", QueueState::Failed).len() + env.list("default", QueueState::Done).len(),
        5
    );
    // dummy_patch's regex needs the file; router's relative write applies.
    assert_eq!(
        std::fs::read(env.tree("default").join("foo/bar/baz.js")).unwrap(),
        b"console.log('patched')"
    );
    let summaries = std::fs::read_dir(env.layout().summaries("default"))
        .unwrap()
        .count();
    assert!(summaries >= 10, "two files per summary");
}

#[test]
fn submit_refuses_invalid_files_enqueues_the_valid_ones_and_prints_ids() {
    let env = TestEnv::new("");
    let good = env.dir.path().join("good.json");
    let bad = env.dir.path().join("bad.json");
    ghost_core::fs::durable_write(&good, serde_json::to_vec(&json!({"id": "good-1", "operations": [{"op": "write", "path": "g.txt", "content": "g\n"}]})).unwrap().as_slice(), 0o600).unwrap();
    ghost_core::fs::durable_write(
        &bad,
        br#"{"operations": [{"op": "write", "path": "../x", "content": "x"}]}"#,
        0o600,
    )
    .unwrap();
    let out = env.ghostctl(&["submit", bad.to_str().unwrap(), good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("operations[0].path"),
        "{}",
        stderr(&out)
    );
    let line = stdout(&out);
    assert!(line.contains("good-1"), "{line}");
    assert_eq!(env.list("default", QueueState::Pending).len(), 1);
    // The printed id finds the patch, before and after it is applied.
    let show = env.ghostctl(&["show", "good-1", "--json"]);
    assert!(show.status.success(), "{}", stderr(&show));
    env.drain();
    let show = env.ghostctl(&["show", "good-1", "--json"]);
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["summary"]["status"], "applied", "{v}");
    // An id-less patch keeps the id submit printed.
    let anon = env.dir.path().join("anon.json");
    ghost_core::fs::durable_write(
        &anon,
        br#"{"operations": [{"op": "write", "path": "a.txt", "content": "a"}]}"#,
        0o600,
    )
    .unwrap();
    let out = env.ghostctl(&["submit", anon.to_str().unwrap()]);
    let id = stdout(&out).split('\t').nth(2).unwrap().to_string();
    env.drain();
    let v: Value = serde_json::from_slice(&env.ghostctl(&["show", &id, "--json"]).stdout).unwrap();
    assert_eq!(v["summary"]["id"], id.as_str());
    let unknown = env.ghostctl(&["show", "no-such-patch"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn operator_actions_hold_release_retry_delete_and_status() {
    let env = TestEnv::new("");
    let held = env.enqueue_json("default", &json!({"id": "held-one", "operations": [{"op": "write", "path": "h.txt", "content": "h\n"}]}));
    let failing = env.enqueue_json("default", &json!({"id": "needs-file", "operations": [{"op": "replace", "path": "later.txt", "find": "a", "replace": "b"}]}));
    assert!(env.ghostctl(&["hold", "held-one"]).status.success());
    env.drain();
    assert_eq!(
        env.state_of("default", &held),
        Some(QueueState::Held),
        "the executor leaves held entries alone"
    );
    assert_eq!(env.state_of("default", &failing), Some(QueueState::Failed));

    let st = env.ghostctl(&["status", "--json"]);
    assert!(st.status.success(), "{}", stderr(&st));
    let v: Value = serde_json::from_slice(&st.stdout).unwrap();
    assert!(v.to_string().contains("\"failed\":1"), "{v}");

    // Fix the cause, retry: attempts reset, history kept.
    env.enqueue_json("default", &json!({"id": "make-file", "operations": [{"op": "write", "path": "later.txt", "content": "a\n"}]}));
    env.drain();
    let out = env.ghostctl(&["retry", "needs-file"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rec = env.reason("default", QueueState::Pending, &failing);
    assert_eq!(rec["attempts"], 0);
    assert_eq!(rec["history"].as_array().unwrap().len(), 1);
    assert_eq!(rec["operator"][0]["action"], "retry");
    env.drain();
    assert_eq!(env.state_of("default", &failing), Some(QueueState::Done));
    assert_eq!(
        std::fs::read(env.tree("default").join("later.txt")).unwrap(),
        b"b\n"
    );

    // Release, apply; delete needs a reason and keeps the file in trash/.
    assert!(env.ghostctl(&["release", &held]).status.success());
    env.drain();
    assert_eq!(env.state_of("default", &held), Some(QueueState::Done));
    let no_reason = env.ghostctl(&["delete", &held]);
    assert_eq!(no_reason.status.code(), Some(2));
    let del = env.ghostctl(&["delete", &held, "--reason", "superseded by a later patch"]);
    assert!(del.status.success(), "{}", stderr(&del));
    assert_eq!(env.state_of("default", &held), Some(QueueState::Trash));
    let rec = env.reason("default", QueueState::Trash, &held);
    let actions: Vec<&str> = rec["operator"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["hold", "release", "delete"], "{rec}");
    assert_eq!(rec["operator"][2]["reason"], "superseded by a later patch");
    // Nothing is lost: the summary is still there.
    assert_eq!(env.summary("default", &held)["status"], "applied");
}

#[test]
fn verify_repairs_damaged_summaries_and_fails_on_unrepairable_ones() {
    let env = TestEnv::new("");
    let a = env.enqueue_json(
        "default",
        &json!({"id": "a", "operations": [{"op": "write", "path": "a", "content": "a"}]}),
    );
    let b = env.enqueue_json(
        "default",
        &json!({"id": "b", "operations": [{"op": "write", "path": "b", "content": "b"}]}),
    );
    env.drain();
    let dir = env.layout().summaries("default");
    let ok = env.ghostctl(&["verify"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("2 summaries: 2 ok"), "{}", stdout(&ok));
    let good = std::fs::read(dir.join(format!("{a}.json"))).unwrap();
    ghost_core::fs::durable_write(&dir.join(format!("{a}.json")), b"{ truncated", 0o600).unwrap();
    let out = env.ghostctl(&["verify"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(std::fs::read(dir.join(format!("{a}.json"))).unwrap(), good);
    ghost_core::fs::durable_write(&dir.join(format!("{b}.json")), b"x", 0o600).unwrap();
    ghost_core::fs::durable_write(&dir.join(format!(".backup/{b}.json")), b"y", 0o600).unwrap();
    let out = env.ghostctl(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("1 unrepairable"), "{}", stdout(&out));
}

#[test]
fn status_and_submit_refuse_a_directory_that_is_not_a_data_root() {
    let env = TestEnv::new("");
    let patch = env.dir.path().join("p.json");
    let body = json!({"id": "nowhere-1", "operations": [{"op": "write", "path": "a.txt", "content": "x"}]});
    ghost_core::fs::durable_write(&patch, &serde_json::to_vec(&body).unwrap(), 0o600).unwrap();
    // A mistyped root that does not exist, and a plain directory.
    let plain = env.dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    for bad in [env.dir.path().join("rooot"), plain.clone()] {
        let before = snapshot(env.dir.path());
        for args in [
            vec!["status"],
            vec!["status", "--json"],
            vec!["submit", patch.to_str().unwrap()],
        ] {
            let out = std::process::Command::new(GHOSTCTL)
                .arg("--root")
                .arg(&bad)
                .args(&args)
                .current_dir(&plain)
                .env_remove("GHOST_ROOT")
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{args:?} {}", stderr(&out));
            let e = stderr(&out);
            assert!(e.contains("not a ghostbridge data root"), "{e}");
            assert!(e.contains("--root or GHOST_ROOT"), "{e}");
        }
        assert_eq!(snapshot(env.dir.path()), before, "nothing created");
        assert!(!env.dir.path().join("rooot").exists());
        assert_eq!(std::fs::read_dir(&plain).unwrap().count(), 0);
    }
    // Without --root, the default ./ghost-data is not created either.
    let out = std::process::Command::new(GHOSTCTL)
        .args(["submit", patch.to_str().unwrap()])
        .current_dir(&plain)
        .env_remove("GHOST_ROOT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!plain.join("ghost-data").exists());
    // The real root still works.
    assert!(env.ghostctl(&["status"]).status.success());
}

#[test]
fn a_pause_shows_in_status_and_submit_refuses_it_without_force() {
    let env = TestEnv::new("");
    let patch = env.dir.path().join("p.json");
    let body = br#"{"id": "during-pause", "operations": [{"op": "write", "path": "a.txt", "content": "x"}]}"#;
    ghost_core::fs::durable_write(&patch, body, 0o600).unwrap();
    let out = env.ghostctl(&["pause", "--reason", "migrating the disk"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let table = stdout(&env.ghostctl(&["status"]));
    assert!(table.contains("intake paused"), "{table}");
    assert!(table.contains("migrating the disk"), "{table}");
    let v: Value = serde_json::from_slice(&env.ghostctl(&["status", "--json"]).stdout).unwrap();
    let pause = v["pause"].as_array().expect("pause causes");
    assert_eq!(pause.len(), 1, "{v}");
    let text = pause[0].to_string();
    assert!(text.contains("migrating the disk"), "{text}");
    assert!(
        text.contains("paused_by") && text.contains("paused_at"),
        "{text}"
    );

    let out = env.ghostctl(&["submit", patch.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let e = stderr(&out);
    assert!(e.contains("intake is paused"), "{e}");
    assert!(
        e.contains("migrating the disk") && e.contains("--force"),
        "{e}"
    );
    assert!(env.list("default", QueueState::Pending).is_empty());

    let out = env.ghostctl(&["submit", "--force", patch.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.list("default", QueueState::Pending).len(), 1);
}

#[test]
fn a_heartbeat_interval_not_below_stale_after_is_a_configuration_error() {
    let env = TestEnv::new("");
    env.write_config(&merge_toml(
        FAST,
        "[heartbeat]\ninterval = \"4s\"\nstale_after = \"2s\"\n",
    ));
    // The watchdog refuses to start with it rather than give up on every child.
    let mut wd = env
        .cmd(WATCHDOG)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut wd, std::time::Duration::from_secs(30));
    if status.is_none() {
        let _ = wd.kill();
    }
    let out = wd.wait_with_output().unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("heartbeat.interval: 4s must be below heartbeat.stale_after (2s)"),
        "{e}"
    );
    // ghostctl reads the same configuration and says the same.
    let out = env.ghostctl(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("heartbeat.interval"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn restore_brings_a_deleted_entry_back_from_trash_and_is_audited() {
    let env = TestEnv::new("");
    let body =
        br#"{"id": "regretted", "operations": [{"op": "write", "path": "a.txt", "content": "x"}]}"#;
    let patch = env.write_patch("p.json", body);
    assert!(env
        .ghostctl(&["submit", patch.to_str().unwrap()])
        .status
        .success());
    let name = env.list("default", QueueState::Pending)[0].clone();
    let del = env.ghostctl(&["delete", "regretted", "--reason", "oops"]);
    assert!(del.status.success(), "{}", stderr(&del));
    assert_eq!(env.state_of("default", &name), Some(QueueState::Trash));
    // retry names what works for a trashed entry.
    let retry = env.ghostctl(&["retry", "regretted"]);
    assert_eq!(retry.status.code(), Some(2));
    assert!(
        stderr(&retry).contains("ghostctl restore"),
        "{}",
        stderr(&retry)
    );

    let out = env.ghostctl(&["restore", "regretted", "--reason", "needed after all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.state_of("default", &name), Some(QueueState::Pending));
    let body_now = std::fs::read(
        env.layout()
            .queue("default")
            .entry_path(QueueState::Pending, &name),
    );
    assert_eq!(
        body_now.unwrap(),
        body.to_vec(),
        "the entry comes back unchanged"
    );
    // Only from trash.
    assert_eq!(env.ghostctl(&["restore", &name]).status.code(), Some(2));

    // Again, into held/ this time.
    assert!(env
        .ghostctl(&["delete", &name, "--reason", "again"])
        .status
        .success());
    assert!(env.ghostctl(&["restore", &name, "--held"]).status.success());
    assert_eq!(env.state_of("default", &name), Some(QueueState::Held));

    let restores: Vec<_> = env
        .log_lines("ghostctl")
        .into_iter()
        .filter(|l| l.to_string().contains("OPERATOR_ACTION") && l.to_string().contains("restore"))
        .collect();
    assert_eq!(restores.len(), 2, "{restores:?}");
    assert!(restores[0].to_string().contains("needed after all"));
}

#[test]
fn ids_resolve_by_prefix_or_suffix_and_an_ambiguous_one_lists_candidates() {
    let mut env = TestEnv::new("");
    let write = |id: &str| json!({"id": id, "operations": [{"op": "write", "path": format!("{id}.txt"), "content": "x"}]});
    let a = env.enqueue_json("default", &write("report-north"));
    let b = env.enqueue_json("default", &write("report-south"));
    // b is held: the ambiguous listing must show the states.
    assert!(env.ghostctl(&["hold", &b]).status.success());

    // A suffix of a queue name (its random end), a prefix and a suffix of a
    // patch id, each unambiguous.
    let show = |key: &str| env.ghostctl(&["show", "--json", key]);
    for (key, want) in [
        (&a[a.len() - 6..], &a),
        (&b[b.len() - 6..], &b),
        ("report-n", &a),
        ("south", &b),
    ] {
        let out = show(key);
        assert!(out.status.success(), "{key}: {}", stderr(&out));
        let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["entry"]["name"], json!(want), "{key}");
    }
    // Every verb takes the same rule: hold by a patch-id prefix.
    assert!(env.ghostctl(&["hold", "report-no"]).status.success());
    assert_eq!(env.state_of("default", &a), Some(QueueState::Held));
    assert!(env.ghostctl(&["release", "north"]).status.success());
    assert_eq!(env.state_of("default", &a), Some(QueueState::Pending));

    // Ambiguous: both candidates with their states, exit 2, nothing changed.
    let out = env.ghostctl(&["delete", "report", "--reason", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("matches 2 entries"), "{err}");
    for (name, state) in [(&a, "pending"), (&b, "held")] {
        let line = err
            .lines()
            .find(|l| l.contains(name.as_str()))
            .unwrap_or_else(|| panic!("{name} not listed: {err}"));
        assert!(line.contains(state), "{line}");
    }
    assert_eq!(env.state_of("default", &a), Some(QueueState::Pending));
    assert_eq!(env.state_of("default", &b), Some(QueueState::Held));
    // Unknown: exit 2.
    assert_eq!(show("zzzz-nothing").status.code(), Some(2));

    // The bridge resolves by the same rule.
    let bridge = env.spawn_bridge();
    let client = reqwest::blocking::Client::new();
    let get = |key: &str| {
        client
            .get(format!("{}/v1/patches/{key}", bridge.url))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send()
            .unwrap()
    };
    let r = get("south");
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(v["name"], json!(b));
    let r = get("report");
    assert_eq!(r.status().as_u16(), 409);
    let v: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(v["error"], "ambiguous");
    assert_eq!(v["candidates"].as_array().unwrap().len(), 2, "{v}");
}

#[test]
fn submit_of_a_trashed_patch_names_the_trash_and_the_restore_command() {
    let env = TestEnv::new("");
    let body =
        br#"{"id": "binned", "operations": [{"op": "write", "path": "a.txt", "content": "x"}]}"#;
    let patch = env.write_patch("p.json", body);
    let file = patch.to_str().unwrap();
    assert!(env.ghostctl(&["submit", file]).status.success());
    let name = env.list("default", QueueState::Pending)[0].clone();
    assert!(env
        .ghostctl(&["delete", "binned", "--reason", "not now"])
        .status
        .success());
    let out = env.ghostctl(&["submit", file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("in trash/"), "{text}");
    assert!(
        text.contains(&format!("`ghostctl restore {name}`")),
        "{text}"
    );
    // Nothing was written: the one entry is still in trash.
    assert!(env.list("default", QueueState::Pending).is_empty());
    assert_eq!(env.state_of("default", &name), Some(QueueState::Trash));
    let out = env.ghostctl(&["--json", "submit", file]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v[0]["state"], "trash", "{v}");
    // The command it names works.
    assert!(env.ghostctl(&["restore", &name]).status.success());
    assert_eq!(env.state_of("default", &name), Some(QueueState::Pending));
}

#[test]
fn logs_take_several_components_and_resolve_patch_like_every_verb() {
    let env = TestEnv::new("");
    let patch = env.write_patch(
        "p.json",
        br#"{"id": "logged-one", "operations": [{"op": "write", "path": "a.txt", "content": "x"}]}"#,
    );
    assert!(env
        .ghostctl(&["submit", patch.to_str().unwrap()])
        .status
        .success());
    let name = env.list("default", QueueState::Pending)[0].clone();
    env.drain();
    assert_eq!(env.state_of("default", &name), Some(QueueState::Done));

    let components = |args: &[&str]| -> std::collections::BTreeSet<String> {
        let out = env.ghostctl(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["component"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let both: std::collections::BTreeSet<String> =
        ["executor".to_string(), "ghostctl".to_string()].into();
    assert_eq!(
        components(&["--json", "logs", "--component", "executor,ghostctl"]),
        both
    );
    assert_eq!(
        components(&[
            "--json",
            "logs",
            "--component",
            "executor",
            "--component",
            "ghostctl"
        ]),
        both
    );

    // --patch by a queue-name suffix: the executor's claim line, which carries
    // only the queue name, and ghostctl's submit line, by patch id.
    let out = env.ghostctl(&["--json", "logs", "--patch", &name[name.len() - 6..]]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["event"] == "PATCH_CLAIMED"
            && l["queue_name"] == json!(name)
            && l.get("patch_id").is_none()),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["component"] == "ghostctl" && l["patch_id"] == "logged-one"),
        "{lines:?}"
    );
    let ts: Vec<&str> = lines.iter().map(|l| l["ts"].as_str().unwrap()).collect();
    let mut sorted = ts.clone();
    sorted.sort();
    assert_eq!(ts, sorted, "merged in time order");
    // An unknown id is an error, not an empty answer.
    let out = env.ghostctl(&["logs", "--patch", "no-such-patch"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("no-such-patch"), "{}", stderr(&out));
}
