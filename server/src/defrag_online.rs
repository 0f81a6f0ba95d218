//! Online defragmentation (the Defragment RPC): rewrites the running member's database into a fresh
//! directory holding only live data, and switches the member to it without a restart.
//!
//! sled never shrinks its files, so this is the only way a running member gives space back. It runs on the
//! raft thread, between two Readies: nothing is applied and no log entry is written while it copies (as an
//! etcd member, this one stops replicating during a defragmentation), and physical compaction, the only
//! other writer, is paused. Readers go on reading the old database throughout; it holds exactly what the
//! copy holds, so reads stay correct before, during and after the switch.
//!
//! Steps and crash safety (see db_dir.rs): copy into `member/db.<n+1>`, flush, verify tree by tree, fsync
//! the directory, then switch the pointer file durably. A crash before the pointer switch restarts on the
//! old database (startup removes the unfinished copy); after it, on the new one, which is complete. Only
//! then do the in-memory handles move; the old database is closed and its directory removed when its last
//! reader lets go.

use std::path::PathBuf;
use std::sync::Arc;

use crate::db_dir;
use crate::defrag::{check_same, DefragReport};
use crate::error::{Error, Result};
use crate::live_db::{Generation, LiveDb, TreeRef};
use crate::mvcc::Store;

/// The new database, opened and verified, with the trees every holder will switch to.
pub struct Prepared {
    pub gen: Arc<Generation>,
    pub state: TreeRef,
    pub local: TreeRef,
    pub raft: TreeRef,
    pub report: DefragReport,
}

/// What the raft thread needs to defragment its member's database.
pub struct OnlineDefrag {
    data_dir: PathBuf,
    live: LiveDb,
}

impl OnlineDefrag {
    pub fn new(data_dir: PathBuf, live: LiveDb) -> OnlineDefrag {
        OnlineDefrag { data_dir, live }
    }

    /// Defragments. `switch` must move every writer onto the prepared trees; it runs after the pointer
    /// switch and cannot fail. The outer error is fatal (the pointer may name a database the member no
    /// longer writes: it must stop); the inner one only fails the request (nothing changed).
    pub fn run(&self, store: &Store, switch: impl FnOnce(Prepared)) -> Result<Result<DefragReport>> {
        let _no_compaction = store.pause_compaction();
        let old = self.live.get();
        let prepared = match self.copy(&old) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        crate::failpoint!("defrag-online-before-swap");
        let dir = prepared.gen.dir().map(PathBuf::from).unwrap_or_default();
        db_dir::switch_to(&self.data_dir, &dir)?;
        let (gen, report) = (prepared.gen.clone(), prepared.report);
        switch(prepared);
        let old = self.live.replace(gen);
        old.retire();
        tracing::info!(before = report.before, after = report.after, dir = %dir.display(), "defragmented online");
        Ok(Ok(report))
    }

    /// Copies `old` into a fresh directory and verifies the copy. On failure the copy is removed.
    fn copy(&self, old: &Arc<Generation>) -> Result<Prepared> {
        let dir = db_dir::next(&self.data_dir)?;
        let result = copy_into(old, &dir);
        if result.is_err() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a failed defragmentation copy");
            }
        }
        result
    }
}

