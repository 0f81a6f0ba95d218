//! Exporting the state machine to a snapshot file and installing one.
//!
//! Export runs where nothing is being applied (the raft thread itself, or a store nobody writes to), so
//! the copy is one point in time. Install is crash-safe through a marker in the member's "local" tree:
//! set before the state tree is cleared, removed after the last record is in and flushed; a member that
//! finds the marker at start-up installs the same file again.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::mvcc::{CommitState, Store, P_LIVE_LEGACY};
use crate::snapshot::{SnapshotReader, SnapshotWriter};

/// Records per sled batch while installing.
const BATCH: usize = 10_000;
/// Key of the install marker in the "local" tree.
const INSTALLING: &str = "installing_snapshot";

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{}: {e}", path.display()))
}

/// Writes the whole state at raft `index`/`term` to `path` (atomically: temp file, fsync, rename), for a
/// store nobody writes to. Returns the file's size.
pub fn export(store: &Store, index: u64, term: u64, path: &Path) -> Result<u64> {
    let cut = Cut { index, ..take_cut(store, term)? };
    export_cut(store, &cut, path)
}

/// A consistent cut of the state machine, taken on the apply thread between two entries (cheap: only the
/// small, mutable parts are copied). Everything revisioned is read later, at `revision`, without stopping
/// the apply path: history records at or below the cut never change, and compaction beyond it is held off
/// while the export runs.
pub struct Cut {
    /// Raft index and term of the last applied entry.
    pub index: u64,
    pub term: u64,
    /// Store revision at the cut.
    pub revision: i64,
    /// Every `m` (store meta) and `x` (leases, members, alarms) record at the cut.
    small: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Takes a cut. Call it where no entry is being applied (the raft thread, between Readies).
pub fn take_cut(store: &Store, term: u64) -> Result<Cut> {
    let mut small = Vec::new();
    for prefix in [b"m", b"x"] {
        for kv in store.inner.tree().scan_prefix(prefix) {
            let (k, v) = kv?;
            small.push((k.to_vec(), v.to_vec()));
        }
    }
    Ok(Cut { index: store.applied_index(), term, revision: store.current_revision(), small })
}

/// Writes the state as of `cut` to `path` (temp file, fsync, rename) while writes go on. The live-key (`k`)
/// and lease-attachment (`a`) spaces are rebuilt from the history at the cut's revision: files keep the
/// `k` space, which stores of format 3 no longer have, so that older members can install them.
pub fn export_cut(store: &Store, cut: &Cut, path: &Path) -> Result<u64> {
    use crate::mvcc::key_index::{decode_record, split_history_key, Kind};
    let _no_compaction_past_the_cut =
        store.inner.compact_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let tmp = path.with_extension("part");
    let file = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    let mut w = SnapshotWriter::new(BufWriter::with_capacity(1 << 20, file), cut.index, cut.term)?;
    for (k, v) in &cut.small {
        CommitState::to_file(k, v, &mut |k, v| w.record(k, v))?;
    }
    // History at or below the cut, and the newest version of each key at the cut.
    let mut latest: Option<(Vec<u8>, Kind, raftcd_proto::mvccpb::KeyValue)> = None;
    let flush_latest =
        |w: &mut SnapshotWriter<_>, latest: Option<(Vec<u8>, Kind, raftcd_proto::mvccpb::KeyValue)>| -> Result<()> {
            if let Some((_, Kind::Put, kv)) = latest {
                let bytes = prost::Message::encode_to_vec(&kv);
                w.record(&[&b"k"[..], &kv.key].concat(), &bytes)?;
                if kv.lease != 0 {
                    w.record(&[&b"a"[..], &kv.lease.to_be_bytes(), &kv.key].concat(), &[])?;
                }
            }
            Ok(())
        };
    for item in store.inner.tree().scan_prefix(b"h") {
        let (k, v) = item?;
        let (prefix, rev) = split_history_key(&k)?;
        if rev.main > cut.revision {
            continue;
        }
        w.record(&k, &v)?;
        let (kind, kv) = decode_record(&v)?;
        let same_key = latest.as_ref().is_some_and(|(p, _, _)| p[..] == prefix[..]);
        if !same_key {
            flush_latest(&mut w, latest.take())?;
        }
        latest = Some((prefix.to_vec(), kind, kv));
    }
    flush_latest(&mut w, latest.take())?;
    for item in store.inner.tree().scan_prefix(b"r") {
        let (k, v) = item?;
        if k.len() >= 9 && i64::from_be_bytes(k[1..9].try_into().unwrap_or_default()) > cut.revision {
            break;
        }
        w.record(&k, &v)?;
    }
    let (buf, len) = w.finish()?;
    let file = buf.into_inner().map_err(|e| io_err(&tmp, e.into_error()))?;
    file.sync_all().map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    Ok(len)
}

/// Checks a snapshot file's trailer without installing it; returns its (index, term).
pub fn verify(path: &Path) -> Result<(u64, u64)> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let r = SnapshotReader::new(BufReader::with_capacity(1 << 20, f))?;
    let at = (r.index, r.term);
    r.finish(false)?;
    Ok(at)
}

