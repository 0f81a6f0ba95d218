//! Which directory under `<data-dir>/member` holds the member's database.
//!
//! Defragmentation writes a complete copy into a new directory (`db.1`, `db.2`, ...) and then switches the
//! small pointer file `member/db.current` to it: written to a temporary file, fsynced, renamed over the
//! pointer and the directory fsynced, so after a crash the pointer names either the old or the new
//! database, both complete. Without a pointer the database is `member/db` (data dirs from before online
//! defragmentation, and fresh ones). No directory is ever renamed while a database in it is open.
//!
//! Everything that opens a data dir goes through [`open_active`] (or [`active`] for a dir it only reads).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The pointer file, in `member/`.
pub const POINTER: &str = "db.current";
const POINTER_TMP: &str = "db.current.tmp";
/// The database directory when there is no pointer.
const DEFAULT: &str = "db";

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{}: {e}", path.display()))
}

/// `<data-dir>/member`.
pub fn member_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("member")
}

/// Makes the entries of `dir` (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| io_err(dir, e))
}

/// The generation number of a database directory name: `db` is 0, `db.<n>` is n, anything else None.
fn generation_of(name: &str) -> Option<u64> {
    if name == DEFAULT {
        return Some(0);
    }
    let n = name.strip_prefix("db.")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The name the pointer holds, or None without a pointer.
fn pointed(data_dir: &Path) -> Result<Option<String>> {
    let path = member_dir(data_dir).join(POINTER);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path, e)),
    };
    let name = text.trim();
    if generation_of(name).is_none() {
        return Err(Error::Storage(format!("{}: not a database directory name: {name:?}", path.display())));
    }
    Ok(Some(name.to_string()))
}

/// The active database directory of `data_dir` (it may not exist yet for a new member without a pointer).
pub fn active(data_dir: &Path) -> Result<PathBuf> {
    match pointed(data_dir)? {
        None => Ok(member_dir(data_dir).join(DEFAULT)),
        Some(name) => {
            let dir = member_dir(data_dir).join(&name);
            if !dir.is_dir() {
                // Never start over with an empty database: that would silently lose the member's data.
                return Err(Error::Storage(format!("{POINTER} names {name}, which is missing")));
            }
            Ok(dir)
        }
    }
}

/// A directory for the next copy: numbered above every database directory present (a replaced one may
/// still be open for a reader).
pub fn next(data_dir: &Path) -> Result<PathBuf> {
    let member = member_dir(data_dir);
    let mut top = 0;
    for e in std::fs::read_dir(&member).map_err(|e| io_err(&member, e))?.flatten() {
        if let Some(n) = e.file_name().to_str().and_then(generation_of) {
            top = top.max(n);
        }
    }
    Ok(member.join(format!("db.{}", top + 1)))
}

/// Durably makes `dir` (a complete, flushed database directory in `member/`) the active one.
pub fn switch_to(data_dir: &Path, dir: &Path) -> Result<()> {
    let member = member_dir(data_dir);
    let name = dir.file_name().and_then(|n| n.to_str()).filter(|n| generation_of(n).is_some());
    let Some(name) = name.filter(|_| dir.parent() == Some(member.as_path())) else {
        return Err(Error::Storage(format!("{} is not a database directory of {}", dir.display(), member.display())));
    };
    sync_dir(dir)?;
    // sled keeps large values as files in a subdirectory.
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?.flatten() {
        if e.path().is_dir() {
            sync_dir(&e.path())?;
        }
    }
    sync_dir(&member)?;
    let tmp = member.join(POINTER_TMP);
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(format!("{name}\n").as_bytes()).and_then(|()| f.sync_all()).map_err(|e| io_err(&tmp, e))?;
    }
    let pointer = member.join(POINTER);
    std::fs::rename(&tmp, &pointer).map_err(|e| io_err(&pointer, e))?;
    sync_dir(&member)
}

/// Removes what an interrupted defragmentation left: database directories the pointer does not name and
/// a half-written pointer. Only for a data dir no process has open.
pub fn remove_stale(data_dir: &Path) -> Result<()> {
    let member = member_dir(data_dir);
    let Some(active_name) = pointed(data_dir)? else {
        // Without a pointer `db` is the database; numbered directories are unfinished copies.
        return remove_matching(&member, |name| name == POINTER_TMP || generation_of(name).is_some_and(|n| n > 0));
    };
    active(data_dir)?;
    remove_matching(&member, |name| name == POINTER_TMP || (generation_of(name).is_some() && name != active_name))
}

fn remove_matching(member: &Path, stale: impl Fn(&str) -> bool) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(member) else { return Ok(()) };
    let mut removed = false;
    for e in entries.flatten() {
        if !e.file_name().to_str().is_some_and(&stale) {
            continue;
        }
        let path = e.path();
        tracing::warn!(path = %path.display(), "removing what an interrupted defragmentation left");
        let r = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        r.map_err(|e| io_err(&path, e))?;
        removed = true;
    }
    if removed {
        sync_dir(member)?;
    }
    Ok(())
}

