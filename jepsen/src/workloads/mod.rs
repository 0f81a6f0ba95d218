//! Workloads: concurrent clients that issue requests through the members and record each one as an
//! [`Op`]. Each workload runs its clients until `stop`, waits for `healed` (every fault repaired), runs its
//! final phase (final reads, watchers catching up, lease expiry) and returns what its checkers need.
//!
//! Every client is bound to a member (`process % members`) and moves to a random other member after an
//! error, as a client library with several endpoints would.

pub mod append;
pub mod kubernetes;
pub mod lease;
pub mod register;
pub mod watch;
pub mod watcher;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raftcd_proto::etcdserverpb::{
    compare, request_op, response_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::watch as tw;

use crate::checker::watch::WatchSession;
use crate::client::{call, CallError, Conn};
use crate::cluster::Cluster;
use crate::history::{Call, Op, Outcome, Pending, Recorder, Ret};

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    Register,
    Append,
    Watch,
    Lease,
    Kubernetes,
    /// The deliberately broken client: serializable reads from an isolated member (must be caught).
    StaleRead,
}

impl Workload {
    /// Every real workload (not the broken one).
    pub const ALL: [Workload; 5] =
        [Workload::Register, Workload::Append, Workload::Watch, Workload::Lease, Workload::Kubernetes];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Append => "append",
            Workload::Watch => "watch",
            Workload::Lease => "lease",
            Workload::Kubernetes => "kubernetes",
            Workload::StaleRead => "stale-read",
        }
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Workload::ALL
            .into_iter()
            .chain([Workload::StaleRead])
            .find(|w| w.name() == s || (s == "k8s" && *w == Workload::Kubernetes))
            .ok_or_else(|| format!("unknown workload {s:?} (register, append, watch, lease, kubernetes, stale-read)"))
    }
}

/// What the workload clients share.
pub struct Ctx {
    pub cluster: Arc<Cluster>,
    /// Client URL of every member.
    pub urls: Vec<String>,
    pub rec: Recorder,
    pub seed: u64,
    /// Number of clients.
    pub concurrency: usize,
    /// Client-side timeout of one request (then: info).
    pub op_timeout: Duration,
    /// Pause between two requests of one client.
    pub think: Duration,
    /// Reads with serializable = true (not linearizable: the deliberately broken mode).
    pub serializable_reads: bool,
    /// Ops per key before clients move to a fresh key (register, append).
    pub ops_per_key: u64,
    /// Keys in use at once (register, append).
    pub keys: usize,
    /// Election timeout of the members (for lease grace periods).
    pub election_timeout: Duration,
}

impl Ctx {
    /// Fresh connections to every member (one set per client).
    pub fn conns(&self) -> Vec<Conn> {
        self.urls.iter().enumerate().map(|(i, u)| Conn::new(i, u)).collect()
    }

    /// A seeded RNG for client `process`.
    pub fn rng(&self, process: usize) -> StdRng {
        StdRng::seed_from_u64(self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(process as u64 + 1))
    }
}

/// The run's phase signals.
#[derive(Clone)]
pub struct Signals {
    /// Stop issuing load.
    pub stop: tw::Receiver<bool>,
    /// Every fault is healed and the cluster has a leader again.
    pub healed: tw::Receiver<bool>,
}

impl Signals {
    /// True once stop was signalled.
    pub fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Waits for the healed signal.
    pub async fn wait_healed(&mut self) {
        let _ = self.healed.wait_for(|h| *h).await;
    }
}

/// What a workload hands to its checkers, beside the history.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Output {
    /// The final linearizable read of every key (register, append).
    pub final_state: BTreeMap<String, Option<String>>,
    /// Watch sessions (watch, kubernetes).
    pub sessions: Vec<WatchSession>,
    /// The reference history events (watch: a watch from revision 1 at the end).
    pub reference: Vec<crate::checker::watch::WEvent>,
    /// First revision written by the workload.
    pub first_revision: i64,
    /// The store's revision after the final phase.
    pub final_revision: Option<i64>,
    /// The id of the final scan (lease).
    pub final_scan: Option<u64>,
    /// When the workload learnt that every fault was healed.
    #[serde(default)]
    pub healed_at: u64,
    /// Problems found by the final phase itself (e.g. the final state disagrees with the reference).
    pub problems: Vec<String>,
    /// The watched / listed prefix.
    pub prefix: String,
}

