//! Per-key linearizability of a recorded history against a register model (read / blind write /
//! compare-and-set, where "absent" is a value too), which covers the register, append and kubernetes
//! workloads:
//!
//! | call                      | model op                                  |
//! |---------------------------|-------------------------------------------|
//! | read                      | read                                      |
//! | write                     | write(value)                              |
//! | cas (VALUE == expect)     | cas(expect -> value)                      |
//! | append (MOD == rev)       | cas(list read at rev -> list + elem)      |
//! | create (MOD == 0)         | cas(absent -> value)                      |
//! | update (MOD == rev)       | cas(value read at rev -> value)           |
//! | delete (MOD == rev)       | cas(value read at rev -> absent)          |
//! | list (pages at one rev)   | a read of every known key of the prefix   |
//!
//! A MOD == rev guard is the same as "value == the value that had mod_revision rev" because every write
//! writes a unique value, so a value has exactly one mod_revision; [`check_revisions`] verifies that
//! bijection on everything observed.
//!
//! `info` ops are narrowed before the search, soundly, using the uniqueness of written values (as etcd's
//! robustness tests do):
//! - an info write/cas whose value some ok op observed (read it, or compared against it) took effect, before
//!   the first such observation completed: it becomes a definite op with that return time;
//! - an info write/cas whose value nobody observed is dropped (choosing "it never happened"): if a
//!   linearization applied it, no op between it and the next change saw its value, so removing it keeps the
//!   linearization valid. Not done on a key with failed compares of unknown current value (they observe a
//!   negative fact);
//! - an info cas expecting a value `e` can only have happened while `e` was current; once an ok op that
//!   started after `e` was seen current has changed or read another value, `e` is gone for good: that op's
//!   completion is the cas's deadline.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::checker::linear::{self, Model, Operation, Verdict};
use crate::history::{secs, Call, Op, Outcome, Ret};

/// Interned value of one key; 0 = absent.
pub type Val = u32;

/// The register's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Read,
    Write(Val),
    Cas { expect: Val, new: Val },
}

/// The register's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Read(Val),
    Write,
    /// `current`: the value seen by a failed compare, when known.
    Cas {
        ok: bool,
        current: Option<Val>,
    },
}

/// A register that starts absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

impl Model for Register {
    type State = Val;
    type Input = Input;
    type Output = Output;

    fn init(&self) -> Val {
        0
    }

    fn step(&self, s: &Val, input: &Input, output: Option<&Output>) -> Option<Val> {
        match (input, output) {
            (Input::Read, Some(Output::Read(v))) => (v == s).then_some(*s),
            (Input::Read, _) => Some(*s),
            (Input::Write(v), _) => Some(*v),
            (Input::Cas { expect, .. }, Some(Output::Cas { ok: false, current })) => {
                (s != expect && current.is_none_or(|c| c == *s)).then_some(*s)
            }
            // Succeeded, or unknown: an unknown cas that failed its compare changed nothing, which is the same
            // as not having happened, so only the successful branch needs exploring.
            (Input::Cas { expect, new }, _) => (s == expect).then_some(*new),
        }
    }

    fn is_read_only(&self, input: &Input) -> bool {
        matches!(input, Input::Read)
    }
}

/// The ops of one key in model form, with the values interned.
#[derive(Debug, Clone, Default)]
pub struct KeyHistory {
    pub key: String,
    pub ops: Vec<Operation<Input, Output>>,
    /// Interned values: index = Val (index 0 = absent).
    pub values: Vec<Option<String>>,
    /// history op id -> note on how an info op was narrowed.
    pub notes: HashMap<u64, String>,
}

impl KeyHistory {
    fn new(key: &str) -> KeyHistory {
        KeyHistory { key: key.to_string(), values: vec![None], ..Default::default() }
    }

    fn intern(&mut self, v: Option<&str>, index: &mut HashMap<String, Val>) -> Val {
        let Some(v) = v else { return 0 };
        if let Some(id) = index.get(v) {
            return *id;
        }
        let id = self.values.len() as Val;
        self.values.push(Some(v.to_string()));
        index.insert(v.to_string(), id);
        id
    }

    /// The value of `id`, for reports.
    pub fn show(&self, id: Val) -> String {
        match self.values.get(id as usize) {
            Some(Some(v)) => v.clone(),
            _ => "(absent)".to_string(),
        }
    }
}

/// A call in model terms before interning: None = absent.
enum RawInput<'a> {
    Read,
    Write(Option<&'a str>),
    Cas(Option<&'a str>, Option<&'a str>),
}

