//! Several watchers per stream, watch ids, cancel, half-close, compaction and progress.

use super::*;

// ---------------------------------------------------------------------------------------------------------
// Streams, ids, cancel, compaction
// ---------------------------------------------------------------------------------------------------------

/// Scenario: one stream, watch ids 10, 20 and 30 chosen by the client plus one left to the server. Writes go
/// to each by id; cancelling 20 yields a canceled response for 20 and no more events for it, while 10 and 30
/// keep receiving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watches_on_one_stream_with_ids_and_cancel() {
    let mut n = start_node(&[]).await;
    let rec = Recorder::default();
    let specs = [(10, WatchSpec::key("a", "a")), (20, WatchSpec::key("b", "b")), (30, WatchSpec::prefix("ab", "a"))];
    let (mut ws, created) = open_with(&mut n.client, &specs[0].1, specs[0].1.options().with_watch_id(10)).await;
    assert_eq!(created.watch_id, 10);
    let mut out = vec![created];
    for (id, spec) in &specs[1..] {
        ws.watch(spec.key.clone(), Some(spec.options().with_watch_id(*id))).await.unwrap();
    }
    step!("one more without an id");
    ws.watch("c", None).await.unwrap();
    read_until(&mut ws, &mut out, Duration::from_secs(5), Duration::ZERO, "created", |rs| {
        rs.iter().filter(|r| r.created).count() == 4
    })
    .await;
    let auto = out.last().unwrap().watch_id;
    step!("created ids: {:?}", out.iter().map(|r| r.watch_id).collect::<Vec<_>>());
    assert!(![10, 20, 30].contains(&auto) && auto >= 0, "server-chosen id {auto} must not collide");
    let c = &mut n.client;
    put(c, &rec, "a", "1").await;
    put(c, &rec, "b", "1").await;
    let rc = put(c, &rec, "c", "1").await;
    read_until(&mut ws, &mut out, Duration::from_secs(5), Duration::ZERO, "events", |rs| max_event_rev(rs) >= rc).await;
    step!("cancel 20");
    ws.cancel(20).await.unwrap();
    read_until(&mut ws, &mut out, Duration::from_secs(5), Duration::ZERO, "canceled", |rs| {
        rs.iter().any(|r| r.canceled && r.watch_id == 20)
    })
    .await;
    let canceled = out.iter().find(|r| r.canceled).unwrap().clone();
    assert!(canceled.events.is_empty() && canceled.compact_revision == 0, "{canceled:?}");
    put(c, &rec, "b", "2").await;
    put(c, &rec, "a", "2").await;
    let last = put(c, &rec, "ab", "1").await;
    read_until(&mut ws, &mut out, Duration::from_secs(5), Duration::from_millis(300), "after cancel", |rs| {
        max_event_rev(rs) >= last
    })
    .await;
    let history = rec.history();
    let per = split_stream(&out);
    let b_events: Vec<i64> = per[&20].iter().flat_map(|r| r.events.iter().map(|e| e.revision())).collect();
    assert_eq!(b_events, vec![3], "watcher 20 got nothing after its cancel");
    let mut traces: Vec<Trace> = specs.iter().map(|(id, s)| Trace::new(s.clone(), per[id].clone())).collect();
    traces.push(Trace::new(WatchSpec::key("auto c", "c"), per[&auto].clone()));
    // 20's trace ends at its cancel, so it is checked up to its last event only.
    assert_clean(&history, &traces);
    assert_eq!(summary(&per[&30]).len(), 3, "a, a, ab: {:?}", summary(&per[&30]));
}