/// Opens the database of `data_dir` with `open`: first finishes or undoes an interrupted defragmentation
/// of an older version, then opens the active directory, and only while holding it (sled locks its
/// directory) removes what an interrupted defragmentation left. If the pointer moved meanwhile (another
/// process defragmented this data dir), nothing is removed and it fails.
pub fn open_active<T>(data_dir: &Path, open: impl FnOnce(&Path) -> Result<T>) -> Result<(PathBuf, T)> {
    if pointed(data_dir)?.is_none() {
        // Offline defragmentation by older versions renamed directories; finish or undo that first.
        crate::defrag::recover(data_dir)?;
    }
    let path = active(data_dir)?;
    let opened = open(&path)?;
    if active(data_dir)? != path {
        return Err(Error::Storage(format!(
            "{}: the database pointer changed while opening (another process is defragmenting it?)",
            data_dir.display()
        )));
    }
    remove_stale(data_dir)?;
    Ok((path, opened))
}

/// Opens a member database the way a running member does (large cache; synced only before the raft log is cut).
pub fn open_member_db(dir: &Path) -> Result<sled::Db> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    Ok(sled::Config::new().path(dir).cache_capacity(256 * 1024 * 1024).flush_every_ms(None).open()?)
}

/// Tests: opens a database that this process closed a moment ago. sled releases its file lock only when
/// the last of its IO jobs has dropped its handle, which can be just after the `Db` itself was dropped, so
/// an immediate reopen may find the lock still held; wait for it (up to 10 s) instead of failing.
#[cfg(test)]
pub(crate) fn reopen(path: impl AsRef<Path>) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(path.as_ref()) {
            Ok(db) => return db,
            Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("{}: {e}", path.as_ref().display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(data_dir: &Path) -> Result<PathBuf> {
        open_active(data_dir, |_| Ok(())).map(|(p, ())| p)
    }

    fn member_with(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for n in names {
            std::fs::create_dir_all(dir.path().join("member").join(n)).unwrap();
        }
        dir
    }

    #[test]
    fn without_a_pointer_the_database_is_member_db() {
        let d = member_with(&["db", "db.3"]);
        assert_eq!(prepare(d.path()).unwrap(), d.path().join("member/db"));
        assert!(!d.path().join("member/db.3").exists(), "an unfinished copy must go");
        assert_eq!(next(d.path()).unwrap(), d.path().join("member/db.1"));
        let fresh = tempfile::tempdir().unwrap();
        assert_eq!(prepare(fresh.path()).unwrap(), fresh.path().join("member/db"));
    }

    #[test]
    fn the_pointer_decides_and_everything_else_goes() {
        let d = member_with(&["db", "db.1", "db.2", "db.10x"]);
        let member = d.path().join("member");
        switch_to(d.path(), &member.join("db.2")).unwrap();
        std::fs::write(member.join(POINTER_TMP), "db.1").unwrap();
        assert_eq!(next(d.path()).unwrap(), member.join("db.3"));
        assert_eq!(prepare(d.path()).unwrap(), member.join("db.2"));
        for gone in ["db", "db.1", POINTER_TMP] {
            assert!(!member.join(gone).exists(), "{gone} left behind");
        }
        assert!(member.join("db.10x").exists(), "not a database directory: not ours to remove");
        assert_eq!(std::fs::read_to_string(member.join(POINTER)).unwrap(), "db.2\n");
    }

    #[test]
    fn a_pointer_to_a_missing_or_foreign_directory_is_an_error() {
        let d = member_with(&["db"]);
        let member = d.path().join("member");
        std::fs::write(member.join(POINTER), "db.4\n").unwrap();
        assert!(prepare(d.path()).unwrap_err().to_string().contains("missing"));
        assert!(member.join("db").exists(), "nothing may be removed when the pointer is broken");
        std::fs::write(member.join(POINTER), "../elsewhere\n").unwrap();
        assert!(prepare(d.path()).is_err());
        assert!(switch_to(d.path(), &d.path().join("db.1")).is_err());
    }

    #[test]
    fn nothing_is_removed_when_the_pointer_moves_while_opening() {
        let d = member_with(&["db.1", "db.2"]);
        let member = d.path().join("member");
        switch_to(d.path(), &member.join("db.1")).unwrap();
        let err = open_active(d.path(), |opened| {
            assert_eq!(opened, member.join("db.1"));
            switch_to(d.path(), &member.join("db.2"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("pointer changed"), "{err}");
        assert!(member.join("db.1").exists() && member.join("db.2").exists());
    }
}
