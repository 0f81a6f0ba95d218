//! Tests of the raft log over the WAL: appends, conflicts, compaction, segments, reopen, and conversion of
//! a log kept in sled by older versions.

use super::*;
use raft::Storage as _;

fn entry(index: u64, term: u64) -> Entry {
    Entry { index, term, ..Default::default() }
}

#[test]
fn append_truncates_conflicts_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = crate::db_dir::reopen(dir.path());
        let mut s = RaftStorage::open(&db, &dir.path().join("wal")).unwrap();
        assert!(s.is_empty());
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
        s.append(&[entry(2, 2)]).unwrap();
        assert_eq!(s.last_index().unwrap(), 2);
        assert_eq!(s.term(2).unwrap(), 2);
        let hs = HardState { term: 2, commit: 2, ..Default::default() };
        s.set_hard_state(&hs).unwrap();
        s.flush().unwrap();
    }
    let db = crate::db_dir::reopen(dir.path());
    let s = RaftStorage::open(&db, &dir.path().join("wal")).unwrap();
    assert_eq!(s.last_index().unwrap(), 2);
    assert_eq!(s.hard_state().commit, 2);
    assert_eq!(s.entries(1, 3, None, GetEntriesContext::empty(false)).unwrap().len(), 2);
}

#[test]
fn compaction_moves_first_index_and_keeps_term() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let wal = tempfile::tempdir().unwrap();
    let mut s = RaftStorage::open(&db, wal.path()).unwrap();
    s.append(&(1..=10).map(|i| entry(i, 1 + i / 5)).collect::<Vec<_>>()).unwrap();
    s.compact(5).unwrap();
    assert_eq!(s.first_index().unwrap(), 6);
    assert_eq!(s.term(5).unwrap(), 2);
    assert!(matches!(s.term(4), Err(raft::Error::Store(StorageError::Compacted))));
    assert!(s.entries(5, 7, None, GetEntriesContext::empty(false)).is_err());
    assert_eq!(s.entries(6, 11, None, GetEntriesContext::empty(false)).unwrap().len(), 5);
    // max_size still returns at least one entry
    assert_eq!(s.entries(6, 11, 1, GetEntriesContext::empty(false)).unwrap().len(), 1);
}

/// The in-memory tail answers exactly as the WAL does: after conflicting appends, a compaction, and for
/// indexes older than the tail (served from sled).
#[test]
fn tail_cache_matches_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::db_dir::reopen(dir.path());
    let wal = dir.path().join("wal");
    let mut s = RaftStorage::open(&db, &wal).unwrap();
    let data = |i: u64| bytes::Bytes::from(vec![i as u8; (i % 7) as usize]);
    let mk = |i: u64, t: u64| Entry { index: i, term: t, data: data(i), ..Default::default() };
    s.append(&(1..=TAIL_ENTRIES as u64 + 100).map(|i| mk(i, 1)).collect::<Vec<_>>()).unwrap();
    s.append(&(50..=60).map(|i| mk(i, 2)).collect::<Vec<_>>()).unwrap(); // truncates 50.., tail restarts
    s.append(&(61..=70).map(|i| mk(i, 3)).collect::<Vec<_>>()).unwrap();
    s.append(&[mk(65, 4)]).unwrap(); // conflict inside the tail
    s.compact(10).unwrap();
    let fresh = RaftStorage::open(&db, &wal).unwrap();
    assert_eq!(s.last_index().unwrap(), 65);
    assert_eq!(fresh.last_index().unwrap(), 65);
    let ctx = || GetEntriesContext::empty(false);
    for i in 10..=65 {
        assert_eq!(s.term(i).unwrap(), fresh.term(i).unwrap_or(s.compacted.1), "term {i}");
    }
    for (lo, hi) in [(11, 66), (11, 50), (49, 52), (50, 66), (64, 66), (65, 66), (66, 66)] {
        for max in [None, Some(0), Some(40), Some(u64::MAX)] {
            let a = s.entries(lo, hi, max, ctx()).unwrap();
            let b = fresh.entries(lo, hi, max, ctx()).unwrap();
            assert_eq!(a, b, "entries({lo}, {hi}, {max:?})");
        }
    }
    assert!(matches!(s.term(66), Err(raft::Error::Store(StorageError::Unavailable))));
    assert!(s.entries(60, 67, None, ctx()).is_err());
    assert!(s.entries(10, 12, None, ctx()).is_err());
}

