//! Handles on the member's sled database that an online defragmentation can replace while the member runs.
//!
//! A [`Generation`] is one opened database directory. Every user of a tree holds a [`TreeRef`], which keeps
//! its generation alive, so the database a reader started on stays open until that reader is done, even
//! after a defragmentation switched everybody else to a fresh copy. When the last handle of a retired
//! generation goes, the database is closed first and only then its directory removed: sled must not be
//! writing into a directory that is being deleted.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::durable::DbFiles;
use crate::error::Result;

/// One opened database directory.
pub struct Generation {
    /// Always `Some` until dropped (taken in `drop` so the database closes before its directory goes).
    db: Option<sled::Db>,
    /// The directory, when it is one the member may delete once retired.
    dir: Option<PathBuf>,
    retired: AtomicBool,
    /// The directory's files, for [`Generation::sync`] (`None` when the directory is not known).
    files: Option<Mutex<DbFiles>>,
}

impl Generation {
    /// The database opened in `dir`, which is removed from disk after [`Generation::retire`] once unused.
    pub fn new(db: sled::Db, dir: PathBuf) -> Arc<Generation> {
        let files = Some(Mutex::new(DbFiles::new(&dir)));
        Arc::new(Generation { db: Some(db), dir: Some(dir), retired: AtomicBool::new(false), files })
    }

    /// A database this layer never deletes (tests, tools).
    pub fn detached(db: sled::Db) -> Arc<Generation> {
        Arc::new(Generation { db: Some(db), dir: None, retired: AtomicBool::new(false), files: None })
    }

    /// The database.
    pub fn db(&self) -> &sled::Db {
        // Only `drop` takes it.
        self.db.as_ref().unwrap_or_else(|| unreachable!("generation used after drop"))
    }

    /// Makes every write so far durable: sled's flush, then fdatasync of its files (see [`crate::durable`]).
    /// A detached database (tools, tests) gets only sled's flush.
    pub fn sync(&self) -> Result<()> {
        match &self.files {
            Some(files) => files.lock().unwrap_or_else(PoisonError::into_inner).sync(self.db()),
            None => {
                self.db().flush()?;
                Ok(())
            }
        }
    }

    /// The database directory, when known.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// Marks the directory for removal once the last handle is dropped.
    pub fn retire(&self) {
        self.retired.store(true, SeqCst);
    }

    /// Bytes the database files take.
    pub fn size_on_disk(&self) -> u64 {
        self.db().size_on_disk().unwrap_or(0)
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        drop(self.db.take());
        if !self.retired.load(SeqCst) {
            return;
        }
        if let Some(dir) = self.dir.take() {
            // Off the dropping thread (often a runtime worker), and retried: sled's own background work can
            // outlive the last handle for a moment and still add a file to the directory.
            let spawned = std::thread::Builder::new().name("db-cleanup".into()).spawn({
                let dir = dir.clone();
                move || remove_retired(&dir)
            });
            if let Err(e) = spawned {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot start removing a replaced database");
            }
        }
    }
}

/// Attempts at removing a replaced database directory, 100 ms apart. What is left is removed at startup
/// (the pointer does not name it).
const REMOVE_ATTEMPTS: u32 = 20;

/// Removes a database directory nothing uses any more, retrying while sled's late work still touches it;
/// only logs a failure.
pub(crate) fn remove_retired(dir: &std::path::Path) {
    for attempt in 1..=REMOVE_ATTEMPTS {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {
                tracing::info!(dir = %dir.display(), "removed the database replaced by defragmentation");
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if attempt == REMOVE_ATTEMPTS => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a replaced database");
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

/// A tree and the generation it belongs to. Derefs to the tree.
#[derive(Clone)]
pub struct TreeRef {
    // Declared first: dropped before the generation it keeps open.
    tree: sled::Tree,
    _gen: Option<Arc<Generation>>,
}

impl TreeRef {
    /// Opens (or creates) the tree `name` of `gen`.
    pub fn open(gen: &Arc<Generation>, name: &str) -> Result<TreeRef> {
        Ok(TreeRef { tree: gen.db().open_tree(name)?, _gen: Some(gen.clone()) })
    }
}

/// A tree of a database this layer does not manage (tests, tools).
impl From<sled::Tree> for TreeRef {
    fn from(tree: sled::Tree) -> TreeRef {
        TreeRef { tree, _gen: None }
    }
}

impl Deref for TreeRef {
    type Target = sled::Tree;
    fn deref(&self) -> &sled::Tree {
        &self.tree
    }
}

/// The member's current database, shared by whoever reports on it (Status, metrics). Only the raft
/// thread replaces it.
#[derive(Clone)]
pub struct LiveDb(Arc<RwLock<Arc<Generation>>>);

impl LiveDb {
    pub fn new(gen: Arc<Generation>) -> LiveDb {
        LiveDb(Arc::new(RwLock::new(gen)))
    }

    /// The current generation.
    pub fn get(&self) -> Arc<Generation> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Makes `gen` current; returns the previous one.
    pub fn replace(&self, gen: Arc<Generation>) -> Arc<Generation> {
        std::mem::replace(&mut *self.0.write().unwrap_or_else(PoisonError::into_inner), gen)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// True once `path` no longer exists (removal runs on a thread of its own), within 5 s.
    pub(crate) fn gone_soon(path: &std::path::Path) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while path.exists() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        true
    }

    #[test]
    fn a_retired_directory_goes_only_after_its_last_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.1");
        let gen = Generation::new(crate::db_dir::reopen(&path), path.clone());
        let reader = TreeRef::open(&gen, "state").unwrap();
        reader.insert("k", "v").unwrap();
        let live = LiveDb::new(gen);
        let other = dir.path().join("db.2");
        let old = live.replace(Generation::new(crate::db_dir::reopen(&other), other.clone()));
        old.retire();
        drop(old);
        assert!(path.exists(), "removed while a reader still uses it");
        assert_eq!(reader.get("k").unwrap().unwrap(), "v".as_bytes());
        drop(reader);
        assert!(gone_soon(&path), "not removed after the last reader");
        assert!(other.exists(), "the current generation must stay");
        drop(live);
        assert!(other.exists(), "a generation that was not retired must stay");
    }
}
