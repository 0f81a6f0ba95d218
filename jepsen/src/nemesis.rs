//! The nemesis: a seeded schedule of faults, one at a time — quiet gap, fault, hold, heal — recorded in a
//! timeline of fault windows.
//!
//! | kind        | faults                                                                                  |
//! |-------------|-----------------------------------------------------------------------------------------|
//! | `kill`      | kill -9 a random member / the leader / a majority, restarted on its data dir at the heal |
//! | `pause`     | SIGSTOP a random member / the leader / a majority, SIGCONT at the heal                   |
//! | `partition` | isolate the leader, random halves, a bridge (two sides that only one member connects), a majorities ring (5+ members); iptables DROP inside the namespaces; needs namespaces |
//! | `compact`   | Compact at the current revision minus a margin, during traffic (instant)                 |
//! | `member`    | MemberRemove a random member, wipe its data dir, MemberAdd it back and start it with `--initial-cluster-state existing` |
//!
//! At the end every fault is healed: members resumed and restarted, partitions removed, a removed member
//! re-added.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use raftcd_proto::etcdserverpb::{
    CompactionRequest, DefragmentRequest, MemberAddRequest, MemberListRequest, MemberRemoveRequest, RangeRequest,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::client::{call, status, Conn};
use crate::cluster::{Cluster, ClusterState};
use crate::history::{Nanos, Recorder};

/// A kind of fault the nemesis may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
    Compact,
    Member,
    /// Restart members with a named failpoint armed (needs a `--features failpoints` build).
    Failpoint,
}

/// The failpoints a running member can reach (server/src/failpoints.rs). The defrag ones fire only when a
/// compact fault defragments the armed member before the heal.
pub const FAILPOINTS: [&str; 9] = [
    "raft-before-fsync",
    "raft-after-fsync",
    "raft-before-apply",
    "raft-after-apply",
    "apply-before-commit",
    "apply-after-commit",
    "snapshot-install-midway",
    "snapshot-installed-before-log-reset",
    "defrag-online-before-swap",
];

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Compact,
        FaultKind::Member,
        FaultKind::Failpoint,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Compact => "compact",
            FaultKind::Member => "member",
            FaultKind::Failpoint => "failpoint",
        }
    }
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown fault {s:?} (kill, pause, partition, compact, member, failpoint)"))
    }
}

/// Parses "kill,pause,partition" ("none" or "" = no faults; "all" = every kind).
pub fn parse_kinds(s: &str) -> Result<Vec<FaultKind>, String> {
    match s.trim() {
        "" | "none" => Ok(vec![]),
        "all" => Ok(FaultKind::ALL.to_vec()),
        s => s.split(',').map(|k| k.trim().parse()).collect(),
    }
}

/// Which members a kill or pause hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Random,
    Leader,
    Majority,
}

/// A partition shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    IsolateLeader,
    RandomHalves,
    /// Two sides that see only one middle member (Jepsen's "bridge"): a majority/minority overlap.
    Bridge,
    /// Each member sees a majority, no two the same one (5+ members).
    Ring,
}

/// One planned fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    Kill {
        target: Target,
    },
    Pause {
        target: Target,
    },
    Partition {
        shape: Shape,
    },
    Compact,
    MemberChange,
    /// Restart the target members with `point` armed; they abort when they reach it.
    Failpoint {
        target: Target,
        point: String,
    },
}

impl Fault {
    /// Its kind.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Kill { .. } => FaultKind::Kill,
            Fault::Pause { .. } => FaultKind::Pause,
            Fault::Partition { .. } => FaultKind::Partition,
            Fault::Compact => FaultKind::Compact,
            Fault::MemberChange => FaultKind::Member,
            Fault::Failpoint { .. } => FaultKind::Failpoint,
        }
    }

    /// A short name, e.g. "kill leader", "partition ring".
    pub fn name(&self) -> String {
        let s = serde_json::to_value(self).unwrap_or_default();
        let sub = s.get("point").or_else(|| s.get("target")).or_else(|| s.get("shape")).and_then(|v| v.as_str());
        let sub = sub.unwrap_or("");
        format!("{} {sub}", self.kind().name()).trim().to_string()
    }
}

/// One step of the schedule: wait `gap` quietly, inject `fault`, hold it for `hold`, heal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub gap_ms: u64,
    pub fault: Fault,
    pub hold_ms: u64,
}

