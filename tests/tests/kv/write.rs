//! Put and DeleteRange: prev_kv, ignore_value/ignore_lease, leases and deleted counts.

use super::*;

/// Scenario: Put with prev_kv returns the previous key-value (none for a new key); without prev_kv nothing is
/// returned; the header carries the put's revision.
#[tokio::test]
async fn put_with_prev_kv() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put a new key with prev_kv: no prev_kv");
    let r = c.put("k", "v1", Some(PutOptions::new().with_prev_key())).await?;
    assert!(r.prev_key().is_none());
    assert_eq!(hrev(r.header()), 2);
    step!("overwrite with prev_kv: the old key-value");
    let r = c.put("k", "v2", Some(PutOptions::new().with_prev_key())).await?;
    let prev = r.prev_key().expect("prev_kv");
    assert_eq!((s(prev.key()), s(prev.value()), revs(prev)), ("k".into(), "v1".into(), (2, 2, 1)));
    assert_eq!(hrev(r.header()), 3);
    step!("overwrite without prev_kv: nothing");
    let r = c.put("k", "v3", None).await?;
    assert!(r.prev_key().is_none());
    step!("an empty value is a value");
    let r = c.put("k", "", Some(PutOptions::new().with_prev_key())).await?;
    assert_eq!(s(r.prev_key().unwrap().value()), "v3");
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), revs(&kv)), ("".into(), (2, 5, 4)));
    Ok(())
}

/// Scenario: ignore_value keeps the stored value, ignore_lease keeps the attached lease, a plain put detaches
/// the lease; both fail with "key not found" on a missing key, and combined with a value / lease they fail with
/// "value is provided" / "lease is provided". Failed requests add no revision.
#[tokio::test]
async fn put_ignore_value_and_ignore_lease() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("grant a lease and put k with it");
    let lease = c.lease_grant(600, None).await?.id();
    c.put("k", "v1", Some(PutOptions::new().with_lease(lease))).await?;
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), kv.lease()), ("v1".into(), lease));
    let base = current_rev(&mut c).await?;

    step!("ignore_lease: new value, same lease");
    c.put("k", "v2", Some(PutOptions::new().with_ignore_lease())).await?;
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), kv.lease(), kv.version()), ("v2".into(), lease, 2));

    step!("ignore_value + ignore_lease: a pure touch, value and lease kept, version and mod_revision bumped");
    let r = c.put("k", "", Some(PutOptions::new().with_ignore_value().with_ignore_lease().with_prev_key())).await?;
    assert_eq!(s(r.prev_key().unwrap().value()), "v2");
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), kv.lease(), kv.version(), kv.mod_revision()), ("v2".into(), lease, 3, base + 2));

    step!("ignore_value alone: value kept, lease detached (lease 0 was sent)");
    c.put("k", "", Some(PutOptions::new().with_ignore_value())).await?;
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), kv.lease(), kv.version()), ("v2".into(), 0, 4));

    step!("errors, none of which adds a revision");
    let before = current_rev(&mut c).await?;
    assert_grpc_err(
        c.put("missing", "", Some(PutOptions::new().with_ignore_value())).await,
        "InvalidArgument",
        "etcdserver: key not found",
    );
    assert_grpc_err(
        c.put("missing", "v", Some(PutOptions::new().with_ignore_lease())).await,
        "InvalidArgument",
        "etcdserver: key not found",
    );
    assert_grpc_err(
        c.put("k", "v", Some(PutOptions::new().with_ignore_value())).await,
        "InvalidArgument",
        "etcdserver: value is provided",
    );
    assert_grpc_err(
        c.put("k", "v", Some(PutOptions::new().with_ignore_lease().with_lease(lease))).await,
        "InvalidArgument",
        "etcdserver: lease is provided",
    );
    step!("the same errors inside a txn");
    assert_grpc_err(
        c.txn(Txn::new().and_then([TxnOp::put("missing", "", Some(PutOptions::new().with_ignore_value()))])).await,
        "InvalidArgument",
        "etcdserver: key not found",
    );
    assert_grpc_err(
        c.txn(Txn::new().and_then([TxnOp::put("k", "v", Some(PutOptions::new().with_ignore_value()))])).await,
        "InvalidArgument",
        "etcdserver: value is provided",
    );
    assert_eq!(current_rev(&mut c).await?, before);
    Ok(())
}

