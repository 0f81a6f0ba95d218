//! Hand-made good and bad traces: every good one passes, every bad one is caught by the named guarantee.

use super::*;

/// 2: put a=1, 3: put b=1, 4: put a=2, 5: txn {put c=1, del b}, 6: del a, 7: put a=3
fn history() -> History {
    History::from_writes(vec![
        (2, vec![Write::put("a", "1")]),
        (3, vec![Write::put("b", "1")]),
        (4, vec![Write::put("a", "2")]),
        (5, vec![Write::put("c", "1"), Write::delete("b")]),
        (6, vec![Write::delete("a")]),
        (7, vec![Write::put("a", "3")]),
    ])
    .unwrap()
}

fn a1() -> Kv {
    Kv { key: b"a".to_vec(), value: b"1".to_vec(), create_revision: 2, mod_revision: 2, version: 1, lease: 0 }
}
fn a2() -> Kv {
    Kv { key: b"a".to_vec(), value: b"2".to_vec(), create_revision: 2, mod_revision: 4, version: 2, lease: 0 }
}
fn b1() -> Kv {
    Kv { key: b"b".to_vec(), value: b"1".to_vec(), create_revision: 3, mod_revision: 3, version: 1, lease: 0 }
}

/// The correct events of revisions 2..=7 for an all-keys watcher without prev_kv.
fn good_events() -> Vec<Response> {
    vec![
        Response::created(0, 1),
        Response::events(0, 2, vec![Event::put(2, "a", "1", 2, 1)]),
        Response::events(0, 3, vec![Event::put(3, "b", "1", 3, 1)]),
        Response::events(0, 4, vec![Event::put(4, "a", "2", 2, 2)]),
        Response::events(0, 5, vec![Event::put(5, "c", "1", 5, 1), Event::delete(5, "b")]),
        Response::events(0, 6, vec![Event::delete(6, "a")]),
        Response::events(0, 7, vec![Event::put(7, "a", "3", 7, 1)]),
    ]
}

fn all() -> WatchSpec {
    WatchSpec::all("all").start(2)
}

fn guarantees(v: &[Violation]) -> BTreeSet<Guarantee> {
    v.iter().map(|v| v.guarantee).collect()
}

fn assert_caught(v: &[Violation], g: Guarantee) {
    assert!(guarantees(v).contains(&g), "expected a {} violation, got:\n{}", g.name(), describe(v));
}

#[test]
fn history_replay_derives_versions_and_prev() {
    let h = history();
    assert_eq!(h.events().len(), 7);
    assert_eq!(h.last_revision(), 7);
    assert!(h.missing_revisions(2).is_empty());
    let a_at_6 = h.lookup(6, b"a").unwrap();
    assert_eq!(a_at_6.prev_kv, Some(a2()));
    let a_at_7 = h.lookup(7, b"a").unwrap();
    assert_eq!((a_at_7.kv.version, a_at_7.kv.create_revision), (1, 7));
    assert_eq!(h.state_at(5).keys().cloned().collect::<Vec<_>>(), vec![b"a".to_vec(), b"c".to_vec()]);
    assert!(History::from_writes(vec![(2, vec![Write::delete("zz")])]).is_err());
    assert!(History::from_writes(vec![(2, vec![Write::put("a", "1")]), (2, vec![])]).is_err());
    // The same history read back from a watch.
    let from_watch = History::from_events(good_events().into_iter().flat_map(|r| r.events));
    assert_eq!(from_watch.events(), h.events());
}

