//! Store tests: Put / DeleteRange options, leases, meta, txn compares and branches.

use raftcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftcd_proto::etcdserverpb::request_op::Request;
use raftcd_proto::etcdserverpb::response_op::Response;
use raftcd_proto::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
use raftcd_proto::mvccpb::event::EventType;

use super::tests::{apply, del, get, new_store, put, put_op, put_req, rreq};
use super::Store;
use crate::error::Error;

#[test]
fn prev_kv_on_put_and_delete() {
    let (s, _db) = new_store();
    let req = PutRequest { prev_kv: true, ..put_req("k", "1") };
    let (r, c) = apply(&s, |w| w.put(&req));
    let r = r.unwrap();
    assert_eq!((r.prev_kv, r.header.unwrap().revision), (None, 2));
    assert_eq!(c.events[0].prev_kv, None);
    let req = PutRequest { prev_kv: true, ..put_req("k", "2") };
    let (r, c) = apply(&s, |w| w.put(&req));
    let prev = r.unwrap().prev_kv.unwrap();
    assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"1"[..], 2));
    assert_eq!(c.events[0].prev_kv.as_ref(), Some(&prev));
    // Without prev_kv the response has none but the event still does.
    let (r, c) = apply(&s, |w| w.put(&put_req("k", "3")));
    assert_eq!(r.unwrap().prev_kv, None);
    assert_eq!(c.events[0].prev_kv.as_ref().unwrap().value, b"2");
    put(&s, "l", "x");
    let req = DeleteRangeRequest { key: "k".into(), range_end: "m".into(), prev_kv: true };
    let (r, c) = apply(&s, |w| w.delete_range(&req));
    let r = r.unwrap();
    assert_eq!(r.deleted, 2);
    assert_eq!(r.header.unwrap().revision, 6);
    assert_eq!(r.prev_kvs.iter().map(|kv| kv.value.clone()).collect::<Vec<_>>(), [b"3".to_vec(), b"x".to_vec()]);
    let kv = c.events[0].kv.clone().unwrap();
    assert_eq!((kv.key.as_slice(), kv.mod_revision, kv.version, kv.create_revision), (&b"k"[..], 6, 0, 0));
    assert_eq!(c.events[1].prev_kv.as_ref().unwrap().key, b"l");
    let req = DeleteRangeRequest { key: "a".into(), range_end: "\0".into(), prev_kv: false };
    assert_eq!(apply(&s, |w| w.delete_range(&req)).0.unwrap().deleted, 0);
}

#[test]
fn ignore_value_and_ignore_lease() {
    let (s, _db) = new_store();
    let iv = PutRequest { ignore_value: true, lease: 100, ..put_req("k", "") };
    assert_eq!(apply(&s, |w| w.put(&iv)).0, Err(Error::KeyNotFound));
    let il = PutRequest { ignore_lease: true, ..put_req("k", "v") };
    assert_eq!(apply(&s, |w| w.put(&il)).0, Err(Error::KeyNotFound));
    assert_eq!(s.current_revision(), 1);
    apply(&s, |w| w.put(&PutRequest { lease: 200, ..put_req("k", "v1") })).0.unwrap();
    // ignore_value: keeps "v1", takes lease 100.
    apply(&s, |w| w.put(&iv)).0.unwrap();
    let kv = get(&s, "k", 0).unwrap();
    assert_eq!((kv.value.as_slice(), kv.lease, kv.version), (&b"v1"[..], 100, 2));
    // ignore_lease: keeps lease 100, takes "v".
    apply(&s, |w| w.put(&il)).0.unwrap();
    let kv = get(&s, "k", 0).unwrap();
    assert_eq!((kv.value.as_slice(), kv.lease, kv.version), (&b"v"[..], 100, 3));
    assert_eq!(s.lease_keys(100).unwrap(), [b"k".to_vec()]);
    assert!(s.lease_keys(200).unwrap().is_empty());
}

