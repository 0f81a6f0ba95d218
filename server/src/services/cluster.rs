//! etcdserverpb.Cluster: member list and membership changes through raft conf changes.
//!
//! Response headers carry no revision (revision 0), as etcd's cluster server fills only the cluster id,
//! member id and raft term: `member list -w json` prints the same header as etcd's.
//!
//! Changes are decided on the leader (a follower forwards the RPC), because only the leader knows which
//! members are alive for the strict reconfiguration check: a change must leave a quorum of the new
//! configuration among the members that are up, or it fails with "etcdserver: unhealthy cluster".

use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use raftcd_proto::etcdserverpb::{
    cluster_client::ClusterClient, cluster_server::Cluster, Member, MemberAddRequest, MemberAddResponse,
    MemberListRequest, MemberListResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use raftcd_proto::raftcdpb::{raft_request::Op, MemberContext, MemberPeerUrls};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::apply::ApplyResult;
use crate::config::url_to_addr;
use crate::error::{Error, Result};
use crate::raft::Input;
use crate::services::forward::forward_status;
use crate::services::{unexpected, Ctx};

/// A peer counts as up if it talked to the leader this recently (etcd's HealthInterval).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// At most this many learners (etcd's default --max-learners).
const MAX_LEARNERS: usize = 1;

/// The Cluster service.
pub struct ClusterService {
    ctx: Arc<Ctx>,
}

impl ClusterService {
    /// The service over shared context.
    pub fn new(ctx: Arc<Ctx>) -> ClusterService {
        ClusterService { ctx }
    }

    fn voters(&self) -> Vec<Member> {
        self.ctx.members.list().into_iter().filter(|m| !m.is_learner).collect()
    }

    /// Voters (including this leader) that are up, leaving out `except`.
    fn started_voters(&self, except: Option<u64>) -> usize {
        let active = self.ctx.transport.active_peers(HEALTH_INTERVAL);
        self.voters()
            .iter()
            .filter(|m| Some(m.id) != except)
            .filter(|m| m.id == self.ctx.member_id || active.contains(&m.id))
            .count()
    }

    async fn change(&self, change: ConfChangeType, member: &Member) -> Result<(Option<Member>, Vec<Member>)> {
        let request_id = self.ctx.raft.next_id();
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change);
        single.node_id = member.id;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        let context = MemberContext {
            id: member.id,
            name: member.name.clone(),
            peer_urls: member.peer_ur_ls.clone(),
            client_urls: member.client_ur_ls.clone(),
            is_learner: member.is_learner,
            request_id,
        };
        cc.set_context(prost::Message::encode_to_vec(&context).into());
        match self.ctx.raft.propose_conf_change(cc, request_id).await? {
            ApplyResult::Members(m, list) => Ok((m, list)),
            other => Err(Error::Storage(format!("unexpected result {other:?}"))),
        }
    }
}

fn check_urls(urls: &[String]) -> Result<()> {
    if urls.is_empty() {
        return Err(Error::InvalidArgument("etcdserver: member peer URLs are not provided".into()));
    }
    for u in urls {
        url_to_addr(u).map_err(|_| Error::InvalidArgument("etcdserver: given member URLs are invalid".into()))?;
    }
    Ok(())
}

macro_rules! forward_if_follower {
    ($self:ident, $method:ident, $req:expr) => {
        if let Some(ch) = $self.ctx.forward_target().await? {
            return ClusterClient::new(ch).$method($req).await.map_err(forward_status);
        }
    };
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let r = req.into_inner();
        forward_if_follower!(self, member_add, r);
        check_urls(&r.peer_ur_ls)?;
        let members = self.ctx.members.list();
        if members.iter().any(|m| m.peer_ur_ls.iter().any(|u| r.peer_ur_ls.contains(u))) {
            return Err(Error::PeerUrlExists.into());
        }
        if r.is_learner {
            if members.iter().filter(|m| m.is_learner).count() >= MAX_LEARNERS {
                return Err(Error::TooManyLearners.into());
            }
        } else {
            let after = self.voters().len() + 1;
            if self.started_voters(None) < after / 2 + 1 {
                return Err(Error::UnhealthyCluster.into());
            }
        }
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let id = crate::member::member_id(&r.peer_ur_ls, &format!("{:x}", self.ctx.cluster_id), Some(millis));
        let member = Member {
            id,
            name: String::new(),
            peer_ur_ls: r.peer_ur_ls,
            client_ur_ls: vec![],
            is_learner: r.is_learner,
        };
        let change = if r.is_learner { ConfChangeType::AddLearnerNode } else { ConfChangeType::AddNode };
        let (added, members) = self.change(change, &member).await?;
        Ok(Response::new(MemberAddResponse {
            header: Some(self.ctx.header(0)),
            member: Some(added.unwrap_or(member)),
            members,
        }))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        let r = req.into_inner();
        forward_if_follower!(self, member_remove, r);
        let Some(member) = self.ctx.members.get(r.id) else { return Err(Error::MemberNotFound.into()) };
        if !member.is_learner {
            let after = self.voters().len() - 1;
            if self.started_voters(Some(r.id)) < after / 2 + 1 {
                return Err(Error::UnhealthyCluster.into());
            }
        }
        let (_, members) = self.change(ConfChangeType::RemoveNode, &member).await?;
        Ok(Response::new(MemberRemoveResponse { header: Some(self.ctx.header(0)), members }))
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        let r = req.into_inner();
        forward_if_follower!(self, member_update, r);
        check_urls(&r.peer_ur_ls)?;
        if self.ctx.members.get(r.id).is_none() {
            return Err(Error::MemberNotFound.into());
        }
        if self.ctx.members.list().iter().any(|m| m.id != r.id && m.peer_ur_ls.iter().any(|u| r.peer_ur_ls.contains(u)))
        {
            return Err(Error::PeerUrlExists.into());
        }
        let op = Op::MemberPeerUrls(MemberPeerUrls { id: r.id, peer_urls: r.peer_ur_ls });
        match self.ctx.propose(op).await? {
            ApplyResult::Members(_, members) => {
                Ok(Response::new(MemberUpdateResponse { header: Some(self.ctx.header(0)), members }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.ctx.raft.linearizable_barrier().await?;
        }
        Ok(Response::new(MemberListResponse { header: Some(self.ctx.header(0)), members: self.ctx.members.list() }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let r = req.into_inner();
        forward_if_follower!(self, member_promote, r);
        let Some(mut member) = self.ctx.members.get(r.id) else { return Err(Error::MemberNotFound.into()) };
        if !member.is_learner {
            return Err(Error::NotLearner.into());
        }
        let (tx, rx) = oneshot::channel();
        self.ctx.raft.send(Input::Progress(tx)).await?;
        let (leader_last, progress) = rx.await.map_err(|_| Error::Stopped)?;
        let matched = progress.iter().find(|(id, _)| *id == r.id).map(|(_, m)| *m).unwrap_or(0);
        // etcd: ready when the learner has at least 90% of the leader's log.
        if leader_last == 0 || (matched as f64) < leader_last as f64 * 0.9 {
            return Err(Error::LearnerNotReady.into());
        }
        let after = self.voters().len() + 1;
        if self.started_voters(None) + 1 < after / 2 + 1 {
            return Err(Error::UnhealthyCluster.into());
        }
        member.is_learner = false;
        let (_, members) = self.change(ConfChangeType::AddNode, &member).await?;
        Ok(Response::new(MemberPromoteResponse { header: Some(self.ctx.header(0)), members }))
    }
}
