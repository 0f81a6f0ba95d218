//! Moving a raft log kept in sled by versions before the WAL (the "raft" tree: entries as `e` + index, or
//! records as `b` + index, with `hs` and `ci`) into the WAL, once, when the member opens its data dir.

use std::collections::BTreeMap;
use std::path::Path;

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};

use super::storage::{
    decode_record, encode_records, parse_hard_state, parse_point, point_bytes, COMPACTED, HARD_STATE, KIND_COMPACT,
    KIND_ENTRIES, KIND_HARD_STATE,
};
use super::wal::{self, Wal};
use crate::error::{Error, Result};
use crate::live_db::Generation;

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
pub(super) fn convert_sled_log(tree: &sled::Tree, wal_dir: &Path) -> Result<bool> {
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
        crate::db_dir::sync_dir(parent)?;
    }
    tracing::info!(entries = entries.len(), wal = %wal_dir.display(), "raft log moved from sled to the WAL");
    Ok(true)
}

/// Removes the pre-WAL log keys from sled's "raft" tree (once the WAL holds them).
pub(super) fn remove_sled_log(gen: &Generation, tree: &sled::Tree) -> Result<()> {
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
