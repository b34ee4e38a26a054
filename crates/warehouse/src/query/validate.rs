//! Checking a [`Query`] into a [`ValidQuery`] that cannot be invalid. Every
//! error names the JSON path of the offending value and what is allowed
//! there.

use std::time::SystemTime;

use serde_json::Value;

use super::request::{MAX_LIMIT, Query};
use super::window::{Window, resolve_window};

/// Deepest nesting of `and`/`or`/`not` filters.
const MAX_FILTER_DEPTH: usize = 8;
/// Most values over all filters of one query.
const MAX_FILTER_VALUES: usize = 1_000;

/// A query that failed validation (or cannot be answered from the source
/// it was forced to).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The value at `path` (e.g. `filters[1][1]`) is not allowed.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// `plan_from` was asked for a source that cannot answer the query.
    #[error("{table} cannot answer this query: {reason}")]
    SourceUnavailable { table: &'static str, reason: String },
}

pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> QueryError {
    QueryError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// A metric a query can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Visitors,
    Visits,
    Pageviews,
    Events,
    ViewsPerVisit,
    BounceRate,
    VisitDuration,
    /// Percent (2 decimals) of the range's visitors who converted: needs
    /// the `event:goal` dimension or a top-level filter on it.
    ConversionRate,
}

impl Metric {
    pub const ALL: [Metric; 8] = [
        Metric::Visitors,
        Metric::Visits,
        Metric::Pageviews,
        Metric::Events,
        Metric::ViewsPerVisit,
        Metric::BounceRate,
        Metric::VisitDuration,
        Metric::ConversionRate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Visitors => "visitors",
            Metric::Visits => "visits",
            Metric::Pageviews => "pageviews",
            Metric::Events => "events",
            Metric::ViewsPerVisit => "views_per_visit",
            Metric::BounceRate => "bounce_rate",
            Metric::VisitDuration => "visit_duration",
            Metric::ConversionRate => "conversion_rate",
        }
    }

    /// Whether the value is a ratio (JSON float) rather than an integer.
    /// `bounce_rate` is a whole percentage, `visit_duration` whole seconds.
    pub fn is_ratio(self) -> bool {
        matches!(self, Metric::ViewsPerVisit | Metric::ConversionRate)
    }

    /// Metrics only a per-session grouping answers.
    pub fn is_session_metric(self) -> bool {
        matches!(self, Metric::BounceRate | Metric::VisitDuration)
    }
}

/// Bucket size of a time dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeGrain {
    Hour,
    Day,
    /// Weeks start on Monday.
    Week,
    Month,
}

/// A non-time attribute of an event or visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attribute {
    EventName,
    EventPage,
    EntryPage,
    ExitPage,
    Source,
    Channel,
    Referrer,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    Country,
    Region,
    City,
    Device,
    Browser,
    Os,
}

impl Attribute {
    pub const ALL: [Attribute; 16] = [
        Attribute::EventName,
        Attribute::EventPage,
        Attribute::EntryPage,
        Attribute::ExitPage,
        Attribute::Source,
        Attribute::Channel,
        Attribute::Referrer,
        Attribute::UtmSource,
        Attribute::UtmMedium,
        Attribute::UtmCampaign,
        Attribute::Country,
        Attribute::Region,
        Attribute::City,
        Attribute::Device,
        Attribute::Browser,
        Attribute::Os,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attribute::EventName => "event:name",
            Attribute::EventPage => "event:page",
            Attribute::EntryPage => "visit:entry_page",
            Attribute::ExitPage => "visit:exit_page",
            Attribute::Source => "visit:source",
            Attribute::Channel => "visit:channel",
            Attribute::Referrer => "visit:referrer",
            Attribute::UtmSource => "visit:utm_source",
            Attribute::UtmMedium => "visit:utm_medium",
            Attribute::UtmCampaign => "visit:utm_campaign",
            Attribute::Country => "visit:country",
            Attribute::Region => "visit:region",
            Attribute::City => "visit:city",
            Attribute::Device => "visit:device",
            Attribute::Browser => "visit:browser",
            Attribute::Os => "visit:os",
        }
    }

    /// Entry and exit pages are properties of a whole session.
    pub fn is_session_level(self) -> bool {
        matches!(self, Attribute::EntryPage | Attribute::ExitPage)
    }

    /// Whether a session query can use this attribute: the session's
    /// entry/exit page, or the value on its first event.
    pub fn per_session(self) -> bool {
        !matches!(
            self,
            Attribute::EventName
                | Attribute::EventPage
                | Attribute::Referrer
                | Attribute::Region
                | Attribute::City
        )
    }
}

