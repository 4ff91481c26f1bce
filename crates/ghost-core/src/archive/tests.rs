use super::*;
use crate::config::Retention;
use crate::queue::EntryRecord;

const DAY: Duration = Duration::from_secs(24 * 3600);

struct Root {
    _d: tempfile::TempDir,
    config: Config,
    layout: Layout,
}

fn root() -> Root {
    let d = tempfile::tempdir().unwrap();
    let config = Config {
        root: d.path().to_path_buf(),
        ..Config::default()
    };
    let layout = Layout::new(d.path());
    layout.create(["default"]).unwrap();
    Root {
        _d: d,
        config,
        layout,
    }
}

fn age(p: &Path, by: Duration) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

/// A `done` entry with its record and both summary copies, aged `by`.
fn done_entry(r: &Root, id: &str, by: Duration) -> String {
    let q = r.layout.queue("default");
    let body = format!(r#"{{"id": "{id}", "operations": []}}"#);
    let name = q.enqueue(body.as_bytes()).unwrap();
    let rec = EntryRecord {
        patch_id: Some(id.into()),
        attempts: 1,
        ..EntryRecord::default()
    };
    q.transition(&name, QueueState::Pending, QueueState::Done, &rec)
        .unwrap();
    let s = r.layout.summaries("default");
    let b = r.layout.summary_backups("default");
    for (dir, ext) in [(&s, "json"), (&s, "md"), (&b, "json"), (&b, "md")] {
        let p = dir.join(format!("{name}.{ext}"));
        fs::durable_write(&p, format!("summary {ext} of {id}\n").as_bytes(), FILE_MODE).unwrap();
        age(&p, by);
    }
    age(&q.entry_path(QueueState::Done, &name), by);
    age(&q.record_path(QueueState::Done, &name), by);
    name
}

fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let k = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(k, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, &root.join("queue/default"), &mut out);
    walk(root, &root.join("summaries"), &mut out);
    out
}

fn index_lines(r: &Root) -> usize {
    groups(&r.layout)
        .iter()
        .flat_map(|g| {
            months(&r.layout, g)
                .into_iter()
                .map(move |m| (g.clone(), m))
        })
        .map(|(g, m)| read_index(&r.layout, &g, &m).unwrap().len())
        .sum()
}

#[test]
fn old_entries_move_with_their_summaries_and_come_back_byte_exact() {
    let r = root();
    let before_any = snapshot(r.layout.root());
    let old = done_entry(&r, "old", 31 * DAY);
    let fresh = done_entry(&r, "fresh", DAY);
    let with_old = snapshot(r.layout.root());

    let dry = run(&r.config, true).unwrap();
    assert_eq!(dry.items.len(), 1);
    assert_eq!(dry.items[0].name, old);
    assert_eq!(
        snapshot(r.layout.root()),
        with_old,
        "a dry run moves nothing"
    );

    let rep = run(&r.config, false).unwrap();
    assert_eq!(
        (rep.archived, rep.completed, rep.segments_written),
        (1, 0, 1)
    );
    assert_eq!(rep.files_removed, 6, "entry, record and four summary files");
    let q = r.layout.queue("default");
    assert_eq!(q.find(&old), None);
    assert_eq!(q.find(&fresh), Some(QueueState::Done));
    let left = snapshot(r.layout.root());
    assert!(left.keys().all(|k| !k.contains(&old)), "{left:?}");

    // Found by name and by patch id, and it says where it was.
    let by_name = find(&r.layout, &old).unwrap().unwrap();
    let by_id = find(&r.layout, "old").unwrap().unwrap();
    assert_eq!(by_name.line, by_id.line);
    assert_eq!(by_name.line.state, Some(QueueState::Done));
    assert_eq!(by_name.line.patch_id.as_deref(), Some("old"));
    assert!(holds(&r.layout, "default", &old));
    assert!(!holds(&r.layout, "default", &fresh));

    // A rerun writes nothing new.
    let again = run(&r.config, false).unwrap();
    assert_eq!(
        (again.archived, again.completed, again.segments_written),
        (0, 0, 0)
    );
    assert_eq!(index_lines(&r), 1);

    let written = extract(&r.layout, &by_name).unwrap();
    assert_eq!(written.len(), 6);
    assert_eq!(snapshot(r.layout.root()), with_old, "byte-exact");
    assert_ne!(before_any, with_old);
    // Extracting twice is harmless.
    assert!(extract(&r.layout, &by_name).unwrap().is_empty());
}

#[test]
fn forever_archives_nothing() {
    let mut r = root();
    r.config.retention.done = Retention::Forever;
    r.config.retention.summaries = Retention::Forever;
    done_entry(&r, "a", 3650 * DAY);
    let before = snapshot(r.layout.root());
    let rep = run(&r.config, false).unwrap();
    assert_eq!((rep.archived, rep.files_removed), (0, 0));
    assert_eq!(snapshot(r.layout.root()), before);
    assert!(!r.layout.archive().exists());
}

