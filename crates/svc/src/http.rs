//! The operational HTTP endpoint every service exposes: `/metrics` in the
//! Prometheus text format, `/healthz` (the process is up) and `/readyz` (it
//! is ready for work: what a rolling deploy waits for).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves HTTP/1.1 and HTTP/2 on `listener` with the service `make(peer)`
/// gives for each connection, until `shutdown`; then stops accepting and
/// lets open connections finish for up to 10 s. `what` names the server in
/// logs.
pub async fn serve<F, S, B>(listener: TcpListener, make: F, shutdown: CancellationToken, what: &str)
where
    F: Fn(SocketAddr) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with(listener, None, make, shutdown, what).await;
}

/// As [`serve`], over TLS when `tls` is given: each connection's handshake
/// runs in its own task (bounded by [`TLS_HANDSHAKE_TIMEOUT`]), and ALPN
/// picks HTTP/2 or HTTP/1.1.
pub async fn serve_with<F, S, B>(
    listener: TcpListener,
    tls: Option<Tls>,
    make: F,
    shutdown: CancellationToken,
    what: &str,
) where
    F: Fn(SocketAddr) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, server = what, "accept failed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = make(peer);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let what = what.to_owned();
        tokio::spawn(async move {
            let ended = match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(tls) => {
                    let Some(stream) = tls.handshake(stream, peer, &what).await else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, server = what, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!(server = what, "connections still open after 10 s; closing");
        }
    }
}

/// How long a client has to finish its TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener's TLS: its certificate chain and key (PEM), ALPN `h2` and
/// `http/1.1`, and the counter of handshakes that failed or timed out.
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    failed_handshakes: prometheus::IntCounter,
}

/// Why a certificate or key could not be used for TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate in the certificate file: {0}")]
    Certificate(String),
    #[error("no usable private key in the key file: {0}")]
    Key(String),
    #[error("the certificate and key do not make a TLS server: {0}")]
    Config(#[from] rustls::Error),
}

impl Tls {
    /// TLS with the certificate chain `cert_pem` (leaf first) and its key
    /// `key_pem`; failed handshakes are counted in `failed_handshakes`.
    pub fn new(
        cert_pem: &[u8],
        key_pem: &[u8],
        failed_handshakes: prometheus::IntCounter,
    ) -> Result<Tls, TlsError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        if chain.is_empty() {
            return Err(TlsError::Certificate("no PEM CERTIFICATE block".into()));
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            failed_handshakes,
        })
    }

    async fn handshake(
        &self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        what: &str,
    ) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
        let failure =
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
                Ok(Ok(stream)) => return Some(stream),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no handshake within {TLS_HANDSHAKE_TIMEOUT:?}"),
            };
        self.failed_handshakes.inc();
        tracing::debug!(%peer, server = what, error = failure, "TLS handshake failed");
        None
    }
}

/// Answers whether the service is healthy, with a reason when it is not.
pub type HealthCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until
/// `shutdown`; `/readyz` answers as `/healthz` does.
pub async fn serve_ops(
    listener: TcpListener,
    registry: Registry,
    health: HealthCheck,
    shutdown: CancellationToken,
) {
    let ready = health.clone();
    serve_ops_with_readiness(listener, registry, health, ready, shutdown).await;
}

/// As [`serve_ops`], with `/readyz` answered by `ready`, for a service that
/// is up before it can take work (the edge: until its ingress listens).
pub async fn serve_ops_with_readiness(
    listener: TcpListener,
    registry: Registry,
    health: HealthCheck,
    ready: HealthCheck,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "ops endpoint accept failed");
                    continue;
                }
            },
        };
        let registry = registry.clone();
        let health = health.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let registry = registry.clone();
                let health = health.clone();
                let ready = ready.clone();
                async move { Ok::<_, Infallible>(route(&req, &registry, &health, &ready)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "ops connection ended with an error");
            }
        });
    }
}

fn route(
    req: &Request<Incoming>,
    registry: &Registry,
    health: &HealthCheck,
    ready: &HealthCheck,
) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let mut buf = Vec::new();
            let encoder = TextEncoder::new();
            match encoder.encode(&registry.gather(), &mut buf) {
                Ok(()) => text(StatusCode::OK, encoder.format_type(), buf),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    e.to_string().into_bytes(),
                ),
            }
        }
        (&Method::GET, "/healthz") => match health() {
            Ok(()) => text(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("unhealthy: {why}\n").into_bytes(),
            ),
        },
        (&Method::GET, "/readyz") => match ready() {
            Ok(()) => text(StatusCode::OK, "text/plain", b"ready\n".to_vec()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n").into_bytes(),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
    }
}

fn text(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}
