//! The recorded history: one [`Op`] per client request, with its invocation and completion times (monotonic,
//! nanoseconds since the start of the run), what was asked ([`Call`]), what came back ([`Ret`]) and its
//! outcome ([`Outcome`]).
//!
//! Outcomes follow Jepsen: `ok` = the request took effect and we saw its result; `fail` = it certainly did not
//! take effect (e.g. InvalidArgument, or the connection was refused before anything was sent); `info` = we do
//! not know (timeout, "leader changed", a connection lost mid-request): it may have taken effect, at any time
//! after its invocation, or never.
//!
//! On disk a history is JSON lines (`history.jsonl`), one op per line:
//! ```text
//! {"id":7,"process":2,"member":1,"invoke":1200345,"complete":1900120,"outcome":"ok","f":"cas","key":"r/0/0",
//!  "expect":"3-5","value":"2-9","ret":{"r":"cas","succeeded":true},"revision":41}
//! ```

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Nanoseconds since the start of the run (monotonic clock).
pub type Nanos = u64;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Took effect; the result is known.
    Ok,
    /// Certainly did not take effect.
    Fail,
    /// Unknown: may have taken effect at any time after the invocation, or never.
    Info,
}

impl Outcome {
    /// "ok" / "fail" / "info".
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// One write inside a multi-key transaction (watch workload): a put of `value`, or a delete when `value` is
/// None.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnWrite {
    pub key: String,
    pub value: Option<String>,
}

/// What the client asked for. Values are unique per write, which the checkers rely on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Call {
    /// Linearizable Range of one key (`serializable` only in the deliberately broken mode).
    Read {
        key: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        serializable: bool,
    },
    /// Put.
    Write { key: String, value: String },
    /// Txn{VALUE(key) == expect -> Put(key, value); else -> Range(key)}.
    Cas { key: String, expect: String, value: String },
    /// Append workload: Txn{MOD(key) == expect_rev -> Put(key, value); else -> Range(key)} where `expect` is the
    /// list read at `expect_rev` (None = absent, rev 0) and `value` = expect + `elem`.
    Append { key: String, elem: u64, expect: Option<String>, expect_rev: i64, value: String },
    /// Kubernetes create: Txn{MOD(key) == 0 -> Put(key, value); else -> Range(key)}.
    Create { key: String, value: String },
    /// Kubernetes update: Txn{MOD(key) == rev -> Put(key, value); else -> Range(key)}; `expect` is the value
    /// the client read at `rev`.
    Update { key: String, rev: i64, expect: String, value: String },
    /// Kubernetes delete: Txn{MOD(key) == rev -> DeleteRange(key); else -> Range(key)}.
    Delete { key: String, rev: i64, expect: String },
    /// Paginated list of a prefix: the first page at the latest revision, the following ones at its revision.
    List { prefix: String, limit: i64 },
    /// Watch workload: a Put, a DeleteRange of one key, or a Txn of several writes (no compares).
    Txn { writes: Vec<TxnWrite> },
    /// Compact{revision}.
    Compact { revision: i64 },
    /// The apiserver's compaction lock: Txn{VERSION(compact_rev_key) == version -> Put(compact_rev_key,
    /// revision); else -> Range(compact_rev_key)}.
    CompactRevKey { version: i64, revision: i64 },
    /// LeaseGrant{ttl}.
    Grant { ttl: i64 },
    /// Put with a lease.
    LeasePut { key: String, value: String, lease: i64 },
    /// One keep-alive round trip on a LeaseKeepAlive stream.
    KeepAlive { lease: i64 },
    /// LeaseRevoke.
    Revoke { lease: i64 },
    /// Range over a prefix (lease workload): which keys exist.
    Scan { prefix: String },
}

