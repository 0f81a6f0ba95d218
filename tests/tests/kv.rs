//! The etcd v3 KV API of a real raftcd process, driven by a client we did not write (`etcd-client`).
//!
//! Every test starts its own single-member raftcd (fresh data dir, ephemeral ports), so revisions are
//! predictable: a fresh store is at revision 1 and each write request adds exactly one.
//!
//! The expectations are etcd's. To check the expectations themselves, run the suite against a real etcd:
//! `RAFTCD_KV_TARGET=etcd cargo test -p raftcd-tests --test kv` (tests of raftcd-only properties, such as the
//! reported version or a SIGTERM restart, then skip themselves or are expected to fail on etcd 3.4).

use anyhow::Result;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, GetResponse, KeyValue, PutOptions,
    ResponseHeader, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use raftcd_tests::client::{assert_grpc_err, connect};
use raftcd_tests::{step, EtcdProcess, RaftcdProcess};

const FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const EMPTY_KEY: &str = "etcdserver: key is not provided";

/// The server under test and a connected client.
struct Fixture {
    raftcd: Option<RaftcdProcess>,
    _etcd: Option<EtcdProcess>,
    _dir: tempfile::TempDir,
    client: Client,
}

fn against_etcd() -> bool {
    std::env::var("RAFTCD_KV_TARGET").is_ok_and(|v| v == "etcd")
}

impl Fixture {
    /// A fresh single-member raftcd with `extra` flags (or a real etcd with RAFTCD_KV_TARGET=etcd).
    async fn start(extra: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        if against_etcd() {
            let etcd = EtcdProcess::start_with_args(extra);
            let client = connect(&etcd.endpoint()).await;
            return Fixture { raftcd: None, _etcd: Some(etcd), _dir: dir, client };
        }
        let p = RaftcdProcess::start_single(dir.path(), extra);
        let client = connect(&p.endpoint()).await;
        Fixture { raftcd: Some(p), _etcd: None, _dir: dir, client }
    }

    fn raftcd(&mut self) -> &mut RaftcdProcess {
        self.raftcd.as_mut().expect("this test needs raftcd")
    }
}

/// The revision of a response header.
fn hrev(h: Option<&ResponseHeader>) -> i64 {
    h.expect("response has a header").revision()
}

/// The store's current revision (a linearizable read of a key nobody writes).
async fn current_rev(c: &mut Client) -> Result<i64> {
    Ok(hrev(c.get("raftcd-tests/none", None).await?.header()))
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn keys(r: &GetResponse) -> Vec<String> {
    r.kvs().iter().map(|kv| s(kv.key())).collect()
}

/// (create_revision, mod_revision, version) of a kv.
fn revs(kv: &KeyValue) -> (i64, i64, i64) {
    (kv.create_revision(), kv.mod_revision(), kv.version())
}

async fn get_one(c: &mut Client, key: &str) -> Result<Option<KeyValue>> {
    Ok(c.get(key, None).await?.kvs().first().cloned())
}

fn txn_get(r: &TxnOpResponse) -> &etcd_client::GetResponse {
    match r {
        TxnOpResponse::Get(g) => g,
        other => panic!("expected a range response, got {other:?}"),
    }
}

/// Runs a txn with a single compare and empty branches (read-only: it changes nothing) and returns `succeeded`.
async fn holds(c: &mut Client, cmp: Compare) -> Result<bool> {
    Ok(c.txn(Txn::new().when([cmp])).await?.succeeded())
}

/// Scenario: a fresh member is at revision 1; every write request (put, delete of an existing key, a whole txn)
/// adds exactly one revision; reads, read-only txns, txns that end up writing nothing and deletes that match
/// nothing add none.
#[tokio::test]
async fn revision_starts_at_one_and_counts_write_requests() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();

    step!("a fresh store is at revision 1");
    assert_eq!(current_rev(&mut c).await?, 1);

    step!("each put adds one revision, even one that does not change the value");
    assert_eq!(hrev(c.put("k", "v", None).await?.header()), 2);
    assert_eq!(hrev(c.put("k", "v", None).await?.header()), 3);

    step!("a txn with three writes adds exactly one revision, shared by all its writes");
    let t = c
        .txn(Txn::new().and_then([TxnOp::put("a", "1", None), TxnOp::put("b", "2", None), TxnOp::delete("k", None)]))
        .await?;
    assert!(t.succeeded());
    assert_eq!(hrev(t.header()), 4);
    assert_eq!(get_one(&mut c, "a").await?.unwrap().mod_revision(), 4);
    assert_eq!(get_one(&mut c, "b").await?.unwrap().mod_revision(), 4);
    assert!(get_one(&mut c, "k").await?.is_none());

    step!("a read-only txn adds none and reports the current revision");
    let t = c.txn(Txn::new().and_then([TxnOp::get("a", None), TxnOp::get("b", None)])).await?;
    assert_eq!(hrev(t.header()), 4);

    step!("a txn whose compare fails and whose else-branch is empty adds none");
    let t = c
        .txn(Txn::new().when([Compare::value("a", CompareOp::Equal, "nope")]).and_then([TxnOp::put("a", "x", None)]))
        .await?;
    assert!(!t.succeeded());
    assert!(t.op_responses().is_empty());
    assert_eq!(hrev(t.header()), 4);

    step!("deletes that match nothing add none");
    let d = c.delete("missing", None).await?;
    assert_eq!((d.deleted(), hrev(d.header())), (0, 4));
    let d = c.delete("zzz/", Some(DeleteOptions::new().with_prefix())).await?;
    assert_eq!((d.deleted(), hrev(d.header())), (0, 4));

    step!("a txn whose only write is a delete that matches nothing adds none");
    let t = c.txn(Txn::new().and_then([TxnOp::delete("missing", None)])).await?;
    assert_eq!(hrev(t.header()), 4);

    step!("deleting an existing key adds one");
    let d = c.delete("a", None).await?;
    assert_eq!((d.deleted(), hrev(d.header())), (1, 5));
    assert_eq!(current_rev(&mut c).await?, 5);
    Ok(())
}

/// Scenario: create_revision, mod_revision and version through put, put, delete, put: version counts
/// modifications since creation, a delete ends the key's generation and the next put creates it anew.
#[tokio::test]
async fn create_mod_revision_and_version_through_put_put_delete_put() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();

    step!("first put creates the key at revision 2");
    c.put("k", "v1", None).await?;
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), revs(&kv), kv.lease()), ("v1".into(), (2, 2, 1), 0));

    step!("second put keeps create_revision, bumps mod_revision and version");
    c.put("k", "v2", None).await?;
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), revs(&kv)), ("v2".into(), (2, 3, 2)));

    step!("delete at revision 4 removes it; history is still readable");
    let d = c.delete("k", Some(DeleteOptions::new().with_prev_key())).await?;
    assert_eq!((d.deleted(), hrev(d.header())), (1, 4));
    assert_eq!(revs(&d.prev_kvs()[0]), (2, 3, 2));
    assert!(get_one(&mut c, "k").await?.is_none());
    let old = c.get("k", Some(GetOptions::new().with_revision(3))).await?;
    assert_eq!(revs(&old.kvs()[0]), (2, 3, 2));

    step!("put after delete starts a new generation: create = mod = 5, version 1, no prev_kv");
    let p = c.put("k", "v3", Some(PutOptions::new().with_prev_key())).await?;
    assert!(p.prev_key().is_none(), "prev_kv of a re-created key must be empty");
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), revs(&kv)), ("v3".into(), (5, 5, 1)));
    Ok(())
}

