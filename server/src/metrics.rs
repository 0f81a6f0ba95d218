//! Prometheus metrics in the text exposition format, with etcd's metric names so existing etcd dashboards
//! and alerts work. Counters and gauges are atomics; histograms use etcd's bucket layouts.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A cumulative histogram with fixed upper bounds (seconds).
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Buckets `start * factor^i` for i in 0..n (Prometheus ExponentialBuckets).
    pub fn exponential(start: f64, factor: f64, n: usize) -> Histogram {
        let bounds: Vec<f64> = (0..n).map(|i| start * factor.powi(i as i32)).collect();
        let counts = bounds.iter().map(|_| AtomicU64::new(0)).collect();
        Histogram { bounds, counts, sum_micros: AtomicU64::new(0), count: AtomicU64::new(0) }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if secs <= *b {
                c.fetch_add(1, Relaxed);
            }
        }
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", c.load(Relaxed));
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// The member's metrics.
pub struct Metrics {
    pub proposals_committed: AtomicU64,
    pub proposals_applied: AtomicU64,
    pub proposals_failed: AtomicU64,
    pub wal_fsync: Histogram,
    pub backend_commit: Histogram,
    pub snapshots_sent: AtomicU64,
    /// grpc_server_started_total / grpc_server_handled_total.
    pub grpc: crate::grpc_metrics::GrpcMetrics,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            proposals_committed: AtomicU64::new(0),
            proposals_applied: AtomicU64::new(0),
            proposals_failed: AtomicU64::new(0),
            // etcd: ExponentialBuckets(0.001, 2, 14)
            wal_fsync: Histogram::exponential(0.001, 2.0, 14),
            backend_commit: Histogram::exponential(0.001, 2.0, 14),
            snapshots_sent: AtomicU64::new(0),
            grpc: Default::default(),
        }
    }
}

/// Values read from the rest of the server at render time.
pub struct Gauges {
    pub has_leader: bool,
    pub is_leader: bool,
    pub leader_changes: u64,
    pub proposals_pending: u64,
    pub db_total_size: u64,
    pub db_in_use: u64,
    pub keys_total: u64,
    pub watchers: u64,
    pub current_revision: i64,
    pub compact_revision: i64,
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

/// Resident set size and open file descriptors of this process (Linux), for the process_* metrics.
fn process_stats() -> (f64, f64, f64) {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<f64>().ok()))
        .map(|pages| pages * 4096.0)
        .unwrap_or(0.0);
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as f64).unwrap_or(0.0);
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let utime: f64 = after.get(11)?.parse().ok()?;
            let stime: f64 = after.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0);
    (rss, fds, cpu)
}

impl Metrics {
    /// The whole exposition.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        gauge(
            &mut out,
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            g.has_leader as u8 as f64,
        );
        gauge(
            &mut out,
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            g.is_leader as u8 as f64,
        );
        counter(
            &mut out,
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
            g.leader_changes,
        );
        counter(
            &mut out,
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            self.proposals_committed.load(Relaxed),
        );
        counter(
            &mut out,
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            self.proposals_applied.load(Relaxed),
        );
        gauge(
            &mut out,
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            g.proposals_pending as f64,
        );
        counter(
            &mut out,
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
            self.proposals_failed.load(Relaxed),
        );
        self.wal_fsync.render(
            &mut out,
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
        );
        self.backend_commit.render(
            &mut out,
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
        );
        gauge(
            &mut out,
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            g.db_total_size as f64,
        );
        gauge(
            &mut out,
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            g.db_in_use as f64,
        );
        gauge(&mut out, "etcd_debugging_mvcc_keys_total", "Total number of keys.", g.keys_total as f64);
        gauge(&mut out, "etcd_debugging_mvcc_watcher_total", "Total number of watchers.", g.watchers as f64);
        gauge(
            &mut out,
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            g.current_revision as f64,
        );
        gauge(
            &mut out,
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            g.compact_revision as f64,
        );
        counter(
            &mut out,
            "etcd_network_snapshot_send_success",
            "Total number of successful snapshot sends.",
            self.snapshots_sent.load(Relaxed),
        );
        let (rss, fds, cpu) = process_stats();
        gauge(&mut out, "process_resident_memory_bytes", "Resident memory size in bytes.", rss);
        gauge(&mut out, "process_open_fds", "Number of open file descriptors.", fds);
        counter(&mut out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", cpu as u64);
        self.grpc.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_etcd_names_and_histograms() {
        let m = Metrics::default();
        m.wal_fsync.observe(Duration::from_micros(1500));
        m.proposals_committed.fetch_add(3, Relaxed);
        let g = Gauges {
            has_leader: true,
            is_leader: false,
            leader_changes: 1,
            proposals_pending: 0,
            db_total_size: 10,
            db_in_use: 5,
            keys_total: 2,
            watchers: 0,
            current_revision: 7,
            compact_revision: 0,
        };
        let text = m.render(&g);
        assert!(text.contains("etcd_server_has_leader 1\n"));
        assert!(text.contains("etcd_server_proposals_committed_total 3\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 1\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_count 1\n"));
        assert!(text.contains("etcd_debugging_mvcc_keys_total 2\n"));
    }
}
