//! What `reprocess --range` needs beyond loading: a staging database per
//! day partition, copying the rows a reprocess keeps, swapping a day into
//! the live tables, per-day summaries, and the ledger entries of a day.
//!
//! Staging lives in a database of its own, `<database>_rp_<YYYYMMDD>`,
//! holding tables named like the live ones (`CREATE TABLE … AS` the live
//! table) and views feeding its rollups from its `events` with the live
//! views' SELECTs. A [`Warehouse`] handle on it therefore inserts with
//! [`Warehouse::insert_event_batches`], exactly as the loader does, and
//! dropping staging is one `DROP DATABASE`.
//!
//! Table names are constants; database names were validated as
//! identifiers when their handles were made; days and times are bound.

use serde::{Deserialize, Serialize};

use crate::loads::ROLLUPS;
use crate::{LoadStatus, Warehouse, WarehouseError};

/// Every table whose day partition a reprocess swaps: `events` first,
/// then each rollup fed from it by a materialized view (the same tables as
/// the loader's rollup rebuild, in `loads.rs`).
pub const DAY_TABLES: [&str; 7] = [
    "events",
    "site_hourly",
    "pages_hourly",
    "sources_hourly",
    "sessions",
    "site_daily",
    "dimensions_daily",
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
/// `[from_s, to_s)` and, when `site_ids` is not empty, of those sites only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub from_s: u32,
    pub to_s: u32,
    /// Empty: every site.
    pub site_ids: Vec<String>,
}

impl Selection {
    /// The SQL condition "row is selected", with two or three `?` to bind
    /// with [`Selection::bind`].
    fn condition(&self) -> &'static str {
        if self.site_ids.is_empty() {
            "(ts >= toDateTime(?) AND ts < toDateTime(?))"
        } else {
            "(ts >= toDateTime(?) AND ts < toDateTime(?) AND has(?, site_id))"
        }
    }

    fn bind(&self, query: clickhouse::query::Query) -> clickhouse::query::Query {
        let query = query.bind(self.from_s).bind(self.to_s);
        if self.site_ids.is_empty() {
            query
        } else {
            query.bind(&self.site_ids)
        }
    }

    /// Whether an event at `ts_s` of `site_id` is selected.
    pub fn contains(&self, ts_s: u32, site_id: &str) -> bool {
        (self.from_s..self.to_s).contains(&ts_s)
            && (self.site_ids.is_empty() || self.site_ids.iter().any(|s| s == site_id))
    }
}

/// One site's headline numbers of a day.
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct SiteDaySummary {
    pub site_id: String,
    pub events: u64,
    pub pageviews: u64,
    pub visitors: u64,
}

/// A batch's rows in a live day partition, inside and outside a
/// [`Selection`].
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct BatchDayRows {
    pub batch_id: String,
    pub inside: u64,
    pub outside: u64,
}

/// One row of `reprocess_runs`: a run's state (a later state of the same
/// `run_id` has a higher `version`).
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct ReprocessRun {
    pub run_id: String,
    pub started_at: u32,
    pub finished_at: u32,
    pub operator: String,
    pub host: String,
    pub range_from: u32,
    pub range_to: u32,
    pub sites: Vec<String>,
    pub plugin_set: String,
    pub dry_run: u8,
    /// `running`, `done`, `failed`.
    pub status: String,
    pub days: u32,
    pub batches: u64,
    pub rows_before: u64,
    pub rows_after: u64,
    pub error: String,
    pub version: u64,
}

impl Warehouse {
    /// A fresh, empty staging database for `day` (`YYYYMMDD`): any leftover
    /// of an interrupted run is dropped first, then each of [`DAY_TABLES`]
    /// is created `AS` its live table, and each rollup gets a materialized
    /// view from staging `events` with the live views' SELECT (for `day`),
    /// so rows inserted into staging `events` feed the staging rollups
    /// block by block, as the loader's inserts feed the live ones: no
    /// separate rebuild. Returns a handle on it.
    pub async fn create_day_staging(&self, day: u32) -> Result<Warehouse, WarehouseError> {
        let staging = self.for_database(&format!("{}_rp_{day}", self.database()))?;
        staging.drop_database().await?;
        staging.create_database().await?;
        let s = staging.database();
        for table in DAY_TABLES {
            let sql = format!(
                "CREATE TABLE `{s}`.{table} AS `{}`.{table}",
                self.database()
            );
            self.db
                .query(&sql)
                .execute()
                .await
                .map_err(WarehouseError::clickhouse(format!(
                    "creating staging table {s}.{table}"
                )))?;
        }
        for (table, select) in ROLLUPS {
            // The SELECT names `events` unqualified: qualify it with staging.
            let select = select.replace("FROM events", &format!("FROM `{s}`.events"));
            let sql =
                format!("CREATE MATERIALIZED VIEW `{s}`.{table}_mv TO `{s}`.{table} AS {select}");
            self.db
                .query(&sql)
                .bind(day)
                .execute()
                .await
                .map_err(WarehouseError::clickhouse(format!(
                    "creating staging view {s}.{table}_mv"
                )))?;
        }
        Ok(staging)
    }

