//! raftcd: a Raft-replicated key-value store that speaks the etcd v3 gRPC API.
//!
//! Layout, following the write path: `services` (gRPC edge: validate, propose or read) -> `raft` (RawNode
//! Ready loop, sled-backed log, proposals by request id) -> `apply` (committed entries into the state
//! machine) -> `mvcc` (revisioned key space over sled), `lease`, `member`; then `watch` (events to
//! watchers). `server` wires it together; `config` holds etcd-compatible flags.

pub mod apply;
pub mod auth;
pub mod auto_compaction;
pub mod config;
pub mod corruption;
pub mod db_dir;
pub mod defrag;
pub mod defrag_online;
pub mod durable;
pub mod error;
pub mod failpoints;
#[cfg(test)]
mod fuzz_tests;
pub mod grpc_limits;
pub mod grpc_metrics;
pub mod http;
pub mod lease;
pub mod listen;
pub mod live_db;
pub mod member;
pub mod metrics;
pub mod mvcc;
pub mod peer;
pub mod raft;
pub mod server;
pub mod services;
pub mod snapshot;
pub mod tls;
pub mod watch;
