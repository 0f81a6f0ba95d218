//! `check perf`: a short rate-limited put load with etcdctl's pass/fail summary (no progress bar).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use raftcd_proto::etcdserverpb::{CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, RangeRequest};
use tokio::sync::Mutex;

use crate::cli::go_bool;
use crate::exit::{CliError, CliResult, EXIT_BAD_FEATURE, EXIT_ERROR, EXIT_INVALID_INPUT};
use crate::global::Ctx;
use crate::gofmt::quote;

/// `check` subcommands.
#[derive(Debug, Subcommand)]
pub enum CheckCmd {
    #[command(about = "Check the performance of the etcd cluster")]
    Perf(PerfArgs),
}

/// `check perf` flags.
#[derive(Debug, Clone, Args)]
pub struct PerfArgs {
    #[arg(
        long,
        value_name = "string",
        default_value = "s",
        help = "The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)"
    )]
    pub load: String,
    #[arg(
        long,
        value_name = "string",
        default_value = "/etcdctl-check-perf/",
        help = "The prefix for writing the performance check's keys."
    )]
    pub prefix: String,
    #[arg(long = "auto-compact", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Compact storage with last revision after test is finished.")]
    pub auto_compact: bool,
    #[arg(long = "auto-defrag", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Defragment storage after test is finished.")]
    pub auto_defrag: bool,
    /// Test length in seconds (etcdctl fixes it at 60; shorter runs are for tests).
    #[arg(long, hide = true, default_value = "60")]
    pub duration: u64,
}

/// Load model: writes per second, concurrent clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Target writes per second.
    pub limit: u64,
    /// Concurrent writers.
    pub clients: usize,
}

/// etcdctl's load models by name and alias.
pub fn load_model(name: &str) -> CliResult<Load> {
    let (limit, clients) = match name {
        "s" | "small" => (150, 50),
        "m" | "medium" => (1000, 200),
        "l" | "large" => (8000, 500),
        "xl" | "xLarge" => (15000, 1000),
        other => return Err(CliError::new(EXIT_BAD_FEATURE, format!("unknown load option {other}"))),
    };
    Ok(Load { limit, clients })
}

/// Summary lines and verdict for measured latencies (seconds) over `elapsed`.
pub fn verdict(latencies: &[f64], errors: &[(String, usize)], elapsed: f64, limit: u64) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut ok = true;
    if !errors.is_empty() {
        lines.push("FAIL: too many errors".to_string());
        for (e, n) in errors {
            lines.push(format!("FAIL: ERROR({e}) -> {n}"));
        }
        ok = false;
    }
    let rps = if elapsed > 0.0 { latencies.len() as f64 / elapsed } else { 0.0 };
    if rps / limit as f64 <= 0.9 {
        lines.push(format!("FAIL: Throughput too low: {} writes/s", rps as i64 + 1));
        ok = false;
    } else {
        lines.push(format!("PASS: Throughput is {} writes/s", rps as i64 + 1));
    }
    let slowest = latencies.iter().cloned().fold(0.0, f64::max);
    if slowest > 0.5 {
        lines.push(format!("Slowest request took too long: {slowest:.6}s"));
        ok = false;
    } else {
        lines.push(format!("PASS: Slowest request took {slowest:.6}s"));
    }
    let n = latencies.len().max(1) as f64;
    let mean = latencies.iter().sum::<f64>() / n;
    let stddev = (latencies.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n).sqrt();
    if stddev > 0.1 {
        lines.push(format!("Stddev too high: {stddev:.6}s"));
        ok = false;
    } else {
        lines.push(format!("PASS: Stddev is {stddev:.6}s"));
    }
    lines.push(if ok { "PASS" } else { "FAIL" }.to_string());
    (lines, ok)
}

