//! Watch tests against real raftcd processes (and real etcd where its exact behaviour is the reference).
//!
//! Every test records the KV history from its own write responses (each write's revision from its header)
//! and checks what its watchers received with `raftcd_tests::watch_checker`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions, WatchResponseStream, WatchStream,
};
use raftcd_tests::client::{connect, etcdctl_path, skip_allowed, start_etcd, start_node};
use raftcd_tests::step;
use raftcd_tests::watch_checker::{
    check, check_all, check_resumed, describe, split_stream, EventKind, History, Response, Trace, WatchSpec, Write,
};
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------------------

/// The writes of a test, each with the revision its response reported.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<RevisionWrites>>>);

/// The writes of one revision.
type RevisionWrites = (i64, Vec<Write>);

impl Recorder {
    fn record(&self, rev: i64, ops: Vec<Write>) {
        if !ops.is_empty() {
            self.0.lock().unwrap().push((rev, ops));
        }
    }

    fn history(&self) -> History {
        let h = History::from_writes(self.0.lock().unwrap().clone()).expect("consistent write history");
        let missing = h.missing_revisions(2);
        assert!(missing.is_empty(), "revisions without a recorded write: {missing:?}");
        h
    }
}

/// One operation of a txn branch.
#[derive(Debug, Clone)]
enum Op {
    Put(String, String),
    Del(String),
    Get(String),
}

impl Op {
    fn txn_op(&self) -> TxnOp {
        match self {
            Op::Put(k, v) => TxnOp::put(k.as_str(), v.as_str(), None),
            Op::Del(k) => TxnOp::delete(k.as_str(), Some(DeleteOptions::new().with_prev_key())),
            Op::Get(k) => TxnOp::get(k.as_str(), None),
        }
    }
}

fn rev_of(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.map(|h| h.revision()).expect("response header")
}

async fn put(c: &mut Client, rec: &Recorder, key: &str, val: &str) -> i64 {
    let r = c.put(key, val, None).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
    let rev = rev_of(r.header());
    rec.record(rev, vec![Write::put(key, val)]);
    rev
}

/// Deletes one key; the revision when something was deleted.
async fn del(c: &mut Client, rec: &Recorder, key: &str) -> Option<i64> {
    let r =
        c.delete(key, Some(DeleteOptions::new().with_prev_key())).await.unwrap_or_else(|e| panic!("del {key}: {e}"));
    if r.deleted() == 0 {
        return None;
    }
    let rev = rev_of(r.header());
    rec.record(rev, r.prev_kvs().iter().map(|kv| Write::delete(kv.key().to_vec())).collect());
    Some(rev)
}

/// Deletes every key with `prefix` (one revision for all of them); the revision when something was deleted.
async fn del_prefix(c: &mut Client, rec: &Recorder, prefix: &str) -> Option<i64> {
    let opts = DeleteOptions::new().with_prefix().with_prev_key();
    let r = c.delete(prefix, Some(opts)).await.unwrap_or_else(|e| panic!("del prefix {prefix}: {e}"));
    if r.deleted() == 0 {
        return None;
    }
    assert_eq!(r.deleted() as usize, r.prev_kvs().len());
    let rev = rev_of(r.header());
    rec.record(rev, r.prev_kvs().iter().map(|kv| Write::delete(kv.key().to_vec())).collect());
    Some(rev)
}

/// Runs a txn `if version(cmp_key) == version then A else B`; records what it wrote. Returns (succeeded,
/// revision if it wrote).
async fn txn(
    c: &mut Client,
    rec: &Recorder,
    cmp: Option<(&str, i64)>,
    then: &[Op],
    otherwise: &[Op],
) -> (bool, Option<i64>) {
    let mut t = Txn::new();
    if let Some((k, v)) = cmp {
        t = t.when(vec![Compare::version(k, CompareOp::Equal, v)]);
    }
    t = t.and_then(then.iter().map(Op::txn_op).collect::<Vec<_>>());
    t = t.or_else(otherwise.iter().map(Op::txn_op).collect::<Vec<_>>());
    let r = c.txn(t).await.unwrap_or_else(|e| panic!("txn: {e}"));
    let ops = if r.succeeded() { then } else { otherwise };
    let mut writes = Vec::new();
    for (op, resp) in ops.iter().zip(r.op_responses()) {
        match (op, resp) {
            (Op::Put(k, v), TxnOpResponse::Put(_)) => writes.push(Write::put(k.as_str(), v.as_str())),
            (Op::Del(_), TxnOpResponse::Delete(d)) => {
                writes.extend(d.prev_kvs().iter().map(|kv| Write::delete(kv.key().to_vec())));
            }
            (Op::Get(_), TxnOpResponse::Get(_)) => {}
            (op, _) => panic!("txn response does not match op {op:?}"),
        }
    }
    let rev = rev_of(r.header());
    let wrote = !writes.is_empty();
    rec.record(rev, writes);
    (r.succeeded(), wrote.then_some(rev))
}

