//! Child processes under test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// Ports per test process; blocks are chosen by pid so concurrent test binaries rarely share one.
const PORT_BLOCK: u16 = 200;
/// First port handed out. Everything stays between 10000 and 32000, below the kernel's ephemeral range
/// (32768-60999 by default): a port from that range can be taken at any moment as the source port of some
/// unrelated outgoing connection (or even self-connect to our own probe), which made a member fail to bind.
const PORT_BASE: u16 = 10000;
const PORT_BLOCKS: u32 = 110;

/// A TCP port on 127.0.0.1 that was free a moment ago. Ports come from this process's block (derived from
/// the pid), wrapping around inside it, and each is probed by binding it.
pub fn free_port() -> u16 {
    let base = PORT_BASE + (std::process::id() % PORT_BLOCKS) as u16 * PORT_BLOCK;
    for _ in 0..PORT_BLOCK as u32 * 4 {
        let n = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let port = base + (n % PORT_BLOCK);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {base}..{}", base + PORT_BLOCK);
}

/// Path of a binary built by this workspace (target/debug or target/release, whichever matches this test
/// build), e.g. `raftcd` or `etcdctl-rs`. Builds it on first use if it is missing.
pub fn workspace_bin(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let path = target.join(profile).join(name);
    if !path.exists() {
        let pkg = if name == "raftcd" { "raftcd" } else { name };
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&root).args(["build", "-p", pkg, "--bin", name]);
        if profile == "release" {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "building {name} failed");
    }
    path
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited early with {st}");
        }
        assert!(start.elapsed() < timeout, "{what} did not listen on {port} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Settings for one raftcd member.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
}

impl Member {
    /// A member named `name` with fresh loopback ports and its data in `dir/<name>.raftcd` (for members added
    /// to a running cluster).
    pub fn new(dir: &Path, name: &str) -> Member {
        Member {
            name: name.to_string(),
            client_port: free_port(),
            peer_port: free_port(),
            data_dir: dir.join(format!("{name}.raftcd")),
        }
    }

    /// `name=peer-url`, one entry of `--initial-cluster`.
    pub fn initial_cluster_entry(&self) -> String {
        format!("{}={}", self.name, self.peer_url())
    }

    /// Client URL, e.g. http://127.0.0.1:PORT.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    /// Peer URL.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
    /// host:port for clients such as etcdctl.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

/// A running raftcd member. Killed (SIGKILL) on drop; its data dir lives as long as the owner keeps it.
pub struct RaftcdProcess {
    pub member: Member,
    child: Option<Child>,
    extra_args: Vec<String>,
    initial_cluster: String,
    log: PathBuf,
}

impl RaftcdProcess {
    /// Starts a single-member cluster in `dir` with extra flags.
    pub fn start_single(dir: &Path, extra_args: &[&str]) -> RaftcdProcess {
        let member = Member {
            name: "m1".into(),
            client_port: free_port(),
            peer_port: free_port(),
            data_dir: dir.join("m1.raftcd"),
        };
        let initial = format!("{}={}", member.name, member.peer_url());
        Self::start_member(member, &initial, extra_args)
    }

    /// Starts one member of a cluster described by `initial_cluster`.
    pub fn start_member(member: Member, initial_cluster: &str, extra_args: &[&str]) -> RaftcdProcess {
        let mut p = RaftcdProcess {
            log: member.data_dir.with_extension("log"),
            member,
            child: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            initial_cluster: initial_cluster.to_string(),
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let m = &self.member;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open member log");
        let mut cmd = Command::new(workspace_bin("raftcd"));
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.client_url()])
            .args(["--advertise-client-urls", &m.client_url()])
            .args(["--listen-peer-urls", &m.peer_url()])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        let mut child = cmd.spawn().expect("start raftcd");
        wait_for_port(m.client_port, &mut child, &format!("raftcd {}", m.name), Duration::from_secs(20));
        self.child = Some(child);
    }

    /// host:port of the client listener.
    pub fn endpoint(&self) -> String {
        self.member.endpoint()
    }

