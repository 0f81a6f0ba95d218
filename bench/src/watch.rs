//! Watch scenarios. Watchers (spread over watch streams, the streams spread over the connections) all
//! watch one fresh key; one client then puts to it `--puts` times. Each put's value carries its sequence
//! number, so every delivered event is matched to the instant its put was sent: the latency is put-sent to
//! event-received, as etcd's `watch-latency`. Every watcher must receive every acknowledged put exactly
//! once and in order; anything else is counted (missed, duplicates, out of order).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use raftcd_proto::etcdserverpb::watch_request::RequestUnion;
use raftcd_proto::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::{Global, WatchArgs};
use crate::conn::{find_leader, pool};
use crate::keys::{parse_seq, seq_value};
use crate::report::{ErrorSamples, Latency, Report};

/// The settings of one watch run after defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchPlan {
    pub watchers: u64,
    pub streams: u64,
    pub puts: u64,
    pub put_rate: f64,
    pub val_size: usize,
    pub drain_timeout: Duration,
}

impl WatchPlan {
    /// `watch` defaults to a latency measurement, `watch-fanout` to many watchers.
    pub fn new(a: &WatchArgs, fanout: bool) -> WatchPlan {
        let (w, s, p, r) = if fanout { (10_000, 100, 20, 10.0) } else { (100, 10, 200, 50.0) };
        let watchers = a.watchers.unwrap_or(w);
        WatchPlan {
            watchers,
            streams: a.streams.unwrap_or(s).min(watchers),
            puts: a.puts.unwrap_or(p),
            put_rate: a.put_rate.unwrap_or(r),
            val_size: a.val_size,
            drain_timeout: a.drain_timeout,
        }
    }
}

/// How many watchers each of `streams` streams carries (as even as possible).
pub fn split(watchers: u64, streams: u64) -> Vec<u64> {
    (0..streams).map(|s| watchers / streams + u64::from(s < watchers % streams)).collect()
}

/// A set of sequence numbers below a fixed bound.
#[derive(Debug, Clone)]
pub struct SeqSet(Vec<u64>);

impl SeqSet {
    pub fn new(n: u64) -> SeqSet {
        SeqSet(vec![0; n.div_ceil(64) as usize])
    }

    /// Adds `seq`; false if it was already there (or out of range).
    pub fn insert(&mut self, seq: u64) -> bool {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        match self.0.get_mut(w) {
            Some(word) if *word & (1 << b) == 0 => {
                *word |= 1 << b;
                true
            }
            _ => false,
        }
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.0.get((seq / 64) as usize).is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }
}

/// What one watcher saw.
#[derive(Debug, Clone)]
pub struct WatcherLog {
    pub seen: SeqSet,
    pub last: Option<u64>,
    pub duplicates: u64,
    pub out_of_order: u64,
}

impl WatcherLog {
    pub fn new(puts: u64) -> WatcherLog {
        WatcherLog { seen: SeqSet::new(puts), last: None, duplicates: 0, out_of_order: 0 }
    }

    /// Notes one delivered event; true if it is the first delivery of `seq` to this watcher.
    pub fn deliver(&mut self, seq: u64) -> bool {
        if self.last.is_some_and(|l| seq < l) {
            self.out_of_order += 1;
        }
        self.last = Some(self.last.map_or(seq, |l| l.max(seq)));
        let first = self.seen.insert(seq);
        if !first {
            self.duplicates += 1;
        }
        first
    }

    /// Acknowledged puts this watcher never received.
    pub fn missed(&self, acked: &[bool]) -> u64 {
        acked.iter().enumerate().filter(|(seq, ok)| **ok && !self.seen.contains(*seq as u64)).count() as u64
    }
}

struct StreamOutcome {
    latency: Latency,
    watchers: Vec<WatcherLog>,
    canceled: u64,
    unknown_events: u64,
    errors: ErrorSamples,
}

/// Shared clocks: nanoseconds since `base` plus one (0 = not yet) at which each put was sent, and the
/// latest delivery of each put to any watcher.
struct Clocks {
    base: Instant,
    sent: Vec<AtomicU64>,
    last_delivery: Vec<AtomicU64>,
    delivered: AtomicU64,
}

impl Clocks {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }
}

fn create_request(key: &[u8]) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

