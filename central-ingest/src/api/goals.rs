//! Goals and funnels over the merchant API, with the same keys, limits and
//! 404s as queries:
//! - `GET /api/v1/goals?site_id=D`, `POST /api/v1/goals` `{site_id, name,
//!   event_name | page_path}`, `DELETE /api/v1/goals/<goal_id>?site_id=D`;
//! - `GET /api/v1/funnels?site_id=D`, `POST /api/v1/funnels` `{site_id,
//!   name, steps: [goal name…]}`;
//! - `POST /api/v1/funnel` `{site_id, funnel, date_range, timezone?}`:
//!   visitors per step (ordered within a session), each step's share of
//!   the first, and the drop-off from the step before.

use std::time::SystemTime;

use hourglass_warehouse::metadata::{MetadataError, Site};
use hourglass_warehouse::query::{Goal, QueryError, resolve_window};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::{Api, MAX_BODY_BYTES, body, error, invalid};

type Answer = Response<Full<Bytes>>;

impl Api {
    /// `/api/v1/goals` and `/api/v1/goals/<id>`.
    pub(super) async fn goals(&self, req: Request<Incoming>) -> Answer {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let (site, input) = match self.site_and_input(req).await {
            Ok(x) => x,
            Err(r) => return r,
        };
        match (method, path.strip_prefix("/api/v1/goals/")) {
            (Method::GET, None) => match self.warehouse.goals(&site.site_id).await {
                Ok(rows) => ok(json!({"goals": rows.iter().map(goal_json).collect::<Vec<_>>()})),
                Err(e) => unavailable(&e),
            },
            (Method::POST, None) => {
                let text = |k: &str| input[k].as_str().unwrap_or_default().to_owned();
                let goal = Goal {
                    name: text("name"),
                    event_name: text("event_name"),
                    page_path: text("page_path"),
                };
                match self.warehouse.add_goal(&site.site_id, &goal).await {
                    Ok(row) => body(
                        StatusCode::CREATED,
                        "application/json",
                        goal_json(&row).to_string(),
                    ),
                    Err(e) => refused(e),
                }
            }
            (Method::DELETE, Some(goal_id)) => {
                match self.warehouse.delete_goal(&site.site_id, goal_id).await {
                    Ok(()) => ok(json!({"deleted": goal_id})),
                    Err(e) => refused(e),
                }
            }
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
    }

    /// `/api/v1/funnels`.
    pub(super) async fn funnels(&self, req: Request<Incoming>) -> Answer {
        let method = req.method().clone();
        let (site, input) = match self.site_and_input(req).await {
            Ok(x) => x,
            Err(r) => return r,
        };
        match method {
            Method::GET => match self.warehouse.funnels(&site.site_id).await {
                Ok(rows) => ok(json!({"funnels": rows.iter().map(|f| json!({
                    "funnel_id": f.funnel_id, "name": f.name, "steps": f.steps,
                })).collect::<Vec<_>>()})),
                Err(e) => unavailable(&e),
            },
            Method::POST => {
                let Some(steps) = input["steps"].as_array().and_then(|s| {
                    s.iter()
                        .map(|v| v.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                }) else {
                    return invalid(
                        StatusCode::BAD_REQUEST,
                        "steps",
                        "required: a list of goal names, in order",
                    );
                };
                let name = input["name"].as_str().unwrap_or_default();
                match self.warehouse.add_funnel(&site.site_id, name, &steps).await {
                    Ok(f) => body(
                        StatusCode::CREATED,
                        "application/json",
                        json!({"funnel_id": f.funnel_id, "name": f.name, "steps": f.steps})
                            .to_string(),
                    ),
                    Err(e) => refused(e),
                }
            }
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
    }

    /// `POST /api/v1/funnel`: a funnel's numbers over a date range.
    pub(super) async fn funnel(&self, req: Request<Incoming>) -> Answer {
        let (site, input) = match self.site_and_input(req).await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let Some(name) = input["funnel"].as_str() else {
            return invalid(
                StatusCode::BAD_REQUEST,
                "funnel",
                "required: the name of one of the site's funnels",
            );
        };
        let zone_name = input["timezone"]
            .as_str()
            .map_or_else(|| site.timezone.clone(), str::to_owned);
        let Ok(zone) = jiff::tz::TimeZone::get(&zone_name) else {
            return invalid(
                StatusCode::BAD_REQUEST,
                "timezone",
                &format!("unknown time zone {zone_name:?}; use an IANA name such as \"UTC\""),
            );
        };
        let window = match resolve_window(&input["date_range"], &zone, SystemTime::now()) {
            Ok(w) => w,
            Err(QueryError::Invalid { path, message }) => {
                return invalid(StatusCode::BAD_REQUEST, &path, &message);
            }
            Err(e) => return invalid(StatusCode::BAD_REQUEST, "date_range", &e.to_string()),
        };
        let (funnels, goals) = match tokio::try_join!(
            self.warehouse.funnels(&site.site_id),
            self.warehouse.goals(&site.site_id)
        ) {
            Ok(x) => x,
            Err(e) => return unavailable(&e),
        };
        let Some(funnel) = funnels.iter().find(|f| f.name == name) else {
            return error(StatusCode::NOT_FOUND, "funnel not found");
        };
        // A step whose goal was deleted since matches nothing.
        let steps: Vec<Goal> = funnel
            .steps
            .iter()
            .map(|step| {
                goals.iter().find(|g| &g.display_name == step).map_or_else(
                    || Goal {
                        name: step.clone(),
                        event_name: "\u{0}deleted goal".into(),
                        page_path: String::new(),
                    },
                    |g| g.goal(),
                )
            })
            .collect();
        let visitors = match self
            .warehouse
            .funnel_visitors(&site.site_id, window.from, window.to, &steps)
            .await
        {
            Ok(v) => v,
            Err(e) => return unavailable(&e),
        };
        let first = visitors.first().copied().unwrap_or(0);
        let pct = |n: u64, of: u64| {
            if of == 0 {
                0.0
            } else {
                // Percent to 2 decimals, half up, in integers.
                ((n * 20_000 + of) / (of * 2)) as f64 / 100.0
            }
        };
        let rows: Vec<Value> = steps
            .iter()
            .zip(&visitors)
            .enumerate()
            .map(|(i, (goal, &n))| {
                let before = if i == 0 { n } else { visitors[i - 1] };
                json!({
                    "goal": goal.name,
                    "visitors": n,
                    "conversion_rate": pct(n, first),
                    "dropoff": before - n.min(before),
                })
            })
            .collect();
        ok(json!({
            "funnel": funnel.name,
            "date_range": [window.from, window.to],
            "steps": rows,
        }))
    }

    /// The key's site named by `site_id` (the query string, else the JSON
    /// body) and the JSON body (`null` without one), or the answer to
    /// send: 401/429 from the key, 400 for a bad body, 404 for a site the
    /// key may not read.
    pub(super) async fn site_and_input(
        &self,
        req: Request<Incoming>,
    ) -> Result<(Site, Value), Answer> {
        let grant = self.grant(&req).await?;
        let from_query = req.uri().query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "site_id")
                .map(|(_, v)| v.into_owned())
        });
        let input = if req.method() == Method::POST {
            let bytes = Limited::new(req.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|_| {
                    invalid(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "",
                        &format!("the body must be JSON of at most {MAX_BODY_BYTES} bytes"),
                    )
                })?
                .to_bytes();
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return Err(invalid(
                        StatusCode::BAD_REQUEST,
                        "",
                        "the body must be a JSON object",
                    ));
                }
            }
        } else {
            Value::Null
        };
        let domain = from_query
            .or_else(|| input["site_id"].as_str().map(str::to_owned))
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                invalid(
                    StatusCode::BAD_REQUEST,
                    "site_id",
                    "required: the site's domain, e.g. \"example.com\"",
                )
            })?;
        let site = grant
            .site_by_domain(&domain)
            .cloned()
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "site not found"))?;
        Ok((site, input))
    }
}

fn goal_json(g: &hourglass_warehouse::GoalRow) -> Value {
    let mut v = json!({"goal_id": g.goal_id, "name": g.display_name, "kind": g.kind});
    if g.kind == "event" {
        v["event_name"] = json!(g.event_name);
    } else {
        v["page_path"] = json!(g.page_path);
    }
    v
}

fn ok(v: Value) -> Answer {
    body(StatusCode::OK, "application/json", v.to_string())
}

fn unavailable(e: &dyn std::fmt::Display) -> Answer {
    tracing::warn!(error = %e, "goals or funnels failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
}

/// A refused change: 400 with the reason, 404 for an unknown goal.
fn refused(e: MetadataError) -> Answer {
    match e {
        MetadataError::Invalid(m) => invalid(StatusCode::BAD_REQUEST, "", &m),
        e @ MetadataError::NotFound { .. } => error(StatusCode::NOT_FOUND, &e.to_string()),
        e => unavailable(&e),
    }
}
