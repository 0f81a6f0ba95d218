//! Authentication and RBAC against real raftcd processes (and, for the differential cases, a real etcd):
//! prefix-confined users, root, auth on/off, revocation seen at once by every member of a cluster, token
//! expiry, password handling (exact errors; never a plain password on disk or in a snapshot), snapshot
//! restore keeping users and roles, Debian's etcdctl user/role/auth commands printing what they print
//! against etcd, and the client certificate's common name as the user under --client-cert-auth.

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

/// Scenario: alice may only read under `/app/`. She reads there, cannot write there, cannot read or watch
/// `/other/`, and a txn that would write (even in the branch not taken) is refused; without a user nothing
/// is served; root does everything; with auth disabled everything is open again.
#[test]
fn prefix_reader_is_confined_and_root_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let p = RaftcdProcess::start_single(dir.path(), &FAST_BCRYPT);
    let ep = p.endpoint();
    rt().block_on(async {
        let mut c = connect(&ep).await;
        c.put("/app/x", "1", None).await.unwrap();
        c.put("/other/y", "2", None).await.unwrap();
        step!("root, alice (read /app/ prefix), auth on");
        set_up_auth(&mut c, Permission::read("/app/").with_prefix()).await;
        assert_grpc_err(c.get("/app/x", None).await, "InvalidArgument", "etcdserver: user name is empty");
        assert_grpc_err(c.put("/app/x", "x", None).await, "InvalidArgument", "etcdserver: user name is empty");

        step!("alice reads /app/ but writes nothing and reads nothing else");
        let mut alice = login(&ep, "alice", "apw").await.unwrap();
        let got = alice.get("/app/x", None).await.unwrap();
        assert_eq!(got.kvs()[0].value(), b"1");
        alice.get("/app/", Some(GetOptions::new().with_prefix())).await.unwrap();
        let denied = |r: &str| assert_eq!(r, "PermissionDenied: etcdserver: permission denied");
        denied(&outcome(&alice.put("/app/x", "2", None).await));
        denied(&outcome(&alice.delete("/app/x", None).await));
        denied(&outcome(&alice.get("/other/y", None).await));
        denied(&outcome(&alice.get("/", Some(GetOptions::new().with_prefix())).await));
        denied(&outcome(&alice.put("/app/y", "1", Some(PutOptions::new().with_prev_key())).await));
        let sneaky = Txn::new()
            .when([Compare::value("/app/x", CompareOp::Equal, "1")])
            .and_then([TxnOp::get("/app/x", None)])
            .or_else([TxnOp::put("/app/x", "pwned", None)]);
        denied(&outcome(&alice.txn(sneaky).await));
        let read_only =
            Txn::new().when([Compare::value("/app/x", CompareOp::Equal, "1")]).and_then([TxnOp::get("/app/x", None)]);
        assert!(alice.txn(read_only).await.unwrap().succeeded());
        denied(&outcome(&alice.user_list().await));
        let roles = alice.user_get("alice").await.unwrap();
        assert_eq!(roles.roles(), ["app"], "a user may read its own record");

        step!("alice's watch on /other/ is canceled with permission denied");
        let mut ws = alice.watch("/other/", Some(etcd_client::WatchOptions::new().with_prefix())).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(10), ws.message()).await.expect("watch answer") {
            Ok(Some(resp)) => {
                assert!(resp.canceled(), "watch must be canceled: {resp:?}");
                assert!(resp.cancel_reason().contains("permission denied"), "{}", resp.cancel_reason());
            }
            Ok(None) => panic!("watch stream ended without an answer"),
            Err(e) => assert!(e.to_string().contains("permission denied"), "{e}"),
        }

        step!("root does everything");
        let mut root = login(&ep, "root", "rootpw").await.unwrap();
        root.put("/other/y", "3", None).await.unwrap();
        assert_eq!(root.get("/app/x", None).await.unwrap().kvs()[0].value(), b"1", "alice's writes did not apply");
        let users = root.user_list().await.unwrap();
        assert_eq!(users.users(), ["alice", "root"]);

        step!("auth off: open to everyone");
        root.auth_disable().await.unwrap();
        let mut anon = connect(&ep).await;
        anon.put("/other/z", "free", None).await.unwrap();
        anon.user_list().await.unwrap();
    });
}

