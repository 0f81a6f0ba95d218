//! Range: shapes, limit/count, past revisions, sorting, projections and revision filters.

use super::*;

/// Scenario: the range shapes of etcd: single key, prefix, [key, range_end), from-key (range_end "\0"),
/// everything (key = range_end = "\0"), a prefix of 0xff bytes (range_end "\0"), a missing key, and a
/// range_end below the key.
#[tokio::test]
async fn range_single_prefix_interval_from_key_and_all() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    let all: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        b"ab".to_vec(),
        b"abc".to_vec(),
        b"b".to_vec(),
        b"c".to_vec(),
        vec![0xff],
        vec![0xff, 0xff],
    ];
    step!("put {} keys, including 0xff keys", all.len());
    for k in &all {
        c.put(k.clone(), "v", None).await?;
    }
    let rng = |r: &GetResponse| r.kvs().iter().map(|kv| kv.key().to_vec()).collect::<Vec<_>>();

    step!("single key");
    let r = c.get("ab", None).await?;
    assert_eq!((keys(&r), r.count(), r.more()), (vec!["ab".to_string()], 1, false));

    step!("prefix \"a\"");
    let r = c.get("a", Some(GetOptions::new().with_prefix())).await?;
    assert_eq!((keys(&r), r.count()), (vec!["a".into(), "ab".into(), "abc".into()], 3));

    step!("interval [ab, b)");
    let r = c.get("ab", Some(GetOptions::new().with_range("b"))).await?;
    assert_eq!(keys(&r), vec!["ab", "abc"]);

    step!("from key \"b\" (range_end \"\\0\")");
    let r = c.get("b", Some(GetOptions::new().with_from_key())).await?;
    assert_eq!(rng(&r), all[3..].to_vec());
    assert_eq!(r.count(), 4);

    step!("from key \"\\0\": every key");
    let r = c.get("\0", Some(GetOptions::new().with_from_key())).await?;
    assert_eq!(rng(&r), all);

    step!("all keys (key = range_end = \"\\0\")");
    let r = c.get("", Some(GetOptions::new().with_all_keys())).await?;
    assert_eq!((rng(&r), r.count()), (all.clone(), 7));

    step!("prefix of 0xff: range_end becomes \"\\0\"");
    let r = c.get(vec![0xff], Some(GetOptions::new().with_prefix())).await?;
    assert_eq!(rng(&r), all[5..].to_vec());

    step!("a missing key: no kvs, count 0, header at the current revision");
    let r = c.get("zz", None).await?;
    assert_eq!((r.kvs().len(), r.count(), r.more(), hrev(r.header())), (0, 0, false, 8));

    step!("range_end below the key: nothing");
    let r = c.get("c", Some(GetOptions::new().with_range("a"))).await?;
    assert_eq!((r.kvs().len(), r.count()), (0, 0));
    Ok(())
}

/// Scenario: `limit` truncates `kvs` and sets `more`, while `count` is always the number of keys in the range.
#[tokio::test]
async fn range_limit_more_and_count() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put p/1..p/5 and keys around the prefix");
    for k in ["o", "p/1", "p/2", "p/3", "p/4", "p/5", "q"] {
        c.put(k, "v", None).await?;
    }
    let prefix = || GetOptions::new().with_prefix();
    for (limit, n, more) in [(1, 1, true), (2, 2, true), (4, 4, true), (5, 5, false), (6, 5, false), (0, 5, false)] {
        step!("limit {limit}: {n} kvs, more={more}, count 5");
        let r = c.get("p/", Some(prefix().with_limit(limit))).await?;
        assert_eq!((r.kvs().len(), r.more(), r.count()), (n, more, 5), "limit {limit}");
        assert_eq!(keys(&r), ["p/1", "p/2", "p/3", "p/4", "p/5"][..n].to_vec());
    }
    step!("limit with keys_only and with count_only");
    let r = c.get("p/", Some(prefix().with_limit(2).with_keys_only())).await?;
    assert_eq!((keys(&r), r.more(), r.count()), (vec!["p/1".into(), "p/2".into()], true, 5));
    let r = c.get("p/", Some(prefix().with_limit(2).with_count_only())).await?;
    assert_eq!((r.kvs().len(), r.count()), (0, 5));
    step!("a kube-apiserver style Get: single key, limit 1");
    let r = c.get("p/3", Some(GetOptions::new().with_limit(1))).await?;
    assert_eq!((keys(&r), r.more(), r.count()), (vec!["p/3".into()], false, 1));
    Ok(())
}

