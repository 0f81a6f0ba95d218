//! Slow consumers, the kube-apiserver pattern and the randomized watch-guarantees run.

use super::*;

// ---------------------------------------------------------------------------------------------------------
// Slow consumer
// ---------------------------------------------------------------------------------------------------------

/// Scenario: stream A watches everything (prev_kv) but its client does not read while 5,000 writes from
/// 32 writers go on; stream B watches everything and reads continuously. B keeps receiving live (its lag stays
/// small and it has the last write within 2 s); afterwards A reads and gets every event in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_gets_everything_while_others_stay_live() {
    let n = start_node(&[]).await;
    let rec = Recorder::default();
    let spec_a = WatchSpec::all("slow A").with_prev_kv();
    let spec_b = WatchSpec::all("live B");
    // Separate connections: an unread stream must not hold up the others through HTTP/2 connection-level
    // flow control on the client side.
    let mut client_a = connect(&n.proc.endpoint()).await;
    let mut client_b = connect(&n.proc.endpoint()).await;
    let (mut ws_a, created_a) = open(&mut client_a, &spec_a).await;
    let (mut ws_b, created_b) = open(&mut client_b, &spec_b).await;
    let b_out = Arc::new(Mutex::new(vec![created_b]));
    let b_reader = {
        let b_out = b_out.clone();
        tokio::spawn(async move {
            while let Some(r) = next(&mut ws_b, Duration::from_secs(30)).await {
                b_out.lock().unwrap().push(r);
            }
            ws_b
        })
    };
    step!("5,000 writes (values of 500 bytes; every 10th a delete of the key just written) while A does not read");
    let latest = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (mut c, rec, latest) = (n.client.clone(), rec.clone(), latest.clone());
        tasks.push(tokio::spawn(async move {
            let val = "v".repeat(500);
            for i in 0..157 {
                let rev = if i % 10 == 9 {
                    del(&mut c, &rec, &format!("s/{w}/{}", (i - 1) % 40)).await.expect("key just written")
                } else {
                    put(&mut c, &rec, &format!("s/{w}/{}", i % 40), &val).await
                };
                latest.fetch_max(rev, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    let mut max_lag = 0;
    let mut samples = 0;
    while !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let written = latest.load(std::sync::atomic::Ordering::Relaxed);
        let seen = max_event_rev(&b_out.lock().unwrap());
        if written > 500 {
            max_lag = max_lag.max(written - seen);
            samples += 1;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let history = rec.history();
    let last = history.last_revision();
    step!("writes done in {:?}; last revision {last}; B's max lag {max_lag} over {samples} samples", t0.elapsed());
    let deadline = Instant::now() + Duration::from_secs(2);
    while max_event_rev(&b_out.lock().unwrap()) < last && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(max_event_rev(&b_out.lock().unwrap()), last, "B has the last write within 2 s");
    assert!(max_lag < 1000, "B stayed live while A was stuck (max lag {max_lag} revisions)");
    step!("A reads now");
    let mut out_a = vec![created_a];
    read_all(&mut ws_a, &mut out_a, &history, &spec_a).await;
    b_reader.abort();
    let out_b = b_out.lock().unwrap().clone();
    // Live delivery sends one revision per response; a response spanning several revisions comes from the
    // catch-up from the store, i.e. A really was parked as a slow watcher.
    let batched = out_a
        .iter()
        .filter(|r| r.events.iter().map(|e| e.revision()).collect::<std::collections::BTreeSet<_>>().len() > 1)
        .count();
    step!("A: {} responses, {batched} of them catch-up batches", out_a.len());
    assert!(batched > 0, "A was never parked as a slow watcher: the scenario did not happen");
    assert_clean(&history, &[Trace::new(spec_a, out_a), Trace::new(spec_b, out_b)]);
}

// ---------------------------------------------------------------------------------------------------------
// kube-apiserver pattern, hasleader
// ---------------------------------------------------------------------------------------------------------

/// Scenario (kube-apiserver's storage pattern over a client that sends `hasleader=true`): objects are created
/// with Txn{MOD==0 -> Put}, listed (revision R), watched by prefix from R+1 with prev_kv and progress_notify;
/// then guarded updates, deletes and re-creates. Every non-create event carries its prev_kv; the watch passes
/// the checker; a progress request comes back at or above the last write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_apiserver_watch_pattern_with_hasleader() {
    let n = start_node(&[]).await;
    let rec = Recorder::default();
    let opts = ConnectOptions::new().with_require_leader(true);
    let mut c = Client::connect([format!("http://{}", n.proc.endpoint())], Some(opts)).await.expect("connect");
    step!("create 20 pods");
    for i in 0..20 {
        let k = format!("/registry/pods/default/pod-{i}");
        let t = Txn::new()
            .when(vec![Compare::mod_revision(k.as_str(), CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(k.as_str(), format!("v0-{i}"), None)]);
        let r = c.txn(t).await.expect("create txn");
        assert!(r.succeeded());
        rec.record(rev_of(r.header()), vec![Write::put(k.as_str(), format!("v0-{i}"))]);
    }
    let list = c.get("/registry/pods/", Some(GetOptions::new().with_prefix())).await.unwrap();
    let list_rev = rev_of(list.header());
    let mut mods: BTreeMap<String, i64> = list.kvs().iter().map(|kv| (s(kv.key()), kv.mod_revision())).collect();
    step!("listed {} pods at revision {list_rev}; watch from {}", mods.len(), list_rev + 1);
    let spec = WatchSpec::prefix("kube watch", "/registry/pods/").start(list_rev + 1).with_prev_kv();
    let (mut ws, created) = open_with(&mut c, &spec, spec.options().with_progress_notify()).await;
    let mut out = vec![created];
    step!("guarded updates, deletes, re-creates");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..150 {
        let k = format!("/registry/pods/default/pod-{}", rng.random_range(0..25));
        let cur = mods.get(&k).copied();
        let t = match cur {
            Some(m) if i % 5 == 0 => Txn::new()
                .when(vec![Compare::mod_revision(k.as_str(), CompareOp::Equal, m)])
                .and_then(vec![TxnOp::delete(k.as_str(), None)])
                .or_else(vec![TxnOp::get(k.as_str(), None)]),
            Some(m) => Txn::new()
                .when(vec![Compare::mod_revision(k.as_str(), CompareOp::Equal, m)])
                .and_then(vec![TxnOp::put(k.as_str(), format!("v{i}"), None)])
                .or_else(vec![TxnOp::get(k.as_str(), None)]),
            None => Txn::new()
                .when(vec![Compare::mod_revision(k.as_str(), CompareOp::Equal, 0)])
                .and_then(vec![TxnOp::put(k.as_str(), format!("v{i}"), None)]),
        };
        let r = c.txn(t).await.expect("kube txn");
        assert!(r.succeeded(), "single writer: guards hold");
        let rev = rev_of(r.header());
        match cur {
            Some(_) if i % 5 == 0 => {
                rec.record(rev, vec![Write::delete(k.as_str())]);
                mods.remove(&k);
            }
            _ => {
                rec.record(rev, vec![Write::put(k.as_str(), format!("v{i}"))]);
                mods.insert(k, rev);
            }
        }
    }
    // Writes outside the prefix must not show.
    c.put("/registry/nodes/n1", "x", None)
        .await
        .map(|r| rec.record(rev_of(r.header()), vec![Write::put("/registry/nodes/n1", "x")]))
        .unwrap();
    let history = rec.history();
    ws.request_progress().await.unwrap();
    let last = history.last_revision();
    read_until(&mut ws, &mut out, Duration::from_secs(10), Duration::from_millis(200), "kube watch", |rs| {
        rs.iter().any(|r| r.watch_id == -1 && r.header_revision >= last)
    })
    .await;
    let trace = Trace::new(spec, out);
    for e in trace.events() {
        let create = e.kind == EventKind::Put && e.kv.version == 1;
        assert!(create || e.prev_kv.is_some(), "non-create event without prev_kv: {e:?}");
    }
    let v = check(&history, &trace);
    assert!(v.is_empty(), "{}", describe(&v));
    assert_eq!(trace.events().count(), 150);
}

// ---------------------------------------------------------------------------------------------------------
// The guarantees run
// ---------------------------------------------------------------------------------------------------------

/// Scenario: 4 writers × 500 random operations (puts, deletes, prefix deletes, guarded txns with several ops)
/// over 14 keys, and 10 watchers with various ranges, start revisions (0, 1, mid-run, future), prev_kv and filters — one
/// of them a slow reader, one cut and resumed, one created after the run (pure catch-up). Every watcher is
/// checked against the full history recorded from the write responses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_guarantees_random_run() {
    let mut n = start_node(&[]).await;
    let rec = Recorder::default();
    let key = |i: usize| format!("r/k{i:02}");
    let mut specs = vec![
        WatchSpec::all("all from 0 prev_kv").with_prev_kv(),
        WatchSpec::prefix("prefix r/k0", "r/k0").start(1),
        WatchSpec::range("range [k03,k07) prev_kv", key(3), key(7)).with_prev_kv(),
        WatchSpec::key("single k05 prev_kv", key(5)).start(1).with_prev_kv(),
        WatchSpec::from_key("from k08 noput", key(8)).no_put(),
        WatchSpec::prefix("prefix r/ nodelete", "r/").start(2).no_delete(),
        WatchSpec::all("future start").start(400),
    ];
    step!("create {} watchers before the run", specs.len());
    let mut streams: Vec<(WatchStream, Vec<Response>)> = Vec::new();
    for spec in &specs {
        let (ws, created) = open(&mut n.client, spec).await;
        streams.push((ws, vec![created]));
    }
    // A reader task per watcher, except the slow one, which is read only at the end. The senders stay here
    // to send progress requests during the run.
    let slow_index = 1;
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for (i, (ws, out)) in streams.drain(..).enumerate() {
        let (tx, mut rx) = ws.split();
        senders.push(tx);
        if i == slow_index {
            readers.push(tokio::spawn(async move { (rx, out) }));
            continue;
        }
        let mut out = out;
        readers.push(tokio::spawn(async move {
            let stop = Instant::now() + Duration::from_secs(40);
            while Instant::now() < stop {
                match tokio::time::timeout(Duration::from_millis(1500), rx.message()).await {
                    Ok(Ok(Some(r))) => out.push(Response::from_client(&r)),
                    Ok(_) => break,
                    Err(_) => break, // idle: the run is over
                }
            }
            (rx, out)
        }));
    }
    step!("progress requests on every stream every 200 ms during the run");
    let stop_progress = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress_task = {
        let stop = stop_progress.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for tx in &mut senders {
                    tx.request_progress().await.unwrap();
                    n += 1;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (n, senders)
        })
    };
    step!("4 writers x 500 random ops");
    let t0 = Instant::now();
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (mut c, rec) = (n.client.clone(), rec.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + w);
            for i in 0..500 {
                let k = key(rng.random_range(0..12));
                let v = format!("w{w}-{i}");
                match rng.random_range(0..10) {
                    0..=4 => {
                        put(&mut c, &rec, &k, &v).await;
                    }
                    5 if i % 4 == 0 => {
                        // A range delete: several DELETE events in one revision.
                        del_prefix(&mut c, &rec, &key(rng.random_range(0..2) * 10)[..4]).await;
                    }
                    5 | 6 => {
                        del(&mut c, &rec, &k).await;
                    }
                    _ => {
                        let k2 = key(rng.random_range(0..12));
                        let k3 = key(rng.random_range(0..12));
                        let mut then = vec![Op::Put(k.clone(), v.clone())];
                        if k2 != k {
                            then.push(Op::Del(k2.clone()));
                        }
                        if k3 != k && k3 != k2 {
                            then.push(Op::Put(k3.clone(), format!("{v}-b")));
                        }
                        let otherwise = vec![Op::Get(k.clone()), Op::Put(key(12 + w as usize % 2), v.clone())];
                        txn(&mut c, &rec, Some((&k2, rng.random_range(0..3))), &then, &otherwise).await;
                    }
                }
            }
        }));
    }
    step!("mid-run: a from-key watcher from the current revision and a cut watcher");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mid = n.client.get("r/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    let mid_rev = rev_of(mid.header());
    let mid_spec = WatchSpec::from_key("from k06 from mid-run", key(6)).start(mid_rev - 20).with_prev_kv();
    let (mut mid_ws, mid_created) = open(&mut n.client, &mid_spec).await;
    let mut mid_out = vec![mid_created];
    let cut_spec = WatchSpec::prefix("cut", "r/k1").start(2);
    let (mut cut_ws, cut_created) = open(&mut n.client, &cut_spec).await;
    let mut cut_out = vec![cut_created];
    read_until(&mut cut_ws, &mut cut_out, Duration::from_secs(20), Duration::ZERO, "cut", |rs| {
        rs.iter().map(|r| r.events.len()).sum::<usize>() >= 40
    })
    .await;
    drop(cut_ws);
    let cut = Trace::new(cut_spec.clone(), cut_out);
    let resume_spec = WatchSpec::prefix("resumed", "r/k1").start(cut.last_event_revision() + 1);
    let (mut resume_ws, resume_created) = open(&mut n.client, &resume_spec).await;
    let mut resume_out = vec![resume_created];
    for w in writers {
        w.await.unwrap();
    }
    stop_progress.store(true, std::sync::atomic::Ordering::Relaxed);
    // The senders stay alive until the end: a half-closed stream is a different scenario (see
    // `half_closed_watch_stream_keeps_delivering_like_etcd`).
    let (n_requests, _senders) = progress_task.await.unwrap();
    let history = rec.history();
    let last = history.last_revision();
    step!(
        "run done in {:?}: {} revisions, {} events, {n_requests} progress requests",
        t0.elapsed(),
        last - 1,
        history.events().len()
    );
    assert!(last > 400, "the future-start watcher's start is inside the run");

    step!("after the run: a catch-up watcher from revision 1 (all keys, prev_kv)");
    let late_spec = WatchSpec::all("late catch-up from 1").start(1).with_prev_kv();
    let (mut late_ws, late_created) = open(&mut n.client, &late_spec).await;
    let mut late_out = vec![late_created];
    read_all(&mut late_ws, &mut late_out, &history, &late_spec).await;
    read_all(&mut mid_ws, &mut mid_out, &history, &mid_spec).await;
    read_all(&mut resume_ws, &mut resume_out, &history, &resume_spec).await;

    let mut traces = Vec::new();
    for (i, r) in readers.into_iter().enumerate() {
        let (mut rx, mut out) = r.await.unwrap();
        read_all(&mut rx, &mut out, &history, &specs[i]).await;
        // Stream-wide progress responses belong to the stream's only watcher.
        for r in out.iter_mut().filter(|r| r.watch_id == -1) {
            r.watch_id = 0;
        }
        traces.push(Trace::new(specs[i].clone(), out));
    }
    specs.clear();
    traces.push(Trace::new(mid_spec, mid_out));
    traces.push(Trace::new(late_spec, late_out));
    let resumed = Trace::new(resume_spec, resume_out);
    step!("check {} watchers + a resumed one", traces.len());
    for t in &traces {
        let progress = t.responses.iter().filter(|r| r.is_progress()).count();
        step!("{}: {} events in {} responses, {progress} progress", t.spec.name, t.events().count(), t.responses.len());
    }
    let mut v = check_all(&history, &traces);
    v.extend(check_resumed(&history, &cut, &resumed));
    assert!(v.is_empty(), "watch guarantees violated:\n{}", describe(&v));
    // The full-history watchers saw exactly the recorded history.
    let late = History::from_events(traces.last().unwrap().events().cloned());
    assert_eq!(late.events(), history.events(), "history read back by a watch equals the recorded one");
}
