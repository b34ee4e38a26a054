//! The operational HTTP endpoint every service exposes: `/metrics` in the
//! Prometheus text format and `/healthz`.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Answers whether the service is healthy, with a reason when it is not.
pub type HealthCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown`.
pub async fn serve_ops(
    listener: TcpListener,
    registry: Registry,
    health: HealthCheck,
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
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let registry = registry.clone();
                let health = health.clone();
                async move { Ok::<_, Infallible>(route(&req, &registry, &health)) }
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
