//! Planning: a [`ValidQuery`] becomes one SQL statement over one source
//! table, with `?` placeholders and the values to bind, in order.
//!
//! Identifiers (tables, columns, functions) come only from constants here;
//! every value from the query (site id, times, time zone, filter values,
//! property keys, limits) is a [`Bind`].

use std::fmt;
use std::time::SystemTime;

use serde::Serialize;

use super::request::{Goal, Query};
use super::validate::{
    Attribute, Dimension, Filter, FilterOp, Metric, OrderKey, QueryError, TimeGrain, ValidQuery,
    query_name, validate,
};

/// The table a plan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Per-site totals per UTC day.
    SiteDaily,
    /// Per UTC day, one dimension (`event:page` or a `visit:*` attribute
    /// of [`Source::DimensionsDaily`]'s list) and its value.
    DimensionsDaily,
    /// Raw events: answers every supported query.
    Events,
    /// Per (session, UTC day) aggregates: answers bounce rate, visit
    /// duration and entry/exit pages over whole UTC days.
    Sessions,
}

/// The attributes `dimensions_daily` holds, by the name in its
/// `dimension` column (must match `0007_daily_rollups.sql`).
const DAILY_DIMENSIONS: [(Attribute, &str); 10] = [
    (Attribute::EventPage, "page"),
    (Attribute::Source, "source"),
    (Attribute::Channel, "channel"),
    (Attribute::UtmSource, "utm_source"),
    (Attribute::UtmMedium, "utm_medium"),
    (Attribute::UtmCampaign, "utm_campaign"),
    (Attribute::Country, "country"),
    (Attribute::Device, "device"),
    (Attribute::Browser, "browser"),
    (Attribute::Os, "os"),
];

fn daily_dimension(a: Attribute) -> Option<&'static str> {
    DAILY_DIMENSIONS
        .iter()
        .find(|(x, _)| *x == a)
        .map(|(_, name)| *name)
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::SiteDaily,
        Source::DimensionsDaily,
        Source::Events,
        Source::Sessions,
    ];

    pub fn table(self) -> &'static str {
        match self {
            Source::SiteDaily => "site_daily",
            Source::DimensionsDaily => "dimensions_daily",
            Source::Events => "events",
            Source::Sessions => "sessions",
        }
    }

    fn is_rollup(self) -> bool {
        matches!(self, Source::SiteDaily | Source::DimensionsDaily)
    }

    /// The column of this source that holds `attribute`, if it has one.
    fn column(self, attribute: Attribute) -> Option<&'static str> {
        let events = match attribute {
            Attribute::EventName => "name",
            Attribute::EventPage => "pathname",
            Attribute::Source => "referrer_source",
            Attribute::Channel => "channel",
            Attribute::Referrer => "referrer",
            Attribute::UtmSource => "utm_source",
            Attribute::UtmMedium => "utm_medium",
            Attribute::UtmCampaign => "utm_campaign",
            Attribute::Country => "country",
            Attribute::Region => "region",
            Attribute::City => "city",
            Attribute::Device => "device",
            Attribute::Browser => "browser",
            Attribute::Os => "os",
            Attribute::EntryPage | Attribute::ExitPage => return None,
        };
        match self {
            Source::Events => Some(events),
            Source::SiteDaily | Source::Sessions => None,
            Source::DimensionsDaily => daily_dimension(attribute).map(|_| "value"),
        }
    }

    /// The column holding the event time (rollups: the UTC day start).
    fn time_column(self) -> &'static str {
        if self.is_rollup() { "day" } else { "ts" }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.table())
    }
}

/// A value bound to the next `?` of [`Plan::sql`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    Str(String),
    /// A UTC day number (days since 1970-01-01), for `toDate(?)`.
    U16(u16),
    U32(u32),
    U64(u64),
}

/// How a result column is turned into the response.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// A string as the server returns it (attributes; dates `YYYY-MM-DD`).
    Text,
    /// Unix seconds of an hour start, shown as local `YYYY-MM-DD HH:MM:SS`.
    LocalHour(jiff::tz::TimeZone),
    Metric(Metric),
}

/// One statement that answers a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub source: Source,
    /// SQL with one `?` per entry of `binds`, and no other `?`.
    pub sql: String,
    pub binds: Vec<Bind>,
    /// The result columns: the query's dimensions, then its metrics.
    pub columns: Vec<Column>,
    pub dimension_count: usize,
}

