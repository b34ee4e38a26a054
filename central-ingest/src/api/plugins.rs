//! The plugin registry over the merchant API (see `registry` for what
//! each operation checks), with the same keys, limits and 404s as
//! queries. A merchant key uploads the merchant's own plugins and changes
//! the chains of its sites (`site_id` is the site's domain, as everywhere
//! in this API); a site it may not read is `404 site not found`.
//!
//! - `POST /api/v1/plugins?name=N&version=V[&config=C][&data_sha256=H]`,
//!   body = the component (`application/wasm`): `201` stored, `200` the
//!   same bytes were already stored, `422 {error, step}` refused by
//!   validation, `409` `name@version` taken, `413` over the size cap.
//! - `POST /api/v1/plugins/data`, body = a data file: `{sha256}`.
//! - `GET /api/v1/plugins`: the plugins the key may run and the bindings
//!   of its sites and of the platform chain.
//! - `POST /api/v1/plugins/activate` `{name, version, site_id, config?,
//!   data_sha256?, on_failure?, position?}`, `POST
//!   /api/v1/plugins/deactivate` and `/rollback` `{name, site_id}`.
//!
//! The operator's admin token (`api.admin_token_sha256`, as for
//! `/api/v1/admin`) works here too, for every site and for the platform:
//! its uploads are platform plugins, `activate`, `deactivate` and
//! `rollback` without `site_id` change the platform chain (which runs for
//! every site, before the site's own), and `GET` lists every plugin and
//! binding. A merchant key asking for the platform gets `403`.

use hourglass_warehouse::metadata::{Site, site_by_domain};
use hourglass_warehouse::plugins::{PluginBinding, PluginRow};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::{Api, MAX_BODY_BYTES, body, error, invalid};
use crate::registry::{Activation, Owner, PluginRegistry, RegistryError, Scope};

type Answer = Response<Full<Bytes>>;

const PLATFORM_REFUSED: &str = "the platform chain and platform plugins need the operator's admin token; \
     merchant keys change their own sites' chains (give site_id)";

/// Who asks: the operator (admin token) or a merchant's key.
struct Caller {
    owner: Owner,
    /// The sites whose chains the caller may change (every site for the
    /// operator).
    sites: Vec<Site>,
    /// Recorded as `activated_by`.
    by: String,
}

impl Caller {
    fn is_operator(&self) -> bool {
        matches!(self.owner, Owner::Platform)
    }

    /// The site of the caller's whose domain is `domain`; `None` for "no
    /// such site" and "not yours" alike.
    fn site(&self, domain: &str) -> Option<&Site> {
        site_by_domain(&self.sites, domain)
    }

    fn domain_of(&self, site_id: &str) -> Option<&str> {
        self.sites
            .iter()
            .find(|s| s.site_id == site_id)
            .map(|s| s.domain.as_str())
    }
}

