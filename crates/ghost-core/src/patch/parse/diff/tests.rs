//! Unit tests of the diff splitter.

use super::*;

fn one(text: &str) -> FileDiff {
    let mut files = split_diff(text).unwrap_or_else(|e| panic!("rejected: {e:?}"));
    assert_eq!(files.len(), 1, "{files:?}");
    files.remove(0)
}

fn err(text: &str) -> String {
    split_diff(text).expect_err("accepted").join(" | ")
}

fn apply(fd: &FileDiff, base: &str) -> String {
    diffy::apply(base, &diffy::Patch::from_str(&fd.text).unwrap()).unwrap()
}

#[test]
fn plain_diff_with_prefixes_and_timestamps() {
    let fd = one("--- a/x\t2024-01-01 00:00:00.000 +0000\n+++ b/x\t2024-01-02 00:00:00 +0000\n@@ -1 +1 @@\n-1\n+2\n");
    assert_eq!(fd.old_path.as_ref().unwrap().as_str(), "x");
    assert_eq!(fd.new_path.as_ref().unwrap().as_str(), "x");
    assert_eq!(fd.text, "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-1\n+2\n");
    assert_eq!(apply(&fd, "1\n"), "2\n");
}

#[test]
fn plain_diff_without_prefixes_keeps_first_component() {
    let fd = one("--- src/x\n+++ src/x\n@@ -1 +1 @@\n-1\n+2\n");
    assert_eq!(fd.new_path.unwrap().as_str(), "src/x");
    // Only one side prefixed: nothing stripped.
    let fd = one("--- a/x\n+++ a/x\n@@ -1 +1 @@\n-1\n+2\n");
    assert_eq!(fd.new_path.unwrap().as_str(), "a/x");
}

#[test]
fn plain_creation_and_deletion() {
    let fd = one("--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,2 @@\n+a\n+b\n");
    assert!(fd.old_path.is_none());
    assert_eq!(fd.new_path.as_ref().unwrap().as_str(), "new.txt");
    assert_eq!(apply(&fd, ""), "a\nb\n");
    let fd = one("--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n");
    assert_eq!(fd.old_path.unwrap().as_str(), "old.txt");
    assert!(fd.new_path.is_none());
    assert!(fd.text.contains("+++ /dev/null\n"));
}

#[test]
fn missing_final_newline_of_the_diff_is_added() {
    let fd = one("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-1\n+2");
    assert!(fd.text.ends_with("+2\n"));
    assert_eq!(apply(&fd, "1\n"), "2\n");
}

#[test]
fn no_newline_markers_are_kept_and_normalised() {
    let fd = one("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-1\n\\ No newline at end of file\n+2\n\\ Kein Zeilenumbruch am Dateiende.\n");
    assert_eq!(fd.text.matches(NO_NEWLINE).count(), 2);
    assert_eq!(apply(&fd, "1"), "2");
}

#[test]
fn multiple_files_and_hunks_and_removed_dash_lines() {
    let text = "\
preamble text
--- a/one
+++ b/one
@@ -1,2 +1,2 @@
--- not a header
+-- replaced
 keep
@@ -10 +10 @@
-x
+y
--- a/two
+++ b/two
@@ -1 +1,2 @@
 a
+b
";
    let files = split_diff(text).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].new_path.as_ref().unwrap().as_str(), "one");
    assert!(files[0].text.contains("--- not a header\n"));
    assert!(files[0].text.contains("@@ -10 +10 @@\n"));
    assert_eq!(files[1].new_path.as_ref().unwrap().as_str(), "two");
}

#[test]
fn git_formats() {
    let text = "\
diff --git a/src/new.sh b/src/new.sh
new file mode 100755
index 0000000..e69de29
--- /dev/null
+++ b/src/new.sh
@@ -0,0 +1 @@
+echo hi
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
index e69de29..0000000
diff --git a/run.sh b/run.sh
old mode 100644
new mode 100755
diff --git a/old name.txt b/new name.txt
similarity index 90%
rename from old name.txt
rename to new name.txt
index 1111111..2222222 100644
--- a/old name.txt\t
+++ b/new name.txt\t
@@ -1 +1 @@
-a
+b
diff --git a/pure b/renamed
similarity index 100%
rename from pure
rename to renamed
diff --git a/empty b/empty
new file mode 100644
index 0000000..e69de29
";
    let files = split_diff(text).unwrap();
    assert_eq!(files.len(), 6, "{files:#?}");
    assert!(files[0].old_path.is_none());
    assert_eq!(files[0].new_path.as_ref().unwrap().as_str(), "src/new.sh");
    assert_eq!(files[0].new_mode, Some(0o755));
    assert_eq!(files[1].old_path.as_ref().unwrap().as_str(), "gone.txt");
    assert!(files[1].new_path.is_none());
    assert!(files[1].text.is_empty());
    assert_eq!(files[2].new_mode, Some(0o755));
    assert_eq!(files[2].old_path, files[2].new_path);
    assert!(files[2].text.is_empty());
    assert_eq!(files[3].old_path.as_ref().unwrap().as_str(), "old name.txt");
    assert_eq!(files[3].new_path.as_ref().unwrap().as_str(), "new name.txt");
    assert_eq!(
        files[3].text,
        "--- a/old name.txt\n+++ b/new name.txt\n@@ -1 +1 @@\n-a\n+b\n"
    );
    assert_eq!(files[4].old_path.as_ref().unwrap().as_str(), "pure");
    assert_eq!(files[4].new_path.as_ref().unwrap().as_str(), "renamed");
    assert!(files[4].text.is_empty());
    assert!(files[5].old_path.is_none());
    assert_eq!(files[5].new_path.as_ref().unwrap().as_str(), "empty");
    assert_eq!(files[5].new_mode, Some(0o644));
}

