//! One run: network, cluster, workload and nemesis, heal, final phase, checks, report.
//!
//! ```text
//! setup net (or loopback) -> start members -> wait for a leader
//!   -> [ workload clients | nemesis schedule ] for --time-limit
//!   -> stop the load, heal every fault, wait for a healthy cluster, quiet pause
//!   -> workload final phase (final reads, watchers catch up, lease expiry) -> checkers -> run directory
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::watch as tw;

use crate::checker::{self, register, CheckResult};
use crate::client::Conn;
use crate::cluster::{Cluster, ClusterConfig, ClusterState};
use crate::history::{Op, Outcome, Recorder};
use crate::nemesis::{self, FaultKind, FaultWindow, Nemesis, ScheduleConfig};
use crate::net::Net;
use crate::report;
use crate::workloads::{self, Ctx, Output, Signals, Workload};

/// Network namespaces: try them, insist on them, or stay on loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    Auto,
    Require,
    Off,
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub workload: Workload,
    pub nemesis: Vec<FaultKind>,
    pub time_limit: Duration,
    pub seed: u64,
    pub members: usize,
    pub concurrency: usize,
    /// Target request rate over all clients (per second).
    pub rate: f64,
    pub op_timeout: Duration,
    /// Root of run directories (`jepsen/runs`).
    pub runs_dir: PathBuf,
    pub net: NetMode,
    pub raftcd_bin: Option<PathBuf>,
    pub serializable_reads: bool,
    /// Quiet gap between faults (uniform in [gap, 2 gap]).
    pub nemesis_gap: Duration,
    /// Fault duration (uniform in [hold, 2 hold]).
    pub nemesis_hold: Duration,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    /// Time budget of the linearizability search per key.
    pub check_budget: Duration,
    pub keys: usize,
    pub ops_per_key: u64,
    /// Keep the members' data dirs (else only their logs stay).
    pub keep_data: bool,
    /// More raftcd flags for every member (e.g. `--snapshot-count 50`).
    pub member_args: Vec<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            workload: Workload::Register,
            nemesis: vec![FaultKind::Kill, FaultKind::Pause, FaultKind::Partition],
            time_limit: Duration::from_secs(60),
            seed: 1,
            members: 3,
            concurrency: 8,
            rate: 200.0,
            op_timeout: Duration::from_secs(4),
            runs_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("runs"),
            net: NetMode::Auto,
            raftcd_bin: None,
            serializable_reads: false,
            nemesis_gap: Duration::from_secs(3),
            nemesis_hold: Duration::from_secs(3),
            heartbeat_ms: 50,
            election_ms: 500,
            check_budget: Duration::from_secs(120),
            keys: 4,
            ops_per_key: 300,
            keep_data: false,
            member_args: Vec::new(),
        }
    }
}

impl RunConfig {
    /// The command line that reproduces this run (same schedule and client choices; timing varies).
    pub fn command(&self) -> String {
        let kinds: Vec<&str> = self.nemesis.iter().map(|k| k.name()).collect();
        let mut c = format!(
            "cargo run -p raftcd-jepsen -- --workload {} --nemesis {} --time-limit {} --seed {} --nodes {} \
             --concurrency {} --rate {} --op-timeout {} --nemesis-interval {} --fault-duration {}",
            self.workload.name(),
            if kinds.is_empty() { "none".to_string() } else { kinds.join(",") },
            self.time_limit.as_secs(),
            self.seed,
            self.members,
            self.concurrency,
            self.rate,
            self.op_timeout.as_millis(),
            self.nemesis_gap.as_secs_f64(),
            self.nemesis_hold.as_secs_f64(),
        );
        if self.serializable_reads {
            c.push_str(" --serializable-reads");
        }
        if let Some(b) = &self.raftcd_bin {
            c.push_str(&format!(" --raftcd-bin {}", b.display()));
        }
        if self.net != NetMode::Auto {
            c.push_str(if self.net == NetMode::Off { " --netns off" } else { " --netns require" });
        }
        for a in &self.member_args {
            c.push_str(&format!(" --member-arg={a}"));
        }
        c
    }
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub dir: PathBuf,
    pub checks: Vec<CheckResult>,
    pub ops: usize,
    /// "netns" or "loopback".
    pub mode: String,
    /// Faults that could not run here (e.g. partitions on loopback).
    pub skipped: Vec<FaultKind>,
    pub timeline: Vec<FaultWindow>,
}

