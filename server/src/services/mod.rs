//! The gRPC services of the etcd v3 API. Each validates at the edge, then proposes through raft or reads
//! local state, and stamps the response header.

pub mod auth;
pub mod cluster;
pub mod forward;
pub mod health;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod validate;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use raftcd_proto::etcdserverpb::ResponseHeader;
use raftcd_proto::raftcdpb::{raft_request::Op, RequestAuth};

use crate::apply::{Alarms, ApplyResult, Compactor};
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::member::Membership;
use crate::mvcc::Store;
use crate::raft::RaftHandle;
use crate::watch::WatchHub;

/// What every service needs.
pub struct Ctx {
    pub store: Store,
    /// The current database (online defragmentation replaces it).
    pub db: crate::live_db::LiveDb,
    pub raft: RaftHandle,
    pub lessor: Arc<Lessor>,
    pub members: Arc<Membership>,
    pub hub: Arc<WatchHub>,
    pub alarms: Arc<Alarms>,
    /// Users, roles, tokens.
    pub auth: Arc<crate::auth::AuthStore>,
    pub compactor: Compactor,
    pub transport: Arc<crate::peer::PeerTransport>,
    pub leader: forward::LeaderChannel,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// TLS for calls to other members' client URLs (https).
    pub client_tls: Option<crate::tls::DialTls>,
    /// Where snapshot files are written.
    pub snap_dir: std::path::PathBuf,
    pub cluster_id: u64,
    pub member_id: u64,
    pub max_txn_ops: usize,
    pub max_request_bytes: usize,
    pub quota_backend_bytes: i64,
    pub progress_interval: Duration,
}

/// Version reported by Status: etcd-compatible (kube-apiserver gates watch progress requests on >= 3.5.13).
pub const ETCD_VERSION: &str = "3.5.17";

impl Ctx {
    /// The response header at `revision`.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.raft.status().term(),
        }
    }

    /// Fills the member fields of a header that the apply layer stamped with a revision.
    pub fn stamp(&self, h: &mut Option<ResponseHeader>) {
        let rev = h.as_ref().map(|h| h.revision).unwrap_or_else(|| self.store.current_revision());
        *h = Some(self.header(rev));
    }

    /// A channel to the leader when this member does not lead (None when it does). While an election
    /// is under way it waits for the outcome, up to the request timeout, as etcd's requests do.
    pub async fn forward_target(&self) -> Result<Option<tonic::transport::Channel>> {
        let deadline = tokio::time::Instant::now() + self.raft.timeout();
        loop {
            let st = self.raft.status();
            if st.is_leader() {
                return Ok(None);
            }
            match self.leader.get(st, &self.members, self.client_tls.as_ref()) {
                Err(Error::NoLeader) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                r => return r.map(Some),
            }
        }
    }

    /// Replicates `op` through raft after the request-size check (the cluster's own requests).
    pub async fn propose(&self, op: Op) -> Result<ApplyResult> {
        self.propose_as(op, None).await
    }

    /// Replicates a client's `op`, carrying its identity for the apply-time permission check.
    pub async fn propose_as(&self, op: Op, auth: Option<RequestAuth>) -> Result<ApplyResult> {
        // etcd serves a read-only txn without proposing it: only gRPC's receive limit bounds it, not
        // --max-request-bytes (tests/tests/limits.rs compares this with etcd).
        let read_only = matches!(&op, Op::Txn(t) if validate::txn_is_read_only(t));
        if !read_only
            && prost::Message::encoded_len(&raftcd_proto::raftcdpb::RaftRequest {
                id: 0,
                op: Some(op.clone()),
                unix_millis: 0,
                auth: auth.clone(),
            }) > self.max_request_bytes
        {
            return Err(Error::RequestTooLarge);
        }
        if self.grows_store(&op) {
            self.check_quota(&op).await?;
        }
        self.raft.propose_as(op, auth).await
    }

    /// The identity of a client request (token metadata, else the TLS client certificate's common name).
    pub fn identify<T>(&self, req: &tonic::Request<T>) -> Result<RequestAuth> {
        let token = req.metadata().get("token").and_then(|v| v.to_str().ok());
        self.auth.identify(token, client_common_name(req))
    }

    fn grows_store(&self, op: &Op) -> bool {
        match op {
            Op::Put(_) | Op::LeaseGrant(_) => true,
            Op::Txn(t) => validate::txn_has_puts(t),
            _ => false,
        }
    }

    /// etcd's quota: a write that would take the store past --quota-backend-bytes raises the NOSPACE alarm
    /// (cluster-wide, through raft) and fails; while the alarm is on, such writes fail at once. Reads,
    /// deletes and compaction keep working, so an operator can make room and disarm.
    async fn check_quota(&self, op: &Op) -> Result<()> {
        if self.alarms.no_space() {
            return Err(Error::NoSpace);
        }
        let size = self.store.size_on_disk() as i64 + op.encoded_len() as i64;
        if size <= self.quota_backend_bytes {
            return Ok(());
        }
        let alarm = raftcd_proto::etcdserverpb::AlarmRequest {
            action: raftcd_proto::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
            member_id: self.member_id,
            alarm: raftcd_proto::etcdserverpb::AlarmType::Nospace as i32,
        };
        tracing::warn!(size, quota = self.quota_backend_bytes, "database space exceeded; raising the NOSPACE alarm");
        let _ = self.raft.propose(Op::Alarm(alarm)).await;
        Err(Error::NoSpace)
    }
}

/// The common name of the client's verified TLS certificate (present only with --client-cert-auth).
pub fn client_common_name<T>(req: &tonic::Request<T>) -> Option<String> {
    let info = req.extensions().get::<crate::listen::ConnInfo>()?;
    crate::auth::common_name::common_name(info.peer_certs.as_ref()?.first()?)
}

/// Fails when the client sent `hasleader=true` metadata and this member knows no leader.
pub fn require_leader<T>(ctx: &Ctx, req: &tonic::Request<T>) -> Result<()> {
    let wants = req.metadata().get("hasleader").and_then(|v| v.to_str().ok()).is_some_and(|v| v == "true");
    if wants && ctx.raft.status().leader() == 0 {
        return Err(Error::NoLeader);
    }
    Ok(())
}

/// Learners serve only serializable reads and Status ("etcdserver: rpc not supported for learner").
pub fn deny_learner(ctx: &Ctx) -> Result<()> {
    if ctx.raft.status().is_learner() {
        return Err(Error::NotSupportedForLearner);
    }
    Ok(())
}

/// A result that was not of the expected kind: a bug, reported as an internal error rather than a panic.
pub fn unexpected(r: ApplyResult) -> tonic::Status {
    tonic::Status::internal(format!("raftcd: unexpected apply result {r:?}"))
}
