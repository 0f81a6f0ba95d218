//! The watch workload: writers put and delete keys of the prefix `jw/` with unique values — single Puts,
//! single DeleteRanges and Txns of up to three writes (several events in one revision) — while watchers
//! watch the prefix from the first revision with prev_kv, reconnecting (through another member) from their
//! last event's revision + 1 whenever a stream breaks. At the end, once every watcher has reached the final
//! revision, a fresh watch from revision 1 reads the committed history: the reference the watchers and the
//! acknowledged writes are checked against ([`crate::checker::watch`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use raftcd_proto::etcdserverpb::{request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::sync::watch as tw;

use super::{current_revision, watcher, Client, Ctx, Output, Signals};
use crate::client::{call, prefix_end};
use crate::history::{Call, Outcome, Ret, TxnWrite};

/// The watched prefix.
pub const PREFIX: &str = "jw/";
/// Keys written.
const KEYS: usize = 8;

/// Issues one write op (Put, DeleteRange or Txn) of `writes`.
async fn write(c: &mut Client, writes: Vec<TxnWrite>) {
    let p = c.invoke(Call::Txn { writes: writes.clone() });
    let mut kv = c.conn().kv.clone();
    let t = c.ctx.op_timeout;
    let res = if writes.len() == 1 {
        let w = &writes[0];
        match &w.value {
            Some(v) => {
                call(t, kv.put(PutRequest { key: w.key.clone().into(), value: v.clone().into(), ..Default::default() }))
                    .await
                    .map(|r| r.header.map(|h| h.revision))
            }
            None => call(t, kv.delete_range(DeleteRangeRequest { key: w.key.clone().into(), ..Default::default() }))
                .await
                .map(|r| r.header.map(|h| h.revision)),
        }
    } else {
        let ops = writes
            .iter()
            .map(|w| RequestOp {
                request: Some(match &w.value {
                    Some(v) => request_op::Request::RequestPut(PutRequest {
                        key: w.key.clone().into(),
                        value: v.clone().into(),
                        ..Default::default()
                    }),
                    None => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                        key: w.key.clone().into(),
                        ..Default::default()
                    }),
                }),
            })
            .collect();
        call(t, kv.txn(TxnRequest { compare: vec![], success: ops, failure: vec![] }))
            .await
            .map(|r| r.header.map(|h| h.revision))
    };
    match res {
        Ok(rev) => {
            c.ctx.rec.complete(p, Outcome::Ok, Some(Ret::Done), rev, None);
        }
        Err(e) => {
            c.failed(p, e);
        }
    }
}

/// Runs the workload (see the module doc).
pub async fn run(ctx: Arc<Ctx>, mut sig: Signals) -> Result<Output> {
    let Some(start) = current_revision(&ctx, Duration::from_secs(30)).await else {
        bail!("could not read the starting revision");
    };
    let first = start + 1;
    let (target_tx, target_rx) = tw::channel::<Option<i64>>(None);
    let (abort_tx, abort_rx) = tw::channel(false);
    let watchers = 3usize;
    let mut wtasks = Vec::new();
    for id in 0..watchers {
        let cfg = watcher::WatcherConfig { id, prefix: PREFIX.into(), start_revision: first, relist: false };
        wtasks.push(tokio::spawn(watcher::run(ctx.clone(), cfg, target_rx.clone(), abort_rx.clone())));
    }
    let mut tasks = Vec::new();
    for p in 0..ctx.concurrency {
        let (ctx, sig) = (ctx.clone(), sig.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(ctx, p);
            let mut n = 0u64;
            let mut keys: Vec<usize> = (0..KEYS).collect();
            while !sig.stopped() {
                keys.shuffle(&mut c.rng);
                let count = [1, 1, 2, 3][c.rng.random_range(0..4)];
                let writes = keys[..count]
                    .iter()
                    .map(|k| {
                        n += 1;
                        let value = (c.rng.random::<f64>() < 0.8).then(|| format!("{p}-{n}"));
                        TxnWrite { key: format!("{PREFIX}{k}"), value }
                    })
                    .collect();
                write(&mut c, writes).await;
                c.think().await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    sig.wait_healed().await;
    let mut problems = Vec::new();
    let final_revision = current_revision(&ctx, Duration::from_secs(30)).await;
    let _ = target_tx.send(final_revision);
    // Every watcher must reach the final revision; give them time, then abort the stragglers.
    let abort = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let _ = abort_tx.send(true);
    });
    let mut sessions = Vec::new();
    for t in wtasks {
        sessions.extend(t.await?);
    }
    abort.abort();
    // The reference: a fresh watch of the prefix from revision 1.
    let (rtarget_tx, rtarget_rx) = tw::channel::<Option<i64>>(final_revision);
    let (rabort_tx, rabort_rx) = tw::channel(false);
    let rabort = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let _ = rabort_tx.send(true);
    });
    let cfg = watcher::WatcherConfig { id: watchers, prefix: PREFIX.into(), start_revision: 1, relist: false };
    let reference_sessions = watcher::run(ctx.clone(), cfg, rtarget_rx, rabort_rx).await;
    rabort.abort();
    drop(rtarget_tx);
    let reference: Vec<_> =
        reference_sessions.iter().flat_map(|s| s.responses.iter().flat_map(|r| r.events.iter().cloned())).collect();
    if reference_sessions.last().is_none_or(|s| !s.end.starts_with("reached")) {
        problems.push(format!(
            "the reference watch from revision 1 did not reach the final revision {final_revision:?}: {:?}",
            reference_sessions.iter().map(|s| s.end.clone()).collect::<Vec<_>>()
        ));
    }
    // The final state must be the reference's last state.
    let c = Client::new(ctx.clone(), ctx.concurrency + 1);
    let mut kv = c.conn().kv.clone();
    let req = RangeRequest { key: PREFIX.into(), range_end: prefix_end(PREFIX), ..Default::default() };
    match call(Duration::from_secs(5), kv.range(req)).await {
        Ok(r) => {
            let (h, _) = crate::checker::watch::reference_from(reference.clone());
            let rev = r.header.map(|h| h.revision).unwrap_or(0);
            let want: Vec<(Vec<u8>, Vec<u8>, i64)> =
                h.state_at(rev).into_values().map(|kv| (kv.key, kv.value, kv.mod_revision)).collect();
            let got: Vec<(Vec<u8>, Vec<u8>, i64)> =
                r.kvs.into_iter().map(|kv| (kv.key, kv.value, kv.mod_revision)).collect();
            if want != got {
                problems.push(format!(
                    "the final Range at revision {rev} ({} keys) differs from the reference state ({} keys)",
                    got.len(),
                    want.len()
                ));
            }
        }
        Err(e) => problems.push(format!("final range failed: {e}")),
    }
    Ok(Output {
        sessions,
        reference,
        first_revision: first,
        final_revision,
        problems,
        prefix: PREFIX.into(),
        ..Default::default()
    })
}
