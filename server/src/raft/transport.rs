//! Where the Ready loop hands raft messages for other members.

use raft::eraftpb::Message;

/// Sends raft messages to peers. Implementations must never block the raft thread: they queue into bounded
/// per-peer buffers and drop (letting raft retry) when a buffer is full.
pub trait Transport: Send + Sync + 'static {
    /// Queues messages for their destinations.
    fn send(&self, msgs: Vec<Message>);
}

/// The transport of a single-member cluster: there is nobody to talk to.
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&self, msgs: Vec<Message>) {
        if !msgs.is_empty() {
            tracing::warn!(count = msgs.len(), "raft messages for peers, but this member has no peer transport");
        }
    }
}
