//! Maintenance service: status, alarms, defragment, hashes, snapshot, leader transfer.
//!
//! Status, hash_kv, defragment and move_leader are about one member: call them on
//! [`Client::for_endpoint`] to pick which.

use raftcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use raftcd_proto::etcdserverpb::*;
use tonic::transport::Channel;

use crate::conn::{classify, Failure, Retry};
use crate::{unary_rpc, Client, Error, Result};

pub(crate) fn client(ch: Channel) -> MaintenanceClient<Channel> {
    MaintenanceClient::new(ch).max_decoding_message_size(usize::MAX)
}

impl Client {
    unary_rpc!(
        /// Lists, raises or clears alarms.
        alarm => client, alarm, AlarmRequest, AlarmResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// The answering member's status.
        status => client, status, StatusRequest, StatusResponse, Retry::Always
    );
    unary_rpc!(
        /// Defragments the answering member's backend.
        defragment => client, defragment, DefragmentRequest, DefragmentResponse, Retry::Always
    );
    unary_rpc!(
        /// Hash of the answering member's whole backend.
        hash => client, hash, HashRequest, HashResponse, Retry::Always
    );
    unary_rpc!(
        /// Hash of the answering member's KV history up to a revision.
        hash_kv => client, hash_kv, HashKvRequest, HashKvResponse, Retry::Always
    );
    unary_rpc!(
        /// Asks the leader (this must be the leader's endpoint) to hand leadership to `target_id`.
        move_leader => client, move_leader, MoveLeaderRequest, MoveLeaderResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// Cluster downgrade control.
        downgrade => client, downgrade, DowngradeRequest, DowngradeResponse, Retry::IfNotSent
    );

    /// Opens the snapshot stream. The stream is not bounded by `command_timeout`; bound it by the caller.
    pub async fn snapshot(&self) -> Result<SnapshotStream> {
        self.ensure_auth().await?;
        let (idx, ch) = self.pool.any_channel(self.pool.deadline()).await?;
        match client(ch).snapshot(self.request(SnapshotRequest {})).await {
            Ok(resp) => Ok(SnapshotStream { inner: resp.into_inner() }),
            Err(s) => {
                if matches!(classify(&s), Failure::Transport { .. }) {
                    self.pool.stream_failed(idx);
                }
                Err(Error::from(s))
            }
        }
    }
}

/// Chunks of a snapshot, as sent by the server (the last 32 bytes of the whole are a sha256 of the rest).
pub struct SnapshotStream {
    inner: tonic::Streaming<SnapshotResponse>,
}

impl SnapshotStream {
    /// The next chunk, `None` at the end.
    pub async fn message(&mut self) -> Result<Option<SnapshotResponse>> {
        self.inner.message().await.map_err(Error::from)
    }
}
