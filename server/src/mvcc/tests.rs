//! Store tests: revisions, versions, Range semantics; the helpers shared by the other test files.

use raftcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use raftcd_proto::etcdserverpb::request_op::Request;
use raftcd_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest};
use raftcd_proto::mvccpb::KeyValue;

use super::{Committed, Store, WriteTxn};
use crate::error::{Error, Result};

/// Leases 100 and 200 exist; nothing else does.
pub(crate) fn leases(l: i64) -> bool {
    l == 100 || l == 200
}

pub(crate) fn new_store() -> (Store, sled::Db) {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let store = Store::open(db.open_tree("state").unwrap()).unwrap();
    (store, db)
}

/// Runs `f` in the write transaction of the next raft index and commits it.
pub(crate) fn apply<T>(s: &Store, f: impl FnOnce(&mut WriteTxn<'_>) -> Result<T>) -> (Result<T>, Committed) {
    let lease_exists = leases;
    let mut w = s.begin(s.applied_index() + 1, &lease_exists);
    let r = f(&mut w);
    (r, w.commit().unwrap())
}

pub(crate) fn put_req(k: &str, v: &str) -> PutRequest {
    PutRequest { key: k.into(), value: v.into(), ..Default::default() }
}

pub(crate) fn put(s: &Store, k: &str, v: &str) -> i64 {
    apply(s, |w| w.put(&put_req(k, v))).0.unwrap();
    s.current_revision()
}

pub(crate) fn del(s: &Store, k: &str, end: &str) -> i64 {
    let req = DeleteRangeRequest { key: k.into(), range_end: end.into(), ..Default::default() };
    apply(s, |w| w.delete_range(&req)).0.unwrap().deleted
}

pub(crate) fn rreq(k: &[u8], end: &[u8], rev: i64) -> RangeRequest {
    RangeRequest { key: k.to_vec(), range_end: end.to_vec(), revision: rev, ..Default::default() }
}

pub(crate) fn keys(resp: &RangeResponse) -> Vec<String> {
    resp.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
}

/// The key at `rev` (0 = current), through `Store::range`.
pub(crate) fn get(s: &Store, k: &str, rev: i64) -> Option<KeyValue> {
    let resp = s.range(&rreq(k.as_bytes(), b"", rev)).unwrap();
    assert!(resp.kvs.len() <= 1);
    resp.kvs.into_iter().next()
}

pub(crate) fn put_op(k: &str, v: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestPut(put_req(k, v))) }
}

/// Runs `req` at the current revision three ways (streaming, one key at a time, and inside a write
/// transaction, which merges its own buffered writes) and, after one unrelated write, at the same
/// revision as an older one: all must agree.
fn both_paths(s: &Store, req: &RangeRequest) -> RangeResponse {
    let latest = s.range(&RangeRequest { revision: 0, ..req.clone() }).unwrap();
    let explicit = s.range(&RangeRequest { revision: s.current_revision(), ..req.clone() }).unwrap();
    assert_eq!(latest, explicit);
    let rev = s.current_revision();
    let range = super::KeyRange::new(&req.key, &req.range_end);
    let careful =
        super::store::build_range(req, rev, &mut |visit| super::scan::scan_at_careful(&s.tree(), range, rev, visit))
            .unwrap();
    assert_eq!((&latest.kvs, latest.count, latest.more), (&careful.kvs, careful.count, careful.more), "{req:?}");
    let in_txn = apply(s, |w| w.range(&RangeRequest { revision: 0, ..req.clone() })).0.unwrap();
    assert_eq!((&latest.kvs, latest.count, latest.more), (&in_txn.kvs, in_txn.count, in_txn.more), "{req:?}");
    put(s, "\u{7f}unrelated", "x");
    let hist = s.range(&RangeRequest { revision: rev, ..req.clone() }).unwrap();
    assert_eq!(latest.kvs, hist.kvs, "latest and older-revision reads differ for {req:?}");
    assert_eq!((latest.count, latest.more), (hist.count, hist.more));
    apply(s, |w| w.delete_range(&DeleteRangeRequest { key: "\u{7f}unrelated".into(), ..Default::default() }))
        .0
        .unwrap();
    latest
}

