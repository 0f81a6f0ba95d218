//! The outbound side of the peer transport.
//!
//! One bounded queue and one task per peer. The raft thread only `try_send`s: when a peer's queue is full the
//! message is dropped and the peer reported unreachable, and raft retransmits. The task keeps one
//! client-streaming `Peer.Send` call open and packs whatever is queued into each batch; on any failure it
//! reconnects with backoff. Snapshots are exported on the raft thread (the only place where nothing is being
//! applied, so the copy is one point in time) and streamed from the file in chunks by a separate task.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use raftcd_proto::raftcdpb::{peer_client::PeerClient, RaftBatch, SnapshotChunk};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::member::Membership;
use crate::mvcc::Store;
use crate::raft::transport::Transport;
use crate::raft::Input;
use crate::snapshot::state::{export_cut, take_cut};

/// Messages queued per peer at most.
const PEER_QUEUE: usize = 4096;
/// Messages per batch at most.
const MAX_BATCH: usize = 512;
/// Snapshot data per chunk.
const CHUNK: usize = 1024 * 1024;

/// Sends raft messages to the other members.
pub struct PeerTransport {
    me: u64,
    cluster_id: u64,
    members: Arc<Membership>,
    raft_tx: mpsc::Sender<Input>,
    rt: tokio::runtime::Handle,
    queues: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
    /// When each peer last accepted a batch (for the strict reconfiguration check).
    active: Arc<Mutex<HashMap<u64, Instant>>>,
    store: Store,
    snap_dir: PathBuf,
    my_url: String,
    /// Peer URLs learned from incoming traffic, for peers not (yet) in the applied member list.
    learned: Arc<Mutex<HashMap<u64, String>>>,
    /// Client TLS for https peer URLs.
    tls: Option<crate::tls::DialTls>,
    /// Peers that told us we are in another cluster.
    rejected_by: Arc<Mutex<std::collections::HashSet<u64>>>,
}

/// The first peer URL of `id`: from the member list, else from what its own traffic told us.
fn peer_url(members: &Membership, learned: &Mutex<HashMap<u64, String>>, id: u64) -> Option<String> {
    members
        .get(id)
        .and_then(|m| m.peer_ur_ls.first().cloned())
        .or_else(|| learned.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned())
}

impl PeerTransport {
    /// A transport for member `me`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: u64,
        cluster_id: u64,
        members: Arc<Membership>,
        raft_tx: mpsc::Sender<Input>,
        store: Store,
        snap_dir: PathBuf,
        my_url: String,
        tls: Option<crate::tls::DialTls>,
    ) -> Arc<PeerTransport> {
        Arc::new(PeerTransport {
            me,
            cluster_id,
            members,
            raft_tx,
            rt: tokio::runtime::Handle::current(),
            queues: Mutex::new(HashMap::new()),
            active: Arc::new(Mutex::new(HashMap::new())),
            store,
            snap_dir,
            my_url,
            learned: Arc::new(Mutex::new(HashMap::new())),
            tls,
            rejected_by: Arc::new(Mutex::new(Default::default())),
        })
    }

    /// Peers that accepted traffic within `within`.
    pub fn active_peers(&self, within: Duration) -> Vec<u64> {
        let now = Instant::now();
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, t)| now.duration_since(**t) <= within)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Records that `peer` just talked to us, and from which URL.
    pub fn mark_active(&self, peer: u64, url: &str) {
        self.active.lock().unwrap_or_else(|p| p.into_inner()).insert(peer, Instant::now());
        if !url.is_empty() && self.members.get(peer).is_none() {
            self.learned.lock().unwrap_or_else(|p| p.into_inner()).insert(peer, url.to_string());
        }
    }

    fn queue(&self, to: u64) -> mpsc::Sender<Message> {
        let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = q.get(&to) {
            if !tx.is_closed() {
                return tx.clone();
            }
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let worker = PeerWorker {
            me: self.me,
            to,
            cluster_id: self.cluster_id,
            members: self.members.clone(),
            raft_tx: self.raft_tx.clone(),
            active: self.active.clone(),
            learned: self.learned.clone(),
            my_url: self.my_url.clone(),
            tls: self.tls.clone(),
            rejected_by: self.rejected_by.clone(),
        };
        self.rt.spawn(worker.run(rx));
        q.insert(to, tx.clone());
        tx
    }

    fn report_unreachable(&self, to: u64) {
        let _ = self.raft_tx.try_send(Input::Unreachable(to));
    }

    fn send_snapshot(&self, m: Message) {
        let to = m.to;
        let meta = m.get_snapshot().get_metadata();
        let (index, term) = (meta.index, meta.term);
        if self.store.applied_index() != index {
            tracing::warn!(to, index, applied = self.store.applied_index(), "snapshot no longer matches the state");
            let _ = self.raft_tx.try_send(Input::SnapshotSent { to, ok: false });
            return;
        }
        // The cut is taken here, on the raft thread, between applies; the export runs in the background.
        let cut = match take_cut(&self.store, term) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "taking a snapshot cut failed");
                let _ = self.raft_tx.try_send(Input::SnapshotSent { to, ok: false });
                return;
            }
        };
        let path = self.snap_dir.join(format!("send-{term}-{index}-{to:x}.snap"));
        let store = self.store.clone();
        let url = peer_url(&self.members, &self.learned, to);
        let raft_tx = self.raft_tx.clone();
        let cluster_id = self.cluster_id;
        let tls = self.tls.clone();
        self.rt.spawn(async move {
            let started = Instant::now();
            let p = path.clone();
            let exported = tokio::task::spawn_blocking(move || export_cut(&store, &cut, &p)).await;
            match exported {
                Ok(Ok(bytes)) => {
                    tracing::info!(
                        to,
                        index,
                        bytes,
                        took_ms = started.elapsed().as_millis() as u64,
                        "snapshot exported"
                    )
                }
                other => {
                    tracing::error!(to, ?other, "exporting a snapshot failed");
                    let _ = tokio::fs::remove_file(&path).await;
                    let _ = raft_tx.send(Input::SnapshotSent { to, ok: false }).await;
                    return;
                }
            }
            let ok = match url {
                Some(url) => match stream_snapshot(&url, tls.as_ref(), cluster_id, &m, &path).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(to, error = %e, "sending snapshot failed");
                        false
                    }
                },
                None => false,
            };
            let _ = tokio::fs::remove_file(&path).await;
            let _ = raft_tx.send(Input::SnapshotSent { to, ok }).await;
        });
    }
}

