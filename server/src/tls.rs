//! TLS with rustls (no OpenSSL): server configs for the client and peer ports with optional client
//! certificate authentication, certificate files reloaded when they change (rotation without a restart),
//! self-signed certificates for --auto-tls, client configs for peer connections, and a small CA for tests
//! and the secure-cluster guide.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio_rustls::rustls::{
    self,
    crypto::ring::default_provider,
    pki_types::{CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};

use crate::error::{Error, Result};

/// Certificate files of one listener, as etcd's flags give them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA bundle used to verify client certificates.
    pub trusted_ca: Option<PathBuf>,
    /// Require and verify a client certificate signed by `trusted_ca`.
    pub client_cert_auth: bool,
    /// etcd --cipher-suites names (TLS 1.2); empty = rustls's defaults.
    pub cipher_suites: Vec<String>,
    /// Self-signed (`--peer-auto-tls`): other members' certificates cannot be verified, only used to encrypt.
    pub skip_verify: bool,
}

/// How this member dials the TLS URLs of other members.
#[derive(Clone)]
pub enum DialTls {
    /// Verify the server against the trusted CA, presenting our certificate.
    Verify(tonic::transport::ClientTlsConfig),
    /// `--peer-auto-tls`: encrypt without verifying the self-signed certificates, as etcd does.
    SkipVerify(raftcd_client::InsecureTlsConnector),
}

/// An endpoint of another member, dialled with the right TLS.
pub struct Dial {
    endpoint: tonic::transport::Endpoint,
    insecure: Option<raftcd_client::InsecureTlsConnector>,
}

impl Dial {
    /// Per-request timeout.
    pub fn timeout(mut self, d: std::time::Duration) -> Dial {
        self.endpoint = self.endpoint.timeout(d);
        self
    }

    /// Connects now.
    pub async fn connect(&self) -> std::result::Result<tonic::transport::Channel, tonic::transport::Error> {
        match &self.insecure {
            Some(c) => self.endpoint.connect_with_connector(c.clone()).await,
            None => self.endpoint.connect().await,
        }
    }

    /// Connects on first use.
    pub fn connect_lazy(&self) -> tonic::transport::Channel {
        match &self.insecure {
            Some(c) => self.endpoint.connect_with_connector_lazy(c.clone()),
            None => self.endpoint.connect_lazy(),
        }
    }
}

fn tls_err(what: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("tls: {what}"))
}

/// Reads PEM certificates.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let f = std::fs::File::open(path).map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(f))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_err(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

/// Reads a PEM private key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let f = std::fs::File::open(path).map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut BufReader::new(f))
        .map_err(|e| tls_err(format!("{}: {e}", path.display())))?
        .ok_or_else(|| tls_err(format!("{}: no private key", path.display())))
}

fn provider(cipher_suites: &[String]) -> Result<rustls::crypto::CryptoProvider> {
    let mut p = default_provider();
    if !cipher_suites.is_empty() {
        let wanted: Vec<String> = cipher_suites.iter().map(|s| s.trim().to_string()).collect();
        p.cipher_suites.retain(|s| {
            let name = format!("{:?}", s.suite());
            // TLS 1.3 suites are always allowed, as Go does.
            name.starts_with("TLS13_") || wanted.contains(&name)
        });
        for w in &wanted {
            if !default_provider().cipher_suites.iter().any(|s| format!("{:?}", s.suite()) == *w) {
                return Err(tls_err(format!("unsupported cipher suite {w:?}")));
            }
        }
    }
    Ok(p)
}

