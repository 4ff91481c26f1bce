//! ghostctl's commands against a temporary data root, called in-process.

// Tests: fixtures are set up and damaged directly, not durably.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};

use clap::Parser;
use ghost_core::cli::CommonArgs;
use ghost_core::config::TargetConfig;
use ghost_core::queue::{AttemptRecord, EntryRecord, Queue, QueueState, Reason};
use ghost_core::summary::{self, ExecutorInfo, Summary, SummaryFiles, SummaryStatus};
use ghost_core::{Config, Layout};

use ghostctl::actions::{act, Action};
use ghostctl::entries::{find, list, ListFilter};
use ghostctl::logs::{logs, LogsOptions};
use ghostctl::submit::submit;
use ghostctl::CtlError;

struct Env {
    _dir: tempfile::TempDir,
    config: Config,
}

impl Env {
    fn new() -> Env {
        Env::with(|_| {})
    }

    fn with(f: impl FnOnce(&mut Config)) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            root: dir.path().join("root"),
            ..Config::default()
        };
        f(&mut config);
        Layout::new(&config.root)
            .create(config.targets.keys().map(String::as_str))
            .unwrap();
        Env { _dir: dir, config }
    }

    fn layout(&self) -> Layout {
        Layout::new(&self.config.root)
    }

    fn queue(&self) -> Queue {
        self.layout().queue("default")
    }

    /// A file outside the root holding `text`.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self._dir.path().join(name);
        ghost_core::fs::durable_write(&p, text.as_bytes(), 0o600).unwrap();
        p
    }

    /// An entry in `state` with `record` beside it.
    fn entry(&self, state: QueueState, body: &str, record: &EntryRecord) -> String {
        let q = self.queue();
        let name = q.enqueue(body.as_bytes()).unwrap();
        if state == QueueState::Pending {
            q.write_record(state, &name, record).unwrap();
        } else {
            q.transition(&name, QueueState::Pending, state, record)
                .unwrap();
        }
        name
    }

    fn submit(&self, target: Option<&str>, files: &[PathBuf]) -> Vec<ghostctl::submit::SubmitItem> {
        submit(&self.config, target, files, &mut std::io::empty()).unwrap()
    }

    /// Run a command line the way the binary does; (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (u8, String, String) {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            _common: CommonArgs,
            #[command(flatten)]
            ctl: ghostctl::CtlArgs,
        }
        let cli =
            Cli::try_parse_from(std::iter::once("ghostctl").chain(args.iter().copied())).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = ghostctl::execute(&self.config, &cli.ctl, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }
}

const VALID: &str =
    r#"{"id": "p-one", "operations": [{"op": "write", "path": "a.txt", "content": "a\n"}]}"#;
const VALID2: &str =
    r#"{"id": "p-two", "target": "default", "operations": [{"op": "delete", "path": "b.txt"}]}"#;
const INVALID: &str =
    r#"{"id": "p-bad", "operations": [{"op": "write", "path": "../escape", "content": 1}]}"#;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/legacy")
        .join(name)
}

fn usage(e: CtlError) -> String {
    match e {
        CtlError::Usage(m) => m,
        other => panic!("expected a usage error, got {other:?}"),
    }
}

