//! The Ready loop: one dedicated thread owns the RawNode, its storage and the state machine.
//!
//! ## The contract (etcd raft.go, raft-rs examples), in the order the code below does it
//! 1. Take inputs (proposals, peer messages, read-index requests, ticks), draining all that are queued so that
//!    one Ready — and one fsync — covers many client writes (group commit).
//! 2. On a soft-state change, publish leader/term and promote/demote the lessor.
//! 3. Send `messages()` at once: these never depend on unpersisted local state (a leader may send its
//!    appends before its own fsync; raft counts its own vote only once persisted).
//! 4. Install a snapshot, if any, BEFORE touching entries (entries follow the snapshot's index).
//! 5. Append `entries()` and save the hard state to the WAL; if `must_sync()`, fdatasync it — THE fsync point.
//! 6. Only now send `persisted_messages()` (votes and append responses promise durable state).
//! 7. `advance_append()`; save the LightReady's commit index, send its messages; then apply the committed
//!    entries of the Ready and of the LightReady together, in log order, and `advance_apply()`; complete
//!    read-index requests whose index is applied.
//!
//! Apply comes after the fsync (it used to come before it, as in raft-rs' examples), so that this member's
//! append acknowledgement — on which the commit of the next batch waits — is not delayed by applying the
//! previous one. This is safe because raft-rs hands out only entries that are committed AND persisted on this
//! member: the log holds every entry durably before its state change reaches the store. A run of KV entries
//! is applied in ONE store batch that also records the last index of the run as applied (all or nothing on a
//! crash). The store (sled) is synced only before the log is compacted or reset to a snapshot, never at the
//! fsync point: clients are answered once their entry is applied (committed on a quorum, durable in the WAL,
//! and in the local store); a crash loses at most store state that the log still holds and replays on
//! restart (entries at or below the stored applied index are skipped).

use std::sync::Arc;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, EntryType, Message};
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot, watch};

use crate::apply::Applier;
use crate::error::{Error, Result};
use crate::raft::proposal::Waiters;
use crate::raft::status::RaftStatus;
use crate::raft::storage::RaftStorage;
use crate::raft::transport::Transport;

/// Entries kept in the log after a log compaction, so slightly lagging followers catch up from the log
/// rather than a snapshot (etcd's SnapshotCatchUpEntries).
const CATCH_UP_ENTRIES: u64 = 5000;
/// An unanswered read-index request is sent again after this long.
const READ_RETRY: Duration = Duration::from_millis(500);
/// At most this many queued inputs are taken before producing a Ready.
const MAX_INPUTS_PER_READY: usize = 4096;

/// A caller waiting for a read index.
type ReadWaiter = oneshot::Sender<Result<u64>>;

/// Everything the raft thread can be asked to do.
pub enum Input {
    /// Advance raft's logical clock by one heartbeat interval.
    Tick,
    /// Propose an encoded RaftRequest whose waiter is registered under `id`.
    Propose { id: u64, data: Vec<u8> },
    /// Propose a membership change (context: encoded MemberContext).
    ProposeConfChange { id: u64, cc: ConfChangeV2 },
    /// A message from a peer.
    Step(Box<Message>),
    /// Ask for a read index; answered with the index to wait for.
    ReadIndex(oneshot::Sender<Result<u64>>),
    /// Hand leadership to a member.
    TransferLeader(u64),
    /// A peer could not be reached.
    Unreachable(u64),
    /// Leader only: each peer's matched index and the leader's last index (empty when not leader).
    Progress(oneshot::Sender<(u64, Vec<(u64, u64)>)>),
    /// A consistent cut of the state machine (for backups), taken between two applied entries.
    Cut(oneshot::Sender<Result<crate::snapshot::state::Cut>>),
    /// Outcome of sending a snapshot to a peer.
    SnapshotSent { to: u64, ok: bool },
    /// Defragment the database online (see defrag_online.rs); answered once the member runs on the copy.
    Defrag(oneshot::Sender<Result<crate::defrag::DefragReport>>),
    /// Stop the loop.
    Shutdown,
}