/// A dimension to group by (or to filter on, except time).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dimension {
    Time(TimeGrain),
    Attribute(Attribute),
    /// `event:props:<key>`: the value of custom property `key` (empty when
    /// the event does not have it).
    Prop(String),
    /// `event:goal`: the site goals an event completes (an event may
    /// complete several; one that completes none has no value).
    Goal,
}

impl Dimension {
    pub fn parse(s: &str) -> Option<Dimension> {
        let time = match s {
            "time:hour" => Some(TimeGrain::Hour),
            "time:day" => Some(TimeGrain::Day),
            "time:week" => Some(TimeGrain::Week),
            "time:month" => Some(TimeGrain::Month),
            _ => None,
        };
        if let Some(grain) = time {
            return Some(Dimension::Time(grain));
        }
        if s == "event:goal" {
            return Some(Dimension::Goal);
        }
        if let Some(key) = s.strip_prefix("event:props:") {
            return (!key.is_empty()).then(|| Dimension::Prop(key.to_owned()));
        }
        Attribute::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .map(Dimension::Attribute)
    }
}

/// How a filter compares a dimension with its values (any value may match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// Equal to one of the values.
    Is,
    /// Equal to none of the values.
    IsNot,
    /// Contains one of the values as a substring (case-sensitive).
    Contains,
    /// Matches one of the values as a regular expression: ClickHouse
    /// `match`, i.e. re2 syntax, unanchored (use `^…$` to anchor).
    Matches,
}

/// A validated filter tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Leaf {
        op: FilterOp,
        dimension: Dimension,
        values: Vec<String>,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

impl Filter {
    /// Every dimension the filter reads.
    pub fn dimensions<'a>(&'a self, out: &mut Vec<&'a Dimension>) {
        match self {
            Filter::Leaf { dimension, .. } => out.push(dimension),
            Filter::And(fs) | Filter::Or(fs) => fs.iter().for_each(|f| f.dimensions(out)),
            Filter::Not(f) => f.dimensions(out),
        }
    }
}

/// What to order by: a column of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderKey {
    Metric(usize),
    Dimension(usize),
}

/// A query that passed validation, with its date range resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidQuery {
    pub site_id: String,
    pub metrics: Vec<Metric>,
    pub dimensions: Vec<Dimension>,
    /// All top-level filters, `and`-ed.
    pub filters: Vec<Filter>,
    /// Explicit order; the planner adds its defaults and tie-breaks.
    pub order_by: Vec<(OrderKey, bool)>,
    pub limit: u64,
    pub offset: u64,
    pub timezone: jiff::tz::TimeZone,
    pub timezone_name: String,
    pub window: Window,
    /// The query groups sessions rather than events: it asks for
    /// `bounce_rate`/`visit_duration` or uses entry/exit pages. Then time
    /// buckets are those of a session's start and `visit:*` attributes
    /// are those of its first event.
    pub per_session: bool,
    /// The site's goals, for `event:goal` and `conversion_rate`.
    pub goals: Vec<super::request::Goal>,
}

const METRICS_ALLOWED: &str = "visitors, visits, pageviews, events, views_per_visit, \
     bounce_rate, visit_duration, conversion_rate";
