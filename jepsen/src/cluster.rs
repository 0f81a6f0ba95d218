//! The raftcd members under test: real processes, each in its network namespace (or on loopback), started,
//! killed (SIGKILL), paused (SIGSTOP/SIGCONT), restarted on their data dir, or wiped and re-added.
//!
//! Children are only ever signalled by the pid this harness got when it spawned them, and only while it has
//! not reaped them. They are spawned through `setpriv --pdeathsig KILL` from one long-lived spawner thread,
//! so they die with the harness even if it is killed with SIGKILL. A global registry of live children and
//! networks lets the Ctrl-C handler clean up ([`cleanup_registered`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::net::{run_cmd, Net, SlotNames};

// ---------------------------------------------------------------------------------------------- registry

#[derive(Default)]
struct Registry {
    pids: BTreeSet<u32>,
    nets: BTreeMap<u32, SlotNames>,
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Registry::default())).lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a network so that [`cleanup_registered`] can remove it.
pub fn register_net(n: &SlotNames) {
    registry().nets.insert(n.slot, n.clone());
}

/// Forgets a network (it was torn down).
pub fn unregister_net(slot: u32) {
    registry().nets.remove(&slot);
}

/// Kills (SIGKILL) every child this process started and has not reaped, and removes every network it built.
/// For the Ctrl-C / SIGTERM handler; the normal paths clean up through `Drop`.
pub fn cleanup_registered() {
    let (pids, nets) = {
        let r = registry();
        (r.pids.clone(), r.nets.values().cloned().collect::<Vec<_>>())
    };
    for pid in pids {
        // SIGCONT first is not needed: SIGKILL ends a stopped process too.
        let _ = run_cmd(&["kill", "-KILL", &pid.to_string()]);
    }
    for n in nets {
        n.remove_all();
        unregister_net(n.slot);
    }
}

