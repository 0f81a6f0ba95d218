//! The kubernetes workload's own checks (linearizability and the value/revision bijection are checked per
//! key by [`crate::checker::register`]):
//! - the reference history (every watcher's events merged, prev_kv recomputed) agrees with the acknowledged
//!   creates, updates and deletes wherever the watchers cover the revision;
//! - the watch guarantees per watcher (a watcher canceled by compaction lists again and starts over, as the
//!   apiserver's reflector does);
//! - every paginated list at revision R returned exactly the reference state of the prefix at R.

use std::collections::BTreeMap;

use crate::checker::watch::{self, WatchSession};
use crate::checker::CheckResult;
use crate::history::{Call, Op, Outcome, Ret};

/// Checks the kubernetes workload. `first_revision`: the first revision of the run (the prefix was empty
/// before); `final_revision`: the revision every watcher must reach.
pub fn check(
    history: &[Op],
    sessions: &[WatchSession],
    prefix: &str,
    first_revision: i64,
    final_revision: Option<i64>,
) -> Vec<CheckResult> {
    let events = sessions.iter().flat_map(|s| s.responses.iter().flat_map(|r| r.events.iter().cloned()));
    let (reference, mut problems) = watch::reference_from(events);
    let ranges = watch::coverage(sessions);
    let covered = |rev: i64| ranges.iter().any(|(a, b)| rev >= *a && rev <= *b);
    problems.extend(watch::check_reference(history, &reference, first_revision, &covered, false));
    // Contiguously covered from the first revision up to:
    let upto = ranges.iter().find(|(a, _)| *a <= first_revision).map(|(_, b)| *b).unwrap_or(first_revision - 1);
    let mut results = vec![CheckResult::from_problems(
        "watch-vs-writes",
        format!(
            "{} events merged from every watcher, covering revisions {ranges:?}, agree with every acknowledged write",
            reference.events().len()
        ),
        problems,
    )];
    results.push(watch::check_watchers(&reference, sessions, final_revision));
    let mut problems = Vec::new();
    let mut lists = 0;
    let by_rev = watch::ByRev::new(&reference);
    let mut walker = watch::Walker::new(&by_rev);
    let mut listed: Vec<(&Op, i64, &Vec<crate::history::Kv>)> = history
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .filter_map(|o| match (&o.call, &o.ret, o.revision) {
            (Call::List { .. }, Some(Ret::List { kvs, .. }), Some(rev)) if rev <= upto => Some((o, rev, kvs)),
            _ => None,
        })
        .collect();
    listed.sort_by_key(|(_, rev, _)| *rev);
    for (op, rev, kvs) in listed {
        lists += 1;
        walker.advance_to(rev);
        let want: BTreeMap<&str, (&str, i64)> = walker
            .state
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (v, r))| (k.as_str(), (v.as_str(), *r)))
            .collect();
        let got: BTreeMap<&str, (&str, i64)> =
            kvs.iter().map(|kv| (kv.key.as_str(), (kv.value.as_str(), kv.mod_rev))).collect();
        if want != got {
            let missing: Vec<&&str> = want.keys().filter(|k| !got.contains_key(*k)).collect();
            let extra: Vec<&&str> = got.keys().filter(|k| !want.contains_key(*k)).collect();
            let differ: Vec<&&str> =
                want.keys().filter(|k| got.get(*k).is_some_and(|g| Some(g) != want.get(*k))).collect();
            problems.push(format!(
                "list #{} at revision {rev}: missing {missing:?}, unexpected {extra:?}, different {differ:?}",
                op.id
            ));
        }
    }
    results.push(CheckResult::from_problems(
        "lists",
        format!("{lists} paginated lists (at revisions up to {upto}) each equal the reference state at their revision"),
        problems,
    ));
    results
}
