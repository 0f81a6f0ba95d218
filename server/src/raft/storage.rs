//! `raft::Storage` over a sled tree: the raft log, hard state, conf state and the log's compaction point.
//!
//! Layout of the "raft" tree:
//! - `e` + index (u64 BE) -> Entry (raft-rs protobuf codec)
//! - `hs` -> HardState, `cs` -> ConfState
//! - `ci` -> the compaction point: index (u64 BE) + term (u64 BE) of the last entry removed from the log
//!
//! Writes go through one `sled::Batch` per call; durability comes from `Db::flush`, which the Ready loop calls
//! at its fsync point (see raft/node.rs). The first/last index and the hard/conf states are cached in memory,
//! and so is the tail of the log (see [`TAIL_ENTRIES`]): `term()` and `entries()` of recent indexes — raft asks
//! for them on every append it sends, every append it receives and every apply — never read sled.

use std::collections::VecDeque;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::error::{Error, Result};

const HARD_STATE: &[u8] = b"hs";
const CONF_STATE: &[u8] = b"cs";
const COMPACTED: &[u8] = b"ci";

/// The newest entries kept in memory (a write-through copy of the log's tail), at most this many...
const TAIL_ENTRIES: usize = 8192;
/// ... and at most this many bytes of entry data.
const TAIL_BYTES: usize = 32 << 20;

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'e';
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn storage_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

/// The raft log and raft metadata of one member.
pub struct RaftStorage {
    db: sled::Db,
    tree: sled::Tree,
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry that was compacted away (0, 0 for a fresh log).
    compacted: (u64, u64),
    last_index: u64,
    /// Applied index and its term, kept current by the apply layer; snapshots are taken at this point.
    applied: (u64, u64),
    /// The newest entries, contiguous, ending at `last_index` when not empty (`Entry` data is a refcounted
    /// `Bytes`, so a copy is cheap). Everything here is in the tree too.
    tail: VecDeque<Entry>,
    /// Data bytes held by `tail`.
    tail_bytes: usize,
}

fn entry_bytes(e: &Entry) -> usize {
    e.data.len() + e.context.len() + 32
}

impl RaftStorage {
    /// Opens (or creates) the raft tree of `db`.
    pub fn open(db: &sled::Db) -> Result<RaftStorage> {
        let tree = db.open_tree("raft")?;
        let hard_state = match tree.get(HARD_STATE)? {
            Some(b) => HardState::parse_from_bytes(&b).map_err(|e| Error::Storage(e.to_string()))?,
            None => HardState::default(),
        };
        let conf_state = match tree.get(CONF_STATE)? {
            Some(b) => ConfState::parse_from_bytes(&b).map_err(|e| Error::Storage(e.to_string()))?,
            None => ConfState::default(),
        };
        let compacted = match tree.get(COMPACTED)? {
            Some(b) if b.len() == 16 => (
                u64::from_be_bytes(b[..8].try_into().unwrap_or_default()),
                u64::from_be_bytes(b[8..].try_into().unwrap_or_default()),
            ),
            Some(_) => return Err(Error::Storage("raft: corrupt compaction point".into())),
            None => (0, 0),
        };
        let last_index = match tree.scan_prefix(b"e").next_back() {
            Some(kv) => {
                let (k, _) = kv?;
                u64::from_be_bytes(k[1..].try_into().map_err(|_| Error::Storage("raft: bad log key".into()))?)
            }
            None => compacted.0,
        };
        Ok(RaftStorage {
            db: db.clone(),
            tree,
            hard_state,
            conf_state,
            compacted,
            last_index,
            applied: (0, 0),
            tail: VecDeque::new(),
            tail_bytes: 0,
        })
    }

    /// True when nothing was ever written: the member must bootstrap its configuration.
    pub fn is_empty(&self) -> bool {
        self.last_index == 0 && self.conf_state.voters.is_empty() && self.conf_state.learners.is_empty()
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The persisted configuration.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Appends entries, first truncating any conflicting suffix (entries at or after the first new index).
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else { return Ok(()) };
        let mut batch = sled::Batch::default();
        for idx in first.index..=self.last_index {
            batch.remove(&entry_key(idx)[..]);
        }
        for e in entries {
            let bytes = e.write_to_bytes().map_err(|e| Error::Storage(e.to_string()))?;
            batch.insert(&entry_key(e.index)[..], bytes);
        }
        self.tree.apply_batch(batch)?;
        self.last_index = entries.last().map(|e| e.index).unwrap_or(self.last_index);
        self.cache_tail(entries);
        Ok(())
    }

