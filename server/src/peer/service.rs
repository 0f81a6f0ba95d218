//! The inbound side of the peer transport: the `raftcdpb.Peer` gRPC service.

use std::path::PathBuf;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::Message;
use raftcd_proto::raftcdpb::{peer_server::Peer, MembersRequest, MembersResponse, PeerAck, RaftBatch, SnapshotChunk};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::member::{encode_member, Membership};
use crate::peer::PeerTransport;
use crate::raft::Input;

/// Serves raft traffic from other members.
pub struct PeerService {
    cluster_id: u64,
    raft_tx: mpsc::Sender<Input>,
    members: Arc<Membership>,
    transport: Arc<PeerTransport>,
    snap_dir: PathBuf,
    /// The largest snapshot accepted: the stream is written to disk, so a peer must not fill it.
    max_snapshot_bytes: u64,
    /// One snapshot is received at a time (raft sends one per follower anyway).
    receiving: Arc<tokio::sync::Semaphore>,
}

/// A partly received snapshot file, removed unless the receive completes.
struct PartFile(Option<PathBuf>);

impl Drop for PartFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The snapshot size limit for a member whose backend quota is `quota_bytes`: a snapshot holds the live
/// state, which the sender's own quota bounds; twice the quota plus slack leaves room for a sender with
/// a larger quota without letting a peer write without limit.
pub fn max_snapshot_bytes(quota_bytes: u64) -> u64 {
    quota_bytes.saturating_mul(2).saturating_add(64 << 20)
}

impl PeerService {
    /// The service for a member of `cluster_id`.
    pub fn new(
        cluster_id: u64,
        raft_tx: mpsc::Sender<Input>,
        members: Arc<Membership>,
        transport: Arc<PeerTransport>,
        snap_dir: PathBuf,
        max_snapshot_bytes: u64,
    ) -> PeerService {
        let receiving = Arc::new(tokio::sync::Semaphore::new(1));
        PeerService { cluster_id, raft_tx, members, transport, snap_dir, max_snapshot_bytes, receiving }
    }

    fn check_cluster(&self, got: u64) -> Result<(), Status> {
        if got != self.cluster_id {
            tracing::warn!(expected = %format!("{:x}", self.cluster_id), got = %format!("{got:x}"), "rejected peer traffic from another cluster");
            return Err(Status::permission_denied(format!(
                "raftcd: cluster id mismatch (this member is in cluster {:x})",
                self.cluster_id
            )));
        }
        Ok(())
    }
}

/// Decodes one raft message from the wire and refuses what no peer sends: a message with no sender, or one
/// of raft's local types (MsgHup, MsgBeat, ...), which only a member's own node may step.
pub(crate) fn decode(bytes: &[u8]) -> Result<Message, Status> {
    use raft::eraftpb::MessageType::*;
    let m = Message::parse_from_bytes(bytes)
        .map_err(|e| Status::invalid_argument(format!("raftcd: bad raft message: {e}")))?;
    if m.from == 0 || matches!(m.get_msg_type(), MsgHup | MsgBeat | MsgUnreachable | MsgSnapStatus | MsgCheckQuorum) {
        return Err(Status::invalid_argument(format!(
            "raftcd: bad raft message: {:?} from {:x}",
            m.get_msg_type(),
            m.from
        )));
    }
    Ok(m)
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn send(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<PeerAck>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.message().await? {
            self.check_cluster(batch.cluster_id)?;
            self.transport.mark_active(batch.from, &batch.from_url);
            for bytes in &batch.messages {
                let m = decode(bytes)?;
                if self.raft_tx.send(Input::Step(Box::new(m))).await.is_err() {
                    return Err(Status::unavailable("raftcd: member stopping"));
                }
            }
        }
        Ok(Response::new(PeerAck {}))
    }

    async fn snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<PeerAck>, Status> {
        let mut stream = req.into_inner();
        let Some(first) = stream.message().await? else {
            return Err(Status::invalid_argument("raftcd: empty snapshot stream"));
        };
        self.check_cluster(first.cluster_id)?;
        let msg = decode(&first.raft_message)?;
        if msg.get_msg_type() != raft::eraftpb::MessageType::MsgSnapshot {
            return Err(Status::invalid_argument("raftcd: snapshot stream without a MsgSnapshot"));
        }
        let Ok(_receiving) = self.receiving.clone().try_acquire_owned() else {
            return Err(Status::unavailable("raftcd: another snapshot is being received"));
        };
        let meta = msg.get_snapshot().get_metadata();
        let final_path = self.snap_dir.join(format!("recv-{}-{}.snap", meta.term, meta.index));
        let part = final_path.with_extension("part");
        let io = |e: std::io::Error| Status::internal(format!("raftcd: snapshot receive: {e}"));
        let mut file = tokio::fs::File::create(&part).await.map_err(io)?;
        let mut guard = PartFile(Some(part.clone()));
        let mut size = first.data.len() as u64;
        let too_big = |size: u64| {
            tracing::warn!(size, limit = self.max_snapshot_bytes, "refused an oversized snapshot from a peer");
            Status::resource_exhausted(format!(
                "raftcd: snapshot larger than {} bytes (twice the backend quota plus 64 MiB)",
                self.max_snapshot_bytes
            ))
        };
        if size > self.max_snapshot_bytes {
            return Err(too_big(size));
        }
        file.write_all(&first.data).await.map_err(io)?;
        let mut last = first.last;
        while !last {
            let Some(chunk) = stream.message().await? else {
                return Err(Status::invalid_argument("raftcd: snapshot stream ended early"));
            };
            size += chunk.data.len() as u64;
            if size > self.max_snapshot_bytes {
                return Err(too_big(size));
            }
            file.write_all(&chunk.data).await.map_err(io)?;
            last = chunk.last;
        }
        file.sync_all().await.map_err(io)?;
        drop(file);
        // Check it whole before raft ever sees it.
        let p = part.clone();
        tokio::task::spawn_blocking(move || crate::snapshot::state::verify(&p))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(Status::from)?;
        tokio::fs::rename(&part, &final_path).await.map_err(io)?;
        guard.0 = None;
        tracing::info!(index = meta.index, term = meta.term, "snapshot received");
        self.raft_tx
            .send(Input::Step(Box::new(msg)))
            .await
            .map_err(|_| Status::unavailable("raftcd: member stopping"))?;
        Ok(Response::new(PeerAck {}))
    }

    async fn members(&self, _req: Request<MembersRequest>) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse {
            cluster_id: self.cluster_id,
            members: self.members.list().iter().map(encode_member).collect(),
        }))
    }
}
