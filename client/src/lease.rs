//! Lease service: grant, revoke, keep-alive (raw stream, once, or a background keeper), time-to-live, list.

use std::time::Duration;

use raftcd_proto::etcdserverpb::lease_client::LeaseClient;
use raftcd_proto::etcdserverpb::*;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::conn::{classify, Failure, Retry};
use crate::{unary_rpc, Client, Error, Result};

pub(crate) fn client(ch: Channel) -> LeaseClient<Channel> {
    LeaseClient::new(ch).max_decoding_message_size(usize::MAX)
}

type KeepAliveStream = (usize, mpsc::Sender<LeaseKeepAliveRequest>, tonic::Streaming<LeaseKeepAliveResponse>);

/// What etcd's client reports when a keep-alive answers TTL <= 0.
fn lease_not_found() -> Error {
    Error::Grpc { code: tonic::Code::NotFound, message: "etcdserver: requested lease not found".into() }
}

impl Client {
    unary_rpc!(
        /// Creates a lease.
        lease_grant => client, lease_grant, LeaseGrantRequest, LeaseGrantResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// Revokes a lease and deletes its keys.
        lease_revoke => client, lease_revoke, LeaseRevokeRequest, LeaseRevokeResponse, Retry::IfNotSent
    );
    unary_rpc!(
        /// Remaining and granted TTL of a lease, optionally with its keys.
        lease_time_to_live => client, lease_time_to_live, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
        Retry::Always
    );
    unary_rpc!(
        /// Every live lease.
        lease_leases => client, lease_leases, LeaseLeasesRequest, LeaseLeasesResponse, Retry::Always
    );

    /// Opens a raw keep-alive stream: send requests on the returned sender, read answers from the stream.
    ///
    /// `first` is queued before the call starts: etcd (grpc-go) sends the response headers only with the
    /// first answer, so a stream opened empty would wait for its headers forever.
    pub async fn lease_keep_alive_stream(
        &self,
        first: LeaseKeepAliveRequest,
    ) -> Result<(mpsc::Sender<LeaseKeepAliveRequest>, tonic::Streaming<LeaseKeepAliveResponse>)> {
        self.open_keep_alive(first).await.map(|(_, tx, s)| (tx, s))
    }

    async fn open_keep_alive(&self, first: LeaseKeepAliveRequest) -> Result<KeepAliveStream> {
        self.ensure_auth().await?;
        let (idx, ch) = self.pool.any_channel(self.pool.deadline()).await?;
        let (tx, rx) = mpsc::channel(16);
        tx.send(first).await.map_err(|_| Error::StreamClosed("keep-alive stream closed".into()))?;
        match client(ch).lease_keep_alive(self.request(ReceiverStream::new(rx))).await {
            Ok(resp) => Ok((idx, tx, resp.into_inner())),
            Err(s) => {
                if matches!(classify(&s), Failure::Transport { .. }) {
                    self.pool.stream_failed(idx);
                }
                Err(Error::from(s))
            }
        }
    }

    /// Renews a lease once. A lease that is gone fails with `etcdserver: requested lease not found`.
    pub async fn lease_keep_alive_once(&self, id: i64) -> Result<LeaseKeepAliveResponse> {
        let deadline = self.pool.deadline();
        let once = async {
            let (_tx, mut stream) = self.lease_keep_alive_stream(LeaseKeepAliveRequest { id }).await?;
            match stream.message().await? {
                Some(r) if r.ttl > 0 => Ok(r),
                Some(_) => Err(lease_not_found()),
                None => Err(Error::StreamClosed("keep-alive stream closed".into())),
            }
        };
        match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), once).await.map_err(|_| Error::DeadlineExceeded)?,
            None => once.await,
        }
    }

    /// Keeps a lease alive in a background task (a renewal every TTL/3), reconnecting to another endpoint
    /// when the stream breaks. The handle yields every answer and ends once the lease is gone (TTL <= 0);
    /// dropping it stops the renewals.
    pub fn lease_keep_alive(&self, id: i64) -> KeepAliveHandle {
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(keeper(self.clone(), id, tx));
        KeepAliveHandle { rx, task }
    }
}

/// Answers of a background lease keeper (see [`Client::lease_keep_alive`]).
pub struct KeepAliveHandle {
    rx: mpsc::Receiver<Result<LeaseKeepAliveResponse>>,
    task: JoinHandle<()>,
}

impl KeepAliveHandle {
    /// The next answer; `None` once the lease expired or was revoked.
    pub async fn next(&mut self) -> Option<Result<LeaseKeepAliveResponse>> {
        self.rx.recv().await
    }
}

impl Drop for KeepAliveHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The keeper task: renew, report, sleep TTL/3; resume on another endpoint after a transport failure.
async fn keeper(client: Client, id: i64, out: mpsc::Sender<Result<LeaseKeepAliveResponse>>) {
    let mut failures = 0u32;
    loop {
        let (idx, tx, mut stream) = match client.open_keep_alive(LeaseKeepAliveRequest { id }).await {
            Ok(s) => s,
            Err(e) => {
                if e.code().is_some() && !matches!(e.code(), Some(tonic::Code::Unavailable)) {
                    let _ = out.send(Err(e)).await;
                    return;
                }
                failures += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(10)))).await;
                continue;
            }
        };
        let mut first = true;
        loop {
            if !first && tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                break;
            }
            first = false;
            match stream.message().await {
                Ok(Some(resp)) => {
                    failures = 0;
                    if resp.ttl <= 0 {
                        return;
                    }
                    let wait = Duration::from_millis((resp.ttl as u64 * 1000 / 3).max(500));
                    if out.send(Ok(resp)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(wait).await;
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
        failures += 1;
        tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(10)))).await;
    }
}