/// Builds a server config (TLS 1.2 and 1.3, ALPN h2 + http/1.1).
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig> {
    let provider = Arc::new(provider(&files.cipher_suites)?);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(tls_err)?;
    let builder = if files.client_cert_auth {
        let ca = files.trusted_ca.as_ref().ok_or_else(|| tls_err("--client-cert-auth needs --trusted-ca-file"))?;
        let mut roots = RootCertStore::empty();
        for c in load_certs(ca)? {
            roots.add(c).map_err(tls_err)?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().map_err(tls_err)?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder.with_single_cert(load_certs(&files.cert)?, load_key(&files.key)?).map_err(tls_err)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// A TLS acceptor that rebuilds its config when the certificate, key or CA file changes on disk, so
/// certificates rotate without a restart. A config that fails to load keeps the previous one in use.
pub struct ReloadingAcceptor {
    files: TlsFiles,
    current: Mutex<(tokio_rustls::TlsAcceptor, Vec<Option<SystemTime>>)>,
}

impl ReloadingAcceptor {
    /// Loads the files once (errors are fatal at start-up).
    pub fn new(files: TlsFiles) -> Result<ReloadingAcceptor> {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(&files)?));
        let stamps = Self::stamps(&files);
        Ok(ReloadingAcceptor { files, current: Mutex::new((acceptor, stamps)) })
    }

    fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
        let mut v = vec![mtime(&files.cert), mtime(&files.key)];
        if let Some(ca) = &files.trusted_ca {
            v.push(mtime(ca));
        }
        v
    }

    /// The acceptor to use for the next connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let now = Self::stamps(&self.files);
        if now != cur.1 {
            match server_config(&self.files) {
                Ok(cfg) => {
                    tracing::info!(cert = %self.files.cert.display(), "reloaded TLS certificates");
                    *cur = (tokio_rustls::TlsAcceptor::from(Arc::new(cfg)), now);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "changed TLS files do not load; keeping the previous ones");
                    cur.1 = now;
                }
            }
        }
        cur.0.clone()
    }
}

/// --auto-tls: a self-signed certificate for `hosts`, kept in `dir` (generated once).
pub fn auto_tls(dir: &Path, hosts: &[String]) -> Result<TlsFiles> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if !cert.exists() || !key.exists() {
        std::fs::create_dir_all(dir).map_err(|e| tls_err(format!("{}: {e}", dir.display())))?;
        let ck = rcgen::generate_simple_self_signed(hosts.to_vec()).map_err(tls_err)?;
        std::fs::write(&cert, ck.cert.pem()).map_err(|e| tls_err(e.to_string()))?;
        std::fs::write(&key, ck.signing_key.serialize_pem()).map_err(|e| tls_err(e.to_string()))?;
    }
    Ok(TlsFiles { cert, key, ..Default::default() })
}

/// Hosts (names and IPs) of URLs, for certificate subject alternative names.
pub fn hosts_of(urls: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = urls
        .iter()
        .filter_map(|u| {
            let rest = u.split("://").nth(1).unwrap_or(u);
            let hostport = rest.split('/').next()?;
            let host = hostport.rsplit_once(':').map(|(h, _)| h).unwrap_or(hostport);
            Some(host.trim_matches(['[', ']']).to_string())
        })
        .collect();
    hosts.extend(["localhost".to_string(), "127.0.0.1".to_string()]);
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Writes a CA and certificates signed by it into `dir`: ca.pem/ca-key.pem and, for each (name, hosts),
/// NAME.pem/NAME-key.pem with CN = NAME (usable as server and client certificate).
pub fn generate_ca_and_certs(dir: &Path, certs: &[(String, Vec<String>)]) -> Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    std::fs::create_dir_all(dir).map_err(|e| tls_err(e.to_string()))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "raftcd CA");
    let ca_key = KeyPair::generate().map_err(tls_err)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_err)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).map_err(|e| tls_err(e.to_string()))?;
    std::fs::write(dir.join("ca-key.pem"), ca_key.serialize_pem()).map_err(|e| tls_err(e.to_string()))?;
    let issuer = Issuer::new(ca_params, ca_key);
    for (name, hosts) in certs {
        let mut p = CertificateParams::new(hosts.clone()).map_err(tls_err)?;
        p.distinguished_name.push(DnType::CommonName, name.as_str());
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().map_err(tls_err)?;
        let cert = p.signed_by(&key, &issuer).map_err(tls_err)?;
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).map_err(|e| tls_err(e.to_string()))?;
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).map_err(|e| tls_err(e.to_string()))?;
    }
    Ok(())
}