/// Scenario: alice writes `/app/` through every member of a 3-member cluster. Root revokes the permission
/// through member 1; at once, no member lets alice write or read there (a write in flight on a member that
/// had not applied the revocation yet is refused at apply time as "revision of auth store is old"). The
/// permission is granted again, then the role is revoked from alice: the same holds.
#[test]
fn revocation_takes_effect_on_every_member_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftcdCluster::start(dir.path(), 3, &FAST_BCRYPT);
    let eps = cluster.endpoints();
    rt().block_on(async {
        let mut c = connect(&eps[0]).await;
        for ep in &eps {
            connect(ep).await;
        }
        set_up_auth(&mut c, Permission::read_write("/app/").with_prefix()).await;
        let mut root = login(&eps[0], "root", "rootpw").await.unwrap();
        let mut alices = Vec::new();
        for ep in &eps {
            alices.push(login(ep, "alice", "apw").await.unwrap());
        }
        for (i, a) in alices.iter_mut().enumerate() {
            a.put(format!("/app/{i}"), "ok", None).await.unwrap();
            a.get("/app/0", None).await.unwrap();
        }

        let refused = |what: &str, r: String| {
            assert!(
                r == "PermissionDenied: etcdserver: permission denied"
                    || r == "InvalidArgument: etcdserver: revision of auth store is old",
                "{what}: expected a refusal, got {r}"
            );
        };
        async fn check_refused(alices: &mut [Client], root: &mut Client, round: &str, refused: &dyn Fn(&str, String)) {
            for (i, a) in alices.iter_mut().enumerate() {
                let key = format!("/app/{i}");
                refused(&format!("{round}: put via member {i}"), outcome(&a.put(key.as_str(), round, None).await));
                refused(&format!("{round}: get via member {i}"), outcome(&a.get(key.as_str(), None).await));
                let now = root.get(key.as_str(), None).await.unwrap();
                assert_eq!(now.kvs()[0].value(), b"ok", "{round}: a refused write applied on member {i}");
            }
        }

        step!("revoke the permission through member 1; every member refuses at once");
        root.role_revoke_permission("app", "/app/", Some(RoleRevokePermissionOptions::new().with_prefix()))
            .await
            .unwrap();
        check_refused(&mut alices, &mut root, "permission revoked", &refused).await;

        step!("grant it again: every member serves alice");
        root.role_grant_permission("app", Permission::read_write("/app/").with_prefix()).await.unwrap();
        for (i, a) in alices.iter_mut().enumerate() {
            let key = format!("/app/{i}");
            a.get(key.as_str(), None).await.unwrap();
        }

        step!("revoke the role from alice through member 1; every member refuses at once");
        root.user_revoke_role("alice", "app").await.unwrap();
        check_refused(&mut alices, &mut root, "role revoked", &refused).await;
    });
    drop(cluster);
}

/// Scenario: with `--auth-token-ttl 2`, a token unused for longer is refused as "invalid auth token"; one
/// kept in use stays valid; a client that refreshes tokens recovers.
#[test]
fn tokens_expire_after_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let p = RaftcdProcess::start_single(dir.path(), &["--bcrypt-cost", "4", "--auth-token-ttl", "2"]);
    let ep = p.endpoint();
    rt().block_on(async {
        let mut c = connect(&ep).await;
        set_up_auth(&mut c, Permission::read_write("/app/").with_prefix()).await;
        let mut idle = login(&ep, "alice", "apw").await.unwrap();
        let mut busy = login(&ep, "alice", "apw").await.unwrap();
        let refresh = ConnectOptions::new().with_user("alice", "apw").with_auto_token_refresh(true);
        let mut refreshing = Client::connect([format!("http://{ep}")], Some(refresh)).await.unwrap();
        idle.get("/app/a", None).await.unwrap();

        step!("5 s pass; one client uses its token every 500 ms");
        for _ in 0..10 {
            busy.get("/app/a", None).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_grpc_err(idle.get("/app/a", None).await, "Unauthenticated", "etcdserver: invalid auth token");
        assert_grpc_err(idle.put("/app/a", "1", None).await, "Unauthenticated", "etcdserver: invalid auth token");
        busy.put("/app/a", "1", None).await.unwrap();
        refreshing.get("/app/a", None).await.expect("the refreshing client authenticates again");

        step!("raftcd's own client logs in, and after its token expired, logs in again by itself");
        let opts = raftcd_client::ConnectOptions {
            user: Some("alice".into()),
            password: Some("apw".into()),
            ..Default::default()
        };
        let own = raftcd_client::Client::connect(std::slice::from_ref(&ep), opts).await.unwrap();
        own.put_kv("/app/own", "1").await.unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let got = own.get_kv("/app/own").await.expect("raftcd-client re-authenticates on an invalid token");
        assert_eq!(got.kvs[0].value, b"1");
        let denied = own.put_kv("/other", "1").await.expect_err("alice may not write /other");
        assert_eq!(denied.message(), Some("etcdserver: permission denied"));
    });
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(path.display().to_string());
                }
            }
        }
    }
    hits
}

