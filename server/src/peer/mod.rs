//! Member-to-member traffic on `--listen-peer-urls`: raft messages in batches over one long-lived stream per
//! peer, streamed snapshots, and the member list for members joining an existing cluster.

pub mod join;
pub mod outbound;
pub mod service;

pub use outbound::PeerTransport;
pub use service::PeerService;
