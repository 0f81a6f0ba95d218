//! Requests that only the leader answers (membership changes, lease TTLs), sent to a member while the
//! cluster has no leader, wait for the election's outcome within the request timeout instead of failing
//! at once with "etcdserver: no leader" (etcd's requests wait the same way).

use std::time::{Duration, Instant};

use etcd_client::MemberAddOptions;
use raftcd_tests::client::connect;
use raftcd_tests::{step, RaftcdCluster};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Scenario: two of three members are killed, so the survivor knows no leader; a member add sent to it
/// waits; one member comes back, a leader is elected and the add succeeds.
#[test]
fn member_add_waits_for_an_election() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RaftcdCluster::start(dir.path(), 3, &["--heartbeat-interval", "50", "--election-timeout", "500"]);
    let eps = cluster.endpoints();
    rt().block_on(async {
        let mut c = connect(&eps[0]).await;
        c.put("k", "v", None).await.unwrap();

        step!("kill m2 and m3: m1 loses its leader");
        cluster.members[1].kill();
        cluster.members[2].kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.status().await.unwrap().leader() != 0 {
            assert!(Instant::now() < deadline, "m1 still names a leader with quorum lost");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        step!("member add on m1 while leaderless, then bring m2 back");
        let mut adder = c.clone();
        let add = tokio::spawn(async move {
            adder.member_add(["http://127.0.0.1:1"], Some(MemberAddOptions::new().with_is_learner())).await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!add.is_finished(), "member add answered while there was no leader: {:?}", add.await);
        cluster.members[1].restart();
        let resp = add.await.unwrap().expect("member add after the election");
        let added = resp.member().expect("added member").id();
        let listed = c.member_list().await.unwrap();
        assert!(listed.members().iter().any(|m| m.id() == added && m.is_learner()), "{listed:?}");
    });
}
