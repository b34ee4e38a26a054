//! Why a hit was refused: one stable, named reason per cause, with the HTTP
//! status the edge answers and the field the client should fix.

use hourglass_model::Reject;

/// Every reason a hit can be refused by the host pipeline.
///
/// [`as_str`](Self::as_str) is a metric label value and the
/// `Reject.reason` stored in batches: never rename one, only add.
///
/// Statuses follow one rule: the body or query is wrong → 400 (this
/// includes an unknown site: the `d` / `measurement_id` field names no
/// site, which the client fixes like any other bad field, and a 404 would
/// read as "wrong endpoint"); a credential is missing or wrong → 401 for
/// the Basic-auth write key (the edge adds `WWW-Authenticate`), 403 for a
/// GA4 `api_secret` and for a hostname the site does not allow; the
/// request's shape is wrong → 404/405/413/415.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The body is not JSON, or not the JSON shape the endpoint takes.
    MalformedBody,
    /// A required field is absent, null or blank.
    MissingField,
    /// A field has the wrong type or breaks a rule (length, characters…).
    InvalidField,
    /// A batch with no events.
    EmptyBatch,
    /// No site has this domain (`d`) or GA4 measurement id.
    UnknownSite,
    /// The page's hostname is not one the site allows.
    HostnameNotAllowed,
    /// The GA4 `api_secret` does not belong to the measurement id's stream.
    BadApiSecret,
    /// The Segment write key is missing or admits no site.
    BadWriteKey,
    /// The client's event time is more than 72 h before the hit arrived.
    TimestampTooOld,
    /// More events than the endpoint allows in one request.
    TooManyEvents,
    /// A body in a content type the endpoint does not read.
    UnsupportedContentType,
    /// The method is not the endpoint's (e.g. `GET /api/event`).
    MethodNotAllowed,
    /// The path does not belong to the hit's protocol.
    UnknownEndpoint,
    /// Reprocessing only: the hit's stored identity stamps do not fit its
    /// decoded events (missing, or a different count or site). Never
    /// produced by admission, so never answered to a client.
    IdentityMismatch,
}

impl RejectReason {
    /// All reasons, e.g. to pre-register metric label values.
    pub const ALL: [RejectReason; 14] = [
        RejectReason::MalformedBody,
        RejectReason::MissingField,
        RejectReason::InvalidField,
        RejectReason::EmptyBatch,
        RejectReason::UnknownSite,
        RejectReason::HostnameNotAllowed,
        RejectReason::BadApiSecret,
        RejectReason::BadWriteKey,
        RejectReason::TimestampTooOld,
        RejectReason::TooManyEvents,
        RejectReason::UnsupportedContentType,
        RejectReason::MethodNotAllowed,
        RejectReason::UnknownEndpoint,
        RejectReason::IdentityMismatch,
    ];

    /// Stable snake_case name: metric label value and `Reject.reason`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedBody => "malformed_body",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::EmptyBatch => "empty_batch",
            RejectReason::UnknownSite => "unknown_site",
            RejectReason::HostnameNotAllowed => "hostname_not_allowed",
            RejectReason::BadApiSecret => "bad_api_secret",
            RejectReason::BadWriteKey => "bad_write_key",
            RejectReason::TimestampTooOld => "timestamp_too_old",
            RejectReason::TooManyEvents => "too_many_events",
            RejectReason::UnsupportedContentType => "unsupported_content_type",
            RejectReason::MethodNotAllowed => "method_not_allowed",
            RejectReason::UnknownEndpoint => "unknown_endpoint",
            RejectReason::IdentityMismatch => "identity_mismatch",
        }
    }

    /// The status the edge answers with.
    pub const fn http_status(self) -> u16 {
        match self {
            RejectReason::MalformedBody
            | RejectReason::MissingField
            | RejectReason::InvalidField
            | RejectReason::EmptyBatch
            | RejectReason::UnknownSite
            | RejectReason::TimestampTooOld => 400,
            RejectReason::BadWriteKey => 401,
            RejectReason::HostnameNotAllowed | RejectReason::BadApiSecret => 403,
            RejectReason::UnknownEndpoint => 404,
            RejectReason::MethodNotAllowed => 405,
            RejectReason::TooManyEvents => 413,
            RejectReason::UnsupportedContentType => 415,
            RejectReason::IdentityMismatch => 500,
        }
    }

    /// The reason for a stored `Reject.reason`, if it is one of ours.
    pub fn from_label(label: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == label)
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused hit: the reason, the offending field as the client spelled it
/// (`u`, `[3].n`, `events[0].name`, `batch[2].timestamp`; empty when the
/// whole request is at fault), and a sentence for a human.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}{}: {detail}", if field.is_empty() { String::new() } else { format!(" ({field})") })]
pub struct Rejection {
    pub reason: RejectReason,
    pub field: String,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, field: impl Into<String>, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            field: field.into(),
            detail: detail.into(),
        }
    }

    pub fn http_status(&self) -> u16 {
        self.reason.http_status()
    }

    /// The record kept in the batch for this hit.
    pub fn to_reject(&self, hit_index: u32) -> Reject {
        Reject {
            hit_index,
            reason: self.reason.as_str().to_owned(),
            field: self.field.clone(),
            plugin: String::new(),
        }
    }

    /// The response body: `{"error": reason, "field": field, "detail": …}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "error": self.reason.as_str(),
            "field": self.field,
            "detail": self.detail,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for reason in RejectReason::ALL {
            let label = reason.as_str();
            assert!(seen.insert(label), "duplicate label {label}");
            assert!(
                label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{label}"
            );
            assert_eq!(RejectReason::from_label(label), Some(reason));
            assert!((400..=500).contains(&reason.http_status()));
        }
    }

    #[test]
    fn rejection_renders_for_clients_and_batches() {
        let r = Rejection::new(RejectReason::MissingField, "u", "`u` is required");
        assert_eq!(r.http_status(), 400);
        assert_eq!(r.to_string(), "missing_field (u): `u` is required");
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["error"], "missing_field");
        assert_eq!(v["field"], "u");
        let rej = r.to_reject(4);
        assert_eq!(
            (rej.hit_index, rej.reason.as_str(), rej.field.as_str()),
            (4, "missing_field", "u")
        );
    }
}