#[test]
fn quoted_names() {
    let fd = one("diff --git \"a/t\\303\\251st \\\"q\\\"\" \"b/t\\303\\251st \\\"q\\\"\"\n--- \"a/t\\303\\251st \\\"q\\\"\"\n+++ \"b/t\\303\\251st \\\"q\\\"\"\n@@ -1 +1 @@\n-1\n+2\n");
    assert_eq!(fd.new_path.as_ref().unwrap().as_str(), "tést \"q\"");
    assert!(fd.text.starts_with("--- \"a/tést \\\"q\\\"\"\n"));
    assert_eq!(apply(&fd, "1\n"), "2\n");
}

#[test]
fn git_format_patch_mail_is_accepted() {
    let text = "\
From 1234 Mon Sep 17 00:00:00 2001
Subject: [PATCH] x
---
 x | 2 +-

diff --git a/x b/x
index 1..2 100644
--- a/x
+++ b/x
@@ -1 +1 @@
-1
+2
-- 
2.39.0
";
    assert_eq!(one(text).new_path.unwrap().as_str(), "x");
}

#[test]
fn rejections() {
    assert!(err("").contains("empty"));
    assert!(err("just some words\n").contains("touches no file"));
    assert!(
        err("diff --git a/x b/x\nindex 1..2\nBinary files a/x and b/x differ\n").contains("binary")
    );
    assert!(err("diff --git a/x b/x\nGIT binary patch\nliteral 0\n").contains("binary"));
    assert!(err("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n-1\n+2\n").contains("ends inside hunk"));
    assert!(err("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-1\n+2\n+3\n").contains("longer than"));
    assert!(err("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-1\n?2\n").contains("unexpected line"));
    assert!(err("--- a/x\n+++ b/x\n@@ bogus @@\n-1\n+2\n").contains("malformed hunk header"));
    assert!(err("--- a/x\n+++ b/x\n@@ -99999999999 +1 @@\n-1\n+2\n").contains("above"));
    assert!(err("--- a/x\n+++ b/x\n").contains("no hunks"));
    assert!(err("--- /dev/null\n+++ /dev/null\n@@ -0,0 +1 @@\n+a\n").contains("/dev/null"));
    assert!(err("--- x.orig\n+++ x\n@@ -1 +1 @@\n-1\n+2\n").contains("two different files"));
    assert!(err("--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-1\n+2\n").contains(".."));
    assert!(err("--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-1\n+2\n").contains("absolute"));
    assert!(err("@@ -1 +1 @@\n-1\n+2\n").contains("not inside any file"));
    assert!(err(
        "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+t\n"
    )
    .contains("symbolic"));
    assert!(err("diff --git a/x b/y\ncopy from x\ncopy to y\n").contains("copies"));
    assert!(err("diff --git a/x b/x\nindex 1..2 100644\n").contains("changes nothing"));
    assert!(
        err("diff --git a/x b/x\nnew file mode 100644\n--- a/x\n+++ b/x\n@@ -0,0 +1 @@\n+a\n")
            .contains("/dev/null")
    );
    // Hunks out of order: only diffy notices; its error is reported.
    let e = err("--- a/x\n+++ b/x\n@@ -5 +5 @@\n-1\n+2\n@@ -1 +1 @@\n-1\n+2\n");
    assert!(e.contains("file x") && e.contains("order"), "{e}");
    // Several broken files: each is reported.
    let e = split_diff("--- a/x\n+++ b/x\n@@ -1 +1 @@\n?\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n?\n")
        .unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn c_unquote_handles_escapes() {
    assert_eq!(
        c_unquote("\"a\\tb\\\\c\\\"d\\101\" rest").unwrap(),
        ("a\tb\\c\"dA".into(), " rest")
    );
    assert!(c_unquote("\"abc").is_err());
    assert!(c_unquote("\"\\777\"").is_err());
    assert!(c_unquote("\"\\q\"").is_err());
    assert!(c_unquote("\"\\377\"").is_err()); // not UTF-8
}