/// One client's view: its process id, its connections and the member it currently uses.
pub struct Client {
    pub process: usize,
    pub conns: Vec<Conn>,
    pub member: usize,
    pub rng: StdRng,
    pub ctx: Arc<Ctx>,
}

impl Client {
    /// Client `process`, bound to member `process % n`.
    pub fn new(ctx: Arc<Ctx>, process: usize) -> Client {
        let conns = ctx.conns();
        let member = process % conns.len();
        Client { process, member, rng: ctx.rng(process), conns, ctx }
    }

    /// Moves to a random other member (after an error).
    pub fn hop(&mut self) {
        let n = self.conns.len();
        if n > 1 {
            self.member = (self.member + self.rng.random_range(1..n)) % n;
        }
    }

    /// The current member's connection.
    pub fn conn(&self) -> &Conn {
        &self.conns[self.member]
    }

    /// Sleeps for the think time (jittered).
    pub async fn think(&mut self) {
        let t = self.ctx.think.mul_f64(0.5 + self.rng.random::<f64>());
        tokio::time::sleep(t).await;
    }

    /// Records the invocation of `call` on the current member.
    pub fn invoke(&self, call: Call) -> Pending {
        self.ctx.rec.invoke(self.process, self.member, call)
    }

    /// Records a failed request (fail, or info for writes) and hops to another member.
    pub fn failed(&mut self, p: Pending, e: CallError) -> Op {
        let outcome = if p.call().is_read_only() { Outcome::Fail } else { e.outcome };
        let op = self.ctx.rec.complete(p, outcome, None, None, Some(e.to_string()));
        self.hop();
        op
    }

    /// A linearizable (or, in the broken mode, serializable) read of `key`.
    pub async fn read(&mut self, key: &str) -> Op {
        let serializable = self.ctx.serializable_reads;
        let p = self.invoke(Call::Read { key: key.to_string(), serializable });
        let mut kv = self.conn().kv.clone();
        let req = RangeRequest { key: key.as_bytes().to_vec(), serializable, ..Default::default() };
        match call(self.ctx.op_timeout, kv.range(req)).await {
            Ok(r) => {
                let (value, mod_rev) = match r.kvs.first() {
                    Some(kv) => (Some(String::from_utf8_lossy(&kv.value).into_owned()), kv.mod_revision),
                    None => (None, 0),
                };
                let rev = r.header.map(|h| h.revision);
                self.ctx.rec.complete(p, Outcome::Ok, Some(Ret::Read { value, mod_rev }), rev, None)
            }
            Err(e) => self.failed(p, e),
        }
    }

    /// A blind Put.
    pub async fn write(&mut self, key: &str, value: &str) -> Op {
        let p = self.invoke(Call::Write { key: key.to_string(), value: value.to_string() });
        let mut kv = self.conn().kv.clone();
        let req = PutRequest { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec(), ..Default::default() };
        match call(self.ctx.op_timeout, kv.put(req)).await {
            Ok(r) => {
                let rev = r.header.map(|h| h.revision);
                self.ctx.rec.complete(p, Outcome::Ok, Some(Ret::Done), rev, None)
            }
            Err(e) => self.failed(p, e),
        }
    }