#[test]
fn good_traces_pass() {
    let h = history();
    let v = check(&h, &Trace::new(all(), good_events()));
    assert!(v.is_empty(), "{}", describe(&v));

    // Batched differently (several revisions per response), with progress responses: still fine.
    let evs: Vec<Event> = good_events().into_iter().flat_map(|r| r.events).collect();
    let batched = vec![
        Response::created(7, 7),
        Response::events(7, 4, evs[..3].to_vec()),
        Response::progress(-1, 4),
        Response::events(7, 7, evs[3..].to_vec()),
        Response::progress(7, 9),
    ];
    let v = check(&h, &Trace::new(all(), batched));
    assert!(v.is_empty(), "{}", describe(&v));

    // Single key with prev_kv from revision 3; start 0 after created header 3.
    let spec = WatchSpec::key("a", "a").start(3).with_prev_kv();
    let t = Trace::new(
        spec,
        vec![
            Response::created(1, 3),
            Response::events(1, 4, vec![Event::put(4, "a", "2", 2, 2).with_prev(Some(a1()))]),
            Response::events(1, 6, vec![Event::delete(6, "a").with_prev(Some(a2()))]),
            Response::events(1, 7, vec![Event::put(7, "a", "3", 7, 1)]),
        ],
    );
    let v = check(&h, &t);
    assert!(v.is_empty(), "{}", describe(&v));
    let spec0 = WatchSpec::prefix("b*", "b");
    let t0 = Trace::new(spec0, vec![Response::created(1, 4), Response::events(1, 5, vec![Event::delete(5, "b")])]);
    let v = check(&h, &t0);
    assert!(v.is_empty(), "{}", describe(&v));

    // Filters.
    let np = Trace::new(
        WatchSpec::all("noput").start(2).no_put(),
        vec![Response::events(0, 5, vec![Event::delete(5, "b")]), Response::events(0, 6, vec![Event::delete(6, "a")])],
    );
    assert!(check(&h, &np).is_empty(), "{}", describe(&check(&h, &np)));
    let nd = Trace::new(
        WatchSpec::range("nodel", "a", "c").start(2).no_delete(),
        vec![
            Response::events(0, 2, vec![Event::put(2, "a", "1", 2, 1)]),
            Response::events(0, 3, vec![Event::put(3, "b", "1", 3, 1)]),
            Response::events(0, 4, vec![Event::put(4, "a", "2", 2, 2)]),
            Response::events(0, 7, vec![Event::put(7, "a", "3", 7, 1)]),
        ],
    );
    assert!(check(&h, &nd).is_empty(), "{}", describe(&check(&h, &nd)));
}

#[test]
fn stream_split_copies_stream_progress() {
    let rs = vec![
        Response::created(1, 1),
        Response::created(2, 1),
        Response::events(1, 2, vec![Event::put(2, "a", "1", 2, 1)]),
        Response::progress(-1, 2),
        Response { watch_id: 2, canceled: true, ..Default::default() },
        Response::progress(-1, 3),
    ];
    let m = split_stream(&rs);
    assert_eq!(m[&1].len(), 4);
    assert_eq!(m[&2].len(), 3);
    assert!(m[&2][1].is_progress());
}

#[test]
fn out_of_order_is_caught() {
    let mut rs = good_events();
    rs.swap(2, 3);
    assert_caught(&check(&history(), &Trace::new(all(), rs)), Guarantee::Ordered);
    // Inside one response.
    let evs = vec![Event::put(4, "a", "2", 2, 2), Event::put(3, "b", "1", 3, 1)];
    let rs = vec![Response::events(0, 4, evs)];
    assert_caught(&check(&history(), &Trace::new(WatchSpec::all("x").start(3), rs)), Guarantee::Ordered);
    // Header below the events.
    let rs = vec![Response::events(0, 3, vec![Event::put(4, "a", "2", 2, 2)])];
    assert_caught(&check(&history(), &Trace::new(WatchSpec::key("a", "a").start(4), rs)), Guarantee::Ordered);
}

#[test]
fn duplicate_is_caught() {
    let mut rs = good_events();
    rs.insert(4, rs[3].clone());
    let v = check(&history(), &Trace::new(all(), rs));
    assert_caught(&v, Guarantee::Unique);
}