// ---------------------------------------------------------------------------------------------- spawner

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns children from one thread that lives as long as the cluster: `--pdeathsig` fires when the
/// spawning *thread* exits, so children must not be spawned from short-lived (e.g. blocking-pool) threads.
struct Spawner {
    tx: Option<mpsc::Sender<SpawnRequest>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spawner {
    fn new() -> Spawner {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let thread = std::thread::Builder::new()
            .name("raftcd-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the spawner thread");
        Spawner { tx: Some(tx), thread: Some(thread) }
    }

    fn spawn(&self, cmd: Command) -> std::io::Result<Child> {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx
            .as_ref()
            .ok_or_else(|| std::io::Error::other("spawner stopped"))?
            .send((cmd, reply_tx))
            .map_err(|_| std::io::Error::other("spawner stopped"))?;
        reply_rx.recv().map_err(|_| std::io::Error::other("spawner stopped"))?
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------- members

/// Where and how one member runs.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub idx: usize,
    /// "n1", "n2", ...
    pub name: String,
    pub host: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// The member's network namespace (None on loopback).
    pub netns: Option<String>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl MemberSpec {
    /// http://host:client_port
    pub fn client_url(&self) -> String {
        format!("http://{}:{}", self.host, self.client_port)
    }
    /// http://host:peer_port
    pub fn peer_url(&self) -> String {
        format!("http://{}:{}", self.host, self.peer_port)
    }
    /// host:client_port
    pub fn client_addr(&self) -> SocketAddr {
        format!("{}:{}", self.host, self.client_port).parse().expect("member address")
    }
    /// `name=peer_url`.
    pub fn initial_cluster_entry(&self) -> String {
        format!("{}={}", self.name, self.peer_url())
    }
}

#[derive(Default)]
struct Proc {
    child: Option<Child>,
    paused: bool,
    /// Removed from the cluster (membership change in progress): not to be restarted by heal.
    removed: bool,
    /// Started with this failpoint armed (RAFTCD_FAILPOINTS): its abort is expected, not an anomaly.
    armed: Option<String>,
}

/// How a member is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    /// Joining a running cluster after MemberAdd.
    Existing,
}

/// Settings of a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub members: usize,
    pub bin: PathBuf,
    /// Where data dirs and logs go.
    pub dir: PathBuf,
    /// Flags for every member (e.g. heartbeat and election timeouts).
    pub extra_args: Vec<String>,
}

/// A running cluster.
pub struct Cluster {
    pub specs: Vec<MemberSpec>,
    procs: Mutex<Vec<Proc>>,
    /// The current `--initial-cluster` (for restarts and joins).
    initial_cluster: Mutex<String>,
    bin: PathBuf,
    extra_args: Vec<String>,
    /// The network (None on loopback). Declared before the spawner: children die before the thread goes.
    pub net: Option<Net>,
    spawner: Spawner,
    setpriv: bool,
    /// Members that exited without being killed or removed: (member, how it ended).
    unexpected_exits: Mutex<Vec<(usize, String)>>,
}

impl Cluster {
    /// Lays out the members (in `net`'s namespaces, or on loopback ports) without starting them.
    pub fn new(cfg: &ClusterConfig, net: Option<Net>) -> Result<Cluster> {
        std::fs::create_dir_all(&cfg.dir)?;
        let mut specs = Vec::new();
        for i in 0..cfg.members {
            let name = format!("n{}", i + 1);
            let (host, client_port, peer_port, netns) = match &net {
                Some(n) => (n.names.member_ip(i).to_string(), 2379, 2380, Some(n.names.ns(i))),
                None => ("127.0.0.1".to_string(), raftcd_tests::free_port(), raftcd_tests::free_port(), None),
            };
            specs.push(MemberSpec {
                idx: i,
                data_dir: cfg.dir.join(format!("{name}.raftcd")),
                log: cfg.dir.join(format!("{name}.log")),
                name,
                host,
                client_port,
                peer_port,
                netns,
            });
        }
        let initial = specs.iter().map(|s| s.initial_cluster_entry()).collect::<Vec<_>>().join(",");
        let setpriv =
            Command::new("setpriv").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        Ok(Cluster {
            procs: Mutex::new((0..specs.len()).map(|_| Proc::default()).collect()),
            specs,
            initial_cluster: Mutex::new(initial),
            bin: cfg.bin.clone(),
            extra_args: cfg.extra_args.clone(),
            net,
            spawner: Spawner::new(),
            setpriv,
            unexpected_exits: Mutex::new(Vec::new()),
        })
    }

    fn procs(&self) -> std::sync::MutexGuard<'_, Vec<Proc>> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Never true (a cluster has members); for clippy.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// True on namespaces (partitions possible).
    pub fn partitions_supported(&self) -> bool {
        self.net.as_ref().is_some_and(|n| n.iptables)
    }

    /// Starts member i (no-op if it runs). Returns at once; see [`Cluster::wait_listening`].
    pub fn start(&self, i: usize, state: ClusterState) -> Result<()> {
        self.start_armed(i, state, None)
    }