impl RunResult {
    /// No checker found an anomaly and none was undecided.
    pub fn valid(&self) -> bool {
        self.checks.iter().all(|c| c.valid && !c.unknown)
    }

    /// Every failing or undecided check, with its details.
    pub fn describe_failures(&self) -> String {
        let mut s = String::new();
        for c in self.checks.iter().filter(|c| !c.valid || c.unknown) {
            s.push_str(&format!("{}: {}\n", c.name, c.summary));
            for d in c.details.iter().take(40) {
                s.push_str(&format!("  {d}\n"));
            }
        }
        s
    }
}

/// The members' flags.
fn member_args(cfg: &RunConfig) -> Vec<String> {
    let mut args = vec![
        "--heartbeat-interval".into(),
        cfg.heartbeat_ms.to_string(),
        "--election-timeout".into(),
        cfg.election_ms.to_string(),
    ];
    args.extend(cfg.member_args.iter().cloned());
    args
}

/// Builds the network (or not) and starts a healthy cluster in `dir`. Returns it, its connections and the
/// notes on what was skipped.
pub async fn start_cluster(cfg: &RunConfig, dir: &std::path::Path) -> Result<(Arc<Cluster>, Vec<Conn>, Vec<String>)> {
    let mut notes = Vec::new();
    let net = match cfg.net {
        NetMode::Off => None,
        mode => match Net::setup(cfg.members) {
            Ok(net) => {
                // Nothing is sent before every member address is known to stay on the test bridge.
                net.verify_routes().context("route check failed: refusing to send test traffic")?;
                if !net.iptables {
                    notes.push("iptables does not work inside the namespaces: partitions skipped".into());
                }
                Some(net)
            }
            Err(e) if mode == NetMode::Require => return Err(e.context("network namespaces required")),
            Err(e) => {
                notes.push(format!("network namespaces unavailable ({e:#}): members on loopback"));
                None
            }
        },
    };
    // Failpoint faults need a build with the failpoints compiled in; otherwise they are skipped (see run).
    let failpoints_bin =
        crate::cluster::raftcd_failpoints_binary().filter(|_| cfg.nemesis.contains(&FaultKind::Failpoint));
    let bin = cfg
        .raftcd_bin
        .clone()
        .or(failpoints_bin)
        .unwrap_or_else(|| crate::cluster::raftcd_binary(!cfg!(debug_assertions)));
    let ccfg = ClusterConfig { members: cfg.members, bin, dir: dir.join("cluster"), extra_args: member_args(cfg) };
    let cluster = Arc::new(Cluster::new(&ccfg, net)?);
    for i in 0..cluster.len() {
        cluster.start(i, ClusterState::New)?;
    }
    for i in 0..cluster.len() {
        cluster.wait_listening(i, Duration::from_secs(60)).await?;
    }
    let conns: Vec<Conn> = cluster.specs.iter().map(|s| Conn::new(s.idx, &s.client_url())).collect();
    nemesis::wait_healthy(&cluster, &conns, Duration::from_secs(60)).await?;
    Ok((cluster, conns, notes))
}

