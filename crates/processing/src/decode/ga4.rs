//! GA4 Measurement Protocol: `POST /mp/collect?measurement_id=…&api_secret=…`
//! with a JSON body `{client_id, user_id?, timestamp_micros?,
//! user_properties?, events: [{name, params?, timestamp_micros?}]}`.
//!
//! The payload rules are Google's (≤ 25 events, names ≤ 40 characters that
//! start with a letter and use letters, digits and `_`, ≤ 25 params, value
//! lengths, reserved names), checked in one place, [`check`], which
//! collects every issue: `/mp/collect` refuses the hit on the first, and
//! `/debug/mp/collect` ([`validate_ga4`]) reports them all, so the
//! validation endpoint says "valid" exactly when collection would accept the
//! payload. As with Google's validation server, `api_secret` is not checked
//! there.
//!
//! Mapping: `page_view` → `pageview`; `page_location` → URL (host, path,
//! UTM); `page_referrer` → referrer; `value` + `currency` → revenue; every
//! other scalar param → a prop (`items` arrays are validated, not kept).
//! `client_id` (or an app's `app_instance_id`) and `user_id` identify the
//! visitor.

use serde::Serialize;
use serde_json::Value;

use hourglass_model::RawHit;

use super::fields::{
    MAX_ID_CHARS, Obj, PageUrl, event_time, micros_value, parse_json, parse_page_url, path,
};
use super::{Decoded, RejectReason, Rejection, Revenue, query_param, split_path};
use crate::sites::SiteDirectory;

/// Events in one request (Google's limit).
pub const MAX_GA4_EVENTS: usize = 25;
const MAX_PARAMS: usize = 25;
const MAX_USER_PROPERTIES: usize = 25;
const MAX_NAME_CHARS: usize = 40;
const MAX_USER_PROPERTY_NAME_CHARS: usize = 24;
const MAX_USER_PROPERTY_VALUE_CHARS: usize = 36;
const MAX_PARAM_VALUE_CHARS: usize = 100;
const MAX_ITEMS: usize = 200;
const MAX_USER_ID_CHARS: usize = 256;

const RESERVED_EVENT_NAMES: &[&str] = &[
    "ad_activeview",
    "ad_click",
    "ad_exposure",
    "ad_impression",
    "ad_query",
    "ad_reward",
    "adunit_exposure",
    "app_background",
    "app_clear_data",
    "app_exception",
    "app_remove",
    "app_store_refund",
    "app_update",
    "app_upgrade",
    "dynamic_link_app_open",
    "dynamic_link_app_update",
    "dynamic_link_first_open",
    "error",
    "first_open",
    "first_visit",
    "in_app_purchase",
    "notification_dismiss",
    "notification_foreground",
    "notification_open",
    "notification_receive",
    "notification_send",
    "os_update",
    "session_start",
    "user_engagement",
];
const RESERVED_PARAM_NAMES: &[&str] = &["firebase_conversion"];
const RESERVED_USER_PROPERTY_NAMES: &[&str] = &[
    "first_open_time",
    "first_visit_time",
    "last_deep_link_referrer",
    "user_id",
    "first_open_after_install",
];
const RESERVED_PREFIXES: &[&str] = &["google_", "ga_", "firebase_"];

/// GA4's validation codes, spelled as Google spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValidationCode {
    ValueInvalid,
    ValueRequired,
    NameInvalid,
    NameReserved,
    ValueOutOfBounds,
    ExceededMaxEntities,
    NameDuplicated,
}

/// One entry of `/debug/mp/collect`'s `validationMessages`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationMessage {
    pub field_path: String,
    pub description: String,
    pub validation_code: ValidationCode,
}

/// The `/debug/mp/collect` response body: `{"validationMessages": [...]}`.
pub fn validation_response_json(messages: &[ValidationMessage]) -> String {
    serde_json::json!({ "validationMessages": messages }).to_string()
}

/// Everything `/mp/collect` would object to in this hit's payload (empty:
/// valid). The measurement id must be present; the secret is not checked.
pub fn validate_ga4(hit: &RawHit) -> Vec<ValidationMessage> {
    let (_, query) = split_path(&hit.path_and_query);
    let mut issues = Vec::new();
    if query_param(query, "measurement_id").is_none_or(|m| m.trim().is_empty()) {
        issues.push(Issue::missing("measurement_id"));
    }
    check(&hit.body, hit.received_at_ms, &mut issues);
    issues
        .into_iter()
        .map(|i| ValidationMessage {
            field_path: i.field,
            description: i.detail,
            validation_code: i.code,
        })
        .collect()
}

