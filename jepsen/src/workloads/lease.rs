//! The lease workload, under the prefix `jl/`:
//! - keepers (2 clients) grant a lease (TTL 10 s), attach keys to it and keep it alive every second over a
//!   LeaseKeepAlive stream (each round trip recorded; a broken stream is reopened through another member; a
//!   lease found gone, TTL 0, is replaced by a new one);
//! - lapsers (2) grant short leases (TTL 2 s) and attach keys, never keeping them alive;
//! - a revoker grants a lease (TTL 6 s), attaches a key and revokes it a second later;
//! - scanners read the whole prefix linearizably, over and over.
//!
//! After the heal the keepers go on while the workload waits past the TTL of every lease not kept alive
//! (plus a grace for the leader to notice and commit the revoke), then takes the final scan. Checked by
//! [`crate::checker::lease`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use raftcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest, PutRequest, RangeRequest,
};
use rand::Rng;
use tokio::sync::watch as tw;
use tokio_stream::wrappers::ReceiverStream;

use super::{Client, Ctx, Output, Signals};
use crate::client::{call, prefix_end, CallError};
use crate::history::{Call, Kv, Op, Outcome, Ret};

/// The prefix of every lease key.
pub const PREFIX: &str = "jl/";
/// TTL of kept-alive leases (seconds).
const KEEP_TTL: i64 = 10;
/// TTL of lapsing leases (seconds).
const LAPSE_TTL: i64 = 2;
/// TTL of the leases the revoker revokes (a second after the grant; they lapse when the revoke fails).
const REVOKE_TTL: i64 = 6;

async fn grant(c: &mut Client, ttl: i64) -> Option<(i64, i64)> {
    let p = c.invoke(Call::Grant { ttl });
    let mut l = c.conn().lease.clone();
    match call(c.ctx.op_timeout, l.lease_grant(LeaseGrantRequest { ttl, id: 0 })).await {
        Ok(r) if r.error.is_empty() => {
            c.ctx.rec.complete(p, Outcome::Ok, Some(Ret::Grant { lease: r.id, ttl: r.ttl }), None, None);
            Some((r.id, r.ttl))
        }
        Ok(r) => {
            c.ctx.rec.complete(p, Outcome::Fail, None, None, Some(r.error));
            None
        }
        Err(e) => {
            c.failed(p, e);
            None
        }
    }
}

async fn lease_put(c: &mut Client, key: &str, value: &str, lease: i64) -> Op {
    let p = c.invoke(Call::LeasePut { key: key.into(), value: value.into(), lease });
    let mut kv = c.conn().kv.clone();
    let req = PutRequest { key: key.into(), value: value.into(), lease, ..Default::default() };
    match call(c.ctx.op_timeout, kv.put(req)).await {
        Ok(r) => c.ctx.rec.complete(p, Outcome::Ok, Some(Ret::Done), r.header.map(|h| h.revision), None),
        Err(e) => c.failed(p, e),
    }
}

/// A linearizable scan of the prefix.
pub async fn scan(c: &mut Client) -> Op {
    let p = c.invoke(Call::Scan { prefix: PREFIX.into() });
    let mut kv = c.conn().kv.clone();
    let req = RangeRequest { key: PREFIX.into(), range_end: prefix_end(PREFIX), ..Default::default() };
    match call(c.ctx.op_timeout, kv.range(req)).await {
        Ok(r) => {
            let kvs = r
                .kvs
                .iter()
                .map(|kv| Kv {
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    value: String::from_utf8_lossy(&kv.value).into_owned(),
                    mod_rev: kv.mod_revision,
                    version: kv.version,
                    lease: kv.lease,
                })
                .collect();
            c.ctx.rec.complete(p, Outcome::Ok, Some(Ret::List { kvs, pages: 1 }), r.header.map(|h| h.revision), None)
        }
        Err(e) => c.failed(p, e),
    }
}

type KeepAliveStream = (tokio::sync::mpsc::Sender<LeaseKeepAliveRequest>, tonic::Streaming<LeaseKeepAliveResponse>);

/// One keep-alive round trip on `stream` (opened through the client's member when None).
async fn keep_alive(c: &mut Client, stream: &mut Option<KeepAliveStream>, lease: i64) -> Option<i64> {
    let p = c.invoke(Call::KeepAlive { lease });
    let t = c.ctx.op_timeout;
    let res: Result<i64, CallError> = async {
        if stream.is_none() {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let mut l = c.conn().lease.clone();
            let s = crate::client::call(t, l.lease_keep_alive(ReceiverStream::new(rx))).await?;
            *stream = Some((tx, s));
        }
        let (tx, s) = stream.as_mut().expect("opened above");
        let lost =
            || CallError { outcome: Outcome::Info, code: tonic::Code::Unavailable, message: "stream closed".into() };
        tx.send(LeaseKeepAliveRequest { id: lease }).await.map_err(|_| lost())?;
        match tokio::time::timeout(t, s.message()).await {
            Ok(Ok(Some(r))) => Ok(r.ttl),
            Ok(Ok(None)) => Err(lost()),
            Ok(Err(st)) => Err(crate::client::classify(&st)),
            Err(_) => Err(CallError {
                outcome: Outcome::Info,
                code: tonic::Code::DeadlineExceeded,
                message: format!("client timeout after {t:?}"),
            }),
        }
    }
    .await;
    match res {
        Ok(ttl) => {
            c.ctx.rec.complete(p, Outcome::Ok, Some(Ret::KeepAlive { ttl }), None, None);
            Some(ttl)
        }
        Err(e) => {
            *stream = None;
            c.failed(p, e);
            None
        }
    }
}

