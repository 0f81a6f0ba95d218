//! Txn: compares, branches, nesting, read-your-writes and the per-branch limits.

use super::*;

/// Scenario: Txn compares on VALUE, VERSION, CREATE, MOD and LEASE with =, !=, >, <, on present and missing
/// keys (a missing key compares as zeroes, except that a VALUE compare on a missing key is always false); all
/// compares of a txn must hold.
#[tokio::test]
async fn txn_compare_value_version_create_mod_lease() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put v=\"b\" @2 and l with a lease @3");
    c.put("v", "b", None).await?;
    let lease = c.lease_grant(600, None).await?.id();
    c.put("l", "x", Some(PutOptions::new().with_lease(lease))).await?;
    let rev_before = current_rev(&mut c).await?;
    use CompareOp::{Equal as Eq, Greater as Gt, Less as Lt, NotEqual as Ne};
    let cases: Vec<(&str, Compare, bool)> = vec![
        ("value(v) = b", Compare::value("v", Eq, "b"), true),
        ("value(v) != b", Compare::value("v", Ne, "b"), false),
        ("value(v) > a", Compare::value("v", Gt, "a"), true),
        ("value(v) > b", Compare::value("v", Gt, "b"), false),
        ("value(v) < c", Compare::value("v", Lt, "c"), true),
        ("value(v) < ba", Compare::value("v", Lt, "ba"), true),
        ("value(missing) = \"\"", Compare::value("missing", Eq, ""), false),
        ("value(missing) != x", Compare::value("missing", Ne, "x"), false),
        ("version(v) = 1", Compare::version("v", Eq, 1), true),
        ("version(v) > 0", Compare::version("v", Gt, 0), true),
        ("version(v) < 1", Compare::version("v", Lt, 1), false),
        ("version(v) != 2", Compare::version("v", Ne, 2), true),
        ("version(missing) = 0", Compare::version("missing", Eq, 0), true),
        ("create(v) = 2", Compare::create_revision("v", Eq, 2), true),
        ("create(v) < 2", Compare::create_revision("v", Lt, 2), false),
        ("create(l) > 2", Compare::create_revision("l", Gt, 2), true),
        ("create(missing) = 0", Compare::create_revision("missing", Eq, 0), true),
        ("mod(v) = 2", Compare::mod_revision("v", Eq, 2), true),
        ("mod(v) != 2", Compare::mod_revision("v", Ne, 2), false),
        ("mod(l) = 3", Compare::mod_revision("l", Eq, 3), true),
        ("mod(missing) = 0", Compare::mod_revision("missing", Eq, 0), true),
        ("mod(missing) > 0", Compare::mod_revision("missing", Gt, 0), false),
        ("lease(l) = L", Compare::lease("l", Eq, lease), true),
        ("lease(l) = 0", Compare::lease("l", Eq, 0), false),
        ("lease(l) > 0", Compare::lease("l", Gt, 0), true),
        ("lease(v) = 0", Compare::lease("v", Eq, 0), true),
        ("lease(missing) = 0", Compare::lease("missing", Eq, 0), true),
    ];
    for (name, cmp, want) in cases {
        step!("{name} -> {want}");
        assert_eq!(holds(&mut c, cmp).await?, want, "{name}");
    }
    step!("several compares: all must hold");
    let t = c
        .txn(Txn::new().when([
            Compare::value("v", Eq, "b"),
            Compare::version("v", Eq, 1),
            Compare::mod_revision("l", Eq, 3),
        ]))
        .await?;
    assert!(t.succeeded());
    let t = c.txn(Txn::new().when([Compare::value("v", Eq, "b"), Compare::version("v", Eq, 2)])).await?;
    assert!(!t.succeeded());
    assert_eq!(current_rev(&mut c).await?, rev_before, "compare-only txns write nothing");
    Ok(())
}

