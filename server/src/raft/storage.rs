//! `raft::Storage` over the write-ahead log in `member/wal/` (see [`super::wal`]): the raft log, the hard
//! state and the log's compaction point. The configuration (ConfState) is applied state and stays in the
//! sled tree "raft", beside the applied index it belongs to.
//!
//! # WAL records
//! - `ENTRIES`: consecutive entries, each as a u32 BE length and the Entry (raft-rs protobuf codec). One
//!   Ready's entries make one record (several if it is huge). A record whose first index is at or below the
//!   log's last index replaces the log from that index on (a conflicting suffix).
//! - `HARD_STATE`: the HardState (protobuf); the last one wins.
//! - `COMPACT`: index and term (u64 BE each) of the last entry compacted away; the log starts after it.
//! - `SNAPSHOT`: index and term of an installed snapshot: every entry before goes, the log restarts after it.
//!
//! Each new segment starts with the current hard state and compaction point, so the newest of both is
//! always in a segment that is kept. Replaying the records in order at open rebuilds the log; an index of
//! where each record lies serves reads of entries older than the in-memory tail (see [`TAIL_ENTRIES`]).
//!
//! # Durability
//! [`RaftStorage::flush`] (the Ready loop's fsync point) syncs the WAL only. The state machine in sled is made
//! durable by [`RaftStorage::sync_state`], which the log compaction and the snapshot reset call first: the log
//! is only ever cut below a point sled has durably applied, so after a crash the log replays whatever sled
//! lost. A data dir from before the WAL (the log in sled's "raft" tree, as records `b` + index or as entries
//! `e` + index, with `hs` and `ci`) is converted at open: the WAL is written to `wal.tmp/`, synced and renamed
//! into place, and only then are the old keys removed.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::log_migration::{convert_sled_log, remove_sled_log};
use super::wal::{self, Wal};
use crate::error::{Error, Result};
use crate::live_db::{Generation, TreeRef};

pub(super) const KIND_ENTRIES: u8 = 1;
pub(super) const KIND_HARD_STATE: u8 = 2;
pub(super) const KIND_COMPACT: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;

/// Keys of the sled tree "raft": the configuration, and (before the WAL) the hard state, compaction point
/// and log.
pub(super) const HARD_STATE: &[u8] = b"hs";
const CONF_STATE: &[u8] = b"cs";
pub(super) const COMPACTED: &[u8] = b"ci";

/// The newest entries kept in memory (a write-through copy of the log's tail), at most this many...
const TAIL_ENTRIES: usize = 8192;
/// ... and at most this many bytes of entry data.
const TAIL_BYTES: usize = 32 << 20;

/// Entries per record at most, and bytes per record at most (a record holds at least one entry).
const RECORD_ENTRIES: usize = 1024;
const RECORD_BYTES: usize = 4 << 20;

/// Encodes consecutive entries as records: (first index, entry count, record bytes).
pub(super) fn encode_records(entries: &[Entry]) -> Result<Vec<(u64, u64, Vec<u8>)>> {
    let mut out: Vec<(u64, u64, Vec<u8>)> = Vec::new();
    for e in entries {
        let bytes = e.write_to_bytes().map_err(|e| Error::Storage(e.to_string()))?;
        let len = u32::try_from(bytes.len()).map_err(|_| Error::Storage("raft: entry too large".into()))?;
        match out.last_mut() {
            Some((_, count, rec)) if (*count as usize) < RECORD_ENTRIES && rec.len() + bytes.len() <= RECORD_BYTES => {
                rec.extend_from_slice(&len.to_be_bytes());
                rec.extend_from_slice(&bytes);
                *count += 1;
            }
            _ => {
                let mut rec = Vec::with_capacity(4 + bytes.len());
                rec.extend_from_slice(&len.to_be_bytes());
                rec.extend_from_slice(&bytes);
                out.push((e.index, 1, rec));
            }
        }
    }
    Ok(out)
}

