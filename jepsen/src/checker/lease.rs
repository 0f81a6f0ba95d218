//! Lease invariants, from LeaseGrant / Put-with-lease / KeepAlive / LeaseRevoke ops and linearizable scans
//! of the lease keys:
//! - *never early*: a key attached to lease L (its put acknowledged before a scan started) is present in every
//!   scan that completed before L's earliest possible expiry: `max(grant invoke + TTL, keep-alive invoke + TTL
//!   over every keep-alive answered with TTL > 0)` — unless a revoke of L was attempted before the scan
//!   completed. (The leader renews at some time after the keep-alive was sent, so the lease lives at least
//!   TTL past the send; a new leader only ever extends deadlines.) This covers "kept-alive keys never
//!   disappear" and "lapsing keys never disappear before their TTL";
//! - *never back*: a lease key, once seen absent after its put, is never seen again;
//! - *revoked is gone*: a scan started after an acknowledged revoke never sees the lease's keys;
//! - *eventually gone*: in the final scan no key is left of a lease that was never kept alive, once
//!   [`GRACE`] has passed after its TTL counted from the later of its grant and the heal (a leader change
//!   restarts every TTL, and faults end at the heal).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::checker::CheckResult;
use crate::history::{secs, Call, Nanos, Op, Outcome, Ret};

const NS: u64 = 1_000_000_000;

/// After a lease's TTL (from the later of its grant and the heal), the leader has this long to notice the
/// expiry and commit the revoke (raftcd retries a revoke every 3 s).
pub const GRACE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct LeaseInfo {
    /// (completion of the grant, granted TTL in seconds).
    granted: Option<(Nanos, i64)>,
    /// Earliest possible expiry (see the module doc).
    not_before: Nanos,
    kept: bool,
    /// Invocation of the first revoke attempt that may have applied.
    revoke_attempt: Option<Nanos>,
    /// Completion of the first acknowledged revoke.
    revoked: Option<Nanos>,
}

/// Checks the lease invariants. `final_scan`: the id of the final scan; `healed_at`: when every fault was
/// healed.
pub fn check(history: &[Op], final_scan: Option<u64>, healed_at: Nanos) -> CheckResult {
    let mut leases: HashMap<i64, LeaseInfo> = HashMap::new();
    for op in history {
        match (&op.call, op.outcome, &op.ret) {
            (Call::Grant { .. }, Outcome::Ok, Some(Ret::Grant { lease, ttl })) => {
                let l = leases.entry(*lease).or_default();
                l.granted = Some((op.complete, *ttl));
                l.not_before = l.not_before.max(op.invoke + *ttl as u64 * NS);
            }
            (Call::KeepAlive { lease }, Outcome::Ok, Some(Ret::KeepAlive { ttl })) if *ttl > 0 => {
                let l = leases.entry(*lease).or_default();
                l.kept = true;
                l.not_before = l.not_before.max(op.invoke + *ttl as u64 * NS);
            }
            (Call::Revoke { lease }, outcome, _) if outcome != Outcome::Fail => {
                let l = leases.entry(*lease).or_default();
                l.revoke_attempt = Some(l.revoke_attempt.map_or(op.invoke, |t| t.min(op.invoke)));
                if outcome == Outcome::Ok {
                    l.revoked = Some(l.revoked.map_or(op.complete, |t| t.min(op.complete)));
                }
            }
            _ => {}
        }
    }
    // key -> (lease, put completion if acknowledged)
    let mut keys: BTreeMap<&str, (i64, Option<Nanos>)> = BTreeMap::new();
    for op in history {
        if let Call::LeasePut { key, lease, .. } = &op.call {
            if op.outcome != Outcome::Fail {
                keys.insert(key, (*lease, (op.outcome == Outcome::Ok).then_some(op.complete)));
            }
        }
    }
    let scans: Vec<(&Op, BTreeSet<&str>)> = history
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .filter_map(|o| match (&o.call, &o.ret) {
            (Call::Scan { .. }, Some(Ret::List { kvs, .. })) => {
                Some((o, kvs.iter().map(|kv| kv.key.as_str()).collect()))
            }
            _ => None,
        })
        .collect();
    let mut problems = Vec::new();
    let mut gone_seen: HashMap<&str, &Op> = HashMap::new();
    let mut sorted_scans: Vec<&(&Op, BTreeSet<&str>)> = scans.iter().collect();
    sorted_scans.sort_by_key(|(o, _)| o.invoke);
    for (scan, present) in &sorted_scans {
        for (key, (lease, put_done)) in &keys {
            let l = leases.get(lease);
            let here = present.contains(key);
            if here {
                if let Some(prev) = gone_seen.get(key) {
                    if prev.complete < scan.invoke {
                        problems.push(format!(
                            "key {key} (lease {lease:x}) was absent in scan #{} and is back in scan #{}",
                            prev.id, scan.id
                        ));
                    }
                }
                if let Some(revoked) = l.and_then(|l| l.revoked) {
                    if revoked < scan.invoke {
                        problems.push(format!(
                            "key {key}: scan #{} at {} sees it after its lease {lease:x} was revoked at {}",
                            scan.id,
                            secs(scan.invoke),
                            secs(revoked)
                        ));
                    }
                }
                continue;
            }
            let Some(put_done) = put_done else { continue };
            if *put_done >= scan.invoke {
                continue;
            }
            gone_seen.entry(key).or_insert(scan);
            let Some(l) = l else { continue };
            let revoke_before = l.revoke_attempt.is_some_and(|t| t < scan.complete);
            if !revoke_before && scan.complete < l.not_before {
                problems.push(format!(
                    "key {key} (lease {lease:x}, {}) missing from scan #{} [{}..{}], but the lease cannot expire \
                     before {} ({})",
                    if l.kept { "kept alive" } else { "not kept alive" },
                    scan.id,
                    secs(scan.invoke),
                    secs(scan.complete),
                    secs(l.not_before),
                    if l.kept { "a keep-alive was answered" } else { "granted TTL" },
                ));
            }
        }
    }
    let mut lapsed_checked = 0;
    if let Some(id) = final_scan {
        match scans.iter().find(|(o, _)| o.id == id) {
            None => problems.push(format!("the final scan #{id} did not succeed")),
            Some((scan, present)) => {
                for (key, (lease, _)) in &keys {
                    let Some(l) = leases.get(lease) else { continue };
                    let Some((granted, ttl)) = l.granted.filter(|_| !l.kept) else { continue };
                    let gone_by = granted.max(healed_at) + ttl as u64 * NS + GRACE.as_nanos() as u64;
                    if scan.invoke < gone_by {
                        continue;
                    }
                    lapsed_checked += 1;
                    if present.contains(key) {
                        problems.push(format!(
                            "key {key}: its lease {lease:x} (TTL {ttl} s) was never kept alive, but the key is still \
                             there in the final scan at {} (it should be gone by {})",
                            secs(scan.invoke),
                            secs(gone_by)
                        ));
                    }
                }
            }
        }
    }
    let kept = leases.values().filter(|l| l.kept).count();
    CheckResult::from_problems(
        "leases",
        format!(
            "{} leases ({kept} kept alive), {} lease keys, {} scans: no key vanished early, none came back, {} \
             lapsed or revoked keys gone at the end",
            leases.len(),
            keys.len(),
            scans.len(),
            lapsed_checked
        ),
        problems,
    )
}
