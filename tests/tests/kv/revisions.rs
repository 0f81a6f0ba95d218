//! Revisions, versions and the response header every write request moves.

use super::*;

/// Scenario: a fresh member is at revision 1; every write request (put, delete of an existing key, a whole txn)
/// adds exactly one revision; reads, read-only txns, txns that end up writing nothing and deletes that match
/// nothing add none.
#[tokio::test]
async fn revision_starts_at_one_and_counts_write_requests() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();

    step!("a fresh store is at revision 1");
    assert_eq!(current_rev(&mut c).await?, 1);

    step!("each put adds one revision, even one that does not change the value");
    assert_eq!(hrev(c.put("k", "v", None).await?.header()), 2);
    assert_eq!(hrev(c.put("k", "v", None).await?.header()), 3);

    step!("a txn with three writes adds exactly one revision, shared by all its writes");
    let t = c
        .txn(Txn::new().and_then([TxnOp::put("a", "1", None), TxnOp::put("b", "2", None), TxnOp::delete("k", None)]))
        .await?;
    assert!(t.succeeded());
    assert_eq!(hrev(t.header()), 4);
    assert_eq!(get_one(&mut c, "a").await?.unwrap().mod_revision(), 4);
    assert_eq!(get_one(&mut c, "b").await?.unwrap().mod_revision(), 4);
    assert!(get_one(&mut c, "k").await?.is_none());

    step!("a read-only txn adds none and reports the current revision");
    let t = c.txn(Txn::new().and_then([TxnOp::get("a", None), TxnOp::get("b", None)])).await?;
    assert_eq!(hrev(t.header()), 4);

    step!("a txn whose compare fails and whose else-branch is empty adds none");
    let t = c
        .txn(Txn::new().when([Compare::value("a", CompareOp::Equal, "nope")]).and_then([TxnOp::put("a", "x", None)]))
        .await?;
    assert!(!t.succeeded());
    assert!(t.op_responses().is_empty());
    assert_eq!(hrev(t.header()), 4);

    step!("deletes that match nothing add none");
    let d = c.delete("missing", None).await?;
    assert_eq!((d.deleted(), hrev(d.header())), (0, 4));
    let d = c.delete("zzz/", Some(DeleteOptions::new().with_prefix())).await?;
    assert_eq!((d.deleted(), hrev(d.header())), (0, 4));

    step!("a txn whose only write is a delete that matches nothing adds none");
    let t = c.txn(Txn::new().and_then([TxnOp::delete("missing", None)])).await?;
    assert_eq!(hrev(t.header()), 4);

    step!("deleting an existing key adds one");
    let d = c.delete("a", None).await?;
    assert_eq!((d.deleted(), hrev(d.header())), (1, 5));
    assert_eq!(current_rev(&mut c).await?, 5);
    Ok(())
}

/// Scenario: create_revision, mod_revision and version through put, put, delete, put: version counts
/// modifications since creation, a delete ends the key's generation and the next put creates it anew.
#[tokio::test]
async fn create_mod_revision_and_version_through_put_put_delete_put() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();

    step!("first put creates the key at revision 2");
    c.put("k", "v1", None).await?;
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), revs(&kv), kv.lease()), ("v1".into(), (2, 2, 1), 0));

    step!("second put keeps create_revision, bumps mod_revision and version");
    c.put("k", "v2", None).await?;
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), revs(&kv)), ("v2".into(), (2, 3, 2)));

    step!("delete at revision 4 removes it; history is still readable");
    let d = c.delete("k", Some(DeleteOptions::new().with_prev_key())).await?;
    assert_eq!((d.deleted(), hrev(d.header())), (1, 4));
    assert_eq!(revs(&d.prev_kvs()[0]), (2, 3, 2));
    assert!(get_one(&mut c, "k").await?.is_none());
    let old = c.get("k", Some(GetOptions::new().with_revision(3))).await?;
    assert_eq!(revs(&old.kvs()[0]), (2, 3, 2));

    step!("put after delete starts a new generation: create = mod = 5, version 1, no prev_kv");
    let p = c.put("k", "v3", Some(PutOptions::new().with_prev_key())).await?;
    assert!(p.prev_key().is_none(), "prev_kv of a re-created key must be empty");
    let kv = get_one(&mut c, "k").await?.unwrap();
    assert_eq!((s(kv.value()), revs(&kv)), ("v3".into(), (5, 5, 1)));
    Ok(())
}
