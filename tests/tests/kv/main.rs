//! The etcd v3 KV API of a real raftcd process, driven by a client we did not write (`etcd-client`).
//!
//! Every test starts its own single-member raftcd (fresh data dir, ephemeral ports), so revisions are
//! predictable: a fresh store is at revision 1 and each write request adds exactly one.
//!
//! The expectations are etcd's. To check the expectations themselves, run the suite against a real etcd:
//! `RAFTCD_KV_TARGET=etcd cargo test -p raftcd-tests --test kv` (tests of raftcd-only properties, such as the
//! reported version or a SIGTERM restart, then skip themselves or are expected to fail on etcd 3.4).

mod range;
mod revisions;
mod server;
mod txn;
mod write;

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