/// Validates `query` and plans it on the cheapest source that answers it
/// exactly: `site_daily` when nothing but time is grouped or filtered on,
/// else `dimensions_daily` when one of its attributes is (alone), else
/// `events`. The daily rollups are used only when the range is whole UTC
/// days and any time bucket is a day, week or month in UTC.
/// Session queries (bounce rate, visit duration, entry/exit pages) read
/// `sessions` when the range is whole UTC days, else `events`.
pub fn plan(query: &Query, now: SystemTime) -> Result<Plan, QueryError> {
    let q = validate(query, now)?;
    let source = choose(&q);
    build(&q, source)
}

/// Plans `query` on `source`, or says why that source cannot answer it
/// exactly. `plan_from(q, Source::Events, now)` always works for a valid
/// query: it is the reference the rollup plans are tested against.
pub fn plan_from(query: &Query, source: Source, now: SystemTime) -> Result<Plan, QueryError> {
    let q = validate(query, now)?;
    if let Err(reason) = can_answer(&q, source) {
        return Err(QueryError::SourceUnavailable {
            table: source.table(),
            reason,
        });
    }
    build(&q, source)
}

fn choose(q: &ValidQuery) -> Source {
    let candidates: &[Source] = if q.per_session {
        &[Source::Sessions]
    } else {
        &[Source::SiteDaily, Source::DimensionsDaily]
    };
    candidates
        .iter()
        .copied()
        .find(|s| can_answer(q, *s).is_ok())
        .unwrap_or(Source::Events)
}

/// Whether `source` answers `q` exactly; the reason when not.
fn can_answer(q: &ValidQuery, source: Source) -> Result<(), String> {
    if q.per_session {
        return match source {
            Source::Events => Ok(()),
            Source::Sessions if q.window.utc_days() => Ok(()),
            Source::Sessions => {
                Err("the range is not whole UTC days (sessions are kept per UTC day)".into())
            }
            _ => Err(
                "bounce_rate, visit_duration and entry/exit pages are per session: \
                 sessions or events answer them"
                    .into(),
            ),
        };
    }
    if source == Source::Sessions {
        return Err(
            "it answers only session queries (bounce_rate, visit_duration, entry/exit pages)"
                .into(),
        );
    }
    if source.is_rollup() && !q.window.utc_days() {
        return Err("the range is not whole UTC days (the rollups are per UTC day)".into());
    }
    let mut used: Vec<&Dimension> = q.dimensions.iter().collect();
    q.filters.iter().for_each(|f| f.dimensions(&mut used));
    for d in &used {
        let ok = match d {
            Dimension::Time(TimeGrain::Hour) => !source.is_rollup(),
            // A UTC day falls in one local day (week, month) only in UTC.
            Dimension::Time(_) => !source.is_rollup() || utc_zone(q),
            Dimension::Attribute(a) => source.column(*a).is_some(),
            Dimension::Prop(_) | Dimension::Goal => source == Source::Events,
        };
        if !ok {
            return Err(match d {
                Dimension::Time(_) => format!(
                    "its rows are UTC days: they answer time:day|week|month in UTC only, not {} in {}",
                    query_name(d),
                    q.timezone_name
                ),
                _ => format!("it has no column for {}", query_name(d)),
            });
        }
    }
    if source == Source::DimensionsDaily && daily_attribute(q).is_none() {
        return Err("it answers queries on exactly one of its dimensions".into());
    }
    Ok(())
}

/// Whether the query's zone is UTC (a fixed zero offset).
fn utc_zone(q: &ValidQuery) -> bool {
    q.timezone
        .to_fixed_offset()
        .is_ok_and(|o| o == jiff::tz::Offset::UTC)
}

/// The one attribute a query groups or filters on, when it is one that
/// `dimensions_daily` holds and the query uses no other.
fn daily_attribute(q: &ValidQuery) -> Option<Attribute> {
    let mut used: Vec<&Dimension> = q.dimensions.iter().collect();
    q.filters.iter().for_each(|f| f.dimensions(&mut used));
    let mut found = None;
    for d in used {
        match d {
            Dimension::Time(_) => {}
            Dimension::Attribute(a) if daily_dimension(*a).is_some() => {
                if found.is_some_and(|f| f != *a) {
                    return None;
                }
                found = Some(*a);
            }
            _ => return None,
        }
    }
    found
}

/// SQL text and its binds, built left to right so the binds stay in the
/// order of their placeholders.
#[derive(Default)]
struct Sql {
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    fn push(&mut self, s: &str) {
        debug_assert!(
            !s.contains('?'),
            "a `?` in SQL text would be read as a placeholder"
        );
        self.text.push_str(s);
    }
    fn bind(&mut self, b: Bind) {
        self.text.push('?');
        self.binds.push(b);
    }
}

