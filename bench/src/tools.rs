//! Helpers for the comparison script: cluster status, readiness after a restart, the disk's fsync floor
//! and the servers' memory and disk footprint.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use raftcd_proto::etcdserverpb::RangeRequest;
use serde_json::json;

use crate::cli::{FootprintArgs, FsyncArgs, Global, ReadyArgs, StatusArgs};
use crate::conn::{connect, leader_endpoint, status as member_status};
use crate::report::{round3, Report};

/// `status`: prints every endpoint's status; the JSON line names the leader's endpoint index.
pub async fn status(g: &Global, a: &StatusArgs) -> Result<String> {
    let deadline = Instant::now() + a.wait.unwrap_or(Duration::ZERO);
    loop {
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        for ep in &g.endpoints.0 {
            match member_status(ep, g.dial_timeout).await {
                Ok(s) => rows.push((ep.clone(), s)),
                Err(e) => failures.push(format!("{ep}: {e:#}")),
            }
        }
        let ids: Vec<(String, u64, u64)> =
            rows.iter().map(|(ep, s)| (ep.clone(), s.header.as_ref().map_or(0, |h| h.member_id), s.leader)).collect();
        let leader = leader_endpoint(&ids);
        let agreed = leader.is_some() && ids.iter().all(|(_, _, l)| *l == ids[0].2);
        if (failures.is_empty() && agreed) || Instant::now() >= deadline {
            let mut out = String::new();
            if !g.json_only {
                out.push_str(&format!(
                    "{:<28} {:>16} {:>16} {:>6} {:>10} {:>10} {:>10}  version\n",
                    "endpoint", "member", "leader", "term", "index", "applied", "db_bytes"
                ));
                for (ep, s) in &rows {
                    out.push_str(&format!(
                        "{:<28} {:>16x} {:>16x} {:>6} {:>10} {:>10} {:>10}  {}\n",
                        ep,
                        s.header.as_ref().map_or(0, |h| h.member_id),
                        s.leader,
                        s.raft_term,
                        s.raft_index,
                        s.raft_applied_index,
                        s.db_size,
                        s.version
                    ));
                }
                for f in &failures {
                    out.push_str(&format!("unreachable: {f}\n"));
                }
            }
            let leader_index = leader.as_ref().and_then(|l| g.endpoints.0.iter().position(|e| e == l));
            out.push_str(&json!({"scenario": "status", "leader_index": leader_index, "leader": leader, "unreachable": failures.len()}).to_string());
            if !(failures.is_empty() && agreed) {
                bail!("{out}\ncluster not ready: {} unreachable, leader agreed: {agreed}", failures.len());
            }
            return Ok(out);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Nanoseconds since the Unix epoch.
pub fn unix_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// `ready`: retries a linearizable get on the first endpoint until one succeeds.
pub async fn ready(g: &Global, a: &ReadyArgs) -> Result<Report> {
    let since = a.since_unix_ns.unwrap_or_else(unix_ns);
    let started = Instant::now();
    let ep = &g.endpoints.0[0];
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let attempt = async {
            let conn = connect(ep, Duration::from_secs(1)).await?;
            let req = RangeRequest { key: a.key.as_bytes().to_vec(), ..Default::default() };
            tokio::time::timeout(Duration::from_secs(2), conn.kv().range(req)).await.context("timed out")??;
            anyhow::Ok(())
        };
        if let Err(e) = attempt.await {
            if started.elapsed() >= a.timeout {
                bail!("{ep} not serving linearizable reads after {:?}: {e:#}", a.timeout);
            }
        } else {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = (unix_ns().saturating_sub(since)) as f64 / 1e9;
    let mut r = Report::new("ready", 1, 1);
    r.ops = 1;
    r.elapsed = Duration::from_secs_f64(secs);
    r.latency.record(r.elapsed);
    r.set("attempts", attempts);
    r.set("endpoint", ep.as_str());
    Ok(r)
}

/// `fsync`: `count` rounds of writing `size` bytes and `fdatasync`, each timed.
pub fn fsync(a: &FsyncArgs) -> Result<Report> {
    let path = a.dir.join(format!(".raftcd-bench-fsync-{}", std::process::id()));
    let result = fsync_rounds(&path, a);
    let _ = std::fs::remove_file(&path);
    result
}

fn fsync_rounds(path: &Path, a: &FsyncArgs) -> Result<Report> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let block = vec![0x5au8; a.size];
    if !a.append {
        // Preallocate and sync once, so each round only has to persist data, like a preallocated WAL.
        for _ in 0..a.count {
            f.write_all(&block)?;
        }
        f.sync_all()?;
        f.seek(SeekFrom::Start(0))?;
    }
    let mut r = Report::new("fsync", 1, 1);
    let start = Instant::now();
    for _ in 0..a.count {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        r.latency.record(t.elapsed());
        r.ops += 1;
    }
    r.elapsed = start.elapsed();
    r.set("size", a.size);
    r.set("mode", if a.append { "append" } else { "overwrite" });
    r.set("dir", a.dir.display().to_string());
    Ok(r)
}

/// Resident set size of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("no process {pid}"))?;
    parse_vm_rss(&text).with_context(|| format!("no VmRSS for process {pid}"))
}

/// The VmRSS field of a /proc/PID/status text, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Bytes allocated on disk for everything under `dir` (as `du`).
pub fn disk_usage(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let entry = entry?;
            let md = entry.metadata()?;
            if md.is_dir() {
                stack.push(entry.path());
            } else {
                total += md.blocks() * 512;
            }
        }
    }
    Ok(total)
}

