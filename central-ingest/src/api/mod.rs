//! The merchant API role of `central-ingest serve` (`[api]` in the config)
//! and the `admin` commands that manage what it serves.
//!
//! - `POST /api/v1/query`: a stats query (Plausible Stats API v2 shape,
//!   see [`hourglass_warehouse::Query`]) with `Authorization: Bearer KEY`.
//!   `site_id` is the site's domain. A key that may not read that site
//!   gets exactly the answer an unknown site gets (`404 {"error": "site
//!   not found"}`), so keys cannot probe which domains exist.
//! - `GET /api/v1/realtime?site_id=DOMAIN`: visitors and pageviews of the
//!   last 30 minutes and the top pages now (same keys, limits and 404s).
//! - `/api/v1/plugins…`: the plugin registry ([`plugins`]).
//! - `GET /api/v1/openapi.json`: the OpenAPI 3 document of the above.
//! - `GET /dashboard`: one static page that calls the query endpoint.
//! - `/api/v1/admin/…`: merchants, sites, keys and edges for operators,
//!   guarded by the admin token ([`admin_http`]; any route for operators
//!   only checks it with `self.admin_token.check(req.headers())`).
//!
//! Keys are resolved through a short in-memory cache and rate-limited per
//! key ([`keys`]); answers are reused for the same query for
//! `result_cache_secs`, then served stale for as long again while one
//! background query refreshes them ([`result_cache`]; the rate limit still
//! counts them); every answer is counted in
//! `hourglass_central_api_requests_total{status}`, and query answers in
//! `hourglass_central_api_result_cache_total{outcome="hit"|"stale"|"miss"}`.

pub mod admin;
mod admin_http;
pub mod admin_token;
mod goals;
mod keys;
mod plugins;
mod result_cache;

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hourglass_warehouse::metadata::KeyGrant;
use hourglass_warehouse::query::{QueryError, QueryResult, QueryRunError};
use hourglass_warehouse::{Query, Warehouse};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{IntCounterVec, Registry};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use keys::Keys;
use result_cache::{Lookup, ResultCache};

/// The dashboard page (no build step: plain HTML, CSS and JS).
pub const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");
/// The hand-written OpenAPI 3 document of the query endpoint.
pub const OPENAPI_JSON: &str = include_str!("../../assets/openapi.json");

/// Largest query body accepted.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The API's settings, from `[api]`.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub key_cache_ttl: Duration,
    /// How long an answer is reused for the same query of the same site
    /// (zero: never).
    pub result_cache_ttl: Duration,
    pub default_rate_limit_per_minute: NonZeroU32,
    /// SHA-256 (hex) of the admin token; `None`: the admin API refuses all.
    pub admin_token_sha256: Option<String>,
    /// The CA directory, for the admin API's edge list.
    pub certs_dir: std::path::PathBuf,
}

/// The API's shared state.
pub struct Api {
    warehouse: Warehouse,
    keys: Keys,
    results: Arc<ResultCache>,
    requests: IntCounterVec,
    plugins: Option<Arc<crate::registry::PluginRegistry>>,
    /// Query answers by `outcome`: `hit` (from the result cache), `stale`
    /// (from it, past the TTL, while one refresh runs), `miss`.
    result_cache: IntCounterVec,
    admin_token: admin_token::AdminToken,
    certs: hourglass_pki::CertDir,
}

impl Api {
    pub fn new(warehouse: Warehouse, settings: &ApiSettings, registry: &Registry) -> Self {
        Api {
            keys: Keys::new(
                warehouse.clone(),
                settings.key_cache_ttl,
                settings.default_rate_limit_per_minute,
            ),
            warehouse,
            results: Arc::new(ResultCache::new(settings.result_cache_ttl)),
            requests: hourglass_svc::metrics::counter_vec(
                registry,
                "hourglass_central_api_requests_total",
                "Merchant API requests answered, by HTTP status.",
                "status",
            ),
            plugins: None,
            result_cache: hourglass_svc::metrics::counter_vec(
                registry,
                "hourglass_central_api_result_cache_total",
                "Query answers taken from the result cache (hit; stale: past the TTL while one refresh runs) or computed (miss).",
                "outcome",
            ),
            admin_token: admin_token::AdminToken::new(
                settings.admin_token_sha256.as_deref(),
                registry,
            ),
            certs: hourglass_pki::CertDir::new(&settings.certs_dir),
        }
    }

    /// Serves the plugin registry's routes too.
    pub fn with_plugins(mut self, registry: Arc<crate::registry::PluginRegistry>) -> Self {
        self.plugins = Some(registry);
        self
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let response = self.route(req).await;
        self.requests
            .with_label_values(&[response.status().as_str()])
            .inc();
        response
    }

