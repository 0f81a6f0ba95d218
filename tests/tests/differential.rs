//! Differential test: one scripted sequence of KV requests (puts, gets with every option, deletes, txns with
//! failing compares and nesting, leases, compaction, reads at compacted and future revisions, error cases) is
//! sent through `etcd-client` to raftcd AND to a real etcd started by the test. Every response (or gRPC error
//! code + message) must be identical after normalising the fields that name the deployment:
//!
//! * `cluster_id`, `member_id`, `raft_term` in headers: replaced by a marker when non-zero (a zero stays zero,
//!   so a header field one server fills and the other leaves empty still shows up as a difference);
//! * revisions are NOT normalised: both stores start at revision 1 and must count identically.
//!
//! Justified exceptions (fields that differ by design) are listed in [`normalise_status`].

use std::fmt::Write as _;

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, KeyValue, LeaseGrantOptions, PutOptions,
    ResponseHeader, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use raftcd_tests::client::{connect, grpc_status, skip_allowed};
use raftcd_tests::{step, EtcdProcess, RaftcdProcess};
use serde_json::{json, Value};

/// A fixed lease id granted on both servers, so that lease fields compare equal.
const LEASE: i64 = 0x1000;

/// One request of the script.
#[derive(Clone, Debug)]
enum Req {
    Put(&'static [u8], &'static [u8], PutOptions),
    Get(&'static [u8], GetOptions),
    Del(&'static [u8], DeleteOptions),
    Tx(Txn),
    Compact(i64, bool),
    LeaseGrant(i64, i64),
    Status,
}

/// Bytes as a readable string: printable ASCII as is, the rest as \xNN.
fn b(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &c in bytes {
        if c.is_ascii_graphic() || c == b' ' {
            out.push(c as char);
        } else {
            let _ = write!(out, "\\x{c:02x}");
        }
    }
    out
}

/// The Debug text of a request with byte arrays (`[97, 0]`) shown as strings (`"a\x00"`).
fn readable(debug: &str) -> String {
    let mut out = String::new();
    let mut rest = debug;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(']').unwrap_or(0);
        let inner = &after[..end];
        let bytes: Option<Vec<u8>> =
            if inner.is_empty() { None } else { inner.split(", ").map(|n| n.parse::<u8>().ok()).collect() };
        match bytes {
            Some(bytes) => {
                let _ = write!(out, "\"{}\"", b(&bytes));
                rest = &after[end + 1..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn marker(v: u64, name: &str) -> Value {
    if v == 0 {
        json!(0)
    } else {
        json!(format!("<{name}>"))
    }
}

fn header(h: Option<&ResponseHeader>) -> Value {
    match h {
        None => Value::Null,
        Some(h) => json!({
            "cluster_id": marker(h.cluster_id(), "cluster"),
            "member_id": marker(h.member_id(), "member"),
            "raft_term": marker(h.raft_term(), "term"),
            "revision": h.revision(),
        }),
    }
}

fn kv(kv: &KeyValue) -> Value {
    json!({
        "key": b(kv.key()),
        "value": b(kv.value()),
        "create_revision": kv.create_revision(),
        "mod_revision": kv.mod_revision(),
        "version": kv.version(),
        "lease": kv.lease(),
    })
}

fn txn_json(t: &TxnResponse) -> Value {
    let ops: Vec<Value> = t
        .op_responses()
        .iter()
        .map(|r| match r {
            TxnOpResponse::Put(p) => {
                json!({"put": {"header": header(p.header()), "prev_kv": p.prev_key().map(kv)}})
            }
            TxnOpResponse::Get(g) => json!({"range": {
                "header": header(g.header()),
                "kvs": g.kvs().iter().map(kv).collect::<Vec<_>>(),
                "more": g.more(),
                "count": g.count(),
            }}),
            TxnOpResponse::Delete(d) => json!({"delete_range": {
                "header": header(d.header()),
                "deleted": d.deleted(),
                "prev_kvs": d.prev_kvs().iter().map(kv).collect::<Vec<_>>(),
            }}),
            TxnOpResponse::Txn(n) => json!({"txn": txn_json(n)}),
        })
        .collect();
    json!({"header": header(t.header()), "succeeded": t.succeeded(), "responses": ops})
}

/// Status, normalised. Justified exceptions, not compared:
/// * `version`: raftcd reports an etcd 3.5 version (kube-apiserver feature detection), the reference is 3.4;
/// * `db_size`, `db_size_in_use`: sled and bbolt files have nothing in common;
/// * `raft_index`, `raft_applied_index`: etcd also writes cluster-version and member-attribute entries to its
///   log, so the counts differ by a constant; both are checked to be > 0 and applied <= index.
///
/// Compared: the header, whether the member is its own leader, is_learner and the error list.
fn normalise_status(s: &etcd_client::StatusResponse) -> Value {
    let me = s.header().map(|h| h.member_id()).unwrap_or(0);
    json!({
        "header": header(s.header()),
        "leader_is_self": s.leader() == me && me != 0,
        "raft_indexes_sane": s.raft_index() > 0 && s.raft_applied_index() > 0 && s.raft_applied_index() <= s.raft_index(),
        "is_learner": s.is_learner(),
        "errors": s.errors(),
    })
}

async fn run(c: &mut Client, req: &Req) -> Value {
    let res: Result<Value, etcd_client::Error> = async {
        Ok(match req.clone() {
            Req::Put(k, v, o) => {
                let r = c.put(k, v, Some(o)).await?;
                json!({"header": header(r.header()), "prev_kv": r.prev_key().map(kv)})
            }
            Req::Get(k, o) => {
                let r = c.get(k, Some(o)).await?;
                json!({
                    "header": header(r.header()),
                    "kvs": r.kvs().iter().map(kv).collect::<Vec<_>>(),
                    "more": r.more(),
                    "count": r.count(),
                })
            }
            Req::Del(k, o) => {
                let r = c.delete(k, Some(o)).await?;
                json!({
                    "header": header(r.header()),
                    "deleted": r.deleted(),
                    "prev_kvs": r.prev_kvs().iter().map(kv).collect::<Vec<_>>(),
                })
            }
            Req::Tx(t) => txn_json(&c.txn(t).await?),
            Req::Compact(rev, physical) => {
                let o = if physical { CompactionOptions::new().with_physical() } else { CompactionOptions::new() };
                let r = c.compact(rev, Some(o)).await?;
                json!({"header": header(r.header())})
            }
            Req::LeaseGrant(ttl, id) => {
                let r = c.lease_grant(ttl, Some(LeaseGrantOptions::new().with_id(id))).await?;
                json!({"header": header(r.header()), "id": r.id(), "ttl": r.ttl()})
            }
            Req::Status => normalise_status(&c.status().await?),
        })
    }
    .await;
    match res {
        Ok(v) => v,
        Err(e) => match grpc_status(&e) {
            Some((code, message)) => json!({"error": {"code": code, "message": message}}),
            None => json!({"client_error": e.to_string()}),
        },
    }
}

/// Field-by-field differences between two JSON values, as "path: raftcd=… etcd=…" lines.
fn diff(path: &str, a: &Value, e: &Value, out: &mut Vec<String>) {
    match (a, e) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (va, ve) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
                diff(&format!("{path}.{k}"), va, ve, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, ve)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), va, ve, out);
            }
        }
        _ if a != e => out.push(format!("  {path}: raftcd={a} etcd={e}")),
        _ => {}
    }
}

fn put() -> PutOptions {
    PutOptions::new()
}
fn get() -> GetOptions {
    GetOptions::new()
}
fn del() -> DeleteOptions {
    DeleteOptions::new()
}

/// The script: (label, request). Comments give the revision the store is at after the step.
fn script() -> Vec<(&'static str, Req)> {
    use CompareOp::{Equal as Eq, Greater as Gt, Less as Lt, NotEqual as Ne};
    use Req::*;
    vec![
        ("get a on an empty store", Get(b"a", get())),
        ("range everything on an empty store", Get(b"\0", get().with_from_key())),
        ("put a=1", Put(b"a", b"1", put())),                                   // 2
        ("put a=2 prev_kv", Put(b"a", b"2", put().with_prev_key())),           // 3
        ("put b=1 prev_kv (new key)", Put(b"b", b"1", put().with_prev_key())), // 4
        ("put c/1", Put(b"c/1", b"z", put())),                                 // 5
        ("put c/2", Put(b"c/2", b"y", put())),                                 // 6
        ("put c/3", Put(b"c/3", b"x", put())),                                 // 7
        ("put c/2 again", Put(b"c/2", b"w", put())),                           // 8
        ("put 0xff", Put(b"\xff", b"ff", put())),                              // 9
        ("put 0xff 0xff", Put(b"\xff\xff", b"ffff", put())),                   // 10
        ("get a", Get(b"a", get())),
        ("get c/ prefix", Get(b"c/", get().with_prefix())),
        ("get c/ prefix limit 2", Get(b"c/", get().with_prefix().with_limit(2))),
        ("get c/ prefix limit 3", Get(b"c/", get().with_prefix().with_limit(3))),
        ("get c/ prefix count_only limit 1", Get(b"c/", get().with_prefix().with_count_only().with_limit(1))),
        ("get from \\0 keys_only", Get(b"\0", get().with_from_key().with_keys_only())),
        ("get [b, c/3)", Get(b"b", get().with_range("c/3"))),
        ("get 0xff prefix", Get(b"\xff", get().with_prefix())),
        ("get range_end below key", Get(b"c", get().with_range("a"))),
        ("get all sort mod desc", Get(b"\0", get().with_all_keys().with_sort(SortTarget::Mod, SortOrder::Descend))),
        (
            "get all sort version asc limit 2",
            Get(b"\0", get().with_all_keys().with_sort(SortTarget::Version, SortOrder::Ascend).with_limit(2)),
        ),
        ("get all sort value desc", Get(b"\0", get().with_all_keys().with_sort(SortTarget::Value, SortOrder::Descend))),
        (
            "get all sort create, order NONE",
            Get(b"\0", get().with_all_keys().with_sort(SortTarget::Create, SortOrder::None)),
        ),
        ("get all sort key desc", Get(b"\0", get().with_all_keys().with_sort(SortTarget::Key, SortOrder::Descend))),
        ("get all mod in [3, 6]", Get(b"\0", get().with_all_keys().with_min_mod_revision(3).with_max_mod_revision(6))),
        (
            "get all create in [4, 6] limit 1",
            Get(b"\0", get().with_all_keys().with_min_create_revision(4).with_max_create_revision(6).with_limit(1)),
        ),
        ("get c/ prefix serializable", Get(b"c/", get().with_prefix().with_serializable())),
        ("get a at rev 2", Get(b"a", get().with_revision(2))),
        ("get all at rev 6", Get(b"\0", get().with_all_keys().with_revision(6))),
        ("get a at future rev 11", Get(b"a", get().with_revision(11))),
        ("lease grant 0x1000 ttl 600", LeaseGrant(600, LEASE)),
        ("lease grant 0x1000 again", LeaseGrant(600, LEASE)),
        ("put l=x with lease", Put(b"l", b"x", put().with_lease(LEASE))), // 11
        ("put l=y ignore_lease prev_kv", Put(b"l", b"y", put().with_ignore_lease().with_prev_key())), // 12
        ("put l ignore_value (lease detached)", Put(b"l", b"", put().with_ignore_value().with_prev_key())), // 13
        ("put missing ignore_value", Put(b"missing", b"", put().with_ignore_value())),
        ("put missing ignore_lease", Put(b"missing", b"v", put().with_ignore_lease())),
        ("put a ignore_value with value", Put(b"a", b"v", put().with_ignore_value())),
        ("put a ignore_lease with lease", Put(b"a", b"v", put().with_ignore_lease().with_lease(LEASE))),
        ("put a with unknown lease", Put(b"a", b"v", put().with_lease(0x9999))),
        ("put empty key", Put(b"", b"v", put())),
        ("get empty key", Get(b"", get())),
        ("delete empty key", Del(b"", del())),
        ("delete missing", Del(b"missing", del().with_prev_key())),
        ("delete b prev_kv", Del(b"b", del().with_prev_key())), // 14
        ("put d/1", Put(b"d/1", b"1", put())),                  // 15
        ("put d/2", Put(b"d/2", b"2", put())),                  // 16
        ("put d/3", Put(b"d/3", b"3", put())),                  // 17
        ("delete [d/1, d/3) prev_kv", Del(b"d/1", del().with_range("d/3").with_prev_key())), // 18
        (
            "txn create n (MOD==0 -> put)",
            Tx(Txn::new().when([Compare::mod_revision("n", Eq, 0)]).and_then([TxnOp::put("n", "1", None)])),
        ), // 19
        (
            "txn create n again (fails, no else)",
            Tx(Txn::new().when([Compare::mod_revision("n", Eq, 0)]).and_then([TxnOp::put("n", "2", None)])),
        ),
        (
            "txn update a with stale MOD (else range)",
            Tx(Txn::new()
                .when([Compare::mod_revision("a", Eq, 2)])
                .and_then([TxnOp::put("a", "x", None)])
                .or_else([TxnOp::get("a", None)])),
        ),
        (
            "txn: put, get, delete, nested txn (compare sees pre-txn state), get, count",
            Tx(Txn::new().when([Compare::value("a", Eq, "2"), Compare::version("a", Gt, 1)]).and_then([
                TxnOp::put("a", "3", Some(put().with_prev_key())),
                TxnOp::get("a", None),
                TxnOp::delete("d/3", Some(del().with_prev_key())),
                TxnOp::txn(
                    Txn::new()
                        .when([Compare::value("a", Eq, "2")])
                        .and_then([TxnOp::put("e", "then", None), TxnOp::get("a", None)])
                        .or_else([TxnOp::put("e", "else", None)]),
                ),
                TxnOp::get("e", None),
                TxnOp::get("\0", Some(get().with_from_key().with_count_only())),
            ])), // 20
        ),
        (
            "txn lease compares",
            Tx(Txn::new()
                .when([Compare::lease("l", Eq, 0), Compare::lease("missing", Eq, 0)])
                .and_then([TxnOp::get("l", None)])
                .or_else([TxnOp::get("a", None)])),
        ),
        (
            "txn create/mod compares over a prefix",
            Tx(Txn::new()
                .when([
                    Compare::create_revision("c/", Lt, 8).with_prefix(),
                    Compare::mod_revision("c/", Ne, 8).with_prefix(),
                ])
                .and_then([TxnOp::put("f", "1", None)])
                .or_else([TxnOp::put("f", "2", None), TxnOp::get("c/", Some(get().with_prefix().with_keys_only()))])),
        ), // 21
        (
            "txn value compare on a missing key (else)",
            Tx(Txn::new()
                .when([Compare::value("missing", Ne, "zzz")])
                .and_then([TxnOp::put("g", "then", None)])
                .or_else([TxnOp::put("g", "else", None)])),
        ), // 22
        (
            "txn compare over an empty range",
            Tx(Txn::new()
                .when([Compare::version("x/", Eq, 0).with_prefix(), Compare::value("x/", Eq, "").with_prefix()])),
        ),
        ("txn duplicate put", Tx(Txn::new().and_then([TxnOp::put("h", "1", None), TxnOp::put("h", "2", None)]))),
        (
            "txn put inside a deleted range",
            Tx(Txn::new().and_then([TxnOp::delete("c/", Some(del().with_prefix())), TxnOp::put("c/9", "1", None)])),
        ),
        (
            "txn put in outer and nested",
            Tx(Txn::new()
                .and_then([TxnOp::put("h", "1", None), TxnOp::txn(Txn::new().or_else([TxnOp::put("h", "2", None)]))])),
        ),
        (
            "txn 129 puts",
            Tx(Txn::new().and_then((0..129).map(|i| TxnOp::put(format!("m/{i}"), "v", None)).collect::<Vec<_>>())),
        ),
        ("txn empty compare key", Tx(Txn::new().when([Compare::version("", Eq, 0)]))),
        ("txn put unknown lease", Tx(Txn::new().and_then([TxnOp::put("h", "1", Some(put().with_lease(0x9999)))]))),
        (
            "txn read-only",
            Tx(Txn::new().and_then([TxnOp::get("a", None), TxnOp::get("c/", Some(get().with_prefix().with_limit(1)))])),
        ),
        ("txn whose only write deletes nothing", Tx(Txn::new().and_then([TxnOp::delete("nothing", None)]))),
        ("txn with empty branches", Tx(Txn::new())),
        ("compact future 23", Compact(23, false)),
        ("compact 10", Compact(10, false)),
        ("get a at rev 9 (compacted)", Get(b"a", get().with_revision(9))),
        ("get all at rev 10", Get(b"\0", get().with_all_keys().with_revision(10))),
        ("compact 10 again", Compact(10, false)),
        ("compact 5 (below)", Compact(5, true)),
        ("txn get at compacted rev", Tx(Txn::new().and_then([TxnOp::get("a", Some(get().with_revision(3)))]))),
        ("compact 22 physical", Compact(22, true)),
        ("get all after compaction", Get(b"\0", get().with_all_keys())),
        ("put after compaction", Put(b"a", b"4", put().with_prev_key())), // 23
        ("status", Status),
        ("delete all prev_kv", Del(b"\0", del().with_all_keys().with_prev_key())), // 24
        ("get all count_only", Get(b"\0", get().with_all_keys().with_count_only())),
        ("get a at rev 23", Get(b"a", get().with_revision(23))),
        ("put a after delete-all", Put(b"a", b"5", put().with_prev_key())), // 25
        ("get a", Get(b"a", get())),
        // Last, as a raftcd/etcd difference here would shift every later revision.
        (
            "txn put then get at the txn's own (future) revision 26",
            Tx(Txn::new().and_then([TxnOp::put("h", "1", None), TxnOp::get("h", Some(get().with_revision(26)))])),
        ),
        ("get all", Get(b"\0", get().with_all_keys())),
    ]
}

/// Scenario: the script runs step by step against raftcd and etcd; each pair of answers must be identical
/// after normalisation. All differences are collected and printed as a readable diff before failing.
#[tokio::test]
async fn raftcd_answers_like_etcd() {
    if !EtcdProcess::available() {
        assert!(skip_allowed(), "etcd is not installed (set RAFTCD_ALLOW_SKIP=1 to skip)");
        eprintln!("skipped: etcd binary not found and RAFTCD_ALLOW_SKIP=1");
        return;
    }
    step!("start raftcd and etcd");
    let dir = tempfile::tempdir().expect("tempdir");
    let raftcd = RaftcdProcess::start_single(dir.path(), &[]);
    let etcd = EtcdProcess::start();
    let mut rc = connect(&raftcd.endpoint()).await;
    let mut ec = connect(&etcd.endpoint()).await;

    let script = script();
    assert!(script.len() >= 40);
    step!("run {} requests against both", script.len());
    let mut report = String::new();
    let mut mismatches = 0;
    for (i, (label, req)) in script.iter().enumerate() {
        let a = run(&mut rc, req).await;
        let e = run(&mut ec, req).await;
        let mut lines = Vec::new();
        diff("$", &a, &e, &mut lines);
        if lines.is_empty() {
            eprintln!("    [{i:02}] ok       {label}");
            continue;
        }
        mismatches += 1;
        eprintln!("    [{i:02}] MISMATCH {label}");
        let _ = writeln!(report, "\n[{i:02}] {label}\n  request: {}\n  differences:", readable(&format!("{req:?}")));
        for l in &lines {
            let _ = writeln!(report, "  {l}");
        }
        let _ = writeln!(
            report,
            "  raftcd: {}\n  etcd:   {}",
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&e).unwrap()
        );
    }
    assert!(
        mismatches == 0,
        "{mismatches} of {} responses differ between raftcd and etcd:{report}\nraftcd log tail:\n{}",
        script.len(),
        raftcd.log().lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}
