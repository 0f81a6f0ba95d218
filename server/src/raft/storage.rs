//! `raft::Storage` over a sled tree: the raft log, hard state, conf state and the log's compaction point.
//!
//! Layout of the "raft" tree:
//! - `b` + index (u64 BE) -> a record of consecutive entries starting at that index, each as a u32 BE length
//!   and the Entry (raft-rs protobuf codec). One Ready's entries make one record (several if it is huge), so
//!   an append is ONE tree insert, not one per entry: sled's per-key cost (tree walk, node copy, node
//!   splits every 8 keys) dominated the append. A record's last index is the next record's index - 1 (the
//!   log's last index for the last record). Compaction removes records whose entries are all compacted; a
//!   record straddling the compaction point stays, its older entries unreachable.
//! - `e` + index (u64 BE) -> Entry: the layout before records; `open` rewrites such a log as records.
//! - `hs` -> HardState, `cs` -> ConfState
//! - `ci` -> the compaction point: index (u64 BE) + term (u64 BE) of the last entry removed from the log
//!
//! Writes go through one `sled::Batch` per call; durability comes from `Db::flush`, which the Ready loop calls
//! at its fsync point (see raft/node.rs). The first/last index and the hard/conf states are cached in memory,
//! and so is the tail of the log (see [`TAIL_ENTRIES`]): `term()` and `entries()` of recent indexes — raft asks
//! for them on every append it sends, every append it receives and every apply — never read sled.

use std::collections::VecDeque;

use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::error::{Error, Result};
use crate::live_db::{Generation, TreeRef};

const HARD_STATE: &[u8] = b"hs";
const CONF_STATE: &[u8] = b"cs";
const COMPACTED: &[u8] = b"ci";

/// The newest entries kept in memory (a write-through copy of the log's tail), at most this many...
const TAIL_ENTRIES: usize = 8192;
/// ... and at most this many bytes of entry data.
const TAIL_BYTES: usize = 32 << 20;

/// Entries per record at most, and bytes per record at most (a record holds at least one entry).
const RECORD_ENTRIES: usize = 1024;
const RECORD_BYTES: usize = 4 << 20;

/// Key of the record whose first entry is `index`.
fn record_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'b';
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn record_index(key: &[u8]) -> Result<u64> {
    match key.get(1..).map(<[u8; 8]>::try_from) {
        Some(Ok(b)) if key.len() == 9 => Ok(u64::from_be_bytes(b)),
        _ => Err(Error::Storage("raft: bad log key".into())),
    }
}

/// Encodes consecutive entries as records: (first index, record bytes).
fn encode_records(entries: &[Entry]) -> Result<Vec<(u64, Vec<u8>)>> {
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut count = 0;
    for e in entries {
        let bytes = e.write_to_bytes().map_err(|e| Error::Storage(e.to_string()))?;
        let len = u32::try_from(bytes.len()).map_err(|_| Error::Storage("raft: entry too large".into()))?;
        match out.last_mut() {
            Some((_, rec)) if count < RECORD_ENTRIES && rec.len() + bytes.len() <= RECORD_BYTES => {
                rec.extend_from_slice(&len.to_be_bytes());
                rec.extend_from_slice(&bytes);
                count += 1;
            }
            _ => {
                let mut rec = Vec::with_capacity(4 + bytes.len());
                rec.extend_from_slice(&len.to_be_bytes());
                rec.extend_from_slice(&bytes);
                out.push((e.index, rec));
                count = 1;
            }
        }
    }
    Ok(out)
}