/// Schedule settings.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    pub kinds: Vec<FaultKind>,
    pub members: usize,
    /// Quiet gap between faults (uniform in [gap, 2 gap]).
    pub gap: Duration,
    /// Fault duration (uniform in [hold, 2 hold]).
    pub hold: Duration,
    /// Total time the schedule covers.
    pub total: Duration,
}

/// The seeded schedule: the same seed and settings give the same steps. Targets such as "the leader" are
/// resolved when the step runs.
pub fn schedule(cfg: &ScheduleConfig, seed: u64) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e656d65_73697300);
    let mut out = Vec::new();
    if cfg.kinds.is_empty() {
        return out;
    }
    let mut t = Duration::ZERO;
    let mut n = 0usize;
    while t < cfg.total {
        let gap = cfg.gap + cfg.gap.mul_f64(rng.random::<f64>());
        let hold = cfg.hold + cfg.hold.mul_f64(rng.random::<f64>());
        // Cycle through the kinds so a short run sees each of them, in a seeded order per round.
        let round = n / cfg.kinds.len();
        let mut order = cfg.kinds.clone();
        order.shuffle(&mut StdRng::seed_from_u64(seed.wrapping_add(round as u64)));
        let kind = order[n % order.len()];
        let target = [Target::Random, Target::Leader, Target::Majority][rng.random_range(0..3)];
        let fault = match kind {
            FaultKind::Kill => Fault::Kill { target },
            FaultKind::Pause => Fault::Pause { target },
            FaultKind::Partition => {
                let mut shapes = vec![Shape::IsolateLeader, Shape::RandomHalves, Shape::Bridge];
                if cfg.members >= 5 {
                    shapes.push(Shape::Ring);
                }
                Fault::Partition { shape: shapes[rng.random_range(0..shapes.len())] }
            }
            FaultKind::Compact => Fault::Compact,
            FaultKind::Member => Fault::MemberChange,
            FaultKind::Failpoint => {
                Fault::Failpoint { target, point: FAILPOINTS[rng.random_range(0..FAILPOINTS.len())].to_string() }
            }
        };
        let hold = if matches!(fault, Fault::Compact | Fault::MemberChange) { Duration::ZERO } else { hold };
        out.push(Step { gap_ms: gap.as_millis() as u64, fault, hold_ms: hold.as_millis() as u64 });
        t += gap + hold;
        n += 1;
    }
    out
}

/// A fault window in the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub start: Nanos,
    pub end: Nanos,
    /// e.g. "kill leader".
    pub fault: String,
    /// Members hit (indexes).
    pub members: Vec<usize>,
    pub detail: String,
}

/// Shared state of the nemesis and the final phase.
pub struct Nemesis {
    pub cluster: Arc<Cluster>,
    pub conns: Vec<Conn>,
    pub rec: Recorder,
    pub timeline: Arc<Mutex<Vec<FaultWindow>>>,
    rng: StdRng,
    /// Compaction keeps this many revisions below the current one (None: compaction disabled).
    pub compact_keep: Option<i64>,
}

/// The member id -> index map and the agreed leader, from Status on every serving member.
pub async fn find_leader(cluster: &Cluster, conns: &[Conn]) -> Option<usize> {
    let mut ids: HashMap<u64, usize> = HashMap::new();
    let mut votes: HashMap<u64, usize> = HashMap::new();
    for (i, c) in conns.iter().enumerate() {
        if !cluster.is_serving(i) {
            continue;
        }
        if let Ok(s) = status(c, Duration::from_secs(1)).await {
            if let Some(h) = &s.header {
                ids.insert(h.member_id, i);
            }
            if s.leader != 0 {
                *votes.entry(s.leader).or_default() += 1;
            }
        }
    }
    let (leader, _) = votes.into_iter().max_by_key(|(_, n)| *n)?;
    ids.get(&leader).copied()
}

