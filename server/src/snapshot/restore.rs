//! Offline tools over snapshot files: `status` (what is in one) and `restore` (a new member's data dir from
//! one), as `etcdctl snapshot status|restore` / `etcdutl` provide for etcd.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use raft::eraftpb::{ConfState, SnapshotMetadata};
use raftcd_proto::etcdserverpb::Member;

use crate::error::{Error, Result};
use crate::member::{cluster_id, encode_member, member_id, parse_initial_cluster};
use crate::mvcc::CommitState;
use crate::raft::storage::RaftStorage;
use crate::snapshot::SnapshotReader;

/// What `snapshot status` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// crc32 of the snapshot's content (everything before the sha256 trailer).
    pub hash: u32,
    /// Store revision in the snapshot.
    pub revision: i64,
    /// Live keys.
    pub total_keys: u64,
    /// File size in bytes.
    pub total_size: u64,
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::InvalidArgument(format!("{}: {e}", path.display()))
}

fn meta_i64(v: &[u8]) -> i64 {
    v.try_into().map(i64::from_be_bytes).unwrap_or(0)
}

/// Reads a snapshot file, checks its sha256, and summarises it.
pub fn status(path: &Path) -> Result<SnapshotStatus> {
    let total_size = std::fs::metadata(path).map_err(|e| io_err(path, e))?.len();
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut r = SnapshotReader::new(BufReader::with_capacity(1 << 20, f))?;
    let mut hasher = crc32fast::Hasher::new();
    let (mut state, mut total_keys) = (CommitState::default(), 0u64);
    while let Some((k, v)) = r.next_record()? {
        hasher.update(&k);
        hasher.update(&v);
        if k.first() == Some(&b'k') {
            total_keys += 1;
        } else {
            state.observe(&k, &v);
        }
    }
    r.finish(false)?;
    Ok(SnapshotStatus { hash: hasher.finalize(), revision: state.revision, total_keys, total_size })
}

/// `snapshot status` output as etcdctl/etcdutl print it (`simple`, `json` or `table`).
pub fn format_status(st: &SnapshotStatus, write_out: &str) -> Result<String, String> {
    use std::fmt::Write as _;
    let size = human_size(st.total_size);
    let mut out = String::new();
    match write_out {
        "simple" => {
            let _ = writeln!(out, "{:x}, {}, {}, {}", st.hash, st.revision, st.total_keys, size);
        }
        "json" => {
            let _ = writeln!(
                out,
                "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}",
                st.hash, st.revision, st.total_keys, st.total_size
            );
        }
        "table" => {
            let cells = [format!("{:x}", st.hash), st.revision.to_string(), st.total_keys.to_string(), size];
            let heads = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
            let widths: Vec<usize> = heads.iter().zip(&cells).map(|(h, c)| h.len().max(c.len()) + 2).collect();
            let line = widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("+");
            let row = |v: Vec<String>| {
                let cells: Vec<String> = v.iter().zip(&widths).map(|(c, w)| format!("{c:^w$}")).collect();
                format!("|{}|\n", cells.join("|"))
            };
            out.push_str(&format!("+{line}+\n"));
            out.push_str(&row(heads.iter().map(|s| s.to_string()).collect()));
            out.push_str(&format!("+{line}+\n"));
            out.push_str(&row(cells.to_vec()));
            out.push_str(&format!("+{line}+\n"));
        }
        other => return Err(format!("unknown output format {other:?}")),
    }
    Ok(out)
}

/// Sizes as Go's humanize.Bytes prints them (etcdctl uses it): "1.1 kB", "20 MB".
pub fn human_size(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let v = n as f64 / 1000f64.powi(e as i32);
    if v < 10.0 {
        format!("{v:.1} {}", units[e])
    } else {
        format!("{v:.0} {}", units[e])
    }
}

/// `snapshot restore` options (etcdctl's flags).
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub name: String,
    pub data_dir: PathBuf,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub initial_advertise_peer_urls: Vec<String>,
    pub skip_hash_check: bool,
    /// Added to the store revision, so revisions seen by clients of the old cluster never repeat.
    pub bump_revision: u64,
    /// Mark every revision up to the (bumped) current one compacted, so watchers relist.
    pub mark_compacted: bool,
}