    /// Starts member i with `failpoint` armed (the binary must be built with `--features failpoints`): the
    /// member aborts, like kill -9, when it reaches that point.
    pub fn start_armed(&self, i: usize, state: ClusterState, failpoint: Option<&str>) -> Result<()> {
        let mut procs = self.procs();
        if let Some(c) = procs[i].child.as_mut() {
            if matches!(c.try_wait(), Ok(None)) {
                return Ok(());
            }
            let pid = c.id();
            if let Ok(st) = c.wait() {
                if !procs[i].removed && procs[i].armed.is_none() {
                    self.note_exit(i, st);
                }
            }
            registry().pids.remove(&pid);
            procs[i].child = None;
        }
        let s = &self.specs[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&s.log).context("member log")?;
        let mut argv: Vec<String> = Vec::new();
        if let Some(ns) = &s.netns {
            argv.extend(["ip", "netns", "exec", ns.as_str()].map(String::from));
        }
        if self.setpriv {
            argv.extend(["setpriv", "--pdeathsig", "KILL", "--"].map(String::from));
        }
        argv.push(self.bin.to_string_lossy().into_owned());
        argv.extend(
            [
                "--name",
                &s.name,
                "--data-dir",
                &s.data_dir.to_string_lossy(),
                "--listen-client-urls",
                &s.client_url(),
                "--advertise-client-urls",
                &s.client_url(),
                "--listen-peer-urls",
                &s.peer_url(),
                "--initial-advertise-peer-urls",
                &s.peer_url(),
                "--initial-cluster",
                &self.initial_cluster.lock().unwrap_or_else(|e| e.into_inner()),
                "--initial-cluster-state",
                if state == ClusterState::New { "new" } else { "existing" },
            ]
            .map(String::from),
        );
        argv.extend(self.extra_args.iter().cloned());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        match failpoint {
            Some(f) => cmd.env("RAFTCD_FAILPOINTS", f),
            None => cmd.env_remove("RAFTCD_FAILPOINTS"),
        };
        let child = self.spawner.spawn(cmd).with_context(|| format!("starting {}", argv.join(" ")))?;
        registry().pids.insert(child.id());
        procs[i] = Proc { child: Some(child), paused: false, removed: false, armed: failpoint.map(str::to_string) };
        Ok(())
    }

