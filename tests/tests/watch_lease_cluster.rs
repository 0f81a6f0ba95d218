//! Watches and leases on a 3-member cluster: watchers on every member see the same events, in order,
//! matching the acknowledged writes; lease grants, keep-alives and time-to-live work through followers
//! (forwarded to the leader); expiry deletes keys at one revision everywhere; a leader failover does not
//! expire leases early.

use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions};
use raftcd_tests::cluster::wait_leader;
use raftcd_tests::{step, RaftcdCluster};

type Seen = Vec<(i64, String, bool, String)>;

async fn collect(mut stream: etcd_client::WatchStream, until_rev: i64, deadline: Duration) -> Seen {
    let mut seen: Seen = Vec::new();
    let end = Instant::now() + deadline;
    while seen.last().is_none_or(|(r, ..)| *r < until_rev) && Instant::now() < end {
        match tokio::time::timeout(Duration::from_secs(1), stream.message()).await {
            Ok(Ok(Some(resp))) => {
                for e in resp.events() {
                    let kv = e.kv().unwrap();
                    seen.push((
                        kv.mod_revision(),
                        kv.key_str().unwrap().to_string(),
                        e.event_type() == EventType::Put,
                        kv.value_str().unwrap_or("").to_string(),
                    ));
                }
            }
            Ok(_) => break,
            Err(_) => {}
        }
    }
    seen
}

/// Scenario: a prefix watch (with prev_kv) on each member from revision 1 while writes go through all
/// members; every watcher gets exactly the acknowledged writes, in revision order, no gaps or duplicates.
#[test]
fn watchers_on_every_member_see_the_same_history() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftcdCluster::start(dir.path(), 3, &["--heartbeat-interval", "50", "--election-timeout", "500"]);
    let eps = cluster.endpoints();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        wait_leader(&eps, None, Duration::from_secs(10)).await.unwrap();
        let mut streams = Vec::new();
        for ep in &eps {
            let mut c = Client::connect([ep.clone()], None).await.unwrap();
            let s = c.watch("w/", Some(WatchOptions::new().with_prefix().with_prev_key())).await.unwrap();
            streams.push((c, s));
        }
        step!("300 writes (puts and deletes) through all members");
        let mut expected: Seen = Vec::new();
        let mut clients = Vec::new();
        for ep in &eps {
            clients.push(Client::connect([ep.clone()], None).await.unwrap());
        }
        for i in 0..300usize {
            let c = &mut clients[i % 3];
            let key = format!("w/{}", i % 17);
            if i % 7 == 6 {
                let r = c.delete(key.clone(), None).await.unwrap();
                if r.deleted() > 0 {
                    expected.push((r.header().unwrap().revision(), key, false, String::new()));
                }
            } else {
                let r = c.put(key.clone(), format!("{i}"), None).await.unwrap();
                expected.push((r.header().unwrap().revision(), key, true, format!("{i}")));
            }
        }
        let last = expected.last().unwrap().0;
        for (i, (_c, s)) in streams.into_iter().enumerate() {
            let seen = collect(s, last, Duration::from_secs(20)).await;
            assert_eq!(seen, expected, "watcher on member {i} saw a different history");
        }
    });
}

/// Scenario: a lease granted through a follower, a key attached through another follower, kept alive
/// through a follower past its TTL; then the keep-alive stops, the lease expires and the key disappears
/// from every member at one revision; TTL queries through followers agree.
#[test]
fn leases_through_followers_and_expiry_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftcdCluster::start(dir.path(), 3, &["--heartbeat-interval", "50", "--election-timeout", "500"]);
    let eps = cluster.endpoints();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let leader = wait_leader(&eps, None, Duration::from_secs(10)).await.unwrap();
        let ids = raftcd_tests::cluster::ids_of(&eps).await;
        let followers: Vec<String> =
            eps.iter().zip(&ids).filter(|(_, id)| **id != leader).map(|(e, _)| e.clone()).collect();
        let mut f1 = Client::connect([followers[0].clone()], None).await.unwrap();
        let mut f2 = Client::connect([followers[1].clone()], None).await.unwrap();
        step!("grant through a follower, attach through the other");
        let lease = f1.lease_grant(2, None).await.unwrap().id();
        f2.put("leased", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
        step!("keep alive through a follower for 4 s (twice the TTL)");
        let (mut keeper, mut responses) = f1.lease_keep_alive(lease).await.unwrap();
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            keeper.keep_alive().await.unwrap();
            let r = responses.message().await.unwrap().unwrap();
            assert!(r.ttl() > 0, "keep-alive through a follower failed: ttl {}", r.ttl());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(f2.get("leased", None).await.unwrap().kvs().len(), 1, "key expired while kept alive");
        let ttl = f2.lease_time_to_live(lease, None).await.unwrap();
        assert!(ttl.ttl() > 0 && ttl.ttl() <= 2, "ttl through a follower: {}", ttl.ttl());
        drop(keeper);
        drop(responses);
        step!("stop keeping it alive: the key goes on every member, at one revision");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut revs = Vec::new();
        for ep in &eps {
            let mut c = Client::connect([ep.clone()], None).await.unwrap();
            loop {
                let r = c.get("leased", Some(GetOptions::new().with_serializable())).await.unwrap();
                if r.kvs().is_empty() {
                    break;
                }
                assert!(Instant::now() < deadline, "{ep}: key still there after the lease lapsed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // The delete's revision, from history: a watch from revision 1 on the key.
            let mut s = c.watch("leased", Some(WatchOptions::new().with_start_revision(1))).await.unwrap();
            let mut del_rev = 0;
            while del_rev == 0 {
                let resp = tokio::time::timeout(Duration::from_secs(5), s.message()).await.unwrap().unwrap().unwrap();
                for e in resp.events() {
                    if e.event_type() == EventType::Delete {
                        del_rev = e.kv().unwrap().mod_revision();
                    }
                }
            }
            revs.push(del_rev);
        }
        assert!(revs.windows(2).all(|w| w[0] == w[1]), "expiry deleted at different revisions: {revs:?}");
        assert_eq!(f1.lease_time_to_live(lease, None).await.unwrap().ttl(), -1);
    });
}

