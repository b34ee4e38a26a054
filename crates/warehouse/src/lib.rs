//! `hourglass-warehouse`: the one crate that speaks SQL to ClickHouse
//! (the DDL itself lives in `warehouse-schema`).
//!
//! It owns the connection settings ([`WarehouseConfig`]), the encoding of a
//! model [`Event`](hourglass_model::Event) as a row of `events` and its bulk
//! insert, typed reads of the server catalog and of the migrations ledger,
//! and the reconciliation queries that compare the rollups with `events`.
//! It does not decide what to load or when (the loader does), plan
//! dashboard queries, or define tables.
//!
//! Design constraints, all from running on ClickHouse 18.16 as well as on
//! current ClickHouse (see the design notes on the warehouse):
//! - The client is always built with `.with_validation(false)`: with
//!   validation on, the `clickhouse` crate sends a setting 18.16 rejects.
//!   Inserts therefore use plain `RowBinary`, and a row type that does not
//!   match its table fails only at run time — the tests insert through the
//!   same row types against a real server to catch that.
//! - Values are always bound with the client's `bind()`, never formatted
//!   into SQL (server-side `{name:Type}` parameters do not exist on 18.16).
//!   Identifiers cannot be bound as values, so the only one that comes from
//!   configuration, the database name, is validated as
//!   `^[A-Za-z_][A-Za-z0-9_]*$` when a [`Warehouse`] is made; table names
//!   in SQL are constants of this crate.
//! - An insert is atomic only per block and per partition, and materialized
//!   views are not atomic with their source: exactly-once loading is the
//!   loader's job (loads ledger), not this crate's.

mod catalog;
mod config;
pub mod control;
mod error;
mod event_native;
mod event_row;
mod goals;
mod ident;
mod loads;
pub mod metadata;
pub mod plugins;
pub mod query;
mod realtime;
mod reconcile;
mod reprocess;
mod warehouse;

pub use catalog::{AppliedMigration, ColumnInfo, TableInfo};
pub use config::WarehouseConfig;
pub use control::{ControlRows, PluginBindingRow, SiteStream};
pub use error::WarehouseError;
pub use event_native::NativeBlock;
pub use event_row::{MAX_TIMESTAMP_S, unix_seconds};
pub use goals::{FunnelRow, GoalRow, MAX_FUNNEL_STEPS};
pub use ident::{is_identifier, validate_identifier};
pub use loads::{EdgeLoads, LoadEntry, LoadStatus, encode_events};
pub use query::{Query, QueryResult, Source, plan, plan_from};
pub use realtime::{PageVisitors, REALTIME_WINDOW_S, Realtime};
pub use reconcile::{HourlyCounts, HourlyRollup, SessionCounts, TimeRange};
pub use reprocess::{
    BatchDayRows, DAY_TABLES, DaySummary, ReprocessRun, Selection, SiteDaySummary,
};
pub use warehouse::Warehouse;
