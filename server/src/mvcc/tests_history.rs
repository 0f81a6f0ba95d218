//! Store tests: compaction, events, hash, reopen, concurrent readers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use raftcd_proto::etcdserverpb::request_op::Request;
use raftcd_proto::etcdserverpb::{DeleteRangeRequest, RangeRequest, RequestOp, TxnRequest};
use raftcd_proto::mvccpb::event::EventType;

use super::tests::{apply, del, get, keys, new_store, put, put_op, put_req, rreq};
use super::{Store, P_HIST, P_REV};
use crate::error::Error;

fn count_prefix(s: &Store, prefix: u8) -> usize {
    s.inner.tree().scan_prefix([prefix]).count()
}

#[test]
fn compact_errors_and_reads_around_compaction() {
    let (s, _db) = new_store();
    for v in ["a", "b", "c"] {
        put(&s, "k", v); // revs 2, 3, 4
    }
    del(&s, "k", ""); // 5
    put(&s, "k", "d"); // 6
    put(&s, "j", "x"); // 7
    assert_eq!(apply(&s, |w| w.compact(8)).0, Err(Error::FutureRevision));
    let snapshot = |s: &Store| -> Vec<Vec<String>> {
        (4..=7).map(|rev| keys(&s.range(&rreq(b"\0", b"\0", rev)).unwrap())).collect()
    };
    let before = snapshot(&s);
    let (r, c) = apply(&s, |w| w.compact(4));
    r.unwrap();
    assert_eq!((c.revision, s.compact_revision(), s.pending_compaction()), (7, 4, Some(4)));
    assert_eq!(apply(&s, |w| w.compact(4)).0, Err(Error::Compacted));
    assert_eq!(apply(&s, |w| w.compact(3)).0, Err(Error::Compacted));
    assert_eq!(s.range(&rreq(b"k", b"", 3)), Err(Error::Compacted));
    assert_eq!(s.events(3, 0, b"k", b"", 0), Err(Error::Compacted));
    assert_eq!(snapshot(&s), before);
    s.compact_physical(4).unwrap();
    assert_eq!(s.pending_compaction(), None);
    assert_eq!(snapshot(&s), before);
    assert_eq!(get(&s, "k", 4).unwrap().value, b"c");
    assert_eq!(get(&s, "k", 5), None);
    assert_eq!(s.range(&rreq(b"k", b"", 3)), Err(Error::Compacted));
}

#[test]
fn physical_compaction_removes_superseded_history_and_is_idempotent() {
    let (s, _db) = new_store();
    put(&s, "foo", "a"); // 2
    put(&s, "foo", "b"); // 3
    del(&s, "foo", ""); // 4
    put(&s, "foo", "c"); // 5
    put(&s, "bar", "a"); // 6
    put(&s, "bar", "b"); // 7
    put(&s, "baz", "a"); // 8
    del(&s, "baz", ""); // 9
    assert_eq!(count_prefix(&s, P_HIST), 8);
    let all = |s: &Store, rev| keys(&s.range(&rreq(b"\0", b"\0", rev)).unwrap()).concat();
    apply(&s, |w| w.compact(4)).0.unwrap();
    s.compact_physical(4).unwrap();
    // foo: @2 @3 superseded, @4 a tombstone; keeps @5. bar @6 @7, baz @8 @9 untouched.
    assert_eq!(count_prefix(&s, P_HIST), 5);
    assert_eq!(count_prefix(&s, P_REV), 6, "log entries below 4 are gone, 4..9 stay");
    assert_eq!(all(&s, 4), "");
    assert_eq!(all(&s, 8), "barbazfoo");
    s.compact_physical(4).unwrap();
    assert_eq!(count_prefix(&s, P_HIST), 5);
    let size = s.size_on_disk();
    apply(&s, |w| w.compact(9)).0.unwrap();
    s.compact_physical(9).unwrap();
    // foo @5 and bar @7 stay; baz is gone.
    assert_eq!(count_prefix(&s, P_HIST), 2);
    assert!(s.size_on_disk() < size);
    // The log entry of the compaction revision itself stays so a watch from 9 sees the delete.
    assert_eq!(count_prefix(&s, P_REV), 1);
    let evs = s.events(9, 0, b"\0", b"\0", 0).unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].r#type, EventType::Delete as i32);
    assert_eq!(evs[0].kv.as_ref().unwrap().mod_revision, 9);
    assert_eq!(all(&s, 9), "barfoo");
    s.compact_physical(9).unwrap();
    assert_eq!(count_prefix(&s, P_HIST), 2);
    // A later compaction cleans the log entry left at 9.
    put(&s, "foo", "d"); // 10
    apply(&s, |w| w.compact(10)).0.unwrap();
    s.compact_physical(10).unwrap();
    assert_eq!((count_prefix(&s, P_HIST), count_prefix(&s, P_REV)), (2, 1));
    assert_eq!(get(&s, "foo", 10).unwrap().value, b"d");
    assert_eq!(get(&s, "bar", 10).unwrap().value, b"b");
}