/// Replaces the state tree with the snapshot at `path` (verified first), then reloads the store's
/// in-memory view. `local` holds the crash-recovery marker.
pub fn install(store: &Store, local: &sled::Tree, path: &Path) -> Result<()> {
    verify(path)?;
    // Compaction works from the store's compaction state and the tree's contents, both replaced here, and
    // reads must not see them half replaced.
    let paused = store.pause_compaction();
    let blocked = store.block_reads();
    local.insert(INSTALLING, path.to_string_lossy().as_bytes())?;
    local.flush()?;
    let tree = &store.inner.tree();
    tree.clear()?;
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut r = SnapshotReader::new(BufReader::with_capacity(1 << 20, f))?;
    let mut batch = sled::Batch::default();
    let mut n = 0;
    while let Some((k, v)) = r.next_record()? {
        // Live copies for older members; this build reads live values from the history.
        if k.first() == Some(&P_LIVE_LEGACY) {
            continue;
        }
        batch.insert(k, v);
        n += 1;
        if n % BATCH == 0 {
            tree.apply_batch(std::mem::take(&mut batch))?;
            crate::failpoint!("snapshot-install-midway");
        }
    }
    tree.apply_batch(batch)?;
    crate::failpoint!("snapshot-install-midway");
    r.finish(true)?;
    tree.flush()?;
    store.reload(&paused)?;
    drop((blocked, paused));
    local.remove(INSTALLING)?;
    local.flush()?;
    tracing::info!(path = %path.display(), records = n, "installed snapshot");
    Ok(())
}

