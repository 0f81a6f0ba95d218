//! etcdserverpb.KV: Range, Put, DeleteRange, Txn, Compact.

use std::sync::Arc;

use raftcd_proto::etcdserverpb::{
    kv_server::Kv, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use raftcd_proto::raftcdpb::raft_request::Op;
use tonic::{Request, Response, Status};

use crate::apply::ApplyResult;
use crate::services::{deny_learner, require_leader, unexpected, validate, Ctx};

/// The KV service.
pub struct KvService {
    ctx: Arc<Ctx>,
}

impl KvService {
    /// The service over shared context.
    pub fn new(ctx: Arc<Ctx>) -> KvService {
        KvService { ctx }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        require_leader(&self.ctx, &req)?;
        let who = self.ctx.identify(&req)?;
        let r = req.into_inner();
        validate::range(&r)?;
        if !r.serializable {
            deny_learner(&self.ctx)?;
        }
        if !r.serializable {
            self.ctx.raft.linearizable_barrier().await?;
        }
        // After the barrier: a permission revoked before this read began has been applied here.
        self.ctx.auth.check_read(&who, &r.key, &r.range_end)?;
        let store = self.ctx.store.clone();
        let mut resp = if r.range_end.is_empty() {
            // One key: a point lookup, cheaper than a hand-off to the blocking pool.
            store.range(&r)?
        } else {
            tokio::task::spawn_blocking(move || store.range(&r))
                .await
                .map_err(|e| Status::internal(e.to_string()))??
        };
        self.ctx.stamp(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        require_leader(&self.ctx, &req)?;
        let who = self.ctx.identify(&req)?;
        let r = req.into_inner();
        validate::put(&r)?;
        deny_learner(&self.ctx)?;
        match self.ctx.propose_as(Op::Put(r), Some(who)).await? {
            ApplyResult::Put(mut resp) => {
                self.ctx.stamp(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        require_leader(&self.ctx, &req)?;
        let who = self.ctx.identify(&req)?;
        let r = req.into_inner();
        validate::delete_range(&r)?;
        deny_learner(&self.ctx)?;
        match self.ctx.propose_as(Op::DeleteRange(r), Some(who)).await? {
            ApplyResult::DeleteRange(mut resp) => {
                self.ctx.stamp(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        require_leader(&self.ctx, &req)?;
        let who = self.ctx.identify(&req)?;
        let r = req.into_inner();
        validate::txn(&r, self.ctx.max_txn_ops)?;
        deny_learner(&self.ctx)?;
        match self.ctx.propose_as(Op::Txn(r), Some(who)).await? {
            ApplyResult::Txn(mut resp) => {
                self.ctx.stamp(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        require_leader(&self.ctx, &req)?;
        let who = self.ctx.identify(&req)?;
        let r = req.into_inner();
        deny_learner(&self.ctx)?;
        let (rev, physical) = (r.revision, r.physical);
        match self.ctx.propose_as(Op::Compact(r), Some(who)).await? {
            ApplyResult::Compact(mut resp) => {
                if physical {
                    self.ctx.compactor.wait_done(rev).await;
                }
                self.ctx.stamp(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }
}
