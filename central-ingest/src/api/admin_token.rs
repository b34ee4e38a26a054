//! The admin token that guards `/api/v1/admin/…` (and any other route for
//! operators only): `Authorization: Bearer <token>`, checked against the
//! SHA-256 configured as `api.admin_token_sha256`. The token itself is
//! never stored; the digests are compared in constant time. Every refusal
//! is counted in `hourglass_central_admin_auth_failures_total{reason}`
//! (`missing`, `invalid`, `not_configured`).

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use prometheus::{IntCounterVec, Registry};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The configured admin token (its SHA-256) and the refusal counter.
pub struct AdminToken {
    sha256: Option<[u8; 32]>,
    failures: IntCounterVec,
}

impl AdminToken {
    /// `sha256_hex`: the token's SHA-256 as 64 hex digits (validated by the
    /// config); `None` or anything else refuses every request.
    pub fn new(sha256_hex: Option<&str>, registry: &Registry) -> Self {
        AdminToken {
            sha256: sha256_hex.and_then(parse_sha256_hex),
            failures: hourglass_svc::metrics::counter_vec(
                registry,
                "hourglass_central_admin_auth_failures_total",
                "Admin API requests refused for their token, by reason.",
                "reason",
            ),
        }
    }

    /// Whether `headers` carry the admin token, for routes that merchant
    /// keys may use too (nothing is counted: a merchant key is not a
    /// refusal there).
    pub fn presented(&self, headers: &HeaderMap) -> bool {
        match (bearer(headers), &self.sha256) {
            (Some(token), Some(expected)) => token_matches(token, expected),
            _ => false,
        }
    }

    /// `Ok` when `headers` carry the admin token as a Bearer credential;
    /// otherwise the `401` to answer (counted).
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Box<Response<Full<Bytes>>>> {
        let presented = bearer(headers);
        let reason = match (presented, &self.sha256) {
            (_, None) => "not_configured",
            (None, Some(_)) => "missing",
            (Some(token), Some(expected)) if token_matches(token, expected) => return Ok(()),
            (Some(_), Some(_)) => "invalid",
        };
        self.failures.with_label_values(&[reason]).inc();
        let message = if reason == "not_configured" {
            "the admin API is off: no api.admin_token_sha256 is configured"
        } else {
            "missing or invalid admin token"
        };
        let mut r = Response::new(Full::new(Bytes::from(
            serde_json::json!({ "error": message }).to_string(),
        )));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        let h = r.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("cache-control", HeaderValue::from_static("no-store"));
        h.insert("www-authenticate", HeaderValue::from_static("Bearer"));
        Err(Box::new(r))
    }
}

/// The Bearer credential of `headers`, if any (an admin token or an API
/// key).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

/// Whether `token`'s SHA-256 is `expected`, compared in constant time.
pub fn token_matches(token: &str, expected: &[u8; 32]) -> bool {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    digest.ct_eq(expected).into()
}

/// 64 hex digits (either case) to 32 bytes.
pub fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16);
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn only_the_configured_token_passes_and_refusals_are_counted() {
        // SHA-256 of "s3cret-admin".
        let hash = hourglass_warehouse::metadata::hash_api_key("s3cret-admin");
        let registry = Registry::new();
        let guard = AdminToken::new(Some(&hash.to_uppercase()), &registry);
        assert!(guard.check(&headers(Some("Bearer s3cret-admin"))).is_ok());
        assert!(guard.check(&headers(Some("bearer  s3cret-admin "))).is_ok());
        for bad in [None, Some("Bearer"), Some("Basic s3cret-admin")] {
            let r = guard.check(&headers(bad)).unwrap_err();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        for bad in [
            "Bearer s3cret-admin2",
            "Bearer S3CRET-ADMIN",
            &format!("Bearer {hash}"),
        ] {
            assert!(guard.check(&headers(Some(bad))).is_err(), "{bad}");
        }
        assert_eq!(
            guard.failures.with_label_values(&["missing"]).get(),
            3,
            "no token, no credentials, another scheme"
        );
        assert_eq!(guard.failures.with_label_values(&["invalid"]).get(), 3);

        let off = AdminToken::new(None, &Registry::new());
        assert!(off.check(&headers(Some("Bearer s3cret-admin"))).is_err());
        assert_eq!(off.failures.with_label_values(&["not_configured"]).get(), 1);
    }

    #[test]
    fn sha256_hex_parses_strictly() {
        assert_eq!(parse_sha256_hex(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_sha256_hex(&"AB".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_sha256_hex(&"ab".repeat(31)), None);
        assert_eq!(parse_sha256_hex(&"zz".repeat(32)), None);
        assert_eq!(parse_sha256_hex(&"+a".repeat(32)), None);
    }
}
