//! TLS and mutual TLS with real processes: Debian etcdctl with the right client certificate succeeds;
//! without one, with one from another CA, or over plain HTTP it fails. A 3-member cluster with TLS on both
//! the client and the peer ports replicates. Rotated certificate files are picked up without a restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use raftcd_tests::client::{etcdctl_path, skip_allowed};
use raftcd_tests::{free_port, step, workspace_bin};

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn gen_certs(dir: &Path, names: &[&str]) {
    let st = Command::new(workspace_bin("raftcd-util")).arg("gen-certs").arg(dir).args(names).status().unwrap();
    assert!(st.success());
}

/// A single member serving https on its client port with `certs`/server.pem, plus `extra` flags; returns
/// its client port and process.
fn start_https_single(dir: &Path, certs: &Path, extra: &[&str]) -> (u16, Child) {
    let (cp, pp) = (free_port(), free_port());
    let url = format!("https://127.0.0.1:{cp}");
    let peer = format!("http://127.0.0.1:{pp}");
    let child = Command::new(workspace_bin("raftcd"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("default={peer}")])
        .arg("--cert-file")
        .arg(certs.join("server.pem"))
        .arg("--key-file")
        .arg(certs.join("server-key.pem"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (cp, child)
}

fn etcdctl(endpoint: &str, tls: &[(&str, PathBuf)], args: &[&str]) -> Output {
    let mut cmd = Command::new(etcdctl_path().unwrap());
    cmd.env("ETCDCTL_API", "3").args(["--endpoints", endpoint, "--dial-timeout", "2s", "--command-timeout", "5s"]);
    for (flag, path) in tls {
        cmd.arg(format!("--{flag}={}", path.display()));
    }
    cmd.args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "etcdctl failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn wait_ready(endpoint: &str, tls: &[(&str, PathBuf)]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !etcdctl(endpoint, tls, &["get", "probe"]).status.success() {
        assert!(Instant::now() < deadline, "{endpoint} never served over TLS");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Spawns three members m0..m2 in `dir` with https peer URLs, client URLs of `client_scheme`, fast elections
/// and `extra` flags; returns their (client port, peer port) and processes.
fn spawn_https_peer_cluster(dir: &Path, client_scheme: &str, extra: &[String]) -> (Vec<(u16, u16)>, Kill) {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial =
        ports.iter().enumerate().map(|(i, (_, p))| format!("m{i}=https://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let mut children = Vec::new();
    for (i, (c, p)) in ports.iter().enumerate() {
        let curl = format!("{client_scheme}://127.0.0.1:{c}");
        let purl = format!("https://127.0.0.1:{p}");
        let log = std::fs::File::create(dir.join(format!("m{i}.log"))).unwrap();
        children.push(
            Command::new(workspace_bin("raftcd"))
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.join(format!("m{i}")))
                .args(["--listen-client-urls", &curl, "--advertise-client-urls", &curl])
                .args(["--listen-peer-urls", &purl, "--initial-advertise-peer-urls", &purl])
                .args(["--initial-cluster", &initial, "--heartbeat-interval", "50", "--election-timeout", "500"])
                .args(extra)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    (ports, Kill(children))
}

/// Scenario: one member with https and --client-cert-auth. A client certificate from the trusted CA works
/// (and /health answers over TLS); no certificate, another CA's certificate, and plain HTTP all fail.
#[test]
fn mutual_tls_admits_only_trusted_clients() {
    if etcdctl_path().is_none() {
        assert!(skip_allowed(), "etcdctl not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let other = dir.path().join("other");
    gen_certs(&certs, &["server", "client"]);
    gen_certs(&other, &["client"]);
    let ca = certs.join("ca.pem");
    let (cp, child) =
        start_https_single(dir.path(), &certs, &["--trusted-ca-file", ca.to_str().unwrap(), "--client-cert-auth"]);
    let url = format!("https://127.0.0.1:{cp}");
    let _k = Kill(vec![child]);
    let good =
        [("cacert", certs.join("ca.pem")), ("cert", certs.join("client.pem")), ("key", certs.join("client-key.pem"))];
    wait_ready(&url, &good);
    step!("the trusted client writes and reads");
    ok(&etcdctl(&url, &good, &["put", "k", "v"]));
    assert_eq!(ok(&etcdctl(&url, &good, &["get", "k", "--print-value-only"])).trim(), "v");
    step!("no client certificate");
    let o = etcdctl(&url, &[("cacert", certs.join("ca.pem"))], &["get", "k"]);
    assert!(!o.status.success(), "a client without a certificate got in");
    step!("a certificate from another CA");
    let evil =
        [("cacert", certs.join("ca.pem")), ("cert", other.join("client.pem")), ("key", other.join("client-key.pem"))];
    assert!(!etcdctl(&url, &evil, &["get", "k"]).status.success(), "another CA's certificate got in");
    step!("etcdctl-rs with the client certificate, then without one");
    let rs = |tls: &[(&str, PathBuf)], args: &[&str]| {
        let mut cmd = Command::new(workspace_bin("etcdctl-rs"));
        cmd.args(["--endpoints", &url, "--dial-timeout", "2s"]);
        for (flag, path) in tls {
            cmd.arg(format!("--{flag}={}", path.display()));
        }
        cmd.args(args).output().unwrap()
    };
    assert_eq!(ok(&rs(&good, &["get", "k", "--print-value-only"])).trim(), "v");
    assert!(
        !rs(&[("cacert", certs.join("ca.pem"))], &["get", "k"]).status.success(),
        "etcdctl-rs got in without a cert"
    );
    step!("plain HTTP to the TLS port");
    let o = etcdctl(&format!("127.0.0.1:{cp}"), &[], &["get", "k"]);
    assert!(!o.status.success(), "plain HTTP got in");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Error:"), "no clear error for plain HTTP");
}

/// Scenario: a 3-member cluster with TLS on the client ports and mutual TLS on the peer ports elects a
/// leader and replicates a write to every member.
#[test]
fn cluster_with_peer_mutual_tls_replicates() {
    if etcdctl_path().is_none() {
        assert!(skip_allowed(), "etcdctl not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    gen_certs(&certs, &["server", "peer", "client"]);
    let file = |f: &str| certs.join(f).display().to_string();
    let extra: Vec<String> = [
        ("--cert-file", "server.pem"),
        ("--key-file", "server-key.pem"),
        ("--trusted-ca-file", "ca.pem"),
        ("--peer-cert-file", "peer.pem"),
        ("--peer-key-file", "peer-key.pem"),
        ("--peer-trusted-ca-file", "ca.pem"),
    ]
    .iter()
    .flat_map(|(flag, f)| [flag.to_string(), file(f)])
    .chain(["--peer-client-cert-auth".to_string()])
    .collect();
    let (ports, _k) = spawn_https_peer_cluster(dir.path(), "https", &extra);
    let tls =
        [("cacert", certs.join("ca.pem")), ("cert", certs.join("client.pem")), ("key", certs.join("client-key.pem"))];
    let eps: Vec<String> = ports.iter().map(|(c, _)| format!("https://127.0.0.1:{c}")).collect();
    wait_ready(&eps[0], &tls);
    ok(&etcdctl(&eps[0], &tls, &["put", "replicated", "yes"]));
    for ep in &eps {
        let v = ok(&etcdctl(ep, &tls, &["get", "replicated", "--print-value-only"]));
        assert_eq!(v.trim(), "yes", "{ep}");
    }
    let status = ok(&etcdctl(&eps.join(","), &tls, &["endpoint", "status", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let leaders: Vec<u64> = v.as_array().unwrap().iter().map(|e| e["Status"]["leader"].as_u64().unwrap()).collect();
    assert!(leaders.iter().all(|l| *l == leaders[0] && *l != 0), "{leaders:?}");
}

/// Scenario: the server's certificate files are replaced by ones from a new CA while it runs; a client that
/// trusts only the new CA is admitted without a restart.
#[test]
fn rotated_certificates_are_used_without_restart() {
    if etcdctl_path().is_none() {
        assert!(skip_allowed(), "etcdctl not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let next = dir.path().join("next");
    gen_certs(&live, &["server", "client"]);
    gen_certs(&next, &["server", "client"]);
    let (cp, child) = start_https_single(dir.path(), &live, &[]);
    let url = format!("https://127.0.0.1:{cp}");
    let _k = Kill(vec![child]);
    let old = [("cacert", live.join("ca.pem"))];
    let new = [("cacert", next.join("ca.pem"))];
    wait_ready(&url, &old);
    assert!(!etcdctl(&url, &new, &["get", "k"]).status.success(), "new CA trusted before rotation");
    step!("rotate the files in place");
    std::fs::copy(next.join("server.pem"), live.join("server.pem")).unwrap();
    std::fs::copy(next.join("server-key.pem"), live.join("server-key.pem")).unwrap();
    wait_ready(&url, &new);
    assert!(!etcdctl(&url, &old, &["get", "k"]).status.success(), "old CA still accepted after rotation");
}

/// Scenario: a member whose certificate comes from a CA the client does not have. Without --cacert both
/// Debian's etcdctl and etcdctl-rs refuse it; with --insecure-skip-tls-verify both connect over TLS and print
/// the same thing, also presenting a client certificate to a --client-cert-auth member.
#[test]
fn insecure_skip_tls_verify_matches_etcdctl() {
    if etcdctl_path().is_none() {
        assert!(skip_allowed(), "etcdctl not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    gen_certs(&certs, &["server", "client"]);
    let ca = certs.join("ca.pem");
    let (cp, child) =
        start_https_single(dir.path(), &certs, &["--trusted-ca-file", ca.to_str().unwrap(), "--client-cert-auth"]);
    let _k = Kill(vec![child]);
    let url = format!("https://127.0.0.1:{cp}");
    let client_cert = [("cert", certs.join("client.pem")), ("key", certs.join("client-key.pem"))];
    let mut trusted = client_cert.to_vec();
    trusted.push(("cacert", ca.clone()));
    wait_ready(&url, &trusted);
    ok(&etcdctl(&url, &trusted, &["put", "skip/k", "v"]));
    let rs = |tls: &[(&str, PathBuf)], args: &[&str]| {
        let mut cmd = Command::new(workspace_bin("etcdctl-rs"));
        cmd.args(["--endpoints", &url, "--dial-timeout", "2s", "--command-timeout", "5s"]);
        for (flag, path) in tls {
            cmd.arg(format!("--{flag}={}", path.display()));
        }
        cmd.args(args).output().unwrap()
    };
    step!("an unknown server CA is refused by both");
    assert!(!etcdctl(&url, &client_cert, &["get", "skip/k"]).status.success(), "etcdctl trusted an unknown CA");
    assert!(!rs(&client_cert, &["get", "skip/k"]).status.success(), "etcdctl-rs trusted an unknown CA");
    step!("--insecure-skip-tls-verify: both connect and print the same");
    let args = ["--insecure-skip-tls-verify", "get", "skip/k"];
    let theirs = ok(&etcdctl(&url, &client_cert, &args));
    let ours = ok(&rs(&client_cert, &args));
    assert_eq!(ours, theirs);
    assert_eq!(ours, "skip/k\nv\n");
    step!("skip-verify still needs the client certificate the member demands");
    let no_cert = ["--insecure-transport=false", "--insecure-skip-tls-verify", "get", "skip/k"];
    assert!(!rs(&[], &no_cert).status.success(), "etcdctl-rs got in without a client certificate");
    assert!(!etcdctl(&url, &[], &no_cert).status.success(), "etcdctl got in without a client certificate");
}

/// Scenario: a 3-member cluster with https peer URLs and `--peer-auto-tls` (no certificate files): each member
/// makes its own self-signed certificate, peer traffic is encrypted, the cluster elects one leader and
/// replicates; the peer port does not answer plain (unencrypted) HTTP/2.
#[test]
fn cluster_with_peer_auto_tls_replicates() {
    if etcdctl_path().is_none() {
        assert!(skip_allowed(), "etcdctl not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ports, _k) = spawn_https_peer_cluster(dir.path(), "http", &["--peer-auto-tls".to_string()]);
    let eps: Vec<String> = ports.iter().map(|(c, _)| format!("127.0.0.1:{c}")).collect();
    wait_ready(&eps[0], &[]);
    ok(&etcdctl(&eps[0], &[], &["put", "auto-tls", "yes"]));
    for ep in &eps {
        let v = ok(&etcdctl(ep, &[], &["get", "auto-tls", "--print-value-only"]));
        assert_eq!(v.trim(), "yes", "{ep}");
    }
    for i in 0..3 {
        let fixtures = dir.path().join(format!("m{i}")).join("fixtures").join("peer");
        let n = std::fs::read_dir(&fixtures).map(|d| d.count()).unwrap_or(0);
        assert!(n >= 2, "no self-signed peer certificate and key in {}", fixtures.display());
    }
    step!("the peer port speaks only TLS: an HTTP/2 preface gets no HTTP/2 SETTINGS back");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", ports[0].1)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(3))).unwrap();
    std::io::Write::write_all(&mut s, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").unwrap();
    let mut buf = [0u8; 9];
    let n = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
    assert!(!(n >= 4 && buf[3] == 0x04), "the auto-TLS peer port answered plain HTTP/2: {:?}", &buf[..n]);
}