async fn snapshot_bytes(c: &mut Client) -> Vec<u8> {
    let mut stream = c.snapshot().await.unwrap();
    let mut bytes = Vec::new();
    while let Some(msg) = stream.message().await.unwrap() {
        bytes.extend_from_slice(msg.blob());
    }
    bytes
}

/// Scenario: wrong passwords and unknown users get etcd's exact error; a changed password replaces the old
/// one; neither the member's files (raft log, state) nor a snapshot hold a plain password, while they do
/// hold the bcrypt hashes (so the search looks in the right place).
#[test]
fn passwords_are_checked_and_never_stored_in_plain() {
    const PLAIN: &str = "Plain-Secret-4711";
    const NEWER: &str = "Newer-Secret-0815";
    let dir = tempfile::tempdir().unwrap();
    let mut p = RaftcdProcess::start_single(dir.path(), &FAST_BCRYPT);
    let ep = p.endpoint();
    let snap = rt().block_on(async {
        let mut c = connect(&ep).await;
        set_up_auth(&mut c, Permission::read("/app/").with_prefix()).await;
        let mut root = login(&ep, "root", "rootpw").await.unwrap();
        root.user_add("carol", PLAIN, None).await.unwrap();
        root.user_grant_role("carol", "app").await.unwrap();
        root.user_add("cn-only", "", Some(UserAddOptions::new().with_no_pwd())).await.unwrap();
        let failed = "InvalidArgument: etcdserver: authentication failed, invalid user ID or password";
        step!("wrong password, unknown user, user without password");
        assert_eq!(outcome(&login(&ep, "carol", "wrong").await), failed);
        assert_eq!(outcome(&login(&ep, "nobody", PLAIN).await), failed);
        assert_eq!(outcome(&login(&ep, "cn-only", "").await), failed);
        login(&ep, "carol", PLAIN).await.unwrap().get("/app/x", None).await.unwrap();
        step!("password change");
        root.user_change_password("carol", NEWER).await.unwrap();
        assert_eq!(outcome(&login(&ep, "carol", PLAIN).await), failed);
        login(&ep, "carol", NEWER).await.unwrap();
        snapshot_bytes(&mut root).await
    });
    p.terminate();
    step!("no plain password on disk or in the snapshot; the hashes are there");
    for pw in [PLAIN, NEWER, "rootpw", "apw"] {
        let hits = files_containing(dir.path(), pw.as_bytes());
        assert!(hits.is_empty(), "plain password {pw:?} found in {hits:?}");
        assert!(!snap.windows(pw.len()).any(|w| w == pw.as_bytes()), "plain password {pw:?} in the snapshot");
    }
    assert!(!files_containing(dir.path(), b"$2b$04$").is_empty(), "bcrypt hashes should be in the data dir");
    assert!(snap.windows(7).any(|w| w == b"$2b$04$"), "bcrypt hashes should be in the snapshot");
}

