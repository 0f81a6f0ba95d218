//! Reads: Range at the current revision (the `k` fast path, guarded by the seqlock) or at an older one
//! (through `h`), and the event log for watchers.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::atomic::{fence, Ordering::SeqCst};

use raftcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use raftcd_proto::etcdserverpb::{RangeRequest, RangeResponse};
use raftcd_proto::mvccpb::{event::EventType, Event, KeyValue};

use super::key_index::{self, decode_kv, decode_record, history_prefix, record_kind, KeyRange, Kind};
use super::revision::Revision;
use super::{header, rev_key, Store};
use crate::error::{Error, Result};

/// Visitor over the live keys of a range: `(user key, encoded KeyValue) -> keep going?`.
pub(crate) type Visit<'v> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'v;

impl Store {
    /// Serves a Range at `req.revision` (<= 0: the current revision). The header carries only the revision
    /// the read was served at; the caller fills the rest.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let inner = &self.inner;
        let range = KeyRange::new(&req.key, &req.range_end);
        let seq = inner.seq.load(SeqCst);
        let current = inner.current_rev.load(SeqCst);
        let rev = if req.revision <= 0 { current } else { req.revision };
        if rev > current {
            return Err(Error::FutureRevision);
        }
        if rev < inner.compact_rev.load(SeqCst) {
            return Err(Error::Compacted);
        }
        if rev == current && seq & 1 == 0 {
            let resp = build_range(req, rev, &mut |visit| scan_latest(&inner.tree(), range, None, visit))?;
            fence(SeqCst);
            // No commit overlapped the scan: `k` showed exactly revision `current`.
            if inner.seq.load(SeqCst) == seq {
                return Ok(resp);
            }
        }
        // `h` holds every revision <= current completely (the current revision is published only after its
        // batch is in), and compaction removes nothing visible at revisions >= compact_rev.
        let mut resp = build_range(req, rev, &mut |visit| scan_at(&inner.tree(), range, rev, visit))?;
        if rev < inner.compact_rev.load(SeqCst) {
            // A compaction started under the scan and may have removed what it needed.
            return Err(Error::Compacted);
        }
        // As etcd: the header carries the store's revision, whatever revision was read.
        resp.header = header(current);
        Ok(resp)
    }

    /// The events with `start_rev <= revision <= end_rev` (end_rev <= 0 or above the current revision: up to
    /// the current revision) on keys in `(key, range_end)`, in revision order. `prev_kv` is filled when the
    /// previous version of the key still exists (it may be compacted away for events at the compaction
    /// revision itself). Stops once `max_events` (0 = no limit) are collected, at a main-revision boundary.
    pub fn events(
        &self,
        start_rev: i64,
        end_rev: i64,
        key: &[u8],
        range_end: &[u8],
        max_events: usize,
    ) -> Result<Vec<Event>> {
        let inner = &self.inner;
        let current = inner.current_rev.load(SeqCst);
        // Taken after the revision: see `Inner::tree`.
        let tree = &inner.tree();
        if start_rev < inner.compact_rev.load(SeqCst) {
            return Err(Error::Compacted);
        }
        let end = if end_rev <= 0 || end_rev > current { current } else { end_rev };
        let start = start_rev.max(0);
        let range = KeyRange::new(key, range_end);
        let mut out = Vec::new();
        if start > end || range == KeyRange::Empty {
            return Ok(out);
        }
        let max = if max_events == 0 { usize::MAX } else { max_events };
        let mut last_main = None;
        let lo = rev_key(Revision::new(start, 0));
        let hi = rev_key(Revision::new(end + 1, 0));
        for item in tree.range(lo..hi) {
            let (k, user_key) = item?;
            let rev = Revision::from_bytes(&k[1..])?;
            if out.len() >= max && last_main != Some(rev.main) {
                break;
            }
            if !range.contains(&user_key) {
                continue;
            }
            out.push(self.event_at(&user_key, rev)?);
            last_main = Some(rev.main);
        }
        if start_rev < inner.compact_rev.load(SeqCst) {
            return Err(Error::Compacted);
        }
        Ok(out)
    }

    /// The event of `user_key` at `rev`, with the previous version as prev_kv.
    fn event_at(&self, user_key: &[u8], rev: Revision) -> Result<Event> {
        let tree = &self.inner.tree();
        let prefix = history_prefix(user_key);
        let (kind, kv) = match tree.get(key_index::at(&prefix, rev))? {
            Some(rec) => decode_record(&rec)?,
            // Only a tombstone at the compaction revision is dropped while its log entry stays.
            None if rev.main <= self.compact_revision() => {
                (Kind::Tombstone, key_index::tombstone_kv(user_key, rev.main))
            }
            None => return Err(Error::Storage(format!("mvcc: no history record for revision {}", rev.main))),
        };
        let prev_kv = match key_index::newest_below(tree, &prefix, rev)? {
            Some((_, rec)) if record_kind(&rec)? == Kind::Put => Some(decode_kv(&rec[1..])?),
            _ => None,
        };
        let r#type = match kind {
            Kind::Put => EventType::Put,
            Kind::Tombstone => EventType::Delete,
        } as i32;
        Ok(Event { r#type, kv: Some(kv), prev_kv })
    }
}

