//! `etcdctl-rs check perf` against real raftcd and etcd members: etcdctl's four-line verdict (throughput,
//! slowest request, stddev, overall PASS/FAIL, exit code 1 on FAIL), and the keys it wrote are gone after.
//! The run is shortened with the hidden `--duration` flag (etcdctl fixes it at 60 s); the verdicts are
//! whatever this shared machine achieves, so only their form and consistency are asserted.

use std::process::Command;

use raftcd_tests::client::skip_allowed;
use raftcd_tests::{workspace_bin, EtcdProcess, RaftcdProcess};

/// Runs `check perf` against `endpoint`, checks the output's form, and that the prefix is empty afterwards.
fn check_perf(endpoint: &str) {
    let rs = workspace_bin("etcdctl-rs");
    let out = Command::new(&rs)
        .args(["--endpoints", endpoint, "check", "perf", "--duration", "3", "--auto-compact", "--auto-defrag"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all: Vec<&str> = stdout.lines().collect();
    assert!(all.len() >= 4, "four verdict lines expected:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // --auto-compact / --auto-defrag report first, as etcdctl: "Compacting with revision N", ...
    let (maintenance, lines) = all.split_at(all.len() - 4);
    let expected = ["Compacting with revision ", "Compacted with revision ", "Defragmenting \"", "Defragmented \""];
    assert_eq!(maintenance.len(), 4, "{stdout}");
    for (l, prefix) in maintenance.iter().zip(expected) {
        assert!(l.starts_with(prefix), "{l:?} should start with {prefix:?}:\n{stdout}");
    }
    let verdict = |l: &str| l.starts_with("PASS: ") || l.starts_with("FAIL: ");
    assert!(verdict(lines[0]) && lines[0].contains("hroughput") && lines[0].ends_with(" writes/s"), "{stdout}");
    assert!(verdict(lines[1]) && lines[1].contains("request took ") && lines[1].ends_with('s'), "{stdout}");
    assert!(verdict(lines[2]) && lines[2].contains("tddev") && lines[2].ends_with('s'), "{stdout}");
    let all_pass = lines[..3].iter().all(|l| l.starts_with("PASS"));
    assert_eq!(lines[3], if all_pass { "PASS" } else { "FAIL" }, "overall verdict:\n{stdout}");
    assert_eq!(out.status.code(), Some(if all_pass { 0 } else { 1 }), "exit code:\n{stdout}");
    let left = Command::new(&rs)
        .args(["--endpoints", endpoint, "get", "--prefix", "/etcdctl-check-perf/", "--count-only", "-w", "fields"])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(left.contains("\"Count\" : 0"), "check perf left keys behind:\n{left}");
}

#[test]
fn check_perf_on_raftcd() {
    let dir = tempfile::tempdir().unwrap();
    let p = RaftcdProcess::start_single(dir.path(), &[]);
    tokio::runtime::Runtime::new().unwrap().block_on(raftcd_tests::client::connect(&p.endpoint()));
    check_perf(&p.endpoint());
}

#[test]
fn check_perf_on_etcd() {
    if !EtcdProcess::available() {
        assert!(skip_allowed(), "etcd is not installed (set RAFTCD_ALLOW_SKIP=1 to skip)");
        return;
    }
    let e = EtcdProcess::start();
    tokio::runtime::Runtime::new().unwrap().block_on(raftcd_tests::client::connect(&e.endpoint()));
    check_perf(&e.endpoint());
}
