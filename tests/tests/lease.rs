//! Lease tests against real raftcd processes, with real etcd as the reference for exact answers, and Debian's
//! etcdctl as a client we did not write.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp,
    WatchOptions, WatchStream,
};
use raftcd_tests::client::{assert_grpc_err, connect, etcdctl_path, grpc_status, skip_allowed, start_etcd, start_node};
use raftcd_tests::step;
use raftcd_tests::watch_checker::{check, describe, EventKind, History, Response, Trace, WatchSpec, Write};

// ---------------------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------------------

fn rev_of(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.map(|h| h.revision()).expect("response header")
}

async fn put_leased(c: &mut Client, key: &str, val: &str, lease: i64) -> i64 {
    let r =
        c.put(key, val, Some(PutOptions::new().with_lease(lease))).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
    rev_of(r.header())
}

/// Keys (sorted) and their lease ids under `prefix`.
async fn keys(c: &mut Client, prefix: &str) -> Vec<(String, i64)> {
    let r = c.get(prefix, Some(GetOptions::new().with_prefix())).await.expect("get");
    r.kvs().iter().map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.lease())).collect()
}

async fn lease_ids(c: &mut Client) -> BTreeSet<i64> {
    c.leases().await.expect("leases").leases().iter().map(|l| l.id()).collect()
}

/// (ttl, granted_ttl, sorted keys) of a lease.
async fn ttl_of(c: &mut Client, id: i64) -> (i64, i64, Vec<String>) {
    let r = c.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())).await.expect("time_to_live");
    assert_eq!(r.id(), id);
    let mut keys: Vec<String> = r.keys().iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    keys.sort();
    (r.ttl(), r.granted_ttl(), keys)
}

async fn next(ws: &mut WatchStream, t: Duration) -> Option<Response> {
    match tokio::time::timeout(t, ws.message()).await {
        Err(_) => None,
        Ok(Ok(Some(r))) => Some(Response::from_client(&r)),
        Ok(Ok(None)) => panic!("watch stream ended"),
        Ok(Err(e)) => panic!("watch stream failed: {e}"),
    }
}

