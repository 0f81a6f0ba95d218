//! Process harness of the etcdctl golden tests (`tests/tests/etcdctl_golden.rs`): servers, tool runs, masks.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A step's process is killed (and the step fails) after this long.
pub(crate) const STEP_LIMIT: Duration = Duration::from_secs(15);

/// Peer URL every single-member test server advertises, so ids are equal across servers.
pub(crate) const ADVERTISED_PEER: &str = "http://127.0.0.1:2380";

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

pub(crate) fn etcdctl_rs() -> PathBuf {
    if let Ok(p) = std::env::var("ETCDCTL_RS_BIN") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join("target/debug/etcdctl-rs");
    if !p.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-p", "etcdctl-rs"])
            .current_dir(workspace_root())
            .status()
            .expect("cargo build -p etcdctl-rs");
        assert!(st.success(), "building etcdctl-rs failed");
    }
    p
}

/// The server binary for tests that take the default: etcd unless GOLDEN_SERVER=raftcd.
pub(crate) fn server_bin() -> PathBuf {
    match std::env::var("GOLDEN_SERVER").as_deref() {
        Ok("raftcd") => raftcd_bin(),
        Ok("etcd") | Err(_) => PathBuf::from("/usr/bin/etcd"),
        Ok(other) => panic!("GOLDEN_SERVER must be etcd or raftcd, not {other}"),
    }
}

/// The workspace's raftcd.
pub(crate) fn raftcd_bin() -> PathBuf {
    raftcd_tests::workspace_bin("raftcd")
}

pub(crate) fn free_port() -> u16 {
    raftcd_tests::free_port()
}

/// One server process; killed when dropped.
pub(crate) struct Member {
    pub(crate) child: Child,
    pub(crate) endpoint: String,
    pub(crate) _dir: tempfile::TempDir,
}

impl Member {
    /// Starts a member. `peer_port`/`advertised_peer`/`initial_cluster` describe its place in the cluster.
    pub(crate) fn start(name: &str, peer_port: u16, advertised_peer: &str, initial_cluster: &str) -> Member {
        Member::start_with(&server_bin(), name, peer_port, advertised_peer, initial_cluster)
    }

    /// Starts a member of the server `bin` (etcd or raftcd, which take the same flags).
    pub(crate) fn start_with(
        bin: &std::path::Path,
        name: &str,
        peer_port: u16,
        advertised_peer: &str,
        initial_cluster: &str,
    ) -> Member {
        Member::start_with_args(bin, name, peer_port, advertised_peer, initial_cluster, &[])
    }

