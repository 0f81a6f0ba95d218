//! Watch service: one bidirectional stream carrying any number of watches, resumed after transport failures.
//!
//! The [`Watcher`] handle talks to a background task that owns the gRPC stream. The task remembers, for every
//! watch, the request that created it and the next revision it has not yet delivered:
//! - after `created`: the requested start revision, or the created response's header revision + 1;
//! - after events: the last event's `mod_revision` + 1;
//! - after a progress notification: at least its header revision + 1.
//!
//! When the stream breaks at the transport level, the task reconnects (to the next endpoint that dials) and
//! re-creates every watch with `start_revision` = that next revision, swallowing the new `created` answers.
//! Watch ids seen by the caller stay the same across resumes. A resumed watch whose history was compacted
//! meanwhile comes back as a canceled response with `compact_revision` set, like a fresh one would.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use raftcd_proto::etcdserverpb::watch_client::WatchClient;
use raftcd_proto::etcdserverpb::watch_request::RequestUnion;
use raftcd_proto::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::conn::{classify, Failure};
use crate::{Client, Error, Result};

/// Requests from the handle to the stream task.
#[derive(Debug)]
enum Cmd {
    Create(WatchCreateRequest),
    Cancel(i64),
    Progress,
}

/// A watch stream. Create watches on it and read their responses with [`Watcher::message`].
pub struct Watcher {
    cmds: mpsc::Sender<Cmd>,
    responses: mpsc::Receiver<Result<WatchResponse>>,
    task: JoinHandle<()>,
}

impl Client {
    /// Opens a watch stream (the connection is made in the background; failures arrive as messages).
    pub fn watch_stream(&self) -> Watcher {
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (resp_tx, resp_rx) = mpsc::channel(256);
        let task = tokio::spawn(run(self.clone(), cmd_rx, resp_tx));
        Watcher { cmds: cmd_tx, responses: resp_rx, task }
    }

    /// Opens a watch stream with one watch on it.
    pub async fn watch(&self, req: WatchCreateRequest) -> Result<Watcher> {
        let w = self.watch_stream();
        w.create(req).await?;
        Ok(w)
    }
}

impl Watcher {
    async fn send(&self, cmd: Cmd) -> Result<()> {
        self.cmds.send(cmd).await.map_err(|_| Error::StreamClosed("watch stream closed".into()))
    }

    /// Asks for a new watch; its `created` response (with the watch id) arrives through [`Watcher::message`].
    pub async fn create(&self, req: WatchCreateRequest) -> Result<()> {
        self.send(Cmd::Create(req)).await
    }

    /// Cancels a watch; a `canceled` response follows.
    pub async fn cancel(&self, watch_id: i64) -> Result<()> {
        self.send(Cmd::Cancel(watch_id)).await
    }

    /// Asks the server for a progress notification (watch id -1) on this stream.
    pub async fn request_progress(&self) -> Result<()> {
        self.send(Cmd::Progress).await
    }

