//! Watch guarantees over recorded watch sessions, checked with the project's watch checker
//! (`raftcd_tests::watch_checker`: ordered, unique, atomic, reliable, resumable, prev_kv, create, filter,
//! content, progress) against a *reference* history of the watched prefix, plus what only a fault test can
//! tell:
//! - the reference agrees with the acknowledged writes: every ok write is in it at the revision its response
//!   named, with exactly its puts and deletes (else a lost or torn acknowledged write), every event comes
//!   from a write some client attempted (nothing invented), one attempted write is never split over
//!   revisions, and no revision is missing;
//! - every watcher, across its reconnections (each resumed from its last event's revision + 1), reached the
//!   final revision, and all watchers saw the same sequence of events.

use std::collections::{BTreeMap, HashMap};

use raftcd_tests::watch_checker as wc;
use serde::{Deserialize, Serialize};

use crate::checker::CheckResult;
use crate::history::{Call, Nanos, Op, Outcome, Ret};

/// A key-value in a watch event, as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WKv {
    pub key: String,
    pub value: String,
    pub create_rev: i64,
    pub mod_rev: i64,
    pub version: i64,
    pub lease: i64,
}

/// One event, as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WEvent {
    pub delete: bool,
    pub kv: WKv,
    pub prev_kv: Option<WKv>,
}

impl WEvent {
    /// The event's revision.
    pub fn revision(&self) -> i64 {
        self.kv.mod_rev
    }
}

/// One watch response, as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WResponse {
    pub at: Nanos,
    pub watch_id: i64,
    pub header_revision: i64,
    pub created: bool,
    pub canceled: bool,
    pub compact_revision: i64,
    pub cancel_reason: String,
    pub events: Vec<WEvent>,
}

/// One watch stream of one watcher: from `start_revision` on `member` until it broke or the run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSession {
    pub watcher: usize,
    pub session: usize,
    pub member: usize,
    pub prefix: String,
    pub start_revision: i64,
    pub prev_kv: bool,
    /// The watcher listed again before this session (its previous one was canceled by compaction), so this
    /// one does not resume the previous one.
    #[serde(default)]
    pub relisted: bool,
    pub opened: Nanos,
    pub closed: Nanos,
    /// Why it ended ("run ended", a gRPC error, "canceled: compacted at N", ...).
    pub end: String,
    pub responses: Vec<WResponse>,
}

fn to_kv(kv: &WKv) -> wc::Kv {
    wc::Kv {
        key: kv.key.as_bytes().to_vec(),
        value: kv.value.as_bytes().to_vec(),
        create_revision: kv.create_rev,
        mod_revision: kv.mod_rev,
        version: kv.version,
        lease: kv.lease,
    }
}

/// Converts a recorded event for the project's checker.
pub fn to_event(e: &WEvent) -> wc::Event {
    wc::Event {
        kind: if e.delete { wc::EventKind::Delete } else { wc::EventKind::Put },
        kv: to_kv(&e.kv),
        prev_kv: e.prev_kv.as_ref().map(to_kv),
    }
}

/// Converts a recorded session into the project's checker trace.
pub fn to_trace(s: &WatchSession) -> wc::Trace {
    let mut spec = wc::WatchSpec::prefix(&format!("watcher {} session {}", s.watcher, s.session), s.prefix.as_bytes())
        .start(s.start_revision);
    if s.prev_kv {
        spec = spec.with_prev_kv();
    }
    let responses = s
        .responses
        .iter()
        .map(|r| wc::Response {
            watch_id: r.watch_id,
            header_revision: r.header_revision,
            created: r.created,
            canceled: r.canceled,
            compact_revision: r.compact_revision,
            cancel_reason: r.cancel_reason.clone(),
            events: r.events.iter().map(to_event).collect(),
        })
        .collect();
    wc::Trace::new(spec, responses)
}