    async fn route(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::POST, "/api/v1/query") => self.query(req).await,
            (&Method::GET, "/api/v1/realtime") => self.realtime(req).await,
            (&Method::GET | &Method::POST, "/api/v1/goals") => self.goals(req).await,
            (&Method::DELETE, p) if p.starts_with("/api/v1/goals/") => self.goals(req).await,
            (&Method::GET | &Method::POST, "/api/v1/funnels") => self.funnels(req).await,
            (&Method::POST, "/api/v1/funnel") => self.funnel(req).await,
            (&Method::GET | &Method::POST, "/api/v1/plugins") => self.plugins(req).await,
            (&Method::POST, p) if p.starts_with("/api/v1/plugins/") => self.plugins(req).await,
            (
                _,
                "/api/v1/admin/merchants"
                | "/api/v1/admin/sites"
                | "/api/v1/admin/keys"
                | "/api/v1/admin/edges",
            ) => self.admin(req).await,
            (_, p) if p.starts_with("/api/v1/admin/keys/") => self.admin(req).await,
            (&Method::GET, "/api/v1/openapi.json") => {
                body(StatusCode::OK, "application/json", OPENAPI_JSON)
            }
            (&Method::GET, "/dashboard" | "/dashboard/") => {
                body(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD_HTML)
            }
            (&Method::GET, "/") => {
                let mut r = body(StatusCode::FOUND, "text/plain", "see /dashboard\n");
                r.headers_mut()
                    .insert("location", HeaderValue::from_static("/dashboard"));
                r
            }
            (
                _,
                "/api/v1/query"
                | "/api/v1/realtime"
                | "/api/v1/goals"
                | "/api/v1/funnels"
                | "/api/v1/funnel"
                | "/api/v1/plugins"
                | "/api/v1/plugins/data"
                | "/api/v1/plugins/activate"
                | "/api/v1/plugins/deactivate"
                | "/api/v1/plugins/rollback"
                | "/api/v1/openapi.json"
                | "/dashboard",
            ) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            _ => error(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// The caller's key grant, or the answer to send: 401 without a valid
    /// key, 429 (with `Retry-After`) over the key's rate.
    async fn grant(&self, req: &Request<Incoming>) -> Result<Arc<KeyGrant>, Response<Full<Bytes>>> {
        let Some(key) = admin_token::bearer(req.headers()) else {
            return Err(unauthorized());
        };
        let grant = match self.keys.resolve(key).await {
            Ok(Some(grant)) => grant,
            Ok(None) => return Err(unauthorized()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot resolve an API key");
                return Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily unavailable",
                ));
            }
        };
        if let Err(wait) = self.keys.check_rate(&grant) {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
            return Err(r);
        }
        Ok(grant)
    }

    /// `GET /api/v1/realtime?site_id=DOMAIN`: visitors and pageviews of
    /// the last 30 minutes and the top pages now. Never cached.
    async fn realtime(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (site, _) = match self.site_and_input(req).await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let domain = site.domain.clone();
        let now_s = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        match self.warehouse.realtime(&site.site_id, now_s).await {
            Ok(r) => {
                let mut out = json!(r);
                out["site_id"] = json!(domain);
                body(StatusCode::OK, "application/json", out.to_string())
            }
            Err(e) => {
                tracing::warn!(error = %e, site = %site.site_id, "realtime failed");
                error(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
            }
        }
    }

    async fn query(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let grant = match self.grant(&req).await {
            Ok(g) => g,
            Err(r) => return r,
        };
        let bytes = match Limited::new(req.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return invalid(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "",
                    &format!("the body must be JSON of at most {MAX_BODY_BYTES} bytes"),
                );
            }
        };
        let raw: Value = match serde_json::from_slice(&bytes) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return invalid(
                    StatusCode::BAD_REQUEST,
                    "",
                    "the body must be a JSON object",
                );
            }
            Err(e) => {
                return invalid(
                    StatusCode::BAD_REQUEST,
                    "",
                    &format!("the body is not JSON: {e}"),
                );
            }
        };
        let Some(domain) = raw.get("site_id").and_then(Value::as_str) else {
            return invalid(
                StatusCode::BAD_REQUEST,
                "site_id",
                "required: the site's domain, e.g. \"example.com\"",
            );
        };
        // The same answer for "no such site" and "not yours".
        let Some(site) = grant.site_by_domain(domain) else {
            return error(StatusCode::NOT_FOUND, "site not found");
        };
        let mut query: Query = match serde_json::from_value(raw.clone()) {
            Ok(q) => q,
            Err(e) => {
                let message = e.to_string();
                let path = field_in(&message).unwrap_or_default();
                return invalid(StatusCode::BAD_REQUEST, &path, &message);
            }
        };
        query.site_id = site.site_id.clone();
        if raw.get("timezone").is_none() && !site.timezone.is_empty() {
            query.timezone = site.timezone.clone();
        }
        if query.dimensions.iter().any(|d| d == "event:goal")
            || query.metrics.iter().any(|m| m == "conversion_rate")
            || raw
                .get("filters")
                .is_some_and(|f| f.to_string().contains("event:goal"))
        {
            match self.warehouse.goals(&site.site_id).await {
                Ok(rows) => query.goals = rows.iter().map(|g| g.goal()).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, site = %site.site_id, "cannot read goals");
                    return error(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable");
                }
            }
        }
        // Goals are part of the answer's key (they are skipped by serde).
        let cache_key = format!(
            "{}{:?}",
            serde_json::to_string(&query).unwrap_or_default(),
            query.goals
        );
        match self.results.lookup(&cache_key) {
            Lookup::Fresh(hit) => {
                self.result_cache.with_label_values(&["hit"]).inc();
                return body(StatusCode::OK, "application/json", hit);
            }
            Lookup::Stale { body: old, refresh } => {
                self.result_cache.with_label_values(&["stale"]).inc();
                if refresh {
                    let owed = self.results.refresh(cache_key);
                    let warehouse = self.warehouse.clone();
                    let domain = domain.to_owned();
                    tokio::spawn(async move {
                        match warehouse.query(&query, SystemTime::now()).await {
                            Ok(result) => owed.put(answer(result, query, domain)),
                            Err(e) => {
                                tracing::warn!(error = %e, "refreshing a cached answer failed");
                            }
                        }
                    });
                }
                return body(StatusCode::OK, "application/json", old);
            }
            Lookup::Miss => {}
        }
        self.result_cache.with_label_values(&["miss"]).inc();
        match self.warehouse.query(&query, SystemTime::now()).await {
            Ok(result) => {
                let out = answer(result, query, domain.to_owned());
                self.results.put(cache_key, out.clone());
                body(StatusCode::OK, "application/json", out)
            }
            Err(QueryRunError::Query(QueryError::Invalid { path, message })) => {
                invalid(StatusCode::BAD_REQUEST, &path, &message)
            }
            Err(e) => {
                tracing::warn!(error = %e, site = %site.site_id, "query failed");
                error(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
            }
        }
    }
}