/// Waits (polling every 100 ms) until `prefix` has no keys; returns how long it took.
async fn wait_gone(c: &mut Client, prefix: &str, timeout: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        if keys(c, prefix).await.is_empty() {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < timeout,
            "keys under {prefix} still there after {timeout:?}: {:?}",
            keys(c, prefix).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A grant's outcome in a comparable form.
fn grant_outcome(r: &Result<etcd_client::LeaseGrantResponse, etcd_client::Error>, requested_id: i64) -> String {
    match r {
        Ok(g) if requested_id != 0 => format!("ok id={} ttl={}", g.id(), g.ttl()),
        Ok(g) => format!("ok id={} ttl={}", if g.id() > 0 { "server-chosen" } else { "bad" }, g.ttl()),
        Err(e) => match grpc_status(e) {
            Some((code, msg)) => format!("err {code} {msg}"),
            None => format!("client error {e}"),
        },
    }
}

// ---------------------------------------------------------------------------------------------------------
// Grant
// ---------------------------------------------------------------------------------------------------------

/// Scenario (differential): the same grants on raftcd and real etcd — server-chosen id, client-chosen id,
/// the same id again ("lease already exists"), TTL 9,000,000,000 (the maximum) and one above it ("too large
/// lease TTL"), TTLs 1, 0 and -5 (raised to the minimum, 2 s with the default 100/1000 ms timing), keep-alive
/// and time_to_live of an unknown lease — give the same outcomes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_ids_errors_and_ttl_limits_match_etcd() {
    async fn run(c: &mut Client) -> Vec<String> {
        let mut out = Vec::new();
        for (ttl, id) in [
            (10, 0),
            (10, 0x1234),
            (20, 0x1234),
            (9_000_000_000, 0x2000),
            (9_000_000_001, 0x2001),
            (1, 0x3001),
            (0, 0x3002),
            (-5, 0x3003),
        ] {
            let opts = (id != 0).then(|| LeaseGrantOptions::new().with_id(id));
            let r = c.lease_grant(ttl, opts).await;
            out.push(format!("grant ttl={ttl} id={id:#x}: {}", grant_outcome(&r, id)));
        }
        let ka = c.lease_keep_alive(0x9999).await.map(|_| ());
        out.push(format!("keep_alive unknown: {ka:?}"));
        let t = c.lease_time_to_live(0x9999, None).await.map(|r| (r.id(), r.ttl(), r.granted_ttl()));
        out.push(format!("time_to_live unknown: {t:?}"));
        let revoke = c.lease_revoke(0x9999).await.map(|_| ()).map_err(|e| grpc_status(&e));
        out.push(format!("revoke unknown: {revoke:?}"));
        let put =
            c.put("k", "v", Some(PutOptions::new().with_lease(0x9999))).await.map(|_| ()).map_err(|e| grpc_status(&e));
        out.push(format!("put with unknown lease: {put:?}"));
        let ids = lease_ids(c).await;
        out.push(format!("listed client-chosen: {:?}", ids.iter().filter(|i| **i < 0x10000).collect::<Vec<_>>()));
        out
    }
    let mut n = start_node(&[]).await;
    let ours = run(&mut n.client).await;
    step!("raftcd:\n{}", ours.join("\n"));
    let expect = |i: usize, s: &str| assert!(ours[i].ends_with(s), "{}: expected {s:?}", ours[i]);
    expect(0, "ok id=server-chosen ttl=10");
    expect(1, "ok id=4660 ttl=10");
    expect(2, "err FailedPrecondition etcdserver: lease already exists");
    expect(3, "ok id=8192 ttl=9000000000");
    expect(4, "err OutOfRange etcdserver: too large lease TTL");
    expect(5, "ok id=12289 ttl=2");
    expect(6, "ok id=12290 ttl=2");
    expect(7, "ok id=12291 ttl=2");
    assert!(ours[8].contains("lease not found"), "{}", ours[8]);
    assert!(ours[9].contains("-1"), "unknown lease: TTL -1: {}", ours[9]);
    expect(10, "Err(Some((\"NotFound\", \"etcdserver: requested lease not found\")))");
    expect(11, "Err(Some((\"NotFound\", \"etcdserver: requested lease not found\")))");
    if let Some((_e, mut ec)) = start_etcd().await {
        let theirs = run(&mut ec).await;
        step!("etcd:\n{}", theirs.join("\n"));
        assert_eq!(ours, theirs, "lease answers differ from etcd");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Expiry, keep-alive, revoke
// ---------------------------------------------------------------------------------------------------------

/// Scenario: a 2 s lease with three keys attached (and one unleased key beside them), watched with prev_kv.
/// Without keep-alive the lease expires: its three keys go away in ONE revision (three DELETE events in one
/// response, each with the deleted key as prev_kv), the unleased key stays, time_to_live says -1 and the lease
/// is no longer listed. The watch passes the checker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_deletes_attached_keys_in_one_revision() {
    let mut n = start_node(&[]).await;
    let c = &mut n.client;
    let g = c.lease_grant(2, None).await.expect("grant");
    let id = g.id();
    step!("lease {id:x} ttl {}", g.ttl());
    let mut ws = c.watch("x/", Some(WatchOptions::new().with_prefix().with_prev_key())).await.unwrap();
    let created = next(&mut ws, Duration::from_secs(5)).await.unwrap();
    let t0 = Instant::now();
    let mut writes = Vec::new();
    for k in ["x/a", "x/b", "x/c"] {
        writes.push((
            put_leased(c, k, "v", id).await,
            vec![Write::Put { key: k.into(), value: b"v".to_vec(), lease: id }],
        ));
    }
    let r = c.put("x/free", "v", None).await.unwrap();
    writes.push((rev_of(r.header()), vec![Write::put("x/free", "v")]));
    let last_put = rev_of(r.header());
    let (ttl, granted, attached) = ttl_of(c, id).await;
    assert_eq!(granted, 2);
    assert!((1..=2).contains(&ttl), "remaining {ttl}");
    assert_eq!(attached, vec!["x/a", "x/b", "x/c"]);
    assert!(lease_ids(c).await.contains(&id));
    step!("wait for the expiry");
    let mut out = vec![created];
    while !out.iter().any(|r| r.events.iter().any(|e| e.kind == EventKind::Delete)) {
        assert!(t0.elapsed() < Duration::from_secs(8), "lease did not expire within 8 s: {out:?}");
        if let Some(r) = next(&mut ws, Duration::from_millis(200)).await {
            out.push(r);
        }
    }
    let took = t0.elapsed();
    step!("expired after {took:?}");
    assert!(took >= Duration::from_millis(1800), "expired too early ({took:?})");
    while let Some(r) = next(&mut ws, Duration::from_millis(300)).await {
        out.push(r);
    }
    let dels: Vec<&Response> = out.iter().filter(|r| r.events.iter().any(|e| e.kind == EventKind::Delete)).collect();
    assert_eq!(dels.len(), 1, "all deletes in one response: {out:?}");
    let d = dels[0];
    let revs: BTreeSet<i64> = d.events.iter().map(|e| e.revision()).collect();
    assert_eq!(revs, BTreeSet::from([last_put + 1]), "one revision right after the last put");
    assert_eq!(d.events.len(), 3);
    writes.push((last_put + 1, vec![Write::delete("x/a"), Write::delete("x/b"), Write::delete("x/c")]));
    let history = History::from_writes(writes).unwrap();
    let v = check(&history, &Trace::new(WatchSpec::prefix("x/ watch", "x/").with_prev_kv(), out));
    assert!(v.is_empty(), "{}", describe(&v));
    assert_eq!(keys(c, "x/").await, vec![("x/free".to_string(), 0)]);
    assert_eq!(ttl_of(c, id).await.0, -1);
    assert!(!lease_ids(c).await.contains(&id), "expired lease no longer listed");
}

/// Scenario: a 2 s lease kept alive every 500 ms for 5 s keeps its key (each keep-alive answers TTL 2);
/// once the keep-alives stop, the key is gone within TTL + 2 s, and a keep-alive on the same stream then
/// answers TTL 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_prevents_expiry() {
    let mut n = start_node(&[]).await;
    let c = &mut n.client;
    let id = c.lease_grant(2, None).await.unwrap().id();
    put_leased(c, "ka/k", "v", id).await;
    let (mut keeper, mut stream) = c.lease_keep_alive(id).await.expect("keep_alive stream");
    step!("keep alive for 5 s");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        keeper.keep_alive().await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(2), stream.message()).await.expect("keep-alive answer");
        let r = r.unwrap().expect("response");
        assert_eq!((r.id(), r.ttl()), (id, 2));
    }
    assert_eq!(keys(c, "ka/").await, vec![("ka/k".to_string(), id)], "kept alive 5 s past a 2 s TTL");
    let (ttl, _, _) = ttl_of(c, id).await;
    assert!((1..=2).contains(&ttl), "remaining {ttl}");
    step!("stop keeping alive");
    let took = wait_gone(c, "ka/", Duration::from_secs(5)).await;
    step!("gone {took:?} after the last keep-alive");
    keeper.keep_alive().await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(2), stream.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(r.ttl(), 0, "keep-alive of an expired lease answers TTL 0");
}