impl Api {
    /// `/api/v1/plugins` and `/api/v1/plugins/{data,activate,deactivate,rollback}`.
    pub(super) async fn plugins(&self, req: Request<Incoming>) -> Answer {
        let Some(registry) = self.plugins.clone() else {
            return error(
                StatusCode::NOT_FOUND,
                "the plugin registry is not enabled on this server",
            );
        };
        let caller = if self.admin_token.presented(req.headers()) {
            match registry.warehouse().sites().await {
                Ok(sites) => Caller {
                    owner: Owner::Platform,
                    sites: sites.into_iter().filter(|s| s.deleted == 0).collect(),
                    by: "admin-api".to_owned(),
                },
                Err(e) => return refused(RegistryError::Unavailable(e.into())),
            }
        } else {
            match self.grant(&req).await {
                Ok(grant) => Caller {
                    owner: Owner::Merchant(grant.key.merchant_id.clone()),
                    sites: grant.sites.clone(),
                    by: format!("key:{}", grant.key.key_prefix),
                },
                Err(r) => return r,
            }
        };
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        match (method, path.as_str()) {
            (Method::GET, "/api/v1/plugins") => list(&registry, &caller).await,
            (Method::POST, "/api/v1/plugins") => upload(&registry, &caller, req).await,
            (Method::POST, "/api/v1/plugins/data") => {
                let max = registry.limits().max_data_bytes;
                match read_body(req, max, "data file").await {
                    Ok(bytes) => match registry.upload_data(bytes).await {
                        Ok(sha256) => body(
                            StatusCode::CREATED,
                            "application/json",
                            json!({ "sha256": sha256 }).to_string(),
                        ),
                        Err(e) => refused(e),
                    },
                    Err(r) => r,
                }
            }
            (Method::POST, action) => binding(&registry, &caller, action, req).await,
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
    }
}

async fn list(registry: &PluginRegistry, caller: &Caller) -> Answer {
    let mut scopes: Vec<String> = caller.sites.iter().map(|s| s.site_id.clone()).collect();
    scopes.push(String::new());
    let scopes = (!caller.is_operator()).then_some(scopes);
    let (plugins, bindings) = match tokio::try_join!(
        registry.plugins(&caller.owner),
        registry.bindings(scopes.as_deref())
    ) {
        Ok(x) => x,
        Err(e) => return refused(e),
    };
    body(
        StatusCode::OK,
        "application/json",
        json!({
            "plugins": plugins.iter().map(plugin_json).collect::<Vec<_>>(),
            "bindings": bindings.iter().map(|b| binding_json(b, caller)).collect::<Vec<_>>(),
        })
        .to_string(),
    )
}

async fn upload(registry: &PluginRegistry, caller: &Caller, req: Request<Incoming>) -> Answer {
    let params: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let param = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if param("scope") == Some("platform") && !caller.is_operator() {
        return error(StatusCode::FORBIDDEN, PLATFORM_REFUSED);
    }
    let (Some(name), Some(version)) = (param("name"), param("version")) else {
        return invalid(
            StatusCode::BAD_REQUEST,
            "name",
            "required: ?name=…&version=… (the plugin's name and version)",
        );
    };
    let (name, version) = (name.to_owned(), version.to_owned());
    let config = param("config").unwrap_or_default().to_owned();
    let data_sha256 = param("data_sha256").map(str::to_owned);
    let wasm = match read_body(req, registry.limits().max_component_bytes, "component").await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match registry
        .upload(
            &caller.owner,
            &name,
            &version,
            wasm,
            &config,
            data_sha256.as_deref(),
        )
        .await
    {
        Ok(up) => {
            let mut out = plugin_json(&up.plugin);
            out["stored"] = json!(if up.new { "new" } else { "unchanged" });
            body(
                if up.new {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                "application/json",
                out.to_string(),
            )
        }
        Err(e) => refused(e),
    }
}

/// `activate`, `deactivate` and `rollback`.
async fn binding(
    registry: &PluginRegistry,
    caller: &Caller,
    action: &str,
    req: Request<Incoming>,
) -> Answer {
    let action = match action.strip_prefix("/api/v1/plugins/") {
        Some(a @ ("activate" | "deactivate" | "rollback")) => a.to_owned(),
        _ => return error(StatusCode::NOT_FOUND, "not found"),
    };
    let bytes = match read_body(req, MAX_BODY_BYTES, "body").await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let input = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return invalid(
                StatusCode::BAD_REQUEST,
                "",
                "the body must be a JSON object",
            );
        }
    };
    let text = |k: &str| input[k].as_str().map(str::to_owned);
    let Some(name) = text("name") else {
        return invalid(
            StatusCode::BAD_REQUEST,
            "name",
            "required: the plugin's name",
        );
    };
    let scope = match text("site_id").filter(|d| !d.is_empty()) {
        None if caller.is_operator() => Scope::Platform,
        None => return error(StatusCode::FORBIDDEN, PLATFORM_REFUSED),
        // The same answer for "no such site" and "not yours".
        Some(domain) => match caller.site(&domain) {
            Some(site) => Scope::Site {
                site_id: site.site_id.clone(),
                merchant_id: site.merchant_id.clone(),
            },
            None => return error(StatusCode::NOT_FOUND, "site not found"),
        },
    };
    let by = caller.by.clone();
    let result = match action.as_str() {
        "activate" => {
            let Some(version) = text("version") else {
                return invalid(
                    StatusCode::BAD_REQUEST,
                    "version",
                    "required: the plugin version to activate",
                );
            };
            let position = match &input["position"] {
                Value::Null => None,
                v => match v.as_u64().and_then(|p| u16::try_from(p).ok()) {
                    Some(p) => Some(p),
                    None => {
                        return invalid(
                            StatusCode::BAD_REQUEST,
                            "position",
                            "a whole number from 0 to 65535",
                        );
                    }
                },
            };
            registry
                .activate(
                    &scope,
                    Activation {
                        name,
                        version,
                        config: text("config").unwrap_or_default(),
                        data_sha256: text("data_sha256").filter(|s| !s.is_empty()),
                        on_failure: text("on_failure"),
                        position,
                        by,
                    },
                )
                .await
        }
        "deactivate" => registry.deactivate(&scope, &name, &by).await,
        _ => registry.rollback(&scope, &name, &by).await,
    };
    match result {
        Ok(b) => body(
            StatusCode::OK,
            "application/json",
            binding_json(&b, caller).to_string(),
        ),
        Err(e) => refused(e),
    }
}