/// Scenario: the range shapes of etcd: single key, prefix, [key, range_end), from-key (range_end "\0"),
/// everything (key = range_end = "\0"), a prefix of 0xff bytes (range_end "\0"), a missing key, and a
/// range_end below the key.
#[tokio::test]
async fn range_single_prefix_interval_from_key_and_all() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    let all: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        b"ab".to_vec(),
        b"abc".to_vec(),
        b"b".to_vec(),
        b"c".to_vec(),
        vec![0xff],
        vec![0xff, 0xff],
    ];
    step!("put {} keys, including 0xff keys", all.len());
    for k in &all {
        c.put(k.clone(), "v", None).await?;
    }
    let rng = |r: &GetResponse| r.kvs().iter().map(|kv| kv.key().to_vec()).collect::<Vec<_>>();

    step!("single key");
    let r = c.get("ab", None).await?;
    assert_eq!((keys(&r), r.count(), r.more()), (vec!["ab".to_string()], 1, false));

    step!("prefix \"a\"");
    let r = c.get("a", Some(GetOptions::new().with_prefix())).await?;
    assert_eq!((keys(&r), r.count()), (vec!["a".into(), "ab".into(), "abc".into()], 3));

    step!("interval [ab, b)");
    let r = c.get("ab", Some(GetOptions::new().with_range("b"))).await?;
    assert_eq!(keys(&r), vec!["ab", "abc"]);

    step!("from key \"b\" (range_end \"\\0\")");
    let r = c.get("b", Some(GetOptions::new().with_from_key())).await?;
    assert_eq!(rng(&r), all[3..].to_vec());
    assert_eq!(r.count(), 4);

    step!("from key \"\\0\": every key");
    let r = c.get("\0", Some(GetOptions::new().with_from_key())).await?;
    assert_eq!(rng(&r), all);

    step!("all keys (key = range_end = \"\\0\")");
    let r = c.get("", Some(GetOptions::new().with_all_keys())).await?;
    assert_eq!((rng(&r), r.count()), (all.clone(), 7));

    step!("prefix of 0xff: range_end becomes \"\\0\"");
    let r = c.get(vec![0xff], Some(GetOptions::new().with_prefix())).await?;
    assert_eq!(rng(&r), all[5..].to_vec());

    step!("a missing key: no kvs, count 0, header at the current revision");
    let r = c.get("zz", None).await?;
    assert_eq!((r.kvs().len(), r.count(), r.more(), hrev(r.header())), (0, 0, false, 8));

    step!("range_end below the key: nothing");
    let r = c.get("c", Some(GetOptions::new().with_range("a"))).await?;
    assert_eq!((r.kvs().len(), r.count()), (0, 0));
    Ok(())
}

/// Scenario: `limit` truncates `kvs` and sets `more`, while `count` is always the number of keys in the range.
#[tokio::test]
async fn range_limit_more_and_count() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put p/1..p/5 and keys around the prefix");
    for k in ["o", "p/1", "p/2", "p/3", "p/4", "p/5", "q"] {
        c.put(k, "v", None).await?;
    }
    let prefix = || GetOptions::new().with_prefix();
    for (limit, n, more) in [(1, 1, true), (2, 2, true), (4, 4, true), (5, 5, false), (6, 5, false), (0, 5, false)] {
        step!("limit {limit}: {n} kvs, more={more}, count 5");
        let r = c.get("p/", Some(prefix().with_limit(limit))).await?;
        assert_eq!((r.kvs().len(), r.more(), r.count()), (n, more, 5), "limit {limit}");
        assert_eq!(keys(&r), ["p/1", "p/2", "p/3", "p/4", "p/5"][..n].to_vec());
    }
    step!("limit with keys_only and with count_only");
    let r = c.get("p/", Some(prefix().with_limit(2).with_keys_only())).await?;
    assert_eq!((keys(&r), r.more(), r.count()), (vec!["p/1".into(), "p/2".into()], true, 5));
    let r = c.get("p/", Some(prefix().with_limit(2).with_count_only())).await?;
    assert_eq!((r.kvs().len(), r.count()), (0, 5));
    step!("a kube-apiserver style Get: single key, limit 1");
    let r = c.get("p/3", Some(GetOptions::new().with_limit(1))).await?;
    assert_eq!((keys(&r), r.more(), r.count()), (vec!["p/3".into()], false, 1));
    Ok(())
}

/// Scenario: reads at past revisions see the store as it was; the header still reports the current revision;
/// a future revision is OutOfRange "future revision"; after a compaction, revisions below it are OutOfRange
/// "compacted" while the compaction revision itself stays readable; revision <= 0 means latest.
#[tokio::test]
async fn range_at_past_future_and_compacted_revisions() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("history: put k v1 @2, put k v2 @3, put j @4, delete k @5");
    c.put("k", "v1", None).await?;
    c.put("k", "v2", None).await?;
    c.put("j", "x", None).await?;
    c.delete("k", None).await?;
    let at = |rev: i64| Some(GetOptions::new().with_revision(rev));

    step!("past revisions");
    let r = c.get("k", at(2)).await?;
    assert_eq!((s(r.kvs()[0].value()), revs(&r.kvs()[0]), hrev(r.header())), ("v1".into(), (2, 2, 1), 5));
    let r = c.get("k", at(3)).await?;
    assert_eq!((s(r.kvs()[0].value()), revs(&r.kvs()[0])), ("v2".into(), (2, 3, 2)));
    let r = c.get("k", at(4)).await?;
    assert_eq!(s(r.kvs()[0].value()), "v2");
    assert!(c.get("k", at(5)).await?.kvs().is_empty());
    let r = c.get("", Some(GetOptions::new().with_all_keys().with_revision(3))).await?;
    assert_eq!((keys(&r), r.count()), (vec!["k".into()], 1));
    let r = c.get("", Some(GetOptions::new().with_all_keys().with_revision(4))).await?;
    assert_eq!(keys(&r), vec!["j", "k"]);

    step!("revision 0 and negative revisions read the latest");
    assert_eq!(keys(&c.get("", Some(GetOptions::new().with_all_keys().with_revision(0))).await?), vec!["j"]);
    assert_eq!(keys(&c.get("", Some(GetOptions::new().with_all_keys().with_revision(-3))).await?), vec!["j"]);

    step!("a future revision is OutOfRange");
    assert_grpc_err(c.get("k", at(6)).await, "OutOfRange", FUTURE_REV);
    assert_grpc_err(c.get("k", at(1000)).await, "OutOfRange", FUTURE_REV);
    assert_grpc_err(
        c.get("k", Some(GetOptions::new().with_revision(6).with_serializable())).await,
        "OutOfRange",
        FUTURE_REV,
    );

    step!("compact at 3: below 3 is compacted, 3 itself is readable");
    c.compact(3, None).await?;
    assert_grpc_err(c.get("k", at(2)).await, "OutOfRange", COMPACTED);
    assert_grpc_err(c.get("k", at(1)).await, "OutOfRange", COMPACTED);
    let r = c.get("k", at(3)).await?;
    assert_eq!((s(r.kvs()[0].value()), revs(&r.kvs()[0])), ("v2".into(), (2, 3, 2)));
    assert_eq!(s(c.get("j", at(4)).await?.kvs()[0].value()), "x");
    Ok(())
}

/// Put the sorting data set: four keys whose key, version, create, mod and value orders all differ.
/// Final state (key: create, mod, version, value): s/a: 3, 9, 3, "n"; s/b: 5, 5, 1, "q"; s/c: 2, 11, 2, "m";
/// s/d: 4, 10, 4, "d".
async fn put_sort_dataset(c: &mut Client) -> Result<()> {
    for (k, v) in [
        ("s/c", "m"),
        ("s/a", "x"),
        ("s/d", "b"),
        ("s/b", "q"),
        ("s/d", "b"),
        ("s/a", "x"),
        ("s/d", "b"),
        ("s/a", "n"),
        ("s/d", "d"),
        ("s/c", "m"),
    ] {
        c.put(k, v, None).await?;
    }
    Ok(())
}

