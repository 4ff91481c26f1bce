use super::*;

fn hunk(old: &[&str], new: &[&str]) -> Hunk {
    Hunk {
        old: old.iter().map(|s| s.to_string()).collect(),
        new: new.iter().map(|s| s.to_string()).collect(),
        ..Hunk::default()
    }
}

fn p() -> RelPath {
    RelPath::parse("f.txt").unwrap()
}

#[test]
fn exact_then_trailing_whitespace_then_indentation() {
    let a = apply(&p(), "a\nb\nc\n", &[hunk(&["b"], &["B"])]).unwrap();
    assert_eq!(a.text, "a\nB\nc\n");
    assert!(a.notes.is_empty());

    let a = apply(&p(), "a\nb  \nc\n", &[hunk(&["b"], &["B"])]).unwrap();
    assert_eq!(a.text, "a\nB\nc\n");
    assert!(a.notes[0].contains("trailing whitespace"), "{:?}", a.notes);

    let a = apply(
        &p(),
        "fn f() {\n    if x {\n        y();\n    }\n}\n",
        &[hunk(
            &["if x {", "    y();", "}"],
            &["if x {", "    z();", "}"],
        )],
    )
    .unwrap();
    assert_eq!(a.text, "fn f() {\n    if x {\n        z();\n    }\n}\n");
    assert!(
        a.notes[0].contains("indentation") && a.notes[0].contains("line 2"),
        "{:?}",
        a.notes
    );
}

#[test]
fn ambiguous_and_missing_hunks_name_the_candidates() {
    let e = apply(&p(), "x\ny\nx\n", &[hunk(&["x"], &["z"])]).unwrap_err();
    assert!(
        e.contains("2 places") && e.contains("f.txt:1") && e.contains("f.txt:3"),
        "{e}"
    );
    let e = apply(&p(), "a\nb\nc\n", &[hunk(&["b", "q"], &["z"])]).unwrap_err();
    assert!(e.contains("does not match") && e.contains("f.txt:2"), "{e}");
}

#[test]
fn a_stated_line_decides_between_places_and_an_offset_is_reported() {
    let mut h = hunk(&["x"], &["z"]);
    h.line = Some(3);
    let a = apply(&p(), "x\ny\nx\n", &[h.clone()]).unwrap();
    assert_eq!(a.text, "x\ny\nz\n");
    assert!(a.notes.is_empty());
    h.line = Some(5);
    let a = apply(&p(), "a\nb\nx\n", &[h]).unwrap();
    assert_eq!(a.text, "a\nb\nz\n");
    assert!(
        a.notes[0].contains("2 lines from the stated line 5"),
        "{:?}",
        a.notes
    );
}

#[test]
fn crlf_and_missing_final_newline_are_kept() {
    let a = apply(&p(), "a\r\nb\r\nc\r\n", &[hunk(&["b"], &["B", "B2"])]).unwrap();
    assert_eq!(a.text, "a\r\nB\r\nB2\r\nc\r\n");
    let a = apply(&p(), "a\nb", &[hunk(&["b"], &["B"])]).unwrap();
    assert_eq!(a.text, "a\nB");
    let mut h = hunk(&["b"], &["B"]);
    h.final_newline = Some(true);
    assert_eq!(apply(&p(), "a\nb", &[h]).unwrap().text, "a\nB\n");
    assert_eq!(
        apply(&p(), "", &[hunk(&[], &["new"])]).unwrap().text,
        "new\n"
    );
}