/// Scenario: a snapshot of a member with auth on is restored into a new member: auth is still on, users,
/// roles, passwords and permissions are all there.
#[test]
fn snapshot_restore_keeps_users_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let p = RaftcdProcess::start_single(dir.path(), &FAST_BCRYPT);
    let ep = p.endpoint();
    let snap = dir.path().join("auth.snap");
    rt().block_on(async {
        let mut c = connect(&ep).await;
        c.put("/app/x", "1", None).await.unwrap();
        set_up_auth(&mut c, Permission::read("/app/").with_prefix()).await;
        let mut root = login(&ep, "root", "rootpw").await.unwrap();
        std::fs::write(&snap, snapshot_bytes(&mut root).await).unwrap();
    });
    drop(p);
    step!("restore into a new member");
    let m = Member::new(&dir.path().join("restored"), "r1");
    let initial = m.initial_cluster_entry();
    let data_dir = m.data_dir.to_string_lossy().into_owned();
    let peer = m.peer_url();
    let out = Command::new(workspace_bin("raftcd-util"))
        .args(["snapshot", "restore", snap.to_str().unwrap(), "--name", &m.name, "--data-dir", &data_dir])
        .args(["--initial-cluster", &initial, "--initial-advertise-peer-urls", &peer])
        .output()
        .unwrap();
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    let restored = RaftcdProcess::start_member(m, &initial, &FAST_BCRYPT);
    let ep = restored.endpoint();
    rt().block_on(async {
        let mut root = None;
        for _ in 0..200 {
            if let Ok(c) = login(&ep, "root", "rootpw").await {
                root = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut root = root.expect("root logs in to the restored member");
        assert_eq!(root.user_list().await.unwrap().users(), ["alice", "root"]);
        assert_eq!(root.role_list().await.unwrap().roles(), ["app", "root"]);
        let perms = root.role_get("app").await.unwrap().permissions();
        assert_eq!(perms.len(), 1);
        assert!(perms[0].is_prefix() && perms[0].key() == b"/app/");
        let mut alice = login(&ep, "alice", "apw").await.unwrap();
        assert_eq!(alice.get("/app/x", None).await.unwrap().kvs()[0].value(), b"1");
        assert_eq!(outcome(&alice.put("/app/x", "2", None).await), "PermissionDenied: etcdserver: permission denied");
        let mut anon = Client::connect([format!("http://{ep}")], None).await.unwrap();
        assert_eq!(outcome(&anon.get("/app/x", None).await), "InvalidArgument: etcdserver: user name is empty");
    });
}

/// The auth sequence of the differential test: each step's outcome as "ok" or "Code: message".
async fn auth_error_script(ep: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut c = Client::connect([format!("http://{ep}")], None).await.unwrap();
    macro_rules! rec {
        ($label:expr, $e:expr) => {
            out.push(format!("{}: {}", $label, outcome(&$e)))
        };
    }
    rec!("authenticate while off", c.auth_client().authenticate("root".into(), "x".into()).await);
    rec!("enable without root", c.auth_enable().await);
    rec!("user add root", c.user_add("root", "rootpw", None).await);
    rec!("user add root again", c.user_add("root", "x", None).await);
    rec!("user add empty", c.user_add("", "x", None).await);
    rec!("role add empty", c.role_add("").await);
    rec!("enable without root role", c.auth_enable().await);
    rec!("grant missing role", c.user_grant_role("root", "nope").await);
    rec!("grant to missing user", c.user_grant_role("nobody", "root").await);
    rec!("grant root role (no record)", c.user_grant_role("root", "root").await);
    rec!("revoke role not granted", c.user_revoke_role("root", "nope").await);
    rec!("role add r", c.role_add("r").await);
    rec!("role add r again", c.role_add("r").await);
    rec!("role get missing", c.role_get("nope").await);
    rec!("user get missing", c.user_get("nope").await);
    rec!("user delete missing", c.user_delete("nope").await);
    rec!("role delete missing", c.role_delete("nope").await);
    rec!("passwd missing", c.user_change_password("nope", "x").await);
    rec!("grant perm missing role", c.role_grant_permission("nope", Permission::read("a")).await);
    rec!("revoke perm missing role", c.role_revoke_permission("nope", "a", None).await);
    rec!("revoke perm not granted", c.role_revoke_permission("r", "a", None).await);
    rec!("grant perm", c.role_grant_permission("r", Permission::write("w").with_range_end("z")).await);
    rec!("user add u", c.user_add("u", "upw", None).await);
    rec!("grant r to u", c.user_grant_role("u", "r").await);
    rec!("grant r to u again", c.user_grant_role("u", "r").await);
    rec!("enable", c.auth_enable().await);
    rec!("enable again (no user)", c.auth_enable().await);
    rec!("get without user", c.get("a", None).await);
    rec!("put without user", c.put("a", "1", None).await);
    rec!("status without user", c.status().await);
    rec!(
        "wrong password",
        Client::connect([format!("http://{ep}")], Some(ConnectOptions::new().with_user("u", "bad"))).await
    );
    rec!(
        "unknown user",
        Client::connect([format!("http://{ep}")], Some(ConnectOptions::new().with_user("zz", "bad"))).await
    );
    let mut u = login(ep, "u", "upw").await.unwrap();
    rec!("u put in range", u.put("x", "1", None).await);
    rec!("u put outside", u.put("a", "1", None).await);
    rec!("u get in write-only range", u.get("x", None).await);
    rec!("u delete range partly outside", u.delete("v", Some(etcd_client::DeleteOptions::new().with_range("y"))).await);
    rec!("u lease grant", u.lease_grant(100, None).await);
    rec!("root's lease", c.lease_grant(100, Some(etcd_client::LeaseGrantOptions::new().with_id(0x77))).await);
    let mut root0 = login(ep, "root", "rootpw").await.unwrap();
    rec!("root attaches a to it", root0.put("a", "1", Some(PutOptions::new().with_lease(0x77))).await);
    rec!("u puts x with that lease", u.put("x", "1", Some(PutOptions::new().with_lease(0x77))).await);
    rec!("u revokes that lease", u.lease_revoke(0x77).await);
    rec!(
        "root attaches nothing else; u's own lease",
        u.lease_grant(100, Some(etcd_client::LeaseGrantOptions::new().with_id(0x78))).await
    );
    rec!("u puts x with own lease", u.put("x", "1", Some(PutOptions::new().with_lease(0x78))).await);
    rec!("u revokes own lease", u.lease_revoke(0x78).await);
    rec!("u compact", u.compact(1, None).await);
    rec!("u user list", u.user_list().await);
    rec!("u role list", u.role_list().await);
    rec!("u user get self", u.user_get("u").await);
    rec!("u user get root", u.user_get("root").await);
    rec!("u role get own", u.role_get("r").await);
    rec!("u role get root", u.role_get("root").await);
    rec!("u role add", u.role_add("x").await);
    rec!("u disable", u.auth_disable().await);
    rec!("u hashkv", u.hash_kv(0).await);
    rec!("u defrag", u.defragment().await);
    rec!("u alarm list", u.alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None).await);
    let mut root = login(ep, "root", "rootpw").await.unwrap();
    rec!("root delete root", root.user_delete("root").await);
    rec!("root revoke root role", root.user_revoke_role("root", "root").await);
    rec!("root delete role root", root.role_delete("root").await);
    rec!("root delete role r", root.role_delete("r").await);
    rec!("u put after role deleted", u.put("x", "2", None).await);
    rec!("root delete u", root.user_delete("u").await);
    rec!("u get after deletion", u.get("x", None).await);
    rec!("root disable", root.auth_disable().await);
    rec!("disable again", c.auth_disable().await);
    rec!("get after disable", c.get("x", None).await);
    out
}

