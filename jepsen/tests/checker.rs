//! Unit tests without a cluster. The checkers on hand-made histories: linearizable ones (overlapping ops,
//! info writes that did or did not happen) must pass, non-linearizable ones (stale read, lost acknowledged
//! write, read of a value never written, compare-and-set anomalies) must fail with a small counter-example;
//! the append, lease, watch and revision checkers must tell good histories from bad ones; and the nemesis
//! schedule is seeded and its partitions symmetric.

use std::collections::BTreeMap;
use std::time::Duration;

use raftcd_jepsen::checker::linear::{self, Model, Operation, Verdict};
use raftcd_jepsen::checker::register::{self, Input, Output, Register};
use raftcd_jepsen::checker::watch::{self, WEvent, WKv, WResponse, WatchSession};
use raftcd_jepsen::checker::{append, lease};
use raftcd_jepsen::history::{Call, Kv, Op, Outcome, Ret, TxnWrite};

const MS: u64 = 1_000_000;

/// A small history builder: times in milliseconds.
#[derive(Default)]
struct H {
    ops: Vec<Op>,
}

impl H {
    fn push(
        &mut self,
        p: usize,
        t: (u64, u64),
        outcome: Outcome,
        call: Call,
        ret: Option<Ret>,
        rev: Option<i64>,
    ) -> &mut Self {
        let id = self.ops.len() as u64;
        self.ops.push(Op {
            id,
            process: p,
            member: 0,
            invoke: t.0 * MS,
            complete: t.1 * MS,
            outcome,
            call,
            ret,
            revision: rev,
            error: None,
        });
        self
    }
    fn w(&mut self, p: usize, t: (u64, u64), v: &str) -> &mut Self {
        self.push(p, t, Outcome::Ok, Call::Write { key: "x".into(), value: v.into() }, Some(Ret::Done), None)
    }
    fn w_info(&mut self, p: usize, t: (u64, u64), v: &str) -> &mut Self {
        self.push(p, t, Outcome::Info, Call::Write { key: "x".into(), value: v.into() }, None, None)
    }
    fn w_fail(&mut self, p: usize, t: (u64, u64), v: &str) -> &mut Self {
        self.push(p, t, Outcome::Fail, Call::Write { key: "x".into(), value: v.into() }, None, None)
    }
    fn r(&mut self, p: usize, t: (u64, u64), v: Option<&str>) -> &mut Self {
        let ret = Ret::Read { value: v.map(String::from), mod_rev: 0 };
        self.push(p, t, Outcome::Ok, Call::Read { key: "x".into(), serializable: false }, Some(ret), None)
    }
    fn cas(&mut self, p: usize, t: (u64, u64), from: &str, to: &str, ok: bool, cur: Option<Option<&str>>) -> &mut Self {
        let ret = Ret::Cas { succeeded: ok, current: cur.map(|c| c.map(String::from)), mod_rev: 0 };
        let call = Call::Cas { key: "x".into(), expect: from.into(), value: to.into() };
        self.push(p, t, Outcome::Ok, call, Some(ret), None)
    }
    fn cas_info(&mut self, p: usize, t: (u64, u64), from: &str, to: &str) -> &mut Self {
        let call = Call::Cas { key: "x".into(), expect: from.into(), value: to.into() };
        self.push(p, t, Outcome::Info, call, None, None)
    }
    fn check(&self) -> register::LinearizabilityReport {
        register::check_history(&self.ops, Duration::from_secs(20))
    }
}

#[track_caller]
fn assert_linearizable(h: &H) {
    let rep = h.check();
    assert!(rep.valid(), "expected linearizable:\n{}", rep.describe());
}