/// Builds a data dir from which a member of a NEW cluster (ids from the given flags) starts with every key,
/// revision and lease of the snapshot. Refuses an existing data dir; verifies the file before writing.
pub fn restore(snapshot: &Path, opts: &RestoreOptions) -> Result<()> {
    if opts.data_dir.exists() && std::fs::read_dir(&opts.data_dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(Error::InvalidArgument(format!("data-dir {:?} exists", opts.data_dir.display().to_string())));
    }
    if !opts.skip_hash_check {
        crate::snapshot::state::verify(snapshot)?;
    }
    // The new cluster's members, derived exactly as a bootstrapping member derives them.
    let initial = parse_initial_cluster(&opts.initial_cluster)?;
    let members: Vec<Member> = initial
        .iter()
        .map(|(name, urls)| Member {
            id: member_id(urls, &opts.initial_cluster_token, None),
            name: name.clone(),
            peer_ur_ls: urls.clone(),
            client_ur_ls: vec![],
            is_learner: false,
        })
        .collect();
    let me = members
        .iter()
        .find(|m| m.name == opts.name)
        .ok_or_else(|| Error::InvalidArgument(format!("--initial-cluster has no member named {:?}", opts.name)))?;
    let mut mine = me.peer_ur_ls.clone();
    let mut adv = opts.initial_advertise_peer_urls.clone();
    mine.sort();
    adv.sort();
    if mine != adv {
        return Err(Error::InvalidArgument(format!(
            "--initial-cluster has {:?} for {:?} but --initial-advertise-peer-urls is {:?}",
            me.peer_ur_ls, opts.name, opts.initial_advertise_peer_urls
        )));
    }
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let cid = cluster_id(&ids);

    let result = write_data_dir(snapshot, opts, &members, me.id, cid);
    if result.is_err() {
        // Leave nothing half-written behind.
        let _ = std::fs::remove_dir_all(&opts.data_dir);
    }
    result
}