/// Scenario: the same sequence of auth requests and failures, through `etcd-client`, against a real etcd
/// and raftcd: every step has the same outcome (gRPC code and message).
#[test]
fn auth_errors_match_etcd() {
    if !EtcdProcess::available() {
        assert!(skip_allowed(), "etcd is not installed");
        return;
    }
    let etcd = EtcdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let p = RaftcdProcess::start_single(dir.path(), &FAST_BCRYPT);
    rt().block_on(async {
        connect(&etcd.endpoint()).await;
        connect(&p.endpoint()).await;
        let want = auth_error_script(&etcd.endpoint()).await;
        let got = auth_error_script(&p.endpoint()).await;
        eprintln!("raftcd's outcomes:\n{}", got.join("\n"));
        let diff: Vec<String> =
            want.iter().zip(&got).filter(|(w, g)| w != g).map(|(w, g)| format!("etcd:   {w}\nraftcd: {g}")).collect();
        assert!(diff.is_empty() && want.len() == got.len(), "outcomes differ:\n{}", diff.join("\n"));
    });
}

/// One etcdctl run as the text a user sees: stdout then stderr, without clientv3's JSON retry warnings, with
/// the endpoint normalised.
fn etcdctl_text(ep: &str, args: &[&str]) -> String {
    let o = etcdctl(&[ep.to_string()], args);
    let err: String = o.stderr.lines().filter(|l| !l.starts_with('{')).map(|l| format!("{l}\n")).collect();
    format!("$ {}\n{}{}", args.join(" "), o.stdout, err).replace(ep, "ENDPOINT")
}