/// Something watch responses come from: a whole `WatchStream` or its receiving half.
trait Source {
    fn recv(&mut self) -> impl std::future::Future<Output = WatchResult> + Send;
}

type WatchResult = Result<Option<etcd_client::WatchResponse>, etcd_client::Error>;

impl Source for WatchStream {
    fn recv(&mut self) -> impl std::future::Future<Output = WatchResult> + Send {
        self.message()
    }
}

impl Source for WatchResponseStream {
    fn recv(&mut self) -> impl std::future::Future<Output = WatchResult> + Send {
        self.message()
    }
}

/// The next response within `t`; None on timeout. Panics on a stream error or end.
async fn next(ws: &mut impl Source, t: Duration) -> Option<Response> {
    match tokio::time::timeout(t, ws.recv()).await {
        Err(_) => None,
        Ok(Ok(Some(r))) => Some(Response::from_client(&r)),
        Ok(Ok(None)) => panic!("watch stream ended"),
        Ok(Err(e)) => panic!("watch stream failed: {e}"),
    }
}

/// Opens a stream with one watcher and returns it with its created response.
async fn open(c: &mut Client, spec: &WatchSpec) -> (WatchStream, Response) {
    open_with(c, spec, spec.options()).await
}

async fn open_with(c: &mut Client, spec: &WatchSpec, opts: WatchOptions) -> (WatchStream, Response) {
    let mut ws = c.watch(spec.key.clone(), Some(opts)).await.expect("watch");
    let created = next(&mut ws, Duration::from_secs(5)).await.expect("created response");
    assert!(created.created, "first response must be the created one: {created:?}");
    (ws, created)
}

/// Reads into `out` until `done(out)` holds, then for `grace` more (to catch extra or duplicate events).
/// Panics with `what` after `timeout`.
async fn read_until(
    ws: &mut impl Source,
    out: &mut Vec<Response>,
    timeout: Duration,
    grace: Duration,
    what: &str,
    done: impl Fn(&[Response]) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done(out) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{what}: timed out after {timeout:?}; got {} responses", out.len());
        if let Some(r) = next(ws, left).await {
            out.push(r);
        }
    }
    while let Some(r) = next(ws, grace).await {
        out.push(r);
    }
}

/// The revision of the last event `spec` must see in `history` from `start` (0 when none).
fn target(history: &History, spec: &WatchSpec, start: i64) -> i64 {
    history.expected(spec, start, i64::MAX).last().map(|e| e.revision()).unwrap_or(0)
}

fn max_event_rev(rs: &[Response]) -> i64 {
    rs.iter().flat_map(|r| r.events.iter()).map(|e| e.revision()).max().unwrap_or(0)
}

/// Reads a single-watcher stream until it has seen `spec`'s last expected event.
async fn read_all(ws: &mut impl Source, out: &mut Vec<Response>, history: &History, spec: &WatchSpec) {
    let start = Trace::new(spec.clone(), out.clone()).effective_start().expect("start known");
    let t = target(history, spec, start);
    read_until(ws, out, Duration::from_secs(20), Duration::from_millis(200), &spec.name, |rs| max_event_rev(rs) >= t)
        .await;
}

#[track_caller]
fn assert_clean(history: &History, traces: &[Trace]) {
    let v = check_all(history, traces);
    assert!(v.is_empty(), "watch guarantees violated:\n{}", describe(&v));
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// (type, key, value) of each event of the responses.
fn summary(rs: &[Response]) -> Vec<(EventKind, String, String)> {
    rs.iter().flat_map(|r| r.events.iter()).map(|e| (e.kind, s(&e.kv.key), s(&e.kv.value))).collect()
}

#[path = "watch/etcdctl.rs"]
mod etcdctl;
#[path = "watch/load.rs"]
mod load;
#[path = "watch/ranges.rs"]
mod ranges;
#[path = "watch/streams.rs"]
mod streams;