#[test]
fn revisions_start_at_one_and_count_write_requests() {
    let (s, _db) = new_store();
    assert_eq!((s.current_revision(), s.compact_revision(), s.applied_index()), (1, 0, 0));
    assert_eq!(put(&s, "a", "1"), 2);
    // A txn with two writes is one revision, sub revisions 0 and 1.
    let txn = TxnRequest { success: vec![put_op("b", "1"), put_op("c", "1")], ..Default::default() };
    let (resp, c) = apply(&s, |w| w.txn(&txn));
    assert_eq!(resp.unwrap().header.unwrap().revision, 3);
    assert_eq!(c.revision, 3);
    assert_eq!(c.events.len(), 2);
    assert_eq!(get(&s, "b", 0).unwrap().mod_revision, 3);
    assert_eq!(get(&s, "c", 0).unwrap().mod_revision, 3);
    // Read-only txn and an empty delete: no revision, but the index is applied.
    let ro = TxnRequest {
        success: vec![RequestOp { request: Some(Request::RequestRange(rreq(b"a", b"", 0))) }],
        ..Default::default()
    };
    let (resp, c) = apply(&s, |w| w.txn(&ro));
    assert_eq!(resp.unwrap().header.unwrap().revision, 3);
    assert_eq!((c.revision, c.events.len()), (3, 0));
    let (resp, c) = apply(&s, |w| w.delete_range(&DeleteRangeRequest { key: "zz".into(), ..Default::default() }));
    assert_eq!(resp.unwrap().header.unwrap().revision, 3);
    assert_eq!((c.revision, c.events.len()), (3, 0));
    assert_eq!(s.current_revision(), 3);
    assert_eq!(s.applied_index(), 4);
    // Deleting two keys is one revision.
    assert_eq!(del(&s, "b", "d"), 2);
    assert_eq!(s.current_revision(), 4);
    assert_eq!(s.key_count().unwrap(), 1);
}

#[test]
fn worked_example_versions_and_reads_at_every_revision() {
    let (s, _db) = new_store();
    assert_eq!(put(&s, "foo", "a"), 2);
    assert_eq!(put(&s, "foo", "b"), 3);
    assert_eq!(del(&s, "foo", ""), 1);
    assert_eq!(put(&s, "foo", "c"), 5);
    let at = |rev| get(&s, "foo", rev).map(|kv| (kv.value, kv.create_revision, kv.mod_revision, kv.version));
    assert_eq!(at(1), None);
    assert_eq!(at(2), Some((b"a".to_vec(), 2, 2, 1)));
    assert_eq!(at(3), Some((b"b".to_vec(), 2, 3, 2)));
    assert_eq!(at(4), None);
    assert_eq!(at(5), Some((b"c".to_vec(), 5, 5, 1)));
    assert_eq!(at(0), at(5));
    assert_eq!(s.range(&rreq(b"foo", b"", 6)), Err(Error::FutureRevision));
    let resp = s.range(&rreq(b"foo", b"", 3)).unwrap();
    assert_eq!(resp.header.unwrap().revision, 5, "the header carries the store revision, as etcd");
    assert_eq!(s.range(&rreq(b"foo", b"", 0)).unwrap().header.unwrap().revision, 5);
}

