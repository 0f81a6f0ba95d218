//! Finding live values in the history: the newest record of each key at or below a revision is the key's
//! value there (a put) or its absence (a tombstone, or no record).
//!
//! Two ways to walk a range, with the same result on a quiet tree:
//! - [`scan_at`] streams the range's records forward and keeps the newest <= R of each key. Records come
//!   in (key, revision) order, so with short histories this is one pass; a key with more than
//!   [`LONG_HISTORY`] records is resolved with one reverse step instead, so a hot key's history is not
//!   walked. It is not atomic with respect to a compaction batch (which removes a key's older records and
//!   maybe its tombstone together): the caller guards it with the store's seqlock.
//! - [`scan_at_careful`] and [`scan_latest`] take each key in ONE reverse step, which a batch cannot tear.
//!   The apply thread uses them (its reads must be right the first time: they decide what is written).

use std::collections::BTreeMap;

use super::key_index::{self, after_prefix, newest_at, split_history_key, user_key, KeyRange, Kind};
use crate::error::Result;

/// Visitor over the live keys of a range: `(user key, encoded KeyValue) -> keep going?`.
pub(crate) type Visit<'v> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'v;

/// A write transaction's buffered tree writes: full tree key -> Some(value), or None for a removal.
pub(crate) type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Records of one key walked forward before [`scan_at`] resolves the key with a reverse step instead.
pub(crate) const LONG_HISTORY: usize = 8;

/// Calls `visit` for the newest record `rec` of a key if it is a put; true to keep going.
fn visit_record(prefix: &[u8], rec: &[u8], visit: &mut Visit<'_>) -> Result<bool> {
    match key_index::record_kind(rec)? {
        Kind::Put => visit(&user_key(prefix)?, &rec[1..]),
        Kind::Tombstone => Ok(true),
    }
}

/// A single-key read: visits the key's newest record `rec`, if there is one and it is a put.
fn visit_newest(prefix: &[u8], rec: Option<impl AsRef<[u8]>>, visit: &mut Visit<'_>) -> Result<()> {
    match rec {
        Some(rec) => visit_record(prefix, rec.as_ref(), visit).map(|_| ()),
        None => Ok(()),
    }
}

/// Visits the live keys of `range` as of revision `rev`, in key order, streaming (see the module
/// documentation for when the result can be trusted).
pub(crate) fn scan_at(tree: &sled::Tree, range: KeyRange<'_>, rev: i64, visit: &mut Visit<'_>) -> Result<()> {
    if let KeyRange::Single(key) = range {
        return scan_at_careful(tree, KeyRange::Single(key), rev, visit);
    }
    let Some((mut pos, hi)) = range.history_bounds() else {
        return Ok(());
    };
    // The key being walked: its history prefix, its newest record <= rev so far, records seen.
    let mut prefix: Vec<u8> = Vec::new();
    let mut newest: Option<sled::IVec> = None;
    let mut seen = 0usize;
    'restart: loop {
        for item in tree.range(pos.clone()..hi.clone()) {
            let (k, v) = item?;
            let (p, r) = split_history_key(&k)?;
            if p != &prefix[..] {
                if let Some(rec) = newest.take() {
                    if !visit_record(&prefix, &rec, visit)? {
                        return Ok(());
                    }
                }
                prefix.clear();
                prefix.extend_from_slice(p);
                seen = 0;
            }
            seen += 1;
            if r.main <= rev {
                newest = Some(v);
            }
            if seen > LONG_HISTORY {
                newest = newest_at(tree, &prefix, rev)?.map(|(_, rec)| rec);
                if let Some(rec) = newest.take() {
                    if !visit_record(&prefix, &rec, visit)? {
                        return Ok(());
                    }
                }
                pos = after_prefix(&prefix);
                // Whatever key comes next starts a new walk.
                prefix.clear();
                continue 'restart;
            }
        }
        break;
    }
    if let Some(rec) = newest {
        visit_record(&prefix, &rec, visit)?;
    }
    Ok(())
}

/// Visits the live keys of `range` as of revision `rev`, each key in one reverse step.
pub(crate) fn scan_at_careful(tree: &sled::Tree, range: KeyRange<'_>, rev: i64, visit: &mut Visit<'_>) -> Result<()> {
    if let KeyRange::Single(key) = range {
        let prefix = key_index::history_prefix(key);
        let rec = newest_at(tree, &prefix, rev)?.map(|(_, rec)| rec);
        return visit_newest(&prefix, rec, visit);
    }
    key_index::for_each_at(tree, range, rev, &mut |prefix, _, _, rec| visit_record(prefix, rec, visit))
}

/// The newest record of the key with history prefix `prefix`, counting a write transaction's buffered
/// records (all newer than the tree's), in one reverse step of either.
pub(crate) fn newest_record(tree: &sled::Tree, overlay: &Overlay, prefix: &[u8]) -> Result<Option<Vec<u8>>> {
    let buffered = overlay.range(prefix.to_vec()..after_prefix(prefix)).rev().find_map(|(_, v)| v.as_ref());
    if let Some(rec) = buffered {
        return Ok(Some(rec.clone()));
    }
    Ok(newest_at(tree, prefix, i64::MAX)?.map(|(_, rec)| rec.to_vec()))
}