/// Decodes the record of entries starting at `first`, checking that their indexes follow on.
fn decode_record(first: u64, mut rec: &[u8]) -> Result<Vec<Entry>> {
    let bad = || Error::Storage(format!("raft: corrupt log record at {first}"));
    let mut out = Vec::new();
    while !rec.is_empty() {
        let len = u32::from_be_bytes(rec.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(bad)?) as usize;
        let bytes = rec.get(4..4 + len).ok_or_else(bad)?;
        let e = Entry::parse_from_bytes(bytes).map_err(|_| bad())?;
        if e.index != first + out.len() as u64 {
            return Err(bad());
        }
        out.push(e);
        rec = &rec[4 + len..];
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Rewrites a log in the old one-key-per-entry layout as records, in one batch, and makes it durable.
fn migrate_entries(db: &sled::Db, tree: &sled::Tree) -> Result<()> {
    if tree.scan_prefix(b"e").next().is_none() {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    let mut run: Vec<Entry> = Vec::new();
    let mut moved = 0u64;
    let flush_run = |run: &mut Vec<Entry>, batch: &mut sled::Batch| -> Result<()> {
        for (first, rec) in encode_records(run)? {
            batch.insert(&record_key(first)[..], rec);
        }
        run.clear();
        Ok(())
    };
    for kv in tree.scan_prefix(b"e") {
        let (k, v) = kv?;
        let e = Entry::parse_from_bytes(&v).map_err(|e| Error::Storage(e.to_string()))?;
        if run.last().is_some_and(|l| l.index + 1 != e.index) {
            flush_run(&mut run, &mut batch)?;
        }
        run.push(e);
        batch.remove(k);
        moved += 1;
    }
    flush_run(&mut run, &mut batch)?;
    tree.apply_batch(batch)?;
    db.flush()?;
    tracing::info!(entries = moved, "raft log rewritten as records");
    Ok(())
}

fn storage_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

/// The raft log and raft metadata of one member.
pub struct RaftStorage {
    /// The database flushed at the fsync point; replaced with `tree` by [`RaftStorage::switch_to`].
    gen: Arc<Generation>,
    tree: TreeRef,
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
    /// Opens (or creates) the raft tree of `db` (a database this layer does not manage: tools, tests).
    pub fn open(db: &sled::Db) -> Result<RaftStorage> {
        RaftStorage::open_in(&Generation::detached(db.clone()))
    }

    /// Opens (or creates) the raft tree of the member's database.
    pub fn open_in(gen: &Arc<Generation>) -> Result<RaftStorage> {
        let tree = TreeRef::open(gen, "raft")?;
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
        migrate_entries(gen.db(), &tree)?;
        let last_index = match tree.scan_prefix(b"b").next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                let first = record_index(&k)?;
                first + decode_record(first, &v)?.len() as u64 - 1
            }
            None => compacted.0,
        };
        Ok(RaftStorage {
            gen: gen.clone(),
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
        let Some(first) = entries.first().map(|e| e.index) else { return Ok(()) };
        let mut batch = sled::Batch::default();
        if first <= self.last_index {
            // A conflicting suffix: drop the records starting at or after `first`, cut the one holding it.
            for kv in self.tree.range(&record_key(first)[..]..=&record_key(u64::MAX)[..]) {
                batch.remove(kv?.0);
            }
            if let Some((start, mut held)) = self.record_at(first - 1)? {
                if start + held.len() as u64 > first {
                    held.truncate((first - start) as usize);
                    for (at, rec) in encode_records(&held)? {
                        batch.insert(&record_key(at)[..], rec);
                    }
                }
            }
        }
        for (at, rec) in encode_records(entries)? {
            batch.insert(&record_key(at)[..], rec);
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

    /// The record holding entry `idx` (its first index and entries), read from the tree.
    fn record_at(&self, idx: u64) -> Result<Option<(u64, Vec<Entry>)>> {
        if idx == 0 {
            return Ok(None);
        }
        let Some(kv) = self.tree.range(&record_key(0)[..]..=&record_key(idx)[..]).next_back() else {
            return Ok(None);
        };
        let (k, v) = kv?;
        let start = record_index(&k)?;
        let held = decode_record(start, &v)?;
        Ok((start + held.len() as u64 > idx).then_some((start, held)))
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
        // A record goes once all its entries are compacted: its last index is the next record's first - 1.
        let mut prev: Option<sled::IVec> = None;
        for kv in self.tree.range(&record_key(0)[..]..=&record_key(u64::MAX)[..]) {
            let (k, _) = kv?;
            let next_first = record_index(&k)?;
            if let Some(p) = prev.take() {
                if next_first - 1 > index {
                    break;
                }
                batch.remove(p);
            }
            prev = Some(k);
        }
        if let Some(p) = prev {
            if self.last_index <= index {
                batch.remove(p);
            }
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
        for kv in self.tree.scan_prefix(b"b").chain(self.tree.scan_prefix(b"e")) {
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

    /// Continues on `gen`, a verified copy of the current database (online defragmentation). The cached
    /// state stays valid: the copy holds exactly what the old database held.
    /// `raft` is the raft tree of `gen`.
    pub fn switch_to(&mut self, gen: &Arc<Generation>, raft: TreeRef) {
        self.tree = raft;
        self.gen = gen.clone();
    }

    /// Number of entries in the log.
    pub fn log_len(&self) -> u64 {
        self.last_index - self.compacted.0
    }

    /// The fsync point: makes every write so far durable.
    pub fn flush(&self) -> Result<()> {
        self.gen.sync()
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
        // From the record holding `low` on.
        let from = match self.record_at(low).map_err(storage_err)? {
            Some((start, _)) => start,
            None => low,
        };
        'records: for kv in self.tree.range(&record_key(from)[..]..&record_key(high)[..]) {
            let (k, v) = kv.map_err(storage_err)?;
            let start = record_index(&k).map_err(storage_err)?;
            for e in decode_record(start, &v).map_err(storage_err)? {
                if e.index < low {
                    continue;
                }
                if e.index >= high {
                    break 'records;
                }
                size += u64::from(e.compute_size());
                if !out.is_empty() && size > max_size {
                    break 'records;
                }
                out.push(e);
            }
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
        match self.record_at(idx).map_err(storage_err)? {
            Some((start, held)) => Ok(held[(idx - start) as usize].term),
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

    /// A log written in the old layout (one `e` key per entry) is rewritten as records on open and reads
    /// the same; appends, truncation and compaction then work on records.
    #[test]
    fn old_layout_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |i: u64, t: u64| Entry { index: i, term: t, data: vec![i as u8; 3].into(), ..Default::default() };
        {
            let db = sled::open(dir.path()).unwrap();
            let tree = db.open_tree("raft").unwrap();
            for i in 6..=40u64 {
                let mut k = vec![b'e'];
                k.extend_from_slice(&i.to_be_bytes());
                tree.insert(k, mk(i, 1 + i / 20).write_to_bytes().unwrap()).unwrap();
            }
            let mut point = 5u64.to_be_bytes().to_vec();
            point.extend_from_slice(&1u64.to_be_bytes());
            tree.insert(COMPACTED, point).unwrap();
            db.flush().unwrap();
        }
        let db = sled::open(dir.path()).unwrap();
        let mut s = RaftStorage::open(&db).unwrap();
        assert_eq!(s.tree.scan_prefix(b"e").count(), 0);
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (6, 40));
        let ctx = || GetEntriesContext::empty(false);
        assert_eq!(s.entries(6, 41, None, ctx()).unwrap(), (6..=40).map(|i| mk(i, 1 + i / 20)).collect::<Vec<_>>());
        assert_eq!(s.term(5).unwrap(), 1);
        assert_eq!(s.term(40).unwrap(), 3);
        s.append(&[mk(30, 7), mk(31, 7)]).unwrap();
        s.compact(29).unwrap();
        let s = RaftStorage::open(&db).unwrap();
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (30, 31));
        assert_eq!(s.entries(30, 32, None, ctx()).unwrap(), vec![mk(30, 7), mk(31, 7)]);
        assert_eq!(s.term(29).unwrap(), 2);
    }

    /// Many small appends, conflicting rewrites in the middle of records and compactions at record
    /// boundaries and inside records agree with a model of the log, before and after a reopen.
    #[test]
    fn records_agree_with_a_model() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let mut s = RaftStorage::open(&db).unwrap();
        let mk =
            |i: u64, t: u64| Entry { index: i, term: t, data: vec![(i * t) as u8; 5].into(), ..Default::default() };
        let mut model: Vec<Entry> = Vec::new(); // entries 1..
        let mut compacted = 0u64;
        let ctx = || GetEntriesContext::empty(false);
        let mut seed = 7u64;
        let mut rnd = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for round in 0..300u64 {
            let last = model.len() as u64;
            let first = if last > compacted + 3 && rnd(4) == 0 { last - rnd(3) } else { last + 1 };
            let n = 1 + rnd(5);
            let es: Vec<Entry> = (first..first + n).map(|i| mk(i, 1 + round)).collect();
            s.append(&es).unwrap();
            model.truncate((first - 1) as usize);
            model.extend(es);
            if rnd(10) == 0 && model.len() as u64 > compacted + 5 {
                let to = model.len() as u64 - 1 - rnd(4);
                if to > compacted {
                    compacted = to;
                    s.compact(to).unwrap();
                }
            }
            let fresh = RaftStorage::open(&db).unwrap();
            for st in [&s, &fresh] {
                assert_eq!(st.last_index().unwrap(), model.len() as u64);
                assert_eq!(st.first_index().unwrap(), compacted + 1);
                let lo = compacted + 1 + rnd(model.len() as u64 - compacted);
                let want: Vec<Entry> = model[(lo - 1) as usize..].to_vec();
                assert_eq!(st.entries(lo, model.len() as u64 + 1, None, ctx()).unwrap(), want, "round {round}");
                for i in lo..=model.len() as u64 {
                    assert_eq!(st.term(i).unwrap(), model[(i - 1) as usize].term);
                }
            }
        }
    }
}