#[test]
fn range_end_forms() {
    let (s, _db) = new_store();
    for k in ["a", "ab", "abc", "b", "c"] {
        put(&s, k, "v");
    }
    put(&s, "a\0", "nul");
    let q = |k: &[u8], end: &[u8]| keys(&both_paths(&s, &rreq(k, end, 0)));
    assert_eq!(q(b"ab", b""), ["ab"]);
    assert_eq!(q(b"ab", b"ac"), ["ab", "abc"]);
    assert_eq!(q(b"a", b"b"), ["a", "a\0", "ab", "abc"]);
    assert_eq!(q(b"b", b"\0"), ["b", "c"]);
    assert_eq!(q(b"\0", b"\0"), ["a", "a\0", "ab", "abc", "b", "c"]);
    assert_eq!(q(b"c", b"a"), Vec::<String>::new());
    assert_eq!(q(b"zz", b""), Vec::<String>::new());
    assert_eq!(q(b"", b""), Vec::<String>::new());
    assert_eq!(q(b"", b"\0").len(), 6);
}

#[test]
fn limit_more_and_count() {
    let (s, _db) = new_store();
    for k in ["a", "b", "c", "d", "e"] {
        put(&s, k, "v");
    }
    let with = |limit| both_paths(&s, &RangeRequest { limit, ..rreq(b"a", b"\0", 0) });
    let r = with(2);
    assert_eq!((keys(&r), r.more, r.count), (vec!["a".to_string(), "b".into()], true, 5));
    let r = with(5);
    assert_eq!((r.kvs.len(), r.more, r.count), (5, false, 5));
    let r = with(0);
    assert_eq!((r.kvs.len(), r.more, r.count), (5, false, 5));
    let r = with(i64::MAX);
    assert_eq!((r.kvs.len(), r.more, r.count), (5, false, 5));
    let r = with(6);
    assert_eq!((r.kvs.len(), r.more, r.count), (5, false, 5));
}

#[test]
fn every_sort_target_and_order() {
    let (s, _db) = new_store();
    // Final state: a{create 4, mod 4, version 1, "y"}, b{create 2, mod 7, version 2, "u"},
    // c{create 3, mod 6, version 3, "v"}.
    for (k, v) in [("b", "z"), ("c", "x"), ("a", "y"), ("c", "w"), ("c", "v"), ("b", "u")] {
        put(&s, k, v);
    }
    let sorted = |target: SortTarget, order: SortOrder| {
        let req = RangeRequest { sort_target: target as i32, sort_order: order as i32, ..rreq(b"a", b"\0", 0) };
        keys(&both_paths(&s, &req)).concat()
    };
    use SortOrder::*;
    use SortTarget::*;
    let cases = [
        (Key, None, "abc"),
        (Key, Ascend, "abc"),
        (Key, Descend, "cba"),
        (Version, None, "abc"),
        (Version, Ascend, "abc"),
        (Version, Descend, "cba"),
        (Create, None, "bca"),
        (Create, Ascend, "bca"),
        (Create, Descend, "acb"),
        (Mod, None, "acb"),
        (Mod, Ascend, "acb"),
        (Mod, Descend, "bca"),
        (Value, None, "bca"),
        (Value, Ascend, "bca"),
        (Value, Descend, "acb"),
    ];
    for (target, order, want) in cases {
        assert_eq!(sorted(target, order), want, "{target:?} {order:?}");
    }
    // Sorting happens before the limit.
    let req = RangeRequest { sort_target: Mod as i32, sort_order: Descend as i32, limit: 1, ..rreq(b"a", b"\0", 0) };
    let r = both_paths(&s, &req);
    assert_eq!((keys(&r), r.more, r.count), (vec!["b".to_string()], true, 3));
    // Stable: equal versions keep key order in both directions.
    put(&s, "a", "y2");
    let req = RangeRequest { sort_target: Version as i32, sort_order: Descend as i32, ..rreq(b"a", b"\0", 0) };
    assert_eq!(keys(&both_paths(&s, &req)).concat(), "cab");
}

