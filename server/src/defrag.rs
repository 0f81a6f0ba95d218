//! Offline defragmentation of a member's data dir (`etcdctl defrag --data-dir`, `etcdutl defrag`).
//!
//! sled never shrinks its file: deleted and compacted data leave dead pages behind. Rewriting every tree
//! into a fresh database keeps only live data. The member must be stopped (sled's exclusive file lock makes
//! a running member's data dir fail to open, so a running member is never touched).
//!
//! Crash safety: the copy goes into the next numbered database directory and the pointer file switches to
//! it only once it is flushed and verified, as online defragmentation does (see db_dir.rs and
//! defrag_online.rs). Older versions renamed directories instead (`db.defrag.tmp` -> `db.defrag`, `db` ->
//! `db.old`, `db.defrag` -> `db`); [`recover`] still finishes or rolls back such an interrupted swap: a
//! complete `db.defrag` without a `db` becomes `db`; a lone `db.old` goes back to `db`.

use std::path::{Path, PathBuf};

use crate::db_dir;
use crate::error::{Error, Result};

/// Sizes before and after, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragReport {
    pub before: u64,
    pub after: u64,
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{}: {e}", path.display()))
}

/// Total size of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

struct Paths {
    member: PathBuf,
    db: PathBuf,
    tmp: PathBuf,
    done: PathBuf,
    old: PathBuf,
}

fn paths(data_dir: &Path) -> Paths {
    let member = data_dir.join("member");
    Paths {
        db: member.join("db"),
        tmp: member.join("db.defrag.tmp"),
        done: member.join("db.defrag"),
        old: member.join("db.old"),
        member,
    }
}

/// Finishes or rolls back a defragmentation that a crash interrupted. Safe to call on any data dir.
pub fn recover(data_dir: &Path) -> Result<()> {
    let p = paths(data_dir);
    if !p.db.exists() {
        if p.done.exists() {
            tracing::warn!(dir = %p.member.display(), "finishing an interrupted defragmentation");
            std::fs::rename(&p.done, &p.db).map_err(|e| io_err(&p.done, e))?;
        } else if p.old.exists() {
            tracing::warn!(dir = %p.member.display(), "rolling back an interrupted defragmentation");
            std::fs::rename(&p.old, &p.db).map_err(|e| io_err(&p.old, e))?;
        }
        if p.member.exists() {
            db_dir::sync_dir(&p.member)?;
        }
    }
    for leftover in [&p.tmp, &p.old, &p.done] {
        if p.db.exists() && leftover.exists() {
            std::fs::remove_dir_all(leftover).map_err(|e| io_err(leftover, e))?;
        }
    }
    Ok(())
}

/// Rewrites the member database under `data_dir` keeping only live data: copied into the next database
/// directory, verified, and switched to through the pointer file (see db_dir.rs); the old one removed.
pub fn defrag_data_dir(data_dir: &Path) -> Result<DefragReport> {
    let open = |path: &Path| {
        if !path.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{} is not a raftcd data dir (no member/db)",
                data_dir.display()
            )));
        }
        sled::Config::new().path(path).open().map_err(|e| {
            // sled wraps the failed flock in an io error of its own wording.
            if e.to_string().contains("could not acquire lock") {
                Error::InvalidArgument(format!("{} is in use (stop the member first)", data_dir.display()))
            } else {
                Error::from(e)
            }
        })
    };
    let dst;
    let before;
    let src;
    {
        // Held open from here: sled's lock keeps a member from starting on this data dir meanwhile.
        let (path, old) = db_dir::open_active(data_dir, open)?;
        src = path;
        before = dir_size(&src);
        dst = db_dir::next(data_dir)?;
        let fresh = sled::Config::new().path(&dst).open()?;
        copy_db(&old, &fresh)?;
        crate::durable::sync_all(&fresh, &dst)?;
        check_same(&old, &fresh)?;
    }
    crate::failpoint!("defrag-before-swap");
    db_dir::switch_to(data_dir, &dst)?;
    // The copy is in use from here on; a leftover of the old database is only garbage (removed at startup).
    crate::live_db::remove_retired(&src);
    db_dir::sync_dir(&db_dir::member_dir(data_dir))?;
    let after = dir_size(&dst);
    tracing::info!(dir = %data_dir.display(), before, after, "defragmented");
    Ok(DefragReport { before, after })
}

/// Bytes copied per batch at most (plus one entry): bounds the memory a copy takes.
const COPY_BATCH_BYTES: usize = 8 << 20;

/// Copies every tree of `from` into `to` (empty). Unlike `sled::Db::import`, fails instead of panicking.
pub(crate) fn copy_db(from: &sled::Db, to: &sled::Db) -> Result<()> {
    for name in from.tree_names() {
        let (src, dst) = (from.open_tree(&name)?, to.open_tree(&name)?);
        let mut batch = sled::Batch::default();
        let mut bytes = 0;
        for kv in src.iter() {
            let (k, v) = kv?;
            bytes += k.len() + v.len();
            batch.insert(k, v);
            if bytes >= COPY_BATCH_BYTES {
                dst.apply_batch(std::mem::take(&mut batch))?;
                bytes = 0;
            }
        }
        dst.apply_batch(batch)?;
    }
    Ok(())
}