/// Scenario: reads at past revisions see the store as it was; the header still reports the current revision;
/// a future revision is OutOfRange "future revision"; after a compaction, revisions below it are OutOfRange
/// "compacted" while the compaction revision itself stays readable; revision <= 0 means latest.
#[tokio::test]
async fn range_at_past_future_and_compacted_revisions() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("history: put k v1 @2, put k v2 @3, put j @4, delete k @5");
    c.put("k", "v1", None).await?;
    c.put("k", "v2", None).await?;
    c.put("j", "x", None).await?;
    c.delete("k", None).await?;
    let at = |rev: i64| Some(GetOptions::new().with_revision(rev));

    step!("past revisions");
    let r = c.get("k", at(2)).await?;
    assert_eq!((s(r.kvs()[0].value()), revs(&r.kvs()[0]), hrev(r.header())), ("v1".into(), (2, 2, 1), 5));
    let r = c.get("k", at(3)).await?;
    assert_eq!((s(r.kvs()[0].value()), revs(&r.kvs()[0])), ("v2".into(), (2, 3, 2)));
    let r = c.get("k", at(4)).await?;
    assert_eq!(s(r.kvs()[0].value()), "v2");
    assert!(c.get("k", at(5)).await?.kvs().is_empty());
    let r = c.get("", Some(GetOptions::new().with_all_keys().with_revision(3))).await?;
    assert_eq!((keys(&r), r.count()), (vec!["k".into()], 1));
    let r = c.get("", Some(GetOptions::new().with_all_keys().with_revision(4))).await?;
    assert_eq!(keys(&r), vec!["j", "k"]);

    step!("revision 0 and negative revisions read the latest");
    assert_eq!(keys(&c.get("", Some(GetOptions::new().with_all_keys().with_revision(0))).await?), vec!["j"]);
    assert_eq!(keys(&c.get("", Some(GetOptions::new().with_all_keys().with_revision(-3))).await?), vec!["j"]);

    step!("a future revision is OutOfRange");
    assert_grpc_err(c.get("k", at(6)).await, "OutOfRange", FUTURE_REV);
    assert_grpc_err(c.get("k", at(1000)).await, "OutOfRange", FUTURE_REV);
    assert_grpc_err(
        c.get("k", Some(GetOptions::new().with_revision(6).with_serializable())).await,
        "OutOfRange",
        FUTURE_REV,
    );

    step!("compact at 3: below 3 is compacted, 3 itself is readable");
    c.compact(3, None).await?;
    assert_grpc_err(c.get("k", at(2)).await, "OutOfRange", COMPACTED);
    assert_grpc_err(c.get("k", at(1)).await, "OutOfRange", COMPACTED);
    let r = c.get("k", at(3)).await?;
    assert_eq!((s(r.kvs()[0].value()), revs(&r.kvs()[0])), ("v2".into(), (2, 3, 2)));
    assert_eq!(s(c.get("j", at(4)).await?.kvs()[0].value()), "x");
    Ok(())
}

/// Put the sorting data set: four keys whose key, version, create, mod and value orders all differ.
/// Final state (key: create, mod, version, value): s/a: 3, 9, 3, "n"; s/b: 5, 5, 1, "q"; s/c: 2, 11, 2, "m";
/// s/d: 4, 10, 4, "d".
async fn put_sort_dataset(c: &mut Client) -> Result<()> {
    for (k, v) in [
        ("s/c", "m"),
        ("s/a", "x"),
        ("s/d", "b"),
        ("s/b", "q"),
        ("s/d", "b"),
        ("s/a", "x"),
        ("s/d", "b"),
        ("s/a", "n"),
        ("s/d", "d"),
        ("s/c", "m"),
    ] {
        c.put(k, v, None).await?;
    }
    Ok(())
}

/// Scenario: every sort target (KEY, VERSION, CREATE, MOD, VALUE) in both orders; sorting happens before
/// `limit` (the first n of the sorted range) and leaves `count` alone; a non-KEY target with order NONE sorts
/// ascending.
#[tokio::test]
async fn range_sort_every_target_and_order() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put the sort data set");
    put_sort_dataset(&mut c).await?;
    let kv = get_one(&mut c, "s/a").await?.unwrap();
    assert_eq!(revs(&kv), (3, 9, 3));

    let cases = [
        (SortTarget::Key, "abcd"),
        (SortTarget::Version, "bcad"),
        (SortTarget::Create, "cadb"),
        (SortTarget::Mod, "badc"),
        (SortTarget::Value, "dcab"),
    ];
    for (target, asc) in cases {
        let want: Vec<String> = asc.chars().map(|ch| format!("s/{ch}")).collect();
        let mut desc = want.clone();
        desc.reverse();
        for (order, want) in [(SortOrder::Ascend, &want), (SortOrder::Descend, &desc)] {
            step!("sort by {target:?} {order:?}");
            let r = c.get("s/", Some(GetOptions::new().with_prefix().with_sort(target, order))).await?;
            assert_eq!(&keys(&r), want, "{target:?} {order:?}");
            step!("sort by {target:?} {order:?} with limit 2");
            let r = c.get("s/", Some(GetOptions::new().with_prefix().with_sort(target, order).with_limit(2))).await?;
            assert_eq!((keys(&r), r.more(), r.count()), (want[..2].to_vec(), true, 4), "{target:?} {order:?} limit 2");
        }
    }
    step!("order NONE: KEY stays in key order, other targets sort ascending");
    let r = c.get("s/", Some(GetOptions::new().with_prefix().with_sort(SortTarget::Key, SortOrder::None))).await?;
    assert_eq!(keys(&r), ["s/a", "s/b", "s/c", "s/d"]);
    let r = c.get("s/", Some(GetOptions::new().with_prefix().with_sort(SortTarget::Mod, SortOrder::None))).await?;
    assert_eq!(keys(&r), ["s/b", "s/a", "s/d", "s/c"]);
    Ok(())
}

