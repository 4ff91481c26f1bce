// Tests: fixtures are set up and damaged directly, not durably.
#![allow(clippy::disallowed_methods)]

use super::*;

fn setup(extra: &str) -> (tempfile::TempDir, Config) {
    let d = tempfile::tempdir().unwrap();
    let cfg = Config::from_toml(d.path(), extra, "test").unwrap();
    (d, cfg)
}

fn patch(id: &str, content: &str) -> Vec<u8> {
    format!(
        r#"{{"id": "{id}", "operations": [{{"op": "write", "path": "a.txt", "content": "{content}"}}]}}"#
    )
    .into_bytes()
}

fn pending(a: &Admission, target: &str) -> Vec<String> {
    a.layout().queue(target).list(QueueState::Pending).unwrap()
}

#[test]
fn queues_then_duplicate_then_conflict_with_records() {
    let (_d, cfg) = setup("");
    let a = Admission::new(&cfg).unwrap();
    let Outcome::Queued(q) = a.admit(&patch("p1", "x"), None) else {
        panic!()
    };
    assert_eq!(pending(&a, "default"), vec![q.name.clone()]);
    let rec = a
        .layout()
        .queue("default")
        .read_record(QueueState::Pending, &q.name)
        .unwrap();
    assert_eq!(rec.patch_id.as_deref(), Some("p1"));
    assert_eq!(rec.content_md5, crate::entry::stored_md5(&patch("p1", "x")));
    // The same content with a byte order mark and other spacing is the same patch.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(&patch("p1", "x"));
    bom.extend_from_slice(b"\n\n");
    match a.admit(&bom, None) {
        Outcome::Duplicate(d) => assert_eq!(d, q),
        o => panic!("{o:?}"),
    }
    match a.admit(&patch("p1", "y"), None) {
        Outcome::Conflict { existing, id } => {
            assert_eq!(existing, q);
            assert!(conflict_reason(&id, &existing).contains("as a new patch"));
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(pending(&a, "default").len(), 1);
    // Nothing is left behind by the refused ones.
    let q_dir = a.layout().queue("default");
    assert_eq!(std::fs::read_dir(q_dir.tmp_dir()).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(q_dir.dir(QueueState::Pending))
            .unwrap()
            .count(),
        2,
        "the entry and its record"
    );
}

#[test]
fn two_admissions_over_one_root_agree_and_a_restart_changes_nothing() {
    let (_d, cfg) = setup("");
    let a = Admission::new(&cfg).unwrap();
    let b = Admission::new(&cfg).unwrap();
    let anon = br#"{"operations": [{"op": "delete", "path": "z"}]}"#;
    let Outcome::Queued(q) = a.admit(anon, None) else {
        panic!()
    };
    assert!(q.id.starts_with("patch-"));
    assert!(matches!(b.admit(anon, None), Outcome::Duplicate(d) if d == q));
    let c = Admission::new(&cfg).unwrap();
    assert!(matches!(c.admit(anon, None), Outcome::Duplicate(d) if d == q));
}

#[test]
fn rejects_what_is_too_big_or_invalid() {
    let (_d, cfg) = setup("[bridge]\nmax_patch_bytes = 100\n");
    let a = Admission::new(&cfg).unwrap();
    match a.admit(&[b' '; 101], None) {
        Outcome::Rejected(e) => assert!(e.to_string().contains("max_patch_bytes"), "{e}"),
        o => panic!("{o:?}"),
    }
    match a.admit(br#"{"operations": []}"#, None) {
        Outcome::Rejected(e) => assert_eq!(e.errors[0].field, "operations"),
        o => panic!("{o:?}"),
    }
    assert!(pending(&a, "default").is_empty());
}

#[test]
fn the_high_water_mark_is_exact_under_concurrency() {
    let (_d, cfg) = setup("[bridge]\nhigh_water_mark = 7\n");
    let a = Admission::new(&cfg).unwrap();
    let threads: Vec<_> = (0..40)
        .map(|i| {
            // One admission each, as separate processes would have.
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                Admission::new(&cfg)
                    .unwrap()
                    .admit(&patch(&format!("h{i}"), "x"), None)
            })
        })
        .collect();
    let (mut queued, mut full) = (0, 0);
    for t in threads {
        match t.join().unwrap() {
            Outcome::Queued(_) => queued += 1,
            Outcome::Full { depth, .. } => {
                assert_eq!(depth, 7);
                full += 1
            }
            o => panic!("{o:?}"),
        }
    }
    assert_eq!((queued, full), (7, 33));
    assert_eq!(pending(&a, "default").len(), 7);
    // A refused id is free: once there is room it is queued.
    let q = a.layout().queue("default");
    let first = pending(&a, "default").remove(0);
    q.transition(
        &first,
        QueueState::Pending,
        QueueState::Held,
        &EntryRecord::default(),
    )
    .unwrap();
    let refused = (0..40)
        .map(|i| format!("h{i}"))
        .find(|id| ids::lookup(a.layout(), id).unwrap().is_none())
        .unwrap();
    assert!(matches!(
        a.admit(&patch(&refused, "x"), None),
        Outcome::Queued(_)
    ));
}

