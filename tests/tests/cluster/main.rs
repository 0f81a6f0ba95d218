//! Multi-member clusters of real raftcd processes on loopback: replication and read consistency, leader failure
//! under a write load, loss of quorum, membership changes (a new member catching up through a streamed
//! snapshot, removal, a learner promoted), MoveLeader, MemberUpdate, restarting every member at once, Debian
//! `etcdctl`'s member and endpoint commands, and the codes and texts of the membership errors.
//!
//! Members run with `--heartbeat-interval 50 --election-timeout 500` unless timing is the point (the leader
//! failure test uses etcd's defaults, 100/1000). The tests take a global lock and run one at a time: several
//! 3-member clusters at once on a small machine would starve each other's elections.

mod errors;
mod etcdctl;
mod membership;
mod replication;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{GetOptions, MemberAddOptions};
use raftcd_tests::client::{connect, etcdctl_path, grpc_status, skip_allowed};
use raftcd_tests::cluster::{
    check_err, diff_kvs, etcdctl, expect_quorum_error, ids_of, learner_flag_becomes, member_id, position, put_keys,
    put_until_ok, raw_client, read_prefix, rev, status, wait_leader, wait_member_list, wait_serializable, EtcdctlOut,
    Kvs,
};
use raftcd_tests::{free_port, step, Member, RaftcdCluster, RaftcdProcess};
use serde_json::Value;

const FAST: &[&str] = &["--heartbeat-interval", "50", "--election-timeout", "500"];
/// raftcd's request timeout with [`FAST`]: 5 s plus two election timeouts, as etcd.
const FAST_REQUEST_TIMEOUT: Duration = Duration::from_secs(6);
const LEARNER_NOT_READY: &str = "etcdserver: can only promote a learner member which is in sync with leader";

/// One cluster test at a time (see the module doc). An async mutex: each test has its own runtime and holds
/// the guard across awaits.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs blocking harness calls (process start, kill, wait) without stalling the runtime's other tasks.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

fn start_cluster(dir: &Path, n: usize, args: &[&str]) -> RaftcdCluster {
    blocking(|| RaftcdCluster::start(dir, n, args))
}

/// Three [`FAST`] members once they have a leader.
struct Trio {
    cluster: RaftcdCluster,
    eps: Vec<String>,
    /// Member ids, by position.
    ids: Vec<u64>,
    /// The leader's position.
    li: usize,
    /// The followers' positions.
    followers: Vec<usize>,
}

async fn start_trio(dir: &Path) -> Trio {
    step!("start 3 members");
    let cluster = start_cluster(dir, 3, FAST);
    let eps = cluster.endpoints();
    let leader = wait_leader(&eps, None, Duration::from_secs(15)).await.expect("a leader");
    let ids = ids_of(&eps).await;
    let li = position(&ids, leader);
    let followers = (0..3).filter(|i| *i != li).collect();
    Trio { cluster, eps, ids, li, followers }
}
