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

use super::wal::{self, Wal};
use crate::error::{Error, Result};
use crate::live_db::{Generation, TreeRef};

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_COMPACT: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;

/// Keys of the sled tree "raft": the configuration, and (before the WAL) the hard state, compaction point
/// and log.
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

/// Encodes consecutive entries as records: (first index, entry count, record bytes).
fn encode_records(entries: &[Entry]) -> Result<Vec<(u64, u64, Vec<u8>)>> {
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
fn decode_record(first: Option<u64>, mut rec: &[u8]) -> Result<Vec<Entry>> {
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

fn point_bytes(index: u64, term: u64) -> Vec<u8> {
    let mut b = index.to_be_bytes().to_vec();
    b.extend_from_slice(&term.to_be_bytes());
    b
}

fn parse_point(b: &[u8]) -> Result<(u64, u64)> {
    match (b.get(..8).map(<[u8; 8]>::try_from), b.get(8..).map(<[u8; 8]>::try_from)) {
        (Some(Ok(i)), Some(Ok(t))) if b.len() == 16 => Ok((u64::from_be_bytes(i), u64::from_be_bytes(t))),
        _ => Err(Error::Storage("raft: corrupt log point".into())),
    }
}

fn parse_hard_state(b: &[u8]) -> Result<HardState> {
    HardState::parse_from_bytes(b).map_err(|e| Error::Storage(e.to_string()))
}

/// The log kept in sled's "raft" tree before the WAL.
struct SledLog {
    hard_state: HardState,
    compacted: (u64, u64),
    entries: Vec<Entry>,
}

/// The log kept in sled's "raft" tree before the WAL, if there is one.
fn sled_log(tree: &sled::Tree) -> Result<Option<SledLog>> {
    let hs = tree.get(HARD_STATE)?;
    let ci = tree.get(COMPACTED)?;
    let has_log = tree.scan_prefix(b"b").next().is_some() || tree.scan_prefix(b"e").next().is_some();
    if hs.is_none() && ci.is_none() && !has_log {
        return Ok(None);
    }
    let hs = hs.map(|b| parse_hard_state(&b)).transpose()?.unwrap_or_default();
    let compacted = ci.map(|b| parse_point(&b)).transpose()?.unwrap_or((0, 0));
    let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
    for kv in tree.scan_prefix(b"b") {
        for e in decode_record(None, &kv?.1)? {
            entries.insert(e.index, e);
        }
    }
    for kv in tree.scan_prefix(b"e") {
        let e = Entry::parse_from_bytes(&kv?.1).map_err(|e| Error::Storage(e.to_string()))?;
        entries.insert(e.index, e);
    }
    let entries: Vec<Entry> = entries.into_values().filter(|e| e.index > compacted.0).collect();
    if entries.windows(2).any(|w| w[1].index != w[0].index + 1) {
        return Err(Error::Storage("raft: the log kept in sled has a gap".into()));
    }
    Ok(Some(SledLog { hard_state: hs, compacted, entries }))
}

/// Writes the log kept in sled (if any) as a new WAL in `wal_dir`, atomically: built in `<wal_dir>.tmp`,
/// synced, renamed. Returns whether there was one.
fn convert_sled_log(tree: &sled::Tree, wal_dir: &Path) -> Result<bool> {
    let Some(SledLog { hard_state: hs, compacted, entries }) = sled_log(tree)? else { return Ok(false) };
    let tmp = wal_dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::Storage(format!("{}: {e}", tmp.display())))?;
    }
    let mut w = Wal::open(&tmp, wal::SEGMENT_BYTES, &mut |_| Ok(0))?;
    w.append(KIND_HARD_STATE, &hs.write_to_bytes().map_err(|e| Error::Storage(e.to_string()))?, 0)?;
    w.append(KIND_COMPACT, &point_bytes(compacted.0, compacted.1), compacted.0)?;
    for (_, _, rec) in encode_records(&entries)? {
        w.append(KIND_ENTRIES, &rec, 0)?;
    }
    w.sync()?;
    drop(w);
    std::fs::rename(&tmp, wal_dir).map_err(|e| Error::Storage(format!("{}: {e}", wal_dir.display())))?;
    if let Some(parent) = wal_dir.parent() {
        wal::sync_dir(parent)?;
    }
    tracing::info!(entries = entries.len(), wal = %wal_dir.display(), "raft log moved from sled to the WAL");
    Ok(true)
}

