//! Requests that only the leader can answer (lease keep-alives and TTLs, membership changes) are forwarded
//! by a follower to the leader's client URL, so clients may talk to any member.

use std::sync::Mutex;
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::member::Membership;
use crate::raft::RaftStatus;

/// A cached channel to the current leader.
#[derive(Default)]
pub struct LeaderChannel {
    cached: Mutex<Option<(u64, Channel)>>,
}

impl LeaderChannel {
    /// A channel to the current leader (NoLeader when none is known or it has no client URL yet).
    pub fn get(&self, status: &RaftStatus, members: &Membership, tls: Option<&crate::tls::DialTls>) -> Result<Channel> {
        let leader = status.leader();
        if leader == 0 {
            return Err(Error::NoLeader);
        }
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, ch)) = cached.as_ref() {
            if *id == leader {
                return Ok(ch.clone());
            }
        }
        let url = members.get(leader).and_then(|m| m.client_ur_ls.first().cloned()).ok_or(Error::NoLeader)?;
        let ch = crate::tls::endpoint(&url, tls)?.connect_lazy();
        *cached = Some((leader, ch.clone()));
        Ok(ch)
    }
}

/// Maps a transport-level failure while forwarding to "leader changed" (the leader may have moved).
pub fn forward_status(s: tonic::Status) -> tonic::Status {
    if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled)
        && !s.message().starts_with("etcdserver:")
    {
        return Error::LeaderChanged.into();
    }
    s
}