#[test]
fn split_revision_is_caught() {
    let mut rs = good_events();
    let txn = rs.remove(4);
    rs.insert(4, Response::events(0, 5, vec![txn.events[0].clone()]));
    rs.insert(5, Response::events(0, 5, vec![txn.events[1].clone()]));
    assert_caught(&check(&history(), &Trace::new(all(), rs)), Guarantee::Atomic);
    // Half a revision, the rest never sent.
    let mut rs = good_events();
    rs[4].events.pop();
    let v = check(&history(), &Trace::new(all(), rs));
    assert_caught(&v, Guarantee::Atomic);
    assert_caught(&v, Guarantee::Reliable);
}

#[test]
fn gap_is_caught() {
    let mut rs = good_events();
    rs.remove(3); // revision 4
    assert_caught(&check(&history(), &Trace::new(all(), rs)), Guarantee::Reliable);
    // A gap at the very start (replay began late).
    let mut rs = good_events();
    rs.remove(1);
    assert_caught(&check(&history(), &Trace::new(all(), rs)), Guarantee::Reliable);
    // Nothing missing among events, but a progress response claims revision 6 too early.
    let spec = WatchSpec::key("a", "a").start(2);
    let rs = vec![Response::events(0, 4, vec![Event::put(2, "a", "1", 2, 1)]), Response::progress(-1, 6)];
    assert_caught(&check(&history(), &Trace::new(spec, rs)), Guarantee::Reliable);
}

#[test]
fn wrong_prev_kv_is_caught() {
    let spec = WatchSpec::key("a", "a").start(4).with_prev_kv();
    // prev of rev 4 is a=1, not b=1.
    let rs = vec![Response::events(0, 4, vec![Event::put(4, "a", "2", 2, 2).with_prev(Some(b1()))])];
    assert_caught(&check(&history(), &Trace::new(spec.clone(), rs)), Guarantee::PrevKv);
    // Missing prev_kv on an update.
    let rs = vec![Response::events(0, 4, vec![Event::put(4, "a", "2", 2, 2)])];
    assert_caught(&check(&history(), &Trace::new(spec.clone(), rs)), Guarantee::PrevKv);
    // prev_kv on a create.
    let spec7 = WatchSpec::key("a", "a").start(7).with_prev_kv();
    let rs = vec![Response::events(0, 7, vec![Event::put(7, "a", "3", 7, 1).with_prev(Some(a2()))])];
    assert_caught(&check(&history(), &Trace::new(spec7, rs)), Guarantee::PrevKv);
    // prev_kv sent although not asked for.
    let rs = vec![Response::events(0, 4, vec![Event::put(4, "a", "2", 2, 2).with_prev(Some(a1()))])];
    assert_caught(&check(&history(), &Trace::new(WatchSpec::key("a", "a").start(4), rs)), Guarantee::PrevKv);
}

#[test]
fn wrong_create_detection_is_caught() {
    // Re-created key reported as version 3 (version not reset by the delete).
    let rs = vec![Response::events(0, 7, vec![Event::put(7, "a", "3", 2, 3)])];
    let v = check(&history(), &Trace::new(WatchSpec::key("a", "a").start(7), rs));
    assert_caught(&v, Guarantee::Create);
    // An update reported as version 1.
    let rs = vec![Response::events(0, 4, vec![Event::put(4, "a", "2", 2, 1)])];
    assert_caught(&check(&history(), &Trace::new(WatchSpec::key("a", "a").start(4), rs)), Guarantee::Create);
}

#[test]
fn filter_violations_are_caught() {
    // A put delivered to a NOPUT watcher.
    let rs = vec![Response::events(0, 4, vec![Event::put(4, "a", "2", 2, 2)])];
    assert_caught(&check(&history(), &Trace::new(WatchSpec::all("np").start(4).no_put(), rs)), Guarantee::Filter);
    // A delete delivered to a NODELETE watcher.
    let rs = vec![Response::events(0, 6, vec![Event::delete(6, "a")])];
    let v = check(&history(), &Trace::new(WatchSpec::all("nd").start(6).no_delete(), rs));
    assert_caught(&v, Guarantee::Filter);
    // A key outside the range.
    let rs = vec![Response::events(0, 3, vec![Event::put(3, "b", "1", 3, 1)])];
    assert_caught(&check(&history(), &Trace::new(WatchSpec::key("a", "a").start(2), rs)), Guarantee::Filter);
    // An event before the start revision (here: at the created revision of a start-0 watch).
    let rs = vec![Response::created(0, 4), Response::events(0, 4, vec![Event::put(4, "a", "2", 2, 2)])];
    assert_caught(&check(&history(), &Trace::new(WatchSpec::key("a", "a"), rs)), Guarantee::Filter);
}