/// Scenario: revoking a lease deletes its two keys in one revision (one watch response) and leaves others;
/// a second revoke, a put with the revoked lease and a txn put with it fail with NotFound "etcdserver:
/// requested lease not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_deletes_keys_and_unknown_lease_fails() {
    let mut n = start_node(&[]).await;
    let c = &mut n.client;
    let id = c.lease_grant(60, None).await.unwrap().id();
    let other = c.lease_grant(60, None).await.unwrap().id();
    put_leased(c, "rv/a", "1", id).await;
    put_leased(c, "rv/b", "1", id).await;
    put_leased(c, "rv/c", "1", other).await;
    let mut ws = c.watch("rv/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    next(&mut ws, Duration::from_secs(5)).await.unwrap();
    step!("revoke");
    let r = c.lease_revoke(id).await.expect("revoke");
    let rev = rev_of(r.header());
    let resp = next(&mut ws, Duration::from_secs(5)).await.expect("delete events");
    let evs: Vec<(EventKind, String, i64)> =
        resp.events.iter().map(|e| (e.kind, String::from_utf8_lossy(&e.kv.key).into_owned(), e.revision())).collect();
    assert_eq!(
        evs,
        vec![(EventKind::Delete, "rv/a".into(), rev), (EventKind::Delete, "rv/b".into(), rev)],
        "both keys in one response at the revoke's revision {rev}"
    );
    assert_eq!(keys(c, "rv/").await, vec![("rv/c".to_string(), other)]);
    assert!(!lease_ids(c).await.contains(&id));
    assert_grpc_err(c.lease_revoke(id).await, "NotFound", "etcdserver: requested lease not found");
    assert_grpc_err(
        c.put("rv/d", "1", Some(PutOptions::new().with_lease(id))).await,
        "NotFound",
        "etcdserver: requested lease not found",
    );
    let t = Txn::new().when(vec![Compare::version("rv/d", CompareOp::Equal, 0)]).and_then(vec![TxnOp::put(
        "rv/d",
        "1",
        Some(PutOptions::new().with_lease(id)),
    )]);
    assert_grpc_err(c.txn(t).await, "NotFound", "etcdserver: requested lease not found");
    assert_eq!(keys(c, "rv/").await.len(), 1, "nothing written by the failed requests");
    assert!(next(&mut ws, Duration::from_millis(300)).await.is_none(), "no events from failed requests");
}