/// Scenario: every sort target (KEY, VERSION, CREATE, MOD, VALUE) in both orders; sorting happens before
/// `limit` (the first n of the sorted range) and leaves `count` alone; a non-KEY target with order NONE sorts
/// ascending.
#[tokio::test]
async fn range_sort_every_target_and_order() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put the sort data set");
    put_sort_dataset(&mut c).await?;
    let kv = get_one(&mut c, "s/a").await?.unwrap();
    assert_eq!(revs(&kv), (3, 9, 3));

    let cases = [
        (SortTarget::Key, "abcd"),
        (SortTarget::Version, "bcad"),
        (SortTarget::Create, "cadb"),
        (SortTarget::Mod, "badc"),
        (SortTarget::Value, "dcab"),
    ];
    for (target, asc) in cases {
        let want: Vec<String> = asc.chars().map(|ch| format!("s/{ch}")).collect();
        let mut desc = want.clone();
        desc.reverse();
        for (order, want) in [(SortOrder::Ascend, &want), (SortOrder::Descend, &desc)] {
            step!("sort by {target:?} {order:?}");
            let r = c.get("s/", Some(GetOptions::new().with_prefix().with_sort(target, order))).await?;
            assert_eq!(&keys(&r), want, "{target:?} {order:?}");
            step!("sort by {target:?} {order:?} with limit 2");
            let r = c.get("s/", Some(GetOptions::new().with_prefix().with_sort(target, order).with_limit(2))).await?;
            assert_eq!((keys(&r), r.more(), r.count()), (want[..2].to_vec(), true, 4), "{target:?} {order:?} limit 2");
        }
    }
    step!("order NONE: KEY stays in key order, other targets sort ascending");
    let r = c.get("s/", Some(GetOptions::new().with_prefix().with_sort(SortTarget::Key, SortOrder::None))).await?;
    assert_eq!(keys(&r), ["s/a", "s/b", "s/c", "s/d"]);
    let r = c.get("s/", Some(GetOptions::new().with_prefix().with_sort(SortTarget::Mod, SortOrder::None))).await?;
    assert_eq!(keys(&r), ["s/b", "s/a", "s/d", "s/c"]);
    Ok(())
}

/// Scenario: keys_only drops values but keeps revisions; count_only returns only the count; a serializable
/// read returns what a linearizable one does on a single member.
#[tokio::test]
async fn range_keys_only_count_only_and_serializable() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put the sort data set");
    put_sort_dataset(&mut c).await?;

    step!("keys_only");
    let r = c.get("s/", Some(GetOptions::new().with_prefix().with_keys_only())).await?;
    assert_eq!((keys(&r), r.count()), (vec!["s/a".into(), "s/b".into(), "s/c".into(), "s/d".into()], 4));
    assert!(r.kvs().iter().all(|kv| kv.value().is_empty()), "keys_only must not return values");
    assert_eq!(revs(&r.kvs()[0]), (3, 9, 3), "keys_only keeps revisions and version");

    step!("count_only");
    let r = c.get("s/", Some(GetOptions::new().with_prefix().with_count_only())).await?;
    assert_eq!((r.kvs().len(), r.count(), r.more(), hrev(r.header())), (0, 4, false, 11));
    let r = c.get("s/zz", Some(GetOptions::new().with_count_only())).await?;
    assert_eq!(r.count(), 0);

    step!("serializable equals linearizable");
    let lin = c.get("s/", Some(GetOptions::new().with_prefix())).await?;
    let ser = c.get("s/", Some(GetOptions::new().with_prefix().with_serializable())).await?;
    let dump = |r: &GetResponse| {
        r.kvs().iter().map(|kv| (s(kv.key()), s(kv.value()), revs(kv), kv.lease())).collect::<Vec<_>>()
    };
    assert_eq!(dump(&lin), dump(&ser));
    assert_eq!((ser.count(), hrev(ser.header())), (4, 11));
    let r = c.get("s/", Some(GetOptions::new().with_prefix().with_serializable().with_revision(5))).await?;
    assert_eq!(keys(&r), ["s/a", "s/b", "s/c", "s/d"]);
    assert_eq!(s(r.kvs()[3].value()), "b");
    Ok(())
}

/// Scenario: min/max mod and create revision filters select keys by their revisions; `count` still counts
/// the whole range, and `limit` + `more` apply to the filtered result.
#[tokio::test]
async fn range_min_max_mod_and_create_revision_filters() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put the sort data set (a: create 3 mod 9, b: 5/5, c: 2/11, d: 4/10)");
    put_sort_dataset(&mut c).await?;
    let p = || GetOptions::new().with_prefix();
    let cases: Vec<(&str, GetOptions, Vec<&str>)> = vec![
        ("min_mod 9", p().with_min_mod_revision(9), vec!["s/a", "s/c", "s/d"]),
        ("max_mod 9", p().with_max_mod_revision(9), vec!["s/a", "s/b"]),
        ("min_mod 10 max_mod 10", p().with_min_mod_revision(10).with_max_mod_revision(10), vec!["s/d"]),
        ("min_create 4", p().with_min_create_revision(4), vec!["s/b", "s/d"]),
        ("max_create 3", p().with_max_create_revision(3), vec!["s/a", "s/c"]),
        ("min_create 3 max_create 4", p().with_min_create_revision(3).with_max_create_revision(4), vec!["s/a", "s/d"]),
        ("min_mod 12", p().with_min_mod_revision(12), vec![]),
    ];
    for (name, opts, want) in cases {
        step!("{name} -> {want:?}");
        let r = c.get("s/", Some(opts)).await?;
        assert_eq!((keys(&r), r.count(), r.more()), (want.iter().map(|k| k.to_string()).collect(), 4, false), "{name}");
    }
    step!("filter + limit: more refers to the filtered keys");
    let r = c.get("s/", Some(p().with_min_mod_revision(9).with_limit(2))).await?;
    assert_eq!((keys(&r), r.more(), r.count()), (vec!["s/a".into(), "s/c".into()], true, 4));
    let r = c.get("s/", Some(p().with_min_mod_revision(9).with_limit(3))).await?;
    assert_eq!((r.kvs().len(), r.more()), (3, false));
    Ok(())
}

/// Scenario: Put with prev_kv returns the previous key-value (none for a new key); without prev_kv nothing is
/// returned; the header carries the put's revision.
#[tokio::test]
async fn put_with_prev_kv() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put a new key with prev_kv: no prev_kv");
    let r = c.put("k", "v1", Some(PutOptions::new().with_prev_key())).await?;
    assert!(r.prev_key().is_none());
    assert_eq!(hrev(r.header()), 2);
    step!("overwrite with prev_kv: the old key-value");
    let r = c.put("k", "v2", Some(PutOptions::new().with_prev_key())).await?;
    let prev = r.prev_key().expect("prev_kv");
    assert_eq!((s(prev.key()), s(prev.value()), revs(prev)), ("k".into(), "v1".into(), (2, 2, 1)));
    assert_eq!(hrev(r.header()), 3);
    step!("overwrite without prev_kv: nothing");
    let r = c.put("k", "v3", None).await?;
    assert!(r.prev_key().is_none());
    step!("an empty value is a value");
    let r = c.put("k", "", Some(PutOptions::new().with_prev_key())).await?;
    assert_eq!(s(r.prev_key().unwrap().value()), "v3");
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), revs(&kv)), ("".into(), (2, 5, 4)));
    Ok(())
}

