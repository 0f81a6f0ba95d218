//! Compaction, request validation, headers, Status, restarts and kube-apiserver patterns.

use super::*;

/// Scenario: Compact refuses a future revision and an already compacted one (OutOfRange); physical compaction
/// returns once done; compaction adds no revision; reads below the compaction revision fail, reads at it work,
/// and the latest values stay.
#[tokio::test]
async fn compact_errors_and_physical() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put k v2..v6 @2..@6, and j @7");
    for i in 2..=6 {
        c.put("k", format!("v{i}"), None).await?;
    }
    c.put("j", "x", None).await?;
    step!("compact at a future revision");
    assert_grpc_err(c.compact(8, None).await, "OutOfRange", FUTURE_REV);
    step!("physical compact at 4");
    let r = c.compact(4, Some(CompactionOptions::new().with_physical())).await?;
    assert_eq!(hrev(r.header()), 7, "compaction adds no revision");
    step!("compact at or below 4 again: compacted");
    assert_grpc_err(c.compact(4, None).await, "OutOfRange", COMPACTED);
    assert_grpc_err(c.compact(2, None).await, "OutOfRange", COMPACTED);
    step!("reads: below 4 compacted, 4 and later fine, latest intact");
    assert_grpc_err(c.get("k", Some(GetOptions::new().with_revision(3))).await, "OutOfRange", COMPACTED);
    let r = c.get("k", Some(GetOptions::new().with_revision(4))).await?;
    assert_eq!((s(r.kvs()[0].value()), revs(&r.kvs()[0])), ("v4".into(), (2, 4, 3)));
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), revs(&kv)), ("v6".into(), (2, 6, 5)), "version survives compaction");
    step!("a compacted revision also fails inside a txn");
    assert_grpc_err(
        c.txn(Txn::new().and_then([TxnOp::get("k", Some(GetOptions::new().with_revision(2)))])).await,
        "OutOfRange",
        COMPACTED,
    );
    step!("compact at the current revision (logical), then write on");
    c.compact(7, None).await?;
    assert_grpc_err(c.get("k", Some(GetOptions::new().with_revision(6))).await, "OutOfRange", COMPACTED);
    assert_eq!(keys(&c.get("", Some(GetOptions::new().with_all_keys().with_revision(7))).await?), ["j", "k"]);
    assert_eq!(hrev(c.put("k", "v8", None).await?.header()), 8);
    Ok(())
}

/// Scenario: an empty key is InvalidArgument "key is not provided" on Put, Range (also with a range_end),
/// DeleteRange, a Txn compare and an op inside a Txn.
#[tokio::test]
async fn empty_key_is_invalid_argument() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put, range, range with range_end, delete");
    assert_grpc_err(c.put("", "v", None).await, "InvalidArgument", EMPTY_KEY);
    assert_grpc_err(c.get("", None).await, "InvalidArgument", EMPTY_KEY);
    assert_grpc_err(c.get("", Some(GetOptions::new().with_range("z"))).await, "InvalidArgument", EMPTY_KEY);
    assert_grpc_err(c.delete("", None).await, "InvalidArgument", EMPTY_KEY);
    step!("txn compare and txn ops");
    assert_grpc_err(
        c.txn(Txn::new().when([Compare::version("", CompareOp::Equal, 0)])).await,
        "InvalidArgument",
        EMPTY_KEY,
    );
    assert_grpc_err(c.txn(Txn::new().and_then([TxnOp::put("", "v", None)])).await, "InvalidArgument", EMPTY_KEY);
    assert_grpc_err(c.txn(Txn::new().or_else([TxnOp::get("", None)])).await, "InvalidArgument", EMPTY_KEY);
    assert_grpc_err(c.txn(Txn::new().and_then([TxnOp::delete("", None)])).await, "InvalidArgument", EMPTY_KEY);
    assert_eq!(current_rev(&mut c).await?, 1);
    Ok(())
}

/// Scenario: with `--max-request-bytes 1024`, a put (or txn) carrying a 2 KiB value is InvalidArgument
/// "request is too large"; nothing is written and the member keeps serving normal requests.
#[tokio::test]
async fn request_too_large_is_refused_and_server_keeps_working() -> Result<()> {
    let f = Fixture::start(&["--max-request-bytes", "1024"]).await;
    let mut c = f.client.clone();
    let big = vec![b'x'; 2048];
    step!("put a 2 KiB value");
    assert_grpc_err(c.put("big", big.clone(), None).await, "InvalidArgument", "etcdserver: request is too large");
    step!("txn with a 2 KiB value");
    assert_grpc_err(
        c.txn(Txn::new().and_then([TxnOp::put("big", big, None)])).await,
        "InvalidArgument",
        "etcdserver: request is too large",
    );
    step!("the server still works");
    assert_eq!(hrev(c.put("small", vec![b'y'; 512], None).await?.header()), 2);
    assert_eq!(get_one(&mut c, "small").await?.unwrap().value().len(), 512);
    assert!(get_one(&mut c, "big").await?.is_none());
    Ok(())
}

