//! Crash safety: concurrent writers load a raftcd, the process is killed with SIGKILL mid-load, restarted on the
//! same data dir, and the store is checked against what the clients were told:
//!
//! * every acknowledged write is present with its value and with the revision the ack reported;
//! * a write whose outcome is unknown (in flight at the kill) is atomic: a txn's two keys are both there or
//!   both missing;
//! * the revision after restart is >= the highest revision any ack reported (it never goes backwards), and new
//!   writes get higher revisions;
//! * new writes work.
//!
//! The kill cycle runs three times in one test, so recovery of a store that was already recovered is covered.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions, Txn, TxnOp};
use raftcd_tests::client::{connect, grpc_status, skip_allowed};
use raftcd_tests::process::failpoints_bin;
use raftcd_tests::{step, Member, RaftcdCluster, RaftcdProcess};
use rand::Rng;

const WRITERS: usize = 8;
const CYCLES: usize = 3;

/// One write a client issued.
#[derive(Debug, Clone)]
struct Write {
    /// Keys written (one for a put, two for a txn) and the value all of them got.
    keys: Vec<String>,
    value: String,
    /// The revision in the ack's header; `None` when the outcome is unknown (error or in flight at the kill).
    acked_rev: Option<i64>,
}

/// What one writer task did.
#[derive(Debug, Default)]
struct History {
    writes: Vec<Write>,
    /// Errors before the kill (there should be none on a healthy single member).
    early_errors: Vec<String>,
    /// Requests before the kill that timed out (outcome unknown); tolerated, reported.
    slow: Vec<String>,
}

/// Writes unique keys until `stop` is set and a request fails. Even steps are single puts, odd steps are txns
/// that put two keys atomically.
fn rev_of(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.map(|h| h.revision()).unwrap_or(0)
}

async fn writer(mut c: Client, cycle: usize, w: usize, stop: Arc<AtomicBool>) -> History {
    let mut h = History::default();
    let tag: u32 = rand::rng().random();
    for i in 0.. {
        let base = format!("crash/c{cycle}/w{w}/{i:06}");
        let value = format!("value-{cycle}-{w}-{i}-{tag:08x}");
        let keys = if i % 2 == 0 { vec![base.clone()] } else { vec![format!("{base}/a"), format!("{base}/b")] };
        // Record the write before sending it, so one in flight at the kill is known as "unknown outcome".
        h.writes.push(Write { keys: keys.clone(), value: value.clone(), acked_rev: None });
        let limit = Duration::from_secs(10);
        let res = if keys.len() == 1 {
            tokio::time::timeout(limit, c.put(keys[0].clone(), value, None))
                .await
                .map(|r| r.map(|r| rev_of(r.header())))
        } else {
            let txn = Txn::new()
                .and_then([TxnOp::put(keys[0].clone(), value.clone(), None), TxnOp::put(keys[1].clone(), value, None)]);
            tokio::time::timeout(limit, c.txn(txn)).await.map(|r| r.map(|r| rev_of(r.header())))
        };
        let stopping = stop.load(Ordering::SeqCst);
        match res {
            Ok(Ok(rev)) => h.writes.last_mut().expect("just pushed").acked_rev = Some(rev),
            _ if stopping => break,
            // Before the kill, a slow machine may time a request out (its outcome is unknown, which the
            // checks allow); any other error is a server failure.
            Err(_) => h.slow.push(format!("{base}: no answer within {limit:?}")),
            Ok(Err(e)) => match grpc_status(&e) {
                Some((code, msg)) if code == "Unavailable" && msg.contains("timed out") => {
                    h.slow.push(format!("{base}: {msg}"))
                }
                _ => h.early_errors.push(format!("{base}: {e}")),
            },
        }
        if stopping {
            break;
        }
    }
    h
}