/// Scenario: ignore_value keeps the stored value, ignore_lease keeps the attached lease, a plain put detaches
/// the lease; both fail with "key not found" on a missing key, and combined with a value / lease they fail with
/// "value is provided" / "lease is provided". Failed requests add no revision.
#[tokio::test]
async fn put_ignore_value_and_ignore_lease() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("grant a lease and put k with it");
    let lease = c.lease_grant(600, None).await?.id();
    c.put("k", "v1", Some(PutOptions::new().with_lease(lease))).await?;
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), kv.lease()), ("v1".into(), lease));
    let base = current_rev(&mut c).await?;

    step!("ignore_lease: new value, same lease");
    c.put("k", "v2", Some(PutOptions::new().with_ignore_lease())).await?;
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), kv.lease(), kv.version()), ("v2".into(), lease, 2));

    step!("ignore_value + ignore_lease: a pure touch, value and lease kept, version and mod_revision bumped");
    let r = c.put("k", "", Some(PutOptions::new().with_ignore_value().with_ignore_lease().with_prev_key())).await?;
    assert_eq!(s(r.prev_key().unwrap().value()), "v2");
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), kv.lease(), kv.version(), kv.mod_revision()), ("v2".into(), lease, 3, base + 2));

    step!("ignore_value alone: value kept, lease detached (lease 0 was sent)");
    c.put("k", "", Some(PutOptions::new().with_ignore_value())).await?;
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), kv.lease(), kv.version()), ("v2".into(), 0, 4));

    step!("errors, none of which adds a revision");
    let before = current_rev(&mut c).await?;
    assert_grpc_err(
        c.put("missing", "", Some(PutOptions::new().with_ignore_value())).await,
        "InvalidArgument",
        "etcdserver: key not found",
    );
    assert_grpc_err(
        c.put("missing", "v", Some(PutOptions::new().with_ignore_lease())).await,
        "InvalidArgument",
        "etcdserver: key not found",
    );
    assert_grpc_err(
        c.put("k", "v", Some(PutOptions::new().with_ignore_value())).await,
        "InvalidArgument",
        "etcdserver: value is provided",
    );
    assert_grpc_err(
        c.put("k", "v", Some(PutOptions::new().with_ignore_lease().with_lease(lease))).await,
        "InvalidArgument",
        "etcdserver: lease is provided",
    );
    step!("the same errors inside a txn");
    assert_grpc_err(
        c.txn(Txn::new().and_then([TxnOp::put("missing", "", Some(PutOptions::new().with_ignore_value()))])).await,
        "InvalidArgument",
        "etcdserver: key not found",
    );
    assert_grpc_err(
        c.txn(Txn::new().and_then([TxnOp::put("k", "v", Some(PutOptions::new().with_ignore_value()))])).await,
        "InvalidArgument",
        "etcdserver: value is provided",
    );
    assert_eq!(current_rev(&mut c).await?, before);
    Ok(())
}

/// Scenario: a put that names a lease that does not exist fails with NotFound "requested lease not found",
/// alone or inside a txn, and changes nothing.
#[tokio::test]
async fn put_with_unknown_lease_is_not_found() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put with lease 0x1234 that was never granted");
    assert_grpc_err(
        c.put("k", "v", Some(PutOptions::new().with_lease(0x1234))).await,
        "NotFound",
        "etcdserver: requested lease not found",
    );
    step!("the same inside a txn, next to a valid put");
    assert_grpc_err(
        c.txn(
            Txn::new().and_then([
                TxnOp::put("a", "1", None),
                TxnOp::put("k", "v", Some(PutOptions::new().with_lease(0x1234))),
            ]),
        )
        .await,
        "NotFound",
        "etcdserver: requested lease not found",
    );
    step!("nothing was written");
    assert_eq!(current_rev(&mut c).await?, 1);
    assert!(get_one(&mut c, "a").await?.is_none());
    Ok(())
}

/// Scenario: DeleteRange of a single key, an interval, a prefix and from-key; `deleted` counts the keys and
/// prev_kvs (when asked for) returns them in key order; every delete that removes something is one revision.
#[tokio::test]
async fn delete_range_single_interval_prefix_with_prev_kv() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put a, b, c, d, p/1, p/2, p/3, z");
    for k in ["a", "b", "c", "d", "p/1", "p/2", "p/3", "z"] {
        c.put(k, format!("val-{k}"), None).await?;
    }
    step!("single key with prev_kv");
    let d = c.delete("a", Some(DeleteOptions::new().with_prev_key())).await?;
    assert_eq!((d.deleted(), hrev(d.header()), d.prev_kvs().len()), (1, 10, 1));
    let prev = &d.prev_kvs()[0];
    assert_eq!((s(prev.key()), s(prev.value()), revs(prev)), ("a".into(), "val-a".into(), (2, 2, 1)));

    step!("interval [b, d) without prev_kv: count only");
    let d = c.delete("b", Some(DeleteOptions::new().with_range("d"))).await?;
    assert_eq!((d.deleted(), d.prev_kvs().len(), hrev(d.header())), (2, 0, 11));
    assert_eq!(keys(&c.get("", Some(GetOptions::new().with_all_keys())).await?), ["d", "p/1", "p/2", "p/3", "z"]);

    step!("prefix p/ with prev_kv");
    let d = c.delete("p/", Some(DeleteOptions::new().with_prefix().with_prev_key())).await?;
    assert_eq!(d.deleted(), 3);
    let got: Vec<_> = d.prev_kvs().iter().map(|kv| (s(kv.key()), s(kv.value()))).collect();
    assert_eq!(
        got,
        vec![("p/1".into(), "val-p/1".into()), ("p/2".into(), "val-p/2".into()), ("p/3".into(), "val-p/3".into())]
    );
    assert_eq!(hrev(d.header()), 12);

    step!("from key \"e\": only z");
    let d = c.delete("e", Some(DeleteOptions::new().with_from_key().with_prev_key())).await?;
    assert_eq!((d.deleted(), s(d.prev_kvs()[0].key())), (1, "z".into()));
    step!("the deletes are in history: d's neighbours are readable at revision 9");
    let r = c.get("", Some(GetOptions::new().with_all_keys().with_revision(9))).await?;
    assert_eq!(r.count(), 8);
    assert_eq!(keys(&c.get("", Some(GetOptions::new().with_all_keys())).await?), ["d"]);
    Ok(())
}

/// Scenario: Txn compares on VALUE, VERSION, CREATE, MOD and LEASE with =, !=, >, <, on present and missing
/// keys (a missing key compares as zeroes, except that a VALUE compare on a missing key is always false); all
/// compares of a txn must hold.
#[tokio::test]
async fn txn_compare_value_version_create_mod_lease() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put v=\"b\" @2 and l with a lease @3");
    c.put("v", "b", None).await?;
    let lease = c.lease_grant(600, None).await?.id();
    c.put("l", "x", Some(PutOptions::new().with_lease(lease))).await?;
    let rev_before = current_rev(&mut c).await?;
    use CompareOp::{Equal as Eq, Greater as Gt, Less as Lt, NotEqual as Ne};
    let cases: Vec<(&str, Compare, bool)> = vec![
        ("value(v) = b", Compare::value("v", Eq, "b"), true),
        ("value(v) != b", Compare::value("v", Ne, "b"), false),
        ("value(v) > a", Compare::value("v", Gt, "a"), true),
        ("value(v) > b", Compare::value("v", Gt, "b"), false),
        ("value(v) < c", Compare::value("v", Lt, "c"), true),
        ("value(v) < ba", Compare::value("v", Lt, "ba"), true),
        ("value(missing) = \"\"", Compare::value("missing", Eq, ""), false),
        ("value(missing) != x", Compare::value("missing", Ne, "x"), false),
        ("version(v) = 1", Compare::version("v", Eq, 1), true),
        ("version(v) > 0", Compare::version("v", Gt, 0), true),
        ("version(v) < 1", Compare::version("v", Lt, 1), false),
        ("version(v) != 2", Compare::version("v", Ne, 2), true),
        ("version(missing) = 0", Compare::version("missing", Eq, 0), true),
        ("create(v) = 2", Compare::create_revision("v", Eq, 2), true),
        ("create(v) < 2", Compare::create_revision("v", Lt, 2), false),
        ("create(l) > 2", Compare::create_revision("l", Gt, 2), true),
        ("create(missing) = 0", Compare::create_revision("missing", Eq, 0), true),
        ("mod(v) = 2", Compare::mod_revision("v", Eq, 2), true),
        ("mod(v) != 2", Compare::mod_revision("v", Ne, 2), false),
        ("mod(l) = 3", Compare::mod_revision("l", Eq, 3), true),
        ("mod(missing) = 0", Compare::mod_revision("missing", Eq, 0), true),
        ("mod(missing) > 0", Compare::mod_revision("missing", Gt, 0), false),
        ("lease(l) = L", Compare::lease("l", Eq, lease), true),
        ("lease(l) = 0", Compare::lease("l", Eq, 0), false),
        ("lease(l) > 0", Compare::lease("l", Gt, 0), true),
        ("lease(v) = 0", Compare::lease("v", Eq, 0), true),
        ("lease(missing) = 0", Compare::lease("missing", Eq, 0), true),
    ];
    for (name, cmp, want) in cases {
        step!("{name} -> {want}");
        assert_eq!(holds(&mut c, cmp).await?, want, "{name}");
    }
    step!("several compares: all must hold");
    let t = c
        .txn(Txn::new().when([
            Compare::value("v", Eq, "b"),
            Compare::version("v", Eq, 1),
            Compare::mod_revision("l", Eq, 3),
        ]))
        .await?;
    assert!(t.succeeded());
    let t = c.txn(Txn::new().when([Compare::value("v", Eq, "b"), Compare::version("v", Eq, 2)])).await?;
    assert!(!t.succeeded());
    assert_eq!(current_rev(&mut c).await?, rev_before, "compare-only txns write nothing");
    Ok(())
}

