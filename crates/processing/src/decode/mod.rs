//! Protocol decoding and admission: a [`RawHit`] becomes the [`Decoded`]
//! events it carries, or one [`Rejection`] that names the reason and field.
//!
//! Each protocol has its module; they share the field readers in `fields`.
//! Decoding is a pure function of the hit and the [`SiteDirectory`] (event
//! time is judged against `RawHit.received_at_ms`, never a clock), so the
//! edge and `reprocess` get the same answer for the same hit.
//!
//! A hit is all or nothing: one bad event refuses the whole request, with
//! the event's index in the field path, so the client sees which to fix.
//!
//! Which endpoints take which credentials: the unauthenticated native
//! endpoints (`/api/event`, `/api/batch`, `/i.gif`) are admitted by the
//! site's domain *and* the page hostname; GA4 and Segment hits are admitted
//! by their credential (`api_secret`, write key) alone, since they usually
//! come from servers and may carry no page URL.

mod fields;
mod ga4;
mod native;
mod reject;
mod segment;

use hourglass_model::{Protocol, RawHit};

use crate::sites::SiteDirectory;

pub use fields::{
    MAX_EVENT_NAME_CHARS, MAX_ID_CHARS, MAX_LATENESS_MS, MAX_PATH_CHARS, MAX_PROP_KEY_CHARS,
    MAX_PROP_VALUE_CHARS, MAX_PROPS, MAX_URL_BYTES,
};
pub use ga4::{
    MAX_GA4_EVENTS, ValidationCode, ValidationMessage, validate_ga4, validation_response_json,
};
pub use native::MAX_NATIVE_BATCH_EVENTS;
pub use reject::{RejectReason, Rejection};
pub use segment::MAX_SEGMENT_BATCH_EVENTS;

/// UTM parameters from the page URL's query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Utm {
    pub source: String,
    pub medium: String,
    pub campaign: String,
    pub content: String,
    pub term: String,
}

/// A revenue amount in millionths of `currency` (ISO 4217, upper case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revenue {
    pub micros: i64,
    pub currency: String,
}

