//! `defrag [--cluster]` (online, every endpoint) and `defrag --data-dir DIR` (offline, a stopped member).

use clap::Args;
use raftcd_proto::etcdserverpb::DefragmentRequest;

use crate::cli::go_bool;
use crate::exit::{CliError, CliResult, EXIT_ERROR};
use crate::global::Ctx;

/// `defrag` flags.
#[derive(Debug, Clone, Args)]
pub struct DefragArgs {
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, help = "use all endpoints from the cluster member list")]
    pub cluster: bool,
    #[arg(
        long = "data-dir",
        value_name = "string",
        default_value = "",
        help = "Optional. If present, defragments a data directory not in use by etcd."
    )]
    pub data_dir: String,
}

/// Runs `defrag`.
pub async fn run(ctx: &mut Ctx, a: DefragArgs) -> CliResult {
    if !a.data_dir.is_empty() {
        // Offline: rewrite a stopped member's data dir, as etcdctl 3.4 does for etcd's.
        return match raftcd::defrag::defrag_data_dir(std::path::Path::new(&a.data_dir)) {
            Ok(_) => {
                ctx.out.line(&format!("Finished defragmenting etcd data[{}]", a.data_dir));
                Ok(())
            }
            Err(e) => {
                ctx.out.eline(&format!("Failed to defragment etcd data[{}] ({e})", a.data_dir));
                Err(CliError::Code(EXIT_ERROR))
            }
        };
    }
    ctx.client().await?;
    let mut failures = 0;
    for ep in super::endpoint::endpoints(ctx, a.cluster).await? {
        let r = match ctx.client_for(std::slice::from_ref(&ep)).await {
            Ok(c) => c.defragment(DefragmentRequest {}).await.map_err(|e| e.to_string()),
            Err(e) => Err(format!("{e:?}")),
        };
        match r {
            Ok(_) => ctx.out.line(&format!("Finished defragmenting etcd member[{ep}]")),
            Err(e) => {
                ctx.out.eline(&format!("Failed to defragment etcd member[{ep}] ({e})"));
                failures += 1;
            }
        }
    }
    if failures != 0 {
        return Err(CliError::Code(EXIT_ERROR));
    }
    Ok(())
}
