//! Acknowledged writes must survive a power failure, not only kill -9: the raft Ready loop's fsync point has
//! to reach the disk, and so must the state in sled before the log is cut. This watches a real raftcd process
//! with strace: serving a put fdatasyncs the raft WAL, and a graceful stop (like a log compaction) fdatasyncs
//! sled's database file and the blob file a value too large for sled's log went to. It also holds the
//! vendored sled to its contract (vendor/sled/RAFTCD-PATCHES.md): batches make no synchronous disk write,
//! and its own flush fdatasyncs the log.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raftcd_tests::client::connect;
use raftcd_tests::{step, RaftcdProcess};

/// strace attached to every thread of `pid`, tracing fsync-family calls with the paths of their descriptors.
fn attach_strace(pid: u32, out: &std::path::Path) -> Child {
    attach_strace_calls(pid, out, "fsync,fdatasync")
}

/// strace attached to every thread of `pid`, tracing `calls` (strace's comma-separated list).
fn attach_strace_calls(pid: u32, out: &std::path::Path, calls: &str) -> Child {
    let child = Command::new("strace")
        .args(["-f", "-qq", "-y", "-e", &format!("trace={calls}"), "-o"])
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

#[test]
fn sled_batches_make_no_synchronous_write_and_its_flush_fdatasyncs_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).flush_every_ms(None).open().unwrap();
    let tree = db.open_tree("t").unwrap();
    // strace's `-y` names a descriptor by its path: this test's own database file only (other tests of this
    // binary run alongside, in this process and its children).
    let db_file = format!("{}/db>", dir.path().display());
    let ours = |trace: &str, call: &str| trace.lines().filter(|l| l.contains(call) && l.contains(&db_file)).count();

    step!("100 one-put batches, as raftcd's apply makes them");
    let trace = dir.path().join("batches.trace");
    let strace = attach_strace_calls(std::process::id(), &trace, "fsync,fdatasync,sync_file_range");
    let started = Instant::now();
    for i in 0..100u32 {
        let mut batch = sled::Batch::default();
        batch.insert(&i.to_be_bytes(), vec![7u8; 256]);
        tree.apply_batch(batch).unwrap();
    }
    let took = started.elapsed();
    let batches = finish_strace(strace, &trace);
    // sled 0.34 as published: two sync_file_range per batch. Patched: none, and an fdatasync at most every
    // 20 ms of writing (the cadence that lets segments be reused).
    assert_eq!(ours(&batches, "sync_file_range("), 0, "batches must not sync_file_range:\n{batches}");
    let cadence = took.as_millis() as usize / 20 + 2;
    assert!(
        ours(&batches, "fdatasync(") <= cadence,
        "at most one fdatasync per 20 ms of batches ({took:?}); traced calls:\n{batches}"
    );

    step!("flush: sled itself fdatasyncs its log before it returns");
    let trace = dir.path().join("flush.trace");
    let strace = attach_strace_calls(std::process::id(), &trace, "fsync,fdatasync,sync_file_range");
    db.flush().unwrap();
    let flush = finish_strace(strace, &trace);
    assert!(ours(&flush, "fdatasync(") >= 1, "sled's flush must fdatasync its log file; traced calls:\n{flush}");
    assert_eq!(tree.len(), 100);
}
