//! A reusable checker of etcd's watch guarantees.
//!
//! Input: the KV history (every write with its revision, e.g. recorded from the write responses or read by a
//! watch from revision 1) and what each watcher received (its ordered responses). Output: a list of
//! [`Violation`]s, each naming the guarantee it breaks:
//!
//! | guarantee  | meaning |
//! |------------|---------|
//! | `ordered`  | revisions non-decreasing inside a response, strictly increasing across responses; a response's header revision is not below its events |
//! | `unique`   | each (revision, key) event is delivered at most once |
//! | `atomic`   | all (wanted) events of one revision come in one response |
//! | `reliable` | no event of the watched range is missing between the start revision and the last revision the watcher reported (last event or progress) |
//! | `resumable`| a watch restarted from last revision + 1 yields exactly the rest |
//! | `prev_kv`  | prev_kv is the previous version of the key in the history (absent when not asked for) |
//! | `create`   | a PUT has version 1 iff the key was absent before |
//! | `filter`   | no event outside the range, before the start revision or of a filtered type |
//! | `content`  | the event's kv is the one in the history (a DELETE carries the delete's revision) |
//! | `progress` | a progress response's revision is not below any event already received and no later event is at or below it |
//!
//! Worked example: history `2: put a=1`, `3: put a=2`, `4: del a`. A watcher on `a` from revision 3 that
//! received `[3: PUT a=2 (version 2)]` and then a progress response with revision 4 violates `reliable`
//! (the DELETE at 4 is missing, and the progress promises it was delivered).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

/// PUT or DELETE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Put,
    Delete,
}

/// A key-value pair as etcd reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

impl Kv {
    fn short(&self) -> String {
        format!(
            "{}={} (create {}, mod {}, version {}, lease {})",
            show(&self.key),
            show(&self.value),
            self.create_revision,
            self.mod_revision,
            self.version,
            self.lease
        )
    }
}

/// One watch event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: Kv,
    pub prev_kv: Option<Kv>,
}

impl Event {
    /// The revision of the event (its kv's mod_revision; for a DELETE the delete's revision).
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }

    /// A PUT event (no prev_kv).
    pub fn put(rev: i64, key: &str, value: &str, create_revision: i64, version: i64) -> Event {
        Event {
            kind: EventKind::Put,
            kv: Kv { key: key.into(), value: value.into(), create_revision, mod_revision: rev, version, lease: 0 },
            prev_kv: None,
        }
    }

    /// A DELETE event as etcd sends it: key and mod_revision only.
    pub fn delete(rev: i64, key: &str) -> Event {
        Event {
            kind: EventKind::Delete,
            kv: Kv { key: key.into(), mod_revision: rev, ..Default::default() },
            prev_kv: None,
        }
    }

    /// The same event with prev_kv set.
    pub fn with_prev(mut self, prev: Option<Kv>) -> Event {
        self.prev_kv = prev;
        self
    }

    fn short(&self) -> String {
        format!("{:?} {} @{}", self.kind, show(&self.kv.key), self.revision())
    }
}

/// One watch response, reduced to what the guarantees talk about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub watch_id: i64,
    pub header_revision: i64,
    pub created: bool,
    pub canceled: bool,
    pub compact_revision: i64,
    pub cancel_reason: String,
    pub events: Vec<Event>,
}

impl Response {
    /// A response carrying events.
    pub fn events(watch_id: i64, header_revision: i64, events: Vec<Event>) -> Response {
        Response { watch_id, header_revision, events, ..Default::default() }
    }

    /// A progress response (no events; watch_id -1 for a requested stream-wide one).
    pub fn progress(watch_id: i64, header_revision: i64) -> Response {
        Response { watch_id, header_revision, ..Default::default() }
    }

    /// The created response.
    pub fn created(watch_id: i64, header_revision: i64) -> Response {
        Response { watch_id, header_revision, created: true, ..Default::default() }
    }

    /// True for a progress response: no events, neither created nor canceled.
    pub fn is_progress(&self) -> bool {
        !self.created && !self.canceled && self.events.is_empty()
    }

    /// Converts an etcd-client response.
    pub fn from_client(r: &etcd_client::WatchResponse) -> Response {
        Response {
            watch_id: r.watch_id(),
            header_revision: r.header().map(|h| h.revision()).unwrap_or(0),
            created: r.created(),
            canceled: r.canceled(),
            compact_revision: r.compact_revision(),
            cancel_reason: r.cancel_reason().to_string(),
            events: r.events().iter().map(event_from_client).collect(),
        }
    }
}

