//! Online Defragment against real raftcd processes: the database really shrinks while the member keeps
//! serving reads, nothing changes in the data, and the member restarts from the new database after a
//! kill -9; in a cluster, a defragmented follower or leader catches up and HashKV agrees afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, CompactionOptions, DeleteOptions, GetOptions};
use raftcd_tests::client::{connect, etcdctl_path, skip_allowed};
use raftcd_tests::{step, RaftcdCluster, RaftcdProcess};

type Kvs = BTreeMap<Vec<u8>, (Vec<u8>, i64, i64, i64)>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn all_at(c: &mut Client, rev: i64) -> Kvs {
    let r = c.get(vec![0u8], Some(GetOptions::new().with_from_key().with_revision(rev))).await.unwrap();
    r.kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), (kv.value().to_vec(), kv.create_revision(), kv.mod_revision(), kv.version())))
        .collect()
}

fn value(round: usize, i: usize) -> String {
    format!("{round}-{i}-{}", "v".repeat(2000))
}

/// The database directory the member's pointer file names (`member/db` without one).
fn active_db(data_dir: &Path) -> PathBuf {
    let member = data_dir.join("member");
    match std::fs::read_to_string(member.join("db.current")) {
        Ok(name) => member.join(name.trim()),
        Err(_) => member.join("db"),
    }
}

/// Database directories (`db`, `db.<n>`) present under `member/`.
fn db_dirs(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("member"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == "db" || n.strip_prefix("db.").is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit())))
        .collect();
    names.sort();
    names
}

/// Keeps reading the 40 `live/` keys from `ep` until `stop`, checking every value; returns the completion
/// time of each read. Any failed or wrong read panics the task (and so fails the test).
fn reader(ep: String, serializable: bool, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Instant>> {
    tokio::spawn(async move {
        let mut c = connect(&ep).await;
        let mut done = Vec::new();
        while !stop.load(SeqCst) {
            let mut opts = GetOptions::new().with_prefix();
            if serializable {
                opts = opts.with_serializable();
            }
            let r = c.get("live/", Some(opts)).await.unwrap_or_else(|e| panic!("read failed during defrag: {e}"));
            assert_eq!(r.kvs().len(), 40, "a read during defrag saw {} keys", r.kvs().len());
            for (i, kv) in r.kvs().iter().enumerate() {
                assert_eq!(kv.key(), format!("live/{i:02}").as_bytes());
                assert_eq!(kv.value(), value(9, i).as_bytes(), "a read during defrag saw a wrong value");
                assert_eq!(kv.version(), 10);
            }
            done.push(Instant::now());
        }
        done
    })
}

/// Scenario: a member with many deleted and compacted bytes is defragmented through the API while two
/// readers (serializable and linearizable) loop on it: every read succeeds with the right data, Status
/// reports a much smaller dbSize, keys/revisions/hash are unchanged, writes work, Debian etcdctl's
/// `defrag` works too, and after a kill -9 the member restarts with everything.
#[test]
fn online_defrag_shrinks_a_serving_member_and_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = RaftcdProcess::start_single(dir.path(), &[]);
    let ep = p.endpoint();
    let data_dir = dir.path().join("m1.raftcd");
    let (rev, before_kvs, hash) = rt().block_on(async {
        let mut c = connect(&ep).await;
        step!("load: 40 keys x 10 versions, 600 deleted keys; compact");
        for round in 0..10 {
            for i in 0..40 {
                c.put(format!("live/{i:02}"), value(round, i), None).await.unwrap();
            }
        }
        for i in 0..600 {
            c.put(format!("dead/{i:03}"), vec![b'd'; 4000], None).await.unwrap();
        }
        let del = c.delete("dead/", Some(DeleteOptions::new().with_prefix())).await.unwrap();
        let rev = del.header().unwrap().revision();
        c.compact(rev, Some(CompactionOptions::new().with_physical())).await.unwrap();
        let size_before = c.status().await.unwrap().db_size();
        let before_kvs = all_at(&mut c, rev).await;
        let hash = c.hash_kv(rev).await.unwrap().hash();

        step!("defragment while readers loop");
        let stop = Arc::new(AtomicBool::new(false));
        let readers = [reader(ep.clone(), true, stop.clone()), reader(ep.clone(), false, stop.clone())];
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        c.defragment().await.unwrap();
        let t1 = Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, SeqCst);
        let mut during = Vec::new();
        for r in readers {
            let done = r.await.expect("a reader failed");
            assert!(done.iter().any(|t| *t > t1), "a reader stopped being served after the defrag");
            during.push(done.iter().filter(|t| **t >= t0 && **t <= t1).count());
        }
        let status = c.status().await.unwrap();
        let size_after = status.db_size();
        eprintln!(
            "defrag took {:?}; dbSize {size_before} -> {size_after}; reads served during it: {during:?}",
            t1 - t0
        );
        assert!(during[0] > 0, "no serializable read was served while the member defragmented");
        assert!(size_after * 2 < size_before, "dbSize did not shrink substantially: {size_before} -> {size_after}");
        assert!(status.raft_used_db_size() <= size_after, "dbSizeInUse must fit in dbSize");

        step!("same data, revision and hash; writes work");
        assert_eq!(all_at(&mut c, rev).await, before_kvs);
        assert_eq!(c.hash_kv(rev).await.unwrap().hash(), hash);
        let put = c.put("after", "1", None).await.unwrap();
        assert_eq!(put.header().unwrap().revision(), rev + 1);

        step!("the replaced database directory goes once unused");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let dirs = db_dirs(&data_dir);
            let active = active_db(&data_dir).file_name().unwrap().to_string_lossy().into_owned();
            if dirs == [active.clone()] {
                assert_ne!(active, "db", "the pointer must name the copy");
                break;
            }
            assert!(Instant::now() < deadline, "stale database directories: {dirs:?} (active {active})");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (rev, before_kvs, hash)
    });

    if let Some(etcdctl) = etcdctl_path() {
        step!("Debian etcdctl defrag");
        let o = Command::new(etcdctl).env("ETCDCTL_API", "3").args(["--endpoints", &ep, "defrag"]).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(out, format!("Finished defragmenting etcd member[{ep}]\n"));
    } else {
        assert!(skip_allowed(), "etcdctl is not installed");
    }

    step!("kill -9, restart: everything is there");
    p.kill();
    p.restart();
    rt().block_on(async {
        let mut c = connect(&ep).await;
        assert_eq!(all_at(&mut c, rev).await, before_kvs);
        assert_eq!(c.hash_kv(rev).await.unwrap().hash(), hash);
        let after = c.get("after", None).await.unwrap();
        assert_eq!(after.kvs()[0].value(), b"1");
        assert_eq!(after.kvs()[0].mod_revision(), rev + 1);
        let put = c.put("after-restart", "2", None).await.unwrap();
        assert_eq!(put.header().unwrap().revision(), rev + 2);
    });
    assert_eq!(db_dirs(&data_dir).len(), 1, "one database directory after a restart: {:?}", db_dirs(&data_dir));
}