#[test]
fn physical_compaction_spans_many_chunks() {
    let (s, _db) = new_store();
    for i in 0..2500 {
        apply(&s, |w| {
            w.put(&put_req("hot", &i.to_string()))?;
            w.put(&put_req(&format!("cold{:02}", i % 50), &i.to_string()))
        })
        .0
        .unwrap();
    }
    let c = 2400;
    let at = |rev| keys(&s.range(&rreq(b"\0", b"\0", rev)).unwrap()).len();
    assert_eq!(at(c), 51);
    apply(&s, |w| w.compact(c)).0.unwrap();
    s.compact_physical(c).unwrap();
    // hot: the record at 2400 plus the 101 above it; each cold key: its newest <= 2400 plus those above.
    let above = (2501 - c) as usize;
    assert_eq!(count_prefix(&s, P_HIST), (1 + above) + 50 + above);
    assert_eq!(get(&s, "hot", c).unwrap().value, (c - 2).to_string().as_bytes());
    assert_eq!(get(&s, "hot", c).unwrap().version, c - 1);
    assert_eq!(at(c), 51);
}

#[test]
fn events_order_prev_kv_filter_and_limits() {
    let (s, _db) = new_store();
    put(&s, "a", "1"); // 2
    put(&s, "b", "1"); // 3
    put(&s, "a", "2"); // 4
    let txn = TxnRequest { success: vec![put_op("a", "3"), put_op("c", "1"), put_op("b", "2")], ..Default::default() };
    apply(&s, |w| w.txn(&txn)).0.unwrap(); // 5
    del(&s, "a", ""); // 6
    let evs = s.events(2, 0, b"\0", b"\0", 0).unwrap();
    let summary: Vec<(i64, String, i32, Option<String>)> = evs
        .iter()
        .map(|e| {
            let kv = e.kv.clone().unwrap();
            let prev = e.prev_kv.as_ref().map(|p| String::from_utf8_lossy(&p.value).into_owned());
            (kv.mod_revision, String::from_utf8_lossy(&kv.key).into_owned(), e.r#type, prev)
        })
        .collect();
    let (p, d) = (EventType::Put as i32, EventType::Delete as i32);
    assert_eq!(
        summary,
        vec![
            (2, "a".to_string(), p, None),
            (3, "b".into(), p, None),
            (4, "a".into(), p, Some("1".into())),
            (5, "a".into(), p, Some("2".into())),
            (5, "c".into(), p, None),
            (5, "b".into(), p, Some("1".into())),
            (6, "a".into(), d, Some("3".into())),
        ]
    );
    assert_eq!(evs[6].kv.as_ref().unwrap().version, 0);
    // Ranges, single keys, bounds.
    assert_eq!(s.events(2, 0, b"a", b"", 0).unwrap().len(), 4);
    assert_eq!(s.events(2, 0, b"b", b"c", 0).unwrap().len(), 2);
    assert_eq!(s.events(2, 0, b"b", b"\0", 0).unwrap().len(), 3);
    assert_eq!(s.events(4, 5, b"\0", b"\0", 0).unwrap().len(), 4);
    assert_eq!(s.events(7, 0, b"\0", b"\0", 0).unwrap().len(), 0);
    assert_eq!(s.events(3, 99, b"\0", b"\0", 0).unwrap().len(), 6);
    // max_events never splits a revision.
    assert_eq!(s.events(2, 0, b"\0", b"\0", 1).unwrap().len(), 1);
    assert_eq!(s.events(2, 0, b"\0", b"\0", 4).unwrap().len(), 6);
    assert_eq!(s.events(4, 0, b"\0", b"\0", 1).unwrap().len(), 1);
    assert_eq!(s.events(5, 0, b"\0", b"\0", 2).unwrap().len(), 3);
    // Compaction: below it is an error, at it is fine.
    apply(&s, |w| w.compact(4)).0.unwrap();
    s.compact_physical(4).unwrap();
    assert_eq!(s.events(3, 0, b"\0", b"\0", 0), Err(Error::Compacted));
    let evs = s.events(4, 0, b"\0", b"\0", 0).unwrap();
    assert_eq!(evs.len(), 5);
    assert_eq!(evs[0].prev_kv, None, "the version before the compaction revision is gone");
    assert_eq!(evs[1].prev_kv.as_ref().unwrap().value, b"2");
}

fn history(s: &Store, compact: Option<i64>, last_value: &str) {
    put(s, "a", "1");
    put(s, "b", "1");
    put(s, "a", "2");
    del(s, "b", "");
    put(s, "c", "1");
    if let Some(c) = compact {
        apply(s, |w| w.compact(c)).0.unwrap();
    }
    put(s, "a", last_value);
}

#[test]
fn hash_depends_on_logical_state_only() {
    let (s1, _d1) = new_store();
    let (s2, _d2) = new_store();
    let (s3, _d3) = new_store();
    history(&s1, Some(5), "3");
    history(&s2, Some(5), "3");
    history(&s3, Some(5), "other");
    s1.compact_physical(5).unwrap();
    let h1 = s1.hash_kv(0).unwrap();
    assert_eq!(h1.1, 5);
    assert_eq!(h1.2, 7);
    assert_eq!(h1, s2.hash_kv(0).unwrap(), "physical compaction progress must not matter");
    assert_eq!(s1.hash_kv(6).unwrap(), s2.hash_kv(6).unwrap());
    assert_ne!(s1.hash_kv(6).unwrap(), h1);
    assert_eq!(s1.hash_kv(6).unwrap(), s3.hash_kv(6).unwrap());
    assert_ne!(h1.0, s3.hash_kv(0).unwrap().0);
    assert_eq!(s1.hash_kv(4), Err(Error::Compacted));
    assert_eq!(s1.hash_kv(8), Err(Error::FutureRevision));
    // Without any compaction the hash still changes with every revision.
    let (s4, _d4) = new_store();
    history(&s4, None, "3");
    assert_ne!(s4.hash_kv(6).unwrap().0, s4.hash_kv(7).unwrap().0);
}

#[test]
fn reopen_restores_revision_compaction_index_and_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = crate::db_dir::reopen(dir.path());
        let s = Store::open(db.open_tree("state").unwrap()).unwrap();
        history(&s, Some(4), "3");
        apply(&s, |w| {
            w.set_meta(b"member", Some(b"m1".to_vec()));
            Ok(())
        })
        .0
        .unwrap();
        assert_eq!(s.pending_compaction(), Some(4));
        db.flush().unwrap();
    }
    let db = crate::db_dir::reopen(dir.path());
    let s = Store::open(db.open_tree("state").unwrap()).unwrap();
    assert_eq!((s.current_revision(), s.compact_revision(), s.applied_index()), (7, 4, 8));
    assert_eq!(s.pending_compaction(), Some(4));
    assert_eq!(s.key_count().unwrap(), 2);
    assert_eq!(s.get_meta(b"member").unwrap(), Some(b"m1".to_vec()));
    assert_eq!(get(&s, "a", 0).unwrap().version, 3);
    assert_eq!(get(&s, "a", 4).unwrap().value, b"2");
    s.compact_physical(4).unwrap();
    assert_eq!(s.pending_compaction(), None);
    assert_eq!(put(&s, "d", "1"), 8);
}