/// Scenario (differential): creating a watch with an id already used on the stream, and cancelling an id that
/// does not exist, behave as on real etcd (compared response by response).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_watch_id_and_unknown_cancel_match_etcd() {
    async fn run(c: &mut Client) -> Vec<String> {
        let mut ws = c.watch("d", Some(WatchOptions::new().with_watch_id(7))).await.unwrap();
        let mut out = vec![next(&mut ws, Duration::from_secs(5)).await.unwrap()];
        ws.watch("e", Some(WatchOptions::new().with_watch_id(7))).await.unwrap();
        ws.cancel(99).await.unwrap();
        ws.watch("f", Some(WatchOptions::new().with_watch_id(8))).await.unwrap();
        read_until(&mut ws, &mut out, Duration::from_secs(5), Duration::from_millis(500), "dup", |rs| {
            rs.iter().any(|r| r.watch_id == 8)
        })
        .await;
        c.put("d", "1", None).await.unwrap();
        c.put("e", "1", None).await.unwrap();
        read_until(&mut ws, &mut out, Duration::from_secs(5), Duration::from_millis(300), "events", |rs| {
            rs.iter().any(|r| !r.events.is_empty())
        })
        .await;
        out.iter()
            .map(|r| {
                format!(
                    "id={} created={} canceled={} reason={:?} compact={} events={:?}",
                    r.watch_id,
                    r.created,
                    r.canceled,
                    r.cancel_reason,
                    r.compact_revision,
                    summary(std::slice::from_ref(r))
                )
            })
            .collect()
    }
    let Some((_e, mut ec)) = start_etcd().await else { return };
    let mut n = start_node(&[]).await;
    let ours = run(&mut n.client).await;
    let theirs = run(&mut ec).await;
    step!("raftcd: {ours:#?}");
    step!("etcd:   {theirs:#?}");
    assert_eq!(ours, theirs, "responses differ from etcd");
}

/// Scenario (differential): a client opens a watch stream, creates a watcher and then closes its sending
/// side (etcd-client: split the stream and drop the request sender). Real etcd keeps the stream and delivers
/// later events (its receive loop ends on EOF without ending the stream); raftcd must do the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_watch_stream_keeps_delivering_like_etcd() {
    async fn run(c: &mut Client) -> Vec<(EventKind, String, String)> {
        let ws = c.watch("hc", None).await.unwrap();
        let (tx, mut rx) = ws.split();
        let created = next(&mut rx, Duration::from_secs(5)).await.expect("created");
        assert!(created.created);
        drop(tx);
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.put("hc", "1", None).await.unwrap();
        c.put("hc", "2", None).await.unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while max_event_rev(&out) < 3 && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(500), rx.message()).await {
                Ok(Ok(Some(r))) => out.push(Response::from_client(&r)),
                Ok(Ok(None)) => {
                    eprintln!("stream ended after the half-close");
                    break;
                }
                Ok(Err(e)) => {
                    eprintln!("stream failed after the half-close: {e}");
                    break;
                }
                Err(_) => {}
            }
        }
        summary(&out)
    }
    let mut n = start_node(&[]).await;
    let ours = run(&mut n.client).await;
    step!("raftcd delivered {ours:?}");
    if let Some((_e, mut ec)) = start_etcd().await {
        let theirs = run(&mut ec).await;
        step!("etcd delivered {theirs:?}");
        assert_eq!(ours, theirs, "half-closed watch stream behaves differently from etcd");
    }
    assert_eq!(ours.len(), 2, "events after the client's half-close");
}

