//! The write transaction of one raft entry: Put / DeleteRange / Txn / Compact / meta, buffered in an
//! overlay that its own reads see, and committed with the entry's index in ONE `apply_batch`.

use std::sync::atomic::{fence, Ordering::SeqCst};

use prost::Message;
use raftcd_proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
};
use raftcd_proto::mvccpb::{event::EventType, Event, KeyValue};

use super::key_index::{decode_kv, history_key, history_prefix, record_kind, tombstone_kv, KeyRange, Kind};
use super::revision::Revision;
use super::scan::{newest_record, scan_at_careful, scan_latest, Overlay};
use super::store::build_range;
use super::{ext_key, header, lease_key, rev_key, CommitState, Store, META_COMPACT_REV, META_STATE};
use crate::error::{Error, Result};

/// What one committed entry did.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The store revision after the entry (unchanged if it wrote nothing).
    pub revision: i64,
    /// The entry's events in order; prev_kv is always filled when the key existed before.
    pub events: Vec<Event>,
}

/// Overlay undo log: (tree key, its overlay entry before the change).
pub(crate) type Undo = Vec<(Vec<u8>, Option<Option<Vec<u8>>>)>;

/// The changes of one raft entry, not yet visible to other readers. Only the apply thread creates one.
/// After an `Error::Storage` from any method, drop it without committing (the member must stop).
pub struct WriteTxn<'a> {
    pub(crate) store: &'a Store,
    index: u64,
    lease_exists: &'a dyn Fn(i64) -> bool,
    /// The revision before the current entry (the store's when the transaction began, unless entries were
    /// grouped: see `next_entry`).
    base_rev: i64,
    /// Full tree keys -> new value, or None for a removal.
    pub(crate) overlay: Overlay,
    pub(crate) events: Vec<Event>,
    /// Changes so far; the next change's sub revision.
    pub(crate) next_sub: i64,
    compact: Option<i64>,
    pub(crate) key_delta: i64,
    pub(crate) size_delta: i64,
    /// Overlay undo log, kept while a Txn runs so that a failing branch leaves nothing behind.
    pub(crate) undo: Option<Undo>,
}

impl Store {
    /// Starts the write transaction of raft entry `index`. `lease_exists` tells whether a lease id is granted.
    /// Only the single apply thread may call this.
    pub fn begin<'a>(&'a self, index: u64, lease_exists: &'a dyn Fn(i64) -> bool) -> WriteTxn<'a> {
        WriteTxn {
            store: self,
            index,
            lease_exists,
            base_rev: self.current_revision(),
            overlay: Overlay::new(),
            events: Vec::new(),
            next_sub: 0,
            compact: None,
            key_delta: 0,
            size_delta: 0,
            undo: None,
        }
    }
}

impl<'a> WriteTxn<'a> {
    /// The revision this transaction writes at: current + 1 once it changed something, else current.
    pub fn revision(&self) -> i64 {
        self.base_rev + i64::from(self.next_sub > 0)
    }

