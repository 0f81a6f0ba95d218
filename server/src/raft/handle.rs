//! The async face of the raft thread: propose a request and wait for its applied result; get a
//! linearizable read point.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use raftcd_proto::raftcdpb::{raft_request::Op, RaftRequest, RequestAuth};
use tokio::sync::{mpsc, oneshot, watch};

use crate::apply::ApplyResult;
use crate::error::{Error, Result};
use crate::raft::node::Input;
use crate::raft::proposal::{IdGenerator, Waiters};
use crate::raft::status::RaftStatus;

/// Cloneable handle used by the gRPC services.
#[derive(Clone)]
pub struct RaftHandle {
    tx: mpsc::Sender<Input>,
    waiters: Arc<Waiters>,
    ids: Arc<IdGenerator>,
    status: Arc<RaftStatus>,
    applied: watch::Receiver<u64>,
    timeout: Duration,
}

impl RaftHandle {
    /// A handle over the node's input channel.
    pub fn new(
        tx: mpsc::Sender<Input>,
        waiters: Arc<Waiters>,
        status: Arc<RaftStatus>,
        applied: watch::Receiver<u64>,
        timeout: Duration,
    ) -> RaftHandle {
        let ids = Arc::new(IdGenerator::new(status.id));
        RaftHandle { tx, waiters, ids, status, applied, timeout }
    }

    /// The member's raft status.
    pub fn status(&self) -> &Arc<RaftStatus> {
        &self.status
    }

    /// A fresh request id (also used for lease ids chosen by the server).
    pub fn next_id(&self) -> u64 {
        self.ids.next()
    }

    /// Proposals waiting for their result.
    pub fn pending(&self) -> usize {
        self.waiters.pending()
    }

    /// The request timeout ("etcdserver: request timed out" after it).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends an input to the raft thread (used by the peer transport and maintenance).
    pub async fn send(&self, input: Input) -> Result<()> {
        self.tx.send(input).await.map_err(|_| Error::Stopped)
    }

    /// Replicates `op` and returns its result once applied on this member.
    ///
    /// While no leader is known the proposal is retried until the deadline (raft refused it, so it cannot
    /// have been appended). Once raft accepted it, the outcome is unknown until it applies: a deadline
    /// then yields "request timed out", never a definite failure.
    pub async fn propose(&self, op: Op) -> Result<ApplyResult> {
        self.propose_as(op, None).await
    }

    /// [`RaftHandle::propose`] on behalf of a client whose identity is checked where the entry applies.
    pub async fn propose_as(&self, op: Op, auth: Option<RequestAuth>) -> Result<ApplyResult> {
        let unix_millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.submit(|| {
            let id = self.ids.next();
            let req = RaftRequest { id, op: Some(op.clone()), unix_millis, auth: auth.clone() };
            (id, Input::Propose { id, data: req.encode_to_vec() })
        })
        .await
    }

    /// Proposes a membership change and waits for it to apply.
    pub async fn propose_conf_change(&self, cc: raft::eraftpb::ConfChangeV2, id: u64) -> Result<ApplyResult> {
        self.submit(|| (id, Input::ProposeConfChange { id, cc: cc.clone() })).await
    }

    /// Sends the proposal `next` builds and waits for its result. One that raft refused before appending it
    /// (no leader, leader changed, a conf change still pending) cannot commit, so it is built and sent
    /// again until the request timeout.
    async fn submit(&self, mut next: impl FnMut() -> (u64, Input)) -> Result<ApplyResult> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let (id, input) = next();
            let rx = self.waiters.register(id);
            if self.tx.send(input).await.is_err() {
                self.waiters.cancel(id);
                return Err(Error::Stopped);
            }
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Err(Error::NoLeader))) | Ok(Ok(Err(Error::LeaderChanged))) => {
                    if tokio::time::Instant::now() + Duration::from_millis(50) >= deadline {
                        return Err(if self.status.leader() == 0 { Error::NoLeader } else { Error::Timeout });
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Ok(result)) => return result,
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) => {
                    self.waiters.cancel(id);
                    return Err(Error::Timeout);
                }
            }
        }
    }

    /// Waits until this member has applied everything committed when the call began (ReadIndex), so a
    /// read served from local state afterwards is linearizable.
    pub async fn linearizable_barrier(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let index = loop {
            let (tx, rx) = oneshot::channel();
            self.send(Input::ReadIndex(tx)).await?;
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Ok(index))) => break index,
                // Not served yet under any leader: safe to ask again until the deadline.
                Ok(Ok(Err(e @ (Error::NoLeader | Error::LeaderChanged)))) => {
                    if tokio::time::Instant::now() + Duration::from_millis(50) >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Ok(Err(e))) => return Err(e),
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) => return Err(Error::Timeout),
            }
        };
        self.wait_applied(index, deadline).await
    }

    /// Waits until the applied index reaches `index`.
    pub async fn wait_applied(&self, index: u64, deadline: tokio::time::Instant) -> Result<()> {
        let mut rx = self.applied.clone();
        let res = tokio::time::timeout_at(deadline, rx.wait_for(|a| *a >= index)).await;
        match res {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }
}
