//! The beacon ingress: HTTP/1.1 and HTTP/2 (hyper). Turns each request into
//! a `RawHit`, admits it through the processing pipeline (so a bad request
//! gets its 4xx at once), stamps its identity, and hands it to the writer.
//! Answers `202` once the hit is durable (`sync`) or queued (`interval`).
//!
//! Routes: `POST /api/event`, `POST /api/batch`, `GET /i.gif`,
//! `POST /mp/collect`, `POST /debug/mp/collect`, `POST /v1/{batch,track,
//! page,identify,…}`, `GET /js/script.js`, `OPTIONS *` (CORS preflight).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hourglass_model::{Protocol, RawHit};
use hourglass_processing::{
    Endpoint, Pipeline, SessionTable, check_content_type, endpoint_for, validate_ga4,
    validation_response_json,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{mpsc, oneshot};

use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::writer::{Accepted, Refused};

const TRACKER_JS: &str = include_str!("../assets/script.js");
/// A transparent 1×1 GIF for the no-JS pixel.
const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

pub struct Ingress {
    pub edge_id: String,
    /// Admission and stamping only (no plugins run here); the control
    /// channel swaps it when the site directory changes.
    pub admission: SharedAdmission,
    pub sessions: Mutex<SessionTable>,
    pub writer: mpsc::Sender<Accepted>,
    /// Wait for the batch to be durable before answering.
    pub sync: bool,
    pub max_body_bytes: usize,
    pub trusted_proxies: Vec<IpAddr>,
    /// Per-edge hit sequence.
    pub seq: AtomicU64,
    pub full: Arc<AtomicBool>,
    pub limits: Limits,
    pub metrics: Metrics,
    pub now_ms: fn() -> i64,
}

type Resp = Response<Full<Bytes>>;

/// The admission pipeline the ingress uses, replaced whole on a new site
/// directory (readers clone the `Arc` and never wait on a swap for long).
pub type SharedAdmission = Arc<std::sync::RwLock<Arc<Pipeline>>>;

impl Ingress {
    fn admission(&self) -> Arc<Pipeline> {
        self.admission
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Resp, Infallible> {
        let mut resp = self.route(req, peer).await;
        cors(resp.headers_mut());
        Ok(resp)
    }

    async fn route(&self, req: Request<Incoming>, peer: SocketAddr) -> Resp {
        let path_and_query = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
        if req.method() == Method::OPTIONS {
            let mut resp = empty(StatusCode::NO_CONTENT);
            resp.headers_mut().insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("86400"),
            );
            return resp;
        }
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/js/script.js") => {
                let mut resp = body(
                    StatusCode::OK,
                    "application/javascript; charset=utf-8",
                    TRACKER_JS.as_bytes(),
                );
                resp.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                );
                return resp;
            }
            (&Method::GET, "/healthz") => return body(StatusCode::OK, "text/plain", b"ok\n"),
            _ => {}
        }
        let endpoint = match endpoint_for(&path_and_query) {
            Some(e) => e,
            None => {
                return self.refuse(
                    StatusCode::NOT_FOUND,
                    "unknown_endpoint",
                    "",
                    "no such endpoint",
                );
            }
        };
        let protocol = match endpoint {
            Endpoint::Ingest(p) => p,
            Endpoint::Ga4Validate => Protocol::Ga4Mp,
        };
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Err(rejection) = check_content_type(protocol, content_type.as_deref()) {
            return self.rejected(&rejection);
        }
        if self.full.load(Ordering::Relaxed) && endpoint != Endpoint::Ga4Validate {
            return self.busy();
        }
        let client_ip = client_ip(peer.ip(), req.headers(), &self.trusted_proxies);
        let browser = matches!(
            protocol,
            Protocol::Native | Protocol::NativeBatch | Protocol::Pixel
        );
        if browser && let Err(wait) = self.limits.check_ip(client_ip) {
            return self.too_many("rate_limited_ip", wait);
        }
        let (parts, incoming) = req.into_parts();
        let payload = match Limited::new(incoming, self.max_body_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return self.refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "body",
                    &format!("bodies over {} bytes are refused", self.max_body_bytes),
                );
            }
            Err(_) => {
                return self.refuse(
                    StatusCode::BAD_REQUEST,
                    "body_unreadable",
                    "body",
                    "the request body could not be read",
                );
            }
        };
        let mut hit = RawHit {
            received_at_ms: (self.now_ms)(),
            edge_id: self.edge_id.clone(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            protocol: protocol.into(),
            method: parts.method.as_str().to_owned(),
            path_and_query,
            user_agent: header_str(&parts.headers, header::USER_AGENT),
            referer: header_str(&parts.headers, header::REFERER),
            origin: header_str(&parts.headers, header::ORIGIN),
            accept_language: header_str(&parts.headers, header::ACCEPT_LANGUAGE),
            client_ip: client_ip.to_string(),
            body: payload.to_vec(),
            identity: None,
            write_key: write_key(&parts.headers).unwrap_or_default(),
            event_identities: Vec::new(),
        };
        if endpoint == Endpoint::Ga4Validate {
            let messages = validate_ga4(&hit);
            return body(
                StatusCode::OK,
                "application/json",
                validation_response_json(&messages).as_bytes(),
            );
        }
        let admission = self.admission();
        let decoded = match admission.admit(&hit) {
            Ok(d) => d,
            Err(rejection) => return self.rejected(&rejection),
        };
        for d in &decoded {
            if let Err(wait) = self.limits.check_site(&d.site_id) {
                return self.too_many("rate_limited_site", wait);
            }
        }
        {
            let mut sessions = self
                .sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            admission.stamp(&mut hit, &decoded, &mut sessions);
        }
        self.count_suspect(&hit, &parts.headers);
        let protocol_label = protocol_label(protocol);
        let (done, wait) = if self.sync {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        if self.writer.send(Accepted { hit, done }).await.is_err() {
            // The writer is gone: we are shutting down.
            return self.busy();
        }
        if let Some(wait) = wait {
            match wait.await {
                Ok(Ok(())) => {}
                Ok(Err(Refused::Full)) | Err(_) => return self.busy(),
                Ok(Err(Refused::Io)) => {
                    return self.refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "buffer_error",
                        "",
                        "the edge could not store the hit",
                    );
                }
            }
        }
        self.metrics.hits.with_label_values(&[protocol_label]).inc();
        if protocol == Protocol::Pixel {
            let mut resp = body(StatusCode::ACCEPTED, "image/gif", PIXEL_GIF);
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        } else {
            empty(StatusCode::ACCEPTED)
        }
    }

    fn rejected(&self, rejection: &hourglass_processing::Rejection) -> Resp {
        self.metrics
            .rejects
            .with_label_values(&[rejection.reason.as_str()])
            .inc();
        let status =
            StatusCode::from_u16(rejection.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        body(status, "application/json", rejection.to_json().as_bytes())
    }

    fn refuse(&self, status: StatusCode, reason: &str, field: &str, detail: &str) -> Resp {
        self.metrics.rejects.with_label_values(&[reason]).inc();
        let json =
            serde_json::json!({ "error": reason, "field": field, "detail": detail }).to_string();
        body(status, "application/json", json.as_bytes())
    }

    fn too_many(&self, reason: &str, retry_after: u64) -> Resp {
        let mut resp = self.refuse(
            StatusCode::TOO_MANY_REQUESTS,
            reason,
            "",
            "too many requests; retry later",
        );
        if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }

    /// Periodic upkeep: forget idle sessions and rate-limit keys.
    /// Forgets rate-limiter state of quiet clients (a scan of the limiter's
    /// sharded maps).
    pub fn sweep_limits(&self) {
        self.limits.sweep();
    }

    /// Forgets timed-out sessions, a bounded number per lock so requests
    /// never wait behind a sweep of the whole table.
    pub fn sweep_sessions(&self) {
        const PER_LOCK: usize = 4096;
        let now = (self.now_ms)();
        while self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .sweep(now, PER_LOCK)
            == PER_LOCK
        {}
    }

    fn busy(&self) -> Resp {
        let mut resp = self.refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "buffer_full",
            "",
            "the edge buffer is full; retry later",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        resp
    }

    fn count_suspect(&self, hit: &RawHit, headers: &HeaderMap) {
        let ua = hit.user_agent.to_ascii_lowercase();
        if ua.is_empty()
            || [
                "bot",
                "crawler",
                "spider",
                "headless",
                "curl/",
                "python-requests",
            ]
            .iter()
            .any(|p| ua.contains(p))
        {
            self.metrics
                .suspect_hits
                .with_label_values(&["bot_user_agent"])
                .inc();
        }
        let prefetch = ["purpose", "sec-purpose", "x-moz", "x-purpose"]
            .iter()
            .any(|h| {
                headers
                    .get(*h)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("prefetch"))
            });
        if prefetch {
            self.metrics
                .suspect_hits
                .with_label_values(&["prefetch"])
                .inc();
        }
    }
}