#[test]
fn one_id_raced_from_many_admitters_and_two_targets_is_queued_once() {
    let (_d, cfg) = setup("[targets.default]\n[targets.web]\n");
    let threads: Vec<_> = (0..24)
        .map(|i| {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let target = if i % 2 == 0 { "default" } else { "web" };
                Admission::new(&cfg)
                    .unwrap()
                    .admit(&patch("same", "x"), Some(target))
            })
        })
        .collect();
    let mut queued = 0;
    for t in threads {
        match t.join().unwrap() {
            Outcome::Queued(_) => queued += 1,
            Outcome::Duplicate(_) => {}
            o => panic!("{o:?}"),
        }
    }
    assert_eq!(queued, 1);
    let a = Admission::new(&cfg).unwrap();
    assert_eq!(pending(&a, "default").len() + pending(&a, "web").len(), 1);
}

#[test]
fn a_record_without_its_entry_is_taken_over() {
    let (_d, cfg) = setup("");
    let a = Admission::new(&cfg).unwrap();
    let Outcome::Queued(q) = a.admit(&patch("gone", "x"), None) else {
        panic!()
    };
    // Removed by hand (or a crash between the record and the entry's rename).
    let path = a
        .layout()
        .queue("default")
        .entry_path(QueueState::Pending, &q.name);
    std::fs::remove_file(path).unwrap();
    let Outcome::Queued(again) = a.admit(&patch("gone", "other"), None) else {
        panic!()
    };
    assert_ne!(again.name, q.name);
    assert_eq!(
        ids::read(a.layout(), "gone").unwrap().unwrap().name,
        again.name
    );
    assert!(matches!(
        a.admit(&patch("gone", "other"), None),
        Outcome::Duplicate(_)
    ));
}

#[test]
fn an_older_root_keeps_its_duplicates() {
    let (_d, cfg) = setup("");
    let layout = Layout::new(&cfg.root);
    layout.create(["default"]).unwrap();
    // Written by the older layout: an entry and no id index.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(&patch("old", "x"));
    let name = layout.queue("default").enqueue(&bom).unwrap();
    assert!(!layout.ids().exists());
    let a = Admission::new(&cfg).unwrap();
    match a.admit(&patch("old", "x"), None) {
        Outcome::Duplicate(d) => assert_eq!(d.name, name),
        o => panic!("{o:?}"),
    }
}