fn etcdctl_script(ep: &str) -> String {
    let root = ["--user", "root:rootpw"];
    let alice = ["--user", "alice:apw"];
    fn with<'a>(who: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
        [who, rest].concat()
    }
    let steps: Vec<Vec<&str>> = vec![
        vec!["user", "add", "root:rootpw"],
        vec!["user", "add", "root:other"],
        vec!["user", "get", "nobody"],
        vec!["role", "get", "nobody"],
        vec!["auth", "enable"],
        vec!["get", "k"],
        vec!["--user", "root:bad", "get", "k"],
        with(&root, &["user", "add", "alice:apw"]),
        with(&root, &["role", "add", "r1"]),
        with(&root, &["role", "add", "r1"]),
        with(&root, &["role", "grant-permission", "r1", "--prefix=true", "read", "/app/"]),
        with(&root, &["role", "grant-permission", "r1", "write", "/w"]),
        with(&root, &["role", "grant-permission", "r1", "--from-key", "readwrite", "/z"]),
        with(&root, &["role", "grant-permission", "r1", "read", "/a", "/b"]),
        with(&root, &["user", "grant-role", "alice", "r1"]),
        with(&alice, &["get", "/app/x"]),
        with(&alice, &["put", "/app/x", "1"]),
        with(&alice, &["get", "/other"]),
        with(&alice, &["put", "/w", "1"]),
        with(&alice, &["put", "/zz", "1"]),
        with(&alice, &["user", "list"]),
        with(&alice, &["user", "get", "alice"]),
        with(&alice, &["role", "get", "r1"]),
        with(&alice, &["role", "get", "root"]),
        with(&alice, &["endpoint", "hashkv"]),
        with(&root, &["role", "revoke-permission", "r1", "/nope"]),
        with(&root, &["role", "revoke-permission", "r1", "/app/", "--prefix=true"]),
        with(&root, &["role", "revoke-permission", "r1", "/z", "--from-key"]),
        with(&root, &["role", "revoke-permission", "r1", "/a", "/b"]),
        with(&root, &["role", "get", "r1"]),
        with(&root, &["user", "get", "alice", "--detail"]),
        with(&root, &["user", "revoke-role", "alice", "nope"]),
        with(&root, &["user", "revoke-role", "root", "root"]),
        with(&root, &["user", "delete", "root"]),
        with(&root, &["role", "list"]),
        with(&root, &["user", "list"]),
        with(&root, &["-w", "json", "user", "list"]),
        with(&root, &["user", "revoke-role", "alice", "r1"]),
        with(&root, &["role", "delete", "r1"]),
        with(&root, &["user", "delete", "alice"]),
        with(&root, &["user", "add", "bob", "--no-password"]),
        with(&root, &["user", "passwd", "bob", "--interactive=false"]),
        with(&root, &["put", "k", "v"]),
        with(&root, &["auth", "disable"]),
        vec!["get", "k"],
        vec!["auth", "disable"],
    ];
    steps.iter().map(|s| etcdctl_text(ep, s)).collect()
}

