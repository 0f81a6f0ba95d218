//! Permission checks, etcd's `isOpPermitted` / `IsAdminPermitted` and the apply-time checks of
//! `apply_auth.go`: reads are checked on the serving member after the linearizable barrier, writes where
//! they are applied, against the auth state at that log position.

use raftcd_proto::etcdserverpb::{request_op::Request as TxnOp, RequestOp, TxnRequest};
use raftcd_proto::raftcdpb::{raft_request::Op, RequestAuth};

use crate::auth::perm::{covers, Access};
use crate::auth::state::AuthState;
use crate::error::{Error, Result};
use crate::mvcc::Store;

/// Whether `auth` may access `[key, range_end)`; `check_revision` rejects a request resolved against an
/// older auth state ("revision of auth store is old").
pub fn key_access(
    st: &AuthState,
    auth: &RequestAuth,
    check_revision: bool,
    access: Access,
    key: &[u8],
    range_end: &[u8],
) -> Result<()> {
    if !st.enabled {
        return Ok(());
    }
    if auth.username.is_empty() {
        return Err(Error::UserEmpty);
    }
    if check_revision && auth.auth_revision < st.revision {
        return Err(Error::AuthOldRevision);
    }
    let Some(user) = st.users.get(&auth.username) else {
        return Err(Error::PermissionDenied);
    };
    if st.is_root(&auth.username) {
        return Ok(());
    }
    let perms = user.roles.iter().filter_map(|r| st.roles.get(r)).flat_map(|r| r.key_permission.iter());
    if covers(perms, access, key, range_end) {
        Ok(())
    } else {
        Err(Error::PermissionDenied)
    }
}

/// Whether `auth` may manage the cluster's auth (holds the root role). Anyone may while auth is off.
pub fn admin(st: &AuthState, auth: &RequestAuth) -> Result<()> {
    if !st.enabled {
        return Ok(());
    }
    if auth.username.is_empty() {
        return Err(Error::UserEmpty);
    }
    if !st.users.contains_key(&auth.username) {
        return Err(Error::UserNotFound);
    }
    if !st.is_root(&auth.username) {
        return Err(Error::PermissionDenied);
    }
    Ok(())
}

/// The apply-time check of one replicated request. `None` auth marks the cluster's own requests.
pub fn permit(st: &AuthState, auth: Option<&RequestAuth>, op: &Op, store: &Store) -> Result<()> {
    let Some(a) = auth else { return Ok(()) };
    if !st.enabled {
        return Ok(());
    }
    let write = |k: &[u8], e: &[u8]| key_access(st, a, true, Access::Write, k, e);
    let read = |k: &[u8], e: &[u8]| key_access(st, a, true, Access::Read, k, e);
    let lease_keys = |lease: i64| -> Result<()> {
        if lease != 0 {
            for k in store.lease_keys(lease)? {
                write(&k, b"")?;
            }
        }
        Ok(())
    };
    match op {
        Op::Put(p) => {
            write(&p.key, b"")?;
            lease_keys(p.lease)?;
            if p.prev_kv {
                read(&p.key, b"")?;
            }
            Ok(())
        }
        Op::DeleteRange(d) => {
            if d.prev_kv {
                read(&d.key, &d.range_end)?;
            }
            write(&d.key, &d.range_end)
        }
        Op::Txn(t) => txn(t, &read, &write),
        Op::LeaseRevoke(r) => lease_keys(r.id),
        op if super::is_management(op) => admin(st, a),
        _ => Ok(()),
    }
}

type Check<'a> = dyn Fn(&[u8], &[u8]) -> Result<()> + 'a;

/// Compares need read; both branches are checked whatever the compares say, as etcd does.
fn txn(t: &TxnRequest, read: &Check<'_>, write: &Check<'_>) -> Result<()> {
    for c in &t.compare {
        read(&c.key, &c.range_end)?;
    }
    t.success.iter().chain(t.failure.iter()).try_for_each(|op| txn_op(op, read, write))
}

fn txn_op(op: &RequestOp, read: &Check<'_>, write: &Check<'_>) -> Result<()> {
    match &op.request {
        Some(TxnOp::RequestRange(r)) => read(&r.key, &r.range_end),
        Some(TxnOp::RequestPut(p)) => write(&p.key, b""),
        Some(TxnOp::RequestDeleteRange(d)) => {
            if d.prev_kv {
                read(&d.key, &d.range_end)?;
            }
            write(&d.key, &d.range_end)
        }
        Some(TxnOp::RequestTxn(t)) => txn(t, read, write),
        None => Ok(()),
    }
}