/// Scenario: each kind of op (put, range, delete, nested txn) runs in the success branch when the compares
/// hold and in the failure branch when they do not, and the responses come back in op order with their kinds.
#[tokio::test]
async fn txn_success_and_failure_branches_with_every_op() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    c.put("k", "1", None).await?; // @2
    c.put("gone", "x", None).await?; // @3
    c.put("gone2", "x", None).await?; // @4
    let ops = |tag: &str, del: &str| {
        vec![
            TxnOp::put(format!("put-{tag}"), tag, Some(PutOptions::new().with_prev_key())),
            TxnOp::get("k", None),
            TxnOp::delete(del, Some(DeleteOptions::new().with_prev_key())),
            TxnOp::txn(Txn::new().and_then([TxnOp::get(format!("put-{tag}"), None)])),
        ]
    };
    let check = |t: &TxnResponse, tag: &str, del: &str, rev: i64| {
        let rs = t.op_responses();
        assert_eq!(rs.len(), 4);
        match &rs[0] {
            TxnOpResponse::Put(p) => assert!(p.prev_key().is_none()),
            other => panic!("op 0 should be a put response: {other:?}"),
        }
        let g = txn_get(&rs[1]);
        assert_eq!(s(g.kvs()[0].value()), "1");
        match &rs[2] {
            TxnOpResponse::Delete(d) => {
                assert_eq!((d.deleted(), s(d.prev_kvs()[0].key())), (1, del.to_string()));
            }
            other => panic!("op 2 should be a delete response: {other:?}"),
        }
        match &rs[3] {
            TxnOpResponse::Txn(n) => {
                assert!(n.succeeded());
                let inner = n.op_responses();
                let g = txn_get(&inner[0]);
                assert_eq!((s(g.kvs()[0].value()), g.kvs()[0].mod_revision()), (tag.to_string(), rev));
            }
            other => panic!("op 3 should be a txn response: {other:?}"),
        }
        assert_eq!(hrev(t.header()), rev);
    };
    step!("compare holds: success branch runs");
    let t = c
        .txn(
            Txn::new()
                .when([Compare::value("k", CompareOp::Equal, "1")])
                .and_then(ops("ok", "gone"))
                .or_else(ops("ko", "gone")),
        )
        .await?;
    assert!(t.succeeded());
    check(&t, "ok", "gone", 5);
    step!("compare fails: failure branch runs");
    let t = c
        .txn(
            Txn::new()
                .when([Compare::value("k", CompareOp::Equal, "2")])
                .and_then(ops("ok2", "gone2"))
                .or_else(ops("ko", "gone2")),
        )
        .await?;
    assert!(!t.succeeded());
    check(&t, "ko", "gone2", 6);
    assert!(get_one(&mut c, "put-ok2").await?.is_none());
    assert_eq!(keys(&c.get("", Some(GetOptions::new().with_all_keys())).await?), ["k", "put-ko", "put-ok"]);
    Ok(())
}

/// Scenario: a compare with range_end must hold for every key in the range; over an empty range it compares
/// against zero values (VALUE still fails).
#[tokio::test]
async fn txn_compare_over_a_range() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put p/1 @2, p/2 @3, p/3 @4, all with value \"same\"; q @5");
    for k in ["p/1", "p/2", "p/3", "q"] {
        c.put(k, "same", None).await?;
    }
    use CompareOp::{Equal as Eq, Greater as Gt, Less as Lt};
    let cases: Vec<(&str, Compare, bool)> = vec![
        ("version(p/*) > 0", Compare::version("p/", Gt, 0).with_prefix(), true),
        ("version(p/*) = 1", Compare::version("p/", Eq, 1).with_prefix(), true),
        ("value(p/*) = same", Compare::value("p/", Eq, "same").with_prefix(), true),
        ("mod(p/*) < 4", Compare::mod_revision("p/", Lt, 4).with_prefix(), false),
        ("mod(p/*) < 5", Compare::mod_revision("p/", Lt, 5).with_prefix(), true),
        ("mod([p/1, p/3)) < 4", Compare::mod_revision("p/1", Lt, 4).with_range("p/3"), true),
        ("create(p/2..) > 2 (from key)", Compare::create_revision("p/2", Gt, 2).with_range("\0"), true),
        ("create(all) > 2", Compare::create_revision("\0", Gt, 2).with_range("\0"), false),
        ("version(x/*) = 0 (empty range)", Compare::version("x/", Eq, 0).with_prefix(), true),
        ("value(x/*) = \"\" (empty range)", Compare::value("x/", Eq, "").with_prefix(), false),
    ];
    for (name, cmp, want) in cases {
        step!("{name} -> {want}");
        assert_eq!(holds(&mut c, cmp).await?, want, "{name}");
    }
    step!("a range compare guarding a write");
    c.put("p/2", "other", None).await?;
    let t = c
        .txn(Txn::new().when([Compare::value("p/", Eq, "same").with_prefix()]).and_then([TxnOp::put("w", "1", None)]))
        .await?;
    assert!(!t.succeeded());
    assert!(get_one(&mut c, "w").await?.is_none());
    Ok(())
}

/// Scenario: reads inside a txn see the txn's earlier writes (at the txn's revision); nested txns run inside
/// the same revision; compares, nested ones included, are evaluated against the store as it was BEFORE the txn
/// (etcd evaluates every compare of the request first).
#[tokio::test]
async fn txn_nested_and_reads_see_earlier_writes() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put c @2");
    c.put("c", "old", None).await?;
    step!("txn @3: put a, get a, nested txn (compare a = 1), get b, delete c, get c");
    let nested = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "1")])
        .and_then([TxnOp::put("b", "then", None)])
        .or_else([TxnOp::put("b", "else", None), TxnOp::get("a", None)]);
    let t = c
        .txn(Txn::new().when([Compare::version("a", CompareOp::Equal, 0)]).and_then([
            TxnOp::put("a", "1", None),
            TxnOp::get("a", None),
            TxnOp::txn(nested),
            TxnOp::get("b", None),
            TxnOp::delete("c", Some(DeleteOptions::new().with_prev_key())),
            TxnOp::get("c", None),
            TxnOp::get("", Some(GetOptions::new().with_all_keys().with_count_only())),
        ]))
        .await?;
    assert!(t.succeeded());
    assert_eq!(hrev(t.header()), 3);
    let rs = t.op_responses();
    step!("the get after the put sees a=1 at revision 3");
    let g = txn_get(&rs[1]);
    assert_eq!((s(g.kvs()[0].value()), revs(&g.kvs()[0])), ("1".into(), (3, 3, 1)));
    step!("the nested compare saw the store before the txn: a was missing, so its else branch ran");
    let n = match &rs[2] {
        TxnOpResponse::Txn(n) => n,
        other => panic!("expected a nested txn response: {other:?}"),
    };
    assert!(!n.succeeded());
    let inner = n.op_responses();
    assert_eq!(s(txn_get(&inner[1]).kvs()[0].value()), "1", "reads in a nested txn see the outer writes");
    step!("the get after the nested txn sees its write");
    let g = txn_get(&rs[3]);
    assert_eq!((s(g.kvs()[0].value()), g.kvs()[0].mod_revision()), ("else".into(), 3));
    step!("the get after the delete sees nothing; the count sees a and b only");
    assert!(txn_get(&rs[5]).kvs().is_empty());
    assert_eq!(txn_get(&rs[6]).count(), 2);
    step!("all of it is one revision");
    assert_eq!(current_rev(&mut c).await?, 3);
    let r = c.get("", Some(GetOptions::new().with_all_keys())).await?;
    assert_eq!(keys(&r), ["a", "b"]);
    assert!(r.kvs().iter().all(|kv| kv.mod_revision() == 3));
    Ok(())
}

