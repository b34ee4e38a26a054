//! The query as a merchant sends it (`POST /api/v1/query`), shaped like
//! Plausible's Stats API v2. Fields whose JSON shape varies (date range,
//! filters, order) are kept as JSON values here and checked by
//! [`validate`](super::validate), so an error can name the exact JSON path.

use serde::{Deserialize, Serialize};

/// Largest page a query may ask for.
pub const MAX_LIMIT: u64 = 10_000;

/// One stats query, as received.
///
/// ```json
/// {"site_id": "example.com", "metrics": ["visitors", "pageviews"],
///  "date_range": "7d", "dimensions": ["event:page"],
///  "filters": [["is", "visit:country", ["DE", "FR"]]],
///  "order_by": [["visitors", "desc"]], "pagination": {"limit": 10},
///  "timezone": "Europe/Berlin"}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    pub site_id: String,
    /// `visitors`, `visits`, `pageviews`, `events`, `views_per_visit`,
    /// `bounce_rate`, `visit_duration`.
    pub metrics: Vec<String>,
    /// `"day"`, `"7d"`, `"30d"`, `"month"`, `"all"`, or `[start, end]`
    /// with ISO dates (`"2026-03-01"`, both days included) or datetimes
    /// (`"2026-03-01T10:00:00"` local to `timezone`, or with `Z`/an offset;
    /// the end second is included).
    pub date_range: serde_json::Value,
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// `[op, dimension, [values…]]` with op `is`, `is_not`, `contains`,
    /// `matches`; `["and" | "or", [filter…]]`; `["not", filter]`. The
    /// top-level list is combined with `and`.
    #[serde(default)]
    pub filters: Vec<serde_json::Value>,
    /// `[[metric or dimension, "asc" | "desc"], …]`.
    #[serde(default)]
    pub order_by: Vec<serde_json::Value>,
    #[serde(default)]
    pub pagination: Pagination,
    /// IANA name; buckets and date ranges are in this zone.
    #[serde(default = "utc")]
    pub timezone: String,
    /// The site's goals (`event:goal`, `conversion_rate`): filled by the
    /// API from the site's configuration, never read from the request.
    #[serde(skip)]
    pub goals: Vec<Goal>,
}

/// A conversion a site counts: a custom event by name, or a pageview of a
/// path (`*` matches any characters, e.g. `/blog/*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goal {
    /// What merchants call it; the value of `event:goal`.
    pub name: String,
    /// Set for an event goal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_name: String,
    /// Set for a page goal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub page_path: String,
}

impl Goal {
    /// The re2 pattern of a page goal's path: anchored, `*` as `.*`, every
    /// other character literal.
    pub fn page_pattern(&self) -> String {
        let mut out = String::from("^");
        for c in self.page_path.chars() {
            match c {
                '*' => out.push_str(".*"),
                c if "\\.+?()[]{}|^$".contains(c) => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        out.push('$');
        out
    }
}

fn utc() -> String {
    "UTC".to_owned()
}

/// Which page of the result rows to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pagination {
    /// 1 ..= [`MAX_LIMIT`]; default [`MAX_LIMIT`].
    #[serde(default = "max_limit")]
    pub limit: u64,
    #[serde(default)]
    pub offset: u64,
}

fn max_limit() -> u64 {
    MAX_LIMIT
}

impl Default for Pagination {
    fn default() -> Self {
        Pagination {
            limit: MAX_LIMIT,
            offset: 0,
        }
    }
}