/// A log kept in sled by older versions — entries as `e` keys (the first layout) or as `b` records,
/// with `hs` and `ci` — moves to the WAL on open, reads the same, and leaves no log keys in sled; appends,
/// truncation and compaction then work on the WAL.
#[test]
fn a_log_kept_in_sled_moves_to_the_wal() {
    let mk = |i: u64, t: u64| Entry { index: i, term: t, data: vec![i as u8; 3].into(), ..Default::default() };
    for records in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        {
            let db = crate::db_dir::reopen(dir.path());
            let tree = db.open_tree("raft").unwrap();
            if records {
                let es: Vec<Entry> = (6..=40u64).map(|i| mk(i, 1 + i / 20)).collect();
                for (at, _, rec) in
                    encode_records(&es[..20]).unwrap().into_iter().chain(encode_records(&es[20..]).unwrap())
                {
                    let mut k = vec![b'b'];
                    k.extend_from_slice(&at.to_be_bytes());
                    tree.insert(k, rec).unwrap();
                }
            } else {
                for i in 6..=40u64 {
                    let mut k = vec![b'e'];
                    k.extend_from_slice(&i.to_be_bytes());
                    tree.insert(k, mk(i, 1 + i / 20).write_to_bytes().unwrap()).unwrap();
                }
            }
            tree.insert(COMPACTED, point_bytes(5, 1)).unwrap();
            let hs = HardState { term: 3, vote: 2, commit: 33, ..Default::default() };
            tree.insert(HARD_STATE, hs.write_to_bytes().unwrap()).unwrap();
            db.flush().unwrap();
        }
        let db = crate::db_dir::reopen(dir.path());
        let mut s = RaftStorage::open(&db, &wal).unwrap();
        for prefix in [&b"e"[..], b"b", b"hs", b"ci"] {
            assert_eq!(s.tree.scan_prefix(prefix).count(), 0, "{prefix:?} left in sled (records {records})");
        }
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (6, 40));
        assert_eq!((s.hard_state().term, s.hard_state().vote, s.hard_state().commit), (3, 2, 33));
        let ctx = || GetEntriesContext::empty(false);
        let want: Vec<Entry> = (6..=40).map(|i| mk(i, 1 + i / 20)).collect();
        assert_eq!(s.entries(6, 41, None, ctx()).unwrap(), want);
        assert_eq!(s.term(5).unwrap(), 1);
        assert_eq!(s.term(40).unwrap(), 3);
        s.append(&[mk(30, 7), mk(31, 7)]).unwrap();
        s.compact(29).unwrap();
        drop(s);
        let s = RaftStorage::open(&db, &wal).unwrap();
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (30, 31));
        assert_eq!(s.entries(30, 32, None, ctx()).unwrap(), vec![mk(30, 7), mk(31, 7)]);
        assert_eq!(s.term(29).unwrap(), 2);
        assert_eq!(s.hard_state().commit, 33);
    }
}

/// A crash after the converted WAL was renamed into place but before the sled keys went: the WAL is the
/// log, the stale keys are removed.
#[test]
fn stale_sled_log_keys_next_to_a_wal_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let db = crate::db_dir::reopen(dir.path());
    {
        let mut s = RaftStorage::open(&db, &wal).unwrap();
        s.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        s.flush().unwrap();
    }
    let tree = db.open_tree("raft").unwrap();
    tree.insert(b"e\0\0\0\0\0\0\0\x01", entry(1, 9).write_to_bytes().unwrap()).unwrap();
    tree.insert(HARD_STATE, HardState { term: 9, ..Default::default() }.write_to_bytes().unwrap()).unwrap();
    let s = RaftStorage::open(&db, &wal).unwrap();
    assert_eq!(s.term(1).unwrap(), 1);
    assert_eq!(s.hard_state().term, 0);
    assert_eq!(tree.len(), 0);
}