const DIMENSIONS_ALLOWED: &str = "time:hour, time:day, time:week, time:month, event:name, \
     event:page, visit:entry_page, visit:exit_page, visit:source, visit:channel, \
     visit:referrer, visit:utm_source, visit:utm_medium, visit:utm_campaign, visit:country, \
     visit:region, visit:city, visit:device, visit:browser, visit:os, event:goal, \
     event:props:<key>";
const FILTER_OPS_ALLOWED: &str = "is, is_not, contains, matches, and, or, not";

/// Checks `query` and resolves its date range against `now`.
pub fn validate(query: &Query, now: SystemTime) -> Result<ValidQuery, QueryError> {
    if query.site_id.is_empty() {
        return Err(invalid("site_id", "must not be empty"));
    }

    if query.metrics.is_empty() {
        return Err(invalid(
            "metrics",
            format!("must name at least one metric: {METRICS_ALLOWED}"),
        ));
    }
    let mut metrics = Vec::with_capacity(query.metrics.len());
    for (i, name) in query.metrics.iter().enumerate() {
        let path = format!("metrics[{i}]");
        let metric = Metric::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                invalid(
                    &path,
                    format!("unknown metric {name:?}; allowed: {METRICS_ALLOWED}"),
                )
            })?;
        if metrics.contains(&metric) {
            return Err(invalid(path, format!("{name} is listed twice")));
        }
        metrics.push(metric);
    }

    let mut dimensions = Vec::with_capacity(query.dimensions.len());
    for (i, name) in query.dimensions.iter().enumerate() {
        let path = format!("dimensions[{i}]");
        let dimension = Dimension::parse(name).ok_or_else(|| {
            invalid(
                &path,
                format!("unknown dimension {name:?}; allowed: {DIMENSIONS_ALLOWED}"),
            )
        })?;
        if dimensions.contains(&dimension) {
            return Err(invalid(path, format!("{name} is listed twice")));
        }
        if matches!(dimension, Dimension::Time(_))
            && dimensions.iter().any(|d| matches!(d, Dimension::Time(_)))
        {
            return Err(invalid(path, "at most one time dimension is allowed"));
        }
        dimensions.push(dimension);
    }

    let mut filters = Vec::with_capacity(query.filters.len());
    let mut leaves = Leaves::default();
    for (i, f) in query.filters.iter().enumerate() {
        filters.push(parse_filter(f, &format!("filters[{i}]"), 0, &mut leaves)?);
    }

    let per_session = metrics.iter().any(|m| m.is_session_metric())
        || dimensions
            .iter()
            .chain(leaves.dimensions.iter().map(|(_, d)| d))
            .any(|d| matches!(d, Dimension::Attribute(a) if a.is_session_level()));
    if per_session {
        let dims = dimensions
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("dimensions[{i}]"), d));
        let filtered = leaves.dimensions.iter().map(|(p, d)| (p.clone(), d));
        for (path, d) in dims.chain(filtered) {
            let ok = match d {
                Dimension::Time(_) => true,
                Dimension::Attribute(a) => a.per_session(),
                Dimension::Prop(_) | Dimension::Goal => false,
            };
            if !ok {
                return Err(invalid(
                    path,
                    format!(
                        "{} is per event; a query with bounce_rate, visit_duration or entry/exit \
                         pages groups sessions and allows only: {SESSION_DIMENSIONS}",
                        query_name(d)
                    ),
                ));
            }
        }
    }

    // Goals: filtered on only at the top level (so the visitors a
    // conversion rate divides by are the range's without the goal filter).
    for (path, d) in &leaves.dimensions {
        let top_level = path.matches('[').count() == 2;
        if *d == Dimension::Goal && !top_level {
            return Err(invalid(
                path,
                "event:goal can be filtered on only at the top level of filters, not inside \
                 and/or/not",
            ));
        }
    }
    let by_goal = dimensions.contains(&Dimension::Goal)
        || leaves.dimensions.iter().any(|(_, d)| *d == Dimension::Goal);
    if let Some(i) = metrics.iter().position(|m| *m == Metric::ConversionRate)
        && !by_goal
    {
        return Err(invalid(
            format!("metrics[{i}]"),
            "conversion_rate needs the event:goal dimension or a filter on event:goal",
        ));
    }

    let mut order_by = Vec::with_capacity(query.order_by.len());
    for (i, o) in query.order_by.iter().enumerate() {
        order_by.push(parse_order(o, &format!("order_by[{i}]"), query)?);
    }

    let limit = query.pagination.limit;
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid(
            "pagination.limit",
            format!("must be between 1 and {MAX_LIMIT}, got {limit}"),
        ));
    }

    let timezone = jiff::tz::TimeZone::get(&query.timezone).map_err(|_| {
        invalid(
            "timezone",
            format!(
                "unknown time zone {:?}; use an IANA name such as \"UTC\" or \"Europe/Berlin\"",
                query.timezone
            ),
        )
    })?;
    let window = resolve_window(&query.date_range, &timezone, now)?;

    Ok(ValidQuery {
        site_id: query.site_id.clone(),
        metrics,
        dimensions,
        filters,
        order_by,
        limit,
        offset: query.pagination.offset,
        timezone,
        timezone_name: query.timezone.clone(),
        window,
        per_session,
        goals: query.goals.clone(),
    })
}

