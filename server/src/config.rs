//! Command-line flags and environment, named and defaulted as etcd's (`RAFTCD_*` mirrors `ETCD_*`).

use std::time::Duration;

use clap::Parser;

/// Server configuration. Flag names and defaults follow etcd v3.5.
#[derive(Parser, Debug, Clone)]
#[command(name = "raftcd", version, about = "A Raft-replicated key-value store that speaks the etcd v3 API")]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, env = "RAFTCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: "<name>.raftcd").
    #[arg(long, env = "RAFTCD_DATA_DIR")]
    pub data_dir: Option<String>,
    /// List of URLs to listen on for client traffic.
    #[arg(long, env = "RAFTCD_LISTEN_CLIENT_URLS", default_value = "http://127.0.0.1:2379")]
    pub listen_client_urls: String,
    /// List of this member's client URLs to advertise to the rest of the cluster.
    #[arg(long, env = "RAFTCD_ADVERTISE_CLIENT_URLS")]
    pub advertise_client_urls: Option<String>,
    /// List of additional URLs to listen on that respond to the /metrics and /health endpoints.
    #[arg(long, env = "RAFTCD_LISTEN_METRICS_URLS")]
    pub listen_metrics_urls: Option<String>,
    /// Path to the client server TLS cert file.
    #[arg(long, env = "RAFTCD_CERT_FILE")]
    pub cert_file: Option<String>,
    /// Path to the client server TLS key file.
    #[arg(long, env = "RAFTCD_KEY_FILE")]
    pub key_file: Option<String>,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, env = "RAFTCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<String>,
    /// Enable client cert authentication.
    #[arg(long, env = "RAFTCD_CLIENT_CERT_AUTH", default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub client_cert_auth: bool,
    /// Type of auth token: "simple", or "jwt,pub-key=PATH,priv-key=PATH,sign-method=ES256|RS256|...,ttl=5m".
    #[arg(long, env = "RAFTCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// Seconds a simple token lives after its last use.
    #[arg(long, env = "RAFTCD_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// bcrypt cost for hashing passwords (4..=31).
    #[arg(long, env = "RAFTCD_BCRYPT_COST", default_value_t = 10)]
    pub bcrypt_cost: u32,
    /// Client TLS using generated certificates.
    #[arg(long, env = "RAFTCD_AUTO_TLS", default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub auto_tls: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long, env = "RAFTCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<String>,
    /// Path to the peer server TLS key file.
    #[arg(long, env = "RAFTCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<String>,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "RAFTCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<String>,
    /// Enable peer client cert authentication.
    #[arg(long, env = "RAFTCD_PEER_CLIENT_CERT_AUTH", default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub peer_client_cert_auth: bool,
    /// Peer TLS using self-generated certificates (encrypted; peers do not verify each other, as etcd).
    #[arg(long, env = "RAFTCD_PEER_AUTO_TLS", default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub peer_auto_tls: bool,
    /// Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be
    /// auto-populated by rustls).
    #[arg(long, env = "RAFTCD_CIPHER_SUITES")]
    pub cipher_suites: Option<String>,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, env = "RAFTCD_LISTEN_PEER_URLS", default_value = "http://127.0.0.1:2380")]
    pub listen_peer_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, env = "RAFTCD_INITIAL_ADVERTISE_PEER_URLS")]
    pub initial_advertise_peer_urls: Option<String>,
    /// Initial cluster configuration for bootstrapping: "name=peer-url,...".
    #[arg(long, env = "RAFTCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ("new" or "existing").
    #[arg(long, env = "RAFTCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token for the cluster during bootstrap.
    #[arg(long, env = "RAFTCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "RAFTCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "RAFTCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "RAFTCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "RAFTCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "RAFTCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Maximum concurrent streams that each client can open at a time (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
    /// of the client listener; etcd's default is math.MaxUint32).
    #[arg(long, env = "RAFTCD_MAX_CONCURRENT_STREAMS", default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    /// Maximum watchers on one Watch stream; creating one more is answered canceled on that stream only
    /// (raftcd's own: etcd has no limit, hence the generous default).
    #[arg(long, env = "RAFTCD_MAX_WATCHERS_PER_STREAM", default_value_t = 10_000)]
    pub max_watchers_per_stream: usize,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).
    #[arg(long, env = "RAFTCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: i64,
    /// Interpret 'auto-compaction-retention' one of: 'periodic', 'revision'.
    #[arg(long, env = "RAFTCD_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// Auto compaction retention (0 disables).
    #[arg(long, env = "RAFTCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,
    /// Duration of periodic watch progress notifications.
    #[arg(long, env = "RAFTCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub experimental_watch_progress_notify_interval: Duration,
    /// Check data corruption before serving client requests.
    #[arg(long, env = "RAFTCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub experimental_initial_corrupt_check: bool,
    /// Duration of time between cluster corruption check passes (0 disables).
    #[arg(long, env = "RAFTCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", default_value = "0", value_parser = parse_duration)]
    pub experimental_corrupt_check_time: Duration,
    /// Currently only supports 'zap' for structured logging (accepted for compatibility).
    #[arg(long, env = "RAFTCD_LOGGER", default_value = "zap")]
    pub logger: String,
    /// Configures log level. Only supports debug, info, warn, error, panic, or fatal.
    #[arg(long, env = "RAFTCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format: json or text.
    #[arg(long, env = "RAFTCD_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl Config {
    /// The data directory, defaulting to "<name>.raftcd" as etcd defaults to "<name>.etcd".
    pub fn data_dir(&self) -> String {
        self.data_dir.clone().unwrap_or_else(|| format!("{}.raftcd", self.name))
    }

    /// Client URLs advertised to others (defaults to the listen URLs).
    pub fn advertise_client_urls(&self) -> Vec<String> {
        split_urls(self.advertise_client_urls.as_deref().unwrap_or(&self.listen_client_urls))
    }

    /// Peer URLs advertised to others (defaults to the listen URLs).
    pub fn advertise_peer_urls(&self) -> Vec<String> {
        split_urls(self.initial_advertise_peer_urls.as_deref().unwrap_or(&self.listen_peer_urls))
    }

    /// Checks the auth flags: a simple or a loadable JWT token spec; bcrypt's cost must be in its range.
    pub fn check_auth(&self) -> Result<(), String> {
        self.jwt()?;
        if !(4..=31).contains(&self.bcrypt_cost) {
            return Err(format!("--bcrypt-cost {} is out of range [4, 31]", self.bcrypt_cost));
        }
        if self.auth_token_ttl == 0 {
            return Err("--auth-token-ttl must be at least 1 second".into());
        }
        Ok(())
    }

    /// The JWT token keys when `--auth-token jwt,...`; None for simple tokens.
    pub fn jwt(&self) -> Result<Option<crate::auth::jwt::JwtTokens>, String> {
        match self.auth_token.as_str() {
            "simple" => Ok(None),
            spec => crate::auth::jwt::JwtTokens::from_flag(spec).map(Some),
        }
    }

    /// Ticks between elections; election_timeout / heartbeat_interval.
    pub fn election_ticks(&self) -> usize {
        (self.election_timeout / self.heartbeat_interval.max(1)).max(2) as usize
    }

    /// How long a proposal may wait before "request timed out": 5 s plus two election timeouts, as etcd.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + Duration::from_millis(2 * self.election_timeout)
    }

    /// The minimum lease TTL in seconds, derived from the election timeout as etcd does.
    pub fn min_lease_ttl(&self) -> i64 {
        // etcd: (3*electionTicks)/2 * heartbeat, rounded up to seconds.
        let ms = (3 * self.election_ticks() as u64) / 2 * self.heartbeat_interval;
        ms.div_ceil(1000) as i64
    }
}