#[test]
fn lease_not_found_writes_nothing_even_inside_a_txn() {
    let (s, _db) = new_store();
    put(&s, "x", "0");
    let bad = PutRequest { lease: 999, ..put_req("k", "v") };
    let (r, c) = apply(&s, |w| w.put(&bad));
    assert_eq!(r, Err(Error::LeaseNotFound));
    assert_eq!((c.revision, c.events.len()), (2, 0));
    let txn = TxnRequest {
        success: vec![
            put_op("a", "1"),
            RequestOp {
                request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                    key: "x".into(),
                    ..Default::default()
                })),
            },
            RequestOp { request: Some(Request::RequestPut(bad.clone())) },
        ],
        ..Default::default()
    };
    let (r, c) = apply(&s, |w| {
        let r = w.txn(&txn);
        assert_eq!(w.revision(), 2, "a failed txn leaves nothing buffered");
        r
    });
    assert_eq!(r, Err(Error::LeaseNotFound));
    assert_eq!((c.revision, c.events.len()), (2, 0));
    assert_eq!(s.current_revision(), 2);
    assert_eq!(s.applied_index(), 3);
    assert!(get(&s, "a", 0).is_none());
    assert_eq!(get(&s, "x", 0).unwrap().value, b"0");
    assert_eq!(s.key_count().unwrap(), 1);
    // The same entry can still do other work after the failed txn.
    let (r, c) = apply(&s, |w| {
        assert!(w.txn(&txn).is_err());
        w.put(&put_req("b", "1"))
    });
    assert_eq!(r.unwrap().header.unwrap().revision, 3);
    assert_eq!(c.events.len(), 1);
    assert!(get(&s, "a", 0).is_none());
}

#[test]
fn lease_attachments_follow_puts_and_deletes() {
    let (s, _db) = new_store();
    let with = |k: &str, lease| PutRequest { lease, ..put_req(k, "v") };
    apply(&s, |w| w.put(&with("k1", 100))).0.unwrap();
    apply(&s, |w| w.put(&with("k2", 100))).0.unwrap();
    apply(&s, |w| w.put(&with("k3", 200))).0.unwrap();
    assert_eq!(s.lease_keys(100).unwrap(), [b"k1".to_vec(), b"k2".to_vec()]);
    apply(&s, |w| w.put(&with("k2", 200))).0.unwrap();
    assert_eq!(s.lease_keys(200).unwrap(), [b"k2".to_vec(), b"k3".to_vec()]);
    del(&s, "k1", "");
    assert!(s.lease_keys(100).unwrap().is_empty());
    apply(&s, |w| w.put(&with("k3", 0))).0.unwrap();
    assert_eq!(s.lease_keys(200).unwrap(), [b"k2".to_vec()]);
    // A revoke: every attached key deleted in one entry, one revision.
    let before = s.current_revision();
    let (_, c) = apply(&s, |w| {
        for k in s.lease_keys(200)? {
            w.delete_range(&DeleteRangeRequest { key: k, ..Default::default() })?;
        }
        Ok(())
    });
    assert_eq!((c.revision, c.events.len()), (before + 1, 1));
    assert!(s.lease_keys(200).unwrap().is_empty());
}

#[test]
fn meta_values_roundtrip() {
    let (s, _db) = new_store();
    apply(&s, |w| {
        w.set_meta(b"l\x00\x01", Some(b"one".to_vec()));
        w.set_meta(b"l\x00\x02", Some(b"two".to_vec()));
        w.set_meta(b"m1", Some(b"member".to_vec()));
        assert_eq!(w.get_meta(b"m1")?, Some(b"member".to_vec()));
        Ok(())
    })
    .0
    .unwrap();
    assert_eq!(s.current_revision(), 1, "meta writes are not revisions");
    assert_eq!(s.get_meta(b"m1").unwrap(), Some(b"member".to_vec()));
    assert_eq!(
        s.scan_meta(b"l").unwrap(),
        [(b"l\x00\x01".to_vec(), b"one".to_vec()), (b"l\x00\x02".to_vec(), b"two".to_vec())]
    );
    apply(&s, |w| {
        w.set_meta(b"m1", None);
        Ok(())
    })
    .0
    .unwrap();
    assert_eq!(s.get_meta(b"m1").unwrap(), None);
    assert!(s.size_on_disk() > 0);
}

fn cmp(key: &str, end: &str, target: CompareTarget, result: CompareResult, operand: TargetUnion) -> Compare {
    Compare {
        key: key.into(),
        range_end: end.into(),
        target: target as i32,
        result: result as i32,
        target_union: Some(operand),
    }
}

/// Whether a txn with the single compare `c` takes its success branch.
fn holds(s: &Store, c: Compare) -> bool {
    let txn = TxnRequest { compare: vec![c], ..Default::default() };
    apply(s, |w| w.txn(&txn)).0.unwrap().succeeded
}

