//! etcdserverpb.Watch: one bidirectional stream carries many watchers.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use raftcd_proto::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, watch_server::Watch, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::services::{require_leader, Ctx};
use crate::watch::hub::CreateError;
use crate::watch::WatcherSpec;

/// Responses buffered per stream; a watcher whose stream is full is caught up from the store later.
const STREAM_CAPACITY: usize = 128;

/// Default of `--max-watchers-per-stream`.
pub const DEFAULT_MAX_WATCHERS_PER_STREAM: usize = 10_000;

/// The Watch service.
pub struct WatchService {
    ctx: Arc<Ctx>,
    max_watchers: usize,
}

impl WatchService {
    /// The service over shared context.
    pub fn new(ctx: Arc<Ctx>) -> WatchService {
        WatchService { ctx, max_watchers: DEFAULT_MAX_WATCHERS_PER_STREAM }
    }

    /// Limits the watchers one stream may hold (`--max-watchers-per-stream`).
    pub fn with_max_watchers(self, max_watchers: usize) -> WatchService {
        WatchService { max_watchers, ..self }
    }
}

/// The answer to a create beyond `--max-watchers-per-stream`: canceled with watch_id -1 (as etcd answers
/// a refused create), so clientv3 closes that one watch with the reason as its error.
fn too_many_watchers(ctx: &Ctx, limit: usize) -> WatchResponse {
    WatchResponse {
        header: Some(ctx.header(ctx.store.current_revision())),
        watch_id: -1,
        created: true,
        canceled: true,
        cancel_reason: format!("raftcd: too many watchers on this stream (--max-watchers-per-stream={limit})"),
        ..Default::default()
    }
}

