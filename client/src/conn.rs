//! Endpoint pool with failover.
//!
//! Endpoints are tried in the order given, starting from the last one that answered. A member that cannot be
//! dialled, or whose connection breaks, is marked failed and skipped until every other member failed too; it is
//! retried in a later round. A request moves to the next endpoint only when that is safe:
//! - reads ([`Retry::Always`]) after any transport failure or `Unavailable` answer;
//! - writes ([`Retry::IfNotSent`]) only when the failure proves the request never left: the endpoint could not
//!   be dialled, or the channel failed while (re)connecting.
//!
//! A server answer other than `Unavailable` is final and returned as is.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::error::{describe_status, Error, Result};
use crate::options::ConnectOptions;

/// When a request may be sent again to another endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Idempotent: any transport failure may be retried elsewhere.
    Always,
    /// Mutating: retried only when the failure proves the request was never sent.
    IfNotSent,
}

/// Time a failed member is skipped before it is tried again in preference order.
const FAILED_BACKOFF: Duration = Duration::from_secs(1);
/// Pause between two rounds over all endpoints.
const ROUND_PAUSE: Duration = Duration::from_millis(100);
/// Rounds over all endpoints when the caller set no deadline.
const ROUNDS_WITHOUT_DEADLINE: usize = 3;
/// Rounds for a read that keeps getting `Unavailable` answers from servers (no leader, ...).
const SERVER_UNAVAILABLE_ROUNDS: usize = 2;

struct Slot {
    url: String,
    endpoint: Endpoint,
    /// Set for `--insecure-skip-tls-verify`: the connector that does the non-verifying TLS handshake.
    insecure: Option<crate::insecure::InsecureTlsConnector>,
    channel: Mutex<Option<Channel>>,
    failed_at: Mutex<Option<Instant>>,
}

/// The set of endpoints plus the auth token, shared by every service handle.
pub(crate) struct Pool {
    slots: Vec<Slot>,
    preferred: AtomicUsize,
    pub(crate) opts: ConnectOptions,
    token: Mutex<Option<AsciiMetadataValue>>,
}

/// Normalises `host:port` to `http://host:port` (`https://` when TLS options are given, as clientv3 does)
/// and refuses empty input and unknown schemes.
pub(crate) fn endpoint_url(ep: &str, tls: bool) -> Result<String> {
    let ep = ep.trim();
    if ep.is_empty() {
        return Err(Error::InvalidArgument("empty endpoint".into()));
    }
    if ep.starts_with("https://") || ep.starts_with("http://") {
        return Ok(ep.to_string());
    }
    if ep.contains("://") {
        return Err(Error::InvalidArgument(format!("unsupported endpoint scheme in {ep:?}")));
    }
    Ok(if tls { format!("https://{ep}") } else { format!("http://{ep}") })
}

