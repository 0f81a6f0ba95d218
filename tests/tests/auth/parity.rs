//! The same auth requests and etcdctl commands against raftcd and a real etcd.

use super::*;

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

/// A real etcd and a raftcd member (fast bcrypt), both serving; the TempDir holds raftcd's data.
fn start_pair() -> (EtcdProcess, RaftcdProcess, tempfile::TempDir) {
    let etcd = EtcdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let p = RaftcdProcess::start_single(dir.path(), &FAST_BCRYPT);
    rt().block_on(async {
        connect(&etcd.endpoint()).await;
        connect(&p.endpoint()).await;
    });
    (etcd, p, dir)
}

/// Scenario: the same sequence of auth requests and failures, through `etcd-client`, against a real etcd
/// and raftcd: every step has the same outcome (gRPC code and message).
#[test]
fn auth_errors_match_etcd() {
    if !EtcdProcess::available() {
        assert!(skip_allowed(), "etcd is not installed");
        return;
    }
    let (etcd, p, _dir) = start_pair();
    rt().block_on(async {
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
    let (etcd, p, _dir) = start_pair();
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
