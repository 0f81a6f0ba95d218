//! Permissions in force: a confined reader, revocation on every member, token expiry.

use super::*;

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