    /// Keeps the in-memory tail equal to the log's newest entries after `entries` were appended.
    fn cache_tail(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first().map(|e| e.index) else { return };
        while self.tail.back().is_some_and(|e| e.index >= first) {
            if let Some(e) = self.tail.pop_back() {
                self.tail_bytes -= entry_bytes(&e);
            }
        }
        if self.tail.back().is_some_and(|e| e.index + 1 != first) {
            self.tail.clear();
            self.tail_bytes = 0;
        }
        for e in entries {
            self.tail_bytes += entry_bytes(e);
            self.tail.push_back(e.clone());
        }
        while self.tail.len() > TAIL_ENTRIES || (self.tail_bytes > TAIL_BYTES && self.tail.len() > 1) {
            if let Some(e) = self.tail.pop_front() {
                self.tail_bytes -= entry_bytes(&e);
            }
        }
    }

    /// Forgets cached entries at or below `index`.
    fn drop_tail_to(&mut self, index: u64) {
        while self.tail.front().is_some_and(|e| e.index <= index) {
            if let Some(e) = self.tail.pop_front() {
                self.tail_bytes -= entry_bytes(&e);
            }
        }
    }

    /// The cached entry at `idx`, if the tail holds it.
    fn cached(&self, idx: u64) -> Option<&Entry> {
        let first = self.tail.front()?.index;
        self.tail.get(usize::try_from(idx.checked_sub(first)?).ok()?)
    }

    /// Saves the hard state (term, vote, commit).
    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<()> {
        let bytes = hs.write_to_bytes().map_err(|e| Error::Storage(e.to_string()))?;
        self.tree.insert(HARD_STATE, bytes)?;
        self.hard_state = hs.clone();
        Ok(())
    }

    /// Saves the configuration (voters, learners) after a conf change is applied.
    pub fn set_conf_state(&mut self, cs: &ConfState) -> Result<()> {
        let bytes = cs.write_to_bytes().map_err(|e| Error::Storage(e.to_string()))?;
        self.tree.insert(CONF_STATE, bytes)?;
        self.conf_state = cs.clone();
        Ok(())
    }

    /// Records the applied index and its term (the point snapshots describe).
    pub fn set_applied(&mut self, index: u64, term: u64) {
        self.applied = (index, term);
    }

    /// Removes log entries up to and including `index` (which must be applied).
    pub fn compact(&mut self, index: u64) -> Result<()> {
        if index <= self.compacted.0 {
            return Ok(());
        }
        let index = index.min(self.last_index);
        let term = raft::Storage::term(self, index)?;
        let mut batch = sled::Batch::default();
        for idx in self.compacted.0 + 1..=index {
            batch.remove(&entry_key(idx)[..]);
        }
        let mut point = index.to_be_bytes().to_vec();
        point.extend_from_slice(&term.to_be_bytes());
        batch.insert(COMPACTED, point);
        self.tree.apply_batch(batch)?;
        self.compacted = (index, term);
        self.drop_tail_to(index);
        Ok(())
    }

    /// Replaces the log by a snapshot's point: every entry goes, the log restarts after `meta.index`.
    pub fn apply_snapshot_meta(&mut self, meta: &SnapshotMetadata) -> Result<()> {
        let mut batch = sled::Batch::default();
        for kv in self.tree.scan_prefix(b"e") {
            let (k, _) = kv?;
            batch.remove(k);
        }
        let mut point = meta.index.to_be_bytes().to_vec();
        point.extend_from_slice(&meta.term.to_be_bytes());
        batch.insert(COMPACTED, point);
        let cs = meta.get_conf_state().write_to_bytes().map_err(|e| Error::Storage(e.to_string()))?;
        batch.insert(CONF_STATE, cs);
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        batch.insert(HARD_STATE, hs.write_to_bytes().map_err(|e| Error::Storage(e.to_string()))?);
        self.tree.apply_batch(batch)?;
        self.hard_state = hs;
        self.conf_state = meta.get_conf_state().clone();
        self.compacted = (meta.index, meta.term);
        self.last_index = meta.index;
        self.applied = (meta.index, meta.term);
        self.tail.clear();
        self.tail_bytes = 0;
        Ok(())
    }

    /// Number of entries in the log.
    pub fn log_len(&self) -> u64 {
        self.last_index - self.compacted.0
    }

