//! Consensus: the raft-rs RawNode driven by a Ready loop on its own thread, its log in write-ahead files, and the
//! handle through which the async services propose writes and linearizable reads.

pub mod handle;
mod log_migration;
pub mod logger;
pub mod node;
pub mod proposal;
pub mod status;
pub mod storage;
pub mod transport;
pub mod wal;

pub use handle::RaftHandle;
pub use node::{Input, Node};
pub use status::RaftStatus;