/// Asserts a NotLinearizable verdict whose counter-example has at most `max_ops` ops and mentions `must`.
#[track_caller]
fn assert_violation(h: &H, max_ops: usize, must: &[&str]) -> String {
    let rep = h.check();
    assert_eq!(rep.verdict(), Verdict::NotLinearizable, "expected a violation:\n{}", rep.describe());
    let bad = rep.keys.iter().find(|k| k.verdict == Verdict::NotLinearizable).expect("a failing key");
    let ops_in_example = bad.counterexample.len() - 1;
    let text = rep.describe();
    assert!(ops_in_example <= max_ops, "counter-example too long ({ops_in_example} ops):\n{text}");
    for m in must {
        assert!(text.contains(m), "counter-example should mention {m:?}:\n{text}");
    }
    text
}

// ------------------------------------------------------------------------------------ linearizable

#[test]
fn sequential_writes_and_reads() {
    let mut h = H::default();
    h.r(0, (0, 1), None).w(0, (2, 3), "a").r(1, (4, 5), Some("a")).w(1, (6, 7), "b").r(0, (8, 9), Some("b"));
    assert_linearizable(&h);
}

#[test]
fn overlapping_ops_may_linearize_in_either_order() {
    // The write overlaps both reads: one read sees the old value, the other the new one.
    let mut h = H::default();
    h.w(0, (0, 1), "a").w(0, (10, 20), "b").r(1, (11, 13), Some("b")).r(2, (12, 15), Some("a"));
    assert_linearizable(&h);
    // Two concurrent writes, then reads all agree on the one linearized last.
    let mut h = H::default();
    h.w(0, (0, 10), "a").w(1, (0, 10), "b").r(2, (11, 12), Some("a")).r(3, (13, 14), Some("a"));
    assert_linearizable(&h);
}

#[test]
fn info_write_that_happened_late() {
    // The write's outcome is unknown; it shows up long after the client gave up.
    let mut h = H::default();
    h.w(0, (0, 1), "a").w_info(1, (2, 3), "b").r(2, (4, 5), Some("a")).r(2, (50, 51), Some("b"));
    assert_linearizable(&h);
}

#[test]
fn info_write_that_never_happened() {
    let mut h = H::default();
    h.w(0, (0, 1), "a").w_info(1, (2, 3), "b").r(2, (4, 5), Some("a")).r(2, (50, 51), Some("a"));
    assert_linearizable(&h);
}

#[test]
fn failed_write_is_ignored_and_info_cas_chain_works() {
    let mut h = H::default();
    h.w(0, (0, 1), "a")
        .w_fail(1, (2, 3), "zzz")
        .cas_info(1, (4, 6), "a", "b")
        .cas_info(2, (5, 8), "b", "c")
        .r(0, (20, 21), Some("c"))
        .cas(0, (22, 23), "c", "d", true, None)
        .cas(1, (24, 25), "c", "e", false, Some(Some("d")))
        .r(2, (26, 27), Some("d"));
    assert_linearizable(&h);
}

#[test]
fn cas_on_absent_key_fails_and_reveals_absence() {
    let mut h = H::default();
    h.cas(0, (0, 1), "a", "b", false, Some(None)).w(0, (2, 3), "a").cas(1, (4, 5), "a", "b", true, None);
    assert_linearizable(&h);
}

// -------------------------------------------------------------------------------- not linearizable

#[test]
fn stale_read_is_caught() {
    let mut h = H::default();
    h.w(0, (0, 1), "a").w(0, (2, 3), "b").r(1, (4, 5), Some("a"));
    assert_violation(&h, 3, &["read x", "=> a"]);
}

#[test]
fn lost_acknowledged_write_is_caught() {
    let mut h = H::default();
    h.w(0, (0, 1), "a").r(1, (2, 3), Some("a")).w(0, (4, 5), "b").r(1, (6, 7), Some("a")).r(2, (8, 9), Some("a"));
    assert_violation(&h, 3, &["write x = b"]);
}

#[test]
fn read_of_a_value_never_written_is_caught() {
    let mut h = H::default();
    h.w(0, (0, 1), "a").r(1, (2, 3), Some("ghost"));
    assert_violation(&h, 2, &["ghost"]);
}

