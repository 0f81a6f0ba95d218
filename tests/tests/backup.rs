//! Backups and maintenance against real raftcd processes: consistent snapshots of a live cluster restored
//! into a new one, Debian etcdctl's `snapshot save` output accepted by `raftcd-util`, damaged files refused,
//! the NOSPACE quota alarm, HashKV agreement and defragment under reads.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::{AlarmAction, AlarmOptions, AlarmType, Client, GetOptions, PutOptions};
use raftcd_tests::client::{connect, grpc_status};
use raftcd_tests::{step, workspace_bin, Member, RaftcdCluster, RaftcdProcess};

type Kvs = BTreeMap<Vec<u8>, (Vec<u8>, i64, i64, i64, i64)>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn all_at(c: &mut Client, rev: i64) -> Kvs {
    let opts = GetOptions::new().with_from_key().with_revision(rev);
    let r = c.get(vec![0u8], Some(opts)).await.unwrap();
    r.kvs()
        .iter()
        .map(|kv| {
            let v = (kv.value().to_vec(), kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease());
            (kv.key().to_vec(), v)
        })
        .collect()
}

/// Streams Maintenance.Snapshot into `path`; returns the revision in the first header.
async fn save_snapshot(c: &mut Client, path: &Path) -> i64 {
    let mut stream = c.snapshot().await.unwrap();
    let mut bytes = Vec::new();
    let mut rev = 0;
    while let Some(msg) = stream.message().await.unwrap() {
        if rev == 0 {
            rev = msg.header().map(|h| h.revision()).unwrap_or(0);
        }
        bytes.extend_from_slice(msg.blob());
    }
    assert_eq!(bytes.len() % 512, 32, "etcd's snapshot layout: size % 512 == 32");
    std::fs::write(path, bytes).unwrap();
    rev
}

