//! Exporting the state machine to a snapshot file and installing one.
//!
//! Export runs where nothing is being applied (the raft thread itself, or a store nobody writes to), so
//! the copy is one point in time. Install is crash-safe through a marker in the member's "local" tree:
//! set before the state tree is cleared, removed after the last record is in and flushed; a member that
//! finds the marker at start-up installs the same file again.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::SeqCst;

use crate::error::{Error, Result};
use crate::mvcc::Store;
use crate::snapshot::{SnapshotReader, SnapshotWriter};

/// Records per sled batch while installing.
const BATCH: usize = 10_000;
/// Key of the install marker in the "local" tree.
const INSTALLING: &str = "installing_snapshot";

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{}: {e}", path.display()))
}

/// Writes the whole state tree at raft `index`/`term` to `path` (atomically: temp file, fsync, rename).
/// Returns the file's size.
pub fn export(store: &Store, index: u64, term: u64, path: &Path) -> Result<u64> {
    let tmp = path.with_extension("part");
    let file = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    let mut w = SnapshotWriter::new(BufWriter::with_capacity(1 << 20, file), index, term)?;
    for kv in store.inner.tree.iter() {
        let (k, v) = kv?;
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
    local.insert(INSTALLING, path.to_string_lossy().as_bytes())?;
    local.flush()?;
    let tree = &store.inner.tree;
    tree.clear()?;
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut r = SnapshotReader::new(BufReader::with_capacity(1 << 20, f))?;
    let mut batch = sled::Batch::default();
    let mut n = 0;
    while let Some((k, v)) = r.next_record()? {
        batch.insert(k, v);
        n += 1;
        if n % BATCH == 0 {
            tree.apply_batch(std::mem::take(&mut batch))?;
        }
    }
    tree.apply_batch(batch)?;
    r.finish(true)?;
    tree.flush()?;
    reload(store)?;
    local.remove(INSTALLING)?;
    local.flush()?;
    tracing::info!(path = %path.display(), records = n, "installed snapshot");
    Ok(())
}

/// An install that was interrupted by a crash, if any.
pub fn interrupted_install(local: &sled::Tree) -> Result<Option<PathBuf>> {
    Ok(local.get(INSTALLING)?.map(|v| PathBuf::from(String::from_utf8_lossy(&v).into_owned())))
}

/// Re-reads the store's meta into its in-memory counters after the tree was replaced underneath it.
fn reload(store: &Store) -> Result<()> {
    let fresh = Store::open(store.inner.tree.clone())?;
    let (a, b) = (&store.inner, &fresh.inner);
    a.current_rev.store(b.current_rev.load(SeqCst), SeqCst);
    a.compact_rev.store(b.compact_rev.load(SeqCst), SeqCst);
    a.compact_done.store(b.compact_done.load(SeqCst), SeqCst);
    a.applied_index.store(b.applied_index.load(SeqCst), SeqCst);
    a.key_count.store(b.key_count.load(SeqCst), SeqCst);
    a.size_written.store(b.size_written.load(SeqCst), SeqCst);
    a.size_freed.store(b.size_freed.load(SeqCst), SeqCst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftcd_proto::etcdserverpb::{PutRequest, RangeRequest};

    #[test]
    fn export_install_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let src = Store::open(db.open_tree("a").unwrap()).unwrap();
        let ok = |_: i64| true;
        for i in 0..50u64 {
            let mut t = src.begin(i + 1, &ok);
            t.put(&PutRequest { key: format!("k{i}").into(), value: b"v".to_vec(), ..Default::default() }).unwrap();
            t.commit().unwrap();
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
    }

    #[test]
    fn corrupt_file_is_refused_before_touching_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let src = Store::open(db.open_tree("a").unwrap()).unwrap();
        let ok = |_: i64| true;
        let mut t = src.begin(1, &ok);
        t.put(&PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() }).unwrap();
        t.commit().unwrap();
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
