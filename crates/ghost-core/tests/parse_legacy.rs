//! Every legacy fixture from the old project (copied from `fixtures/legacy/`)
//! normalises to the expected operations and checks, and is rejected with a
//! clear reason where the target forbids shell or declares no `legacy_root`.

use ghost_core::patch::parse::{parse_patch, ParseOptions};
use ghost_core::patch::{
    CommandKind, FieldError, Operation, Patch, PatchError, RelPath, SourceFormat, TargetSpec,
};

const DUMMY: &str = include_str!("fixtures/legacy/dummy_patch.json");
const ROUTER: &str = include_str!("fixtures/legacy/patch-router-test-patch.json");
const GPT: &str = include_str!("fixtures/legacy/test-patch-gpt-interface.json");
const SIMPLE: &str = include_str!("fixtures/legacy/test-patch-simple.json");
const WEBHOOK: &str = include_str!("fixtures/legacy/test-patch.json");
const SCHEMA: &str = include_str!("fixtures/legacy/PATCH-SCHEMA.json");

fn spec(allow_shell: bool, legacy_root: Option<&str>) -> Vec<TargetSpec> {
    vec![TargetSpec {
        name: "default".into(),
        aliases: ["DEV", "CYOPS", "MAIN", "BRAUN", "ghost-system"]
            .map(String::from)
            .to_vec(),
        legacy_root: legacy_root.map(String::from),
        allow_shell,
        // Legacy patches run shell strings: these tests are about their shape.
        commands: ghost_core::patch::CommandPolicy::Any,
        ..TargetSpec::default()
    }]
}

fn parse(text: &str, allow_shell: bool, legacy_root: Option<&str>) -> Result<Patch, PatchError> {
    let targets = spec(allow_shell, legacy_root);
    parse_patch(
        text.as_bytes(),
        &ParseOptions {
            targets: &targets,
            target_override: None,
        },
    )
}

fn accepted(text: &str) -> Patch {
    parse(text, true, Some("/tmp")).unwrap_or_else(|e| panic!("rejected: {e}"))
}