/// Runs `check perf`.
pub async fn run(ctx: &mut Ctx, cmd: CheckCmd) -> CliResult {
    let CheckCmd::Perf(a) = cmd;
    let load = load_model(&a.load)?;
    let client = ctx.client().await?;
    let err = |e: raftcd_client::Error| CliError::new(EXIT_ERROR, e.to_string());
    let prefix = a.prefix.as_bytes().to_vec();
    let probe = RangeRequest {
        key: prefix.clone(),
        range_end: raftcd_client::range_end_for_prefix(&prefix),
        limit: 1,
        ..Default::default()
    };
    if !client.range(probe).await.map_err(err)?.kvs.is_empty() {
        return Err(CliError::new(
            EXIT_INVALID_INPUT,
            format!("prefix {} has keys. Delete with etcdctl del --prefix {} first", quote(&prefix), a.prefix),
        ));
    }
    let duration = Duration::from_secs(a.duration);
    let start = Instant::now();
    let results: Arc<Mutex<Results>> = Default::default();
    let (tx, rx) = async_channel(load.clients);
    let mut workers = Vec::new();
    for _ in 0..load.clients {
        let (c, rx, results) = (client.clone(), rx.clone(), results.clone());
        workers.push(tokio::spawn(async move {
            while let Some(req) = rx.lock().await.recv().await {
                let t = Instant::now();
                let r = c.put(req).await;
                let mut g = results.lock().await;
                match r {
                    Ok(_) => g.0.push(t.elapsed().as_secs_f64()),
                    Err(e) => *g.1.entry(e.to_string()).or_default() += 1,
                }
            }
        }));
    }
    let interval = Duration::from_secs_f64(1.0 / load.limit as f64);
    let mut seed = start.elapsed().as_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = Instant::now();
    while start.elapsed() < duration {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut key = prefix.clone();
        let mut k = vec![0u8; 256];
        k[..8].copy_from_slice(&seed.to_le_bytes());
        key.extend_from_slice(&k);
        if tx.send(PutRequest { key, value: vec![0u8; 1024], ..Default::default() }).await.is_err() {
            break;
        }
        next += interval;
        tokio::time::sleep_until(next.into()).await;
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let dresp = client
        .delete_range(DeleteRangeRequest {
            key: prefix.clone(),
            range_end: raftcd_client::range_end_for_prefix(&prefix),
            prev_kv: false,
        })
        .await
        .map_err(err)?;
    if a.auto_compact {
        let rev = dresp.header.map(|h| h.revision).unwrap_or(0);
        ctx.out.line(&format!("Compacting with revision {rev}"));
        client.compact(CompactionRequest { revision: rev, physical: true }).await.map_err(err)?;
        ctx.out.line(&format!("Compacted with revision {rev}"));
    }
    if a.auto_defrag {
        for ep in ctx.global.endpoints.clone() {
            ctx.out.line(&format!("Defragmenting {}", quote(ep.as_bytes())));
            let c = ctx.client_for(std::slice::from_ref(&ep)).await?;
            c.defragment(DefragmentRequest {}).await.map_err(err)?;
            ctx.out.line(&format!("Defragmented {}", quote(ep.as_bytes())));
        }
    }
    let g = results.lock().await;
    let errors: Vec<(String, usize)> = g.1.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let (lines, ok) = verdict(&g.0, &errors, elapsed, load.limit);
    for l in lines {
        ctx.out.line(&l);
    }
    if ok {
        Ok(())
    } else {
        Err(CliError::Code(EXIT_ERROR))
    }
}

/// Latencies of successful writes (seconds) and error counts by message.
type Results = (Vec<f64>, std::collections::BTreeMap<String, usize>);

type Shared<T> = Arc<Mutex<tokio::sync::mpsc::Receiver<T>>>;

fn async_channel<T>(n: usize) -> (tokio::sync::mpsc::Sender<T>, Shared<T>) {
    let (tx, rx) = tokio::sync::mpsc::channel(n.max(1));
    (tx, Arc::new(Mutex::new(rx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models() {
        assert_eq!(load_model("small").unwrap(), Load { limit: 150, clients: 50 });
        assert_eq!(load_model("q").unwrap_err(), CliError::new(4, "unknown load option q"));
    }

    #[test]
    fn verdicts() {
        let lat = vec![0.001; 1500];
        let (lines, ok) = verdict(&lat, &[], 10.0, 150);
        assert!(ok, "{lines:?}");
        assert_eq!(lines[0], "PASS: Throughput is 151 writes/s");
        let (lines, ok) = verdict(&lat, &[], 20.0, 150);
        assert!(!ok);
        assert_eq!(lines[0], "FAIL: Throughput too low: 76 writes/s");
    }
}
