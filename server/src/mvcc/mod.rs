//! Multi-version key-value storage: the etcd data model (revisions, per-key versions, history, compaction)
//! over ONE `sled::Tree`, with no in-memory index of the keys (low RSS, instant restart).
//!
//! # Layout of the tree (the first byte partitions it)
//! ```text
//! h | esc(userkey) | main | sub    -> kind + KeyValue: every version, see key_index.rs; a key's newest
//!                                     record is its live value (reads at any revision, see scan.rs)
//! r | main | sub                   -> userkey: the revision log (watch catch-up, compaction)
//! m | name                         -> meta: state (applied index, rev, key count, size), compact_rev, ...
//! x | anything                     -> opaque space of other layers (leases, members, alarms)
//! a | lease id (i64 BE) | userkey  -> empty: keys attached to each lease
//! ```
//! One raft entry = one [`WriteTxn`] = one `apply_batch`, which carries the entry's index with its data, so a
//! crash never separates "applied" from "written". A put is two inserts (`h`, `r`) plus the commit state.
//!
//! Store format 2 and earlier also kept `k | userkey -> KeyValue`, a second copy of each live value; sled
//! copies a tree node per insert, so that copy cost a third of a put's inserts and half its bytes. Opening
//! such a store removes it (see [`Store::open`]); snapshot files still carry it, for older members.
//!
//! # Concurrency
//! One apply thread writes (`begin` .. `commit`); any thread reads; one compaction thread deletes history
//! made unreachable by a compaction. A read at revision R needs only records <= R, which commits never
//! touch (they add records above the current revision). Compaction removes records <= R: a scan of many
//! records is guarded by a seqlock counter (odd while a compaction batch goes in, or the tree is replaced)
//! and redone one key at a time (each key one atomic reverse step) when the counter moved under it.

mod commit_state;
mod compaction;
mod hash;
pub mod key_index;
pub mod revision;
mod scan;
mod store;
mod txn;
mod write;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_format;
#[cfg(test)]
mod tests_history;
#[cfg(test)]
mod tests_write;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use raftcd_proto::etcdserverpb::ResponseHeader;

pub use commit_state::{CommitState, EmitRecord, META_FORMAT, META_STATE, STORE_FORMAT};
pub use key_index::KeyRange;
pub use revision::Revision;
pub use write::{Committed, WriteTxn};

use crate::error::{Error, Result};
use crate::live_db::TreeRef;
use revision::be8;

/// Live keys of store format 2 and earlier, and of snapshot files: `k | userkey` (see [`Store::open`]).
pub(crate) const P_LIVE_LEGACY: u8 = b'k';
/// History records: `h | esc(userkey) | rev`.
pub(crate) const P_HIST: u8 = b'h';
/// Revision log: `r | rev`.
pub(crate) const P_REV: u8 = b'r';
/// Other layers' space: `x | ...`.
pub(crate) const P_EXT: u8 = b'x';
/// Lease attachments: `a | lease | userkey`.
pub(crate) const P_LEASE: u8 = b'a';

// Store meta values: `m | name`.
// Before `mstate` (data dirs written by earlier builds), four keys held the commit state; see
// [`CommitState::load`].
pub const META_APPLIED_INDEX: &[u8] = b"mapplied_index";
pub const META_REV: &[u8] = b"mrev";
pub const META_COMPACT_REV: &[u8] = b"mcompact_rev";
pub const META_COMPACT_DONE: &[u8] = b"mcompact_done";
pub const META_KEY_COUNT: &[u8] = b"mkey_count";
/// Bytes written by the apply thread (estimate), and bytes freed by compaction: two single-writer counters.
pub const META_SIZE_WRITTEN: &[u8] = b"msize_written";
pub const META_SIZE_FREED: &[u8] = b"msize_freed";

