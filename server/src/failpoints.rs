//! Named crash points at durability boundaries, compiled in only with the `failpoints` feature.
//! `RAFTCD_FAILPOINTS=name1,name2` makes the member abort (like kill -9) when it reaches one of them, so
//! fault tests can crash it exactly between "saved" and "applied".
//!
//! The points: `raft-before-fsync` / `raft-after-fsync` (a Ready's entries and hard state written but not
//! yet durable / durable but no message sent), `raft-before-apply` / `raft-after-apply` (around applying
//! a Ready's committed entries, after the fsync), `apply-before-commit` / `apply-after-commit` (a committed
//! entry about to be applied / applied but its client not yet answered), `snapshot-install-midway` (part of
//! a received snapshot written over the state), `snapshot-installed-before-log-reset` (the state holds the
//! snapshot, the raft log does not start at it yet; tests/tests/crash.rs arms it), `defrag-before-swap` (offline defrag: copy complete, not yet
//! swapped in), `defrag-online-before-swap` (Defragment RPC: copy flushed and verified, pointer not yet
//! switched; tests/tests/defrag.rs arms it). `raftcd-jepsen --nemesis failpoint` restarts members with one of them armed.

/// Every failpoint name, for tools that arm them.
pub const ALL: &[&str] = &[
    "raft-before-fsync",
    "raft-after-fsync",
    "raft-before-apply",
    "raft-after-apply",
    "apply-before-commit",
    "apply-after-commit",
    "snapshot-install-midway",
    "snapshot-installed-before-log-reset",
    "defrag-before-swap",
    "defrag-online-before-swap",
];

/// True when this build has failpoints compiled in.
pub const COMPILED_IN: bool = cfg!(feature = "failpoints");

/// Aborts the process if `name` is armed in `RAFTCD_FAILPOINTS`.
pub fn hit(name: &str) {
    if let Ok(armed) = std::env::var("RAFTCD_FAILPOINTS") {
        if armed.split(',').any(|n| n.trim() == name) {
            eprintln!("raftcd: failpoint {name} reached, aborting");
            std::process::abort();
        }
    }
}

/// Marks a failpoint; a no-op unless built with `--features failpoints`.
#[macro_export]
macro_rules! failpoint {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoints::hit($name);
    };
}