/// Scenario: every KV response carries a header with the same non-zero cluster_id and member_id, a non-zero
/// raft_term, and the revision: the write's revision for writes, the current one for reads, compact and
/// failed-compare txns; Status and MemberList agree on the ids.
#[tokio::test]
async fn response_headers_carry_ids_term_and_revision() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    let mut headers: Vec<(&str, ResponseHeader, i64)> = Vec::new();
    step!("one of each request");
    headers.push(("range", c.get("k", None).await?.header().unwrap().clone(), 1));
    headers.push(("put", c.put("k", "v", None).await?.header().unwrap().clone(), 2));
    headers.push(("put2", c.put("j", "v", None).await?.header().unwrap().clone(), 3));
    headers.push((
        "range-old",
        c.get("k", Some(GetOptions::new().with_revision(2))).await?.header().unwrap().clone(),
        3,
    ));
    headers.push(("delete", c.delete("j", None).await?.header().unwrap().clone(), 4));
    headers.push(("delete-none", c.delete("j", None).await?.header().unwrap().clone(), 4));
    headers.push(("txn", c.txn(Txn::new().and_then([TxnOp::put("t", "1", None)])).await?.header().unwrap().clone(), 5));
    let t = c.txn(Txn::new().when([Compare::version("t", CompareOp::Equal, 9)])).await?;
    headers.push(("txn-failed", t.header().unwrap().clone(), 5));
    headers.push(("compact", c.compact(2, None).await?.header().unwrap().clone(), 5));
    let status = c.status().await?;
    let members = c.member_list().await?;
    let (cid, mid) = (headers[0].1.cluster_id(), headers[0].1.member_id());
    step!("cluster_id={cid:x} member_id={mid:x}");
    assert_ne!(cid, 0, "cluster_id");
    assert_ne!(mid, 0, "member_id");
    for (name, h, want_rev) in &headers {
        assert_eq!((h.cluster_id(), h.member_id()), (cid, mid), "{name}: ids");
        assert!(h.raft_term() > 0, "{name}: raft_term is 0");
        assert_eq!(h.revision(), *want_rev, "{name}: revision");
    }
    step!("Status and MemberList headers and ids agree");
    let sh = status.header().unwrap();
    assert_eq!((sh.cluster_id(), sh.member_id(), sh.revision()), (cid, mid, 5));
    assert_eq!(status.raft_term(), headers.last().unwrap().1.raft_term());
    let mh = members.header().unwrap();
    assert_eq!((mh.cluster_id(), mh.member_id()), (cid, mid));
    assert_eq!(members.members()[0].id(), mid);
    Ok(())
}

/// Parses "3.5.17" (or "3.5.17-alpha") into (major, minor, patch).
fn semver(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u64>());
    let t = (it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?);
    it.next().is_none().then_some(t)
}

/// Scenario: Status reports a semver version >= 3.5.13 (kube-apiserver gates watch progress requests on it),
/// this member as leader, non-zero raft indexes, term and db size; MemberList reports exactly this member with
/// its name, peer URL and client URL, not a learner.
#[tokio::test]
async fn status_and_member_list() -> Result<()> {
    let mut f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    c.put("k", "v", None).await?;
    step!("Status");
    let st = c.status().await?;
    let mid = st.header().unwrap().member_id();
    step!(
        "version {:?}, leader {:x}, raft index {}, applied {}",
        st.version(),
        st.leader(),
        st.raft_index(),
        st.raft_applied_index()
    );
    let v = semver(st.version()).unwrap_or_else(|| panic!("version {:?} is not semver", st.version()));
    assert!(v >= (3, 5, 13), "version {:?} must be >= 3.5.13", st.version());
    assert_eq!(st.leader(), mid, "single member is its own leader");
    assert!(st.raft_index() > 0 && st.raft_applied_index() > 0 && st.raft_term() > 0);
    assert!(st.raft_applied_index() <= st.raft_index());
    assert!(st.db_size() > 0, "db_size");
    assert!(!st.is_learner());
    assert!(st.errors().is_empty(), "errors: {:?}", st.errors());
    step!("MemberList");
    let ml = c.member_list().await?;
    assert_eq!(ml.members().len(), 1);
    let m = &ml.members()[0];
    let me = f.raftcd().member.clone();
    assert_eq!(
        (m.id(), m.name(), m.peer_urls().to_vec(), m.client_urls().to_vec(), m.is_learner()),
        (mid, me.name.as_str(), vec![me.peer_url()], vec![me.client_url()], false)
    );
    Ok(())
}

