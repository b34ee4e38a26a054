//! Segment / RudderStack HTTP tracking API: `POST /v1/track`, `/v1/page`,
//! `/v1/identify` (one message each) and `/v1/batch` (`{batch: [...],
//! sentAt?}`, each message with its `type`; `/v1/import` is the same).
//!
//! The write key (Basic auth user name, kept in `RawHit.write_key`, or a
//! `writeKey` field in the body as some libraries send it) admits the hit to
//! its site. `page` → `pageview` (URL from `properties.url` or
//! `context.page.url`); `track` → a custom event named by `event`;
//! `identify`, `screen`, `group` and `alias` are accepted and make no
//! event. `userId` or `anonymousId` is required on events. Event time is
//! `timestamp`, else `originalTimestamp` corrected for the client's clock
//! skew with `sentAt` as Segment does, else the receive time.
//! `context.ip` and `context.userAgent` are not used: identity comes from
//! the ids.

use serde_json::Value;

use hourglass_model::RawHit;

use super::fields::{
    MAX_PATH_CHARS, Obj, event_name, event_time, invalid, iso8601_ms, missing, opt_id, parse_json,
    parse_page_url, path, props_from_object, rejection,
};
use super::{Decoded, RejectReason, Rejection};
use crate::sites::{SiteConfig, SiteDirectory};

/// Messages in one `/v1/batch` request. Segment caps a batch at 500 KB,
/// not a count; 2,500 messages of ~200 bytes fill that.
pub const MAX_SEGMENT_BATCH_EVENTS: usize = 2500;

pub(super) fn is_segment_path(path: &str) -> bool {
    matches!(
        path,
        "/v1/track"
            | "/v1/page"
            | "/v1/identify"
            | "/v1/batch"
            | "/v1/import"
            | "/v1/screen"
            | "/v1/group"
            | "/v1/alias"
    )
}

pub(super) fn decode(
    hit: &RawHit,
    endpoint: &str,
    sites: &SiteDirectory,
) -> Result<Vec<Decoded>, Rejection> {
    let body = parse_json(&hit.body)?;
    let obj = body.as_object().ok_or_else(|| {
        rejection(
            RejectReason::MalformedBody,
            "",
            "the body must be a JSON object",
        )
    })?;
    let write_key = if hit.write_key.is_empty() {
        obj.get("writeKey").and_then(Value::as_str).unwrap_or("")
    } else {
        hit.write_key.as_str()
    };
    if write_key.is_empty() {
        return Err(rejection(
            RejectReason::BadWriteKey,
            "write_key",
            "no write key: send it as the Basic auth user name",
        ));
    }
    let site = sites.by_write_key(write_key).ok_or_else(|| {
        rejection(
            RejectReason::BadWriteKey,
            "write_key",
            "the write key admits no site",
        )
    })?;
    let ctx = Ctx {
        hit,
        site,
        sent_at_ms: sent_at(obj, "", "sentAt")?,
    };

    let mut out = Vec::new();
    match endpoint {
        "/v1/batch" | "/v1/import" => {
            let batch = match obj.get("batch") {
                None | Some(Value::Null) => return Err(missing("batch")),
                Some(Value::Array(batch)) => batch,
                Some(_) => return Err(invalid("batch", "`batch` must be an array of messages")),
            };
            if batch.is_empty() {
                return Err(rejection(
                    RejectReason::EmptyBatch,
                    "batch",
                    "the batch has no messages",
                ));
            }
            if batch.len() > MAX_SEGMENT_BATCH_EVENTS {
                return Err(rejection(
                    RejectReason::TooManyEvents,
                    "batch",
                    format!(
                        "{} messages in one batch; at most {MAX_SEGMENT_BATCH_EVENTS}",
                        batch.len()
                    ),
                ));
            }
            for (i, message) in batch.iter().enumerate() {
                let prefix = format!("batch[{i}]");
                let message = message
                    .as_object()
                    .ok_or_else(|| invalid(&prefix, "each message must be an object"))?;
                let kind = match message.get("type") {
                    None | Some(Value::Null) => return Err(missing(&path(&prefix, "type"))),
                    Some(Value::String(kind)) => kind.as_str(),
                    Some(_) => {
                        return Err(invalid(&path(&prefix, "type"), "`type` must be a string"));
                    }
                };
                decode_message(kind, message, &prefix, &ctx, &mut out)?;
            }
        }
        _ => {
            let kind = endpoint.trim_start_matches("/v1/");
            decode_message(kind, obj, "", &ctx, &mut out)?;
        }
    }
    Ok(out)
}