impl Config {
    fn suites(&self) -> Vec<String> {
        self.cipher_suites.as_deref().map(split_urls).unwrap_or_default()
    }

    /// TLS files for the client port: from --cert-file/--key-file, or generated by --auto-tls.
    pub fn client_tls(&self) -> Result<Option<crate::tls::TlsFiles>, String> {
        let https = split_urls(&self.listen_client_urls).iter().any(|u| u.starts_with("https://"));
        let files = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => Some(crate::tls::TlsFiles { cert: c.into(), key: k.into(), ..Default::default() }),
            (None, None) if self.auto_tls && https => {
                let dir = std::path::Path::new(&self.data_dir()).join("fixtures").join("client");
                let hosts = crate::tls::hosts_of(&self.advertise_client_urls());
                Some(crate::tls::auto_tls(&dir, &hosts).map_err(|e| e.to_string())?)
            }
            (None, None) => None,
            _ => return Err("--cert-file and --key-file go together".into()),
        };
        if https && files.is_none() {
            return Err(format!(
                "TLS key/cert (--cert-file, --key-file) must be provided for client url {}",
                self.listen_client_urls
            ));
        }
        Ok(files.map(|f| crate::tls::TlsFiles {
            trusted_ca: self.trusted_ca_file.as_ref().map(Into::into),
            client_cert_auth: self.client_cert_auth,
            cipher_suites: self.suites(),
            ..f
        }))
    }

    /// TLS files for the peer port (and for connecting to peers).
    pub fn peer_tls(&self) -> Result<Option<crate::tls::TlsFiles>, String> {
        let https = split_urls(&self.listen_peer_urls).iter().any(|u| u.starts_with("https://"));
        let files = match (&self.peer_cert_file, &self.peer_key_file) {
            (Some(c), Some(k)) => crate::tls::TlsFiles {
                cert: c.into(),
                key: k.into(),
                trusted_ca: self.peer_trusted_ca_file.as_ref().map(Into::into),
                client_cert_auth: self.peer_client_cert_auth,
                cipher_suites: self.suites(),
                skip_verify: false,
            },
            (None, None) if self.peer_auto_tls && https => {
                // As etcd: a self-signed certificate per member; peers encrypt but cannot verify each other
                // (and so cannot require client certificates).
                if self.peer_client_cert_auth {
                    return Err("--peer-client-cert-auth needs --peer-trusted-ca-file; self-signed --peer-auto-tls certificates cannot be verified".into());
                }
                let dir = std::path::Path::new(&self.data_dir()).join("fixtures").join("peer");
                let hosts = crate::tls::hosts_of(&self.advertise_peer_urls());
                crate::tls::TlsFiles {
                    cipher_suites: self.suites(),
                    skip_verify: true,
                    ..crate::tls::auto_tls(&dir, &hosts).map_err(|e| e.to_string())?
                }
            }
            (None, None) if https => {
                return Err(format!(
                    "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url {}",
                    self.listen_peer_urls
                ))
            }
            (None, None) => return Ok(None),
            _ => return Err("--peer-cert-file and --peer-key-file go together".into()),
        };
        Ok(Some(files))
    }
}

