//! Field readers shared by the protocol decoders: JSON access with named
//! errors, page URLs, event time, props, revenue.

use serde_json::{Map, Value};

use super::{RejectReason, Rejection, Revenue, Utm};

pub(crate) type Obj = Map<String, Value>;

/// Client event times may be this far behind the receive time (the archive
/// layout and `reprocess` rely on this bound; see DESIGN "Archive").
pub const MAX_LATENESS_MS: i64 = 72 * 3600 * 1000;
/// Longest page URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 8192;
/// Longest pathname and referrer, in characters (Plausible's limit).
pub const MAX_PATH_CHARS: usize = 2000;
/// Longest custom event name, in characters (GA4 names have their own rule).
pub const MAX_EVENT_NAME_CHARS: usize = 120;
/// At most this many custom props per event.
pub const MAX_PROPS: usize = 64;
pub const MAX_PROP_KEY_CHARS: usize = 300;
pub const MAX_PROP_VALUE_CHARS: usize = 2000;
/// Client and user ids longer than this are refused (they are only hashed).
pub const MAX_ID_CHARS: usize = 1024;
/// |revenue| at most a trillion currency units, so micros fit in an i64.
const MAX_REVENUE_MICROS: i64 = 1_000_000_000_000 * 1_000_000;

pub(crate) fn rejection(reason: RejectReason, field: &str, detail: impl Into<String>) -> Rejection {
    Rejection::new(reason, field, detail)
}

pub(crate) fn invalid(field: &str, detail: impl Into<String>) -> Rejection {
    rejection(RejectReason::InvalidField, field, detail)
}

pub(crate) fn missing(field: &str) -> Rejection {
    rejection(
        RejectReason::MissingField,
        field,
        format!("`{field}` is required"),
    )
}

/// `prefix.key`, or `key` at the top level.
pub(crate) fn path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

pub(crate) fn parse_json(body: &[u8]) -> Result<Value, Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(rejection(
            RejectReason::MalformedBody,
            "",
            "the body is empty",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        rejection(
            RejectReason::MalformedBody,
            "",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// The first of `keys` present with a non-null value, and which one it was
/// (so errors name the field as the client spelled it).
pub(crate) fn field<'a>(obj: &'a Obj, keys: &[&'static str]) -> Option<(&'static str, &'a Value)> {
    keys.iter()
        .find_map(|&k| obj.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
}

/// An optional string field (null counts as absent).
pub(crate) fn opt_str<'a>(
    obj: &'a Obj,
    keys: &[&'static str],
    prefix: &str,
    max_chars: usize,
) -> Result<Option<&'a str>, Rejection> {
    let Some((key, value)) = field(obj, keys) else {
        return Ok(None);
    };
    let Some(s) = value.as_str() else {
        return Err(invalid(
            &path(prefix, key),
            format!("`{key}` must be a string"),
        ));
    };
    if s.chars().count() > max_chars {
        return Err(invalid(
            &path(prefix, key),
            format!("`{key}` is longer than {max_chars} characters"),
        ));
    }
    Ok(Some(s))
}

/// A required, non-blank string field.
pub(crate) fn req_str<'a>(
    obj: &'a Obj,
    keys: &[&'static str],
    prefix: &str,
    max_chars: usize,
) -> Result<&'a str, Rejection> {
    match opt_str(obj, keys, prefix, max_chars)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(missing(&path(prefix, keys[0]))),
    }
}

/// An id the client chose (Segment allows numbers): non-blank, bounded.
pub(crate) fn opt_id(
    obj: &Obj,
    key: &'static str,
    prefix: &str,
) -> Result<Option<String>, Rejection> {
    let id = match obj.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(invalid(
                &path(prefix, key),
                format!("`{key}` must be a string"),
            ));
        }
    };
    if id.chars().count() > MAX_ID_CHARS {
        return Err(invalid(
            &path(prefix, key),
            format!("`{key}` is longer than {MAX_ID_CHARS} characters"),
        ));
    }
    Ok((!id.is_empty()).then_some(id))
}

/// An event name: trimmed, non-blank, bounded.
pub(crate) fn event_name(
    obj: &Obj,
    keys: &[&'static str],
    prefix: &str,
) -> Result<String, Rejection> {
    Ok(req_str(obj, keys, prefix, MAX_EVENT_NAME_CHARS)?
        .trim()
        .to_owned())
}

/// A page URL split into what events keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PageUrl {
    pub url: String,
    /// Host as sent, lower case; empty for URLs without one.
    pub host: String,
    /// Host without a `www.` prefix, as events store it.
    pub hostname: String,
    pub pathname: String,
    pub utm: Utm,
}

