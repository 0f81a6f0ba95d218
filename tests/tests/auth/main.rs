//! Authentication and RBAC against real raftcd processes (and, for the differential cases, a real etcd):
//! prefix-confined users, root, auth on/off, revocation seen at once by every member of a cluster, token
//! expiry, password handling (exact errors; never a plain password on disk or in a snapshot), snapshot
//! restore keeping users and roles, Debian's etcdctl user/role/auth commands printing what they print
//! against etcd, and the client certificate's common name as the user under --client-cert-auth.

mod access;
mod identity;
mod jwt;
mod parity;
mod secrets;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, Permission, PutOptions, RoleRevokePermissionOptions, Txn,
    TxnOp, UserAddOptions,
};
use raftcd_tests::client::{assert_grpc_err, connect, etcdctl_path, grpc_status, skip_allowed};
use raftcd_tests::cluster::etcdctl;
use raftcd_tests::{step, workspace_bin, EtcdProcess, Member, RaftcdCluster, RaftcdProcess};

/// Cheap hashes for tests; the default (10) costs ~50 ms of CPU per hash on a loaded machine.
const FAST_BCRYPT: [&str; 2] = ["--bcrypt-cost", "4"];

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A client logged in as `user` (the crate authenticates while connecting).
async fn login(ep: &str, user: &str, password: &str) -> Result<Client, etcd_client::Error> {
    let opts = ConnectOptions::new().with_user(user, password);
    Client::connect([format!("http://{ep}")], Some(opts)).await
}

/// Creates `root` (password `rootpw`, root role), and `alice` (password `apw`) holding role `app` with
/// `perm`, then turns authentication on.
async fn set_up_auth(c: &mut Client, perm: Permission) {
    c.user_add("root", "rootpw", None).await.unwrap();
    c.role_add("root").await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.role_add("app").await.unwrap();
    c.role_grant_permission("app", perm).await.unwrap();
    c.user_add("alice", "apw", None).await.unwrap();
    c.user_grant_role("alice", "app").await.unwrap();
    c.auth_enable().await.unwrap();
}

/// (code, message) of a failure, "ok" of a success.
fn outcome<T>(r: &Result<T, etcd_client::Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => grpc_status(e).map(|(c, m)| format!("{c}: {m}")).unwrap_or_else(|| format!("client: {e}")),
    }
}
