//! Ranges, start revisions, event content (prev_kv, DELETE revision, create detection) and filters.

use super::*;

// ---------------------------------------------------------------------------------------------------------
// Ranges
// ---------------------------------------------------------------------------------------------------------

/// Scenario: one stream carries five watchers with client-chosen ids — single key `a`, range [b, d),
/// prefix `p/`, from-key `m` and all keys. A mix of puts, deletes and a txn touches keys inside and outside
/// each range. Each watcher gets exactly its range's events (checked against the recorded history).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_key_range_prefix_and_from_key_watches() {
    let mut n = start_node(&[]).await;
    let rec = Recorder::default();
    let specs = [
        (1, WatchSpec::key("key a", "a")),
        (2, WatchSpec::range("range [b,d)", "b", "d")),
        (3, WatchSpec::prefix("prefix p/", "p/")),
        (4, WatchSpec::from_key("from-key m", "m")),
        (5, WatchSpec::all("all keys")),
    ];
    step!("create 5 watchers with ids 1..=5 on one stream");
    let (first_id, first) = &specs[0];
    let (mut ws, created) = open_with(&mut n.client, first, first.options().with_watch_id(*first_id)).await;
    let mut out = vec![created];
    for (id, spec) in &specs[1..] {
        ws.watch(spec.key.clone(), Some(spec.options().with_watch_id(*id))).await.expect("watch");
        let r = next(&mut ws, Duration::from_secs(5)).await.expect("created");
        assert!(r.created && r.watch_id == *id, "created response for {id}: {r:?}");
        out.push(r);
    }
    step!("writes inside and outside the ranges");
    let c = &mut n.client;
    for (k, v) in [("a", "1"), ("ab", "1"), ("b", "1"), ("c", "1"), ("d", "1"), ("p/1", "1"), ("p/2", "1")] {
        put(c, &rec, k, v).await;
    }
    for (k, v) in [("p", "1"), ("p0", "1"), ("m", "1"), ("z", "1"), ("a", "2")] {
        put(c, &rec, k, v).await;
    }
    del(c, &rec, "a").await.expect("a existed");
    del(c, &rec, "p/1").await.expect("p/1 existed");
    txn(c, &rec, None, &[Op::Put("b".into(), "2".into()), Op::Put("zz".into(), "1".into()), Op::Del("c".into())], &[])
        .await;
    let history = rec.history();
    let last = history.last_revision();
    step!("read until the all-keys watcher reached revision {last}");
    read_until(&mut ws, &mut out, Duration::from_secs(10), Duration::from_millis(300), "all", |rs| {
        rs.iter().any(|r| r.watch_id == 5 && r.events.iter().any(|e| e.revision() == last))
    })
    .await;
    let per_id = split_stream(&out);
    let traces: Vec<Trace> =
        specs.iter().map(|(id, spec)| Trace::new(spec.clone(), per_id.get(id).cloned().unwrap_or_default())).collect();
    assert_clean(&history, &traces);
    step!("spot-check the exact event lists");
    use EventKind::{Delete as D, Put as P};
    let sm = |i: usize| summary(&traces[i].responses);
    let e = |t, k: &str, v: &str| (t, k.to_string(), v.to_string());
    assert_eq!(sm(0), vec![e(P, "a", "1"), e(P, "a", "2"), e(D, "a", "")]);
    assert_eq!(sm(1), vec![e(P, "b", "1"), e(P, "c", "1"), e(P, "b", "2"), e(D, "c", "")]);
    assert_eq!(sm(2), vec![e(P, "p/1", "1"), e(P, "p/2", "1"), e(D, "p/1", "")]);
    assert_eq!(
        sm(3),
        vec![
            e(P, "p/1", "1"),
            e(P, "p/2", "1"),
            e(P, "p", "1"),
            e(P, "p0", "1"),
            e(P, "m", "1"),
            e(P, "z", "1"),
            e(D, "p/1", ""),
            e(P, "zz", "1")
        ]
    );
    assert_eq!(sm(4).len(), history.events().len());
}

// ---------------------------------------------------------------------------------------------------------
// Start revisions
// ---------------------------------------------------------------------------------------------------------