/// Visits the live keys of `range` at the latest revision, the committed tree merged with a write
/// transaction's `overlay`, each key resolved in one reverse step.
pub(crate) fn scan_latest(
    tree: &sled::Tree,
    range: KeyRange<'_>,
    overlay: &Overlay,
    visit: &mut Visit<'_>,
) -> Result<()> {
    if let KeyRange::Single(key) = range {
        let prefix = key_index::history_prefix(key);
        return visit_newest(&prefix, newest_record(tree, overlay, &prefix)?, visit);
    }
    let Some((mut pos, hi)) = range.history_bounds() else {
        return Ok(());
    };
    loop {
        let in_tree = key_index::next_prefix(tree, &pos, &hi)?;
        let in_overlay = match overlay.range(pos.clone()..hi.clone()).next() {
            Some((k, _)) => Some(split_history_key(k)?.0.to_vec()),
            None => None,
        };
        let prefix = match (in_tree, in_overlay) {
            (None, None) => return Ok(()),
            (Some(p), None) | (None, Some(p)) => p,
            (Some(a), Some(b)) => a.min(b),
        };
        if let Some(rec) = newest_record(tree, overlay, &prefix)? {
            if !visit_record(&prefix, &rec, visit)? {
                return Ok(());
            }
        }
        pos = after_prefix(&prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::tests::{apply, del, new_store, put, put_op};
    use raftcd_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, TxnRequest};

    fn collect(f: impl FnOnce(&mut Visit<'_>) -> Result<()>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        f(&mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })
        .unwrap();
        out
    }

    /// Keys with histories shorter and longer than LONG_HISTORY, tombstones, a key deleted for good and
    /// escaped bytes: the streaming scan, the careful scan and a write transaction's view agree at every
    /// revision and on every range, and a visitor that stops early stops both at the same key.
    #[test]
    fn streaming_and_careful_scans_agree_at_every_revision() {
        let (s, _db) = new_store();
        for i in 0..(3 * LONG_HISTORY) {
            put(&s, "hot", &i.to_string());
            if i % 5 == 0 {
                put(&s, &format!("k{i:02}"), "x");
            }
            if i == LONG_HISTORY {
                del(&s, "hot", "");
                put(&s, "gone", "soon");
            }
            if i == LONG_HISTORY + 2 {
                del(&s, "gone", "");
            }
        }
        put(&s, "hot\0", "neighbour");
        put(&s, "ho", "below");
        let txn = TxnRequest { success: vec![put_op("hot", "in-txn")], ..Default::default() };
        apply(&s, |w| w.txn(&txn)).0.unwrap();
        let ranges: [(&[u8], &[u8]); 6] =
            [(b"\0", b"\0"), (b"hot", b""), (b"gone", b""), (b"h", b"i"), (b"hot", b"\0"), (b"k05", b"k15")];
        let tree = s.tree();
        let current = s.current_revision();
        for rev in 1..=current {
            for (key, end) in ranges {
                let range = KeyRange::new(key, end);
                let streamed = collect(|v| scan_at(&tree, range, rev, v));
                let careful = collect(|v| scan_at_careful(&tree, range, rev, v));
                assert_eq!(streamed, careful, "rev {rev} range {key:?}..{end:?}");
                if rev == current {
                    let in_txn = apply(&s, |w| Ok(collect(|v| scan_latest(&tree, range, &w.overlay, v)))).0.unwrap();
                    assert_eq!(in_txn, careful, "write txn view, range {key:?}..{end:?}");
                }
                // Stopping after the first key.
                let mut first = Vec::new();
                scan_at(&tree, range, rev, &mut |k, _| {
                    first.push(k.to_vec());
                    Ok(false)
                })
                .unwrap();
                assert_eq!(first, careful.iter().take(1).map(|(k, _)| k.clone()).collect::<Vec<_>>());
            }
        }
        let hot = collect(|v| scan_at(&tree, KeyRange::new(b"hot", b""), current, v));
        assert_eq!(hot.len(), 1);
        assert!(collect(|v| scan_at(&tree, KeyRange::new(b"gone", b""), current, v)).is_empty());
        // A write transaction sees its own buffered puts and deletes.
        apply(&s, |w| {
            w.delete_range(&DeleteRangeRequest { key: b"hot".to_vec(), ..Default::default() })?;
            w.put(&PutRequest { key: b"gone".to_vec(), value: b"back".to_vec(), ..Default::default() })?;
            let seen = collect(|v| scan_latest(&w.store.tree(), KeyRange::new(b"g", b"i"), &w.overlay, v));
            let keys: Vec<&[u8]> = seen.iter().map(|(k, _)| k.as_slice()).collect();
            assert_eq!(keys, [&b"gone"[..], b"ho", b"hot\0"]);
            Ok(())
        })
        .0
        .unwrap();
    }
}
