//! The append workload's set invariants, from the final read of every key (lists of unique elements, written
//! by Txn{MOD == rev -> Put(list + elem)}):
//! - no element appears twice in a list;
//! - no element was invented (every element was the subject of an append to that key);
//! - every acknowledged append (ok, compare held) is present — else a *lost* acknowledged write;
//! - no append that certainly failed (compare failed, or a definite error) is present;
//! - every list read during the run is a prefix of the final list (lists only grow at the end).
//!
//! Appends of unknown outcome may be present (once) or absent.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::checker::CheckResult;
use crate::history::{Call, Op, Outcome, Ret};

/// Parses "1,5,9" into [1, 5, 9] (the empty string and absent are the empty list).
pub fn parse_list(s: Option<&str>) -> Vec<u64> {
    s.unwrap_or("").split(',').filter(|x| !x.is_empty()).filter_map(|x| x.parse().ok()).collect()
}

/// Formats a list as stored.
pub fn format_list(v: &[u64]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}

/// Checks the set invariants; `final_state` is the final linearizable read of each key (None = absent).
pub fn check(history: &[Op], final_state: &BTreeMap<String, Option<String>>) -> CheckResult {
    let mut problems = Vec::new();
    // key -> elem -> (outcome, compare held?, op id)
    type Attempt = (Outcome, Option<bool>, u64);
    let mut appends: HashMap<&str, HashMap<u64, Attempt>> = HashMap::new();
    for op in history {
        if let Call::Append { key, elem, .. } = &op.call {
            let succeeded = match &op.ret {
                Some(Ret::Cas { succeeded, .. }) => Some(*succeeded),
                _ => None,
            };
            appends.entry(key).or_default().insert(*elem, (op.outcome, succeeded, op.id));
        }
    }
    let (mut acked, mut present, mut unknown_present) = (0usize, 0usize, 0usize);
    for (key, value) in final_state {
        let list = parse_list(value.as_deref());
        let tried = appends.get(key.as_str());
        let mut seen = HashSet::new();
        for e in &list {
            if !seen.insert(*e) {
                problems.push(format!("key {key}: element {e} appears more than once in the final list"));
            }
            match tried.and_then(|t| t.get(e)) {
                None => problems.push(format!("key {key}: element {e} in the final list was never appended")),
                Some((Outcome::Fail, _, id)) | Some((Outcome::Ok, Some(false), id)) => problems
                    .push(format!("key {key}: element {e} is present but its append (op #{id}) certainly failed")),
                Some((Outcome::Info, _, _)) => unknown_present += 1,
                _ => {}
            }
        }
        present += seen.len();
        for (e, (outcome, succeeded, id)) in tried.into_iter().flatten() {
            if *outcome == Outcome::Ok && *succeeded == Some(true) {
                acked += 1;
                if !seen.contains(e) {
                    problems.push(format!("key {key}: acknowledged append of {e} (op #{id}) is lost"));
                }
            }
        }
        // Every list read during the run is a prefix of the final list.
        for op in history.iter().filter(|o| o.outcome == Outcome::Ok && o.call.key() == Some(key.as_str())) {
            let read = match &op.ret {
                Some(Ret::Read { value, .. }) => Some(value.as_deref()),
                Some(Ret::Cas { succeeded: false, current: Some(c), .. }) => Some(c.as_deref()),
                _ => None,
            };
            if let Some(r) = read {
                let r = parse_list(r);
                if !list.starts_with(&r) {
                    problems.push(format!(
                        "key {key}: op #{} read [{}], not a prefix of the final list [{}]",
                        op.id,
                        format_list(&r),
                        format_list(&list)
                    ));
                }
            }
        }
    }
    for key in appends.keys() {
        if !final_state.contains_key(*key) {
            problems.push(format!("key {key}: no final read"));
        }
    }
    CheckResult::from_problems(
        "append-sets",
        format!(
            "{} keys: {acked} acknowledged appends all present once, {present} elements in total ({unknown_present} \
             of unknown outcome), none invented or duplicated",
            final_state.len()
        ),
        problems,
    )
}
