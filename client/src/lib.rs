//! Typed async client for the etcd v3 API, for raftcd and etcd alike.
//!
//! ```no_run
//! # async fn demo() -> raftcd_client::Result<()> {
//! use raftcd_client::{Client, ConnectOptions};
//! let client = Client::connect(&["127.0.0.1:2379".to_string()], ConnectOptions::default()).await?;
//! client.put_kv("k", "v").await?;
//! let resp = client.get_kv("k").await?;
//! assert_eq!(resp.kvs[0].value, b"v");
//! # Ok(()) }
//! ```
//!
//! Every RPC takes the wire request struct from [`proto`] and returns the wire response, so nothing of the API
//! is hidden; a few helpers (`get_kv`, `put_kv`, [`range_end_for_prefix`]) cover the common cases. Unary calls
//! are bounded by `command_timeout` and fail over between endpoints (see [`ConnectOptions`]); watches resume
//! on another endpoint from the last revision seen + 1.

mod auth;
mod cluster;
mod conn;
mod error;
mod insecure;
mod kv;
mod lease;
mod maintenance;
mod options;
mod watch;

use std::future::Future;
use std::sync::Arc;

use tonic::transport::Channel;

pub use error::{go_code_name, Error, Result};
pub use insecure::InsecureTlsConnector;
pub use kv::{range_end_for_prefix, FROM_KEY};
pub use lease::KeepAliveHandle;
pub use maintenance::SnapshotStream;
pub use options::{ConnectOptions, KeepAlive, TlsOptions};
pub use raftcd_proto as proto;
pub use watch::Watcher;

use conn::{Pool, Retry};

/// A cheap-to-clone handle on a cluster.
#[derive(Clone)]
pub struct Client {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoints", &self.pool.urls()).finish()
    }
}

/// What a server without authentication answers Authenticate with.
const AUTH_NOT_ENABLED: &str = "etcdserver: authentication is not enabled";

/// Message of the error that makes the client authenticate again.
const INVALID_TOKEN: &str = "etcdserver: invalid auth token";

/// A write checked against an auth store that changed since the token was resolved: clientv3 authenticates
/// again and retries, and so does this client.
const AUTH_OLD_REVISION: &str = "etcdserver: revision of auth store is old";

impl Client {
    /// Builds a client over `endpoints` (`host:port` or `http://host:port`).
    ///
    /// No connection is made here: the first request dials, like etcd's Go client, so an unreachable cluster
    /// shows up as that request's error (`context deadline exceeded` once `command_timeout` passes). When
    /// `user` is set, the client authenticates before its first request.
    pub async fn connect(endpoints: &[String], opts: ConnectOptions) -> Result<Client> {
        let pool = Pool::new(endpoints, opts)?;
        Ok(Client { pool: Arc::new(pool) })
    }

    /// A client on one endpoint only, sharing this one's options and auth token (for per-member calls such
    /// as status, hash_kv, defragment).
    pub fn for_endpoint(&self, endpoint: &str) -> Result<Client> {
        let pool = Pool::new(&[endpoint.to_string()], self.pool.opts.clone())?;
        if let Some(t) = self.pool.token() {
            pool.set_token(t.to_str().unwrap_or_default())?;
        }
        Ok(Client { pool: Arc::new(pool) })
    }

    /// The endpoints as normalised URLs.
    pub fn endpoints(&self) -> Vec<String> {
        self.pool.urls()
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ConnectOptions {
        &self.pool.opts
    }

    /// Wraps a message with the auth token (and optional extra metadata).
    pub(crate) fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = self.pool.token() {
            r.metadata_mut().insert("token", t);
        }
        r
    }

    fn has_credentials(&self) -> bool {
        self.pool.opts.user.is_some()
    }

    /// Authenticates now with the configured user (a no-op without one), so bad credentials show up before
    /// the first request.
    pub async fn login(&self) -> Result<()> {
        self.ensure_auth().await
    }

    /// Authenticates with the configured user when there is no token yet.
    pub(crate) async fn ensure_auth(&self) -> Result<()> {
        if !self.has_credentials() || self.pool.token().is_some() {
            return Ok(());
        }
        let req = proto::etcdserverpb::AuthenticateRequest {
            name: self.pool.opts.user.clone().unwrap_or_default(),
            password: self.pool.opts.password.clone().unwrap_or_default(),
        };
        let deadline = self.pool.deadline();
        let resp = self
            .pool
            .unary(Retry::Always, deadline, |ch| {
                let r = tonic::Request::new(req.clone());
                async move { auth::client(ch).authenticate(r).await }
            })
            .await;
        match resp {
            Ok(resp) => self.pool.set_token(&resp.token),
            // As clientv3: credentials for a cluster without auth are ignored, requests go unauthenticated.
            Err(e) if e.message() == Some(AUTH_NOT_ENABLED) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One unary call: auth, failover, deadline, and one re-authentication on an expired token.
    pub(crate) async fn call<Req, Resp, F, Fut>(&self, retry: Retry, req: Req, f: F) -> Result<Resp>
    where
        Req: Clone,
        F: Fn(Channel, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.ensure_auth().await?;
        let deadline = self.pool.deadline();
        let res = self.pool.unary(retry, deadline, |ch| f(ch, self.request(req.clone()))).await;
        match res {
            Err(e) if self.has_credentials() && matches!(e.message(), Some(INVALID_TOKEN | AUTH_OLD_REVISION)) => {
                self.pool.clear_token();
                self.ensure_auth().await?;
                self.pool.unary(retry, deadline, |ch| f(ch, self.request(req.clone()))).await
            }
            other => other,
        }
    }
}

/// Declares a unary RPC method on [`Client`].
macro_rules! unary_rpc {
    ($(#[$doc:meta])* $name:ident => $mk:path, $rpc:ident, $req:ty, $resp:ty, $retry:expr) => {
        $(#[$doc])*
        pub async fn $name(&self, req: $req) -> $crate::Result<$resp> {
            self.call($retry, req, |ch, r| async move { $mk(ch).$rpc(r).await }).await
        }
    };
}
pub(crate) use unary_rpc;
