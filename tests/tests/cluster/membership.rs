//! Membership: joining through snapshots, removal, learners, MoveLeader, peer URL updates, full restarts.

use super::*;

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
