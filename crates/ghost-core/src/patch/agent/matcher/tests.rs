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
