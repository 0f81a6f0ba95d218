//! The auth store's rules and the apply-time checks, on a temporary store.

use std::time::Duration;

use raftcd_proto::authpb::{permission::Type, Permission};
use raftcd_proto::etcdserverpb::{
    request_op::Request as TxnOp, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
    AuthRoleGrantPermissionRequest, AuthUserAddRequest, AuthUserGrantRoleRequest, Compare, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use raftcd_proto::raftcdpb::{raft_request::Op, RequestAuth};

use super::AuthStore;
use crate::error::Error;
use crate::mvcc::Store;

fn store() -> Store {
    let db = sled::Config::new().temporary(true).open().unwrap();
    Store::open(db.open_tree("state").unwrap()).unwrap()
}

/// Applies `op` as entry `index` and commits it.
fn apply(auth: &AuthStore, store: &Store, index: u64, op: Op) -> Result<(), Error> {
    let no_lease = |_: i64| false;
    let mut txn = store.begin(index, &no_lease);
    let r = auth.apply(&mut txn, &op);
    txn.commit().unwrap();
    r
}

fn who(name: &str, rev: u64) -> RequestAuth {
    RequestAuth { username: name.into(), auth_revision: rev }
}

fn put(key: &str) -> Op {
    Op::Put(PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() })
}

/// root (root role) and alice with role `app`: write on prefix `/app/`. Auth on.
fn set_up() -> (AuthStore, Store) {
    let s = store();
    let a = AuthStore::load(&s, Duration::from_secs(60), 4).unwrap();
    let ops = [
        Op::AuthUserAdd(AuthUserAddRequest { name: "root".into(), hashed_password: "h".into(), ..Default::default() }),
        Op::AuthUserGrantRole(AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }),
        Op::AuthRoleAdd(AuthRoleAddRequest { name: "app".into() }),
        Op::AuthRoleGrantPermission(AuthRoleGrantPermissionRequest {
            name: "app".into(),
            perm: Some(Permission {
                perm_type: Type::Write as i32,
                key: b"/app/".to_vec(),
                range_end: b"/app0".to_vec(),
            }),
        }),
        Op::AuthUserAdd(AuthUserAddRequest { name: "alice".into(), hashed_password: "h".into(), ..Default::default() }),
        Op::AuthUserGrantRole(AuthUserGrantRoleRequest { user: "alice".into(), role: "app".into() }),
        Op::AuthEnable(AuthEnableRequest {}),
    ];
    for (i, op) in ops.into_iter().enumerate() {
        apply(&a, &s, i as u64 + 1, op).unwrap();
    }
    (a, s)
}

#[test]
fn changes_bump_the_revision_and_persist() {
    let (a, s) = set_up();
    // A fresh store is at 1; six user/role changes; enabling does not count.
    assert_eq!(a.revision(), 7);
    assert!(a.enabled());
    let reloaded = AuthStore::load(&s, Duration::from_secs(60), 4).unwrap();
    let st = reloaded.snapshot();
    assert_eq!((st.enabled, st.revision), (true, 7));
    assert_eq!(st.users["alice"].roles, ["app"]);
    assert_eq!(st.users["alice"].password, b"h");
    assert_eq!(st.roles["app"].key_permission.len(), 1);
}

#[test]
fn role_delete_takes_the_role_from_its_holders() {
    let (a, s) = set_up();
    apply(&a, &s, 10, Op::AuthRoleDelete(AuthRoleDeleteRequest { role: "app".into() })).unwrap();
    assert!(a.user("alice").unwrap().roles.is_empty());
    let err = apply(&a, &s, 11, Op::AuthRoleDelete(AuthRoleDeleteRequest { role: "root".into() }));
    assert_eq!(err, Err(Error::InvalidAuthMgmt));
}

#[test]
fn writes_are_checked_at_apply_against_the_current_auth_revision() {
    let (a, s) = set_up();
    let rev = a.revision();
    assert_eq!(a.permit(Some(&who("alice", rev)), &put("/app/x"), &s), Ok(()));
    assert_eq!(a.permit(Some(&who("alice", rev)), &put("/other"), &s), Err(Error::PermissionDenied));
    assert_eq!(a.permit(Some(&who("alice", rev - 1)), &put("/app/x"), &s), Err(Error::AuthOldRevision));
    assert_eq!(a.permit(Some(&who("", rev)), &put("/app/x"), &s), Err(Error::UserEmpty));
    assert_eq!(a.permit(Some(&who("root", rev)), &put("/anything"), &s), Ok(()));
    assert_eq!(a.permit(None, &put("/anything"), &s), Ok(()), "the cluster's own requests");
    assert_eq!(
        a.permit(Some(&who("alice", rev)), &Op::AuthRoleAdd(AuthRoleAddRequest { name: "x".into() }), &s),
        Err(Error::PermissionDenied)
    );

    txn_ops_are_checked(&a, &s, rev);
}

fn txn_ops_are_checked(a: &AuthStore, s: &Store, rev: u64) {
    let op = |r: TxnOp| RequestOp { request: Some(r) };
    let put_app = op(TxnOp::RequestPut(PutRequest { key: b"/app/y".to_vec(), ..Default::default() }));
    let read_app = op(TxnOp::RequestRange(RangeRequest { key: b"/app/y".to_vec(), ..Default::default() }));
    let put_other = op(TxnOp::RequestPut(PutRequest { key: b"/other".to_vec(), ..Default::default() }));
    let only_writes = TxnRequest { success: vec![put_app.clone()], ..Default::default() };
    assert_eq!(a.permit(Some(&who("alice", rev)), &Op::Txn(only_writes), s), Ok(()));
    // alice may not read: a compare, or a range in either branch, is refused.
    let compare = TxnRequest {
        compare: vec![Compare { key: b"/app/y".to_vec(), ..Default::default() }],
        success: vec![put_app.clone()],
        ..Default::default()
    };
    assert_eq!(a.permit(Some(&who("alice", rev)), &Op::Txn(compare), s), Err(Error::PermissionDenied));
    let read_in_failure = TxnRequest { success: vec![put_app.clone()], failure: vec![read_app], ..Default::default() };
    assert_eq!(a.permit(Some(&who("alice", rev)), &Op::Txn(read_in_failure), s), Err(Error::PermissionDenied));
    let nested = TxnRequest {
        success: vec![op(TxnOp::RequestTxn(TxnRequest { failure: vec![put_other], ..Default::default() }))],
        ..Default::default()
    };
    assert_eq!(a.permit(Some(&who("alice", rev)), &Op::Txn(nested), s), Err(Error::PermissionDenied));
}
