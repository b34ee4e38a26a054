//! The native, Plausible-compatible protocol: `POST /api/event` (one JSON
//! event), `POST /api/batch` (a JSON array of them), `GET /i.gif?…` (the
//! no-JS pixel, same fields as query parameters).
//!
//! Fields take the Plausible script's short names and the Events API's long
//! ones: `n`/`name`, `u`/`url`, `d`/`domain` (comma-separated for rollups;
//! absent = the URL's host), `r`/`referrer`, `p`/`props`/`m`/`meta` (object
//! or JSON-encoded object), `revenue`/`$` (`{amount, currency}`),
//! `interactive`/`i` (default true), `h`/`hashMode` (keep the `#fragment`
//! in the path). `cid` is Hourglass's own: an opt-in first-party id from the
//! tracker, used instead of the daily hash. Event time is the receive time.

use serde_json::Value;

use hourglass_model::RawHit;

use super::fields::{
    Obj, event_name, field, invalid, missing, opt_id, opt_str, parse_json, parse_page_url, path,
    props_value, referrer, rejection, revenue_value,
};
use super::{Decoded, RejectReason, Rejection};
use crate::sites::SiteDirectory;

/// Events in one `/api/batch` request.
pub const MAX_NATIVE_BATCH_EVENTS: usize = 500;

pub(super) fn decode_event(hit: &RawHit, sites: &SiteDirectory) -> Result<Vec<Decoded>, Rejection> {
    let body = parse_json(&hit.body)?;
    let obj = body.as_object().ok_or_else(|| {
        rejection(
            RejectReason::MalformedBody,
            "",
            "the body must be a JSON object",
        )
    })?;
    let mut out = Vec::with_capacity(1);
    decode_object(obj, "", hit, sites, &mut out)?;
    Ok(out)
}