#[test]
fn read_before_its_write_was_invoked_is_caught() {
    // An info write observed by a read that completed before the write was even sent.
    let mut h = H::default();
    h.w(0, (0, 1), "a").r(1, (2, 3), Some("b")).w_info(2, (10, 11), "b");
    assert_violation(&h, 3, &["=> b"]);
}

#[test]
fn cas_anomalies_are_caught() {
    // Both compare-and-sets from "a" succeed, one after the other.
    let mut h = H::default();
    h.w(0, (0, 1), "a").cas(1, (2, 3), "a", "b", true, None).cas(2, (4, 5), "a", "c", true, None);
    assert_violation(&h, 3, &["cas x a -> c"]);
    // A compare-and-set fails although its expected value is there.
    let mut h = H::default();
    h.w(0, (0, 1), "a").cas(1, (2, 3), "a", "b", false, Some(Some("a")));
    assert_violation(&h, 2, &["failed"]);
    // A successful compare-and-set's value is lost.
    let mut h = H::default();
    h.w(0, (0, 1), "a").cas(1, (2, 3), "a", "b", true, None).r(2, (4, 5), Some("a"));
    assert_violation(&h, 3, &[]);
    // An unknown compare-and-set whose value shows up although its expected value was gone before it was sent.
    let mut h = H::default();
    h.w(0, (0, 1), "a").w(0, (2, 3), "b").cas_info(1, (4, 5), "a", "c").r(2, (6, 7), Some("c"));
    assert_violation(&h, 4, &["cas x a -> c"]);
}

#[test]
fn counter_example_is_minimized() {
    // 300 correct ops by three clients, one stale read buried in the middle, then 300 more.
    let mut h = H::default();
    let mut t = 0;
    for i in 0..100 {
        h.w(0, (t, t + 2), &format!("v{i}")).r(1, (t + 3, t + 4), Some(&format!("v{i}"))).r(2, (t + 1, t + 5), None);
        // The last read overlaps the write: it may see the new value or the old one.
        let last = h.ops.len() - 1;
        h.ops[last].ret = Some(Ret::Read { value: Some(format!("v{i}")), mod_rev: 0 });
        t += 6;
        if i == 50 {
            h.r(1, (t, t + 1), Some("v3"));
            t += 2;
        }
    }
    let text = assert_violation(&h, 3, &["=> v3"]);
    assert!(text.contains("minimal failing sub-history"), "{text}");
}

#[test]
fn keys_are_checked_independently() {
    let mut h = H::default();
    h.w(0, (0, 1), "a");
    h.push(1, (0, 1), Outcome::Ok, Call::Write { key: "y".into(), value: "p".into() }, Some(Ret::Done), None);
    h.push(
        1,
        (2, 3),
        Outcome::Ok,
        Call::Read { key: "y".into(), serializable: false },
        Some(Ret::Read { value: Some("p".into()), mod_rev: 0 }),
        None,
    );
    h.r(0, (4, 5), Some("p"));
    let rep = h.check();
    assert_eq!(rep.verdict(), Verdict::NotLinearizable);
    let bad: Vec<&str> =
        rep.keys.iter().filter(|k| k.verdict != Verdict::Linearizable).map(|k| k.key.as_str()).collect();
    assert_eq!(bad, vec!["x"]);
}

// ------------------------------------------------------------------------------ the search itself

#[test]
fn optional_ops_with_a_deadline_may_be_dropped_but_not_linearized_late() {
    let op = |id, call, ret: Option<u64>, optional, input, output| Operation { id, call, ret, optional, input, output };
    // write(1) [0,10]; optional write(2) with deadline 20; read -> 1 at [30,31]: drop the optional write.
    let h = vec![
        op(0, 0, Some(10), false, Input::Write(1), Some(Output::Write)),
        op(1, 5, Some(20), true, Input::Write(2), None),
        op(2, 30, Some(31), false, Input::Read, Some(Output::Read(1))),
    ];
    assert_eq!(linear::check(&Register, &h, None), Verdict::Linearizable);
    // read -> 2 at [30,31] needs the optional write, which may happen up to 20.
    let mut h2 = h.clone();
    h2[2].output = Some(Output::Read(2));
    assert_eq!(linear::check(&Register, &h2, None), Verdict::Linearizable);
    // ... but not when a read at [21,22] saw 1 and the later one 2: the write would be past its deadline.
    h2.insert(2, op(3, 21, Some(22), false, Input::Read, Some(Output::Read(1))));
    assert_eq!(linear::check(&Register, &h2, None), Verdict::NotLinearizable);
    // Without a deadline the same is fine.
    h2[1].ret = None;
    assert_eq!(linear::check(&Register, &h2, None), Verdict::Linearizable);
    assert!(Register.is_read_only(&Input::Read));
}