/// Converts an etcd-client key-value.
pub fn kv_from_client(kv: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: kv.key().to_vec(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

/// Converts an etcd-client event.
pub fn event_from_client(e: &etcd_client::Event) -> Event {
    Event {
        kind: match e.event_type() {
            etcd_client::EventType::Put => EventKind::Put,
            etcd_client::EventType::Delete => EventKind::Delete,
        },
        kv: e.kv().map(kv_from_client).unwrap_or_default(),
        prev_kv: e.prev_kv().map(kv_from_client),
    }
}

/// Splits the responses of one watch stream by watch id. Stream-wide progress responses (watch_id -1) are
/// copied, in place, into the trace of every watcher that exists on the stream at that point.
pub fn split_stream(responses: &[Response]) -> BTreeMap<i64, Vec<Response>> {
    let mut out: BTreeMap<i64, Vec<Response>> = BTreeMap::new();
    let mut live: BTreeSet<i64> = BTreeSet::new();
    for r in responses {
        if r.watch_id == -1 && r.is_progress() {
            for id in &live {
                out.entry(*id).or_default().push(r.clone());
            }
            continue;
        }
        if r.created && !r.canceled {
            live.insert(r.watch_id);
        }
        if r.canceled {
            live.remove(&r.watch_id);
        }
        out.entry(r.watch_id).or_default().push(r.clone());
    }
    out
}

/// One write operation of a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    /// A delete of a key that existed (a delete of an absent key writes nothing).
    Delete {
        key: Vec<u8>,
    },
}

impl Write {
    /// Put without lease.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Write {
        Write::Put { key: key.into(), value: value.into(), lease: 0 }
    }
    /// Delete.
    pub fn delete(key: impl Into<Vec<u8>>) -> Write {
        Write::Delete { key: key.into() }
    }
}

/// The store's full history of events, ordered by revision. Each event carries the correct prev_kv.
#[derive(Debug, Clone, Default)]
pub struct History {
    events: Vec<Event>,
    /// (revision, key) -> index into `events`.
    index: HashMap<(i64, Vec<u8>), usize>,
    /// revision -> indices of its events.
    by_rev: BTreeMap<i64, Vec<usize>>,
}

impl History {
    /// Builds the history from writes: `(revision, ops applied in that revision, in order)`. Versions,
    /// create revisions and prev_kv are derived by replaying from an empty store. Fails on a revision given
    /// twice, a delete of an absent key or a put and a delete of one key in one revision.
    pub fn from_writes(writes: impl IntoIterator<Item = (i64, Vec<Write>)>) -> Result<History, String> {
        let mut writes: Vec<(i64, Vec<Write>)> = writes.into_iter().collect();
        writes.sort_by_key(|(r, _)| *r);
        let mut state: BTreeMap<Vec<u8>, Kv> = BTreeMap::new();
        let mut events = Vec::new();
        let mut last = 0;
        for (rev, ops) in writes {
            if rev <= last {
                return Err(format!("revision {rev} given twice or out of order"));
            }
            last = rev;
            for op in ops {
                match op {
                    Write::Put { key, value, lease } => {
                        let prev = state.get(&key).cloned();
                        let kv = Kv {
                            key: key.clone(),
                            value,
                            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                            mod_revision: rev,
                            version: prev.as_ref().map_or(1, |p| p.version + 1),
                            lease,
                        };
                        if prev.as_ref().is_some_and(|p| p.mod_revision == rev) {
                            return Err(format!("key {} written twice in revision {rev}", show(&key)));
                        }
                        state.insert(key, kv.clone());
                        events.push(Event { kind: EventKind::Put, kv, prev_kv: prev });
                    }
                    Write::Delete { key } => {
                        let Some(prev) = state.remove(&key) else {
                            return Err(format!("delete of absent key {} at revision {rev}", show(&key)));
                        };
                        if prev.mod_revision == rev {
                            return Err(format!("key {} written twice in revision {rev}", show(&key)));
                        }
                        let kv = Kv { key, mod_revision: rev, ..Default::default() };
                        events.push(Event { kind: EventKind::Delete, kv, prev_kv: Some(prev) });
                    }
                }
            }
        }
        Ok(Self::index(events))
    }