#[test]
fn a_patch_over_a_work_limit_is_refused_at_the_door_naming_it() {
    let (_d, cfg) = setup("[limits]\nmax_regex_operations = 2\n");
    let a = Admission::new(&cfg).unwrap();
    let ops: Vec<String> = (0..3)
        .map(|_| r#"{"op": "regex", "path": "a.txt", "pattern": "a", "replacement": "aa"}"#.into())
        .collect();
    let doc = format!(r#"{{"id": "bomb", "operations": [{}]}}"#, ops.join(","));
    match a.admit(doc.as_bytes(), None) {
        Outcome::Rejected(e) => {
            assert!(e.to_string().contains("limits.max_regex_operations"), "{e}")
        }
        o => panic!("{o:?}"),
    }
    assert!(pending(&a, "default").is_empty());
}

#[test]
fn an_archived_id_is_still_a_duplicate_or_a_conflict() {
    let (_d, cfg) = setup("[retention]\ndone = \"1s\"\n");
    let a = Admission::new(&cfg).unwrap();
    let Outcome::Queued(q) = a.admit(&patch("old", "x"), None) else {
        panic!()
    };
    let queue = a.layout().queue("default");
    queue
        .transition(
            &q.name,
            QueueState::Pending,
            QueueState::Done,
            &Default::default(),
        )
        .unwrap();
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for p in [
        queue.entry_path(QueueState::Done, &q.name),
        queue.record_path(QueueState::Done, &q.name),
    ] {
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(past).unwrap();
    }
    assert_eq!(crate::archive::run(&cfg, false).unwrap().archived, 1);
    assert_eq!(queue.find(&q.name), None);
    match a.admit(&patch("old", "x"), None) {
        Outcome::Duplicate(d) => assert_eq!(d, q),
        o => panic!("{o:?}"),
    }
    match a.admit(&patch("old", "other"), None) {
        Outcome::Conflict { existing, .. } => assert_eq!(existing, q),
        o => panic!("{o:?}"),
    }
    assert!(pending(&a, "default").is_empty());
}

mod stored_id_props {
    //! Through the store path: whatever admission writes, the id read back
    //! from the stored bytes (what the id index, the lookups and the executor
    //! use) is the id the parser gave and the one the caller was answered.

    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::patch::parse::parse_patch;

    /// A native or legacy document with or without `id`/`blockId`; a few
    /// contents, so that the same id comes again with the same or other content.
    fn document() -> impl Strategy<Value = Value> {
        let id = || {
            prop::option::of(prop_oneof![
                Just(Value::String(String::new())),
                "[a-c]{1,2}".prop_map(Value::String),
                "\\PC{1,6}".prop_map(Value::String),
                Just(json!(7)),
            ])
        };
        (any::<bool>(), id(), id(), 0u8..3).prop_map(|(legacy, id, block, n)| {
            let mut d = if legacy {
                json!({"mutations": [{"path": "/old/app/a.txt", "contents": format!("{n}\n")}]})
            } else {
                json!({"operations": [{"op": "write", "path": "a.txt", "content": format!("{n}\n")}]})
            };
            let obj = d.as_object_mut().unwrap();
            if let Some(id) = id {
                obj.insert("id".into(), id);
            }
            if let Some(b) = block {
                obj.insert("blockId".into(), b);
            }
            d
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_stored_id_is_the_parsed_and_answered_id(
            docs in prop::collection::vec((document(), any::<bool>(), any::<bool>()), 1..6)
        ) {
            let (_d, cfg) = setup("[targets.default]\nlegacy_root = \"/old/app\"\n");
            let a = Admission::new(&cfg).unwrap();
            let specs = cfg.target_specs();
            let q = a.layout().queue("default");
            for (doc, pretty, bom) in docs {
                let mut bytes = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
                bytes.extend(if pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }.unwrap());
                let parsed = parse_patch(&bytes, &ParseOptions { targets: &specs, target_override: None });
                match a.admit(&bytes, None) {
                    Outcome::Queued(got) | Outcome::Duplicate(got) => {
                        let parsed = parsed.expect("admitted, so parsed");
                        prop_assert_eq!(&got.id, &parsed.id);
                        let stored = std::fs::read(q.entry_path(QueueState::Pending, &got.name)).unwrap();
                        prop_assert_eq!(crate::entry::stored_id(&stored), Some(parsed.id.clone()));
                        let rec = q.read_record(QueueState::Pending, &got.name).unwrap();
                        prop_assert_eq!(rec.patch_id, Some(parsed.id.clone()));
                        let index = ids::read(a.layout(), &parsed.id).unwrap().expect("indexed");
                        prop_assert_eq!(index.name, got.name);
                    }
                    Outcome::Conflict { id, .. } => prop_assert_eq!(Some(id), parsed.ok().map(|p| p.id)),
                    Outcome::Rejected(_) => prop_assert!(parsed.is_err()),
                    o => prop_assert!(false, "{:?}", o),
                }
            }
            // Every stored entry: its bytes' id is its record's and the index's.
            for name in pending(&a, "default") {
                let stored = std::fs::read(q.entry_path(QueueState::Pending, &name)).unwrap();
                let id = crate::entry::stored_id(&stored).expect("a stored entry has an id");
                let rec = q.read_record(QueueState::Pending, &name).unwrap();
                prop_assert_eq!(rec.patch_id.as_deref(), Some(id.as_str()));
                prop_assert_eq!(ids::read(a.layout(), &id).unwrap().map(|r| r.name), Some(name));
            }
        }
    }
}
