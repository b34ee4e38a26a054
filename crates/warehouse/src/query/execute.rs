//! Running a [`Plan`] and turning its rows into a [`QueryResult`].
//!
//! Rows are fetched generically as `JSONCompact` (a list of JSON arrays):
//! the result's shape depends on the query, and typed RowBinary fetches
//! would need a Rust type per shape. `JSONCompact` works on 18.16 and
//! current servers; 64-bit integers arrive quoted on both, so counts are
//! read from a number or a string.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use super::plan::{Bind, Column, Plan, Source, plan, plan_from};
use super::request::Query;
use super::validate::QueryError;
use super::window::format_local;
use crate::{Warehouse, WarehouseError};

/// A metric's value: a count, or a ratio (`views_per_visit`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MetricValue {
    Count(u64),
    Ratio(f64),
}

/// One row: the dimension values in query order, then the metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultRow {
    pub metrics: Vec<MetricValue>,
    pub dimensions: Vec<String>,
}

/// Where an answer came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResultMeta {
    /// The table read.
    pub source: Source,
    /// Always `"none"`: answers are never sampled.
    pub sampling: &'static str,
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    pub results: Vec<ResultRow>,
    pub meta: ResultMeta,
}

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryRunError {
    /// The query is invalid (the caller's fault: a 400).
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The warehouse failed.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// The server answered something this crate did not expect.
    #[error("unexpected answer from {table}: {detail}")]
    Decode { table: &'static str, detail: String },
}

impl Warehouse {
    /// Plans `query` (see [`plan`]) and runs it.
    pub async fn query(
        &self,
        query: &Query,
        now: SystemTime,
    ) -> Result<QueryResult, QueryRunError> {
        let plan = plan(query, now)?;
        self.run_plan(&plan).await
    }

    /// Runs `query` on `source` (see [`plan_from`]), e.g. `events` as the
    /// reference for a rollup's answer.
    pub async fn query_from(
        &self,
        query: &Query,
        source: Source,
        now: SystemTime,
    ) -> Result<QueryResult, QueryRunError> {
        let plan = plan_from(query, source, now)?;
        self.run_plan(&plan).await
    }

    /// Runs a plan made by [`plan`] or [`plan_from`].
    pub async fn run_plan(&self, plan: &Plan) -> Result<QueryResult, QueryRunError> {
        let q = bind_all(self.db.query(&plan.sql), &plan.binds);
        let context = || format!("querying {} in database {}", plan.source, self.database());
        let body = async { q.fetch_bytes("JSONCompact")?.collect().await }
            .await
            .map_err(WarehouseError::clickhouse(context()))?;
        plan.decode_json_compact(&body)
    }
}

fn bind_all(mut q: clickhouse::query::Query, binds: &[Bind]) -> clickhouse::query::Query {
    for b in binds {
        q = match b {
            Bind::Str(s) => q.bind(s.as_str()),
            Bind::U16(n) => q.bind(*n),
            Bind::U32(n) => q.bind(*n),
            Bind::U64(n) => q.bind(*n),
        };
    }
    q
}

impl Plan {
    /// The statement with every value inlined exactly as the client sends
    /// it: for logs, `EXPLAIN`, and running a plan on another engine (the
    /// tests run plans on current ClickHouse through chdb this way).
    pub fn rendered_sql(&self) -> String {
        bind_all(clickhouse::Client::default().query(&self.sql), &self.binds)
            .sql_display()
            .to_string()
    }

    /// Decodes the server's `JSONCompact` answer to this plan's statement.
    pub fn decode_json_compact(&self, body: &[u8]) -> Result<QueryResult, QueryRunError> {
        decode(self, body)
    }
}

fn decode(plan: &Plan, body: &[u8]) -> Result<QueryResult, QueryRunError> {
    let table = plan.source.table();
    let bad = |detail: String| QueryRunError::Decode { table, detail };
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("not JSONCompact: {e}")))?;
    let rows = doc
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no \"data\" array".into()))?;
    let mut results = Vec::with_capacity(rows.len());
    for (r, row) in rows.iter().enumerate() {
        let cells = row
            .as_array()
            .filter(|c| c.len() == plan.columns.len())
            .ok_or_else(|| {
                bad(format!(
                    "row {r} does not have {} values",
                    plan.columns.len()
                ))
            })?;
        let mut out = ResultRow {
            metrics: Vec::with_capacity(plan.columns.len() - plan.dimension_count),
            dimensions: Vec::with_capacity(plan.dimension_count),
        };
        for (c, (cell, column)) in cells.iter().zip(&plan.columns).enumerate() {
            let what = || bad(format!("row {r} column {c}: unexpected value {cell}"));
            match column {
                Column::Text => out
                    .dimensions
                    .push(cell.as_str().ok_or_else(what)?.to_owned()),
                Column::LocalHour(tz) => {
                    let s = integer(cell).ok_or_else(what)?;
                    let s = i64::try_from(s).map_err(|_| what())?;
                    out.dimensions.push(format_local(s, tz).ok_or_else(what)?);
                }
                Column::Metric(m) if m.is_ratio() => {
                    let v = match cell {
                        Value::Number(n) => n.as_f64(),
                        Value::String(s) => s.parse().ok(),
                        _ => None,
                    };
                    out.metrics.push(MetricValue::Ratio(v.ok_or_else(what)?));
                }
                Column::Metric(_) => {
                    out.metrics
                        .push(MetricValue::Count(integer(cell).ok_or_else(what)?));
                }
            }
        }
        results.push(out);
    }
    Ok(QueryResult {
        results,
        meta: ResultMeta {
            source: plan.source,
            sampling: "none",
        },
    })
}

/// An unsigned integer sent as a JSON number or (64-bit) as a string.
fn integer(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}