/// Scenario: five keys start on a 2 s lease; before it expires one is overwritten without a lease (detached),
/// one is moved to a long lease, one is overwritten with ignore_lease (stays attached), one is deleted. At
/// expiry exactly the two still attached keys are deleted, in one revision; time_to_live lists only them
/// before the expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_deletes_only_keys_still_attached() {
    let mut n = start_node(&[]).await;
    let c = &mut n.client;
    let short = c.lease_grant(2, None).await.unwrap().id();
    let long = c.lease_grant(600, None).await.unwrap().id();
    for k in ["d/stay", "d/detach", "d/move", "d/ignore", "d/delete"] {
        put_leased(c, k, "v1", short).await;
    }
    c.put("d/detach", "v2", None).await.unwrap();
    put_leased(c, "d/move", "v2", long).await;
    c.put("d/ignore", "v2", Some(PutOptions::new().with_ignore_lease())).await.expect("put ignore_lease");
    c.delete("d/delete", None).await.unwrap();
    let (_, _, attached) = ttl_of(c, short).await;
    assert_eq!(attached, vec!["d/ignore", "d/stay"], "keys of the short lease");
    assert_eq!(ttl_of(c, long).await.2, vec!["d/move"]);
    let before = rev_of(c.get("d/", None).await.unwrap().header());
    let mut ws = c.watch("d/", Some(WatchOptions::new().with_prefix().with_prev_key())).await.unwrap();
    next(&mut ws, Duration::from_secs(5)).await.unwrap();
    let resp = next(&mut ws, Duration::from_secs(8)).await.expect("expiry");
    let mut got: Vec<(EventKind, String, i64, i64)> = resp
        .events
        .iter()
        .map(|e| {
            let prev_lease = e.prev_kv.as_ref().map_or(-1, |p| p.lease);
            (e.kind, String::from_utf8_lossy(&e.kv.key).into_owned(), e.revision(), prev_lease)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (EventKind::Delete, "d/ignore".into(), before + 1, short),
            (EventKind::Delete, "d/stay".into(), before + 1, short)
        ]
    );
    assert!(next(&mut ws, Duration::from_millis(500)).await.is_none(), "nothing else deleted");
    assert_eq!(keys(c, "d/").await, vec![("d/detach".into(), 0), ("d/move".into(), long)]);
}

/// Scenario (differential): granting and revoking a lease without keys writes no revision (the next put gets
/// the next revision), and revoking a lease with keys writes exactly one — on raftcd as on real etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_revisions_match_etcd() {
    async fn run(c: &mut Client) -> Vec<i64> {
        let mut revs = vec![rev_of(c.put("a", "1", None).await.unwrap().header())];
        let g = c.lease_grant(60, None).await.unwrap();
        revs.push(rev_of(g.header()));
        revs.push(rev_of(c.lease_revoke(g.id()).await.unwrap().header()));
        revs.push(rev_of(c.put("a", "2", None).await.unwrap().header()));
        let g = c.lease_grant(60, None).await.unwrap();
        put_leased(c, "b", "1", g.id()).await;
        put_leased(c, "c", "1", g.id()).await;
        revs.push(rev_of(c.lease_revoke(g.id()).await.unwrap().header()));
        revs.push(rev_of(c.put("a", "3", None).await.unwrap().header()));
        revs
    }
    let mut n = start_node(&[]).await;
    let ours = run(&mut n.client).await;
    step!("raftcd header revisions: {ours:?}");
    assert_eq!(ours, vec![2, 2, 2, 3, 6, 7]);
    if let Some((_e, mut ec)) = start_etcd().await {
        let theirs = run(&mut ec).await;
        step!("etcd header revisions: {theirs:?}");
        assert_eq!(ours, theirs);
    }
}