/// Scenario: a txn branch may not write a key twice (put+put, put inside a deleted range, a put in a nested
/// txn of a key the outer branch writes): InvalidArgument "duplicate key given in txn request"; different
/// branches and overlapping deletes are fine. More than 128 ops in a branch or compares: "too many operations".
#[tokio::test]
async fn txn_duplicate_keys_and_too_many_ops() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    const DUP: &str = "etcdserver: duplicate key given in txn request";
    const TOO_MANY: &str = "etcdserver: too many operations in txn request";
    step!("put a twice in one branch");
    assert_grpc_err(
        c.txn(Txn::new().and_then([TxnOp::put("a", "1", None), TxnOp::put("a", "2", None)])).await,
        "InvalidArgument",
        DUP,
    );
    step!("put b inside a deleted range [a, c)");
    assert_grpc_err(
        c.txn(
            Txn::new()
                .and_then([TxnOp::delete("a", Some(DeleteOptions::new().with_range("c"))), TxnOp::put("b", "1", None)]),
        )
        .await,
        "InvalidArgument",
        DUP,
    );
    step!("put a in the failure branch twice");
    assert_grpc_err(
        c.txn(Txn::new().or_else([TxnOp::put("a", "1", None), TxnOp::put("a", "2", None)])).await,
        "InvalidArgument",
        DUP,
    );
    step!("put a and a nested txn that puts a");
    assert_grpc_err(
        c.txn(
            Txn::new()
                .and_then([TxnOp::put("a", "1", None), TxnOp::txn(Txn::new().and_then([TxnOp::put("a", "2", None)]))]),
        )
        .await,
        "InvalidArgument",
        DUP,
    );
    assert_eq!(current_rev(&mut c).await?, 1, "refused txns write nothing");

    step!("allowed: the same key in the two branches; two overlapping deletes; a get and a put of one key");
    c.txn(Txn::new().and_then([TxnOp::put("a", "1", None)]).or_else([TxnOp::put("a", "2", None)])).await?;
    c.txn(Txn::new().and_then([
        TxnOp::delete("a", Some(DeleteOptions::new().with_range("c"))),
        TxnOp::delete("b", Some(DeleteOptions::new().with_range("d"))),
    ]))
    .await?;
    c.txn(Txn::new().and_then([TxnOp::get("a", None), TxnOp::put("a", "3", None)])).await?;
    assert_eq!(current_rev(&mut c).await?, 4);

    step!("128 puts in one txn: accepted, one revision");
    let puts = |n: usize| (0..n).map(|i| TxnOp::put(format!("m/{i:03}"), "v", None)).collect::<Vec<_>>();
    let t = c.txn(Txn::new().and_then(puts(128))).await?;
    assert_eq!(hrev(t.header()), 5);
    assert_eq!(c.get("m/", Some(GetOptions::new().with_prefix().with_count_only())).await?.count(), 128);
    step!("129 ops in success, in failure, or 129 compares: too many operations");
    assert_grpc_err(c.txn(Txn::new().and_then(puts(129))).await, "InvalidArgument", TOO_MANY);
    assert_grpc_err(c.txn(Txn::new().or_else(puts(129))).await, "InvalidArgument", TOO_MANY);
    let cmps: Vec<Compare> = (0..129).map(|i| Compare::version(format!("m/{i:03}"), CompareOp::Greater, 0)).collect();
    assert_grpc_err(c.txn(Txn::new().when(cmps)).await, "InvalidArgument", TOO_MANY);
    let gets: Vec<TxnOp> = (0..129).map(|i| TxnOp::get(format!("m/{i:03}"), None)).collect();
    assert_grpc_err(c.txn(Txn::new().and_then(gets)).await, "InvalidArgument", TOO_MANY);
    assert_eq!(current_rev(&mut c).await?, 5);
    Ok(())
}

/// Scenario: `--max-txn-ops 4` lowers the per-branch limit: 4 ops pass, 5 are refused.
#[tokio::test]
async fn max_txn_ops_flag_is_honoured() -> Result<()> {
    let f = Fixture::start(&["--max-txn-ops", "4"]).await;
    let mut c = f.client.clone();
    let puts = |n: usize| (0..n).map(|i| TxnOp::put(format!("k{i}"), "v", None)).collect::<Vec<_>>();
    step!("4 ops: fine");
    c.txn(Txn::new().and_then(puts(4))).await?;
    step!("5 ops: too many operations");
    assert_grpc_err(
        c.txn(Txn::new().and_then(puts(5))).await,
        "InvalidArgument",
        "etcdserver: too many operations in txn request",
    );
    let cmps: Vec<Compare> = (0..5).map(|i| Compare::version(format!("k{i}"), CompareOp::Greater, 0)).collect();
    assert_grpc_err(
        c.txn(Txn::new().when(cmps)).await,
        "InvalidArgument",
        "etcdserver: too many operations in txn request",
    );
    assert_eq!(current_rev(&mut c).await?, 2);
    Ok(())
}

/// Scenario: Compact refuses a future revision and an already compacted one (OutOfRange); physical compaction
/// returns once done; compaction adds no revision; reads below the compaction revision fail, reads at it work,
/// and the latest values stay.
#[tokio::test]
async fn compact_errors_and_physical() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put k v2..v6 @2..@6, and j @7");
    for i in 2..=6 {
        c.put("k", format!("v{i}"), None).await?;
    }
    c.put("j", "x", None).await?;
    step!("compact at a future revision");
    assert_grpc_err(c.compact(8, None).await, "OutOfRange", FUTURE_REV);
    step!("physical compact at 4");
    let r = c.compact(4, Some(CompactionOptions::new().with_physical())).await?;
    assert_eq!(hrev(r.header()), 7, "compaction adds no revision");
    step!("compact at or below 4 again: compacted");
    assert_grpc_err(c.compact(4, None).await, "OutOfRange", COMPACTED);
    assert_grpc_err(c.compact(2, None).await, "OutOfRange", COMPACTED);
    step!("reads: below 4 compacted, 4 and later fine, latest intact");
    assert_grpc_err(c.get("k", Some(GetOptions::new().with_revision(3))).await, "OutOfRange", COMPACTED);
    let r = c.get("k", Some(GetOptions::new().with_revision(4))).await?;
    assert_eq!((s(r.kvs()[0].value()), revs(&r.kvs()[0])), ("v4".into(), (2, 4, 3)));
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), revs(&kv)), ("v6".into(), (2, 6, 5)), "version survives compaction");
    step!("a compacted revision also fails inside a txn");
    assert_grpc_err(
        c.txn(Txn::new().and_then([TxnOp::get("k", Some(GetOptions::new().with_revision(2)))])).await,
        "OutOfRange",
        COMPACTED,
    );
    step!("compact at the current revision (logical), then write on");
    c.compact(7, None).await?;
    assert_grpc_err(c.get("k", Some(GetOptions::new().with_revision(6))).await, "OutOfRange", COMPACTED);
    assert_eq!(keys(&c.get("", Some(GetOptions::new().with_all_keys().with_revision(7))).await?), ["j", "k"]);
    assert_eq!(hrev(c.put("k", "v8", None).await?.header()), 8);
    Ok(())
}