/// Decodes a record of consecutive entries (starting at `first` when given), checking that indexes follow on.
pub(super) fn decode_record(first: Option<u64>, mut rec: &[u8]) -> Result<Vec<Entry>> {
    let bad = || Error::Storage(format!("raft: corrupt log record at {first:?}"));
    let mut out: Vec<Entry> = Vec::new();
    while !rec.is_empty() {
        let len = u32::from_be_bytes(rec.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(bad)?) as usize;
        let bytes = rec.get(4..4 + len).ok_or_else(bad)?;
        let e = Entry::parse_from_bytes(bytes).map_err(|_| bad())?;
        let want = match out.first() {
            Some(f) => Some(f.index + out.len() as u64),
            None => first,
        };
        if want.is_some_and(|w| e.index != w) {
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

pub(super) fn point_bytes(index: u64, term: u64) -> Vec<u8> {
    let mut b = index.to_be_bytes().to_vec();
    b.extend_from_slice(&term.to_be_bytes());
    b
}

pub(super) fn parse_point(b: &[u8]) -> Result<(u64, u64)> {
    match (b.get(..8).map(<[u8; 8]>::try_from), b.get(8..).map(<[u8; 8]>::try_from)) {
        (Some(Ok(i)), Some(Ok(t))) if b.len() == 16 => Ok((u64::from_be_bytes(i), u64::from_be_bytes(t))),
        _ => Err(Error::Storage("raft: corrupt log point".into())),
    }
}

pub(super) fn parse_hard_state(b: &[u8]) -> Result<HardState> {
    HardState::parse_from_bytes(b).map_err(|e| Error::Storage(e.to_string()))
}

fn storage_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

/// Where one ENTRIES record lies in the WAL, and how many of its entries are still in the log.
#[derive(Clone, Copy)]
struct RecordLoc {
    seq: u64,
    offset: u64,
    len: usize,
    count: u64,
}

/// Forgets the log from `first` on (a conflicting suffix): records starting there or later go, the one
/// holding `first - 1` keeps only what precedes `first`.
fn truncate_records(records: &mut BTreeMap<u64, RecordLoc>, last_index: &mut u64, first: u64) {
    if first > *last_index {
        return;
    }
    let _ = records.split_off(&first);
    if let Some((&start, loc)) = records.iter_mut().next_back() {
        loc.count = loc.count.min(first - start);
    }
    *last_index = first - 1;
}

/// Forgets records all of whose entries are at or below `index`.
fn drop_records_through(records: &mut BTreeMap<u64, RecordLoc>, index: u64) {
    while let Some((&start, loc)) = records.iter().next() {
        if start + loc.count - 1 > index {
            break;
        }
        records.remove(&start);
    }
}

/// First index and number of entries of an ENTRIES record, from its length prefixes and its first entry
/// only (replay at open does not decode every entry; reads check the indexes when they decode).
fn scan_record(mut rec: &[u8]) -> Result<(u64, u64)> {
    let bad = || Error::Storage("raft: corrupt log record".into());
    let mut first = None;
    let mut count = 0u64;
    while !rec.is_empty() {
        let len = u32::from_be_bytes(rec.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(bad)?) as usize;
        let bytes = rec.get(4..4 + len).ok_or_else(bad)?;
        if first.is_none() {
            first = Some(Entry::parse_from_bytes(bytes).map_err(|_| bad())?.index);
        }
        count += 1;
        rec = &rec[4 + len..];
    }
    Ok((first.ok_or_else(bad)?, count))
}

/// The log as the WAL's records rebuild it at open.
#[derive(Default)]
struct Replayed {
    records: BTreeMap<u64, RecordLoc>,
    hard_state: HardState,
    compacted: (u64, u64),
    last_index: u64,
}

impl Replayed {
    /// Applies one record; returns the highest raft index it mentions.
    fn replay(&mut self, r: wal::Record<'_>) -> Result<u64> {
        match r.kind {
            KIND_ENTRIES => {
                let (first, count) = scan_record(r.payload)?;
                let last = first + count - 1;
                // The first entries found may start above the log's beginning: the segments before were
                // removed by a compaction, whose record comes later (checked once all are read).
                if first > self.last_index + 1 && !self.records.is_empty() {
                    return Err(Error::Storage(format!(
                        "raft: the WAL jumps from index {} to {first} (segment {})",
                        self.last_index, r.seq
                    )));
                }
                truncate_records(&mut self.records, &mut self.last_index, first);
                self.records.insert(first, RecordLoc { seq: r.seq, offset: r.offset, len: r.payload.len(), count });
                self.last_index = last;
                Ok(last)
            }
            KIND_HARD_STATE => {
                self.hard_state = parse_hard_state(r.payload)?;
                Ok(0)
            }
            KIND_COMPACT => {
                let (index, term) = parse_point(r.payload)?;
                if index > self.compacted.0 {
                    self.compacted = (index, term);
                    self.last_index = self.last_index.max(index);
                }
                Ok(index)
            }
            KIND_SNAPSHOT => {
                let (index, term) = parse_point(r.payload)?;
                self.records.clear();
                self.compacted = (index, term);
                self.last_index = index;
                Ok(index)
            }
            other => Err(Error::Storage(format!("raft: unknown WAL record kind {other}"))),
        }
    }
}

/// The raft log and raft metadata of one member.
pub struct RaftStorage {
    /// The database whose "raft" tree holds the configuration, synced by [`RaftStorage::sync_state`];
    /// replaced by [`RaftStorage::switch_to`].
    gen: Arc<Generation>,
    tree: TreeRef,
    wal: Wal,
    /// ENTRIES records by first index, for entries older than the tail.
    records: BTreeMap<u64, RecordLoc>,
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry that was compacted away (0, 0 for a fresh log).
    compacted: (u64, u64),
    last_index: u64,
    /// Applied index and its term, kept current by the apply layer; snapshots are taken at this point.
    applied: (u64, u64),
    /// The newest entries, contiguous, ending at `last_index` when not empty (`Entry` data is a refcounted
    /// `Bytes`, so a copy is cheap). Everything here is in the WAL too.
    tail: VecDeque<Entry>,
    /// Data bytes held by `tail`.
    tail_bytes: usize,
}

fn entry_bytes(e: &Entry) -> usize {
    e.data.len() + e.context.len() + 32
}

impl RaftStorage {
    /// Opens (or creates) the log in `wal_dir` beside `db` (a database this layer does not manage: tools,
    /// tests).
    pub fn open(db: &sled::Db, wal_dir: &Path) -> Result<RaftStorage> {
        RaftStorage::open_in(&Generation::detached(db.clone()), wal_dir)
    }

    /// Opens (or creates) the member's log in `wal_dir`, converting a log kept in sled by older versions.
    pub fn open_in(gen: &Arc<Generation>, wal_dir: &Path) -> Result<RaftStorage> {
        RaftStorage::open_sized(gen, wal_dir, wal::SEGMENT_BYTES)
    }

    fn open_sized(gen: &Arc<Generation>, wal_dir: &Path, segment_bytes: u64) -> Result<RaftStorage> {
        let tree = TreeRef::open(gen, "raft")?;
        let conf_state = match tree.get(CONF_STATE)? {
            Some(b) => ConfState::parse_from_bytes(&b).map_err(|e| Error::Storage(e.to_string()))?,
            None => ConfState::default(),
        };
        if !wal_dir.exists() {
            convert_sled_log(&tree, wal_dir)?;
        }
        let mut log = Replayed::default();
        let wal = Wal::open(wal_dir, segment_bytes, &mut |r| log.replay(r))?;
        remove_sled_log(gen, &tree)?;
        drop_records_through(&mut log.records, log.compacted.0);
        if let Some(&start) = log.records.keys().next() {
            if start > log.compacted.0 + 1 {
                return Err(Error::Storage(format!(
                    "raft: the WAL starts at index {start} but its compaction point is {}",
                    log.compacted.0
                )));
            }
        }
        let mut s = RaftStorage {
            gen: gen.clone(),
            tree,
            wal,
            records: log.records,
            hard_state: log.hard_state,
            conf_state,
            compacted: log.compacted,
            last_index: log.last_index,
            applied: (0, 0),
            tail: VecDeque::new(),
            tail_bytes: 0,
        };
        // The tail starts as the last record's entries (raft asks for the last term at once); older ones
        // are read from the WAL when asked for.
        if let Some((&start, loc)) = s.records.iter().next_back() {
            let mut newest = s.read_record(start, loc)?;
            newest.retain(|e| e.index > s.compacted.0);
            s.cache_tail(&newest);
        }
        Ok(s)
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

    /// Writes one record, first starting a new segment (headed by the hard state and compaction point) when
    /// it would not fit.
    fn write(&mut self, kind: u8, payload: &[u8], index: u64) -> Result<(u64, u64)> {
        if self.wal.needs_cut(payload.len()) {
            self.wal.cut()?;
            let hs = self.hard_state.write_to_bytes().map_err(|e| Error::Storage(e.to_string()))?;
            self.wal.append(KIND_HARD_STATE, &hs, 0)?;
            self.wal.append(KIND_COMPACT, &point_bytes(self.compacted.0, self.compacted.1), self.compacted.0)?;
        }
        self.wal.append(kind, payload, index)
    }

    fn truncate_from(&mut self, first: u64) {
        truncate_records(&mut self.records, &mut self.last_index, first);
    }

    fn drop_records_to(&mut self, index: u64) {
        drop_records_through(&mut self.records, index);
    }

    /// Appends entries, first truncating any conflicting suffix (entries at or after the first new index).
    /// Written, not synced: [`RaftStorage::flush`] is the fsync point.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first().map(|e| e.index) else { return Ok(()) };
        if first > self.last_index + 1 {
            return Err(Error::Storage(format!("raft: append at {first} after last index {}", self.last_index)));
        }
        self.truncate_from(first);
        for (at, count, rec) in encode_records(entries)? {
            let (seq, offset) = self.write(KIND_ENTRIES, &rec, at + count - 1)?;
            self.records.insert(at, RecordLoc { seq, offset, len: rec.len(), count });
        }
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

    /// The record holding entry `idx` (its first index and entries), read from the WAL.
    fn record_at(&self, idx: u64) -> Result<Option<(u64, Vec<Entry>)>> {
        let Some((&start, loc)) = self.records.range(..=idx).next_back() else { return Ok(None) };
        if start + loc.count <= idx {
            return Ok(None);
        }
        Ok(Some((start, self.read_record(start, loc)?)))
    }

    /// The entries of the record at `start` that are still in the log.
    fn read_record(&self, start: u64, loc: &RecordLoc) -> Result<Vec<Entry>> {
        let mut held = decode_record(Some(start), &self.wal.read(loc.seq, loc.offset, loc.len)?)?;
        held.truncate(loc.count as usize);
        Ok(held)
    }

    /// The cached entry at `idx`, if the tail holds it.
    fn cached(&self, idx: u64) -> Option<&Entry> {
        let first = self.tail.front()?.index;
        self.tail.get(usize::try_from(idx.checked_sub(first)?).ok()?)
    }

    /// Saves the hard state (term, vote, commit): written now, durable at the next [`RaftStorage::flush`].
    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<()> {
        if *hs == self.hard_state {
            return Ok(());
        }
        let bytes = hs.write_to_bytes().map_err(|e| Error::Storage(e.to_string()))?;
        self.write(KIND_HARD_STATE, &bytes, 0)?;
        self.hard_state = hs.clone();
        Ok(())
    }

    /// Saves the configuration (voters, learners) after a conf change is applied: into sled, beside the
    /// applied index it goes with.
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

    /// Removes log entries up to and including `index` (which must be applied, and durable in sled: call
    /// [`RaftStorage::sync_state`] first). Deletes the WAL segments that hold nothing newer.
    pub fn compact(&mut self, index: u64) -> Result<()> {
        if index <= self.compacted.0 {
            return Ok(());
        }
        let index = index.min(self.last_index);
        let term = raft::Storage::term(self, index)?;
        self.write(KIND_COMPACT, &point_bytes(index, term), index)?;
        self.wal.sync()?;
        self.compacted = (index, term);
        self.drop_records_to(index);
        self.drop_tail_to(index);
        self.wal.remove_through(index)?;
        Ok(())
    }

    /// Replaces the log by a snapshot's point (whose data is already in sled): sled is synced, then every
    /// entry goes and the log restarts after `meta.index`.
    pub fn apply_snapshot_meta(&mut self, meta: &SnapshotMetadata) -> Result<()> {
        let cs = meta.get_conf_state().write_to_bytes().map_err(|e| Error::Storage(e.to_string()))?;
        self.tree.insert(CONF_STATE, cs)?;
        self.sync_state()?;
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        self.write(KIND_SNAPSHOT, &point_bytes(meta.index, meta.term), meta.index)?;
        self.write(KIND_HARD_STATE, &hs.write_to_bytes().map_err(|e| Error::Storage(e.to_string()))?, 0)?;
        self.wal.sync()?;
        self.wal.remove_all_but_current()?;
        self.records.clear();
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
    /// state stays valid: the copy holds exactly what the old database held, and the WAL is not in it.
    /// `raft` is the raft tree of `gen`.
    pub fn switch_to(&mut self, gen: &Arc<Generation>, raft: TreeRef) {
        self.tree = raft;
        self.gen = gen.clone();
    }

    /// Number of entries in the log.
    pub fn log_len(&self) -> u64 {
        self.last_index - self.compacted.0
    }

    /// The fsync point: makes every log entry and hard state written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.wal.sync()
    }

    /// Makes the state machine (sled) durable up to what has been applied: before the log is cut.
    pub fn sync_state(&self) -> Result<()> {
        self.gen.sync()
    }

    /// The WAL's segment numbers (tests, tools).
    pub fn wal_segments(&self) -> Vec<u64> {
        self.wal.segment_seqs()
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
        let from = self.records.range(..=low).next_back().map_or(low, |(&start, _)| start);
        'records: for (&start, loc) in self.records.range(from..high) {
            for e in self.read_record(start, loc).map_err(storage_err)? {
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
#[path = "storage_tests.rs"]
mod tests;
