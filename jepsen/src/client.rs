//! gRPC access to the members (the generated tonic clients of `raftcd_proto`) and the mapping of errors to
//! outcomes.
//!
//! | error                                                         | outcome of a write |
//! |---------------------------------------------------------------|--------------------|
//! | InvalidArgument, NotFound, FailedPrecondition, OutOfRange, ...| fail (not applied) |
//! | transport error while connecting (connection refused)         | fail (never sent)  |
//! | Unavailable "request timed out" / "leader changed" / "no leader", other transport errors, client timeout, DeadlineExceeded, Cancelled, Unknown, Internal | info |
//!
//! Reads change nothing, so every read error is a `fail` (the op carries no information).

use std::error::Error as _;
use std::future::Future;
use std::time::Duration;

use raftcd_proto::etcdserverpb::{
    cluster_client::ClusterClient, kv_client::KvClient, lease_client::LeaseClient,
    maintenance_client::MaintenanceClient, watch_client::WatchClient, StatusRequest, StatusResponse,
};
use tonic::transport::{Channel, Endpoint};

use crate::history::Outcome;

/// Clients of every service of one member, over one lazily connected channel.
#[derive(Clone)]
pub struct Conn {
    pub member: usize,
    pub kv: KvClient<Channel>,
    pub watch: WatchClient<Channel>,
    pub lease: LeaseClient<Channel>,
    pub maint: MaintenanceClient<Channel>,
    pub cluster: ClusterClient<Channel>,
}

impl Conn {
    /// A connection to `url` (http://host:port) of member `member`. Connects on first use, reconnects after
    /// failures; HTTP/2 keep-alives notice a dead or paused peer within a few seconds.
    pub fn new(member: usize, url: &str) -> Conn {
        let ch = Endpoint::from_shared(url.to_string())
            .expect("member URL")
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true)
            .connect_lazy();
        Conn {
            member,
            kv: KvClient::new(ch.clone()),
            watch: WatchClient::new(ch.clone()),
            lease: LeaseClient::new(ch.clone()),
            maint: MaintenanceClient::new(ch.clone()),
            cluster: ClusterClient::new(ch),
        }
    }
}

/// A failed call: its outcome for the history (fail or info) and a message.
#[derive(Debug, Clone)]
pub struct CallError {
    pub outcome: Outcome,
    pub code: tonic::Code,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for CallError {}

/// The whole message of a status, including its transport source chain.
fn full_message(s: &tonic::Status) -> String {
    let mut msg = s.message().to_string();
    let mut src = s.source();
    while let Some(e) = src {
        let m = e.to_string();
        if !msg.contains(&m) {
            msg.push_str(": ");
            msg.push_str(&m);
        }
        src = e.source();
    }
    msg
}

/// Classifies a gRPC error of a request that could change the store.
pub fn classify(s: &tonic::Status) -> CallError {
    use tonic::Code;
    let message = full_message(s);
    let outcome = match s.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::ResourceExhausted
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Unimplemented => Outcome::Fail,
        Code::Unavailable if is_connect_refused(&message) => Outcome::Fail,
        _ => Outcome::Info,
    };
    CallError { outcome, code: s.code(), message }
}

/// True for a transport error raised while connecting, before the request was sent.
fn is_connect_refused(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    !m.contains("etcdserver") && (m.contains("connection refused") || m.contains("tcp connect error"))
}

/// Runs a unary call with a client-side timeout; a timeout is an `info` outcome.
pub async fn call<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(classify(&s)),
        Err(_) => Err(CallError {
            outcome: Outcome::Info,
            code: tonic::Code::DeadlineExceeded,
            message: format!("client timeout after {timeout:?}"),
        }),
    }
}

/// Status of a member, with a short timeout.
pub async fn status(conn: &Conn, timeout: Duration) -> Result<StatusResponse, CallError> {
    let mut m = conn.maint.clone();
    call(timeout, m.status(StatusRequest {})).await
}

/// `prefix`'s range end: the prefix with its last byte below 0xff incremented.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    raftcd_tests::watch_checker::prefix_end(prefix.as_bytes())
}