/// Scenario: after a clean SIGTERM shutdown (exit code 0) and a restart on the same data dir, every key, its
/// history and revisions, the compaction point, the cluster and member ids and the revision counter survive.
#[tokio::test]
async fn data_survives_clean_sigterm_restart() -> Result<()> {
    let mut f = Fixture::start(&[]).await;
    if f.raftcd.is_none() {
        eprintln!("skipped: needs raftcd");
        return Ok(());
    }
    let mut c = f.client.clone();
    step!("write history: 20 keys, overwrites, a delete, a txn, compaction at 5");
    for i in 0..20 {
        c.put(format!("d/{i:02}"), format!("v{i}"), None).await?;
    }
    c.put("d/00", "again", None).await?;
    c.delete("d/01", None).await?;
    c.txn(Txn::new().and_then([TxnOp::put("d/02", "txn", None), TxnOp::put("t", "x", None)])).await?;
    c.compact(5, None).await?;
    let before = c.get("", Some(GetOptions::new().with_all_keys())).await?;
    let before_old = c.get("", Some(GetOptions::new().with_all_keys().with_revision(10))).await?;
    let rev = hrev(before.header());
    let ids = (before.header().unwrap().cluster_id(), before.header().unwrap().member_id());
    assert_eq!(rev, 24);
    let dump = |r: &GetResponse| {
        r.kvs().iter().map(|kv| (s(kv.key()), s(kv.value()), revs(kv), kv.lease())).collect::<Vec<_>>()
    };

    step!("SIGTERM: clean exit");
    drop(c);
    let code = f.raftcd().terminate();
    assert_eq!(code, Some(0), "raftcd should exit 0 on SIGTERM; log:\n{}", f.raftcd().log());
    step!("restart on the same data dir");
    f.raftcd().restart();
    let mut c = connect(&f.raftcd().endpoint()).await;

    step!("same keys, values, revisions, versions; same history; same ids; compaction kept");
    let after = c.get("", Some(GetOptions::new().with_all_keys())).await?;
    assert_eq!(dump(&after), dump(&before));
    assert_eq!(hrev(after.header()), rev);
    assert_eq!((after.header().unwrap().cluster_id(), after.header().unwrap().member_id()), ids);
    let after_old = c.get("", Some(GetOptions::new().with_all_keys().with_revision(10))).await?;
    assert_eq!(dump(&after_old), dump(&before_old));
    assert_grpc_err(c.get("d/00", Some(GetOptions::new().with_revision(4))).await, "OutOfRange", COMPACTED);
    step!("the revision counter continues");
    assert_eq!(hrev(c.put("d/00", "post", None).await?.header()), rev + 1);
    assert_eq!(get_one(&mut c, "d/00").await?.unwrap().version(), 3);
    Ok(())
}