    /// The next response; `Ok(None)` when the stream ended for good, `Err` for a server answer that ends it
    /// (permission denied, invalid token, ...).
    pub async fn message(&mut self) -> Result<Option<WatchResponse>> {
        match self.responses.recv().await {
            Some(Ok(r)) => Ok(Some(r)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Active {
    req: WatchCreateRequest,
    next_rev: i64,
}

#[derive(Debug)]
enum Pending {
    New(WatchCreateRequest),
    Resume(i64),
}

/// What the task knows about the watches of its (current) stream.
#[derive(Debug, Default)]
struct State {
    /// Caller-visible id -> watch.
    active: BTreeMap<i64, Active>,
    /// Creates sent on the current stream and not yet answered, in order (the server answers in order).
    pending: VecDeque<Pending>,
    /// Server id on the current stream -> caller-visible id.
    server_to_user: HashMap<i64, i64>,
}

impl State {
    fn alloc_id(&self, server_id: i64) -> i64 {
        let used = |id: i64| self.active.contains_key(&id) || self.server_to_user.values().any(|&u| u == id);
        if server_id >= 0 && !used(server_id) {
            return server_id;
        }
        let mut id = self.active.keys().next_back().copied().unwrap_or(0).max(server_id) + 1;
        while used(id) {
            id += 1;
        }
        id
    }

    /// Applies a response; returns what to hand to the caller, if anything.
    fn on_response(&mut self, mut resp: WatchResponse) -> Option<WatchResponse> {
        let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
        if resp.created {
            match self.pending.pop_front() {
                Some(Pending::New(req)) => {
                    let uid = self.alloc_id(resp.watch_id);
                    if !resp.canceled {
                        let next_rev = if req.start_revision > 0 { req.start_revision } else { rev + 1 };
                        self.server_to_user.insert(resp.watch_id, uid);
                        self.active.insert(uid, Active { req, next_rev });
                    }
                    resp.watch_id = uid;
                    Some(resp)
                }
                Some(Pending::Resume(uid)) => {
                    if resp.canceled {
                        self.active.remove(&uid);
                        resp.watch_id = uid;
                        return Some(resp);
                    }
                    self.server_to_user.insert(resp.watch_id, uid);
                    None
                }
                None => Some(resp),
            }
        } else if resp.watch_id == -1 {
            for a in self.active.values_mut() {
                a.next_rev = a.next_rev.max(rev + 1);
            }
            Some(resp)
        } else {
            let Some(&uid) = self.server_to_user.get(&resp.watch_id) else {
                return Some(resp);
            };
            if let Some(a) = self.active.get_mut(&uid) {
                if let Some(last) = resp.events.last().and_then(|e| e.kv.as_ref()) {
                    a.next_rev = a.next_rev.max(last.mod_revision + 1);
                } else if !resp.canceled && !resp.fragment {
                    a.next_rev = a.next_rev.max(rev + 1);
                }
            }
            if resp.canceled {
                self.active.remove(&uid);
                self.server_to_user.remove(&resp.watch_id);
            }
            resp.watch_id = uid;
            Some(resp)
        }
    }

    /// Forgets the old stream; returns the creates to send on the new one, in order.
    fn resume_requests(&mut self) -> Vec<WatchCreateRequest> {
        self.server_to_user.clear();
        let news: Vec<WatchCreateRequest> = self
            .pending
            .drain(..)
            .filter_map(|p| match p {
                Pending::New(r) => Some(r),
                Pending::Resume(_) => None,
            })
            .collect();
        let mut out = Vec::new();
        for (&uid, a) in &self.active {
            let mut req = a.req.clone();
            req.start_revision = a.next_rev;
            out.push(req);
            self.pending.push_back(Pending::Resume(uid));
        }
        for r in news {
            out.push(r.clone());
            self.pending.push_back(Pending::New(r));
        }
        out
    }

    /// Server id of a caller-visible id on the current stream.
    fn server_id(&self, uid: i64) -> Option<i64> {
        self.server_to_user.iter().find(|(_, &u)| u == uid).map(|(&s, _)| s)
    }
}

fn create(req: WatchCreateRequest) -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::CreateRequest(req)) }
}

/// Opens a stream with `initial` requests already queued: etcd (grpc-go) sends the response headers only with
/// the first answer, so the call would not complete on an empty stream.
async fn open(
    client: &Client,
    initial: Vec<WatchRequest>,
) -> Result<(usize, mpsc::Sender<WatchRequest>, tonic::Streaming<WatchResponse>)> {
    client.ensure_auth().await?;
    let (idx, ch): (usize, Channel) = client.pool.any_channel(None).await?;
    let (tx, rx) = mpsc::channel(64 + initial.len());
    for r in initial {
        tx.send(r).await.map_err(|_| Error::StreamClosed("watch stream closed".into()))?;
    }
    let mut req = client.request(ReceiverStream::new(rx));
    if client.pool.opts.require_leader {
        req.metadata_mut().insert("hasleader", MetadataValue::from_static("true"));
    }
    match WatchClient::new(ch).max_decoding_message_size(usize::MAX).watch(req).await {
        Ok(resp) => Ok((idx, tx, resp.into_inner())),
        Err(s) => {
            if classify(&s) != Failure::Answer {
                client.pool.stream_failed(idx);
                return Err(Error::Transport(s.message().to_string()));
            }
            Err(Error::from(s))
        }
    }
}

async fn run(client: Client, mut cmds: mpsc::Receiver<Cmd>, out: mpsc::Sender<Result<WatchResponse>>) {
    let mut st = State::default();
    let mut failures: u64 = 0;
    loop {
        // Nothing to watch yet: wait for the first create before opening a stream.
        while st.active.is_empty() && st.pending.is_empty() {
            match cmds.recv().await {
                None => return,
                Some(Cmd::Create(r)) => st.pending.push_back(Pending::New(r)),
                Some(Cmd::Cancel(_)) | Some(Cmd::Progress) => {}
            }
        }
        let initial: Vec<WatchRequest> = st.resume_requests().into_iter().map(create).collect();
        let (idx, tx, mut stream) = match open(&client, initial).await {
            Ok(s) => s,
            Err(e @ Error::Grpc { .. }) => {
                let _ = out.send(Err(e)).await;
                return;
            }
            Err(_) => {
                failures += 1;
                // Keep queued commands flowing into the state while disconnected.
                let sleep = tokio::time::sleep(Duration::from_millis(100 * failures.min(10)));
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        _ = &mut sleep => break,
                        cmd = cmds.recv() => match cmd {
                            None => return,
                            Some(Cmd::Create(r)) => st.pending.push_back(Pending::New(r)),
                            Some(Cmd::Cancel(uid)) => { st.active.remove(&uid); }
                            Some(Cmd::Progress) => {}
                        }
                    }
                }
                continue;
            }
        };
        loop {
            tokio::select! {
                cmd = cmds.recv() => {
                    let msg = match cmd {
                        None => return,
                        Some(Cmd::Create(r)) => {
                            st.pending.push_back(Pending::New(r.clone()));
                            create(r)
                        }
                        Some(Cmd::Cancel(uid)) => match st.server_id(uid) {
                            Some(sid) => {
                                st.active.remove(&uid);
                                WatchRequest {
                                    request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id: sid })),
                                }
                            }
                            None => continue,
                        },
                        Some(Cmd::Progress) => WatchRequest {
                            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
                        },
                    };
                    if tx.send(msg).await.is_err() {
                        break;
                    }
                }
                m = stream.message() => match m {
                    Ok(Some(resp)) => {
                        failures = 0;
                        if let Some(r) = st.on_response(resp) {
                            if out.send(Ok(r)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => {
                        client.pool.stream_failed(idx);
                        break;
                    }
                    Err(s) => {
                        if classify(&s) == Failure::Answer {
                            let _ = out.send(Err(Error::from(s))).await;
                            return;
                        }
                        client.pool.stream_failed(idx);
                        break;
                    }
                }
            }
        }
        failures += 1;
        tokio::time::sleep(Duration::from_millis(100 * failures.min(10))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftcd_proto::etcdserverpb::ResponseHeader;
    use raftcd_proto::mvccpb::{Event, KeyValue};

    fn hdr(rev: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader { revision: rev, ..Default::default() })
    }

    #[test]
    fn resume_starts_after_last_event_and_keeps_ids() {
        let mut st = State::default();
        st.pending.push_back(Pending::New(WatchCreateRequest { key: b"k".to_vec(), ..Default::default() }));
        let created =
            st.on_response(WatchResponse { created: true, watch_id: 0, header: hdr(5), ..Default::default() });
        assert_eq!(created.unwrap().watch_id, 0);
        assert_eq!(st.active[&0].next_rev, 6);
        let ev = Event { kv: Some(KeyValue { mod_revision: 9, ..Default::default() }), ..Default::default() };
        st.on_response(WatchResponse { watch_id: 0, header: hdr(9), events: vec![ev], ..Default::default() });
        assert_eq!(st.active[&0].next_rev, 10);

        // Stream breaks: the watch is re-created from revision 10 and the new server id maps back to 0.
        let reqs = st.resume_requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].start_revision, 10);
        assert!(st
            .on_response(WatchResponse { created: true, watch_id: 7, header: hdr(12), ..Default::default() })
            .is_none());
        let r = st.on_response(WatchResponse { watch_id: 7, header: hdr(12), ..Default::default() }).unwrap();
        assert_eq!(r.watch_id, 0);
        assert_eq!(st.active[&0].next_rev, 13);
    }

    #[test]
    fn explicit_start_revision_and_cancel() {
        let mut st = State::default();
        st.pending.push_back(Pending::New(WatchCreateRequest { start_revision: 3, ..Default::default() }));
        st.on_response(WatchResponse { created: true, watch_id: 0, header: hdr(8), ..Default::default() });
        assert_eq!(st.active[&0].next_rev, 3);
        let r =
            st.on_response(WatchResponse { watch_id: 0, canceled: true, compact_revision: 4, ..Default::default() });
        assert!(r.unwrap().canceled);
        assert!(st.active.is_empty());
    }
}
