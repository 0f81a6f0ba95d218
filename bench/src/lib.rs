//! raftcd-bench: a load generator for the etcd v3 gRPC API, after etcd's `benchmark` tool. It speaks only
//! the public API (KV, Watch, Lease, Maintenance), so the same runs can be pointed at raftcd and at etcd.

pub mod cli;
pub mod compare;
pub mod conn;
pub mod keys;
pub mod report;
pub mod runner;
pub mod scenarios;
pub mod tools;
pub mod watch;

use anyhow::Result;

use cli::{Cli, Command};
use report::Report;

/// Runs a network scenario and returns its report.
async fn run_network(cli: &Cli) -> Result<Option<Report>> {
    let g = &cli.global;
    let r = match &cli.command {
        Command::Put(a) => scenarios::put(g, a).await?,
        Command::Range(a) => scenarios::range(g, a).await?,
        Command::TxnPut(a) => scenarios::txn_put(g, a).await?,
        Command::TxnMixed(a) => scenarios::txn_mixed(g, a).await?,
        Command::Watch(a) => watch::run(g, a, false).await?,
        Command::WatchFanout(a) => watch::run(g, a, true).await?,
        Command::LeaseKeepalive(a) => scenarios::lease_keepalive(g, a).await?,
        Command::Load(a) => scenarios::load(g, a).await?,
        Command::Ready(a) => tools::ready(g, a).await?,
        Command::Status(a) => {
            println!("{}", tools::status(g, a).await?);
            return Ok(None);
        }
        Command::Fsync(_) | Command::Footprint(_) | Command::Report(_) => unreachable!("handled without a runtime"),
    };
    Ok(Some(r))
}

/// Runs the parsed command, printing the table and the JSON line.
pub fn run(cli: Cli) -> Result<()> {
    let report = match &cli.command {
        Command::Fsync(a) => Some(tools::fsync(a)?),
        Command::Footprint(a) => Some(tools::footprint(a)?),
        Command::Report(a) => {
            compare::report(a)?;
            None
        }
        _ => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(run_network(&cli))?
        }
    };
    if let Some(mut r) = report {
        r.tags = cli.global.tags.iter().cloned().collect();
        if !cli.global.json_only {
            println!("{}", r.table());
        }
        println!("{}", r.json_line());
    }
    Ok(())
}