// ------------------------------------------------------------------------------------- append sets

fn append_op(id: u64, key: &str, elem: u64, outcome: Outcome, succeeded: Option<bool>) -> Op {
    Op {
        id,
        process: 0,
        member: 0,
        invoke: id * MS,
        complete: id * MS + MS,
        outcome,
        call: Call::Append { key: key.into(), elem, expect: None, expect_rev: 0, value: elem.to_string() },
        ret: succeeded.map(|s| Ret::Cas { succeeded: s, current: None, mod_rev: 0 }),
        revision: None,
        error: None,
    }
}

#[test]
fn append_sets() {
    let ops = vec![
        append_op(0, "k", 1, Outcome::Ok, Some(true)),
        append_op(1, "k", 2, Outcome::Info, None),
        append_op(2, "k", 3, Outcome::Ok, Some(false)),
        append_op(3, "k", 4, Outcome::Ok, Some(true)),
        append_op(4, "k", 5, Outcome::Info, None),
    ];
    let fin = |s: &str| BTreeMap::from([("k".to_string(), Some(s.to_string()))]);
    assert!(append::check(&ops, &fin("1,2,4")).valid, "info append present once is fine");
    assert!(append::check(&ops, &fin("1,4")).valid, "info appends absent are fine");
    let bad = |s: &str, what: &str| {
        let r = append::check(&ops, &fin(s));
        assert!(!r.valid, "{s}: expected {what}");
        assert!(r.details.iter().any(|d| d.contains(what)), "{s}: {:?}", r.details);
    };
    bad("1", "acknowledged append of 4 (op #3) is lost");
    bad("1,4,4", "more than once");
    bad("1,4,9", "never appended");
    bad("1,3,4", "certainly failed");
    // A read that is not a prefix of the final list.
    let mut ops2 = ops.clone();
    ops2.push(Op {
        id: 9,
        process: 1,
        member: 0,
        invoke: 0,
        complete: MS,
        outcome: Outcome::Ok,
        call: Call::Read { key: "k".into(), serializable: false },
        ret: Some(Ret::Read { value: Some("4".into()), mod_rev: 3 }),
        revision: None,
        error: None,
    });
    let r = append::check(&ops2, &fin("1,4"));
    assert!(r.details.iter().any(|d| d.contains("not a prefix")), "{:?}", r.details);
}

// ------------------------------------------------------------------------------------- revisions

#[test]
fn a_value_with_two_revisions_is_caught() {
    let mut h = H::default();
    h.push(
        0,
        (0, 1),
        Outcome::Ok,
        Call::Read { key: "x".into(), serializable: false },
        Some(Ret::Read { value: Some("a".into()), mod_rev: 5 }),
        None,
    );
    h.push(
        0,
        (2, 3),
        Outcome::Ok,
        Call::Read { key: "x".into(), serializable: false },
        Some(Ret::Read { value: Some("a".into()), mod_rev: 5 }),
        None,
    );
    assert!(register::check_revisions(&h.ops).is_empty());
    h.push(
        0,
        (4, 5),
        Outcome::Ok,
        Call::Read { key: "x".into(), serializable: false },
        Some(Ret::Read { value: Some("a".into()), mod_rev: 6 }),
        None,
    );
    h.push(
        0,
        (6, 7),
        Outcome::Ok,
        Call::Read { key: "x".into(), serializable: false },
        Some(Ret::Read { value: Some("b".into()), mod_rev: 5 }),
        None,
    );
    let p = register::check_revisions(&h.ops);
    assert_eq!(p.len(), 2, "{p:?}");
}