/// Small segments: appends cut new ones, compaction deletes the ones it no longer needs, a snapshot reset
/// keeps only the current one, and every reopen reads the same log and hard state.
#[test]
fn segments_are_cut_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let db = crate::db_dir::reopen(dir.path());
    let gen = Generation::detached(db.clone());
    let mut s = RaftStorage::open_sized(&gen, &wal, 2048).unwrap();
    let mk = |i: u64| Entry { index: i, term: 2, data: vec![i as u8; 100].into(), ..Default::default() };
    for i in 1..=200u64 {
        s.append(&[mk(i)]).unwrap();
        s.set_hard_state(&HardState { term: 2, vote: 1, commit: i, ..Default::default() }).unwrap();
    }
    s.flush().unwrap();
    let cut = s.wal_segments().len();
    assert!(cut > 5, "2 KiB segments must have been cut: {:?}", s.wal_segments());
    s.compact(150).unwrap();
    assert!(s.wal_segments().len() < cut, "compaction must delete segments: {:?}", s.wal_segments());
    let on_disk = std::fs::read_dir(&wal).unwrap().count();
    assert_eq!(on_disk, s.wal_segments().len());
    let reopened = RaftStorage::open_sized(&gen, &wal, 2048).unwrap();
    assert_eq!((reopened.first_index().unwrap(), reopened.last_index().unwrap()), (151, 200));
    assert_eq!(reopened.hard_state().commit, 200);
    let ctx = || GetEntriesContext::empty(false);
    assert_eq!(reopened.entries(151, 201, None, ctx()).unwrap(), (151..=200).map(mk).collect::<Vec<_>>());
    assert_eq!(reopened.term(150).unwrap(), 2);
    drop(reopened);
    let mut meta = SnapshotMetadata { index: 500, term: 4, ..Default::default() };
    meta.mut_conf_state().voters = vec![1, 2, 3];
    s.apply_snapshot_meta(&meta).unwrap();
    assert_eq!(s.wal_segments().len(), 1);
    s.append(&[Entry { index: 501, term: 4, ..Default::default() }]).unwrap();
    s.flush().unwrap();
    drop(s);
    let s = RaftStorage::open_sized(&gen, &wal, 2048).unwrap();
    assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (501, 501));
    assert_eq!(s.term(500).unwrap(), 4);
    assert_eq!((s.hard_state().term, s.hard_state().commit), (4, 500));
    assert_eq!(s.conf_state().voters, vec![1, 2, 3]);
}

/// Many small appends, conflicting rewrites in the middle of records and compactions at record
/// boundaries and inside records agree with a model of the log, before and after a reopen.
#[test]
fn records_agree_with_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::db_dir::reopen(dir.path());
    let wal = dir.path().join("wal");
    let mut s = RaftStorage::open_sized(&Generation::detached(db.clone()), &wal, 4096).unwrap();
    let mk = |i: u64, t: u64| Entry { index: i, term: t, data: vec![(i * t) as u8; 5].into(), ..Default::default() };
    let mut model: Vec<Entry> = Vec::new(); // entries 1..
    let mut compacted = 0u64;
    let ctx = || GetEntriesContext::empty(false);
    let mut seed = 7u64;
    let mut rnd = |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for round in 0..300u64 {
        let last = model.len() as u64;
        let first = if last > compacted + 3 && rnd(4) == 0 { last - rnd(3) } else { last + 1 };
        let n = 1 + rnd(5);
        let es: Vec<Entry> = (first..first + n).map(|i| mk(i, 1 + round)).collect();
        s.append(&es).unwrap();
        model.truncate((first - 1) as usize);
        model.extend(es);
        if rnd(10) == 0 && model.len() as u64 > compacted + 5 {
            let to = model.len() as u64 - 1 - rnd(4);
            if to > compacted {
                compacted = to;
                s.compact(to).unwrap();
            }
        }
        let fresh = RaftStorage::open_sized(&Generation::detached(db.clone()), &wal, 4096).unwrap();
        for st in [&s, &fresh] {
            assert_eq!(st.last_index().unwrap(), model.len() as u64);
            assert_eq!(st.first_index().unwrap(), compacted + 1);
            let lo = compacted + 1 + rnd(model.len() as u64 - compacted);
            let want: Vec<Entry> = model[(lo - 1) as usize..].to_vec();
            assert_eq!(st.entries(lo, model.len() as u64 + 1, None, ctx()).unwrap(), want, "round {round}");
            for i in lo..=model.len() as u64 {
                assert_eq!(st.term(i).unwrap(), model[(i - 1) as usize].term);
            }
        }
    }
}