    /// Txn{compare -> then; else -> Range(key)}, recorded as `c` with a [`Ret::Cas`] result.
    pub async fn guarded(&mut self, c: Call, key: &str, compare: Compare, then: RequestOp) -> Op {
        let p = self.invoke(c);
        let mut kv = self.conn().kv.clone();
        let range = RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })),
        };
        let req = TxnRequest { compare: vec![compare], success: vec![then], failure: vec![range] };
        match call(self.ctx.op_timeout, kv.txn(req)).await {
            Ok(r) => {
                let rev = r.header.as_ref().map(|h| h.revision);
                self.ctx.rec.complete(p, Outcome::Ok, Some(cas_ret(&r)), rev, None)
            }
            Err(e) => self.failed(p, e),
        }
    }
}

/// The [`Ret::Cas`] of a guarded Txn whose else branch is a Range of the key.
pub fn cas_ret(r: &TxnResponse) -> Ret {
    if r.succeeded {
        return Ret::Cas { succeeded: true, current: None, mod_rev: 0 };
    }
    let range = r.responses.first().and_then(|op| match &op.response {
        Some(response_op::Response::ResponseRange(rr)) => Some(rr),
        _ => None,
    });
    match range {
        Some(rr) => match rr.kvs.first() {
            Some(kv) => Ret::Cas {
                succeeded: false,
                current: Some(Some(String::from_utf8_lossy(&kv.value).into_owned())),
                mod_rev: kv.mod_revision,
            },
            None => Ret::Cas { succeeded: false, current: Some(None), mod_rev: 0 },
        },
        None => Ret::Cas { succeeded: false, current: None, mod_rev: 0 },
    }
}

/// A Compare on `key`.
pub fn cmp_eq(key: &str, target: compare::CompareTarget, value: compare::TargetUnion) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(value),
        range_end: vec![],
    }
}

/// A Put request op.
pub fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

/// Keys used for a bounded number of ops each: slot s uses `prefix s/g` for its g-th generation, moving to
/// the next generation after `per_key` ops, which keeps each key's history small for the checker.
pub struct KeySpace {
    prefix: String,
    per_key: u64,
    counters: Vec<AtomicU64>,
}

impl KeySpace {
    /// `slots` keys in use at once.
    pub fn new(prefix: &str, slots: usize, per_key: u64) -> KeySpace {
        KeySpace {
            prefix: prefix.to_string(),
            per_key: per_key.max(1),
            counters: (0..slots.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A key for the next op.
    pub fn pick(&self, rng: &mut StdRng) -> String {
        let s = rng.random_range(0..self.counters.len());
        let n = self.counters[s].fetch_add(1, Ordering::Relaxed);
        format!("{}{s}/{}", self.prefix, n / self.per_key)
    }

    /// Every key used so far.
    pub fn used(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (s, c) in self.counters.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            for g in 0..=((n - 1) / self.per_key) {
                out.push(format!("{}{s}/{g}", self.prefix));
            }
        }
        out
    }
}

/// Reads `keys` linearizably at the end (retrying each through every member for up to `within`): the final
/// state. Every attempt is recorded.
pub async fn final_reads(
    ctx: Arc<Ctx>,
    process: usize,
    keys: &[String],
    within: Duration,
) -> (BTreeMap<String, Option<String>>, Vec<String>) {
    let mut c = Client::new(ctx, process);
    let mut state = BTreeMap::new();
    let mut problems = Vec::new();
    for k in keys {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let op = c.read(k).await;
            if let (Outcome::Ok, Some(Ret::Read { value, .. })) = (op.outcome, &op.ret) {
                state.insert(k.clone(), value.clone());
                break;
            }
            if tokio::time::Instant::now() > deadline {
                problems.push(format!("final read of {k} failed for {within:?}: {}", op.error.unwrap_or_default()));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    (state, problems)
}

/// The store's current revision from a linearizable Range through any member (retrying up to `within`).
pub async fn current_revision(ctx: &Ctx, within: Duration) -> Option<i64> {
    let conns = ctx.conns();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        for c in &conns {
            let mut kv = c.kv.clone();
            let req = RangeRequest { key: b"raftcd-jepsen/rev".to_vec(), ..Default::default() };
            if let Ok(r) = call(Duration::from_secs(3), kv.range(req)).await {
                return r.header.map(|h| h.revision);
            }
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
