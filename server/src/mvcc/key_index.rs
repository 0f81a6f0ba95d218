//! The history keyspace `h`: every version of every key, ordered by (key, revision), so that a read at
//! any revision, a compaction and a hash resolve with ordered scans and no in-memory index.
//!
//! # Encoding
//! ```text
//! h | esc(userkey) | main (u64 BE) | sub (u64 BE)   ->   kind (0 = put, 1 = tombstone) | KeyValue (protobuf)
//! esc(k) = k with each 0x00 written as 0x00 0xFF, then the terminator 0x00 0x01
//! ```
//! The terminator sorts below any escaped byte (`0x00 0x01` < `0x00 0xFF` < any byte >= 1), so byte order of
//! encoded keys is the order of (userkey, revision), `esc` is prefix-free, and the history of one key is the
//! contiguous run of entries starting with `h | esc(key)` (its *history prefix*). A tombstone's KeyValue is
//! `{key, mod_revision: delete revision}`, every other field zero.
//!
//! # Worked example
//! Key `foo` (history prefix `h foo 00 01`) through put / put / delete / put; the store starts at revision 1:
//! ```text
//! rev 2  put foo=a   h|foo|2|0 -> put       {create 2, mod 2, version 1, value "a"}
//! rev 3  put foo=b   h|foo|3|0 -> put       {create 2, mod 3, version 2, value "b"}
//! rev 4  delete foo  h|foo|4|0 -> tombstone {mod 4}
//! rev 5  put foo=c   h|foo|5|0 -> put       {create 5, mod 5, version 1, value "c"}
//! the newest record, put@5, is foo's live value (reads at the current revision)
//! ```
//! A read at revision R takes the newest record whose main revision is <= R (one reverse seek from
//! `h|foo|R+1|0`): if it is a put, that is the key's value at R; a tombstone or no record means absent.
//! ```text
//! R = 1 -> no record      -> absent          R = 4 -> tombstone@4 -> absent
//! R = 2 -> put@2 -> "a", version 1           R = 5 -> put@5 -> "c", create 5, version 1
//! R = 3 -> put@3 -> "b", version 2, create 2 (create_revision survives the update)
//! ```
//! Compaction at C keeps, per key, every record > C plus the newest record <= C unless it is a tombstone;
//! a read at any R >= C still finds the same newest record <= R (or, for a dropped tombstone, nothing):
//! ```text
//! C = 3 -> drop @2 (superseded by @3)              keep @3 @4 @5   reads at 3, 4, 5 unchanged
//! C = 4 -> drop @2 @3 (superseded), @4 (tombstone)  keep @5         read at 4: no record <= 4 -> absent, as before
//! C = 5 -> drop @2 @3 @4                            keep @5
//! ```

use prost::Message;
use raftcd_proto::mvccpb::KeyValue;

use super::revision::{Revision, REVISION_LEN};
use super::P_HIST;
use crate::error::{Error, Result};

/// What a history record says about its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The key was written; the record holds its KeyValue.
    Put = 0,
    /// The key was deleted at this revision.
    Tombstone = 1,
}

/// Appends `esc(key)` without the terminator.
pub fn esc_body(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

/// `h | esc(key)`: every history record of `key` starts with it, and nothing else does.
pub fn history_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 3 + REVISION_LEN);
    out.push(P_HIST);
    esc_body(&mut out, key);
    out.extend_from_slice(&[0, 1]);
    out
}

/// The history key of `key` at `rev`.
pub fn history_key(key: &[u8], rev: Revision) -> Vec<u8> {
    let mut out = history_prefix(key);
    out.extend_from_slice(&rev.to_bytes());
    out
}

/// A history prefix followed by `rev`.
pub fn at(prefix: &[u8], rev: Revision) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + REVISION_LEN);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&rev.to_bytes());
    out
}

/// The smallest history key above every record of the key with history prefix `prefix`.
pub fn after_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    if let Some(last) = out.last_mut() {
        // The prefix ends with the terminator 0x00 0x01; 0x00 0x02 is above every record of this key and
        // below the next key (whose escaped byte at this position is 0xFF or >= 1 one byte earlier).
        *last = last.saturating_add(1);
    }
    out
}