/// A result in model terms before interning.
enum RawOutput<'a> {
    Read(Option<&'a str>),
    Write,
    /// Succeeded, and for a failure the current value when known.
    Cas(bool, Option<Option<&'a str>>),
}

/// The register ops of one history op: (key, input, output). Lists become reads of `keys` under their prefix.
fn to_register<'a>(op: &'a Op, keys: &'a [String]) -> Vec<(&'a str, RawInput<'a>, Option<RawOutput<'a>>)> {
    let cas_out = || match &op.ret {
        Some(Ret::Cas { succeeded, current, .. }) => {
            Some(RawOutput::Cas(*succeeded, current.as_ref().map(|c| c.as_deref())))
        }
        _ => None,
    };
    match &op.call {
        Call::Read { key, .. } => match &op.ret {
            Some(Ret::Read { value, .. }) => vec![(key, RawInput::Read, Some(RawOutput::Read(value.as_deref())))],
            _ => vec![],
        },
        Call::Write { key, value } => vec![(key, RawInput::Write(Some(value)), Some(RawOutput::Write))],
        Call::Cas { key, expect, value } | Call::Update { key, expect, value, .. } => {
            vec![(key, RawInput::Cas(Some(expect), Some(value)), cas_out())]
        }
        Call::Append { key, expect, value, .. } => {
            vec![(key, RawInput::Cas(expect.as_deref(), Some(value)), cas_out())]
        }
        Call::Create { key, value } => vec![(key, RawInput::Cas(None, Some(value)), cas_out())],
        Call::Delete { key, expect, .. } => vec![(key, RawInput::Cas(Some(expect), None), cas_out())],
        Call::List { prefix, .. } => {
            let Some(Ret::List { kvs, .. }) = &op.ret else { return vec![] };
            let found: HashMap<&str, &str> = kvs.iter().map(|kv| (kv.key.as_str(), kv.value.as_str())).collect();
            keys.iter()
                .filter(|k| k.starts_with(prefix.as_str()))
                .map(|k| (k.as_str(), RawInput::Read, Some(RawOutput::Read(found.get(k.as_str()).copied()))))
                .collect()
        }
        _ => vec![],
    }
}

/// Splits a history into per-key register histories (failed ops and unknown reads dropped, info ops narrowed).
/// Lists are expanded into reads of every key of their prefix that appears anywhere in the history: a list's
/// pages all read the snapshot of its first page, a linearizable read.
pub fn per_key(history: &[Op]) -> BTreeMap<String, KeyHistory> {
    let mut keys: BTreeMap<String, KeyHistory> = BTreeMap::new();
    let mut index: HashMap<String, HashMap<String, Val>> = HashMap::new();
    for op in history {
        if let Some(k) = op.call.key() {
            keys.entry(k.to_string()).or_insert_with(|| KeyHistory::new(k));
        }
    }
    let all_keys: Vec<String> = keys.keys().cloned().collect();
    for op in history {
        let ok = match op.outcome {
            Outcome::Fail => continue,
            Outcome::Ok => true,
            Outcome::Info if op.call.is_read_only() => continue,
            Outcome::Info => false,
        };
        for (key, input, output) in to_register(op, &all_keys) {
            let Some(kh) = keys.get_mut(key) else { continue };
            let idx = index.entry(key.to_string()).or_default();
            let input = match input {
                RawInput::Read => Input::Read,
                RawInput::Write(v) => Input::Write(kh.intern(v, idx)),
                RawInput::Cas(e, v) => Input::Cas { expect: kh.intern(e, idx), new: kh.intern(v, idx) },
            };
            let output = match output {
                _ if !ok => None,
                Some(RawOutput::Read(v)) => Some(Output::Read(kh.intern(v, idx))),
                Some(RawOutput::Write) => Some(Output::Write),
                Some(RawOutput::Cas(succeeded, current)) => {
                    Some(Output::Cas { ok: succeeded, current: current.map(|c| kh.intern(c, idx)) })
                }
                None => None,
            };
            kh.ops.push(Operation {
                id: op.id,
                call: op.invoke,
                ret: ok.then_some(op.complete),
                optional: !ok,
                input,
                output,
            });
        }
    }
    for kh in keys.values_mut() {
        narrow_info_ops(kh);
    }
    keys
}

/// What an op tells about the values of its key: (values it saw current, the value it wrote). Only
/// meaningful for definite ops.
fn observations(o: &Operation<Input, Output>) -> (Vec<Val>, Option<Val>) {
    match (o.input, o.output) {
        (Input::Read, Some(Output::Read(v))) => (vec![v], None),
        (Input::Cas { expect, new }, Some(Output::Cas { ok: true, .. })) => (vec![expect], Some(new)),
        (Input::Cas { .. }, Some(Output::Cas { ok: false, current: Some(c) })) => (vec![c], None),
        (Input::Write(v), _) => (vec![], Some(v)),
        // A definite op of unknown output (a narrowed info op) took effect: its compare held.
        (Input::Cas { expect, new }, None) if !o.optional => (vec![expect], Some(new)),
        _ => (vec![], None),
    }
}

