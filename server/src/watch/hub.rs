//! The watch hub.
//!
//! Every watch stream registers here with a bounded outgoing channel. Watchers are either *synced* (they have
//! seen every event up to the last revision the hub was told about and get new events pushed by `notify`
//! from the apply thread) or *unsynced* (they start in the past, or their stream's channel was full): the
//! sync task feeds those from the store's revision log and moves them to synced once they are current.
//! The apply path never waits: a full channel just makes the watcher unsynced. Memory per stream is bounded
//! by the channel capacity times the catch-up batch size.
//!
//! Invariant: per watcher, `next_rev` is the first revision not yet queued, all changes of `next_rev` happen
//! under the hub lock, and `notify(rev)` delivers only when `rev >= next_rev` — so there is no gap and no
//! duplicate at the hand-over between catch-up and live delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftcd_proto::etcdserverpb::{ResponseHeader, WatchResponse};
use raftcd_proto::mvccpb::{event::EventType, Event};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::Notify;

use crate::error::Error;
use crate::mvcc::Store;
use crate::watch::range;

/// Events read from the store per catch-up step of one watcher.
const CATCH_UP_BATCH: usize = 1000;
/// Catch-up responses are cut near this size (whole revisions only), below clients' 4 MiB default limit.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Splits events (in revision order) into runs of whole revisions of at most `limit` encoded bytes each
/// (a single revision larger than that travels alone).
fn chunk_by_revision(events: Vec<Event>, limit: usize) -> Vec<Vec<Event>> {
    let mut out: Vec<Vec<Event>> = Vec::new();
    let mut cur: Vec<Event> = Vec::new();
    let mut size = 0;
    let rev_of = |e: &Event| e.kv.as_ref().map(|kv| kv.mod_revision).unwrap_or(0);
    for e in events {
        let len = prost::Message::encoded_len(&e);
        let new_rev = cur.last().is_some_and(|l| rev_of(l) != rev_of(&e));
        if new_rev && size + len > limit {
            out.push(std::mem::take(&mut cur));
            size = 0;
        }
        size += len;
        cur.push(e);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// What a client asked to watch.
#[derive(Debug, Clone, Default)]
pub struct WatcherSpec {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// First revision wanted; 0 = after the current one.
    pub start_revision: i64,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
    pub progress_notify: bool,
}

struct Watcher {
    spec: WatcherSpec,
    next_rev: i64,
    synced: bool,
    last_sent: Instant,
}

struct StreamEntry {
    tx: mpsc::Sender<WatchResponse>,
    watchers: HashMap<i64, Watcher>,
    next_watch_id: i64,
    progress_pending: bool,
}

struct Inner {
    streams: HashMap<u64, StreamEntry>,
    next_stream: u64,
    /// The highest revision passed to `notify` (or the store's revision at start).
    notified_rev: i64,
}

/// Routes events to watchers.
pub struct WatchHub {
    store: Store,
    inner: Mutex<Inner>,
    wake: Notify,
    progress_interval: Duration,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

fn select(spec: &WatcherSpec, events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .filter(|e| {
            let key = e.kv.as_ref().map(|kv| kv.key.as_slice()).unwrap_or_default();
            if !range::contains(&spec.key, &spec.range_end, key) {
                return false;
            }
            match EventType::try_from(e.r#type) {
                Ok(EventType::Put) => !spec.no_put,
                Ok(EventType::Delete) => !spec.no_delete,
                Err(_) => false,
            }
        })
        .map(|e| {
            let mut e = e.clone();
            if !spec.prev_kv {
                e.prev_kv = None;
            }
            e
        })
        .collect()
}

/// Why a watch could not be created.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The client-chosen id is in use on this stream.
    DuplicateId,
}

impl WatchHub {
    /// A hub over `store`; `progress_interval` paces progress_notify responses.
    pub fn new(store: Store, progress_interval: Duration) -> Arc<WatchHub> {
        let notified_rev = store.current_revision();
        Arc::new(WatchHub {
            store,
            inner: Mutex::new(Inner { streams: HashMap::new(), next_stream: 1, notified_rev }),
            wake: Notify::new(),
            progress_interval,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a stream with its outgoing channel; returns the stream id.
    pub fn add_stream(&self, tx: mpsc::Sender<WatchResponse>) -> u64 {
        let mut inner = self.lock();
        let id = inner.next_stream;
        inner.next_stream += 1;
        inner
            .streams
            .insert(id, StreamEntry { tx, watchers: HashMap::new(), next_watch_id: 0, progress_pending: false });
        id
    }

    /// Drops a stream and all its watchers.
    pub fn remove_stream(&self, stream: u64) {
        self.lock().streams.remove(&stream);
    }

    /// Number of watchers on one stream (0 for an unknown stream).
    pub fn stream_watcher_count(&self, stream: u64) -> usize {
        self.lock().streams.get(&stream).map_or(0, |s| s.watchers.len())
    }

    /// Number of watchers on all streams (the watcher-total gauge).
    pub fn watcher_count(&self) -> usize {
        self.lock().streams.values().map(|s| s.watchers.len()).sum()
    }

    /// Creates a watcher. The `created` response goes out through `permit` (reserved by the caller on the
    /// stream's channel) under the hub lock, so no event can overtake it.
    pub fn create(
        &self,
        stream: u64,
        requested_id: i64,
        spec: WatcherSpec,
        permit: mpsc::Permit<'_, WatchResponse>,
    ) -> Result<i64, CreateError> {
        let mut inner = self.lock();
        let notified = inner.notified_rev;
        let Some(s) = inner.streams.get_mut(&stream) else { return Err(CreateError::DuplicateId) };
        let id = if requested_id != 0 {
            if s.watchers.contains_key(&requested_id) {
                return Err(CreateError::DuplicateId);
            }
            requested_id
        } else {
            while s.watchers.contains_key(&s.next_watch_id) {
                s.next_watch_id += 1;
            }
            s.next_watch_id
        };
        let next_rev = if spec.start_revision > 0 { spec.start_revision } else { notified + 1 };
        let synced = next_rev > notified;
        permit.send(WatchResponse { header: header(notified), watch_id: id, created: true, ..Default::default() });
        s.watchers.insert(id, Watcher { spec, next_rev, synced, last_sent: Instant::now() });
        drop(inner);
        if !synced {
            self.wake.notify_one();
        }
        Ok(id)
    }

    /// Cancels a watcher; false if it did not exist.
    pub fn cancel(&self, stream: u64, watch_id: i64) -> bool {
        let mut inner = self.lock();
        inner.streams.get_mut(&stream).is_some_and(|s| s.watchers.remove(&watch_id).is_some())
    }

    /// Asks for a stream-wide progress response (watch_id -1), sent as soon as every watcher of the stream
    /// is synced: its revision then promises that no later event on the stream is at or below it.
    pub fn request_progress(&self, stream: u64) {
        let mut inner = self.lock();
        let notified = inner.notified_rev;
        if let Some(s) = inner.streams.get_mut(&stream) {
            s.progress_pending = true;
            Self::try_progress(s, notified);
        }
        drop(inner);
        self.wake.notify_one();
    }

    fn try_progress(s: &mut StreamEntry, notified: i64) {
        if s.progress_pending && s.watchers.values().all(|w| w.synced) {
            let resp = WatchResponse { header: header(notified), watch_id: -1, ..Default::default() };
            if s.tx.try_send(resp).is_ok() {
                s.progress_pending = false;
            }
        }
    }

    /// After a snapshot replaced the store: every watcher resumes from the store (or is cancelled if what it
    /// still needs was compacted away).
    pub fn resync_all(&self) {
        let mut inner = self.lock();
        inner.notified_rev = self.store.current_revision();
        for s in inner.streams.values_mut() {
            for w in s.watchers.values_mut() {
                w.synced = false;
            }
        }
        drop(inner);
        self.wake.notify_one();
    }

    /// Called by the apply thread after revision `rev` is committed, with its events (prev_kv filled).
    pub fn notify(&self, rev: i64, events: &[Event]) {
        let mut inner = self.lock();
        if rev > inner.notified_rev {
            inner.notified_rev = rev;
        }
        let mut fell_behind = false;
        for s in inner.streams.values_mut() {
            for (id, w) in s.watchers.iter_mut() {
                if !w.synced || rev < w.next_rev {
                    continue;
                }
                let selected = select(&w.spec, events);
                if selected.is_empty() {
                    w.next_rev = rev + 1;
                    continue;
                }
                let resp = WatchResponse { header: header(rev), watch_id: *id, events: selected, ..Default::default() };
                match s.tx.try_send(resp) {
                    Ok(()) => {
                        w.next_rev = rev + 1;
                        w.last_sent = Instant::now();
                    }
                    Err(TrySendError::Full(_)) => {
                        // Slow consumer: off the hot path; the sync task resumes it from the store at `rev`.
                        w.synced = false;
                        w.next_rev = rev;
                        fell_behind = true;
                    }
                    Err(TrySendError::Closed(_)) => {}
                }
            }
        }
        drop(inner);
        if fell_behind {
            self.wake.notify_one();
        }
    }

    /// The sync task: catches up unsynced watchers, sends pending progress responses and progress
    /// notifications. Runs until `shutdown` fires.
    pub async fn run_sync(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
            let hub = self.clone();
            // Store reads are blocking sled calls.
            let busy = tokio::task::spawn_blocking(move || hub.sync_round()).await.unwrap_or(false);
            if busy {
                tokio::task::yield_now().await;
                self.wake.notify_one();
            }
        }
    }

    /// One pass over unsynced watchers; true if some still have work left.
    fn sync_round(&self) -> bool {
        let todo: Vec<(u64, i64, WatcherSpec, i64)> = {
            let inner = self.lock();
            inner
                .streams
                .iter()
                .flat_map(|(sid, s)| {
                    s.watchers
                        .iter()
                        .filter(|(_, w)| !w.synced)
                        .map(|(wid, w)| (*sid, *wid, w.spec.clone(), w.next_rev))
                })
                .collect()
        };
        let mut more = false;
        for (sid, wid, spec, next_rev) in todo {
            more |= self.catch_up(sid, wid, &spec, next_rev);
        }
        self.progress_round();
        more
    }

    fn catch_up(&self, sid: u64, wid: i64, spec: &WatcherSpec, next_rev: i64) -> bool {
        let compacted = self.store.compact_revision();
        // Never past what `notify` has been told: a revision committed to the store but not yet notified
        // must not be delivered ahead of it, or a progress response could fall below a delivered event.
        let notified_now = self.lock().notified_rev;
        let current = self.store.current_revision().min(notified_now);
        if next_rev < compacted {
            let resp = WatchResponse {
                header: header(current),
                watch_id: wid,
                canceled: true,
                compact_revision: compacted,
                ..Default::default()
            };
            let mut inner = self.lock();
            if let Some(s) = inner.streams.get_mut(&sid) {
                if s.tx.try_send(resp).is_ok() {
                    s.watchers.remove(&wid);
                }
            }
            return false;
        }
        let events = if next_rev <= current {
            match self.store.events(next_rev, current, &spec.key, &spec.range_end, CATCH_UP_BATCH) {
                Ok(ev) => ev,
                Err(Error::Compacted) => return true, // noticed on the next pass
                Err(e) => {
                    tracing::error!(error = %e, "watch catch-up read failed");
                    return false;
                }
            }
        } else {
            Vec::new()
        };
        // The last revision covered: everything up to `current` unless the batch was cut short.
        let covered = if events.len() >= CATCH_UP_BATCH {
            events.last().and_then(|e| e.kv.as_ref()).map(|kv| kv.mod_revision).unwrap_or(current)
        } else {
            current
        };
        let selected = select(spec, &events);
        let mut inner = self.lock();
        let notified = inner.notified_rev;
        let Some(s) = inner.streams.get_mut(&sid) else { return false };
        let Some(w) = s.watchers.get_mut(&wid) else { return false };
        if w.synced || w.next_rev != next_rev {
            return false;
        }
        // Bounded responses (a revision is never split): a watcher far behind does not get one huge message.
        let chunks = chunk_by_revision(selected, MAX_RESPONSE_BYTES);
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let first_rev = chunk.first().and_then(|e| e.kv.as_ref()).map(|kv| kv.mod_revision).unwrap_or(covered);
            let last = i + 1 == n;
            let rev = if last {
                covered
            } else {
                chunk.last().and_then(|e| e.kv.as_ref()).map(|kv| kv.mod_revision).unwrap_or(covered)
            };
            let resp = WatchResponse { header: header(rev), watch_id: wid, events: chunk, ..Default::default() };
            if s.tx.try_send(resp).is_err() {
                // Full: resume from the first revision not sent, on a later pass.
                w.next_rev = w.next_rev.max(first_rev);
                return true;
            }
            w.last_sent = Instant::now();
        }
        w.next_rev = w.next_rev.max(covered + 1);
        if w.next_rev > notified {
            w.synced = true;
        }
        let still = !w.synced;
        Self::try_progress(s, notified);
        still
    }

    fn progress_round(&self) {
        let mut inner = self.lock();
        let notified = inner.notified_rev;
        let now = Instant::now();
        let interval = self.progress_interval;
        for s in inner.streams.values_mut() {
            Self::try_progress(s, notified);
            for (id, w) in s.watchers.iter_mut() {
                if w.spec.progress_notify && w.synced && now.duration_since(w.last_sent) >= interval {
                    let resp = WatchResponse { header: header(notified), watch_id: *id, ..Default::default() };
                    if s.tx.try_send(resp).is_ok() {
                        w.last_sent = now;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftcd_proto::mvccpb::KeyValue;

    fn ev(rev: i64, size: usize) -> Event {
        Event {
            kv: Some(KeyValue { key: b"k".to_vec(), mod_revision: rev, value: vec![0; size], ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn chunks_keep_revisions_whole_and_bounded() {
        let events = vec![ev(1, 400), ev(1, 400), ev(2, 400), ev(3, 2000), ev(4, 10)];
        let chunks = chunk_by_revision(events.clone(), 1000);
        let flat: Vec<Event> = chunks.iter().flatten().cloned().collect();
        assert_eq!(flat, events);
        for c in &chunks {
            let revs: Vec<i64> = c.iter().map(|e| e.kv.as_ref().unwrap().mod_revision).collect();
            assert!(revs.windows(2).all(|w| w[0] <= w[1]));
        }
        // revision 1 (two events) stays together; revision 3 is alone and over the limit
        assert_eq!(chunks[0].len(), 2);
        assert!(chunks.iter().any(|c| c.len() == 1 && c[0].kv.as_ref().unwrap().mod_revision == 3));
        assert!(chunk_by_revision(vec![], 10).is_empty());
    }
}