/// `footprint`: summed, mean and max RSS over the processes, and the data directories' size.
pub fn footprint(a: &FootprintArgs) -> Result<Report> {
    let rss: Vec<u64> = a.pids.iter().map(|p| rss_kib(*p)).collect::<Result<_>>()?;
    let mib = |kib: u64| round3(kib as f64 / 1024.0);
    let mut r = Report::new("footprint", a.pids.len() as u64, 0);
    r.ops = a.pids.len() as u64;
    r.set("rss_mib_sum", mib(rss.iter().sum()));
    r.set("rss_mib_mean", round3(rss.iter().sum::<u64>() as f64 / 1024.0 / rss.len() as f64));
    r.set("rss_mib_max", mib(rss.iter().copied().max().unwrap_or(0)));
    if !a.dirs.is_empty() {
        let disk: Vec<u64> = a.dirs.iter().map(|d| disk_usage(d)).collect::<Result<_>>()?;
        r.set("disk_mib_sum", round3(disk.iter().sum::<u64>() as f64 / 1048576.0));
        r.set("disk_mib_mean", round3(disk.iter().sum::<u64>() as f64 / 1048576.0 / disk.len() as f64));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss() {
        let s = "Name:\traftcd\nVmPeak:\t  100 kB\nVmRSS:\t   51234 kB\nThreads: 3\n";
        assert_eq!(parse_vm_rss(s), Some(51234));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn fsync_rounds_and_disk_usage() {
        let dir = std::env::temp_dir().join(format!("raftcd-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let r = fsync(&FsyncArgs { dir: dir.clone(), count: 3, size: 4096, append: false }).unwrap();
        assert_eq!(r.ops, 3);
        assert_eq!(r.latency.count(), 3);
        let r = fsync(&FsyncArgs { dir: dir.clone(), count: 2, size: 100, append: true }).unwrap();
        assert_eq!(r.ops, 2);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "probe file removed");
        std::fs::write(dir.join("sub/f"), vec![1u8; 10_000]).unwrap();
        std::fs::File::open(dir.join("sub/f")).unwrap().sync_all().unwrap();
        assert!(disk_usage(&dir).unwrap() >= 8192);
        let f = footprint(&FootprintArgs { pids: vec![std::process::id()], dirs: vec![dir.clone()] }).unwrap();
        assert!(f.extra["rss_mib_max"].as_f64().unwrap() > 0.0);
        assert!(f.extra["disk_mib_sum"].as_f64().unwrap() > 0.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