#[test]
fn compares_for_every_target_and_result() {
    use CompareResult::*;
    use CompareTarget::*;
    use TargetUnion as U;
    let (s, _db) = new_store();
    put(&s, "k", "v0"); // rev 2
    put(&s, "other", "x"); // rev 3
    apply(&s, |w| w.put(&PutRequest { lease: 100, ..put_req("k", "v1") })).0.unwrap(); // rev 4
                                                                                       // k = {create 2, mod 4, version 2, value "v1", lease 100}
    let cases: Vec<(CompareTarget, TargetUnion, [bool; 4])> = vec![
        // operand equal, then results for [Equal, NotEqual, Greater, Less] with field vs operand
        (Version, U::Version(2), [true, false, false, false]),
        (Version, U::Version(1), [false, true, true, false]),
        (Version, U::Version(3), [false, true, false, true]),
        (Create, U::CreateRevision(2), [true, false, false, false]),
        (Create, U::CreateRevision(3), [false, true, false, true]),
        (Mod, U::ModRevision(4), [true, false, false, false]),
        (Mod, U::ModRevision(3), [false, true, true, false]),
        (Value, U::Value(b"v1".to_vec()), [true, false, false, false]),
        (Value, U::Value(b"v0".to_vec()), [false, true, true, false]),
        (Value, U::Value(b"v10".to_vec()), [false, true, false, true]),
        (Lease, U::Lease(100), [true, false, false, false]),
        (Lease, U::Lease(200), [false, true, false, true]),
        // An operand of another variant counts as 0 (etcd's compareKV).
        (Mod, U::Version(4), [false, true, true, false]),
    ];
    for (target, operand, want) in cases {
        for (result, want) in [Equal, NotEqual, Greater, Less].into_iter().zip(want) {
            let c = cmp("k", "", target, result, operand.clone());
            assert_eq!(holds(&s, c), want, "{target:?} {result:?} {operand:?}");
        }
    }
    // A missing key compares as a zero KeyValue, except VALUE which always fails.
    assert!(holds(&s, cmp("nope", "", Version, Equal, U::Version(0))));
    assert!(holds(&s, cmp("nope", "", Create, Equal, U::CreateRevision(0))));
    assert!(holds(&s, cmp("nope", "", Mod, Less, U::ModRevision(1))));
    assert!(holds(&s, cmp("nope", "", Lease, Equal, U::Lease(0))));
    assert!(!holds(&s, cmp("nope", "", Value, Equal, U::Value(vec![]))));
    assert!(!holds(&s, cmp("nope", "", Value, NotEqual, U::Value(b"x".to_vec()))));
    // All compares must hold.
    let txn = TxnRequest {
        compare: vec![cmp("k", "", Version, Equal, U::Version(2)), cmp("k", "", Lease, Equal, U::Lease(0))],
        ..Default::default()
    };
    assert!(!apply(&s, |w| w.txn(&txn)).0.unwrap().succeeded);
}

#[test]
fn range_compares_hold_for_every_key() {
    use CompareResult::*;
    use CompareTarget::*;
    use TargetUnion as U;
    let (s, _db) = new_store();
    put(&s, "r1", "a");
    put(&s, "r2", "b");
    put(&s, "r2", "c");
    put(&s, "s", "z");
    assert!(holds(&s, cmp("r", "s", Version, Greater, U::Version(0))));
    assert!(!holds(&s, cmp("r", "s", Version, Equal, U::Version(1))));
    assert!(holds(&s, cmp("r", "s", Value, Less, U::Value(b"d".to_vec()))));
    assert!(!holds(&s, cmp("r", "\0", Value, Less, U::Value(b"d".to_vec()))));
    assert!(holds(&s, cmp("r", "\0", Mod, Greater, U::ModRevision(1))));
    // No key in the range: a zero KeyValue (etcd applyCompare), VALUE fails.
    assert!(holds(&s, cmp("t", "u", Version, Equal, U::Version(0))));
    assert!(!holds(&s, cmp("t", "u", Version, Greater, U::Version(0))));
    assert!(!holds(&s, cmp("t", "u", Value, Equal, U::Value(vec![]))));
}