/// Scenario: keys_only drops values but keeps revisions; count_only returns only the count; a serializable
/// read returns what a linearizable one does on a single member.
#[tokio::test]
async fn range_keys_only_count_only_and_serializable() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put the sort data set");
    put_sort_dataset(&mut c).await?;

    step!("keys_only");
    let r = c.get("s/", Some(GetOptions::new().with_prefix().with_keys_only())).await?;
    assert_eq!((keys(&r), r.count()), (vec!["s/a".into(), "s/b".into(), "s/c".into(), "s/d".into()], 4));
    assert!(r.kvs().iter().all(|kv| kv.value().is_empty()), "keys_only must not return values");
    assert_eq!(revs(&r.kvs()[0]), (3, 9, 3), "keys_only keeps revisions and version");

    step!("count_only");
    let r = c.get("s/", Some(GetOptions::new().with_prefix().with_count_only())).await?;
    assert_eq!((r.kvs().len(), r.count(), r.more(), hrev(r.header())), (0, 4, false, 11));
    let r = c.get("s/zz", Some(GetOptions::new().with_count_only())).await?;
    assert_eq!(r.count(), 0);

    step!("serializable equals linearizable");
    let lin = c.get("s/", Some(GetOptions::new().with_prefix())).await?;
    let ser = c.get("s/", Some(GetOptions::new().with_prefix().with_serializable())).await?;
    let dump = |r: &GetResponse| {
        r.kvs().iter().map(|kv| (s(kv.key()), s(kv.value()), revs(kv), kv.lease())).collect::<Vec<_>>()
    };
    assert_eq!(dump(&lin), dump(&ser));
    assert_eq!((ser.count(), hrev(ser.header())), (4, 11));
    let r = c.get("s/", Some(GetOptions::new().with_prefix().with_serializable().with_revision(5))).await?;
    assert_eq!(keys(&r), ["s/a", "s/b", "s/c", "s/d"]);
    assert_eq!(s(r.kvs()[3].value()), "b");
    Ok(())
}

/// Scenario: min/max mod and create revision filters select keys by their revisions; `count` still counts
/// the whole range, and `limit` + `more` apply to the filtered result.
#[tokio::test]
async fn range_min_max_mod_and_create_revision_filters() -> Result<()> {
    let f = Fixture::start(&[]).await;
    let mut c = f.client.clone();
    step!("put the sort data set (a: create 3 mod 9, b: 5/5, c: 2/11, d: 4/10)");
    put_sort_dataset(&mut c).await?;
    let p = || GetOptions::new().with_prefix();
    let cases: Vec<(&str, GetOptions, Vec<&str>)> = vec![
        ("min_mod 9", p().with_min_mod_revision(9), vec!["s/a", "s/c", "s/d"]),
        ("max_mod 9", p().with_max_mod_revision(9), vec!["s/a", "s/b"]),
        ("min_mod 10 max_mod 10", p().with_min_mod_revision(10).with_max_mod_revision(10), vec!["s/d"]),
        ("min_create 4", p().with_min_create_revision(4), vec!["s/b", "s/d"]),
        ("max_create 3", p().with_max_create_revision(3), vec!["s/a", "s/c"]),
        ("min_create 3 max_create 4", p().with_min_create_revision(3).with_max_create_revision(4), vec!["s/a", "s/d"]),
        ("min_mod 12", p().with_min_mod_revision(12), vec![]),
    ];
    for (name, opts, want) in cases {
        step!("{name} -> {want:?}");
        let r = c.get("s/", Some(opts)).await?;
        assert_eq!((keys(&r), r.count(), r.more()), (want.iter().map(|k| k.to_string()).collect(), 4, false), "{name}");
    }
    step!("filter + limit: more refers to the filtered keys");
    let r = c.get("s/", Some(p().with_min_mod_revision(9).with_limit(2))).await?;
    assert_eq!((keys(&r), r.more(), r.count()), (vec!["s/a".into(), "s/c".into()], true, 4));
    let r = c.get("s/", Some(p().with_min_mod_revision(9).with_limit(3))).await?;
    assert_eq!((r.kvs().len(), r.more()), (3, false));
    Ok(())
}
