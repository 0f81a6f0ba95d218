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

/// The Watch service.
pub struct WatchService {
    ctx: Arc<Ctx>,
}

impl WatchService {
    /// The service over shared context.
    pub fn new(ctx: Arc<Ctx>) -> WatchService {
        WatchService { ctx }
    }
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
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel::<WatchResponse>(STREAM_CAPACITY);
        let hub = self.ctx.hub.clone();
        let stream_id = hub.add_stream(tx.clone());
        let (err_tx, err_rx) = mpsc::channel::<Status>(1);
        let ctx = self.ctx.clone();

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
                let Some(Ok(wr)) = msg else { break };
                match wr.request_union {
                    Some(RequestUnion::CreateRequest(c)) => {
                        let Ok(permit) = tx.reserve().await else { break };
                        match hub.create(stream_id, c.watch_id, spec_of(&c), permit) {
                            Ok(_) => {}
                            Err(CreateError::DuplicateId) => {
                                let resp = WatchResponse {
                                    header: Some(ctx.header(ctx.store.current_revision())),
                                    watch_id: c.watch_id,
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
                    Some(RequestUnion::CancelRequest(c)) => {
                        if hub.cancel(stream_id, c.watch_id) {
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
                    }
                    Some(RequestUnion::ProgressRequest(_)) => hub.request_progress(stream_id),
                    None => {}
                }
            }
            hub.remove_stream(stream_id);
        });

        let ctx = self.ctx.clone();
        let out = futures::stream::unfold((rx, err_rx), move |(mut rx, mut err_rx)| {
            let ctx = ctx.clone();
            async move {
                tokio::select! {
                    biased;
                    Some(e) = err_rx.recv() => Some((Err(e), (rx, err_rx))),
                    r = rx.recv() => r.map(|mut resp| {
                        let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
                        resp.header = Some(ctx.header(rev));
                        (Ok(resp), (rx, err_rx))
                    }),
                }
            }
        });
        Ok(Response::new(Box::pin(out)))
    }
}