/// How to dial peers: verifying them against the CA with our certificate, or (auto TLS) not verifying.
pub fn peer_client_config(files: &TlsFiles) -> Result<DialTls> {
    if files.skip_verify {
        let (cert, key) = (files.cert.to_string_lossy(), files.key.to_string_lossy());
        return raftcd_client::InsecureTlsConnector::new(Some(&cert), Some(&key))
            .map(DialTls::SkipVerify)
            .map_err(tls_err);
    }
    let mut cfg = tonic::transport::ClientTlsConfig::new();
    if let Some(ca) = &files.trusted_ca {
        let pem = std::fs::read(ca).map_err(|e| tls_err(format!("{}: {e}", ca.display())))?;
        cfg = cfg.ca_certificate(tonic::transport::Certificate::from_pem(pem));
    }
    let cert = std::fs::read(&files.cert).map_err(|e| tls_err(e.to_string()))?;
    let key = std::fs::read(&files.key).map_err(|e| tls_err(e.to_string()))?;
    Ok(DialTls::Verify(cfg.identity(tonic::transport::Identity::from_pem(cert, key))))
}

/// An endpoint for `url`, with TLS when the URL is https.
pub fn endpoint(url: &str, tls: Option<&DialTls>) -> Result<Dial> {
    let https = url.starts_with("https://");
    let insecure = match tls {
        Some(DialTls::SkipVerify(c)) if https => Some(c.clone()),
        _ => None,
    };
    // With skip-verify our connector does the TLS, so tonic is given the plain-http form of the URL.
    let dial_url = if insecure.is_some() { url.replacen("https://", "http://", 1) } else { url.to_string() };
    let mut ep = tonic::transport::Endpoint::from_shared(dial_url)
        .map_err(|e| Error::InvalidArgument(format!("invalid URL {url}: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(1))
        .tcp_nodelay(true);
    if https && insecure.is_none() {
        let cfg = match tls {
            Some(DialTls::Verify(c)) => c.clone(),
            _ => Default::default(),
        };
        ep = ep.tls_config(cfg).map_err(tls_err)?;
    }
    Ok(Dial { endpoint: ep, insecure })
}

/// How to dial other members' client URLs, from our own client certificate files.
pub fn client_config(files: &TlsFiles) -> Result<DialTls> {
    peer_client_config(&TlsFiles { skip_verify: false, ..files.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certs_load_and_build_configs() {
        let dir = tempfile::tempdir().unwrap();
        generate_ca_and_certs(dir.path(), &[("server".into(), vec!["localhost".into(), "127.0.0.1".into()])]).unwrap();
        let files = TlsFiles {
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server-key.pem"),
            trusted_ca: Some(dir.path().join("ca.pem")),
            client_cert_auth: true,
            cipher_suites: vec![],
            skip_verify: false,
        };
        let cfg = server_config(&files).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        let bad = TlsFiles { cipher_suites: vec!["TLS_NOT_A_SUITE".into()], ..files.clone() };
        assert!(server_config(&bad).is_err());
        let ok = TlsFiles { cipher_suites: vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()], ..files.clone() };
        assert!(server_config(&ok).is_ok());
        let no_ca = TlsFiles { trusted_ca: None, ..files };
        assert!(server_config(&no_ca).is_err(), "--client-cert-auth needs a CA");
    }

    #[test]
    fn auto_tls_is_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = auto_tls(dir.path(), &hosts_of(&["https://127.0.0.1:2379".into()])).unwrap();
        let first = std::fs::read(&a.cert).unwrap();
        let b = auto_tls(dir.path(), &["localhost".into()]).unwrap();
        assert_eq!(first, std::fs::read(&b.cert).unwrap());
        assert!(server_config(&b).is_ok());
    }

    #[test]
    fn rotation_reloads_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        generate_ca_and_certs(dir.path(), &[("a".into(), vec!["localhost".into()])]).unwrap();
        let files =
            TlsFiles { cert: dir.path().join("a.pem"), key: dir.path().join("a-key.pem"), ..Default::default() };
        let acc = ReloadingAcceptor::new(files).unwrap();
        let before = acc.current.lock().unwrap().1.clone();
        std::thread::sleep(std::time::Duration::from_millis(20));
        generate_ca_and_certs(dir.path(), &[("a".into(), vec!["localhost".into()])]).unwrap();
        let _ = acc.acceptor();
        assert_ne!(acc.current.lock().unwrap().1, before);
    }
}
