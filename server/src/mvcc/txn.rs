//! Txn: compare evaluation (etcd's `applyCompare` / `compareKV`, rule for rule) and branch execution.

use std::cmp::Ordering;

use raftcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftcd_proto::etcdserverpb::request_op::Request;
use raftcd_proto::etcdserverpb::response_op::Response;
use raftcd_proto::etcdserverpb::{Compare, ResponseOp, TxnRequest, TxnResponse};
use raftcd_proto::mvccpb::KeyValue;

use super::header;
use super::key_index::{decode_kv, KeyRange};
use super::scan::scan_latest;
use super::write::WriteTxn;
use crate::error::Result;

impl<'a> WriteTxn<'a> {
    /// Txn: if every compare holds (against the state as of the start of the txn) run `success`, else
    /// `failure`; the ops run in order, each seeing the earlier ops' writes, and all writes share one
    /// revision. If any op fails, nothing of this txn stays buffered and the error is returned.
    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse> {
        let nested = self.undo.is_some();
        if nested {
            // Only reachable through a RequestOp inside a txn, which txn_inner handles itself.
            let mut path = self.decide(req)?.into_iter();
            return self.txn_inner(req, &mut path, true);
        }
        // etcd decides the whole path (nested compares included) against the state before the txn, and
        // checks every range on it, before anything is written.
        let path = self.decide(req)?;
        let (events, next_sub, key_delta, size_delta) =
            (self.events.len(), self.next_sub, self.key_delta, self.size_delta);
        self.undo = Some(Vec::new());
        let mut steps = path.into_iter();
        let result = self.txn_inner(req, &mut steps, true);
        let undo = self.undo.take().unwrap_or_default();
        if result.is_err() {
            for (key, prev) in undo.into_iter().rev() {
                match prev {
                    Some(v) => self.overlay.insert(key, v),
                    None => self.overlay.remove(&key),
                };
            }
            self.events.truncate(events);
            self.next_sub = next_sub;
            self.key_delta = key_delta;
            self.size_delta = size_delta;
        }
        result
    }

    /// The branch taken by this txn and each nested one reached (pre-order), decided against the current
    /// state; fails with FutureRevision/Compacted if a range on the path asks for an unreadable revision.
    fn decide(&self, req: &TxnRequest) -> Result<Vec<bool>> {
        let mut out = Vec::new();
        self.decide_into(req, &mut out)?;
        Ok(out)
    }

    fn decide_into(&self, req: &TxnRequest, out: &mut Vec<bool>) -> Result<()> {
        let mut succeeded = true;
        for c in &req.compare {
            if !self.compare(c)? {
                succeeded = false;
                break;
            }
        }
        out.push(succeeded);
        let ops = if succeeded { &req.success } else { &req.failure };
        let current = self.revision();
        for op in ops {
            match &op.request {
                Some(Request::RequestRange(r)) => {
                    if r.revision > current {
                        return Err(crate::error::Error::FutureRevision);
                    }
                    if r.revision > 0 && r.revision < self.store.compact_revision() {
                        return Err(crate::error::Error::Compacted);
                    }
                }
                Some(Request::RequestTxn(t)) => self.decide_into(t, out)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn txn_inner(&mut self, req: &TxnRequest, path: &mut std::vec::IntoIter<bool>, top: bool) -> Result<TxnResponse> {
        let succeeded = path.next().unwrap_or(false);
        let ops = if succeeded { &req.success } else { &req.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => Some(Response::ResponseRange(self.range(r)?)),
                Some(Request::RequestPut(p)) => Some(Response::ResponsePut(self.put_inner(p)?)),
                Some(Request::RequestDeleteRange(d)) => Some(Response::ResponseDeleteRange(self.delete_inner(d)?)),
                Some(Request::RequestTxn(t)) => Some(Response::ResponseTxn(self.txn_inner(t, path, false)?)),
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        // etcd stamps only the outermost header; nested ones stay empty.
        let header = if top { header(self.revision()) } else { Some(Default::default()) };
        Ok(TxnResponse { header, succeeded, responses })
    }

    /// Whether `c` holds for every live key of its range; an empty range compares a zero KeyValue, except
    /// that a VALUE compare on no key is false (etcd: a missing value cannot be represented).
    fn compare(&self, c: &Compare) -> Result<bool> {
        let range = KeyRange::new(&c.key, &c.range_end);
        let mut any = false;
        let mut holds = true;
        scan_latest(&self.store.inner.tree(), range, &self.overlay, &mut |_, v| {
            any = true;
            holds = compare_kv(c, &decode_kv(v)?);
            Ok(holds)
        })?;
        if !any {
            if c.target == CompareTarget::Value as i32 {
                return Ok(false);
            }
            return Ok(compare_kv(c, &KeyValue::default()));
        }
        Ok(holds)
    }
}

/// etcd's `compareKV`: the operand comes from `target_union` only when its variant matches the target
/// (otherwise 0 / empty); an unknown target compares equal and an unknown result holds.
fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let int = |field: i64, operand: Option<i64>| field.cmp(&operand.unwrap_or(0));
    let tu = c.target_union.as_ref();
    let order = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let operand = match tu {
                Some(TargetUnion::Value(v)) => v.as_slice(),
                _ => &[],
            };
            kv.value.as_slice().cmp(operand)
        }
        Ok(CompareTarget::Version) => int(
            kv.version,
            match tu {
                Some(TargetUnion::Version(v)) => Some(*v),
                _ => None,
            },
        ),
        Ok(CompareTarget::Create) => int(
            kv.create_revision,
            match tu {
                Some(TargetUnion::CreateRevision(v)) => Some(*v),
                _ => None,
            },
        ),
        Ok(CompareTarget::Mod) => int(
            kv.mod_revision,
            match tu {
                Some(TargetUnion::ModRevision(v)) => Some(*v),
                _ => None,
            },
        ),
        Ok(CompareTarget::Lease) => int(
            kv.lease,
            match tu {
                Some(TargetUnion::Lease(v)) => Some(*v),
                _ => None,
            },
        ),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => order == Ordering::Equal,
        Ok(CompareResult::NotEqual) => order != Ordering::Equal,
        Ok(CompareResult::Greater) => order == Ordering::Greater,
        Ok(CompareResult::Less) => order == Ordering::Less,
        Err(_) => true,
    }
}