/// Removes the pre-WAL log keys from sled's "raft" tree (once the WAL holds them).
fn remove_sled_log(gen: &Generation, tree: &sled::Tree) -> Result<()> {
    let mut batch = sled::Batch::default();
    let mut any = false;
    for kv in tree.scan_prefix(b"b").chain(tree.scan_prefix(b"e")) {
        batch.remove(kv?.0);
        any = true;
    }
    for k in [HARD_STATE, COMPACTED] {
        if tree.contains_key(k)? {
            batch.remove(k);
            any = true;
        }
    }
    if any {
        tree.apply_batch(batch)?;
        gen.sync()?;
    }
    Ok(())
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
            let mut s = RaftStorage::open(&db, &dir.path().join("wal")).unwrap();
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
        let s = RaftStorage::open(&db, &dir.path().join("wal")).unwrap();
        assert_eq!(s.last_index().unwrap(), 2);
        assert_eq!(s.hard_state().commit, 2);
        assert_eq!(s.entries(1, 3, None, GetEntriesContext::empty(false)).unwrap().len(), 2);
    }

    #[test]
    fn compaction_moves_first_index_and_keeps_term() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let wal = tempfile::tempdir().unwrap();
        let mut s = RaftStorage::open(&db, wal.path()).unwrap();
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

    /// The in-memory tail answers exactly as the WAL does: after conflicting appends, a compaction, and for
    /// indexes older than the tail (served from sled).
    #[test]
    fn tail_cache_matches_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let wal = dir.path().join("wal");
        let mut s = RaftStorage::open(&db, &wal).unwrap();
        let data = |i: u64| bytes::Bytes::from(vec![i as u8; (i % 7) as usize]);
        let mk = |i: u64, t: u64| Entry { index: i, term: t, data: data(i), ..Default::default() };
        s.append(&(1..=TAIL_ENTRIES as u64 + 100).map(|i| mk(i, 1)).collect::<Vec<_>>()).unwrap();
        s.append(&(50..=60).map(|i| mk(i, 2)).collect::<Vec<_>>()).unwrap(); // truncates 50.., tail restarts
        s.append(&(61..=70).map(|i| mk(i, 3)).collect::<Vec<_>>()).unwrap();
        s.append(&[mk(65, 4)]).unwrap(); // conflict inside the tail
        s.compact(10).unwrap();
        let fresh = RaftStorage::open(&db, &wal).unwrap();
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

    /// A log kept in sled by older versions — entries as `e` keys (the first layout) or as `b` records,
    /// with `hs` and `ci` — moves to the WAL on open, reads the same, and leaves no log keys in sled; appends,
    /// truncation and compaction then work on the WAL.
    #[test]
    fn a_log_kept_in_sled_moves_to_the_wal() {
        let mk = |i: u64, t: u64| Entry { index: i, term: t, data: vec![i as u8; 3].into(), ..Default::default() };
        for records in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let wal = dir.path().join("wal");
            {
                let db = sled::open(dir.path()).unwrap();
                let tree = db.open_tree("raft").unwrap();
                if records {
                    let es: Vec<Entry> = (6..=40u64).map(|i| mk(i, 1 + i / 20)).collect();
                    for (at, _, rec) in
                        encode_records(&es[..20]).unwrap().into_iter().chain(encode_records(&es[20..]).unwrap())
                    {
                        let mut k = vec![b'b'];
                        k.extend_from_slice(&at.to_be_bytes());
                        tree.insert(k, rec).unwrap();
                    }
                } else {
                    for i in 6..=40u64 {
                        let mut k = vec![b'e'];
                        k.extend_from_slice(&i.to_be_bytes());
                        tree.insert(k, mk(i, 1 + i / 20).write_to_bytes().unwrap()).unwrap();
                    }
                }
                tree.insert(COMPACTED, point_bytes(5, 1)).unwrap();
                let hs = HardState { term: 3, vote: 2, commit: 33, ..Default::default() };
                tree.insert(HARD_STATE, hs.write_to_bytes().unwrap()).unwrap();
                db.flush().unwrap();
            }
            let db = sled::open(dir.path()).unwrap();
            let mut s = RaftStorage::open(&db, &wal).unwrap();
            for prefix in [&b"e"[..], b"b", b"hs", b"ci"] {
                assert_eq!(s.tree.scan_prefix(prefix).count(), 0, "{prefix:?} left in sled (records {records})");
            }
            assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (6, 40));
            assert_eq!((s.hard_state().term, s.hard_state().vote, s.hard_state().commit), (3, 2, 33));
            let ctx = || GetEntriesContext::empty(false);
            let want: Vec<Entry> = (6..=40).map(|i| mk(i, 1 + i / 20)).collect();
            assert_eq!(s.entries(6, 41, None, ctx()).unwrap(), want);
            assert_eq!(s.term(5).unwrap(), 1);
            assert_eq!(s.term(40).unwrap(), 3);
            s.append(&[mk(30, 7), mk(31, 7)]).unwrap();
            s.compact(29).unwrap();
            drop(s);
            let s = RaftStorage::open(&db, &wal).unwrap();
            assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (30, 31));
            assert_eq!(s.entries(30, 32, None, ctx()).unwrap(), vec![mk(30, 7), mk(31, 7)]);
            assert_eq!(s.term(29).unwrap(), 2);
            assert_eq!(s.hard_state().commit, 33);
        }
    }

    /// A crash after the converted WAL was renamed into place but before the sled keys went: the WAL is the
    /// log, the stale keys are removed.
    #[test]
    fn stale_sled_log_keys_next_to_a_wal_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        let db = sled::open(dir.path()).unwrap();
        {
            let mut s = RaftStorage::open(&db, &wal).unwrap();
            s.append(&[entry(1, 1), entry(2, 1)]).unwrap();
            s.flush().unwrap();
        }
        let tree = db.open_tree("raft").unwrap();
        tree.insert(b"e\0\0\0\0\0\0\0\x01", entry(1, 9).write_to_bytes().unwrap()).unwrap();
        tree.insert(HARD_STATE, HardState { term: 9, ..Default::default() }.write_to_bytes().unwrap()).unwrap();
        let s = RaftStorage::open(&db, &wal).unwrap();
        assert_eq!(s.term(1).unwrap(), 1);
        assert_eq!(s.hard_state().term, 0);
        assert_eq!(tree.len(), 0);
    }

    /// Small segments: appends cut new ones, compaction deletes the ones it no longer needs, a snapshot reset
    /// keeps only the current one, and every reopen reads the same log and hard state.
    #[test]
    fn segments_are_cut_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        let db = sled::open(dir.path()).unwrap();
        let gen = Generation::detached(db.clone());
        let mut s = RaftStorage::open_sized(&gen, &wal, 2048).unwrap();
        let mk = |i: u64| Entry { index: i, term: 2, data: vec![i as u8; 100].into(), ..Default::default() };
        for i in 1..=200u64 {
            s.append(&[mk(i)]).unwrap();
            s.set_hard_state(&HardState { term: 2, vote: 1, commit: i, ..Default::default() }).unwrap();
        }
        s.flush().unwrap();
        let cut = s.wal_segments().len();
        assert!(cut > 5, "2 KiB segments must have been cut: {:?}", s.wal_segments());
        s.compact(150).unwrap();
        assert!(s.wal_segments().len() < cut, "compaction must delete segments: {:?}", s.wal_segments());
        let on_disk = std::fs::read_dir(&wal).unwrap().count();
        assert_eq!(on_disk, s.wal_segments().len());
        let reopened = RaftStorage::open_sized(&gen, &wal, 2048).unwrap();
        assert_eq!((reopened.first_index().unwrap(), reopened.last_index().unwrap()), (151, 200));
        assert_eq!(reopened.hard_state().commit, 200);
        let ctx = || GetEntriesContext::empty(false);
        assert_eq!(reopened.entries(151, 201, None, ctx()).unwrap(), (151..=200).map(mk).collect::<Vec<_>>());
        assert_eq!(reopened.term(150).unwrap(), 2);
        drop(reopened);
        let mut meta = SnapshotMetadata { index: 500, term: 4, ..Default::default() };
        meta.mut_conf_state().voters = vec![1, 2, 3];
        s.apply_snapshot_meta(&meta).unwrap();
        assert_eq!(s.wal_segments().len(), 1);
        s.append(&[Entry { index: 501, term: 4, ..Default::default() }]).unwrap();
        s.flush().unwrap();
        drop(s);
        let s = RaftStorage::open_sized(&gen, &wal, 2048).unwrap();
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (501, 501));
        assert_eq!(s.term(500).unwrap(), 4);
        assert_eq!((s.hard_state().term, s.hard_state().commit), (4, 500));
        assert_eq!(s.conf_state().voters, vec![1, 2, 3]);
    }

    /// Many small appends, conflicting rewrites in the middle of records and compactions at record
    /// boundaries and inside records agree with a model of the log, before and after a reopen.
    #[test]
    fn records_agree_with_a_model() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let wal = dir.path().join("wal");
        let mut s = RaftStorage::open_sized(&Generation::detached(db.clone()), &wal, 4096).unwrap();
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
            let fresh = RaftStorage::open_sized(&Generation::detached(db.clone()), &wal, 4096).unwrap();
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