/// An install that was interrupted by a crash, if any.
pub fn interrupted_install(local: &sled::Tree) -> Result<Option<PathBuf>> {
    Ok(local.get(INSTALLING)?.map(|v| PathBuf::from(String::from_utf8_lossy(&v).into_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftcd_proto::etcdserverpb::{PutRequest, RangeRequest};

    /// Applies raft entry `index` to `s`: one put of `key` = `value`.
    fn put_at(s: &Store, index: u64, key: &str, value: &str) {
        let ok = |_: i64| true;
        let mut t = s.begin(index, &ok);
        t.put(&PutRequest { key: key.into(), value: value.into(), ..Default::default() }).unwrap();
        t.commit().unwrap();
    }

    #[test]
    fn export_install_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let src = Store::open(db.open_tree("a").unwrap()).unwrap();
        for i in 0..50u64 {
            put_at(&src, i + 1, &format!("k{i}"), "v");
        }
        let path = dir.path().join("s.snap");
        export(&src, 50, 3, &path).unwrap();
        assert_eq!(verify(&path).unwrap(), (50, 3));

        let dst = Store::open(db.open_tree("b").unwrap()).unwrap();
        let local = db.open_tree("local").unwrap();
        install(&dst, &local, &path).unwrap();
        assert_eq!(dst.current_revision(), src.current_revision());
        assert_eq!(dst.applied_index(), 50);
        let all = RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
        assert_eq!(dst.range(&all).unwrap().count, 50);
        assert!(interrupted_install(&local).unwrap().is_none());
        assert_eq!(dst.hash_kv(0).unwrap(), src.hash_kv(0).unwrap());
        assert_eq!((dst.key_count().unwrap(), dst.size_on_disk()), (50, src.size_on_disk()));
    }

    /// Snapshot files keep the layout every version reads (an older member may get one from an upgraded
    /// leader): the commit state as four keys, a live copy `k | key` of every live key, and no format mark.
    /// The member that installs one holds it in the current format.
    #[test]
    fn snapshot_files_keep_the_layout_older_members_read() {
        use crate::mvcc::{
            META_APPLIED_INDEX, META_FORMAT, META_KEY_COUNT, META_REV, META_SIZE_WRITTEN, META_STATE, STORE_FORMAT,
        };
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let src = Store::open(db.open_tree("a").unwrap()).unwrap();
        for i in 0..3u64 {
            put_at(&src, i + 1, &format!("k{i}"), "v");
        }
        let cut = take_cut(&src, 2).unwrap();
        for (name, write) in [("whole", true), ("cut", false)] {
            let path = dir.path().join(format!("{name}.snap"));
            if write {
                export(&src, 3, 2, &path).unwrap();
            } else {
                export_cut(&src, &cut, &path).unwrap();
            }
            let bytes = std::fs::read(&path).unwrap();
            let mut r = SnapshotReader::new(bytes.as_slice()).unwrap();
            let mut keys = Vec::new();
            while let Some((k, v)) = r.next_record().unwrap() {
                if k[..] == META_REV[..] {
                    assert_eq!(v[..], 4i64.to_be_bytes()[..]);
                }
                keys.push(k);
            }
            for k in [META_APPLIED_INDEX, META_KEY_COUNT, META_REV, META_SIZE_WRITTEN] {
                assert!(keys.iter().any(|x| x[..] == k[..]), "{name}: {} missing", String::from_utf8_lossy(k));
            }
            assert!(!keys.iter().any(|x| x[..] == META_STATE[..] || x[..] == META_FORMAT[..]), "{name}");
            let copies: Vec<_> = keys.iter().filter(|k| k.first() == Some(&P_LIVE_LEGACY)).collect();
            assert_eq!(copies, [b"kk0", b"kk1", b"kk2"], "{name}");

            let dst = Store::open(db.open_tree(format!("dst-{name}")).unwrap()).unwrap();
            install(&dst, &db.open_tree("local").unwrap(), &path).unwrap();
            assert_eq!((dst.applied_index(), dst.current_revision(), dst.key_count().unwrap()), (3, 4, 3));
            put_at(&dst, 4, "k9", "v");
            let tree = dst.tree();
            assert!(tree.contains_key(META_STATE).unwrap() && !tree.contains_key(META_REV).unwrap(), "{name}");
            assert_eq!(tree.get(META_FORMAT).unwrap().unwrap()[..], STORE_FORMAT.to_be_bytes()[..], "{name}");
            assert_eq!(tree.scan_prefix([P_LIVE_LEGACY]).count(), 0, "{name}");
        }
    }

    #[test]
    fn a_cut_exports_one_point_in_time_while_writes_continue() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let src = Store::open(db.open_tree("a").unwrap()).unwrap();
        for i in 1..=20u64 {
            put_at(&src, i, &format!("k{}", i % 7), &format!("v{i}"));
        }
        let cut = take_cut(&src, 2).unwrap();
        let expected = src.hash_kv(0).unwrap();
        let all = RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
        let expected_range = src.range(&all).unwrap().kvs;
        // Writes after the cut must not show up in the export.
        for i in 21..=40u64 {
            put_at(&src, i, &format!("k{}", i % 11), "later");
        }
        let path = dir.path().join("cut.snap");
        export_cut(&src, &cut, &path).unwrap();
        let dst = Store::open(db.open_tree("b").unwrap()).unwrap();
        install(&dst, &db.open_tree("local").unwrap(), &path).unwrap();
        assert_eq!(dst.applied_index(), 20);
        assert_eq!(dst.current_revision(), cut.revision);
        assert_eq!(dst.hash_kv(0).unwrap(), expected);
        assert_eq!(dst.range(&all).unwrap().kvs, expected_range);
    }

    /// A read served while a snapshot is being installed sees the whole old state or the whole new one,
    /// never a tree that is half cleared or half filled (a follower serves serializable reads meanwhile).
    #[test]
    fn reads_during_an_install_see_the_old_or_the_new_state() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let many = |s: &Store, n: usize, prefix: &str| {
            let ok = |_: i64| true;
            let mut t = s.begin(s.applied_index() + 1, &ok);
            for i in 0..n {
                t.put(&PutRequest { key: format!("{prefix}{i:06}").into(), value: vec![1; 64], ..Default::default() })
                    .unwrap();
            }
            t.commit().unwrap();
        };
        let src = Store::open(db.open_tree("a").unwrap()).unwrap();
        many(&src, BATCH + 500, "new");
        let path = dir.path().join("s.snap");
        export(&src, 1, 1, &path).unwrap();
        let dst = Store::open(db.open_tree("b").unwrap()).unwrap();
        many(&dst, 500, "old");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (reads_tx, reads_rx) = std::sync::mpsc::sync_channel(1);
        let reader = {
            let (dst, stop) = (dst.clone(), stop.clone());
            std::thread::spawn(move || {
                let all = RangeRequest { key: vec![0], range_end: vec![0], count_only: true, ..Default::default() };
                let mut counts = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    counts.push(dst.range(&all).unwrap().count);
                    let _ = reads_tx.try_send(());
                }
                counts
            })
        };
        reads_rx.recv().unwrap();
        install(&dst, &db.open_tree("local").unwrap(), &path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
        let counts = reader.join().unwrap();
        let torn: Vec<_> = counts.iter().filter(|&&c| c != 500 && c != (BATCH + 500) as i64).collect();
        assert!(
            torn.is_empty(),
            "{} of {} reads saw a partial tree: {:?}",
            torn.len(),
            counts.len(),
            &torn[..3.min(torn.len())]
        );
        assert_eq!(counts.last(), Some(&((BATCH + 500) as i64)));
    }

    #[test]
    fn corrupt_file_is_refused_before_touching_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let src = Store::open(db.open_tree("a").unwrap()).unwrap();
        put_at(&src, 1, "k", "v");
        let path = dir.path().join("s.snap");
        export(&src, 1, 1, &path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[30] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let local = db.open_tree("local").unwrap();
        assert!(install(&src, &local, &path).is_err());
        assert_eq!(src.applied_index(), 1, "store untouched");
        assert!(interrupted_install(&local).unwrap().is_none());
    }
}
