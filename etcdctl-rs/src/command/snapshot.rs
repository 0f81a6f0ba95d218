//! `snapshot save <file>` over the Maintenance API; `snapshot status|restore` offline, through raftcd's
//! snapshot library (the same code as `raftcd-util`).

use std::io::Write;

use clap::{Args, Subcommand};
use sha2::{Digest, Sha256};

use crate::cli::go_bool;
use crate::exit::{CliError, CliResult, EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INTERRUPTED};
use crate::global::Ctx;

/// `snapshot` subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    #[command(about = "Stores an etcd node backend snapshot to a given file")]
    Save(FileArgs),
    #[command(about = "Restores an etcd member snapshot to an etcd directory")]
    Restore(RestoreArgs),
    #[command(
        about = "Gets backend snapshot status of a given file",
        long_about = "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.\nThe items in the lists are hash, revision, total keys, total size.\n"
    )]
    Status(FileArgs),
}

/// `<filename>`.
#[derive(Debug, Clone, Args)]
pub struct FileArgs {
    /// Arguments.
    pub args: Vec<String>,
}

/// `snapshot restore` flags (etcdctl 3.4's, plus etcdutl's --bump-revision/--mark-compacted).
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    #[arg(long = "data-dir", value_name = "string", default_value = "", help = "Path to the data directory")]
    pub data_dir: String,
    #[arg(
        long = "wal-dir",
        value_name = "string",
        default_value = "",
        help = "Path to the WAL directory (use --data-dir if none given)"
    )]
    pub wal_dir: String,
    #[arg(
        long = "initial-cluster",
        value_name = "string",
        default_value = "default=http://localhost:2380",
        help = "Initial cluster configuration for restore bootstrap"
    )]
    pub initial_cluster: String,
    #[arg(
        long = "initial-cluster-token",
        value_name = "string",
        default_value = "etcd-cluster",
        help = "Initial cluster token for the etcd cluster during restore bootstrap"
    )]
    pub initial_cluster_token: String,
    #[arg(
        long = "initial-advertise-peer-urls",
        value_name = "string",
        default_value = "http://localhost:2380",
        help = "List of this member's peer URLs to advertise to the rest of the cluster"
    )]
    pub initial_advertise_peer_urls: String,
    #[arg(long, value_name = "string", default_value = "default", help = "Human-readable name for this member")]
    pub name: String,
    #[arg(long = "skip-hash-check", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Ignore snapshot integrity hash value (required if copied from data directory)")]
    pub skip_hash_check: bool,
    #[arg(
        long = "bump-revision",
        value_name = "uint",
        default_value_t = 0,
        help = "How much to increase the latest revision after restore"
    )]
    pub bump_revision: u64,
    #[arg(long = "mark-compacted", value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "Mark the latest revision after restore as the point for scheduled compaction (required if --bump-revision > 0)")]
    pub mark_compacted: bool,
    /// `<filename>`.
    pub args: Vec<String>,
}

/// Checks a complete snapshot: size % 512 == 32 and the last 32 bytes are the sha256 of the rest.
pub fn verify(data_len: u64, hasher: Sha256, trailer: &[u8]) -> Result<(), String> {
    if data_len % 512 != 32 {
        return Err(format!("snapshot file size {data_len} is not a multiple of 512 plus the 32-byte sha256"));
    }
    if hasher.finalize().as_slice() != trailer {
        return Err("expected sha256 does not match the snapshot content".into());
    }
    Ok(())
}

fn zap_info(msg: &str, fields: &str) -> String {
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    format!(
        "{{\"level\":\"info\",\"ts\":{ts:.6},\"caller\":\"snapshot/v3_snapshot.go\",\"msg\":{}{fields}}}",
        crate::gofmt::json_string(msg)
    )
}

