//! The state machine: applies committed raft entries, in log order, to the MVCC store, the lessor and the
//! member list, then wakes watchers and the proposer's waiter.
//!
//! Each entry is applied in one store write transaction that also records the entry's index as applied,
//! so an entry is applied exactly once even when the log is replayed after a crash.

pub mod alarm;
pub mod compactor;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use prost::Message as _;
use raft::eraftpb::{ConfChangeType, ConfChangeV2, ConfState, Entry, Snapshot};
use raftcd_proto::etcdserverpb::{
    AlarmResponse, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse,
    LeaseRevokeResponse, Member, PutResponse, ResponseHeader, TxnResponse,
};
use raftcd_proto::raftcdpb::{raft_request::Op, MemberContext, RaftRequest};

use crate::auth::AuthStore;
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::member::{decode_member, Membership};
use crate::mvcc::{Committed, Store, WriteTxn};
use crate::raft::proposal::Waiters;
use crate::watch::WatchHub;

pub use alarm::Alarms;
pub use compactor::Compactor;

/// The result of applying one request, delivered to the member that proposed it.
#[derive(Debug, Clone)]
pub enum ApplyResult {
    /// Nothing to report (no-op entries).
    None,
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    Alarm(AlarmResponse),
    /// A membership change: the member concerned and the list afterwards.
    Members(Option<Member>, Vec<Member>),
    /// An auth store change or token (the response is only a header).
    Auth,
}

/// The parts of the state machine the applier drives.
pub struct ApplierParts {
    pub store: Store,
    pub lessor: Arc<Lessor>,
    pub members: Arc<Membership>,
    pub hub: Arc<WatchHub>,
    pub waiters: Arc<Waiters>,
    pub alarms: Arc<Alarms>,
    pub auth: Arc<AuthStore>,
    pub compactor: Compactor,
    /// The member's "local" tree (snapshot install marker).
    pub local: crate::live_db::TreeRef,
    /// Where received snapshots are.
    pub snap_dir: PathBuf,
    /// Set when this member's own removal is applied: it must shut down.
    pub removed: watch::Sender<bool>,
}

/// Applies committed entries.
pub struct Applier {
    store: Store,
    lessor: Arc<Lessor>,
    members: Arc<Membership>,
    hub: Arc<WatchHub>,
    waiters: Arc<Waiters>,
    alarms: Arc<Alarms>,
    auth: Arc<AuthStore>,
    compactor: Compactor,
    local: crate::live_db::TreeRef,
    snap_dir: PathBuf,
    removed: watch::Sender<bool>,
    member_id: u64,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

impl Applier {
    /// The state machine over its parts.
    pub fn new(p: ApplierParts, member_id: u64) -> Applier {
        Applier {
            store: p.store,
            lessor: p.lessor,
            members: p.members,
            hub: p.hub,
            waiters: p.waiters,
            alarms: p.alarms,
            auth: p.auth,
            compactor: p.compactor,
            local: p.local,
            snap_dir: p.snap_dir,
            removed: p.removed,
            member_id,
        }
    }

    /// Continues on the trees of a verified copy of the database (online defragmentation).
    pub fn switch_trees(&mut self, state: crate::live_db::TreeRef, local: crate::live_db::TreeRef) {
        self.store.switch_tree(state);
        self.local = local;
    }

    /// The store this applier writes.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The last applied raft index (persisted with the state it describes).
    pub fn applied_index(&self) -> u64 {
        self.store.applied_index()
    }

    /// This member now leads: leases get deadlines.
    pub fn on_become_leader(&self) {
        self.lessor.promote();
    }

    /// This member no longer leads.
    pub fn on_lose_leadership(&self) {
        self.lessor.demote();
    }