/// Where dimensions and metrics are computed: directly on a table, or on
/// the per-session rows of a session query's subquery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    Table(Source),
    Sessions,
}

impl Rows {
    fn time_column(self) -> &'static str {
        match self {
            Rows::Table(s) => s.time_column(),
            Rows::Sessions => "s_start",
        }
    }

    fn column(self, a: Attribute) -> Option<&'static str> {
        match self {
            Rows::Table(s) => s.column(a),
            Rows::Sessions => SESSION_COLUMNS
                .iter()
                .find(|c| c.attribute == Some(a))
                .map(|c| c.alias),
        }
    }
}

/// One column of the per-session subquery: its alias, and how it is
/// computed from `events` and from the `sessions` rollup. Aliases differ
/// from every table column (older servers resolve such aliases wrongly).
struct SessionColumn {
    alias: &'static str,
    from_events: &'static str,
    from_sessions: &'static str,
    /// The attribute this column answers, if any.
    attribute: Option<Attribute>,
}

const fn sc(
    alias: &'static str,
    from_events: &'static str,
    from_sessions: &'static str,
    attribute: Option<Attribute>,
) -> SessionColumn {
    SessionColumn {
        alias,
        from_events,
        from_sessions,
        attribute,
    }
}

const SESSION_COLUMNS: &[SessionColumn] = &[
    sc("s_visitor", "any(visitor_id)", "anyMerge(visitor)", None),
    sc("s_start", "min(ts)", "minMerge(started_at)", None),
    sc("s_end", "max(ts)", "maxMerge(ended_at)", None),
    sc(
        "s_pv",
        "countIf(name = 'pageview')",
        "countIfMerge(pageviews)",
        None,
    ),
    sc("s_n", "count()", "countMerge(events)", None),
    sc(
        "s_inter",
        "countIf(interactive = 1)",
        "countIfMerge(interactive_events)",
        None,
    ),
    sc(
        "s_entry",
        "argMin(pathname, ts)",
        "argMinMerge(entry_page)",
        Some(Attribute::EntryPage),
    ),
    sc(
        "s_exit",
        "argMax(pathname, ts)",
        "argMaxMerge(exit_page)",
        Some(Attribute::ExitPage),
    ),
    sc(
        "s_source",
        "argMin(referrer_source, ts)",
        "argMinMerge(entry_referrer_source)",
        Some(Attribute::Source),
    ),
    sc(
        "s_channel",
        "argMin(channel, ts)",
        "argMinMerge(entry_channel)",
        Some(Attribute::Channel),
    ),
    sc(
        "s_utm_source",
        "argMin(utm_source, ts)",
        "argMinMerge(entry_utm_source)",
        Some(Attribute::UtmSource),
    ),
    sc(
        "s_utm_medium",
        "argMin(utm_medium, ts)",
        "argMinMerge(entry_utm_medium)",
        Some(Attribute::UtmMedium),
    ),
    sc(
        "s_utm_campaign",
        "argMin(utm_campaign, ts)",
        "argMinMerge(entry_utm_campaign)",
        Some(Attribute::UtmCampaign),
    ),
    sc(
        "s_country",
        "argMin(country, ts)",
        "argMinMerge(entry_country)",
        Some(Attribute::Country),
    ),
    sc(
        "s_device",
        "argMin(device, ts)",
        "argMinMerge(entry_device)",
        Some(Attribute::Device),
    ),
    sc(
        "s_browser",
        "argMin(browser, ts)",
        "argMinMerge(entry_browser)",
        Some(Attribute::Browser),
    ),
    sc(
        "s_os",
        "argMin(os, ts)",
        "argMinMerge(entry_os)",
        Some(Attribute::Os),
    ),
];

