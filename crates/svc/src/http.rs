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
        let conn = builder
            .serve_connection(TokioIo::new(stream), make(peer))
            .into_owned();
        let conn = graceful.watch(conn);
        let what = what.to_owned();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
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