/// Every tree of `a` has exactly the same entries in `b` (the copy is verified before it replaces anything).
pub(crate) fn check_same(a: &sled::Db, b: &sled::Db) -> Result<()> {
    let mut names_a = a.tree_names();
    let mut names_b = b.tree_names();
    names_a.sort();
    names_b.sort();
    if names_a != names_b {
        return Err(Error::Storage("defrag: the copy has different trees".into()));
    }
    for name in names_a {
        let (ta, tb) = (a.open_tree(&name)?, b.open_tree(&name)?);
        let mut ia = ta.iter();
        let mut ib = tb.iter();
        loop {
            match (ia.next().transpose()?, ib.next().transpose()?) {
                (None, None) => break,
                (Some(x), Some(y)) if x == y => {}
                _ => return Err(Error::Storage("defrag: the copy differs from the original".into())),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
        let db = crate::db_dir::reopen(dir.join("member").join("db"));
        let t = db.open_tree("state").unwrap();
        for i in 0..2000u32 {
            t.insert(i.to_be_bytes(), vec![7u8; 2000]).unwrap();
        }
        for i in 0..1900u32 {
            t.remove(i.to_be_bytes()).unwrap();
        }
        db.open_tree("local").unwrap().insert("id", "x").unwrap();
        db.flush().unwrap();
        t.iter().map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect()
    }

    /// `defrag_data_dir` once this process's own handles have let go of sled's file lock, which can be a
    /// moment after the database was dropped (see `db_dir::reopen`); a member's data dir is defragmented
    /// offline by another process, after the member exited.
    fn defrag_when_closed(dir: &Path) -> DefragReport {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match defrag_data_dir(dir) {
                Ok(r) => return r,
                Err(Error::InvalidArgument(m)) if m.contains("is in use") && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn keeps_live_data_and_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        let live = fill(dir.path());
        let r = defrag_when_closed(dir.path());
        assert!(r.after < r.before, "{r:?}");
        let active = db_dir::active(dir.path()).unwrap();
        assert_eq!(active, dir.path().join("member").join("db.1"));
        assert!(!dir.path().join("member").join("db").exists(), "the old database must go");
        let db = crate::db_dir::reopen(&active);
        let t = db.open_tree("state").unwrap();
        let got: Vec<_> = t.iter().map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect();
        assert_eq!(got, live);
        assert_eq!(db.open_tree("local").unwrap().get("id").unwrap().unwrap(), "x".as_bytes());
        for leftover in ["db.old", "db.defrag", "db.defrag.tmp"] {
            assert!(!dir.path().join("member").join(leftover).exists(), "{leftover} left behind");
        }
        drop((t, db));
        // Again, from the pointer layout.
        defrag_when_closed(dir.path());
        assert_eq!(db_dir::active(dir.path()).unwrap(), dir.path().join("member").join("db.2"));
        let db = crate::db_dir::reopen(db_dir::active(dir.path()).unwrap());
        assert_eq!(db.open_tree("state").unwrap().len(), live.len());
    }

    #[test]
    fn refuses_an_open_data_dir_and_a_non_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let _open = crate::db_dir::reopen(dir.path().join("member").join("db"));
        let err = defrag_data_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert!(defrag_data_dir(empty.path()).unwrap_err().to_string().contains("not a raftcd data dir"));
    }

    #[test]
    fn recover_finishes_or_rolls_back_a_swap() {
        let dir = tempfile::tempdir().unwrap();
        let live = fill(dir.path());
        let p = paths(dir.path());
        // Crash after db -> db.old, before db.defrag -> db: the complete copy wins.
        std::fs::rename(&p.db, &p.old).unwrap();
        std::fs::create_dir_all(&p.done).unwrap();
        {
            let old = crate::db_dir::reopen(&p.old);
            let fresh = crate::db_dir::reopen(&p.done);
            fresh.import(old.export());
            fresh.flush().unwrap();
        }
        recover(dir.path()).unwrap();
        assert!(p.db.exists() && !p.old.exists() && !p.done.exists());
        let db = crate::db_dir::reopen(&p.db);
        assert_eq!(db.open_tree("state").unwrap().len(), live.len());
        drop(db);
        // Crash after db -> db.old with no complete copy: roll back.
        std::fs::rename(&p.db, &p.old).unwrap();
        std::fs::create_dir_all(&p.tmp).unwrap();
        recover(dir.path()).unwrap();
        assert!(p.db.exists() && !p.old.exists() && !p.tmp.exists());
        assert_eq!(crate::db_dir::reopen(&p.db).open_tree("state").unwrap().len(), live.len());
    }
}