/// The raft thread's state.
pub struct Node {
    raw: RawNode<RaftStorage>,
    applier: Applier,
    transport: Arc<dyn Transport>,
    status: Arc<RaftStatus>,
    waiters: Arc<Waiters>,
    applied_tx: watch::Sender<u64>,
    snapshot_count: u64,
    /// Read-index batches in flight: context -> callers.
    reads_in_flight: Vec<(Vec<u8>, Vec<ReadWaiter>, Instant)>,
    /// Callers queued since the last batch went out.
    reads_pending: Vec<oneshot::Sender<Result<u64>>>,
    read_seq: u64,
    role: StateRole,
    metrics: Arc<crate::metrics::Metrics>,
    /// Proposals waiting for their entry to appear in the log: request id -> proposing time (for metrics).
    last_tick: Instant,
    /// Online defragmentation; None where the node has no data dir of its own (tests).
    defrag: Option<crate::defrag_online::OnlineDefrag>,
    /// A failure that must stop the loop, found where `handle` cannot return it.
    fatal: Option<Error>,
}

impl Node {
    /// Builds the node around an opened storage and state machine.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        raw: RawNode<RaftStorage>,
        applier: Applier,
        transport: Arc<dyn Transport>,
        status: Arc<RaftStatus>,
        waiters: Arc<Waiters>,
        applied_tx: watch::Sender<u64>,
        snapshot_count: u64,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Node {
        Node {
            raw,
            applier,
            transport,
            status,
            waiters,
            applied_tx,
            snapshot_count: snapshot_count.max(1),
            reads_in_flight: Vec::new(),
            reads_pending: Vec::new(),
            // Random start: a late answer to a read sent before a restart cannot match a new context.
            read_seq: rand::random::<u64>() >> 1,
            role: StateRole::Follower,
            metrics,
            last_tick: Instant::now(),
            defrag: None,
            fatal: None,
        }
    }

    /// Enables the Defragment request.
    pub fn with_defrag(mut self, defrag: crate::defrag_online::OnlineDefrag) -> Node {
        self.defrag = Some(defrag);
        self
    }