pub(super) fn decode(
    hit: &RawHit,
    query: &str,
    sites: &SiteDirectory,
) -> Result<Vec<Decoded>, Rejection> {
    let measurement_id = query_param(query, "measurement_id")
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| super::fields::missing("measurement_id"))?;
    let (site, stream) = sites.by_measurement_id(&measurement_id).ok_or_else(|| {
        Rejection::new(
            RejectReason::UnknownSite,
            "measurement_id",
            format!("no site has the GA4 measurement id `{measurement_id}`"),
        )
    })?;
    let secret = query_param(query, "api_secret")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| super::fields::missing("api_secret"))?;
    // Compare digests: blake3::Hash equality is constant-time.
    if blake3::hash(secret.as_bytes()) != blake3::hash(stream.api_secret.as_bytes()) {
        return Err(Rejection::new(
            RejectReason::BadApiSecret,
            "api_secret",
            "the api_secret does not belong to this measurement id",
        ));
    }
    let mut issues = Vec::new();
    let payload = check(&hit.body, hit.received_at_ms, &mut issues);
    let payload = match (issues.into_iter().next(), payload) {
        (Some(first), _) => return Err(Rejection::new(first.reason, first.field, first.detail)),
        (None, Some(payload)) => payload,
        (None, None) => {
            return Err(Rejection::new(
                RejectReason::MalformedBody,
                "",
                "the payload could not be read",
            ));
        }
    };
    Ok(payload
        .events
        .into_iter()
        .map(|event| {
            let mut decoded = Decoded::on_page(event.name, event.page.as_ref());
            decoded.site_id = site.site_id.clone();
            decoded.ts_ms = event.ts_ms;
            decoded.referrer = event.referrer;
            decoded.props = event.props;
            decoded.revenue = event.revenue;
            decoded.client_id = Some(payload.client_id.clone());
            decoded.user_id = payload.user_id.clone();
            decoded
        })
        .collect())
}

/// One problem with a payload: both a [`Rejection`] and a GA4 message.
struct Issue {
    reason: RejectReason,
    code: ValidationCode,
    field: String,
    detail: String,
}

impl Issue {
    fn new(
        reason: RejectReason,
        code: ValidationCode,
        field: &str,
        detail: impl Into<String>,
    ) -> Issue {
        Issue {
            reason,
            code,
            field: field.to_owned(),
            detail: detail.into(),
        }
    }

    fn missing(field: &str) -> Issue {
        Issue::new(
            RejectReason::MissingField,
            ValidationCode::ValueRequired,
            field,
            format!("`{field}` is required"),
        )
    }

    fn invalid(field: &str, detail: impl Into<String>) -> Issue {
        Issue::new(
            RejectReason::InvalidField,
            ValidationCode::ValueInvalid,
            field,
            detail,
        )
    }

    fn out_of_bounds(field: &str, detail: impl Into<String>) -> Issue {
        Issue::new(
            RejectReason::InvalidField,
            ValidationCode::ValueOutOfBounds,
            field,
            detail,
        )
    }
}

struct Ga4Event {
    name: String,
    page: Option<PageUrl>,
    referrer: String,
    props: Vec<(String, String)>,
    revenue: Option<Revenue>,
    ts_ms: i64,
}

struct Ga4Payload {
    client_id: String,
    user_id: Option<String>,
    events: Vec<Ga4Event>,
}

