//! A linearizability checker: the Wing–Gong search with Lowe's memoization, as porcupine implements it, over
//! any [`Model`], extended with *optional* operations (an `info` op that may or may not have taken effect).
//!
//! The history is a list of [`Operation`]s with call and return times. It is turned into a doubly linked list
//! of call and return entries sorted by time (a call before a return at equal times, which counts ops that
//! touch as concurrent). The search walks the list from the front: at a call entry it tries to linearize the
//! op next (apply it to the model state); if the model accepts and the pair (set of ops done, new state) was
//! not explored before, the op's entries are lifted out of the list and the walk restarts from the front. At
//! the return entry of an op that is not linearized yet nothing before it can be linearized next: backtrack
//! (undo the last linearized op and try the entry after its call). The cache of explored (done set, state)
//! pairs makes the search polynomial in practice.
//!
//! Optional ops (`optional == true`) may never take effect:
//! - without a return time (`ret == None`) they have no return entry and may linearize anywhere after their
//!   call, or never; reaching the end of the list with only such ops left is a success;
//! - with a return time (a *deadline* the caller proved: "if it happened at all, it happened before t") the
//!   walk reaching its return entry while it is not linearized drops it ("it never happened"), which is
//!   undone when backtracking over it.
//!
//! Worked example (a register, initially 0): A = write(1) [0, 10], B = read() -> 1 [2, 4], C = read() -> 0
//! [5, 8]. Entries: A.call, B.call, B.ret, C.call, C.ret, A.ret. The walk linearizes A (state 1), then B
//! (reads 1), then reaches C.call: read 0 fails in state 1, then C.ret: backtrack B, then A; with A undone B
//! cannot read 1 and the walk hits B.ret with nothing left to undo: not linearizable (C saw 0 after B saw 1).

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Instant;

/// A sequential specification.
pub trait Model {
    /// The state; compared and hashed for the memo cache, so keep it small (interned values).
    type State: Clone + Eq + Hash + Debug;
    type Input: Clone + Debug;
    type Output: Clone + Debug;

    /// The initial state.
    fn init(&self) -> Self::State;

    /// Applies `input` in `state`: the next state if the op can take effect there and return `output`
    /// (`None` = output unknown: the op took effect with whatever result the model gives), else None.
    fn step(&self, state: &Self::State, input: &Self::Input, output: Option<&Self::Output>) -> Option<Self::State>;

    /// True for an op that never changes the state (a read): such ops can be removed from a history without
    /// making a linearizable history non-linearizable, which the counter-example minimizer relies on.
    fn is_read_only(&self, input: &Self::Input) -> bool;
}

/// One operation of a history.
#[derive(Debug, Clone)]
pub struct Operation<I, O> {
    /// The caller's id for the op (e.g. the history op id), carried into counter-examples.
    pub id: u64,
    pub call: u64,
    /// Return time; None only for optional ops without a deadline.
    pub ret: Option<u64>,
    /// May not have taken effect (an `info` op).
    pub optional: bool,
    pub input: I,
    /// None = unknown.
    pub output: Option<O>,
}

/// The result of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The search ran out of time.
    Unknown,
}

const NONE: usize = usize::MAX;

#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
    /// The op's other entry (return for a call, call for a return); NONE for a call without return.
    matching: usize,
}

enum Frame<S> {
    /// The op of this call entry was linearized; the state before it.
    Linearized { entry: usize, state: S },
    /// The optional op of this call entry was dropped at its deadline.
    Dropped { entry: usize },
}

struct List {
    e: Vec<Entry>,
}

impl List {
    /// Entry 0 is the head sentinel.
    fn build<I, O>(ops: &[Operation<I, O>]) -> List {
        let mut items: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            items.push((op.call, true, i));
            if let Some(r) = op.ret {
                items.push((r.max(op.call), false, i));
            }
        }
        // Calls before returns at equal times: ops that touch are concurrent.
        items.sort_by_key(|(t, is_call, i)| (*t, !*is_call, *i));
        let mut e = Vec::with_capacity(items.len() + 1);
        e.push(Entry { op: NONE, is_call: false, prev: NONE, next: NONE, matching: NONE });
        let mut call_at = vec![NONE; ops.len()];
        for (t, (_, is_call, op)) in items.iter().enumerate() {
            let idx = t + 1;
            let mut entry = Entry { op: *op, is_call: *is_call, prev: idx - 1, next: NONE, matching: NONE };
            if *is_call {
                call_at[*op] = idx;
            } else {
                entry.matching = call_at[*op];
                e[call_at[*op]].matching = idx;
            }
            e.push(entry);
            e[idx - 1].next = idx;
        }
        List { e }
    }

    fn unlink(&mut self, i: usize) {
        let Entry { prev, next, .. } = self.e[i];
        self.e[prev].next = next;
        if next != NONE {
            self.e[next].prev = prev;
        }
    }

    fn relink(&mut self, i: usize) {
        let Entry { prev, next, .. } = self.e[i];
        self.e[prev].next = i;
        if next != NONE {
            self.e[next].prev = i;
        }
    }

    /// Removes a call entry and its return entry.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        let m = self.e[call].matching;
        if m != NONE {
            self.unlink(m);
        }
    }

    /// Undoes [`List::lift`].
    fn unlift(&mut self, call: usize) {
        let m = self.e[call].matching;
        if m != NONE {
            self.relink(m);
        }
        self.relink(call);
    }
}