/// Scenario: Debian's etcdctl (3.4) user/role/auth commands print the same against raftcd as against etcd,
/// errors included.
#[test]
fn debian_etcdctl_auth_commands_match_etcd() {
    if etcdctl_path().is_none() || !EtcdProcess::available() {
        assert!(skip_allowed(), "etcd/etcdctl are not installed");
        return;
    }
    let etcd = EtcdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let p = RaftcdProcess::start_single(dir.path(), &FAST_BCRYPT);
    rt().block_on(async {
        connect(&etcd.endpoint()).await;
        connect(&p.endpoint()).await;
    });
    let want = etcdctl_script(&etcd.endpoint());
    let got = etcdctl_script(&p.endpoint());
    eprintln!("raftcd's etcdctl transcript:\n{got}");
    // The header revision and member ids in `-w json` differ by deployment: compare the rest.
    let norm = |s: &str| {
        s.lines()
            .map(|l| if l.starts_with('{') { l.split("\"users\"").nth(1).unwrap_or(l).to_string() } else { l.into() })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (want, got) = (norm(&want), norm(&got));
    if want != got {
        for (w, g) in want.lines().zip(got.lines()) {
            if w != g {
                eprintln!("etcd:   {w}\nraftcd: {g}");
            }
        }
        panic!("etcdctl output differs (see above)");
    }
}

/// Kills (SIGKILL) and reaps the child it holds when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian etcdctl over mutual TLS with the certificate `who.pem` from `certs`: (success, stdout+stderr).
fn etcdctl_as_cert(url: &str, certs: &Path, who: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(etcdctl_path().unwrap())
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", url, "--dial-timeout", "3s", "--command-timeout", "10s"])
        .arg(format!("--cacert={}", certs.join("ca.pem").display()))
        .arg(format!("--cert={}", certs.join(format!("{who}.pem")).display()))
        .arg(format!("--key={}", certs.join(format!("{who}-key.pem")).display()))
        .args(args)
        .output()
        .unwrap();
    let err: String = String::from_utf8_lossy(&o.stderr).lines().filter(|l| !l.starts_with('{')).collect();
    (o.status.success(), format!("{}{err}", String::from_utf8_lossy(&o.stdout)))
}

/// Scenario: with https and --client-cert-auth, a request without token is made by the user its client
/// certificate names (CN): root's certificate manages auth, alice's (a user without password) reads only
/// under /app/, and a certificate naming no user gets nothing.
#[test]
fn client_certificate_common_name_is_the_user() {
    if etcdctl_path().is_none() {
        assert!(skip_allowed(), "etcdctl not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let st = Command::new(workspace_bin("raftcd-util"))
        .arg("gen-certs")
        .arg(&certs)
        .args(["server", "root", "alice", "mallory"])
        .status()
        .unwrap();
    assert!(st.success());
    let (cp, pp) = (raftcd_tests::free_port(), raftcd_tests::free_port());
    let url = format!("https://127.0.0.1:{cp}");
    let peer = format!("http://127.0.0.1:{pp}");
    let child = Command::new(workspace_bin("raftcd"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--bcrypt-cost", "4", "--listen-client-urls", &url, "--advertise-client-urls", &url])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("default={peer}")])
        .arg("--cert-file")
        .arg(certs.join("server.pem"))
        .arg("--key-file")
        .arg(certs.join("server-key.pem"))
        .arg("--trusted-ca-file")
        .arg(certs.join("ca.pem"))
        .arg("--client-cert-auth")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _kill = KillOnDrop(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !etcdctl_as_cert(&url, &certs, "root", &["get", "probe"]).0 {
        assert!(std::time::Instant::now() < deadline, "the https member never served");
        std::thread::sleep(Duration::from_millis(200));
    }
    let as_root = |args: &[&str]| {
        let (ok, out) = etcdctl_as_cert(&url, &certs, "root", args);
        assert!(ok, "root {args:?}: {out}");
        out
    };
    step!("set up with auth off, then enable");
    as_root(&["user", "add", "root:rootpw"]);
    as_root(&["role", "add", "root"]);
    as_root(&["user", "grant-role", "root", "root"]);
    as_root(&["role", "add", "app"]);
    as_root(&["role", "grant-permission", "app", "--prefix=true", "read", "/app/"]);
    as_root(&["user", "add", "alice", "--no-password"]);
    as_root(&["user", "grant-role", "alice", "app"]);
    as_root(&["put", "/app/x", "1"]);
    as_root(&["put", "/other", "2"]);
    as_root(&["auth", "enable"]);

    step!("alice's certificate: reads /app/, nothing else");
    let alice = |args: &[&str]| etcdctl_as_cert(&url, &certs, "alice", args);
    assert_eq!(alice(&["get", "/app/x", "--print-value-only"]), (true, "1\n".into()));
    assert_eq!(alice(&["put", "/app/x", "2"]), (false, "Error: etcdserver: permission denied".into()));
    assert_eq!(alice(&["get", "/other"]), (false, "Error: etcdserver: permission denied".into()));
    assert_eq!(alice(&["user", "list"]), (false, "Error: etcdserver: permission denied".into()));

    step!("root's certificate does everything; mallory's names no user");
    as_root(&["put", "/other", "3"]);
    assert_eq!(as_root(&["user", "list"]), "alice\nroot\n");
    let (ok, out) = etcdctl_as_cert(&url, &certs, "mallory", &["get", "/app/x"]);
    assert!(!ok && out.contains("permission denied"), "mallory: {out}");
    as_root(&["auth", "disable"]);
    assert!(etcdctl_as_cert(&url, &certs, "mallory", &["get", "/app/x"]).0, "auth off: open again");
}

/// Scenario: in a 3-member cluster with `--snapshot-count 20`, m3 is down while auth is set up and enough
/// is written that the others compact their logs: m3 comes back through a streamed snapshot and knows the
/// users, roles and permissions. m1 is restarted: auth is still on and passwords still work.
#[test]
fn snapshot_installed_and_restarted_members_keep_auth() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--bcrypt-cost", "4", "--snapshot-count", "20"];
    let mut cluster = RaftcdCluster::start(dir.path(), 3, &args);
    let eps = cluster.endpoints();
    rt().block_on(async {
        for ep in &eps {
            connect(ep).await;
        }
    });
    step!("m3 goes down; auth is set up and 60 keys written");
    cluster.members[2].kill();
    rt().block_on(async {
        let mut c = connect(&eps[0]).await;
        c.put("/app/x", "1", None).await.unwrap();
        set_up_auth(&mut c, Permission::read("/app/").with_prefix()).await;
        let mut root = login(&eps[0], "root", "rootpw").await.unwrap();
        for i in 0..60 {
            root.put(format!("/fill/{i}"), "v", None).await.unwrap();
        }
    });
    step!("m3 restarts and catches up through a snapshot");
    cluster.members[2].restart();
    let start = std::time::Instant::now();
    while !cluster.members[2].log().contains("installed snapshot") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "m3 never installed a snapshot:\n{}",
            cluster.members[2].log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    step!("m1 restarts");
    cluster.members[0].restart();
    rt().block_on(async {
        for ep in [&eps[2], &eps[0]] {
            let mut alice = None;
            for _ in 0..300 {
                if let Ok(c) = login(ep, "alice", "apw").await {
                    alice = Some(c);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut alice = alice.unwrap_or_else(|| panic!("alice cannot log in on {ep}"));
            let mut got = alice.get("/app/x", Some(GetOptions::new().with_serializable())).await;
            for _ in 0..100 {
                if got.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                got = alice.get("/app/x", Some(GetOptions::new().with_serializable())).await;
            }
            assert_eq!(got.unwrap().kvs()[0].value(), b"1", "alice reads /app/ on {ep}");
            let denied = outcome(&alice.get("/fill/1", Some(GetOptions::new().with_serializable())).await);
            assert_eq!(denied, "PermissionDenied: etcdserver: permission denied", "on {ep}");
            let mut anon = Client::connect([format!("http://{ep}")], None).await.unwrap();
            let anon_get = anon.get("/app/x", Some(GetOptions::new().with_serializable())).await;
            assert_eq!(outcome(&anon_get), "InvalidArgument: etcdserver: user name is empty", "auth is on at {ep}");
        }
        let mut root = login(&eps[2], "root", "rootpw").await.unwrap();
        assert_eq!(root.user_list().await.unwrap().users(), ["alice", "root"]);
    });
}

/// A Range through a raw gRPC connection to `ep` carrying `token` as etcd clients send it.
async fn range_with_token(ep: &str, token: &str, key: &str) -> Result<(), tonic::Status> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{ep}")).unwrap().connect().await.unwrap();
    let mut kv = raftcd_proto::etcdserverpb::kv_client::KvClient::new(ch);
    let mut req = tonic::Request::new(raftcd_proto::etcdserverpb::RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    });
    req.metadata_mut().insert("token", token.parse().unwrap());
    kv.range(req).await.map(|_| ())
}

/// Scenario: a 3-member cluster with `--auth-token jwt,...,sign-method=ES256,ttl=3s`. Authenticate returns a
/// signed JWT naming the user; the token works on every member without any replication; a token with
/// forged claims is refused; after the ttl the token is refused everywhere.
#[test]
fn jwt_tokens_are_signed_work_everywhere_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let kp = rcgen::KeyPair::generate().unwrap();
    let (pubk, privk) = (dir.path().join("jwt.pub"), dir.path().join("jwt.key"));
    std::fs::write(&pubk, kp.public_key_pem()).unwrap();
    std::fs::write(&privk, kp.serialize_pem()).unwrap();
    let spec = format!("jwt,pub-key={},priv-key={},sign-method=ES256,ttl=3s", pubk.display(), privk.display());
    let cluster = RaftcdCluster::start(dir.path(), 3, &["--bcrypt-cost", "4", "--auth-token", &spec]);
    let eps = cluster.endpoints();
    rt().block_on(async {
        let mut c = connect(&eps[0]).await;
        set_up_auth(&mut c, Permission::read("/app/").with_prefix()).await;
        step!("alice authenticates on m1; the token is a JWT with her name");
        let anon = etcd_client::Client::connect([format!("http://{}", eps[0])], None).await.unwrap();
        let token = anon.auth_client().authenticate("alice".into(), "apw".into()).await.unwrap().token().to_string();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "not a JWT: {token}");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: serde_json::Value =
            serde_json::from_slice(&base64::Engine::decode(&b64, parts[0]).unwrap()).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&base64::Engine::decode(&b64, parts[1]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(claims["username"], "alice");
        assert!(claims["exp"].is_u64() && claims["revision"].is_u64(), "{claims}");
        step!("the token works on every member; a forged one does not");
        for ep in &eps {
            range_with_token(ep, &token, "/app/x").await.unwrap_or_else(|e| panic!("{ep}: {e}"));
            let denied = range_with_token(ep, &token, "/other").await.unwrap_err();
            assert_eq!(
                (denied.code(), denied.message()),
                (tonic::Code::PermissionDenied, "etcdserver: permission denied")
            );
        }
        let forged_claims = base64::Engine::encode(
            &b64,
            serde_json::json!({"username":"root","revision":1,"exp":99999999999u64}).to_string(),
        );
        let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
        let e = range_with_token(&eps[1], &forged, "/app/x").await.unwrap_err();
        assert_eq!((e.code(), e.message()), (tonic::Code::Unauthenticated, "etcdserver: invalid auth token"));
        let wrong = anon.auth_client().authenticate("alice".into(), "nope".into()).await;
        assert_eq!(outcome(&wrong), "InvalidArgument: etcdserver: authentication failed, invalid user ID or password");
        step!("after the 3 s ttl the token is refused everywhere");
        tokio::time::sleep(Duration::from_secs(4)).await;
        for ep in &eps {
            let e = range_with_token(ep, &token, "/app/x").await.unwrap_err();
            assert_eq!((e.code(), e.message()), (tonic::Code::Unauthenticated, "etcdserver: invalid auth token"));
        }
    });
}