async fn stream_snapshot(
    url: &str,
    tls: Option<&crate::tls::DialTls>,
    cluster_id: u64,
    m: &Message,
    path: &PathBuf,
) -> Result<(), String> {
    let channel =
        crate::tls::endpoint(url, tls).map_err(|e| e.to_string())?.connect().await.map_err(|e| e.to_string())?;
    let mut client = PeerClient::new(channel).max_encoding_message_size(64 << 20);
    let raft_message = m.write_to_bytes().map_err(|e| e.to_string())?;
    let mut file = tokio::fs::File::open(path).await.map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel::<SnapshotChunk>(4);
    let call = tokio::spawn(async move { client.snapshot(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    let mut first = Some(raft_message);
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            let n = file.read(&mut buf[filled..]).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        let last = filled < CHUNK;
        let chunk = SnapshotChunk { cluster_id, raft_message: first.take().unwrap_or_default(), data: buf, last };
        if tx.send(chunk).await.is_err() {
            break;
        }
        if last {
            break;
        }
    }
    drop(tx);
    call.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    Ok(())
}

impl Transport for PeerTransport {
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            if m.to == self.me || m.to == 0 {
                continue;
            }
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.send_snapshot(m);
                continue;
            }
            let to = m.to;
            match self.queue(to).try_send(m) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => self.report_unreachable(to),
            }
        }
    }
}

struct PeerWorker {
    me: u64,
    to: u64,
    cluster_id: u64,
    members: Arc<Membership>,
    raft_tx: mpsc::Sender<Input>,
    active: Arc<Mutex<HashMap<u64, Instant>>>,
    learned: Arc<Mutex<HashMap<u64, String>>>,
    my_url: String,
    tls: Option<crate::tls::DialTls>,
    rejected_by: Arc<Mutex<std::collections::HashSet<u64>>>,
}

/// Longest wait between two attempts to reach a peer that is down. A restarted member hears from the leader
/// (and can serve linearizable requests) only once the leader reconnects, so this bounds how long a restart
/// takes; an attempt on a refused port costs next to nothing (etcd's stream readers retry every 100 ms).
const RECONNECT_MAX: Duration = Duration::from_millis(250);

impl PeerWorker {
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let Some(url) = peer_url(&self.members, &self.learned, self.to) else {
                // Removed from the cluster: stop once nobody queues for it any more.
                if rx.recv().await.is_none() {
                    return;
                }
                continue;
            };
            let endpoint = match crate::tls::endpoint(&url, self.tls.as_ref()) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(peer = self.to, %url, error = %e, "invalid peer URL");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let channel = match endpoint.connect().await {
                Ok(c) => c,
                Err(_) => {
                    self.unreachable(&mut rx);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            let mut client =
                PeerClient::new(channel).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20);
            let (btx, brx) = mpsc::channel::<RaftBatch>(8);
            let call = tokio::spawn(async move { client.send(tokio_stream::wrappers::ReceiverStream::new(brx)).await });
            loop {
                let Some(first) = rx.recv().await else {
                    return;
                };
                let mut msgs = vec![first];
                while msgs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(m) => msgs.push(m),
                        Err(_) => break,
                    }
                }
                let messages = msgs.iter().filter_map(|m| m.write_to_bytes().ok()).collect();
                let batch =
                    RaftBatch { cluster_id: self.cluster_id, from: self.me, messages, from_url: self.my_url.clone() };
                if btx.send(batch).await.is_err() {
                    break;
                }
                self.active.lock().unwrap_or_else(|p| p.into_inner()).insert(self.to, Instant::now());
            }
            match call.await {
                Ok(Err(status)) if status.code() == tonic::Code::PermissionDenied => {
                    tracing::error!(peer = self.to, message = %status.message(), "peer refused our messages");
                    if status.message().contains("cluster id mismatch") {
                        self.foreign_cluster(self.to);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => {}
            }
            self.unreachable(&mut rx);
        }
    }

    /// A peer says we belong to another cluster. When most of the other members say so, this member is
    /// the one that is misconfigured (say, a data dir from another cluster): it refuses to run.
    fn foreign_cluster(&self, peer: u64) {
        let mut rejected = self.rejected_by.lock().unwrap_or_else(|p| p.into_inner());
        rejected.insert(peer);
        let others = self.members.list().iter().filter(|m| m.id != self.me).count().max(1);
        if rejected.len() * 2 > others {
            tracing::error!(
                cluster_id = %format!("{:x}", self.cluster_id),
                "the members at this cluster's peer URLs belong to a different cluster; refusing to run (check --data-dir and --initial-cluster-token)"
            );
            eprintln!("raftcd: cluster id mismatch with the other members; exiting");
            std::process::exit(1);
        }
    }

    /// Drops what is queued (raft resends) and tells raft the peer is unreachable.
    fn unreachable(&self, rx: &mut mpsc::Receiver<Message>) {
        while rx.try_recv().is_ok() {}
        self.active.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.to);
        let _ = self.raft_tx.try_send(Input::Unreachable(self.to));
    }
}