impl Call {
    /// The function name, e.g. "read", "cas".
    pub fn f(&self) -> &'static str {
        match self {
            Call::Read { .. } => "read",
            Call::Write { .. } => "write",
            Call::Cas { .. } => "cas",
            Call::Append { .. } => "append",
            Call::Create { .. } => "create",
            Call::Update { .. } => "update",
            Call::Delete { .. } => "delete",
            Call::List { .. } => "list",
            Call::Txn { .. } => "txn",
            Call::Compact { .. } => "compact",
            Call::CompactRevKey { .. } => "compact_rev_key",
            Call::Grant { .. } => "grant",
            Call::LeasePut { .. } => "lease_put",
            Call::KeepAlive { .. } => "keepalive",
            Call::Revoke { .. } => "revoke",
            Call::Scan { .. } => "scan",
        }
    }

    /// The single key this call is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Call::Read { key, .. }
            | Call::Write { key, .. }
            | Call::Cas { key, .. }
            | Call::Append { key, .. }
            | Call::Create { key, .. }
            | Call::Update { key, .. }
            | Call::Delete { key, .. }
            | Call::LeasePut { key, .. } => Some(key),
            _ => None,
        }
    }

    /// True for calls that cannot change the store.
    pub fn is_read_only(&self) -> bool {
        matches!(self, Call::Read { .. } | Call::List { .. } | Call::Scan { .. })
    }
}

/// A key-value pair as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    pub key: String,
    pub value: String,
    pub mod_rev: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lease: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// What came back for an `ok` op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
pub enum Ret {
    /// A single-key read: the value (None = absent) and its mod_revision (0 when absent).
    Read { value: Option<String>, mod_rev: i64 },
    /// A write that took effect (Put, Txn without compares, Compact, LeasePut, Revoke).
    Done,
    /// A guarded Txn: whether the compare held and, when it did not, the key's current value (None = absent)
    /// and mod_revision from the else-branch Range.
    Cas {
        succeeded: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        current: Option<Option<String>>,
        #[serde(default, skip_serializing_if = "is_zero")]
        mod_rev: i64,
    },
    /// A list or scan: every key-value, at `revision`, and the number of pages it took.
    List { kvs: Vec<Kv>, pages: u32 },
    /// LeaseGrant: the lease id and granted TTL.
    Grant { lease: i64, ttl: i64 },
    /// KeepAlive: the TTL the leader answered (0 = the lease is gone).
    KeepAlive { ttl: i64 },
}

/// One client request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Unique per run, in invocation order.
    pub id: u64,
    /// The client (Jepsen's "process").
    pub process: usize,
    /// Index of the member the request was sent to.
    pub member: usize,
    pub invoke: Nanos,
    pub complete: Nanos,
    pub outcome: Outcome,
    #[serde(flatten)]
    pub call: Call,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<Ret>,
    /// Header revision of an ok response (for writes: the revision they created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Op {
    /// Latency in nanoseconds.
    pub fn latency(&self) -> Nanos {
        self.complete.saturating_sub(self.invoke)
    }

    /// One line for reports: `#7 p2 n1 [1.200345s..1.900120s] ok cas r/0/0 3-5 -> 2-9 => succeeded`.
    pub fn describe(&self) -> String {
        let call = match &self.call {
            Call::Read { key, serializable } => {
                format!("read {key}{}", if *serializable { " (serializable)" } else { "" })
            }
            Call::Write { key, value } => format!("write {key} = {value}"),
            Call::Cas { key, expect, value } => format!("cas {key} {expect} -> {value}"),
            Call::Append { key, elem, expect_rev, .. } => format!("append {key} {elem} (if mod_rev == {expect_rev})"),
            Call::Create { key, value } => format!("create {key} = {value}"),
            Call::Update { key, rev, expect, value } => format!("update {key} {expect}@{rev} -> {value}"),
            Call::Delete { key, rev, expect } => format!("delete {key} {expect}@{rev}"),
            Call::List { prefix, limit } => format!("list {prefix} (limit {limit})"),
            Call::Txn { writes } => {
                let w: Vec<String> = writes
                    .iter()
                    .map(|w| match &w.value {
                        Some(v) => format!("put {}={v}", w.key),
                        None => format!("del {}", w.key),
                    })
                    .collect();
                format!("txn [{}]", w.join(", "))
            }
            Call::Compact { revision } => format!("compact {revision}"),
            Call::CompactRevKey { version, revision } => {
                format!("compact_rev_key version {version} -> {revision}")
            }
            Call::Grant { ttl } => format!("grant ttl {ttl}"),
            Call::LeasePut { key, value, lease } => format!("put {key} = {value} lease {lease:x}"),
            Call::KeepAlive { lease } => format!("keepalive {lease:x}"),
            Call::Revoke { lease } => format!("revoke {lease:x}"),
            Call::Scan { prefix } => format!("scan {prefix}"),
        };
        let ret = match (&self.ret, self.outcome) {
            (Some(Ret::Read { value, mod_rev }), _) => match value {
                Some(v) => format!(" => {v} @{mod_rev}"),
                None => " => (absent)".to_string(),
            },
            (Some(Ret::Cas { succeeded: true, .. }), _) => " => succeeded".to_string(),
            (Some(Ret::Cas { succeeded: false, current, mod_rev }), _) => match current {
                Some(Some(v)) => format!(" => failed, current {v} @{mod_rev}"),
                Some(None) => " => failed, current (absent)".to_string(),
                None => " => failed".to_string(),
            },
            (Some(Ret::List { kvs, pages }), _) => format!(" => {} keys in {pages} pages", kvs.len()),
            (Some(Ret::Grant { lease, ttl }), _) => format!(" => lease {lease:x} ttl {ttl}"),
            (Some(Ret::KeepAlive { ttl }), _) => format!(" => ttl {ttl}"),
            (Some(Ret::Done), _) | (None, _) => String::new(),
        };
        let rev = self.revision.map(|r| format!(" rev {r}")).unwrap_or_default();
        let err = self.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default();
        format!(
            "#{} p{} n{} [{}..{}] {} {call}{ret}{rev}{err}",
            self.id,
            self.process,
            self.member + 1,
            secs(self.invoke),
            secs(self.complete),
            self.outcome.name()
        )
    }
}

