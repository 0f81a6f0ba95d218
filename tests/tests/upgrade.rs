//! Rolling restart (the upgrade procedure): members are stopped with SIGTERM and started again one at a
//! time, each waiting for the previous to catch up, while a client keeps writing through all endpoints.
//! Writes stay available throughout and nothing acknowledged is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use raftcd_tests::{step, RaftcdCluster};

/// Scenario: a 3-member cluster under a steady write load is restarted member by member (the leader too:
/// it hands leadership over before it stops). Every acknowledged write is present afterwards, and no
/// second of the run passed without a successful write.
#[test]
fn rolling_restart_keeps_writes_available() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RaftcdCluster::start(dir.path(), 3, &["--heartbeat-interval", "50", "--election-timeout", "500"]);
    let eps = cluster.endpoints();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (stop, acked, eps) = (stop.clone(), acked.clone(), eps.clone());
        rt.spawn(async move {
            let opts =
                ConnectOptions::new().with_timeout(Duration::from_secs(2)).with_connect_timeout(Duration::from_secs(1));
            let mut clients: Vec<Option<Client>> = vec![None, None, None];
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let slot = (i % 3) as usize;
                i += 1;
                if clients[slot].is_none() {
                    clients[slot] = Client::connect([eps[slot].clone()], Some(opts.clone())).await.ok();
                }
                let Some(c) = clients[slot].as_mut() else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let key = format!("roll/{i:06}");
                match c.put(key.clone(), "v", None).await {
                    Ok(_) => acked.lock().unwrap().push((key, Instant::now())),
                    Err(_) => {
                        clients[slot] = None;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    for (i, ep) in eps.iter().enumerate() {
        step!("restart member {i}");
        let code = cluster.members[i].terminate();
        assert_eq!(code, Some(0), "member {i} did not stop cleanly");
        std::thread::sleep(Duration::from_millis(300));
        cluster.members[i].restart();
        // Caught up: its serializable view reaches what the others acknowledged before it came back.
        let target = acked.lock().unwrap().len();
        let ep = ep.clone();
        let acked2 = acked.clone();
        rt.block_on(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            let want = acked2.lock().unwrap()[target.saturating_sub(1)].0.clone();
            loop {
                if let Ok(mut c) = Client::connect([ep.clone()], None).await {
                    let got = c.get(want.clone(), Some(GetOptions::new().with_serializable())).await;
                    if got.is_ok_and(|r| r.kvs().len() == 1) {
                        return;
                    }
                }
                assert!(Instant::now() < deadline, "member {ep} did not catch up");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    rt.block_on(writer).unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "too few writes: {}", acked.len());
    step!("no second without a successful write");
    let gaps: Vec<Duration> = acked.windows(2).map(|w| w[1].1.duration_since(w[0].1)).collect();
    let worst = gaps.iter().max().copied().unwrap_or_default();
    assert!(worst < Duration::from_secs(3), "writes were unavailable for {worst:?}");
    step!("every acknowledged write is present on every member");
    rt.block_on(async {
        for ep in &eps {
            let mut c = Client::connect([ep.clone()], None).await.unwrap();
            let all = c.get("roll/", Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
            let have: std::collections::HashSet<Vec<u8>> = all.kvs().iter().map(|kv| kv.key().to_vec()).collect();
            let missing: Vec<&String> = acked.iter().map(|(k, _)| k).filter(|k| !have.contains(k.as_bytes())).collect();
            assert!(missing.is_empty(), "{ep} lost acknowledged writes: {:?}", &missing[..missing.len().min(5)]);
        }
    });
}

/// Scenario: a member's data dir is marked as written by a newer build (store format 4; this build
/// reads 3), as after a downgrade past a format change. The member refuses to start: exit code 1 and
/// one line on stderr saying which format it found, instead of serving data it would misread.
#[test]
fn a_data_dir_of_a_newer_store_format_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut member = raftcd_tests::RaftcdProcess::start_single(dir.path(), &[]);
    let data_dir = member.member.data_dir.clone();
    assert_eq!(member.terminate(), Some(0));
    {
        let db = sled::open(data_dir.join("member").join("db")).unwrap();
        let state = db.open_tree("state").unwrap();
        assert_eq!(state.get(b"mformat").unwrap().as_deref(), Some(&3u64.to_be_bytes()[..]), "not format 3");
        state.insert(b"mformat", &4u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let m = &member.member;
    let mut child = std::process::Command::new(raftcd_tests::workspace_bin("raftcd"))
        .args(["--name", &m.name])
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen-client-urls", &m.client_url(), "--advertise-client-urls", &m.client_url()])
        .args(["--listen-peer-urls", &m.peer_url(), "--initial-advertise-peer-urls", &m.peer_url()])
        .args(["--initial-cluster", &m.initial_cluster_entry()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("raftcd still runs on a data dir of a newer store format");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let want = "raftcd: storage: mvcc: the data is in store format 4, newer than this build reads (3): run the newer \
                raftcd that wrote it";
    assert_eq!(stderr.lines().filter(|l| *l == want).count(), 1, "stderr:\n{stderr}");
}
