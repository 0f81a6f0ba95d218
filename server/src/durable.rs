//! Making a sled database durable on disk.
//!
//! Published sled 0.34 never fsyncs: its flush wrote log buffers with `sync_file_range(2)`, which flushes
//! neither the device's write cache nor the file's size, and blob files (values too large for a log segment,
//! above ~128 KiB, which includes big raft log records) were never synced. raftcd's vendored sled
//! (`vendor/sled/RAFTCD-PATCHES.md`) fdatasyncs its log before it counts anything stable and syncs each blob
//! when it writes it. Every place that promises sled's contents are durable — before the raft log is cut
//! (`RaftStorage::sync_state`), at shutdown, after a defragmentation or a restore — still calls
//! [`DbFiles::sync`]: sled's flush, then `fdatasync` of the database file and of every blob file not synced
//! before, and `fsync` of `blobs/` when it gained entries. That keeps the promise this module's own, not
//! resting on the patch, at the price of one more fdatasync at those rare points. (The per-write fsync point
//! is the raft WAL's, see `raft/wal.rs`.)

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// sled's single log-structured file inside its directory.
const DB_FILE: &str = "db";
/// sled's directory of values too large for the log.
const BLOB_DIR: &str = "blobs";

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("sync {}: {e}", path.display()))
}

/// The files of one sled directory, and which blobs are already synced.
pub struct DbFiles {
    dir: PathBuf,
    db_file: Option<File>,
    synced_blobs: HashSet<OsString>,
}

impl DbFiles {
    /// The files of the sled database in `dir`.
    pub fn new(dir: &Path) -> DbFiles {
        DbFiles { dir: dir.to_path_buf(), db_file: None, synced_blobs: HashSet::new() }
    }

    /// Flushes `db` (which must be the database in this directory) and makes what it wrote durable.
    pub fn sync(&mut self, db: &sled::Db) -> Result<()> {
        db.flush()?;
        if self.db_file.is_none() {
            let path = self.dir.join(DB_FILE);
            self.db_file = Some(File::open(&path).map_err(|e| io_err(&path, e))?);
        }
        if let Some(f) = &self.db_file {
            f.sync_data().map_err(|e| io_err(&self.dir.join(DB_FILE), e))?;
        }
        self.sync_blobs()
    }

    /// fdatasyncs blob files not synced before (they are written once and never changed), then the blob
    /// directory if it gained any; forgets blobs sled removed.
    fn sync_blobs(&mut self) -> Result<()> {
        let blob_dir = self.dir.join(BLOB_DIR);
        let listing = match std::fs::read_dir(&blob_dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&blob_dir, e)),
        };
        let mut present = HashSet::with_capacity(self.synced_blobs.len());
        let mut gained = false;
        for entry in listing {
            let name = entry.map_err(|e| io_err(&blob_dir, e))?.file_name();
            if !self.synced_blobs.contains(&name) {
                let path = blob_dir.join(&name);
                match File::open(&path) {
                    Ok(f) => f.sync_data().map_err(|e| io_err(&path, e))?,
                    // Garbage-collected by sled since the listing.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&path, e)),
                }
                gained = true;
            }
            present.insert(name);
        }
        if gained {
            crate::db_dir::sync_dir(&blob_dir)?;
        }
        self.synced_blobs = present;
        Ok(())
    }
}

/// Flushes `db`, whose directory is `dir`, and syncs every file it has and the directory itself: for tools
/// that write a database once (restore, offline defragmentation) and must leave it durable.
pub fn sync_all(db: &sled::Db, dir: &Path) -> Result<()> {
    DbFiles::new(dir).sync(db)?;
    let conf = dir.join("conf");
    if conf.exists() {
        File::open(&conf).and_then(|f| f.sync_all()).map_err(|e| io_err(&conf, e))?;
    }
    crate::db_dir::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_covers_the_db_file_and_new_blobs_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open().unwrap();
        let mut files = DbFiles::new(dir.path());
        db.insert(b"small", &b"v"[..]).unwrap();
        files.sync(&db).unwrap();
        assert!(files.db_file.is_some(), "the database file must be opened for fdatasync");
        assert!(files.synced_blobs.is_empty());
        // A value far above sled's blob threshold lands in blobs/.
        db.insert(b"big", vec![7u8; 1 << 20]).unwrap();
        files.sync(&db).unwrap();
        assert_eq!(files.synced_blobs.len(), 1, "the new blob must be synced: {:?}", files.synced_blobs);
        let on_disk = std::fs::read_dir(dir.path().join(BLOB_DIR)).unwrap().count();
        assert_eq!(on_disk, 1);
        sync_all(&db, dir.path()).unwrap();
    }
}