/// Scenario (differential): after 5 puts of `a` (revisions 2..=6) and Compact(4), a watch from revision 2 is
/// canceled with compact_revision 4, exactly as real etcd answers (created / canceled / compact_revision /
/// cancel_reason / events compared); a watch with prev_kv from the compact revision itself replays 4..=6 on
/// both, with the same prev_kv (none where the previous version was compacted away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_start_revision_is_canceled_like_etcd() {
    async fn run(c: &mut Client) -> (Vec<String>, Vec<i64>, i64) {
        for i in 0..5 {
            c.put("a", format!("{i}"), None).await.unwrap();
        }
        c.compact(4, None).await.unwrap();
        let mut ws = c.watch("a", Some(WatchOptions::new().with_start_revision(2))).await.unwrap();
        let mut out = Vec::new();
        read_until(&mut ws, &mut out, Duration::from_secs(5), Duration::from_millis(500), "compacted", |rs| {
            rs.iter().any(|r| r.canceled)
        })
        .await;
        let header = out.iter().find(|r| r.canceled).map(|r| r.header_revision).unwrap_or(-1);
        let shape = out
            .iter()
            .map(|r| {
                format!(
                    "created={} canceled={} compact={} reason={:?} events={}",
                    r.created,
                    r.canceled,
                    r.compact_revision,
                    r.cancel_reason,
                    r.events.len()
                )
            })
            .collect();
        let mut ws2 = c.watch("a", Some(WatchOptions::new().with_start_revision(4).with_prev_key())).await.unwrap();
        let mut out2 = Vec::new();
        read_until(&mut ws2, &mut out2, Duration::from_secs(5), Duration::from_millis(200), "from 4", |rs| {
            max_event_rev(rs) >= 6
        })
        .await;
        let revs = out2.iter().flat_map(|r| r.events.iter().map(|e| e.revision())).collect();
        let prevs: Vec<Option<i64>> =
            out2.iter().flat_map(|r| r.events.iter().map(|e| e.prev_kv.as_ref().map(|p| p.mod_revision))).collect();
        let mut shape: Vec<String> = shape;
        shape.push(format!("replay from the compact revision: prev_kv mod revisions {prevs:?}"));
        (shape, revs, header)
    }
    let mut n = start_node(&[]).await;
    let (ours, our_revs, our_header) = run(&mut n.client).await;
    step!("raftcd: {ours:?} replay {our_revs:?} cancel header revision {our_header}");
    assert!(ours.iter().any(|s| s.contains("canceled=true compact=4")), "{ours:?}");
    assert_eq!(our_revs, vec![4, 5, 6]);
    if let Some((_e, mut ec)) = start_etcd().await {
        let (theirs, their_revs, their_header) = run(&mut ec).await;
        step!("etcd:   {theirs:?} replay {their_revs:?} cancel header revision {their_header}");
        assert_eq!(ours, theirs, "compaction cancel differs from etcd");
        assert_eq!(our_revs, their_revs);
        if our_header != their_header {
            eprintln!("note: cancel header revision differs (raftcd {our_header}, etcd {their_header})");
        }
    }
}