/// Scenario (differential): time_to_live's remaining TTL is rounded as etcd rounds it. A 30 s lease asked
/// 300 ms after the grant has 29.7 s left: etcd 3.4 answers 29 (it truncates `Remaining().Seconds()`), and
/// so must raftcd; `etcdctl lease timetolive` prints that number. The keep-alive answer is the granted TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_to_live_rounding_matches_etcd() {
    async fn run(c: &mut Client) -> (i64, i64, i64) {
        let id = c.lease_grant(30, None).await.unwrap().id();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (ttl, granted, _) = ttl_of(c, id).await;
        let (mut keeper, mut stream) = c.lease_keep_alive(id).await.unwrap();
        keeper.keep_alive().await.unwrap();
        let ka = stream.message().await.unwrap().unwrap().ttl();
        (ttl, granted, ka)
    }
    let mut n = start_node(&[]).await;
    let ours = run(&mut n.client).await;
    step!("raftcd (remaining, granted, keep-alive ttl): {ours:?}");
    if let Some((_e, mut ec)) = start_etcd().await {
        let theirs = run(&mut ec).await;
        step!("etcd   (remaining, granted, keep-alive ttl): {theirs:?}");
        assert_eq!(ours, theirs, "time_to_live rounding differs from etcd");
    }
    assert_eq!(ours, (29, 30, 30));
}

/// Scenario: 300 keys on one lease (more than --max-txn-ops): revoking it deletes all of them in one revision,
/// delivered to a watcher in one response, and a watcher replaying from before the revoke gets the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_of_a_lease_with_many_keys_is_one_revision() {
    let mut n = start_node(&[]).await;
    let id = n.client.lease_grant(600, None).await.unwrap().id();
    let mut tasks = Vec::new();
    for w in 0..10 {
        let mut c = n.client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..30 {
                put_leased(&mut c, &format!("many/{w}/{i:02}"), "v", id).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = &mut n.client;
    assert_eq!(ttl_of(c, id).await.2.len(), 300);
    let before = rev_of(c.get("many/", None).await.unwrap().header());
    let mut ws = c.watch("many/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    next(&mut ws, Duration::from_secs(5)).await.unwrap();
    let rev = rev_of(c.lease_revoke(id).await.expect("revoke").header());
    assert_eq!(rev, before + 1, "one revision for all 300 deletes");
    let resp = next(&mut ws, Duration::from_secs(5)).await.expect("deletes");
    assert_eq!(resp.events.len(), 300, "all deletes in one response");
    assert!(resp.events.iter().all(|e| e.kind == EventKind::Delete && e.revision() == rev));
    let mut replay = c.watch("many/", Some(WatchOptions::new().with_prefix().with_start_revision(rev))).await.unwrap();
    next(&mut replay, Duration::from_secs(5)).await.unwrap();
    let r = next(&mut replay, Duration::from_secs(5)).await.expect("replayed deletes");
    assert_eq!(r.events.len(), 300, "replay keeps the revision whole");
    assert!(keys(c, "many/").await.is_empty());
}

/// Scenario: three leases (TTL 30, 60, 90), keys on two of them: time_to_live reports remaining and granted
/// TTL and, when asked, the attached keys (none when not asked); leases() lists exactly the three ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_to_live_with_keys_and_leases_list() {
    let mut n = start_node(&[]).await;
    let c = &mut n.client;
    let before = lease_ids(c).await;
    assert!(before.is_empty(), "{before:?}");
    let mut ids = Vec::new();
    for ttl in [30, 60, 90] {
        ids.push(c.lease_grant(ttl, None).await.unwrap().id());
    }
    for k in ["t/1", "t/2", "t/3"] {
        put_leased(c, k, "v", ids[0]).await;
    }
    put_leased(c, "t/4", "v", ids[1]).await;
    put_leased(c, "t/3", "v2", ids[1]).await; // moves t/3 to the second lease
    for (i, ttl) in [30, 60, 90].into_iter().enumerate() {
        let (remaining, granted, attached) = ttl_of(c, ids[i]).await;
        assert_eq!(granted, ttl);
        assert!(remaining > ttl - 3 && remaining <= ttl, "remaining {remaining} of {ttl}");
        let want: Vec<&str> = match i {
            0 => vec!["t/1", "t/2"],
            1 => vec!["t/3", "t/4"],
            _ => vec![],
        };
        assert_eq!(attached, want, "keys of lease {i}");
    }
    let plain = c.lease_time_to_live(ids[0], None).await.unwrap();
    assert!(plain.keys().is_empty(), "no keys unless asked");
    assert_eq!(lease_ids(c).await, ids.iter().copied().collect::<BTreeSet<_>>());
    let gone = c.lease_time_to_live(0x7777, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!((gone.ttl(), gone.keys().len()), (-1, 0));
}

// ---------------------------------------------------------------------------------------------------------
// Restarts
// ---------------------------------------------------------------------------------------------------------

async fn survives_restart(kill9: bool) {
    let mut n = start_node(&[]).await;
    let id = n.client.lease_grant(5, None).await.unwrap().id();
    let long = n.client.lease_grant(600, None).await.unwrap().id();
    put_leased(&mut n.client, "rs/a", "1", id).await;
    put_leased(&mut n.client, "rs/b", "1", id).await;
    put_leased(&mut n.client, "rs/long", "1", long).await;
    if kill9 {
        step!("kill -9 and restart");
        n.proc.kill();
    } else {
        step!("SIGTERM and restart");
        let code = tokio::task::block_in_place(|| n.proc.terminate());
        assert_eq!(code, Some(0), "clean exit on SIGTERM");
    }
    tokio::task::block_in_place(|| n.proc.restart());
    let t0 = Instant::now();
    let mut c = connect(&n.proc.endpoint()).await;
    step!("restarted and serving after {:?}", t0.elapsed());
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([id, long]), "both leases still listed");
    let (ttl, granted, attached) = ttl_of(&mut c, id).await;
    assert_eq!(granted, 5);
    assert!(ttl > 0, "not expired yet: {ttl}");
    assert_eq!(attached, vec!["rs/a", "rs/b"]);
    assert_eq!(keys(&mut c, "rs/").await, vec![("rs/a".into(), id), ("rs/b".into(), id), ("rs/long".into(), long)]);
    step!("not kept alive: expires after the restart");
    let mut ws = c.watch("rs/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    next(&mut ws, Duration::from_secs(5)).await.unwrap();
    let resp = next(&mut ws, Duration::from_secs(10)).await.expect("expiry after restart");
    step!("expired {:?} after the restart", t0.elapsed());
    assert_eq!(resp.events.len(), 2, "both keys in one response: {resp:?}");
    assert_eq!(keys(&mut c, "rs/").await, vec![("rs/long".into(), long)]);
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([long]));
    assert_eq!(ttl_of(&mut c, id).await.0, -1);
}

/// Scenario: a 5 s lease with two keys and a 600 s lease survive a SIGTERM restart: both are listed,
/// the keys still attached; the 5 s lease, not kept alive, then expires after the restart (its keys deleted
/// in one revision) while the other stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_survives_sigterm_restart() {
    survives_restart(false).await;
}