fn protocol_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Native => "native",
        Protocol::NativeBatch => "native_batch",
        Protocol::Pixel => "pixel",
        Protocol::Ga4Mp => "ga4",
        Protocol::Segment => "segment",
        Protocol::Unspecified => "unspecified",
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The Segment/RudderStack write key: the user name of Basic auth.
fn write_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(
        text.split_once(':')
            .map_or(text.as_str(), |(user, _)| user)
            .to_owned(),
    )
}

/// The client's address: the peer's, unless the peer is a trusted proxy,
/// then the right-most `X-Forwarded-For` entry that is not one.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer)
}

fn cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Authorization"),
    );
}

fn empty(status: StatusCode) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

fn body(status: StatusCode, content_type: &'static str, bytes: &[u8]) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_is_under_2_kib_gzipped() {
        use std::io::Write;
        let mut gzip = std::process::Command::new("gzip")
            .args(["-9", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip is installed");
        gzip.stdin
            .take()
            .expect("a stdin")
            .write_all(TRACKER_JS.as_bytes())
            .expect("gzip reads");
        let out = gzip.wait_with_output().expect("gzip ends");
        assert!(out.status.success());
        assert!(
            out.stdout.len() < 2048,
            "the tracker is {} bytes gzipped",
            out.stdout.len()
        );
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.0.0.2"),
        );
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(
            client_ip(ip("198.51.100.7"), &h, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.9"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn write_key_is_the_basic_auth_user() {
        let mut h = HeaderMap::new();
        // base64("wk_123:")
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic d2tfMTIzOg=="),
        );
        assert_eq!(write_key(&h).as_deref(), Some("wk_123"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(write_key(&h), None);
    }
}
