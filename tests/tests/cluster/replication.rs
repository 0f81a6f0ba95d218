//! Replication and failover: writes through every member, a killed leader under load, majority loss.

use super::*;

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
    let Trio { mut cluster, eps, ids, li, followers } = start_trio(dir.path()).await;
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