#[test]
fn reload_after_the_tree_was_replaced() {
    let (src, _d1) = new_store();
    history(&src, Some(4), "3");
    let (dst, _d2) = new_store();
    put(&dst, "stale", "x");
    let tree = &dst.inner.tree();
    let paused = dst.pause_compaction();
    tree.clear().unwrap();
    for item in src.inner.tree().iter() {
        let (k, v) = item.unwrap();
        tree.insert(k, v).unwrap();
    }
    dst.reload(&paused).unwrap();
    drop(paused);
    assert_eq!(
        (dst.current_revision(), dst.compact_revision(), dst.applied_index()),
        (src.current_revision(), src.compact_revision(), src.applied_index())
    );
    assert_eq!(dst.pending_compaction(), Some(4));
    assert_eq!(dst.key_count().unwrap(), src.key_count().unwrap());
    assert_eq!(dst.hash_kv(0).unwrap(), src.hash_kv(0).unwrap());
    assert_eq!(get(&dst, "stale", 0), None);
    assert_eq!(put(&dst, "d", "1"), src.current_revision() + 1);
}

/// A writer moves one value back and forth between two keys, one txn per move, while physical compaction
/// runs; readers must always see exactly one of the two keys, at whatever revision they read.
#[test]
fn concurrent_readers_never_see_a_torn_state() {
    let (s, _db) = new_store();
    put(&s, "left", "0");
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for t in 0..3 {
        let (s, stop) = (s.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let rev = if t == 2 { (s.current_revision() - 3).max(2) } else { 0 };
                let req = RangeRequest { revision: rev, ..rreq(b"left", b"rightz", 0) };
                match s.range(&req) {
                    Ok(r) => {
                        assert_eq!((r.count, r.kvs.len()), (1, 1), "torn read: {r:?}");
                        assert!(r.kvs[0].mod_revision <= r.header.unwrap().revision);
                        reads += 1;
                    }
                    Err(Error::Compacted) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            reads
        }));
    }
    let compactor = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(c) = s.pending_compaction() {
                    s.compact_physical(c).unwrap();
                }
                std::thread::yield_now();
            }
        })
    };
    let del_op = |k: &str| RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest { key: k.into(), ..Default::default() })),
    };
    for i in 1..=1500 {
        let (from, to) = if i % 2 == 1 { ("left", "right") } else { ("right", "left") };
        let txn = TxnRequest { success: vec![del_op(from), put_op(to, &i.to_string())], ..Default::default() };
        apply(&s, |w| w.txn(&txn)).0.unwrap();
        if i % 50 == 0 {
            let c = s.current_revision() - 5;
            apply(&s, |w| w.compact(c)).0.unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    compactor.join().unwrap();
    assert!(reads > 0);
    if let Some(c) = s.pending_compaction() {
        s.compact_physical(c).unwrap();
    }
    // Only the live key's newest version plus the few revisions above the last compaction remain.
    assert!(count_prefix(&s, P_HIST) <= 12, "{}", count_prefix(&s, P_HIST));
    assert_eq!(keys(&s.range(&rreq(b"left", b"rightz", 0)).unwrap()), ["left"]);
}