pub(crate) fn parse_page_url(
    raw: &str,
    field: &str,
    hash_mode: bool,
) -> Result<PageUrl, Rejection> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_BYTES {
        return Err(invalid(
            field,
            format!("the URL is longer than {MAX_URL_BYTES} bytes"),
        ));
    }
    let url =
        url::Url::parse(raw).map_err(|e| invalid(field, format!("not an absolute URL ({e})")))?;
    if matches!(url.scheme(), "data" | "javascript" | "blob") {
        return Err(invalid(
            field,
            format!("the `{}:` scheme is not allowed", url.scheme()),
        ));
    }
    let host = url
        .host_str()
        .unwrap_or("")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let hostname = crate::sites::strip_www(&host).to_owned();
    let mut pathname = percent_decode(url.path()).trim_end().to_owned();
    if pathname.is_empty() {
        pathname.push('/');
    }
    if hash_mode && let Some(fragment) = url.fragment() {
        pathname.push('#');
        pathname.push_str(&percent_decode(fragment));
    }
    if pathname.chars().count() > MAX_PATH_CHARS {
        return Err(invalid(
            field,
            format!("the path is longer than {MAX_PATH_CHARS} characters"),
        ));
    }
    let mut utm = Utm::default();
    for (key, value) in url.query_pairs() {
        let slot = match key.as_ref() {
            "utm_source" => &mut utm.source,
            "utm_medium" => &mut utm.medium,
            "utm_campaign" => &mut utm.campaign,
            "utm_content" => &mut utm.content,
            "utm_term" => &mut utm.term,
            _ => continue,
        };
        if slot.is_empty() {
            *slot = value.trim().to_owned();
        }
    }
    Ok(PageUrl {
        url: url.into(),
        host,
        hostname,
        pathname,
        utm,
    })
}

