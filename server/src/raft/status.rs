//! What the raft thread publishes for everyone else: term, leader, commit and applied index.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Live raft status of this member, written by the raft thread, read anywhere.
#[derive(Debug, Default)]
pub struct RaftStatus {
    /// This member's id.
    pub id: u64,
    term: AtomicU64,
    leader: AtomicU64,
    commit: AtomicU64,
    applied: AtomicU64,
    learner: AtomicBool,
    leader_changes: AtomicU64,
}

impl RaftStatus {
    /// Status for member `id`, with nothing known yet.
    pub fn new(id: u64) -> RaftStatus {
        RaftStatus { id, ..Default::default() }
    }
    /// Current raft term.
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }
    /// Current leader id, 0 when none is known.
    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }
    /// True when this member leads.
    pub fn is_leader(&self) -> bool {
        self.leader() == self.id
    }
    /// Raft commit index.
    pub fn commit(&self) -> u64 {
        self.commit.load(Ordering::Acquire)
    }
    /// Last applied raft index.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }
    /// True when this member is a learner.
    pub fn is_learner(&self) -> bool {
        self.learner.load(Ordering::Acquire)
    }
    /// Leader changes seen since start.
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Acquire)
    }

    pub(crate) fn set_term(&self, t: u64) {
        self.term.store(t, Ordering::Release)
    }
    pub(crate) fn set_leader(&self, l: u64) {
        if self.leader.swap(l, Ordering::AcqRel) != l && l != 0 {
            self.leader_changes.fetch_add(1, Ordering::AcqRel);
        }
    }
    pub(crate) fn set_commit(&self, c: u64) {
        self.commit.store(c, Ordering::Release)
    }
    pub(crate) fn set_applied(&self, a: u64) {
        self.applied.store(a, Ordering::Release)
    }
    pub(crate) fn set_learner(&self, l: bool) {
        self.learner.store(l, Ordering::Release)
    }
}
