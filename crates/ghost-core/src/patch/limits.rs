//! Bounds on the work one patch may cause (`[limits]`, see docs/security.md):
//! how many operations, regex operations and diff hunks it has, how large its
//! patterns are and how large the compiled regexes may grow. The sizes of
//! staged files are bounded while staging (see `stage`), since they depend on
//! the tree.
//!
//! [`validate_limits`] is pure and cheap but for the regex compilation, which
//! is bounded by `regex_size_limit`/`regex_dfa_size_limit` and by the number of
//! regex operations; an async caller still runs it off its reactor threads.
//! Every message names the limit's key and value.

use regex::{Regex, RegexBuilder};

use super::{FieldError, Operation, Patch, PatchError};
use crate::config::LimitsConfig;

/// Compiles `pattern` within the configured size limits. The error is a human
/// reason (a syntax error, or the limit exceeded, named).
pub fn compile_regex(pattern: &str, limits: &LimitsConfig) -> Result<Regex, String> {
    if pattern.len() as u64 > limits.max_pattern_bytes {
        return Err(format!(
            "the pattern is {} bytes; the limit is {} (limits.max_pattern_bytes)",
            pattern.len(),
            limits.max_pattern_bytes
        ));
    }
    RegexBuilder::new(pattern)
        .size_limit(usize::try_from(limits.regex_size_limit).unwrap_or(usize::MAX))
        .dfa_size_limit(usize::try_from(limits.regex_dfa_size_limit).unwrap_or(usize::MAX))
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(n) => format!(
                "the pattern compiles to more than {n} bytes; the limit is {} (limits.regex_size_limit)",
                limits.regex_size_limit
            ),
            other => format!("invalid regular expression: {other}"),
        })
}

/// Hunks in one file's diff text (`@@ -a,b +c,d @@` lines).
fn hunks(text: &str) -> usize {
    text.lines().filter(|l| l.starts_with("@@ ")).count()
}

/// Checks `patch` against the limits that do not depend on the tree. Every
/// problem is reported, each naming the limit (key and value).
pub fn validate_limits(patch: &Patch, limits: &LimitsConfig) -> Result<(), PatchError> {
    let mut errors = Vec::new();
    let mut err = |field: String, reason: String| errors.push(FieldError { field, reason });
    let ops = patch.operations.len();
    if ops as u64 > u64::from(limits.max_operations) {
        err(
            "operations".into(),
            format!(
                "the patch has {ops} operations; the limit is {} (limits.max_operations)",
                limits.max_operations
            ),
        );
    }
    let regexes = patch
        .operations
        .iter()
        .filter(|o| matches!(o, Operation::Regex { .. }))
        .count();
    let too_many_regexes = regexes as u64 > u64::from(limits.max_regex_operations);
    if too_many_regexes {
        err(
            "operations".into(),
            format!(
                "the patch has {regexes} regex operations; the limit is {} (limits.max_regex_operations)",
                limits.max_regex_operations
            ),
        );
    }
    let mut total_hunks = 0usize;
    for (i, op) in patch.operations.iter().enumerate() {
        match op {
            // Past the count limit, compiling each would be the very work the
            // limit is there to prevent.
            Operation::Regex { pattern, .. } if !too_many_regexes => {
                if let Err(why) = compile_regex(pattern, limits) {
                    err(format!("operations[{i}].pattern"), why);
                }
            }
            Operation::Diff { files } => {
                total_hunks += files.iter().map(|f| hunks(&f.text)).sum::<usize>();
            }
            Operation::ApplyPatch { files } => {
                total_hunks += files
                    .iter()
                    .map(|f| match f {
                        crate::patch::agent::FileEdit::Update { hunks, .. } => hunks.len(),
                        _ => 0,
                    })
                    .sum::<usize>();
            }
            _ => {}
        }
    }
    if total_hunks as u64 > u64::from(limits.max_diff_hunks) {
        err(
            "operations".into(),
            format!(
                "the patch's diffs have {total_hunks} hunks; the limit is {} (limits.max_diff_hunks)",
                limits.max_diff_hunks
            ),
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(PatchError { errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::{Checks, RelPath, SourceFormat};

    fn patch(operations: Vec<Operation>) -> Patch {
        Patch {
            id: "p".into(),
            target: "t".into(),
            description: None,
            operations,
            checks: Checks::default(),
            max_attempts: None,
            git: None,
            source_format: SourceFormat::Native,
        }
    }

    fn regex(pattern: &str) -> Operation {
        Operation::Regex {
            path: RelPath::parse("a").unwrap(),
            pattern: pattern.into(),
            replacement: "b".into(),
            count: None,
        }
    }

    #[test]
    fn within_the_defaults_passes() {
        let l = LimitsConfig::default();
        assert!(validate_limits(&patch(vec![regex("a"); 40]), &l).is_ok());
    }

    #[test]
    fn each_limit_is_named_with_its_value() {
        let l = LimitsConfig {
            max_operations: 3,
            max_regex_operations: 2,
            max_pattern_bytes: 8,
            max_diff_hunks: 1,
            ..LimitsConfig::default()
        };
        let diff = Operation::Diff {
            files: vec![crate::patch::FileDiff {
                old_path: Some(RelPath::parse("a").unwrap()),
                new_path: Some(RelPath::parse("a").unwrap()),
                new_mode: None,
                text: "--- a/a\n+++ b/a\n@@ -1 +1 @@\n-a\n+b\n@@ -5 +5 @@\n-a\n+b\n".into(),
            }],
        };
        let e = validate_limits(&patch(vec![regex("a"), regex("b"), regex("c"), diff]), &l)
            .unwrap_err()
            .to_string();
        for needle in [
            "4 operations; the limit is 3 (limits.max_operations)",
            "3 regex operations; the limit is 2 (limits.max_regex_operations)",
            "2 hunks; the limit is 1 (limits.max_diff_hunks)",
        ] {
            assert!(e.contains(needle), "missing {needle:?} in {e}");
        }
        let e = validate_limits(&patch(vec![regex("aaaaaaaaaaaa")]), &l)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("12 bytes; the limit is 8 (limits.max_pattern_bytes)"),
            "{e}"
        );
    }

    #[test]
    fn a_huge_compiled_regex_is_refused_quickly() {
        let l = LimitsConfig::default();
        let e = validate_limits(&patch(vec![regex(r"\w{1000}{1000}")]), &l)
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.regex_size_limit"), "{e}");
    }
}
