//! `endpoint health|status|hashkv [--cluster]`.

use std::time::Instant;

use clap::{Args, Subcommand};
use futures::stream::{FuturesUnordered, StreamExt};
use raftcd_proto::etcdserverpb::{HashKvRequest, MemberListRequest, RangeRequest, StatusRequest};

use crate::cli::{go_bool, go_i64};
use crate::exit::{CliError, CliResult, EXIT_ERROR};
use crate::global::Ctx;
use crate::gofmt::format_duration;
use crate::printer::{EpHashKv, EpHealth, EpStatus};

/// `endpoint` and its persistent `--cluster`.
#[derive(Debug, Args)]
pub struct EndpointArgs {
    #[arg(long, global = true, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "use all endpoints from the cluster member list")]
    pub cluster: bool,
    #[command(subcommand)]
    pub cmd: EndpointCmd,
}

/// `endpoint` subcommands.
#[derive(Debug, Subcommand)]
pub enum EndpointCmd {
    #[command(about = "Checks the healthiness of endpoints specified in `--endpoints` flag")]
    Health,
    #[command(
        about = "Prints out the status of endpoints specified in `--endpoints` flag",
        long_about = "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.\nThe items in the lists are endpoint, ID, version, db size, is leader, is learner, raft term, raft index, raft applied index, errors.\n"
    )]
    Status,
    #[command(about = "Prints the KV history hash for each endpoint in --endpoints")]
    Hashkv(HashKvArgs),
}

/// `endpoint hashkv` flags.
#[derive(Debug, Args)]
pub struct HashKvArgs {
    #[arg(long, global = true, value_name = "int", default_value = "0", value_parser = go_i64, allow_negative_numbers = true, help = "maximum revision to hash (default: all revisions)")]
    pub rev: i64,
}

/// The endpoints to visit: `--endpoints`, or with `--cluster` every member's client URLs.
pub async fn endpoints(ctx: &mut Ctx, cluster: bool) -> CliResult<Vec<String>> {
    if !cluster {
        return Ok(ctx.global.endpoints.clone());
    }
    // Like etcdctl: MemberList needs no authentication, so the member list is fetched without it.
    let mut opts = ctx.connect_options()?;
    opts.user = None;
    opts.password = None;
    ctx.printer()?;
    let c = raftcd_client::Client::connect(&ctx.global.endpoints, opts)
        .await
        .map_err(|e| CliError::new(EXIT_ERROR, e.to_string()))?;
    let r = c.member_list(MemberListRequest { linearizable: false }).await.map_err(|e| {
        CliError::new(EXIT_ERROR, format!("failed to fetch endpoints from etcd cluster member list: {e}"))
    })?;
    Ok(r.members.iter().flat_map(|m| m.client_ur_ls.clone()).collect())
}

/// Runs an `endpoint` subcommand.
pub async fn run(ctx: &mut Ctx, a: EndpointArgs) -> CliResult {
    let cluster = a.cluster || env_cluster();
    match a.cmd {
        EndpointCmd::Health => health(ctx, cluster).await,
        EndpointCmd::Status => status(ctx, cluster).await,
        EndpointCmd::Hashkv(h) => hashkv(ctx, cluster, h.rev).await,
    }
}

/// `--cluster` is inherited by the endpoint subcommands, so `ETCDCTL_CLUSTER` sets it.
fn env_cluster() -> bool {
    std::env::var("ETCDCTL_CLUSTER").ok().and_then(|v| go_bool(&v).ok()).unwrap_or(false)
}

async fn health(ctx: &mut Ctx, cluster: bool) -> CliResult {
    let printer = ctx.printer()?;
    let eps = endpoints(ctx, cluster).await?;
    let mut probes = FuturesUnordered::new();
    for ep in eps {
        let client = ctx.client_for(std::slice::from_ref(&ep)).await;
        probes.push(async move {
            let c = match client {
                Ok(c) => c,
                Err(CliError::Exit { msg, .. }) => {
                    return EpHealth { ep, health: false, took: String::new(), error: msg }
                }
                Err(_) => return EpHealth { ep, health: false, took: String::new(), error: "error".into() },
            };
            let start = Instant::now();
            let r = c.range(RangeRequest { key: b"health".to_vec(), ..Default::default() }).await;
            let took = format_duration(start.elapsed());
            match r {
                Ok(_) => EpHealth { ep, health: true, took, error: String::new() },
                // Permission denied still went through consensus: the member is healthy.
                Err(e) if e.is_permission_denied() => EpHealth { ep, health: true, took, error: String::new() },
                Err(e) => EpHealth { ep, health: false, took, error: e.to_string() },
            }
        });
    }
    let mut list = Vec::new();
    while let Some(h) = probes.next().await {
        list.push(h);
    }
    printer.endpoint_health(&mut ctx.out, &list)?;
    if list.iter().any(|h| !h.error.is_empty()) {
        return Err(CliError::new(EXIT_ERROR, "unhealthy cluster"));
    }
    Ok(())
}

async fn status(ctx: &mut Ctx, cluster: bool) -> CliResult {
    ctx.client().await?;
    let printer = ctx.printer()?;
    let mut list = Vec::new();
    let mut failed = false;
    for ep in endpoints(ctx, cluster).await? {
        let r = match ctx.client_for(std::slice::from_ref(&ep)).await {
            Ok(c) => c.status(StatusRequest {}).await.map_err(|e| e.to_string()),
            Err(e) => Err(format!("{e:?}")),
        };
        match r {
            Ok(resp) => list.push(EpStatus { ep, resp }),
            Err(e) => {
                failed = true;
                ctx.out.eline(&format!("Failed to get the status of endpoint {ep} ({e})"));
            }
        }
    }
    printer.endpoint_status(&mut ctx.out, &list)?;
    if failed {
        return Err(CliError::Code(EXIT_ERROR));
    }
    Ok(())
}

async fn hashkv(ctx: &mut Ctx, cluster: bool, rev: i64) -> CliResult {
    ctx.client().await?;
    let printer = ctx.printer()?;
    let mut list = Vec::new();
    let mut last_err = None;
    for ep in endpoints(ctx, cluster).await? {
        let r = match ctx.client_for(std::slice::from_ref(&ep)).await {
            Ok(c) => c.hash_kv(HashKvRequest { revision: rev }).await.map_err(|e| e.to_string()),
            Err(e) => Err(format!("{e:?}")),
        };
        match r {
            Ok(resp) => list.push(EpHashKv { ep, resp }),
            Err(e) => {
                ctx.out.eline(&format!("Failed to get the hash of endpoint {ep} ({e})"));
                last_err = Some(e);
            }
        }
    }
    printer.endpoint_hashkv(&mut ctx.out, &list)?;
    match last_err {
        Some(e) => Err(CliError::new(EXIT_ERROR, e)),
        None => Ok(()),
    }
}