fn set_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

fn clear_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] &= !(1 << (i % 64));
}

/// Checks one history (one key's ops) against `model`. `deadline` bounds the search time.
pub fn check<M: Model>(model: &M, ops: &[Operation<M::Input, M::Output>], deadline: Option<Instant>) -> Verdict {
    let mut list = List::build(ops);
    let mut done = vec![0u64; ops.len().div_ceil(64).max(1)];
    let mut cache: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack: Vec<Frame<M::State>> = Vec::new();
    let mut state = model.init();
    let mut entry = list.e[0].next;
    let mut steps: u64 = 0;
    loop {
        steps += 1;
        if steps.is_multiple_of(4096) && deadline.is_some_and(|d| Instant::now() > d) {
            return Verdict::Unknown;
        }
        if entry == NONE {
            // Only optional ops without a deadline are left: they never happened.
            return Verdict::Linearizable;
        }
        let Entry { op, is_call, next, .. } = list.e[entry];
        let o = &ops[op];
        if is_call {
            if let Some(new_state) = model.step(&state, &o.input, o.output.as_ref()) {
                let mut key = done.clone();
                set_bit(&mut key, op);
                if cache.insert((key, new_state.clone())) {
                    stack.push(Frame::Linearized { entry, state: std::mem::replace(&mut state, new_state) });
                    set_bit(&mut done, op);
                    list.lift(entry);
                    entry = list.e[0].next;
                    continue;
                }
            }
            entry = next;
            continue;
        }
        if o.optional {
            // Past its deadline without taking effect: it never happened.
            let call = list.e[entry].matching;
            stack.push(Frame::Dropped { entry: call });
            set_bit(&mut done, op);
            list.lift(call);
            entry = next;
            continue;
        }
        // A return entry of an op that is not linearized: undo the last choice.
        loop {
            match stack.pop() {
                None => return Verdict::NotLinearizable,
                Some(Frame::Dropped { entry: call }) => {
                    list.unlift(call);
                    clear_bit(&mut done, list.e[call].op);
                }
                Some(Frame::Linearized { entry: call, state: before }) => {
                    list.unlift(call);
                    clear_bit(&mut done, list.e[call].op);
                    state = before;
                    entry = list.e[call].next;
                    break;
                }
            }
        }
    }
}

/// The history cut at time `t`: ops called after `t` are removed; ops returning after `t` become optional
/// ops without deadline and without known output. If the full history is linearizable so is every cut (take
/// the prefix of its linearization up to `t`), so a failing cut is a sound counter-example.
fn cut<I: Clone, O: Clone>(ops: &[Operation<I, O>], t: u64) -> Vec<Operation<I, O>> {
    ops.iter()
        .filter(|o| o.call <= t)
        .map(|o| {
            let mut o = o.clone();
            if o.ret.is_none_or(|r| r > t) {
                o.ret = None;
                o.optional = true;
                o.output = None;
            }
            o
        })
        .collect()
}

/// A small non-linearizable sub-history of a non-linearizable `ops`: the shortest failing cut (binary
/// search on the cut time, see [`cut`]), then read-only ops removed while it still fails (removing a read
/// never makes a linearizable history non-linearizable, so the result still proves the violation). Returns
/// the remaining ops, in call order; or all of `ops` when the time budget runs out.
pub fn minimize<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    deadline: Option<Instant>,
) -> Vec<Operation<M::Input, M::Output>> {
    let fails = |h: &[Operation<M::Input, M::Output>]| check(model, h, deadline) == Verdict::NotLinearizable;
    let mut times: Vec<u64> = ops.iter().filter_map(|o| o.ret).collect();
    times.sort_unstable();
    times.dedup();
    let mut best: Vec<Operation<M::Input, M::Output>> = ops.to_vec();
    // Smallest cut time that fails (cuts are monotone in t).
    let (mut lo, mut hi) = (0usize, times.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        let h = cut(ops, times[mid]);
        if fails(&h) {
            best = h;
            hi = mid;
        } else {
            lo = mid + 1;
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return sorted(best);
        }
    }
    // Unknown-outcome reads carry no information.
    best.retain(|o| !(model.is_read_only(&o.input) && o.output.is_none()));
    // Remove reads in halving chunks (ddmin-like), keeping every removal that still fails.
    let mut chunk = best.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        while i < best.len() {
            if deadline.is_some_and(|d| Instant::now() > d) {
                return sorted(best);
            }
            let end = (i + chunk).min(best.len());
            if !best[i..end].iter().any(|o| model.is_read_only(&o.input)) {
                i = end;
                continue;
            }
            let candidate: Vec<_> = best
                .iter()
                .enumerate()
                .filter(|(j, o)| !(*j >= i && *j < end && model.is_read_only(&o.input)))
                .map(|(_, o)| o.clone())
                .collect();
            if fails(&candidate) {
                best = candidate;
            } else {
                i = end;
            }
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    sorted(best)
}

fn sorted<I, O>(mut ops: Vec<Operation<I, O>>) -> Vec<Operation<I, O>> {
    ops.sort_by_key(|o| (o.call, o.id));
    ops
}
