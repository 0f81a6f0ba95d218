//! Helpers for multi-member tests: clients that do not wait for a leader, Status polling and leader discovery,
//! whole-prefix reads, and Debian `etcdctl` runs against several endpoints.

use std::collections::BTreeMap;
use std::future::Future;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions, ResponseHeader, StatusResponse};

use crate::client::{etcdctl_path, grpc_status};

/// key -> (value, mod_revision).
pub type Kvs = BTreeMap<String, (String, i64)>;

/// The messages etcd uses when a request cannot be served for lack of a quorum or leader (all gRPC Unavailable).
pub const QUORUM_LOSS_MESSAGES: [&str; 3] =
    ["etcdserver: request timed out", "etcdserver: no leader", "etcdserver: leader changed"];

/// A client for one endpoint (host:port) that does not wait for the member to serve: for members that are
/// down, learners, or members without a quorum. Connecting is lazy, so this never fails for a down member.
pub async fn raw_client(endpoint: &str) -> Client {
    let opts = ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
    Client::connect([format!("http://{endpoint}")], Some(opts)).await.expect("etcd-client connect (lazy)")
}

/// Status of one member (fresh connection, 3 s limit).
pub async fn status(endpoint: &str) -> Result<StatusResponse, String> {
    let mut c = raw_client(endpoint).await;
    match tokio::time::timeout(Duration::from_secs(3), c.status()).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("{endpoint}: {e}")),
        Err(_) => Err(format!("{endpoint}: Status timed out after 3 s")),
    }
}

/// The member id of the member serving `endpoint` (from its Status header). Panics when it does not answer.
pub async fn member_id(endpoint: &str) -> u64 {
    let s = status(endpoint).await.unwrap_or_else(|e| panic!("Status: {e}"));
    s.header().map(|h| h.member_id()).filter(|id| *id != 0).unwrap_or_else(|| panic!("{endpoint}: no member id"))
}

