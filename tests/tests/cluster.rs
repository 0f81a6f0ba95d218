//! Multi-member clusters of real raftcd processes on loopback: replication and read consistency, leader failure
//! under a write load, loss of quorum, membership changes (a new member catching up through a streamed
//! snapshot, removal, a learner promoted), MoveLeader, MemberUpdate, restarting every member at once, Debian
//! `etcdctl`'s member and endpoint commands, and the codes and texts of the membership errors.
//!
//! Members run with `--heartbeat-interval 50 --election-timeout 500` unless timing is the point (the leader
//! failure test uses etcd's defaults, 100/1000). The tests take a global lock and run one at a time: several
//! 3-member clusters at once on a small machine would starve each other's elections.

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

/// Scenario: a 3-member cluster; ten puts through each member in turn (followers forward their proposals), each
/// followed by a linearizable get of the new key through the next member, which must see it at the acked
/// revision; then a linearizable read of everything on every member returns exactly the acknowledged writes,
/// the serializable reads of all members converge to the same, and all members report one cluster id and one
/// leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_through_every_member_are_read_everywhere() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    step!("start 3 members");
    let cluster = start_cluster(dir.path(), 3, FAST);
    let eps = cluster.endpoints();
    let leader = wait_leader(&eps, None, Duration::from_secs(15)).await.expect("a leader");
    let mut clients = Vec::new();
    for ep in &eps {
        clients.push(connect(ep).await);
    }

    step!("10 puts through each member; each read back linearizably through the next member");
    let mut acked = Kvs::new();
    let mut last_rev = 0;
    for i in 0..10 {
        for m in 0..3 {
            let (key, value) = (format!("rw/m{}/{i:02}", m + 1), format!("v{i}-via-m{}", m + 1));
            let r = clients[m]
                .put(key.clone(), value.clone(), None)
                .await
                .unwrap_or_else(|e| panic!("put {key} via m{}: {e}", m + 1));
            let r_rev = rev(r.header());
            assert!(r_rev > last_rev, "put {key} acked revision {r_rev}, not above the previous write's {last_rev}");
            last_rev = r_rev;
            let next = (m + 1) % 3;
            let g = clients[next]
                .get(key.clone(), None)
                .await
                .unwrap_or_else(|e| panic!("get {key} via m{}: {e}", next + 1));
            let got: Vec<(String, i64)> = g
                .kvs()
                .iter()
                .map(|kv| (String::from_utf8_lossy(kv.value()).into_owned(), kv.mod_revision()))
                .collect();
            assert_eq!(
                got,
                vec![(value.clone(), r_rev)],
                "linearizable get of {key} via m{} right after its ack",
                next + 1
            );
            assert!(
                rev(g.header()) >= r_rev,
                "read header revision {} below the acked write's {r_rev}",
                rev(g.header())
            );
            acked.insert(key, (value, r_rev));
        }
    }

    step!("a linearizable read of everything on every member returns exactly the acknowledged writes");
    for (m, c) in clients.iter_mut().enumerate() {
        let got = read_prefix(c, "rw/", false).await.unwrap_or_else(|e| panic!("read m{}: {e}", m + 1));
        let d = diff_kvs(&acked, &got, true);
        assert!(d.is_empty(), "linearizable read on m{}: {d}", m + 1);
    }

    step!("serializable reads of every member converge");
    for ep in &eps {
        wait_serializable(ep, "rw/", &acked, true, Duration::from_secs(5)).await.expect("serializable convergence");
    }

    step!("one cluster id, one leader");
    let mut cluster_ids = HashSet::new();
    for ep in &eps {
        let s = status(ep).await.expect("status");
        cluster_ids.insert(s.header().map(|h| h.cluster_id()).unwrap_or(0));
        assert_eq!(s.leader(), leader, "{ep} names another leader");
        assert!(s.raft_applied_index() > 0 && s.raft_index() >= s.raft_applied_index() && s.raft_term() > 0);
    }
    assert_eq!(cluster_ids.len(), 1, "members disagree on the cluster id: {cluster_ids:x?}");
    assert!(!cluster_ids.contains(&0), "cluster id 0");
}

/// One acknowledged write of the load.
#[derive(Debug)]
struct Ack {
    key: String,
    value: String,
    rev: i64,
    at: Instant,
}

/// What one writer did.
#[derive(Debug, Default)]
struct WriterLog {
    acks: Vec<Ack>,
    errors: Vec<String>,
}

/// Puts unique keys through one endpoint until `stop`; records acks (with revisions) and errors (unknown outcome).
async fn writer(ep: String, w: usize, stop: Arc<AtomicBool>) -> WriterLog {
    let mut c = raw_client(&ep).await;
    let mut log = WriterLog::default();
    let tag: u32 = rand::random();
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let (key, value) = (format!("load/w{w}/{i:05}"), format!("{w}-{i}-{tag:08x}"));
        i += 1;
        match tokio::time::timeout(Duration::from_secs(9), c.put(key.clone(), value.clone(), None)).await {
            Ok(Ok(r)) => log.acks.push(Ack { key, value, rev: rev(r.header()), at: Instant::now() }),
            Ok(Err(e)) => {
                log.errors.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
                c = raw_client(&ep).await;
            }
            Err(_) => {
                log.errors.push("no answer within 9 s".into());
                c = raw_client(&ep).await;
            }
        }
    }
    log
}