/// Scenario: a 6 s lease is granted; the leader is killed 1 s later; after the new leader is elected the
/// lease still has most of its TTL (the new leader renews it) and its key is still there.
#[test]
fn leader_failover_does_not_expire_leases() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RaftcdCluster::start(dir.path(), 3, &["--heartbeat-interval", "50", "--election-timeout", "500"]);
    let eps = cluster.endpoints();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (lease, leader_pos) = rt.block_on(async {
        let leader = wait_leader(&eps, None, Duration::from_secs(10)).await.unwrap();
        let ids = raftcd_tests::cluster::ids_of(&eps).await;
        let pos = ids.iter().position(|i| *i == leader).unwrap();
        let mut c = Client::connect([eps[pos].clone()], None).await.unwrap();
        let lease = c.lease_grant(6, None).await.unwrap().id();
        c.put("survives", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
        (lease, pos)
    });
    std::thread::sleep(Duration::from_secs(1));
    step!("kill the leader");
    cluster.members[leader_pos].kill();
    let rest: Vec<String> = eps.iter().enumerate().filter(|(i, _)| *i != leader_pos).map(|(_, e)| e.clone()).collect();
    rt.block_on(async {
        wait_leader(&rest, None, Duration::from_secs(10)).await.unwrap();
        let mut c = Client::connect([rest[0].clone()], None).await.unwrap();
        let ttl = c.lease_time_to_live(lease, None).await.unwrap().ttl();
        assert!(ttl >= 4, "the new leader should have renewed the lease, ttl {ttl}");
        assert_eq!(c.get("survives", None).await.unwrap().kvs().len(), 1);
    });
}

/// Scenario: with --max-request-bytes 16384, eight 3 KB keys are deleted in one revision. Watchers that
/// asked for prev_kv get 24 KB of events for it: one created with `fragment` receives the revision in
/// several responses, one without it in a single response; both get all 8 events.
#[test]
fn large_revisions_are_fragmented_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let p = raftcd_tests::RaftcdProcess::start_single(dir.path(), &["--max-request-bytes", "16384"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = raftcd_tests::client::connect(&p.endpoint()).await;
        for i in 0..8 {
            c.put(format!("big/{i}"), vec![b'x'; 3000], None).await.unwrap();
        }
        let opts = WatchOptions::new().with_prefix().with_prev_key();
        let mut frag = c.watch("big/", Some(opts.clone().with_fragment())).await.unwrap();
        let mut whole = c.watch("big/", Some(opts)).await.unwrap();
        c.delete("big/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
        let mut counts = Vec::new();
        for s in [&mut frag, &mut whole] {
            let (mut responses, mut events) = (0, 0);
            while events < 8 {
                let r = tokio::time::timeout(Duration::from_secs(5), s.message()).await.unwrap().unwrap().unwrap();
                if !r.events().is_empty() {
                    assert!(r.events().iter().all(|e| e.prev_kv().is_some()), "prev_kv missing");
                    responses += 1;
                    events += r.events().len();
                }
            }
            counts.push((responses, events));
        }
        assert_eq!((counts[0].1, counts[1].1), (8, 8));
        assert!(counts[0].0 > 1, "a fragmenting watcher got the 24 KB revision in {} response(s)", counts[0].0);
        assert_eq!(counts[1].0, 1, "a watcher without fragment gets one response per revision");
    });
}

/// Scenario: a watch opened with `hasleader=true` metadata on m3; m1 and m2 are killed; once m3 knows no
/// leader, the stream ends with Unavailable "etcdserver: no leader".
#[test]
fn hasleader_watch_is_cancelled_without_a_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RaftcdCluster::start(dir.path(), 3, &["--heartbeat-interval", "50", "--election-timeout", "500"]);
    let eps = cluster.endpoints();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        wait_leader(&eps, None, Duration::from_secs(10)).await.unwrap();
        let opts = etcd_client::ConnectOptions::new().with_require_leader(true);
        let mut c = Client::connect([eps[2].clone()], Some(opts)).await.unwrap();
        let mut s = c.watch("hl", None).await.unwrap();
        c.put("hl", "1", None).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), s.message()).await.unwrap();
        assert!(first.is_ok(), "the watch works while there is a leader");
        cluster.members[0].kill();
        cluster.members[1].kill();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match tokio::time::timeout(Duration::from_secs(1), s.message()).await {
                Ok(Err(e)) => {
                    let msg = e.to_string();
                    assert!(msg.contains("etcdserver: no leader"), "unexpected error: {msg}");
                    break;
                }
                Ok(Ok(None)) => panic!("stream ended without etcd's no-leader error"),
                _ => assert!(Instant::now() < deadline, "watch not cancelled without a leader"),
            }
        }
    });
}
