//! Agents' patch formats end to end, through the real bridge and executor:
//! both public conformance suites (tests/fixtures/agent-formats/, see its
//! README), each case on a target of its own, and the golden cases of the
//! formats (CRLF, a block off by indentation, ambiguity, a transcript mixing
//! every format, a heredoc tool call, `git diff | ghostctl submit -`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ghost_core::queue::QueueState;
use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::harness::*;

type Files = BTreeMap<String, Vec<u8>>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent-formats")
}

fn post(b: &Bridge, query: &str, ctype: &str, body: impl Into<Vec<u8>>) -> (u16, Value) {
    let r = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .post(format!("{}/v1/patches{query}", b.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", ctype)
        .body(body.into())
        .send()
        .expect("request");
    let code = r.status().as_u16();
    let text = r.text().unwrap();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn files_in(dir: &Path) -> Files {
    snapshot(dir)
        .into_iter()
        .map(|(p, (b, _))| (p, b))
        .collect()
}

fn populate(tree: &Path, files: &Files) {
    std::fs::create_dir_all(tree).unwrap();
    for (p, b) in files {
        let to = tree.join(p);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, b).unwrap();
    }
}

/// Config with one target per name (trees in `workspaces/<name>`).
fn targets_toml(names: &[String]) -> String {
    names.iter().map(|n| format!("[targets.{n}]\n")).collect()
}

/// The queue entries (name) an answer reports as queued or already queued.
fn entries(answer: &Value) -> Vec<(String, String)> {
    ["queued", "duplicates"]
        .iter()
        .flat_map(|k| answer[k].as_array().cloned().unwrap_or_default())
        .map(|q| {
            (
                q["target"].as_str().unwrap().to_string(),
                q["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Why an entry failed (its reason record), or `None` if it did not.
fn failure(env: &TestEnv, target: &str, name: &str) -> Option<String> {
    (env.state_of(target, name) == Some(QueueState::Failed))
        .then(|| env.reason(target, QueueState::Failed, name).to_string())
}

struct Codex {
    name: String,
    patch: String,
    input: Files,
    expected: Files,
}

fn codex_cases() -> Vec<Codex> {
    let dir = fixtures().join("codex");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.iter()
        .map(|d| {
            let name = d.file_name().unwrap().to_string_lossy().into_owned();
            let input = files_in(&d.join("input"));
            let mut expected = files_in(&d.join("expected"));
            if name.starts_with("015_") {
                // All or nothing, by design (see the README).
                expected = input.clone();
            }
            Codex {
                patch: std::fs::read_to_string(d.join("patch.txt")).unwrap(),
                name,
                input,
                expected,
            }
        })
        .collect()
}

#[test]
fn codex_scenarios_as_an_operation_over_http_and_as_transcripts_in_the_inbox() {
    let cases = codex_cases();
    assert_eq!(cases.len(), 23);
    let op_t = |i: usize| format!("cxop{i:02}");
    let tr_t = |i: usize| format!("cxtr{i:02}");
    let names: Vec<String> = (0..cases.len()).flat_map(|i| [op_t(i), tr_t(i)]).collect();
    let mut env = TestEnv::new(&targets_toml(&names));
    for (i, c) in cases.iter().enumerate() {
        populate(&env.tree(&op_t(i)), &c.input);
        populate(&env.tree(&tr_t(i)), &c.input);
    }
    let b = env.spawn_bridge();
    let mut answers = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let doc =
            json!({"description": c.name, "operations": [{"op": "apply_patch", "patch": c.patch}]});
        let (code, a) = post(
            &b,
            &format!("?target={}", op_t(i)),
            "application/json",
            serde_json::to_vec(&doc).unwrap(),
        );
        assert!(code == 202 || code == 400, "{}: {code} {a}", c.name);
        answers.push((code, a));
        // As an agent's log shows the tool call, into the target's inbox.
        let transcript = format!(
            "I'll make the change.\n\n```bash\napply_patch <<'EOF'\n{}EOF\n```\n\nDone ({}).\n",
            c.patch, c.name
        );
        let inbox = env.layout().inbox().join(tr_t(i));
        ghost_core::fs::durable_write(&inbox.join("reply.md"), transcript.as_bytes(), 0o600)
            .unwrap();
    }
    let taken = || {
        ["inbox/.processed", "inbox/.rejected"]
            .iter()
            .map(|d| {
                std::fs::read_dir(env.root.join(d))
                    .map(|r| {
                        r.flatten()
                            .filter(|e| e.file_name().to_string_lossy().ends_with("-reply.md"))
                            .count()
                    })
                    .unwrap_or(0)
            })
            .sum::<usize>()
    };
    assert!(
        wait_until(Duration::from_secs(60), || taken() == cases.len()),
        "the inbox took {} of {} transcripts",
        taken(),
        cases.len()
    );
    env.drain();
    for (i, c) in cases.iter().enumerate() {
        let refused = c.input == c.expected;
        for t in [op_t(i), tr_t(i)] {
            assert_eq!(files_in(&env.tree(&t)), c.expected, "{} on {t}", c.name);
        }
        // A refused patch is refused at the door or by the executor, with a reason.
        let (code, a) = &answers[i];
        let failed: Vec<String> = entries(a)
            .iter()
            .filter_map(|(t, n)| failure(&env, t, n))
            .collect();
        assert_eq!(
            refused,
            *code == 400 || !failed.is_empty(),
            "{}: {code} {a} {failed:?}",
            c.name
        );
        if c.name.starts_with("015_") {
            assert!(failed[0].contains("missing.txt"), "{failed:?}");
        }
    }
    // The inbox filed the refused-at-the-door transcripts as rejected.
    let rejected = std::fs::read_dir(env.layout().inbox_rejected())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with("-reply.md.error.json")
        })
        .count();
    let at_door = answers.iter().filter(|(c, _)| *c == 400).count();
    assert_eq!(rejected, at_door);
}

#[test]
fn aider_replies_as_transcripts_over_http() {
    let cases: Vec<Value> =
        serde_json::from_slice(&std::fs::read(fixtures().join("aider/cases.json")).unwrap())
            .unwrap();
    assert_eq!(cases.len(), 20);
    let t = |i: usize| format!("aider{i:02}");
    let names: Vec<String> = (0..cases.len()).map(t).collect();
    let mut env = TestEnv::new(&targets_toml(&names));
    let to_files = |v: &Value| -> Files {
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec()))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (i, c) in cases.iter().enumerate() {
        populate(&env.tree(&t(i)), &to_files(&c["original_files"]));
    }
    let b = env.spawn_bridge();
    let answers: Vec<(u16, Value)> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            post(
                &b,
                &format!("?target={}", t(i)),
                "text/markdown",
                c["llm_output"].as_str().unwrap(),
            )
        })
        .collect();
    env.drain();
    for (i, c) in cases.iter().enumerate() {
        let name = c["name"].as_str().unwrap();
        let original = to_files(&c["original_files"]);
        let (code, a) = &answers[i];
        let failed: Vec<String> = entries(a)
            .iter()
            .filter_map(|(t, n)| failure(&env, t, n))
            .collect();
        let files = files_in(&env.tree(&t(i)));
        if c.get("ghostbridge_expect").is_some() {
            assert_eq!(files, original, "{name}: nothing changes");
            assert!(
                failed.len() == 1
                    && failed[0].contains("file.txt:1")
                    && failed[0].contains("file.txt:3"),
                "{name}: both places named: {code} {a} {failed:?}"
            );
        } else if c["expect_error"] == json!(true) {
            assert_eq!(files, original, "{name}: nothing changes");
            assert!(*code == 400 || !failed.is_empty(), "{name}: {code} {a}");
        } else {
            assert!(
                failed.is_empty() && *code < 300,
                "{name}: {code} {a} {failed:?}"
            );
            assert_eq!(files, to_files(&c["expected_files"]), "{name}");
        }
    }
}

/// The golden cases the formats share, on one root.
#[test]
fn golden_cases_of_the_agent_formats() {
    let mut env = TestEnv::new("");
    let tree = env.tree("default");
    populate(
        &tree,
        &Files::from([
            ("crlf.txt".into(), b"one\r\ntwo\r\nthree\r\n".to_vec()),
            ("tail.txt".into(), b"a\nb".to_vec()),
            ("twice.txt".into(), b"x = 1\ny = 2\nx = 1\n".to_vec()),
            (
                "indent.py".into(),
                b"class A:\n    def f(self):\n        return 1\n".to_vec(),
            ),
            ("keep.txt".into(), b"keep\n".to_vec()),
        ]),
    );
    let b = env.spawn_bridge();
    let apply =
        |patch: &str| -> (u16, Value) { post(&b, "", "text/x-apply-patch", patch.to_string()) };
    // CRLF kept, a missing final newline kept.
    let (code, crlf) = apply(
        "*** Begin Patch\n*** Update File: crlf.txt\n@@\n one\n-two\n+TWO\n*** Update File: tail.txt\n@@\n-b\n+B\n*** End Patch\n",
    );
    assert_eq!(code, 202, "{crlf}");
    // A block off by indentation only: applied and reported.
    let (code, indent) = post(
        &b,
        "",
        "text/plain",
        "indent.py\n```python\n<<<<<<< SEARCH\ndef f(self):\n    return 1\n=======\ndef f(self):\n    return 2\n>>>>>>> REPLACE\n```\n",
    );
    assert_eq!(code, 202, "{indent}");
    // A block that matches twice: refused with both places, nothing changed.
    let (code, twice) = post(
        &b,
        "",
        "text/markdown",
        "twice.txt\n<<<<<<< SEARCH\nx = 1\n=======\nx = 3\n>>>>>>> REPLACE\n",
    );
    assert_eq!(code, 202, "{twice}");
    // A hunk whose context is missing, after a good file: nothing changes.
    let (code, missing) = apply(
        "*** Begin Patch\n*** Add File: new.txt\n+new\n*** Update File: keep.txt\n@@\n-not there\n+x\n*** End Patch\n",
    );
    assert_eq!(code, 202, "{missing}");
    // An empty patch: refused at the door.
    let (code, empty) = apply("*** Begin Patch\n*** End Patch\n");
    assert_eq!(code, 400, "{empty}");
    assert!(empty.to_string().contains("no file section"), "{empty}");
    // A transcript mixing the formats with prose and JSON, as an agent's log.
    let mixed = "The agent said:\n\n```json\n{\"operations\": [{\"op\": \"write\", \"path\": \"json.txt\", \"content\": \"j\\n\"}]}\n```\n\
                 then ran\n\n$ apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: env.txt\n+e\n*** End Patch\nEOF\n\n\
                 and replied:\n\nsr.txt\n```\n<<<<<<< SEARCH\n=======\ns\n>>>>>>> REPLACE\n```\n\n\
                 and a diff:\n\n```diff\n--- /dev/null\n+++ b/d.txt\n@@ -0,0 +1 @@\n+d\n```\n";
    let (code, m) = post(&b, "", "text/markdown", mixed);
    assert_eq!(code, 202, "{m}");
    assert_eq!(m["queued"].as_array().unwrap().len(), 4, "{m}");
    env.drain();

    let files = files_in(&tree);
    assert_eq!(files["crlf.txt"], b"one\r\nTWO\r\nthree\r\n");
    assert_eq!(files["tail.txt"], b"a\nB");
    assert_eq!(
        files["indent.py"],
        b"class A:\n    def f(self):\n        return 2\n"
    );
    assert_eq!(files["twice.txt"], b"x = 1\ny = 2\nx = 1\n");
    assert_eq!(files["keep.txt"], b"keep\n");
    assert!(!files.contains_key("new.txt"));
    for f in ["json.txt", "env.txt", "sr.txt", "d.txt"] {
        assert!(files.contains_key(f), "{f} missing: {:?}", files.keys());
    }
    let (t, n) = &entries(&indent)[0];
    let summary = env.summary(t, n).to_string();
    assert!(summary.contains("ignoring indentation"), "{summary}");
    let (t, n) = &entries(&twice)[0];
    let why = failure(&env, t, n).expect("refused");
    assert!(
        why.contains("twice.txt:1") && why.contains("twice.txt:3"),
        "{why}"
    );
    let (t, n) = &entries(&missing)[0];
    let why = failure(&env, t, n).expect("refused");
    assert!(
        why.contains("keep.txt") && why.contains("does not match"),
        "{why}"
    );
}

/// `git diff | ghostctl submit --target web -`, and a per-target inbox.
#[test]
fn a_diff_on_stdin_and_a_reply_in_a_targets_inbox() {
    let mut env = TestEnv::new("[targets.web]\n");
    populate(
        &env.tree("web"),
        &Files::from([("a.txt".into(), b"1\n2\n3\n".to_vec())]),
    );
    // Hunk line numbers off by two, as assistants write them.
    let diff = "diff --git a/a.txt b/a.txt\nindex 0000000..1111111 100644\n--- a/a.txt\n+++ b/a.txt\n@@ -4,2 +4,2 @@\n 2\n-3\n+three\n";
    let mut child = env
        .cmd(GHOSTCTL)
        .args(["submit", "--target", "web", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(diff.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.list("web", QueueState::Pending).len(), 1);
    assert!(env.list("default", QueueState::Pending).is_empty());
    // The same reply saved into inbox/web/: the same patch, already queued.
    let _b = env.spawn_bridge();
    ghost_core::fs::durable_write(
        &env.layout().inbox().join("web").join("reply.diff"),
        diff.as_bytes(),
        0o600,
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(30), || {
        std::fs::read_dir(env.layout().inbox_processed())
            .map(|r| {
                r.flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .ends_with("reply.diff.result.json")
                })
            })
            .unwrap_or(false)
    }));
    assert_eq!(env.list("web", QueueState::Pending).len(), 1);
    env.drain();
    assert_eq!(
        std::fs::read_to_string(env.tree("web").join("a.txt")).unwrap(),
        "1\n2\nthree\n"
    );
    let done = env.list("web", QueueState::Done);
    let summary = env.summary("web", &done[0]).to_string();
    assert!(
        summary.contains("2 lines from the stated line 4"),
        "{summary}"
    );
}

/// The README's examples of the agents' formats apply on the embedded
/// defaults, through `ghostctl submit`.
#[test]
fn the_examples_of_the_agent_formats_apply() {
    let env = TestEnv::new("");
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for f in ["apply-patch.txt", "search-replace.md", "unified.diff"] {
        let out = env.ghostctl(&["submit", ex.join(f).to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{f}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    env.drain();
    let tree = env.tree("default");
    let read = |p: &str| std::fs::read_to_string(tree.join(p)).unwrap();
    assert_eq!(
        read("agent/hello.txt"),
        "Hello from an apply_patch envelope.\n(a later section sees what an earlier one did)\nIt is applied all or nothing, like every patch.\n"
    );
    assert_eq!(read("agent/aider.txt"), "one\n2\nthree\n");
    assert_eq!(
        read("agent/diff.txt"),
        "created by a diff\nin a fenced block\n"
    );
    assert_eq!(env.list("default", QueueState::Done).len(), 3);
}