/// Scenario: 300 writes, then a writer keeps writing while watchers start from past revisions (2, the
/// middle, a few revisions back) at different moments: each replays history and continues live with no gap
/// and no duplicate at the hand-over. One of them is then cut after some events and resumed from its last
/// revision + 1: together they deliver exactly the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_start_revision_replays_then_continues_live() {
    let mut n = start_node(&[]).await;
    let rec = Recorder::default();
    step!("preload 300 writes over 20 keys from 10 writers");
    let mut tasks = Vec::new();
    for w in 0..10 {
        let (mut c, rec) = (n.client.clone(), rec.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..30 {
                put(&mut c, &rec, &format!("k{:02}", (w * 2 + i) % 20), &format!("v{w}-{i}")).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let last = rec.history().last_revision();
    step!("start 2 concurrent writers (2 x 150 more writes with deletes)");
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (mut c, rec) = (n.client.clone(), rec.clone());
            tokio::spawn(async move {
                for i in 0..150 {
                    let k = format!("k{:02}", (i + w * 10) % 20);
                    if i % 7 == 0 {
                        del(&mut c, &rec, &k).await;
                    } else {
                        put(&mut c, &rec, &k, &format!("w{w}-{i}")).await;
                    }
                    if i % 10 == 0 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            })
        })
        .collect();
    let mut watchers = Vec::new();
    for start in [2, last / 2, last - 3] {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let spec = WatchSpec::prefix(&format!("from {start}"), "k").start(start).with_prev_kv();
        step!("watch from revision {start} while writes go on");
        let (ws, created) = open(&mut n.client, &spec).await;
        watchers.push((spec, ws, vec![created]));
    }
    let spec0 = WatchSpec::prefix("start 0", "k");
    let (ws0, created0) = open(&mut n.client, &spec0).await;
    watchers.push((spec0, ws0, vec![created0]));
    for w in writers {
        w.await.expect("writer");
    }
    let history = rec.history();
    step!("read every watcher up to revision {}", history.last_revision());
    let mut traces = Vec::new();
    for (spec, mut ws, mut out) in watchers {
        read_all(&mut ws, &mut out, &history, &spec).await;
        traces.push(Trace::new(spec, out));
    }
    assert_clean(&history, &traces);
    for t in &traces {
        assert_eq!(t.last_event_revision(), history.last_revision(), "{} reached the end", t.spec.name);
    }

    step!("resumable: cut a watch from revision 2 after ~250 events, resume from last + 1");
    let spec = WatchSpec::prefix("cut", "k").start(2);
    let (mut ws, created) = open(&mut n.client, &spec).await;
    let mut out = vec![created];
    read_until(&mut ws, &mut out, Duration::from_secs(10), Duration::ZERO, "cut", |rs| {
        rs.iter().map(|r| r.events.len()).sum::<usize>() >= 250
    })
    .await;
    drop(ws);
    let first = Trace::new(spec.clone(), out);
    let resume_at = first.last_event_revision() + 1;
    let spec2 = WatchSpec::prefix("resumed", "k").start(resume_at);
    let (mut ws2, created2) = open(&mut n.client, &spec2).await;
    let mut out2 = vec![created2];
    read_all(&mut ws2, &mut out2, &history, &spec2).await;
    let second = Trace::new(spec2, out2);
    let v = check_resumed(&history, &first, &second);
    assert!(v.is_empty(), "{}", describe(&v));
}

/// Scenario: while a writer runs, a watch with start_revision 0 is created. Its created response carries
/// header revision R; the first event is above R and from R+1 on nothing is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_revision_zero_starts_after_created_revision() {
    let mut n = start_node(&[]).await;
    let rec = Recorder::default();
    put(&mut n.client, &rec, "w", "0").await;
    step!("writers: 2 x 80 puts");
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (mut c, rec) = (n.client.clone(), rec.clone());
            tokio::spawn(async move {
                for i in 0..80 {
                    put(&mut c, &rec, "w", &format!("{w}-{i}")).await;
                }
            })
        })
        .collect();
    while rec.0.lock().unwrap().len() < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let spec = WatchSpec::key("start 0", "w").with_prev_kv();
    let (mut ws, created) = open(&mut n.client, &spec).await;
    let r = created.header_revision;
    step!("created at header revision {r}");
    assert!(r > 2, "the writer was running: {r}");
    let mut out = vec![created];
    for w in writers {
        w.await.unwrap();
    }
    let history = rec.history();
    read_all(&mut ws, &mut out, &history, &spec).await;
    let first = out.iter().flat_map(|x| x.events.iter()).next().expect("an event").revision();
    assert_eq!(first, r + 1, "first event right after the created revision");
    assert_clean(&history, &[Trace::new(spec, out)]);
}

