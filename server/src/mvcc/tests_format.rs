//! Store-format tests: trees written by earlier builds open in the current format, a partly upgraded tree
//! finishes its upgrade, and a tree from a newer build is refused.

use prost::Message;
use raftcd_proto::etcdserverpb::RangeRequest;

use super::tests::{del, new_store, put, rreq};
use super::{
    CommitState, Store, META_APPLIED_INDEX, META_FORMAT, META_KEY_COUNT, META_REV, META_SIZE_WRITTEN, META_STATE,
    P_LIVE_LEGACY, STORE_FORMAT,
};
use crate::error::Error;

fn all() -> RangeRequest {
    rreq(b"\0", b"\0", 0)
}

fn format_of(tree: &sled::Tree) -> Option<u64> {
    tree.get(META_FORMAT).unwrap().map(|v| u64::from_be_bytes(v[..].try_into().unwrap()))
}

fn live_copies(tree: &sled::Tree) -> usize {
    tree.scan_prefix([P_LIVE_LEGACY]).count()
}

/// Rewrites the tree of `s` as an earlier build held it: a live copy `k | key -> KeyValue` of every live key
/// (counted in the bytes written, as those builds counted it), and the commit state in four keys with no
/// format mark (`format` None) or in `mstate` with the mark `format`.
fn rewrite_as_earlier(s: &Store, format: Option<u64>) -> CommitState {
    let tree = s.tree();
    let mut state = CommitState::decode(&tree.get(META_STATE).unwrap().unwrap()).unwrap();
    for kv in s.range(&all()).unwrap().kvs {
        let k = [&[P_LIVE_LEGACY][..], &kv.key].concat();
        let v = kv.encode_to_vec();
        state.size_written += (k.len() + v.len()) as i64;
        tree.insert(k, v).unwrap();
    }
    match format {
        None => {
            tree.remove(META_FORMAT).unwrap();
            tree.remove(META_STATE).unwrap();
            tree.insert(META_APPLIED_INDEX, &state.applied_index.to_be_bytes()).unwrap();
            tree.insert(META_REV, &state.revision.to_be_bytes()).unwrap();
            tree.insert(META_KEY_COUNT, &state.key_count.to_be_bytes()).unwrap();
            tree.insert(META_SIZE_WRITTEN, &state.size_written.to_be_bytes()).unwrap();
        }
        Some(f) => {
            tree.insert(META_FORMAT, &f.to_be_bytes()).unwrap();
            tree.insert(META_STATE, &state.encode()).unwrap();
        }
    }
    state
}

/// Stores of format 1 (four state keys, live copies) and 2 (`mstate`, live copies) open with the same
/// revision, applied index, key count, size and contents: opening writes the mark and the commit state,
/// the background removal then takes the live copies (and their bytes) away, and a second open finds
/// nothing to do.
#[test]
fn stores_of_earlier_formats_open_in_the_current_one() {
    for format in [None, Some(2)] {
        let (s, _db) = new_store();
        put(&s, "a", "1");
        put(&s, "b", "2");
        put(&s, "b", "3");
        del(&s, "a", "");
        put(&s, "c\0", "4");
        let before = s.range(&all()).unwrap();
        let (size, hash) = (s.size_on_disk(), s.hash_kv(0).unwrap());
        let state = rewrite_as_earlier(&s, format);
        assert_eq!(live_copies(&s.tree()), 2);
        let tree = s.tree();
        let up = Store::open(tree.clone()).unwrap();
        assert_eq!(format_of(&tree), Some(STORE_FORMAT), "{format:?}");
        assert_eq!(up.range(&all()).unwrap(), before, "the live copies are not read");
        assert_eq!(up.remove_live_copies().unwrap(), 2);
        assert_eq!(live_copies(&tree), 0, "{format:?}");
        assert_eq!(up.remove_live_copies().unwrap(), 0);
        for k in [META_APPLIED_INDEX, META_REV, META_KEY_COUNT, META_SIZE_WRITTEN] {
            assert!(!tree.contains_key(k).unwrap(), "{} is left", String::from_utf8_lossy(k));
        }
        assert_eq!((up.applied_index(), up.current_revision(), up.key_count().unwrap()), (5, 6, 2));
        assert_eq!(up.current_revision(), state.revision);
        assert_eq!(up.size_on_disk(), size, "the live copies' bytes are taken off again");
        assert_eq!(up.range(&all()).unwrap(), before);
        assert_eq!(up.hash_kv(0).unwrap(), hash);
        assert_eq!(put(&up, "d", "5"), 7);
        let again = Store::open(tree.clone()).unwrap();
        assert_eq!(again.range(&all()).unwrap().count, 3);
    }
}

/// A crash while the live copies are being removed leaves some of them: the next start removes the rest.
/// Until then a read never takes a stale live copy for the value (they are not read at all).
#[test]
fn an_interrupted_removal_of_live_copies_finishes_later() {
    let (s, _db) = new_store();
    for i in 0..30 {
        put(&s, &format!("k{i:02}"), "old");
    }
    rewrite_as_earlier(&s, Some(STORE_FORMAT));
    let tree = s.tree();
    // As if the first batches were in: the mark is written first, the copies go in batches.
    for k in tree.scan_prefix([P_LIVE_LEGACY]).keys().take(10) {
        tree.remove(k.unwrap()).unwrap();
    }
    put(&s, "k05", "new");
    assert_eq!(s.range(&rreq(b"k05", b"", 0)).unwrap().kvs[0].value, b"new");
    let up = Store::open(tree.clone()).unwrap();
    assert_eq!(live_copies(&tree), 20);
    assert_eq!(up.range(&rreq(b"k05", b"", 0)).unwrap().kvs[0].value, b"new");
    assert_eq!(up.remove_live_copies().unwrap(), 20);
    assert_eq!(live_copies(&tree), 0);
    assert_eq!(up.range(&all()).unwrap().count, 30);
    assert_eq!(up.range(&rreq(b"k05", b"", 0)).unwrap().kvs[0].value, b"new");
}

/// A store written by a newer build (a higher format mark) is refused with a clear error instead of being
/// misread: a downgrade past a format change stops at start-up.
#[test]
fn a_store_in_a_newer_format_is_refused() {
    let (s, _db) = new_store();
    put(&s, "a", "1");
    let tree = s.tree();
    tree.insert(META_FORMAT, &(STORE_FORMAT + 1).to_be_bytes()).unwrap();
    match Store::open(tree.clone()) {
        Err(Error::Storage(m)) => assert!(m.contains("store format 4, newer than this build reads (3)"), "{m}"),
        other => panic!("opened a newer format: {:?}", other.map(|s| s.current_revision())),
    }
    tree.insert(META_FORMAT, &STORE_FORMAT.to_be_bytes()).unwrap();
    assert_eq!(Store::open(tree).unwrap().current_revision(), 2);
}
