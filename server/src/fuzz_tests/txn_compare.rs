//! The Txn compare evaluator (mvcc/txn.rs) against a model of etcd's `applyCompare`/`compareKV`: every target
//! (VERSION, CREATE, MOD, VALUE, LEASE and unknown), every result (EQUAL, GREATER, LESS, NOT_EQUAL and
//! unknown), matching and mismatched operands, single keys and ranges, over a random history of puts and
//! deletes.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use proptest::prelude::*;
use raftcd_proto::etcdserverpb::compare::{CompareTarget, TargetUnion};
use raftcd_proto::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, TxnRequest};

use crate::mvcc::Store;

const KEYS: &[&[u8]] = &[b"a", b"b", b"b\x00", b"c", b"d"];

#[derive(Clone, Debug)]
enum Step {
    Put(usize, Vec<u8>, i64),
    Delete(usize),
}

/// A live key in the model.
#[derive(Clone, Debug, Default)]
struct Kv {
    value: Vec<u8>,
    version: i64,
    create: i64,
    modified: i64,
    lease: i64,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..KEYS.len(), prop::collection::vec(prop::sample::select(vec![b'x', b'y']), 0..3), 0i64..3)
            .prop_map(|(k, v, l)| Step::Put(k, v, l)),
        1 => (0..KEYS.len()).prop_map(Step::Delete),
    ]
}

fn compare() -> impl Strategy<Value = Compare> {
    let end = prop_oneof![Just(vec![]), Just(vec![0u8]), prop::sample::select(KEYS.to_vec()).prop_map(|k| k.to_vec())];
    let union = prop_oneof![
        Just(None),
        (0i64..8).prop_map(|v| Some(TargetUnion::Version(v))),
        (0i64..12).prop_map(|v| Some(TargetUnion::CreateRevision(v))),
        (0i64..12).prop_map(|v| Some(TargetUnion::ModRevision(v))),
        (0i64..3).prop_map(|v| Some(TargetUnion::Lease(v))),
        prop::collection::vec(prop::sample::select(vec![b'x', b'y']), 0..3).prop_map(|v| Some(TargetUnion::Value(v))),
    ];
    (prop::sample::select(KEYS.to_vec()), end, 0i32..6, 0i32..5, union).prop_map(
        |(key, range_end, target, result, tu)| Compare {
            key: key.to_vec(),
            range_end,
            target,
            result,
            target_union: tu,
        },
    )
}

/// etcd's compareKV, written from its Go source independently of mvcc/txn.rs.
fn model_compare_kv(c: &Compare, kv: &Kv) -> bool {
    let ord = match (c.target, &c.target_union) {
        (3, Some(TargetUnion::Value(v))) => kv.value.as_slice().cmp(v.as_slice()),
        (3, _) => kv.value.as_slice().cmp(&[]),
        (0, Some(TargetUnion::Version(v))) => kv.version.cmp(v),
        (1, Some(TargetUnion::CreateRevision(v))) => kv.create.cmp(v),
        (2, Some(TargetUnion::ModRevision(v))) => kv.modified.cmp(v),
        (4, Some(TargetUnion::Lease(v))) => kv.lease.cmp(v),
        (0, _) => kv.version.cmp(&0),
        (1, _) => kv.create.cmp(&0),
        (2, _) => kv.modified.cmp(&0),
        (4, _) => kv.lease.cmp(&0),
        _ => Ordering::Equal,
    };
    match c.result {
        0 => ord == Ordering::Equal,
        1 => ord == Ordering::Greater,
        2 => ord == Ordering::Less,
        3 => ord != Ordering::Equal,
        _ => true,
    }
}

/// etcd's applyCompare: every live key of the range must hold; an empty range compares a zero KeyValue,
/// except that VALUE on no key is false.
fn model_compare(c: &Compare, live: &BTreeMap<Vec<u8>, Kv>) -> bool {
    let in_range = |k: &[u8]| match c.range_end.as_slice() {
        [] => k == c.key.as_slice(),
        [0] => k >= c.key.as_slice(),
        end => k >= c.key.as_slice() && k < end,
    };
    let kvs: Vec<&Kv> = live.iter().filter(|(k, _)| in_range(k)).map(|(_, v)| v).collect();
    if kvs.is_empty() {
        return c.target != CompareTarget::Value as i32 && model_compare_kv(c, &Kv::default());
    }
    kvs.iter().all(|kv| model_compare_kv(c, kv))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn compares_match_the_model(steps in prop::collection::vec(step(), 0..10), cmps in prop::collection::vec(prop::collection::vec(compare(), 1..4), 1..12)) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = Store::open(db.open_tree("state").unwrap()).unwrap();
        let any_lease = |_: i64| true;
        let mut live: BTreeMap<Vec<u8>, Kv> = BTreeMap::new();
        let mut rev = store.current_revision();
        let mut index = 1;
        for s in &steps {
            match s {
                Step::Put(k, value, lease) => {
                    let key = KEYS[*k].to_vec();
                    let mut t = store.begin(index, &any_lease);
                    t.put(&PutRequest { key: key.clone(), value: value.clone(), lease: *lease, ..Default::default() }).unwrap();
                    t.commit().unwrap();
                    rev += 1;
                    let e = live.entry(key).or_insert(Kv { create: rev, ..Default::default() });
                    *e = Kv { value: value.clone(), version: e.version + 1, create: e.create, modified: rev, lease: *lease };
                }
                Step::Delete(k) => {
                    let key = KEYS[*k].to_vec();
                    if live.remove(&key).is_none() {
                        continue;
                    }
                    let mut t = store.begin(index, &any_lease);
                    t.delete_range(&DeleteRangeRequest { key, ..Default::default() }).unwrap();
                    t.commit().unwrap();
                    rev += 1;
                }
            }
            index += 1;
        }
        prop_assert_eq!(store.current_revision(), rev);
        for compare in cmps {
            let want = compare.iter().all(|c| model_compare(c, &live));
            let req = TxnRequest { compare: compare.clone(), ..Default::default() };
            let got = store.begin(index, &any_lease).txn(&req).unwrap().succeeded;
            prop_assert_eq!(got, want, "compares {:?} over {:?}", compare, live);
        }
    }
}