fn rel(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

fn write(path: &str, content: &str) -> Operation {
    Operation::Write {
        path: rel(path),
        content: content.as_bytes().to_vec(),
        mode: None,
        expect_md5: None,
    }
}

fn shells(cmds: &[ghost_core::patch::Command]) -> Vec<&str> {
    cmds.iter()
        .map(|c| match &c.kind {
            CommandKind::Shell(s) => s.as_str(),
            other => panic!("expected a shell command, got {other:?}"),
        })
        .collect()
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

const SHELL_REASON: &str =
    "shell commands are not allowed for target default (set allow_shell = true in [targets.default])";

#[test]
fn dummy_patch_is_a_webhook_regex() {
    let p = accepted(DUMMY);
    assert_eq!(p.id, "test-patch");
    assert_eq!(p.target, "default");
    assert_eq!(p.source_format, SourceFormat::LegacyWebhook);
    assert_eq!(
        p.operations,
        vec![Operation::Regex {
            path: rel("tmp_test_target.tsx"),
            pattern: "<Text>This text will be patched.</Text>".into(),
            replacement: "<Text>✅ PATCHED</Text>".into(),
            count: None,
        }]
    );
    assert!(p.checks.before.is_empty() && p.checks.after.is_empty());
    // No shell, no absolute path: the strictest target accepts it too.
    assert_eq!(parse(DUMMY, false, None).unwrap().operations, p.operations);
}

#[test]
fn router_patch_is_a_full_schema_write() {
    let p = accepted(ROUTER);
    assert_eq!(p.id, "test-patch-v347");
    assert_eq!(p.description.as_deref(), Some("test patch for router fix"));
    assert_eq!(p.source_format, SourceFormat::LegacyFull);
    assert_eq!(
        p.operations,
        vec![write("foo/bar/baz.js", "console.log('patched')")]
    );
    assert!(p.checks.before.is_empty() && p.checks.after.is_empty());
    assert!(p.git.is_none());
    assert_eq!(parse(ROUTER, false, None).unwrap().operations, p.operations);
}

#[test]
fn gpt_interface_patch() {
    let p = accepted(GPT);
    assert_eq!(p.id, "test-patch-gpt-interface");
    assert_eq!(p.target, "default", "\"ghost-system\" is an alias");
    assert_eq!(p.source_format, SourceFormat::LegacyWebhook);
    // The bare `patch` string is the whole new content of `target_file`.
    assert_eq!(
        p.operations,
        vec![write(
            "gpt-interface-test.log",
            "echo 'GPT interface test completed successfully at $(date)' >> /tmp/gpt-interface-test.log"
        )]
    );
    let before = shells(&p.checks.before);
    assert_eq!(before.len(), 4);
    assert_eq!(before[0], "echo '🤖 Pre-commit: GPT interface test...'");
    assert_eq!(before[1], "date");
    // postMutationBuild first, then validate.
    let after = shells(&p.checks.after);
    assert_eq!(after.len(), 9);
    assert_eq!(
        after[0],
        "echo '🏗️ Post-mutation: Finalizing GPT interface test...'"
    );
    assert_eq!(after[4], "echo '✅ Post-mutation phase completed'");
    assert_eq!(after[5], "echo '🔍 Validation: Checking GPT interface...'");
    assert_eq!(after[8], "echo '✅ Validation phase completed'");
    assert!(p.checks.after.iter().all(|c| c.timeout.is_none()));

    let e = parse(GPT, false, Some("/tmp")).unwrap_err().errors;
    assert_eq!(
        fields(&e),
        [
            "preCommit.shell",
            "postMutationBuild.shell",
            "validate.shell"
        ]
    );
    assert!(e.iter().all(|e| e.reason == SHELL_REASON), "{e:#?}");

    let e = parse(GPT, true, None).unwrap_err().errors;
    assert_eq!(fields(&e), ["target_file"]);
    assert!(e[0].reason.contains("\"/tmp/gpt-interface-test.log\""));
    assert!(e[0].reason.contains("declares no legacy_root"));
}

#[test]
fn simple_patch() {
    let p = accepted(SIMPLE);
    assert_eq!(p.id, "test-patch-simple");
    assert_eq!(
        p.description.as_deref(),
        Some("Simple test patch for autonomous execution")
    );
    assert_eq!(p.source_format, SourceFormat::LegacyFull);
    assert_eq!(
        p.operations,
        vec![write(
            "simple-test.log",
            "Simple test completed at $(date)\n"
        )]
    );
    assert!(p.checks.before.is_empty());
    assert_eq!(
        shells(&p.checks.after),
        [
            "echo 'Simple test completed successfully' >> /tmp/simple-test.log",
            "date >> /tmp/simple-test.log"
        ]
    );

    let e = parse(SIMPLE, false, Some("/tmp")).unwrap_err().errors;
    assert_eq!(fields(&e), ["postMutationBuild.shell"]);
    assert_eq!(e[0].reason, SHELL_REASON);

    let e = parse(SIMPLE, true, None).unwrap_err().errors;
    assert_eq!(fields(&e), ["mutations[0].path"]);
    assert!(e[0].reason.contains("\"/tmp/simple-test.log\""));

    let e = parse(SIMPLE, true, Some("/Users/sawyer/gitSync"))
        .unwrap_err()
        .errors;
    assert_eq!(fields(&e), ["mutations[0].path"]);
    assert!(
        e[0].reason
            .contains("is outside target default's legacy_root (/Users/sawyer/gitSync)"),
        "{e:#?}"
    );
}

#[test]
fn webhook_with_mutations() {
    let p = accepted(WEBHOOK);
    assert_eq!(p.id, "test-patch-001");
    assert_eq!(p.source_format, SourceFormat::LegacyWebhook);
    assert_eq!(
        p.operations,
        vec![write(
            "test-patch-result.json",
            "{\n  \"test\": true,\n  \"timestamp\": \"$(date)\",\n  \"pipeline\": \"working\",\n  \"webhook\": \"delivered\"\n}"
        )]
    );
    assert_eq!(
        shells(&p.checks.after),
        [
            "echo 'Test patch executed successfully'",
            "echo 'Pipeline verification complete'"
        ]
    );

    let e = parse(WEBHOOK, false, Some("/tmp")).unwrap_err().errors;
    assert_eq!(fields(&e), ["postMutationBuild.shell"]);

    let e = parse(WEBHOOK, true, None).unwrap_err().errors;
    assert_eq!(fields(&e), ["patch.mutations[0].path"]);
    assert!(e[0].reason.contains("\"/tmp/test-patch-result.json\""));
}

#[test]
fn the_schema_is_not_a_patch() {
    let e = parse(SCHEMA, true, Some("/tmp")).unwrap_err().errors;
    assert_eq!(fields(&e), ["(document)"]);
    assert!(e[0].reason.contains("not a recognised patch shape"));
    assert!(e[0].reason.contains("JSON Schema"));
}