fn util(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(workspace_bin("raftcd-util")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn restore_cluster(dir: &Path, snap: &Path, token: &str, extra: &[&str]) -> Vec<RaftcdProcess> {
    let members: Vec<Member> = (1..=3).map(|i| Member::new(dir, &format!("r{i}"))).collect();
    let initial = members.iter().map(|m| m.initial_cluster_entry()).collect::<Vec<_>>().join(",");
    for m in &members {
        let data_dir = m.data_dir.to_string_lossy().into_owned();
        let mut args = vec![
            "snapshot",
            "restore",
            snap.to_str().unwrap(),
            "--name",
            &m.name,
            "--data-dir",
            &data_dir,
            "--initial-cluster",
            &initial,
            "--initial-cluster-token",
            token,
        ];
        let peer = m.peer_url();
        args.extend(["--initial-advertise-peer-urls", &peer]);
        args.extend(extra);
        let (ok, _, err) = util(&args);
        assert!(ok, "restore {}: {err}", m.name);
    }
    members.into_iter().map(|m| RaftcdProcess::start_member(m, &initial, &[])).collect()
}

/// Scenario: a 3-member cluster takes writes from 4 clients while a snapshot is streamed from one member.
/// The snapshot is restored into a new 3-member cluster: every key as of the snapshot's revision is there
/// with identical value, create/mod revision, version and lease; the new cluster has another cluster id
/// and accepts writes.
#[test]
fn snapshot_of_a_live_cluster_restores_into_a_new_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftcdCluster::start(dir.path(), 3, &["--heartbeat-interval", "50", "--election-timeout", "500"]);
    let eps = cluster.endpoints();
    rt().block_on(async {
        let mut c = connect(&eps[0]).await;
        let lease = c.lease_grant(600, None).await.unwrap().id();
        c.put("leased", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
        step!("writers run while the snapshot streams");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..4 {
            let ep = eps[w % 3].clone();
            let stop = stop.clone();
            writers.push(tokio::spawn(async move {
                let mut c = connect(&ep).await;
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = c.put(format!("w{w}/{:04}", i % 300), format!("{i}"), None).await;
                    i += 1;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let snap = dir.path().join("live.db");
        let rev = save_snapshot(&mut c, &snap).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        assert!(rev > 1);
        let expected = all_at(&mut c, rev).await;
        assert!(expected.len() > 10, "the snapshot should hold the writers' keys");
        let old_cluster_id = c.status().await.unwrap().header().unwrap().cluster_id();

        step!("status of the file, then restore into a new cluster");
        let (ok, out, err) = util(&["snapshot", "status", snap.to_str().unwrap(), "-w", "json"]);
        assert!(ok, "{err}");
        let st: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(st["revision"], rev);
        assert_eq!(st["totalKey"], expected.len());
        let restored = restore_cluster(&dir.path().join("restored"), &snap, "restored-token", &[]);
        let reps: Vec<String> = restored.iter().map(|p| p.endpoint()).collect();
        let mut n = connect(&reps[1]).await;
        let got = all_at(&mut n, 0).await;
        assert_eq!(got, expected, "restored keys differ from the snapshot revision's");
        let h = n.status().await.unwrap();
        assert_ne!(h.header().unwrap().cluster_id(), old_cluster_id);
        assert_eq!(h.header().unwrap().revision(), rev);
        let ttl = n.lease_time_to_live(lease, None).await.unwrap();
        assert!(ttl.ttl() > 0, "the lease survives the restore");
        let put = n.put("after-restore", "ok", None).await.unwrap();
        assert_eq!(put.header().unwrap().revision(), rev + 1);
        let mut m = connect(&reps[2]).await;
        assert_eq!(m.get("after-restore", None).await.unwrap().kvs().len(), 1);
    });
}

/// Scenario: Debian's `etcdctl snapshot save` against raftcd writes a file that `raftcd-util snapshot
/// status/restore` accept; --bump-revision and --mark-compacted move the revision and compact history.
#[test]
fn etcdctl_snapshot_save_restore_with_bump_and_mark_compacted() {
    let Some(etcdctl) = raftcd_tests::client::etcdctl_path() else {
        assert!(raftcd_tests::client::skip_allowed(), "etcdctl not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = RaftcdProcess::start_single(dir.path(), &[]);
    let rev = rt().block_on(async {
        let mut c = connect(&p.endpoint()).await;
        for i in 0..20 {
            c.put(format!("k{i}"), "v", None).await.unwrap();
        }
        c.status().await.unwrap().header().unwrap().revision()
    });
    let file = dir.path().join("etcdctl.db");
    let out = Command::new(&etcdctl)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &p.endpoint(), "snapshot", "save", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "etcdctl snapshot save: {}", String::from_utf8_lossy(&out.stderr));
    let (ok, out, err) = util(&["snapshot", "status", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let fields: Vec<&str> = out.trim().split(", ").collect();
    assert_eq!((fields[1], fields[2]), (rev.to_string().as_str(), "20"));

    let m = Member::new(&dir.path().join("r"), "solo");
    let data_dir = m.data_dir.to_string_lossy().into_owned();
    let (ok, _, err) = util(&[
        "snapshot",
        "restore",
        file.to_str().unwrap(),
        "--name",
        "solo",
        "--data-dir",
        &data_dir,
        "--initial-cluster",
        &m.initial_cluster_entry(),
        "--initial-advertise-peer-urls",
        &m.peer_url(),
        "--bump-revision",
        "1000",
        "--mark-compacted",
    ]);
    assert!(ok, "{err}");
    let initial = m.initial_cluster_entry();
    let r = RaftcdProcess::start_member(m, &initial, &[]);
    rt().block_on(async {
        let mut c = connect(&r.endpoint()).await;
        let resp = c.get("k7", None).await.unwrap();
        assert_eq!(resp.header().unwrap().revision(), rev + 1000);
        assert_eq!(resp.kvs().len(), 1);
        let old = c.get("k7", Some(GetOptions::new().with_revision(rev))).await.unwrap_err();
        assert_eq!(grpc_status(&old).unwrap().1, "etcdserver: mvcc: required revision has been compacted");
        let put = c.put("new", "v", None).await.unwrap();
        assert_eq!(put.header().unwrap().revision(), rev + 1001);
    });
}

/// Scenario: a snapshot with one flipped byte, and one cut short, are refused by status and restore, and
/// restore writes no data dir.
#[test]
fn damaged_snapshots_are_refused_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let p = RaftcdProcess::start_single(dir.path(), &[]);
    let good = dir.path().join("good.db");
    rt().block_on(async {
        let mut c = connect(&p.endpoint()).await;
        for i in 0..50 {
            c.put(format!("k{i}"), vec![b'x'; 200], None).await.unwrap();
        }
        save_snapshot(&mut c, &good).await;
    });
    let bytes = std::fs::read(&good).unwrap();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x01;
    let cases = [("flipped.db", flipped), ("truncated.db", bytes[..bytes.len() - 700].to_vec())];
    for (name, content) in cases {
        let f = dir.path().join(name);
        std::fs::write(&f, content).unwrap();
        let (ok, _, err) = util(&["snapshot", "status", f.to_str().unwrap()]);
        assert!(!ok && err.contains("Error:"), "{name}: status accepted a damaged file");
        let target = dir.path().join(format!("{name}.restore"));
        let (ok, _, err) = util(&["snapshot", "restore", f.to_str().unwrap(), "--data-dir", target.to_str().unwrap()]);
        assert!(!ok, "{name}: restore accepted a damaged file");
        assert!(err.contains("corrupt or truncated"), "{name}: {err}");
        assert!(!target.exists(), "{name}: restore left a data dir behind");
    }
}

/// Scenario: a 3-member cluster with a small --quota-backend-bytes fills up: NOSPACE is raised on every
/// member, writes fail with etcd's exact error, reads and deletes work; compact + defrag + disarm bring
/// writes back.
#[test]
fn quota_raises_nospace_everywhere_and_disarm_restores_writes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftcdCluster::start(
        dir.path(),
        3,
        &["--quota-backend-bytes", "60000", "--heartbeat-interval", "50", "--election-timeout", "500"],
    );
    let eps = cluster.endpoints();
    rt().block_on(async {
        let mut c = connect(&eps[0]).await;
        step!("fill the store until a write is refused");
        let mut refused = None;
        for i in 0..400 {
            match c.put(format!("fill/{i:04}"), vec![b'x'; 1000], None).await {
                Ok(_) => {}
                Err(e) => {
                    refused = Some(grpc_status(&e).unwrap());
                    break;
                }
            }
        }
        let (code, msg) = refused.expect("the quota never refused a write");
        assert_eq!(msg, "etcdserver: mvcc: database space exceeded");
        assert!(code.contains("ResourceExhausted"), "{code}");
        for ep in &eps {
            let mut m = connect(ep).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let alarms = m.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap();
                if alarms.alarms().iter().any(|a| a.alarm() == AlarmType::Nospace) {
                    break;
                }
                assert!(Instant::now() < deadline, "{ep} never saw NOSPACE");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let err = m.put("more", "x", None).await.unwrap_err();
            assert_eq!(grpc_status(&err).unwrap().1, "etcdserver: mvcc: database space exceeded");
            assert!(m.get("fill/0001", None).await.unwrap().kvs().len() == 1, "reads keep working");
        }
        step!("delete, compact, defrag, disarm");
        let del = c.delete("fill/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
        let rev = del.header().unwrap().revision();
        c.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await.unwrap();
        for ep in &eps {
            let mut m = connect(ep).await;
            let before = m.status().await.unwrap().db_size();
            m.defragment().await.unwrap();
            let after = m.status().await.unwrap().db_size();
            eprintln!("{ep}: dbSize {before} -> {after}");
            assert!(after < before, "{ep}: defrag did not shrink dbSize: {before} -> {after}");
        }
        c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(AlarmOptions::new())).await.unwrap();
        let put = c.put("after", "ok", None).await;
        assert!(put.is_ok(), "writes should work again after disarm: {put:?}");
    });
}

/// Scenario: after a mixed load, HashKV at one revision is equal on all members; defragment while a reader
/// loops never fails a read.
#[test]
fn hashkv_agrees_and_defrag_under_reads() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftcdCluster::start(dir.path(), 3, &["--heartbeat-interval", "50", "--election-timeout", "500"]);
    let eps = cluster.endpoints();
    rt().block_on(async {
        let mut c = connect(&eps[0]).await;
        for i in 0..300 {
            c.put(format!("h/{}", i % 97), format!("{i}"), None).await.unwrap();
            if i % 10 == 0 {
                c.delete(format!("h/{}", i % 13), None).await.unwrap();
            }
        }
        let rev = c.compact(150, None).await.map(|_| 0).unwrap_or(0);
        let _ = rev;
        let at = c.get("h/1", None).await.unwrap().header().unwrap().revision();
        let mut hashes = Vec::new();
        for ep in &eps {
            let mut m = connect(ep).await;
            // Wait until the member has applied `at`.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match m.hash_kv(at).await {
                    Ok(h) => {
                        hashes.push((h.hash(), h.compact_version()));
                        break;
                    }
                    Err(e) => {
                        assert!(Instant::now() < deadline, "{ep}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "hashes differ across members: {hashes:?}");

        step!("defragment every member while a reader loops");
        let ep = eps[1].clone();
        let reader = tokio::spawn(async move {
            let mut r = connect(&ep).await;
            let mut n = 0;
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                r.get("h/", Some(GetOptions::new().with_prefix())).await.expect("read during defrag");
                n += 1;
            }
            n
        });
        for ep in &eps {
            connect(ep).await.defragment().await.unwrap();
        }
        assert!(reader.await.unwrap() > 0);
    });
}

/// The database directory the member's pointer file names (`member/db` without one).
fn active_db(data_dir: &Path) -> std::path::PathBuf {
    let member = data_dir.join("member");
    match std::fs::read_to_string(member.join("db.current")) {
        Ok(name) => member.join(name.trim()),
        Err(_) => member.join("db"),
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Scenario: a member accumulates deleted and compacted data; `etcdctl-rs defrag --data-dir` refuses the
/// data dir while the member runs, and after a clean stop rewrites it smaller (printing etcdctl's line); the
/// member restarts with the same keys, revision and HashKV and takes writes.
#[test]
fn offline_defrag_shrinks_a_stopped_member_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = RaftcdProcess::start_single(dir.path(), &[]);
    let ep = p.endpoint();
    let data_dir = p.member.data_dir.clone();
    let rs = workspace_bin("etcdctl-rs");
    let defrag = || {
        let o = Command::new(&rs).args(["defrag", "--data-dir"]).arg(&data_dir).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (before_kvs, rev, hash) = rt().block_on(async {
        let mut c = connect(&ep).await;
        step!("write 1500 values of 8 KiB, delete most, compact");
        for i in 0..1500 {
            c.put(format!("d/{i:05}"), vec![b'v'; 8192], None).await.unwrap();
        }
        c.delete("d/0", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
        let rev = c.put("d/last", "x", None).await.unwrap().header().unwrap().revision();
        c.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await.unwrap();
        let hash = c.hash_kv(rev).await.unwrap().hash();
        (all_at(&mut c, rev).await, rev, hash)
    });
    step!("refused while the member runs");
    let (code, _, err) = defrag();
    assert_eq!(code, Some(1));
    assert!(err.starts_with(&format!("Failed to defragment etcd data[{}] (", data_dir.display())), "{err}");
    assert!(err.contains("in use"), "{err}");
    step!("stop, defragment offline");
    assert_eq!(p.terminate(), Some(0));
    let db = active_db(&data_dir);
    assert_eq!(db, data_dir.join("member").join("db"), "a data dir never defragmented has no pointer");
    let size_before = dir_size(&db);
    let (code, out, err) = defrag();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, format!("Finished defragmenting etcd data[{}]\n", data_dir.display()));
    assert!(!db.exists(), "the replaced database must be removed");
    let size_after = dir_size(&active_db(&data_dir));
    assert!(size_after > 0, "the pointer must name the copy");
    eprintln!("data dir {size_before} -> {size_after} bytes");
    assert!(size_after * 2 < size_before, "defrag did not shrink the db: {size_before} -> {size_after}");
    step!("restart: same keys, revision and hash; writes work");
    p.restart();
    rt().block_on(async {
        let mut c = connect(&ep).await;
        assert_eq!(all_at(&mut c, rev).await, before_kvs);
        assert_eq!(c.hash_kv(rev).await.unwrap().hash(), hash);
        let r = c.put("d/after", "y", None).await.unwrap();
        assert_eq!(r.header().unwrap().revision(), rev + 1);
    });
}