/// Waits until every serving member agrees on a leader and it answers a linearizable read.
pub async fn wait_healthy(cluster: &Cluster, conns: &[Conn], within: Duration) -> Result<usize> {
    let start = std::time::Instant::now();
    let mut last = String::from("no leader");
    while start.elapsed() < within {
        if let Some(l) = find_leader(cluster, conns).await {
            let mut kv = conns[l].kv.clone();
            let req = RangeRequest { key: b"raftcd-jepsen/health".to_vec(), ..Default::default() };
            match call(Duration::from_secs(3), kv.range(req)).await {
                Ok(_) => return Ok(l),
                Err(e) => last = e.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("cluster not healthy within {within:?}: {last}")
}

fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Grudges for a cut between `a` and the rest: each side drops the other's packets.
fn cut(n: usize, a: &[usize]) -> Vec<Vec<usize>> {
    let b: Vec<usize> = (0..n).filter(|i| !a.contains(i)).collect();
    (0..n).map(|i| if a.contains(&i) { b.clone() } else { a.to_vec() }).collect()
}

impl Nemesis {
    /// A nemesis over `cluster`, with its own seeded choices.
    pub fn new(cluster: Arc<Cluster>, conns: Vec<Conn>, rec: Recorder, seed: u64, compact_keep: Option<i64>) -> Self {
        Nemesis {
            cluster,
            conns,
            rec,
            timeline: Arc::new(Mutex::new(Vec::new())),
            rng: StdRng::seed_from_u64(seed ^ 0x7461_7267_6574),
            compact_keep,
        }
    }

    fn log(&self, w: FaultWindow) {
        eprintln!(
            "raftcd-jepsen: [{:>8.3}s..{:>8.3}s] {} {} {}",
            w.start as f64 / 1e9,
            w.end as f64 / 1e9,
            w.fault,
            w.members.iter().map(|m| format!("n{}", m + 1)).collect::<Vec<_>>().join(","),
            w.detail
        );
        self.timeline.lock().unwrap_or_else(|e| e.into_inner()).push(w);
    }

    async fn targets(&mut self, target: Target) -> Vec<usize> {
        let n = self.cluster.len();
        let mut all: Vec<usize> = (0..n).collect();
        all.shuffle(&mut self.rng);
        match target {
            Target::Random => vec![all[0]],
            Target::Leader => match find_leader(&self.cluster, &self.conns).await {
                Some(l) => vec![l],
                None => vec![all[0]],
            },
            Target::Majority => {
                let mut m = all[..majority(n)].to_vec();
                m.sort_unstable();
                m
            }
        }
    }

    /// Runs the schedule until it ends or `stop` turns true, then heals everything.
    pub async fn run(&mut self, steps: Vec<Step>, mut stop: tokio::sync::watch::Receiver<bool>) {
        for step in steps {
            if sleep_or_stop(Duration::from_millis(step.gap_ms), &mut stop).await {
                break;
            }
            let start = self.rec.now();
            match self.inject(&step.fault).await {
                Ok((members, detail)) => {
                    let stopped = sleep_or_stop(Duration::from_millis(step.hold_ms), &mut stop).await;
                    let healed = self.heal().await;
                    let detail = match healed {
                        Ok(h) if h.is_empty() => detail,
                        Ok(h) => format!("{detail}; healed: {}", h.join(", ")),
                        Err(e) => format!("{detail}; heal failed: {e}"),
                    };
                    self.log(FaultWindow { start, end: self.rec.now(), fault: step.fault.name(), members, detail });
                    if stopped {
                        break;
                    }
                }
                Err(e) => {
                    let _ = self.heal().await;
                    self.log(FaultWindow {
                        start,
                        end: self.rec.now(),
                        fault: step.fault.name(),
                        members: vec![],
                        detail: format!("not injected: {e}"),
                    });
                }
            }
        }
        if let Err(e) = self.heal().await {
            eprintln!("raftcd-jepsen: final heal: {e}");
        }
    }

    /// Injects one fault; returns the members hit and a description.
    pub async fn inject(&mut self, fault: &Fault) -> Result<(Vec<usize>, String)> {
        let n = self.cluster.len();
        match fault {
            Fault::Kill { target } => {
                let t = self.targets(*target).await;
                for i in &t {
                    self.cluster.kill(*i);
                }
                Ok((t, "SIGKILL".into()))
            }
            Fault::Pause { target } => {
                let t = self.targets(*target).await;
                for i in &t {
                    self.cluster.pause(*i)?;
                }
                Ok((t, "SIGSTOP".into()))
            }
            Fault::Partition { shape } => {
                let net = self.cluster.net.as_ref().filter(|n| n.iptables).ok_or_else(|| anyhow!("no namespaces"))?;
                let mut all: Vec<usize> = (0..n).collect();
                all.shuffle(&mut self.rng);
                let leader = match shape {
                    Shape::IsolateLeader => find_leader(&self.cluster, &self.conns).await,
                    _ => None,
                };
                let (grudge, desc, hit) = grudges(*shape, &all, leader);
                net.partition(&grudge)?;
                Ok((hit, desc))
            }
            Fault::Compact => {
                let keep = self.compact_keep.ok_or_else(|| anyhow!("compaction disabled for this workload"))?;
                let l = find_leader(&self.cluster, &self.conns).await.ok_or_else(|| anyhow!("no leader"))?;
                let mut kv = self.conns[l].kv.clone();
                let r =
                    call(Duration::from_secs(3), kv.range(RangeRequest { key: b"\0".to_vec(), ..Default::default() }))
                        .await?;
                let rev = r.header.map(|h| h.revision).unwrap_or(0) - keep;
                if rev <= 1 {
                    return Ok((vec![], format!("revision too low to compact (keep {keep})")));
                }
                call(Duration::from_secs(5), kv.compact(CompactionRequest { revision: rev, physical: false })).await?;
                // Defragment every serving member while the traffic goes on (etcd blocks the member meanwhile).
                let mut defragged = Vec::new();
                for (i, c) in self.conns.iter().enumerate() {
                    let mut maint = c.maint.clone();
                    if self.cluster.is_serving(i)
                        && call(Duration::from_secs(10), maint.defragment(DefragmentRequest {})).await.is_ok()
                    {
                        defragged.push(format!("n{}", i + 1));
                    }
                }
                Ok((vec![l], format!("compacted at revision {rev}, defragmented {}", defragged.join(","))))
            }
            Fault::MemberChange => {
                let i = self.rng.random_range(0..n);
                let d = self.member_change(i).await?;
                Ok((vec![i], d))
            }
            Fault::Failpoint { target, point } => {
                let t = self.targets(*target).await;
                for i in &t {
                    self.cluster.kill(*i);
                    self.cluster.start_armed(*i, ClusterState::New, Some(point))?;
                }
                Ok((t, format!("restarted with {point} armed")))
            }
        }
    }

    /// Removes member i, wipes it, adds it back and starts it fresh.
    async fn member_change(&mut self, i: usize) -> Result<String> {
        let cluster = self.cluster.clone();
        let spec = cluster.specs[i].clone();
        let other = (0..cluster.len()).find(|j| *j != i && cluster.is_serving(*j)).ok_or_else(|| anyhow!("no peer"))?;
        let mut cc = self.conns[other].cluster.clone();
        let list = call(Duration::from_secs(5), cc.member_list(MemberListRequest { linearizable: true })).await?;
        let id = list
            .members
            .iter()
            .find(|m| m.peer_ur_ls.contains(&spec.peer_url()))
            .map(|m| m.id)
            .ok_or_else(|| anyhow!("{} not in the member list", spec.name))?;
        call(Duration::from_secs(10), cc.member_remove(MemberRemoveRequest { id })).await?;
        cluster.set_removed(i, true);
        // A removed member shuts itself down; give it a moment, then make sure.
        for _ in 0..50 {
            if !cluster.is_running(i) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cluster.kill(i);
        cluster.wipe(i)?;
        let added = self.member_add(i).await?;
        Ok(format!("removed {id:x}, re-added as {added:x} with a fresh data dir"))
    }

    /// MemberAdd member i (retrying while the cluster is unavailable) and start it with
    /// `--initial-cluster-state existing`.
    async fn member_add(&mut self, i: usize) -> Result<u64> {
        let cluster = self.cluster.clone();
        let spec = cluster.specs[i].clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let added = loop {
            let others: Vec<usize> = (0..cluster.len()).filter(|j| *j != i && cluster.is_serving(*j)).collect();
            let mut last = String::from("no member to ask");
            for j in others {
                let mut cc = self.conns[j].cluster.clone();
                let req = MemberAddRequest { peer_ur_ls: vec![spec.peer_url()], is_learner: false };
                match call(Duration::from_secs(10), cc.member_add(req)).await {
                    Ok(r) => {
                        let initial = r
                            .members
                            .iter()
                            .map(|m| {
                                let name = if m.peer_ur_ls.contains(&spec.peer_url()) {
                                    spec.name.clone()
                                } else if m.name.is_empty() {
                                    cluster
                                        .specs
                                        .iter()
                                        .find(|s| m.peer_ur_ls.contains(&s.peer_url()))
                                        .map(|s| s.name.clone())
                                        .unwrap_or_default()
                                } else {
                                    m.name.clone()
                                };
                                format!("{name}={}", m.peer_ur_ls.first().cloned().unwrap_or_default())
                            })
                            .collect::<Vec<_>>()
                            .join(",");
                        cluster.set_initial_cluster(initial);
                        break;
                    }
                    Err(e) if e.message.contains("Peer URLs already exists") => {
                        // An earlier attempt whose answer was lost took effect.
                        break;
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            // Find the id it got (also covers a lost answer).
            if let Some(j) = (0..cluster.len()).find(|j| *j != i && cluster.is_serving(*j)) {
                let mut cc = self.conns[j].cluster.clone();
                if let Ok(l) =
                    call(Duration::from_secs(5), cc.member_list(MemberListRequest { linearizable: true })).await
                {
                    if let Some(m) = l.members.iter().find(|m| m.peer_ur_ls.contains(&spec.peer_url())) {
                        break m.id;
                    }
                }
            }
            if std::time::Instant::now() > deadline {
                bail!("MemberAdd of {} did not succeed within 60 s: {last}", spec.name);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        cluster.start(i, ClusterState::Existing)?;
        cluster.set_removed(i, false);
        cluster.wait_listening(i, Duration::from_secs(30)).await?;
        Ok(added)
    }

    /// Heals everything: partitions removed, paused members resumed, dead ones restarted, a removed member
    /// re-added. Returns what it did.
    pub async fn heal(&mut self) -> Result<Vec<String>> {
        let mut did = Vec::new();
        if let Some(net) = &self.cluster.net {
            net.heal()?;
        }
        for i in 0..self.cluster.len() {
            if self.cluster.is_removed(i) {
                self.member_add(i).await?;
                did.push(format!("re-added n{}", i + 1));
            }
        }
        did.extend(self.cluster.heal_processes()?);
        for i in 0..self.cluster.len() {
            // A member that dies right after its restart (see Cluster::unexpected_exits) gets two more tries.
            let mut attempt = 0;
            while let Err(e) = self.cluster.wait_listening(i, Duration::from_secs(30)).await {
                attempt += 1;
                if attempt > 2 || self.cluster.is_running(i) {
                    return Err(e);
                }
                did.push(format!("n{} again ({e})", i + 1));
                self.cluster.start(i, ClusterState::New)?;
            }
        }
        Ok(did)
    }
}

/// The grudges of a partition shape: `grudge[i]` = the members whose packets member i drops. `order` is a
/// random permutation of the members (who lands where); `leader` is used by [`Shape::IsolateLeader`]. Returns
/// the grudges, a description and the members the fault is about. Every grudge is symmetric.
pub fn grudges(shape: Shape, order: &[usize], leader: Option<usize>) -> (Vec<Vec<usize>>, String, Vec<usize>) {
    let n = order.len();
    match shape {
        Shape::IsolateLeader => {
            let l = leader.unwrap_or(order[0]);
            (cut(n, &[l]), format!("n{} | rest", l + 1), vec![l])
        }
        Shape::RandomHalves => {
            let mut a = order[..n / 2].to_vec();
            a.sort_unstable();
            (cut(n, &a), format!("{} | rest", names(&a)), a)
        }
        Shape::Bridge => {
            // order[0] is the bridge; the others split in two sides that only it connects.
            let rest = &order[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            let mut g = vec![Vec::new(); n];
            for x in a {
                g[*x].extend_from_slice(b);
            }
            for x in b {
                g[*x].extend_from_slice(a);
            }
            (g, format!("{} - n{} - {}", names(a), order[0] + 1, names(b)), vec![order[0]])
        }
        Shape::Ring => {
            // Member order[k] sees order[k-r..=k+r] around the ring: 2r + 1 = a majority.
            let r = (majority(n) - 1) / 2;
            let mut g = vec![Vec::new(); n];
            for k in 0..n {
                for d in (r + 1)..=(n - 1 - r) {
                    g[order[k]].push(order[(k + d) % n]);
                }
            }
            (g, format!("ring {}", names(order)), order.to_vec())
        }
    }
}

fn names(v: &[usize]) -> String {
    format!("{{{}}}", v.iter().map(|i| format!("n{}", i + 1)).collect::<Vec<_>>().join(","))
}

/// Sleeps for `d`; returns true (early) when `stop` turns true.
pub async fn sleep_or_stop(d: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}