/// Scenario (differential): on raftcd and on real etcd, three puts (revisions 2..=4), then watches with
/// start_revision 0, 2 and 100 (future): the created responses (header revision, watch ids) are the same,
/// and the past watch replays revisions 2..=4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_response_matches_etcd() {
    async fn run(c: &mut Client) -> Vec<(bool, i64, i64, usize)> {
        for i in 0..3 {
            c.put("cr", format!("{i}"), None).await.unwrap();
        }
        let mut out = Vec::new();
        for start in [0, 2, 100] {
            let mut ws = c.watch("cr", Some(WatchOptions::new().with_start_revision(start))).await.unwrap();
            let created = next(&mut ws, Duration::from_secs(5)).await.unwrap();
            out.push((created.created, created.header_revision, created.watch_id, created.events.len()));
            if start == 2 {
                let mut rs = Vec::new();
                read_until(&mut ws, &mut rs, Duration::from_secs(5), Duration::ZERO, "replay", |rs| {
                    max_event_rev(rs) >= 4
                })
                .await;
                let revs: Vec<i64> = rs.iter().flat_map(|r| r.events.iter().map(|e| e.revision())).collect();
                assert_eq!(revs, vec![2, 3, 4]);
            }
        }
        out
    }
    let mut n = start_node(&[]).await;
    step!("raftcd");
    let ours = run(&mut n.client).await;
    step!("raftcd: {ours:?}");
    assert_eq!(ours, vec![(true, 4, 0, 0), (true, 4, 0, 0), (true, 4, 0, 0)]);
    if let Some((_e, mut ec)) = start_etcd().await {
        let theirs = run(&mut ec).await;
        step!("etcd: {theirs:?}");
        assert_eq!(ours, theirs, "created responses differ from etcd");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Event content and filters
// ---------------------------------------------------------------------------------------------------------

/// Scenario: a key is created, updated twice, deleted and re-created; a watch with prev_kv from revision 1
/// sees each previous version, the DELETE carries the delete's revision (not the last put's), and the
/// re-create has version 1 and no prev_kv. A watch without prev_kv gets no prev_kv.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prev_kv_delete_revision_and_create_detection() {
    let mut n = start_node(&[]).await;
    let rec = Recorder::default();
    let c = &mut n.client;
    put(c, &rec, "k", "1").await;
    put(c, &rec, "other", "x").await;
    put(c, &rec, "k", "2").await;
    put(c, &rec, "k", "3").await;
    let del_rev = del(c, &rec, "k").await.unwrap();
    put(c, &rec, "k", "4").await;
    let history = rec.history();
    let with = WatchSpec::key("prev_kv", "k").start(1).with_prev_kv();
    let without = WatchSpec::key("no prev_kv", "k").start(1);
    let mut traces = Vec::new();
    for spec in [with, without] {
        step!("watch {} from revision 1", spec.name);
        let (mut ws, created) = open(c, &spec).await;
        let mut out = vec![created];
        read_all(&mut ws, &mut out, &history, &spec).await;
        traces.push(Trace::new(spec, out));
    }
    assert_clean(&history, &traces);
    let evs: Vec<_> = traces[0].events().cloned().collect();
    assert_eq!(evs.len(), 5);
    let d = &evs[3];
    assert_eq!(d.kind, EventKind::Delete);
    assert_eq!(d.kv.mod_revision, del_rev, "DELETE event carries the delete's revision");
    assert_eq!(d.prev_kv.as_ref().map(|p| s(&p.value)), Some("3".into()));
    assert_eq!((evs[4].kv.version, evs[4].prev_kv.is_none()), (1, true), "re-create: version 1, no prev");
    assert!(traces[1].events().all(|e| e.prev_kv.is_none()));
}

