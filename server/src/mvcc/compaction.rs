//! Physical compaction: removes the history a committed compaction made unreachable, in chunks of
//! revisions, each chunk one batch that also records how far it got (`compact_done`), so a restart resumes.
//!
//! For compaction at C, the revision log entries in `[compact_done, C]` name every key changed there. For
//! each such key, every record below its newest change in the chunk is superseded by a record <= C and is
//! removed; that newest change is removed too if it is a tombstone. Log entries below C are removed; those
//! at C stay so that a watcher starting exactly at C still sees its events (a DELETE whose tombstone was
//! dropped is rebuilt from the log entry).
//!
//! Safe next to readers: a careful read at R >= C takes the newest record <= R in one reverse step, and a
//! batch is atomic with respect to one step, so it finds either the record that stays or, for a dropped
//! tombstone, nothing at all (the older versions go in the same batch). A streaming read can see a key's
//! older records but not its tombstone; the store's seqlock, odd while a batch goes in, makes it redo
//! the scan carefully. Safe next to commits: those only add records above the current revision >= C.

use std::collections::BTreeMap;
use std::sync::atomic::{fence, Ordering::SeqCst};
use std::sync::PoisonError;

use super::key_index::{self, history_prefix, record_kind, Kind};
use super::revision::Revision;
use super::{rev_key, Store, META_COMPACT_DONE, META_SIZE_FREED, P_LIVE_LEGACY};
use crate::error::Result;

/// Main revisions handled per batch.
pub(crate) const CHUNK_REVISIONS: i64 = 1000;
/// Legacy live copies removed per batch.
const LIVE_COPIES_PER_BATCH: usize = 10_000;

impl Store {
    /// `Some(compact_revision)` while physical compaction is behind the last committed compaction
    /// (e.g. after a restart); pass it to [`Store::compact_physical`].
    pub fn pending_compaction(&self) -> Option<i64> {
        let target = self.compact_revision();
        (self.inner.compact_done.load(SeqCst) < target).then_some(target)
    }

    /// Removes the history made unreachable by compaction at `rev` (capped at the committed compaction
    /// revision). Idempotent; safe to run next to reads and commits; runs are serialized.
    pub fn compact_physical(&self, rev: i64) -> Result<()> {
        let inner = &self.inner;
        let _one_at_a_time = inner.compact_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let target = rev.min(self.compact_revision());
        let done = inner.compact_done.load(SeqCst);
        if target <= done {
            return Ok(());
        }
        // Start AT `done`: the log entries of the previous compaction revision were kept for watchers.
        let mut from = done;
        while from <= target {
            let to = from.saturating_add(CHUNK_REVISIONS - 1).min(target);
            self.compact_chunk(from, to, target)?;
            from = to + 1;
        }
        Ok(())
    }

    /// Removes the live copies `k | key` a store of format 2 or earlier kept (see [`super::commit_state`]),
    /// in batches, each under the compaction lock and counting the bytes as freed. Nothing reads them, so
    /// this runs in the background after start-up; returns how many it removed.
    pub fn remove_live_copies(&self) -> Result<u64> {
        let inner = &self.inner;
        let mut removed = 0u64;
        loop {
            let _one_at_a_time = inner.compact_lock.lock().unwrap_or_else(PoisonError::into_inner);
            let tree = &inner.tree();
            let mut batch = sled::Batch::default();
            let (mut n, mut freed) = (0u64, 0i64);
            for item in tree.range([P_LIVE_LEGACY]..[P_LIVE_LEGACY + 1]).take(LIVE_COPIES_PER_BATCH) {
                let (k, v) = item?;
                freed += (k.len() + v.len()) as i64;
                batch.remove(k);
                n += 1;
            }
            if n == 0 {
                return Ok(removed);
            }
            let total_freed = inner.size_freed.load(SeqCst) + freed;
            batch.insert(META_SIZE_FREED, &total_freed.to_be_bytes());
            tree.apply_batch(batch)?;
            inner.size_freed.store(total_freed, SeqCst);
            removed += n;
        }
    }

    /// Compacts the log entries with main revision in `[from, to]` for compaction at `target`.
    fn compact_chunk(&self, from: i64, to: i64, target: i64) -> Result<()> {
        let inner = &self.inner;
        let tree = &inner.tree();
        let mut batch = sled::Batch::default();
        let mut freed = 0i64;
        // The newest change of each key within the chunk.
        let mut newest: BTreeMap<Vec<u8>, Revision> = BTreeMap::new();
        for item in tree.range(rev_key(Revision::new(from, 0))..rev_key(Revision::new(to + 1, 0))) {
            let (k, user_key) = item?;
            let rev = Revision::from_bytes(&k[1..])?;
            let slot = newest.entry(history_prefix(&user_key)).or_insert(rev);
            *slot = (*slot).max(rev);
            if rev.main < target {
                freed += (k.len() + user_key.len()) as i64;
                batch.remove(k);
            }
        }
        for (prefix, rev) in &newest {
            for item in tree.range(prefix.clone()..key_index::at(prefix, *rev)) {
                let (k, v) = item?;
                freed += (k.len() + v.len()) as i64;
                batch.remove(k);
            }
            let last = key_index::at(prefix, *rev);
            if let Some(v) = tree.get(&last)? {
                if record_kind(&v)? == Kind::Tombstone {
                    freed += (last.len() + v.len()) as i64;
                    batch.remove(last);
                }
            }
        }
        let total_freed = inner.size_freed.load(SeqCst) + freed;
        batch.insert(META_SIZE_FREED, &total_freed.to_be_bytes());
        batch.insert(META_COMPACT_DONE, &to.to_be_bytes());
        // Seqlock: odd while the batch goes in, so that streaming reads that overlapped it redo their scan.
        inner.seq.fetch_add(1, SeqCst);
        fence(SeqCst);
        let applied = tree.apply_batch(batch);
        fence(SeqCst);
        inner.seq.fetch_add(1, SeqCst);
        applied?;
        inner.size_freed.store(total_freed, SeqCst);
        inner.compact_done.store(to, SeqCst);
        Ok(())
    }
}
