//! Request validation at the edge, before anything is proposed (etcd's v3rpc/key.go): the same checks, the
//! same errors.

use std::collections::HashSet;

use raftcd_proto::etcdserverpb::{
    range_request::{SortOrder, SortTarget},
    request_op::Request,
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use crate::error::{Error, Result};

/// etcd: "etcdserver: invalid sort option".
fn invalid_sort() -> Error {
    Error::InvalidArgument("etcdserver: invalid sort option".into())
}

/// Checks a Range.
pub fn range(r: &RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(invalid_sort());
    }
    Ok(())
}

/// Checks a Put.
pub fn put(r: &PutRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

/// Checks a DeleteRange.
pub fn delete_range(r: &DeleteRangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// Checks a Txn: op counts, each op, and that no key is written twice in a branch.
pub fn txn(r: &TxnRequest, max_ops: usize) -> Result<()> {
    if r.compare.len() > max_ops || r.success.len() > max_ops || r.failure.len() > max_ops {
        return Err(Error::TooManyOps);
    }
    for c in &r.compare {
        if c.key.is_empty() {
            return Err(Error::EmptyKey);
        }
    }
    for op in r.success.iter().chain(r.failure.iter()) {
        match &op.request {
            Some(Request::RequestRange(x)) => range(x)?,
            Some(Request::RequestPut(x)) => put(x)?,
            Some(Request::RequestDeleteRange(x)) => delete_range(x)?,
            Some(Request::RequestTxn(x)) => txn(x, max_ops)?,
            None => {}
        }
    }
    intervals(&r.success)?;
    intervals(&r.failure)?;
    Ok(())
}

type Interval = (Vec<u8>, Vec<u8>);

fn in_interval(iv: &Interval, key: &[u8]) -> bool {
    crate::watch::range::contains(&iv.0, &iv.1, key)
}

/// etcd's checkIntervals: the deletes and puts of a branch (nested txns included) may not touch the same
/// key twice. Returns the branch's delete intervals and put keys for the enclosing level.
fn intervals(ops: &[RequestOp]) -> Result<(Vec<Interval>, HashSet<Vec<u8>>)> {
    let mut dels: Vec<Interval> = Vec::new();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            dels.push((d.key.clone(), d.range_end.clone()));
        }
    }
    for op in ops {
        if let Some(Request::RequestPut(p)) = &op.request {
            if dels.iter().any(|iv| in_interval(iv, &p.key)) || !puts.insert(p.key.clone()) {
                return Err(Error::DuplicateKey);
            }
        }
    }
    for op in ops {
        if let Some(Request::RequestTxn(t)) = &op.request {
            let mut branch_dels = Vec::new();
            let mut branch_puts = HashSet::new();
            for branch in [&t.success, &t.failure] {
                let (d, p) = intervals(branch)?;
                for k in &p {
                    if puts.contains(k) || dels.iter().any(|iv| in_interval(iv, k)) {
                        return Err(Error::DuplicateKey);
                    }
                }
                for iv in &d {
                    if puts.iter().any(|k| in_interval(iv, k)) {
                        return Err(Error::DuplicateKey);
                    }
                }
                branch_dels.extend(d);
                branch_puts.extend(p);
            }
            dels.extend(branch_dels);
            puts.extend(branch_puts);
        }
    }
    Ok((dels, puts))
}

/// True when the txn (either branch, nested included) contains a put: refused under NOSPACE.
pub fn txn_has_puts(t: &TxnRequest) -> bool {
    t.success.iter().chain(t.failure.iter()).any(|op| match &op.request {
        Some(Request::RequestPut(_)) => true,
        Some(Request::RequestTxn(n)) => txn_has_puts(n),
        _ => false,
    })
}

/// True when the txn writes nothing (can be served as a read).
pub fn txn_is_read_only(t: &TxnRequest) -> bool {
    t.success.iter().chain(t.failure.iter()).all(|op| match &op.request {
        Some(Request::RequestRange(_)) | None => true,
        Some(Request::RequestTxn(n)) => txn_is_read_only(n),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(k: &str) -> RequestOp {
        RequestOp { request: Some(Request::RequestPut(PutRequest { key: k.into(), ..Default::default() })) }
    }
    fn del_op(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn put_checks() {
        assert_eq!(put(&PutRequest::default()), Err(Error::EmptyKey));
        let r = PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ignore_value: true, ..Default::default() };
        assert_eq!(put(&r), Err(Error::ValueProvided));
        let r = PutRequest { key: b"k".to_vec(), lease: 5, ignore_lease: true, ..Default::default() };
        assert_eq!(put(&r), Err(Error::LeaseProvided));
    }

    #[test]
    fn duplicate_writes_in_a_branch_are_refused() {
        let t = TxnRequest { success: vec![put_op("a"), put_op("a")], ..Default::default() };
        assert_eq!(txn(&t, 128), Err(Error::DuplicateKey));
        let t = TxnRequest { success: vec![del_op("a", "c"), put_op("b")], ..Default::default() };
        assert_eq!(txn(&t, 128), Err(Error::DuplicateKey));
        let t = TxnRequest { success: vec![put_op("a")], failure: vec![put_op("a")], ..Default::default() };
        assert_eq!(txn(&t, 128), Ok(()), "different branches may write the same key");
        let nested = TxnRequest { success: vec![put_op("a")], ..Default::default() };
        let t = TxnRequest {
            success: vec![put_op("a"), RequestOp { request: Some(Request::RequestTxn(nested)) }],
            ..Default::default()
        };
        assert_eq!(txn(&t, 128), Err(Error::DuplicateKey));
    }

    #[test]
    fn too_many_ops() {
        let t = TxnRequest { success: (0..3).map(|i| put_op(&i.to_string())).collect(), ..Default::default() };
        assert_eq!(txn(&t, 2), Err(Error::TooManyOps));
        assert_eq!(txn(&t, 3), Ok(()));
    }

    #[test]
    fn bad_sort_enum() {
        let r = RangeRequest { key: b"a".to_vec(), sort_order: 9, ..Default::default() };
        assert!(matches!(range(&r), Err(Error::InvalidArgument(m)) if m == "etcdserver: invalid sort option"));
    }
}
