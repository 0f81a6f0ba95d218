//! Point-in-time copies of the state machine, as a file format shared by three users: raft snapshots
//! streamed to lagging members, `Maintenance.Snapshot` backups (`etcdctl snapshot save`), and
//! `snapshot restore`.
//!
//! ```text
//! magic "RAFTCDSNAP01" | raft index u64 | raft term u64 | records... | 0xFF | zero padding | sha256
//! record = 0x01 | key len u32 | key | value len u32 | value        (one entry of the "state" tree)
//! ```
//! All integers are big-endian. The padding makes the file length ≡ 32 (mod 512), which is what
//! `etcdctl snapshot save` checks before it accepts a stream; the last 32 bytes are the sha256 of
//! everything before them, as in etcd's snapshot files.

pub mod file;
pub mod restore;
pub mod state;

pub use file::{read_header, SnapshotReader, SnapshotWriter, MAGIC};
pub use restore::{format_status, human_size, restore, status, RestoreOptions, SnapshotStatus};
