//! The append workload: each key holds a comma-separated list of unique integers. An append reads the list
//! (a linearizable Range, recorded as a read) and then runs Txn{MOD(key) == the mod_revision read ->
//! Put(list with elem); else -> Range(key)}. Checked for linearizability per key (as compare-and-set on the
//! list) and for the set invariants of [`crate::checker::append`] against a final read of every key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use raftcd_proto::etcdserverpb::compare;
use rand::Rng;

use super::{cmp_eq, final_reads, put_op, Client, Ctx, KeySpace, Output, Signals};
use crate::history::{Call, Outcome, Ret};

/// Runs the workload (see the module doc).
pub async fn run(ctx: Arc<Ctx>, mut sig: Signals) -> Result<Output> {
    let keys = Arc::new(KeySpace::new("ja/", ctx.keys, ctx.ops_per_key));
    let next_elem = Arc::new(AtomicU64::new(1));
    let mut tasks = Vec::new();
    for p in 0..ctx.concurrency {
        let (ctx, keys, sig, next_elem) = (ctx.clone(), keys.clone(), sig.clone(), next_elem.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(ctx, p);
            while !sig.stopped() {
                let key = keys.pick(&mut c.rng);
                let read = c.read(&key).await;
                let only_read = c.rng.random::<f64>() < 0.3;
                if let (Outcome::Ok, Some(Ret::Read { value, mod_rev }), false) = (read.outcome, &read.ret, only_read) {
                    let elem = next_elem.fetch_add(1, Ordering::Relaxed);
                    let list = match value.as_deref() {
                        None | Some("") => elem.to_string(),
                        Some(l) => format!("{l},{elem}"),
                    };
                    let call = Call::Append {
                        key: key.clone(),
                        elem,
                        expect: value.clone(),
                        expect_rev: *mod_rev,
                        value: list.clone(),
                    };
                    let cmp = cmp_eq(&key, compare::CompareTarget::Mod, compare::TargetUnion::ModRevision(*mod_rev));
                    c.guarded(call, &key, cmp, put_op(&key, &list)).await;
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
    let (final_state, problems) = final_reads(ctx.clone(), ctx.concurrency, &used, Duration::from_secs(30)).await;
    Ok(Output { final_state, problems, ..Default::default() })
}
