//! Helpers around clients we did not write (the `etcd-client` crate and Debian's `etcdctl`), shared by the KV,
//! interop, differential and crash tests.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Connects `etcd-client` to `endpoint` (host:port) and waits until the server answers a linearizable Range,
/// i.e. it has a leader and serves requests (raftcd and etcd both elect themselves ~1 s after start).
/// Panics after 20 s.
pub async fn connect(endpoint: &str) -> etcd_client::Client {
    let start = Instant::now();
    let url = format!("http://{endpoint}");
    let mut last_err = String::new();
    while start.elapsed() < Duration::from_secs(20) {
        match etcd_client::Client::connect([url.as_str()], None).await {
            Ok(mut c) => {
                let probe = tokio::time::timeout(Duration::from_secs(3), c.get("raftcd-tests/ready-probe", None)).await;
                match probe {
                    Ok(Ok(_)) => return c,
                    Ok(Err(e)) => last_err = e.to_string(),
                    Err(_) => last_err = "probe timed out".into(),
                }
            }
            Err(e) => last_err = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{endpoint} did not serve a linearizable Range within 20 s: {last_err}");
}

/// The gRPC status of a failed call as (code name, message), e.g. ("OutOfRange", "etcdserver: mvcc: ...").
/// `None` for transport or client-side errors.
pub fn grpc_status(err: &etcd_client::Error) -> Option<(String, String)> {
    match err {
        etcd_client::Error::GRpcStatus(s) => Some((format!("{:?}", s.code()), s.message().to_string())),
        _ => None,
    }
}

/// Asserts that `res` failed with gRPC `code` (its name, as `tonic::Code`'s Debug prints it) and exactly `message`.
#[track_caller]
pub fn assert_grpc_err<T: std::fmt::Debug>(res: Result<T, etcd_client::Error>, code: &str, message: &str) {
    match res {
        Ok(v) => panic!("expected {code} {message:?}, got a success: {v:?}"),
        Err(e) => {
            let got =
                grpc_status(&e).unwrap_or_else(|| panic!("expected {code} {message:?}, got a non-gRPC error: {e}"));
            assert_eq!((got.0.as_str(), got.1.as_str()), (code, message), "wrong error");
        }
    }
}

/// Path of Debian's etcdctl (v3.4), from `$ETCDCTL` or `/usr/bin/etcdctl`, or from PATH. `None` when missing.
pub fn etcdctl_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ETCDCTL") {
        return Some(PathBuf::from(p));
    }
    let default = PathBuf::from("/usr/bin/etcdctl");
    if default.exists() {
        return Some(default);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("etcdctl")).find(|p| p.exists()))
}

/// True when a test may skip because an external tool is missing (`RAFTCD_ALLOW_SKIP=1`); otherwise tests
/// must fail so CI notices a missing dependency.
pub fn skip_allowed() -> bool {
    std::env::var("RAFTCD_ALLOW_SKIP").is_ok_and(|v| v == "1")
}

/// One raftcd member in its own temporary data dir, with a connected client.
pub struct Node {
    pub proc: crate::RaftcdProcess,
    pub client: etcd_client::Client,
    _dir: tempfile::TempDir,
}

/// Starts a single-member raftcd with `args` and connects to it.
pub async fn start_node(args: &[&str]) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc = tokio::task::block_in_place(|| crate::RaftcdProcess::start_single(dir.path(), args));
    let client = connect(&proc.endpoint()).await;
    Node { proc, client, _dir: dir }
}

/// A real etcd with a connected client, or None when etcd is missing and skipping is allowed.
pub async fn start_etcd() -> Option<(crate::EtcdProcess, etcd_client::Client)> {
    if !crate::EtcdProcess::available() {
        assert!(skip_allowed(), "etcd is not installed (set RAFTCD_TESTS_ALLOW_SKIP=1 to skip)");
        eprintln!("etcd missing: skipping the etcd side");
        return None;
    }
    let e = tokio::task::block_in_place(crate::EtcdProcess::start);
    let c = connect(&e.endpoint()).await;
    Some((e, c))
}