/// Scenario: the requests kube-apiserver sends, as described in ETCD-API.md: create (Txn MOD==0 -> Put), update
/// (Txn MOD==rev -> Put else Range), delete (Txn MOD==rev -> Delete else Range), a paginated list at a fixed
/// revision with continue key = last key + "\x00", count_only, keys_only, and the compaction protocol (Txn
/// VERSION(compact_rev_key)==v -> Put else Range, then Compact).
#[tokio::test]
async fn kube_apiserver_request_patterns() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    let create = |k: &str, v: &str| {
        Txn::new().when([Compare::mod_revision(k, CompareOp::Equal, 0)]).and_then([TxnOp::put(k, v, None)])
    };
    let update = |k: &str, v: &str, rev: i64| {
        Txn::new()
            .when([Compare::mod_revision(k, CompareOp::Equal, rev)])
            .and_then([TxnOp::put(k, v, None)])
            .or_else([TxnOp::get(k, None)])
    };
    let delete = |k: &str, rev: i64| {
        Txn::new()
            .when([Compare::mod_revision(k, CompareOp::Equal, rev)])
            .and_then([TxnOp::delete(k, Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(k, None)])
    };
    let pods = "/registry/pods/default/";

    step!("create 10 pods");
    for i in 0..10 {
        let t = c.txn(create(&format!("{pods}p{i}"), &format!("spec{i}"))).await?;
        assert!(t.succeeded());
        assert_eq!(hrev(t.header()), 2 + i);
    }
    step!("create of an existing key fails, no else branch, no revision");
    let t = c.txn(create(&format!("{pods}p0"), "dup")).await?;
    assert!(!t.succeeded() && t.op_responses().is_empty());
    assert_eq!(hrev(t.header()), 11);

    step!("update with the right mod revision");
    let k0 = format!("{pods}p0");
    let t = c.txn(update(&k0, "spec0-v2", 2)).await?;
    assert!(t.succeeded());
    let new_rev = hrev(t.header());
    assert_eq!(new_rev, 12);
    step!("update with a stale mod revision: fails and returns the current object");
    let t = c.txn(update(&k0, "spec0-v3", 2)).await?;
    assert!(!t.succeeded());
    let cur = txn_get(&t.op_responses()[0]).kvs()[0].clone();
    assert_eq!((s(cur.value()), cur.mod_revision(), cur.version()), ("spec0-v2".into(), new_rev, 2));

    step!("Get: Range{{key, limit=1}}");
    let g = c.get(k0.clone(), Some(GetOptions::new().with_limit(1))).await?;
    assert_eq!((g.kvs().len(), g.more(), s(g.kvs()[0].value())), (1, false, "spec0-v2".into()));

    step!("paginated list at a revision, limit 3, continue key = last key + \\x00");
    let list_rev = new_rev;
    let end = "/registry/pods/default0"; // prefix end of ".../default/"
    let mut start = pods.to_string().into_bytes();
    let mut seen = Vec::new();
    let mut pages = 0;
    // Writes after list_rev must not show up in the pages.
    c.txn(create(&format!("{pods}p5a"), "late")).await?;
    assert!(c.txn(delete(&format!("{pods}p9"), 11)).await?.succeeded());
    loop {
        let r =
            c.get(start.clone(), Some(GetOptions::new().with_range(end).with_limit(3).with_revision(list_rev))).await?;
        pages += 1;
        let remaining = r.count() - r.kvs().len() as i64;
        seen.extend(keys(&r));
        step!("page {pages}: {:?} more={} remaining={remaining}", keys(&r), r.more());
        assert_eq!(r.count() as usize + seen.len() - r.kvs().len(), 10, "count is the rest of the range");
        if !r.more() {
            assert_eq!(remaining, 0);
            break;
        }
        start = r.kvs().last().unwrap().key().to_vec();
        start.push(0);
    }
    let want: Vec<String> = (0..10).map(|i| format!("{pods}p{i}")).collect();
    assert_eq!((seen, pages), (want, 4));

    step!("count_only and keys_only on the prefix (now 10: p5a added, p9 deleted)");
    let r = c.get(pods, Some(GetOptions::new().with_prefix().with_count_only())).await?;
    assert_eq!((r.count(), r.kvs().len()), (10, 0));
    let r = c.get(pods, Some(GetOptions::new().with_prefix().with_keys_only())).await?;
    assert_eq!(r.kvs().len(), 10);
    assert!(keys(&r).contains(&format!("{pods}p5a")) && !keys(&r).contains(&format!("{pods}p9")));

    step!("delete with a stale revision fails and returns the object; with the right one succeeds");
    let k1 = format!("{pods}p1");
    let t = c.txn(delete(&k1, 99)).await?;
    assert!(!t.succeeded());
    assert_eq!(txn_get(&t.op_responses()[0]).kvs()[0].mod_revision(), 3);
    let t = c.txn(delete(&k1, 3)).await?;
    assert!(t.succeeded());
    match &t.op_responses()[0] {
        TxnOpResponse::Delete(d) => assert_eq!((d.deleted(), s(d.prev_kvs()[0].value())), (1, "spec1".into())),
        other => panic!("expected a delete response: {other:?}"),
    }

    step!("compaction protocol: VERSION(compact_rev_key) CAS, then Compact");
    let compact_txn = |version: i64, rev: i64| {
        Txn::new()
            .when([Compare::version("compact_rev_key", CompareOp::Equal, version)])
            .and_then([TxnOp::put("compact_rev_key", rev.to_string(), None)])
            .or_else([TxnOp::get("compact_rev_key", None)])
    };
    let rev_now = current_rev(&mut c).await?;
    let t = c.txn(compact_txn(0, rev_now)).await?;
    assert!(t.succeeded(), "first compaction round wins the CAS");
    c.compact(rev_now, None).await?;
    step!("a second apiserver with a stale version loses and learns the current version");
    let t = c.txn(compact_txn(0, rev_now)).await?;
    assert!(!t.succeeded());
    let kv = txn_get(&t.op_responses()[0]).kvs()[0].clone();
    assert_eq!((kv.version(), s(kv.value())), (1, rev_now.to_string()));
    step!("next round with version 1");
    let rev2 = current_rev(&mut c).await?;
    let t = c.txn(compact_txn(1, rev2)).await?;
    assert!(t.succeeded());
    c.compact(rev2, None).await?;
    assert_eq!(get_one(&mut c, "compact_rev_key").await?.unwrap().version(), 2);
    assert_grpc_err(
        c.get(pods, Some(GetOptions::new().with_prefix().with_revision(list_rev))).await,
        "OutOfRange",
        COMPACTED,
    );
    step!("health check: Range on /registry/health answers");
    let r = c.get("/registry/health", None).await?;
    assert!(r.kvs().is_empty());
    Ok(())
}
