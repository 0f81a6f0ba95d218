//! Shared harness for raftcd's integration tests: start real `raftcd` and `etcd` processes on loopback with
//! ephemeral ports and temporary data dirs, wait until they serve, and kill them when dropped.

pub mod client;
pub mod cluster;
pub mod process;
pub mod watch_checker;

pub use process::{free_port, workspace_bin, EtcdProcess, Member, RaftcdCluster, RaftcdProcess};

/// Logs a scenario step (`--- step`) so a failing test's output reads like a story.
#[macro_export]
macro_rules! step {
    ($($arg:tt)*) => {
        eprintln!("--- {}", format!($($arg)*));
    };
}
