//! The `raftcd` server binary.

use clap::Parser;
use raftcd::config::Config;

/// sled copies a tree node on every insert and frees the old one later from its own threads: with glibc's
/// malloc, allocation was ~40 % of the raft thread's profile under a put load (see the commit message).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(cfg: &Config) {
    let level = match cfg.log_level.as_str() {
        "panic" | "fatal" | "dpanic" => "error",
        other => other,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAFTCD_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},raft_rs=warn,h2=warn,tower=warn,hyper=warn,sled=warn"))
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cfg.log_format == "json" {
        builder.json().init();
    } else {
        builder.with_ansi(false).init();
    }
}

fn main() {
    let cfg = Config::parse();
    init_logging(&cfg);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("raftcd").build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raftcd: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(raftcd::server::run(cfg));
    // Streams from peers and clients may still be open; everything durable is already flushed.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Err(e) = result {
        tracing::error!(error = %e, "raftcd stopped with an error");
        // Errors of raftcd's own already say so ("raftcd: storage: ..."); etcd's say "etcdserver: ...".
        let msg = e.to_string();
        if msg.starts_with("raftcd: ") {
            eprintln!("{msg}");
        } else {
            eprintln!("raftcd: {msg}");
        }
        std::process::exit(1);
    }
}
