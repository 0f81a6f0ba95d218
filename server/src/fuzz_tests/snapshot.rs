//! Snapshot files: arbitrary, truncated and bit-flipped files give a clear error and never a panic; a restore
//! from a bad file writes nothing (the data dir is absent afterwards).

use std::path::Path;

use proptest::prelude::*;

use crate::error::Error;
use crate::mvcc::{META_COMPACT_REV, META_REV, META_STATE};
use crate::snapshot::{restore, RestoreOptions, SnapshotReader, SnapshotWriter};

fn read_all(bytes: &[u8]) -> crate::error::Result<usize> {
    let mut r = SnapshotReader::new(bytes)?;
    let mut n = 0;
    while r.next_record()?.is_some() {
        n += 1;
    }
    r.finish(false)?;
    Ok(n)
}

fn records() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let meta = prop_oneof![Just(META_REV.to_vec()), Just(META_COMPACT_REV.to_vec()), Just(META_STATE.to_vec())];
    let key = prop_oneof![meta, prop::collection::vec(any::<u8>(), 0..8)];
    let value = prop_oneof![
        any::<i64>().prop_map(|v| v.to_be_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..16),
        prop::collection::vec(any::<u8>(), 32..=32),
    ];
    prop::collection::vec((key, value), 0..8)
}

fn file(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut w = SnapshotWriter::new(Vec::new(), 7, 3).unwrap();
    for (k, v) in records {
        w.record(k, v).unwrap();
    }
    w.finish().unwrap().0
}

fn opts(dir: &Path, skip_hash_check: bool, bump_revision: u64) -> RestoreOptions {
    RestoreOptions {
        name: "f1".into(),
        data_dir: dir.join("restored"),
        initial_cluster: "f1=http://127.0.0.1:1".into(),
        initial_cluster_token: "fuzz".into(),
        initial_advertise_peer_urls: vec!["http://127.0.0.1:1".into()],
        skip_hash_check,
        bump_revision,
        mark_compacted: false,
    }
}

/// Restores `bytes`; on failure the error is a clear one and the data dir does not exist.
fn restore_bytes(bytes: &[u8], skip_hash_check: bool, bump: u64) -> Result<bool, TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("in.snap");
    std::fs::write(&snap, bytes).unwrap();
    let o = opts(dir.path(), skip_hash_check, bump);
    match restore(&snap, &o) {
        Ok(()) => Ok(true),
        Err(e) => {
            prop_assert!(matches!(e, Error::InvalidArgument(_)), "unclear error {e:?}");
            prop_assert!(!o.data_dir.exists(), "a failed restore left {:?} behind", o.data_dir);
            Ok(false)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_without_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..1200), magic in any::<bool>()) {
        if magic && bytes.len() >= 12 {
            bytes[..12].copy_from_slice(crate::snapshot::MAGIC);
        }
        // Random bytes essentially never carry a matching sha256.
        prop_assert!(read_all(&bytes).is_err());
    }

    #[test]
    fn truncated_or_flipped_files_are_refused(
        recs in records(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>(), truncate in any::<bool>()
    ) {
        let good = file(&recs);
        prop_assert_eq!(read_all(&good).ok(), Some(recs.len()));
        let bad = if truncate {
            good[..cut.index(good.len())].to_vec()
        } else {
            let mut b = good.clone();
            let at = flip.0.index(b.len());
            b[at] ^= flip.1.max(1);
            b
        };
        match read_all(&bad) {
            Err(Error::InvalidArgument(m)) => prop_assert!(m.starts_with("snapshot file is corrupt or truncated"), "{}", m),
            other => prop_assert!(false, "a damaged file was accepted: {:?}", other),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn restore_of_a_damaged_file_writes_nothing(
        recs in records(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()
    ) {
        let good = file(&recs);
        let mut flipped = good.clone();
        flipped[flip.0.index(good.len())] ^= flip.1.max(1);
        prop_assert!(!restore_bytes(&flipped, false, 0)?);
        prop_assert!(!restore_bytes(&good[..cut.index(good.len())], false, 0)?);
    }

    /// With --skip-hash-check only the structure protects restore: hostile records (revisions anywhere in
    /// i64) and any --bump-revision must still give Ok or a clear error.
    #[test]
    fn restore_of_hostile_records_without_hash_check_never_panics(recs in records(), bump in any::<u64>()) {
        restore_bytes(&file(&recs), true, bump)?;
    }
}
