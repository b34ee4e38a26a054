//! Building quinn endpoints from PEM files: TLS 1.3 only, rustls on *ring*
//! (chosen explicitly, never a process-wide default), ALPN
//! [`crate::codec::ALPN`], and on central a client-certificate verifier
//! that checks the project CA and its CRL.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hourglass_pki::{EdgeName, IdentityError, edge_identity};
use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::codec::ALPN;

/// A peer silent this long is dropped.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Edges ping this often, so an idle but healthy connection stays up.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Batches one edge may have in flight at once on one connection. Each
/// in-flight batch may hold up to one batch file in central's memory.
pub const MAX_CONCURRENT_BATCHES: u32 = 32;

/// What central needs to accept edges: its own certificate and key, the
/// project CA, and the CA's revocation list (all PEM, as
/// `hourglass_pki::CertDir` writes them).
#[derive(Clone)]
pub struct ServerCerts {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    pub crl_pem: String,
}

/// What an edge needs to reach central: its own certificate and key and
/// the project CA.
#[derive(Clone)]
pub struct ClientCerts {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for ServerCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCerts").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClientCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCerts").finish_non_exhaustive()
    }
}

/// Why an endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the {what} is not valid PEM ({detail}); use the file `central-ingest certs` wrote")]
    Pem { what: &'static str, detail: String },
    #[error("the {what} holds no {kind}; use the file `central-ingest certs` wrote")]
    Empty {
        what: &'static str,
        kind: &'static str,
    },
    #[error("the CA certificate cannot be used as a trust anchor: {0}")]
    TrustAnchor(#[source] rustls::Error),
    #[error("the CA or its revocation list cannot check edge certificates: {0}")]
    Verifier(#[from] VerifierBuilderError),
    #[error("the certificate and key cannot be used for TLS: {0}; check that they are a pair")]
    Tls(#[from] rustls::Error),
    #[error("TLS setup has no cipher suite QUIC can use: {0}")]
    Quic(#[from] NoInitialCipherSuite),
    #[error("this certificate is not an edge certificate: {0}")]
    NotAnEdge(#[from] IdentityError),
    #[error("could not bind UDP {addr}: {source}; is another process using the port?")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Central's endpoint on `addr`: accepts only clients whose certificate
/// chains to the CA, is a client certificate, and is not on the CRL.
pub fn server_endpoint(
    addr: SocketAddr,
    certs: &ServerCerts,
) -> Result<quinn::Endpoint, SetupError> {
    let config = server_config(certs)?;
    quinn::Endpoint::server(config, addr).map_err(|source| SetupError::Bind { addr, source })
}

/// Central's quinn configuration alone. To apply a new CRL without a
/// restart, build a new one and pass it to
/// [`quinn::Endpoint::set_server_config`]: new connections use it,
/// connections already open keep theirs.
pub fn server_config(certs: &ServerCerts) -> Result<quinn::ServerConfig, SetupError> {
    let provider = provider();
    let roots = roots(&certs.ca_pem)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(certs.crl_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SetupError::Pem {
            what: "revocation list",
            detail: e.to_string(),
        })?;
    if crls.is_empty() {
        // Without a CRL revoked edges would be let in: refuse to start.
        return Err(SetupError::Empty {
            what: "revocation list",
            kind: "X509 CRL",
        });
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            chain(&certs.cert_pem, "server certificate")?,
            key(&certs.key_pem, "server key")?,
        )?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(MAX_CONCURRENT_BATCHES.into())
        .max_concurrent_uni_streams(0u32.into())
        .max_idle_timeout(Some(idle_timeout()));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// An edge's endpoint, bound to `bind` (e.g. `0.0.0.0:0`), that presents
/// the edge certificate and trusts only the project CA. Returns the edge
/// name read from its own certificate, so a misissued certificate fails
/// here rather than at central.
pub fn client_endpoint(
    bind: SocketAddr,
    certs: &ClientCerts,
) -> Result<(quinn::Endpoint, EdgeName), SetupError> {
    let (config, edge) = client_config(certs)?;
    let mut endpoint =
        quinn::Endpoint::client(bind).map_err(|source| SetupError::Bind { addr: bind, source })?;
    endpoint.set_default_client_config(config);
    Ok((endpoint, edge))
}

/// An edge's quinn configuration alone, and its edge name.
pub fn client_config(certs: &ClientCerts) -> Result<(quinn::ClientConfig, EdgeName), SetupError> {
    let chain = chain(&certs.cert_pem, "edge certificate")?;
    let edge = chain
        .first()
        .map(edge_identity)
        .transpose()?
        .map(|identity| identity.name)
        .ok_or(SetupError::Empty {
            what: "edge certificate",
            kind: "CERTIFICATE",
        })?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(&certs.ca_pem)?)
        .with_client_auth_cert(chain, key(&certs.key_pem, "edge key")?)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(0u32.into())
        .max_concurrent_uni_streams(0u32.into())
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .max_idle_timeout(Some(idle_timeout()));
    config.transport_config(Arc::new(transport));
    Ok((config, edge))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn idle_timeout() -> quinn::IdleTimeout {
    // 30 s in milliseconds is far below the VarInt limit.
    quinn::IdleTimeout::try_from(IDLE_TIMEOUT)
        .unwrap_or(quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000)))
}

fn roots(ca_pem: &str) -> Result<RootCertStore, SetupError> {
    let mut roots = RootCertStore::empty();
    for cert in chain(ca_pem, "CA certificate")? {
        roots.add(cert).map_err(SetupError::TrustAnchor)?;
    }
    Ok(roots)
}

fn chain(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SetupError::Pem {
            what,
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(SetupError::Empty {
            what,
            kind: "CERTIFICATE",
        });
    }
    Ok(certs)
}

fn key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, SetupError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| SetupError::Pem {
        what,
        detail: e.to_string(),
    })
}