/// Reads every key under `crash/` as key -> (value, mod_revision), and the header revision.
async fn read_all(c: &mut Client) -> (BTreeMap<String, (String, i64)>, i64) {
    let r = c.get("crash/", Some(GetOptions::new().with_prefix())).await.expect("range crash/");
    let rev = r.header().expect("header").revision();
    let map = r
        .kvs()
        .iter()
        .map(|kv| {
            let k = String::from_utf8_lossy(kv.key()).into_owned();
            (k, (String::from_utf8_lossy(kv.value()).into_owned(), kv.mod_revision()))
        })
        .collect();
    (map, rev)
}

/// Scenario: three times: 8 writers (puts and two-key txns with unique keys and values) load raftcd, which is
/// SIGKILLed after 1-2 s and restarted; every acked write must be there with its value and ack revision,
/// unknown-outcome txns must be all-or-nothing, the revision must not go backwards, and new writes must work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = RaftcdProcess::start_single(dir.path(), &[]);
    let mut all: Vec<Write> = Vec::new();
    let mut max_ack_rev = 0i64;
    let mut last_seen_rev = 1i64;

    for cycle in 0..CYCLES {
        let c = connect(&p.endpoint()).await;
        step!("cycle {cycle}: {WRITERS} writers start");
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..WRITERS).map(|w| tokio::spawn(writer(c.clone(), cycle, w, stop.clone()))).collect();
        let load_ms = rand::rng().random_range(1000..2000);
        tokio::time::sleep(Duration::from_millis(load_ms)).await;
        step!("cycle {cycle}: kill -9 after {load_ms} ms");
        stop.store(true, Ordering::SeqCst);
        tokio::task::block_in_place(|| p.kill());
        let mut acked = 0;
        for t in tasks {
            let h = t.await.expect("writer task");
            assert!(h.early_errors.is_empty(), "writes failed before the kill: {:?}\n{}", h.early_errors, p.log());
            if !h.slow.is_empty() {
                eprintln!(
                    "    writer: {} requests timed out before the kill (unknown outcome): {:?}",
                    h.slow.len(),
                    h.slow
                );
            }
            for wr in h.writes {
                if let Some(rev) = wr.acked_rev {
                    acked += 1;
                    max_ack_rev = max_ack_rev.max(rev);
                }
                all.push(wr);
            }
        }
        step!("cycle {cycle}: {acked} writes acked, highest ack revision {max_ack_rev}");
        assert!(acked > 0, "no write was acknowledged in {load_ms} ms");

        step!("cycle {cycle}: restart on the same data dir");
        tokio::task::block_in_place(|| p.restart());
        let mut c = connect(&p.endpoint()).await;
        let (store, rev) = read_all(&mut c).await;
        step!("cycle {cycle}: revision after restart {rev}, {} keys", store.len());

        step!("cycle {cycle}: every acked write is present with its value and revision");
        let mut lost = Vec::new();
        for wr in &all {
            let present: Vec<_> = wr.keys.iter().map(|k| store.get(k)).collect();
            match wr.acked_rev {
                Some(ack) => {
                    for (k, got) in wr.keys.iter().zip(&present) {
                        if *got != Some(&(wr.value.clone(), ack)) {
                            lost.push(format!("{k}: acked at {ack} with {:?}, found {got:?}", wr.value));
                        }
                    }
                }
                None => {
                    // Unknown outcome: all keys or none, and if there, with this write's value.
                    let n = present.iter().filter(|g| g.is_some()).count();
                    assert!(
                        n == 0 || n == wr.keys.len(),
                        "txn applied partially after a crash: {:?} -> {present:?}",
                        wr.keys
                    );
                    for g in present.iter().flatten() {
                        assert_eq!(g.0, wr.value, "unknown-outcome write {:?} has a foreign value", wr.keys);
                    }
                }
            }
        }
        assert!(
            lost.is_empty(),
            "{} acknowledged writes lost or changed after kill -9:\n{}",
            lost.len(),
            lost.join("\n")
        );

        step!("cycle {cycle}: the revision did not go backwards ({rev} >= ack {max_ack_rev}, >= seen {last_seen_rev})");
        assert!(rev >= max_ack_rev, "revision {rev} after restart is below acked revision {max_ack_rev}");
        assert!(rev >= last_seen_rev, "revision {rev} after restart is below an earlier observed {last_seen_rev}");
        let no_extra = store.keys().all(|k| all.iter().any(|w| w.keys.contains(k)) || k.starts_with("crash/after/"));
        assert!(no_extra, "keys nobody wrote appeared");

        step!("cycle {cycle}: new writes work and get higher revisions");
        let r = c.put(format!("crash/after/{cycle}"), "ok", None).await.expect("put after restart");
        let new_rev = r.header().expect("header").revision();
        assert_eq!(new_rev, rev + 1, "a put after restart must take the next revision");
        let t = c
            .txn(Txn::new().and_then([TxnOp::put(format!("crash/after/{cycle}/t"), "ok", None)]))
            .await
            .expect("txn after restart");
        assert_eq!(t.header().expect("header").revision(), rev + 2);
        last_seen_rev = rev + 2;
    }
    step!("done: {} writes issued over {CYCLES} kill cycles", all.len());
}