async fn save(ctx: &mut Ctx, path: &str) -> CliResult {
    let eps = ctx.global.endpoints.clone();
    if eps.len() != 1 {
        return Err(CliError::new(
            EXIT_INTERRUPTED,
            format!("snapshot must be requested to one selected node, not multiple [{}]", eps.join(" ")),
        ));
    }
    let mut opts = ctx.connect_options()?;
    // Without an explicit --command-timeout the download has no deadline (etcdctl's rule).
    if !ctx.command_timeout_set {
        opts.command_timeout = None;
    }
    let deadline = opts.command_timeout;
    let client =
        raftcd_client::Client::connect(&eps, opts).await.map_err(|e| CliError::new(EXIT_INTERRUPTED, e.to_string()))?;
    let part = format!("{path}.part");
    let fail = |e: String| CliError::new(EXIT_INTERRUPTED, e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&part)
        .map_err(|e| fail(format!("could not open {part} ({e})")))?;
    ctx.out.eline(&zap_info("created temporary db file", &format!(",\"path\":{}", crate::gofmt::json_string(&part))));
    let started = std::time::Instant::now();
    let download = async {
        let mut stream = client.snapshot().await.map_err(|e| e.to_string())?;
        let mut hasher = Sha256::new();
        // The last 32 bytes are held back: they are the checksum, not data.
        let mut tail: Vec<u8> = Vec::new();
        let mut data_len: u64 = 0;
        while let Some(chunk) = stream.message().await.map_err(|e| e.to_string())? {
            f.write_all(&chunk.blob).map_err(|e| e.to_string())?;
            data_len += chunk.blob.len() as u64;
            tail.extend_from_slice(&chunk.blob);
            if tail.len() > 32 {
                let cut = tail.len() - 32;
                hasher.update(&tail[..cut]);
                tail.drain(..cut);
            }
        }
        verify(data_len, hasher, &tail)?;
        f.sync_all().map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    };
    let res = match deadline {
        Some(d) => tokio::time::timeout(d, download).await.unwrap_or_else(|_| Err("context deadline exceeded".into())),
        None => download.await,
    };
    if let Err(e) = res {
        let _ = std::fs::remove_file(&part);
        return Err(fail(e));
    }
    ctx.out.eline(&zap_info(
        "fetched snapshot",
        &format!(
            ",\"endpoint\":{},\"took\":{}",
            crate::gofmt::json_string(&eps[0]),
            crate::gofmt::json_string(&crate::gofmt::format_duration(started.elapsed()))
        ),
    ));
    std::fs::rename(&part, path).map_err(|e| fail(format!("could not rename {part} to {path} ({e})")))?;
    ctx.out.eline(&zap_info("saved", &format!(",\"path\":{}", crate::gofmt::json_string(path))));
    ctx.out.line(&format!("Snapshot saved at {path}"));
    Ok(())
}

/// Runs a `snapshot` subcommand.
pub async fn run(ctx: &mut Ctx, cmd: SnapshotCmd) -> CliResult {
    match cmd {
        SnapshotCmd::Save(a) => {
            if a.args.len() != 1 {
                return Err(CliError::new(EXIT_BAD_ARGS, "snapshot save expects one argument"));
            }
            ctx.printer()?;
            save(ctx, &a.args[0]).await
        }
        SnapshotCmd::Status(a) => {
            if a.args.len() != 1 {
                return Err(CliError::new(EXIT_BAD_ARGS, "snapshot status requires exactly one argument"));
            }
            let st = raftcd::snapshot::status(std::path::Path::new(&a.args[0]))
                .map_err(|e| CliError::new(EXIT_ERROR, e.to_string()))?;
            let fmt = match ctx.global.write_out.as_str() {
                "json" | "table" => ctx.global.write_out.clone(),
                _ => "simple".to_string(),
            };
            let out = raftcd::snapshot::format_status(&st, &fmt).map_err(|e| CliError::new(EXIT_BAD_ARGS, e))?;
            print!("{out}");
            Ok(())
        }
        SnapshotCmd::Restore(a) => {
            if a.args.len() != 1 {
                return Err(CliError::new(EXIT_BAD_ARGS, "snapshot restore requires exactly one argument"));
            }
            let data_dir = if a.data_dir.is_empty() { format!("{}.etcd", a.name) } else { a.data_dir.clone() };
            let opts = raftcd::snapshot::RestoreOptions {
                name: a.name.clone(),
                data_dir: data_dir.into(),
                initial_cluster: a.initial_cluster.clone(),
                initial_cluster_token: a.initial_cluster_token.clone(),
                initial_advertise_peer_urls: raftcd::config::split_urls(&a.initial_advertise_peer_urls),
                skip_hash_check: a.skip_hash_check,
                bump_revision: a.bump_revision,
                mark_compacted: a.mark_compacted,
            };
            raftcd::snapshot::restore(std::path::Path::new(&a.args[0]), &opts)
                .map_err(|e| CliError::new(EXIT_ERROR, e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification() {
        let body = vec![7u8; 512];
        let sum = Sha256::digest(&body);
        let mut h = Sha256::new();
        h.update(&body);
        assert!(verify(544, h, &sum).is_ok());
        let mut h = Sha256::new();
        h.update(&body);
        assert!(verify(544, h, &[0u8; 32]).is_err());
        assert!(verify(545, Sha256::new(), &[]).is_err());
    }
}
