//! The stats query planner: a merchant's [`Query`] (shaped like Plausible's
//! Stats API v2) is validated, planned onto one source table as SQL with
//! bound values ([`plan`], pure: no server, no clock — `now` is passed in),
//! and run ([`Warehouse::query`](crate::Warehouse::query)).
//!
//! Which table answers:
//! - `site_daily` when the query groups and filters on nothing but time;
//! - `dimensions_daily` when it groups and/or filters on exactly one of
//!   `event:page`, `visit:source|channel|utm_source|utm_medium|
//!   utm_campaign|country|device|browser|os` (and time);
//! - `events` otherwise (`event:name`, `visit:referrer|region|city`,
//!   `event:props:*`, two attributes at once), and whenever the range is
//!   not whole UTC days or a time bucket is not a UTC day, week or month
//!   (`time:hour`, or any zone other than UTC).
//!
//! The 0002 hourly rollups (`site_hourly`, `pages_hourly`,
//! `sources_hourly`) are not read: measured on 10 M events they were
//! slower than `events` (bench/results/query.md).
//!
//! A rollup answer equals the `events` answer exactly: every rollup key
//! is an `events` column (each event has one row per dimension in
//! `dimensions_daily`), the time buckets are unions of the rollups' UTC
//! days, and distinct counts are `uniqHLL12` everywhere, whose merged
//! states equal the state built from the rows (exact up to 16 distinct
//! values per group, within a few percent above). The property test in
//! `warehouse-schema/tests/` checks this on random queries.
//!
//! Session queries — those asking for `bounce_rate` or `visit_duration`
//! or using `visit:entry_page|exit_page` — group sessions first (one row
//! per session with events in the range) and then group those rows:
//! - from `sessions` when the range is whole UTC days (its partitions are
//!   UTC days; a session crossing midnight has a row per day, combined by
//!   `GROUP BY session_id`), else from `events`; time buckets in any zone
//!   are exact either way, as they bucket the session's start;
//! - time dimensions bucket the session's first event, `visit:*` are the
//!   values on its first event; per-event dimensions (`event:name|page`,
//!   `visit:referrer|region|city`, `event:props:*`) are rejected;
//! - `bounce_rate` is the whole percentage of sessions with at most one
//!   interactive event, `visit_duration` the mean of (last − first event)
//!   in whole seconds, both rounded half up in integer arithmetic.
//!
//! Outside session queries, `visit:*` attributes are those stamped on each
//! event (what the rollups are keyed by), so "visitors by
//! visit:source" can differ between a query with and without
//! `bounce_rate`.
//!
//! Goals (the site's, passed in [`Query::goals`] by the API): `event:goal`
//! groups events by the goals they complete (an `arrayJoin` over the goals'
//! conditions: an event name, or a pageview whose path matches the goal's
//! `*` pattern); a filter on it keeps events completing a goal whose name
//! passes the filter. `conversion_rate` divides the group's visitors by the
//! range's visitors under the query's other filters (a scalar subquery),
//! so goal filters are allowed only at the top level. Goal queries read
//! `events`.
//!
//! Must not: format a value from the query into SQL (everything is a
//! `?` bind), or take identifiers from the query (they are constants
//! here). The SQL runs on ClickHouse 18.16 and current servers alike.

mod execute;
mod plan;
mod request;
mod validate;
mod window;

pub use execute::{MetricValue, QueryResult, QueryRunError, ResultMeta, ResultRow};
pub use plan::{Bind, Column, Plan, Source, plan, plan_from};
pub use request::{Goal, MAX_LIMIT, Pagination, Query};
pub use validate::{
    Attribute, Dimension, Filter, FilterOp, Metric, OrderKey, QueryError, TimeGrain, ValidQuery,
    validate,
};
pub use window::{Window, resolve_window};

#[cfg(test)]
mod tests;