    /// Replaces the state machine with a snapshot received from the leader.
    /// The file was received and verified by the peer service before raft saw the message.
    pub fn install_snapshot(&mut self, snap: &Snapshot) -> Result<()> {
        let meta = snap.get_metadata();
        let path = self.snap_dir.join(format!("recv-{}-{}.snap", meta.term, meta.index));
        crate::snapshot::state::install(&self.store, &self.local, &path)?;
        if self.store.applied_index() != meta.index {
            return Err(Error::Storage(format!(
                "snapshot {} holds applied index {}, not {}",
                path.display(),
                self.store.applied_index(),
                meta.index
            )));
        }
        self.lessor.reload(&self.store)?;
        self.members.reload(&self.store)?;
        self.alarms.reload(&self.store)?;
        self.auth.reload(&self.store)?;
        self.hub.resync_all();
        // Older received snapshots are of no further use.
        if let Ok(rd) = std::fs::read_dir(&self.snap_dir) {
            for e in rd.flatten() {
                if e.path() != path && e.file_name().to_string_lossy().starts_with("recv-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    /// Applies consecutive normal entries, in order. Runs of KV requests (see [`groupable`]) share ONE store
    /// batch that carries the last entry's index as applied, so a crash keeps all or none of the run; their
    /// watchers and waiters hear of them only once that batch is in. Other requests commit the run so far,
    /// then go alone as before. Entries at or below the applied index are the caller's to skip.
    pub fn apply_normal(&mut self, entries: &[Entry]) -> Result<()> {
        let lessor = self.lessor.clone();
        let exists = move |id: i64| lessor.exists(id);
        let store = self.store.clone();
        let mut group: Option<WriteTxn<'_>> = None;
        // Results of the run buffered in `group`: (revision, events) to publish, (request id, result) to deliver.
        let mut closed: Vec<Committed> = Vec::new();
        let mut results: Vec<(u64, Result<ApplyResult>)> = Vec::new();
        for entry in entries {
            let index = entry.index;
            let req = if entry.get_data().is_empty() {
                // The empty entry a new leader appends: only the applied index moves.
                None
            } else {
                Some(
                    RaftRequest::decode(entry.get_data())
                        .map_err(|e| Error::Storage(format!("undecodable raft entry {index}: {e}")))?,
                )
            };
            let (id, op, auth) = match req {
                Some(RaftRequest { id, op: Some(op), auth, .. }) => (id, Some(op), auth),
                _ => (0, None, None),
            };
            // Writes are checked against the auth state at this log position (etcd's authApplierV3). Auth
            // state changes only through auth ops, which never join a group, so every entry of a group is
            // checked against the same auth state. A refused entry only moves the applied index.
            let (op, refused) = match op {
                Some(op) => match self.auth.permit(auth.as_ref(), &op, &self.store) {
                    Ok(()) => (Some(op), None),
                    Err(e) => (None, Some(e)),
                },
                None => (None, None),
            };
            match op {
                Some(op) if !groupable(&op) => {
                    // Anything else runs alone, after the run before it is in.
                    if let Some(txn) = group.take() {
                        self.publish_group(txn, &mut closed, &mut results)?;
                    }
                    crate::failpoint!("apply-before-commit");
                    let result = self.apply_op(index, op)?;
                    crate::failpoint!("apply-after-commit");
                    self.waiters.trigger(id, result);
                }
                op => {
                    if let Some(txn) = group.as_mut() {
                        closed.push(txn.next_entry(index));
                    }
                    let txn = group.get_or_insert_with(|| store.begin(index, &exists));
                    if let Some(op) = op {
                        let before = txn.change_mark();
                        let (outcome, _) = self.dispatch(txn, op)?;
                        if outcome.is_err() && txn.change_mark() != before {
                            // groupable() admits only requests that fail before buffering anything.
                            return Err(Error::Storage(format!("apply: failed entry {index} left writes behind")));
                        }
                        results.push((id, outcome));
                    }
                    if let Some(e) = refused {
                        results.push((id, Err(e)));
                    }
                }
            }
        }
        if let Some(txn) = group.take() {
            self.publish_group(txn, &mut closed, &mut results)?;
        }
        Ok(())
    }

    /// Commits a run of grouped entries in one batch, then tells watchers (entry by entry, in revision
    /// order) and wakes the proposers.
    fn publish_group(
        &self,
        txn: WriteTxn<'_>,
        closed: &mut Vec<Committed>,
        results: &mut Vec<(u64, Result<ApplyResult>)>,
    ) -> Result<()> {
        crate::failpoint!("apply-before-commit");
        closed.push(txn.commit()?);
        crate::failpoint!("apply-after-commit");
        for c in closed.drain(..) {
            if !c.events.is_empty() {
                self.hub.notify(c.revision, &c.events);
            }
        }
        for (id, result) in results.drain(..) {
            self.waiters.trigger(id, result);
        }
        Ok(())
    }

    /// Applies one request in its own batch. Request-level failures (bad lease, compacted...) are results
    /// for the caller, with only the applied index written; storage failures are returned as errors and stop
    /// the member.
    fn apply_op(&mut self, index: u64, op: Op) -> Result<Result<ApplyResult>> {
        let lessor = self.lessor.clone();
        let exists = move |id: i64| lessor.exists(id);
        let mut txn = self.store.begin(index, &exists);
        let (outcome, compacted_to) = self.dispatch(&mut txn, op)?;
        let committed = match outcome {
            Ok(_) => txn.commit()?,
            Err(_) => {
                drop(txn);
                let no_lease = |_: i64| false;
                self.store.begin(index, &no_lease).commit()?
            }
        };
        if !committed.events.is_empty() {
            self.hub.notify(committed.revision, &committed.events);
        }
        if let Some(rev) = compacted_to {
            self.compactor.schedule(rev);
        }
        Ok(outcome)
    }

    /// The state change of one request, buffered in `txn`: a match on the op. Returns the request's outcome
    /// and the revision of a compaction to schedule once committed.
    fn dispatch(&self, txn: &mut WriteTxn<'_>, op: Op) -> Result<(Result<ApplyResult>, Option<i64>)> {
        let mut compacted_to = None;
        let outcome: Result<ApplyResult> = match op {
            op @ (Op::AuthEnable(_)
            | Op::AuthDisable(_)
            | Op::AuthUserAdd(_)
            | Op::AuthUserDelete(_)
            | Op::AuthUserChangePassword(_)
            | Op::AuthUserGrantRole(_)
            | Op::AuthUserRevokeRole(_)
            | Op::AuthRoleAdd(_)
            | Op::AuthRoleDelete(_)
            | Op::AuthRoleGrantPermission(_)
            | Op::AuthRoleRevokePermission(_)
            | Op::AuthToken(_)) => self.auth.apply(txn, &op).map(|()| ApplyResult::Auth),
            Op::Put(p) => {
                if self.alarms.no_space() {
                    Err(Error::NoSpace)
                } else {
                    txn.put(&p).map(ApplyResult::Put)
                }
            }
            Op::DeleteRange(d) => txn.delete_range(&d).map(ApplyResult::DeleteRange),
            Op::Txn(t) => {
                if self.alarms.no_space() && crate::services::validate::txn_has_puts(&t) {
                    Err(Error::NoSpace)
                } else {
                    txn.txn(&t).map(ApplyResult::Txn)
                }
            }
            Op::Compact(c) => txn.compact(c.revision).map(|()| {
                compacted_to = Some(c.revision);
                ApplyResult::Compact(CompactionResponse { header: header(txn.revision()) })
            }),
            Op::LeaseGrant(g) => {
                if self.alarms.no_space() {
                    Err(Error::NoSpace)
                } else {
                    self.lessor.apply_grant(txn, g.id, g.ttl).map(|l| {
                        ApplyResult::LeaseGrant(LeaseGrantResponse {
                            header: header(txn.revision()),
                            id: l.id,
                            ttl: l.ttl,
                            error: String::new(),
                        })
                    })
                }
            }
            Op::LeaseRevoke(r) => match self.lessor.apply_revoke(txn, r.id) {
                Ok(()) => {
                    let mut res = Ok(());
                    for key in self.store.lease_keys(r.id)? {
                        let del = DeleteRangeRequest { key, ..Default::default() };
                        if let Err(e) = txn.delete_range(&del) {
                            res = Err(e);
                            break;
                        }
                    }
                    res.map(|()| ApplyResult::LeaseRevoke(LeaseRevokeResponse { header: header(txn.revision()) }))
                }
                Err(e) => Err(e),
            },
            Op::Alarm(a) => self
                .alarms
                .apply(txn, &a)
                .map(|alarms| ApplyResult::Alarm(AlarmResponse { header: header(txn.revision()), alarms })),
            Op::LeaseCheckpoints(_) => Ok(ApplyResult::None),
            Op::MemberPeerUrls(m) => match self.members.get(m.id) {
                Some(mut member) => {
                    tracing::info!(member = format_args!("{:x}", m.id), peer_urls = ?m.peer_urls, "updated member");
                    member.peer_ur_ls = m.peer_urls;
                    self.members.apply_upsert(txn, member);
                    Ok(ApplyResult::Members(None, self.members.list()))
                }
                None => Err(Error::MemberNotFound),
            },
            Op::MemberAttributes(m) => {
                if let Some(mut member) = self.members.get(m.id) {
                    member.name = m.name;
                    member.client_ur_ls = m.client_urls;
                    self.members.apply_upsert(txn, member);
                }
                Ok(ApplyResult::None)
            }
        };
        Ok((outcome, compacted_to))
    }

    /// Records the member list change of an applied conf change (the raft configuration itself was already
    /// applied by the node). The proposer's waiter id travels in the MemberContext.
    pub fn apply_conf_change(&mut self, entry: &Entry, cc: &ConfChangeV2, cs: &ConfState) -> Result<()> {
        let no_lease = |_: i64| false;
        let mut txn = self.store.begin(entry.index, &no_lease);
        let ctx = if cc.get_context().is_empty() {
            None
        } else {
            Some(MemberContext::decode(cc.get_context()).map_err(|e| Error::Storage(e.to_string()))?)
        };
        let mut concerned = None;
        for change in cc.get_changes() {
            match change.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    let learner = change.get_change_type() == ConfChangeType::AddLearnerNode;
                    let mut m = match (&ctx, self.members.get(change.node_id)) {
                        (_, Some(existing)) => existing,
                        (Some(c), None) => decode_member(&c.encode_to_vec())?,
                        (None, None) => Member { id: change.node_id, ..Default::default() },
                    };
                    let what = match (m.is_learner, learner, self.members.get(change.node_id).is_some()) {
                        (true, false, true) => "promoted member",
                        (_, _, true) => "updated member",
                        (_, true, false) => "added learner member",
                        (_, false, false) => "added member",
                    };
                    m.is_learner = learner;
                    tracing::info!(
                        member = format_args!("{:x}", m.id),
                        name = %m.name,
                        peer_urls = ?m.peer_ur_ls,
                        index = entry.index,
                        "{what}"
                    );
                    concerned = Some(m.clone());
                    self.members.apply_upsert(&mut txn, m);
                }
                ConfChangeType::RemoveNode => {
                    concerned = self.members.get(change.node_id);
                    tracing::info!(
                        member = format_args!("{:x}", change.node_id),
                        index = entry.index,
                        "removed member"
                    );
                    self.members.apply_remove(&mut txn, change.node_id);
                }
            }
        }
        txn.commit()?;
        if let Some(c) = ctx.filter(|c| c.request_id != 0) {
            self.waiters.trigger(c.request_id, Ok(ApplyResult::Members(concerned, self.members.list())));
        }
        let me_gone = !cs.voters.contains(&self.member_id) && !cs.learners.contains(&self.member_id);
        if me_gone && cc.get_changes().iter().any(|c| c.node_id == self.member_id) {
            self.removed.send_replace(true);
        }
        Ok(())
    }
}

/// Whether a request may share a store batch with its neighbours (group apply): the KV requests that buffer
/// nothing when they fail and read only through the transaction's overlay. A Txn whose ranges name an
/// explicit revision reads history from the tree, which does not hold the revisions of the earlier entries
/// of the group yet; it goes alone, as do leases, compaction, alarms and members.
fn groupable(op: &Op) -> bool {
    fn txn_ok(t: &raftcd_proto::etcdserverpb::TxnRequest) -> bool {
        use raftcd_proto::etcdserverpb::request_op::Request;
        t.success.iter().chain(&t.failure).all(|op| match &op.request {
            Some(Request::RequestRange(r)) => r.revision <= 0,
            Some(Request::RequestTxn(t)) => txn_ok(t),
            _ => true,
        })
    }
    match op {
        Op::Put(_) | Op::DeleteRange(_) => true,
        Op::Txn(t) => txn_ok(t),
        _ => false,
    }
}
