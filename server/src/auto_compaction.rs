//! `--auto-compaction-mode periodic|revision` with `--auto-compaction-retention`, as etcd: the leader
//! compacts the history it no longer needs to keep. Periodic: keep `retention` worth of history, checking
//! every `min(retention, 1h)`. Revision: keep the last `retention` revisions, checking every 5 minutes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftcd_proto::etcdserverpb::CompactionRequest;
use raftcd_proto::raftcdpb::raft_request::Op;
use tokio::sync::watch;

use crate::config::parse_duration;
use crate::error::{Error, Result};
use crate::services::Ctx;

/// What to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Keep this much wall-clock time of history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// Parses the flags; None when auto-compaction is off (retention 0).
pub fn policy(mode: &str, retention: &str) -> Result<Option<Policy>> {
    let retention = retention.trim();
    match mode {
        "periodic" => {
            // A bare number is hours, as in etcd.
            let d = match retention.parse::<u64>() {
                Ok(h) => Duration::from_secs(h * 3600),
                Err(_) => parse_duration(retention).map_err(Error::InvalidArgument)?,
            };
            Ok((!d.is_zero()).then_some(Policy::Periodic(d)))
        }
        "revision" => {
            let n: i64 = retention.parse().map_err(|_| {
                Error::InvalidArgument(format!("--auto-compaction-retention {retention:?} is not a revision count"))
            })?;
            Ok((n > 0).then_some(Policy::Revision(n)))
        }
        other => Err(Error::InvalidArgument(format!("--auto-compaction-mode {other:?}: want periodic or revision"))),
    }
}

/// Revision-mode target: compact to `current - keep` when that is above what is already compacted.
pub fn revision_target(current: i64, keep: i64, compacted: i64) -> Option<i64> {
    let target = current - keep;
    (target > compacted && target > 0).then_some(target)
}

/// Periodic-mode bookkeeping: revisions sampled over time; the target is the newest sample at least
/// `retention` old.
#[derive(Debug, Default)]
pub struct Samples {
    samples: VecDeque<(Instant, i64)>,
}

impl Samples {
    /// Records the revision seen at `at`; keeps at most `max` samples.
    pub fn record(&mut self, at: Instant, rev: i64, max: usize) {
        self.samples.push_back((at, rev));
        while self.samples.len() > max {
            self.samples.pop_front();
        }
    }

    /// The newest sampled revision that is at least `retention` old at `now`.
    pub fn target(&self, now: Instant, retention: Duration) -> Option<i64> {
        self.samples.iter().rev().find(|(t, _)| now.duration_since(*t) >= retention).map(|(_, r)| *r)
    }
}

/// Runs the policy on the leader until shutdown.
pub async fn run(ctx: Arc<Ctx>, policy: Policy, mut shutdown: watch::Receiver<bool>) {
    let (check, sample_every) = match policy {
        Policy::Periodic(d) => {
            let period = d.min(Duration::from_secs(3600));
            (period, (period / 10).max(Duration::from_millis(100)))
        }
        Policy::Revision(_) => (Duration::from_secs(300), Duration::from_secs(300)),
    };
    let mut samples = Samples::default();
    let mut tick = tokio::time::interval(sample_every);
    let mut last_check = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = Instant::now();
        samples.record(now, ctx.store.current_revision(), 64);
        if now.duration_since(last_check) < check || !ctx.raft.status().is_leader() {
            continue;
        }
        last_check = now;
        let compacted = ctx.store.compact_revision();
        let target = match policy {
            Policy::Periodic(d) => samples.target(now, d).filter(|t| *t > compacted),
            Policy::Revision(keep) => revision_target(ctx.store.current_revision(), keep, compacted),
        };
        if let Some(rev) = target {
            match ctx.propose(Op::Compact(CompactionRequest { revision: rev, physical: false })).await {
                Ok(_) => tracing::info!(revision = rev, "auto-compaction"),
                Err(Error::Compacted) => {}
                Err(e) => tracing::warn!(revision = rev, error = %e, "auto-compaction failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_like_etcd() {
        assert_eq!(policy("periodic", "0").unwrap(), None);
        assert_eq!(policy("periodic", "1").unwrap(), Some(Policy::Periodic(Duration::from_secs(3600))));
        assert_eq!(policy("periodic", "30m").unwrap(), Some(Policy::Periodic(Duration::from_secs(1800))));
        assert_eq!(policy("revision", "1000").unwrap(), Some(Policy::Revision(1000)));
        assert!(policy("revision", "1h").is_err());
        assert!(policy("weekly", "1").is_err());
    }

    #[test]
    fn targets() {
        assert_eq!(revision_target(100, 10, 0), Some(90));
        assert_eq!(revision_target(100, 10, 90), None);
        assert_eq!(revision_target(5, 10, 0), None);
        let t0 = Instant::now();
        let mut s = Samples::default();
        s.record(t0, 10, 8);
        s.record(t0 + Duration::from_secs(5), 20, 8);
        s.record(t0 + Duration::from_secs(10), 30, 8);
        assert_eq!(s.target(t0 + Duration::from_secs(11), Duration::from_secs(6)), Some(20));
        assert_eq!(s.target(t0 + Duration::from_secs(11), Duration::from_secs(60)), None);
    }
}
