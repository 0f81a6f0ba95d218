//! The register workload: per key, reads, blind writes and compare-and-sets (Txn{VALUE(key) == expect ->
//! Put; else -> Range}), every written value unique ("<process>-<n>"), a few keys at a time (each retired
//! after a bounded number of ops). Checked for linearizability per key.

use std::sync::Arc;

use anyhow::Result;
use raftcd_proto::etcdserverpb::compare;
use rand::Rng;

use super::{cmp_eq, final_reads, put_op, Client, Ctx, KeySpace, Output, Signals};
use crate::history::{Call, Outcome, Ret};

/// Runs the workload (see the module doc).
pub async fn run(ctx: Arc<Ctx>, mut sig: Signals) -> Result<Output> {
    let keys = Arc::new(KeySpace::new("jr/", ctx.keys, ctx.ops_per_key));
    let mut tasks = Vec::new();
    for p in 0..ctx.concurrency {
        let (ctx, keys, sig) = (ctx.clone(), keys.clone(), sig.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(ctx, p);
            let mut n = 0u64;
            // The last value this client saw per key: what its compare-and-sets expect.
            let mut seen: std::collections::HashMap<String, String> = Default::default();
            while !sig.stopped() {
                let key = keys.pick(&mut c.rng);
                let roll: f64 = c.rng.random();
                n += 1;
                let value = format!("{p}-{n}");
                if roll < 0.5 {
                    let op = c.read(&key).await;
                    if let (Outcome::Ok, Some(Ret::Read { value: Some(v), .. })) = (op.outcome, &op.ret) {
                        seen.insert(key, v.clone());
                    }
                } else if roll < 0.75 || !seen.contains_key(&key) {
                    c.write(&key, &value).await;
                } else {
                    let expect = seen[&key].clone();
                    let call = Call::Cas { key: key.clone(), expect: expect.clone(), value: value.clone() };
                    let cmp = cmp_eq(&key, compare::CompareTarget::Value, compare::TargetUnion::Value(expect.into()));
                    let op = c.guarded(call, &key, cmp, put_op(&key, &value)).await;
                    match &op.ret {
                        Some(Ret::Cas { succeeded: true, .. }) => {
                            seen.insert(key, value);
                        }
                        Some(Ret::Cas { current: Some(Some(cur)), .. }) => {
                            seen.insert(key, cur.clone());
                        }
                        _ => {}
                    }
                }
                c.think().await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    sig.wait_healed().await;
    let used = keys.used();
    let (final_state, problems) =
        final_reads(ctx.clone(), ctx.concurrency, &used, std::time::Duration::from_secs(30)).await;
    Ok(Output { final_state, problems, ..Default::default() })
}
