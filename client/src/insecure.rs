//! `--insecure-skip-tls-verify`: TLS that encrypts but does not check who the server is (for testing, as
//! etcdctl warns). tonic's own TLS always verifies, so for this one case the client dials TCP itself, runs
//! the rustls handshake with a verifier that accepts any certificate (signatures are still checked, so the
//! handshake proves the server holds the key of the certificate it sent), and hands tonic the encrypted
//! stream. A client certificate, if given, is still presented.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use crate::error::{Error, Result};

/// Accepts any server certificate; still verifies handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn read_pem(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::InvalidArgument(format!("open {path}: {e}")))
}

/// The rustls config: no server verification, h2 by ALPN, the client certificate when both files are given.
fn client_config(cert: Option<&str>, key: Option<&str>) -> Result<ClientConfig> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidArgument(format!("tls: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)));
    let mut cfg = match (cert, key) {
        (Some(c), Some(k)) => {
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut read_pem(c)?.as_slice())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::InvalidArgument(format!("{c}: {e}")))?;
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut read_pem(k)?.as_slice())
                .map_err(|e| Error::InvalidArgument(format!("{k}: {e}")))?
                .ok_or_else(|| Error::InvalidArgument(format!("{k}: no private key found")))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| Error::InvalidArgument(format!("tls: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(Error::InvalidArgument("a client certificate needs both --cert and --key".into())),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// A tonic connector that dials TCP and completes a non-verifying TLS handshake.
#[derive(Clone)]
pub struct InsecureTlsConnector {
    tls: TlsConnector,
}

impl InsecureTlsConnector {
    /// Builds the connector, reading the client certificate files now so a bad path fails up front.
    pub fn new(cert: Option<&str>, key: Option<&str>) -> Result<InsecureTlsConnector> {
        Ok(InsecureTlsConnector { tls: TlsConnector::from(Arc::new(client_config(cert, key)?)) })
    }
}

impl tower_service::Service<http::Uri> for InsecureTlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
            let host = uri.host().ok_or_else(|| invalid(format!("no host in {uri}")))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host.clone()).map_err(|e| invalid(format!("server name {host}: {e}")))?;
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_client_certificate_is_refused() {
        assert!(matches!(InsecureTlsConnector::new(Some("c.pem"), None).err(), Some(Error::InvalidArgument(_))));
        assert!(InsecureTlsConnector::new(None, None).is_ok());
        assert!(matches!(
            InsecureTlsConnector::new(Some("/nonexistent/c.pem"), Some("/nonexistent/k.pem")).err(),
            Some(Error::InvalidArgument(_))
        ));
    }
}