#[test]
fn a_target_override_wins_and_the_cycle_is_bounded() {
    let mut r = root();
    r.config.retention.max_per_cycle = 2;
    for i in 0..3 {
        done_entry(&r, &format!("e{i}"), 10 * DAY);
    }
    assert_eq!(run(&r.config, false).unwrap().archived, 0, "30d default");
    r.config.retention.targets.insert(
        "default".into(),
        crate::config::TargetRetention {
            done: Some(Retention::After(5 * DAY)),
            ..Default::default()
        },
    );
    let rep = run(&r.config, false).unwrap();
    assert_eq!((rep.archived, rep.more_due), (2, true));
    let rep = run(&r.config, false).unwrap();
    assert_eq!((rep.archived, rep.more_due), (1, false));
    assert_eq!(list(&r.layout, Some("default")).unwrap().len(), 3);
}

#[test]
fn a_run_stopped_while_removing_is_finished_without_a_second_copy() {
    let r = root();
    let a = done_entry(&r, "a", 40 * DAY);
    let b = done_entry(&r, "b", 40 * DAY);
    run(&r.config, false).unwrap();
    // The originals back (as if removal had not happened), one of them only
    // in part: the summary is already gone.
    for n in [&a, &b] {
        extract(&r.layout, &find(&r.layout, n).unwrap().unwrap()).unwrap();
    }
    std::fs::remove_file(r.layout.summaries("default").join(format!("{a}.md"))).unwrap();
    let q = r.layout.queue("default");
    for n in [&a, &b] {
        age(&q.record_path(QueueState::Done, n), 40 * DAY);
    }
    let rep = run(&r.config, false).unwrap();
    assert_eq!(
        (rep.archived, rep.completed, rep.segments_written),
        (0, 2, 0)
    );
    assert_eq!(q.find(&a), None);
    assert_eq!(index_lines(&r), 2, "no duplicate in the index");
}

#[test]
fn an_unindexed_segment_is_discarded_and_the_originals_archived_once() {
    let r = root();
    let a = done_entry(&r, "a", 40 * DAY);
    let month = name_month(&a).unwrap();
    let dir = r.layout.archive_month("default", &month);
    fs::ensure_dir(&dir).unwrap();
    fs::durable_write(
        &dir.join("leftover.jsonl.gz"),
        &gzip(b"{}\n").unwrap(),
        FILE_MODE,
    )
    .unwrap();
    // And a torn index line of that interrupted run.
    fs::durable_write(
        &r.layout.archive_index("default", &month),
        b"{\"name\": \"x",
        FILE_MODE,
    )
    .unwrap();
    let rep = run(&r.config, false).unwrap();
    assert_eq!((rep.archived, rep.segments_discarded), (1, 1));
    assert!(!dir.join("leftover.jsonl.gz").exists());
    assert_eq!(read_index(&r.layout, "default", &month).unwrap().len(), 1);
    assert!(find(&r.layout, "a").unwrap().is_some());
}

#[test]
fn orphan_summaries_and_old_alerts_are_archived_too() {
    let r = root();
    let name = crate::queue::new_name();
    let s = r.layout.summaries("default").join(format!("{name}.json"));
    fs::durable_write(&s, b"{}\n", FILE_MODE).unwrap();
    age(&s, 100 * DAY);
    fs::ensure_dir(&r.layout.alerts_inbox_done()).unwrap();
    let al = r.layout.alerts_inbox_done().join("a1.json");
    fs::durable_write(&al, b"{\"x\": 1}\n", FILE_MODE).unwrap();
    age(&al, 100 * DAY);
    let rep = run(&r.config, false).unwrap();
    assert_eq!(rep.archived, 2);
    assert!(!s.exists() && !al.exists());
    let all = list(&r.layout, None).unwrap();
    let kinds: Vec<Kind> = all.iter().map(|f| f.line.kind).collect();
    assert!(
        kinds.contains(&Kind::Summary) && kinds.contains(&Kind::Alert),
        "{kinds:?}"
    );
    let alert = all.iter().find(|f| f.group == ALERTS_GROUP).unwrap();
    extract(&r.layout, alert).unwrap();
    assert_eq!(std::fs::read(&al).unwrap(), b"{\"x\": 1}\n");
}

#[test]
fn a_tampered_path_is_refused_on_extract() {
    let r = root();
    assert!(under_root(&r.layout, "../etc/passwd").is_err());
    assert!(under_root(&r.layout, "/etc/passwd").is_err());
    assert!(under_root(&r.layout, "queue/default/done/x.json").is_ok());
}

#[test]
fn months_come_from_uuid_v7_names() {
    let n = crate::queue::new_name();
    assert_eq!(name_month(&n).unwrap(), month_of(SystemTime::now()));
    assert_eq!(name_month("hand-placed"), None);
    assert_eq!(month_of(SystemTime::UNIX_EPOCH), "1970-01");
}