fn copy_into(old: &Arc<Generation>, dir: &std::path::Path) -> Result<Prepared> {
    if dir.exists() {
        return Err(Error::Storage(format!("{} already exists", dir.display())));
    }
    let before = old.size_on_disk();
    let fresh = db_dir::open_member_db(dir)?;
    fresh.import(old.db().export());
    crate::durable::sync_all(&fresh, dir)?;
    check_same(old.db(), &fresh)?;
    let gen = Generation::new(fresh, dir.to_path_buf());
    let after = gen.size_on_disk();
    Ok(Prepared {
        state: TreeRef::open(&gen, "state")?,
        local: TreeRef::open(&gen, "local")?,
        raft: TreeRef::open(&gen, "raft")?,
        gen,
        report: DefragReport { before, after },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftcd_proto::etcdserverpb::{PutRequest, RangeRequest};

    /// A member-like data dir: a store with live and deleted keys in `member/db`.
    fn member(dir: &std::path::Path) -> (Arc<Generation>, Store) {
        let (path, db) = db_dir::open_active(dir, db_dir::open_member_db).unwrap();
        let gen = Generation::new(db, path);
        let store = Store::open(TreeRef::open(&gen, "state").unwrap()).unwrap();
        TreeRef::open(&gen, "local").unwrap().insert("member_id", &7u64.to_be_bytes()).unwrap();
        // Garbage, as a compacted raft log leaves: 8 MB written, flushed, removed.
        let raft = TreeRef::open(&gen, "raft").unwrap();
        for i in 0..2000u32 {
            raft.insert(i.to_be_bytes(), vec![b'e'; 4000]).unwrap();
        }
        gen.db().flush().unwrap();
        for i in 0..2000u32 {
            raft.remove(i.to_be_bytes()).unwrap();
        }
        raft.insert("hs", "x").unwrap();
        for i in 0..300u64 {
            let mut w = store.begin(i + 1, &|_| true);
            let key = format!("k{:03}", i % 30).into_bytes();
            w.put(&PutRequest { key, value: vec![b'v'; 4000], ..Default::default() }).unwrap();
            w.commit().unwrap();
        }
        gen.db().flush().unwrap();
        (gen, store)
    }

    /// Runs `open` until it does not fail on sled's lock: sled closes a dropped database from its own
    /// threads a moment later, so the lock of one just dropped may still be held.
    fn retry_lock<T>(open: impl Fn() -> Result<T>) -> T {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match open() {
                Ok(v) => return v,
                Err(e) if e.to_string().contains("lock") && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Opens the data dir as a starting member would.
    fn open_member(dir: &std::path::Path) -> (PathBuf, Arc<Generation>) {
        let (path, db) = retry_lock(|| db_dir::open_active(dir, db_dir::open_member_db));
        (path.clone(), Generation::new(db, path))
    }

    fn all(store: &Store) -> Vec<raftcd_proto::mvccpb::KeyValue> {
        store.range(&RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() }).unwrap().kvs
    }

    #[test]
    fn switches_every_holder_to_a_smaller_verified_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (gen, store) = member(dir.path());
        let old_dir = gen.dir().unwrap().to_path_buf();
        let live = LiveDb::new(gen.clone());
        drop(gen);
        let reader = store.tree();
        let before = all(&store);
        let defrag = OnlineDefrag::new(dir.path().to_path_buf(), live.clone());
        let mut switched = None;
        let report = defrag
            .run(&store, |p| {
                store.switch_tree(p.state.clone());
                switched = Some(p);
            })
            .unwrap()
            .unwrap();
        assert!(report.after * 2 < report.before, "{report:?}");
        let p = switched.unwrap();
        assert_eq!(db_dir::active(dir.path()).unwrap(), dir.path().join("member").join("db.1"));
        assert_eq!(live.get().dir(), p.gen.dir());
        assert_eq!(all(&store), before);
        assert_eq!(p.local.get("member_id").unwrap().unwrap(), &7u64.to_be_bytes()[..]);
        assert_eq!(p.raft.get("hs").unwrap().unwrap(), "x".as_bytes());
        // A reader that started on the old database keeps it until it is done; then it goes.
        assert_eq!(reader.len(), store.tree().len());
        assert!(old_dir.exists());
        drop(reader);
        assert!(
            crate::live_db::tests::gone_soon(&old_dir),
            "the replaced database must be removed after its last reader"
        );
        // Writes after the switch land in the new database and survive a reopen through the pointer.
        let mut w = store.begin(1000, &|_| true);
        w.put(&PutRequest { key: b"after".to_vec(), value: b"1".to_vec(), ..Default::default() }).unwrap();
        w.commit().unwrap();
        live.get().db().flush().unwrap();
        drop((p, store, live, defrag));
        let (_, reopened) = {
            let (_, gen) = open_member(dir.path());
            let s = Store::open(TreeRef::open(&gen, "state").unwrap()).unwrap();
            (gen, s)
        };
        assert_eq!(all(&reopened).len(), before.len() + 1);
    }

    #[test]
    fn crash_at_each_step_restarts_on_a_complete_database() {
        let dir = tempfile::tempdir().unwrap();
        let (gen, store) = member(dir.path());
        let expect = all(&store);
        let member_dir = db_dir::member_dir(dir.path());
        let reopen = |dir: &std::path::Path| {
            let (path, gen) = open_member(dir);
            (path, all(&Store::open(TreeRef::open(&gen, "state").unwrap()).unwrap()))
        };
        // Crash during the copy: a partial db.1, no pointer.
        let partial = db_dir::open_member_db(&member_dir.join("db.1")).unwrap();
        partial.open_tree("state").unwrap().insert("junk", "1").unwrap();
        partial.flush().unwrap();
        drop((partial, store, gen));
        let (path, got) = reopen(dir.path());
        assert_eq!((path, &got), (member_dir.join("db"), &expect));
        assert!(!member_dir.join("db.1").exists());
        // Crash after the copy, with the new pointer written to its temporary file only.
        let copy = |to: &str| {
            let from = retry_lock(|| Ok(sled::open(member_dir.join("db"))?));
            let fresh = db_dir::open_member_db(&member_dir.join(to)).unwrap();
            crate::defrag::copy_db(&from, &fresh).unwrap();
            fresh.flush().unwrap();
        };
        copy("db.1");
        std::fs::write(member_dir.join("db.current.tmp"), "db.1\n").unwrap();
        let (path, got) = reopen(dir.path());
        assert_eq!((path, &got), (member_dir.join("db"), &expect));
        assert!(!member_dir.join("db.1").exists() && !member_dir.join("db.current.tmp").exists());
        // Crash after the pointer switch, before the old database was removed.
        copy("db.1");
        db_dir::switch_to(dir.path(), &member_dir.join("db.1")).unwrap();
        let (path, got) = reopen(dir.path());
        assert_eq!((path, &got), (member_dir.join("db.1"), &expect));
        assert!(!member_dir.join("db").exists(), "the replaced database must go at startup");
    }
}