    /// Builds the history from the events of a watch over all keys from revision 1 (or from the first
    /// revision ever written). prev_kv is recomputed from the sequence, not taken from the events.
    pub fn from_events(events: impl IntoIterator<Item = Event>) -> History {
        let mut state: HashMap<Vec<u8>, Kv> = HashMap::new();
        let mut out = Vec::new();
        for mut e in events {
            let prev = match e.kind {
                EventKind::Put => state.insert(e.kv.key.clone(), e.kv.clone()),
                EventKind::Delete => state.remove(&e.kv.key),
            };
            e.prev_kv = prev;
            out.push(e);
        }
        out.sort_by_key(|e| e.revision());
        Self::index(out)
    }

    fn index(events: Vec<Event>) -> History {
        let mut index = HashMap::new();
        let mut by_rev: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (i, e) in events.iter().enumerate() {
            index.insert((e.revision(), e.kv.key.clone()), i);
            by_rev.entry(e.revision()).or_default().push(i);
        }
        History { events, index, by_rev }
    }

    /// All events, by revision.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The highest revision with an event (0 when empty).
    pub fn last_revision(&self) -> i64 {
        self.by_rev.keys().next_back().copied().unwrap_or(0)
    }

    /// Revisions between `from` and the last one that have no event: a history recorded from write
    /// responses should have none (each write creates exactly one revision).
    pub fn missing_revisions(&self, from: i64) -> Vec<i64> {
        (from..=self.last_revision()).filter(|r| !self.by_rev.contains_key(r)).collect()
    }

    /// The key-value state after revision `rev`.
    pub fn state_at(&self, rev: i64) -> BTreeMap<Vec<u8>, Kv> {
        let mut state = BTreeMap::new();
        for e in self.events.iter().take_while(|e| e.revision() <= rev) {
            match e.kind {
                EventKind::Put => {
                    state.insert(e.kv.key.clone(), e.kv.clone());
                }
                EventKind::Delete => {
                    state.remove(&e.kv.key);
                }
            }
        }
        state
    }

    /// The events a watcher with `spec` must receive for revisions `from..=to` (prev_kv kept only when
    /// the spec asks for it).
    pub fn expected(&self, spec: &WatchSpec, from: i64, to: i64) -> Vec<Event> {
        if from > to {
            return Vec::new();
        }
        self.by_rev
            .range(from..=to)
            .flat_map(|(_, idx)| idx.iter().map(|i| &self.events[*i]))
            .filter(|e| spec.wants(e))
            .map(|e| {
                let mut e = e.clone();
                if !spec.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }

    fn lookup(&self, rev: i64, key: &[u8]) -> Option<&Event> {
        self.index.get(&(rev, key.to_vec())).map(|i| &self.events[*i])
    }
}

/// What a watcher asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WatchSpec {
    /// A name for reports.
    pub name: String,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// 0 = after the created response's header revision.
    pub start_revision: i64,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
}

/// etcd's prefix end: the key with its last byte below 0xff incremented and the rest cut; "\0" when every
/// byte is 0xff (or the key is empty).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl WatchSpec {
    /// A single key.
    pub fn key(name: &str, key: impl Into<Vec<u8>>) -> WatchSpec {
        WatchSpec { name: name.into(), key: key.into(), ..Default::default() }
    }
    /// All keys with a prefix.
    pub fn prefix(name: &str, prefix: impl Into<Vec<u8>>) -> WatchSpec {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        WatchSpec { name: name.into(), key, range_end, ..Default::default() }
    }
    /// [key, end).
    pub fn range(name: &str, key: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> WatchSpec {
        WatchSpec { name: name.into(), key: key.into(), range_end: end.into(), ..Default::default() }
    }
    /// Every key >= key.
    pub fn from_key(name: &str, key: impl Into<Vec<u8>>) -> WatchSpec {
        WatchSpec { name: name.into(), key: key.into(), range_end: vec![0], ..Default::default() }
    }
    /// Every key.
    pub fn all(name: &str) -> WatchSpec {
        WatchSpec { name: name.into(), key: vec![0], range_end: vec![0], ..Default::default() }
    }
    /// With a start revision.
    pub fn start(mut self, rev: i64) -> WatchSpec {
        self.start_revision = rev;
        self
    }
    /// With prev_kv.
    pub fn with_prev_kv(mut self) -> WatchSpec {
        self.prev_kv = true;
        self
    }
    /// With the NOPUT filter.
    pub fn no_put(mut self) -> WatchSpec {
        self.no_put = true;
        self
    }
    /// With the NODELETE filter.
    pub fn no_delete(mut self) -> WatchSpec {
        self.no_delete = true;
        self
    }

    /// True when `key` is in the watched range.
    pub fn contains(&self, key: &[u8]) -> bool {
        if self.range_end.is_empty() {
            key == self.key.as_slice()
        } else if self.range_end == [0] {
            key >= self.key.as_slice()
        } else {
            key >= self.key.as_slice() && key < self.range_end.as_slice()
        }
    }

    /// True when the watcher wants `e` (range and filters; not the start revision).
    pub fn wants(&self, e: &Event) -> bool {
        self.contains(&e.kv.key)
            && match e.kind {
                EventKind::Put => !self.no_put,
                EventKind::Delete => !self.no_delete,
            }
    }

    /// The etcd-client options for this spec (key passed separately to `watch`).
    pub fn options(&self) -> etcd_client::WatchOptions {
        let mut o = etcd_client::WatchOptions::new();
        if !self.range_end.is_empty() {
            o = o.with_range(self.range_end.clone());
        }
        if self.start_revision > 0 {
            o = o.with_start_revision(self.start_revision);
        }
        if self.prev_kv {
            o = o.with_prev_key();
        }
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(etcd_client::WatchFilterType::NoPut);
        }
        if self.no_delete {
            filters.push(etcd_client::WatchFilterType::NoDelete);
        }
        if !filters.is_empty() {
            o = o.with_filters(filters);
        }
        o
    }
}