const SESSION_DIMENSIONS: &str = "time:*, visit:entry_page, visit:exit_page, visit:source, \
     visit:channel, visit:utm_source, visit:utm_medium, visit:utm_campaign, visit:country, \
     visit:device, visit:browser, visit:os";

/// What the filters hold, gathered while parsing them.
#[derive(Default)]
struct Leaves {
    /// Each leaf's dimension, with the JSON path of its name.
    dimensions: Vec<(String, Dimension)>,
    values: usize,
}

/// The name of a dimension as a query spells it.
pub(crate) fn query_name(d: &Dimension) -> String {
    match d {
        Dimension::Time(TimeGrain::Hour) => "time:hour".into(),
        Dimension::Time(TimeGrain::Day) => "time:day".into(),
        Dimension::Time(TimeGrain::Week) => "time:week".into(),
        Dimension::Time(TimeGrain::Month) => "time:month".into(),
        Dimension::Attribute(a) => a.name().into(),
        Dimension::Prop(key) => format!("event:props:{key}"),
        Dimension::Goal => "event:goal".into(),
    }
}

fn parse_filter(
    value: &Value,
    path: &str,
    depth: usize,
    leaves: &mut Leaves,
) -> Result<Filter, QueryError> {
    if depth > MAX_FILTER_DEPTH {
        return Err(invalid(
            path,
            format!("filters nest at most {MAX_FILTER_DEPTH} levels deep"),
        ));
    }
    let items = value.as_array().ok_or_else(|| {
        invalid(
            path,
            "must be a list: [op, dimension, [values]], [\"and\"|\"or\", [filters]] or [\"not\", filter]",
        )
    })?;
    let op = items.first().and_then(Value::as_str).ok_or_else(|| {
        invalid(
            format!("{path}[0]"),
            format!("must be an operator: {FILTER_OPS_ALLOWED}"),
        )
    })?;
    let leaf_op = match op {
        "is" => Some(FilterOp::Is),
        "is_not" => Some(FilterOp::IsNot),
        "contains" => Some(FilterOp::Contains),
        "matches" => Some(FilterOp::Matches),
        _ => None,
    };
    if let Some(op) = leaf_op {
        if items.len() != 3 {
            return Err(invalid(
                path,
                format!(
                    "a {:?} filter has 3 elements: [op, dimension, [values]]",
                    op_name(op)
                ),
            ));
        }
        let dpath = format!("{path}[1]");
        let name = items[1]
            .as_str()
            .ok_or_else(|| invalid(&dpath, "must be a dimension name (a string)"))?;
        let dimension = match Dimension::parse(name) {
            Some(Dimension::Time(_)) => {
                return Err(invalid(
                    &dpath,
                    "time dimensions cannot be filtered on; use date_range",
                ));
            }
            Some(d) => d,
            None => {
                return Err(invalid(
                    &dpath,
                    format!(
                        "unknown dimension {name:?}; allowed: any dimension except time:*: {DIMENSIONS_ALLOWED}"
                    ),
                ));
            }
        };
        leaves.dimensions.push((dpath.clone(), dimension.clone()));
        let vpath = format!("{path}[2]");
        let list = items[2]
            .as_array()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| invalid(&vpath, "must be a non-empty list of strings"))?;
        let mut values = Vec::with_capacity(list.len());
        for (j, v) in list.iter().enumerate() {
            let s = v
                .as_str()
                .ok_or_else(|| invalid(format!("{vpath}[{j}]"), "must be a string"))?;
            values.push(s.to_owned());
        }
        leaves.values += values.len();
        if leaves.values > MAX_FILTER_VALUES {
            return Err(invalid(
                vpath,
                format!("a query's filters hold at most {MAX_FILTER_VALUES} values"),
            ));
        }
        return Ok(Filter::Leaf {
            op,
            dimension,
            values,
        });
    }
    match op {
        "and" | "or" => {
            if items.len() != 2 {
                return Err(invalid(
                    path,
                    format!("an {op:?} filter is [{op:?}, [filters]]"),
                ));
            }
            let lpath = format!("{path}[1]");
            let list = items[1]
                .as_array()
                .filter(|l| !l.is_empty())
                .ok_or_else(|| invalid(&lpath, "must be a non-empty list of filters"))?;
            let children = list
                .iter()
                .enumerate()
                .map(|(j, f)| parse_filter(f, &format!("{lpath}[{j}]"), depth + 1, leaves))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if op == "and" {
                Filter::And(children)
            } else {
                Filter::Or(children)
            })
        }
        "not" => {
            if items.len() != 2 {
                return Err(invalid(path, "a \"not\" filter is [\"not\", filter]"));
            }
            let child = parse_filter(&items[1], &format!("{path}[1]"), depth + 1, leaves)?;
            Ok(Filter::Not(Box::new(child)))
        }
        other => Err(invalid(
            format!("{path}[0]"),
            format!("unknown operator {other:?}; allowed: {FILTER_OPS_ALLOWED}"),
        )),
    }
}

