//! `raftcd-util`: offline tools over snapshot files and data dirs, as etcd's `etcdutl`:
//! `snapshot status FILE [-w simple|json|table]`, `snapshot restore FILE --name ... --data-dir ...` and
//! `defrag --data-dir DIR`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use raftcd::snapshot::{restore, status, RestoreOptions};

#[derive(Parser)]
#[command(name = "raftcd-util", version, about = "Offline tools for raftcd snapshot files and data dirs")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Snapshot files.
    Snapshot {
        #[command(subcommand)]
        cmd: SnapshotCmd,
    },
    /// Defragments the data dir of a stopped member (rewrites its database keeping only live data).
    Defrag {
        /// Path to the data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Writes a CA (ca.pem, ca-key.pem) and certificates signed by it (NAME.pem, NAME-key.pem; CN = NAME,
    /// usable for server and client auth) for a local secure cluster or tests.
    GenCerts {
        /// Output directory.
        dir: PathBuf,
        /// Certificates as NAME or NAME=host1,host2 (default hosts: localhost, 127.0.0.1).
        #[arg(required = true)]
        certs: Vec<String>,
    },
}

#[derive(Subcommand)]
enum SnapshotCmd {
    /// Gets backend snapshot status of a given file.
    Status {
        file: PathBuf,
        /// Output format: simple, json or table.
        #[arg(short = 'w', long = "write-out", default_value = "simple")]
        write_out: String,
    },
    /// Restores a member's data directory from a snapshot file.
    Restore {
        file: PathBuf,
        /// Human-readable name for this member.
        #[arg(long, default_value = "default")]
        name: String,
        /// Path to the data directory (default: "<name>.raftcd").
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Initial cluster configuration for restore bootstrap.
        #[arg(long, default_value = "default=http://localhost:2380")]
        initial_cluster: String,
        /// Initial cluster token for the cluster during restore bootstrap.
        #[arg(long, default_value = "etcd-cluster")]
        initial_cluster_token: String,
        /// List of this member's peer URLs to advertise to the rest of the cluster.
        #[arg(long, default_value = "http://localhost:2380")]
        initial_advertise_peer_urls: String,
        /// Ignore snapshot integrity hash value (required if copied from data directory).
        #[arg(long)]
        skip_hash_check: bool,
        /// How much to increase the latest revision after restore.
        #[arg(long, default_value_t = 0)]
        bump_revision: u64,
        /// Mark the latest revision after restore as the point of scheduled compaction.
        #[arg(long)]
        mark_compacted: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Defrag { data_dir } => raftcd::defrag::defrag_data_dir(&data_dir)
            .map(|_| println!("Finished defragmenting etcd data[{}]", data_dir.display()))
            .map_err(|e| e.to_string()),
        Cmd::GenCerts { dir, certs } => {
            let certs: Vec<(String, Vec<String>)> = certs
                .iter()
                .map(|c| match c.split_once('=') {
                    Some((n, hosts)) => (n.to_string(), hosts.split(',').map(str::to_string).collect()),
                    None => (c.clone(), vec!["localhost".to_string(), "127.0.0.1".to_string()]),
                })
                .collect();
            raftcd::tls::generate_ca_and_certs(&dir, &certs).map_err(|e| e.to_string())
        }
        Cmd::Snapshot { cmd: SnapshotCmd::Status { file, write_out } } => status(&file)
            .map_err(|e| e.to_string())
            .and_then(|st| raftcd::snapshot::format_status(&st, &write_out))
            .map(|out| print!("{out}")),
        Cmd::Snapshot {
            cmd:
                SnapshotCmd::Restore {
                    file,
                    name,
                    data_dir,
                    initial_cluster,
                    initial_cluster_token,
                    initial_advertise_peer_urls,
                    skip_hash_check,
                    bump_revision,
                    mark_compacted,
                },
        } => {
            let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(format!("{name}.raftcd")));
            let opts = RestoreOptions {
                name,
                data_dir,
                initial_cluster,
                initial_cluster_token,
                initial_advertise_peer_urls: raftcd::config::split_urls(&initial_advertise_peer_urls),
                skip_hash_check,
                bump_revision,
                mark_compacted,
            };
            restore(&file, &opts).map_err(|e| e.to_string())
        }
    };
    if let Err(e) = result {
        eprintln!("Error: {e}");
        std::process::exit(1);
    }
}