/// One event as a protocol decoder understood it, before identity and
/// plugins. Holds the client's raw id strings so the identity stamp can hash
/// them; they are never copied into an [`Event`](hourglass_model::Event) and
/// `Debug` does not print them.
#[derive(Clone, PartialEq, Eq)]
pub struct Decoded {
    pub site_id: String,
    /// `pageview` or a custom event name.
    pub name: String,
    /// Event time, ms since the epoch (UTC), after the 72 h rule.
    pub ts_ms: i64,
    /// The page URL as parsed (empty when the protocol carried none).
    pub url: String,
    /// Page host without `www.`.
    pub hostname: String,
    pub pathname: String,
    pub referrer: String,
    pub utm: Utm,
    /// Custom props, sorted by key, keys unique.
    pub props: Vec<(String, String)>,
    pub revenue: Option<Revenue>,
    /// false for non-interactive events (they do not end a bounce).
    pub interactive: bool,
    /// GA4 `client_id`, Segment `anonymousId`, the tracker's opt-in `cid`.
    pub client_id: Option<String>,
    /// GA4 `user_id`, Segment `userId`.
    pub user_id: Option<String>,
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("site_id", &self.site_id)
            .field("name", &self.name)
            .field("ts_ms", &self.ts_ms)
            .field("hostname", &self.hostname)
            .field("pathname", &self.pathname)
            .field("referrer", &self.referrer)
            .field("utm", &self.utm)
            .field("props", &self.props)
            .field("revenue", &self.revenue)
            .field("interactive", &self.interactive)
            .field("client_id", &self.client_id.as_ref().map(|_| "<redacted>"))
            .field("user_id", &self.user_id.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Decoded {
    /// A pageview/custom event on a page, before site and time are known.
    fn on_page(name: String, page: Option<&fields::PageUrl>) -> Decoded {
        Decoded {
            site_id: String::new(),
            name,
            ts_ms: 0,
            url: page.map(|p| p.url.clone()).unwrap_or_default(),
            hostname: page.map(|p| p.hostname.clone()).unwrap_or_default(),
            pathname: page.map(|p| p.pathname.clone()).unwrap_or_default(),
            referrer: String::new(),
            utm: page.map(|p| p.utm.clone()).unwrap_or_default(),
            props: Vec::new(),
            revenue: None,
            interactive: true,
            client_id: None,
            user_id: None,
        }
    }
}

/// What an ingress path is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Hits of this protocol.
    Ingest(Protocol),
    /// GA4 `/debug/mp/collect`: answer [`validate_ga4`]'s messages, store
    /// nothing.
    Ga4Validate,
}

/// The endpoint a request path (with or without its query) belongs to.
pub fn endpoint_for(path_and_query: &str) -> Option<Endpoint> {
    let (path, _) = split_path(path_and_query);
    let protocol = match path {
        "/api/event" => Protocol::Native,
        "/api/batch" => Protocol::NativeBatch,
        "/i.gif" => Protocol::Pixel,
        "/mp/collect" => Protocol::Ga4Mp,
        "/debug/mp/collect" => return Some(Endpoint::Ga4Validate),
        p if segment::is_segment_path(p) => Protocol::Segment,
        _ => return None,
    };
    Some(Endpoint::Ingest(protocol))
}

/// Whether the edge may read a body of this `Content-Type` for the
/// protocol. Checked at the edge only: the content type is not archived,
/// and a refused hit never reaches the archive.
///
/// JSON bodies are accepted as `application/json` (any `+json` type too)
/// or `text/plain` (what the Plausible script and `sendBeacon` send), or
/// with no content type at all; the pixel has no body.
pub fn check_content_type(protocol: Protocol, content_type: Option<&str>) -> Result<(), Rejection> {
    if protocol == Protocol::Pixel {
        return Ok(());
    }
    let Some(content_type) = content_type else {
        return Ok(());
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = essence.is_empty()
        || essence == "application/json"
        || essence == "text/plain"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(Rejection::new(
            RejectReason::UnsupportedContentType,
            "content-type",
            format!("`{essence}` is not read here; send JSON as application/json or text/plain"),
        ))
    }
}

/// Decodes and admits a hit: the events it carries (possibly none, e.g. a
/// Segment `identify`), or the reason it is refused.
pub fn decode(hit: &RawHit, sites: &SiteDirectory) -> Result<Vec<Decoded>, Rejection> {
    let protocol = Protocol::try_from(hit.protocol).unwrap_or(Protocol::Unspecified);
    let (path, query) = split_path(&hit.path_and_query);
    if endpoint_for(path) != Some(Endpoint::Ingest(protocol)) {
        return Err(Rejection::new(
            RejectReason::UnknownEndpoint,
            "",
            format!("`{path}` does not take {protocol:?} hits"),
        ));
    }
    let method = if protocol == Protocol::Pixel {
        "GET"
    } else {
        "POST"
    };
    if !hit.method.eq_ignore_ascii_case(method) {
        return Err(Rejection::new(
            RejectReason::MethodNotAllowed,
            "",
            format!("`{path}` takes {method}, not `{}`", hit.method),
        ));
    }
    match protocol {
        Protocol::Native => native::decode_event(hit, sites),
        Protocol::NativeBatch => native::decode_batch(hit, sites),
        Protocol::Pixel => native::decode_pixel(hit, query, sites),
        Protocol::Ga4Mp => ga4::decode(hit, query, sites),
        Protocol::Segment => segment::decode(hit, path, sites),
        Protocol::Unspecified => Err(Rejection::new(
            RejectReason::UnknownEndpoint,
            "",
            "the hit has no protocol",
        )),
    }
}

fn split_path(path_and_query: &str) -> (&str, &str) {
    path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""))
}

/// The first value of a query parameter.
fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint_for("/api/event"),
            Some(Endpoint::Ingest(Protocol::Native))
        );
        assert_eq!(
            endpoint_for("/api/batch"),
            Some(Endpoint::Ingest(Protocol::NativeBatch))
        );
        assert_eq!(
            endpoint_for("/i.gif?n=pageview"),
            Some(Endpoint::Ingest(Protocol::Pixel))
        );
        assert_eq!(
            endpoint_for("/mp/collect?measurement_id=G-1&api_secret=x"),
            Some(Endpoint::Ingest(Protocol::Ga4Mp))
        );
        assert_eq!(
            endpoint_for("/debug/mp/collect?x"),
            Some(Endpoint::Ga4Validate)
        );
        for p in ["/v1/track", "/v1/page", "/v1/identify", "/v1/batch"] {
            assert_eq!(
                endpoint_for(p),
                Some(Endpoint::Ingest(Protocol::Segment)),
                "{p}"
            );
        }
        assert_eq!(endpoint_for("/v1/nope"), None);
        assert_eq!(endpoint_for("/"), None);
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(Protocol::Native, Some("text/plain")).is_ok());
        assert!(check_content_type(Protocol::Native, Some("text/plain;charset=UTF-8")).is_ok());
        assert!(check_content_type(Protocol::Segment, Some("application/json")).is_ok());
        assert!(check_content_type(Protocol::Ga4Mp, None).is_ok());
        assert!(check_content_type(Protocol::Pixel, Some("image/gif")).is_ok());
        let err = check_content_type(Protocol::Native, Some("application/x-www-form-urlencoded"))
            .unwrap_err();
        assert_eq!(err.reason, RejectReason::UnsupportedContentType);
        assert_eq!(err.http_status(), 415);
        assert_eq!(err.field, "content-type");
    }
}