    /// The fsync point: makes every write so far durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.compacted.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        if low >= high {
            return Ok(out);
        }
        if self.cached(low).is_some() {
            // The tail runs to last_index >= high - 1: all of [low, high) is cached.
            for idx in low..high {
                let Some(e) = self.cached(idx) else { return Err(raft::Error::Store(StorageError::Unavailable)) };
                size += u64::from(e.compute_size());
                if !out.is_empty() && size > max_size {
                    break;
                }
                out.push(e.clone());
            }
            return Ok(out);
        }
        for kv in self.tree.range(&entry_key(low)[..]..&entry_key(high)[..]) {
            let (_, v) = kv.map_err(storage_err)?;
            let e = Entry::parse_from_bytes(&v).map_err(storage_err)?;
            size += v.len() as u64;
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e);
        }
        if out.len() as u64 != (high - low) && size <= max_size {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.compacted.0 {
            return Ok(self.compacted.1);
        }
        if idx < self.compacted.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if let Some(e) = self.cached(idx) {
            return Ok(e.term);
        }
        match self.tree.get(entry_key(idx)).map_err(storage_err)? {
            Some(v) => Ok(Entry::parse_from_bytes(&v).map_err(storage_err)?.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.compacted.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    /// Describes the state machine at the applied index. The data itself is streamed by the peer transport,
    /// which reads it from the store when it sends the snapshot message.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let (index, term) = self.applied;
        if index < request_index || index == 0 {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf_state.clone());
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage as _;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, ..Default::default() }
    }

    #[test]
    fn append_truncates_conflicts_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let mut s = RaftStorage::open(&db).unwrap();
            assert!(s.is_empty());
            s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
            s.append(&[entry(2, 2)]).unwrap();
            assert_eq!(s.last_index().unwrap(), 2);
            assert_eq!(s.term(2).unwrap(), 2);
            let hs = HardState { term: 2, commit: 2, ..Default::default() };
            s.set_hard_state(&hs).unwrap();
            s.flush().unwrap();
        }
        let db = sled::open(dir.path()).unwrap();
        let s = RaftStorage::open(&db).unwrap();
        assert_eq!(s.last_index().unwrap(), 2);
        assert_eq!(s.hard_state().commit, 2);
        assert_eq!(s.entries(1, 3, None, GetEntriesContext::empty(false)).unwrap().len(), 2);
    }

    #[test]
    fn compaction_moves_first_index_and_keeps_term() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let mut s = RaftStorage::open(&db).unwrap();
        s.append(&(1..=10).map(|i| entry(i, 1 + i / 5)).collect::<Vec<_>>()).unwrap();
        s.compact(5).unwrap();
        assert_eq!(s.first_index().unwrap(), 6);
        assert_eq!(s.term(5).unwrap(), 2);
        assert!(matches!(s.term(4), Err(raft::Error::Store(StorageError::Compacted))));
        assert!(s.entries(5, 7, None, GetEntriesContext::empty(false)).is_err());
        assert_eq!(s.entries(6, 11, None, GetEntriesContext::empty(false)).unwrap().len(), 5);
        // max_size still returns at least one entry
        assert_eq!(s.entries(6, 11, 1, GetEntriesContext::empty(false)).unwrap().len(), 1);
    }

    /// The in-memory tail answers exactly as the tree does: after conflicting appends, a compaction, and for
    /// indexes older than the tail (served from sled).
    #[test]
    fn tail_cache_matches_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let mut s = RaftStorage::open(&db).unwrap();
        let data = |i: u64| bytes::Bytes::from(vec![i as u8; (i % 7) as usize]);
        let mk = |i: u64, t: u64| Entry { index: i, term: t, data: data(i), ..Default::default() };
        s.append(&(1..=TAIL_ENTRIES as u64 + 100).map(|i| mk(i, 1)).collect::<Vec<_>>()).unwrap();
        s.append(&(50..=60).map(|i| mk(i, 2)).collect::<Vec<_>>()).unwrap(); // truncates 50.., tail restarts
        s.append(&(61..=70).map(|i| mk(i, 3)).collect::<Vec<_>>()).unwrap();
        s.append(&[mk(65, 4)]).unwrap(); // conflict inside the tail
        s.compact(10).unwrap();
        let fresh = RaftStorage::open(&db).unwrap();
        assert_eq!(s.last_index().unwrap(), 65);
        assert_eq!(fresh.last_index().unwrap(), 65);
        let ctx = || GetEntriesContext::empty(false);
        for i in 10..=65 {
            assert_eq!(s.term(i).unwrap(), fresh.term(i).unwrap_or(s.compacted.1), "term {i}");
        }
        for (lo, hi) in [(11, 66), (11, 50), (49, 52), (50, 66), (64, 66), (65, 66), (66, 66)] {
            for max in [None, Some(0), Some(40), Some(u64::MAX)] {
                let a = s.entries(lo, hi, max, ctx()).unwrap();
                let b = fresh.entries(lo, hi, max, ctx()).unwrap();
                assert_eq!(a, b, "entries({lo}, {hi}, {max:?})");
            }
        }
        assert!(matches!(s.term(66), Err(raft::Error::Store(StorageError::Unavailable))));
        assert!(s.entries(60, 67, None, ctx()).is_err());
        assert!(s.entries(10, 12, None, ctx()).is_err());
    }
}