fn index_text(r: &Root, name: &str) -> String {
    let month = name_month(name).unwrap();
    std::fs::read_to_string(r.layout.archive_index("default", &month)).unwrap()
}

#[test]
fn the_index_has_one_compact_line_per_item_and_paths_follow_from_the_name() {
    let r = root();
    let a = done_entry(&r, "compact", 40 * DAY);
    let q = r.layout.queue("default");
    let entry = rel(&r.layout, &q.entry_path(QueueState::Done, &a));
    run(&r.config, false).unwrap();
    let text = index_text(&r, &a);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("{\"v\":2,"), "{text}");
    // No path is spelled out: slots stand for them.
    assert!(
        !text.contains("queue/") && !text.contains("summaries/"),
        "{text}"
    );
    assert!(text.len() < 420, "{} bytes: {text}", text.len());
    let f = find(&r.layout, "compact").unwrap().unwrap();
    assert_eq!(f.line.files.len(), 6);
    assert_eq!(f.line.files.last().unwrap().path, entry);
    assert_eq!(f.line.ordinal, Some(0));
    assert!(f.line.archived_at.starts_with(&month_of(SystemTime::now())));
    assert_eq!(record(&r.layout, &f).unwrap().name, a);
}

#[test]
fn a_path_no_slot_describes_is_kept_whole() {
    let r = root();
    let line = IndexLine {
        name: "n1".into(),
        kind: Kind::Entry,
        state: Some(QueueState::Done),
        patch_id: None,
        segment: "2026-01/0193aaaa-0000-7000-8000-000000000000.jsonl.gz".into(),
        archived_at: String::new(),
        files: vec![
            FileRef {
                path: "queue/default/done/n1.json".into(),
                md5: "m1".into(),
            },
            FileRef {
                path: "elsewhere/odd:name".into(),
                md5: "m2".into(),
            },
        ],
        ordinal: Some(3),
    };
    let c = CompactLine::of(&r.layout, "default", &line);
    assert_eq!(c.f, vec!["entry:m1", "elsewhere/odd:name:m2"]);
    let back = c.expand(&r.layout, "default", "2026-01").unwrap();
    assert_eq!(back.files, line.files);
    assert_eq!(back.segment, line.segment);
    assert_eq!(back.ordinal, Some(3));
}

/// An index written by the first format (every path spelled out, no `v`) is
/// read, found, extracted from and completed against, also with lines of the
/// compact format after it in the same month.
#[test]
fn an_index_of_the_first_format_is_still_read() {
    let r = root();
    let a = done_entry(&r, "first-a", 40 * DAY);
    let b = done_entry(&r, "first-b", 40 * DAY);
    let with_ab = snapshot(r.layout.root());
    run(&r.config, false).unwrap();
    // Rewrite the index as the first format wrote it.
    let month = name_month(&a).unwrap();
    let path = r.layout.archive_index("default", &month);
    let mut old = Vec::new();
    for mut l in read_index(&r.layout, "default", &month).unwrap() {
        l.ordinal = None;
        serde_json::to_writer(&mut old, &l).unwrap();
        old.push(b'\n');
    }
    fs::durable_write(&path, &old, FILE_MODE).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\"files\":[{\"path\":\"queue/default/done/")
            || text.contains("\"files\":[{\"path\":\"summaries/"),
        "{text}"
    );
    assert!(!text.contains("\"v\":"), "{text}");
    // A third entry, archived now, appends a compact line after them.
    let c = done_entry(&r, "first-c", 40 * DAY);
    let rep = run(&r.config, false).unwrap();
    assert_eq!((rep.archived, rep.segments_discarded), (1, 0), "{rep:?}");
    assert_eq!(index_lines(&r), 3);
    for (key, name) in [("first-a", &a), ("first-b", &b), (c.as_str(), &c)] {
        let f = find(&r.layout, key).unwrap().unwrap();
        assert_eq!(&f.line.name, name);
        assert_eq!(f.line.files.len(), 6);
        record(&r.layout, &f).unwrap();
        assert!(holds(&r.layout, "default", name));
    }
    // Extract both old ones byte-exact; aged again, they are completed
    // against the old lines, not archived a second time.
    for n in [&a, &b] {
        extract(&r.layout, &find(&r.layout, n).unwrap().unwrap()).unwrap();
    }
    let mut now = snapshot(r.layout.root());
    now.retain(|k, _| !k.contains(&c));
    assert_eq!(now, with_ab, "byte-exact from the first format");
    let q = r.layout.queue("default");
    for n in [&a, &b] {
        age(&q.record_path(QueueState::Done, n), 40 * DAY);
    }
    let rep = run(&r.config, false).unwrap();
    assert_eq!((rep.archived, rep.completed), (0, 2), "{rep:?}");
    assert_eq!(index_lines(&r), 3);
}