/// Scenario: a put that names a lease that does not exist fails with NotFound "requested lease not found",
/// alone or inside a txn, and changes nothing.
#[tokio::test]
async fn put_with_unknown_lease_is_not_found() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put with lease 0x1234 that was never granted");
    assert_grpc_err(
        c.put("k", "v", Some(PutOptions::new().with_lease(0x1234))).await,
        "NotFound",
        "etcdserver: requested lease not found",
    );
    step!("the same inside a txn, next to a valid put");
    assert_grpc_err(
        c.txn(
            Txn::new().and_then([
                TxnOp::put("a", "1", None),
                TxnOp::put("k", "v", Some(PutOptions::new().with_lease(0x1234))),
            ]),
        )
        .await,
        "NotFound",
        "etcdserver: requested lease not found",
    );
    step!("nothing was written");
    assert_eq!(current_rev(&mut c).await?, 1);
    assert!(get_one(&mut c, "a").await?.is_none());
    Ok(())
}

/// Scenario: DeleteRange of a single key, an interval, a prefix and from-key; `deleted` counts the keys and
/// prev_kvs (when asked for) returns them in key order; every delete that removes something is one revision.
#[tokio::test]
async fn delete_range_single_interval_prefix_with_prev_kv() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put a, b, c, d, p/1, p/2, p/3, z");
    for k in ["a", "b", "c", "d", "p/1", "p/2", "p/3", "z"] {
        c.put(k, format!("val-{k}"), None).await?;
    }
    step!("single key with prev_kv");
    let d = c.delete("a", Some(DeleteOptions::new().with_prev_key())).await?;
    assert_eq!((d.deleted(), hrev(d.header()), d.prev_kvs().len()), (1, 10, 1));
    let prev = &d.prev_kvs()[0];
    assert_eq!((s(prev.key()), s(prev.value()), revs(prev)), ("a".into(), "val-a".into(), (2, 2, 1)));

    step!("interval [b, d) without prev_kv: count only");
    let d = c.delete("b", Some(DeleteOptions::new().with_range("d"))).await?;
    assert_eq!((d.deleted(), d.prev_kvs().len(), hrev(d.header())), (2, 0, 11));
    assert_eq!(keys(&c.get("", Some(GetOptions::new().with_all_keys())).await?), ["d", "p/1", "p/2", "p/3", "z"]);

    step!("prefix p/ with prev_kv");
    let d = c.delete("p/", Some(DeleteOptions::new().with_prefix().with_prev_key())).await?;
    assert_eq!(d.deleted(), 3);
    let got: Vec<_> = d.prev_kvs().iter().map(|kv| (s(kv.key()), s(kv.value()))).collect();
    assert_eq!(
        got,
        vec![("p/1".into(), "val-p/1".into()), ("p/2".into(), "val-p/2".into()), ("p/3".into(), "val-p/3".into())]
    );
    assert_eq!(hrev(d.header()), 12);

    step!("from key \"e\": only z");
    let d = c.delete("e", Some(DeleteOptions::new().with_from_key().with_prev_key())).await?;
    assert_eq!((d.deleted(), s(d.prev_kvs()[0].key())), (1, "z".into()));
    step!("the deletes are in history: d's neighbours are readable at revision 9");
    let r = c.get("", Some(GetOptions::new().with_all_keys().with_revision(9))).await?;
    assert_eq!(r.count(), 8);
    assert_eq!(keys(&c.get("", Some(GetOptions::new().with_all_keys())).await?), ["d"]);
    Ok(())
}