/// Scenario: an empty key is InvalidArgument "key is not provided" on Put, Range (also with a range_end),
/// DeleteRange, a Txn compare and an op inside a Txn.
#[tokio::test]
async fn empty_key_is_invalid_argument() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put, range, range with range_end, delete");
    assert_grpc_err(c.put("", "v", None).await, "InvalidArgument", EMPTY_KEY);
    assert_grpc_err(c.get("", None).await, "InvalidArgument", EMPTY_KEY);
    assert_grpc_err(c.get("", Some(GetOptions::new().with_range("z"))).await, "InvalidArgument", EMPTY_KEY);
    assert_grpc_err(c.delete("", None).await, "InvalidArgument", EMPTY_KEY);
    step!("txn compare and txn ops");
    assert_grpc_err(
        c.txn(Txn::new().when([Compare::version("", CompareOp::Equal, 0)])).await,
        "InvalidArgument",
        EMPTY_KEY,
    );
    assert_grpc_err(c.txn(Txn::new().and_then([TxnOp::put("", "v", None)])).await, "InvalidArgument", EMPTY_KEY);
    assert_grpc_err(c.txn(Txn::new().or_else([TxnOp::get("", None)])).await, "InvalidArgument", EMPTY_KEY);
    assert_grpc_err(c.txn(Txn::new().and_then([TxnOp::delete("", None)])).await, "InvalidArgument", EMPTY_KEY);
    assert_eq!(current_rev(&mut c).await?, 1);
    Ok(())
}

/// Scenario: with `--max-request-bytes 1024`, a put (or txn) carrying a 2 KiB value is InvalidArgument
/// "request is too large"; nothing is written and the member keeps serving normal requests.
#[tokio::test]
async fn request_too_large_is_refused_and_server_keeps_working() -> Result<()> {
    let f = Fixture::start(&["--max-request-bytes", "1024"]).await;
    let mut c = f.client.clone();
    let big = vec![b'x'; 2048];
    step!("put a 2 KiB value");
    assert_grpc_err(c.put("big", big.clone(), None).await, "InvalidArgument", "etcdserver: request is too large");
    step!("txn with a 2 KiB value");
    assert_grpc_err(
        c.txn(Txn::new().and_then([TxnOp::put("big", big, None)])).await,
        "InvalidArgument",
        "etcdserver: request is too large",
    );
    step!("the server still works");
    assert_eq!(hrev(c.put("small", vec![b'y'; 512], None).await?.header()), 2);
    assert_eq!(get_one(&mut c, "small").await?.unwrap().value().len(), 512);
    assert!(get_one(&mut c, "big").await?.is_none());
    Ok(())
}

/// Scenario: every KV response carries a header with the same non-zero cluster_id and member_id, a non-zero
/// raft_term, and the revision: the write's revision for writes, the current one for reads, compact and
/// failed-compare txns; Status and MemberList agree on the ids.
#[tokio::test]
async fn response_headers_carry_ids_term_and_revision() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    let mut headers: Vec<(&str, ResponseHeader, i64)> = Vec::new();
    step!("one of each request");
    headers.push(("range", c.get("k", None).await?.header().unwrap().clone(), 1));
    headers.push(("put", c.put("k", "v", None).await?.header().unwrap().clone(), 2));
    headers.push(("put2", c.put("j", "v", None).await?.header().unwrap().clone(), 3));
    headers.push((
        "range-old",
        c.get("k", Some(GetOptions::new().with_revision(2))).await?.header().unwrap().clone(),
        3,
    ));
    headers.push(("delete", c.delete("j", None).await?.header().unwrap().clone(), 4));
    headers.push(("delete-none", c.delete("j", None).await?.header().unwrap().clone(), 4));
    headers.push(("txn", c.txn(Txn::new().and_then([TxnOp::put("t", "1", None)])).await?.header().unwrap().clone(), 5));
    let t = c.txn(Txn::new().when([Compare::version("t", CompareOp::Equal, 9)])).await?;
    headers.push(("txn-failed", t.header().unwrap().clone(), 5));
    headers.push(("compact", c.compact(2, None).await?.header().unwrap().clone(), 5));
    let status = c.status().await?;
    let members = c.member_list().await?;
    let (cid, mid) = (headers[0].1.cluster_id(), headers[0].1.member_id());
    step!("cluster_id={cid:x} member_id={mid:x}");
    assert_ne!(cid, 0, "cluster_id");
    assert_ne!(mid, 0, "member_id");
    for (name, h, want_rev) in &headers {
        assert_eq!((h.cluster_id(), h.member_id()), (cid, mid), "{name}: ids");
        assert!(h.raft_term() > 0, "{name}: raft_term is 0");
        assert_eq!(h.revision(), *want_rev, "{name}: revision");
    }
    step!("Status and MemberList headers and ids agree");
    let sh = status.header().unwrap();
    assert_eq!((sh.cluster_id(), sh.member_id(), sh.revision()), (cid, mid, 5));
    assert_eq!(status.raft_term(), headers.last().unwrap().1.raft_term());
    let mh = members.header().unwrap();
    assert_eq!((mh.cluster_id(), mh.member_id()), (cid, mid));
    assert_eq!(members.members()[0].id(), mid);
    Ok(())
}

/// Parses "3.5.17" (or "3.5.17-alpha") into (major, minor, patch).
fn semver(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u64>());
    let t = (it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?);
    it.next().is_none().then_some(t)
}

/// Scenario: Status reports a semver version >= 3.5.13 (kube-apiserver gates watch progress requests on it),
/// this member as leader, non-zero raft indexes, term and db size; MemberList reports exactly this member with
/// its name, peer URL and client URL, not a learner.
#[tokio::test]
async fn status_and_member_list() -> Result<()> {
    let mut f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    c.put("k", "v", None).await?;
    step!("Status");
    let st = c.status().await?;
    let mid = st.header().unwrap().member_id();
    step!(
        "version {:?}, leader {:x}, raft index {}, applied {}",
        st.version(),
        st.leader(),
        st.raft_index(),
        st.raft_applied_index()
    );
    let v = semver(st.version()).unwrap_or_else(|| panic!("version {:?} is not semver", st.version()));
    assert!(v >= (3, 5, 13), "version {:?} must be >= 3.5.13", st.version());
    assert_eq!(st.leader(), mid, "single member is its own leader");
    assert!(st.raft_index() > 0 && st.raft_applied_index() > 0 && st.raft_term() > 0);
    assert!(st.raft_applied_index() <= st.raft_index());
    assert!(st.db_size() > 0, "db_size");
    assert!(!st.is_learner());
    assert!(st.errors().is_empty(), "errors: {:?}", st.errors());
    step!("MemberList");
    let ml = c.member_list().await?;
    assert_eq!(ml.members().len(), 1);
    let m = &ml.members()[0];
    let me = f.raftcd().member.clone();
    assert_eq!(
        (m.id(), m.name(), m.peer_urls().to_vec(), m.client_urls().to_vec(), m.is_learner()),
        (mid, me.name.as_str(), vec![me.peer_url()], vec![me.client_url()], false)
    );
    Ok(())
}

/// Scenario: after a clean SIGTERM shutdown (exit code 0) and a restart on the same data dir, every key, its
/// history and revisions, the compaction point, the cluster and member ids and the revision counter survive.
#[tokio::test]
async fn data_survives_clean_sigterm_restart() -> Result<()> {
    let mut f = Fixture::start(&[]).await;
    if f.raftcd.is_none() {
        eprintln!("skipped: needs raftcd");
        return Ok(());
    }
    let mut c = f.client.clone();
    step!("write history: 20 keys, overwrites, a delete, a txn, compaction at 5");
    for i in 0..20 {
        c.put(format!("d/{i:02}"), format!("v{i}"), None).await?;
    }
    c.put("d/00", "again", None).await?;
    c.delete("d/01", None).await?;
    c.txn(Txn::new().and_then([TxnOp::put("d/02", "txn", None), TxnOp::put("t", "x", None)])).await?;
    c.compact(5, None).await?;
    let before = c.get("", Some(GetOptions::new().with_all_keys())).await?;
    let before_old = c.get("", Some(GetOptions::new().with_all_keys().with_revision(10))).await?;
    let rev = hrev(before.header());
    let ids = (before.header().unwrap().cluster_id(), before.header().unwrap().member_id());
    assert_eq!(rev, 24);
    let dump = |r: &GetResponse| {
        r.kvs().iter().map(|kv| (s(kv.key()), s(kv.value()), revs(kv), kv.lease())).collect::<Vec<_>>()
    };

    step!("SIGTERM: clean exit");
    drop(c);
    let code = f.raftcd().terminate();
    assert_eq!(code, Some(0), "raftcd should exit 0 on SIGTERM; log:\n{}", f.raftcd().log());
    step!("restart on the same data dir");
    f.raftcd().restart();
    let mut c = connect(&f.raftcd().endpoint()).await;

    step!("same keys, values, revisions, versions; same history; same ids; compaction kept");
    let after = c.get("", Some(GetOptions::new().with_all_keys())).await?;
    assert_eq!(dump(&after), dump(&before));
    assert_eq!(hrev(after.header()), rev);
    assert_eq!((after.header().unwrap().cluster_id(), after.header().unwrap().member_id()), ids);
    let after_old = c.get("", Some(GetOptions::new().with_all_keys().with_revision(10))).await?;
    assert_eq!(dump(&after_old), dump(&before_old));
    assert_grpc_err(c.get("d/00", Some(GetOptions::new().with_revision(4))).await, "OutOfRange", COMPACTED);
    step!("the revision counter continues");
    assert_eq!(hrev(c.put("d/00", "post", None).await?.header()), rev + 1);
    assert_eq!(get_one(&mut c, "d/00").await?.unwrap().version(), 3);
    Ok(())
}

