//! HashKV: a crc32 over the logical MVCC state, independent of how far physical compaction got.
//!
//! With compaction revision C and hash revision H, the logical state is, per key in key order: the newest
//! record <= C if it is a put, then every record in (C, H] in revision order. Each contributes
//! `main | sub | kind | len(key) | key | encoded KeyValue`.

use std::sync::atomic::Ordering::SeqCst;

use super::key_index::{self, after_prefix, next_prefix, record_kind, user_key, Kind};
use super::revision::Revision;
use super::{Store, P_HIST};
use crate::error::{Error, Result};

impl Store {
    /// `(hash, compact_revision, hash_revision)` of the state up to `rev` (0 or less: the current revision).
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64)> {
        let inner = &self.inner;
        let _no_install = inner.reading();
        loop {
            let current = inner.current_rev.load(SeqCst);
            // Taken after the revision: a tree replaced by defragmentation since holds everything up to it.
            let tree = &inner.tree();
            let compact = inner.compact_rev.load(SeqCst);
            let hash_rev = if rev <= 0 { current } else { rev };
            if hash_rev > current {
                return Err(Error::FutureRevision);
            }
            if hash_rev < compact {
                return Err(Error::Compacted);
            }
            let mut hasher = crc32fast::Hasher::new();
            let mut feed = |rev: Revision, key: &[u8], record: &[u8]| {
                hasher.update(&rev.to_bytes());
                hasher.update(&(key.len() as u64).to_be_bytes());
                hasher.update(key);
                hasher.update(record);
            };
            let hi = [P_HIST + 1];
            let mut pos = vec![P_HIST];
            while let Some(prefix) = next_prefix(tree, &pos, &hi)? {
                let key = user_key(&prefix)?;
                if compact > 0 {
                    if let Some((r, v)) = key_index::newest_at(tree, &prefix, compact)? {
                        if record_kind(&v)? == Kind::Put {
                            feed(r, &key, &v);
                        }
                    }
                }
                let lo = key_index::at(&prefix, Revision::new(compact + 1, 0));
                let up = key_index::at(&prefix, Revision::new(hash_rev + 1, 0));
                for item in tree.range(lo..up) {
                    let (k, v) = item?;
                    let (_, r) = key_index::split_history_key(&k)?;
                    record_kind(&v)?;
                    feed(r, &key, &v);
                }
                pos = after_prefix(&prefix);
            }
            // A compaction committed meanwhile may have changed what was visible: hash again.
            if inner.compact_rev.load(SeqCst) == compact {
                return Ok((hasher.finalize(), compact, hash_rev));
            }
        }
    }
}
