//! The admin HTTP API, for operators (admin token, see [`super::admin_token`]):
//! - `POST /api/v1/admin/merchants` `{name}` → `201 {merchant_id, name}`;
//! - `POST /api/v1/admin/sites` `{merchant_id, domain, timezone?, site_id?}`
//!   → `201 {site_id, merchant_id, domain, timezone}`;
//! - `POST /api/v1/admin/keys` `{merchant_id, site_ids?, name?,
//!   rate_limit_per_minute?}` → `201 {key, key_prefix, key_hash, …}` (the
//!   key is shown only here);
//! - `DELETE /api/v1/admin/keys/{prefix_or_hash}` → `200 {revoked, …}`;
//! - `GET /api/v1/admin/edges` → `200 {edges: […]}`.
//!
//! Each runs [`super::admin::execute`], as `central-ingest admin` does. A
//! body that is not what the route takes is a `400 {error, path}` naming
//! the field; a refused change `400`, an unknown merchant, site or key
//! `404`, an ambiguous key prefix `409`.

use hourglass_warehouse::metadata::MetadataError;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value};

use super::admin::{Op, execute};
use super::{Api, MAX_BODY_BYTES, body, error, invalid};

type Answer = Response<Full<Bytes>>;
/// A refusal to answer (boxed: a response is large next to `Ok` values).
type Refused = Box<Answer>;

impl Api {
    /// `/api/v1/admin/…`: the token first, then the route.
    pub(super) async fn admin(&self, req: Request<Incoming>) -> Answer {
        if let Err(refused) = self.admin_token.check(req.headers()) {
            return *refused;
        }
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let op = match (&method, path.as_str()) {
            (&Method::GET, "/api/v1/admin/edges") => Ok(Op::EdgeList),
            (&Method::POST, "/api/v1/admin/merchants") => {
                read_fields(req).await.and_then(|mut f| {
                    let op = Op::MerchantAdd {
                        name: f.string("name")?,
                    };
                    f.done().map(|()| op)
                })
            }
            (&Method::POST, "/api/v1/admin/sites") => read_fields(req).await.and_then(|mut f| {
                let op = Op::SiteAdd {
                    merchant_id: f.string("merchant_id")?,
                    domain: f.string("domain")?,
                    timezone: f.opt_string("timezone")?.unwrap_or_else(|| "UTC".into()),
                    site_id: f.opt_string("site_id")?,
                    ga4: f.strings("ga4")?,
                    segment_write_keys: f.strings("segment_write_keys")?,
                    allowed_hostnames: f.strings("allowed_hostnames")?,
                };
                f.done().map(|()| op)
            }),
            (&Method::POST, "/api/v1/admin/keys") => read_fields(req).await.and_then(|mut f| {
                let op = Op::KeyCreate {
                    merchant_id: f.string("merchant_id")?,
                    site_ids: f.strings("site_ids")?,
                    name: f.opt_string("name")?.unwrap_or_default(),
                    rate_limit_per_minute: f.opt_u32("rate_limit_per_minute")?.unwrap_or(0),
                };
                f.done().map(|()| op)
            }),
            (&Method::DELETE, p) if p.starts_with("/api/v1/admin/keys/") => Ok(Op::KeyRevoke {
                prefix_or_hash: p["/api/v1/admin/keys/".len()..].to_owned(),
            }),
            _ => return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        };
        let op = match op {
            Ok(op) => op,
            Err(r) => return *r,
        };
        let created = !matches!(op, Op::EdgeList | Op::KeyRevoke { .. });
        let revoked_key = matches!(op, Op::KeyRevoke { .. });
        match execute(&self.warehouse, &self.certs, op).await {
            Ok(out) => {
                if revoked_key && let Some(hash) = out["key_hash"].as_str() {
                    // This node stops accepting it now, not after the cache TTL.
                    self.keys.forget(hash);
                }
                let status = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                body(status, "application/json", out.to_string())
            }
            Err(e) => refused(e),
        }
    }
}

fn refused(e: MetadataError) -> Answer {
    match e {
        MetadataError::Invalid(m) => invalid(StatusCode::BAD_REQUEST, "", &m),
        e @ MetadataError::NotFound { .. } => error(StatusCode::NOT_FOUND, &e.to_string()),
        e @ MetadataError::Ambiguous { .. } => error(StatusCode::CONFLICT, &e.to_string()),
        e => {
            tracing::warn!(error = %e, "admin request failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
        }
    }
}

/// The body as a JSON object, or the `400`/`413` to answer.
async fn read_fields(req: Request<Incoming>) -> Result<Fields, Refused> {
    let bytes = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(Box::new(invalid(
                StatusCode::PAYLOAD_TOO_LARGE,
                "",
                &format!("the body must be JSON of at most {MAX_BODY_BYTES} bytes"),
            )));
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(Fields(map)),
        Ok(_) => Err(Box::new(invalid(
            StatusCode::BAD_REQUEST,
            "",
            "the body must be a JSON object",
        ))),
        Err(e) => Err(Box::new(invalid(
            StatusCode::BAD_REQUEST,
            "",
            &format!("the body is not JSON: {e}"),
        ))),
    }
}

/// A request's fields, taken one by one; what is left over is unknown.
struct Fields(Map<String, Value>);

impl Fields {
    fn bad(field: &str, message: &str) -> Refused {
        Box::new(invalid(
            StatusCode::BAD_REQUEST,
            field,
            &format!("{field}: {message}"),
        ))
    }

    fn string(&mut self, field: &str) -> Result<String, Refused> {
        self.opt_string(field)?
            .ok_or_else(|| Fields::bad(field, "required, a string"))
    }

    fn opt_string(&mut self, field: &str) -> Result<Option<String>, Refused> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Fields::bad(field, "must be a string")),
        }
    }

    fn strings(&mut self, field: &str) -> Result<Vec<String>, Refused> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s),
                    _ => Err(Fields::bad(field, "must be an array of strings")),
                })
                .collect(),
            Some(_) => Err(Fields::bad(field, "must be an array of strings")),
        }
    }

    fn opt_u32(&mut self, field: &str) -> Result<Option<u32>, Refused> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| Fields::bad(field, "must be a whole number from 0 to 4294967295")),
        }
    }

    /// Refuses any field not taken.
    fn done(self) -> Result<(), Refused> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(field) => Err(Fields::bad(field, "unknown field")),
        }
    }
}