/// Scenario: a 3-member cluster keeps taking writes while first a follower, then the leader is
/// defragmented: both shrink, every acknowledged write is on every member afterwards, and HashKV agrees.
#[test]
fn online_defrag_of_a_follower_and_the_leader_while_the_cluster_writes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftcdCluster::start(dir.path(), 3, &["--heartbeat-interval", "50", "--election-timeout", "500"]);
    let eps = cluster.endpoints();
    rt().block_on(async {
        let mut c = connect(&eps[0]).await;
        step!("load and compact");
        for i in 0..1500 {
            c.put(format!("load/{:02}", i % 50), vec![b'l'; 1500], None).await.unwrap();
        }
        let rev = c.put("load/end", "x", None).await.unwrap().header().unwrap().revision();
        c.compact(rev, Some(CompactionOptions::new().with_physical())).await.unwrap();

        step!("writes go on while members defragment");
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let (stop, acked) = (stop.clone(), acked.clone());
            let urls: Vec<String> = eps.iter().map(|e| format!("http://{e}")).collect();
            tokio::spawn(async move {
                let mut w = Client::connect(urls, None).await.unwrap();
                let mut n = 0u64;
                while !stop.load(SeqCst) {
                    if w.put(format!("w/{n:06}"), n.to_string(), None).await.is_ok() {
                        acked.lock().unwrap().push(n);
                    }
                    n += 1;
                }
            })
        };
        let mut ids = Vec::new();
        for ep in &eps {
            ids.push(connect(ep).await.status().await.unwrap().header().unwrap().member_id());
        }
        let leader = connect(&eps[0]).await.status().await.unwrap().leader();
        let leader_ix = ids.iter().position(|id| *id == leader).expect("no leader among the members");
        let follower_ix = (leader_ix + 1) % 3;
        for (role, ix) in [("follower", follower_ix), ("leader", leader_ix)] {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut m = connect(&eps[ix]).await;
            let before = m.status().await.unwrap().db_size();
            let t0 = Instant::now();
            m.defragment().await.unwrap();
            let took = t0.elapsed();
            let after = m.status().await.unwrap().db_size();
            eprintln!("{role} {}: dbSize {before} -> {after} in {took:?}", eps[ix]);
            assert!(after < before, "the {role} did not shrink: {before} -> {after}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, SeqCst);
        writer.await.unwrap();
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() > 20, "too few writes went through: {}", acked.len());

        step!("every member has every acknowledged write; HashKV agrees");
        let at = c.put("final", "x", None).await.unwrap().header().unwrap().revision();
        let mut hashes = Vec::new();
        for ep in &eps {
            let mut m = connect(ep).await;
            let deadline = Instant::now() + Duration::from_secs(20);
            let hash = loop {
                match m.hash_kv(at).await {
                    Ok(h) => break h.hash(),
                    Err(e) => assert!(Instant::now() < deadline, "{ep} did not catch up: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            hashes.push(hash);
            let opts = GetOptions::new().with_prefix().with_serializable().with_revision(at);
            let got = m.get("w/", Some(opts)).await.unwrap();
            let have: std::collections::HashSet<Vec<u8>> = got.kvs().iter().map(|kv| kv.key().to_vec()).collect();
            for n in &acked {
                assert!(have.contains(format!("w/{n:06}").as_bytes()), "{ep} lost acknowledged write w/{n:06}");
            }
        }
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "hashes differ across members: {hashes:?}");
    });
}

/// A process started by hand, killed if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Scenario: the member is killed (abort, as kill -9) inside an online defrag, after the copy is complete
/// and verified but before the pointer names it. It restarts on the old database with everything, the
/// unfinished copy is removed, and a later Defragment works.
#[test]
fn crash_inside_online_defrag_restarts_on_the_old_database() {
    let Some(bin) = raftcd_tests::process::failpoints_bin() else {
        assert!(skip_allowed(), "no raftcd-failpoints build (scripts/test.sh builds it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut p = RaftcdProcess::start_single(dir.path(), &[]);
    let ep = p.endpoint();
    let data_dir = p.member.data_dir.clone();
    let (rev, before_kvs) = rt().block_on(async {
        let mut c = connect(&ep).await;
        for i in 0..300 {
            c.put(format!("k/{:02}", i % 30), value(i / 30, i % 30), None).await.unwrap();
        }
        let rev = c.get("k/00", None).await.unwrap().header().unwrap().revision();
        (rev, all_at(&mut c, rev).await)
    });
    assert_eq!(p.terminate(), Some(0));

    step!("run the failpoints build armed at defrag-online-before-swap; Defragment kills it");
    let m = &p.member;
    let log = std::fs::File::create(dir.path().join("failpoint.log")).unwrap();
    let mut child = KillOnDrop(
        Command::new(bin)
            .env("RAFTCD_FAILPOINTS", "defrag-online-before-swap")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.client_url(), "--advertise-client-urls", &m.client_url()])
            .args(["--listen-peer-urls", &m.peer_url(), "--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", p.initial_cluster()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    rt().block_on(async {
        let mut c = connect(&ep).await;
        assert!(c.defragment().await.is_err(), "the armed member must die inside Defragment");
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the armed member did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "the failpoint aborts the process: {status:?}");
    assert_eq!(db_dirs(&data_dir), ["db", "db.1"], "the complete copy is left behind by the crash");
    assert_eq!(active_db(&data_dir), data_dir.join("member").join("db"), "the pointer must not have moved");

    step!("restart: the old database, everything there; the copy removed; Defragment works");
    p.restart();
    rt().block_on(async {
        let mut c = connect(&ep).await;
        assert_eq!(all_at(&mut c, rev).await, before_kvs);
        assert_eq!(db_dirs(&data_dir), ["db"]);
        c.defragment().await.unwrap();
        assert_eq!(all_at(&mut c, rev).await, before_kvs);
        assert_eq!(c.put("after", "1", None).await.unwrap().header().unwrap().revision(), rev + 1);
    });
    assert_eq!(active_db(&data_dir), data_dir.join("member").join("db.1"));
}