    /// Copies into `staging.events` the live `events` rows of `day` that
    /// `selection` does not cover (other sites, other hours), so that the
    /// swap keeps them. Count with [`Warehouse::day_summary`].
    pub async fn copy_day_outside(
        &self,
        staging: &Warehouse,
        day: u32,
        selection: &Selection,
    ) -> Result<(), WarehouseError> {
        let sql = format!(
            "INSERT INTO `{}`.events SELECT * FROM `{}`.events \
             WHERE toYYYYMMDD(ts) = ? AND NOT {}",
            staging.database(),
            self.database(),
            selection.condition()
        );
        selection
            .bind(self.db.query(&sql).bind(day))
            .execute()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "copying the rows of day {day} that stay into staging"
            )))
    }

    /// How many rows each of `batch_ids` has in the live partition `day`,
    /// inside and outside `selection` (batches without rows are left out).
    pub async fn batch_rows_in_day(
        &self,
        day: u32,
        selection: &Selection,
        batch_ids: &[String],
    ) -> Result<Vec<BatchDayRows>, WarehouseError> {
        // Chunks of ids keep each statement far below `max_query_size`.
        if batch_ids.len() > 1000 {
            let mut out = Vec::new();
            for chunk in batch_ids.chunks(1000) {
                out.extend(Box::pin(self.batch_rows_in_day(day, selection, chunk)).await?);
            }
            return Ok(out);
        }
        if batch_ids.is_empty() {
            return Ok(Vec::new());
        }
        let cond = selection.condition();
        let sql = format!(
            "SELECT batch_id, countIf({cond}) AS inside, countIf(NOT {cond}) AS outside \
             FROM events WHERE toYYYYMMDD(ts) = ? AND has(?, batch_id) GROUP BY batch_id"
        );
        let query = selection.bind(selection.bind(self.db.query(&sql)));
        query
            .bind(day)
            .bind(batch_ids)
            .fetch_all::<BatchDayRows>()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "counting late batches' rows in day {day}"
            )))
    }

    /// The server's time zone: `toYYYYMMDD(ts)`, which partitions every
    /// table, is a day in this zone.
    pub async fn server_timezone(&self) -> Result<String, WarehouseError> {
        self.db
            .query("SELECT timezone()")
            .fetch_one::<String>()
            .await
            .map_err(WarehouseError::clickhouse("reading the server's time zone"))
    }

    /// Records a state of a reprocess run in `reprocess_runs`.
    pub async fn record_reprocess_run(&self, run: &ReprocessRun) -> Result<(), WarehouseError> {
        let context = || format!("recording reprocess run {}", run.run_id);
        let mut insert = self
            .db
            .insert::<ReprocessRun>("reprocess_runs")
            .await
            .map_err(WarehouseError::clickhouse(context()))?;
        insert
            .write(run)
            .await
            .map_err(WarehouseError::clickhouse(context()))?;
        insert
            .end()
            .await
            .map_err(WarehouseError::clickhouse(context()))
    }

    /// Makes every insert into this database's `events` for `day` go to
    /// staging as well: its rows to staging `events` and its aggregates to
    /// each staging rollup (one view per table, from the live `events`,
    /// dropped with staging; views do not fire for rows another view
    /// writes, so staging's own views would not see them). While the
    /// tables are swapped one by one, a load landing between two swaps is
    /// in every table swapped after it.
    pub async fn tee_day_into(&self, staging: &Warehouse, day: u32) -> Result<(), WarehouseError> {
        let (s, live) = (staging.database(), self.database());
        let mut views = vec![(
            "events".to_owned(),
            format!("SELECT * FROM `{live}`.events WHERE toYYYYMMDD(ts) = ?"),
        )];
        for (table, select) in ROLLUPS {
            views.push((
                table.to_owned(),
                select.replace("FROM events", &format!("FROM `{live}`.events")),
            ));
        }
        for (table, select) in views {
            let sql =
                format!("CREATE MATERIALIZED VIEW `{s}`.tee_{table} TO `{s}`.{table} AS {select}");
            self.db
                .query(&sql)
                .bind(day)
                .execute()
                .await
                .map_err(WarehouseError::clickhouse(format!(
                    "teeing day {day} of events into {s}.{table}"
                )))?;
        }
        Ok(())
    }

    /// Swaps `day` of `table` (one of [`DAY_TABLES`]) for the same
    /// partition of `staging`: atomic for readers of that table.
    pub async fn replace_table_day_from(
        &self,
        staging: &Warehouse,
        table: &str,
        day: u32,
    ) -> Result<(), WarehouseError> {
        let table = DAY_TABLES
            .into_iter()
            .find(|t| *t == table)
            .ok_or_else(|| WarehouseError::InvalidIdentifier {
                what: "day table",
                value: table.to_owned(),
            })?;
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
            self.replace_table_day_from(staging, table, day).await?;
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

    /// [`Warehouse::day_summary`] per site, by site id.
    pub async fn day_summary_by_site(
        &self,
        day: u32,
    ) -> Result<Vec<SiteDaySummary>, WarehouseError> {
        self.db
            .query(
                "SELECT site_id, count() AS n, countIf(name = 'pageview') AS pv, \
                 uniqExact(visitor_id) AS v FROM events WHERE toYYYYMMDD(ts) = ? \
                 GROUP BY site_id ORDER BY site_id",
            )
            .bind(day)
            .fetch_all::<SiteDaySummary>()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "summarizing day {day} of {} per site",
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
