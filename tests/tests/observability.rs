//! Observability against real raftcd processes: /metrics (etcd's names, grpc_server_* counters) on the client
//! port and on --listen-metrics-urls, /health, /livez, /readyz following alarms, and the log lines operators
//! alert on (alarms, compaction, leader and member changes) in --log-format json.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use etcd_client::{AlarmAction, AlarmOptions, AlarmType, GetOptions};
use raftcd_tests::client::connect;
use raftcd_tests::{free_port, step, RaftcdCluster, RaftcdProcess};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// One HTTP/1.1 GET; (status code, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The value of the sample line `name` (exact, labels included) in a Prometheus exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

/// Waits until the member's log has a JSON line whose message is `msg`; returns that line parsed.
fn wait_for_log(p: &RaftcdProcess, msg: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for line in p.log().lines().filter(|l| l.starts_with('{')) {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if v["fields"]["message"] == msg {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "no {msg:?} line in the log:\n{}", p.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

const ETCD_NAMES: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_disk_wal_fsync_duration_seconds_bucket",
    "etcd_disk_backend_commit_duration_seconds_bucket",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_watcher_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "process_resident_memory_bytes",
];

/// Scenario: a single member serves etcd's metric names on both ports; grpc_server_handled_total counts
/// calls by method and code; /health and /readyz turn false while an alarm is raised and the alarm, its
/// disarm and a compaction each leave a JSON log line.
#[test]
fn metrics_health_and_alarm_logs() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}");
    let p = RaftcdProcess::start_single(
        dir.path(),
        &["--listen-metrics-urls", &metrics_url, "--log-format", "json", "--quota-backend-bytes", "0"],
    );
    let ep = p.endpoint();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    rt().block_on(async {
        let mut c = connect(&ep).await;
        step!("three good Ranges, one of a future revision, one Put");
        for _ in 0..3 {
            c.get("obs/a", None).await.unwrap();
        }
        let err = c.get("obs/a", Some(GetOptions::new().with_revision(1_000_000))).await.unwrap_err();
        assert!(err.to_string().contains("future revision"), "{err}");
        c.put("obs/a", "1", None).await.unwrap();

        step!("/metrics on the client port and on --listen-metrics-urls");
        for addr in [ep.as_str(), metrics_addr.as_str()] {
            let (status, text) = http_get(addr, "/metrics");
            assert_eq!(status, 200, "{addr}/metrics: {text}");
            for name in ETCD_NAMES {
                assert!(text.lines().any(|l| l.starts_with(name)), "{addr}/metrics lacks {name}");
            }
            let range = |code: &str| {
                sample(
                    &text,
                    &format!(
                        "grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"Range\",\
                         grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}}"
                    ),
                )
            };
            // The readiness probe of `connect` adds Ranges of its own: at least our three succeeded.
            assert!(range("OK").unwrap_or(0.0) >= 3.0, "Range OK count in:\n{text}");
            assert_eq!(range("OutOfRange"), Some(1.0), "exactly one Range failed with OutOfRange");
            let put = "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",\
                       grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}";
            assert_eq!(sample(&text, put), Some(1.0));
            let started = "grpc_server_started_total{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",\
                           grpc_type=\"unary\"}";
            assert_eq!(sample(&text, started), Some(1.0));
            assert_eq!(sample(&text, "etcd_server_has_leader"), Some(1.0));
        }

        step!("health endpoints while healthy");
        assert_eq!(http_get(&ep, "/health"), (200, "{\"health\":\"true\",\"reason\":\"\"}".into()));
        assert_eq!(http_get(&metrics_addr, "/health").0, 200);
        assert_eq!(http_get(&ep, "/livez").0, 200);
        assert_eq!(http_get(&ep, "/readyz").0, 200);

        step!("raise NOSPACE by hand: health false, a log line; disarm: healthy again, a log line");
        let me = c.status().await.unwrap().header().unwrap().member_id();
        let for_me = || {
            let mut o = AlarmOptions::new();
            o.with_member(me);
            o
        };
        c.alarm(AlarmAction::Activate, AlarmType::Nospace, Some(for_me())).await.unwrap();
        assert_eq!(http_get(&ep, "/health"), (503, "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}".into()));
        assert_eq!(http_get(&ep, "/readyz").0, 503);
        assert_eq!(http_get(&ep, "/livez").0, 200, "an alarm does not make the process unlive");
        let raised = wait_for_log(&p, "alarm raised");
        assert_eq!(raised["fields"]["alarm"], "NOSPACE");
        assert_eq!(raised["level"], "WARN");
        c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(for_me())).await.unwrap();
        assert_eq!(http_get(&ep, "/health").0, 200);
        wait_for_log(&p, "alarm disarmed");

        step!("a compaction is logged");
        let rev = c.put("obs/b", "2", None).await.unwrap().header().unwrap().revision();
        c.compact(rev, None).await.unwrap();
        let done = wait_for_log(&p, "compaction finished");
        assert_eq!(done["fields"]["revision"], rev);
        let (_, text) = http_get(&ep, "/metrics");
        let compact = "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Compact\",\
                       grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}";
        assert_eq!(sample(&text, compact), Some(1.0));
    });
}

/// Scenario: in a 3-member cluster the leader is killed: a survivor logs its role change and counts a
/// second leader change; a member added afterwards is logged on every running member.
#[test]
fn leader_and_member_changes_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RaftcdCluster::start(
        dir.path(),
        3,
        &["--log-format", "json", "--heartbeat-interval", "50", "--election-timeout", "500"],
    );
    let eps = cluster.endpoints();
    rt().block_on(async {
        let mut c = connect(&eps[0]).await;
        let leader = c.status().await.unwrap().leader();
        let members = c.member_list().await.unwrap();
        let idx = members
            .members()
            .iter()
            .find(|m| m.id() == leader)
            .and_then(|m| cluster.members.iter().position(|p| p.member.name == m.name()))
            .expect("leader is one of ours");
        step!("kill the leader m{}", idx + 1);
        cluster.members[idx].kill();
        let survivor = (idx + 1) % 3;
        let mut sc = connect(&cluster.members[survivor].endpoint()).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // The survivor must name a new leader: the counter alone may already read 2 at start-up.
            let new_leader = sc.status().await.map(|s| s.leader()).unwrap_or(0);
            let (_, text) = http_get(&cluster.members[survivor].endpoint(), "/metrics");
            if new_leader != 0
                && new_leader != leader
                && sample(&text, "etcd_server_leader_changes_seen_total").unwrap_or(0.0) >= 2.0
                && sample(&text, "etcd_server_has_leader") == Some(1.0)
            {
                break;
            }
            assert!(Instant::now() < deadline, "no new leader seen in the metrics:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let killed = format!("{leader:x}");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = cluster.members[survivor].log();
            let elected: Vec<serde_json::Value> = log
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["fields"]["message"] == "elected leader")
                .collect();
            if elected.iter().any(|v| v["fields"]["leader"].as_str().is_some_and(|l| l != killed)) {
                break;
            }
            assert!(Instant::now() < deadline, "no 'elected leader' line naming a new leader:\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        }

        step!("add a learner: logged by both survivors");
        sc.member_add(["http://127.0.0.1:1"], Some(etcd_client::MemberAddOptions::new().with_is_learner()))
            .await
            .unwrap();
        for (i, m) in cluster.members.iter().enumerate() {
            if i != idx {
                let v = wait_for_log(m, "added learner member");
                assert!(v["fields"]["member"].is_string(), "{v}");
            }
        }
    });
}
