//! Corruption checks, as etcd's `--experimental-initial-corrupt-check` and
//! `--experimental-corrupt-check-time`: compare this member's HashKV with its peers' at the same revision.
//! Periodically (on the leader) a member whose hash differs gets the CORRUPT alarm, raised through raft; at
//! start-up a member that disagrees with a peer refuses to serve.

use std::sync::Arc;
use std::time::Duration;

use raftcd_proto::etcdserverpb::{
    alarm_request::AlarmAction, maintenance_client::MaintenanceClient, AlarmRequest, AlarmType, HashKvRequest,
};
use raftcd_proto::raftcdpb::raft_request::Op;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::services::Ctx;

/// A peer whose hash at `revision` differs from ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub member_id: u64,
    pub revision: i64,
    pub ours: u32,
    pub theirs: u32,
}

/// Compares our hash at our current revision with every peer that can compute it (a peer still behind, or
/// with a different compaction point, is skipped).
pub async fn check_peers(ctx: &Ctx) -> Result<Vec<Mismatch>> {
    let rev = ctx.store.current_revision();
    let store = ctx.store.clone();
    let (ours, our_compact, _) =
        tokio::task::spawn_blocking(move || store.hash_kv(rev)).await.map_err(|e| Error::Storage(e.to_string()))??;
    let mut out = Vec::new();
    for m in ctx.members.list() {
        if m.id == ctx.member_id || m.client_ur_ls.is_empty() {
            continue;
        }
        let Ok(ep) = crate::tls::endpoint(&m.client_ur_ls[0], ctx.client_tls.as_ref()) else { continue };
        let ep = ep.timeout(Duration::from_secs(10));
        let Ok(ch) = ep.connect().await else { continue };
        match MaintenanceClient::new(ch).hash_kv(HashKvRequest { revision: rev }).await {
            Ok(resp) => {
                let r = resp.into_inner();
                if r.compact_revision == our_compact && r.hash != ours {
                    out.push(Mismatch { member_id: m.id, revision: rev, ours, theirs: r.hash });
                }
            }
            Err(s) => tracing::debug!(peer = %format!("{:x}", m.id), message = %s.message(), "hash check skipped"),
        }
    }
    Ok(out)
}

/// The periodic check: on the leader, every `every`, raise CORRUPT for members that disagree.
pub async fn run_periodic(ctx: Arc<Ctx>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if !ctx.raft.status().is_leader() {
            continue;
        }
        match check_peers(&ctx).await {
            Ok(mismatches) => {
                for m in mismatches {
                    tracing::error!(member = %format!("{:x}", m.member_id), revision = m.revision, ours = m.ours, theirs = m.theirs, "hash mismatch: raising the CORRUPT alarm");
                    let alarm = AlarmRequest {
                        action: AlarmAction::Activate as i32,
                        member_id: m.member_id,
                        alarm: AlarmType::Corrupt as i32,
                    };
                    if let Err(e) = ctx.propose(Op::Alarm(alarm)).await {
                        tracing::warn!(error = %e, "raising the CORRUPT alarm failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "corruption check failed"),
        }
    }
}

/// The start-up check: once caught up, refuse to go on if any peer disagrees.
pub async fn initial_check(ctx: &Ctx) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ctx.raft.linearizable_barrier().await.is_err() {
        if tokio::time::Instant::now() > deadline {
            tracing::warn!("initial corruption check skipped: no leader to catch up with");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mismatches = check_peers(ctx).await?;
    if let Some(m) = mismatches.first() {
        return Err(Error::Corrupt).inspect_err(|_| {
            tracing::error!(peer = %format!("{:x}", m.member_id), revision = m.revision, ours = m.ours, theirs = m.theirs, "initial corruption check failed")
        });
    }
    tracing::info!("initial corruption check passed");
    Ok(())
}