/// Runs one workload under the nemesis and checks it.
pub async fn run(cfg: RunConfig) -> Result<RunResult> {
    if cfg.workload == Workload::StaleRead {
        return stale_read(cfg).await;
    }
    let dir = report::run_dir(&cfg.runs_dir, cfg.workload.name())?;
    eprintln!("raftcd-jepsen: run directory {}", dir.display());
    let (cluster, conns, mut notes) = start_cluster(&cfg, &dir).await?;
    let mode = if cluster.net.is_some() { "netns" } else { "loopback" }.to_string();
    let mut kinds = cfg.nemesis.clone();
    let mut skipped = Vec::new();
    if !cluster.partitions_supported() && kinds.contains(&FaultKind::Partition) {
        kinds.retain(|k| *k != FaultKind::Partition);
        skipped.push(FaultKind::Partition);
        notes.push("partition faults SKIPPED (no network namespaces): only kill/pause/compact/member run".into());
    }
    if kinds.contains(&FaultKind::Failpoint)
        && cfg.raftcd_bin.is_none()
        && crate::cluster::raftcd_failpoints_binary().is_none()
    {
        kinds.retain(|k| *k != FaultKind::Failpoint);
        skipped.push(FaultKind::Failpoint);
        notes.push(
            "failpoint faults SKIPPED: no raftcd built with --features failpoints (target/*/raftcd-failpoints or \
             $RAFTCD_FAILPOINTS_BIN; scripts/test.sh builds it)"
                .into(),
        );
    }
    if cfg.workload == Workload::Watch && kinds.contains(&FaultKind::Compact) {
        kinds.retain(|k| *k != FaultKind::Compact);
        skipped.push(FaultKind::Compact);
        notes.push(
            "compaction skipped for the watch workload (its reference history is a watch from revision 1)".into(),
        );
    }
    for n in &notes {
        eprintln!("raftcd-jepsen: {n}");
    }

    let rec = Recorder::new();
    let ctx = Arc::new(Ctx {
        cluster: cluster.clone(),
        urls: cluster.specs.iter().map(|s| s.client_url()).collect(),
        rec: rec.clone(),
        seed: cfg.seed,
        concurrency: cfg.concurrency,
        op_timeout: cfg.op_timeout,
        think: Duration::from_secs_f64(cfg.concurrency as f64 / cfg.rate.max(1.0)),
        serializable_reads: cfg.serializable_reads,
        ops_per_key: cfg.ops_per_key,
        keys: cfg.keys,
        election_timeout: Duration::from_millis(cfg.election_ms),
    });
    let (stop_tx, stop_rx) = tw::channel(false);
    let (healed_tx, healed_rx) = tw::channel(false);
    let sig = Signals { stop: stop_rx.clone(), healed: healed_rx };
    let steps = nemesis::schedule(
        &ScheduleConfig {
            kinds: kinds.clone(),
            members: cfg.members,
            gap: cfg.nemesis_gap,
            hold: cfg.nemesis_hold,
            total: cfg.time_limit,
        },
        cfg.seed,
    );
    let mut nem = Nemesis::new(cluster.clone(), conns.clone(), rec.clone(), cfg.seed, Some(5));
    let timeline = nem.timeline.clone();
    let nemesis_task = tokio::spawn(async move {
        nem.run(steps, stop_rx).await;
    });
    let workload = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            match cfg.workload {
                Workload::Register => workloads::register::run(ctx, sig).await,
                Workload::Append => workloads::append::run(ctx, sig).await,
                Workload::Watch => workloads::watch::run(ctx, sig).await,
                Workload::Lease => workloads::lease::run(ctx, sig).await,
                Workload::Kubernetes => workloads::kubernetes::run(ctx, sig).await,
                Workload::StaleRead => bail!("not a load workload"),
            }
        })
    };
    tokio::time::sleep(cfg.time_limit).await;
    let _ = stop_tx.send(true);
    eprintln!("raftcd-jepsen: time limit reached; healing");
    nemesis_task.await?;
    let heal_start = rec.now();
    let healthy = nemesis::wait_healthy(&cluster, &conns, Duration::from_secs(120)).await;
    if let Err(e) = &healthy {
        notes.push(format!("the cluster did not recover after the heal: {e}"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = healed_tx.send(true);
    let output = tokio::time::timeout(Duration::from_secs(300), workload)
        .await
        .context("the workload's final phase did not finish within 300 s")??;
    let output = output?;
    let ops = rec.ops();
    let timeline: Vec<FaultWindow> = timeline.lock().unwrap_or_else(|e| e.into_inner()).clone();
    eprintln!("raftcd-jepsen: {} ops recorded; checking", ops.len());
    let mut checks = check(cfg.workload, cfg.check_budget, &ops, &output);
    if let Err(e) = healthy {
        checks.push(CheckResult {
            name: "recovery".into(),
            valid: false,
            unknown: false,
            summary: "the cluster did not serve again after every fault was healed".into(),
            details: vec![format!("{e:#}"), format!("heal started at {:.3}s", heal_start as f64 / 1e9)],
        });
    }
    checks.push(exits_check(&cluster));
    let title = format!("raftcd-jepsen {} — seed {} — {mode}", cfg.workload.name(), cfg.seed);
    let mut settings = vec![
        ("workload".to_string(), cfg.workload.name().to_string()),
        ("nemesis".into(), kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")),
        ("time limit".into(), format!("{:?}", cfg.time_limit)),
        ("seed".into(), cfg.seed.to_string()),
        ("members".into(), format!("{} ({mode})", cfg.members)),
        ("clients".into(), cfg.concurrency.to_string()),
        ("member flags".into(), member_args(&cfg).join(" ")),
    ];
    if !skipped.is_empty() {
        settings.push(("skipped faults".into(), skipped.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")));
    }
    let summary = report::summary(&report::SummaryInput {
        title: title.clone(),
        command: cfg.command(),
        settings,
        ops: &ops,
        timeline: &timeline,
        checks: &checks,
        notes: &notes,
    });
    report::write_all(&dir, cfg.workload, &ops, &output, &timeline, &checks, &summary, &title)?;
    drop(ctx);
    finish_cluster(cluster, &dir, cfg.keep_data);
    Ok(RunResult { dir, checks, ops: ops.len(), mode, skipped, timeline })
}

/// Members must only go down when the nemesis kills them. A member that exits on its own with an error or
/// a crash fails the run; one killed by a SIGKILL this harness did not send is reported (another process on
/// the machine killed it) without failing the run.
fn exits_check(cluster: &Cluster) -> CheckResult {
    let exits = cluster.unexpected_exits();
    let (external, crashes): (Vec<_>, Vec<_>) = exits.into_iter().partition(|(_, w)| w.contains("signal: 9"));
    let mut r = CheckResult::from_problems(
        "member-exits",
        "no member went down except by the nemesis",
        crashes.iter().map(|(i, w)| format!("{w} (log: {})", cluster.specs[*i].log.display())).collect(),
    );
    if !external.is_empty() {
        r.summary = format!(
            "{}; killed by someone else (SIGKILL not sent by the nemesis, ignored): {}",
            r.summary,
            external.iter().map(|(_, w)| w.as_str()).collect::<Vec<_>>().join("; ")
        );
    }
    r
}

/// Stops the members and removes their data dirs (logs stay).
fn finish_cluster(cluster: Arc<Cluster>, dir: &std::path::Path, keep_data: bool) {
    cluster.kill_all();
    let specs = cluster.specs.clone();
    drop(cluster);
    if !keep_data {
        for s in specs {
            let _ = std::fs::remove_dir_all(&s.data_dir);
        }
    }
    let _ = dir;
}

/// The checkers of a workload; `budget` bounds the linearizability search per key.
pub fn check(workload: Workload, budget: Duration, ops: &[Op], out: &Output) -> Vec<CheckResult> {
    let mut checks = Vec::new();
    let okc = ops.iter().filter(|o| o.outcome == Outcome::Ok).count();
    let info = ops.iter().filter(|o| o.outcome == Outcome::Info).count();
    let fail = ops.len() - okc - info;
    checks.push(if okc > 0 {
        CheckResult::pass("availability", format!("{okc} ok, {info} info, {fail} fail"))
    } else {
        CheckResult::from_problems("availability", "", vec![format!("no op succeeded ({info} info, {fail} fail)")])
    });
    checks.push(CheckResult::from_problems("final-phase", "final reads / catch-up completed", out.problems.clone()));
    let linear = |checks: &mut Vec<CheckResult>| {
        let started = Instant::now();
        let rep = register::check_history(ops, budget);
        let verdict = rep.verdict();
        checks.push(CheckResult {
            name: "linearizable".into(),
            valid: verdict != checker::linear::Verdict::NotLinearizable,
            unknown: verdict == checker::linear::Verdict::Unknown,
            summary: format!("{} (checked in {:.1?})", rep.describe().lines().next().unwrap_or(""), started.elapsed()),
            details: rep.describe().lines().skip(1).map(String::from).collect(),
        });
        checks.push(CheckResult::from_problems(
            "revisions",
            "every value has one mod_revision and every mod_revision one value, per key",
            register::check_revisions(ops),
        ));
    };
    match workload {
        Workload::Register | Workload::StaleRead => linear(&mut checks),
        Workload::Append => {
            linear(&mut checks);
            checks.push(checker::append::check(ops, &out.final_state));
        }
        Workload::Watch => {
            let (reference, mut problems) = checker::watch::reference_from(out.reference.clone());
            let last = out.final_revision.unwrap_or(i64::MAX);
            problems.extend(checker::watch::check_reference(
                ops,
                &reference,
                out.first_revision.max(2),
                &|r| r <= last,
                true,
            ));
            checks.push(CheckResult::from_problems(
                "watch-vs-writes",
                format!(
                    "the committed history (a watch from revision 1, {} events) holds every acknowledged write \
                     at its revision, nothing invented, no revision missing",
                    reference.events().len()
                ),
                problems,
            ));
            checks.push(checker::watch::check_watchers(&reference, &out.sessions, out.final_revision));
        }
        Workload::Lease => checks.push(checker::lease::check(ops, out.final_scan, out.healed_at)),
        Workload::Kubernetes => {
            linear(&mut checks);
            checks.extend(checker::kubernetes::check(
                ops,
                &out.sessions,
                &out.prefix,
                out.first_revision,
                out.final_revision,
            ));
        }
    }
    checks
}

/// The deliberately broken client: serializable reads from a member cut off from the others while writes
/// go on through the others. Deterministic: with namespaces the member is partitioned away; on loopback it
/// is paused while the others write, then the others are paused and it is resumed, alone, to serve the
/// reads. The linearizability checker must flag the history; the check passes when it does.
pub async fn stale_read(cfg: RunConfig) -> Result<RunResult> {
    let dir = report::run_dir(&cfg.runs_dir, Workload::StaleRead.name())?;
    let (cluster, conns, notes) = start_cluster(&RunConfig { members: 3, ..cfg.clone() }, &dir).await?;
    let mode = if cluster.partitions_supported() { "netns" } else { "loopback" }.to_string();
    let rec = Recorder::new();
    let mk = |serializable| {
        Arc::new(Ctx {
            cluster: cluster.clone(),
            urls: cluster.specs.iter().map(|s| s.client_url()).collect(),
            rec: rec.clone(),
            seed: cfg.seed,
            concurrency: 1,
            op_timeout: Duration::from_secs(10),
            think: Duration::ZERO,
            serializable_reads: serializable,
            ops_per_key: u64::MAX,
            keys: 1,
            election_timeout: Duration::from_millis(cfg.election_ms),
        })
    };
    let (linear_ctx, stale_ctx) = (mk(false), mk(true));
    let leader = nemesis::wait_healthy(&cluster, &conns, Duration::from_secs(60)).await?;
    let stale = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|i| *i != stale).collect();
    let key = "jstale/x";
    let mut writer = workloads::Client::new(linear_ctx.clone(), 0);
    writer.member = leader;
    let mut reader = workloads::Client::new(stale_ctx.clone(), 1);
    reader.member = stale;
    let mut timeline = Vec::new();
    let op = writer.write(key, "v0").await;
    if op.outcome != Outcome::Ok {
        bail!("first write failed: {:?}", op.error);
    }
    // The stale member has v0 before it is cut off.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let op = reader.read(key).await;
        if matches!(&op.ret, Some(crate::history::Ret::Read { value: Some(v), .. }) if v == "v0") {
            break;
        }
        if Instant::now() > deadline {
            bail!("n{} never caught up with v0", stale + 1);
        }
        reader.member = stale;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = rec.now();
    if let Some(net) = cluster.net.as_ref().filter(|n| n.iptables) {
        let grudge: Vec<Vec<usize>> = (0..3).map(|i| if i == stale { others.clone() } else { vec![stale] }).collect();
        net.partition(&grudge)?;
    } else {
        cluster.pause(stale)?;
    }
    for v in ["v1", "v2"] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            writer.member = others[0];
            let op = writer.write(key, v).await;
            if op.outcome == Outcome::Ok {
                break;
            }
            if Instant::now() > deadline {
                bail!("writes through the majority failed: {:?}", op.error);
            }
        }
    }
    if cluster.net.as_ref().is_none_or(|n| !n.iptables) {
        for i in &others {
            cluster.pause(*i)?;
        }
        cluster.resume(stale)?;
    }
    for _ in 0..3 {
        reader.member = stale;
        reader.read(key).await;
    }
    if let Some(net) = cluster.net.as_ref() {
        net.heal()?;
    }
    for i in 0..3 {
        cluster.resume(i)?;
    }
    timeline.push(FaultWindow {
        start,
        end: rec.now(),
        fault: if mode == "netns" { "partition isolate-one" } else { "pause" }.into(),
        members: vec![stale],
        detail: format!("n{} cut off; writes through {:?}; serializable reads from it", stale + 1, others),
    });
    let ops = rec.ops();
    let rep = register::check_history(&ops, cfg.check_budget);
    let caught = rep.verdict() == checker::linear::Verdict::NotLinearizable;
    let mut details: Vec<String> = rep.describe().lines().map(String::from).collect();
    details.insert(0, "the linearizability checker's verdict on the broken client's history:".into());
    let checks = vec![CheckResult {
        name: "stale-read-caught".into(),
        valid: caught,
        unknown: false,
        summary: if caught {
            "the checker flagged the serializable reads from the cut-off member as not linearizable (expected)".into()
        } else {
            "the checker did NOT flag the stale serializable reads".into()
        },
        details,
    }];
    let title = format!("raftcd-jepsen stale-read (deliberately broken client) — {mode}");
    let summary = report::summary(&report::SummaryInput {
        title: title.clone(),
        command: cfg.command(),
        settings: vec![("members".into(), format!("3 ({mode})")), ("stale member".into(), format!("n{}", stale + 1))],
        ops: &ops,
        timeline: &timeline,
        checks: &checks,
        notes: &notes,
    });
    report::write_all(&dir, Workload::StaleRead, &ops, &Output::default(), &timeline, &checks, &summary, &title)?;
    drop((linear_ctx, stale_ctx, writer, reader));
    finish_cluster(cluster, &dir, cfg.keep_data);
    Ok(RunResult { dir, checks, ops: ops.len(), mode, skipped: vec![], timeline })
}

/// Runs the checkers again on a recorded run directory (history, watch sessions, reference and the final
/// phase's output); for re-checking after a checker change or a crash of the harness during the check.
pub fn recheck(dir: &std::path::Path, budget: Duration) -> Result<Vec<CheckResult>> {
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("run.json"))?)?;
    let workload: Workload = serde_json::from_value(run["workload"].clone()).context("run.json: workload")?;
    let ops = crate::history::read_jsonl(&dir.join("history.jsonl"))?;
    let mut out: Output = serde_json::from_value(run["output"].clone()).context("run.json: output")?;
    out.sessions = report::read_lines(&dir.join("watches.jsonl"))?;
    out.reference = report::read_lines(&dir.join("reference.jsonl"))?;
    Ok(check(workload, budget, &ops, &out))
}
