//! The bodies of the fuzz targets: one function per target, taking the raw
//! input and asserting properties of what the code under test does with it
//! (a panic, here or in the code, is a finding). The libFuzzer targets in
//! `fuzz_targets/` call these, and so does the corpus replay of the normal
//! test suite (`crates/ghost-bridge/tests/fuzz_replay.rs`), which includes
//! this file as a module: every corpus file runs on stable in CI.
//!
//! The targets, each fed by `fuzz/corpus/<name>/`:
//! - [`patch`]: a patch document (native or legacy JSON) through the parser,
//!   the policy and the limits; what is accepted is well formed and its id is
//!   the id read back from the same bytes (what the queue stores).
//! - [`transcript`]: a chat transcript through the bridge's extraction
//!   (JSON and YAML blocks, agents' patches), each candidate through the parser.
//! - [`path`]: a path through validation, then looked up in a real tree whose
//!   symlinks lead out of it: nothing read through an accepted path is outside.
//! - [`agent`]: an agent's patch (`apply_patch`, SEARCH/REPLACE, unified diff)
//!   parsed, then staged and applied against a small in-memory tree, then
//!   rolled back: only named paths change, and the roll-back is the identity.
//! - [`http`]: a request (method, path, headers, body) through the bridge's
//!   router in-process, on a temp root; every answer is JSON of the
//!   documented shape, and every `202` is backed by stored entries whose id is
//!   the answered one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

use ghost_bridge::http::{router, AppState};
use ghost_bridge::ingest::Ingestor;
use ghost_bridge::secrets::{Secret, SecretSource, Secrets};
use ghost_core::entry::stored_id;
use ghost_core::fs::tree::Tree;
use ghost_core::patch::agent::{self, FileEdit};
use ghost_core::patch::parse::{document_value, parse_patch, parse_patch_value, ParseOptions};
use ghost_core::patch::stage::{stage, Entry, MemTree, Staged};
use ghost_core::patch::{
    policy, validate_limits, CommandPolicy, Operation, Patch, RelPath, TargetSpec,
};
use ghost_core::queue::QueueState;
use ghost_core::{Config, Layout};

/// The target names, as the corpus directories and `fuzz_targets/` name them.
pub const TARGETS: [&str; 5] = ["patch", "transcript", "path", "agent", "http"];

/// Runs the body of target `name` on `data` (for the replay).
pub fn run(name: &str, data: &[u8]) {
    match name {
        "patch" => patch(data),
        "transcript" => transcript(data),
        "path" => path(data),
        "agent" => agent(data),
        "http" => http(data),
        other => panic!("no fuzz target {other:?}"),
    }
}

/// A target with commands allowed (so checks parse) and a legacy root (so
/// the old shapes' absolute paths map), plus a second one with an alias.
fn targets() -> Vec<TargetSpec> {
    vec![
        TargetSpec {
            name: "default".into(),
            aliases: vec!["DEV".into()],
            legacy_root: Some("/old/app".into()),
            commands: CommandPolicy::Any,
            ..TargetSpec::default()
        },
        TargetSpec {
            name: "web".into(),
            ..TargetSpec::default()
        },
    ]
}

/// A path the parser accepted is what validation makes of it, and stays in
/// the tree: relative, no `.`, `..` or empty component, no NUL.
fn contained(p: &RelPath) {
    let s = p.as_str();
    assert_eq!(RelPath::parse(s).as_ref(), Ok(p), "not normalised: {s:?}");
    assert!(!s.starts_with('/') && !s.contains('\0'), "escapes: {s:?}");
    assert!(
        s.split('/').all(|c| !matches!(c, "" | "." | "..")),
        "bad component: {s:?}"
    );
}

/// Every path a patch names.
fn paths_of(p: &Patch) -> Vec<&RelPath> {
    let mut out = Vec::new();
    for op in &p.operations {
        match op {
            Operation::Write { path, .. }
            | Operation::Replace { path, .. }
            | Operation::Regex { path, .. }
            | Operation::Delete { path, .. }
            | Operation::Chmod { path, .. }
            | Operation::SearchReplace { path, .. } => out.push(path),
            Operation::Rename { from, to } => out.extend([from, to]),
            Operation::Diff { files } => {
                for f in files {
                    out.extend(f.old_path.iter().chain(f.new_path.iter()));
                }
            }
            Operation::ApplyPatch { files } => {
                for f in files {
                    out.push(f.path());
                    if let FileEdit::Update {
                        move_to: Some(to), ..
                    } = f
                    {
                        out.push(to);
                    }
                }
            }
        }
    }
    out
}