/// Scenario: the requests kube-apiserver sends, as described in ETCD-API.md: create (Txn MOD==0 -> Put), update
/// (Txn MOD==rev -> Put else Range), delete (Txn MOD==rev -> Delete else Range), a paginated list at a fixed
/// revision with continue key = last key + "\x00", count_only, keys_only, and the compaction protocol (Txn
/// VERSION(compact_rev_key)==v -> Put else Range, then Compact).
#[tokio::test]
async fn kube_apiserver_request_patterns() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    let create = |k: &str, v: &str| {
        Txn::new().when([Compare::mod_revision(k, CompareOp::Equal, 0)]).and_then([TxnOp::put(k, v, None)])
    };
    let update = |k: &str, v: &str, rev: i64| {
        Txn::new()
            .when([Compare::mod_revision(k, CompareOp::Equal, rev)])
            .and_then([TxnOp::put(k, v, None)])
            .or_else([TxnOp::get(k, None)])
    };
    let delete = |k: &str, rev: i64| {
        Txn::new()
            .when([Compare::mod_revision(k, CompareOp::Equal, rev)])
            .and_then([TxnOp::delete(k, Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(k, None)])
    };
    let pods = "/registry/pods/default/";

    step!("create 10 pods");
    for i in 0..10 {
        let t = c.txn(create(&format!("{pods}p{i}"), &format!("spec{i}"))).await?;
        assert!(t.succeeded());
        assert_eq!(hrev(t.header()), 2 + i);
    }
    step!("create of an existing key fails, no else branch, no revision");
    let t = c.txn(create(&format!("{pods}p0"), "dup")).await?;
    assert!(!t.succeeded() && t.op_responses().is_empty());
    assert_eq!(hrev(t.header()), 11);

    step!("update with the right mod revision");
    let k0 = format!("{pods}p0");
    let t = c.txn(update(&k0, "spec0-v2", 2)).await?;
    assert!(t.succeeded());
    let new_rev = hrev(t.header());
    assert_eq!(new_rev, 12);
    step!("update with a stale mod revision: fails and returns the current object");
    let t = c.txn(update(&k0, "spec0-v3", 2)).await?;
    assert!(!t.succeeded());
    let cur = txn_get(&t.op_responses()[0]).kvs()[0].clone();
    assert_eq!((s(cur.value()), cur.mod_revision(), cur.version()), ("spec0-v2".into(), new_rev, 2));

    step!("Get: Range{{key, limit=1}}");
    let g = c.get(k0.clone(), Some(GetOptions::new().with_limit(1))).await?;
    assert_eq!((g.kvs().len(), g.more(), s(g.kvs()[0].value())), (1, false, "spec0-v2".into()));

    step!("paginated list at a revision, limit 3, continue key = last key + \\x00");
    let list_rev = new_rev;
    let end = "/registry/pods/default0"; // prefix end of ".../default/"
    let mut start = pods.to_string().into_bytes();
    let mut seen = Vec::new();
    let mut pages = 0;
    // Writes after list_rev must not show up in the pages.
    c.txn(create(&format!("{pods}p5a"), "late")).await?;
    assert!(c.txn(delete(&format!("{pods}p9"), 11)).await?.succeeded());
    loop {
        let r =
            c.get(start.clone(), Some(GetOptions::new().with_range(end).with_limit(3).with_revision(list_rev))).await?;
        pages += 1;
        let remaining = r.count() - r.kvs().len() as i64;
        seen.extend(keys(&r));
        step!("page {pages}: {:?} more={} remaining={remaining}", keys(&r), r.more());
        assert_eq!(r.count() as usize + seen.len() - r.kvs().len(), 10, "count is the rest of the range");
        if !r.more() {
            assert_eq!(remaining, 0);
            break;
        }
        start = r.kvs().last().unwrap().key().to_vec();
        start.push(0);
    }
    let want: Vec<String> = (0..10).map(|i| format!("{pods}p{i}")).collect();
    assert_eq!((seen, pages), (want, 4));

    step!("count_only and keys_only on the prefix (now 10: p5a added, p9 deleted)");
    let r = c.get(pods, Some(GetOptions::new().with_prefix().with_count_only())).await?;
    assert_eq!((r.count(), r.kvs().len()), (10, 0));
    let r = c.get(pods, Some(GetOptions::new().with_prefix().with_keys_only())).await?;
    assert_eq!(r.kvs().len(), 10);
    assert!(keys(&r).contains(&format!("{pods}p5a")) && !keys(&r).contains(&format!("{pods}p9")));

    step!("delete with a stale revision fails and returns the object; with the right one succeeds");
    let k1 = format!("{pods}p1");
    let t = c.txn(delete(&k1, 99)).await?;
    assert!(!t.succeeded());
    assert_eq!(txn_get(&t.op_responses()[0]).kvs()[0].mod_revision(), 3);
    let t = c.txn(delete(&k1, 3)).await?;
    assert!(t.succeeded());
    match &t.op_responses()[0] {
        TxnOpResponse::Delete(d) => assert_eq!((d.deleted(), s(d.prev_kvs()[0].value())), (1, "spec1".into())),
        other => panic!("expected a delete response: {other:?}"),
    }

    step!("compaction protocol: VERSION(compact_rev_key) CAS, then Compact");
    let compact_txn = |version: i64, rev: i64| {
        Txn::new()
            .when([Compare::version("compact_rev_key", CompareOp::Equal, version)])
            .and_then([TxnOp::put("compact_rev_key", rev.to_string(), None)])
            .or_else([TxnOp::get("compact_rev_key", None)])
    };
    let rev_now = current_rev(&mut c).await?;
    let t = c.txn(compact_txn(0, rev_now)).await?;
    assert!(t.succeeded(), "first compaction round wins the CAS");
    c.compact(rev_now, None).await?;
    step!("a second apiserver with a stale version loses and learns the current version");
    let t = c.txn(compact_txn(0, rev_now)).await?;
    assert!(!t.succeeded());
    let kv = txn_get(&t.op_responses()[0]).kvs()[0].clone();
    assert_eq!((kv.version(), s(kv.value())), (1, rev_now.to_string()));
    step!("next round with version 1");
    let rev2 = current_rev(&mut c).await?;
    let t = c.txn(compact_txn(1, rev2)).await?;
    assert!(t.succeeded());
    c.compact(rev2, None).await?;
    assert_eq!(get_one(&mut c, "compact_rev_key").await?.unwrap().version(), 2);
    assert_grpc_err(
        c.get(pods, Some(GetOptions::new().with_prefix().with_revision(list_rev))).await,
        "OutOfRange",
        COMPACTED,
    );
    step!("health check: Range on /registry/health answers");
    let r = c.get("/registry/health", None).await?;
    assert!(r.kvs().is_empty());
    Ok(())
}