    /// Waits until member i accepts TCP connections on its client port.
    pub async fn wait_listening(&self, i: usize, within: Duration) -> Result<()> {
        let addr = self.specs[i].client_addr();
        let start = Instant::now();
        loop {
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(addr)).await
            {
                return Ok(());
            }
            if let Some(st) = self.exit_status(i) {
                bail!("member {} exited early ({st}); see {}", self.specs[i].name, self.specs[i].log.display());
            }
            if start.elapsed() > within {
                bail!("member {} did not listen on {addr} within {within:?}", self.specs[i].name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn note_exit(&self, i: usize, st: std::process::ExitStatus) {
        let what = format!("n{} exited on its own: {st}", i + 1);
        eprintln!("raftcd-jepsen: {what}; see {}", self.specs[i].log.display());
        self.unexpected_exits.lock().unwrap_or_else(|e| e.into_inner()).push((i, what));
    }

    /// Members that exited without being killed by the nemesis or removed from the cluster, so far
    /// (including members still down now).
    pub fn unexpected_exits(&self) -> Vec<(usize, String)> {
        let mut out = self.unexpected_exits.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for i in 0..self.len() {
            if let Some(st) = self.exit_status(i) {
                if !self.is_removed(i) && self.armed(i).is_none() {
                    out.push((i, format!("n{} exited on its own: {st}", i + 1)));
                }
            }
        }
        out
    }

    /// How member i ended, if it exited on its own (None while it runs or when it was not started).
    pub fn exit_status(&self, i: usize) -> Option<std::process::ExitStatus> {
        let mut procs = self.procs();
        let c = procs[i].child.as_mut()?;
        c.try_wait().ok().flatten()
    }

    /// True while member i's process runs (paused or not).
    pub fn is_running(&self, i: usize) -> bool {
        let mut procs = self.procs();
        procs[i].child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// True when member i runs and is not paused.
    pub fn is_serving(&self, i: usize) -> bool {
        self.is_running(i) && !self.procs()[i].paused
    }

    /// kill -9 member i and reap it.
    pub fn kill(&self, i: usize) {
        let mut procs = self.procs();
        if let Some(mut c) = procs[i].child.take() {
            let pid = c.id();
            let _ = c.kill();
            let _ = c.wait();
            registry().pids.remove(&pid);
        }
        procs[i].paused = false;
    }

    fn signal(&self, i: usize, sig: &str) -> Result<()> {
        let procs = self.procs();
        let pid = procs[i].child.as_ref().map(|c| c.id()).ok_or_else(|| anyhow!("member {} is not running", i + 1))?;
        run_cmd(&["kill", sig, &pid.to_string()])?;
        Ok(())
    }

    /// SIGSTOP member i.
    pub fn pause(&self, i: usize) -> Result<()> {
        self.signal(i, "-STOP")?;
        self.procs()[i].paused = true;
        Ok(())
    }

    /// SIGCONT member i (no-op unless paused).
    pub fn resume(&self, i: usize) -> Result<()> {
        if !self.procs()[i].paused {
            return Ok(());
        }
        self.signal(i, "-CONT")?;
        self.procs()[i].paused = false;
        Ok(())
    }

    /// The failpoint member i was started with, if any.
    pub fn armed(&self, i: usize) -> Option<String> {
        self.procs()[i].armed.clone()
    }

    /// True when member i was started with a failpoint armed and has since aborted on it.
    pub fn failpoint_hit(&self, i: usize) -> bool {
        self.armed(i).is_some() && self.exit_status(i).is_some()
    }

    /// True when member i is paused.
    pub fn is_paused(&self, i: usize) -> bool {
        self.procs()[i].paused
    }

    /// Marks member i as removed from the cluster (or not): [`Cluster::heal_processes`] leaves it alone.
    pub fn set_removed(&self, i: usize, removed: bool) {
        self.procs()[i].removed = removed;
    }

    /// True when member i is currently removed from the cluster.
    pub fn is_removed(&self, i: usize) -> bool {
        self.procs()[i].removed
    }

    /// Replaces the `--initial-cluster` used by later (re)starts.
    pub fn set_initial_cluster(&self, s: String) {
        *self.initial_cluster.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Deletes member i's data dir (it must be stopped).
    pub fn wipe(&self, i: usize) -> Result<()> {
        let d = &self.specs[i].data_dir;
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
        }
        Ok(())
    }

    /// Resumes every paused member and restarts every member that is down (except removed ones); returns
    /// what it did.
    pub fn heal_processes(&self) -> Result<Vec<String>> {
        let mut did = Vec::new();
        for i in 0..self.len() {
            if self.is_paused(i) {
                self.resume(i)?;
                did.push(format!("resumed n{}", i + 1));
            }
            if let Some(f) = self.armed(i).filter(|_| self.is_running(i)) {
                // Armed but never reached its failpoint: restart it disarmed.
                self.kill(i);
                did.push(format!("disarmed {f} on n{}", i + 1));
            }
            if let Some(f) = self.armed(i).filter(|_| self.failpoint_hit(i)) {
                did.push(format!("n{} aborted at {f}", i + 1));
            }
            if !self.is_removed(i) && !self.is_running(i) {
                self.start(i, ClusterState::New)?;
                did.push(format!("restarted n{}", i + 1));
            }
        }
        Ok(did)
    }

    /// The last lines of member i's log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.specs[i].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills every member (used on drop).
    pub fn kill_all(&self) {
        for i in 0..self.len() {
            self.kill(i);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
        if let Some(n) = self.net.as_mut() {
            n.teardown();
        }
    }
}

/// A raftcd built with `--features failpoints`: `$RAFTCD_FAILPOINTS_BIN`, else target/{debug,release}/
/// raftcd-failpoints (scripts/test.sh builds it). None when there is none.
pub fn raftcd_failpoints_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RAFTCD_FAILPOINTS_BIN") {
        return Some(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    ["debug", "release"].into_iter().map(|p| target.join(p).join("raftcd-failpoints")).find(|p| p.exists())
}

/// The raftcd binary: `$RAFTCD_BIN`, else target/{release,debug}/raftcd (the profile of this build first),
/// built with cargo when missing.
pub fn raftcd_binary(prefer_release: bool) -> PathBuf {
    if let Some(p) = std::env::var_os("RAFTCD_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let order = if prefer_release { ["release", "debug"] } else { ["debug", "release"] };
    for p in order {
        let path = target.join(p).join("raftcd");
        if path.exists() {
            return path;
        }
    }
    raftcd_tests::workspace_bin("raftcd")
}
