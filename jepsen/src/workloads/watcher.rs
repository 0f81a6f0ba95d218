//! A watcher that survives faults: it watches a prefix (with prev_kv and `hasleader` metadata, as
//! kube-apiserver does) from a start revision and, whenever its stream breaks, reconnects through another
//! member from its last event's revision + 1. Every stream is recorded as a [`WatchSession`].
//!
//! A watch canceled because its start revision was compacted (kubernetes workload) lists the prefix again
//! (recorded) and starts over from the list's revision + 1, as a reflector does.
//!
//! It stops once it has reported (by an event or a progress response) the `target` revision the final
//! phase sets, or when `abort` fires.

use std::sync::Arc;
use std::time::Duration;

use raftcd_proto::etcdserverpb::{
    watch_request::RequestUnion, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use raftcd_proto::mvccpb;
use tokio::sync::watch as tw;
use tokio_stream::wrappers::ReceiverStream;

use super::{kubernetes, Client, Ctx};
use crate::checker::watch::{WEvent, WKv, WResponse, WatchSession};
use crate::client::{prefix_end, Conn};
use crate::history::Recorder;

/// Watcher settings.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    pub id: usize,
    pub prefix: String,
    pub start_revision: i64,
    /// On a compaction cancel, list again and restart (else: record it and resume from the same revision,
    /// which will fail again — the watch workload never compacts).
    pub relist: bool,
}

fn wkv(kv: &mvccpb::KeyValue) -> WKv {
    WKv {
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        value: String::from_utf8_lossy(&kv.value).into_owned(),
        create_rev: kv.create_revision,
        mod_rev: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

/// Converts a response.
pub fn wresponse(r: &WatchResponse, at: u64) -> WResponse {
    WResponse {
        at,
        watch_id: r.watch_id,
        header_revision: r.header.as_ref().map(|h| h.revision).unwrap_or(0),
        created: r.created,
        canceled: r.canceled,
        compact_revision: r.compact_revision,
        cancel_reason: r.cancel_reason.clone(),
        events: r
            .events
            .iter()
            .map(|e| WEvent {
                delete: e.r#type == mvccpb::event::EventType::Delete as i32,
                kv: e.kv.as_ref().map(wkv).unwrap_or_else(|| wkv(&Default::default())),
                prev_kv: e.prev_kv.as_ref().map(wkv),
            })
            .collect(),
    }
}

/// How one session ended.
enum End {
    Broken(String),
    Compacted(i64),
    Done,
}

/// Runs one watch stream from `start` until it breaks or the watcher is done. Returns the session.
#[allow(clippy::too_many_arguments)]
async fn session(
    conn: &Conn,
    rec: &Recorder,
    cfg: &WatcherConfig,
    n: usize,
    start: i64,
    relisted: bool,
    target: &mut tw::Receiver<Option<i64>>,
    abort: &mut tw::Receiver<bool>,
) -> (WatchSession, End) {
    let mut s = WatchSession {
        watcher: cfg.id,
        session: n,
        member: conn.member,
        prefix: cfg.prefix.clone(),
        start_revision: start,
        prev_kv: true,
        relisted,
        opened: rec.now(),
        closed: 0,
        end: String::new(),
        responses: Vec::new(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<WatchRequest>(4);
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: cfg.prefix.as_bytes().to_vec(),
            range_end: prefix_end(&cfg.prefix),
            start_revision: start,
            prev_kv: true,
            progress_notify: true,
            ..Default::default()
        })),
    };
    let _ = tx.send(create).await;
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut().insert("hasleader", tonic::metadata::MetadataValue::from_static("true"));
    let mut wc = conn.watch.clone();
    let opened = tokio::time::timeout(Duration::from_secs(5), wc.watch(req)).await;
    let mut stream = match opened {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(e)) => return finish(s, rec, End::Broken(format!("open: {:?} {}", e.code(), e.message()))),
        Err(_) => return finish(s, rec, End::Broken("open: timeout".into())),
    };
    let mut reported = start - 1;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        if target.borrow().is_some_and(|t| reported >= t) {
            return finish(s, rec, End::Done);
        }
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(r)) => {
                    let w = wresponse(&r, rec.now());
                    let is_progress = !w.created && !w.canceled && w.events.is_empty();
                    if let Some(last) = w.events.last() {
                        reported = reported.max(last.revision());
                    } else if is_progress {
                        reported = reported.max(w.header_revision);
                    }
                    let (canceled, compact) = (w.canceled, w.compact_revision);
                    let reason = w.cancel_reason.clone();
                    s.responses.push(w);
                    if canceled {
                        return finish(s, rec, if compact > 0 {
                            End::Compacted(compact)
                        } else {
                            End::Broken(format!("canceled: {reason}"))
                        });
                    }
                }
                Ok(None) => return finish(s, rec, End::Broken("stream closed by the server".into())),
                Err(e) => return finish(s, rec, End::Broken(format!("{:?} {}", e.code(), e.message()))),
            },
            _ = tick.tick() => {
                if target.borrow().is_some() {
                    let progress =
                        WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) };
                    let _ = tx.try_send(progress);
                }
            }
            _ = target.changed() => {}
            _ = abort.wait_for(|a| *a) => return finish(s, rec, End::Broken("aborted: final revision not reached in time".into())),
        }
    }
}

fn finish(mut s: WatchSession, rec: &Recorder, end: End) -> (WatchSession, End) {
    s.closed = rec.now();
    s.end = match &end {
        End::Broken(e) => e.clone(),
        End::Compacted(c) => format!("canceled: compacted at {c}"),
        End::Done => "reached the final revision".into(),
    };
    (s, end)
}

/// Runs a watcher until done; returns its sessions.
pub async fn run(
    ctx: Arc<Ctx>,
    cfg: WatcherConfig,
    mut target: tw::Receiver<Option<i64>>,
    mut abort: tw::Receiver<bool>,
) -> Vec<WatchSession> {
    // The process id of a watcher's own ops (relists) comes after the clients'.
    let mut client = Client::new(ctx.clone(), ctx.concurrency + 10 + cfg.id);
    client.member = cfg.id % client.conns.len();
    let mut sessions = Vec::new();
    let mut next = cfg.start_revision;
    let mut relisted = false;
    loop {
        let conn = client.conn().clone();
        let n = sessions.len();
        let (s, end) = session(&conn, &ctx.rec, &cfg, n, next, relisted, &mut target, &mut abort).await;
        relisted = false;
        if let Some(last) = s.responses.iter().flat_map(|r| r.events.iter()).map(|e| e.revision()).max() {
            next = last + 1;
        }
        sessions.push(s);
        match end {
            End::Done => break,
            End::Compacted(_) if cfg.relist => {
                // List again (recorded), then watch from the list's revision + 1.
                loop {
                    if *abort.borrow() {
                        return sessions;
                    }
                    let (op, _) = kubernetes::list(&mut client, &cfg.prefix, 4).await;
                    if let Some(rev) = op.revision.filter(|_| op.outcome == crate::history::Outcome::Ok) {
                        next = rev + 1;
                        relisted = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            End::Compacted(_) | End::Broken(_) => {
                if *abort.borrow() {
                    break;
                }
                client.hop();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    sessions
}