/// Scenario: stream A (its own connection) watches `big/` from now but is not read while ~12 MB of writes
/// (400 puts of 30 KB from 16 writers) overflow its buffers, so the server parks it as a slow watcher; then
/// everything is compacted. When A reads, it gets an in-order, gap-free prefix of the events and then a
/// cancel with compact_revision (as etcd does for a watcher overtaken by compaction) — never a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_overtaken_by_compaction_is_canceled() {
    let n = start_node(&[]).await;
    let rec = Recorder::default();
    let mut client_a = connect(&n.proc.endpoint()).await;
    let spec = WatchSpec::prefix("slow big/", "big/");
    let (mut ws, created) = open(&mut client_a, &spec).await;
    step!("400 puts of 30 KB while A does not read");
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (mut c, rec) = (n.client.clone(), rec.clone());
        tasks.push(tokio::spawn(async move {
            let val = format!("{w:02}").repeat(15_000);
            for i in 0..25 {
                put(&mut c, &rec, &format!("big/{w}/{i}"), &val).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let history = rec.history();
    let last = history.last_revision();
    let mut c = n.client.clone();
    c.compact(last, None).await.expect("compact");
    step!("compacted at {last}; A reads now");
    let mut out = vec![created];
    read_until(&mut ws, &mut out, Duration::from_secs(30), Duration::from_millis(300), "slow A", |rs| {
        rs.iter().any(|r| r.canceled) || max_event_rev(rs) >= last
    })
    .await;
    let canceled: Vec<&Response> = out.iter().filter(|r| r.canceled).collect();
    let got = out.iter().map(|r| r.events.len()).sum::<usize>();
    step!("A got {got} of {} events; canceled: {canceled:?}", history.events().len());
    let trace = Trace::new(spec, out.clone());
    let v = check(&history, &trace);
    assert!(v.is_empty(), "{}", describe(&v));
    if let Some(cancel) = canceled.first() {
        assert_eq!(cancel.compact_revision, last, "cancel names the compaction revision");
        assert!(out.last().is_some_and(|r| r.canceled), "nothing after the cancel");
        // Everything below the point where the watcher was parked arrived.
        let delivered = trace.last_event_revision();
        let missing = history.expected(&trace.spec, 2, delivered).len() - got;
        assert_eq!(missing, 0);
    } else {
        eprintln!("note: A was never parked as slow (buffers absorbed the writes); got all {got} events");
        assert_eq!(got, history.events().len());
    }
}

// ---------------------------------------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------------------------------------

/// Scenario: a stream holds a live watcher and a watcher catching up 1,200 events from revision 1. A progress
/// request sent right away is answered with watch_id -1 and no events; its header revision is not below any
/// event received before it, and no event at or below it arrives after it. Repeated while a writer runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_request_answered_with_stream_revision() {
    let mut n = start_node(&[]).await;
    let rec = Recorder::default();
    step!("1,200 puts from 12 writers");
    let mut tasks = Vec::new();
    for w in 0..12 {
        let (mut c, rec) = (n.client.clone(), rec.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                put(&mut c, &rec, &format!("p/{w}/{}", i % 10), &format!("{i}")).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let live = WatchSpec::key("live x", "x");
    let (mut ws, created) = open_with(&mut n.client, &live, live.options().with_watch_id(1)).await;
    let mut out = vec![created];
    let past = WatchSpec::prefix("catch-up p/", "p/").start(1).with_prev_kv();
    ws.watch(past.key.clone(), Some(past.options().with_watch_id(2))).await.unwrap();
    step!("progress request right behind the catching-up watcher's create");
    ws.request_progress().await.unwrap();
    read_until(&mut ws, &mut out, Duration::from_secs(20), Duration::ZERO, "progress", |rs| {
        rs.iter().any(|r| r.watch_id == -1)
    })
    .await;
    let p = out.iter().find(|r| r.watch_id == -1).unwrap().clone();
    step!("progress at revision {}: {:?}", p.header_revision, p);
    assert!(p.is_progress(), "a progress response has no events and is neither created nor canceled");
    step!("writer running; more progress requests");
    let writer = {
        let (mut c, rec) = (n.client.clone(), rec.clone());
        tokio::spawn(async move {
            for i in 0..100 {
                let k = if i % 3 == 0 { "x".to_string() } else { format!("p/w/{}", i % 5) };
                put(&mut c, &rec, &k, &format!("{i}")).await;
            }
        })
    };
    for _ in 0..5 {
        ws.request_progress().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writer.await.unwrap();
    ws.request_progress().await.unwrap();
    let history = rec.history();
    let last = history.last_revision();
    read_until(&mut ws, &mut out, Duration::from_secs(20), Duration::from_millis(300), "final progress", |rs| {
        rs.iter().any(|r| r.watch_id == -1 && r.header_revision >= last)
    })
    .await;
    let n_progress = out.iter().filter(|r| r.watch_id == -1).count();
    step!("{n_progress} progress responses");
    assert!(n_progress >= 2, "each request is answered (etcd may coalesce some): {n_progress}");
    let per = split_stream(&out);
    let traces = vec![Trace::new(live, per[&1].clone()), Trace::new(past, per[&2].clone())];
    assert_clean(&history, &traces);
}

/// Scenario (race hunt, 5 s): 12 writers keep writing `race/*`; 4 streams each repeatedly create a watcher
/// on `race/` starting 1 revision back (a tiny catch-up), send a progress request right behind it, read until
/// the progress response and cancel the watcher. A progress response's revision must never be below an event
/// the stream already delivered. (A watcher that finishes its catch-up between the store's commit of revision
/// R and the hub being told about R gets R's events while the hub still says R-1.) The race is timing
/// dependent: each attempt hits it with a small probability, so a run may pass while the bug is present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_never_below_a_delivered_event() {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
    let n = start_node(&[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let latest = Arc::new(AtomicI64::new(1));
    let mut writers = Vec::new();
    for w in 0..12 {
        let (mut c, stop, latest) = (n.client.clone(), stop.clone(), latest.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Relaxed) {
                let r = c.put(format!("race/{w}"), format!("{i}"), None).await.expect("put");
                latest.fetch_max(rev_of(r.header()), Relaxed);
                i += 1;
            }
        }));
    }
    let mut hunters = Vec::new();
    for h in 0..4 {
        let (mut c, stop, latest) = (n.client.clone(), stop.clone(), latest.clone());
        hunters.push(tokio::spawn(async move {
            let mut ws = c.watch("race-idle", None).await.unwrap();
            next(&mut ws, Duration::from_secs(5)).await.expect("created");
            let (mut attempts, mut violations) = (0, Vec::new());
            let mut id = 1000 * (h + 1);
            while !stop.load(Relaxed) {
                id += 1;
                let start = latest.load(Relaxed) - 1;
                let opts = WatchOptions::new().with_prefix().with_start_revision(start).with_watch_id(id);
                ws.watch("race/", Some(opts)).await.unwrap();
                ws.request_progress().await.unwrap();
                let mut max_event = 0;
                loop {
                    let r = next(&mut ws, Duration::from_secs(10)).await.expect("progress response");
                    if r.watch_id == -1 && r.is_progress() {
                        if r.header_revision < max_event {
                            violations.push(format!("progress {} after event {max_event}", r.header_revision));
                        }
                        break;
                    }
                    max_event = max_event.max(max_event_rev(std::slice::from_ref(&r)));
                }
                ws.cancel(id).await.unwrap();
                attempts += 1;
            }
            (attempts, violations)
        }));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Relaxed);
    let (mut attempts, mut violations) = (0, Vec::new());
    for h in hunters {
        let (a, v) = h.await.unwrap();
        attempts += a;
        violations.extend(v);
    }
    for w in writers {
        w.await.unwrap();
    }
    step!("{attempts} attempts, {} violations", violations.len());
    assert!(attempts > 20, "the hunt ran: {attempts} attempts");
    assert!(violations.is_empty(), "progress below an already delivered event: {violations:?}");
}

/// Scenario: with `--experimental-watch-progress-notify-interval 1s`, an idle watcher with progress_notify
/// gets empty responses for its own watch id about every second whose header revision is the store's
/// current revision (writes to other keys go on); a watcher without progress_notify gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notify_interval() {
    let mut n = start_node(&["--experimental-watch-progress-notify-interval", "1s"]).await;
    let rec = Recorder::default();
    put(&mut n.client, &rec, "other", "0").await;
    let spec = WatchSpec::key("idle", "idle");
    let (mut ws, created) = open_with(&mut n.client, &spec, spec.options().with_progress_notify()).await;
    let (mut quiet, _) = open(&mut n.client, &WatchSpec::key("quiet", "idle")).await;
    let id = created.watch_id;
    let mut out = vec![created];
    let writer = {
        let (mut c, rec) = (n.client.clone(), rec.clone());
        tokio::spawn(async move {
            for i in 0..25 {
                put(&mut c, &rec, "other", &format!("{i}")).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    step!("wait for 2 progress notifications");
    let t0 = Instant::now();
    read_until(&mut ws, &mut out, Duration::from_secs(6), Duration::ZERO, "progress_notify", |rs| {
        rs.iter().filter(|r| r.is_progress()).count() >= 2
    })
    .await;
    step!("2 notifications after {:?}", t0.elapsed());
    writer.await.unwrap();
    for r in out.iter().filter(|r| r.is_progress()) {
        assert_eq!(r.watch_id, id, "progress_notify carries the watcher's id");
        assert!(r.header_revision >= 2, "{r:?}");
    }
    let history = rec.history();
    let final_rev = history.last_revision();
    read_until(&mut ws, &mut out, Duration::from_secs(4), Duration::ZERO, "progress at the end", |rs| {
        rs.iter().any(|r| r.is_progress() && r.header_revision >= final_rev)
    })
    .await;
    assert_clean(&history, &[Trace::new(spec, out)]);
    assert!(next(&mut quiet, Duration::from_millis(1500)).await.is_none(), "no progress_notify when not asked");
}