fn build(q: &ValidQuery, source: Source) -> Result<Plan, QueryError> {
    let rows = if q.per_session {
        Rows::Sessions
    } else {
        Rows::Table(source)
    };
    let mut sql = Sql::default();
    let mut columns = Vec::new();
    sql.push("SELECT ");
    let mut first = true;
    for (i, d) in q.dimensions.iter().enumerate() {
        if !first {
            sql.push(", ");
        }
        first = false;
        dimension_expr(&mut sql, q, rows, d);
        sql.push(&format!(" AS d{i}"));
        columns.push(match d {
            Dimension::Time(TimeGrain::Hour) => Column::LocalHour(q.timezone.clone()),
            _ => Column::Text,
        });
    }
    for (i, m) in q.metrics.iter().enumerate() {
        if !first {
            sql.push(", ");
        }
        first = false;
        if *m == Metric::ConversionRate {
            conversion_rate(&mut sql, q);
        } else {
            sql.push(&metric_expr(rows, *m));
        }
        sql.push(&format!(" AS m{i}"));
        columns.push(Column::Metric(*m));
    }

    sql.push(" FROM ");
    if q.per_session {
        // One row per session with events in the range; the query's
        // filters apply to these rows (they are all per session).
        sql.push("(SELECT ");
        let exprs: Vec<String> = SESSION_COLUMNS
            .iter()
            .map(|c| {
                let expr = if source == Source::Sessions {
                    c.from_sessions
                } else {
                    c.from_events
                };
                format!("{expr} AS {}", c.alias)
            })
            .collect();
        sql.push(&exprs.join(", "));
        sql.push(" FROM ");
        sql.push(source.table());
        range_condition(&mut sql, q, source);
        sql.push(" GROUP BY session_id)");
        let mut sep = " WHERE ";
        for f in &q.filters {
            sql.push(sep);
            sep = " AND ";
            filter_expr(&mut sql, q, rows, f);
        }
    } else {
        sql.push(source.table());
        range_condition(&mut sql, q, source);
        for f in &q.filters {
            sql.push(" AND ");
            filter_expr(&mut sql, q, rows, f);
        }
    }

    if !q.dimensions.is_empty() {
        let keys: Vec<String> = (0..q.dimensions.len()).map(|i| format!("d{i}")).collect();
        sql.push(" GROUP BY ");
        sql.push(&keys.join(", "));
    }

    // Explicit order, then the default (time ascending, else the first
    // metric descending), then every dimension ascending so that pages of
    // a result are stable and each row's position is determined.
    let mut order: Vec<(String, bool)> = q
        .order_by
        .iter()
        .map(|(k, asc)| (column_alias(k), *asc))
        .collect();
    match q
        .dimensions
        .iter()
        .position(|d| matches!(d, Dimension::Time(_)))
    {
        Some(i) => order.push((format!("d{i}"), true)),
        None => order.push(("m0".into(), false)),
    }
    order.extend((0..q.dimensions.len()).map(|i| (format!("d{i}"), true)));
    let mut seen = Vec::new();
    let order: Vec<String> = order
        .into_iter()
        .filter(|(alias, _)| {
            let new = !seen.contains(alias);
            seen.push(alias.clone());
            new
        })
        .map(|(alias, asc)| format!("{alias} {}", if asc { "ASC" } else { "DESC" }))
        .collect();
    sql.push(" ORDER BY ");
    sql.push(&order.join(", "));

    sql.push(" LIMIT ");
    sql.bind(Bind::U64(q.offset));
    sql.push(", ");
    sql.bind(Bind::U64(q.limit));

    Ok(Plan {
        source,
        sql: sql.text,
        binds: sql.binds,
        columns,
        dimension_count: q.dimensions.len(),
    })
}

/// ` WHERE site_id = ? AND <time range>` for `source`.
fn range_condition(sql: &mut Sql, q: &ValidQuery, source: Source) {
    sql.push(" WHERE site_id = ");
    sql.bind(Bind::Str(q.site_id.clone()));
    if source == Source::Sessions {
        // Whole UTC days (checked by `can_answer`); a session crossing
        // midnight has a row per day, combined by `GROUP BY session_id`.
        let (first, end) = q.window.day_numbers();
        sql.push(" AND day >= toDate(");
        sql.bind(Bind::U16(first));
        sql.push(") AND day < toDate(");
        sql.bind(Bind::U16(end));
        sql.push(")");
    } else {
        if source == Source::DimensionsDaily {
            let name = daily_attribute(q)
                .and_then(daily_dimension)
                .expect("can_answer checked the query uses one daily dimension");
            sql.push(" AND dimension = ");
            sql.bind(Bind::Str(name.to_owned()));
        }
        let time = source.time_column();
        sql.push(&format!(" AND {time} >= toDateTime("));
        sql.bind(Bind::U32(q.window.from));
        sql.push(&format!(") AND {time} < toDateTime("));
        sql.bind(Bind::U32(q.window.to));
        sql.push(")");
    }
}