/// What holds for any patch the parser accepts.
fn well_formed(p: &Patch, t: &[TargetSpec]) {
    assert!(!p.operations.is_empty(), "accepted without operations");
    assert!(!p.id.is_empty(), "an empty id");
    assert!(
        t.iter().any(|s| s.name == p.target),
        "unknown target {}",
        p.target
    );
    paths_of(p).into_iter().for_each(contained);
    // Neither judging it nor bounding its work panics.
    let spec = t.iter().find(|s| s.name == p.target).unwrap();
    let _ = policy::check(p, spec);
    let _ = validate_limits(p, &Default::default());
}

/// Every refusal names a field and a reason.
fn explained(e: &ghost_core::patch::PatchError) {
    assert!(!e.errors.is_empty(), "a refusal without a reason");
    for f in &e.errors {
        assert!(!f.field.is_empty() && !f.reason.is_empty(), "{f:?}");
    }
}

/// Target `patch`: a document through the parser.
pub fn patch(data: &[u8]) {
    let t = targets();
    let opts = ParseOptions {
        targets: &t,
        target_override: None,
    };
    match parse_patch(data, &opts) {
        Ok(p) => {
            well_formed(&p, &t);
            // The id the queue reads back from the stored bytes is this one.
            assert_eq!(stored_id(data).as_deref(), Some(p.id.as_str()));
            // The value the parser saw gives the same patch again, and so
            // does its canonical text (what the bridge stores for an item of
            // an array).
            let v = document_value(data).expect("parsed, so a document");
            assert_eq!(parse_patch_value(&v, &opts).as_ref(), Ok(&p));
            let again = serde_json::to_vec(&v).unwrap();
            assert_eq!(parse_patch(&again, &opts).as_ref(), Ok(&p));
        }
        Err(e) => explained(&e),
    }
    // With a route's target the same document is judged without panic too.
    let routed = ParseOptions {
        targets: &t,
        target_override: Some("web"),
    };
    if let Ok(p) = parse_patch(data, &routed) {
        assert_eq!(p.target, "web");
    }
}

/// Target `transcript`: free text through the bridge's extraction.
pub fn transcript(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // Lines end at `\n`, `\r\n` or a lone `\r` (the extraction's rule, see
    // `ghost_bridge::transcript`), counted here on their own.
    let lines =
        1 + text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count();
    let t = targets();
    let opts = ParseOptions {
        targets: &t,
        target_override: None,
    };
    for x in ghost_bridge::transcript::extract(&text) {
        assert!(x.line >= 1 && x.line <= lines, "line {} of {lines}", x.line);
        match x.result {
            Ok(v) => {
                let v = if x.agent {
                    agent::detect::for_target(v, None)
                } else {
                    v
                };
                match parse_patch_value(&v, &opts) {
                    Ok(p) => well_formed(&p, &t),
                    Err(e) => explained(&e),
                }
            }
            Err(reason) => assert!(!reason.is_empty(), "an extraction error without a reason"),
        }
    }
}

/// The outside file's content: nothing read through the tree may be it.
const SECRET: &[u8] = b"outside secret\n";

/// The `path` target's tree, made at its first input.
static ESCAPE: OnceLock<(tempfile::TempDir, Tree)> = OnceLock::new();

/// A tree (`base/tree`) whose symlinks lead out of it to `base/outside`.
fn escape_fixture() -> &'static (tempfile::TempDir, Tree) {
    ESCAPE.get_or_init(|| {
        use std::os::unix::fs::symlink;
        let base = tempfile::tempdir().unwrap();
        let outside = base.path().join("outside");
        let tree = base.path().join("tree");
        // A fixture, built directly: nothing here needs to survive a crash.
        #[allow(clippy::disallowed_methods)]
        {
            std::fs::create_dir_all(outside.join("sub")).unwrap();
            std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
            std::fs::write(outside.join("sub/secret.txt"), SECRET).unwrap();
            std::fs::create_dir_all(tree.join("d/e")).unwrap();
            std::fs::write(tree.join("a.txt"), "a\n").unwrap();
            std::fs::write(tree.join("d/e/f"), "f\n").unwrap();
        }
        symlink("../outside", tree.join("out")).unwrap();
        symlink(&outside, tree.join("abs")).unwrap();
        symlink("../..", tree.join("d/up")).unwrap();
        symlink("../../../outside/secret.txt", tree.join("d/e/s")).unwrap();
        symlink("loop", tree.join("loop")).unwrap();
        let t = Tree::open(&tree).unwrap();
        (base, t)
    })
}