fn write_data_dir(snapshot: &Path, opts: &RestoreOptions, members: &[Member], me: u64, cid: u64) -> Result<()> {
    use crate::mvcc::{META_COMPACT_REV, META_STATE};
    // A new data dir: the default layout (no pointer file), which every opener resolves the same way.
    let db_path = crate::db_dir::active(&opts.data_dir)?;
    std::fs::create_dir_all(&db_path).map_err(|e| io_err(&db_path, e))?;
    std::fs::create_dir_all(opts.data_dir.join("member").join("snap")).map_err(|e| io_err(&db_path, e))?;
    let db = sled::Config::new().path(&db_path).open()?;
    let state = db.open_tree("state")?;
    let f = File::open(snapshot).map_err(|e| io_err(snapshot, e))?;
    let mut r = SnapshotReader::new(BufReader::with_capacity(1 << 20, f))?;
    let mut batch = sled::Batch::default();
    let (mut n, mut commit, mut compact) = (0usize, CommitState::default(), 0i64);
    while let Some((k, v)) = r.next_record()? {
        // The old cluster's members and alarms do not carry over.
        if k.starts_with(b"xm") || k.starts_with(b"xr") || k.starts_with(b"xa") {
            continue;
        }
        // Live copies for older builds; this one reads live values from the history.
        if k.first() == Some(&crate::mvcc::P_LIVE_LEGACY) {
            continue;
        }
        // Written once below, in the current layout, whichever layout the file has.
        if commit.observe(&k, &v) {
            continue;
        }
        if k[..] == META_COMPACT_REV[..] {
            compact = meta_i64(&v);
        }
        batch.insert(k, v);
        n += 1;
        if n % 10_000 == 0 {
            state.apply_batch(std::mem::take(&mut batch))?;
        }
    }
    r.finish(opts.skip_hash_check)?;
    // Found by fuzzing: a hostile (or merely large) revision in the file plus --bump-revision overflowed,
    // a panic in debug builds and a negative revision in release ones.
    let rev = commit.revision;
    let rev = i64::try_from(opts.bump_revision).ok().and_then(|b| rev.checked_add(b)).ok_or_else(|| {
        Error::InvalidArgument(format!("revision {rev} + --bump-revision {} is out of range", opts.bump_revision))
    })?;
    if opts.mark_compacted {
        batch.insert(META_COMPACT_REV, &rev.to_be_bytes());
    } else {
        batch.insert(META_COMPACT_REV, &compact.to_be_bytes());
    }
    // The log restarts after one index per member: the configuration below stands for those entries.
    let applied = members.len() as u64;
    batch.insert(META_STATE, &CommitState { applied_index: applied, revision: rev, ..commit }.encode());
    for m in members {
        let mut key = b"xm".to_vec();
        key.extend_from_slice(&m.id.to_be_bytes());
        batch.insert(key, encode_member(m));
    }
    state.apply_batch(batch)?;

    let mut storage = RaftStorage::open(&db, &opts.data_dir.join("member").join("wal"))?;
    let cs = ConfState { voters: members.iter().map(|m| m.id).collect(), ..Default::default() };
    let mut meta = SnapshotMetadata { index: applied, term: 1, ..Default::default() };
    meta.set_conf_state(cs);
    storage.apply_snapshot_meta(&meta)?;

    let local = db.open_tree("local")?;
    local.insert("member_id", &me.to_be_bytes())?;
    local.insert("cluster_id", &cid.to_be_bytes())?;
    crate::durable::sync_all(&db, &db_path)?;
    tracing::info!(data_dir = %opts.data_dir.display(), revision = rev, "restored snapshot");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::Store;
    use raftcd_proto::etcdserverpb::{PutRequest, RangeRequest};

    fn snapshot_with_keys(dir: &Path, n: u64) -> PathBuf {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let s = Store::open(db.open_tree("state").unwrap()).unwrap();
        let ok = |_: i64| true;
        for i in 1..=n {
            let mut t = s.begin(i, &ok);
            t.put(&PutRequest { key: format!("k{i}").into(), value: b"v".to_vec(), ..Default::default() }).unwrap();
            t.commit().unwrap();
        }
        let path = dir.join("backup.snap");
        crate::snapshot::state::export(&s, n, 1, &path).unwrap();
        path
    }

    fn opts(dir: &Path, bump: u64, mark: bool) -> RestoreOptions {
        RestoreOptions {
            name: "r1".into(),
            data_dir: dir.join("r1.raftcd"),
            initial_cluster: "r1=http://127.0.0.1:1,r2=http://127.0.0.1:2".into(),
            initial_cluster_token: "restored".into(),
            initial_advertise_peer_urls: vec!["http://127.0.0.1:1".into()],
            skip_hash_check: false,
            bump_revision: bump,
            mark_compacted: mark,
        }
    }

    #[test]
    fn status_and_restore_with_bump_and_mark_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let snap = snapshot_with_keys(dir.path(), 10);
        let st = status(&snap).unwrap();
        assert_eq!((st.revision, st.total_keys), (11, 10));
        let o = opts(dir.path(), 100, true);
        restore(&snap, &o).unwrap();
        let db = crate::db_dir::reopen(crate::db_dir::active(&o.data_dir).unwrap());
        let s = Store::open(db.open_tree("state").unwrap()).unwrap();
        assert_eq!(s.current_revision(), 111);
        assert_eq!(s.compact_revision(), 111);
        let all = RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
        assert_eq!(s.range(&all).unwrap().count, 10);
        let storage = RaftStorage::open(&db, &o.data_dir.join("member").join("wal")).unwrap();
        assert_eq!(storage.conf_state().voters.len(), 2);
        assert_eq!(s.applied_index(), 2);
        assert_eq!(raft::Storage::first_index(&storage).unwrap(), 3);
        drop(db);
        assert!(restore(&snap, &o).is_err(), "an existing data dir is never overwritten");
    }

    /// Regression (fuzz_tests::snapshot): revision + --bump-revision past i64::MAX is refused, not a panic
    /// or a wrapped negative revision, and leaves no data dir.
    #[test]
    fn restore_refuses_a_revision_bump_past_i64_max() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("max.snap");
        let mut w = crate::snapshot::SnapshotWriter::new(Vec::new(), 1, 1).unwrap();
        w.record(crate::mvcc::META_REV, &i64::MAX.to_be_bytes()).unwrap();
        std::fs::write(&path, w.finish().unwrap().0).unwrap();
        for bump in [1, u64::MAX] {
            let o = opts(dir.path(), bump, false);
            let e = restore(&path, &o).unwrap_err();
            assert!(e.to_string().contains("out of range"), "{e}");
            assert!(!o.data_dir.exists());
        }
        restore(&path, &opts(dir.path(), 0, false)).unwrap();
    }

    /// A backup taken by an earlier build (commit state in four keys, live copies in `k`) restores with its
    /// revision and key count, into the current layout.
    #[test]
    fn restore_of_a_backup_in_the_earlier_layout() {
        use crate::mvcc::{META_APPLIED_INDEX, META_KEY_COUNT, META_REV, META_SIZE_WRITTEN, META_STATE};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.snap");
        let kv = raftcd_proto::mvccpb::KeyValue {
            key: b"a".to_vec(),
            value: b"1".to_vec(),
            create_revision: 9,
            mod_revision: 9,
            version: 1,
            lease: 0,
        };
        let mut w = crate::snapshot::SnapshotWriter::new(Vec::new(), 1, 1).unwrap();
        let rec = crate::mvcc::key_index::encode_record(crate::mvcc::key_index::Kind::Put, &kv);
        w.record(&crate::mvcc::key_index::history_key(b"a", crate::mvcc::Revision::new(9, 0)), &rec).unwrap();
        w.record(b"ka", &prost::Message::encode_to_vec(&kv)).unwrap();
        w.record(META_APPLIED_INDEX, &50u64.to_be_bytes()).unwrap();
        w.record(META_KEY_COUNT, &1i64.to_be_bytes()).unwrap();
        w.record(META_REV, &9i64.to_be_bytes()).unwrap();
        w.record(META_SIZE_WRITTEN, &77i64.to_be_bytes()).unwrap();
        std::fs::write(&path, w.finish().unwrap().0).unwrap();
        assert_eq!((status(&path).unwrap().revision, status(&path).unwrap().total_keys), (9, 1));
        let o = opts(dir.path(), 0, false);
        restore(&path, &o).unwrap();
        let db = crate::db_dir::reopen(crate::db_dir::active(&o.data_dir).unwrap());
        let tree = db.open_tree("state").unwrap();
        for k in [META_APPLIED_INDEX, META_REV, META_KEY_COUNT, META_SIZE_WRITTEN] {
            assert!(!tree.contains_key(k).unwrap());
        }
        assert!(tree.contains_key(META_STATE).unwrap());
        assert!(!tree.contains_key(b"ka").unwrap(), "the live copy is not restored");
        let s = Store::open(tree).unwrap();
        assert_eq!((s.current_revision(), s.key_count().unwrap(), s.applied_index(), s.size_on_disk()), (9, 1, 2, 77));
        let all = RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() };
        assert_eq!(s.range(&all).unwrap().kvs[0].value, b"1");
    }

    #[test]
    fn corrupt_and_truncated_files_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let snap = snapshot_with_keys(dir.path(), 5);
        let bytes = std::fs::read(&snap).unwrap();
        let mut flipped = bytes.clone();
        flipped[100] ^= 1;
        let bad = dir.path().join("flipped.snap");
        std::fs::write(&bad, &flipped).unwrap();
        let o = opts(dir.path(), 0, false);
        assert!(restore(&bad, &o).is_err());
        assert!(!o.data_dir.exists());
        let cut = dir.path().join("cut.snap");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert!(restore(&cut, &o).is_err());
        assert!(status(&cut).is_err());
        assert!(!o.data_dir.exists());
    }
}