/// Splits a full history key into (history prefix, revision).
pub fn split_history_key(k: &[u8]) -> Result<(&[u8], Revision)> {
    if k.len() < 3 + REVISION_LEN || k[0] != P_HIST {
        return Err(corrupt("history key too short"));
    }
    let (prefix, rev) = k.split_at(k.len() - REVISION_LEN);
    if !prefix.ends_with(&[0, 1]) {
        return Err(corrupt("history key without terminator"));
    }
    Ok((prefix, Revision::from_bytes(rev)?))
}

/// The user key of a history prefix (`h | esc(key)`).
pub fn user_key(prefix: &[u8]) -> Result<Vec<u8>> {
    let body = prefix
        .strip_prefix(&[P_HIST])
        .and_then(|p| p.strip_suffix(&[0, 1]))
        .ok_or_else(|| corrupt("bad history prefix"))?;
    let mut out = Vec::with_capacity(body.len());
    let mut it = body.iter();
    while let Some(&b) = it.next() {
        out.push(b);
        if b == 0 && it.next() != Some(&0xFF) {
            return Err(corrupt("bad escape in history key"));
        }
    }
    Ok(out)
}

/// A record value: kind byte + encoded KeyValue.
pub fn encode_record(kind: Kind, kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + kv.encoded_len());
    out.push(kind as u8);
    kv.encode(&mut out).ok();
    out
}

/// The kind byte of a record.
pub fn record_kind(v: &[u8]) -> Result<Kind> {
    match v.first() {
        Some(0) => Ok(Kind::Put),
        Some(1) => Ok(Kind::Tombstone),
        _ => Err(corrupt("bad history record kind")),
    }
}

/// Decodes a record value.
pub fn decode_record(v: &[u8]) -> Result<(Kind, KeyValue)> {
    let kind = record_kind(v)?;
    Ok((kind, decode_kv(&v[1..])?))
}

/// Decodes a protobuf KeyValue stored by the store.
pub fn decode_kv(v: &[u8]) -> Result<KeyValue> {
    KeyValue::decode(v).map_err(|e| Error::Storage(format!("mvcc: corrupt KeyValue: {e}")))
}

/// The KeyValue a tombstone record holds and a DELETE event carries.
pub fn tombstone_kv(key: &[u8], main: i64) -> KeyValue {
    KeyValue { key: key.to_vec(), mod_revision: main, ..Default::default() }
}

fn corrupt(what: &str) -> Error {
    Error::Storage(format!("mvcc: {what}"))
}

/// A key range in etcd's `(key, range_end)` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRange<'a> {
    /// Exactly one key (`range_end` empty).
    Single(&'a [u8]),
    /// Every key >= the bound (`range_end == "\0"`).
    From(&'a [u8]),
    /// The half-open `[key, range_end)`, non-empty.
    Between(&'a [u8], &'a [u8]),
    /// Contains no key (`range_end <= key`).
    Empty,
}

impl<'a> KeyRange<'a> {
    /// Interprets etcd's `key` / `range_end` pair.
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> KeyRange<'a> {
        if range_end.is_empty() {
            KeyRange::Single(key)
        } else if range_end == [0] {
            KeyRange::From(key)
        } else if range_end > key {
            KeyRange::Between(key, range_end)
        } else {
            KeyRange::Empty
        }
    }

    /// Whether `k` lies in the range.
    pub fn contains(&self, k: &[u8]) -> bool {
        match *self {
            KeyRange::Single(key) => k == key,
            KeyRange::From(key) => k >= key,
            KeyRange::Between(key, end) => k >= key && k < end,
            KeyRange::Empty => false,
        }
    }

    /// `[lo, hi)` over the `h` keyspace covering every record of every key in the range, None when empty.
    pub fn history_bounds(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        match *self {
            KeyRange::Single(key) => {
                let lo = history_prefix(key);
                let hi = after_prefix(&lo);
                Some((lo, hi))
            }
            KeyRange::From(key) => Some((history_prefix(key), vec![P_HIST + 1])),
            KeyRange::Between(key, end) => Some((history_prefix(key), history_prefix(end))),
            KeyRange::Empty => None,
        }
    }
}