/// What one watcher asked for and received.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub spec: WatchSpec,
    /// Its responses in arrival order (created, events, progress, canceled), stream-wide progress included.
    pub responses: Vec<Response>,
}

impl Trace {
    /// A trace.
    pub fn new(spec: WatchSpec, responses: Vec<Response>) -> Trace {
        Trace { spec, responses }
    }

    /// All events received, in order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.responses.iter().flat_map(|r| r.events.iter())
    }

    /// The revision of the last event received (0 if none).
    pub fn last_event_revision(&self) -> i64 {
        self.events().map(|e| e.revision()).max().unwrap_or(0)
    }

    /// The first revision the watcher must deliver: the spec's start revision, else the created
    /// response's header revision + 1; None when neither is known.
    pub fn effective_start(&self) -> Option<i64> {
        if self.spec.start_revision > 0 {
            return Some(self.spec.start_revision);
        }
        self.responses.iter().find(|r| r.created).map(|r| r.header_revision + 1)
    }

    /// The highest revision up to which the watcher claimed completeness: its last event or progress.
    pub fn last_reported_revision(&self) -> i64 {
        let progress = self.responses.iter().filter(|r| r.is_progress()).map(|r| r.header_revision).max();
        self.last_event_revision().max(progress.unwrap_or(0))
    }
}

/// A named guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Guarantee {
    Ordered,
    Unique,
    Atomic,
    Reliable,
    Resumable,
    PrevKv,
    Create,
    Filter,
    Content,
    Progress,
}

impl Guarantee {
    /// The guarantee's name.
    pub fn name(self) -> &'static str {
        match self {
            Guarantee::Ordered => "ordered",
            Guarantee::Unique => "unique",
            Guarantee::Atomic => "atomic",
            Guarantee::Reliable => "reliable",
            Guarantee::Resumable => "resumable",
            Guarantee::PrevKv => "prev_kv",
            Guarantee::Create => "create",
            Guarantee::Filter => "filter",
            Guarantee::Content => "content",
            Guarantee::Progress => "progress",
        }
    }
}

/// One broken guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub guarantee: Guarantee,
    /// The watcher's name.
    pub watcher: String,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.guarantee.name(), self.watcher, self.detail)
    }
}

/// Printable bytes.
fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// At most this many violations of one guarantee are reported per watcher (the rest are counted).
const MAX_PER_GUARANTEE: usize = 10;

struct Report {
    watcher: String,
    out: Vec<Violation>,
    counts: HashMap<Guarantee, usize>,
}

impl Report {
    fn new(watcher: &str) -> Report {
        Report { watcher: watcher.to_string(), out: Vec::new(), counts: HashMap::new() }
    }

    fn add(&mut self, guarantee: Guarantee, detail: String) {
        let n = self.counts.entry(guarantee).or_default();
        *n += 1;
        if *n <= MAX_PER_GUARANTEE {
            self.out.push(Violation { guarantee, watcher: self.watcher.clone(), detail });
        }
    }

