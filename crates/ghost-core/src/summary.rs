//! Summaries: `summaries/<target>/<name>.json` (machine) and `<name>.md` (human),
//! with copies in `.backup/`. Every file is written durably, then read back and
//! compared by MD5 with what was meant to be written.
//!
//! The Markdown is rendered from the JSON and ends with the JSON's MD5, so
//! [`verify`] can tell which copy of a pair is intact: a JSON that parses, agreed
//! on by its twin or by a Markdown footer, is the truth, and every file that
//! differs from it (or from its rendering) is rewritten.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fs::{durable_write, read_opt, FILE_MODE};
use crate::md5_hex;
use crate::queue::AttemptRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SummaryStatus {
    Applied,
    Failed,
    RolledBack,
    Stuck,
}

impl SummaryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SummaryStatus::Applied => "applied",
            SummaryStatus::Failed => "failed",
            SummaryStatus::RolledBack => "rolled_back",
            SummaryStatus::Stuck => "stuck",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    pub path: String,
    pub md5_before: Option<String>,
    pub md5_after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpSummary {
    pub index: usize,
    pub op: String,
    pub files: Vec<FileSummary>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSummary {
    /// `before` or `after`.
    pub phase: String,
    pub command: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub stdout_tail: String,
    pub stderr_tail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSummary {
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredFile {
    pub path: String,
    /// MD5 the file had before the patch (`None`: it did not exist).
    pub expected_md5: Option<String>,
    /// MD5 found after the rollback.
    pub actual_md5: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackSummary {
    pub files: Vec<RestoredFile>,
    /// Every restored file matched its pre-patch MD5.
    pub verified: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitSummary {
    pub commit: Option<String>,
    pub tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    pub pid: u32,
    pub host: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub id: String,
    /// Queue name of the entry.
    pub name: String,
    pub target: String,
    pub status: SummaryStatus,
    pub attempts: u32,
    pub description: Option<String>,
    pub source_format: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub operations: Vec<OpSummary>,
    pub checks: Vec<CheckSummary>,
    pub error: Option<ErrorSummary>,
    pub rollback: Option<RollbackSummary>,
    pub git: Option<GitSummary>,
    pub executor: ExecutorInfo,
    #[serde(default)]
    pub history: Vec<AttemptRecord>,
}

/// Paths of one summary's four files.
#[derive(Debug, Clone)]
pub struct SummaryFiles {
    pub json: PathBuf,
    pub md: PathBuf,
    pub backup_json: PathBuf,
    pub backup_md: PathBuf,
}

impl SummaryFiles {
    pub fn new(dir: &Path, name: &str) -> Self {
        let b = dir.join(".backup");
        SummaryFiles {
            json: dir.join(format!("{name}.json")),
            md: dir.join(format!("{name}.md")),
            backup_json: b.join(format!("{name}.json")),
            backup_md: b.join(format!("{name}.md")),
        }
    }
}

fn to_json(s: &Summary) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(s).expect("a summary always serialises");
    v.push(b'\n');
    v
}

fn code(s: &str) -> String {
    format!("`{}`", s.replace('`', "'"))
}

/// The human rendering, ending with the MD5 of the JSON it was made from.
pub fn render_markdown(s: &Summary, json_md5: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Patch {} — {}\n", code(&s.id), s.status.as_str());
    if let Some(d) = &s.description {
        let _ = writeln!(o, "{}\n", d.trim());
    }
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| target | {} |", s.target);
    let _ = writeln!(o, "| queue name | {} |", s.name);
    let _ = writeln!(o, "| status | **{}** |", s.status.as_str());
    let _ = writeln!(o, "| attempts | {} |", s.attempts);
    let _ = writeln!(o, "| started | {} |", s.started_at);
    let _ = writeln!(o, "| finished | {} ({} ms) |", s.finished_at, s.duration_ms);
    let _ = writeln!(
        o,
        "| executor | pid {} on {}, version {} |",
        s.executor.pid, s.executor.host, s.executor.version
    );
    if let Some(e) = &s.error {
        let _ = writeln!(o, "\n## Error\n\n**{}**: {}", e.kind, e.message);
    }
    if !s.operations.is_empty() {
        let _ = writeln!(o, "\n## Operations\n\n| # | op | file | MD5 before | MD5 after | detail |\n|---|---|---|---|---|---|");
        for op in &s.operations {
            for f in &op.files {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} |",
                    op.index,
                    op.op,
                    code(&f.path),
                    f.md5_before.as_deref().unwrap_or("(absent)"),
                    f.md5_after.as_deref().unwrap_or("(absent)"),
                    op.detail
                );
            }
        }
    }
    if !s.checks.is_empty() {
        let _ = writeln!(o, "\n## Checks");
        for c in &s.checks {
            let result = if c.timed_out {
                "timed out".to_string()
            } else if let Some(code) = c.exit_code {
                format!("exit {code}")
            } else {
                format!("signal {}", c.signal.unwrap_or_default())
            };
            let _ = writeln!(
                o,
                "\n- {} {} — {} in {} ms",
                c.phase,
                code(&c.command),
                result,
                c.duration_ms
            );
            for (label, tail) in [("stdout", &c.stdout_tail), ("stderr", &c.stderr_tail)] {
                if !tail.is_empty() {
                    let _ = writeln!(
                        o,
                        "\n  {label}:\n\n  ```\n{}\n  ```",
                        tail.trim_end().replace("```", "'''")
                    );
                }
            }
        }
    }
    if let Some(r) = &s.rollback {
        let _ = writeln!(
            o,
            "\n## Rollback\n\n{} file(s) restored, MD5 {}.",
            r.files.len(),
            if r.verified {
                "verified"
            } else {
                "**MISMATCH**"
            }
        );
        for f in &r.files {
            let _ = writeln!(
                o,
                "- {}: expected {}, found {}",
                code(&f.path),
                f.expected_md5.as_deref().unwrap_or("(absent)"),
                f.actual_md5.as_deref().unwrap_or("(absent)")
            );
        }
    }
    if let Some(g) = &s.git {
        let _ = writeln!(
            o,
            "\n## Git\n\ncommit {} tag {}",
            g.commit.as_deref().unwrap_or("-"),
            g.tag.as_deref().unwrap_or("-")
        );
    }
    if s.history.len() > 1 {
        let _ = writeln!(o, "\n## Attempts\n");
        for h in &s.history {
            let _ = writeln!(
                o,
                "- {}: {} ({} → {}){}",
                h.attempt,
                h.outcome,
                h.started_at,
                h.ended_at,
                h.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(o, "\n<!-- summary-json-md5: {json_md5} -->");
    o
}

fn footer_md5(md: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(md).ok()?;
    let line = s
        .lines()
        .rev()
        .find(|l| l.starts_with("<!-- summary-json-md5: "))?;
    Some(
        line.trim_start_matches("<!-- summary-json-md5: ")
            .trim_end_matches(" -->")
            .to_string(),
    )
}

/// MD5s of what [`write`] wrote and read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub json_md5: String,
    pub md_md5: String,
}

/// Write a summary's four files durably, read each back and compare MD5s.
pub fn write(dir: &Path, summary: &Summary) -> Result<Written> {
    let files = SummaryFiles::new(dir, &summary.name);
    let json = to_json(summary);
    let json_md5 = md5_hex(&json);
    let md = render_markdown(summary, &json_md5).into_bytes();
    let md_md5 = md5_hex(&md);
    crate::fs::ensure_dir(&dir.join(".backup"))?;
    for (path, bytes) in [
        (&files.json, &json),
        (&files.md, &md),
        (&files.backup_json, &json),
        (&files.backup_md, &md),
    ] {
        durable_write(path, bytes, FILE_MODE)?;
        crate::fault_point("crash-between-summary-files", Some(path))?;
    }
    for (path, want) in [
        (&files.json, &json_md5),
        (&files.md, &md_md5),
        (&files.backup_json, &json_md5),
        (&files.backup_md, &md_md5),
    ] {
        let got = read_opt(path)?.map(|b| md5_hex(&b));
        if got.as_deref() != Some(want.as_str()) {
            return Err(Error::Corrupt {
                what: "summary",
                path: path.clone(),
                reason: format!("read back MD5 {got:?}, wrote {want}"),
            });
        }
    }
    Ok(Written { json_md5, md_md5 })
}

/// Stage a summary's four files into a group commit (the executor's batches):
/// durable once the group is published and finished; then [`verify`].
pub fn stage(group: &mut crate::fs::WriteGroup, dir: &Path, summary: &Summary) -> Result<Written> {
    let files = SummaryFiles::new(dir, &summary.name);
    let json = to_json(summary);
    let json_md5 = md5_hex(&json);
    let md = render_markdown(summary, &json_md5).into_bytes();
    let md_md5 = md5_hex(&md);
    crate::fs::ensure_dir(&dir.join(".backup"))?;
    group.stage(&files.json, &json, FILE_MODE)?;
    group.stage(&files.md, &md, FILE_MODE)?;
    // The backups repeat the main files, which are durable: their content is
    // not fsynced. After a power cut one may be short; `ghostctl verify`
    // compares the copies and repairs the bad one from the good.
    group.stage_copy(&files.backup_json, &json, FILE_MODE)?;
    group.stage_copy(&files.backup_md, &md, FILE_MODE)?;
    Ok(Written { json_md5, md_md5 })
}

/// Read a staged summary's four files back and compare their MD5s.
pub fn verify_written(dir: &Path, name: &str, w: &Written) -> Result<()> {
    let files = SummaryFiles::new(dir, name);
    for (path, want) in [
        (&files.json, &w.json_md5),
        (&files.md, &w.md_md5),
        (&files.backup_json, &w.json_md5),
        (&files.backup_md, &w.md_md5),
    ] {
        let got = read_opt(path)?.map(|b| md5_hex(&b));
        if got.as_deref() != Some(want.as_str()) {
            return Err(Error::Corrupt {
                what: "summary",
                path: path.clone(),
                reason: format!("read back MD5 {got:?}, wrote {want}"),
            });
        }
    }
    Ok(())
}

/// Read a summary's JSON (the main copy, or the backup if the main one is bad).
pub fn read(dir: &Path, name: &str) -> Result<Option<Summary>> {
    let files = SummaryFiles::new(dir, name);
    for p in [&files.json, &files.backup_json] {
        if let Some(b) = read_opt(p)? {
            if let Ok(s) = serde_json::from_slice(&b) {
                return Ok(Some(s));
            }
        }
    }
    Ok(None)
}

/// The outcome of verifying one summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyResult {
    pub name: String,
    /// `ok`, `repaired` or `unrepairable`.
    pub outcome: String,
    /// Files rewritten, or why nothing could be.
    pub detail: Vec<String>,
}

/// Check every summary in `dir` against its backup and repair from whichever
/// copy is intact.
pub fn verify(dir: &Path) -> Result<Vec<VerifyResult>> {
    let mut names = BTreeSet::new();
    for d in [dir.to_path_buf(), dir.join(".backup")] {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let f = e.file_name().to_string_lossy().into_owned();
                if let Some(stem) = f.strip_suffix(".json").or_else(|| f.strip_suffix(".md")) {
                    if !stem.starts_with('.') {
                        names.insert(stem.to_string());
                    }
                }
            }
        }
    }
    names.into_iter().map(|n| verify_one(dir, &n)).collect()
}

fn verify_one(dir: &Path, name: &str) -> Result<VerifyResult> {
    let files = SummaryFiles::new(dir, name);
    let main = read_opt(&files.json)?;
    let backup = read_opt(&files.backup_json)?;
    let parses = |b: &Option<Vec<u8>>| {
        b.as_ref()
            .filter(|b| serde_json::from_slice::<Summary>(b).is_ok())
            .cloned()
    };
    let (pm, pb) = (parses(&main), parses(&backup));
    let footers: Vec<String> = [&files.md, &files.backup_md]
        .into_iter()
        .filter_map(|p| read_opt(p).ok().flatten())
        .filter_map(|b| footer_md5(&b))
        .collect();
    let truth = match (pm, pb) {
        (Some(a), Some(b)) if a == b => Some(a),
        (Some(a), None) => Some(a),
        (None, Some(b)) => Some(b),
        (Some(a), Some(b)) => {
            let (ma, mb) = (md5_hex(&a), md5_hex(&b));
            match (footers.contains(&ma), footers.contains(&mb)) {
                (true, false) => Some(a),
                (false, true) => Some(b),
                _ => None,
            }
        }
        (None, None) => None,
    };
    let Some(json) = truth else {
        return Ok(VerifyResult {
            name: name.to_string(),
            outcome: "unrepairable".into(),
            detail: vec!["no intact copy of the JSON summary (both missing, unreadable, or differing with no way to tell which is right)".into()],
        });
    };
    let summary: Summary = serde_json::from_slice(&json).map_err(|e| Error::Corrupt {
        what: "summary",
        path: files.json.clone(),
        reason: e.to_string(),
    })?;
    let md = render_markdown(&summary, &md5_hex(&json)).into_bytes();
    let mut repaired = Vec::new();
    for (path, want) in [
        (&files.json, &json),
        (&files.md, &md),
        (&files.backup_json, &json),
        (&files.backup_md, &md),
    ] {
        if read_opt(path)?.as_ref() != Some(want) {
            durable_write(path, want, FILE_MODE)?;
            repaired.push(path.display().to_string());
        }
    }
    Ok(VerifyResult {
        name: name.to_string(),
        outcome: if repaired.is_empty() {
            "ok"
        } else {
            "repaired"
        }
        .into(),
        detail: repaired,
    })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: fixtures are set up and damaged directly, not durably
mod tests {
    use super::*;

    pub(crate) fn sample(name: &str) -> Summary {
        Summary {
            id: "patch-1".into(),
            name: name.into(),
            target: "default".into(),
            status: SummaryStatus::Applied,
            attempts: 1,
            description: Some("demo".into()),
            source_format: Some("native".into()),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            finished_at: "2026-01-01T00:00:01.000Z".into(),
            duration_ms: 1000,
            operations: vec![OpSummary {
                index: 0,
                op: "write".into(),
                files: vec![FileSummary {
                    path: "a.txt".into(),
                    md5_before: None,
                    md5_after: Some(md5_hex(b"x")),
                }],
                detail: "created".into(),
            }],
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
    fn write_then_verify_ok() {
        let d = tempfile::tempdir().unwrap();
        let w = write(d.path(), &sample("n1")).unwrap();
        assert_eq!(w.json_md5.len(), 32);
        let r = verify(d.path()).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].outcome, "ok");
        assert_eq!(read(d.path(), "n1").unwrap().unwrap(), sample("n1"));
    }

    #[test]
    fn repairs_from_whichever_copy_is_intact() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), &sample("n1")).unwrap();
        let f = SummaryFiles::new(d.path(), "n1");
        let good_json = std::fs::read(&f.json).unwrap();
        let good_md = std::fs::read(&f.md).unwrap();

        // Main JSON truncated, backup Markdown removed.
        durable_write(&f.json, &good_json[..10], FILE_MODE).unwrap();
        std::fs::remove_file(&f.backup_md).unwrap();
        let r = verify(d.path()).unwrap();
        assert_eq!(r[0].outcome, "repaired", "{r:?}");
        assert_eq!(std::fs::read(&f.json).unwrap(), good_json);
        assert_eq!(std::fs::read(&f.backup_md).unwrap(), good_md);

        // Backup JSON altered but still valid: the Markdown footer decides.
        let mut other = sample("n1");
        other.attempts = 9;
        durable_write(&f.backup_json, &to_json(&other), FILE_MODE).unwrap();
        let r = verify(d.path()).unwrap();
        assert_eq!(r[0].outcome, "repaired");
        assert_eq!(std::fs::read(&f.backup_json).unwrap(), good_json);
        assert_eq!(verify(d.path()).unwrap()[0].outcome, "ok");
    }

    #[test]
    fn unrepairable_when_no_copy_is_intact() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), &sample("n1")).unwrap();
        let f = SummaryFiles::new(d.path(), "n1");
        durable_write(&f.json, b"{", FILE_MODE).unwrap();
        durable_write(&f.backup_json, b"", FILE_MODE).unwrap();
        assert_eq!(verify(d.path()).unwrap()[0].outcome, "unrepairable");
    }
}