/// Reads the payload, pushing every issue found; the payload is only
/// complete when no issue was pushed.
fn check(body: &[u8], received_at_ms: i64, issues: &mut Vec<Issue>) -> Option<Ga4Payload> {
    let value = match parse_json(body) {
        Ok(v) => v,
        Err(e) => {
            issues.push(Issue::new(
                e.reason,
                ValidationCode::ValueInvalid,
                "",
                e.detail,
            ));
            return None;
        }
    };
    let Some(obj) = value.as_object() else {
        issues.push(Issue::new(
            RejectReason::MalformedBody,
            ValidationCode::ValueInvalid,
            "",
            "the body must be a JSON object",
        ));
        return None;
    };
    let start = issues.len();

    let client_key = if obj.get("client_id").is_some_and(|v| !v.is_null())
        || obj.get("app_instance_id").is_none()
    {
        "client_id"
    } else {
        "app_instance_id"
    };
    let client_id = match obj.get(client_key) {
        None | Some(Value::Null) => {
            issues.push(Issue::missing("client_id"));
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            issues.push(Issue::missing(client_key));
            None
        }
        Some(Value::String(s)) if s.chars().count() > MAX_ID_CHARS => {
            issues.push(Issue::out_of_bounds(
                client_key,
                format!("`{client_key}` is longer than {MAX_ID_CHARS} characters"),
            ));
            None
        }
        Some(Value::String(s)) => Some(s.trim().to_owned()),
        Some(_) => {
            issues.push(Issue::invalid(
                client_key,
                format!("`{client_key}` must be a string"),
            ));
            None
        }
    };

    let user_id = match obj.get("user_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() > MAX_USER_ID_CHARS => {
            issues.push(Issue::out_of_bounds(
                "user_id",
                format!("`user_id` is longer than {MAX_USER_ID_CHARS} characters"),
            ));
            None
        }
        Some(Value::String(s)) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Some(_) => {
            issues.push(Issue::invalid("user_id", "`user_id` must be a string"));
            None
        }
    };

    let request_micros = timestamp_micros(obj, "timestamp_micros", issues);
    check_user_properties(obj, issues);

    let events = match obj.get("events") {
        None | Some(Value::Null) => {
            issues.push(Issue::missing("events"));
            return None;
        }
        Some(Value::Array(events)) => events,
        Some(_) => {
            issues.push(Issue::invalid("events", "`events` must be an array"));
            return None;
        }
    };
    if events.is_empty() {
        issues.push(Issue::new(
            RejectReason::EmptyBatch,
            ValidationCode::ValueRequired,
            "events",
            "`events` has no event",
        ));
        return None;
    }
    if events.len() > MAX_GA4_EVENTS {
        issues.push(Issue::new(
            RejectReason::TooManyEvents,
            ValidationCode::ExceededMaxEntities,
            "events",
            format!(
                "{} events in one request; at most {MAX_GA4_EVENTS}",
                events.len()
            ),
        ));
        return None;
    }

    let mut out = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let prefix = format!("events[{i}]");
        let Some(event) = event.as_object() else {
            issues.push(Issue::invalid(&prefix, "each event must be an object"));
            continue;
        };
        if let Some(event) = check_event(event, &prefix, request_micros, received_at_ms, issues) {
            out.push(event);
        }
    }

    if issues.len() > start {
        return None;
    }
    Some(Ga4Payload {
        client_id: client_id?,
        user_id,
        events: out,
    })
}

