//! Reads: Range at any revision (see scan.rs), and the event log for watchers.

use std::sync::atomic::{fence, Ordering::SeqCst};

use raftcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use raftcd_proto::etcdserverpb::{RangeRequest, RangeResponse};
use raftcd_proto::mvccpb::{event::EventType, Event, KeyValue};

use super::key_index::{self, decode_kv, decode_record, history_prefix, record_kind, KeyRange, Kind};
use super::revision::Revision;
use super::scan::{scan_at, scan_at_careful, Visit};
use super::{header, rev_key, Store};
use crate::error::{Error, Result};

impl Store {
    /// Serves a Range at `req.revision` (<= 0: the current revision). The header carries only the revision
    /// the read was served at; the caller fills the rest.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let inner = &self.inner;
        let _no_install = inner.reading();
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
        // Records <= rev never change under a commit; a compaction batch or a tree switch overlapping the
        // streaming scan sends it through the careful path.
        let mut resp = None;
        if seq & 1 == 0 {
            let streamed = build_range(req, rev, &mut |visit| scan_at(&inner.tree(), range, rev, visit))?;
            fence(SeqCst);
            if inner.seq.load(SeqCst) == seq {
                resp = Some(streamed);
            }
        }
        let mut resp = match resp {
            Some(r) => r,
            None => build_range(req, rev, &mut |visit| scan_at_careful(&inner.tree(), range, rev, visit))?,
        };
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
        let _no_install = inner.reading();
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