struct Ctx<'a> {
    hit: &'a RawHit,
    site: &'a SiteConfig,
    /// The request's `sentAt`, for messages that do not carry their own.
    sent_at_ms: Option<i64>,
}

fn decode_message(
    kind: &str,
    msg: &Obj,
    prefix: &str,
    ctx: &Ctx<'_>,
    out: &mut Vec<Decoded>,
) -> Result<(), Rejection> {
    match kind {
        "track" | "page" => {}
        "identify" | "screen" | "group" | "alias" => return Ok(()),
        other => {
            return Err(invalid(
                &path(prefix, "type"),
                format!(
                    "`{other}` is not a message type (track, page, identify, screen, group, alias)"
                ),
            ));
        }
    }

    let user_id = opt_id(msg, "userId", prefix)?;
    let client_id = opt_id(msg, "anonymousId", prefix)?;
    if user_id.is_none() && client_id.is_none() {
        return Err(rejection(
            RejectReason::MissingField,
            &path(prefix, "userId"),
            "`userId` or `anonymousId` is required",
        ));
    }

    let ts_ms = event_time(
        client_time(msg, prefix, ctx)?,
        ctx.hit.received_at_ms,
        &path(prefix, "timestamp"),
    )?;

    let empty = Obj::new();
    let properties_field = path(prefix, "properties");
    let properties = object(msg, "properties", prefix)?.unwrap_or(&empty);
    let context = object(msg, "context", prefix)?.unwrap_or(&empty);
    let context_field = path(prefix, "context");
    let page_ctx = object(context, "page", &context_field)?.unwrap_or(&empty);
    let page_ctx_field = path(&context_field, "page");

    // A page's own properties win over the context's copy of them.
    let (url_field, raw_url) = if kind == "page" && properties.contains_key("url") {
        (path(&properties_field, "url"), properties.get("url"))
    } else {
        (path(&page_ctx_field, "url"), page_ctx.get("url"))
    };
    let page = match raw_url {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) if u.trim().is_empty() => None,
        Some(Value::String(u)) => Some(parse_page_url(u, &url_field, false)?),
        Some(_) => return Err(invalid(&url_field, "the URL must be a string")),
    };
    let (referrer_field, raw_referrer) = if kind == "page" && properties.contains_key("referrer") {
        (
            path(&properties_field, "referrer"),
            properties.get("referrer"),
        )
    } else {
        (path(&page_ctx_field, "referrer"), page_ctx.get("referrer"))
    };
    let referrer = match raw_referrer {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(r)) if r.chars().count() <= MAX_PATH_CHARS => r.trim().to_owned(),
        Some(Value::String(_)) => {
            return Err(invalid(
                &referrer_field,
                format!("longer than {MAX_PATH_CHARS} characters"),
            ));
        }
        Some(_) => return Err(invalid(&referrer_field, "the referrer must be a string")),
    };

    let revenue = match properties.get("revenue") {
        None | Some(Value::Null) => None,
        Some(amount) => {
            let currency = match properties.get("currency") {
                None | Some(Value::Null) => Value::String("USD".to_owned()),
                Some(c) => c.clone(),
            };
            Some(
                super::fields::revenue(amount, &currency, &properties_field).map_err(|mut e| {
                    // Name Segment's property, not our {amount, currency} pair.
                    e.field = if e.field.ends_with(".amount") {
                        path(&properties_field, "revenue")
                    } else {
                        path(&properties_field, "currency")
                    };
                    e
                })?,
            )
        }
    };

    let (name, skip): (String, &[&str]) = if kind == "page" {
        (
            "pageview".to_owned(),
            &["url", "referrer", "path", "search"],
        )
    } else {
        (event_name(msg, &["event"], prefix)?, &[])
    };
    let mut props = props_from_object(properties, &properties_field, skip)?;
    if revenue.is_some() {
        props.retain(|(key, _)| key != "revenue" && key != "currency");
    }

    let mut decoded = Decoded::on_page(name, page.as_ref());
    if page.is_none()
        && kind == "page"
        && let Some(Value::String(p)) = properties.get("path")
    {
        decoded.pathname = p.chars().take(MAX_PATH_CHARS).collect();
    }
    decoded.site_id = ctx.site.site_id.clone();
    decoded.ts_ms = ts_ms;
    decoded.referrer = referrer;
    decoded.props = props;
    decoded.revenue = revenue;
    decoded.client_id = client_id;
    decoded.user_id = user_id;
    out.push(decoded);
    Ok(())
}