fn check_event(
    event: &Obj,
    prefix: &str,
    request_micros: Option<i64>,
    received_at_ms: i64,
    issues: &mut Vec<Issue>,
) -> Option<Ga4Event> {
    let start = issues.len();
    let name_field = path(prefix, "name");
    let name = match event.get("name") {
        None | Some(Value::Null) => {
            issues.push(Issue::missing(&name_field));
            None
        }
        Some(Value::String(name)) => {
            check_name(
                name,
                &name_field,
                MAX_NAME_CHARS,
                RESERVED_EVENT_NAMES,
                issues,
            );
            Some(name.as_str())
        }
        Some(_) => {
            issues.push(Issue::invalid(
                &name_field,
                "the event name must be a string",
            ));
            None
        }
    };

    let empty = Obj::new();
    let params_field = path(prefix, "params");
    let params = match event.get("params") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(params)) => params,
        Some(_) => {
            issues.push(Issue::invalid(&params_field, "`params` must be an object"));
            &empty
        }
    };
    if params.len() > MAX_PARAMS {
        issues.push(Issue::new(
            RejectReason::InvalidField,
            ValidationCode::ExceededMaxEntities,
            &params_field,
            format!("{} params; at most {MAX_PARAMS}", params.len()),
        ));
    }
    for (key, value) in params {
        let field = path(&params_field, key);
        check_name(key, &field, MAX_NAME_CHARS, RESERVED_PARAM_NAMES, issues);
        check_param_value(key, value, &field, issues);
    }

    let page = match params.get("page_location").and_then(Value::as_str) {
        Some(raw) if !raw.trim().is_empty() => {
            match parse_page_url(raw, &path(&params_field, "page_location"), false) {
                Ok(page) => Some(page),
                Err(e) => {
                    issues.push(Issue::invalid(&e.field, e.detail));
                    None
                }
            }
        }
        _ => None,
    };
    let referrer = params
        .get("page_referrer")
        .and_then(Value::as_str)
        .map(|r| r.trim().to_owned())
        .unwrap_or_default();

    let micros =
        timestamp_micros(event, &path(prefix, "timestamp_micros"), issues).or(request_micros);
    let ts_field = if event.contains_key("timestamp_micros") {
        path(prefix, "timestamp_micros")
    } else {
        "timestamp_micros".to_owned()
    };
    let ts_ms = match event_time(
        micros.map(|m| m.div_euclid(1000)),
        received_at_ms,
        &ts_field,
    ) {
        Ok(ts) => ts,
        Err(e) => {
            issues.push(Issue::new(
                e.reason,
                ValidationCode::ValueOutOfBounds,
                &e.field,
                e.detail,
            ));
            received_at_ms
        }
    };

    if issues.len() > start {
        return None;
    }

    // `value` + a valid `currency` make a revenue; otherwise both stay props.
    let revenue = match (params.get("value"), params.get("currency")) {
        (Some(amount), Some(currency)) => {
            super::fields::revenue(amount, currency, &params_field).ok()
        }
        _ => None,
    };
    let mut props: Vec<(String, String)> = params
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "page_location" | "page_referrer"))
        .filter(|(key, _)| revenue.is_none() || !matches!(key.as_str(), "value" | "currency"))
        .filter_map(|(key, value)| {
            let value = match value {
                Value::String(s) if s.trim().is_empty() => return None,
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null | Value::Array(_) | Value::Object(_) => return None,
            };
            Some((key.clone(), value))
        })
        .collect();
    props.sort();

    let name = name?;
    Some(Ga4Event {
        name: if name == "page_view" {
            "pageview".to_owned()
        } else {
            name.to_owned()
        },
        page,
        referrer,
        props,
        revenue,
        ts_ms,
    })
}

/// GA4 name rules: starts with a letter; letters, digits, `_`; bounded;
/// not reserved.
fn check_name(
    name: &str,
    field: &str,
    max_chars: usize,
    reserved: &[&str],
    issues: &mut Vec<Issue>,
) {
    let invalid_name = |detail: String| {
        Issue::new(
            RejectReason::InvalidField,
            ValidationCode::NameInvalid,
            field,
            detail,
        )
    };
    if name.is_empty() {
        issues.push(Issue::missing(field));
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        issues.push(invalid_name(format!(
            "`{name}` is not a valid name: names must start with a letter"
        )));
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        issues.push(invalid_name(format!(
            "`{name}` is not a valid name: only letters, digits and underscores"
        )));
    } else if name.len() > max_chars {
        issues.push(Issue::out_of_bounds(
            field,
            format!("`{name}` is longer than {max_chars} characters"),
        ));
    } else if reserved.contains(&name) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        issues.push(Issue::new(
            RejectReason::InvalidField,
            ValidationCode::NameReserved,
            field,
            format!("`{name}` is a reserved name"),
        ));
    }
}

fn check_param_value(key: &str, value: &Value, field: &str, issues: &mut Vec<Issue>) {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
        Value::String(s) => {
            let max = match key {
                "page_location" => 1000,
                "page_referrer" => 420,
                "page_title" => 300,
                _ => MAX_PARAM_VALUE_CHARS,
            };
            if s.chars().count() > max {
                issues.push(Issue::out_of_bounds(
                    field,
                    format!("the value is longer than {max} characters"),
                ));
            }
        }
        Value::Array(items) if key == "items" => {
            if items.len() > MAX_ITEMS {
                issues.push(Issue::new(
                    RejectReason::InvalidField,
                    ValidationCode::ExceededMaxEntities,
                    field,
                    format!("{} items; at most {MAX_ITEMS}", items.len()),
                ));
            }
            if let Some(i) = items.iter().position(|item| !item.is_object()) {
                issues.push(Issue::invalid(
                    &format!("{field}[{i}]"),
                    "each item must be an object",
                ));
            }
        }
        Value::Array(_) | Value::Object(_) => {
            issues.push(Issue::invalid(
                field,
                "param values must be strings, numbers or booleans (only `items` may be an array)",
            ));
        }
    }
}