/// Polls one member's Status until `stop`; returns (samples, violations): a header revision below one the same
/// member reported before is a violation (across a restart of the member too).
async fn watch_revisions(ep: String, name: String, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let mut c = raw_client(&ep).await;
    let (mut max, mut samples, mut violations) = (0i64, 0usize, Vec::new());
    let start = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        match tokio::time::timeout(Duration::from_millis(500), c.status()).await {
            Ok(Ok(s)) => {
                let r = rev(s.header());
                if r < max {
                    violations.push(format!("{name}: revision {r} after {max} at +{:?}", start.elapsed()));
                }
                max = max.max(r);
                samples += 1;
            }
            _ => c = raw_client(&ep).await,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (samples, violations)
}

/// Scenario: 3 members with etcd's default timing (heartbeat 100 ms, election timeout 1 s). Six writers put
/// unique keys through all three endpoints while a poller per member watches Status header revisions. The
/// leader (found via Status) is killed with SIGKILL: the survivors elect a new leader within a few election
/// timeouts and writes go on. The old leader restarts and catches up. Checked: every acknowledged write is
/// there with its value at its acked revision (read back linearizably), no two acks share a revision,
/// no member's revision ever went backwards, writes were acknowledged after the failover, the restarted
/// member's serializable read returns exactly what the cluster holds, and it did not disturb the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn leader_killed_under_write_load() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    step!("start 3 members (heartbeat 100 ms, election timeout 1 s)");
    let mut cluster = start_cluster(dir.path(), 3, &["--heartbeat-interval", "100", "--election-timeout", "1000"]);
    let eps = cluster.endpoints();
    let old = wait_leader(&eps, None, Duration::from_secs(15)).await.expect("a leader");
    let ids = ids_of(&eps).await;
    let li = position(&ids, old);
    step!("leader is m{} ({old:x})", li + 1);

    step!("6 writers through all endpoints, one Status poller per member");
    let stop_writers = Arc::new(AtomicBool::new(false));
    let stop_pollers = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..6).map(|w| tokio::spawn(writer(eps[w % 3].clone(), w, stop_writers.clone()))).collect();
    let pollers: Vec<_> = (0..3)
        .map(|m| tokio::spawn(watch_revisions(eps[m].clone(), format!("m{}", m + 1), stop_pollers.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    step!("kill -9 the leader m{}", li + 1);
    let killed_at = Instant::now();
    blocking(|| cluster.members[li].kill());
    let survivors: Vec<String> = eps.iter().enumerate().filter(|(i, _)| *i != li).map(|(_, e)| e.clone()).collect();
    let new = wait_leader(&survivors, Some(old), Duration::from_secs(15)).await.expect("a new leader");
    let took = killed_at.elapsed();
    let elected_at = Instant::now();
    step!("new leader m{} ({new:x}) after {took:?}", position(&ids, new) + 1);
    assert!(took < Duration::from_secs(5), "a new leader took {took:?} (> 5 election timeouts)");
    tokio::time::sleep(Duration::from_secs(2)).await;

    step!("restart the old leader while the load goes on");
    blocking(|| cluster.members[li].restart());
    let restarted_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_writers.store(true, Ordering::SeqCst);
    let mut logs = Vec::new();
    for w in writers {
        logs.push(w.await.expect("writer task"));
    }
    let acks: Vec<&Ack> = logs.iter().flat_map(|l| l.acks.iter()).collect();
    let errors: usize = logs.iter().map(|l| l.errors.len()).sum();
    let after_failover = acks.iter().filter(|a| a.at > elected_at).count();
    let via_restarted = logs.iter().enumerate().filter(|(w, _)| w % 3 == li).flat_map(|(_, l)| l.acks.iter());
    let via_restarted = via_restarted.filter(|a| a.at > restarted_at).count();
    step!("{} acked writes ({after_failover} after the failover, {via_restarted} through the restarted member after its restart), {errors} errors", acks.len());
    for (w, l) in logs.iter().enumerate() {
        if let Some(e) = l.errors.first() {
            eprintln!("    writer {w} (m{}): {} errors, first: {e}", w % 3 + 1, l.errors.len());
        }
    }
    assert!(after_failover > 0, "no write was acknowledged after the new leader was elected");

    step!("every acknowledged write is there, at its acked revision (linearizable read via the new leader)");
    let mut c = connect(&eps[position(&ids, new)]).await;
    let all = read_prefix(&mut c, "load/", false).await.expect("read back");
    let want: Kvs = acks.iter().map(|a| (a.key.clone(), (a.value.clone(), a.rev))).collect();
    let d = diff_kvs(&want, &all, false);
    assert!(d.is_empty(), "acknowledged writes lost or changed: {d}");
    let revs: HashSet<i64> = acks.iter().map(|a| a.rev).collect();
    assert_eq!(revs.len(), acks.len(), "two acknowledged writes share a revision");

    step!("the restarted member catches up: its serializable read returns exactly the cluster's data");
    wait_serializable(&eps[li], "load/", &all, true, Duration::from_secs(15))
        .await
        .expect("restarted member catches up");
    let leader_now = wait_leader(&eps, None, Duration::from_secs(10)).await.expect("leader after the restart");
    assert_eq!(leader_now, new, "the restarted member disturbed the leader (pre-vote should prevent that)");

    stop_pollers.store(true, Ordering::SeqCst);
    let mut violations = Vec::new();
    for (m, p) in pollers.into_iter().enumerate() {
        let (samples, v) = p.await.expect("poller task");
        eprintln!("    m{}: {samples} Status samples", m + 1);
        assert!(samples > 10, "m{}: only {samples} Status samples", m + 1);
        violations.extend(v);
    }
    assert!(violations.is_empty(), "revisions went backwards: {violations:#?}");
}

/// Scenario: 3 members; both followers are killed, so the leader is alone: a put and a linearizable get through
/// it fail with Unavailable ("request timed out" / "no leader" / "leader changed") within the request timeout
/// (6 s here) instead of hanging, while a serializable get still answers from local state. One follower comes
/// back: writes and linearizable reads work again. Then the leader of the remaining two is killed, leaving a
/// follower alone: same errors through it; its peer comes back: service resumes. Finally the third member
/// returns and every member converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn majority_loss_fails_fast_and_recovers() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    step!("start 3 members");
    let mut cluster = start_cluster(dir.path(), 3, FAST);
    let eps = cluster.endpoints();
    let leader = wait_leader(&eps, None, Duration::from_secs(15)).await.expect("a leader");
    let ids = ids_of(&eps).await;
    let li = position(&ids, leader);
    let followers: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    let mut c = connect(&eps[li]).await;
    c.put("ql/before", "1", None).await.expect("put before the faults");
    let mut problems = Vec::new();

    step!("kill both followers (m{} and m{}); the leader m{} is alone", followers[0] + 1, followers[1] + 1, li + 1);
    blocking(|| followers.iter().for_each(|f| cluster.members[*f].kill()));
    let (mut c1, mut c2) = (raw_client(&eps[li]).await, raw_client(&eps[li]).await);
    let (a, b) = tokio::join!(
        expect_quorum_error(FAST_REQUEST_TIMEOUT, "put via the lone former leader", c1.put("ql/lost-a", "x", None)),
        expect_quorum_error(
            FAST_REQUEST_TIMEOUT,
            "linearizable get via the lone former leader",
            c2.get("ql/before", None)
        ),
    );
    problems.extend(a.into_iter().chain(b));
    step!("a serializable get still answers from local state");
    let g = c1.get("ql/before", Some(GetOptions::new().with_serializable())).await;
    match g {
        Ok(g) if g.kvs().len() == 1 && g.kvs()[0].value() == b"1" => {}
        other => problems.push(format!("serializable get on the lone member: {other:?}")),
    }

    step!("restart m{}: service resumes", followers[0] + 1);
    blocking(|| cluster.members[followers[0]].restart());
    put_until_ok(&eps[li], "ql/after-a", "2", Duration::from_secs(20)).await;
    for ep in [&eps[li], &eps[followers[0]]] {
        let mut c = raw_client(ep).await;
        let got = read_prefix(&mut c, "ql/", false).await.unwrap_or_else(|e| panic!("linearizable read via {ep}: {e}"));
        assert_eq!(got.get("ql/after-a").map(|v| v.0.as_str()), Some("2"), "via {ep}: {got:?}");
        assert_eq!(got.get("ql/before").map(|v| v.0.as_str()), Some("1"), "via {ep}: {got:?}");
    }

    let pair = vec![eps[li].clone(), eps[followers[0]].clone()];
    let l2 = wait_leader(&pair, None, Duration::from_secs(10)).await.expect("leader of the two");
    let l2i = position(&ids, l2);
    let alone = if l2i == li { followers[0] } else { li };
    step!("kill the leader m{} of the remaining two; follower m{} is alone", l2i + 1, alone + 1);
    blocking(|| cluster.members[l2i].kill());
    let (mut c1, mut c2) = (raw_client(&eps[alone]).await, raw_client(&eps[alone]).await);
    let (a, b) = tokio::join!(
        expect_quorum_error(FAST_REQUEST_TIMEOUT, "put via a lone follower", c1.put("ql/lost-b", "x", None)),
        expect_quorum_error(FAST_REQUEST_TIMEOUT, "linearizable get via a lone follower", c2.get("ql/before", None)),
    );
    problems.extend(a.into_iter().chain(b));

    step!("restart m{}: service resumes", l2i + 1);
    blocking(|| cluster.members[l2i].restart());
    put_until_ok(&eps[alone], "ql/after-b", "3", Duration::from_secs(20)).await;
    let mut c = raw_client(&eps[alone]).await;
    let want = read_prefix(&mut c, "ql/", false).await.expect("linearizable read via the formerly lone follower");
    assert_eq!(want.get("ql/after-b").map(|v| v.0.as_str()), Some("3"), "{want:?}");

    step!("restart the last member m{}; every member converges", followers[1] + 1);
    blocking(|| cluster.members[followers[1]].restart());
    for ep in &eps {
        if let Err(e) = wait_serializable(ep, "ql/", &want, true, Duration::from_secs(15)).await {
            problems.push(e);
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Scenario: 3 members with `--snapshot-count 20`; 200 keys are written, so every member compacts its raft log.
/// m4 is added with MemberAdd and started with `--initial-cluster-state existing`: the entries it needs are
/// gone, so it catches up through a streamed snapshot (its log says "installed snapshot"), its serializable
/// reads return all 200 keys, it publishes its name and client URL, and it serves linearizable reads as a
/// voter. A follower is removed with MemberRemove: it shuts itself down (its process exits cleanly) and every
/// member drops it from the list. m5 is added as a learner and started: it refuses writes and linearizable
/// reads ("rpc not supported for learner"), Status says it is a learner, it catches up; MemberPromote is
/// retried while it answers "can only promote a learner member which is in sync with leader" and then
/// succeeds: m5 is a voter and serves writes. Last, the leader removes itself: its process exits, the other
/// three elect a new leader and serve writes and linearizable reads with all the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_join_through_snapshots_leave_and_learners_get_promoted() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let args: Vec<&str> = FAST.iter().copied().chain(["--snapshot-count", "20"]).collect();
    step!("start 3 members with --snapshot-count 20");
    let mut cluster = start_cluster(dir.path(), 3, &args);
    let eps = cluster.endpoints();
    let leader = wait_leader(&eps, None, Duration::from_secs(15)).await.expect("a leader");
    let ids = ids_of(&eps).await;
    let li = position(&ids, leader);
    let mut c = connect(&eps[li]).await;

    step!("write 200 keys; every member compacts its raft log");
    let mut acked = put_keys(&mut c, "snap/", 200).await;
    for m in &cluster.members {
        let log = m.log();
        assert!(log.contains("raft log compacted"), "{} never compacted its log:\n{log}", m.member.name);
    }

    step!("MemberAdd m4 (voter)");
    let m4 = Member::new(dir.path(), "m4");
    let r = c.member_add([m4.peer_url()], None).await.expect("member add m4");
    let added = r.member().expect("added member in the response");
    let m4_id = added.id();
    assert!(m4_id != 0 && !added.is_learner(), "{added:?}");
    assert_eq!(added.peer_urls(), [m4.peer_url()]);
    assert_eq!(r.member_list().len(), 4, "{:?}", r.member_list());

    step!("start m4 with --initial-cluster-state existing; it catches up through a snapshot");
    let initial = format!("{},{}", cluster.initial_cluster(), m4.initial_cluster_entry());
    let mut m4 = blocking(|| RaftcdProcess::start_joining(m4, &initial, &args));
    let m4_ep = m4.endpoint();
    if let Err(e) = wait_serializable(&m4_ep, "snap/", &acked, true, Duration::from_secs(20)).await {
        panic!("{e}\nm4 log:\n{}", m4.log());
    }
    // The line is logged just after the installed state becomes visible: give it a moment.
    let start = Instant::now();
    while !m4.log().contains("installed snapshot") {
        assert!(start.elapsed() < Duration::from_secs(5), "m4 caught up without installing a snapshot:\n{}", m4.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_member_list(&mut c, "m4 with its name and client URL", |ms| {
        ms.iter().any(|m| m.id() == m4_id && m.name() == "m4" && m.client_urls() == [m4.member.client_url()])
    })
    .await;
    let s = status(&m4_ep).await.expect("m4 status");
    assert_eq!(s.header().map(|h| h.member_id()), Some(m4_id));
    assert!(!s.is_learner());
    let mut c4 = connect(&m4_ep).await;
    let got = read_prefix(&mut c4, "snap/", false).await.expect("linearizable read on m4");
    assert!(diff_kvs(&acked, &got, true).is_empty(), "{}", diff_kvs(&acked, &got, true));

    let vi = (0..3).find(|i| *i != li).expect("a follower");
    step!("MemberRemove the follower m{} ({:x}): it shuts itself down", vi + 1, ids[vi]);
    let r = c.member_remove(ids[vi]).await.expect("member remove");
    assert_eq!(r.members().len(), 3, "{:?}", r.members());
    assert!(r.members().iter().all(|m| m.id() != ids[vi]), "{:?}", r.members());
    let exit = blocking(|| cluster.members[vi].wait_exit(Duration::from_secs(15)));
    let Some(exit) = exit else {
        panic!("removed member m{} still runs 15 s later; its log:\n{}", vi + 1, cluster.members[vi].log());
    };
    assert!(exit.success(), "removed member m{} exited with {exit}; log:\n{}", vi + 1, cluster.members[vi].log());
    let remaining: Vec<String> = (0..3).filter(|i| *i != vi).map(|i| eps[i].clone()).chain([m4_ep.clone()]).collect();
    for ep in &remaining {
        let mut cc = raw_client(ep).await;
        wait_member_list(&mut cc, "the removed member gone", |ms| {
            ms.len() == 3 && ms.iter().all(|m| m.id() != ids[vi])
        })
        .await;
    }
    let r = c4.put("snap/after-remove", "x", None).await.expect("put via m4 after the removal");
    acked.insert("snap/after-remove".into(), ("x".into(), rev(r.header())));

    step!("MemberAdd m5 as a learner and start it");
    let m5 = Member::new(dir.path(), "m5");
    let r = c.member_add([m5.peer_url()], Some(MemberAddOptions::new().with_is_learner())).await.expect("add learner");
    let m5_id = r.member().map(|m| m.id()).expect("added learner");
    assert!(r.member().is_some_and(|m| m.is_learner()), "{:?}", r.member());
    let initial: Vec<String> = (0..3)
        .filter(|i| *i != vi)
        .map(|i| cluster.members[i].member.initial_cluster_entry())
        .chain([m4.member.initial_cluster_entry(), m5.initial_cluster_entry()])
        .collect();
    let m5 = blocking(|| RaftcdProcess::start_joining(m5, &initial.join(","), &args));
    let m5_ep = m5.endpoint();
    if let Err(e) = wait_serializable(&m5_ep, "snap/", &acked, true, Duration::from_secs(20)).await {
        panic!("{e}\nm5 log:\n{}", m5.log());
    }
    let mut problems = Vec::new();
    let mut c5 = raw_client(&m5_ep).await;
    let learner_msg = "etcdserver: rpc not supported for learner";
    for (what, res) in [
        ("put on the learner", c5.put("learner-probe/x", "x", None).await.map(|_| ())),
        ("linearizable get on the learner", c5.get("snap/000", None).await.map(|_| ())),
    ] {
        match res.map_err(|e| grpc_status(&e)) {
            Err(Some((_, m))) if m == learner_msg => eprintln!("    {what}: {m:?} as expected"),
            other => problems.push(format!("{what}: expected {learner_msg:?}, got {other:?}")),
        }
    }
    if !learner_flag_becomes(&m5_ep, true).await {
        problems.push("Status of the started learner m5 says isLearner=false".into());
    }
    step!("restart the learner m5: still a learner");
    let mut m5 = m5;
    blocking(|| m5.restart());
    wait_serializable(&m5_ep, "snap/", &acked, true, Duration::from_secs(10)).await.expect("m5 after its restart");
    let mut c5 = raw_client(&m5_ep).await;
    let res = c5.put("learner-probe/after-restart", "x", None).await.map(|_| ());
    match res.map_err(|e| grpc_status(&e)) {
        Err(Some((_, m))) if m == learner_msg => eprintln!("    put on the restarted learner: {m:?} as expected"),
        other => problems.push(format!("put on the restarted learner: expected {learner_msg:?}, got {other:?}")),
    }
    if !learner_flag_becomes(&m5_ep, true).await {
        problems.push("Status of the restarted learner m5 says isLearner=false".into());
    }
    if !problems.is_empty() {
        let log = m5.log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("snapshot") || l.contains("role")).collect();
        problems.push(format!("m5's log (snapshot and role lines):\n{}", lines.join("\n")));
    }

    step!("MemberPromote m5, retried while it is not in sync");
    let start = Instant::now();
    let mut not_ready = 0;
    loop {
        match c.member_promote(m5_id).await {
            Ok(r) => {
                assert!(r.members().iter().any(|m| m.id() == m5_id && !m.is_learner()), "{:?}", r.members());
                break;
            }
            Err(e) if grpc_status(&e).is_some_and(|(_, m)| m == LEARNER_NOT_READY) => not_ready += 1,
            Err(e) => panic!("member promote: {e}"),
        }
        assert!(start.elapsed() < Duration::from_secs(30), "m5 never became promotable; log:\n{}", m5.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    step!("promoted after {not_ready} not-in-sync answers");
    wait_member_list(&mut c5, "m5 a voter, 4 voters", |ms| ms.len() == 4 && ms.iter().all(|m| !m.is_learner())).await;
    let r = put_until_ok(&m5_ep, "snap/via-m5", "y", Duration::from_secs(10)).await;
    acked.insert("snap/via-m5".into(), ("y".into(), r));
    let mut c5 = connect(&m5_ep).await;
    let got = read_prefix(&mut c5, "snap/", false).await.expect("linearizable read on m5");
    problems.extend(Some(diff_kvs(&acked, &got, true)).filter(|d| !d.is_empty()));
    if !learner_flag_becomes(&m5_ep, false).await {
        problems.push("Status of the promoted m5 still says isLearner=true".into());
    }

    step!("MemberRemove the leader itself: it exits, the other three elect a new leader and serve");
    let oi = (0..3).find(|i| *i != li && *i != vi).expect("the other original member");
    let live = [eps[li].clone(), eps[oi].clone(), m4_ep.clone(), m5_ep.clone()];
    let l = wait_leader(&live, None, Duration::from_secs(10)).await.expect("leader of four");
    let mut lep = String::new();
    for ep in &live {
        if member_id(ep).await == l {
            lep = ep.clone();
        }
    }
    let rest: Vec<String> = live.iter().filter(|e| **e != lep).cloned().collect();
    let mut cr = connect(&rest[0]).await;
    let r = cr.member_remove(l).await.expect("remove the leader");
    assert!(r.members().len() == 3 && r.members().iter().all(|m| m.id() != l), "{:?}", r.members());
    let leader_proc = if lep == m4_ep {
        &mut m4
    } else if lep == m5_ep {
        &mut m5
    } else {
        &mut cluster.members[if lep == eps[li] { li } else { oi }]
    };
    let exit = blocking(|| leader_proc.wait_exit(Duration::from_secs(15)));
    assert!(exit.is_some(), "the removed leader still runs 15 s later; log:\n{}", leader_proc.log());
    let new = wait_leader(&rest, Some(l), Duration::from_secs(10)).await.expect("a new leader without the removed one");
    eprintln!("    new leader {new:x}");
    for ep in &rest {
        let key = format!("snap/after-leader-removal/{ep}");
        let r = put_until_ok(ep, &key, "z", Duration::from_secs(10)).await;
        acked.insert(key, ("z".into(), r));
    }
    for ep in &rest {
        let mut cc = connect(ep).await;
        let got = read_prefix(&mut cc, "snap/", false).await.expect("linearizable read after the leader's removal");
        problems.extend(Some(diff_kvs(&acked, &got, true)).filter(|d| !d.is_empty()).map(|d| format!("{ep}: {d}")));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Scenario: 3 members, 20 keys. MoveLeader through the leader's endpoint hands leadership to a follower, which
/// all members then name. MemberUpdate gives another follower a new peer URL; every member lists it; that
/// member restarts listening there and keeps up (serializable and linearizable reads see new writes). Then
/// every member is killed and all are restarted at once: a leader is elected, every member returns all the
/// data at the same revisions, writes work, and the updated peer URL survived.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn move_leader_update_peer_urls_and_restart_everything() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    step!("start 3 members, write 20 keys");
    let mut cluster = start_cluster(dir.path(), 3, FAST);
    let eps = cluster.endpoints();
    let leader = wait_leader(&eps, None, Duration::from_secs(15)).await.expect("a leader");
    let ids = ids_of(&eps).await;
    let li = position(&ids, leader);
    let mut c = connect(&eps[0]).await;
    let mut acked = put_keys(&mut c, "mv/", 20).await;

    let ti = (0..3).find(|i| *i != li).expect("a follower");
    step!("MoveLeader m{} -> m{} via the leader's endpoint", li + 1, ti + 1);
    let mut cl = raw_client(&eps[li]).await;
    cl.move_leader(ids[ti]).await.expect("move leader");
    let now = wait_leader(&eps, Some(leader), Duration::from_secs(5)).await.expect("leadership moved");
    assert_eq!(now, ids[ti], "leadership went to {now:x}, not to the target");
    let mut ct = raw_client(&eps[ti]).await;
    let r = ct.put("mv/after-move", "m", None).await.expect("put via the new leader");
    acked.insert("mv/after-move".into(), ("m".into(), rev(r.header())));

    let fi = (0..3).find(|i| *i != ti).expect("a follower");
    let new_port = free_port();
    let new_url = format!("http://127.0.0.1:{new_port}");
    step!("MemberUpdate m{}: peer URL -> {new_url}", fi + 1);
    let r = c.member_update(ids[fi], vec![new_url.clone()]).await.expect("member update");
    let updated = r.members().iter().find(|m| m.id() == ids[fi]).map(|m| m.peer_urls().to_vec());
    assert_eq!(updated, Some(vec![new_url.clone()]), "{:?}", r.members());
    for ep in &eps {
        let mut cc = raw_client(ep).await;
        wait_member_list(&mut cc, "the new peer URL", |ms| {
            ms.iter().any(|m| m.id() == ids[fi] && m.peer_urls() == [new_url.clone()])
        })
        .await;
    }
    step!("restart m{} listening on the new peer URL; it keeps up", fi + 1);
    blocking(|| {
        cluster.members[fi].kill();
        cluster.members[fi].member.peer_port = new_port;
        cluster.members[fi].restart();
    });
    let r = put_until_ok(&eps[ti], "mv/after-update", "u", Duration::from_secs(10)).await;
    acked.insert("mv/after-update".into(), ("u".into(), r));
    if let Err(e) = wait_serializable(&eps[fi], "mv/", &acked, true, Duration::from_secs(10)).await {
        panic!("{e}\nlog:\n{}", cluster.members[fi].log());
    }
    let mut cf = connect(&eps[fi]).await;
    let got = read_prefix(&mut cf, "mv/", false).await.expect("linearizable read on the updated member");
    assert!(diff_kvs(&acked, &got, true).is_empty(), "{}", diff_kvs(&acked, &got, true));

    step!("kill all members, restart all");
    blocking(|| {
        cluster.members.iter_mut().for_each(|m| m.kill());
        cluster.members.iter_mut().for_each(|m| m.restart());
    });
    wait_leader(&eps, None, Duration::from_secs(15)).await.expect("a leader after the full restart");
    for (m, ep) in eps.iter().enumerate() {
        let mut cc = connect(ep).await;
        let got = read_prefix(&mut cc, "mv/", false).await.unwrap_or_else(|e| panic!("read m{}: {e}", m + 1));
        let d = diff_kvs(&acked, &got, true);
        assert!(d.is_empty(), "m{} after the full restart: {d}", m + 1);
        let r = cc.put(format!("mv/restarted/m{}", m + 1), "r", None).await.expect("put after the full restart");
        acked.insert(format!("mv/restarted/m{}", m + 1), ("r".into(), rev(r.header())));
    }
    for ep in &eps {
        wait_serializable(ep, "mv/", &acked, true, Duration::from_secs(5)).await.expect("convergence after restart");
    }
    wait_member_list(&mut c, "the updated peer URL after the restart", |ms| {
        ms.iter().any(|m| m.id() == ids[fi] && m.peer_urls() == [new_url.clone()])
    })
    .await;
}

/// An integer field of etcdctl's JSON (absent = 0, as Go omits zero values).
#[track_caller]
fn int(v: &Value, field: &str) -> u64 {
    match &v[field] {
        Value::Null => 0,
        Value::Number(n) => n.as_u64().unwrap_or_else(|| panic!("{field} = {n} is not a u64")),
        other => panic!("{field} is not a number: {other} in {v}"),
    }
}

#[track_caller]
fn ctl_ok(eps: &[String], args: &[&str]) -> String {
    let o = blocking(|| etcdctl(eps, args));
    assert!(o.ok, "etcdctl {args:?} failed:\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
    o.stdout
}

#[track_caller]
fn ctl_json(eps: &[String], args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-w", "json"]);
    let out = ctl_ok(eps, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("etcdctl {all:?} printed invalid JSON ({e}): {out}"))
}

/// `endpoint status --cluster -w json` through the first endpoint; it must list exactly `client_urls`. When it
/// fails, that goes to `problems` and the statuses are taken from `endpoint status -w json` over `eps` (all
/// members' host:port) instead, so the checks on their content still run.
fn cluster_endpoint_status(eps: &[String], client_urls: &[String], problems: &mut Vec<String>) -> Value {
    let o = blocking(|| etcdctl(&eps[..1], &["endpoint", "status", "--cluster", "-w", "json"]));
    let (v, mut want) = if o.ok {
        let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", o.stdout));
        (v, client_urls.to_vec())
    } else {
        let first = o.stderr.lines().find(|l| l.starts_with("Failed") || l.starts_with("Error")).unwrap_or(&o.stderr);
        problems.push(format!("etcdctl endpoint status --cluster failed: {first}"));
        (ctl_json(eps, &["endpoint", "status"]), eps.to_vec())
    };
    let arr = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    let mut endpoints: Vec<&str> = arr.iter().map(|e| e["Endpoint"].as_str().expect("Endpoint")).collect();
    endpoints.sort();
    want.sort();
    assert_eq!(endpoints, want, "{v}");
    v
}

/// `member list -w json` as id -> (name, peer URLs, client URLs, is learner).
fn ctl_members(eps: &[String]) -> BTreeMap<u64, (String, Vec<String>, Vec<String>, bool)> {
    let v = ctl_json(eps, &["member", "list"]);
    let urls = |m: &Value, f: &str| -> Vec<String> {
        m[f].as_array().map(|a| a.iter().filter_map(|u| u.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    v["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {v}"))
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap_or("").to_string();
            (
                int(m, "ID"),
                (name, urls(m, "peerURLs"), urls(m, "clientURLs"), m["isLearner"].as_bool().unwrap_or(false)),
            )
        })
        .collect()
}

/// Scenario: Debian etcdctl 3.4 against a 3-member cluster. `member list -w json` shows the three members with
/// their ids (as Status reports them), names and URLs. `endpoint status --cluster -w json` discovers all three
/// client URLs and shows one agreed leader, one term, and exactly one member that is the leader.
/// `member add m4 --learner` prints the ETCD_* environment for the new member; m4 starts from exactly that
/// ETCD_INITIAL_CLUSTER with `--initial-cluster-state existing`; `member promote` is retried until m4 is in
/// sync; `member remove` then removes it and its process exits; the list is back to three.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcdctl_member_commands_and_cluster_endpoint_status() {
    let _serial = SERIAL.lock().await;
    if etcdctl_path().is_none_or(|p| !p.exists()) {
        assert!(skip_allowed(), "etcdctl not found (install etcd-client, or set RAFTCD_ALLOW_SKIP=1 to skip)");
        eprintln!("skipped: etcdctl not found and RAFTCD_ALLOW_SKIP=1");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    step!("start 3 members");
    let cluster = start_cluster(dir.path(), 3, FAST);
    let eps = cluster.endpoints();
    let leader = wait_leader(&eps, None, Duration::from_secs(15)).await.expect("a leader");
    let ids = ids_of(&eps).await;
    ctl_ok(&eps, &["put", "ctl/a", "1"]);

    step!("member list -w json");
    let v = ctl_json(&eps, &["member", "list"]);
    let cluster_id = int(&v["header"], "cluster_id");
    assert!(cluster_id != 0, "{v}");
    let members = ctl_members(&eps);
    assert_eq!(members.len(), 3, "{members:?}");
    for (m, p) in cluster.members.iter().enumerate() {
        let got =
            members.get(&ids[m]).unwrap_or_else(|| panic!("{} ({:x}) not listed: {members:?}", p.member.name, ids[m]));
        assert_eq!(got, &(p.member.name.clone(), vec![p.member.peer_url()], vec![p.member.client_url()], false));
    }

    step!("endpoint status --cluster -w json");
    let mut problems = Vec::new();
    let urls: Vec<String> = cluster.members.iter().map(|p| p.member.client_url()).collect();
    let v = cluster_endpoint_status(&eps, &urls, &mut problems);
    let arr = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    let mut leaders_self = 0;
    let mut terms = HashSet::new();
    for e in arr {
        let st = &e["Status"];
        assert_eq!(int(&st["header"], "cluster_id"), cluster_id, "{e}");
        let mid = int(&st["header"], "member_id");
        assert!(ids.contains(&mid), "{e}");
        assert_eq!(int(st, "leader"), leader, "{e}");
        assert!(int(st, "raftIndex") > 0 && int(st, "raftAppliedIndex") > 0, "{e}");
        terms.insert(int(st, "raftTerm"));
        leaders_self += usize::from(mid == leader);
        assert!(!st["isLearner"].as_bool().unwrap_or(false), "{e}");
    }
    assert_eq!(leaders_self, 1, "exactly one endpoint must be the leader: {v}");
    assert_eq!(terms.len(), 1, "members disagree on the term: {v}");

    step!("member add m4 --learner");
    let m4 = Member::new(dir.path(), "m4");
    let out = ctl_ok(&eps, &["member", "add", "m4", &format!("--peer-urls={}", m4.peer_url()), "--learner"]);
    let first = out.lines().next().unwrap_or_default();
    let words: Vec<&str> = first.split_whitespace().collect();
    assert!(words.len() == 6 && words[0] == "Member" && words[2..5] == ["added", "to", "cluster"], "{out}");
    let m4_id = u64::from_str_radix(words[1], 16).unwrap_or_else(|_| panic!("member id in {first:?}"));
    assert_eq!(u64::from_str_radix(words[5], 16).ok(), Some(cluster_id), "{out}");
    let env: BTreeMap<&str, &str> =
        out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k, v.trim_matches('"'))).collect();
    assert_eq!(env.get("ETCD_NAME"), Some(&"m4"), "{out}");
    assert_eq!(env.get("ETCD_INITIAL_CLUSTER_STATE"), Some(&"existing"), "{out}");
    assert_eq!(env.get("ETCD_INITIAL_ADVERTISE_PEER_URLS").copied(), Some(m4.peer_url().as_str()), "{out}");
    let initial = env.get("ETCD_INITIAL_CLUSTER").copied().unwrap_or_else(|| panic!("no ETCD_INITIAL_CLUSTER: {out}"));
    let mut parts: Vec<&str> = initial.split(',').collect();
    parts.sort();
    let mut want: Vec<String> = cluster.members.iter().map(|p| p.member.initial_cluster_entry()).collect();
    want.push(m4.initial_cluster_entry());
    want.sort();
    assert_eq!(parts, want, "ETCD_INITIAL_CLUSTER");
    let listed = ctl_members(&eps);
    assert_eq!(listed.get(&m4_id).map(|m| (m.1.clone(), m.3)), Some((vec![m4.peer_url()], true)), "{listed:?}");

    step!("start m4 from the printed ETCD_INITIAL_CLUSTER: Status says it is a learner");
    let mut m4 = blocking(|| RaftcdProcess::start_joining(m4, initial, FAST));
    if !learner_flag_becomes(&m4.endpoint(), true).await {
        problems.push("Status of the started learner m4 (caught up from log entries) says isLearner=false".into());
    }
    step!("restart the learner m4 (no snapshot involved): still a learner");
    blocking(|| m4.restart());
    if !learner_flag_becomes(&m4.endpoint(), true).await {
        problems.push("Status of the restarted learner m4 (caught up from log entries) says isLearner=false".into());
    }
    step!("member promote, retried until m4 is in sync");
    let hex = format!("{m4_id:x}");
    let start = Instant::now();
    let promoted: EtcdctlOut = loop {
        let o = blocking(|| etcdctl(&eps, &["member", "promote", &hex]));
        if o.ok {
            break o;
        }
        assert!(o.stderr.contains(LEARNER_NOT_READY), "member promote failed: {}{}", o.stdout, o.stderr);
        assert!(start.elapsed() < Duration::from_secs(30), "m4 never became promotable; log:\n{}", m4.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let words: Vec<&str> = promoted.stdout.split_whitespace().collect();
    assert_eq!(words.get(..3), Some(&["Member", hex.as_str(), "promoted"][..]), "{}", promoted.stdout);
    // m4 publishes its name and client URLs through raft on its own schedule (as etcd's members do), so
    // a promotion can be applied before them: wait for both.
    let want = Some(("m4".into(), vec![m4.member.peer_url()], vec![m4.member.client_url()], false));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let listed = blocking(|| ctl_members(&eps));
        if listed.get(&m4_id).cloned() == want {
            break;
        }
        assert!(Instant::now() < deadline, "m4 never listed as a started voter: {listed:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_eps: Vec<String> = eps.iter().cloned().chain([m4.endpoint()]).collect();
    let urls: Vec<String> = urls.into_iter().chain([m4.member.client_url()]).collect();
    // The promotion is acknowledged once the leader applied it; m4 reports it once m4 has applied it too.
    assert!(learner_flag_becomes(&m4.endpoint(), false).await, "m4 still reports isLearner after promotion");
    let v = cluster_endpoint_status(&all_eps, &urls, &mut problems);
    let voters =
        v.as_array().map(|a| a.iter().filter(|e| !e["Status"]["isLearner"].as_bool().unwrap_or(false)).count());
    assert_eq!(voters, Some(4), "{v}");

    step!("member remove m4: its process exits");
    let out = ctl_ok(&eps, &["member", "remove", &hex]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words.get(..3), Some(&["Member", hex.as_str(), "removed"][..]), "{out}");
    let exit = blocking(|| m4.wait_exit(Duration::from_secs(15)));
    assert!(exit.is_some(), "removed m4 still runs; log:\n{}", m4.log());
    let listed = ctl_members(&eps);
    assert_eq!(listed.keys().copied().collect::<HashSet<_>>(), ids.iter().copied().collect(), "{listed:?}");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Scenario: the membership and leadership errors, each with etcd's gRPC code and exact message (all checked,
/// then reported together): MemberRemove / MemberUpdate of an unknown id -> NotFound "member not found";
/// MemberPromote of a voter -> FailedPrecondition "can only promote a learner member"; MemberAdd with a peer
/// URL already in use -> FailedPrecondition "Peer URLs already exists"; MemberAdd with a URL without a port ->
/// InvalidArgument "given member URLs are invalid"; a second learner -> FailedPrecondition "too many learner
/// members in cluster"; promoting a learner that never started -> "... which is in sync with leader";
/// MoveLeader through a follower -> FailedPrecondition "not leader", to the learner -> "bad leader
/// transferee". Then a follower is killed: adding a voter (which would need 3 of 4 up) and removing a live
/// follower (which would need 2 of 2 up) both fail with Unavailable "unhealthy cluster", while removing the
/// dead member is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_errors_match_etcd() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    step!("start 3 members");
    let mut cluster = start_cluster(dir.path(), 3, FAST);
    let eps = cluster.endpoints();
    let leader = wait_leader(&eps, None, Duration::from_secs(15)).await.expect("a leader");
    let ids = ids_of(&eps).await;
    let li = position(&ids, leader);
    let followers: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    let mut c = connect(&eps[followers[0]]).await; // a follower's endpoint: membership calls are forwarded
    let mut cl = raw_client(&eps[li]).await;
    let mut p = Vec::new();
    let unknown = 0x1234_5678_9abc_def0;

    step!("unknown ids, promoting a voter, peer URL in use, invalid URL");
    check_err(
        &mut p,
        "MemberRemove unknown",
        c.member_remove(unknown).await,
        "NotFound",
        "etcdserver: member not found",
    );
    let url = format!("http://127.0.0.1:{}", free_port());
    check_err(
        &mut p,
        "MemberUpdate unknown",
        c.member_update(unknown, vec![url]).await,
        "NotFound",
        "etcdserver: member not found",
    );
    check_err(
        &mut p,
        "MemberPromote voter",
        c.member_promote(ids[li]).await,
        "FailedPrecondition",
        "etcdserver: can only promote a learner member",
    );
    let in_use = cluster.members[followers[1]].member.peer_url();
    check_err(
        &mut p,
        "MemberAdd peer URL in use",
        c.member_add([in_use], None).await,
        "FailedPrecondition",
        "etcdserver: Peer URLs already exists",
    );
    check_err(
        &mut p,
        "MemberAdd URL without port",
        c.member_add(["http://127.0.0.1"], None).await,
        "InvalidArgument",
        "etcdserver: given member URLs are invalid",
    );

    step!("learners: a second one, promoting one that never started");
    let learner = Member::new(dir.path(), "learner");
    let r = c
        .member_add([learner.peer_url()], Some(MemberAddOptions::new().with_is_learner()))
        .await
        .expect("add a learner");
    let learner_id = r.member().map(|m| m.id()).expect("learner id");
    let second = format!("http://127.0.0.1:{}", free_port());
    let res = c.member_add([second], Some(MemberAddOptions::new().with_is_learner())).await;
    check_err(
        &mut p,
        "MemberAdd second learner",
        res,
        "FailedPrecondition",
        "etcdserver: too many learner members in cluster",
    );
    check_err(
        &mut p,
        "MemberPromote unstarted learner",
        c.member_promote(learner_id).await,
        "FailedPrecondition",
        LEARNER_NOT_READY,
    );

    step!("MoveLeader through a follower, to the learner, to an unknown id");
    let mut cf = raw_client(&eps[followers[1]]).await;
    check_err(
        &mut p,
        "MoveLeader via a follower",
        cf.move_leader(ids[followers[0]]).await,
        "FailedPrecondition",
        "etcdserver: not leader",
    );
    check_err(
        &mut p,
        "MoveLeader to the learner",
        cl.move_leader(learner_id).await,
        "FailedPrecondition",
        "etcdserver: bad leader transferee",
    );
    check_err(
        &mut p,
        "MoveLeader to an unknown id",
        cl.move_leader(unknown).await,
        "FailedPrecondition",
        "etcdserver: bad leader transferee",
    );

    step!("kill follower m{}; changes that would leave no started quorum fail", followers[1] + 1);
    let dead = followers[1];
    blocking(|| cluster.members[dead].kill());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let voter = format!("http://127.0.0.1:{}", free_port());
    check_err(
        &mut p,
        "MemberAdd voter with 2 of 3 up",
        cl.member_add([voter], None).await,
        "Unavailable",
        "etcdserver: unhealthy cluster",
    );
    let res = cl.member_remove(ids[followers[0]]).await;
    check_err(&mut p, "MemberRemove a live voter with 2 of 3 up", res, "Unavailable", "etcdserver: unhealthy cluster");
    step!("removing the dead member is allowed");
    match cl.member_remove(ids[dead]).await {
        Ok(r) if r.members().iter().all(|m| m.id() != ids[dead]) => {}
        other => p.push(format!("MemberRemove of the dead member: {other:?}")),
    }
    let r = c.put("errors/still-serving", "1", None).await;
    assert!(r.is_ok(), "the cluster stopped serving: {r:?}");
    assert!(p.is_empty(), "errors differing from etcd's:\n{}", p.join("\n"));
}