/// Scenario: each kind of op (put, range, delete, nested txn) runs in the success branch when the compares
/// hold and in the failure branch when they do not, and the responses come back in op order with their kinds.
#[tokio::test]
async fn txn_success_and_failure_branches_with_every_op() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    c.put("k", "1", None).await?; // @2
    c.put("gone", "x", None).await?; // @3
    c.put("gone2", "x", None).await?; // @4
    let ops = |tag: &str, del: &str| {
        vec![
            TxnOp::put(format!("put-{tag}"), tag, Some(PutOptions::new().with_prev_key())),
            TxnOp::get("k", None),
            TxnOp::delete(del, Some(DeleteOptions::new().with_prev_key())),
            TxnOp::txn(Txn::new().and_then([TxnOp::get(format!("put-{tag}"), None)])),
        ]
    };
    let check = |t: &TxnResponse, tag: &str, del: &str, rev: i64| {
        let rs = t.op_responses();
        assert_eq!(rs.len(), 4);
        match &rs[0] {
            TxnOpResponse::Put(p) => assert!(p.prev_key().is_none()),
            other => panic!("op 0 should be a put response: {other:?}"),
        }
        let g = txn_get(&rs[1]);
        assert_eq!(s(g.kvs()[0].value()), "1");
        match &rs[2] {
            TxnOpResponse::Delete(d) => {
                assert_eq!((d.deleted(), s(d.prev_kvs()[0].key())), (1, del.to_string()));
            }
            other => panic!("op 2 should be a delete response: {other:?}"),
        }
        match &rs[3] {
            TxnOpResponse::Txn(n) => {
                assert!(n.succeeded());
                let inner = n.op_responses();
                let g = txn_get(&inner[0]);
                assert_eq!((s(g.kvs()[0].value()), g.kvs()[0].mod_revision()), (tag.to_string(), rev));
            }
            other => panic!("op 3 should be a txn response: {other:?}"),
        }
        assert_eq!(hrev(t.header()), rev);
    };
    step!("compare holds: success branch runs");
    let t = c
        .txn(
            Txn::new()
                .when([Compare::value("k", CompareOp::Equal, "1")])
                .and_then(ops("ok", "gone"))
                .or_else(ops("ko", "gone")),
        )
        .await?;
    assert!(t.succeeded());
    check(&t, "ok", "gone", 5);
    step!("compare fails: failure branch runs");
    let t = c
        .txn(
            Txn::new()
                .when([Compare::value("k", CompareOp::Equal, "2")])
                .and_then(ops("ok2", "gone2"))
                .or_else(ops("ko", "gone2")),
        )
        .await?;
    assert!(!t.succeeded());
    check(&t, "ko", "gone2", 6);
    assert!(get_one(&mut c, "put-ok2").await?.is_none());
    assert_eq!(keys(&c.get("", Some(GetOptions::new().with_all_keys())).await?), ["k", "put-ko", "put-ok"]);
    Ok(())
}

/// Scenario: a compare with range_end must hold for every key in the range; over an empty range it compares
/// against zero values (VALUE still fails).
#[tokio::test]
async fn txn_compare_over_a_range() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put p/1 @2, p/2 @3, p/3 @4, all with value \"same\"; q @5");
    for k in ["p/1", "p/2", "p/3", "q"] {
        c.put(k, "same", None).await?;
    }
    use CompareOp::{Equal as Eq, Greater as Gt, Less as Lt};
    let cases: Vec<(&str, Compare, bool)> = vec![
        ("version(p/*) > 0", Compare::version("p/", Gt, 0).with_prefix(), true),
        ("version(p/*) = 1", Compare::version("p/", Eq, 1).with_prefix(), true),
        ("value(p/*) = same", Compare::value("p/", Eq, "same").with_prefix(), true),
        ("mod(p/*) < 4", Compare::mod_revision("p/", Lt, 4).with_prefix(), false),
        ("mod(p/*) < 5", Compare::mod_revision("p/", Lt, 5).with_prefix(), true),
        ("mod([p/1, p/3)) < 4", Compare::mod_revision("p/1", Lt, 4).with_range("p/3"), true),
        ("create(p/2..) > 2 (from key)", Compare::create_revision("p/2", Gt, 2).with_range("\0"), true),
        ("create(all) > 2", Compare::create_revision("\0", Gt, 2).with_range("\0"), false),
        ("version(x/*) = 0 (empty range)", Compare::version("x/", Eq, 0).with_prefix(), true),
        ("value(x/*) = \"\" (empty range)", Compare::value("x/", Eq, "").with_prefix(), false),
    ];
    for (name, cmp, want) in cases {
        step!("{name} -> {want}");
        assert_eq!(holds(&mut c, cmp).await?, want, "{name}");
    }
    step!("a range compare guarding a write");
    c.put("p/2", "other", None).await?;
    let t = c
        .txn(Txn::new().when([Compare::value("p/", Eq, "same").with_prefix()]).and_then([TxnOp::put("w", "1", None)]))
        .await?;
    assert!(!t.succeeded());
    assert!(get_one(&mut c, "w").await?.is_none());
    Ok(())
}