fn column_alias(key: &OrderKey) -> String {
    match key {
        OrderKey::Metric(i) => format!("m{i}"),
        OrderKey::Dimension(i) => format!("d{i}"),
    }
}

/// The expression of a dimension. Time buckets are computed in the
/// query's zone: hours as Unix seconds of the local hour start, days,
/// weeks (Monday) and months as `Date`.
fn dimension_expr(sql: &mut Sql, q: &ValidQuery, rows: Rows, d: &Dimension) {
    match d {
        Dimension::Time(grain) => {
            let (open, close) = match grain {
                TimeGrain::Hour => ("toUInt32(toStartOfHour(", "))"),
                TimeGrain::Day => ("toDate(", ")"),
                TimeGrain::Week => ("toMonday(toDate(", "))"),
                TimeGrain::Month => ("toStartOfMonth(toDate(", "))"),
            };
            sql.push(open);
            sql.push(rows.time_column());
            sql.push(", ");
            sql.bind(Bind::Str(q.timezone_name.clone()));
            sql.push(close);
        }
        Dimension::Attribute(a) => {
            sql.push(
                rows.column(*a)
                    .expect("validation and can_answer checked the rows have the column"),
            );
        }
        Dimension::Prop(key) => {
            // Index 0 (no such key) reads the default value, "".
            sql.push("props.value[indexOf(props.key, ");
            sql.bind(Bind::Str(key.clone()));
            sql.push(")]");
        }
        Dimension::Goal => {
            // One row per goal the event completes (none: no row).
            if q.goals.is_empty() {
                sql.push("arrayJoin(emptyArrayString())");
                return;
            }
            sql.push("arrayJoin(arrayFilter(g -> g != '', [");
            for (i, goal) in q.goals.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.push("if(");
                goal_condition(sql, goal);
                sql.push(", ");
                sql.bind(Bind::Str(goal.name.clone()));
                sql.push(", '')");
            }
            sql.push("]))");
        }
    }
}

/// Whether an `events` row completes `goal`.
fn goal_condition(sql: &mut Sql, goal: &Goal) {
    if goal.event_name.is_empty() {
        sql.push("(name = 'pageview' AND match(pathname, ");
        sql.bind(Bind::Str(goal.page_pattern()));
        sql.push("))");
    } else {
        sql.push("name = ");
        sql.bind(Bind::Str(goal.event_name.clone()));
    }
}

/// A filter on `event:goal`: the row completes a goal whose name passes
/// `op` with `values` (for `is_not`: completes none whose name is one of
/// them). The name test runs on the bound goal name, so `contains` and
/// `matches` mean what they mean on any dimension.
fn goal_filter(sql: &mut Sql, q: &ValidQuery, op: FilterOp, values: &[String]) {
    let positive = if op == FilterOp::IsNot {
        FilterOp::Is
    } else {
        op
    };
    sql.push(if op == FilterOp::IsNot {
        "NOT (0"
    } else {
        "(0"
    });
    for goal in &q.goals {
        sql.push(" OR (");
        match positive {
            FilterOp::Is | FilterOp::IsNot => {
                sql.bind(Bind::Str(goal.name.clone()));
                sql.push(" IN (");
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.bind(Bind::Str(v.clone()));
                }
                sql.push(")");
            }
            FilterOp::Contains | FilterOp::Matches => {
                let function = if positive == FilterOp::Contains {
                    "position("
                } else {
                    "match("
                };
                let close = if positive == FilterOp::Contains {
                    ") > 0"
                } else {
                    ")"
                };
                sql.push("(0");
                for v in values {
                    sql.push(" OR ");
                    sql.push(function);
                    sql.bind(Bind::Str(goal.name.clone()));
                    sql.push(", ");
                    sql.bind(Bind::Str(v.clone()));
                    sql.push(close);
                }
                sql.push(")");
            }
        }
        sql.push(" AND ");
        goal_condition(sql, goal);
        sql.push(")");
    }
    sql.push(")");
}

/// `conversion_rate`: converting visitors (the rows of this group) over
/// every visitor of the range under the query's other filters, in
/// percent to 2 decimals, rounded half up in integers.
fn conversion_rate(sql: &mut Sql, q: &ValidQuery) {
    let total = |sql: &mut Sql| {
        sql.push("(SELECT uniqHLL12(visitor_id) FROM events");
        range_condition(sql, q, Source::Events);
        for f in &q.filters {
            let mut dims = Vec::new();
            f.dimensions(&mut dims);
            if dims.contains(&&Dimension::Goal) {
                continue;
            }
            sql.push(" AND ");
            filter_expr(sql, q, Rows::Table(Source::Events), f);
        }
        sql.push(")");
    };
    sql.push("intDiv(uniqHLL12(visitor_id) * 20000 + ");
    total(sql);
    sql.push(", greatest(");
    total(sql);
    sql.push(", 1) * 2) / 100");
}