fn check_user_properties(obj: &Obj, issues: &mut Vec<Issue>) {
    let properties = match obj.get("user_properties") {
        None | Some(Value::Null) => return,
        Some(Value::Object(p)) => p,
        Some(_) => {
            issues.push(Issue::invalid(
                "user_properties",
                "`user_properties` must be an object",
            ));
            return;
        }
    };
    if properties.len() > MAX_USER_PROPERTIES {
        issues.push(Issue::new(
            RejectReason::InvalidField,
            ValidationCode::ExceededMaxEntities,
            "user_properties",
            format!(
                "{} user properties; at most {MAX_USER_PROPERTIES}",
                properties.len()
            ),
        ));
    }
    for (name, property) in properties {
        let field = path("user_properties", name);
        check_name(
            name,
            &field,
            MAX_USER_PROPERTY_NAME_CHARS,
            RESERVED_USER_PROPERTY_NAMES,
            issues,
        );
        match property.as_object().map(|p| p.get("value")) {
            Some(Some(Value::String(v))) if v.chars().count() > MAX_USER_PROPERTY_VALUE_CHARS => {
                issues.push(Issue::out_of_bounds(
                    &path(&field, "value"),
                    format!("the value is longer than {MAX_USER_PROPERTY_VALUE_CHARS} characters"),
                ));
            }
            Some(Some(Value::Array(_) | Value::Object(_))) => {
                issues.push(Issue::invalid(
                    &path(&field, "value"),
                    "the value must be a scalar",
                ));
            }
            Some(_) => {}
            None => issues.push(Issue::invalid(
                &field,
                "a user property must be an object {value}",
            )),
        }
    }
}

fn timestamp_micros(obj: &Obj, field: &str, issues: &mut Vec<Issue>) -> Option<i64> {
    let key = field.rsplit('.').next().unwrap_or(field);
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(value) => {
            let micros = micros_value(value);
            if micros.is_none() {
                issues.push(Issue::invalid(
                    field,
                    "`timestamp_micros` must be an integer",
                ));
            }
            micros
        }
    }
}

#[cfg(test)]
mod tests {
    use hourglass_model::Protocol;

    use super::super::decode as decode_hit;
    use super::*;
    use crate::sites::{Ga4Stream, SiteConfig};

    const NOW: i64 = 1_700_000_000_000;
    const PATH: &str = "/mp/collect?measurement_id=G-TEST123&api_secret=s3cr3t";

    fn sites() -> SiteDirectory {
        SiteDirectory::new(
            1,
            vec![SiteConfig {
                site_id: "ex".into(),
                domain: "example.com".into(),
                allowed_hostnames: vec![],
                timezone: "UTC".into(),
                ga4: vec![Ga4Stream {
                    measurement_id: "G-TEST123".into(),
                    api_secret: "s3cr3t".into(),
                }],
                segment_write_keys: vec![],
            }],
        )
        .unwrap()
    }

    fn hit(path: &str, body: &str) -> RawHit {
        RawHit {
            received_at_ms: NOW,
            protocol: Protocol::Ga4Mp as i32,
            method: "POST".into(),
            path_and_query: path.into(),
            body: body.as_bytes().to_vec(),
            ..RawHit::default()
        }
    }

    fn decode(body: &str) -> Result<Vec<Decoded>, Rejection> {
        decode_hit(&hit(PATH, body), &sites())
    }