#[test]
fn mod_and_create_filters_keep_count() {
    let (s, _db) = new_store();
    for (k, v) in [("b", "z"), ("c", "x"), ("a", "y"), ("c", "w"), ("c", "v"), ("b", "u")] {
        put(&s, k, v);
    }
    // a{create 4, mod 4}, b{create 2, mod 7}, c{create 3, mod 6}
    let f = |min_mod, max_mod, min_create, max_create| {
        let req = RangeRequest {
            min_mod_revision: min_mod,
            max_mod_revision: max_mod,
            min_create_revision: min_create,
            max_create_revision: max_create,
            ..rreq(b"a", b"\0", 0)
        };
        let r = both_paths(&s, &req);
        assert_eq!(r.count, 3);
        keys(&r).concat()
    };
    assert_eq!(f(6, 0, 0, 0), "bc");
    assert_eq!(f(0, 6, 0, 0), "ac");
    assert_eq!(f(5, 6, 0, 0), "c");
    assert_eq!(f(0, 0, 3, 0), "ac");
    assert_eq!(f(0, 0, 0, 3), "bc");
    assert_eq!(f(0, 0, 3, 3), "c");
    assert_eq!(f(0, 0, 0, 1), "");
    let req = RangeRequest { min_mod_revision: 5, limit: 1, ..rreq(b"a", b"\0", 0) };
    let r = both_paths(&s, &req);
    assert_eq!((keys(&r).concat().as_str(), r.more, r.count), ("b", true, 3));
}

#[test]
fn keys_only_and_count_only() {
    let (s, _db) = new_store();
    put(&s, "a", "1");
    put(&s, "b", "2");
    let r = both_paths(&s, &RangeRequest { keys_only: true, ..rreq(b"a", b"\0", 0) });
    assert_eq!(keys(&r), ["a", "b"]);
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty() && kv.version == 1));
    let r = both_paths(&s, &RangeRequest { count_only: true, limit: 1, ..rreq(b"a", b"\0", 0) });
    assert_eq!((r.kvs.len(), r.count, r.more), (0, 2, false));
}

#[test]
fn corrupt_data_is_a_storage_error_not_a_panic() {
    let (s, _db) = new_store();
    put(&s, "a", "1");
    put(&s, "a", "2"); // reads at revision 2 go through `h`
    let tree = &s.inner.tree();
    // A put record whose KeyValue does not decode, read at the current revision.
    tree.insert(super::key_index::history_key(b"b", super::Revision::new(2, 1)), &b"\0\xff\xff\xff"[..]).unwrap();
    assert!(matches!(s.range(&rreq(b"a", b"\0", 0)), Err(Error::Storage(_))));
    assert!(matches!(s.range(&rreq(b"b", b"", 0)), Err(Error::Storage(_))));
    tree.insert(super::key_index::history_key(b"c", super::Revision::new(2, 5)), &[7u8][..]).unwrap();
    assert!(matches!(s.range(&rreq(b"c", b"", 2)), Err(Error::Storage(_))));
    assert!(matches!(s.hash_kv(0), Err(Error::Storage(_))));
    tree.insert(b"hjunk", &[0u8][..]).unwrap();
    assert!(matches!(s.range(&rreq(b"d", b"\0", 2)), Err(Error::Storage(_))));
    tree.insert(b"r\0\0\0\0\0\0\0\x02", &b"x"[..]).unwrap(); // a log key without its sub revision
    assert!(matches!(s.events(0, 0, b"\0", b"\0", 0), Err(Error::Storage(_))));
    let state = tree.get(super::META_STATE).unwrap().unwrap();
    tree.insert(super::META_STATE, &b"x"[..]).unwrap();
    assert!(matches!(Store::open(tree.clone()), Err(Error::Storage(_))));
    // The layout of earlier builds is checked as strictly.
    tree.remove(super::META_STATE).unwrap();
    tree.insert(b"mrev", &b"x"[..]).unwrap();
    assert!(matches!(Store::open(tree.clone()), Err(Error::Storage(_))));
    tree.insert(super::META_STATE, state).unwrap();
    assert!(Store::open(tree.clone()).is_ok(), "mstate decides once it is there");
}