/// The newest record of the key with history prefix `prefix` whose revision is < `below`, read in ONE
/// reverse step (atomic with respect to any one batch, including a compaction chunk).
pub fn newest_below(tree: &sled::Tree, prefix: &[u8], below: Revision) -> Result<Option<(Revision, sled::IVec)>> {
    match tree.range(prefix.to_vec()..at(prefix, below)).next_back() {
        None => Ok(None),
        Some(r) => {
            let (k, v) = r?;
            let (_, rev) = split_history_key(&k)?;
            Ok(Some((rev, v)))
        }
    }
}

/// The newest record with main revision <= `rev`: what the key looked like at `rev`.
pub fn newest_at(tree: &sled::Tree, prefix: &[u8], rev: i64) -> Result<Option<(Revision, sled::IVec)>> {
    newest_below(tree, prefix, Revision::new(rev.saturating_add(1), 0))
}

/// The history prefix of the first key with a record in `[from, hi)`, one forward step.
pub fn next_prefix(tree: &sled::Tree, from: &[u8], hi: &[u8]) -> Result<Option<Vec<u8>>> {
    if from >= hi {
        return Ok(None);
    }
    match tree.range(from.to_vec()..hi.to_vec()).next() {
        None => Ok(None),
        Some(r) => {
            let (k, _) = r?;
            let (prefix, _) = split_history_key(&k)?;
            Ok(Some(prefix.to_vec()))
        }
    }
}

/// `(history prefix, user key, revision, record) -> keep going?`.
pub type HistoryVisit<'v> = dyn FnMut(&[u8], &[u8], Revision, &[u8]) -> Result<bool> + 'v;

