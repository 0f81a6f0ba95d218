//! Connection options.

use std::time::Duration;

/// HTTP/2 keep-alive pings on idle connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepAlive {
    /// Interval between pings.
    pub time: Duration,
    /// How long to wait for a ping's answer before the connection counts as dead.
    pub timeout: Duration,
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive { time: Duration::from_secs(2), timeout: Duration::from_secs(6) }
    }
}

/// TLS material (PEM file paths). With it, endpoints without a scheme are dialled over https.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// CA bundle (PEM) that verifies the server.
    pub ca: Option<String>,
    /// Client certificate (PEM).
    pub cert: Option<String>,
    /// Client key (PEM).
    pub key: Option<String>,
    /// Skip server certificate verification.
    pub insecure_skip_verify: bool,
}

/// How [`crate::Client::connect`] reaches the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Bound on establishing one TCP+HTTP/2 connection to one endpoint.
    pub dial_timeout: Duration,
    /// Bound on one unary request, retries and dialing included; `None` waits forever.
    pub command_timeout: Option<Duration>,
    /// Keep-alive pings; `None` disables them.
    pub keep_alive: Option<KeepAlive>,
    /// User for etcd auth: the client calls Authenticate and sends the token with every request.
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<String>,
    /// TLS (rustls through tonic).
    pub tls: Option<TlsOptions>,
    /// Send `hasleader=true` metadata on watch streams so a member without a leader refuses them.
    pub require_leader: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            dial_timeout: Duration::from_secs(2),
            command_timeout: Some(Duration::from_secs(5)),
            keep_alive: Some(KeepAlive::default()),
            user: None,
            password: None,
            tls: None,
            require_leader: false,
        }
    }
}