/// Checks the reference history against the recorded writes (Txn ops of the watch workload, and the
/// kubernetes workload's create/update/delete). Only revisions for which `covered` holds are compared with
/// the acknowledged writes; `contiguous` also requires an event at every revision from `first_revision` on
/// (true when nothing but the watched prefix is written). Returns the problems.
pub fn check_reference(
    history: &[Op],
    reference: &wc::History,
    first_revision: i64,
    covered: &dyn Fn(i64) -> bool,
    contiguous: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    // (key, value) -> op id of the attempted write, and the op's puts.
    let mut writers: HashMap<(&str, &str), &Op> = HashMap::new();
    for op in history {
        for (k, v) in puts_of(&op.call) {
            writers.insert((k, v), op);
        }
    }
    // Revision of every event of each op, to catch a write split over revisions.
    let mut op_revs: BTreeMap<u64, BTreeMap<i64, usize>> = BTreeMap::new();
    for e in reference.events() {
        let key = String::from_utf8_lossy(&e.kv.key).into_owned();
        if e.kind == wc::EventKind::Delete {
            continue;
        }
        let value = String::from_utf8_lossy(&e.kv.value).into_owned();
        match writers.get(&(key.as_str(), value.as_str())) {
            None => problems.push(format!("event PUT {key}={value} @{} was never written", e.revision())),
            Some(op) => {
                if op.outcome == Outcome::Fail || compare_failed(op) {
                    problems.push(format!(
                        "event PUT {key}={value} @{} comes from op #{} which certainly failed",
                        e.revision(),
                        op.id
                    ));
                }
                *op_revs.entry(op.id).or_default().entry(e.revision()).or_default() += 1;
            }
        }
    }
    for (id, revs) in &op_revs {
        if revs.len() > 1 {
            problems.push(format!("the puts of op #{id} landed in several revisions: {revs:?}"));
        }
    }
    let by_rev = ByRev::new(reference);
    let mut walker = Walker::new(&by_rev);
    let mut acked: Vec<&Op> =
        history.iter().filter(|o| o.outcome == Outcome::Ok && !compare_failed(o) && o.revision.is_some()).collect();
    acked.sort_by_key(|o| o.revision);
    for op in acked {
        let Some(rev) = op.revision else { continue };
        let writes = writes_of(&op.call);
        if writes.is_empty() || rev < first_revision || !covered(rev) {
            continue;
        }
        walker.advance_to(rev - 1);
        let got = by_rev.at(rev);
        let mut want: Vec<(String, Option<String>)> = Vec::new();
        for (k, v) in &writes {
            match v {
                Some(v) => want.push((k.to_string(), Some(v.to_string()))),
                None if walker.state.contains_key(*k) => want.push((k.to_string(), None)),
                None => {}
            }
        }
        want.sort();
        // A write of deletes only creates no revision when its keys were already gone: then the header names
        // the revision it was served at, where every key it deletes must be absent.
        let deletes_only = writes.iter().all(|(_, v)| v.is_none());
        if deletes_only && want != got {
            let present_at_rev = |k: &str| match got.iter().rev().find(|(gk, _)| gk == k) {
                Some((_, v)) => v.is_some(),
                None => walker.state.contains_key(k),
            };
            if writes.iter().all(|(k, _)| !present_at_rev(k)) {
                continue;
            }
        }
        if want.is_empty() {
            continue;
        }
        if want != got {
            problems.push(format!(
                "acknowledged write op #{} at revision {rev}: expected events {want:?}, the history has {got:?}",
                op.id
            ));
        }
    }
    let missing = if contiguous { reference.missing_revisions(first_revision) } else { Vec::new() };
    if !missing.is_empty() {
        problems.push(format!(
            "revisions without any event between {first_revision} and {}: {:?}",
            reference.last_revision(),
            &missing[..missing.len().min(20)]
        ));
    }
    problems
}

/// The reference history by revision: (key, value or None for a delete), sorted by key.
pub struct ByRev {
    revs: BTreeMap<i64, Vec<(String, Option<String>)>>,
}

impl ByRev {
    /// Indexes `reference`.
    pub fn new(reference: &wc::History) -> ByRev {
        let mut revs: BTreeMap<i64, Vec<(String, Option<String>)>> = BTreeMap::new();
        for e in reference.events() {
            let k = String::from_utf8_lossy(&e.kv.key).into_owned();
            let v = (e.kind == wc::EventKind::Put).then(|| String::from_utf8_lossy(&e.kv.value).into_owned());
            revs.entry(e.revision()).or_default().push((k, v));
        }
        for v in revs.values_mut() {
            v.sort();
        }
        ByRev { revs }
    }