// ----------------------------------------------------------------------------------------- leases

fn lop(id: u64, t: (u64, u64), outcome: Outcome, call: Call, ret: Option<Ret>) -> Op {
    Op {
        id,
        process: 0,
        member: 0,
        invoke: t.0 * MS,
        complete: t.1 * MS,
        outcome,
        call,
        ret,
        revision: None,
        error: None,
    }
}

fn scan(id: u64, t: (u64, u64), keys: &[&str]) -> Op {
    let kvs =
        keys.iter().map(|k| Kv { key: k.to_string(), value: "v".into(), mod_rev: 1, version: 1, lease: 0 }).collect();
    lop(id, t, Outcome::Ok, Call::Scan { prefix: "".into() }, Some(Ret::List { kvs, pages: 1 }))
}

#[test]
fn lease_keys_vanish_neither_early_nor_never() {
    // Lease 7 (TTL 2 s) granted at 0 ms with key k, kept alive at 1500 ms; lease 8 (TTL 2 s) lapses, key j.
    let base = vec![
        lop(0, (0, 10), Outcome::Ok, Call::Grant { ttl: 2 }, Some(Ret::Grant { lease: 7, ttl: 2 })),
        lop(1, (20, 30), Outcome::Ok, Call::LeasePut { key: "k".into(), value: "v".into(), lease: 7 }, Some(Ret::Done)),
        lop(2, (1500, 1510), Outcome::Ok, Call::KeepAlive { lease: 7 }, Some(Ret::KeepAlive { ttl: 2 })),
        lop(3, (0, 10), Outcome::Ok, Call::Grant { ttl: 2 }, Some(Ret::Grant { lease: 8, ttl: 2 })),
        lop(4, (20, 30), Outcome::Ok, Call::LeasePut { key: "j".into(), value: "v".into(), lease: 8 }, Some(Ret::Done)),
    ];
    let mut good = base.clone();
    good.push(scan(10, (1000, 1010), &["j", "k"]));
    good.push(scan(11, (2500, 2510), &["k"])); // j lapsed after 2 s: fine
    good.push(scan(12, (9000, 9010), &[])); // k lapsed 2 s after its keep-alive: fine
    assert!(lease::check(&good, Some(12), 0).valid, "{:?}", lease::check(&good, Some(12), 0).details);

    let mut early = base.clone();
    early.push(scan(10, (2500, 2510), &["j"])); // k gone although kept alive until 3.5 s
    let r = lease::check(&early, None, 0);
    assert!(r.details.iter().any(|d| d.contains("key k") && d.contains("cannot expire")), "{:?}", r.details);

    let mut lapsing_early = base.clone();
    lapsing_early.push(scan(10, (1000, 1010), &["k"])); // j gone after 1 s with TTL 2 s
    let r = lease::check(&lapsing_early, None, 0);
    assert!(r.details.iter().any(|d| d.contains("key j")), "{:?}", r.details);

    let mut never = base.clone();
    never.push(scan(10, (9000, 9010), &["j"])); // j still there in the final scan, 7 s past its TTL
    let r = lease::check(&never, Some(10), 0);
    assert!(r.details.iter().any(|d| d.contains("still there")), "{:?}", r.details);
    // ... but not a problem when the heal was recent: its TTL restarted then.
    assert!(lease::check(&never, Some(10), 5000 * MS).valid);

    let mut back = base;
    back.push(scan(10, (2500, 2510), &["k"]));
    back.push(scan(11, (2600, 2610), &["k", "j"]));
    let r = lease::check(&back, None, 0);
    assert!(r.details.iter().any(|d| d.contains("is back")), "{:?}", r.details);
}

// ----------------------------------------------------------------------------------------- watch