    fn finish(mut self) -> Vec<Violation> {
        let mut extra: Vec<(Guarantee, usize)> =
            self.counts.iter().filter(|(_, n)| **n > MAX_PER_GUARANTEE).map(|(g, n)| (*g, *n)).collect();
        extra.sort();
        for (g, n) in extra {
            self.out.push(Violation {
                guarantee: g,
                watcher: self.watcher.clone(),
                detail: format!("... {} more of this kind", n - MAX_PER_GUARANTEE),
            });
        }
        self.out
    }
}

/// Checks every guarantee except `resumable` for one watcher.
pub fn check(history: &History, trace: &Trace) -> Vec<Violation> {
    let mut rep = Report::new(&trace.spec.name);
    check_into(history, trace, &mut rep);
    rep.finish()
}

/// Checks several watchers; returns all violations.
pub fn check_all(history: &History, traces: &[Trace]) -> Vec<Violation> {
    traces.iter().flat_map(|t| check(history, t)).collect()
}

fn check_into(history: &History, trace: &Trace, rep: &mut Report) {
    let spec = &trace.spec;
    let start = trace.effective_start();

    // ordered
    let mut last_rev_before: Option<i64> = None;
    for (i, r) in trace.responses.iter().enumerate() {
        let mut prev_in_resp: Option<i64> = None;
        for e in &r.events {
            if let Some(p) = prev_in_resp {
                if e.revision() < p {
                    rep.add(Guarantee::Ordered, format!("response {i}: {} after an event of revision {p}", e.short()));
                }
            }
            prev_in_resp = Some(e.revision());
        }
        if let (Some(first), Some(last)) = (r.events.first(), last_rev_before) {
            if first.revision() <= last {
                rep.add(
                    Guarantee::Ordered,
                    format!(
                        "response {i} starts at revision {} but an earlier response already reached {last}",
                        first.revision()
                    ),
                );
            }
        }
        if let Some(max) = r.events.iter().map(|e| e.revision()).max() {
            if r.header_revision > 0 && r.header_revision < max {
                rep.add(
                    Guarantee::Ordered,
                    format!("response {i}: header revision {} below its event revision {max}", r.header_revision),
                );
            }
            last_rev_before = Some(last_rev_before.map_or(max, |l| l.max(max)));
        }
    }

    // unique, filter, content, create, prev_kv; atomic bookkeeping
    let mut seen: HashSet<(i64, Vec<u8>)> = HashSet::new();
    let mut rev_responses: BTreeMap<i64, BTreeMap<usize, usize>> = BTreeMap::new();
    for (i, r) in trace.responses.iter().enumerate() {
        for e in &r.events {
            let rev = e.revision();
            if !seen.insert((rev, e.kv.key.clone())) {
                rep.add(Guarantee::Unique, format!("{} delivered more than once", e.short()));
                continue;
            }
            *rev_responses.entry(rev).or_default().entry(i).or_default() += 1;
            if !spec.contains(&e.kv.key) {
                rep.add(Guarantee::Filter, format!("{} is outside the watched range", e.short()));
            }
            if (e.kind == EventKind::Put && spec.no_put) || (e.kind == EventKind::Delete && spec.no_delete) {
                rep.add(Guarantee::Filter, format!("{} should have been filtered out", e.short()));
            }
            if let Some(s) = start {
                if rev < s {
                    rep.add(Guarantee::Filter, format!("{} is before the start revision {s}", e.short()));
                }
            }
            let Some(h) = history.lookup(rev, &e.kv.key) else {
                rep.add(Guarantee::Content, format!("{} is not in the history", e.short()));
                continue;
            };
            if h.kind != e.kind || h.kv != e.kv {
                rep.add(
                    Guarantee::Content,
                    format!(
                        "{}: got {:?} {}, history has {:?} {}",
                        e.short(),
                        e.kind,
                        e.kv.short(),
                        h.kind,
                        h.kv.short()
                    ),
                );
            }
            if e.kind == EventKind::Put && h.kind == EventKind::Put {
                let absent = h.prev_kv.is_none();
                if (e.kv.version == 1) != absent {
                    rep.add(
                        Guarantee::Create,
                        format!(
                            "{} has version {} but the key was {} before",
                            e.short(),
                            e.kv.version,
                            if absent { "absent" } else { "present" }
                        ),
                    );
                }
            }
            let want_prev = if spec.prev_kv { h.prev_kv.as_ref() } else { None };
            if e.prev_kv.as_ref() != want_prev {
                rep.add(
                    Guarantee::PrevKv,
                    format!(
                        "{}: prev_kv {} but expected {}",
                        e.short(),
                        e.prev_kv.as_ref().map_or("none".into(), |p| p.short()),
                        want_prev.map_or("none".into(), |p| p.short())
                    ),
                );
            }
        }
    }

    // atomic: one response per revision, holding every wanted event of it
    for (rev, resps) in &rev_responses {
        if resps.len() > 1 {
            rep.add(
                Guarantee::Atomic,
                format!("revision {rev} split over responses {:?}", resps.keys().collect::<Vec<_>>()),
            );
            continue;
        }
        let got: usize = resps.values().sum();
        let want = history.expected(spec, *rev, *rev).len();
        if got < want {
            rep.add(Guarantee::Atomic, format!("revision {rev}: response holds {got} of its {want} events"));
        }
    }

    // reliable
    let last = trace.last_reported_revision();
    match start {
        Some(s) => {
            for e in history.expected(spec, s, last) {
                if !seen.contains(&(e.revision(), e.kv.key.clone())) {
                    rep.add(
                        Guarantee::Reliable,
                        format!("missing {} (watch from {s}, reported up to {last})", e.short()),
                    );
                }
            }
        }
        None if last > 0 => {
            // Without a known start only holes after the first event can be told.
            let first = trace.events().map(|e| e.revision()).min().unwrap_or(last);
            for e in history.expected(spec, first, last) {
                if !seen.contains(&(e.revision(), e.kv.key.clone())) {
                    rep.add(Guarantee::Reliable, format!("missing {} (after first event at {first})", e.short()));
                }
            }
        }
        None => {}
    }

    // progress
    for (i, r) in trace.responses.iter().enumerate() {
        if !r.is_progress() {
            continue;
        }
        let p = r.header_revision;
        for e in trace.responses[..i].iter().flat_map(|r| r.events.iter()) {
            if e.revision() > p {
                rep.add(
                    Guarantee::Progress,
                    format!("progress {p} (response {i}) is below the already received {}", e.short()),
                );
            }
        }
        for e in trace.responses[i + 1..].iter().flat_map(|r| r.events.iter()) {
            if e.revision() <= p {
                rep.add(Guarantee::Progress, format!("{} arrived after progress {p} (response {i})", e.short()));
            }
        }
    }
}

