//! Debian's etcdctl as a watch client (`etcdctl watch` as a child process, its stdout parsed).

use super::*;

// ---------------------------------------------------------------------------------------------------------
// Debian etcdctl
// ---------------------------------------------------------------------------------------------------------

/// A running `etcdctl watch ...` whose stdout lines are collected.
struct EtcdctlWatch {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl EtcdctlWatch {
    fn spawn(endpoint: &str, args: &[&str]) -> Option<EtcdctlWatch> {
        let Some(bin) = etcdctl_path() else {
            assert!(skip_allowed(), "etcdctl missing (set RAFTCD_ALLOW_SKIP=1 to skip)");
            return None;
        };
        let mut child = Command::new(bin)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg("watch")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcdctl");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                l2.lock().unwrap().push(line);
            }
        });
        Some(EtcdctlWatch { child, lines })
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    async fn wait_lines(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        while self.lines.lock().unwrap().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.lines()
    }

    /// Puts `key` until the watch shows it (etcdctl prints nothing when its watch is created); returns the
    /// number of lines printed so far, after which the test's own events follow.
    async fn wait_ready(&self, c: &mut Client, key: &str) -> usize {
        for _ in 0..50 {
            c.put(key, "ready", None).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            if self.lines().iter().any(|l| l == key) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                return self.lines().len();
            }
        }
        panic!("etcdctl watch never showed {key}");
    }
}

impl Drop for EtcdctlWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Scenario: `etcdctl watch --prefix /e/` (a child process) prints PUT/DELETE, key, value for writes under the
/// prefix and nothing for others; killed afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch_prefix() {
    let mut n = start_node(&[]).await;
    let Some(w) = EtcdctlWatch::spawn(&n.proc.endpoint(), &["--prefix", "/e/"]) else { return };
    let skip = w.wait_ready(&mut n.client, "/e/ready").await;
    step!("writes inside and outside /e/");
    let c = &mut n.client;
    c.put("/e/a", "1", None).await.unwrap();
    c.put("/other", "x", None).await.unwrap();
    c.put("/e/b", "2", None).await.unwrap();
    c.delete("/e/a", None).await.unwrap();
    c.txn(Txn::new().and_then(vec![TxnOp::put("/e/c", "3", None), TxnOp::put("/f", "no", None)])).await.unwrap();
    let got = w.wait_lines(skip + 12, Duration::from_secs(5)).await;
    step!("etcdctl printed {:?}", &got[skip..]);
    assert_eq!(
        got[skip..].to_vec(),
        lines(&["PUT", "/e/a", "1", "PUT", "/e/b", "2", "DELETE", "/e/a", "", "PUT", "/e/c", "3"])
    );
}

/// Scenario: `etcdctl watch --rev 2 k` replays k's history from revision 2, then continues with a live put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch_rev_replays_history() {
    let mut n = start_node(&[]).await;
    let c = &mut n.client;
    c.put("k", "1", None).await.unwrap(); // 2
    c.put("x", "1", None).await.unwrap(); // 3
    c.put("k", "2", None).await.unwrap(); // 4
    c.delete("k", None).await.unwrap(); // 5
    let Some(w) = EtcdctlWatch::spawn(&n.proc.endpoint(), &["--rev", "2", "k"]) else { return };
    let got = w.wait_lines(9, Duration::from_secs(5)).await;
    assert_eq!(got, lines(&["PUT", "k", "1", "PUT", "k", "2", "DELETE", "k", ""]));
    n.client.put("k", "3", None).await.unwrap();
    let got = w.wait_lines(12, Duration::from_secs(5)).await;
    assert_eq!(got[9..].to_vec(), lines(&["PUT", "k", "3"]));
}

/// Scenario: `etcdctl watch --prev-kv k` prints the previous key-value before the new one for updates and
/// deletes, and nothing extra for a create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch_prev_kv() {
    let mut n = start_node(&[]).await;
    let Some(w) = EtcdctlWatch::spawn(&n.proc.endpoint(), &["--prev-kv", "--prefix", "pk"]) else { return };
    let skip = w.wait_ready(&mut n.client, "pk-ready").await;
    let c = &mut n.client;
    c.put("pk", "1", None).await.unwrap();
    c.put("pk", "2", Some(PutOptions::new())).await.unwrap();
    c.delete("pk", None).await.unwrap();
    let got = w.wait_lines(skip + 13, Duration::from_secs(5)).await;
    step!("etcdctl printed {:?}", &got[skip..]);
    assert_eq!(
        got[skip..].to_vec(),
        lines(&["PUT", "pk", "1", "PUT", "pk", "1", "pk", "2", "DELETE", "pk", "2", "pk", ""])
    );
}