fn put_event(rev: i64, key: &str, value: &str, create: i64, version: i64) -> WEvent {
    WEvent {
        delete: false,
        kv: WKv { key: key.into(), value: value.into(), create_rev: create, mod_rev: rev, version, lease: 0 },
        prev_kv: None,
    }
}

fn txn_op(id: u64, writes: &[(&str, Option<&str>)], rev: i64, outcome: Outcome) -> Op {
    Op {
        id,
        process: 0,
        member: 0,
        invoke: id * MS,
        complete: id * MS + MS,
        outcome,
        call: Call::Txn {
            writes: writes.iter().map(|(k, v)| TxnWrite { key: k.to_string(), value: v.map(String::from) }).collect(),
        },
        ret: (outcome == Outcome::Ok).then_some(Ret::Done),
        revision: (outcome == Outcome::Ok).then_some(rev),
        error: None,
    }
}

fn session(watcher: usize, start: i64, events: Vec<WEvent>) -> WatchSession {
    WatchSession {
        watcher,
        session: 0,
        member: 0,
        prefix: "w/".into(),
        start_revision: start,
        prev_kv: true,
        relisted: false,
        opened: 0,
        closed: 0,
        end: String::new(),
        responses: {
            // One response per revision.
            let mut by_rev: BTreeMap<i64, Vec<WEvent>> = BTreeMap::new();
            for e in events {
                by_rev.entry(e.revision()).or_default().push(e);
            }
            by_rev
                .into_iter()
                .map(|(rev, events)| WResponse { header_revision: rev, events, ..Default::default() })
                .collect()
        },
    }
}

#[test]
fn watch_reference_and_watchers() {
    // 2: put w/a=1, 3: txn {put w/b=1, put w/a=2}, 4: put w/a=3 (info: the client never heard back).
    let events = vec![
        put_event(2, "w/a", "1", 2, 1),
        put_event(3, "w/b", "1", 3, 1),
        put_event(3, "w/a", "2", 2, 2),
        put_event(4, "w/a", "3", 2, 3),
    ];
    let ops = vec![
        txn_op(0, &[("w/a", Some("1"))], 2, Outcome::Ok),
        txn_op(1, &[("w/b", Some("1")), ("w/a", Some("2"))], 3, Outcome::Ok),
        txn_op(2, &[("w/a", Some("3"))], 0, Outcome::Info),
    ];
    let (reference, problems) = watch::reference_from(events.clone());
    assert!(problems.is_empty(), "{problems:?}");
    let all = |_| true;
    assert!(watch::check_reference(&ops, &reference, 2, &all, true).is_empty());
    // A lost acknowledged write: op 1 says revision 3, the history lacks w/b.
    let (lossy, _) = watch::reference_from(vec![events[0].clone(), events[2].clone(), events[3].clone()]);
    let p = watch::check_reference(&ops, &lossy, 2, &all, true);
    assert!(p.iter().any(|d| d.contains("acknowledged write op #1")), "{p:?}");
    // An invented event.
    let (invented, _) = watch::reference_from([events.clone(), vec![put_event(5, "w/z", "9", 5, 1)]].concat());
    let p = watch::check_reference(&ops, &invented, 2, &all, true);
    assert!(p.iter().any(|d| d.contains("never written")), "{p:?}");

    // Watchers with correct prev_kv pass; one missing an event fails "reliable"; one with a wrong prev_kv fails.
    let with_prev = |mut e: Vec<WEvent>| {
        e[2].prev_kv = Some(e[0].kv.clone());
        e[3].prev_kv = Some(e[2].kv.clone());
        e
    };
    let good = with_prev(events.clone());
    let ok = watch::check_watchers(&reference, &[session(0, 2, good.clone()), session(1, 2, good.clone())], Some(4));
    assert!(ok.valid, "{:?}", ok.details);
    let mut gap = good.clone();
    gap.remove(1);
    let r = watch::check_watchers(&reference, &[session(0, 2, good.clone()), session(1, 2, gap)], Some(4));
    assert!(!r.valid && r.details.iter().any(|d| d.contains("reliable") || d.contains("atomic")), "{:?}", r.details);
    let mut wrong = good.clone();
    wrong[3].prev_kv = Some(good[0].kv.clone());
    let r = watch::check_watchers(&reference, &[session(0, 2, wrong)], Some(4));
    assert!(r.details.iter().any(|d| d.contains("prev_kv")), "{:?}", r.details);
    // A watcher that stopped early.
    let r = watch::check_watchers(&reference, &[session(0, 2, good[..2].to_vec())], Some(4));
    assert!(r.details.iter().any(|d| d.contains("below the final revision")), "{:?}", r.details);
}

