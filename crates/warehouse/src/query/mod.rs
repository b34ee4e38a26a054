//! The stats query planner: a merchant's [`Query`] (shaped like Plausible's
//! Stats API v2) is validated, planned onto one source table as SQL with
//! bound values ([`plan`], pure: no server, no clock — `now` is passed in),
//! and run ([`Warehouse::query`](crate::Warehouse::query)).
//!
//! Which table answers:
//! - `site_hourly` when the query groups and filters on nothing but time;
//! - `pages_hourly` when the only other dimension used is `event:page`;
//! - `sources_hourly` when only `visit:source|channel|utm_source|
//!   utm_medium|utm_campaign|country|device|browser|os` are used;
//! - `events` otherwise (`event:name`, `visit:referrer|region|city`,
//!   `event:props:*`, mixes of page and source attributes), and whenever
//!   the range is not a union of whole UTC hours in the query's zone (a
//!   zone with a non-hour offset such as Asia/Kolkata anywhere in the
//!   range, or a datetime range that starts or ends mid-hour).
//!
//! A rollup answer equals the `events` answer exactly: every rollup key
//! is an `events` column, the time buckets are unions of the rollups'
//! UTC hours, and `uniq` states merge into the same sketch `uniq` builds
//! (exact below 65,536 distinct values per group). The property test in
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
//! event (what the hourly rollups are keyed by), so "visitors by
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
