//! `ghostctl verify`: re-check every summary against its backup and repair from
//! whichever copy is intact ([`ghost_core::summary::verify`]), over every
//! target's `summaries/<target>/` directory.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;
use tracing::{info, warn};

use ghost_core::cli::{EXIT_FAILURE, EXIT_OK};

use ghost_core::summary;
use ghost_core::{Config, Layout};

use crate::entries::all_targets;
use crate::util::clean;
use crate::{io, json_text, CtlError};

/// `ghostctl verify`: exit 1 if any summary is unrepairable.
pub fn run(config: &Config, json: bool, out: &mut dyn std::io::Write) -> Result<u8, CtlError> {
    let r = verify(config);
    if json {
        writeln!(out, "{}", json_text(&r)).map_err(io)?;
    } else {
        write!(out, "{}", render(&r)).map_err(io)?;
    }
    Ok(if r.failed() { EXIT_FAILURE } else { EXIT_OK })
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyLine {
    pub target: String,
    pub name: String,
    /// `ok`, `repaired` or `unrepairable`.
    pub outcome: String,
    /// Files rewritten, or why nothing could be.
    pub detail: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub results: Vec<VerifyLine>,
    pub total: usize,
    pub ok: usize,
    pub repaired: usize,
    pub unrepairable: usize,
}

impl VerifyReport {
    pub fn failed(&self) -> bool {
        self.unrepairable > 0
    }
}

/// Every target with a summaries directory, configured or not.
fn summary_targets(config: &Config) -> Vec<String> {
    let layout = Layout::new(&config.root);
    let mut set: BTreeSet<String> = all_targets(config).into_iter().collect();
    if let Ok(rd) = std::fs::read_dir(layout.summaries_root()) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                if let Some(n) = e.file_name().to_str() {
                    if !n.starts_with('.') {
                        set.insert(n.to_string());
                    }
                }
            }
        }
    }
    set.into_iter()
        .filter(|t| layout.summaries(t).is_dir())
        .collect()
}

pub fn verify(config: &Config) -> VerifyReport {
    let layout = Layout::new(&config.root);
    let mut r = VerifyReport::default();
    for t in summary_targets(config) {
        let dir = layout.summaries(&t);
        match summary::verify(&dir) {
            Ok(results) => {
                for v in results {
                    r.results.push(VerifyLine {
                        target: t.clone(),
                        name: v.name,
                        outcome: v.outcome,
                        detail: v.detail,
                    });
                }
            }
            Err(e) => r.results.push(VerifyLine {
                target: t.clone(),
                name: "(directory)".into(),
                outcome: "unrepairable".into(),
                detail: vec![format!("verifying {} stopped: {e}", dir.display())],
            }),
        }
    }
    for v in &r.results {
        r.total += 1;
        match v.outcome.as_str() {
            "ok" => r.ok += 1,
            "repaired" => {
                r.repaired += 1;
                info!(event = "SUMMARY_REPAIRED", target = %v.target, queue_name = %v.name,
                      files = %v.detail.join(", "), "summary repaired from its intact copy");
            }
            _ => {
                r.unrepairable += 1;
                warn!(event = "SUMMARY_UNREPAIRABLE", target = %v.target, queue_name = %v.name,
                      error = %v.detail.join("; "), "summary cannot be repaired");
            }
        }
    }
    r
}

pub fn render(r: &VerifyReport) -> String {
    let mut o = String::new();
    for v in r.results.iter().filter(|v| v.outcome != "ok") {
        let detail: Vec<String> = v.detail.iter().map(|d| clean(d)).collect();
        match v.outcome.as_str() {
            "repaired" => {
                let _ = writeln!(
                    o,
                    "repaired      {}/{}: rewrote {}",
                    v.target,
                    v.name,
                    detail.join(", ")
                );
            }
            _ => {
                let _ = writeln!(
                    o,
                    "UNREPAIRABLE  {}/{}: {}",
                    v.target,
                    v.name,
                    detail.join("; ")
                );
            }
        }
    }
    let _ = writeln!(
        o,
        "{} summaries: {} ok, {} repaired, {} unrepairable",
        r.total, r.ok, r.repaired, r.unrepairable
    );
    o
}
