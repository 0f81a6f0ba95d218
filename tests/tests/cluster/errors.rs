//! Membership and leadership errors with etcd's codes and messages.

use super::*;

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
    let Trio { mut cluster, eps, ids, li, followers } = start_trio(dir.path()).await;
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
