//! A member whose data belongs to another cluster (here: bootstrapped with another
//! --initial-cluster-token at the same peer URLs) is refused by the others and exits non-zero with a
//! clear log line, while the real cluster keeps serving.

use std::time::Duration;

use raftcd_tests::client::connect;
use raftcd_tests::{step, RaftcdCluster, RaftcdProcess};

/// Scenario: m3 of a 3-member cluster is wiped and started with a different cluster token: it becomes a
/// member of a different cluster at the same URLs. m1 and m2 refuse its traffic; m3 exits with a non-zero
/// status and says why; m1 and m2 still serve writes.
#[test]
fn member_of_another_cluster_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RaftcdCluster::start(dir.path(), 3, &["--heartbeat-interval", "50", "--election-timeout", "500"]);
    let initial = cluster.initial_cluster();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        connect(&cluster.members[0].endpoint()).await.put("before", "1", None).await.unwrap();
    });
    step!("replace m3 by a member bootstrapped for another cluster");
    let mut m3 = cluster.members.remove(2);
    m3.kill();
    std::fs::remove_dir_all(&m3.member.data_dir).unwrap();
    let member = m3.member.clone();
    drop(m3);
    let mut foreign = RaftcdProcess::start_member(
        member,
        &initial,
        &["--initial-cluster-token", "another-cluster", "--heartbeat-interval", "50", "--election-timeout", "500"],
    );
    let status = foreign.wait_exit(Duration::from_secs(20)).expect("the foreign member kept running");
    assert!(!status.success(), "it should exit non-zero, got {status:?}");
    assert!(foreign.log().contains("belong to a different cluster"), "no clear log line:\n{}", foreign.log());
    step!("the real cluster still serves");
    rt.block_on(async {
        let mut c = connect(&cluster.members[1].endpoint()).await;
        c.put("after", "2", None).await.unwrap();
        assert_eq!(c.get("before", None).await.unwrap().kvs().len(), 1);
    });
}
