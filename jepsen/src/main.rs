//! `raftcd-jepsen`: run a workload against a real raftcd cluster under a seeded nemesis and check the
//! history.
//!
//! ```text
//! raftcd-jepsen --workload register --nemesis partition,kill --time-limit 600 --seed 7
//! raftcd-jepsen --workload all --nemesis all --time-limit 300
//! raftcd-jepsen check jepsen/runs/<dir>/history.jsonl      # re-check a recorded register/append history
//! ```
//! Exit status: 0 = every check passed, 1 = an anomaly was found or a check could not decide, 2 = the run
//! itself failed. Ctrl-C stops the run and removes every process, namespace and bridge it created.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use raftcd_jepsen::nemesis::parse_kinds;
use raftcd_jepsen::runner::NetMode;
use raftcd_jepsen::workloads::Workload;
use raftcd_jepsen::{run, RunConfig};

#[derive(Parser, Debug)]
#[command(name = "raftcd-jepsen", about = "Jepsen-style fault testing of raftcd with a linearizability checker")]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// register, append, watch, lease, kubernetes, stale-read (a deliberately broken client the checker must
    /// catch), or all (the five real workloads one after another).
    #[arg(long, default_value = "register")]
    workload: String,
    /// Faults: comma-separated kill, pause, partition, compact (also defragments), member, failpoint; "all" or
    /// "none".
    #[arg(long, default_value = "kill,pause,partition")]
    nemesis: String,
    /// Seconds of load (and faults).
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Seed of the fault schedule and the clients' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Members (3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Target requests per second over all clients.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Client-side timeout of one request, in ms (then its outcome is unknown).
    #[arg(long, default_value_t = 4000)]
    op_timeout: u64,
    /// Seconds between faults (uniform in [x, 2x]).
    #[arg(long, default_value_t = 3.0)]
    nemesis_interval: f64,
    /// Seconds a fault lasts (uniform in [x, 2x]).
    #[arg(long, default_value_t = 3.0)]
    fault_duration: f64,
    /// Network namespaces: auto (use them when possible), require, off (loopback: kill/pause only).
    #[arg(long, default_value = "auto")]
    netns: String,
    /// The raftcd binary (default: target/{release,debug}/raftcd, built when missing).
    #[arg(long)]
    raftcd_bin: Option<PathBuf>,
    /// Where run directories go.
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// Deliberately broken: serve reads with serializable = true (not linearizable).
    #[arg(long)]
    serializable_reads: bool,
    /// Keys in use at once (register, append).
    #[arg(long, default_value_t = 4)]
    keys: usize,
    /// Ops per key before moving to a fresh key (register, append).
    #[arg(long, default_value_t = 300)]
    ops_per_key: u64,
    /// Seconds the linearizability search may spend per key.
    #[arg(long, default_value_t = 120)]
    check_budget: u64,
    /// Keep the members' data dirs in the run directory.
    #[arg(long)]
    keep_data: bool,
    /// An extra raftcd flag for every member, e.g. --member-arg=--snapshot-count=50 (repeatable).
    #[arg(long = "member-arg", allow_hyphen_values = true)]
    member_args: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Re-checks a recorded run: a run directory (every checker of its workload) or a history.jsonl
    /// (linearizability of its register, append and kubernetes ops).
    Check {
        path: PathBuf,
        /// Seconds the linearizability search may spend per key.
        #[arg(long, default_value_t = 120)]
        budget: u64,
    },
}

fn config(a: &Args, workload: Workload) -> Result<RunConfig, String> {
    let d = RunConfig::default();
    Ok(RunConfig {
        workload,
        nemesis: parse_kinds(&a.nemesis)?,
        time_limit: Duration::from_secs(a.time_limit),
        seed: a.seed,
        members: a.nodes,
        concurrency: a.concurrency.max(1),
        rate: a.rate,
        op_timeout: Duration::from_millis(a.op_timeout),
        runs_dir: a.runs_dir.clone().unwrap_or(d.runs_dir),
        net: match a.netns.as_str() {
            "auto" => NetMode::Auto,
            "require" => NetMode::Require,
            "off" => NetMode::Off,
            other => return Err(format!("--netns {other:?}: auto, require or off")),
        },
        raftcd_bin: a.raftcd_bin.clone(),
        serializable_reads: a.serializable_reads,
        nemesis_gap: Duration::from_secs_f64(a.nemesis_interval),
        nemesis_hold: Duration::from_secs_f64(a.fault_duration),
        keys: a.keys,
        ops_per_key: a.ops_per_key,
        check_budget: Duration::from_secs(a.check_budget),
        keep_data: a.keep_data,
        member_args: a.member_args.clone(),
        ..d
    })
}

async fn main_inner(a: Args) -> ExitCode {
    if let Some(Cmd::Check { path, budget }) = &a.cmd {
        if path.is_dir() {
            return match raftcd_jepsen::runner::recheck(path, Duration::from_secs(*budget)) {
                Ok(checks) => {
                    for c in &checks {
                        let mark = if c.unknown {
                            "?"
                        } else if c.valid {
                            "ok"
                        } else {
                            "FAIL"
                        };
                        println!("  {:<18} {mark:<5} {}", c.name, c.summary);
                        for d in c.details.iter().take(40) {
                            println!("      {d}");
                        }
                    }
                    if checks.iter().all(|c| c.valid && !c.unknown) {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("raftcd-jepsen: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        let ops = match raftcd_jepsen::history::read_jsonl(path) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("raftcd-jepsen: {e:#}");
                return ExitCode::from(2);
            }
        };
        let rep = raftcd_jepsen::checker::register::check_history(&ops, Duration::from_secs(*budget));
        print!("{}", rep.describe());
        return if rep.valid() { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    let workloads: Vec<Workload> = if a.workload == "all" {
        Workload::ALL.to_vec()
    } else {
        match a.workload.split(',').map(|w| w.trim().parse()).collect::<Result<Vec<_>, _>>() {
            Ok(w) => w,
            Err(e) => {
                eprintln!("raftcd-jepsen: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let mut all_valid = true;
    for w in workloads {
        let cfg = match config(&a, w) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("raftcd-jepsen: {e}");
                return ExitCode::from(2);
            }
        };
        match run(cfg).await {
            Ok(r) => {
                println!(
                    "== {} ({}, {} ops): {}",
                    w.name(),
                    r.mode,
                    r.ops,
                    if r.valid() { "valid" } else { "INVALID" }
                );
                for c in &r.checks {
                    println!(
                        "  {:<18} {:<5} {}",
                        c.name,
                        if c.unknown {
                            "?"
                        } else if c.valid {
                            "ok"
                        } else {
                            "FAIL"
                        },
                        c.summary
                    );
                }
                if !r.valid() {
                    print!("{}", r.describe_failures());
                }
                println!("  report: {}", r.dir.join("summary.md").display());
                all_valid &= r.valid();
            }
            Err(e) => {
                eprintln!("raftcd-jepsen: {} run failed: {e:#}", w.name());
                return ExitCode::from(2);
            }
        }
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let interrupted = async {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut i), Ok(mut t)) => tokio::select! {
                _ = i.recv() => {}
                _ = t.recv() => {}
            },
            _ => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        code = main_inner(args) => code,
        _ = interrupted => {
            eprintln!("raftcd-jepsen: interrupted; removing members, namespaces and bridges");
            raftcd_jepsen::cluster::cleanup_registered();
            ExitCode::from(130)
        }
    }
}