/// Scenario: reads inside a txn see the txn's earlier writes (at the txn's revision); nested txns run inside
/// the same revision; compares, nested ones included, are evaluated against the store as it was BEFORE the txn
/// (etcd evaluates every compare of the request first).
#[tokio::test]
async fn txn_nested_and_reads_see_earlier_writes() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put c @2");
    c.put("c", "old", None).await?;
    step!("txn @3: put a, get a, nested txn (compare a = 1), get b, delete c, get c");
    let nested = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "1")])
        .and_then([TxnOp::put("b", "then", None)])
        .or_else([TxnOp::put("b", "else", None), TxnOp::get("a", None)]);
    let t = c
        .txn(Txn::new().when([Compare::version("a", CompareOp::Equal, 0)]).and_then([
            TxnOp::put("a", "1", None),
            TxnOp::get("a", None),
            TxnOp::txn(nested),
            TxnOp::get("b", None),
            TxnOp::delete("c", Some(DeleteOptions::new().with_prev_key())),
            TxnOp::get("c", None),
            TxnOp::get("", Some(GetOptions::new().with_all_keys().with_count_only())),
        ]))
        .await?;
    assert!(t.succeeded());
    assert_eq!(hrev(t.header()), 3);
    let rs = t.op_responses();
    step!("the get after the put sees a=1 at revision 3");
    let g = txn_get(&rs[1]);
    assert_eq!((s(g.kvs()[0].value()), revs(&g.kvs()[0])), ("1".into(), (3, 3, 1)));
    step!("the nested compare saw the store before the txn: a was missing, so its else branch ran");
    let n = match &rs[2] {
        TxnOpResponse::Txn(n) => n,
        other => panic!("expected a nested txn response: {other:?}"),
    };
    assert!(!n.succeeded());
    let inner = n.op_responses();
    assert_eq!(s(txn_get(&inner[1]).kvs()[0].value()), "1", "reads in a nested txn see the outer writes");
    step!("the get after the nested txn sees its write");
    let g = txn_get(&rs[3]);
    assert_eq!((s(g.kvs()[0].value()), g.kvs()[0].mod_revision()), ("else".into(), 3));
    step!("the get after the delete sees nothing; the count sees a and b only");
    assert!(txn_get(&rs[5]).kvs().is_empty());
    assert_eq!(txn_get(&rs[6]).count(), 2);
    step!("all of it is one revision");
    assert_eq!(current_rev(&mut c).await?, 3);
    let r = c.get("", Some(GetOptions::new().with_all_keys())).await?;
    assert_eq!(keys(&r), ["a", "b"]);
    assert!(r.kvs().iter().all(|kv| kv.mod_revision() == 3));
    Ok(())
}