#[test]
fn txn_branches_see_their_own_writes_and_nest() {
    use CompareResult::*;
    use CompareTarget::*;
    let (s, _db) = new_store();
    put(&s, "a", "0"); // rev 2
    let range = |k: &str| RequestOp { request: Some(Request::RequestRange(rreq(k.as_bytes(), b"", 0))) };
    let delete = |k: &str| RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest { key: k.into(), ..Default::default() })),
    };
    let nested = TxnRequest {
        // Decided before the txn runs (as etcd): x does not exist yet, although the outer branch writes it.
        compare: vec![cmp("x", "", Version, Equal, TargetUnion::Version(0))],
        success: vec![put_op("y", "2"), range("y")],
        failure: vec![put_op("y", "fail")],
    };
    let txn = TxnRequest {
        compare: vec![cmp("a", "", Value, Equal, TargetUnion::Value(b"0".to_vec()))],
        success: vec![
            range("a"),
            put_op("x", "1"),
            range("x"),
            delete("a"),
            range("a"),
            RequestOp { request: Some(Request::RequestTxn(nested)) },
        ],
        failure: vec![range("a")],
    };
    let (r, c) = apply(&s, |w| w.txn(&txn));
    let r = r.unwrap();
    assert!(r.succeeded);
    assert_eq!(r.header.unwrap().revision, 3);
    let resp = |i: usize| r.responses[i].response.clone().unwrap();
    let Response::ResponseRange(a0) = resp(0) else { panic!() };
    assert_eq!((a0.kvs[0].value.as_slice(), a0.header.unwrap().revision), (&b"0"[..], 2));
    let Response::ResponsePut(p) = resp(1) else { panic!() };
    assert_eq!(p.header.unwrap().revision, 3);
    let Response::ResponseRange(x) = resp(2) else { panic!() };
    assert_eq!((x.kvs[0].value.as_slice(), x.kvs[0].mod_revision, x.header.unwrap().revision), (&b"1"[..], 3, 3));
    let Response::ResponseDeleteRange(d) = resp(3) else { panic!() };
    assert_eq!((d.deleted, d.header.unwrap().revision), (1, 3));
    let Response::ResponseRange(a1) = resp(4) else { panic!() };
    assert_eq!(a1.count, 0);
    let Response::ResponseTxn(n) = resp(5) else { panic!() };
    assert!(n.succeeded, "the nested compare is evaluated against the state before the txn");
    assert_eq!(n.header.unwrap().revision, 0, "etcd stamps only the outermost header");
    let Some(Response::ResponseRange(y)) = n.responses[1].response.clone() else { panic!() };
    assert_eq!(y.kvs[0].value, b"2");
    // One revision; events in op order with increasing sub revisions.
    assert_eq!(c.revision, 3);
    let evs: Vec<(i32, Vec<u8>)> = c.events.iter().map(|e| (e.r#type, e.kv.clone().unwrap().key)).collect();
    let (put, delete) = (EventType::Put as i32, EventType::Delete as i32);
    assert_eq!(evs, [(put, b"x".to_vec()), (delete, b"a".to_vec()), (put, b"y".to_vec())]);
    assert_eq!(s.events(3, 3, b"\0", b"\0", 0).unwrap(), c.events);
    // The failure branch: compare on the old value no longer holds.
    let (r, c) = apply(&s, |w| w.txn(&txn));
    let r = r.unwrap();
    assert!(!r.succeeded);
    assert_eq!((r.header.unwrap().revision, c.revision), (3, 3));
    let Some(Response::ResponseRange(a)) = r.responses[0].response.clone() else { panic!() };
    assert_eq!(a.count, 0);
}

#[test]
fn grouped_entries_share_one_batch_and_see_each_other() {
    let (s, _db) = new_store();
    put(&s, "a", "0");
    let lease_exists = super::tests::leases;
    let mut w = s.begin(10, &lease_exists);
    w.put(&put_req("a", "1")).unwrap();
    let first = w.next_entry(11);
    assert_eq!((first.revision, first.events.len()), (3, 1));
    // The second entry sees the first one's write, at the next revision.
    let r = w.put(&PutRequest { prev_kv: true, ..put_req("a", "2") }).unwrap();
    assert_eq!(r.header.unwrap().revision, 4);
    assert_eq!(r.prev_kv.unwrap().value, b"1");
    let _ = w.next_entry(12);
    // A txn failing half-way (unknown lease) leaves nothing buffered.
    let mark = w.change_mark();
    let no_lease = PutRequest { lease: 7, ..put_req("c", "y") };
    let bad = TxnRequest {
        success: vec![put_op("b", "x"), RequestOp { request: Some(Request::RequestPut(no_lease)) }],
        ..Default::default()
    };
    assert_eq!(w.txn(&bad).unwrap_err(), Error::LeaseNotFound);
    assert_eq!(w.change_mark(), mark);
    let _ = w.next_entry(13);
    let del = DeleteRangeRequest { key: "a".into(), ..Default::default() };
    assert_eq!(w.delete_range(&del).unwrap().deleted, 1);
    // Nothing is visible before the commit.
    assert_eq!((s.current_revision(), get(&s, "a", 0).unwrap().value), (2, b"0".to_vec()));
    let last = w.commit().unwrap();
    assert_eq!((last.revision, s.current_revision(), s.applied_index()), (5, 5, 13));
    assert!(get(&s, "a", 0).is_none());
    assert_eq!(get(&s, "a", 4).unwrap().value, b"2");
    assert_eq!(get(&s, "a", 3).unwrap().value, b"1");
    assert!(get(&s, "b", 0).is_none());
}