/// Narrows the key's info ops (see the module doc).
fn narrow_info_ops(kh: &mut KeyHistory) {
    let ops = &mut kh.ops;
    let negative =
        ops.iter().any(|o| !o.optional && matches!(o.output, Some(Output::Cas { ok: false, current: None })));
    // 1. Info ops whose written value was observed took effect before the first observation completed.
    //    Decided ops observe their own expected value, so repeat until nothing changes.
    let mut removed = vec![false; ops.len()];
    loop {
        let mut first_seen: HashMap<Val, u64> = HashMap::new();
        for o in ops.iter().filter(|o| !o.optional) {
            let (seen, _) = observations(o);
            let t = o.ret.unwrap_or(u64::MAX);
            for v in seen.into_iter().filter(|v| *v != 0) {
                first_seen.entry(v).and_modify(|x| *x = (*x).min(t)).or_insert(t);
            }
        }
        let mut changed = false;
        for o in ops.iter_mut().filter(|o| o.optional) {
            let new = match o.input {
                Input::Write(v) | Input::Cas { new: v, .. } => v,
                Input::Read => continue,
            };
            if new == 0 {
                continue;
            }
            if let Some(t) = first_seen.get(&new) {
                o.optional = false;
                o.ret = Some(*t);
                kh.notes.insert(
                    o.id,
                    format!("unknown outcome, but its value was observed: took effect before {}", secs(*t)),
                );
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // 2. Unobserved info writes never happened, unless an op that is kept depends on their value.
    if !negative {
        loop {
            let mut needed: HashMap<Val, bool> = HashMap::new();
            for (i, o) in ops.iter().enumerate() {
                if removed[i] {
                    continue;
                }
                if !o.optional {
                    for v in observations(o).0 {
                        needed.insert(v, true);
                    }
                }
                if let Input::Cas { expect, .. } = o.input {
                    needed.insert(expect, true);
                }
            }
            let mut changed = false;
            for (i, o) in ops.iter().enumerate() {
                if removed[i] || !o.optional {
                    continue;
                }
                let new = match o.input {
                    Input::Write(v) | Input::Cas { new: v, .. } => v,
                    Input::Read => {
                        removed[i] = true;
                        changed = true;
                        continue;
                    }
                };
                if new != 0 && !needed.contains_key(&new) {
                    removed[i] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }
    // 3. Deadlines of the remaining optional cas ops: their expected value, once replaced, never returns.
    if !negative {
        // When each value was first established as current (seen, or written by an ok op).
        let mut established: HashMap<Val, u64> = HashMap::new();
        for (i, o) in ops.iter().enumerate() {
            if removed[i] || o.optional {
                continue;
            }
            let (seen, wrote) = observations(o);
            let t = o.ret.unwrap_or(u64::MAX);
            for v in seen.into_iter().chain(wrote).filter(|v| *v != 0) {
                established.entry(v).and_modify(|x| *x = (*x).min(t)).or_insert(t);
            }
        }
        // ok ops that change or read the state, by invocation: (invoke, complete, values seen, wrote?)
        let movers: Vec<(u64, u64, Vec<Val>, bool)> = ops
            .iter()
            .enumerate()
            .filter(|(i, o)| !removed[*i] && !o.optional)
            .map(|(_, o)| {
                let (seen, wrote) = observations(o);
                (o.call, o.ret.unwrap_or(u64::MAX), seen, wrote.is_some())
            })
            .collect();
        for (i, o) in ops.iter_mut().enumerate() {
            if removed[i] {
                continue;
            }
            let Input::Cas { expect, .. } = o.input else { continue };
            if expect == 0 || !(o.optional || o.output.is_none()) {
                continue;
            }
            let Some(t_e) = established.get(&expect) else { continue };
            let deadline = movers
                .iter()
                .filter(|(call, _, seen, wrote)| *call > *t_e && (*wrote || seen.iter().any(|v| *v != expect)))
                .map(|(_, ret, _, _)| *ret)
                .min();
            if let Some(d) = deadline {
                if o.ret.is_none_or(|r| d < r) {
                    o.ret = Some(d);
                    kh.notes.entry(o.id).or_insert_with(|| {
                        format!("unknown outcome; its expected value was gone by {}: deadline", secs(d))
                    });
                }
            }
        }
    }
    let mut i = 0;
    ops.retain(|_| {
        let keep = !removed[i];
        i += 1;
        keep
    });
}

/// The verdict for one key.
#[derive(Debug, Clone)]
pub struct KeyVerdict {
    pub key: String,
    pub verdict: Verdict,
    /// Ops checked (after narrowing).
    pub ops: usize,
    /// For a non-linearizable key: the minimized counter-example, one op per line.
    pub counterexample: Vec<String>,
}

/// The verdict over all keys.
#[derive(Debug, Clone)]
pub struct LinearizabilityReport {
    pub keys: Vec<KeyVerdict>,
}

impl LinearizabilityReport {
    /// True when every key is linearizable.
    pub fn valid(&self) -> bool {
        self.keys.iter().all(|k| k.verdict == Verdict::Linearizable)
    }

    /// The overall verdict: NotLinearizable if any key is, else Unknown if any search timed out.
    pub fn verdict(&self) -> Verdict {
        if self.keys.iter().any(|k| k.verdict == Verdict::NotLinearizable) {
            Verdict::NotLinearizable
        } else if self.keys.iter().any(|k| k.verdict == Verdict::Unknown) {
            Verdict::Unknown
        } else {
            Verdict::Linearizable
        }
    }

    /// Human-readable lines: counts, then each failing key's counter-example.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let bad: Vec<&KeyVerdict> = self.keys.iter().filter(|k| k.verdict != Verdict::Linearizable).collect();
        out.push_str(&format!(
            "{} keys, {} ops checked: {}\n",
            self.keys.len(),
            self.keys.iter().map(|k| k.ops).sum::<usize>(),
            match self.verdict() {
                Verdict::Linearizable => "linearizable".to_string(),
                Verdict::NotLinearizable => format!("NOT linearizable ({} keys)", bad.len()),
                Verdict::Unknown => "unknown (search timed out)".to_string(),
            }
        ));
        for k in bad {
            out.push_str(&format!("key {}: {:?} over {} ops\n", k.key, k.verdict, k.ops));
            for l in &k.counterexample {
                out.push_str(&format!("  {l}\n"));
            }
        }
        out
    }
}

/// Checks every key of `history`; `budget` bounds each key's search (and its minimization).
pub fn check_history(history: &[Op], budget: std::time::Duration) -> LinearizabilityReport {
    let by_id: HashMap<u64, &Op> = history.iter().map(|o| (o.id, o)).collect();
    let mut keys = Vec::new();
    for (key, kh) in per_key(history) {
        let deadline = Some(Instant::now() + budget);
        let verdict = linear::check(&Register, &kh.ops, deadline);
        let mut counterexample = Vec::new();
        if verdict == Verdict::NotLinearizable {
            let min = minimize(&kh.ops, Some(Instant::now() + budget));
            counterexample.push(format!(
                "minimal failing sub-history ({} of {} ops; no order of these ops satisfies a register):",
                min.len(),
                kh.ops.len()
            ));
            for o in &min {
                let line = by_id.get(&o.id).map(|h| h.describe()).unwrap_or_else(|| format!("#{}", o.id));
                let mut line = format!("{line}   [model: {}]", describe_model_op(&kh, o));
                if let Some(n) = kh.notes.get(&o.id) {
                    line.push_str(&format!(" ({n})"));
                }
                counterexample.push(line);
            }
        }
        keys.push(KeyVerdict { key, verdict, ops: kh.ops.len(), counterexample });
    }
    LinearizabilityReport { keys }
}

/// [`linear::minimize`], then writes dropped where that is sound: each write (from the last) is made an
/// unknown-outcome op, which can only make a failing history fail more, and dropped when nothing in the
/// sub-history observes its value (see the module doc: "it never happened" is then always a valid choice).
/// It is kept that way while the sub-history still fails.
fn minimize(ops: &[Operation<Input, Output>], deadline: Option<Instant>) -> Vec<Operation<Input, Output>> {
    let mut best = linear::minimize(&Register, ops, deadline);
    let observed = |h: &[Operation<Input, Output>], skip: usize, v: Val| {
        h.iter().enumerate().any(|(j, o)| {
            j != skip
                && (matches!(o.output, Some(Output::Read(x)) if x == v)
                    || matches!(o.output, Some(Output::Cas { ok: false, current: Some(x) }) if x == v)
                    || matches!(o.input, Input::Cas { expect, .. } if expect == v))
        })
    };
    if best.iter().any(|o| matches!(o.output, Some(Output::Cas { ok: false, current: None }))) {
        return best;
    }
    let mut i = best.len();
    while i > 0 {
        i -= 1;
        if deadline.is_some_and(|d| Instant::now() > d) {
            break;
        }
        let new = match best[i].input {
            Input::Write(v) | Input::Cas { new: v, .. } => v,
            Input::Read => continue,
        };
        let mut candidate = best.clone();
        if new != 0 && !observed(&candidate, i, new) {
            candidate.remove(i);
        } else {
            let o = &mut candidate[i];
            o.optional = true;
            o.ret = None;
            o.output = None;
        }
        if linear::check(&Register, &candidate, deadline) == Verdict::NotLinearizable {
            best = candidate;
        }
    }
    best
}

fn describe_model_op(kh: &KeyHistory, o: &Operation<Input, Output>) -> String {
    let input = match o.input {
        Input::Read => "read".to_string(),
        Input::Write(v) => format!("write {}", kh.show(v)),
        Input::Cas { expect, new } => format!("cas {} -> {}", kh.show(expect), kh.show(new)),
    };
    let output = match o.output {
        Some(Output::Read(v)) => format!(" => {}", kh.show(v)),
        Some(Output::Write) => String::new(),
        Some(Output::Cas { ok: true, .. }) => " => ok".to_string(),
        Some(Output::Cas { ok: false, current }) => {
            format!(" => failed{}", current.map(|c| format!(", current {}", kh.show(c))).unwrap_or_default())
        }
        None if o.optional => " => ? (may not have happened)".to_string(),
        None => " => ? (happened)".to_string(),
    };
    format!("{input}{output}")
}

/// Checks that per key every observed value has one mod_revision and every mod_revision one value (what
/// makes MOD == rev guards equivalent to value guards). Returns the problems found.
pub fn check_revisions(history: &[Op]) -> Vec<String> {
    // key -> value -> (mod_rev, op id)
    let mut by_value: HashMap<&str, HashMap<Option<&str>, (i64, u64)>> = HashMap::new();
    let mut by_rev: HashMap<&str, HashMap<i64, (Option<&str>, u64)>> = HashMap::new();
    let mut problems = Vec::new();
    let mut obs: Vec<(&str, Option<&str>, i64, u64)> = Vec::new();
    for op in history.iter().filter(|o| o.outcome == Outcome::Ok) {
        match (&op.call, &op.ret) {
            (Call::Read { key, .. }, Some(Ret::Read { value, mod_rev })) => {
                obs.push((key, value.as_deref(), *mod_rev, op.id))
            }
            (_, Some(Ret::List { kvs, .. })) => {
                for kv in kvs {
                    obs.push((&kv.key, Some(&kv.value), kv.mod_rev, op.id));
                }
            }
            (call, Some(Ret::Cas { succeeded, current, mod_rev })) => {
                let key = call.key().unwrap_or_default();
                if !*succeeded {
                    if let Some(Some(c)) = current {
                        obs.push((key, Some(c), *mod_rev, op.id));
                    }
                    continue;
                }
                let written = match call {
                    Call::Cas { value, .. }
                    | Call::Append { value, .. }
                    | Call::Create { value, .. }
                    | Call::Update { value, .. } => Some(value.as_str()),
                    _ => None,
                };
                if let (Some(v), Some(r)) = (written, op.revision) {
                    obs.push((key, Some(v), r, op.id));
                }
            }
            (Call::Write { key, value }, _) => {
                if let Some(r) = op.revision {
                    obs.push((key, Some(value), r, op.id));
                }
            }
            _ => {}
        }
        match &op.call {
            Call::Update { key, rev, expect, .. } | Call::Delete { key, rev, expect } => {
                obs.push((key, Some(expect), *rev, op.id))
            }
            Call::Append { key, expect: Some(e), expect_rev, .. } => obs.push((key, Some(e), *expect_rev, op.id)),
            _ => {}
        }
    }
    for (key, value, rev, id) in obs {
        if value.is_none() || rev <= 0 {
            continue;
        }
        let e = by_value.entry(key).or_default().entry(value).or_insert((rev, id));
        if e.0 != rev && problems.len() < 20 {
            problems.push(format!(
                "key {key}: value {} seen with mod_revision {} (op #{}) and {rev} (op #{id})",
                value.unwrap_or(""),
                e.0,
                e.1
            ));
        }
        let e = by_rev.entry(key).or_default().entry(rev).or_insert((value, id));
        if e.0 != value && problems.len() < 20 {
            problems.push(format!(
                "key {key}: mod_revision {rev} seen with value {} (op #{}) and {} (op #{id})",
                e.0.unwrap_or(""),
                e.1,
                value.unwrap_or("")
            ));
        }
    }
    problems
}