/// Splits a comma-separated URL list.
pub fn split_urls(s: &str) -> Vec<String> {
    s.split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect()
}

/// Turns "http://host:port" (or "host:port") into a socket address string for binding.
pub fn url_to_addr(url: &str) -> Result<std::net::SocketAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .or_else(|| url.strip_prefix("unix://"))
        .unwrap_or(url);
    let rest = rest.trim_end_matches('/');
    use std::net::ToSocketAddrs;
    rest.to_socket_addrs()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("invalid URL {url:?}: no address"))
}

/// Parses Go-style durations: "10m", "5s", "100ms", "1h", "1h30m".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        num.clear();
        let secs = match unit.as_str() {
            "ns" => v / 1e9,
            "us" | "µs" => v / 1e6,
            "ms" => v / 1e3,
            "s" => v,
            "m" => v * 60.0,
            "h" => v * 3600.0,
            _ => return Err(format!("invalid duration unit in {s:?}")),
        };
        total += Duration::from_secs_f64(secs);
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(format!("invalid duration {s:?} (missing unit)"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn defaults_match_etcd() {
        let c = Config::parse_from(["raftcd"]);
        assert_eq!(c.data_dir(), "default.raftcd");
        assert_eq!(c.advertise_client_urls(), vec!["http://127.0.0.1:2379"]);
        assert_eq!(c.election_ticks(), 10);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_concurrent_streams, u32::MAX);
        assert_eq!(c.max_watchers_per_stream, 10_000);
        assert_eq!(c.min_lease_ttl(), 2);
    }

    #[test]
    fn urls_become_addresses() {
        assert_eq!(url_to_addr("http://127.0.0.1:2379").unwrap().port(), 2379);
        assert!(url_to_addr("http://nonsense").is_err());
    }
}