/// Visits the live keys of `range` at the latest revision, from `k` merged with a write transaction's
/// not yet committed `overlay` (full tree keys -> Some(value) or None for a removal).
pub(crate) fn scan_latest(
    tree: &sled::Tree,
    range: KeyRange<'_>,
    overlay: Option<&BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    visit: &mut Visit<'_>,
) -> Result<()> {
    let Some((lo, hi)) = range.kv_bounds() else {
        return Ok(());
    };
    let mut tree_it = tree.range(lo.clone()..hi.clone());
    let empty = BTreeMap::new();
    let mut over_it = overlay.unwrap_or(&empty).range(lo..hi);
    let mut t = tree_it.next().transpose()?;
    let mut o = over_it.next();
    loop {
        let order = match (&t, &o) {
            (None, None) => return Ok(()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((tk, _)), Some((ok, _))) => tk.as_ref().cmp(ok.as_slice()),
        };
        let more = match (order, &t, o) {
            (Ordering::Less, Some((tk, tv)), _) => visit(&tk[1..], tv)?,
            (_, _, Some((ok, Some(ov)))) => visit(&ok[1..], ov)?,
            _ => true,
        };
        if !more {
            return Ok(());
        }
        if order != Ordering::Greater {
            t = tree_it.next().transpose()?;
        }
        if order != Ordering::Less {
            o = over_it.next();
        }
    }
}

/// Visits the live keys of `range` as of revision `rev`, through the history.
pub(crate) fn scan_at(tree: &sled::Tree, range: KeyRange<'_>, rev: i64, visit: &mut Visit<'_>) -> Result<()> {
    key_index::for_each_at(tree, range, rev, &mut |_, key, _, rec| match record_kind(rec)? {
        Kind::Put => visit(key, &rec[1..]),
        Kind::Tombstone => Ok(true),
    })
}

/// Builds a RangeResponse at `rev` from a scan of the live keys: count, filters, sort, limit, keys/count only.
pub(crate) fn build_range(
    req: &RangeRequest,
    rev: i64,
    scan: &mut dyn FnMut(&mut Visit<'_>) -> Result<()>,
) -> Result<RangeResponse> {
    let target = req.sort_target();
    let mut order = req.sort_order();
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    let sorted = target != SortTarget::Key || order == SortOrder::Descend;
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let keep = |kv: &KeyValue| {
        (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
    };
    // Without sort or filters, the first limit + 1 keys in key order decide the result; the rest is counted.
    let enough = if sorted || filtered || req.limit <= 0 { usize::MAX } else { (req.limit as usize).saturating_add(1) };
    let mut count = 0i64;
    let mut kvs = Vec::new();
    scan(&mut |_, v| {
        count += 1;
        if !req.count_only && kvs.len() < enough {
            let kv = decode_kv(v)?;
            if keep(&kv) {
                kvs.push(kv);
            }
        }
        Ok(true)
    })?;
    if sorted {
        let cmp = |a: &KeyValue, b: &KeyValue| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if order == SortOrder::Descend {
            kvs.sort_by(|a, b| cmp(b, a));
        } else {
            kvs.sort_by(cmp);
        }
    }
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse { header: header(rev), kvs, more, count })
}
