//! Cluster service: membership.

use raftcd_proto::etcdserverpb::cluster_client::ClusterClient;
use raftcd_proto::etcdserverpb::*;
use tonic::transport::Channel;

use crate::conn::Retry;
use crate::{unary_rpc, Client};

pub(crate) fn client(ch: Channel) -> ClusterClient<Channel> {
    ClusterClient::new(ch).max_decoding_message_size(usize::MAX)
}

impl Client {
    unary_rpc!(
        /// Adds a member (or a learner with `is_learner`).
        member_add => client, member_add, MemberAddRequest, MemberAddResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// Removes a member.
        member_remove => client, member_remove, MemberRemoveRequest, MemberRemoveResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// Changes a member's peer URLs.
        member_update => client, member_update, MemberUpdateRequest, MemberUpdateResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// Lists the members.
        member_list => client, member_list, MemberListRequest, MemberListResponse, Retry::Always
    );
    unary_rpc!(
        /// Promotes a learner to a voting member.
        member_promote => client, member_promote, MemberPromoteRequest, MemberPromoteResponse, Retry::IfNotSent
    );
}
