//! The fuzz corpora, replayed on stable: every file of `fuzz/corpus/<target>/`
//! through that target's body (the same code the libFuzzer targets run, with
//! the same assertions), so CI checks each input the fuzzer ever kept,
//! including the regressions of what it found.

use std::path::{Path, PathBuf};

// The bodies live with the fuzz targets (a crate outside this workspace).
#[path = "../../../fuzz/src/lib.rs"]
mod bodies;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The stack each replay runs on. The corpora hold JSON nested up to the
/// parser's depth limit (128); unoptimised, walking that takes more than a
/// test thread's default 2 MiB, which the fuzzers' optimised builds never
/// see (they run on the main thread's 8 MiB).
const REPLAY_STACK: usize = 32 << 20;

fn replay(target: &'static str) {
    std::thread::Builder::new()
        .name(format!("replay-{target}"))
        .stack_size(REPLAY_STACK)
        .spawn(move || replay_on_this_thread(target))
        .unwrap()
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn replay_on_this_thread(target: &str) {
    let files = corpus(target);
    assert!(
        files.len() >= 5,
        "the {target} corpus is there: {} files",
        files.len()
    );
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let r = std::panic::catch_unwind(|| bodies::run(target, &data));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target}: {} fails: {msg}", f.display());
        }
    }
    bodies::finish(target);
    eprintln!("{target}: {} corpus files replayed", files.len());
}

#[test]
fn every_target_is_replayed() {
    for t in bodies::TARGETS {
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../fuzz/fuzz_targets")
                .join(format!("{t}.rs"))
                .is_file(),
            "{t} has a libFuzzer entry"
        );
    }
}

#[test]
fn the_patch_corpus_holds() {
    replay("patch");
}

#[test]
fn the_transcript_corpus_holds() {
    replay("transcript");
}

#[test]
fn the_path_corpus_holds() {
    replay("path");
}

#[test]
fn the_agent_corpus_holds() {
    replay("agent");
}

#[test]
fn the_http_corpus_holds() {
    replay("http");
}