#[test]
fn wrong_content_is_caught() {
    // A DELETE carrying the old mod_revision instead of the delete's.
    let rs = vec![Response::events(0, 6, vec![Event::delete(4, "a")])];
    assert_caught(&check(&history(), &Trace::new(WatchSpec::key("a", "a").start(5), rs)), Guarantee::Content);
    // A wrong value.
    let rs = vec![Response::events(0, 4, vec![Event::put(4, "a", "X", 2, 2)])];
    assert_caught(&check(&history(), &Trace::new(WatchSpec::key("a", "a").start(4), rs)), Guarantee::Content);
    // An event that never happened.
    let rs = vec![Response::events(0, 3, vec![Event::put(3, "zz", "1", 3, 1)])];
    assert_caught(&check(&history(), &Trace::new(WatchSpec::all("x").start(3), rs)), Guarantee::Content);
}

#[test]
fn progress_violations_are_caught() {
    // Progress below an event already received.
    let rs = vec![Response::events(0, 4, vec![Event::put(4, "a", "2", 2, 2)]), Response::progress(-1, 3)];
    assert_caught(&check(&history(), &Trace::new(WatchSpec::key("a", "a").start(4), rs)), Guarantee::Progress);
    // An event at or below a progress revision arriving after it.
    let rs = vec![
        Response::events(0, 2, vec![Event::put(2, "a", "1", 2, 1)]),
        Response::progress(-1, 4),
        Response::events(0, 4, vec![Event::put(4, "a", "2", 2, 2)]),
    ];
    assert_caught(&check(&history(), &Trace::new(WatchSpec::key("a", "a").start(2), rs)), Guarantee::Progress);
}

#[test]
fn resumable_good_and_bad() {
    let h = history();
    let evs = good_events();
    let first = Trace::new(all(), evs[..4].to_vec()); // up to revision 4
    let second =
        Trace::new(WatchSpec::all("all-2").start(5), [vec![Response::created(0, 7)], evs[4..].to_vec()].concat());
    let v = check_resumed(&h, &first, &second);
    assert!(v.is_empty(), "{}", describe(&v));
    // Restarted at the last revision: a duplicate at the hand-over.
    let dup = Trace::new(WatchSpec::all("all-2").start(4), evs[3..].to_vec());
    assert_caught(&check_resumed(&h, &first, &dup), Guarantee::Resumable);
    // Restarted at the right revision but the server skipped revision 5.
    let gap = Trace::new(WatchSpec::all("all-2").start(5), evs[5..].to_vec());
    assert_caught(&check_resumed(&h, &first, &gap), Guarantee::Resumable);
    // Restarted too late.
    let late = Trace::new(WatchSpec::all("all-2").start(6), evs[5..].to_vec());
    assert_caught(&check_resumed(&h, &first, &late), Guarantee::Resumable);
}

#[test]
fn prefix_end_forms() {
    assert_eq!(prefix_end(b"abc"), b"abd".to_vec());
    assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    assert_eq!(prefix_end(b""), vec![0]);
    let s = WatchSpec::prefix("p", "a/");
    assert!(s.contains(b"a/x") && !s.contains(b"a0") && !s.contains(b"a"));
    assert!(WatchSpec::from_key("f", "m").contains(b"zz"));
    assert!(!WatchSpec::from_key("f", "m").contains(b"l"));
}