/// The body, at most `max` bytes, or the answer to send (`413` over it).
/// The body is read up to the cap even when `Content-Length` says it is
/// over: answering before the client has sent it would reset the
/// connection under the client, which then never sees the `413`.
async fn read_body(req: Request<Incoming>, max: usize, what: &str) -> Result<Bytes, Answer> {
    match Limited::new(req.into_body(), max).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(invalid(
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
            &format!("the {what} must be at most {max} bytes"),
        )),
        Err(_) => Err(invalid(
            StatusCode::BAD_REQUEST,
            "",
            &format!("the {what} could not be read"),
        )),
    }
}

fn plugin_json(p: &PluginRow) -> Value {
    json!({
        "name": p.name,
        "version": p.plugin_version,
        "sha256": p.sha256,
        "size_bytes": p.size_bytes,
        "owner": if p.merchant_id.is_empty() { "platform" } else { "merchant" },
        "status": p.status,
        "detail": p.status_detail,
        "uploaded_at": p.uploaded_at,
    })
}

fn binding_json(b: &PluginBinding, caller: &Caller) -> Value {
    let site = caller.domain_of(&b.scope).map_or(Value::Null, |d| json!(d));
    json!({
        "scope": if b.scope.is_empty() { "platform" } else { "site" },
        "site_id": site,
        "name": b.name,
        "version": b.plugin_version,
        "sha256": b.sha256,
        "config": b.config,
        "data_sha256": b.data_sha256,
        "on_failure": b.on_failure,
        "position": b.position,
        "active": b.deleted == 0,
        "activated_at": b.activated_at,
        "activated_by": b.activated_by,
    })
}

/// A registry error as its answer: 400, 404, 409, 413, 422 `{error,
/// step}`, or 503.
fn refused(e: RegistryError) -> Answer {
    match e {
        RegistryError::Invalid(m) => invalid(StatusCode::BAD_REQUEST, "", &m),
        e @ RegistryError::TooLarge { .. } => {
            invalid(StatusCode::PAYLOAD_TOO_LARGE, "", &e.to_string())
        }
        RegistryError::NotFound(m) => error(StatusCode::NOT_FOUND, &m),
        RegistryError::Conflict(m) => error(StatusCode::CONFLICT, &m),
        RegistryError::Refused { step, message } => body(
            StatusCode::UNPROCESSABLE_ENTITY,
            "application/json",
            json!({ "error": format!("refused at step `{step}`: {message}"), "step": step })
                .to_string(),
        ),
        RegistryError::Unavailable(e) => {
            tracing::warn!(error = %format!("{e:#}"), "plugin registry failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
        }
    }
}