/// Calls `f(history prefix, user key, revision of the newest record <= rev, record)` for every key in
/// `range` with a record at or below `rev`, in key order. `f` returns false to stop.
pub fn for_each_at(tree: &sled::Tree, range: KeyRange<'_>, rev: i64, f: &mut HistoryVisit<'_>) -> Result<()> {
    let Some((mut pos, hi)) = range.history_bounds() else {
        return Ok(());
    };
    while let Some(prefix) = next_prefix(tree, &pos, &hi)? {
        if let Some((r, v)) = newest_at(tree, &prefix, rev)? {
            let key = user_key(&prefix)?;
            if !f(&prefix, &key, r, &v)? {
                return Ok(());
            }
        }
        pos = after_prefix(&prefix);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<Vec<u8>> {
        let mut ks: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            vec![0],
            vec![0, 0],
            vec![0, 1],
            vec![0, 0xFF],
            vec![1],
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"a\0\0".to_vec(),
            b"a\0b".to_vec(),
            b"a\x01".to_vec(),
            b"ab".to_vec(),
            b"b".to_vec(),
            vec![0xFF],
            vec![0xFF, 0],
            vec![0xFF, 0xFF],
        ];
        ks.sort();
        ks
    }

    #[test]
    fn encoded_order_is_key_then_revision_order() {
        let revs = [Revision::new(0, 0), Revision::new(1, 0), Revision::new(1, 1), Revision::new(300, 0)];
        let mut plain = Vec::new();
        for k in keys() {
            for r in revs {
                plain.push((k.clone(), r));
            }
        }
        let encoded: Vec<Vec<u8>> = plain.iter().map(|(k, r)| history_key(k, *r)).collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(encoded, sorted, "byte order must equal (key, revision) order");
        for ((k, r), e) in plain.iter().zip(&encoded) {
            let (prefix, rev) = split_history_key(e).unwrap();
            assert_eq!(rev, *r);
            assert_eq!(&user_key(prefix).unwrap(), k);
            assert_eq!(prefix, history_prefix(k).as_slice());
        }
    }

    #[test]
    fn bounds_cover_exactly_the_range() {
        let ks = keys();
        let ranges: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"a".to_vec(), vec![]),
            (b"a".to_vec(), vec![0]),
            (vec![0], vec![0]),
            (b"a".to_vec(), b"b".to_vec()),
            (b"a\0".to_vec(), b"a\x01".to_vec()),
            (vec![0], vec![0, 0xFF]),
            (b"b".to_vec(), b"a".to_vec()),
        ];
        for (key, end) in &ranges {
            let range = KeyRange::new(key, end);
            for k in &ks {
                let h = history_key(k, Revision::new(7, 3));
                let in_h = range.history_bounds().is_some_and(|(lo, hi)| h >= lo && h < hi);
                assert_eq!(in_h, range.contains(k), "h {key:?}..{end:?} {k:?}");
            }
        }
        assert_eq!(KeyRange::new(b"b", b"a"), KeyRange::Empty);
        assert_eq!(KeyRange::new(b"b", b"b"), KeyRange::Empty);
    }

    #[test]
    fn corrupt_keys_and_records_are_storage_errors() {
        assert!(matches!(user_key(b"hab"), Err(Error::Storage(_))));
        assert!(matches!(user_key(&[P_HIST, b'a', 0, 7, 0, 1]), Err(Error::Storage(_))));
        assert!(matches!(split_history_key(b"h"), Err(Error::Storage(_))));
        assert!(matches!(decode_record(&[]), Err(Error::Storage(_))));
        assert!(matches!(decode_record(&[9, 1]), Err(Error::Storage(_))));
        assert!(matches!(decode_record(&[0, 0xFF, 0xFF]), Err(Error::Storage(_))));
    }

    /// The worked example of the module documentation, resolved with the same lookups the store uses.
    #[test]
    fn worked_example_resolves_reads_and_compaction() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let put = |rev: i64, create: i64, version: i64, value: &str| {
            let kv = KeyValue {
                key: b"foo".to_vec(),
                create_revision: create,
                mod_revision: rev,
                version,
                value: value.as_bytes().to_vec(),
                lease: 0,
            };
            tree.insert(history_key(b"foo", Revision::new(rev, 0)), encode_record(Kind::Put, &kv)).unwrap();
        };
        put(2, 2, 1, "a");
        put(3, 2, 2, "b");
        tree.insert(history_key(b"foo", Revision::new(4, 0)), encode_record(Kind::Tombstone, &tombstone_kv(b"foo", 4)))
            .unwrap();
        put(5, 5, 1, "c");
        // A neighbour whose escaped key starts with foo's bytes must not leak into foo's history.
        tree.insert(history_key(b"foo\0", Revision::new(1, 0)), encode_record(Kind::Put, &KeyValue::default()))
            .unwrap();
        let prefix = history_prefix(b"foo");
        let read = |rev| -> Option<(String, i64, i64)> {
            let (_, v) = newest_at(&tree, &prefix, rev).unwrap()?;
            match decode_record(&v).unwrap() {
                (Kind::Put, kv) => Some((String::from_utf8(kv.value).unwrap(), kv.create_revision, kv.version)),
                (Kind::Tombstone, _) => None,
            }
        };
        let expect = [
            (1, None),
            (2, Some(("a".to_string(), 2, 1))),
            (3, Some(("b".to_string(), 2, 2))),
            (4, None),
            (5, Some(("c".to_string(), 5, 1))),
            (9, Some(("c".to_string(), 5, 1))),
        ];
        for (rev, want) in &expect {
            assert_eq!(read(*rev), *want, "read at {rev}");
        }
        // Compaction at 4: drop @2 @3 (superseded) and @4 (tombstone, newest <= 4).
        for r in [2, 3, 4] {
            tree.remove(history_key(b"foo", Revision::new(r, 0))).unwrap();
        }
        for (rev, want) in &expect[3..] {
            assert_eq!(read(*rev), *want, "read at {rev} after compaction");
        }
        let mut seen = Vec::new();
        for_each_at(&tree, KeyRange::new(b"foo", &[0]), 5, &mut |_, k, r, _| {
            seen.push((k.to_vec(), r.main));
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, vec![(b"foo".to_vec(), 5), (b"foo\0".to_vec(), 1)]);
    }
}
