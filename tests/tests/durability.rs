//! Acknowledged writes must survive a power failure, not only kill -9: the raft Ready loop's fsync point has
//! to reach the disk, and so must the state in sled before the log is cut. sled's own flush writes with
//! sync_file_range and never fsyncs (see server/src/durable.rs). This watches a real raftcd process with
//! strace: serving a put fdatasyncs the raft WAL, and a graceful stop (like a log compaction) fdatasyncs
//! sled's database file and the blob file a value too large for sled's log went to.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raftcd_tests::client::connect;
use raftcd_tests::{step, RaftcdProcess};

/// strace attached to every thread of `pid`, tracing fsync-family calls with the paths of their descriptors.
fn attach_strace(pid: u32, out: &std::path::Path) -> Child {
    let child = Command::new("strace")
        .args(["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(out)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace is needed (scripts/deps.sh installs it)");
    // strace creates the output file once it has attached.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !out.exists() {
        assert!(Instant::now() < deadline, "strace did not attach");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child
}

/// Stops strace (it detaches and flushes its output on SIGINT) and returns the traced calls.
fn finish_strace(mut child: Child, out: &std::path::Path) -> String {
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let _ = child.wait();
    std::fs::read_to_string(out).unwrap_or_default()
}

#[test]
fn acknowledged_puts_are_fdatasynced_including_large_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RaftcdProcess::start_single(dir.path(), &[]);
    let ep = server.endpoint();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut c = rt.block_on(connect(&ep));
    rt.block_on(c.put("warm", "up", None)).unwrap();

    step!("attach strace, then one small put");
    let trace = dir.path().join("small.trace");
    let strace = attach_strace(server.pid().unwrap(), &trace);
    rt.block_on(c.put("k", "v", None)).unwrap();
    let small = finish_strace(strace, &trace);
    assert!(
        small.lines().any(|l| l.contains("fdatasync(") && l.contains("/member/wal/") && l.contains(".wal>")),
        "a put must fdatasync the raft WAL; traced calls:\n{small}"
    );

    step!("a 700 KiB value, then a graceful stop: sled's file and the value's blob file are synced");
    let trace = dir.path().join("large.trace");
    let strace = attach_strace(server.pid().unwrap(), &trace);
    rt.block_on(c.put("big", vec![b'x'; 700 << 10], None)).unwrap();
    assert_eq!(server.terminate(), Some(0), "raftcd must stop cleanly on SIGTERM");
    let large = finish_strace(strace, &trace);
    assert!(
        large.lines().any(|l| l.contains("fdatasync(") && l.contains("/member/db") && l.contains("/db>")),
        "stopping must fdatasync sled's database file; traced calls:\n{large}"
    );
    assert!(
        large.lines().any(|l| l.contains("fdatasync(") && l.contains("/blobs/")),
        "stopping must fdatasync the blob file of the large value; traced calls:\n{large}"
    );
    assert!(
        large.lines().any(|l| l.contains("fsync(") && l.contains("/blobs>)")),
        "the blob directory must be fsynced after it gained a file; traced calls:\n{large}"
    );

    step!("the value reads back after a restart");
    drop(c);
    server.restart();
    let mut c = rt.block_on(connect(&server.endpoint()));
    let got = rt.block_on(c.get("big", None)).unwrap();
    assert_eq!(got.kvs().first().map(|kv| kv.value().len()), Some(700 << 10));
}