    /// A Range that sees this transaction's own earlier writes (at `revision()`); an explicit older
    /// revision reads committed history.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let current = self.revision();
        let rev = if req.revision <= 0 { current } else { req.revision };
        if rev > current {
            return Err(Error::FutureRevision);
        }
        if rev < self.store.compact_revision() {
            return Err(Error::Compacted);
        }
        let tree = &self.store.inner.tree();
        let range = KeyRange::new(&req.key, &req.range_end);
        let mut resp = if rev == current {
            build_range(req, rev, &mut |visit| scan_latest(tree, range, &self.overlay, visit))?
        } else {
            build_range(req, rev, &mut |visit| scan_at_careful(tree, range, rev, visit))?
        };
        resp.header = header(current);
        Ok(resp)
    }

    /// Put: a new version of `req.key` at the transaction revision.
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        self.put_inner(req)
    }

    /// DeleteRange: removes the live keys of the range (no new revision when there are none).
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        self.delete_inner(req)
    }

    /// Records a compaction at `rev`; the history is removed later by [`Store::compact_physical`].
    pub fn compact(&mut self, rev: i64) -> Result<()> {
        let floor = self.compact.unwrap_or(0).max(self.store.compact_revision());
        if rev <= floor {
            return Err(Error::Compacted);
        }
        if rev > self.revision() {
            return Err(Error::FutureRevision);
        }
        self.compact = Some(rev);
        self.set(META_COMPACT_REV.to_vec(), Some(rev.to_be_bytes().to_vec()));
        Ok(())
    }

    /// Sets (Some) or deletes (None) a meta value of another layer; `key` is the part after `x`.
    pub fn set_meta(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        if let Some(v) = &value {
            self.size_delta += (key.len() + 1 + v.len()) as i64;
        }
        self.set(ext_key(key), value);
    }

    /// A meta value of another layer as this transaction sees it (its own `set_meta` included).
    pub fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let k = ext_key(key);
        match self.overlay.get(&k) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.store.inner.tree().get(k)?.map(|v| v.to_vec())),
        }
    }

    /// Group apply: closes the current raft entry and continues with entry `index` in the same transaction,
    /// so that several entries go into the store in ONE batch. Returns the closed entry's revision and
    /// events, which the caller publishes (watchers, waiters) only after [`WriteTxn::commit`] succeeded.
    /// The next entry sees every write buffered so far and writes at the following revision.
    pub fn next_entry(&mut self, index: u64) -> Committed {
        let closed = Committed { revision: self.revision(), events: std::mem::take(&mut self.events) };
        self.base_rev = closed.revision;
        self.next_sub = 0;
        self.index = index;
        closed
    }

    /// A cheap fingerprint of the buffered changes: equal before and after a request that failed means the
    /// request left nothing behind (used to check that group apply needs no rollback).
    pub fn change_mark(&self) -> (i64, usize, i64, i64) {
        (self.next_sub, self.events.len(), self.key_delta, self.size_delta)
    }

    /// Writes everything with `applied_index = index` in ONE batch, then publishes the new revision.
    /// Does not fsync: the caller flushes.
    pub fn commit(self) -> Result<Committed> {
        let inner = &self.store.inner;
        let revision = self.revision();
        let mut batch = sled::Batch::default();
        for (k, v) in self.overlay {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        let key_count = inner.key_count.load(SeqCst) + self.key_delta;
        let size = inner.size_written.load(SeqCst) + self.size_delta;
        let state = CommitState { applied_index: self.index, revision, key_count, size_written: size };
        batch.insert(META_STATE, &state.encode());
        // The new records are all above the published revision, which moves only once they are in: readers
        // at any published revision never see a partial batch.
        inner.tree().apply_batch(batch)?;
        fence(SeqCst);
        inner.current_rev.store(revision, SeqCst);
        if let Some(c) = self.compact {
            inner.compact_rev.store(c, SeqCst);
        }
        inner.applied_index.store(self.index, SeqCst);
        inner.key_count.store(key_count, SeqCst);
        inner.size_written.store(size, SeqCst);
        Ok(Committed { revision, events: self.events })
    }

    /// Buffers one tree write, remembering the previous overlay state while a Txn may still fail.
    pub(crate) fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match self.undo.as_mut() {
            Some(undo) => {
                let prev = self.overlay.insert(key.clone(), value);
                undo.push((key, prev));
            }
            None => {
                self.overlay.insert(key, value);
            }
        }
    }

    /// The live KeyValue of `key` as this transaction sees it.
    pub(crate) fn get_latest(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        match newest_record(&self.store.inner.tree(), &self.overlay, &history_prefix(key))? {
            Some(rec) if record_kind(&rec)? == Kind::Put => Ok(Some(decode_kv(&rec[1..])?)),
            _ => Ok(None),
        }
    }

    fn next_revision(&mut self) -> Revision {
        let rev = Revision::new(self.base_rev + 1, self.next_sub);
        self.next_sub += 1;
        rev
    }

    /// Buffers the `h` record and `r` log entry of one change; `kv` is the change's encoded KeyValue.
    fn record(&mut self, key: &[u8], rev: Revision, kind: Kind, kv: &[u8]) {
        let h = history_key(key, rev);
        // The record layout of `encode_record`, from the bytes the caller already encoded.
        let mut rec = Vec::with_capacity(1 + kv.len());
        rec.push(kind as u8);
        rec.extend_from_slice(kv);
        self.size_delta += (h.len() + rec.len() + 17 + key.len()) as i64;
        self.set(h, Some(rec));
        self.set(rev_key(rev), Some(key.to_vec()));
    }

    pub(crate) fn put_inner(&mut self, req: &PutRequest) -> Result<PutResponse> {
        let old = self.get_latest(&req.key)?;
        if (req.ignore_value || req.ignore_lease) && old.is_none() {
            return Err(Error::KeyNotFound);
        }
        if req.lease != 0 && !req.ignore_lease && !(self.lease_exists)(req.lease) {
            return Err(Error::LeaseNotFound);
        }
        let rev = self.next_revision();
        let (value, lease) = match &old {
            Some(o) if req.ignore_value || req.ignore_lease => (
                if req.ignore_value { o.value.clone() } else { req.value.clone() },
                if req.ignore_lease { o.lease } else { req.lease },
            ),
            _ => (req.value.clone(), req.lease),
        };
        let (create_revision, version) = match &old {
            Some(o) => (o.create_revision, o.version + 1),
            None => (rev.main, 1),
        };
        let kv = KeyValue { key: req.key.clone(), create_revision, mod_revision: rev.main, version, value, lease };
        let encoded = kv.encode_to_vec();
        let old_lease = old.as_ref().map_or(0, |o| o.lease);
        if old.is_none() {
            self.key_delta += 1;
        }
        self.record(&req.key, rev, Kind::Put, &encoded);
        if old_lease != lease {
            if old_lease != 0 {
                self.set(lease_key(old_lease, &req.key), None);
            }
            if lease != 0 {
                self.size_delta += (9 + req.key.len()) as i64;
                self.set(lease_key(lease, &req.key), Some(Vec::new()));
            }
        }
        self.events.push(Event { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: old.clone() });
        Ok(PutResponse { header: header(rev.main), prev_kv: if req.prev_kv { old } else { None } })
    }

    pub(crate) fn delete_inner(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let range = KeyRange::new(&req.key, &req.range_end);
        let mut olds = Vec::new();
        scan_latest(&self.store.inner.tree(), range, &self.overlay, &mut |_, v| {
            olds.push(decode_kv(v)?);
            Ok(true)
        })?;
        for old in &olds {
            let rev = self.next_revision();
            let tomb = tombstone_kv(&old.key, rev.main);
            self.key_delta -= 1;
            self.record(&old.key, rev, Kind::Tombstone, &tomb.encode_to_vec());
            if old.lease != 0 {
                self.size_delta -= (9 + old.key.len()) as i64;
                self.set(lease_key(old.lease, &old.key), None);
            }
            self.events.push(Event { r#type: EventType::Delete as i32, kv: Some(tomb), prev_kv: Some(old.clone()) });
        }
        Ok(DeleteRangeResponse {
            header: header(self.revision()),
            deleted: olds.len() as i64,
            prev_kvs: if req.prev_kv { olds } else { Vec::new() },
        })
    }
}