/// Runs `watch` (fanout = false) or `watch-fanout` (fanout = true).
pub async fn run(g: &Global, a: &WatchArgs, fanout: bool) -> Result<Report> {
    let plan = WatchPlan::new(a, fanout);
    let name = if fanout { "watch-fanout" } else { "watch" };
    // Watchers use every endpoint (--target-leader only moves the puts): followers' delivery counts too.
    let mut wg = g.clone();
    wg.target_leader = false;
    let conns = pool(&wg).await?;
    let put_conn = if g.target_leader {
        crate::conn::connect(&find_leader(&g.endpoints.0, g.dial_timeout).await?, g.dial_timeout).await?
    } else {
        conns[0].clone()
    };
    let key = format!("bench/watch/{:016x}", rand::random::<u64>()).into_bytes();
    let clocks = Arc::new(Clocks {
        base: Instant::now(),
        sent: (0..plan.puts).map(|_| AtomicU64::new(0)).collect(),
        last_delivery: (0..plan.puts).map(|_| AtomicU64::new(0)).collect(),
        delivered: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // Create the watchers, stream by stream, each stream's creates pipelined.
    let setup = Instant::now();
    let mut receivers = Vec::new();
    for (s, n) in split(plan.watchers, plan.streams).into_iter().enumerate() {
        let conn = &conns[s % conns.len()];
        let (tx, rx) = mpsc::channel(n as usize + 8);
        for _ in 0..n {
            tx.try_send(create_request(&key)).expect("channel sized for the creates");
        }
        // The server sends headers with its first answer, so the creates go before awaiting the call.
        let mut stream =
            conn.watch().watch(ReceiverStream::new(rx)).await.context("opening a watch stream")?.into_inner();
        let mut ids: HashMap<i64, usize> = HashMap::with_capacity(n as usize);
        while (ids.len() as u64) < n {
            let resp = stream
                .message()
                .await
                .context("creating watchers")?
                .context("watch stream ended while creating watchers")?;
            if resp.canceled {
                bail!("watch creation refused: {}", resp.cancel_reason);
            }
            if resp.created {
                let idx = ids.len();
                ids.insert(resp.watch_id, idx);
            }
        }
        let (clocks, mut stop) = (clocks.clone(), stop_rx.clone());
        let puts = plan.puts;
        receivers.push(tokio::spawn(async move {
            let _keep_open = tx;
            let mut out = StreamOutcome {
                latency: Latency::new(),
                watchers: (0..ids.len()).map(|_| WatcherLog::new(puts)).collect(),
                canceled: 0,
                unknown_events: 0,
                errors: ErrorSamples::default(),
            };
            loop {
                let msg = tokio::select! {
                    _ = stop.changed() => break,
                    m = stream.message() => m,
                };
                let resp = match msg {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        out.errors.note("watch stream ended".into());
                        break;
                    }
                    Err(e) => {
                        out.errors.note(format!("{:?}: {}", e.code(), e.message()));
                        break;
                    }
                };
                if resp.canceled {
                    out.canceled += 1;
                    continue;
                }
                let now = clocks.now();
                let Some(&w) = ids.get(&resp.watch_id) else {
                    out.unknown_events += resp.events.len() as u64;
                    continue;
                };
                for ev in &resp.events {
                    let Some(seq) = ev.kv.as_ref().and_then(|kv| parse_seq(&kv.value)).filter(|s| *s < puts) else {
                        out.unknown_events += 1;
                        continue;
                    };
                    if out.watchers[w].deliver(seq) {
                        let sent = clocks.sent[seq as usize].load(Ordering::Acquire);
                        if sent > 0 {
                            out.latency.record_us(now.saturating_sub(sent) / 1000);
                        }
                        clocks.last_delivery[seq as usize].fetch_max(now, Ordering::AcqRel);
                        clocks.delivered.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
            out
        }));
    }
    let setup_secs = setup.elapsed().as_secs_f64();

    // Put, paced, one at a time.
    let mut kv = put_conn.kv();
    let mut put_latency = Latency::new();
    let mut put_errors = ErrorSamples::default();
    let mut acked = vec![false; plan.puts as usize];
    let start = Instant::now();
    for seq in 0..plan.puts {
        if plan.put_rate > 0.0 {
            tokio::time::sleep_until(start + crate::runner::pace_offset(seq, plan.put_rate)).await;
        }
        let req = PutRequest { key: key.clone(), value: seq_value(seq, plan.val_size), ..Default::default() };
        clocks.sent[seq as usize].store(clocks.now(), Ordering::Release);
        let t = Instant::now();
        match kv.put(req).await {
            Ok(_) => {
                put_latency.record(t.elapsed());
                acked[seq as usize] = true;
            }
            Err(e) => put_errors.note(format!("put: {:?}: {}", e.code(), e.message())),
        }
    }
    let acked_n = acked.iter().filter(|a| **a).count() as u64;
    let expected = acked_n * plan.watchers;

    // Wait for the events still on their way.
    let deadline = Instant::now() + plan.drain_timeout;
    while clocks.delivered.load(Ordering::Acquire) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed();
    let _ = stop_tx.send(true);

    let mut report = Report::new(name, plan.watchers, g.conns);
    let mut errors = put_errors;
    let (mut missed, mut dups, mut ooo, mut canceled, mut unknown) = (0, 0, 0, 0, 0);
    for r in receivers {
        let out = r.await?;
        report.latency.add(&out.latency);
        for w in &out.watchers {
            missed += w.missed(&acked);
            dups += w.duplicates;
            ooo += w.out_of_order;
        }
        canceled += out.canceled;
        unknown += out.unknown_events;
        errors.merge(out.errors);
    }
    let mut complete = Latency::new();
    for ((sent, last), ok) in clocks.sent.iter().zip(&clocks.last_delivery).zip(&acked) {
        let (s, l) = (sent.load(Ordering::Acquire), last.load(Ordering::Acquire));
        if *ok && s > 0 && l >= s {
            complete.record_us((l - s) / 1000);
        }
    }
    report.ops = report.latency.count();
    report.errors = plan.puts - acked_n;
    report.elapsed = elapsed;
    report.classes = vec![("put".into(), put_latency), ("all-watchers".into(), complete)];
    report.error_samples = errors.0;
    report.set("watchers", plan.watchers);
    report.set("streams", plan.streams);
    report.set("puts", plan.puts);
    report.set("puts_acked", acked_n);
    report.set("expected_deliveries", expected);
    report.set("missed", missed);
    report.set("duplicates", dups);
    report.set("out_of_order", ooo);
    report.set("canceled", canceled);
    report.set("unknown_events", unknown);
    report.set("complete", missed == 0 && dups == 0 && ooo == 0 && canceled == 0);
    report.set("setup_secs", crate::report::round3(setup_secs));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_even() {
        assert_eq!(split(10, 3), vec![4, 3, 3]);
        assert_eq!(split(10_000, 100).iter().sum::<u64>(), 10_000);
        assert!(split(10_000, 100).iter().all(|&n| n == 100));
        assert_eq!(split(2, 2), vec![1, 1]);
    }

    #[test]
    fn plan_defaults() {
        let a = WatchArgs {
            watchers: None,
            streams: None,
            puts: None,
            put_rate: None,
            val_size: 8,
            drain_timeout: Duration::from_secs(1),
        };
        let f = WatchPlan::new(&a, true);
        assert_eq!((f.watchers, f.streams), (10_000, 100));
        let w = WatchPlan::new(&WatchArgs { watchers: Some(3), ..a }, false);
        assert_eq!((w.watchers, w.streams), (3, 3), "no more streams than watchers");
    }

    #[test]
    fn seq_set() {
        let mut s = SeqSet::new(130);
        assert!(s.insert(0) && s.insert(64) && s.insert(129));
        assert!(!s.insert(64), "second insert");
        assert!(!s.insert(200), "out of range");
        assert!(s.contains(129) && !s.contains(1) && !s.contains(500));
    }

    #[test]
    fn watcher_log_accounting() {
        let mut w = WatcherLog::new(5);
        assert!(w.deliver(0));
        assert!(w.deliver(2));
        assert!(!w.deliver(2));
        assert!(w.deliver(1));
        assert_eq!(w.duplicates, 1);
        assert_eq!(w.out_of_order, 1);
        assert_eq!(w.missed(&[true, true, true, true, false]), 1, "3 missed; 4 was not acknowledged");
    }
}