    /// Runs the loop until Shutdown or the input channel closes. A storage failure ends the loop with an
    /// error: the member must stop rather than limp on with state it cannot persist.
    pub fn run(mut self, mut rx: mpsc::Receiver<Input>) -> Result<()> {
        // Entries committed before a restart (or the bootstrap configuration) come out of the first Ready.
        self.publish_learner();
        self.on_ready()?;
        let cs = self.raw.store().conf_state().clone();
        if cs.voters == [self.status.id] && cs.learners.is_empty() && self.role != StateRole::Leader {
            // Nobody else can win: do not wait an election timeout to become leader.
            self.raw.campaign()?;
            self.on_ready()?;
        }
        loop {
            let Some(first) = rx.blocking_recv() else { break };
            if !self.handle(first) {
                break;
            }
            let mut n = 1;
            let mut stop = false;
            while n < MAX_INPUTS_PER_READY {
                match rx.try_recv() {
                    Ok(input) => {
                        n += 1;
                        if !self.handle(input) {
                            stop = true;
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            self.flush_read_batch();
            self.retry_stale_reads();
            self.on_ready()?;
            if stop {
                break;
            }
        }
        self.fail_reads(Error::Stopped);
        if let Some(e) = self.fatal.take() {
            return Err(e);
        }
        tracing::info!("raft loop stopped");
        Ok(())
    }

    /// Runs an online defragmentation between two Readies: every write of the last Ready is in, the next
    /// one waits. A failure after the database switch is fatal (stored in `fatal`).
    fn defragment(&mut self) -> Result<crate::defrag::DefragReport> {
        let Some(defrag) = &self.defrag else {
            return Err(Error::Storage("defragmentation is not available here".into()));
        };
        let store = self.applier.store().clone();
        let (raw, applier) = (&mut self.raw, &mut self.applier);
        match defrag.run(&store, |p| {
            raw.mut_store().switch_to(&p.gen, p.raft);
            applier.switch_trees(p.state, p.local);
        }) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "defragmentation failed while switching databases");
                self.fatal = Some(Error::Storage(e.to_string()));
                Err(e)
            }
        }
    }

    fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::Tick => {
                self.raw.tick();
                self.last_tick = Instant::now();
            }
            Input::Propose { id, data } => {
                if let Err(e) = self.raw.propose(vec![], data) {
                    self.waiters.trigger(id, Err(self.dropped(e)));
                }
            }
            Input::ProposeConfChange { id, cc } => {
                if self.raw.raft.state == StateRole::Leader && self.raw.raft.has_pending_conf() {
                    // raft-rs would turn this change into an empty entry that nobody answers; refuse it
                    // before it is appended so the caller retries once the earlier change has applied.
                    self.waiters.trigger(id, Err(Error::LeaderChanged));
                } else if let Err(e) = self.raw.propose_conf_change(vec![], cc) {
                    self.waiters.trigger(id, Err(self.dropped(e)));
                }
            }
            Input::Step(m) => {
                if let Err(e) = self.raw.step(*m) {
                    tracing::debug!(error = %e, "raft step");
                }
            }
            Input::ReadIndex(tx) => self.reads_pending.push(tx),
            Input::TransferLeader(to) => self.raw.transfer_leader(to),
            Input::Cut(tx) => {
                let store = self.applier.store();
                let applied = store.applied_index();
                let term = raft::Storage::term(self.raw.store(), applied).unwrap_or(0);
                let _ = tx.send(crate::snapshot::state::take_cut(store, term));
            }
            Input::Progress(tx) => {
                let r = &self.raw.raft;
                let report = if r.state == StateRole::Leader {
                    (r.raft_log.last_index(), r.prs().iter().map(|(id, p)| (*id, p.matched)).collect())
                } else {
                    (0, Vec::new())
                };
                let _ = tx.send(report);
            }
            Input::Unreachable(id) => self.raw.report_unreachable(id),
            Input::SnapshotSent { to, ok } => {
                let st = if ok { raft::SnapshotStatus::Finish } else { raft::SnapshotStatus::Failure };
                self.raw.report_snapshot(to, st);
            }
            Input::Defrag(tx) => {
                let _ = tx.send(self.defragment());
                if self.fatal.is_some() {
                    return false;
                }
            }
            Input::Shutdown => return false,
        }
        true
    }

    /// A proposal raft refused outright was never appended: a definite failure, safe to report as such.
    fn dropped(&self, e: raft::Error) -> Error {
        match e {
            raft::Error::ProposalDropped if self.status.leader() == 0 => Error::NoLeader,
            raft::Error::ProposalDropped => Error::LeaderChanged,
            other => Error::InvalidArgument(other.to_string()),
        }
    }

    /// All read requests that arrived in this round share one ReadIndex (one heartbeat round on a leader).
    fn flush_read_batch(&mut self) {
        if self.reads_pending.is_empty() {
            return;
        }
        if self.status.leader() == 0 {
            for tx in self.reads_pending.drain(..) {
                let _ = tx.send(Err(Error::NoLeader));
            }
            return;
        }
        self.read_seq += 1;
        // Unique in the cluster: raft-rs drops a read whose context is already pending at the leader, so a
        // bare counter would collide with another member's.
        let mut ctx = self.status.id.to_be_bytes().to_vec();
        ctx.extend_from_slice(&self.read_seq.to_be_bytes());
        self.raw.read_index(ctx.clone());
        let batch = std::mem::take(&mut self.reads_pending);
        self.reads_in_flight.push((ctx, batch, Instant::now()));
    }

    /// Re-sends read-index requests unanswered for READ_RETRY: raft-rs drops them silently when the
    /// leader died, has not committed in its term yet, or the term moved (etcd re-sends after 500 ms too).
    fn retry_stale_reads(&mut self) {
        let now = Instant::now();
        for (ctx, _, sent) in self.reads_in_flight.iter_mut() {
            if now.duration_since(*sent) >= READ_RETRY {
                self.raw.read_index(ctx.clone());
                *sent = now;
            }
        }
    }

    fn fail_reads(&mut self, e: Error) {
        for (_, batch, _) in self.reads_in_flight.drain(..) {
            for tx in batch {
                let _ = tx.send(Err(e.clone()));
            }
        }
        for tx in self.reads_pending.drain(..) {
            let _ = tx.send(Err(e.clone()));
        }
    }

    fn on_ready(&mut self) -> Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();

        // 2. leader / term
        if let Some(ss) = rd.ss() {
            let (leader, role) = (ss.leader_id, ss.raft_state);
            if leader != self.status.leader() && !self.reads_in_flight.is_empty() {
                // The old leader may never answer: callers retry their read with the new one (as etcd).
                self.fail_reads(Error::LeaderChanged);
            }
            let previous = self.status.leader();
            if leader != previous {
                let term = self.raw.raft.term;
                if leader == 0 {
                    tracing::warn!(previous_leader = format_args!("{previous:x}"), term, "lost leader");
                } else {
                    tracing::info!(leader = format_args!("{leader:x}"), term, "elected leader");
                }
            }
            self.status.set_leader(leader);
            if role != self.role {
                tracing::info!(?role, leader, term = self.raw.raft.term, "raft role changed");
                let was_leader = self.role == StateRole::Leader;
                self.role = role;
                if role == StateRole::Leader {
                    self.applier.on_become_leader();
                } else if was_leader {
                    self.applier.on_lose_leadership();
                    // Reads issued under the old term can no longer be confirmed.
                    self.fail_reads(Error::LeaderChanged);
                }
            }
        }
        self.status.set_term(self.raw.raft.term);

        // 3. messages that do not wait for the local fsync
        if !rd.messages().is_empty() {
            self.transport.send(rd.take_messages());
        }

        // 4. snapshot before entries
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            // The snapshot's configuration is this member's from now on: publish whether it is a learner
            // BEFORE its data becomes readable, or a client that sees the data may still be served as a voter.
            let cs = snap.get_metadata().get_conf_state();
            self.status.set_learner(cs.learners.contains(&self.status.id));
            self.applier.install_snapshot(&snap)?;
            crate::failpoint!("snapshot-installed-before-log-reset");
            self.raw.mut_store().apply_snapshot_meta(snap.get_metadata())?;
            self.publish_learner();
            self.publish_applied();
        }

        // 5. persist, then the fsync point. Committed entries are applied only after it (step 7): they are
        //    already durable in the log, and applying them first would delay this member's append
        //    acknowledgement — the commit of the NEXT batch — by the whole apply.
        let mut committed = rd.take_committed_entries();
        if !rd.entries().is_empty() {
            self.raw.mut_store().append(rd.entries())?;
        }
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs)?;
        }
        if rd.must_sync() {
            crate::failpoint!("raft-before-fsync");
            let started = Instant::now();
            self.raw.store().flush()?;
            self.metrics.wal_fsync.observe(started.elapsed());
            crate::failpoint!("raft-after-fsync");
        }

        // 6. messages that promise durable state — never before the flush above
        if !rd.persisted_messages().is_empty() {
            self.transport.send(rd.take_persisted_messages());
        }

        for rs in rd.take_read_states() {
            if let Some(pos) = self.reads_in_flight.iter().position(|(ctx, _, _)| ctx[..] == rs.request_ctx[..]) {
                let (_, batch, _) = self.reads_in_flight.remove(pos);
                for tx in batch {
                    let _ = tx.send(Ok(rs.index));
                }
            }
        }

        // 7. advance_append, then apply what the Ready and the LightReady committed, in log order, as one
        //    group (one store batch for a run of KV entries), then advance_apply. raft-rs hands out only
        //    committed entries that are persisted here, so the log holds them durably before their state
        //    changes reach the store; the store's writes themselves become durable at a later sync, and a
        //    crash before that replays them from the log (apply skips index <= applied).
        let mut light = self.raw.advance_append(rd);
        if let Some(commit) = light.commit_index() {
            let mut hs = self.raw.store().hard_state().clone();
            hs.commit = commit;
            self.raw.mut_store().set_hard_state(&hs)?;
        }
        if !light.messages().is_empty() {
            self.transport.send(light.take_messages());
        }
        committed.extend(light.take_committed_entries());
        self.apply(committed)?;
        self.raw.advance_apply();
        self.status.set_commit(self.raw.raft.raft_log.committed);
        self.maybe_compact_log()?;
        Ok(())
    }

    /// Applies committed entries in order: runs of normal entries go to the applier together (it batches
    /// KV requests into one store write), conf changes one by one on the RawNode and the member list.
    fn apply(&mut self, entries: Vec<raft::eraftpb::Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics.proposals_committed.fetch_add(entries.len() as u64, Relaxed);
        let started = Instant::now();
        // Entries at or below the applied index were applied before a restart (or a snapshot): skip them.
        let applied = self.applier.applied_index();
        let fresh = entries.partition_point(|e| e.index <= applied);
        let entries = &entries[fresh..];
        let mut start = 0;
        while start < entries.len() {
            let end =
                start + entries[start..].iter().take_while(|e| e.get_entry_type() == EntryType::EntryNormal).count();
            if end > start {
                let run = &entries[start..end];
                crate::failpoint!("raft-before-apply");
                self.applier.apply_normal(run)?;
                crate::failpoint!("raft-after-apply");
                self.metrics.proposals_applied.fetch_add(run.len() as u64, Relaxed);
                if let Some(last) = run.last() {
                    self.raw.mut_store().set_applied(last.index, last.term);
                }
                start = end;
                continue;
            }
            let entry = &entries[start];
            start += 1;
            self.metrics.proposals_applied.fetch_add(1, Relaxed);
            let cc: ConfChangeV2 = if entry.get_entry_type() == EntryType::EntryConfChange {
                let v1 = raft::eraftpb::ConfChange::parse_from_bytes(entry.get_data())
                    .map_err(|e| Error::Storage(e.to_string()))?;
                let mut single = raft::eraftpb::ConfChangeSingle::default();
                single.set_change_type(v1.get_change_type());
                single.node_id = v1.node_id;
                let mut v2 = ConfChangeV2::default();
                v2.mut_changes().push(single);
                v2.set_context(v1.get_context().to_vec().into());
                v2
            } else {
                ConfChangeV2::parse_from_bytes(entry.get_data()).map_err(|e| Error::Storage(e.to_string()))?
            };
            let cs = self.raw.apply_conf_change(&cc)?;
            self.raw.mut_store().set_conf_state(&cs)?;
            self.applier.apply_conf_change(entry, &cc, &cs)?;
            self.publish_learner();
            self.raw.mut_store().set_applied(entry.index, entry.term);
        }
        self.metrics.backend_commit.observe(started.elapsed());
        self.publish_applied();
        Ok(())
    }

    /// Whether this member is a learner, from the configuration raft holds (after restart, conf change or
    /// snapshot install alike).
    fn publish_learner(&self) {
        let cs = self.raw.store().conf_state();
        self.status.set_learner(cs.learners.contains(&self.status.id));
    }

    fn publish_applied(&mut self) {
        let applied = self.applier.applied_index();
        self.status.set_applied(applied);
        self.applied_tx.send_replace(applied);
    }

    /// Every `--snapshot-count` applied entries the log is truncated; the state machine in sled is the
    /// snapshot, so syncing sled (which the fsync point does not do) is all that makes the truncation safe.
    fn maybe_compact_log(&mut self) -> Result<()> {
        let store = self.raw.store();
        let applied = self.applier.applied_index();
        let first = raft::Storage::first_index(store)?;
        if applied < first || applied - first < self.snapshot_count + CATCH_UP_ENTRIES.min(self.snapshot_count) {
            return Ok(());
        }
        let to = applied.saturating_sub(CATCH_UP_ENTRIES.min(self.snapshot_count));
        store.sync_state()?;
        self.raw.mut_store().compact(to)?;
        tracing::info!(applied, compacted_to = to, "raft log compacted");
        Ok(())
    }
}

/// Sends a tick every `interval` until the node's channel closes.
pub async fn ticker(tx: mpsc::Sender<Input>, interval: Duration) {
    let mut t = tokio::time::interval(interval);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        t.tick().await;
        if tx.send(Input::Tick).await.is_err() {
            return;
        }
    }
}