async fn keeper(mut c: Client, stop: Signals, keep: tw::Receiver<bool>) {
    let mut lease: Option<i64> = None;
    let mut keys = 0;
    let mut stream = None;
    let mut n = 0;
    while !*keep.borrow() {
        let Some(id) = lease else {
            lease = grant(&mut c, KEEP_TTL).await.map(|(id, _)| id);
            keys = 0;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if keys < 4 && !stop.stopped() {
            n += 1;
            let key = format!("{PREFIX}keep/{}/{n}", c.process);
            let value = format!("{}-{n}", c.process);
            let op = lease_put(&mut c, &key, &value, id).await;
            if op.outcome == Outcome::Ok {
                keys += 1;
            }
        }
        if let Some(0) = keep_alive(&mut c, &mut stream, id).await {
            lease = None; // gone: start over with a new lease
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}

async fn lapser(mut c: Client, stop: Signals) {
    let mut n = 0;
    while !stop.stopped() {
        if let Some((id, _)) = grant(&mut c, LAPSE_TTL).await {
            for _ in 0..c.rng.random_range(1..=2) {
                n += 1;
                let key = format!("{PREFIX}lapse/{}/{n}", c.process);
                let value = format!("{}-{n}", c.process);
                lease_put(&mut c, &key, &value, id).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}

async fn revoker(mut c: Client, stop: Signals) {
    let mut n = 0;
    while !stop.stopped() {
        if let Some((id, _)) = grant(&mut c, REVOKE_TTL).await {
            n += 1;
            let key = format!("{PREFIX}revoke/{}/{n}", c.process);
            let value = format!("{}-{n}", c.process);
            lease_put(&mut c, &key, &value, id).await;
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let p = c.invoke(Call::Revoke { lease: id });
            let mut l = c.conn().lease.clone();
            match call(c.ctx.op_timeout, l.lease_revoke(LeaseRevokeRequest { id })).await {
                Ok(r) => {
                    c.ctx.rec.complete(p, Outcome::Ok, Some(Ret::Done), r.header.map(|h| h.revision), None);
                }
                Err(e) => {
                    c.failed(p, e);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The highest raft term any member reports (None when none answers).
async fn leader_term(ctx: &Ctx) -> Option<u64> {
    let mut best = None;
    for c in ctx.conns() {
        if let Ok(st) = crate::client::status(&c, Duration::from_secs(2)).await {
            best = best.max(Some(st.raft_term));
        }
    }
    best
}

/// Runs the workload (see the module doc).
pub async fn run(ctx: Arc<Ctx>, mut sig: Signals) -> Result<Output> {
    let (keep_tx, keep_rx) = tw::channel(false);
    let mut keepers = Vec::new();
    let mut tasks = Vec::new();
    let clients = ctx.concurrency.max(7);
    for p in 0..clients {
        let c = Client::new(ctx.clone(), p);
        let s = sig.clone();
        match p {
            0 | 1 => keepers.push(tokio::spawn(keeper(c, s, keep_rx.clone()))),
            2 | 3 => tasks.push(tokio::spawn(lapser(c, s))),
            4 => tasks.push(tokio::spawn(revoker(c, s))),
            _ => tasks.push(tokio::spawn(async move {
                let mut c = c;
                while !s.stopped() {
                    scan(&mut c).await;
                    c.think().await;
                }
            })),
        }
    }
    for t in tasks {
        t.await?;
    }
    sig.wait_healed().await;
    // Wait until every lease that was not kept alive is past its TTL (from the later of its grant and the
    // heal: a leader change restarts TTLs) plus the checker's grace and some slack. A leader change after
    // the heal (a restarted member may still force an election) restarts the wait from when it was seen.
    let mut healed_at = ctx.rec.now();
    let mut term = leader_term(&ctx).await;
    for _ in 0..3 {
        let latest = ctx
            .rec
            .ops()
            .iter()
            .filter_map(|o| match (&o.call, &o.ret) {
                (Call::Grant { ttl }, Some(Ret::Grant { .. })) if *ttl != KEEP_TTL => {
                    Some(o.complete.max(healed_at) + Duration::from_secs(*ttl as u64).as_nanos() as u64)
                }
                _ => None,
            })
            .max()
            .unwrap_or(healed_at);
        let slack = crate::checker::lease::GRACE + Duration::from_secs(2) + ctx.election_timeout * 2;
        let until = latest + slack.as_nanos() as u64;
        tokio::time::sleep(Duration::from_nanos(until.saturating_sub(ctx.rec.now()))).await;
        let now_term = leader_term(&ctx).await;
        if now_term == term {
            break;
        }
        term = now_term;
        healed_at = ctx.rec.now();
    }
    let mut c = Client::new(ctx.clone(), clients);
    let mut final_scan = None;
    let mut problems = Vec::new();
    for _ in 0..50 {
        let op = scan(&mut c).await;
        if op.outcome == Outcome::Ok {
            final_scan = Some(op.id);
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if final_scan.is_none() {
        problems.push("the final scan never succeeded".into());
    }
    let _ = keep_tx.send(true);
    for k in keepers {
        k.await?;
    }
    Ok(Output { final_scan, problems, prefix: PREFIX.into(), healed_at, ..Default::default() })
}
