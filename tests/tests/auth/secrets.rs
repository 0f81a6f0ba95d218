//! Passwords never stored in plain, and users and roles surviving snapshot restore.

use super::*;

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