    /// The shape of Google's "send an event" example: one custom event
    /// with params, a client id, no timestamp.
    #[test]
    fn google_docs_example_payload() {
        let body = r#"{
  "client_id": "123456.7654321",
  "non_personalized_ads": false,
  "user_properties": {
    "customer_tier": {
      "value": "premium"
    }
  },
  "events": [{
    "name": "campaign_details",
    "params": {
      "campaign_id": "google_1234",
      "campaign": "Summer_fun",
      "source": "google",
      "medium": "cpc",
      "term": "summer+travel",
      "content": "logolink",
      "session_id": "123",
      "engagement_time_msec": "100"
    }
  }]
}"#;
        let out = decode(body).unwrap();
        assert_eq!(out.len(), 1);
        let d = &out[0];
        assert_eq!(d.site_id, "ex");
        assert_eq!(d.name, "campaign_details");
        assert_eq!(d.ts_ms, NOW);
        assert_eq!(d.client_id.as_deref(), Some("123456.7654321"));
        assert_eq!(d.user_id, None);
        assert_eq!(d.props.len(), 8);
        assert_eq!(d.props[0], ("campaign".into(), "Summer_fun".into()));
        assert!(validate_ga4(&hit(PATH, body)).is_empty());
    }

    #[test]
    fn page_view_with_location_user_id_timestamp_and_revenue() {
        let ts_micros = (NOW - 3_600_000) * 1000;
        let body = format!(
            r#"{{"client_id":"c1","user_id":"u-42","timestamp_micros":{ts_micros},
            "events":[
              {{"name":"page_view","params":{{"page_location":"https://example.com/pricing?utm_source=ads","page_referrer":"https://google.com/","page_title":"Pricing"}}}},
              {{"name":"purchase","params":{{"currency":"USD","value":30.03,"transaction_id":"T_1","items":[{{"item_id":"SKU_1"}}]}}}}
            ]}}"#
        );
        let out = decode(&body).unwrap();
        assert_eq!(out[0].name, "pageview");
        assert_eq!(out[0].pathname, "/pricing");
        assert_eq!(out[0].utm.source, "ads");
        assert_eq!(out[0].referrer, "https://google.com/");
        assert_eq!(out[0].props, vec![("page_title".into(), "Pricing".into())]);
        assert_eq!(out[0].ts_ms, NOW - 3_600_000);
        assert_eq!(out[0].user_id.as_deref(), Some("u-42"));
        let revenue = out[1].revenue.as_ref().unwrap();
        assert_eq!(
            (revenue.micros, revenue.currency.as_str()),
            (30_030_000, "USD")
        );
        assert_eq!(out[1].props, vec![("transaction_id".into(), "T_1".into())]);
    }

    #[test]
    fn admission_failures() {
        let body = r#"{"client_id":"c","events":[{"name":"x"}]}"#;
        let cases = [
            (
                "/mp/collect?api_secret=s3cr3t",
                RejectReason::MissingField,
                "measurement_id",
                400,
            ),
            (
                "/mp/collect?measurement_id=G-NOPE&api_secret=s3cr3t",
                RejectReason::UnknownSite,
                "measurement_id",
                400,
            ),
            (
                "/mp/collect?measurement_id=G-TEST123",
                RejectReason::MissingField,
                "api_secret",
                400,
            ),
            (
                "/mp/collect?measurement_id=G-TEST123&api_secret=wrong",
                RejectReason::BadApiSecret,
                "api_secret",
                403,
            ),
        ];
        for (path, reason, field, status) in cases {
            let err = decode_hit(&hit(path, body), &sites()).unwrap_err();
            assert_eq!(
                (err.reason, err.field.as_str(), err.http_status()),
                (reason, field, status),
                "{path}"
            );
        }
    }

    #[test]
    fn malformed_payloads_name_reason_and_field() {
        let cases: &[(&str, RejectReason, &str)] = &[
            ("{", RejectReason::MalformedBody, ""),
            ("[]", RejectReason::MalformedBody, ""),
            (
                r#"{"events":[{"name":"x"}]}"#,
                RejectReason::MissingField,
                "client_id",
            ),
            (
                r#"{"client_id":5,"events":[{"name":"x"}]}"#,
                RejectReason::InvalidField,
                "client_id",
            ),
            (r#"{"client_id":"c"}"#, RejectReason::MissingField, "events"),
            (
                r#"{"client_id":"c","events":[]}"#,
                RejectReason::EmptyBatch,
                "events",
            ),
            (
                r#"{"client_id":"c","events":[{"params":{}}]}"#,
                RejectReason::MissingField,
                "events[0].name",
            ),
            (
                r#"{"client_id":"c","events":[{"name":"_bad"}]}"#,
                RejectReason::InvalidField,
                "events[0].name",
            ),
            (
                r#"{"client_id":"c","events":[{"name":"has space"}]}"#,
                RejectReason::InvalidField,
                "events[0].name",
            ),
            (
                r#"{"client_id":"c","events":[{"name":"a23456789012345678901234567890123456789012"}]}"#,
                RejectReason::InvalidField,
                "events[0].name",
            ),
            (
                r#"{"client_id":"c","events":[{"name":"session_start"}]}"#,
                RejectReason::InvalidField,
                "events[0].name",
            ),
            (
                r#"{"client_id":"c","events":[{"name":"ok","params":{"ga_x":1}}]}"#,
                RejectReason::InvalidField,
                "events[0].params.ga_x",
            ),
            (
                r#"{"client_id":"c","events":[{"name":"ok","params":{"o":{"a":1}}}]}"#,
                RejectReason::InvalidField,
                "events[0].params.o",
            ),
            (
                r#"{"client_id":"c","events":[{"name":"ok","params":{"page_location":"nope"}}]}"#,
                RejectReason::InvalidField,
                "events[0].params.page_location",
            ),
            (
                r#"{"client_id":"c","timestamp_micros":"soon","events":[{"name":"ok"}]}"#,
                RejectReason::InvalidField,
                "timestamp_micros",
            ),
            (
                r#"{"client_id":"c","user_properties":{"1st":{"value":"x"}},"events":[{"name":"ok"}]}"#,
                RejectReason::InvalidField,
                "user_properties.1st",
            ),
        ];
        for (body, reason, field) in cases {
            let err = decode(body).unwrap_err();
            assert_eq!(
                (err.reason, err.field.as_str()),
                (*reason, *field),
                "body: {body}"
            );
        }
        let too_many = format!(
            r#"{{"client_id":"c","events":[{}]}}"#,
            vec![r#"{"name":"e"}"#; MAX_GA4_EVENTS + 1].join(",")
        );
        let err = decode(&too_many).unwrap_err();
        assert_eq!(
            (err.reason, err.http_status()),
            (RejectReason::TooManyEvents, 413)
        );
        let max = format!(
            r#"{{"client_id":"c","events":[{}]}}"#,
            vec![r#"{"name":"e"}"#; MAX_GA4_EVENTS].join(",")
        );
        assert_eq!(decode(&max).unwrap().len(), MAX_GA4_EVENTS);
    }

    #[test]
    fn seventy_two_hour_rule() {
        let ok = (NOW - 71 * 3_600_000) * 1000;
        let old = (NOW - 73 * 3_600_000) * 1000;
        let future = (NOW + 3_600_000) * 1000;
        let body = |top: i64, ev: Option<i64>| match ev {
            Some(e) => format!(
                r#"{{"client_id":"c","timestamp_micros":{top},"events":[{{"name":"e","timestamp_micros":{e}}}]}}"#
            ),
            None => {
                format!(r#"{{"client_id":"c","timestamp_micros":{top},"events":[{{"name":"e"}}]}}"#)
            }
        };
        assert_eq!(
            decode(&body(ok, None)).unwrap()[0].ts_ms,
            NOW - 71 * 3_600_000
        );
        assert_eq!(decode(&body(future, None)).unwrap()[0].ts_ms, NOW);
        let err = decode(&body(old, None)).unwrap_err();
        assert_eq!(
            (err.reason, err.field.as_str()),
            (RejectReason::TimestampTooOld, "timestamp_micros")
        );
        // A per-event timestamp wins over the request's.
        assert_eq!(
            decode(&body(old, Some(ok))).unwrap()[0].ts_ms,
            NOW - 71 * 3_600_000
        );
        let err = decode(&body(ok, Some(old))).unwrap_err();
        assert_eq!(err.field, "events[0].timestamp_micros");
    }

    /// Google's validation example: an invalid event name.
    #[test]
    fn debug_endpoint_reports_every_issue() {
        let h = hit(
            "/debug/mp/collect?measurement_id=G-TEST123&api_secret=anything",
            r#"{"client_id":"x","events":[{"name":"_badEventName","params":{}},{"name":"ok","params":{"google_x":"y"}}]}"#,
        );
        let messages = validate_ga4(&h);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].field_path, "events[0].name");
        assert_eq!(messages[0].validation_code, ValidationCode::NameInvalid);
        assert_eq!(messages[1].validation_code, ValidationCode::NameReserved);
        let json: Value = serde_json::from_str(&validation_response_json(&messages)).unwrap();
        assert_eq!(
            json["validationMessages"][0]["validationCode"],
            "NAME_INVALID"
        );
        assert_eq!(json["validationMessages"][0]["fieldPath"], "events[0].name");
        assert!(json["validationMessages"][0]["description"].is_string());
        let missing = validate_ga4(&hit("/debug/mp/collect", r#"{"events":[{"name":"x"}]}"#));
        let codes: Vec<_> = missing
            .iter()
            .map(|m| (m.field_path.as_str(), m.validation_code))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("measurement_id", ValidationCode::ValueRequired),
                ("client_id", ValidationCode::ValueRequired)
            ]
        );
    }
}