/// Scenario: a txn branch may not write a key twice (put+put, put inside a deleted range, a put in a nested
/// txn of a key the outer branch writes): InvalidArgument "duplicate key given in txn request"; different
/// branches and overlapping deletes are fine. More than 128 ops in a branch or compares: "too many operations".
#[tokio::test]
async fn txn_duplicate_keys_and_too_many_ops() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    const DUP: &str = "etcdserver: duplicate key given in txn request";
    const TOO_MANY: &str = "etcdserver: too many operations in txn request";
    step!("put a twice in one branch");
    assert_grpc_err(
        c.txn(Txn::new().and_then([TxnOp::put("a", "1", None), TxnOp::put("a", "2", None)])).await,
        "InvalidArgument",
        DUP,
    );
    step!("put b inside a deleted range [a, c)");
    assert_grpc_err(
        c.txn(
            Txn::new()
                .and_then([TxnOp::delete("a", Some(DeleteOptions::new().with_range("c"))), TxnOp::put("b", "1", None)]),
        )
        .await,
        "InvalidArgument",
        DUP,
    );
    step!("put a in the failure branch twice");
    assert_grpc_err(
        c.txn(Txn::new().or_else([TxnOp::put("a", "1", None), TxnOp::put("a", "2", None)])).await,
        "InvalidArgument",
        DUP,
    );
    step!("put a and a nested txn that puts a");
    assert_grpc_err(
        c.txn(
            Txn::new()
                .and_then([TxnOp::put("a", "1", None), TxnOp::txn(Txn::new().and_then([TxnOp::put("a", "2", None)]))]),
        )
        .await,
        "InvalidArgument",
        DUP,
    );
    assert_eq!(current_rev(&mut c).await?, 1, "refused txns write nothing");

    step!("allowed: the same key in the two branches; two overlapping deletes; a get and a put of one key");
    c.txn(Txn::new().and_then([TxnOp::put("a", "1", None)]).or_else([TxnOp::put("a", "2", None)])).await?;
    c.txn(Txn::new().and_then([
        TxnOp::delete("a", Some(DeleteOptions::new().with_range("c"))),
        TxnOp::delete("b", Some(DeleteOptions::new().with_range("d"))),
    ]))
    .await?;
    c.txn(Txn::new().and_then([TxnOp::get("a", None), TxnOp::put("a", "3", None)])).await?;
    assert_eq!(current_rev(&mut c).await?, 4);

    step!("128 puts in one txn: accepted, one revision");
    let puts = |n: usize| (0..n).map(|i| TxnOp::put(format!("m/{i:03}"), "v", None)).collect::<Vec<_>>();
    let t = c.txn(Txn::new().and_then(puts(128))).await?;
    assert_eq!(hrev(t.header()), 5);
    assert_eq!(c.get("m/", Some(GetOptions::new().with_prefix().with_count_only())).await?.count(), 128);
    step!("129 ops in success, in failure, or 129 compares: too many operations");
    assert_grpc_err(c.txn(Txn::new().and_then(puts(129))).await, "InvalidArgument", TOO_MANY);
    assert_grpc_err(c.txn(Txn::new().or_else(puts(129))).await, "InvalidArgument", TOO_MANY);
    let cmps: Vec<Compare> = (0..129).map(|i| Compare::version(format!("m/{i:03}"), CompareOp::Greater, 0)).collect();
    assert_grpc_err(c.txn(Txn::new().when(cmps)).await, "InvalidArgument", TOO_MANY);
    let gets: Vec<TxnOp> = (0..129).map(|i| TxnOp::get(format!("m/{i:03}"), None)).collect();
    assert_grpc_err(c.txn(Txn::new().and_then(gets)).await, "InvalidArgument", TOO_MANY);
    assert_eq!(current_rev(&mut c).await?, 5);
    Ok(())
}

/// Scenario: `--max-txn-ops 4` lowers the per-branch limit: 4 ops pass, 5 are refused.
#[tokio::test]
async fn max_txn_ops_flag_is_honoured() -> Result<()> {
    let f = Fixture::start(&["--max-txn-ops", "4"]).await;
    let mut c = f.client.clone();
    let puts = |n: usize| (0..n).map(|i| TxnOp::put(format!("k{i}"), "v", None)).collect::<Vec<_>>();
    step!("4 ops: fine");
    c.txn(Txn::new().and_then(puts(4))).await?;
    step!("5 ops: too many operations");
    assert_grpc_err(
        c.txn(Txn::new().and_then(puts(5))).await,
        "InvalidArgument",
        "etcdserver: too many operations in txn request",
    );
    let cmps: Vec<Compare> = (0..5).map(|i| Compare::version(format!("k{i}"), CompareOp::Greater, 0)).collect();
    assert_grpc_err(
        c.txn(Txn::new().when(cmps)).await,
        "InvalidArgument",
        "etcdserver: too many operations in txn request",
    );
    assert_eq!(current_rev(&mut c).await?, 2);
    Ok(())
}