/// Scenario: as the SIGTERM case, but the member is killed with SIGKILL (kill -9) — the grant and the puts
/// were acknowledged, so they must be durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_survives_kill9_restart() {
    survives_restart(true).await;
}

// ---------------------------------------------------------------------------------------------------------
// kube-apiserver pattern
// ---------------------------------------------------------------------------------------------------------

/// Scenario (kube-apiserver's event objects): one LeaseGrant reused for several objects created with
/// Txn{MOD(key)==0 -> Put(key, val, lease)}; a prefix watch from the creation revision + 1 with prev_kv sees,
/// at expiry, a DELETE for each object carrying prev_kv with the lease id; the keys are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_apiserver_lease_pattern() {
    let mut n = start_node(&[]).await;
    let c = &mut n.client;
    let lease = c.lease_grant(2, None).await.unwrap().id();
    let mut last = 0;
    for i in 0..5 {
        let k = format!("/registry/events/default/ev-{i}");
        let t = Txn::new()
            .when(vec![Compare::mod_revision(k.as_str(), CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(k.as_str(), format!("event {i}"), Some(PutOptions::new().with_lease(lease)))]);
        let r = c.txn(t).await.expect("create");
        assert!(r.succeeded());
        last = rev_of(r.header());
    }
    let mut ws = c
        .watch(
            "/registry/events/",
            Some(WatchOptions::new().with_prefix().with_prev_key().with_start_revision(last + 1)),
        )
        .await
        .unwrap();
    next(&mut ws, Duration::from_secs(5)).await.unwrap();
    let t0 = Instant::now();
    let mut deletes = Vec::new();
    while deletes.len() < 5 {
        assert!(t0.elapsed() < Duration::from_secs(8), "events not expired: {deletes:?}");
        if let Some(r) = next(&mut ws, Duration::from_millis(500)).await {
            deletes.extend(r.events);
        }
    }
    for e in &deletes {
        assert_eq!(e.kind, EventKind::Delete);
        let prev = e.prev_kv.as_ref().expect("kube needs prev_kv on a DELETE");
        assert_eq!(prev.lease, lease);
        assert_eq!(prev.key, e.kv.key);
    }
    assert!(keys(c, "/registry/events/").await.is_empty());
}