fn op_name(op: FilterOp) -> &'static str {
    match op {
        FilterOp::Is => "is",
        FilterOp::IsNot => "is_not",
        FilterOp::Contains => "contains",
        FilterOp::Matches => "matches",
    }
}

fn parse_order(value: &Value, path: &str, query: &Query) -> Result<(OrderKey, bool), QueryError> {
    let items = value
        .as_array()
        .filter(|l| l.len() == 2)
        .ok_or_else(|| invalid(path, "must be [metric or dimension, \"asc\" | \"desc\"]"))?;
    let kpath = format!("{path}[0]");
    let name = items[0]
        .as_str()
        .ok_or_else(|| invalid(&kpath, "must be a string"))?;
    let key = if let Some(i) = query.metrics.iter().position(|m| m == name) {
        OrderKey::Metric(i)
    } else if let Some(i) = query.dimensions.iter().position(|d| d == name) {
        OrderKey::Dimension(i)
    } else {
        return Err(invalid(
            kpath,
            format!(
                "{name:?} is not in the query; allowed: one of its metrics ({}) or dimensions ({})",
                query.metrics.join(", "),
                query.dimensions.join(", ")
            ),
        ));
    };
    let ascending = match items[1].as_str() {
        Some("asc") => true,
        Some("desc") => false,
        _ => {
            return Err(invalid(format!("{path}[1]"), "must be \"asc\" or \"desc\""));
        }
    };
    Ok((key, ascending))
}