#[test]
fn submit_enqueues_valid_files_byte_identical_and_refuses_invalid_ones() {
    let env = Env::new();
    let files = [
        env.file("one.json", VALID),
        env.file("bad.json", INVALID),
        env.file("two.json", VALID2),
    ];
    let items = env.submit(None, &files);
    assert_eq!(items.len(), 3);
    assert!(items[0].ok && !items[1].ok && items[2].ok, "{items:?}");
    assert_eq!(items[0].patch_id.as_deref(), Some("p-one"));
    assert_eq!(items[2].target.as_deref(), Some("default"));
    // Every problem of the invalid file is reported, with its field.
    let fields: Vec<&str> = items[1].errors.iter().map(|e| e.field.as_str()).collect();
    assert!(fields.iter().any(|f| f.contains("path")), "{fields:?}");
    assert!(fields.iter().any(|f| f.contains("content")), "{fields:?}");

    let q = env.queue();
    let pending = q.list(QueueState::Pending).unwrap();
    assert_eq!(
        pending,
        vec![
            items[0].queue_name.clone().unwrap(),
            items[2].queue_name.clone().unwrap()
        ]
    );
    assert_eq!(
        std::fs::read(q.entry_path(QueueState::Pending, &pending[0])).unwrap(),
        VALID.as_bytes()
    );
    assert_eq!(
        std::fs::read(q.entry_path(QueueState::Pending, &pending[1])).unwrap(),
        VALID2.as_bytes()
    );
    assert_eq!(
        q.read_record(QueueState::Pending, &pending[0])
            .unwrap()
            .patch_id
            .as_deref(),
        Some("p-one")
    );
    // Nothing else in the queue: no trace of the invalid file, no temp files.
    assert_eq!(std::fs::read_dir(q.tmp_dir()).unwrap().count(), 0);

    // Through the command line: one line per enqueued file, errors on stderr, exit 1.
    let (code, out, err) = env.run(&[
        "submit",
        files[0].to_str().unwrap(),
        files[1].to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    // The same file again: already queued above, so reported with a fifth column.
    let line: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(line.len(), 5, "{out}");
    assert_eq!(line[4], "already queued: nothing written");
    assert_eq!(
        (line[0], line[2], line[3]),
        (files[0].to_str().unwrap(), "p-one", "default")
    );
    assert!(err.contains("bad.json: operations[0].path"), "{err}");
    let (code, out, _) = env.run(&["submit", files[0].to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn submit_refuses_files_over_the_size_limit_and_unreadable_ones() {
    let env = Env::with(|c| c.bridge.max_patch_bytes = 40);
    let items = env.submit(
        None,
        &[
            env.file("big.json", VALID),
            env.file("small.json", "{}"),
            env.file_missing(),
        ],
    );
    assert!(!items[0].ok);
    assert!(
        items[0].errors[0].reason.contains("max_patch_bytes"),
        "{items:?}"
    );
    assert!(!items[1].ok, "{{}} is not a patch");
    assert!(!items[2].ok);
    assert_eq!(items[2].errors[0].field, "(file)");
    assert!(env.queue().list(QueueState::Pending).unwrap().is_empty());
}

trait Missing {
    fn file_missing(&self) -> PathBuf;
}
impl Missing for Env {
    fn file_missing(&self) -> PathBuf {
        self._dir.path().join("does-not-exist.json")
    }
}

#[test]
fn submit_target_override_resolves_aliases_and_refuses_conflicts() {
    let env = Env::with(|c| {
        c.targets.get_mut("default").unwrap().aliases = vec!["DEV".into()];
        c.targets.insert("web".into(), TargetConfig::default());
    });
    let f = env.file("one.json", VALID);
    let items = env.submit(Some("dev"), std::slice::from_ref(&f));
    assert!(items[0].ok, "{items:?}");
    assert_eq!(items[0].target.as_deref(), Some("default"));
    let items = env.submit(Some("web"), &[env.file("two.json", VALID2)]);
    assert!(!items[0].ok);
    assert_eq!(items[0].errors[0].field, "target");
    // Ids are unique across targets, as in the bridge: the same patch is
    // already queued (for default), whatever --target says now.
    let items = env.submit(Some("web"), &[f]);
    assert!(items[0].ok && items[0].duplicate, "{items:?}");
    assert_eq!(items[0].target.as_deref(), Some("default"));
    let fresh = env.file(
        "three.json",
        r#"{"id": "p-web", "operations": [{"op": "write", "path": "w.txt", "content": "w\n"}]}"#,
    );
    let items = env.submit(Some("web"), &[fresh]);
    assert!(items[0].ok && !items[0].duplicate, "{items:?}");
    assert_eq!(
        env.layout()
            .queue("web")
            .list(QueueState::Pending)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn submit_legacy_fixtures() {
    // Embedded defaults: no legacy_root, no shell.
    let env = Env::new();
    let names = [
        "dummy_patch.json",
        "patch-router-test-patch.json",
        "test-patch-simple.json",
        "test-patch.json",
        "test-patch-gpt-interface.json",
        "PATCH-SCHEMA.json",
    ];
    let files: Vec<PathBuf> = names.iter().map(|n| fixture(n)).collect();
    let ok: Vec<bool> = env.submit(None, &files).iter().map(|i| i.ok).collect();
    assert_eq!(ok, [true, true, false, false, false, false]);
    let q = env.queue();
    let pending = q.list(QueueState::Pending).unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(
        std::fs::read(q.entry_path(QueueState::Pending, &pending[0])).unwrap(),
        std::fs::read(&files[0]).unwrap()
    );

    // A target that declares the old prefix, the old names and shell.
    let env = Env::with(|c| {
        let t = c.targets.get_mut("default").unwrap();
        t.aliases = vec!["DEV".into(), "ghost-system".into()];
        t.legacy_root = Some("/tmp".into());
        t.allow_shell = true;
        t.commands = ghost_core::patch::CommandPolicy::Any;
    });
    let items = env.submit(None, &files);
    let ok: Vec<bool> = items.iter().map(|i| i.ok).collect();
    assert_eq!(ok, [true, true, true, true, true, false], "{items:?}");
    assert_eq!(
        items[4].patch_id.as_deref(),
        Some("test-patch-gpt-interface")
    );
    assert_eq!(items[1].patch_id.as_deref(), Some("test-patch-v347"));
    assert!(
        items[5].errors[0].reason.contains("JSON Schema"),
        "{items:?}"
    );
}

#[test]
fn ls_filters_by_state_and_target() {
    let env = Env::with(|c| {
        c.targets.insert("web".into(), TargetConfig::default());
    });
    let rec = EntryRecord::default();
    let pending = env.entry(QueueState::Pending, VALID, &rec);
    let stuck = env.entry(
        QueueState::Stuck,
        r#"{"blockId": "legacy-id", "mutations": []}"#,
        &rec,
    );
    let done = env.entry(QueueState::Done, "not json", &rec);
    let web = env
        .layout()
        .queue("web")
        .enqueue(VALID2.as_bytes())
        .unwrap();

    let all = list(&env.config, &ListFilter::default()).unwrap();
    let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [pending.as_str(), stuck.as_str(), web.as_str()],
        "done is not listed by default"
    );
    assert_eq!(
        all[0].patch_id.as_deref(),
        Some("p-one"),
        "id from the entry's JSON"
    );
    assert_eq!(
        all[1].patch_id.as_deref(),
        Some("legacy-id"),
        "blockId counts as an id"
    );

    let only = |states: Vec<QueueState>, target: Option<&str>| {
        list(
            &env.config,
            &ListFilter {
                target: target.map(str::to_string),
                states: Some(states),
            },
        )
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect::<Vec<_>>()
    };
    assert_eq!(only(vec![QueueState::Stuck], None), [stuck.as_str()]);
    assert_eq!(only(vec![QueueState::Done], None), [done.as_str()]);
    assert_eq!(only(QueueState::ALL.to_vec(), Some("web")), [web.as_str()]);
    assert!(matches!(
        list(
            &env.config,
            &ListFilter {
                target: Some("nope".into()),
                states: None
            }
        ),
        Err(CtlError::Usage(_))
    ));

    let (code, out, _) = env.run(&["ls", "--state", "all"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("TARGET"), "{out}");
    assert!(out.contains(&done) && out.contains(&stuck), "{out}");
    let done_line = out.lines().find(|l| l.contains(&done)).unwrap();
    assert!(done_line.contains(" - "), "no id shows as -: {done_line}");
    let (code, out, _) = env.run(&["ls", "--state", ".stuck", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["state"], "stuck");
    assert_eq!(v[0]["name"], stuck.as_str());
    let (code, _, err) = env.run(&["ls", "--target", "nope"]);
    assert_eq!(code, 2, "{err}");
}

fn sample_summary(name: &str, id: &str) -> Summary {
    Summary {
        id: id.into(),
        name: name.into(),
        target: "default".into(),
        status: SummaryStatus::Applied,
        attempts: 1,
        description: Some("demo".into()),
        source_format: Some("native".into()),
        started_at: "2026-01-01T00:00:00.000Z".into(),
        finished_at: "2026-01-01T00:00:01.000Z".into(),
        duration_ms: 1000,
        operations: vec![],
        checks: vec![],
        error: None,
        rollback: None,
        git: None,
        executor: ExecutorInfo {
            pid: 1,
            host: "h".into(),
            version: "0".into(),
        },
        history: vec![],
    }
}

#[test]
fn show_by_queue_name_and_patch_id() {
    let env = Env::new();
    let rec = EntryRecord {
        patch_id: Some("p-one".into()),
        attempts: 1,
        ..EntryRecord::default()
    };
    let name = env.entry(QueueState::Done, VALID, &rec);
    summary::write(
        &env.layout().summaries("default"),
        &sample_summary(&name, "p-one"),
    )
    .unwrap();
    let other = env.entry(QueueState::Pending, VALID2, &EntryRecord::default());

    let r = ghostctl::show::show(&env.config, &name).unwrap();
    assert_eq!(r.entry.state, QueueState::Done);
    assert_eq!(r.summary.as_ref().unwrap().id, "p-one");
    assert!(r.markdown.as_ref().unwrap().contains("# Patch `p-one`"));
    let r = ghostctl::show::show(&env.config, "p-one").unwrap();
    assert_eq!(r.entry.name, name);
    let r = ghostctl::show::show(&env.config, "p-two").unwrap();
    assert_eq!(r.entry.name, other);
    assert!(r.summary.is_none());
    // A unique prefix of the queue name works too.
    assert_eq!(find(&env.config, &name[..30]).unwrap().name, name);

    let (code, out, _) = env.run(&["show", "p-one"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("state       done") && out.contains("# Patch `p-one`"),
        "{out}"
    );
    let (code, out, _) = env.run(&["show", "p-one", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["summary"]["id"], "p-one");
    assert_eq!(v["entry"]["name"], name.as_str());
    let (code, out, _) = env.run(&["show", "p-two"]);
    assert_eq!(code, 0);
    assert!(out.contains("summary     none yet"), "{out}");

    let (code, _, err) = env.run(&["show", "no-such-thing"]);
    assert_eq!(code, 2);
    assert!(err.contains("no queue entry"), "{err}");

    // The same patch submitted again: ambiguous by patch id, listed.
    let again = env.entry(QueueState::Pending, VALID, &EntryRecord::default());
    let msg = usage(find(&env.config, "p-one").unwrap_err());
    assert!(msg.contains(&name) && msg.contains(&again), "{msg}");
    let (code, _, err) = env.run(&["show", "p-one"]);
    assert_eq!(code, 2);
    assert!(err.contains("matches 2 entries"), "{err}");
}

fn attempt(n: u32) -> AttemptRecord {
    AttemptRecord {
        attempt: n,
        started_at: "2026-01-01T00:00:00.000Z".into(),
        ended_at: "2026-01-01T00:00:01.000Z".into(),
        outcome: "transient_failure".into(),
        error_kind: Some("check_timeout".into()),
        message: Some("slow".into()),
    }
}

#[test]
fn retry_from_stuck_resets_attempts_and_keeps_history() {
    let env = Env::new();
    let rec = EntryRecord {
        patch_id: Some("p-one".into()),
        attempts: 3,
        history: vec![attempt(1), attempt(2), attempt(3)],
        reason: Some(Reason {
            kind: "stuck_timeout".into(),
            message: "ran too long".into(),
            at: "2026-01-01T00:00:01.000Z".into(),
            hint: None,
        }),
        ..EntryRecord::default()
    };
    let name = env.entry(QueueState::Stuck, VALID, &rec);
    let q = env.queue();
    // An undo journal kept beside the stuck entry travels with it.
    ghost_core::fs::durable_write(
        &q.sidecar_path(QueueState::Stuck, &name, "journal"),
        b"{}",
        0o600,
    )
    .unwrap();

    let done = act(&env.config, Action::Retry, "p-one", None).unwrap();
    assert_eq!(
        (done.from, done.to),
        (QueueState::Stuck, QueueState::Pending)
    );
    assert_eq!(q.find(&name), Some(QueueState::Pending));
    let r = q.read_record(QueueState::Pending, &name).unwrap();
    assert_eq!(r.attempts, 0);
    assert_eq!(r.history, rec.history);
    assert!(r.reason.is_none() && r.due_at.is_none() && r.claim.is_none());
    assert_eq!(r.operator.len(), 1);
    assert_eq!(r.operator[0].action, "retry");
    assert_eq!(r.operator[0].from, QueueState::Stuck);
    assert!(r.operator[0].by.contains("uid"));
    assert!(q
        .sidecar_path(QueueState::Pending, &name, "journal")
        .exists());
    assert!(!q.record_path(QueueState::Stuck, &name).exists());
    assert_eq!(
        std::fs::read(q.entry_path(QueueState::Pending, &name)).unwrap(),
        VALID.as_bytes()
    );

    // Pending is not a state retry works on: exit 2, naming the state.
    let msg = usage(act(&env.config, Action::Retry, &name, None).unwrap_err());
    assert!(msg.contains("pending/") && msg.contains(".stuck/"), "{msg}");
    let (code, _, err) = env.run(&["retry", &name]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn retry_from_failed_and_deferred() {
    let env = Env::new();
    let failed = env.entry(
        QueueState::Failed,
        VALID,
        &EntryRecord {
            attempts: 1,
            ..Default::default()
        },
    );
    let deferred = env.entry(
        QueueState::Deferred,
        VALID2,
        &EntryRecord {
            attempts: 1,
            due_at: Some("2099-01-01T00:00:00.000Z".into()),
            ..Default::default()
        },
    );
    let (code, out, _) = env.run(&["retry", &failed]);
    assert_eq!(code, 0);
    assert!(out.contains("failed/ -> pending/"), "{out}");
    let (code, out, _) = env.run(&["--json", "retry", &deferred]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["from"], "deferred");
    let r = env
        .queue()
        .read_record(QueueState::Pending, &deferred)
        .unwrap();
    assert!(r.due_at.is_none(), "due now");
}

#[test]
fn hold_and_release_round_trip() {
    let env = Env::new();
    let name = env.entry(QueueState::Pending, VALID, &EntryRecord::default());
    let q = env.queue();
    act(&env.config, Action::Hold, &name, Some("wait for review")).unwrap();
    assert_eq!(q.find(&name), Some(QueueState::Held));
    let r = q.read_record(QueueState::Held, &name).unwrap();
    assert_eq!(r.operator[0].action, "hold");
    assert_eq!(r.operator[0].reason.as_deref(), Some("wait for review"));
    assert_eq!(r.patch_id.as_deref(), Some("p-one"));
    assert!(
        usage(act(&env.config, Action::Hold, &name, None).unwrap_err()).contains("held already")
    );

    let (code, out, _) = env.run(&["release", "p-one"]);
    assert_eq!(code, 0);
    assert!(out.contains("held/ -> pending/"), "{out}");
    assert_eq!(q.find(&name), Some(QueueState::Pending));
    let r = q.read_record(QueueState::Pending, &name).unwrap();
    let actions: Vec<(&str, QueueState)> = r
        .operator
        .iter()
        .map(|a| (a.action.as_str(), a.from))
        .collect();
    assert_eq!(
        actions,
        [("hold", QueueState::Pending), ("release", QueueState::Held)]
    );
    assert!(usage(act(&env.config, Action::Release, &name, None).unwrap_err()).contains("held/"));
    assert_eq!(
        std::fs::read(q.entry_path(QueueState::Pending, &name)).unwrap(),
        VALID.as_bytes()
    );
    // No record left behind in held/.
    assert_eq!(
        std::fs::read_dir(q.dir(QueueState::Held)).unwrap().count(),
        0
    );
}

#[test]
fn delete_moves_to_trash_with_the_reason_and_keeps_summaries() {
    let env = Env::new();
    let q = env.queue();
    let name = env.entry(
        QueueState::Failed,
        VALID,
        &EntryRecord {
            attempts: 3,
            ..Default::default()
        },
    );
    let dir = env.layout().summaries("default");
    summary::write(&dir, &sample_summary(&name, "p-one")).unwrap();

    // No reason: refused, nothing moves.
    assert!(usage(act(&env.config, Action::Delete, &name, None).unwrap_err()).contains("--reason"));
    assert!(
        usage(act(&env.config, Action::Delete, &name, Some("  ")).unwrap_err())
            .contains("--reason")
    );
    let (code, _, err) = env.run(&["delete", &name]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(q.find(&name), Some(QueueState::Failed));

    let (code, out, _) = env.run(&["delete", &name, "--reason", "superseded by p-two"]);
    assert_eq!(code, 0);
    assert!(out.contains("failed/ -> trash/"), "{out}");
    assert_eq!(
        std::fs::read(q.entry_path(QueueState::Trash, &name)).unwrap(),
        VALID.as_bytes()
    );
    let r = q.read_record(QueueState::Trash, &name).unwrap();
    assert_eq!(r.attempts, 3);
    let a = r.operator.last().unwrap();
    assert_eq!(a.action, "delete");
    assert_eq!(a.reason.as_deref(), Some("superseded by p-two"));
    assert_eq!(a.from, QueueState::Failed);
    let f = SummaryFiles::new(&dir, &name);
    assert!(f.json.exists() && f.md.exists() && f.backup_json.exists());

    // Already in trash; and an active entry is never deleted.
    assert!(
        usage(act(&env.config, Action::Delete, &name, Some("x")).unwrap_err()).contains("trash/")
    );
    let active = env.entry(QueueState::Active, VALID2, &EntryRecord::default());
    let msg = usage(act(&env.config, Action::Delete, &active, Some("x")).unwrap_err());
    assert!(msg.contains("being applied right now"), "{msg}");
    assert_eq!(q.find(&active), Some(QueueState::Active));
}

#[test]
fn verify_repairs_and_reports_unrepairable() {
    let env = Env::new();
    let dir = env.layout().summaries("default");
    summary::write(&dir, &sample_summary("n-good", "a")).unwrap();
    summary::write(&dir, &sample_summary("n-damaged", "b")).unwrap();
    let damaged = SummaryFiles::new(&dir, "n-damaged");
    let good_json = std::fs::read(&damaged.json).unwrap();
    ghost_core::fs::durable_write(&damaged.json, &good_json[..20], 0o600).unwrap();
    std::fs::remove_file(&damaged.backup_md).unwrap();

    let r = ghostctl::verify::verify(&env.config);
    assert_eq!(
        (r.total, r.ok, r.repaired, r.unrepairable),
        (2, 1, 1, 0),
        "{r:?}"
    );
    assert!(!r.failed());
    assert_eq!(std::fs::read(&damaged.json).unwrap(), good_json);
    assert!(damaged.backup_md.exists());
    let (code, out, _) = env.run(&["verify"]);
    assert_eq!(code, 0);
    assert!(
        out.ends_with("2 summaries: 2 ok, 0 repaired, 0 unrepairable\n"),
        "{out}"
    );

    summary::write(&dir, &sample_summary("n-lost", "c")).unwrap();
    let lost = SummaryFiles::new(&dir, "n-lost");
    ghost_core::fs::durable_write(&lost.json, b"{", 0o600).unwrap();
    ghost_core::fs::durable_write(&lost.backup_json, b"", 0o600).unwrap();
    let (code, out, _) = env.run(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("UNREPAIRABLE  default/n-lost"), "{out}");
    assert!(
        out.contains("3 summaries: 2 ok, 0 repaired, 1 unrepairable"),
        "{out}"
    );
    let (code, out, _) = env.run(&["verify", "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["unrepairable"], 1);
}

#[test]
fn status_counts_and_heartbeats() {
    let env = Env::new();
    env.entry(QueueState::Pending, VALID, &EntryRecord::default());
    env.entry(QueueState::Stuck, VALID, &EntryRecord::default());
    env.entry(QueueState::Trash, VALID, &EntryRecord::default());
    let s = ghostctl::status::status(&env.config).unwrap();
    assert_eq!(s.targets[0].counts["pending"], 1);
    assert_eq!(s.targets[0].counts["trash"], 1);
    assert_eq!(s.stuck, 1);
    assert_eq!(s.heartbeats[0].component, "executor");
    assert_eq!(s.heartbeats[0].state, "absent");

    let mut w = ghost_core::heartbeat::HeartbeatWriter::new(
        &env.layout(),
        "executor",
        std::time::Duration::ZERO,
    );
    w.beat("running", serde_json::json!({})).unwrap();
    let mut m = ghost_core::heartbeat::HeartbeatWriter::new(
        &env.layout(),
        "monitor",
        std::time::Duration::ZERO,
    );
    m.beat("running", serde_json::json!({})).unwrap();
    let s = ghostctl::status::status(&env.config).unwrap();
    let hb: Vec<(&str, &str)> = s
        .heartbeats
        .iter()
        .map(|h| (h.component.as_str(), h.state.as_str()))
        .collect();
    assert_eq!(hb, [("executor", "ok"), ("monitor", "ok")]);

    // A fresh heartbeat whose process is gone (SIGKILLed) is not running.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.layout().heartbeat("monitor")).unwrap()).unwrap();
    v["pid"] = dead_pid.into();
    ghost_core::fs::durable_write(
        &env.layout().heartbeat("monitor"),
        v.to_string().as_bytes(),
        0o600,
    )
    .unwrap();
    let s = ghostctl::status::status(&env.config).unwrap();
    assert_eq!(s.heartbeats[1].state, "gone", "{:?}", s.heartbeats[1]);
    let (_, out, _) = env.run(&["status"]);
    assert!(out.contains("GONE"), "{out}");

    let mut config = env.config.clone();
    config.heartbeat.stale_after = std::time::Duration::from_millis(1);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        ghostctl::status::status(&config).unwrap().heartbeats[0].state,
        "stale"
    );

    let (code, out, _) = env.run(&["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("needs attention: 1 stuck, 0 failed"), "{out}");
    let (code, out, _) = env.run(&["status", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["targets"][0]["counts"]["stuck"], 1);
}

#[test]
fn alerts_silence_and_ack_through_files() {
    let env = Env::new();
    let (code, out, _) = env.run(&["alerts"]);
    assert_eq!(code, 0);
    assert!(out.contains("ghost-monitor has not run"), "{out}");
    for (args, why) in [
        (
            vec!["silence", "fp", "--for", "soon", "--reason", "r"],
            "not a duration",
        ),
        (
            vec!["silence", "fp", "--for", "0s", "--reason", "r"],
            "longer than zero",
        ),
        (
            vec!["silence", "fp", "--for", "5m", "--reason", " "],
            "say why",
        ),
        (vec!["ack", "nothing:*"], "no firing alert"),
    ] {
        let (code, _, err) = env.run(&args);
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains(why), "{err}");
    }
    let (code, out, _) = env.run(&[
        "silence",
        "patch_stuck:*",
        "--for",
        "2h",
        "--reason",
        "maintenance",
    ]);
    assert_eq!(code, 0, "{out}");
    let dir = env.config.root.join("alerts/requests");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(files[0].path()).unwrap()).unwrap();
    assert_eq!(v["action"], "silence");
    assert_eq!(v["matcher"], "patch_stuck:*");
    assert_eq!(v["for"], "2h");
}

#[test]
fn pause_and_resume_through_the_cli() {
    let env = Env::new();
    let (code, out, _) = env.run(&["resume", "--force"]);
    assert_eq!((code, out.as_str()), (0, "not paused\n"));
    let (code, _, err) = env.run(&["pause", "--reason", " "]);
    assert_eq!(code, 2, "{err}");
    let (code, out, _) = env.run(&["pause", "--reason", "disk swap"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("intake paused"), "{out}");
    let (code, _, err) = env.run(&["resume"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("disk swap") && err.contains("--force"),
        "{err}"
    );
    let (code, out, _) = env.run(&["resume", "--force"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("resumed; the pause record is kept in"),
        "{out}"
    );
}

/// A `state/watchdog.json` as a running watchdog (this process) writes it,
/// with its heartbeat.
fn fake_watchdog(env: &Env, children: serde_json::Value) {
    let now = ghost_core::time::now_rfc3339();
    let st = serde_json::json!({
        "pid": std::process::id(), "status": "running", "ready": false,
        "started_at": now, "updated_at": now, "version": "0.1.0", "config": "embedded defaults",
        "children": children,
    });
    ghost_core::fs::write_json(&env.layout().watchdog_state(), &st).unwrap();
    ghost_core::heartbeat::HeartbeatWriter::new(
        &env.layout(),
        "watchdog",
        std::time::Duration::ZERO,
    )
    .beat("running", serde_json::json!({}))
    .unwrap();
}

fn child_json(state: &str, pid: Option<u32>, extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({
        "state": state, "pid": pid, "enabled": true, "command": "/bin/x --root /r",
        "restarts_in_window": 0, "max_restarts": 2, "restart_window": "5m",
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn restart_writes_a_request_for_a_running_watchdog() {
    let env = Env::new();
    // Unknown child: usage (2), nothing written.
    let (code, _, err) = env.run(&["restart", "nonsense"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown child \"nonsense\""), "{err}");
    assert!(err.contains("bridge, executor, monitor"), "{err}");
    // No watchdog: the work cannot be done (1), nothing written.
    let (code, _, err) = env.run(&["restart", "executor"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no watchdog is running"), "{err}");
    let dir = env.layout().watchdog_requests();
    assert!(!dir.join("executor.json").exists());
    // A live watchdog: the request is written, durably, naming who asked.
    fake_watchdog(&env, serde_json::json!({}));
    let (code, out, err) = env.run(&["restart", "executor"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restart of executor requested"), "{out}");
    assert!(
        out.contains(&format!("pid {}", std::process::id())),
        "{out}"
    );
    let reqs = ghost_core::watchdog::pending_requests(&env.layout());
    assert_eq!(reqs.len(), 1);
    let r = reqs[0].1.as_ref().unwrap();
    assert_eq!(
        (r.child.as_str(), r.action),
        ("executor", ghost_core::watchdog::RequestAction::Restart)
    );
    assert!(r.by.contains("uid "), "{}", r.by);
    let (code, out, _) = env.run(&["restart", "bridge", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["child"], "bridge");
    assert_eq!(v["watchdog_pid"], std::process::id());
    // A stopped watchdog does not count as running.
    let mut st = ghost_core::watchdog::read_state(&env.layout())
        .unwrap()
        .unwrap();
    st.status = ghost_core::watchdog::WatchdogStatus::Stopped;
    ghost_core::watchdog::write_state(&env.layout(), &st).unwrap();
    assert_eq!(env.run(&["restart", "executor"]).0, 1);
}

#[test]
fn restart_knows_configured_children() {
    let env = Env::with(|c| {
        c.watchdog.children.insert(
            "sidecar".into(),
            ghost_core::config::ChildConfig {
                command: Some("/bin/true".into()),
                ..Default::default()
            },
        );
    });
    fake_watchdog(&env, serde_json::json!({}));
    let (code, _, err) = env.run(&["restart", "sidecar"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn status_shows_the_watchdogs_children_as_a_table() {
    let env = Env::new();
    let (_, out, _) = env.run(&["status"]);
    assert!(
        !out.contains("watchdog"),
        "no watchdog ever ran: nothing said\n{out}"
    );
    // A pid that existed and is gone now.
    let dead = {
        let mut c = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    let live = std::process::id();
    fake_watchdog(
        &env,
        serde_json::json!({
            "bridge": child_json("running", Some(live), serde_json::json!({})),
            "ghost": child_json("running", Some(dead), serde_json::json!({})),
            "executor": child_json("given_up", None, serde_json::json!({
                "restarts_in_window": 2,
                "last_exit": {"code": 1, "signal": null, "cause": "exited", "at": ghost_core::time::now_rfc3339(),
                              "stderr_tail": "starting\nError: cannot open the database: Permission denied"},
                "given_up_at": ghost_core::time::now_rfc3339()})),
            "monitor": child_json("missing", None, serde_json::json!({"message": "/x/ghost-monitor not found: not started"})),
            "extra": child_json("backoff", None, serde_json::json!({
                "restarts_in_window": 1,
                "last_exit": {"code": null, "signal": 9, "signal_name": "SIGKILL", "cause": "hang", "at": ghost_core::time::now_rfc3339()},
                "next_restart_at": ghost_core::time::rfc3339(std::time::SystemTime::now() + std::time::Duration::from_secs(30))})),
        }),
    );
    let (code, out, _) = env.run(&["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("watchdog pid {} running", std::process::id())),
        "{out}"
    );
    let line = |child: &str| -> String {
        out.lines()
            .skip_while(|l| !l.contains("CHILD"))
            .find(|l| l.trim_start().starts_with(child))
            .unwrap_or_else(|| panic!("no {child} row in\n{out}"))
            .to_string()
    };
    assert!(
        out.contains("CHILD") && out.contains("RESTARTS") && out.contains("NEXT RESTART"),
        "{out}"
    );
    let b = line("bridge");
    assert!(
        b.contains("running") && b.contains(&live.to_string()) && b.contains("0/2 in 5m"),
        "{b}"
    );
    // A recorded pid that no longer exists is never shown as running.
    let g = line("ghost");
    assert!(g.contains("GONE (was running)"), "{g}");
    let e = line("executor");
    assert!(
        e.contains("GIVEN_UP")
            && e.contains("2/2 in 5m")
            && e.contains("crashed (code 1) (exited)"),
        "{e}"
    );
    assert!(e.contains("ghostctl restart executor"), "{e}");
    let m = line("monitor");
    assert!(m.contains("MISSING") && m.contains("not found"), "{m}");
    let x = line("extra");
    assert!(
        x.contains("killed by SIGKILL (hang)") && x.contains("in "),
        "{x}"
    );
    // The cause of the give-up: the last line it wrote.
    assert!(
        out.contains("!! the watchdog gave up on executor (crashed (code 1): Error: cannot open the database: Permission denied)"),
        "{out}"
    );
    let (_, out, _) = env.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["watchdog"]["gone"], serde_json::json!(["ghost"]));
    assert_eq!(v["watchdog"]["alive"], true);
    assert_eq!(v["watchdog"]["children"]["executor"]["state"], "given_up");
    // The watchdog's heartbeat goes stale: the table is marked as old news.
    let mut config = env.config.clone();
    config.heartbeat.stale_after = std::time::Duration::from_millis(1);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let s = ghostctl::status::status(&config).unwrap();
    let text = ghostctl::status::render(&s, config.heartbeat.stale_after);
    assert!(text.contains("WATCHDOG NOT RUNNING"), "{text}");
}

#[test]
fn logs_filter_by_patch_and_follow() {
    let env = Env::new();
    let name = env.entry(
        QueueState::Pending,
        VALID,
        &EntryRecord {
            patch_id: Some("p-one".into()),
            ..Default::default()
        },
    );
    let dir = env.layout().logs();
    let line = |ts: &str, c: &str, ev: &str, extra: &str| {
        format!(
            r#"{{"ts":"{ts}","level":"INFO","component":"{c}","pid":1,"event":"{ev}","msg":"m"{extra}}}"#
        )
    };
    let executor = [
        line(
            "2026-01-01T00:00:01.000Z",
            "executor",
            "PATCH_CLAIMED",
            &format!(r#","queue_name":"{name}""#),
        ),
        line(
            "2026-01-01T00:00:03.000Z",
            "executor",
            "PATCH_APPLIED",
            r#","patch_id":"p-one""#,
        ),
        line(
            "2026-01-01T00:00:04.000Z",
            "executor",
            "OTHER",
            r#","patch_id":"p-two""#,
        ),
    ]
    .join("\n")
        + "\n";
    let bridge = line(
        "2026-01-01T00:00:02.000Z",
        "bridge",
        "PATCH_RECEIVED",
        r#","patch_id":"p-one""#,
    ) + "\n";
    ghost_core::fs::durable_write(&dir.join("executor.log"), executor.as_bytes(), 0o600).unwrap();
    ghost_core::fs::durable_write(&dir.join("bridge.log"), bridge.as_bytes(), 0o600).unwrap();

    let opts = LogsOptions {
        patch: Some("p-one".into()),
        ..Default::default()
    };
    let mut out = Vec::new();
    logs(&env.config, &opts, &mut out, &|| true).unwrap();
    let text = String::from_utf8(out).unwrap();
    let events: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().nth(3).unwrap())
        .collect();
    assert_eq!(
        events,
        ["PATCH_CLAIMED", "PATCH_RECEIVED", "PATCH_APPLIED"],
        "{text}"
    );

    let (code, out, _) = env.run(&["logs", "--component", "bridge", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(out, bridge);
    let (code, out, _) = env.run(&["logs", "-n", "1"]);
    assert_eq!(code, 0);
    assert!(out.contains("OTHER") && out.lines().count() == 1, "{out}");

    // Follow: lines appended later appear, a partial line waits for its end.
    let opts = LogsOptions {
        follow: true,
        components: vec!["bridge".into()],
        ..Default::default()
    };
    let polls = std::cell::Cell::new(0);
    let path = dir.join("bridge.log");
    let stop = || {
        polls.set(polls.get() + 1);
        if polls.get() == 1 {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            use std::io::Write;
            let l = line("2026-01-01T00:00:05.000Z", "bridge", "LATER", "");
            f.write_all(l.as_bytes()).unwrap();
            f.write_all(b"\n{\"partial").unwrap();
        }
        polls.get() > 3
    };
    let mut out = Vec::new();
    logs(&env.config, &opts, &mut out, &stop).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().nth(1).unwrap().contains("LATER"), "{text}");
}

#[test]
fn logs_read_rotated_and_gzip_files_in_order_filter_by_level_and_correlation_and_follow_a_rotation()
{
    let env = Env::new();
    let dir = env.layout().logs();
    std::fs::create_dir_all(&dir).unwrap();
    let line = |ts: &str, level: &str, ev: &str, extra: &str| {
        format!(
            r#"{{"ts":"2026-01-01T00:00:{ts}.000Z","level":"{level}","component":"executor","pid":1,"event":"{ev}","msg":"m"{extra}}}"#
        ) + "\n"
    };
    let oldest = dir.join("executor.20260101T000001.500Z.log");
    ghost_core::fs::durable_write(
        &oldest,
        line("01", "INFO", "A", r#","correlation_id":"c1""#).as_bytes(),
        0o600,
    )
    .unwrap();
    ghost_core::logging::rotate::compress(&oldest).unwrap();
    ghost_core::fs::durable_write(
        &dir.join("executor.20260101T000002.500Z.log"),
        line("02", "WARN", "B", "").as_bytes(),
        0o600,
    )
    .unwrap();
    let current = dir.join("executor.log");
    ghost_core::fs::durable_write(
        &current,
        line("03", "ERROR", "C", r#","correlation_id":"c1""#).as_bytes(),
        0o600,
    )
    .unwrap();
    let events = |opts: &LogsOptions, stop: &dyn Fn() -> bool| {
        let mut out = Vec::new();
        logs(&env.config, opts, &mut out, stop).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().nth(3).unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(events(&LogsOptions::default(), &|| true), ["A", "B", "C"]);
    let level = LogsOptions {
        level: Some("warn".into()),
        ..Default::default()
    };
    assert_eq!(events(&level, &|| true), ["B", "C"]);
    let corr = LogsOptions {
        correlation_id: Some("c1".into()),
        ..Default::default()
    };
    assert_eq!(events(&corr, &|| true), ["A", "C"]);
    let (code, _, err) = env.run(&["logs", "--level", "loud"]);
    assert_eq!(code, 2, "{err}");

    // Follow: a line written just before the rotation is not missed, and the
    // new file is read from its start.
    let polls = std::cell::Cell::new(0);
    let stop = || {
        polls.set(polls.get() + 1);
        if polls.get() == 1 {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&current)
                .unwrap();
            use std::io::Write;
            f.write_all(line("04", "INFO", "D", "").as_bytes()).unwrap();
            ghost_core::fs::durable_move(&current, &dir.join("executor.20260101T000004.500Z.log"))
                .unwrap();
            ghost_core::fs::durable_write(&current, line("05", "INFO", "E", "").as_bytes(), 0o600)
                .unwrap();
        }
        polls.get() > 3
    };
    let follow = LogsOptions {
        follow: true,
        components: vec!["executor".into()],
        ..Default::default()
    };
    assert_eq!(events(&follow, &stop), ["A", "B", "C", "D", "E"]);

    // Follow two components: what both wrote since the last look comes
    // merged by time, not file by file.
    let bridge = dir.join("bridge.log");
    ghost_core::fs::durable_write(&bridge, b"", 0o600).unwrap();
    let polls = std::cell::Cell::new(0);
    let stop = || {
        polls.set(polls.get() + 1);
        if polls.get() == 1 {
            use std::io::Write;
            let append = |p: &std::path::Path, text: String| {
                let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
                f.write_all(text.as_bytes()).unwrap();
            };
            append(
                &dir.join("executor.log"),
                line("07", "INFO", "G", "") + &line("09", "INFO", "I", ""),
            );
            append(
                &bridge,
                line("06", "INFO", "F", "") + &line("08", "INFO", "H", ""),
            );
        }
        polls.get() > 2
    };
    let follow = LogsOptions {
        follow: true,
        components: vec!["executor".into(), "bridge".into()],
        lines: Some(0),
        ..Default::default()
    };
    assert_eq!(events(&follow, &stop), ["F", "G", "H", "I"]);
}

#[test]
fn submit_deduplicates_like_the_bridge() {
    let env = Env::new();
    let p = env.file(
        "p.json",
        r#"{"id": "same", "operations": [{"op": "write", "path": "a", "content": "a"}]}"#,
    );
    let again = env.file(
        "again.json",
        "{\"operations\":[{\"content\":\"a\",\"op\":\"write\",\"path\":\"a\"}],\"id\":\"same\"}",
    );
    let other = env.file(
        "other.json",
        r#"{"id": "same", "operations": [{"op": "write", "path": "a", "content": "b"}]}"#,
    );
    let (code, out, _) = env.run(&["submit", p.to_str().unwrap()]);
    assert_eq!(code, 0);
    let name = out.split('\t').nth(1).unwrap().to_string();
    // The same patch, whitespace and key order aside: already queued, nothing written.
    let (code, out, _) = env.run(&["submit", again.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&name) && out.contains("already queued"),
        "{out}"
    );
    // The same id with other content is refused.
    let (code, _, err) = env.run(&["submit", other.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("already used by queue entry") && err.contains(&name),
        "{err}"
    );
    // Twice in one invocation: once.
    let anon = env.file(
        "anon.json",
        r#"{"operations": [{"op": "delete", "path": "z"}]}"#,
    );
    let (code, out, _) = env.run(&["submit", anon.to_str().unwrap(), anon.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().filter(|l| l.contains("already queued")).count(),
        1,
        "{out}"
    );
    assert_eq!(env.queue().list(QueueState::Pending).unwrap().len(), 2);
}

/// The id the parser gives `bytes` (what the bridge answers and stores).
fn parser_id(env: &Env, bytes: &[u8]) -> String {
    let specs = env.config.target_specs();
    let opts = ghost_core::patch::parse::ParseOptions {
        targets: &specs,
        target_override: None,
    };
    ghost_core::patch::parse::parse_patch(bytes, &opts)
        .unwrap()
        .id
}

/// Entries queued without a record (as the bridge and older versions store
/// them): a patch with a byte order mark and a patch without an id are found
/// by the id the parser gives them, by every verb, and `ls` shows that id.
#[test]
fn every_verb_finds_bom_and_id_less_patches_by_the_parsers_id() {
    let env = Env::new();
    let q = env.queue();
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(VALID.replace("p-one", "with-bom").as_bytes());
    let anon = br#"{"operations": [{"op": "write", "path": "n.txt", "content": "n\n"}]}"#;
    let bom_name = q.enqueue(&bom).unwrap();
    let anon_name = q.enqueue(anon).unwrap();
    let (bom_id, anon_id) = (parser_id(&env, &bom), parser_id(&env, anon));
    assert_eq!(bom_id, "with-bom");
    assert!(anon_id.starts_with("patch-"), "{anon_id}");

    let (code, out, err) = env.run(&["ls"]);
    assert_eq!(code, 0, "{err}");
    for (name, id) in [(&bom_name, &bom_id), (&anon_name, &anon_id)] {
        let line = out.lines().find(|l| l.contains(name.as_str())).unwrap();
        assert!(line.contains(id.as_str()), "ls shows the id: {line}");
    }
    for (name, id) in [(&bom_name, &bom_id), (&anon_name, &anon_id)] {
        let (code, out, err) = env.run(&["show", id]);
        assert_eq!(code, 0, "show {id}: {err}");
        assert!(out.contains(&format!("queue name  {name}")), "{out}");
        assert_eq!(find(&env.config, id).unwrap().name, *name);
    }
    let step = |args: &[&str], state: QueueState, name: &str| {
        let (code, _, err) = env.run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_eq!(q.find(name), Some(state), "{args:?}");
    };
    step(&["hold", &bom_id], QueueState::Held, &bom_name);
    step(&["release", &bom_id], QueueState::Pending, &bom_name);
    step(
        &["delete", &bom_id, "--reason", "test"],
        QueueState::Trash,
        &bom_name,
    );
    q.transition(
        &anon_name,
        QueueState::Pending,
        QueueState::Failed,
        &EntryRecord::default(),
    )
    .unwrap();
    step(&["retry", &anon_id], QueueState::Pending, &anon_name);
}

/// `ls` pages: 1,000 entries, 50 to a page by default, newest first, with
/// how many more; `--all`, `--page`, `--limit` and `--sort name`.
#[test]
fn ls_pages_through_a_thousand_entries() {
    let env = Env::new();
    let q = env.queue();
    for i in 0..1000 {
        q.enqueue(format!(r#"{{"id": "p-{i}", "operations": []}}"#).as_bytes())
            .unwrap();
    }
    let oldest_first = q.list(QueueState::Pending).unwrap();
    let newest_first: Vec<String> = oldest_first.iter().rev().cloned().collect();
    // The queue names in the table, in its order, and the lines after it.
    let rows = |out: &str| -> (Vec<String>, Vec<String>) {
        let mut lines = out.lines();
        assert!(lines.next().unwrap().starts_with("TARGET"), "{out}");
        let (mut names, mut rest) = (Vec::new(), Vec::new());
        for l in lines {
            match l.split_whitespace().nth(2) {
                Some(n) if l.starts_with("default ") => names.push(n.to_string()),
                _ => rest.push(l.to_string()),
            }
        }
        (names, rest)
    };

    let (code, out, _) = env.run(&["ls"]);
    assert_eq!(code, 0);
    let (names, rest) = rows(&out);
    assert_eq!(names, newest_first[..50]);
    assert_eq!(
        rest,
        ["showing 1-50 of 1000 entries (newest first); 950 more: `--page 2`, or `--all` for every entry"]
    );

    let (_, out, _) = env.run(&["ls", "--page", "2", "--limit", "100"]);
    let (names, rest) = rows(&out);
    assert_eq!(names, newest_first[100..200]);
    assert_eq!(
        rest,
        ["showing 101-200 of 1000 entries (newest first); 800 more: `--page 3`, or `--all` for every entry"]
    );

    let (_, out, _) = env.run(&["ls", "--page", "20"]);
    let (names, rest) = rows(&out);
    assert_eq!(names, newest_first[950..]);
    assert_eq!(rest, ["showing 951-1000 of 1000 entries (newest first)"]);

    let (_, out, _) = env.run(&["ls", "--all"]);
    let (names, rest) = rows(&out);
    assert_eq!(names, newest_first);
    assert!(rest.is_empty(), "{rest:?}");

    let (_, out, _) = env.run(&["ls", "--sort", "name", "--limit", "10"]);
    assert_eq!(rows(&out).0, oldest_first[..10]);

    let (code, out, _) = env.run(&["ls", "--page", "21"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("no entries on page 21: 1000 entries, 50 to a page"),
        "{out}"
    );

    let (code, out, err) = env.run(&["ls", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 50);
    assert_eq!(v[0]["name"], newest_first[0].as_str());
    assert!(err.contains("950 more"), "{err}");
}
