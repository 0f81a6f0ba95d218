//! The kubernetes workload: what kube-apiserver sends, on `/registry/pods/default/pod-N`:
//! - get: Range{key, limit 1};
//! - create: Txn{MOD(key) == 0 -> Put(key, value); else -> Range(key)};
//! - update: Txn{MOD(key) == rev -> Put; else -> Range(key)} with the rev the client last saw (its cache);
//! - delete: Txn{MOD(key) == rev -> DeleteRange(key); else -> Range(key)};
//! - list: Range{prefix, limit 4, revision 0}, then pages from the last key + "\0" at the first page's
//!   revision until `more` is false;
//! - watchers: the prefix from the first revision + 1 with prev_kv and `hasleader`; on a compaction cancel
//!   they list again and watch from the list's revision + 1;
//! - compaction every few seconds: Range(compact_rev_key), Txn{VERSION(compact_rev_key) == version ->
//!   Put(compact_rev_key, current revision); else -> Range}, and when it won, Compact at the revision the
//!   previous round stored (so the last interval's history stays).
//!
//! (The create carries an else-Range unlike the apiserver's, so that a failed create tells which value
//! was there: the checker needs every failed compare to reveal the current value.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use raftcd_proto::etcdserverpb::{
    compare, request_op, CompactionRequest, DeleteRangeRequest, RangeRequest, RequestOp, TxnRequest,
};
use rand::Rng;
use tokio::sync::watch as tw;

use super::{cas_ret, cmp_eq, current_revision, put_op, watcher, Client, Ctx, Output, Signals};
use crate::client::{call, prefix_end};
use crate::history::{Call, Kv, Op, Outcome, Ret};

/// The prefix.
pub const PREFIX: &str = "/registry/pods/default/";
/// Number of objects.
const OBJECTS: usize = 12;
/// The apiserver's compaction key.
const COMPACT_REV_KEY: &str = "compact_rev_key";

/// A paginated list of `prefix` (recorded as one op). Returns the op and the key-values.
pub async fn list(c: &mut Client, prefix: &str, limit: i64) -> (Op, Vec<Kv>) {
    let p = c.invoke(Call::List { prefix: prefix.into(), limit });
    let mut kv = c.conn().kv.clone();
    let end = prefix_end(prefix);
    let mut key = prefix.as_bytes().to_vec();
    let mut rev = 0;
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let req = RangeRequest { key: key.clone(), range_end: end.clone(), limit, revision: rev, ..Default::default() };
        match call(c.ctx.op_timeout, kv.range(req)).await {
            Ok(r) => {
                pages += 1;
                if rev == 0 {
                    rev = r.header.map(|h| h.revision).unwrap_or(0);
                }
                for x in &r.kvs {
                    out.push(Kv {
                        key: String::from_utf8_lossy(&x.key).into_owned(),
                        value: String::from_utf8_lossy(&x.value).into_owned(),
                        mod_rev: x.mod_revision,
                        version: x.version,
                        lease: x.lease,
                    });
                }
                match (r.more, r.kvs.last()) {
                    (true, Some(last)) => {
                        key = last.key.clone();
                        key.push(0);
                    }
                    _ => break,
                }
            }
            Err(e) => return (c.failed(p, e), vec![]),
        }
    }
    let op = c.ctx.rec.complete(p, Outcome::Ok, Some(Ret::List { kvs: out.clone(), pages }), Some(rev), None);
    (op, out)
}

/// What a client believes about an object: (value, mod_revision), or None = absent.
type Cache = HashMap<String, Option<(String, i64)>>;

fn learn(cache: &mut Cache, key: &str, op: &Op, written: Option<&str>) {
    if op.outcome != Outcome::Ok {
        cache.remove(key);
        return;
    }
    match &op.ret {
        Some(Ret::Read { value, mod_rev }) => {
            cache.insert(key.into(), value.clone().map(|v| (v, *mod_rev)));
        }
        Some(Ret::Cas { succeeded: true, .. }) => {
            cache.insert(key.into(), written.map(|w| (w.to_string(), op.revision.unwrap_or(0))));
        }
        Some(Ret::Cas { succeeded: false, current: Some(cur), mod_rev }) => {
            cache.insert(key.into(), cur.clone().map(|v| (v, *mod_rev)));
        }
        _ => {
            cache.remove(key);
        }
    }
}