/// Nanoseconds as seconds with 6 decimals, e.g. "1.200345s".
pub fn secs(n: Nanos) -> String {
    format!("{:.6}s", n as f64 / 1e9)
}

/// Collects ops from many concurrent clients. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<RecorderInner>,
}

struct RecorderInner {
    start: Instant,
    next_id: AtomicU64,
    ops: Mutex<Vec<Op>>,
}

/// An invoked, not yet completed op (from [`Recorder::invoke`]).
#[derive(Debug)]
pub struct Pending {
    id: u64,
    process: usize,
    member: usize,
    invoke: Nanos,
    call: Call,
}

impl Pending {
    /// The call.
    pub fn call(&self) -> &Call {
        &self.call
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Recorder {
        Recorder::with_start(Instant::now())
    }

    /// A recorder whose clock started at `start` (shared with the fault timeline).
    pub fn with_start(start: Instant) -> Recorder {
        Recorder { inner: Arc::new(RecorderInner { start, next_id: AtomicU64::new(0), ops: Mutex::new(Vec::new()) }) }
    }

    /// The run's time zero.
    pub fn start(&self) -> Instant {
        self.inner.start
    }

    /// Nanoseconds since time zero.
    pub fn now(&self) -> Nanos {
        self.inner.start.elapsed().as_nanos() as Nanos
    }

    /// Records the invocation of `call` by `process` against `member`.
    pub fn invoke(&self, process: usize, member: usize, call: Call) -> Pending {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        Pending { id, process, member, invoke: self.now(), call }
    }

    /// Records the completion of `p`.
    pub fn complete(
        &self,
        p: Pending,
        outcome: Outcome,
        ret: Option<Ret>,
        revision: Option<i64>,
        error: Option<String>,
    ) -> Op {
        let op = Op {
            id: p.id,
            process: p.process,
            member: p.member,
            invoke: p.invoke,
            complete: self.now().max(p.invoke),
            outcome,
            call: p.call,
            ret,
            revision,
            error,
        };
        self.lock().push(op.clone());
        op
    }

    /// Adds an op built elsewhere (tests, imports).
    pub fn push(&self, op: Op) {
        self.lock().push(op);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Op>> {
        self.inner.ops.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every completed op so far, ordered by invocation.
    pub fn ops(&self) -> Vec<Op> {
        let mut v = self.lock().clone();
        v.sort_by_key(|o| (o.invoke, o.id));
        v
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// Writes ops as JSON lines.
pub fn write_jsonl(path: &Path, ops: &[Op]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for op in ops {
        serde_json::to_writer(&mut f, op)?;
        f.write_all(b"\n")?;
    }
    f.flush()
}

/// Reads a `history.jsonl`.
pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Op>> {
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut out = Vec::new();
    for (i, line) in f.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let op: Op = serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        out.push(op);
    }
    Ok(out)
}