/// Target `path`: validation, then a lookup in a tree with escaping links.
pub fn path(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let target = &targets()[0];
    let Ok(p) = RelPath::parse(&raw) else {
        return;
    };
    contained(&p);
    // A `.git` component, in any case, is always protected.
    if p.as_str()
        .split('/')
        .any(|c| c.eq_ignore_ascii_case(".git"))
    {
        assert!(policy::protected(&p, target).is_some(), "{p} not protected");
    }
    let (_, tree) = escape_fixture();
    match tree.entry(&p) {
        Ok(Entry::File(f)) => assert_ne!(f.bytes, SECRET, "{p} read the outside file"),
        Ok(_) => {}
        // A link on the way is refused by the capability, not followed.
        Err(_) => {}
    }
}

/// The small tree agents' patches are applied against. The part of the input
/// before its first NUL (if any) replaces `a.txt`'s content, so the fuzzer
/// can shape the file and the patch together.
fn agent_tree(base: Option<&[u8]>) -> MemTree {
    MemTree::new()
        .with_file(
            "a.txt",
            base.unwrap_or(&b"one\ntwo\nthree\nfour\nfive\n"[..]),
            0o644,
        )
        .with_file(
            "src/main.rs",
            "fn main() {\n    println!(\"hello\");\n}\n",
            0o644,
        )
        .with_file("src/lib.rs", "pub fn f() -> u32 {\n    1\n}\n", 0o644)
        .with_file("run.sh", "#!/bin/sh\necho hi\n", 0o755)
        .with_dir("empty")
        .with_other("link", "a symlink")
}

/// Target `agent`: the agents' formats, parsed, then staged, applied and
/// rolled back against [`agent_tree`].
pub fn agent(data: &[u8]) {
    let (base, text) = match data.iter().position(|&b| b == 0) {
        Some(i) => (Some(&data[..i]), &data[i + 1..]),
        None => (None, data),
    };
    let text = String::from_utf8_lossy(text);
    // Each parser on its own: an error is a list of reasons, never empty.
    let parsed: [Result<Vec<FileEdit>, Vec<String>>; 2] =
        [agent::apply_patch::parse(&text), agent::diff::parse(&text)];
    for r in parsed {
        match r {
            Ok(edits) => edits.iter().for_each(|e| contained(e.path())),
            Err(reasons) => assert!(!reasons.is_empty()),
        }
    }
    if let Err(reasons) = agent::search_replace::find(&text, &|_| false) {
        assert!(!reasons.is_empty());
    }
    // Detected in free text, each becomes a native document: parse, stage.
    let t = targets();
    let opts = ParseOptions {
        targets: &t,
        target_override: None,
    };
    for found in agent::detect::find(&text) {
        assert!(found.line >= 1);
        let Ok(doc) = found.result else { continue };
        let doc = agent::detect::for_target(doc, None);
        let p = match parse_patch_value(&doc, &opts) {
            Ok(p) => p,
            Err(e) => {
                explained(&e);
                continue;
            }
        };
        well_formed(&p, &t);
        apply_and_roll_back(&p, base);
    }
}