// ---------------------------------------------------------------------------------------------------------
// Debian etcdctl
// ---------------------------------------------------------------------------------------------------------

fn etcdctl(endpoint: &str, args: &[&str]) -> Option<(bool, String)> {
    let Some(bin) = etcdctl_path() else {
        assert!(skip_allowed(), "etcdctl missing (set RAFTCD_ALLOW_SKIP=1 to skip)");
        return None;
    };
    let out = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .output()
        .expect("run etcdctl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), text))
}

/// Scenario: Debian's etcdctl drives the lease API: `lease grant 60` (id parsed from "lease <hex> granted
/// with TTL(60s)"), `put --lease`, `lease keep-alive --once`, `lease timetolive --keys`, `lease list`,
/// `lease revoke`, then `timetolive` of the revoked lease ("already expired").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lease_commands() {
    let mut n = start_node(&[]).await;
    let ep = n.proc.endpoint();
    let run = |args: &[&str]| tokio::task::block_in_place(|| etcdctl(&ep, args));
    let Some((ok, out)) = run(&["lease", "grant", "60"]) else { return };
    assert!(ok, "{out}");
    step!("{}", out.trim());
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words.len(), 5, "{out}");
    assert_eq!((words[0], words[2], words[3], words[4]), ("lease", "granted", "with", "TTL(60s)"), "{out}");
    let hex = words[1].to_string();
    let id = i64::from_str_radix(&hex, 16).expect("hex id");
    assert_eq!(hex, format!("{id:016x}"));
    assert!(lease_ids(&mut n.client).await.contains(&id));
    let (ok, out) = run(&["put", "el/k1", "v", &format!("--lease={hex}")]).unwrap();
    assert!(ok && out.trim() == "OK", "{out}");
    let (ok, out) = run(&["put", "el/k2", "v", &format!("--lease={hex}")]).unwrap();
    assert!(ok, "{out}");
    let (ok, out) = run(&["lease", "keep-alive", "--once", &hex]).unwrap();
    assert!(ok, "{out}");
    assert_eq!(out.trim(), format!("lease {hex} keepalived with TTL(60)"));
    let (ok, out) = run(&["lease", "timetolive", "--keys", &hex]).unwrap();
    assert!(ok, "{out}");
    step!("{}", out.trim());
    let prefix = format!("lease {hex} granted with TTL(60s), remaining(");
    assert!(out.starts_with(&prefix), "{out}");
    let rest = &out[prefix.len()..];
    let (remaining, keys_part) = rest.split_once("s), attached keys([").expect("keys part");
    let remaining: i64 = remaining.parse().expect("remaining seconds");
    assert!((55..=60).contains(&remaining), "{remaining}");
    let mut ks: Vec<&str> = keys_part.trim_end().trim_end_matches("])").split(' ').collect();
    ks.sort();
    assert_eq!(ks, vec!["el/k1", "el/k2"]);
    let (ok, out) = run(&["lease", "list"]).unwrap();
    assert!(ok, "{out}");
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["found 1 leases", hex.as_str()]);
    let (ok, out) = run(&["lease", "revoke", &hex]).unwrap();
    assert!(ok, "{out}");
    assert_eq!(out.trim(), format!("lease {hex} revoked"));
    assert!(keys(&mut n.client, "el/").await.is_empty());
    let (ok, out) = run(&["lease", "timetolive", &hex]).unwrap();
    assert!(ok, "{out}");
    assert_eq!(out.trim(), format!("lease {hex} already expired"));
    let (ok, out) = run(&["lease", "revoke", &hex]).unwrap();
    assert!(!ok && out.contains("etcdserver: requested lease not found"), "{out}");
}