/// Splits a response whose events exceed `limit` bytes into several, all but the last marked `fragment`
/// (as etcd does for watchers created with `fragment=true`). A single event larger than the limit still
/// goes out whole, alone.
fn fragment(resp: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    let mut parts = Vec::new();
    let mut current = WatchResponse { events: Vec::new(), ..resp.clone() };
    let mut size = 0;
    for ev in resp.events {
        let len = prost::Message::encoded_len(&ev) + 8;
        if !current.events.is_empty() && size + len > limit {
            let next = WatchResponse { events: Vec::new(), ..current.clone() };
            parts.push(std::mem::replace(&mut current, next));
            size = 0;
        }
        size += len;
        current.events.push(ev);
    }
    parts.push(current);
    let n = parts.len();
    for (i, p) in parts.iter_mut().enumerate() {
        p.fragment = i + 1 < n;
    }
    parts
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send + 'static>>;

fn spec_of(c: &raftcd_proto::etcdserverpb::WatchCreateRequest) -> WatcherSpec {
    WatcherSpec {
        key: c.key.clone(),
        range_end: c.range_end.clone(),
        start_revision: c.start_revision,
        prev_kv: c.prev_kv,
        no_put: c.filters.contains(&(FilterType::Noput as i32)),
        no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
        progress_notify: c.progress_notify,
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        require_leader(&self.ctx, &req)?;
        let needs_leader = req.metadata().get("hasleader").and_then(|v| v.to_str().ok()).is_some_and(|v| v == "true");
        // The stream's identity; each watch is checked for read access when it is created, as etcd does.
        let token = req.metadata().get("token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let cn = crate::services::client_common_name(&req);
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel::<WatchResponse>(STREAM_CAPACITY);
        let hub = self.ctx.hub.clone();
        let stream_id = hub.add_stream(tx.clone());
        let (err_tx, err_rx) = mpsc::channel::<Status>(1);
        let ctx = self.ctx.clone();
        let max_watchers = self.max_watchers;
        // Watch ids on this stream that asked for large responses to be split (`fragment`).
        let fragmenting = Arc::new(std::sync::Mutex::new(std::collections::HashSet::<i64>::new()));
        let frag_in = fragmenting.clone();

        tokio::spawn(async move {
            let mut leader_check = tokio::time::interval(Duration::from_millis(500));
            loop {
                let msg = tokio::select! {
                    m = inbound.next() => m,
                    _ = leader_check.tick(), if needs_leader => {
                        if ctx.raft.status().leader() == 0 {
                            let _ = err_tx.try_send(Error::NoLeader.into());
                            break;
                        }
                        continue;
                    }
                };
                let wr = match msg {
                    Some(Ok(wr)) => wr,
                    // The client closed its sending side: like etcd, keep delivering until it goes away.
                    None => {
                        tx.closed().await;
                        break;
                    }
                    // A message beyond the receive limit: the stream ends with etcd's status.
                    Some(Err(status)) => {
                        let _ = err_tx.try_send(crate::grpc_limits::etcd_status(status));
                        break;
                    }
                };
                match wr.request_union {
                    Some(RequestUnion::CreateRequest(c)) => {
                        if hub.stream_watcher_count(stream_id) >= max_watchers {
                            if tx.send(too_many_watchers(&ctx, max_watchers)).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        let allowed = ctx
                            .auth
                            .identify(token.as_deref(), cn.clone())
                            .and_then(|who| ctx.auth.check_read(&who, &c.key, &c.range_end));
                        if allowed.is_err() {
                            let resp = WatchResponse {
                                header: Some(ctx.header(ctx.store.current_revision())),
                                watch_id: c.watch_id,
                                created: true,
                                canceled: true,
                                cancel_reason:
                                    "rpc error: code = PermissionDenied desc = etcdserver: permission denied".into(),
                                ..Default::default()
                            };
                            if tx.send(resp).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        let Ok(permit) = tx.reserve().await else { break };
                        match hub.create(stream_id, c.watch_id, spec_of(&c), permit) {
                            Ok(id) => {
                                let mut f = frag_in.lock().unwrap_or_else(|p| p.into_inner());
                                if c.fragment {
                                    f.insert(id);
                                } else {
                                    f.remove(&id);
                                }
                            }
                            Err(CreateError::DuplicateId) => {
                                // etcd answers with watch_id -1, so the live watcher with that id is not
                                // mistaken for canceled.
                                let resp = WatchResponse {
                                    header: Some(ctx.header(ctx.store.current_revision())),
                                    watch_id: -1,
                                    created: true,
                                    canceled: true,
                                    cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
                                    ..Default::default()
                                };
                                if tx.send(resp).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    Some(RequestUnion::CancelRequest(c)) if hub.cancel(stream_id, c.watch_id) => {
                        // Forget the fragment choice too: create/cancel cycles must not grow the set.
                        frag_in.lock().unwrap_or_else(|p| p.into_inner()).remove(&c.watch_id);
                        let resp = WatchResponse {
                            header: Some(ctx.header(ctx.store.current_revision())),
                            watch_id: c.watch_id,
                            canceled: true,
                            ..Default::default()
                        };
                        if tx.send(resp).await.is_err() {
                            break;
                        }
                    }
                    // Cancelling an unknown watch id: etcd answers nothing.
                    Some(RequestUnion::CancelRequest(_)) => {}
                    Some(RequestUnion::ProgressRequest(_)) => hub.request_progress(stream_id),
                    None => {}
                }
            }
            hub.remove_stream(stream_id);
        });

        let ctx = self.ctx.clone();
        let limit = self.ctx.max_request_bytes;
        let state = (rx, err_rx, std::collections::VecDeque::<WatchResponse>::new());
        let out = futures::stream::unfold(state, move |(mut rx, mut err_rx, mut pending)| {
            let ctx = ctx.clone();
            let fragmenting = fragmenting.clone();
            async move {
                if let Some(next) = pending.pop_front() {
                    return Some((Ok(next), (rx, err_rx, pending)));
                }
                tokio::select! {
                    biased;
                    Some(e) = err_rx.recv() => Some((Err(e), (rx, err_rx, pending))),
                    r = rx.recv() => r.map(|mut resp| {
                        let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
                        resp.header = Some(ctx.header(rev));
                        let wants = fragmenting.lock().unwrap_or_else(|p| p.into_inner()).contains(&resp.watch_id);
                        if wants && prost::Message::encoded_len(&resp) > limit {
                            pending.extend(fragment(resp, limit));
                            let first = pending.pop_front().unwrap_or_default();
                            return (Ok(first), (rx, err_rx, pending));
                        }
                        (Ok(resp), (rx, err_rx, pending))
                    }),
                }
            }
        });
        Ok(Response::new(Box::pin(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftcd_proto::mvccpb::{Event, KeyValue};

    #[test]
    fn large_responses_fragment_in_order() {
        let events: Vec<Event> = (0..10)
            .map(|i| Event {
                kv: Some(KeyValue { key: vec![i], value: vec![0; 100], ..Default::default() }),
                ..Default::default()
            })
            .collect();
        let resp = WatchResponse { watch_id: 3, events: events.clone(), ..Default::default() };
        let parts = fragment(resp, 350);
        assert!(parts.len() > 1);
        assert!(parts[..parts.len() - 1].iter().all(|p| p.fragment));
        assert!(!parts.last().unwrap().fragment);
        assert!(parts.iter().all(|p| p.watch_id == 3));
        let joined: Vec<Event> = parts.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(joined, events);
    }
}