pub(super) fn decode_batch(hit: &RawHit, sites: &SiteDirectory) -> Result<Vec<Decoded>, Rejection> {
    let body = parse_json(&hit.body)?;
    let events = body.as_array().ok_or_else(|| {
        rejection(
            RejectReason::MalformedBody,
            "",
            "the body must be a JSON array of events",
        )
    })?;
    if events.is_empty() {
        return Err(rejection(
            RejectReason::EmptyBatch,
            "",
            "the batch has no events",
        ));
    }
    if events.len() > MAX_NATIVE_BATCH_EVENTS {
        return Err(rejection(
            RejectReason::TooManyEvents,
            "",
            format!(
                "{} events in one batch; at most {MAX_NATIVE_BATCH_EVENTS}",
                events.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let prefix = format!("[{i}]");
        let obj = event
            .as_object()
            .ok_or_else(|| invalid(&prefix, "each event must be a JSON object"))?;
        decode_object(obj, &prefix, hit, sites, &mut out)?;
    }
    Ok(out)
}

pub(super) fn decode_pixel(
    hit: &RawHit,
    query: &str,
    sites: &SiteDirectory,
) -> Result<Vec<Decoded>, Rejection> {
    let mut obj = Obj::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if matches!(key.as_ref(), "n" | "u" | "d" | "r" | "p" | "h")
            && !obj.contains_key(key.as_ref())
        {
            obj.insert(key.into_owned(), Value::String(value.into_owned()));
        }
    }
    obj.entry("n")
        .or_insert_with(|| Value::String("pageview".to_owned()));
    let mut out = Vec::with_capacity(1);
    decode_object(&obj, "", hit, sites, &mut out)?;
    Ok(out)
}

fn decode_object(
    obj: &Obj,
    prefix: &str,
    hit: &RawHit,
    sites: &SiteDirectory,
    out: &mut Vec<Decoded>,
) -> Result<(), Rejection> {
    let name = event_name(obj, &["n", "name"], prefix)?;

    let url_key = field(obj, &["u", "url"]).map_or("u", |(k, _)| k);
    let url_field = path(prefix, url_key);
    let raw_url = opt_str(obj, &["u", "url"], prefix, usize::MAX)?
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| missing(&url_field))?;
    let page = parse_page_url(raw_url, &url_field, hash_mode(obj))?;

    let domain_key = field(obj, &["d", "domain"]).map_or("d", |(k, _)| k);
    let domain_field = path(prefix, domain_key);
    let domains = match opt_str(obj, &["d", "domain"], prefix, 2000)? {
        Some(d) => d.to_owned(),
        None => page.hostname.clone(),
    };
    if domains.trim().is_empty() {
        return Err(missing(&domain_field));
    }
    let targets = sites.by_domain_list(&domains).map_err(|unknown| {
        rejection(
            RejectReason::UnknownSite,
            &domain_field,
            format!("no site has the domain `{unknown}`"),
        )
    })?;
    for site in &targets {
        if !site.allows_hostname(&page.host) {
            return Err(rejection(
                RejectReason::HostnameNotAllowed,
                &url_field,
                format!(
                    "pages on `{}` may not send events for `{}`",
                    page.host, site.domain
                ),
            ));
        }
    }

    let referrer = referrer(obj, &["r", "referrer"], prefix)?;
    let props = match field(obj, &["p", "props", "m", "meta"]) {
        Some((key, value)) => props_value(value, &path(prefix, key))?,
        None => Vec::new(),
    };
    let revenue = match field(obj, &["revenue", "$"]) {
        Some((key, value)) => Some(revenue_value(value, &path(prefix, key))?),
        None => None,
    };
    let interactive = match field(obj, &["interactive", "i"]) {
        None => true,
        Some((_, Value::Bool(b))) => *b,
        Some((key, _)) => {
            return Err(invalid(
                &path(prefix, key),
                format!("`{key}` must be true or false"),
            ));
        }
    };
    let client_id = opt_id(obj, "cid", prefix)?;

    for site in targets {
        let mut decoded = Decoded::on_page(name.clone(), Some(&page));
        decoded.site_id = site.site_id.clone();
        decoded.ts_ms = hit.received_at_ms;
        decoded.referrer = referrer.clone();
        decoded.props = props.clone();
        decoded.revenue = revenue.clone();
        decoded.interactive = interactive;
        decoded.client_id = client_id.clone();
        out.push(decoded);
    }
    Ok(())
}

fn hash_mode(obj: &Obj) -> bool {
    match field(obj, &["h", "hashMode", "hash_mode"]) {
        Some((_, Value::Bool(b))) => *b,
        Some((_, Value::Number(n))) => n.as_i64() == Some(1),
        Some((_, Value::String(s))) => s == "1" || s == "true",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use hourglass_model::Protocol;

    use super::super::decode;
    use super::*;
    use crate::sites::SiteConfig;

    const NOW: i64 = 1_700_000_000_000;

    pub(crate) fn sites() -> SiteDirectory {
        let site = |id: &str, domain: &str| SiteConfig {
            site_id: id.into(),
            domain: domain.into(),
            allowed_hostnames: vec![],
            timezone: "UTC".into(),
            ga4: vec![],
            segment_write_keys: vec![],
        };
        let mut shop = site("shop", "shop.io");
        shop.allowed_hostnames = vec!["shop.io".into(), "checkout.pay.net".into()];
        let mut rollup = site("rollup", "rollup.net");
        rollup.allowed_hostnames = vec!["example.com".into(), "*.example.com".into()];
        SiteDirectory::new(1, vec![site("ex", "example.com"), rollup, shop]).unwrap()
    }

    fn hit(protocol: Protocol, method: &str, path: &str, body: &[u8]) -> RawHit {
        RawHit {
            received_at_ms: NOW,
            protocol: protocol as i32,
            method: method.into(),
            path_and_query: path.into(),
            body: body.to_vec(),
            user_agent: "Mozilla/5.0".into(),
            client_ip: "203.0.113.7".into(),
            ..RawHit::default()
        }
    }

    fn event(body: &str) -> Result<Vec<Decoded>, Rejection> {
        decode(
            &hit(Protocol::Native, "POST", "/api/event", body.as_bytes()),
            &sites(),
        )
    }

    fn reason_field(r: Result<Vec<Decoded>, Rejection>) -> (RejectReason, String) {
        let e = r.unwrap_err();
        (e.reason, e.field)
    }

    /// What the Plausible script's `XMLHttpRequest` sends, byte for byte
    /// (`Content-Type: text/plain`), for a pageview and a custom event.
    #[test]
    fn plausible_script_pageview() {
        let body = br#"{"n":"pageview","u":"https://www.example.com/blog/hello?utm_source=newsletter&utm_campaign=launch","d":"example.com","r":"https://news.ycombinator.com/","w":1440}"#;
        let out = decode(&hit(Protocol::Native, "POST", "/api/event", body), &sites()).unwrap();
        assert_eq!(out.len(), 1);
        let d = &out[0];
        assert_eq!(d.site_id, "ex");
        assert_eq!(d.name, "pageview");
        assert_eq!(d.hostname, "example.com");
        assert_eq!(d.pathname, "/blog/hello");
        assert_eq!(d.referrer, "https://news.ycombinator.com/");
        assert_eq!(d.utm.source, "newsletter");
        assert_eq!(d.utm.campaign, "launch");
        assert_eq!(d.ts_ms, NOW);
        assert!(d.interactive);
        assert_eq!(d.client_id, None);
    }

    #[test]
    fn plausible_script_custom_event_with_props_and_revenue() {
        let body = br#"{"n":"Purchase","u":"https://example.com/checkout","d":"example.com","r":null,"p":"{\"plan\":\"pro\",\"seats\":3}","$":"{\"amount\":\"49.90\",\"currency\":\"eur\"}","i":false}"#;
        let d = &decode(&hit(Protocol::Native, "POST", "/api/event", body), &sites()).unwrap()[0];
        assert_eq!(d.name, "Purchase");
        assert_eq!(d.referrer, "");
        assert_eq!(
            d.props,
            vec![("plan".into(), "pro".into()), ("seats".into(), "3".into())]
        );
        let revenue = d.revenue.as_ref().unwrap();
        assert_eq!(
            (revenue.micros, revenue.currency.as_str()),
            (49_900_000, "EUR")
        );
        assert!(!d.interactive);
    }

    /// The Events API's long names, as in Plausible's own curl example.
    #[test]
    fn events_api_long_names() {
        let body = r#"{"name":"Signup","url":"http://example.com/join","domain":"example.com","props":{"source":"ad"},"revenue":{"amount":10,"currency":"USD"},"interactive":true}"#;
        let d = &event(body).unwrap()[0];
        assert_eq!(d.name, "Signup");
        assert_eq!(d.props, vec![("source".into(), "ad".into())]);
        assert_eq!(d.revenue.as_ref().unwrap().micros, 10_000_000);
    }

    #[test]
    fn domain_defaults_to_url_host_and_rollups_fan_out() {
        let d = event(r#"{"n":"pageview","u":"https://blog.example.com/x"}"#);
        // blog.example.com is no site's domain, so nothing admits it.
        assert_eq!(reason_field(d), (RejectReason::UnknownSite, "d".into()));
        let d = event(r#"{"n":"pageview","u":"https://www.example.com/x"}"#).unwrap();
        assert_eq!(d[0].site_id, "ex");
        let d =
            event(r#"{"n":"pageview","u":"https://example.com/","d":"example.com,rollup.net"}"#)
                .unwrap();
        let ids: Vec<_> = d.iter().map(|d| d.site_id.as_str()).collect();
        assert_eq!(ids, ["ex", "rollup"]);
        // Every site in the list must allow the page's hostname.
        let d = event(r#"{"n":"pageview","u":"https://example.com/","d":"example.com,shop.io"}"#);
        assert_eq!(
            reason_field(d),
            (RejectReason::HostnameNotAllowed, "u".into())
        );
        let d = event(r#"{"n":"pageview","u":"https://example.com/","d":"example.com,nope.org"}"#);
        assert_eq!(reason_field(d), (RejectReason::UnknownSite, "d".into()));
    }

    #[test]
    fn hash_mode_keeps_fragment() {
        let d = &event(
            r##"{"n":"pageview","u":"https://example.com/app#/settings","d":"example.com","h":1}"##,
        )
        .unwrap()[0];
        assert_eq!(d.pathname, "/app#/settings");
    }

    #[test]
    fn opt_in_client_id() {
        let d = &event(
            r#"{"n":"pageview","u":"https://example.com/","d":"example.com","cid":"abc-123"}"#,
        )
        .unwrap()[0];
        assert_eq!(d.client_id.as_deref(), Some("abc-123"));
        assert!(
            !format!("{d:?}").contains("abc-123"),
            "Debug must not print ids"
        );
    }

    #[test]
    fn malformed_events_name_reason_and_field() {
        let cases: &[(&str, RejectReason, &str)] = &[
            ("", RejectReason::MalformedBody, ""),
            ("not json", RejectReason::MalformedBody, ""),
            ("[1,2]", RejectReason::MalformedBody, ""),
            (
                r#"{"u":"https://example.com/","d":"example.com"}"#,
                RejectReason::MissingField,
                "n",
            ),
            (
                r#"{"n":"  ","u":"https://example.com/","d":"example.com"}"#,
                RejectReason::MissingField,
                "n",
            ),
            (
                r#"{"n":7,"u":"https://example.com/","d":"example.com"}"#,
                RejectReason::InvalidField,
                "n",
            ),
            (
                r#"{"n":"pageview","d":"example.com"}"#,
                RejectReason::MissingField,
                "u",
            ),
            (
                r#"{"n":"pageview","url":"/relative","d":"example.com"}"#,
                RejectReason::InvalidField,
                "url",
            ),
            (
                r#"{"n":"pageview","u":"https://example.com/","d":""}"#,
                RejectReason::MissingField,
                "d",
            ),
            (
                r#"{"n":"pageview","u":"https://example.com/","d":"nope.org"}"#,
                RejectReason::UnknownSite,
                "d",
            ),
            (
                r#"{"n":"pageview","u":"https://evil.org/","d":"example.com"}"#,
                RejectReason::HostnameNotAllowed,
                "u",
            ),
            (
                r#"{"n":"pageview","u":"https://example.com/","d":"example.com","r":5}"#,
                RejectReason::InvalidField,
                "r",
            ),
            (
                r#"{"n":"pageview","u":"https://example.com/","d":"example.com","p":[1]}"#,
                RejectReason::InvalidField,
                "p",
            ),
            (
                r#"{"n":"pageview","u":"https://example.com/","d":"example.com","p":"{oops"}"#,
                RejectReason::InvalidField,
                "p",
            ),
            (
                r#"{"n":"x","u":"https://example.com/","d":"example.com","revenue":{"amount":"ten","currency":"USD"}}"#,
                RejectReason::InvalidField,
                "revenue.amount",
            ),
            (
                r#"{"n":"x","u":"https://example.com/","d":"example.com","revenue":{"amount":1,"currency":"dollars"}}"#,
                RejectReason::InvalidField,
                "revenue.currency",
            ),
            (
                r#"{"n":"x","u":"https://example.com/","d":"example.com","revenue":{"amount":1}}"#,
                RejectReason::MissingField,
                "revenue.currency",
            ),
            (
                r#"{"n":"x","u":"https://example.com/","d":"example.com","interactive":"no"}"#,
                RejectReason::InvalidField,
                "interactive",
            ),
        ];
        for (body, reason, field) in cases {
            let got = reason_field(event(body));
            assert_eq!(got, (*reason, (*field).to_owned()), "body: {body}");
        }
    }

    #[test]
    fn hostname_allowlist() {
        let ok =
            event(r#"{"n":"pageview","u":"https://checkout.pay.net/x","d":"shop.io"}"#).unwrap();
        assert_eq!(ok[0].site_id, "shop");
        assert_eq!(ok[0].hostname, "checkout.pay.net");
        let err = event(r#"{"n":"pageview","u":"https://blog.shop.io/x","d":"shop.io"}"#);
        assert_eq!(
            reason_field(err),
            (RejectReason::HostnameNotAllowed, "u".into())
        );
    }

    #[test]
    fn batch_decodes_each_event_and_names_the_index() {
        let body = br#"[{"n":"pageview","u":"https://example.com/a","d":"example.com"},{"n":"click","u":"https://example.com/b","d":"example.com","p":{"btn":"buy"}}]"#;
        let out = decode(
            &hit(Protocol::NativeBatch, "POST", "/api/batch", body),
            &sites(),
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].name, "click");
        let bad = br#"[{"n":"pageview","u":"https://example.com/a","d":"example.com"},{"n":"pageview","d":"example.com"}]"#;
        let err = decode(
            &hit(Protocol::NativeBatch, "POST", "/api/batch", bad),
            &sites(),
        )
        .unwrap_err();
        assert_eq!(
            (err.reason, err.field.as_str()),
            (RejectReason::MissingField, "[1].u")
        );
        let err = decode(
            &hit(Protocol::NativeBatch, "POST", "/api/batch", b"[]"),
            &sites(),
        )
        .unwrap_err();
        assert_eq!(err.reason, RejectReason::EmptyBatch);
        let err = decode(
            &hit(Protocol::NativeBatch, "POST", "/api/batch", b"[3]"),
            &sites(),
        )
        .unwrap_err();
        assert_eq!(
            (err.reason, err.field.as_str()),
            (RejectReason::InvalidField, "[0]")
        );
        let one = r#"{"n":"pageview","u":"https://example.com/","d":"example.com"}"#;
        let many = format!("[{}]", vec![one; MAX_NATIVE_BATCH_EVENTS + 1].join(","));
        let err = decode(
            &hit(Protocol::NativeBatch, "POST", "/api/batch", many.as_bytes()),
            &sites(),
        )
        .unwrap_err();
        assert_eq!(
            (err.reason, err.http_status()),
            (RejectReason::TooManyEvents, 413)
        );
        let max = format!("[{}]", vec![one; MAX_NATIVE_BATCH_EVENTS].join(","));
        let out = decode(
            &hit(Protocol::NativeBatch, "POST", "/api/batch", max.as_bytes()),
            &sites(),
        )
        .unwrap();
        assert_eq!(out.len(), MAX_NATIVE_BATCH_EVENTS);
    }

    #[test]
    fn pixel_reads_the_query() {
        let q = "/i.gif?n=pageview&u=https%3A%2F%2Fexample.com%2Fnojs%3Futm_medium%3Dcpc&d=example.com&r=https%3A%2F%2Fduckduckgo.com%2F";
        let out = decode(&hit(Protocol::Pixel, "GET", q, b""), &sites()).unwrap();
        assert_eq!(out[0].pathname, "/nojs");
        assert_eq!(out[0].utm.medium, "cpc");
        assert_eq!(out[0].referrer, "https://duckduckgo.com/");
        let out = decode(
            &hit(
                Protocol::Pixel,
                "GET",
                "/i.gif?u=https%3A%2F%2Fexample.com%2F",
                b"",
            ),
            &sites(),
        )
        .unwrap();
        assert_eq!(out[0].name, "pageview");
        let err = decode(
            &hit(Protocol::Pixel, "GET", "/i.gif?d=example.com", b""),
            &sites(),
        )
        .unwrap_err();
        assert_eq!(
            (err.reason, err.field.as_str()),
            (RejectReason::MissingField, "u")
        );
    }

    #[test]
    fn method_and_path_must_fit_the_protocol() {
        let body = br#"{"n":"pageview","u":"https://example.com/","d":"example.com"}"#;
        let err = decode(&hit(Protocol::Native, "GET", "/api/event", body), &sites()).unwrap_err();
        assert_eq!(
            (err.reason, err.http_status()),
            (RejectReason::MethodNotAllowed, 405)
        );
        let err = decode(&hit(Protocol::Native, "POST", "/api/batch", body), &sites()).unwrap_err();
        assert_eq!(
            (err.reason, err.http_status()),
            (RejectReason::UnknownEndpoint, 404)
        );
        let err = decode(
            &hit(Protocol::Unspecified, "POST", "/api/event", body),
            &sites(),
        )
        .unwrap_err();
        assert_eq!(err.reason, RejectReason::UnknownEndpoint);
    }
}