/// Stages `p` against the agents' tree; if it stages, applying changes only
/// paths the patch names, staging is deterministic, and applying the
/// originals back restores the tree exactly.
fn apply_and_roll_back(p: &Patch, base: Option<&[u8]>) {
    let before = agent_tree(base);
    let Ok(staged) = stage(&p.operations, &before, 0o644) else {
        return;
    };
    assert_eq!(
        stage(&p.operations, &before, 0o644).as_ref(),
        Ok(&staged),
        "staging is not deterministic"
    );
    let named: BTreeSet<&RelPath> = paths_of(p).into_iter().collect();
    let changed: BTreeSet<&RelPath> = staged.changes.keys().collect();
    let originals: BTreeSet<&RelPath> = staged.originals.keys().collect();
    assert_eq!(changed, originals, "a change without its original");
    for c in &changed {
        contained(c);
        assert!(named.contains(c), "{c} changed but not named by the patch");
    }
    let mut tree = before.clone();
    tree.apply(&staged);
    for (path, state) in &staged.changes {
        assert_eq!(
            tree.files().get(path),
            state.as_ref(),
            "{path} not as staged"
        );
    }
    // Roll back: the originals are the final state of the same paths.
    let back = Staged {
        changes: staged.originals.clone(),
        originals: staged.changes.clone(),
        new_dirs: Vec::new(),
        results: Vec::new(),
    };
    tree.apply(&back);
    assert_eq!(
        tree.files(),
        before.files(),
        "the roll-back is not the identity"
    );
}

/// The bridge's bearer token in the fuzzed router.
const TOKEN: &str = "fuzz-token";

/// One router on one temp root, replaced every [`HTTP_ROUNDS`] requests so
/// the root stays small over millions of inputs.
struct HttpEnv {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    ing: Arc<Ingestor>,
    app: Router,
    rounds: usize,
    /// Queue name -> patch id of every entry a `202` answered for.
    queued: BTreeMap<String, String>,
    /// Queue name -> patch id read from the stored bytes, of every entry
    /// already checked: after each request only new names are read.
    checked: BTreeMap<String, String>,
}

/// Requests per root. Each request lists the queue; each entry's bytes are
/// read when it appears and again, all of them, before the root is dropped.
const HTTP_ROUNDS: usize = 500;

fn http_env() -> HttpEnv {
    let dir = tempfile::tempdir().unwrap();
    // No rate limit (a fuzzer is one very fast client); no high-water mark;
    // small bodies so the size limits are reached too.
    let text = "[bridge]\nrate_limit = 0\nhigh_water_mark = 0\nmax_patch_bytes = \"2KiB\"\n\
                max_body_bytes = \"3KiB\"\n\
                [targets.default]\naliases = [\"DEV\"]\nlegacy_root = \"/old/app\"\n[targets.web]\n";
    let cfg = Config::from_toml(dir.path(), text, "fuzz").unwrap();
    Layout::new(dir.path())
        .create(cfg.targets.keys().map(String::as_str))
        .unwrap();
    let ing = Arc::new(Ingestor::new(Arc::new(cfg)).unwrap());
    let secrets = Secrets {
        token: Secret::new(TOKEN),
        token_source: SecretSource::Configuration("bridge.token"),
        hmac_key: Secret::new("fuzz-hmac-key"),
        hmac_source: SecretSource::Configuration("bridge.hmac_key"),
    };
    let app = router(AppState::new(ing.clone(), Arc::new(secrets)))
        .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4242))));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    HttpEnv {
        rt,
        _dir: dir,
        ing,
        app,
        rounds: 0,
        queued: BTreeMap::new(),
        checked: BTreeMap::new(),
    }
}

/// The request an input describes: `METHOD PATH` on the first line, then
/// `name: value` header lines up to an empty line, then the body. Without an
/// `authorization` header the valid bearer token is added, so the fuzzer
/// reaches the handlers; with one, authentication itself is fuzzed.
fn request_of(data: &[u8]) -> Option<Request<Body>> {
    fn next_line<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
        let i = rest.iter().position(|&b| b == b'\n')?;
        let (l, r) = rest.split_at(i);
        *rest = &r[1..];
        Some(l.strip_suffix(b"\r").unwrap_or(l))
    }
    let mut rest = data;
    let first = next_line(&mut rest)?;
    let sp = first.iter().position(|&b| b == b' ')?;
    let method = Method::from_bytes(&first[..sp]).ok()?;
    let uri = std::str::from_utf8(&first[sp + 1..]).ok()?;
    let mut builder = Request::builder().method(method).uri(uri);
    let mut authed = false;
    while let Some(l) = next_line(&mut rest) {
        if l.is_empty() {
            break;
        }
        let Some(c) = l.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&l[..c]),
            HeaderValue::from_bytes(l[c + 1..].trim_ascii()),
        ) else {
            continue;
        };
        authed |= name == axum::http::header::AUTHORIZATION;
        builder = builder.header(name, value);
    }
    if !authed {
        builder = builder.header(axum::http::header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    }
    builder.body(Body::from(rest.to_vec())).ok()
}