    /// Like `start_with`, plus extra flags (e.g. `--initial-cluster-state existing` for a joining member).
    pub(crate) fn start_with_args(
        bin: &std::path::Path,
        name: &str,
        peer_port: u16,
        advertised_peer: &str,
        initial_cluster: &str,
        extra: &[&str],
    ) -> Member {
        let dir = tempfile::tempdir().expect("tempdir");
        let client_port = free_port();
        let endpoint = format!("127.0.0.1:{client_port}");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let child = Command::new(bin)
            .args(["--name", name, "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &format!("http://{endpoint}")])
            .args(["--advertise-client-urls", &format!("http://{endpoint}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer_port}")])
            .args(["--initial-advertise-peer-urls", advertised_peer])
            .args(["--initial-cluster", initial_cluster])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start server");
        Member { child, endpoint, _dir: dir }
    }

    /// A fresh single-member server with the advertised peer URL every golden server shares.
    pub(crate) fn single() -> Member {
        Member::single_with(&server_bin())
    }

    /// A fresh single-member server of `bin`.
    pub(crate) fn single_with(bin: &std::path::Path) -> Member {
        let m = Member::start_with(bin, "golden", free_port(), ADVERTISED_PEER, &format!("golden={ADVERTISED_PEER}"));
        m.wait_ready(Duration::from_secs(20));
        m
    }

    /// Waits until a linearizable read succeeds (a leader exists).
    pub(crate) fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if TcpStream::connect(&self.endpoint).is_ok() {
                let out = Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args(["--endpoints", &self.endpoint, "--command-timeout", "1s", "get", "ready-probe"])
                    .output()
                    .expect("etcdctl");
                if out.status.success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server at {} did not become ready", self.endpoint);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one tool printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) code: i32,
}

/// How to run one step.
#[derive(Clone, Default)]
pub(crate) struct Step {
    pub(crate) args: Vec<String>,
    pub(crate) stdin: Option<String>,
    pub(crate) env: Vec<(String, String)>,
    /// Does not change server state: etcdctl-rs also runs against A.
    pub(crate) read_only: bool,
    /// Kill the process after this long (watch, keep-alive); stdin stays open until then.
    pub(crate) kill_after: Option<Duration>,
    /// Set when a difference is accepted, with the reason.
    pub(crate) allow: Option<&'static str>,
    /// Remember the lease id this step prints (`lease <hex> granted`).
    pub(crate) capture_lease: bool,
    /// Omit `--endpoints` (to test ETCDCTL_ENDPOINTS, unreachable endpoints).
    pub(crate) no_endpoint_flag: bool,
    /// Compare on server A only (output depends on lease ids stored in the keys, e.g. hashes).
    pub(crate) same_server_only: bool,
    /// Collapse runs of spaces and dashes first (tables whose column widths follow a duration's length).
    pub(crate) collapse_table: bool,
}

/// Splits on spaces; a `""` word stands for the empty argument.
pub(crate) fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(|w| if w == "\"\"" { String::new() } else { w.to_string() }).collect()
}

pub(crate) fn step(s: &str) -> Step {
    Step { args: words(s), ..Default::default() }
}

pub(crate) fn ro(s: &str) -> Step {
    Step { args: words(s), read_only: true, ..Default::default() }
}

pub(crate) fn same(s: &str) -> Step {
    Step { args: words(s), same_server_only: true, ..Default::default() }
}

/// Per-server substitutions: `{EP}` and `{LEASE}` in arguments, and their masks in outputs.
#[derive(Default, Clone)]
pub(crate) struct Vars {
    pub(crate) endpoint: String,
    pub(crate) leases: Vec<i64>,
}

impl Vars {
    pub(crate) fn expand(&self, arg: &str) -> String {
        let lease = self.leases.last().map(|l| format!("{l:x}")).unwrap_or_default();
        arg.replace("{EP}", &self.endpoint).replace("{LEASE}", &lease)
    }

    pub(crate) fn mask(&self, text: &str) -> String {
        let mut t = text.replace(&self.endpoint, "<EP>");
        for l in &self.leases {
            t = t
                .replace(&format!("{l:016x}"), "<LEASE>")
                .replace(&l.to_string(), "<LEASE>")
                .replace(&format!("{l:x}"), "<LEASE>");
        }
        mask_durations(&mask_logs(&t))
    }
}

/// Drops zap JSON log lines, masks capnslog timestamps, keeps only the first line of a Go panic.
pub(crate) fn mask_logs(t: &str) -> String {
    let mut out = String::new();
    for line in t.split_inclusive('\n') {
        if line.starts_with("{\"level\":") {
            continue;
        }
        if line.starts_with("panic: ") {
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push('\n');
            }
            break;
        }
        let b = line.as_bytes();
        if b.len() > 29
            && b[4] == b'-'
            && b[10] == b' '
            && b[13] == b':'
            && b[19] == b'.'
            && b[26] == b' '
            && b[29] == b'|'
        {
            out.push_str("<TS>");
            out.push_str(&line[26..]);
            continue;
        }
        out.push_str(line);
    }
    out
}

/// Replaces Go durations (`2.1ms`, `811.2µs`, `1.5s`) with `<DUR>`.
pub(crate) fn mask_durations(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let chars: Vec<char> = t.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '.');
        if boundary && chars[i].is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            let rest: String = chars[j..chars.len().min(j + 2)].iter().collect();
            let unit_len = if rest.starts_with("ms") || rest.starts_with("µs") || rest.starts_with("ns") {
                2
            } else if rest.starts_with('s') {
                1
            } else {
                0
            };
            let after = j + unit_len;
            let ends = after >= chars.len() || !chars[after].is_alphanumeric();
            if unit_len > 0 && ends && chars[i..j].contains(&'.') {
                out.push_str("<DUR>");
                i = after;
                continue;
            }
            out.extend(&chars[i..j]);
            i = j;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

pub(crate) fn run(bin: &Path, vars: &Vars, s: &Step) -> Outcome {
    let mut cmd = Command::new(bin);
    cmd.env("ETCDCTL_API", "3");
    for (k, _) in std::env::vars() {
        if k.starts_with("ETCDCTL_") && k != "ETCDCTL_API" {
            cmd.env_remove(k);
        }
    }
    if !s.no_endpoint_flag {
        cmd.args(["--endpoints", &vars.endpoint]);
    }
    cmd.args(s.args.iter().map(|a| vars.expand(a)));
    for (k, v) in &s.env {
        cmd.env(k, vars.expand(v));
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn tool");
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(input) = &s.stdin {
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    if let Some(d) = s.kill_after {
        std::thread::sleep(d);
        let _ = child.kill();
    }
    drop(stdin);
    // Read both pipes on threads so a chatty child cannot block; give up on a hung one.
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let to = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut so, &mut b);
        b
    });
    let te = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut se, &mut b);
        b
    });
    let deadline = Instant::now() + STEP_LIMIT;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = std::process::Output {
        status: status.unwrap_or_default(),
        stdout: to.join().expect("stdout thread"),
        stderr: te.join().expect("stderr thread"),
    };
    if status.is_none() {
        return Outcome {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: format!("{}<HUNG: killed after {STEP_LIMIT:?}>", String::from_utf8_lossy(&out.stderr)),
            code: -1,
        };
    }
    Outcome {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// The lease id a `lease grant` printed (simple or json).
pub(crate) fn capture_lease(o: &Outcome) -> Option<i64> {
    if let Some(rest) = o.stdout.strip_prefix("lease ") {
        return i64::from_str_radix(rest.split(' ').next()?, 16).ok();
    }
    let rest = &o.stdout[o.stdout.find("\"ID\":")? + 5..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

pub(crate) fn collapse(t: &str) -> String {
    let mut out = String::new();
    for c in t.chars() {
        if (c == ' ' || c == '-') && out.ends_with(c) {
            continue;
        }
        out.push(c);
    }
    out
}

pub(crate) fn masked(vars: &Vars, o: &Outcome) -> Outcome {
    Outcome { stdout: vars.mask(&o.stdout), stderr: vars.mask(&o.stderr), code: o.code }
}
