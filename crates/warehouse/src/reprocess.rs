//! What `reprocess --range` needs beyond loading: a staging database per
//! day partition, copying the rows a reprocess keeps, swapping a day into
//! the live tables, per-day summaries, and the ledger entries of a day.
//!
//! Staging lives in a database of its own, `<database>_rp_<YYYYMMDD>`,
//! holding tables named like the live ones (`CREATE TABLE … AS` the live
//! table, without the materialized views). A [`Warehouse`] handle on it
//! therefore inserts with [`Warehouse::insert_event_batches`] and rebuilds
//! rollups with [`Warehouse::rebuild_rollups`], the very SQL the loader's
//! recovery uses, and dropping staging is one `DROP DATABASE`.
//!
//! Table names are constants; database names were validated as
//! identifiers when their handles were made; days and times are bound.

use serde::{Deserialize, Serialize};

use crate::{LoadStatus, Warehouse, WarehouseError};

/// Every table whose day partition a reprocess swaps: `events` first,
/// then each rollup fed from it by a materialized view (the same tables as
/// the loader's rollup rebuild, in `loads.rs`).
pub const DAY_TABLES: [&str; 5] = [
    "events",
    "site_hourly",
    "pages_hourly",
    "sources_hourly",
    "sessions",
];

/// A day partition's headline numbers, for before/after summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct DaySummary {
    pub events: u64,
    pub pageviews: u64,
    /// Distinct visitor ids over the day (all sites).
    pub visitors: u64,
}

/// Which rows of a day a reprocess replaces: those with `ts` in
/// `[from_s, to_s)` and, when `site_id` is not empty, of that site only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub from_s: u32,
    pub to_s: u32,
    /// Empty: every site.
    pub site_id: String,
}

impl Warehouse {
    /// A fresh, empty staging database for `day` (`YYYYMMDD`): any leftover
    /// of an interrupted run is dropped first, then each of [`DAY_TABLES`]
    /// is created `AS` its live table. Returns a handle on it.
    pub async fn create_day_staging(&self, day: u32) -> Result<Warehouse, WarehouseError> {
        let staging = self.for_database(&format!("{}_rp_{day}", self.database()))?;
        staging.drop_database().await?;
        staging.create_database().await?;
        for table in DAY_TABLES {
            let sql = format!(
                "CREATE TABLE `{}`.{table} AS `{}`.{table}",
                staging.database(),
                self.database()
            );
            self.db
                .query_raw(&sql)
                .execute()
                .await
                .map_err(WarehouseError::clickhouse(format!(
                    "creating staging table {}.{table}",
                    staging.database()
                )))?;
        }
        Ok(staging)
    }

    /// Copies into `staging.events` the live `events` rows of `day` that
    /// `selection` does not cover (other sites, other hours), so that the
    /// swap keeps them. Returns nothing; count with [`Warehouse::day_summary`].
    pub async fn copy_day_outside(
        &self,
        staging: &Warehouse,
        day: u32,
        selection: &Selection,
    ) -> Result<(), WarehouseError> {
        let sql = format!(
            "INSERT INTO `{}`.events SELECT * FROM `{}`.events \
             WHERE toYYYYMMDD(ts) = ? AND NOT (ts >= toDateTime(?) AND ts < toDateTime(?) \
             AND (? = '' OR site_id = ?))",
            staging.database(),
            self.database()
        );
        self.db
            .query(&sql)
            .bind(day)
            .bind(selection.from_s)
            .bind(selection.to_s)
            .bind(&selection.site_id)
            .bind(&selection.site_id)
            .execute()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "copying the rows of day {day} that stay into staging"
            )))
    }

    /// Swaps `day` of every table in [`DAY_TABLES`] for the same partition
    /// of `staging`, table by table. Each `REPLACE PARTITION` is atomic for
    /// readers (they see the old or the new partition of that table);
    /// between tables there is a short window where `events` is new and a
    /// rollup still old.
    pub async fn replace_day_from(
        &self,
        staging: &Warehouse,
        day: u32,
    ) -> Result<(), WarehouseError> {
        for table in DAY_TABLES {
            let sql = format!(
                "ALTER TABLE {table} REPLACE PARTITION ? FROM `{}`.{table}",
                staging.database()
            );
            self.db
                .query(&sql)
                .bind(day)
                .execute()
                .await
                .map_err(WarehouseError::clickhouse(format!(
                    "swapping day {day} of {table} from staging"
                )))?;
        }
        Ok(())
    }

    /// Events, pageviews and distinct visitors of `day` in `events`.
    pub async fn day_summary(&self, day: u32) -> Result<DaySummary, WarehouseError> {
        self.db
            .query(
                "SELECT count() AS n, countIf(name = 'pageview') AS pv, \
                 uniqExact(visitor_id) AS v FROM events WHERE toYYYYMMDD(ts) = ?",
            )
            .bind(day)
            .fetch_one::<DaySummary>()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "summarizing day {day} of {}",
                self.database()
            )))
    }

    /// The latest ledger entry of every batch whose event times overlap
    /// `[from_s, to_s)` (by the ledger's `min_ts`/`max_ts`; batches with no
    /// rows overlap nothing), whatever its status.
    pub async fn loads_overlapping(
        &self,
        from_s: u32,
        to_s: u32,
    ) -> Result<Vec<LoadStatus>, WarehouseError> {
        self.db
            .query(
                "SELECT batch_id, s, lo, hi FROM (\
                 SELECT batch_id, argMax(status, version) AS s, \
                 argMax(min_ts, version) AS lo, argMax(max_ts, version) AS hi, \
                 argMax(rows, version) AS r \
                 FROM loads GROUP BY batch_id) \
                 WHERE r > 0 AND lo < toDateTime(?) AND hi >= toDateTime(?)",
            )
            .bind(to_s)
            .bind(from_s)
            .fetch_all::<LoadStatus>()
            .await
            .map_err(WarehouseError::clickhouse(
                "reading the loads ledger of a day",
            ))
    }
}