/// Polls Status on every endpoint (all must be up) until they all name the same leader, that leader is one of
/// them, and it is not `not`. Returns the leader's id, or what was last seen when `within` passes.
pub async fn wait_leader(endpoints: &[String], not: Option<u64>, within: Duration) -> Result<u64, String> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let mut leaders = Vec::new();
        let mut ids = Vec::new();
        for ep in endpoints {
            match status(ep).await {
                Ok(s) => {
                    leaders.push(s.leader());
                    ids.push(s.header().map(|h| h.member_id()).unwrap_or(0));
                }
                Err(e) => {
                    leaders.push(0);
                    ids.push(0);
                    last = e;
                }
            }
        }
        let l = leaders[0];
        if l != 0 && Some(l) != not && leaders.iter().all(|x| *x == l) && ids.contains(&l) {
            return Ok(l);
        }
        if !leaders.is_empty() {
            last = format!("members {ids:x?} report leaders {leaders:x?} (excluded: {not:x?}); {last}");
        }
        if start.elapsed() > within {
            return Err(format!("no agreed leader within {within:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every key under `prefix` with its value and mod_revision, linearizable or serializable.
pub async fn read_prefix(c: &mut Client, prefix: &str, serializable: bool) -> Result<Kvs, etcd_client::Error> {
    let mut opts = GetOptions::new().with_prefix();
    if serializable {
        opts = opts.with_serializable();
    }
    let resp = c.get(prefix, Some(opts)).await?;
    Ok(resp
        .kvs()
        .iter()
        .map(|kv| {
            let k = String::from_utf8_lossy(kv.key()).into_owned();
            (k, (String::from_utf8_lossy(kv.value()).into_owned(), kv.mod_revision()))
        })
        .collect())
}

/// What is wrong with `got` compared to `want` (missing keys, wrong values or revisions, extra keys when
/// `exact`), in a few lines; empty when nothing is.
pub fn diff_kvs(want: &Kvs, got: &Kvs, exact: bool) -> String {
    let mut out = Vec::new();
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    if !missing.is_empty() {
        out.push(format!("{} missing, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]));
    }
    let wrong: Vec<String> = want
        .iter()
        .filter_map(|(k, v)| got.get(k).filter(|g| *g != v).map(|g| format!("{k}: want {v:?} got {g:?}")))
        .collect();
    if !wrong.is_empty() {
        out.push(format!("{} differ, e.g. {:?}", wrong.len(), &wrong[..wrong.len().min(5)]));
    }
    if exact {
        let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        if !extra.is_empty() {
            out.push(format!("{} unexpected, e.g. {:?}", extra.len(), &extra[..extra.len().min(5)]));
        }
    }
    out.join("; ")
}

/// Polls a member's serializable read of `prefix` until it holds `want` (exactly, when `exact`); returns the
/// last difference when `within` passes.
pub async fn wait_serializable(
    endpoint: &str,
    prefix: &str,
    want: &Kvs,
    exact: bool,
    within: Duration,
) -> Result<(), String> {
    let start = Instant::now();
    let mut c = raw_client(endpoint).await;
    let mut last;
    loop {
        match tokio::time::timeout(Duration::from_secs(3), read_prefix(&mut c, prefix, true)).await {
            Ok(Ok(got)) => {
                last = diff_kvs(want, &got, exact);
                if last.is_empty() {
                    return Ok(());
                }
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "serializable read timed out after 3 s".into(),
        }
        if start.elapsed() > within {
            return Err(format!("{endpoint} did not converge within {within:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// True when `err` is gRPC Unavailable with one of [`QUORUM_LOSS_MESSAGES`].
pub fn is_quorum_loss_error(err: &etcd_client::Error) -> bool {
    grpc_status(err).is_some_and(|(code, msg)| code == "Unavailable" && QUORUM_LOSS_MESSAGES.contains(&msg.as_str()))
}

/// The revision of a response header (0 when absent).
pub fn rev(h: Option<&ResponseHeader>) -> i64 {
    h.map(|h| h.revision()).unwrap_or(0)
}

/// Member ids of the cluster's members, in order (all must be up).
pub async fn ids_of(eps: &[String]) -> Vec<u64> {
    let mut ids = Vec::new();
    for ep in eps {
        ids.push(member_id(ep).await);
    }
    ids
}

/// Where `id` is in `ids`; panics when it is not there.
pub fn position(ids: &[u64], id: u64) -> usize {
    ids.iter().position(|i| *i == id).unwrap_or_else(|| panic!("{id:x} is not one of {ids:x?}"))
}

/// Writes `n` keys `prefix{i:03}` through `c`, returning what was acknowledged.
pub async fn put_keys(c: &mut Client, prefix: &str, n: usize) -> Kvs {
    let mut acked = Kvs::new();
    for i in 0..n {
        let (k, v) = (format!("{prefix}{i:03}"), format!("value-{i}"));
        let r = c.put(k.clone(), v.clone(), None).await.unwrap_or_else(|e| panic!("put {k}: {e}"));
        acked.insert(k, (v, rev(r.header())));
    }
    acked
}

/// Polls `c`'s member list until `pred` holds for it.
pub async fn wait_member_list(c: &mut Client, what: &str, pred: impl Fn(&[etcd_client::Member]) -> bool) {
    let start = Instant::now();
    loop {
        let last = match c.member_list().await {
            Ok(r) if pred(r.members()) => return,
            Ok(r) => format!("{:?}", r.members()),
            Err(e) => e.to_string(),
        };
        assert!(start.elapsed() < Duration::from_secs(10), "member list never showed {what}; last: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls a member's Status until its isLearner flag equals `want`; false if it does not within 3 s.
pub async fn learner_flag_becomes(ep: &str, want: bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if status(ep).await.is_ok_and(|s| s.is_learner() == want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Checks that `res` failed with gRPC `code` and `message`; a mismatch is appended to `problems` (so one
/// wrong error does not hide the next checks).
pub fn check_err<T: std::fmt::Debug>(
    problems: &mut Vec<String>,
    what: &str,
    res: Result<T, etcd_client::Error>,
    code: &str,
    message: &str,
) {
    let got = match res {
        Ok(v) => format!("success {v:?}"),
        Err(e) => match grpc_status(&e) {
            Some((c, m)) if c == code && m == message => {
                eprintln!("    {what}: {c} {m:?} as expected");
                return;
            }
            Some((c, m)) => format!("{c} {m:?}"),
            None => format!("non-gRPC error {e}"),
        },
    };
    problems.push(format!("{what}: expected {code} {message:?}, got {got}"));
}

/// Runs `f`, which must fail with gRPC Unavailable "request timed out" / "no leader" / "leader changed" within
/// `request_timeout` (plus 1.5 s of slack); a hang, a success or another error is returned as a problem.
pub async fn expect_quorum_error<T: std::fmt::Debug>(
    request_timeout: Duration,
    what: &str,
    f: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Option<String> {
    let start = Instant::now();
    let limit = request_timeout + Duration::from_millis(1500);
    match tokio::time::timeout(Duration::from_secs(20), f).await {
        Err(_) => Some(format!("{what}: no answer within 20 s (hangs)")),
        Ok(Ok(v)) => Some(format!("{what}: succeeded without a quorum: {v:?}")),
        Ok(Err(e)) => {
            let took = start.elapsed();
            if !is_quorum_loss_error(&e) {
                Some(format!("{what}: wrong error after {took:?}: {:?}", grpc_status(&e).unwrap_or_default()))
            } else if took > limit {
                Some(format!("{what}: {e} only after {took:?} (limit {limit:?})"))
            } else {
                eprintln!("    {what}: {e} after {took:?}");
                None
            }
        }
    }
}

/// Retries a put through `ep` until it succeeds (the cluster serves again); panics after `within`.
pub async fn put_until_ok(ep: &str, key: &str, value: &str, within: Duration) -> i64 {
    let start = Instant::now();
    let mut c = raw_client(ep).await;
    loop {
        let last = match tokio::time::timeout(Duration::from_secs(10), c.put(key, value, None)).await {
            Ok(Ok(r)) => {
                eprintln!("    put {key} via {ep} succeeded after {:?}", start.elapsed());
                return rev(r.header());
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 10 s".to_string(),
        };
        assert!(start.elapsed() < within, "service did not resume within {within:?}: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        c = raw_client(ep).await;
    }
}

/// What one etcdctl run produced.
#[derive(Debug)]
pub struct EtcdctlOut {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs Debian's `etcdctl` (ETCDCTL_API=3) against `endpoints` (host:port). Blocking. Panics when etcdctl is
/// missing (callers check [`etcdctl_path`] first).
pub fn etcdctl(endpoints: &[String], args: &[&str]) -> EtcdctlOut {
    let bin = etcdctl_path().expect("etcdctl not found");
    let o = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &endpoints.join(","), "--dial-timeout", "3s", "--command-timeout", "10s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl");
    EtcdctlOut {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}