/// Checks `resumable`: `second` restarted the watch of `first` from its last revision + 1 (same range and
/// filters). The two together must deliver exactly the history from `first`'s start to `second`'s last
/// reported revision, without gap or duplicate at the restart. Also runs [`check`] on `second`.
pub fn check_resumed(history: &History, first: &Trace, second: &Trace) -> Vec<Violation> {
    let name = format!("{} resumed as {}", first.spec.name, second.spec.name);
    let mut rep = Report::new(&name);
    let last = first.last_event_revision();
    if second.spec.start_revision != last + 1 {
        rep.add(
            Guarantee::Resumable,
            format!("restarted from {} instead of last revision + 1 = {}", second.spec.start_revision, last + 1),
        );
    }
    let start = first.effective_start().unwrap_or(1);
    let mut combined: Vec<Response> =
        first.responses.iter().filter(|r| !r.events.is_empty()).cloned().collect::<Vec<_>>();
    combined.extend(second.responses.iter().filter(|r| !r.events.is_empty()).cloned());
    let until = second.last_reported_revision().max(last);
    let mut seen: HashMap<(i64, Vec<u8>), usize> = HashMap::new();
    let mut prev_max = 0;
    for e in combined.iter().flat_map(|r| r.events.iter()) {
        *seen.entry((e.revision(), e.kv.key.clone())).or_default() += 1;
        if e.revision() < prev_max {
            rep.add(Guarantee::Resumable, format!("{} after revision {prev_max}", e.short()));
        }
        prev_max = prev_max.max(e.revision());
    }
    for ((rev, key), n) in &seen {
        if *n > 1 {
            rep.add(Guarantee::Resumable, format!("{} @{rev} delivered {n} times across the restart", show(key)));
        }
    }
    for e in history.expected(&first.spec, start, until) {
        if !seen.contains_key(&(e.revision(), e.kv.key.clone())) {
            rep.add(Guarantee::Resumable, format!("missing {} across the restart (up to {until})", e.short()));
        }
    }
    let mut out = rep.finish();
    out.extend(check(history, second));
    out
}

/// Formats violations one per line (for assertion messages).
pub fn describe(violations: &[Violation]) -> String {
    violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests;
