//! Who a request is: the client certificate CN, and auth across snapshot installs and restarts.

use super::*;

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
