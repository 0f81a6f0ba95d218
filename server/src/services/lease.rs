//! etcdserverpb.Lease.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use raftcd_proto::etcdserverpb::{
    lease_client::LeaseClient, lease_server::Lease, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use raftcd_proto::raftcdpb::raft_request::Op;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::apply::ApplyResult;
use crate::error::Error;
use crate::services::forward::forward_status;
use crate::services::{require_leader, unexpected, Ctx};

/// The Lease service.
pub struct LeaseService {
    ctx: Arc<Ctx>,
}

impl LeaseService {
    /// The service over shared context.
    pub fn new(ctx: Arc<Ctx>) -> LeaseService {
        LeaseService { ctx }
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        require_leader(&self.ctx, &req)?;
        let who = self.ctx.identify(&req)?;
        let mut r = req.into_inner();
        r.ttl = self.ctx.lessor.effective_ttl(r.ttl)?;
        if r.id == 0 {
            // Chosen here, at the proposer, so every member applies the same id.
            r.id = (self.ctx.raft.next_id() & (i64::MAX as u64)) as i64;
        }
        match self.ctx.propose_as(Op::LeaseGrant(r), Some(who)).await? {
            ApplyResult::LeaseGrant(mut resp) => {
                self.ctx.stamp(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        require_leader(&self.ctx, &req)?;
        // Revoking deletes the attached keys: the apply checks write access to each (etcd's checkLeasePuts).
        let who = self.ctx.identify(&req)?;
        match self.ctx.propose_as(Op::LeaseRevoke(req.into_inner()), Some(who)).await? {
            ApplyResult::LeaseRevoke(mut resp) => {
                self.ctx.stamp(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        require_leader(&self.ctx, &req)?;
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel::<Result<LeaseKeepAliveResponse, Status>>(16);
        let ctx = self.ctx.clone();
        if let Some(ch) = self.ctx.forward_target().await? {
            // Only the leader keeps lease deadlines: pipe the stream to it.
            let (up_tx, up_rx) = mpsc::channel::<LeaseKeepAliveRequest>(16);
            let mut down = LeaseClient::new(ch)
                .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(up_rx))
                .await
                .map_err(forward_status)?
                .into_inner();
            let err_tx = tx.clone();
            tokio::spawn(async move {
                while let Some(item) = inbound.next().await {
                    match item {
                        Ok(ka) if up_tx.send(ka).await.is_ok() => {}
                        Ok(_) => break,
                        Err(status) => {
                            // A request this member could not take (e.g. over the receive limit) ends the
                            // stream with its error, as etcd's does, not with OK.
                            let _ = err_tx.send(Err(crate::grpc_limits::etcd_status(status))).await;
                            break;
                        }
                    }
                }
            });
            tokio::spawn(async move {
                loop {
                    let item = match down.message().await {
                        Ok(Some(mut resp)) => {
                            let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
                            resp.header = Some(ctx.header(rev));
                            Ok(resp)
                        }
                        Ok(None) => break,
                        Err(s) => Err(forward_status(s)),
                    };
                    let stop = item.is_err();
                    if tx.send(item).await.is_err() || stop {
                        break;
                    }
                }
            });
            return Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))));
        }
        tokio::spawn(async move {
            while let Some(item) = inbound.next().await {
                let ka = match item {
                    Ok(ka) => ka,
                    Err(status) => {
                        let _ = tx.send(Err(crate::grpc_limits::etcd_status(status))).await;
                        break;
                    }
                };
                let resp = match ctx.lessor.renew(ka.id) {
                    Ok(ttl) => Ok(LeaseKeepAliveResponse {
                        header: Some(ctx.header(ctx.store.current_revision())),
                        id: ka.id,
                        ttl,
                    }),
                    // etcd answers an unknown or expired lease with TTL 0 rather than an error.
                    Err(Error::LeaseNotFound) => Ok(LeaseKeepAliveResponse {
                        header: Some(ctx.header(ctx.store.current_revision())),
                        id: ka.id,
                        ttl: 0,
                    }),
                    Err(e) => Err(Status::from(e)),
                };
                let stop = resp.is_err();
                if tx.send(resp).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        require_leader(&self.ctx, &req)?;
        let r = req.into_inner();
        if let Some(ch) = self.ctx.forward_target().await? {
            let mut resp = LeaseClient::new(ch).lease_time_to_live(r).await.map_err(forward_status)?.into_inner();
            self.ctx.stamp(&mut resp.header);
            return Ok(Response::new(resp));
        }
        self.ctx.raft.linearizable_barrier().await?;
        let header = Some(self.ctx.header(self.ctx.store.current_revision()));
        let Some((granted, remaining)) = self.ctx.lessor.time_to_live(r.id) else {
            return Ok(Response::new(LeaseTimeToLiveResponse { header, id: r.id, ttl: -1, ..Default::default() }));
        };
        let keys = if r.keys { self.ctx.store.lease_keys(r.id)? } else { Vec::new() };
        Ok(Response::new(LeaseTimeToLiveResponse { header, id: r.id, ttl: remaining, granted_ttl: granted, keys }))
    }

    async fn lease_leases(&self, req: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        require_leader(&self.ctx, &req)?;
        self.ctx.raft.linearizable_barrier().await?;
        let leases = self.ctx.lessor.ids().into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.ctx.header(self.ctx.store.current_revision())),
            leases,
        }))
    }
}