    /// The member's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the member again with the same flags and data dir.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts a member that joins a running cluster (`--initial-cluster-state existing`). It must have been
    /// added with MemberAdd first; `initial_cluster` lists (some of) the running members and this one.
    pub fn start_joining(member: Member, initial_cluster: &str, extra_args: &[&str]) -> RaftcdProcess {
        let mut args = vec!["--initial-cluster-state", "existing"];
        args.extend_from_slice(extra_args);
        Self::start_member(member, initial_cluster, &args)
    }

    /// The `--initial-cluster` the member was started with.
    pub fn initial_cluster(&self) -> &str {
        &self.initial_cluster
    }

    /// Waits up to `timeout` for the process to exit by itself (e.g. a member removed from its cluster) and
    /// returns how it ended; `None` if it is still running (it is left running) or was never started.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            let c = self.child.as_mut()?;
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return Some(st);
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// How the process ended, once it has exited on its own or been killed by someone else (None while it
    /// runs, or after `kill`/`terminate`, which reap it). Useful in failure messages: "signal: 9 (SIGKILL)"
    /// there means something outside the test killed the member.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for RaftcdProcess {
    /// Kills the member; when the test is failing, first shows how the member ended and its last log lines.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let status = self.exit_status();
            eprintln!("--- raftcd {} exit status: {status:?}", self.member.name);
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- raftcd {} log tail:\n{}",
                self.member.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        self.kill();
    }
}

/// The raftcd built with `--features failpoints` (`$RAFTCD_FAILPOINTS_BIN`, else `raftcd-failpoints` next to
/// the normal build, where scripts/test.sh puts it).
pub fn failpoints_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RAFTCD_FAILPOINTS_BIN") {
        return Some(PathBuf::from(p));
    }
    Some(workspace_bin("raftcd").with_file_name("raftcd-failpoints")).filter(|p| p.exists())
}

/// Several raftcd members started together from one --initial-cluster.
pub struct RaftcdCluster {
    pub members: Vec<RaftcdProcess>,
}

impl RaftcdCluster {
    /// Starts `n` members in `dir` with extra flags.
    pub fn start(dir: &Path, n: usize, extra_args: &[&str]) -> RaftcdCluster {
        let members: Vec<Member> = (1..=n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.join(format!("m{i}.raftcd")),
            })
            .collect();
        let initial = members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",");
        // Spawn all first (each waits only for its own client port).
        let members = members.into_iter().map(|m| RaftcdProcess::start_member(m, &initial, extra_args)).collect();
        RaftcdCluster { members }
    }

    /// Client endpoints (host:port) of all members.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint()).collect()
    }

    /// `--initial-cluster` for the current members (names and current peer URLs), e.g. for a member joining.
    pub fn initial_cluster(&self) -> String {
        self.members.iter().map(|m| m.member.initial_cluster_entry()).collect::<Vec<_>>().join(",")
    }
}

/// A real etcd (Debian's etcd-server) for differential tests.
pub struct EtcdProcess {
    child: Child,
    pub client_port: u16,
    _dir: tempfile::TempDir,
}

impl EtcdProcess {
    /// True when an `etcd` binary is on PATH.
    pub fn available() -> bool {
        Command::new("etcd").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
    }

    /// Starts a single-member etcd on fresh ports.
    pub fn start() -> EtcdProcess {
        Self::start_with_args(&[])
    }

    /// Starts a single-member etcd on fresh ports with extra flags (e.g. `--max-txn-ops 4`).
    pub fn start_with_args(extra_args: &[&str]) -> EtcdProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cp, pp) = (free_port(), free_port());
        let curl = format!("http://127.0.0.1:{cp}");
        let purl = format!("http://127.0.0.1:{pp}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
        let mut child = Command::new("etcd")
            .args(["--name", "etcd1"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &curl, "--advertise-client-urls", &curl])
            .args(["--listen-peer-urls", &purl, "--initial-advertise-peer-urls", &purl])
            .args(["--initial-cluster", &format!("etcd1={purl}")])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start etcd");
        wait_for_port(cp, &mut child, "etcd", Duration::from_secs(20));
        EtcdProcess { child, client_port: cp, _dir: dir }
    }

    /// host:port of the client listener.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