    /// The writes of revision `rev`.
    pub fn at(&self, rev: i64) -> Vec<(String, Option<String>)> {
        self.revs.get(&rev).cloned().unwrap_or_default()
    }
}

/// Replays a [`ByRev`] forward: the state (key -> (value, mod_revision)) after a revision, for revisions
/// asked in increasing order.
pub struct Walker<'a> {
    by_rev: &'a ByRev,
    applied: i64,
    pub state: BTreeMap<String, (String, i64)>,
}

impl<'a> Walker<'a> {
    /// At revision 0 (nothing applied).
    pub fn new(by_rev: &'a ByRev) -> Walker<'a> {
        Walker { by_rev, applied: 0, state: BTreeMap::new() }
    }

    /// Applies every revision up to `rev` (no-op for a revision already passed).
    pub fn advance_to(&mut self, rev: i64) {
        if rev <= self.applied {
            return;
        }
        for (r, writes) in self.by_rev.revs.range(self.applied + 1..=rev) {
            for (k, v) in writes {
                match v {
                    Some(v) => {
                        self.state.insert(k.clone(), (v.clone(), *r));
                    }
                    None => {
                        self.state.remove(k);
                    }
                }
            }
        }
        self.applied = rev;
    }
}

/// An ok guarded write whose compare did not hold (it wrote nothing).
fn compare_failed(op: &Op) -> bool {
    matches!(op.ret, Some(Ret::Cas { succeeded: false, .. }))
}

/// The puts of a write call: (key, value).
fn puts_of(call: &Call) -> Vec<(&str, &str)> {
    writes_of(call).into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()
}

/// The writes of a call: (key, Some(value)) for a put, (key, None) for a delete. Guarded calls (create,
/// update, delete) are included: their branch is checked separately.
fn writes_of(call: &Call) -> Vec<(&str, Option<&str>)> {
    match call {
        Call::Txn { writes } => writes.iter().map(|w| (w.key.as_str(), w.value.as_deref())).collect(),
        Call::Write { key, value } | Call::Create { key, value } | Call::Update { key, value, .. } => {
            vec![(key, Some(value))]
        }
        Call::Delete { key, .. } => vec![(key, None)],
        _ => vec![],
    }
}

/// Runs the watch guarantees on every watcher's sessions. `final_revision`: the store's revision at the end,
/// which every watcher must have reached (None: do not require it).
pub fn check_watchers(reference: &wc::History, sessions: &[WatchSession], final_revision: Option<i64>) -> CheckResult {
    let mut problems: Vec<String> = Vec::new();
    let mut by_watcher: BTreeMap<usize, Vec<&WatchSession>> = BTreeMap::new();
    for s in sessions {
        by_watcher.entry(s.watcher).or_default().push(s);
    }
    type Seq = Vec<(i64, String, bool, String)>;
    let mut sequences: BTreeMap<usize, Seq> = BTreeMap::new();
    let mut events = 0usize;
    for (w, ss) in &by_watcher {
        let mut ss = ss.clone();
        ss.sort_by_key(|s| s.session);
        // One trace per segment (a relist starts a new one): the sessions of a segment together must be one
        // watch from the segment's start without gaps or duplicates, each session must resume from the last
        // event + 1, and each session on its own must keep every guarantee.
        let mut reached = 0;
        let mut seg_start = 0;
        for i in 0..=ss.len() {
            if i < ss.len() && (i == 0 || !ss[i].relisted) {
                continue;
            }
            let seg = &ss[seg_start..i];
            let mut trace = to_trace(seg[0]);
            let mut last_event = 0;
            for (j, s) in seg.iter().enumerate() {
                let want = if last_event > 0 { last_event + 1 } else { seg[0].start_revision };
                if j > 0 && s.start_revision != want {
                    problems.push(format!(
                        "[resumable] watcher {w} session {} started at revision {} instead of {want}",
                        s.session, s.start_revision
                    ));
                }
                if j > 0 {
                    trace.responses.extend(to_trace(s).responses);
                }
                if let Some(l) = s.responses.iter().flat_map(|r| r.events.iter()).map(|e| e.revision()).max() {
                    last_event = last_event.max(l);
                }
            }
            // Across the sessions of a segment: no gap, no duplicate, no step back. (Progress and everything
            // else are promises of one stream, checked per session below: a member that lags behind may
            // report a progress revision below what an earlier stream, on another member, delivered.)
            let across = [wc::Guarantee::Ordered, wc::Guarantee::Unique, wc::Guarantee::Reliable];
            if seg.len() > 1 {
                problems.extend(
                    wc::check(reference, &trace)
                        .iter()
                        .filter(|v| across.contains(&v.guarantee))
                        .map(|v| format!("across reconnections: {v}")),
                );
            }
            for s in seg {
                problems.extend(wc::check(reference, &to_trace(s)).iter().map(|v| v.to_string()));
            }
            reached = reached.max(trace.last_reported_revision());
            seg_start = i;
        }
        let seq: Seq = ss
            .iter()
            .flat_map(|s| s.responses.iter().flat_map(|r| r.events.iter()))
            .map(|e| (e.revision(), e.kv.key.clone(), e.delete, e.kv.value.clone()))
            .collect();
        events += seq.len();
        if let Some(f) = final_revision {
            if reached < f {
                problems.push(format!("watcher {w} stopped at revision {reached}, below the final revision {f}"));
            }
        }
        sequences.insert(*w, seq);
    }
    // All watchers saw the same sequence over the revisions they have in common.
    let ids: Vec<usize> = sequences.keys().copied().collect();
    for pair in ids.windows(2) {
        let (a, b) = (&sequences[&pair[0]], &sequences[&pair[1]]);
        let lo = a.first().map(|e| e.0).unwrap_or(0).max(b.first().map(|e| e.0).unwrap_or(0));
        let hi = a.last().map(|e| e.0).unwrap_or(0).min(b.last().map(|e| e.0).unwrap_or(0));
        let sa: Vec<_> = a.iter().filter(|e| e.0 >= lo && e.0 <= hi).collect();
        let sb: Vec<_> = b.iter().filter(|e| e.0 >= lo && e.0 <= hi).collect();
        if sa != sb {
            let at = sa.iter().zip(sb.iter()).position(|(x, y)| x != y).unwrap_or(sa.len().min(sb.len()));
            problems.push(format!(
                "watchers {} and {} disagree over revisions {lo}..={hi} at event {at}: {:?} vs {:?}",
                pair[0],
                pair[1],
                sa.get(at),
                sb.get(at)
            ));
        }
    }
    CheckResult::from_problems(
        "watch",
        format!(
            "{} watchers, {} sessions, {events} events: ordered, unique, atomic, reliable, resumable, prev_kv \
             correct, same sequence everywhere",
            by_watcher.len(),
            sessions.len()
        ),
        problems,
    )
}

/// A reference history from recorded events (deduplicated by (revision, key); prev_kv recomputed).
pub fn reference_from(events: impl IntoIterator<Item = WEvent>) -> (wc::History, Vec<String>) {
    let mut by: BTreeMap<(i64, String), WEvent> = BTreeMap::new();
    let mut problems = Vec::new();
    for e in events {
        let k = (e.revision(), e.kv.key.clone());
        match by.get(&k) {
            Some(prev) if prev.kv != e.kv || prev.delete != e.delete => {
                problems.push(format!("two different events for {} @{}: {:?} and {:?}", k.1, k.0, prev.kv, e.kv))
            }
            Some(_) => {}
            None => {
                by.insert(k, e);
            }
        }
    }
    (wc::History::from_events(by.into_values().map(|e| to_event(&e))), problems)
}

/// The revision ranges `[start, last reported]` the sessions cover, merged.
pub fn coverage(sessions: &[WatchSession]) -> Vec<(i64, i64)> {
    let mut ranges: Vec<(i64, i64)> = sessions
        .iter()
        .map(|s| (s.start_revision, to_trace(s).last_reported_revision()))
        .filter(|(a, b)| b >= a)
        .collect();
    ranges.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}