// ------------------------------------------------------------------------------------- nemesis

mod nemesis {
    use std::time::Duration;

    use raftcd_jepsen::nemesis::{grudges, parse_kinds, schedule, FaultKind, ScheduleConfig, Shape};

    fn cfg(kinds: &[FaultKind], members: usize) -> ScheduleConfig {
        ScheduleConfig {
            kinds: kinds.to_vec(),
            members,
            gap: Duration::from_secs(2),
            hold: Duration::from_secs(3),
            total: Duration::from_secs(120),
        }
    }

    #[test]
    fn schedules_are_seeded() {
        let c = cfg(&FaultKind::ALL, 5);
        assert_eq!(schedule(&c, 42), schedule(&c, 42));
        assert_ne!(schedule(&c, 42), schedule(&c, 43));
        // Every kind appears in the first round.
        let first: Vec<FaultKind> =
            schedule(&c, 42).iter().take(FaultKind::ALL.len()).map(|s| s.fault.kind()).collect();
        for k in FaultKind::ALL {
            assert!(first.contains(&k), "{k:?} missing from the first round {first:?}");
        }
        assert!(schedule(&cfg(&[], 3), 1).is_empty());
        assert_eq!(parse_kinds("kill, partition").unwrap(), vec![FaultKind::Kill, FaultKind::Partition]);
        assert_eq!(parse_kinds("all").unwrap(), FaultKind::ALL.to_vec());
        assert_eq!(parse_kinds("failpoint").unwrap(), vec![FaultKind::Failpoint]);
        assert!(parse_kinds("none").unwrap().is_empty());
        assert!(parse_kinds("flood").is_err());
    }

    /// i drops j's packets iff j drops i's, nobody drops itself.
    fn symmetric(g: &[Vec<usize>]) -> bool {
        (0..g.len()).all(|i| !g[i].contains(&i) && g[i].iter().all(|j| g[*j].contains(&i)))
    }

    #[test]
    fn partition_shapes() {
        let order = [2, 0, 4, 1, 3];
        for shape in [Shape::IsolateLeader, Shape::RandomHalves, Shape::Bridge, Shape::Ring] {
            let (g, desc, _) = grudges(shape, &order, Some(4));
            assert!(symmetric(&g), "{shape:?} {desc}: {g:?}");
        }
        let (g, _, hit) = grudges(Shape::IsolateLeader, &order, Some(4));
        assert_eq!(hit, vec![4]);
        assert_eq!(g[4].len(), 4);
        // Ring of 5: every member sees exactly a majority (itself and its two neighbours).
        let (g, _, _) = grudges(Shape::Ring, &order, None);
        assert!(g.iter().all(|d| d.len() == 2), "{g:?}");
        // Bridge of 3: the middle member sees both, the two ends do not see each other.
        let (g, _, hit) = grudges(Shape::Bridge, &[1, 0, 2], None);
        assert_eq!(hit, vec![1]);
        assert!(g[1].is_empty() && g[0] == vec![2] && g[2] == vec![0], "{g:?}");
        // Random halves of 3: one member alone.
        let (g, _, hit) = grudges(Shape::RandomHalves, &[2, 0, 1], None);
        assert_eq!(hit, vec![2]);
        assert_eq!(g[2], vec![0, 1]);
    }
}