/// The client's idea of the event time, if it gave one.
fn client_time(msg: &Obj, prefix: &str, ctx: &Ctx<'_>) -> Result<Option<i64>, Rejection> {
    if let Some(ts) = sent_at(msg, prefix, "timestamp")? {
        return Ok(Some(ts));
    }
    let Some(original) = sent_at(msg, prefix, "originalTimestamp")? else {
        return Ok(None);
    };
    // Segment's skew correction: the client's clock is off by
    // (sentAt - receivedAt), so subtract it.
    let sent = sent_at(msg, prefix, "sentAt")?.or(ctx.sent_at_ms);
    Ok(Some(match sent {
        Some(sent) => ctx
            .hit
            .received_at_ms
            .saturating_sub(sent.saturating_sub(original)),
        None => original,
    }))
}

/// An optional ISO 8601 time field.
fn sent_at(obj: &Obj, prefix: &str, key: &str) -> Result<Option<i64>, Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => iso8601_ms(s).map(Some).ok_or_else(|| {
            invalid(
                &path(prefix, key),
                format!("`{key}` is not an ISO 8601 date-time"),
            )
        }),
        Some(_) => Err(invalid(
            &path(prefix, key),
            format!("`{key}` must be an ISO 8601 string"),
        )),
    }
}

fn object<'a>(obj: &'a Obj, key: &str, prefix: &str) -> Result<Option<&'a Obj>, Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(invalid(
            &path(prefix, key),
            format!("`{key}` must be an object"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use hourglass_model::Protocol;

    use super::super::decode as decode_hit;
    use super::*;

    const NOW: i64 = 1_693_569_600_000; // 2023-09-01T12:00:00Z

    fn sites() -> SiteDirectory {
        SiteDirectory::new(
            1,
            vec![SiteConfig {
                site_id: "app".into(),
                domain: "app.example.com".into(),
                allowed_hostnames: vec![],
                timezone: "UTC".into(),
                ga4: vec![],
                segment_write_keys: vec!["wk_live_123".into()],
            }],
        )
        .unwrap()
    }

    fn hit(path: &str, body: &str, write_key: &str) -> RawHit {
        RawHit {
            received_at_ms: NOW,
            protocol: Protocol::Segment as i32,
            method: "POST".into(),
            path_and_query: path.into(),
            body: body.as_bytes().to_vec(),
            write_key: write_key.into(),
            ..RawHit::default()
        }
    }

    fn decode(path: &str, body: &str) -> Result<Vec<Decoded>, Rejection> {
        decode_hit(&hit(path, body, "wk_live_123"), &sites())
    }

    /// What `@segment/analytics-node` posts to `/v1/batch` (Basic auth
    /// write key, `{batch, sentAt}`), here with a track, a page and an
    /// identify.
    #[test]
    fn analytics_node_batch() {
        let body = r#"{"batch":[{"userId":"foo-user-id","event":"test event","properties":{"foo":"bar","revenue":12.5,"currency":"eur"},"type":"track","messageId":"node-next-1693569599000-2f9b2e1c-6a2e-4d0b-9a8e-0c1d2e3f4a5b","timestamp":"2023-09-01T11:59:59.000Z","context":{"library":{"name":"@segment/analytics-node","version":"2.1.0"}},"integrations":{},"_metadata":{"nodeVersion":"20.5.1","jsRuntime":"node"}},{"userId":"foo-user-id","name":"Home","category":"Category","properties":{"category":"Category","url":"http://localhost/docs?utm_source=gh","referrer":"https://github.com/"},"type":"page","messageId":"node-next-1693569599001-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d","timestamp":"2023-09-01T11:59:59.500Z","context":{"library":{"name":"@segment/analytics-node","version":"2.1.0"}},"integrations":{},"_metadata":{"nodeVersion":"20.5.1","jsRuntime":"node"}},{"userId":"foo-user-id","traits":{"name":"Chris Radek"},"type":"identify","messageId":"node-next-1693569599002-1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d","timestamp":"2023-09-01T11:59:59.600Z","context":{"library":{"name":"@segment/analytics-node","version":"2.1.0"}},"integrations":{},"_metadata":{"nodeVersion":"20.5.1","jsRuntime":"node"}}],"sentAt":"2023-09-01T12:00:00.000Z"}"#;
        let out = decode("/v1/batch", body).unwrap();
        assert_eq!(out.len(), 2, "identify makes no event");
        let track = &out[0];
        assert_eq!(track.site_id, "app");
        assert_eq!(track.name, "test event");
        assert_eq!(track.ts_ms, NOW - 1000);
        assert_eq!(track.user_id.as_deref(), Some("foo-user-id"));
        assert_eq!(track.props, vec![("foo".into(), "bar".into())]);
        let revenue = track.revenue.as_ref().unwrap();
        assert_eq!(
            (revenue.micros, revenue.currency.as_str()),
            (12_500_000, "EUR")
        );
        let page = &out[1];
        assert_eq!(page.name, "pageview");
        assert_eq!(page.hostname, "localhost");
        assert_eq!(page.pathname, "/docs");
        assert_eq!(page.utm.source, "gh");
        assert_eq!(page.referrer, "https://github.com/");
        assert_eq!(page.props, vec![("category".into(), "Category".into())]);
        assert_eq!(page.ts_ms, NOW - 500);
    }

    /// analytics.js style single calls, with `context.page` and an
    /// anonymous id, and clock-skew correction.
    #[test]
    fn single_track_and_page_calls() {
        let body = r#"{"anonymousId":"507f191e810c19729de860ea","event":"Signed Up","properties":{"plan":"Pro"},"context":{"ip":"8.8.8.8","userAgent":"Mozilla/5.0","page":{"url":"https://app.example.com/signup","referrer":"https://ads.example.net/"}},"originalTimestamp":"2023-09-01T12:05:00.000Z","sentAt":"2023-09-01T12:05:02.000Z"}"#;
        let out = decode("/v1/track", body).unwrap();
        let d = &out[0];
        assert_eq!(d.name, "Signed Up");
        assert_eq!(d.client_id.as_deref(), Some("507f191e810c19729de860ea"));
        assert_eq!(d.pathname, "/signup");
        assert_eq!(d.referrer, "https://ads.example.net/");
        // The client's clock is 5 min ahead; the event left 2 s before it was sent.
        assert_eq!(d.ts_ms, NOW - 2000);
        let page = r#"{"userId":42,"properties":{"path":"/pricing","title":"Pricing"}}"#;
        let out = decode("/v1/page", page).unwrap();
        assert_eq!(
            (out[0].name.as_str(), out[0].pathname.as_str()),
            ("pageview", "/pricing")
        );
        assert_eq!(out[0].user_id.as_deref(), Some("42"));
        assert_eq!(out[0].props, vec![("title".into(), "Pricing".into())]);
        assert!(
            decode("/v1/identify", r#"{"userId":"u","traits":{}}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn write_key_admission() {
        let body = r#"{"userId":"u","event":"e"}"#;
        let err = decode_hit(&hit("/v1/track", body, ""), &sites()).unwrap_err();
        assert_eq!(
            (err.reason, err.field.as_str(), err.http_status()),
            (RejectReason::BadWriteKey, "write_key", 401)
        );
        let err = decode_hit(&hit("/v1/track", body, "wk_wrong"), &sites()).unwrap_err();
        assert_eq!(err.reason, RejectReason::BadWriteKey);
        // Some libraries put the key in the body instead.
        let in_body = r#"{"writeKey":"wk_live_123","userId":"u","event":"e"}"#;
        assert_eq!(
            decode_hit(&hit("/v1/track", in_body, ""), &sites())
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn malformed_messages_name_reason_and_field() {
        let cases: &[(&str, &str, RejectReason, &str)] = &[
            ("/v1/track", "nope", RejectReason::MalformedBody, ""),
            (
                "/v1/track",
                r#"{"event":"e"}"#,
                RejectReason::MissingField,
                "userId",
            ),
            (
                "/v1/track",
                r#"{"userId":"u"}"#,
                RejectReason::MissingField,
                "event",
            ),
            (
                "/v1/track",
                r#"{"userId":{},"event":"e"}"#,
                RejectReason::InvalidField,
                "userId",
            ),
            (
                "/v1/track",
                r#"{"userId":"u","event":"e","timestamp":"last week"}"#,
                RejectReason::InvalidField,
                "timestamp",
            ),
            (
                "/v1/track",
                r#"{"userId":"u","event":"e","timestamp":"2023-08-01T00:00:00Z"}"#,
                RejectReason::TimestampTooOld,
                "timestamp",
            ),
            (
                "/v1/track",
                r#"{"userId":"u","event":"e","properties":[1]}"#,
                RejectReason::InvalidField,
                "properties",
            ),
            (
                "/v1/track",
                r#"{"userId":"u","event":"e","properties":{"revenue":"lots"}}"#,
                RejectReason::InvalidField,
                "properties.revenue",
            ),
            (
                "/v1/page",
                r#"{"userId":"u","properties":{"url":"not a url"}}"#,
                RejectReason::InvalidField,
                "properties.url",
            ),
            (
                "/v1/track",
                r#"{"userId":"u","event":"e","context":{"page":{"url":7}}}"#,
                RejectReason::InvalidField,
                "context.page.url",
            ),
            ("/v1/batch", r#"{}"#, RejectReason::MissingField, "batch"),
            (
                "/v1/batch",
                r#"{"batch":[]}"#,
                RejectReason::EmptyBatch,
                "batch",
            ),
            (
                "/v1/batch",
                r#"{"batch":[{"userId":"u","event":"e"}]}"#,
                RejectReason::MissingField,
                "batch[0].type",
            ),
            (
                "/v1/batch",
                r#"{"batch":[{"type":"track","userId":"u","event":"e"},{"type":"fly","userId":"u"}]}"#,
                RejectReason::InvalidField,
                "batch[1].type",
            ),
            (
                "/v1/batch",
                r#"{"batch":[{"type":"track","userId":"u","event":"e"},{"type":"page"}]}"#,
                RejectReason::MissingField,
                "batch[1].userId",
            ),
            (
                "/v1/batch",
                r#"{"batch":[{"type":"track","userId":"u","event":"e"}],"sentAt":5}"#,
                RejectReason::InvalidField,
                "sentAt",
            ),
        ];
        for (path, body, reason, field) in cases {
            let err = decode(path, body).unwrap_err();
            assert_eq!(
                (err.reason, err.field.as_str()),
                (*reason, *field),
                "{path} {body}"
            );
        }
        let one = r#"{"type":"track","userId":"u","event":"e"}"#;
        let many = format!(
            r#"{{"batch":[{}]}}"#,
            vec![one; MAX_SEGMENT_BATCH_EVENTS + 1].join(",")
        );
        assert_eq!(
            decode("/v1/batch", &many).unwrap_err().reason,
            RejectReason::TooManyEvents
        );
    }
}