async fn client_loop(mut c: Client, sig: Signals) {
    let mut cache: Cache = HashMap::new();
    let mut n = 0;
    while !sig.stopped() {
        let key = format!("{PREFIX}pod-{}", c.rng.random_range(0..OBJECTS));
        let roll: f64 = c.rng.random();
        n += 1;
        let value = format!("{}-{n}", c.process);
        if roll < 0.15 {
            let (op, kvs) = list(&mut c, PREFIX, 4).await;
            if op.outcome == Outcome::Ok {
                for i in 0..OBJECTS {
                    let k = format!("{PREFIX}pod-{i}");
                    let v = kvs.iter().find(|kv| kv.key == k).map(|kv| (kv.value.clone(), kv.mod_rev));
                    cache.insert(k, v);
                }
            }
        } else if roll < 0.35 || !cache.contains_key(&key) {
            let op = c.read(&key).await;
            learn(&mut cache, &key, &op, None);
        } else {
            match cache.get(&key).cloned().flatten() {
                None => {
                    let call = Call::Create { key: key.clone(), value: value.clone() };
                    let cmp = cmp_eq(&key, compare::CompareTarget::Mod, compare::TargetUnion::ModRevision(0));
                    let op = c.guarded(call, &key, cmp, put_op(&key, &value)).await;
                    learn(&mut cache, &key, &op, Some(&value));
                }
                Some((cur, rev)) => {
                    let cmp = cmp_eq(&key, compare::CompareTarget::Mod, compare::TargetUnion::ModRevision(rev));
                    if c.rng.random::<f64>() < 0.2 {
                        let call = Call::Delete { key: key.clone(), rev, expect: cur };
                        let del = RequestOp {
                            request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                                key: key.clone().into(),
                                ..Default::default()
                            })),
                        };
                        let op = c.guarded(call, &key, cmp, del).await;
                        learn(&mut cache, &key, &op, None);
                    } else {
                        let call = Call::Update { key: key.clone(), rev, expect: cur, value: value.clone() };
                        let op = c.guarded(call, &key, cmp, put_op(&key, &value)).await;
                        learn(&mut cache, &key, &op, Some(&value));
                    }
                }
            }
        }
        c.think().await;
    }
}

/// One compaction round; returns the revision it stored in compact_rev_key when it won.
async fn compact_round(c: &mut Client, previous: Option<i64>) -> Option<i64> {
    let mut kv = c.conn().kv.clone();
    let t = c.ctx.op_timeout;
    let req = RangeRequest { key: COMPACT_REV_KEY.into(), ..Default::default() };
    let r = call(t, kv.range(req)).await.ok()?;
    let version = r.kvs.first().map(|kv| kv.version).unwrap_or(0);
    let now = r.header.map(|h| h.revision).unwrap_or(0);
    let p = c.invoke(Call::CompactRevKey { version, revision: now });
    let req = TxnRequest {
        compare: vec![cmp_eq(COMPACT_REV_KEY, compare::CompareTarget::Version, compare::TargetUnion::Version(version))],
        success: vec![put_op(COMPACT_REV_KEY, &now.to_string())],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: COMPACT_REV_KEY.into(),
                ..Default::default()
            })),
        }],
    };
    let won = match call(t, kv.txn(req)).await {
        Ok(r) => {
            let rev = r.header.as_ref().map(|h| h.revision);
            let won = r.succeeded;
            c.ctx.rec.complete(p, Outcome::Ok, Some(cas_ret(&r)), rev, None);
            won
        }
        Err(e) => {
            c.failed(p, e);
            false
        }
    };
    if !won {
        return None;
    }
    if let Some(prev) = previous {
        let p = c.invoke(Call::Compact { revision: prev });
        let mut kv = c.conn().kv.clone();
        match call(t, kv.compact(CompactionRequest { revision: prev, physical: false })).await {
            Ok(r) => {
                c.ctx.rec.complete(p, Outcome::Ok, Some(Ret::Done), r.header.map(|h| h.revision), None);
            }
            Err(e) => {
                c.failed(p, e);
            }
        }
    }
    Some(now)
}

/// Runs the workload (see the module doc).
pub async fn run(ctx: Arc<Ctx>, mut sig: Signals) -> Result<Output> {
    let Some(start) = current_revision(&ctx, Duration::from_secs(30)).await else {
        bail!("could not read the starting revision");
    };
    let first = start + 1;
    let (target_tx, target_rx) = tw::channel::<Option<i64>>(None);
    let (abort_tx, abort_rx) = tw::channel(false);
    let mut wtasks = Vec::new();
    for id in 0..2 {
        let cfg = watcher::WatcherConfig { id, prefix: PREFIX.into(), start_revision: first, relist: true };
        wtasks.push(tokio::spawn(watcher::run(ctx.clone(), cfg, target_rx.clone(), abort_rx.clone())));
    }
    let mut tasks = Vec::new();
    for p in 0..ctx.concurrency {
        tasks.push(tokio::spawn(client_loop(Client::new(ctx.clone(), p), sig.clone())));
    }
    {
        let mut c = Client::new(ctx.clone(), ctx.concurrency);
        let mut stop = sig.stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut previous = None;
            while !crate::nemesis::sleep_or_stop(Duration::from_secs(4), &mut stop).await {
                if let Some(now) = compact_round(&mut c, previous).await {
                    previous = Some(now);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    sig.wait_healed().await;
    let final_revision = current_revision(&ctx, Duration::from_secs(30)).await;
    let _ = target_tx.send(final_revision);
    let abort = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let _ = abort_tx.send(true);
    });
    let mut sessions = Vec::new();
    for t in wtasks {
        sessions.extend(t.await?);
    }
    abort.abort();
    Ok(Output { sessions, first_revision: first, final_revision, prefix: PREFIX.into(), ..Default::default() })
}