/// The body of a query's answer: `query` as asked (by the site's domain).
fn answer(result: QueryResult, mut query: Query, domain: String) -> String {
    query.site_id = domain;
    json!({
        "results": result.results,
        "meta": result.meta,
        "query": query,
    })
    .to_string()
}

/// Serves the API on `listener` until `shutdown`, then lets open
/// connections finish (up to 10 s).
pub async fn serve(listener: TcpListener, api: Arc<Api>, shutdown: CancellationToken) {
    hourglass_svc::http::serve(
        listener,
        move |_peer| {
            let api = api.clone();
            service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(req).await) }
            })
        },
        shutdown,
        "api",
    )
    .await;
}

/// The field a serde error names (`unknown field `x``, `missing field
/// `metrics``), as a path.
fn field_in(message: &str) -> Option<String> {
    let rest = message.split_once("field `")?.1;
    Some(rest.split_once('`')?.0.to_owned())
}

fn body(
    status: StatusCode,
    content_type: &'static str,
    text: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(text.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    body(
        status,
        "application/json",
        json!({ "error": message }).to_string(),
    )
}

fn invalid(status: StatusCode, path: &str, message: &str) -> Response<Full<Bytes>> {
    body(
        status,
        "application/json",
        json!({ "error": message, "path": path }).to_string(),
    )
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut r = error(StatusCode::UNAUTHORIZED, "missing or invalid API key");
    r.headers_mut()
        .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_is_json_and_names_the_query_endpoint() {
        let doc: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert!(doc["paths"]["/api/v1/query"]["post"].is_object());
        for (path, method) in [
            ("/api/v1/admin/merchants", "post"),
            ("/api/v1/admin/sites", "post"),
            ("/api/v1/admin/keys", "post"),
            ("/api/v1/admin/keys/{prefix_or_hash}", "delete"),
            ("/api/v1/admin/edges", "get"),
        ] {
            assert_eq!(
                doc["paths"][path][method]["security"][0]["adminToken"],
                json!([]),
                "{method} {path}"
            );
        }
        assert!(doc["components"]["securitySchemes"]["adminToken"].is_object());
    }

    #[test]
    fn serde_errors_name_their_field() {
        assert_eq!(
            field_in("missing field `metrics` at line 1 column 2").as_deref(),
            Some("metrics")
        );
        assert_eq!(field_in("expected a string").as_deref(), None);
    }
}