/// The MVCC store. Cheap to clone (an `Arc` inside); share it between the apply thread and readers.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The tree; replaced (by the raft thread, see [`Store::switch_tree`]) when defragmentation copied it.
    tree: RwLock<TreeRef>,
    /// The revision of the last committed write; 1 for an empty store.
    pub(crate) current_rev: AtomicI64,
    /// The revision of the last committed Compact request; 0 if none.
    pub(crate) compact_rev: AtomicI64,
    /// The revision up to which physical compaction has finished.
    pub(crate) compact_done: AtomicI64,
    pub(crate) applied_index: AtomicU64,
    /// Seqlock: odd while records at or below the current revision are being removed or replaced (a
    /// compaction batch, a tree switch, a reload); commits do not move it.
    pub(crate) seq: AtomicU64,
    pub(crate) key_count: AtomicI64,
    pub(crate) size_written: AtomicI64,
    pub(crate) size_freed: AtomicI64,
    /// Serializes physical compaction runs.
    pub(crate) compact_lock: Mutex<()>,
    /// Held for reading by every read of the tree from outside the apply thread, and for writing while a
    /// snapshot replaces the tree's contents: a read waits for the install instead of seeing a tree that
    /// is half cleared or half filled (etcd's reads likewise wait for its backend swap).
    pub(crate) contents: RwLock<()>,
}

impl Store {
    /// Opens the store over `tree`, loading the revision, the compaction state and the applied index.
    /// A tree written by an earlier build (or installed from a snapshot file) is first brought to this
    /// build's format, see [`commit_state::upgrade`]. It resumes nothing itself: see
    /// [`Store::pending_compaction`].
    pub fn open(tree: impl Into<TreeRef>) -> Result<Store> {
        let tree = tree.into();
        commit_state::upgrade(&tree)?;
        let (state, _) = CommitState::load(&tree)?;
        let rev = state.revision;
        let compact_rev = get_i64(&tree, META_COMPACT_REV)?.unwrap_or(0);
        let compact_done = get_i64(&tree, META_COMPACT_DONE)?.unwrap_or(0);
        if rev < 1 || compact_rev < 0 || compact_rev > rev {
            return Err(Error::Storage(format!("mvcc: inconsistent meta: rev {rev}, compact_rev {compact_rev}")));
        }
        Ok(Store {
            inner: Arc::new(Inner {
                current_rev: AtomicI64::new(rev),
                compact_rev: AtomicI64::new(compact_rev),
                compact_done: AtomicI64::new(compact_done),
                applied_index: AtomicU64::new(state.applied_index),
                seq: AtomicU64::new(0),
                key_count: AtomicI64::new(state.key_count),
                size_written: AtomicI64::new(state.size_written),
                size_freed: AtomicI64::new(get_i64(&tree, META_SIZE_FREED)?.unwrap_or(0)),
                compact_lock: Mutex::new(()),
                contents: RwLock::new(()),
                tree: RwLock::new(tree),
            }),
        })
    }

    /// Re-reads the revision, compaction state, applied index and counters from the tree after another
    /// layer replaced its contents (snapshot install). Call it from the apply thread with no WriteTxn open,
    /// holding the guard of [`Store::pause_compaction`] taken before the contents were replaced: a
    /// compaction batch built from the old contents or the old compaction state must not run in between.
    pub fn reload(&self, _paused: &MutexGuard<'_, ()>) -> Result<()> {
        let fresh = Store::open(self.inner.tree().clone())?;
        let (i, f) = (&self.inner, &fresh.inner);
        i.seq.fetch_add(1, SeqCst);
        i.current_rev.store(f.current_rev.load(SeqCst), SeqCst);
        i.compact_rev.store(f.compact_rev.load(SeqCst), SeqCst);
        i.compact_done.store(f.compact_done.load(SeqCst), SeqCst);
        i.applied_index.store(f.applied_index.load(SeqCst), SeqCst);
        i.key_count.store(f.key_count.load(SeqCst), SeqCst);
        i.size_written.store(f.size_written.load(SeqCst), SeqCst);
        i.size_freed.store(f.size_freed.load(SeqCst), SeqCst);
        i.seq.fetch_add(1, SeqCst);
        Ok(())
    }

