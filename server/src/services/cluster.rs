//! etcdserverpb.Cluster: the member list. Membership changes arrive with the cluster issue; until then they
//! are answered Unimplemented.

use std::sync::Arc;

use raftcd_proto::etcdserverpb::{
    cluster_server::Cluster, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::services::Ctx;

/// The Cluster service.
pub struct ClusterService {
    ctx: Arc<Ctx>,
}

impl ClusterService {
    /// The service over shared context.
    pub fn new(ctx: Arc<Ctx>) -> ClusterService {
        ClusterService { ctx }
    }
}

fn not_yet(what: &str) -> Status {
    Error::Unimplemented(format!("raftcd: {what} is not available in this build")).into()
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, _r: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        Err(not_yet("MemberAdd"))
    }
    async fn member_remove(&self, _r: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(not_yet("MemberRemove"))
    }
    async fn member_update(&self, _r: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(not_yet("MemberUpdate"))
    }
    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.ctx.raft.linearizable_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: Some(self.ctx.header(self.ctx.store.current_revision())),
            members: self.ctx.members.list(),
        }))
    }
    async fn member_promote(
        &self,
        _r: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(not_yet("MemberPromote"))
    }
}