#[test]
fn anchors_eof_and_order() {
    let mut h = hunk(&["x"], &["X"]);
    h.anchors = vec!["fn b() {".into()];
    let a = apply(&p(), "fn a() {\nx\n}\nfn b() {\nx\n}\n", &[h]).unwrap();
    assert_eq!(a.text, "fn a() {\nx\n}\nfn b() {\nX\n}\n");
    let mut h = hunk(&["x"], &["X"]);
    h.at_eof = true;
    assert_eq!(apply(&p(), "x\ny\nx\n", &[h]).unwrap().text, "x\ny\nX\n");
    // The second hunk is searched after the first.
    let a = apply(
        &p(),
        "x\ny\nx\n",
        &[hunk(&["x", "y"], &["1", "y"]), hunk(&["x"], &["2"])],
    )
    .unwrap();
    assert_eq!(a.text, "1\ny\n2\n");
}

#[test]
fn a_leading_blank_search_line_is_dropped_and_reported() {
    let a = apply(
        &p(),
        "    line1\n    line2\n    line3\n",
        &[hunk(
            &["", "  line1", "  line2"],
            &["  new_line1", "  new_line2"],
        )],
    )
    .unwrap();
    assert_eq!(a.text, "    new_line1\n    new_line2\n    line3\n");
    assert!(a.notes[0].contains("blank line"), "{:?}", a.notes);
}

#[test]
fn indentation_is_spaces_and_tabs_only() {
    // An ideographic space is not indentation: no slicing inside it.
    let e = apply(
        &p(),
        "\u{3000}a\n b\n",
        &[hunk(&["\u{3000}x", " b"], &[" c"])],
    );
    assert!(e.is_err());
    let a = apply(
        &p(),
        "\tif x:\n\t\ty\n",
        &[hunk(&["if x:", "\ty"], &["if x:", "\tz"])],
    )
    .unwrap();
    assert_eq!(a.text, "\tif x:\n\t\tz\n");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn line() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "",
            " ",
            "\t",
            "a",
            " a",
            "  a",
            "\ta",
            "a ",
            "b",
            "\u{3000}a",
            "é",
            "\r",
            "@@",
            "+x",
            "-y",
        ])
        .prop_map(str::to_string)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the file and the hunk, the matcher answers (never
        /// panics), and an exact unique match applies exactly.
        #[test]
        fn never_panics_and_exact_edits_are_exact(
            file in prop::collection::vec(line(), 0..12),
            old in prop::collection::vec(line(), 0..4),
            new in prop::collection::vec(line(), 0..4),
            at_eof in any::<bool>(),
            stated in prop::option::of(0usize..14),
        ) {
            let text = file.join("\n");
            let h = Hunk { old: old.clone(), new: new.clone(), at_eof, line: stated, ..Hunk::default() };
            let _ = apply(&p(), &text, &[h]);
            // The file's own lines i..i+n, searched for, are found somewhere.
            if file.len() >= 2 && !file.contains(&"\r".to_string()) {
                let text = format!("{}\n", file.join("\n"));
                let h = Hunk { old: file[..2].to_vec(), new: vec!["NEW".into()], line: Some(1), ..Hunk::default() };
                let a = apply(&p(), &text, &[h]).unwrap();
                prop_assert!(a.text.starts_with("NEW\n"), "{:?}", a.text);
            }
        }

        /// The parsers and the detector never panic on any text.
        #[test]
        fn parsers_never_panic(lines in prop::collection::vec(prop::sample::select(vec![
            "*** Begin Patch", "*** End Patch", " *** Update File: a", "*** Add File: b", "*** Delete File: c",
            "*** Move to: d", "@@", "@@ fn f", "+x", "-x", " x", "", "*** End of File", "--- a/x", "+++ b/x",
            "@@ -1,2 +1 @@", "\\ No newline at end of file", "diff --git a/x b/x", "rename from x",
            "<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE", "```", "```diff", "f.txt", "é", "\r",
        ]), 0..30)) {
            let text = lines.join("\n");
            let _ = crate::patch::agent::apply_patch::parse(&text);
            let _ = crate::patch::agent::diff::parse(&text);
            let _ = crate::patch::agent::search_replace::find(&text, &|_| false);
            let _ = crate::patch::agent::detect::find(&text);
        }
    }
}