/// tonic's TLS config from the options (PEM files read now, so a bad path fails up front).
fn tls_config(t: &crate::options::TlsOptions) -> Result<tonic::transport::ClientTlsConfig> {
    let read = |p: &str| std::fs::read(p).map_err(|e| Error::InvalidArgument(format!("open {p}: {e}")));
    let mut cfg = tonic::transport::ClientTlsConfig::new();
    if let Some(ca) = &t.ca {
        cfg = cfg.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    match (&t.cert, &t.key) {
        (Some(c), Some(k)) => cfg = cfg.identity(tonic::transport::Identity::from_pem(read(c)?, read(k)?)),
        (None, None) => {}
        _ => return Err(Error::InvalidArgument("a client certificate needs both --cert and --key".into())),
    }
    Ok(cfg)
}

impl Pool {
    pub(crate) fn new(endpoints: &[String], opts: ConnectOptions) -> Result<Pool> {
        let insecure = match &opts.tls {
            Some(t) if t.insecure_skip_verify => {
                Some(crate::insecure::InsecureTlsConnector::new(t.cert.as_deref(), t.key.as_deref())?)
            }
            _ => None,
        };
        let tls = opts.tls.as_ref().map(tls_config).transpose()?;
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument("at least one endpoint is required".into()));
        }
        let mut slots = Vec::with_capacity(endpoints.len());
        for ep in endpoints {
            let url = endpoint_url(ep, tls.is_some())?;
            // With skip-verify our connector does TLS, so tonic is given the plain-http form of the URL.
            let insecure = insecure.clone().filter(|_| url.starts_with("https://"));
            let dial_url = if insecure.is_some() { url.replacen("https://", "http://", 1) } else { url.clone() };
            let mut endpoint = Endpoint::from_shared(dial_url)
                .map_err(|e| Error::InvalidArgument(format!("bad endpoint {ep:?}: {e}")))?
                .connect_timeout(opts.dial_timeout)
                .tcp_nodelay(true);
            if url.starts_with("https://") && insecure.is_none() {
                let cfg = tls.clone().unwrap_or_default();
                endpoint = endpoint.tls_config(cfg).map_err(|e| Error::InvalidArgument(format!("tls: {e}")))?;
            }
            if let Some(ka) = &opts.keep_alive {
                endpoint = endpoint
                    .http2_keep_alive_interval(ka.time)
                    .keep_alive_timeout(ka.timeout)
                    .keep_alive_while_idle(true);
            }
            slots.push(Slot { url, endpoint, insecure, channel: Mutex::new(None), failed_at: Mutex::new(None) });
        }
        Ok(Pool { slots, preferred: AtomicUsize::new(0), opts, token: Mutex::new(None) })
    }

    /// The endpoints as normalised URLs, in the given order.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.url.clone()).collect()
    }

    pub(crate) fn token(&self) -> Option<AsciiMetadataValue> {
        self.token.lock().expect("token lock").clone()
    }

    pub(crate) fn set_token(&self, token: &str) -> Result<()> {
        let v = MetadataValue::try_from(token)
            .map_err(|_| Error::InvalidArgument("auth token is not valid metadata".into()))?;
        *self.token.lock().expect("token lock") = Some(v);
        Ok(())
    }

    pub(crate) fn clear_token(&self) {
        *self.token.lock().expect("token lock") = None;
    }

    /// Deadline of a new unary request.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.opts.command_timeout.map(|t| Instant::now() + t)
    }

    fn mark_failed(&self, idx: usize) {
        *self.slots[idx].channel.lock().expect("channel lock") = None;
        *self.slots[idx].failed_at.lock().expect("failed lock") = Some(Instant::now());
    }

    fn recently_failed(&self, idx: usize) -> bool {
        matches!(*self.slots[idx].failed_at.lock().expect("failed lock"), Some(t) if t.elapsed() < FAILED_BACKOFF)
    }

    /// Order in which to try endpoints: preferred first, recently failed ones last.
    fn order(&self) -> Vec<usize> {
        let n = self.slots.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let all: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
        let (mut good, bad): (Vec<usize>, Vec<usize>) = all.into_iter().partition(|&i| !self.recently_failed(i));
        good.extend(bad);
        good
    }

    /// A connected channel to endpoint `idx`, dialling it if needed (bounded by dial timeout and `deadline`).
    async fn channel(&self, idx: usize, deadline: Option<Instant>) -> Result<Channel> {
        if let Some(c) = self.slots[idx].channel.lock().expect("channel lock").clone() {
            return Ok(c);
        }
        let slot = &self.slots[idx];
        let dial = async {
            match &slot.insecure {
                Some(connector) => slot.endpoint.connect_with_connector(connector.clone()).await,
                None => slot.endpoint.connect().await,
            }
        };
        let res = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), dial).await {
                Ok(r) => r,
                Err(_) => return Err(Error::DeadlineExceeded),
            },
            None => dial.await,
        };
        match res {
            Ok(c) => {
                *self.slots[idx].channel.lock().expect("channel lock") = Some(c.clone());
                *self.slots[idx].failed_at.lock().expect("failed lock") = None;
                Ok(c)
            }
            Err(e) => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(": ");
                    msg.push_str(&s.to_string());
                    src = s.source();
                }
                Err(Error::Transport(format!("dial {}: {msg}", self.slots[idx].url)))
            }
        }
    }

    /// A channel to the first endpoint that can be dialled (for streams), with its index.
    pub(crate) async fn any_channel(&self, deadline: Option<Instant>) -> Result<(usize, Channel)> {
        let rounds = if deadline.is_some() { usize::MAX } else { ROUNDS_WITHOUT_DEADLINE };
        let mut last = Error::Transport("no endpoint available".into());
        for _ in 0..rounds {
            for idx in self.order() {
                match self.channel(idx, deadline).await {
                    Ok(c) => {
                        self.preferred.store(idx, Ordering::Relaxed);
                        return Ok((idx, c));
                    }
                    Err(Error::DeadlineExceeded) => return Err(Error::DeadlineExceeded),
                    Err(e) => {
                        self.mark_failed(idx);
                        last = e;
                    }
                }
            }
            pause(deadline).await?;
        }
        Err(last)
    }

    /// Reports that a stream opened on `idx` broke at the transport level.
    pub(crate) fn stream_failed(&self, idx: usize) {
        self.mark_failed(idx);
        let n = self.slots.len();
        let _ = self.preferred.compare_exchange(idx, (idx + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Runs one unary call with failover. `call` gets a channel and returns the RPC future.
    pub(crate) async fn unary<T, F, Fut>(&self, retry: Retry, deadline: Option<Instant>, mut call: F) -> Result<T>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let rounds = if deadline.is_some() { usize::MAX } else { ROUNDS_WITHOUT_DEADLINE };
        let mut last = Error::Transport("no endpoint available".into());
        let mut server_unavailable_rounds = 0;
        for _ in 0..rounds {
            let mut only_server_unavailable = true;
            for idx in self.order() {
                let chan = match self.channel(idx, deadline).await {
                    Ok(c) => c,
                    Err(Error::DeadlineExceeded) => return Err(Error::DeadlineExceeded),
                    Err(e) => {
                        // Never dialled: nothing was sent, any request may go elsewhere.
                        self.mark_failed(idx);
                        last = e;
                        only_server_unavailable = false;
                        continue;
                    }
                };
                let fut = call(chan);
                let res = match deadline {
                    Some(d) => match tokio::time::timeout_at(d.into(), fut).await {
                        Ok(r) => r,
                        Err(_) => return Err(Error::DeadlineExceeded),
                    },
                    None => fut.await,
                };
                let status = match res {
                    Ok(resp) => {
                        self.preferred.store(idx, Ordering::Relaxed);
                        return Ok(resp.into_inner());
                    }
                    Err(s) => s,
                };
                match classify(&status) {
                    Failure::Transport { not_sent } => {
                        self.mark_failed(idx);
                        only_server_unavailable = false;
                        last = Error::Transport(describe_status(&status));
                        if retry == Retry::IfNotSent && !not_sent {
                            return Err(Error::from(status));
                        }
                    }
                    Failure::ServerUnavailable if retry == Retry::Always => {
                        last = Error::from(status);
                    }
                    Failure::DeadlineExceeded => return Err(Error::DeadlineExceeded),
                    _ => return Err(Error::from(status)),
                }
            }
            if only_server_unavailable {
                server_unavailable_rounds += 1;
                if server_unavailable_rounds >= SERVER_UNAVAILABLE_ROUNDS {
                    return Err(last);
                }
            }
            pause(deadline).await?;
        }
        Err(last)
    }
}

async fn pause(deadline: Option<Instant>) -> Result<()> {
    match deadline {
        Some(d) => {
            let now = Instant::now();
            if now >= d {
                return Err(Error::DeadlineExceeded);
            }
            tokio::time::sleep(ROUND_PAUSE.min(d - now)).await;
            if Instant::now() >= d {
                return Err(Error::DeadlineExceeded);
            }
        }
        None => tokio::time::sleep(ROUND_PAUSE).await,
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The connection failed; `not_sent` when it failed while connecting, before the request went out.
    Transport { not_sent: bool },
    /// A server said `Unavailable` (no leader, stopped, ...): its answer, but another member may do better.
    ServerUnavailable,
    /// The client-side deadline hit inside the gRPC layer.
    DeadlineExceeded,
    /// Any other server answer: final.
    Answer,
}

/// Sorts a failed call's status into transport failure vs. server answer.
pub(crate) fn classify(s: &tonic::Status) -> Failure {
    let msg = s.message();
    let from_server = msg.starts_with("etcdserver: ");
    match s.code() {
        tonic::Code::Unavailable if from_server => Failure::ServerUnavailable,
        tonic::Code::DeadlineExceeded if !from_server => Failure::DeadlineExceeded,
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Cancelled
            if !from_server && is_transport(s) =>
        {
            Failure::Transport { not_sent: is_connect_failure(s) }
        }
        tonic::Code::Unavailable => Failure::Transport { not_sent: is_connect_failure(s) },
        _ => Failure::Answer,
    }
}

fn chain_text(s: &tonic::Status) -> String {
    describe_status(s).to_ascii_lowercase()
}

fn is_transport(s: &tonic::Status) -> bool {
    if std::error::Error::source(s).is_some() {
        return true;
    }
    let t = chain_text(s);
    ["transport", "connection", "connect", "broken pipe", "h2 protocol", "stream closed", "reset"]
        .iter()
        .any(|w| t.contains(w))
}

/// True when the failure happened while establishing the connection, so the request never left.
fn is_connect_failure(s: &tonic::Status) -> bool {
    let t = chain_text(s);
    t.contains("tcp connect error")
        || t.contains("error trying to connect")
        || t.contains("connection refused")
        || t.contains("failed to connect")
        || t.contains("dns error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        assert_eq!(endpoint_url("127.0.0.1:2379", false).unwrap(), "http://127.0.0.1:2379");
        assert_eq!(endpoint_url("127.0.0.1:2379", true).unwrap(), "https://127.0.0.1:2379");
        assert_eq!(endpoint_url(" http://a:1 ", true).unwrap(), "http://a:1");
        assert_eq!(endpoint_url("https://a:1", false).unwrap(), "https://a:1");
        assert!(endpoint_url("", false).is_err());
        assert!(endpoint_url("ftp://a:1", false).is_err());
    }

    #[test]
    fn classification() {
        assert_eq!(classify(&tonic::Status::unavailable("etcdserver: no leader")), Failure::ServerUnavailable);
        assert_eq!(classify(&tonic::Status::invalid_argument("etcdserver: key not found")), Failure::Answer);
        assert_eq!(
            classify(&tonic::Status::unavailable("tcp connect error: Connection refused")),
            Failure::Transport { not_sent: true }
        );
        assert_eq!(classify(&tonic::Status::unavailable("connection reset")), Failure::Transport { not_sent: false });
    }

    #[test]
    fn tls_options_pick_https_and_check_files_up_front() {
        let opts = ConnectOptions { tls: Some(Default::default()), ..Default::default() };
        let pool = Pool::new(&["a:1".into()], opts).unwrap();
        assert_eq!(pool.urls(), vec!["https://a:1".to_string()]);
        let bad = crate::options::TlsOptions { ca: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        let opts = ConnectOptions { tls: Some(bad), ..Default::default() };
        assert!(matches!(Pool::new(&["a:1".into()], opts).err(), Some(Error::InvalidArgument(_))));
        let skip = crate::options::TlsOptions { insecure_skip_verify: true, ..Default::default() };
        let opts = ConnectOptions { tls: Some(skip), ..Default::default() };
        let pool = Pool::new(&["a:1".into()], opts).unwrap();
        assert_eq!(pool.urls(), vec!["https://a:1".to_string()], "skip-verify still speaks https");
        assert!(pool.slots[0].insecure.is_some());
    }
}