/// `%XX` decoding; invalid UTF-8 becomes U+FFFD, a stray `%` stays.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|&c| (c as char).to_digit(16)),
                bytes.get(i + 2).and_then(|&c| (c as char).to_digit(16)),
            )
        {
            // Two hex digits make at most 0xFF.
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A referrer: free text as the browser reported it, bounded.
pub(crate) fn referrer(
    obj: &Obj,
    keys: &[&'static str],
    prefix: &str,
) -> Result<String, Rejection> {
    Ok(opt_str(obj, keys, prefix, MAX_PATH_CHARS)?
        .map(|s| s.trim().to_owned())
        .unwrap_or_default())
}

/// The event time for a client-supplied time: the future is clamped to the
/// receive time; more than [`MAX_LATENESS_MS`] in the past is refused.
pub(crate) fn event_time(
    client_ms: Option<i64>,
    received_at_ms: i64,
    field: &str,
) -> Result<i64, Rejection> {
    let Some(ts) = client_ms else {
        return Ok(received_at_ms);
    };
    if ts >= received_at_ms {
        return Ok(received_at_ms);
    }
    if received_at_ms.saturating_sub(ts) > MAX_LATENESS_MS {
        return Err(rejection(
            RejectReason::TimestampTooOld,
            field,
            format!(
                "the event time is {} h before the hit was received; at most 72 h are accepted",
                received_at_ms.saturating_sub(ts) / 3_600_000
            ),
        ));
    }
    Ok(ts)
}

/// Microseconds since the epoch from a JSON number or a numeric string.
pub(crate) fn micros_value(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            let f = n.as_f64()?;
            (f.is_finite() && f.abs() < 9.0e18).then_some(f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Milliseconds since the epoch from an RFC 3339 / ISO 8601 date-time; one
/// without an offset is taken as UTC.
pub(crate) fn iso8601_ms(s: &str) -> Option<i64> {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    let s = s.trim();
    let at = time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(s, &Iso8601::DEFAULT))
        .or_else(|_| time::PrimitiveDateTime::parse(s, &Iso8601::DEFAULT).map(|p| p.assume_utc()))
        .ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Custom props from a JSON object: scalar values become strings; null,
/// empty strings, arrays and objects are left out (as Plausible does);
/// sorted by key so the output never depends on map order.
pub(crate) fn props_from_object(
    obj: &Obj,
    field: &str,
    skip: &[&str],
) -> Result<Vec<(String, String)>, Rejection> {
    let mut props = Vec::new();
    for (key, value) in obj {
        if skip.contains(&key.as_str()) {
            continue;
        }
        let value = match value {
            Value::String(s) if s.trim().is_empty() => continue,
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null | Value::Array(_) | Value::Object(_) => continue,
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(invalid(field, "a prop name is empty"));
        }
        if key.chars().count() > MAX_PROP_KEY_CHARS {
            return Err(invalid(
                field,
                format!("a prop name is longer than {MAX_PROP_KEY_CHARS} characters"),
            ));
        }
        if value.chars().count() > MAX_PROP_VALUE_CHARS {
            return Err(invalid(
                &path(field, key),
                format!("the value is longer than {MAX_PROP_VALUE_CHARS} characters"),
            ));
        }
        props.push((key.to_owned(), value));
    }
    if props.len() > MAX_PROPS {
        return Err(invalid(field, format!("more than {MAX_PROPS} props")));
    }
    props.sort();
    props.dedup_by(|a, b| a.0 == b.0);
    Ok(props)
}

/// Props given as an object or as a JSON-encoded object (the Plausible
/// script's older form).
pub(crate) fn props_value(value: &Value, field: &str) -> Result<Vec<(String, String)>, Rejection> {
    match value {
        Value::Object(obj) => props_from_object(obj, field, &[]),
        Value::String(s) if s.trim().is_empty() => Ok(Vec::new()),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(obj)) => props_from_object(&obj, field, &[]),
            Ok(Value::Null) => Ok(Vec::new()),
            _ => Err(invalid(
                field,
                "props must be an object or a JSON-encoded object",
            )),
        },
        _ => Err(invalid(
            field,
            "props must be an object or a JSON-encoded object",
        )),
    }
}

/// `{amount, currency}`, as an object or a JSON-encoded object.
pub(crate) fn revenue_value(value: &Value, field: &str) -> Result<Revenue, Rejection> {
    let decoded;
    let obj = match value {
        Value::Object(obj) => obj,
        Value::String(s) => {
            decoded = serde_json::from_str::<Value>(s)
                .map_err(|_| invalid(field, "revenue must be an object {amount, currency}"))?;
            decoded
                .as_object()
                .ok_or_else(|| invalid(field, "revenue must be an object {amount, currency}"))?
        }
        _ => {
            return Err(invalid(
                field,
                "revenue must be an object {amount, currency}",
            ));
        }
    };
    let amount = obj
        .get("amount")
        .filter(|v| !v.is_null())
        .ok_or_else(|| missing(&path(field, "amount")))?;
    let currency = obj
        .get("currency")
        .filter(|v| !v.is_null())
        .ok_or_else(|| missing(&path(field, "currency")))?;
    revenue(amount, currency, field)
}

/// A revenue from an amount (number or decimal string) and an ISO 4217 code.
pub(crate) fn revenue(amount: &Value, currency: &Value, field: &str) -> Result<Revenue, Rejection> {
    let micros = amount_micros(amount).ok_or_else(|| {
        invalid(
            &path(field, "amount"),
            "the amount must be a decimal number of at most 10^12 units",
        )
    })?;
    let currency = currency_code(currency).ok_or_else(|| {
        invalid(
            &path(field, "currency"),
            "the currency must be a 3-letter ISO 4217 code",
        )
    })?;
    Ok(Revenue { micros, currency })
}

pub(crate) fn currency_code(value: &Value) -> Option<String> {
    let code = value.as_str()?.trim();
    (code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| code.to_ascii_uppercase())
}

pub(crate) fn amount_micros(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => decimal_micros(&n.to_string()),
        Value::String(s) => decimal_micros(s),
        _ => None,
    }
}

/// Exact decimal to millionths (half-up at the 7th digit), so `12.34`
/// never turns into `12339999`. Exponent forms go through `f64`.
pub(crate) fn decimal_micros(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.contains(['e', 'E']) {
        let f: f64 = s.parse().ok()?;
        let micros = (f * 1e6).round();
        return (micros.is_finite() && micros.abs() <= MAX_REVENUE_MICROS as f64)
            .then_some(micros as i64);
    }
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int = int.trim_start_matches('0');
    if int.len() > 13 {
        return None;
    }
    let mut micros: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    micros = micros.checked_mul(1_000_000)?;
    let mut scale = 100_000;
    for (i, b) in frac.bytes().enumerate() {
        let digit = i64::from(b - b'0');
        if i < 6 {
            micros += digit * scale;
            scale /= 10;
        } else {
            if digit >= 5 {
                micros += 1;
            }
            break;
        }
    }
    if micros > MAX_REVENUE_MICROS {
        return None;
    }
    Some(if negative { -micros } else { micros })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal_micros("12.34"), Some(12_340_000));
        assert_eq!(decimal_micros("0.1"), Some(100_000));
        assert_eq!(decimal_micros("-5"), Some(-5_000_000));
        assert_eq!(decimal_micros(".5"), Some(500_000));
        assert_eq!(decimal_micros("1.0000005"), Some(1_000_001));
        assert_eq!(decimal_micros("1.0000004999"), Some(1_000_000));
        assert_eq!(decimal_micros("1e3"), Some(1_000_000_000));
        assert_eq!(decimal_micros("abc"), None);
        assert_eq!(decimal_micros("1.2.3"), None);
        assert_eq!(decimal_micros(""), None);
        assert_eq!(decimal_micros("-"), None);
        assert_eq!(decimal_micros("99999999999999999999"), None);
        assert_eq!(amount_micros(&serde_json::json!(19.99)), Some(19_990_000));
    }

    #[test]
    fn urls_split_into_host_path_and_utm() {
        let u = parse_page_url(
            "https://WWW.Example.com/caf%C3%A9/?utm_source=news&utm_medium=email&utm_campaign=x&utm_source=dup#top",
            "u",
            false,
        )
        .unwrap();
        assert_eq!(u.host, "www.example.com");
        assert_eq!(u.hostname, "example.com");
        assert_eq!(u.pathname, "/café/");
        assert_eq!(u.utm.source, "news");
        assert_eq!(u.utm.medium, "email");
        assert_eq!(u.utm.campaign, "x");
        let h = parse_page_url("https://example.com/app#/settings", "u", true).unwrap();
        assert_eq!(h.pathname, "/app#/settings");
        assert_eq!(
            parse_page_url("/relative", "u", false).unwrap_err().reason,
            RejectReason::InvalidField
        );
        assert_eq!(
            parse_page_url("data:text/html,hi", "u", false)
                .unwrap_err()
                .field,
            "u"
        );
        let app = parse_page_url("app://localhost/login", "u", false).unwrap();
        assert_eq!(
            (app.host.as_str(), app.pathname.as_str()),
            ("localhost", "/login")
        );
    }

    #[test]
    fn event_time_rule() {
        let now = 1_700_000_000_000;
        assert_eq!(event_time(None, now, "t"), Ok(now));
        assert_eq!(event_time(Some(now + 10_000), now, "t"), Ok(now));
        assert_eq!(
            event_time(Some(now - MAX_LATENESS_MS), now, "t"),
            Ok(now - MAX_LATENESS_MS)
        );
        let err = event_time(Some(now - MAX_LATENESS_MS - 1), now, "t").unwrap_err();
        assert_eq!(
            (err.reason, err.field.as_str()),
            (RejectReason::TimestampTooOld, "t")
        );
        assert!(event_time(Some(i64::MIN), now, "t").is_err());
    }

    #[test]
    fn iso_timestamps() {
        assert_eq!(
            iso8601_ms("2023-09-01T12:00:00.000Z"),
            Some(1_693_569_600_000)
        );
        assert_eq!(
            iso8601_ms("2023-09-01T14:00:00+02:00"),
            Some(1_693_569_600_000)
        );
        assert_eq!(iso8601_ms("2023-09-01T12:00:00"), Some(1_693_569_600_000));
        assert_eq!(iso8601_ms("yesterday"), None);
    }

    #[test]
    fn props_keep_scalars_sorted() {
        let v =
            serde_json::json!({"b": 2, "a": "x", "c": true, "n": null, "e": "", "l": [1], "o": {}});
        let props = props_value(&v, "p").unwrap();
        assert_eq!(
            props,
            vec![
                ("a".into(), "x".into()),
                ("b".into(), "2".into()),
                ("c".into(), "true".into())
            ]
        );
        let s = serde_json::json!("{\"k\":\"v\"}");
        assert_eq!(
            props_value(&s, "p").unwrap(),
            vec![("k".into(), "v".into())]
        );
        assert_eq!(
            props_value(&serde_json::json!("[1]"), "p")
                .unwrap_err()
                .field,
            "p"
        );
    }
}