/// The `http` target's current root, kept between inputs.
static HTTP_ENV: Mutex<Option<HttpEnv>> = Mutex::new(None);

/// Ends a root of the `http` target: every stored entry is read again (none
/// was changed after it was first checked), then the root is removed.
fn retire(env: HttpEnv) {
    let mut all = BTreeMap::new();
    check_queue(env.ing.layout(), &mut all);
    assert_eq!(all, env.queued, "the queue changed under its answers");
}

/// Called by the replay after the last input of target `name`: ends what the
/// target keeps between inputs (the `http` target's root, checked once more
/// and removed; the `path` target's tree, removed, so that target is not run
/// again in this process). A libFuzzer run exits without it; `fuzz/run`
/// removes its scratch directory.
pub fn finish(name: &str) {
    match name {
        "http" => {
            let env = HTTP_ENV.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(env) = env {
                retire(env);
            }
        }
        // A static's destructor never runs, so the directory goes by hand.
        "path" => {
            if let Some((base, _)) = ESCAPE.get() {
                #[allow(clippy::disallowed_methods)] // a fixture of this process
                std::fs::remove_dir_all(base.path()).unwrap();
            }
        }
        _ => {}
    }
}

/// Target `http`: one request through the router.
pub fn http(data: &[u8]) {
    let Some(req) = request_of(data) else { return };
    let mut guard = HTTP_ENV.lock().unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().is_none_or(|e| e.rounds >= HTTP_ROUNDS) {
        if let Some(old) = guard.take() {
            retire(old);
        }
        *guard = Some(http_env());
    }
    let env = guard.as_mut().unwrap();
    env.rounds += 1;
    let app = env.app.clone();
    let (status, body) = env.rt.block_on(async move {
        let resp = app.oneshot(req).await.expect("the router is infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("an answer's body");
        (status, bytes)
    });
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "500: {}",
        String::from_utf8_lossy(&body)
    );
    // Every answer is JSON; every refusal of the documented shape.
    let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    if status.is_client_error() || status.is_server_error() {
        assert!(v["error"].is_string(), "{status}: no error kind: {v}");
        assert!(v["message"].is_string(), "{status}: no message: {v}");
        let errors = v["errors"].as_array().expect("errors is a list");
        assert!(
            !errors.is_empty(),
            "{status}: a refusal without a reason: {v}"
        );
    }
    if status == StatusCode::ACCEPTED || status == StatusCode::OK {
        let listed = |k: &str| v[k].as_array().cloned().unwrap_or_default();
        for q in listed("queued") {
            let (id, name) = (q["id"].as_str().unwrap(), q["name"].as_str().unwrap());
            assert!(
                env.queued
                    .insert(name.to_string(), id.to_string())
                    .is_none(),
                "queue name {name} answered twice as new"
            );
        }
        for q in listed("duplicates") {
            let (id, name) = (q["id"].as_str().unwrap(), q["name"].as_str().unwrap());
            assert_eq!(env.queued.get(name).map(String::as_str), Some(id), "{q}");
        }
    }
    // What is on disk is exactly what was answered `202` for, each entry
    // once, and the id read from its stored bytes is the answered id.
    check_queue(env.ing.layout(), &mut env.checked);
    assert_eq!(
        env.checked, env.queued,
        "the queue and the answers disagree"
    );
}

/// Lists the pending entries of the root into `checked` (queue name -> id
/// read from the stored bytes): names no longer listed leave it, and the
/// bytes of names not in it yet are read. A name listed twice panics.
fn check_queue(layout: &Layout, checked: &mut BTreeMap<String, String>) {
    let mut listed = BTreeSet::new();
    for target in ["default", "web"] {
        let q = layout.queue(target);
        for name in q.list(QueueState::Pending).unwrap() {
            if !checked.contains_key(&name) {
                let bytes = std::fs::read(q.entry_path(QueueState::Pending, &name)).unwrap();
                let id =
                    stored_id(&bytes).unwrap_or_else(|| panic!("{name}: no id in stored bytes"));
                checked.insert(name.clone(), id);
            }
            assert!(listed.insert(name), "a queue name in two targets");
        }
    }
    checked.retain(|name, _| listed.contains(name));
}