/// A metric. Rounding is done in integers, half up: `round(x, n)` rounds
/// 5 / 8 to 0.62 on 18.16 and to 0.63 on current servers. A divisor is
/// `greatest(n, 1)` rather than an `if`, which evaluates both branches
/// (and fails on a division by zero); the dividend is 0 whenever n is.
/// Distinct counts are `uniqHLL12` on every source, so rollups (which
/// merge its states) and `events` give the same numbers.
fn metric_expr(rows: Rows, m: Metric) -> String {
    let rollup = matches!(rows, Rows::Table(s) if s.is_rollup());
    let (pageviews, visits) = match rows {
        Rows::Sessions => ("sum(s_pv)", "count()"),
        _ if rollup => ("countIfMerge(pageviews)", "uniqHLL12Merge(visits)"),
        _ => ("countIf(name = 'pageview')", "uniqHLL12(session_id)"),
    };
    match m {
        Metric::Visitors => match rows {
            Rows::Sessions => "uniqHLL12(s_visitor)",
            _ if rollup => "uniqHLL12Merge(visitors)",
            _ => "uniqHLL12(visitor_id)",
        }
        .to_owned(),
        Metric::Visits => visits.to_owned(),
        Metric::Pageviews => pageviews.to_owned(),
        Metric::Events => match rows {
            Rows::Sessions => "sum(s_n)",
            _ if rollup => "countMerge(events)",
            _ => "count()",
        }
        .to_owned(),
        // Pageviews per visit, to 2 decimals.
        Metric::ViewsPerVisit => {
            format!("intDiv({pageviews} * 200 + {visits}, greatest({visits}, 1) * 2) / 100")
        }
        // Whole percent of sessions with at most one interactive event.
        Metric::BounceRate => {
            "intDiv(countIf(s_inter <= 1) * 200 + count(), greatest(count(), 1) * 2)".to_owned()
        }
        Metric::ConversionRate => unreachable!("conversion_rate is built by conversion_rate()"),
        // Whole seconds from a session's first to its last event, averaged.
        Metric::VisitDuration => "intDiv(sum(toUInt64(s_end) - toUInt64(s_start)) * 2 + count(), \
             greatest(count(), 1) * 2)"
            .to_owned(),
    }
}

fn filter_expr(sql: &mut Sql, q: &ValidQuery, rows: Rows, f: &Filter) {
    match f {
        Filter::Leaf {
            op,
            dimension: Dimension::Goal,
            values,
        } => goal_filter(sql, q, *op, values),
        Filter::Leaf {
            op,
            dimension,
            values,
        } => {
            let each = |sql: &mut Sql, open: &str, close: &str| {
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        sql.push(" OR ");
                    }
                    sql.push(open);
                    dimension_expr(sql, q, rows, dimension);
                    sql.push(", ");
                    sql.bind(Bind::Str(v.clone()));
                    sql.push(close);
                }
            };
            match op {
                FilterOp::Is | FilterOp::IsNot => {
                    dimension_expr(sql, q, rows, dimension);
                    sql.push(if *op == FilterOp::Is {
                        " IN ("
                    } else {
                        " NOT IN ("
                    });
                    for (i, v) in values.iter().enumerate() {
                        if i > 0 {
                            sql.push(", ");
                        }
                        sql.bind(Bind::Str(v.clone()));
                    }
                    sql.push(")");
                }
                FilterOp::Contains => {
                    sql.push("(");
                    each(sql, "position(", ") > 0");
                    sql.push(")");
                }
                FilterOp::Matches => {
                    sql.push("(");
                    each(sql, "match(", ")");
                    sql.push(")");
                }
            }
        }
        Filter::And(fs) | Filter::Or(fs) => {
            let joiner = if matches!(f, Filter::And(_)) {
                " AND "
            } else {
                " OR "
            };
            sql.push("(");
            for (i, child) in fs.iter().enumerate() {
                if i > 0 {
                    sql.push(joiner);
                }
                filter_expr(sql, q, rows, child);
            }
            sql.push(")");
        }
        Filter::Not(child) => {
            sql.push("NOT (");
            filter_expr(sql, q, rows, child);
            sql.push(")");
        }
    }
}