    /// Blocks physical compaction (the only writer besides the raft thread) while the guard lives.
    pub fn pause_compaction(&self) -> MutexGuard<'_, ()> {
        self.inner.compact_lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks reads (Range, events, HashKV) while the guard lives, for replacing the tree's contents.
    /// Take [`Store::pause_compaction`] first.
    pub fn block_reads(&self) -> RwLockWriteGuard<'_, ()> {
        self.inner.contents.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The tree the store currently works on.
    pub fn tree(&self) -> TreeRef {
        self.inner.tree()
    }

    /// Makes the store work on `tree`, a verified copy of the current tree. Call it from the raft thread,
    /// with no WriteTxn open and compaction paused: then nothing was written to the old tree since the
    /// copy, and a reader still on it sees the same data. The seqlock turn sends readers at the current
    /// revision that overlapped the switch through their careful path.
    pub fn switch_tree(&self, tree: TreeRef) {
        let i = &self.inner;
        i.seq.fetch_add(1, SeqCst);
        *i.tree.write().unwrap_or_else(PoisonError::into_inner) = tree;
        i.seq.fetch_add(1, SeqCst);
    }

    /// The revision of the last committed write (1 for an empty store).
    pub fn current_revision(&self) -> i64 {
        self.inner.current_rev.load(SeqCst)
    }

    /// The revision of the last committed compaction, 0 when never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.inner.compact_rev.load(SeqCst)
    }

    /// The raft index of the last committed entry.
    pub fn applied_index(&self) -> u64 {
        self.inner.applied_index.load(SeqCst)
    }

    /// Number of live keys.
    pub fn key_count(&self) -> Result<u64> {
        Ok(self.inner.key_count.load(SeqCst).max(0) as u64)
    }

    /// Estimated bytes of state-machine data (keys plus values written, minus what compaction freed).
    pub fn size_on_disk(&self) -> u64 {
        let i = &self.inner;
        (i.size_written.load(SeqCst) - i.size_freed.load(SeqCst)).max(0) as u64
    }

    /// A meta value of another layer; `key` is the part after `x`.
    pub fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.tree().get(ext_key(key))?.map(|v| v.to_vec()))
    }

    /// Every meta value of another layer whose key (after `x`) starts with `prefix`, in key order.
    pub fn scan_meta(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner
            .tree()
            .scan_prefix(ext_key(prefix))
            .map(|r| {
                let (k, v) = r?;
                Ok((k[1..].to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// The keys attached to `lease`, in key order.
    pub fn lease_keys(&self, lease: i64) -> Result<Vec<Vec<u8>>> {
        let prefix = lease_key(lease, b"");
        self.inner
            .tree()
            .scan_prefix(&prefix)
            .map(|r| {
                let (k, _) = r?;
                Ok(k[prefix.len()..].to_vec())
            })
            .collect()
    }
}

impl Inner {
    /// Guards a read against a snapshot install (see `contents`).
    pub(crate) fn reading(&self) -> RwLockReadGuard<'_, ()> {
        self.contents.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current tree. Readers take it AFTER loading the revision they read at: a tree replaced by
    /// defragmentation since still holds everything up to that revision (it was complete at the switch).
    pub(crate) fn tree(&self) -> TreeRef {
        self.tree.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A response header carrying only the revision; the service layer fills the rest.
pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

pub(crate) fn rev_key(rev: Revision) -> Vec<u8> {
    [&[P_REV][..], &rev.to_bytes()].concat()
}

pub(crate) fn ext_key(key: &[u8]) -> Vec<u8> {
    [&[P_EXT][..], key].concat()
}

pub(crate) fn lease_key(lease: i64, key: &[u8]) -> Vec<u8> {
    [&[P_LEASE][..], &lease.to_be_bytes(), key].concat()
}

pub(crate) fn get_i64(tree: &sled::Tree, key: &[u8]) -> Result<Option<i64>> {
    match tree.get(key)? {
        Some(v) => Ok(Some(i64::from_be_bytes(be8(&v)?))),
        None => Ok(None),
    }
}