/// Scenario: NOPUT and NODELETE watchers (one live, one replaying from revision 1) over the same writes see
/// only deletes, resp. only puts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noput_and_nodelete_filters() {
    let mut n = start_node(&[]).await;
    let rec = Recorder::default();
    let live_np = WatchSpec::prefix("live noput", "f/").no_put().with_prev_kv();
    let live_nd = WatchSpec::prefix("live nodelete", "f/").no_delete();
    let (mut ws_np, c1) = open(&mut n.client, &live_np).await;
    let (mut ws_nd, c2) = open(&mut n.client, &live_nd).await;
    let c = &mut n.client;
    for i in 0..10 {
        put(c, &rec, &format!("f/{}", i % 4), &format!("{i}")).await;
        if i % 3 == 2 {
            del(c, &rec, &format!("f/{}", i % 4)).await;
        }
    }
    txn(c, &rec, None, &[Op::Put("f/9".into(), "x".into()), Op::Del("f/0".into())], &[]).await;
    let history = rec.history();
    let mut traces = Vec::new();
    let (mut o1, mut o2) = (vec![c1], vec![c2]);
    read_all(&mut ws_np, &mut o1, &history, &live_np).await;
    read_all(&mut ws_nd, &mut o2, &history, &live_nd).await;
    traces.push(Trace::new(live_np, o1));
    traces.push(Trace::new(live_nd, o2));
    for spec in [
        WatchSpec::prefix("past noput", "f/").start(1).no_put(),
        WatchSpec::prefix("past nodelete", "f/").start(1).no_delete(),
    ] {
        let (mut ws, created) = open(c, &spec).await;
        let mut out = vec![created];
        read_all(&mut ws, &mut out, &history, &spec).await;
        traces.push(Trace::new(spec, out));
    }
    assert_clean(&history, &traces);
    for t in &traces {
        let kinds: Vec<EventKind> = t.events().map(|e| e.kind).collect();
        assert!(!kinds.is_empty(), "{} got events", t.spec.name);
        let want = if t.spec.no_put { EventKind::Delete } else { EventKind::Put };
        assert!(kinds.iter().all(|k| *k == want), "{}: {kinds:?}", t.spec.name);
    }
}

/// Scenario: a txn with 6 puts and 2 deletes is one revision: a live watcher and a watcher replaying from
/// the past get all its events in one response. Then 990 single puts and a 100-op txn: a catch-up from
/// revision 1 crosses the server's catch-up batch size and must still keep the txn whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_events_arrive_in_one_response() {
    let mut n = start_node(&[]).await;
    let rec = Recorder::default();
    let c = &mut n.client;
    put(c, &rec, "t/x", "0").await;
    put(c, &rec, "t/y", "0").await;
    let live = WatchSpec::prefix("live", "t/").with_prev_kv();
    let (mut ws, created) = open(c, &live).await;
    let ops: Vec<Op> = (0..6)
        .map(|i| Op::Put(format!("t/{i}"), "v".into()))
        .chain([Op::Del("t/x".into()), Op::Del("t/y".into())])
        .collect();
    let (_, rev) = txn(c, &rec, Some(("t/x", 1)), &ops, &[]).await;
    let rev = rev.expect("txn wrote");
    step!("txn at revision {rev}");
    let history = rec.history();
    let mut out = vec![created];
    read_all(&mut ws, &mut out, &history, &live).await;
    let resp: Vec<&Response> = out.iter().filter(|r| !r.events.is_empty()).collect();
    assert_eq!(resp.len(), 1, "one response: {out:?}");
    assert_eq!(resp[0].events.len(), 8);
    let past = WatchSpec::prefix("past", "t/").start(1);
    let (mut ws2, created2) = open(c, &past).await;
    let mut out2 = vec![created2];
    read_all(&mut ws2, &mut out2, &history, &past).await;
    assert_clean(&history, &[Trace::new(live, out), Trace::new(past, out2)]);

    step!("990 puts from 10 writers, then a 100-op txn");
    let mut tasks = Vec::new();
    for w in 0..10 {
        let (mut c, rec) = (n.client.clone(), rec.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..99 {
                put(&mut c, &rec, &format!("b/{w}/{i}"), "v").await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let big: Vec<Op> = (0..100).map(|i| Op::Put(format!("b/txn/{i:03}"), "t".into())).collect();
    let (_, big_rev) = txn(&mut n.client, &rec, None, &big, &[]).await;
    put(&mut n.client, &rec, "b/after", "1").await;
    let history = rec.history();
    step!("catch-up from revision 1 over {} events (txn at {big_rev:?})", history.events().len());
    let all = WatchSpec::all("catch-up all").start(1);
    let (mut ws3, created3) = open(&mut n.client, &all).await;
    let mut out3 = vec![created3];
    read_all(&mut ws3, &mut out3, &history, &all).await;
    assert_clean(&history, &[Trace::new(all, out3)]);
}