/// Scenario: m4 joins a 3-member cluster whose log was compacted (--snapshot-count 20), so it gets a streamed
/// snapshot, and is killed (abort, as kill -9) right after the snapshot's data is installed but before its
/// raft log starts at the snapshot. Restarted with the normal build it comes back with every key and
/// catches up (it used to panic at every start: "hs.commit ... is out of range").
#[test]
fn crash_between_snapshot_install_and_log_reset_restarts() {
    let Some(bin) = failpoints_bin() else {
        assert!(skip_allowed(), "no raftcd-failpoints build (scripts/test.sh builds it)");
        return;
    };
    let args = ["--snapshot-count", "20", "--heartbeat-interval", "50", "--election-timeout", "500"];
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftcdCluster::start(dir.path(), 3, &args);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let m4 = Member::new(dir.path(), "m4");
    let initial = format!("{},{}", cluster.initial_cluster(), m4.initial_cluster_entry());
    rt.block_on(async {
        let mut c = connect(&cluster.members[0].endpoint()).await;
        for i in 0..100 {
            c.put(format!("snap/{i:03}"), format!("v{i}"), None).await.unwrap();
        }
        c.member_add([m4.peer_url()], None).await.expect("member add m4");
    });

    step!("m4 from the failpoints build, armed at snapshot-installed-before-log-reset");
    let log_path = dir.path().join("m4-armed.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut armed = std::process::Command::new(bin)
        .env("RAFTCD_FAILPOINTS", "snapshot-installed-before-log-reset")
        .args(["--name", &m4.name])
        .arg("--data-dir")
        .arg(&m4.data_dir)
        .args(["--listen-client-urls", &m4.client_url(), "--advertise-client-urls", &m4.client_url()])
        .args(["--listen-peer-urls", &m4.peer_url(), "--initial-advertise-peer-urls", &m4.peer_url()])
        .args(["--initial-cluster", &initial, "--initial-cluster-state", "existing"])
        .args(args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = armed.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = armed.kill();
            let _ = armed.wait();
            panic!("m4 never reached the failpoint:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let armed_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        !status.success() && armed_log.contains("failpoint snapshot-installed-before-log-reset reached"),
        "{status:?}\n{armed_log}"
    );

    step!("restart m4 with the normal build: it serves every key and follows new writes");
    let m4 = RaftcdProcess::start_joining(m4, &initial, &args);
    rt.block_on(async {
        let mut c4 = connect(&m4.endpoint()).await;
        let r = c4.get("snap/", Some(GetOptions::new().with_prefix().with_serializable())).await.unwrap();
        assert_eq!(r.kvs().len(), 100, "m4 log:\n{}", m4.log());
        c4.put("after", "1", None).await.unwrap();
        let r = c4.get("after", None).await.unwrap();
        assert_eq!(r.kvs().first().map(|kv| kv.value()), Some(&b"1"[..]));
    });
}
