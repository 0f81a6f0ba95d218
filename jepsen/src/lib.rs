//! raftcd-jepsen: Jepsen-style fault testing of raftcd.
//!
//! A run starts a real multi-member raftcd cluster (each member in its own network namespace when possible),
//! drives a workload of concurrent clients through it while a seeded nemesis injects faults (kill -9, SIGSTOP,
//! network partitions, compaction, membership changes), records every operation with its invocation and
//! completion time and outcome, heals everything, and then checks the history: linearizability per key
//! (Wing–Gong/Lowe search as porcupine), and the workload's own invariants (appends, watch guarantees, lease
//! expiry, kubernetes-style access). The run directory holds the history, the fault timeline, a latency plot
//! and a summary.
//!
//! ```text
//! runner ──> net (netns + bridge, or loopback) ──> cluster (raftcd processes)
//!    │                                                  ▲            ▲
//!    ├──> workloads/* (clients: client.rs) ─────────────┘            │
//!    ├──> nemesis (seeded schedule of faults) ───────────────────────┘
//!    └──> checker/* (history.rs ops) ──> report (run dir: history.jsonl, timeline, latency.svg, summary.md)
//! ```

pub mod checker;
pub mod client;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod report;
pub mod runner;
pub mod workloads;

pub use runner::{run, RunConfig, RunResult};
