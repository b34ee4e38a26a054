//! What the loader needs beyond [`Warehouse::insert_events`]: the loads
//! ledger, an insert of many batches at once, removing a batch's rows, and
//! rebuilding a day's rollups from `events`.
//!
//! Every statement that writes (ledger rows, event inserts, deletes,
//! rollup rebuilds) carries a `query_id` starting `hourglass-write:<db>:`.
//! ClickHouse finishes a write whose client died (a killed loader), so
//! recovery first waits until [`Warehouse::writes_running`] is 0: a
//! delete or rebuild that ran before such an orphan finished would not
//! see its rows.
//!
//! Table names here are constants; batch ids and days are bound values.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hourglass_model::{BatchId, Event};
use serde::{Deserialize, Serialize};

use crate::event_native::NativeBlock;
use crate::event_row::EventRow;
use crate::{Warehouse, WarehouseError};

/// One row of the `loads` ledger (`0004_metadata.sql`). Times are
/// seconds since the epoch (`DateTime`).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct LoadEntry {
    pub batch_id: String,
    pub archive_key: String,
    pub plugin_set: String,
    pub rows: u64,
    pub min_ts: u32,
    pub max_ts: u32,
    /// `loading` (before the insert), `loaded` (after it), `failed`.
    pub status: String,
    pub error: String,
    pub loaded_at: u32,
    pub version: u64,
}

/// What the loads ledger says about one edge: its batches loaded, their
/// rows, and when the last one was loaded (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct EdgeLoads {
    pub edge_id: String,
    pub batches: u64,
    pub rows: u64,
    pub last_loaded_at: u32,
}

/// A batch's latest ledger status. (Queries alias the columns to short
/// names: on 18.16 an alias equal to a column name inside an aggregate
/// is ambiguous; RowBinary reads by position.)
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct LoadStatus {
    pub batch_id: String,
    pub status: String,
    pub min_ts: u32,
    pub max_ts: u32,
}

/// The rollups fed by materialized views on `events`, with the `SELECT`
/// each view runs, so a day can be rebuilt exactly as the views build it.
/// Must match `warehouse-schema`'s `0002_rollups.sql`, `0003_sessions.sql`
/// and `0007_daily_rollups.sql`.
pub(crate) const ROLLUPS: [(&str, &str); 6] = [
    (
        "site_hourly",
        "SELECT site_id, toStartOfHour(ts) AS hour, \
         countIfState(name = 'pageview') AS pageviews, countState() AS events, \
         uniqState(visitor_id) AS visitors, uniqState(session_id) AS visits \
         FROM events WHERE toYYYYMMDD(ts) = ? GROUP BY site_id, hour",
    ),
    (
        "pages_hourly",
        "SELECT site_id, toStartOfHour(ts) AS hour, hostname, pathname, \
         countIfState(name = 'pageview') AS pageviews, countState() AS events, \
         uniqState(visitor_id) AS visitors, uniqState(session_id) AS visits \
         FROM events WHERE toYYYYMMDD(ts) = ? GROUP BY site_id, hour, hostname, pathname",
    ),
    (
        "sources_hourly",
        "SELECT site_id, toStartOfHour(ts) AS hour, referrer_source, channel, utm_source, \
         utm_medium, utm_campaign, country, device, browser, os, \
         countIfState(name = 'pageview') AS pageviews, countState() AS events, \
         uniqState(visitor_id) AS visitors, uniqState(session_id) AS visits \
         FROM events WHERE toYYYYMMDD(ts) = ? GROUP BY site_id, hour, referrer_source, channel, \
         utm_source, utm_medium, utm_campaign, country, device, browser, os",
    ),
    (
        "sessions",
        "SELECT site_id, session_id, toDate(ts) AS day, anyState(visitor_id) AS visitor, \
         minState(ts) AS started_at, maxState(ts) AS ended_at, \
         argMinState(pathname, ts) AS entry_page, argMaxState(pathname, ts) AS exit_page, \
         countIfState(name = 'pageview') AS pageviews, countState() AS events, \
         countIfState(interactive = 1) AS interactive_events, \
         argMinState(referrer_source, ts) AS entry_referrer_source, \
         argMinState(channel, ts) AS entry_channel, argMinState(utm_source, ts) AS entry_utm_source, \
         argMinState(utm_medium, ts) AS entry_utm_medium, \
         argMinState(utm_campaign, ts) AS entry_utm_campaign, \
         argMinState(country, ts) AS entry_country, argMinState(device, ts) AS entry_device, \
         argMinState(browser, ts) AS entry_browser, argMinState(os, ts) AS entry_os \
         FROM events WHERE toYYYYMMDD(ts) = ? GROUP BY site_id, session_id, day",
    ),
    (
        "site_daily",
        "SELECT site_id, toStartOfDay(ts) AS day, \
         countIfState(name = 'pageview') AS pageviews, countState() AS events, \
         uniqHLL12State(visitor_id) AS visitors, uniqHLL12State(session_id) AS visits \
         FROM events WHERE toYYYYMMDD(ts) = ? GROUP BY site_id, day",
    ),
    (
        "dimensions_daily",
        "SELECT site_id, toStartOfDay(ts) AS day, dimension, value, \
         countIfState(name = 'pageview') AS pageviews, countState() AS events, \
         uniqHLL12State(visitor_id) AS visitors, uniqHLL12State(session_id) AS visits \
         FROM events ARRAY JOIN ['page', 'source', 'channel', 'utm_source', 'utm_medium', \
         'utm_campaign', 'country', 'device', 'browser', 'os'] AS dimension, \
         [pathname, referrer_source, channel, utm_source, utm_medium, utm_campaign, country, \
         device, browser, os] AS value \
         WHERE toYYYYMMDD(ts) = ? GROUP BY site_id, day, dimension, value",
    ),
];

/// `events` of one batch, stamped with `batch_id` and `plugin_set`, as a
/// block for [`Warehouse::insert_native_events`]: no IO, so a loader can
/// encode the next set while the current one is being inserted. Refuses
/// an event with a time `DateTime` cannot hold.
pub fn encode_events<'a>(
    batch_id: &str,
    plugin_set: &str,
    events: impl IntoIterator<Item = &'a Event>,
) -> Result<NativeBlock, WarehouseError> {
    let rows = events
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            EventRow::new(event, batch_id, plugin_set).map_err(|e| {
                WarehouseError::TimestampOutOfRange {
                    batch_id: batch_id.to_owned(),
                    index,
                    field: e.field,
                    value_ms: e.value_ms,
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NativeBlock::encode(&rows))
}

impl Warehouse {
    /// Appends ledger rows (one insert).
    pub async fn record_loads(&self, entries: &[LoadEntry]) -> Result<(), WarehouseError> {
        if entries.is_empty() {
            return Ok(());
        }
        let context =
            |what: &str| format!("writing the loads ledger in {}: {what}", self.database());
        let mut insert = self
            .db
            .insert::<LoadEntry>("loads")
            .await
            .map_err(WarehouseError::clickhouse(context("starting the insert")))?
            .with_setting(QUERY_ID, self.write_query_id());
        for entry in entries {
            insert
                .write(entry)
                .await
                .map_err(WarehouseError::clickhouse(context("writing a row")))?;
        }
        insert
            .end()
            .await
            .map_err(WarehouseError::clickhouse(context("finishing the insert")))
    }

    /// The latest ledger status of each of `batch_ids` that has one.
    pub async fn load_statuses(
        &self,
        batch_ids: &[String],
    ) -> Result<Vec<LoadStatus>, WarehouseError> {
        if batch_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.db
            .query(
                "SELECT batch_id, argMax(status, version) AS s, \
                 argMax(min_ts, version) AS lo, argMax(max_ts, version) AS hi \
                 FROM loads WHERE has(?, batch_id) GROUP BY batch_id",
            )
            .bind(batch_ids)
            .fetch_all::<LoadStatus>()
            .await
            .map_err(WarehouseError::clickhouse("reading the loads ledger"))
    }

    /// Per edge (the part of a batch id before `-<20-digit seq>`), the
    /// batches loaded, their rows and the last load, sorted by edge.
    pub async fn loads_by_edge(&self) -> Result<Vec<EdgeLoads>, WarehouseError> {
        self.db
            .query(
                "SELECT substring(batch_id, 1, length(batch_id) - 21) AS e, count() AS b, \
                 sum(rows) AS r, max(loaded_at) AS l FROM loads \
                 WHERE status = 'loaded' AND length(batch_id) > 21 GROUP BY e ORDER BY e",
            )
            .fetch_all::<EdgeLoads>()
            .await
            .map_err(WarehouseError::clickhouse(
                "reading the loads ledger by edge",
            ))
    }

    /// Batches whose latest ledger status is `loading`: a load that was
    /// interrupted, whose rows may be partly in `events`.
    pub async fn unfinished_loads(&self) -> Result<Vec<LoadStatus>, WarehouseError> {
        self.db
            .query(
                "SELECT batch_id, s, lo, hi FROM (\
                 SELECT batch_id, argMax(status, version) AS s, \
                 argMax(min_ts, version) AS lo, argMax(max_ts, version) AS hi \
                 FROM loads GROUP BY batch_id) WHERE s = 'loading'",
            )
            .fetch_all::<LoadStatus>()
            .await
            .map_err(WarehouseError::clickhouse("reading unfinished loads"))
    }

    /// Inserts the events of many batches as one insert (one `Native`
    /// block). The caller keeps one day partition per call, so the insert
    /// is atomic per block. Returns the rows sent.
    pub async fn insert_event_batches(
        &self,
        batches: &[(BatchId, String, Vec<Event>)],
    ) -> Result<u64, WarehouseError> {
        let ids: Vec<String> = batches.iter().map(|(id, _, _)| id.to_string()).collect();
        let mut rows = Vec::new();
        for ((_, plugin_set, events), id) in batches.iter().zip(&ids) {
            for (index, event) in events.iter().enumerate() {
                let row = EventRow::new(event, id, plugin_set).map_err(|e| {
                    WarehouseError::TimestampOutOfRange {
                        batch_id: id.clone(),
                        index,
                        field: e.field,
                        value_ms: e.value_ms,
                    }
                })?;
                rows.push(row);
            }
        }
        self.insert_native_events(&[&NativeBlock::encode(&rows)])
            .await
    }

    /// Sends `blocks` (from [`encode_events`]) to `events` as one insert
    /// and returns the rows sent; nothing is sent when they hold no rows.
    /// ClickHouse squashes the blocks of an insert into blocks of up to
    /// `min_insert_block_size_rows` before writing parts and running the
    /// views, so many small blocks cost no more parts than one big one.
    /// Like every write here it carries a `hourglass-write:` query id.
    pub async fn insert_native_events(
        &self,
        blocks: &[&NativeBlock],
    ) -> Result<u64, WarehouseError> {
        let context = |what: &str| format!("inserting into {}.events: {what}", self.database());
        self.send_native_events(blocks, context).await
    }

    /// [`Warehouse::insert_native_events`], with `context` saying what
    /// failed.
    pub(crate) async fn send_native_events(
        &self,
        blocks: &[&NativeBlock],
        context: impl Fn(&str) -> String,
    ) -> Result<u64, WarehouseError> {
        let rows: usize = blocks.iter().map(|b| b.rows()).sum();
        if rows == 0 {
            return Ok(0);
        }
        let mut insert = self
            .db
            .insert_formatted_with("INSERT INTO events FORMAT Native")
            .with_setting(QUERY_ID, self.write_query_id());
        for block in blocks.iter().filter(|b| b.rows() > 0) {
            insert
                .send(block.bytes().clone())
                .await
                .map_err(WarehouseError::clickhouse(context("sending a block")))?;
        }
        insert
            .end()
            .await
            .map_err(WarehouseError::clickhouse(context("finishing the insert")))?;
        Ok(rows as u64)
    }

    /// Starts deleting every `events` row of `batch_ids`: a mutation,
    /// which 18.16 runs in the background (it has no `mutations_sync`);
    /// wait with [`Warehouse::events_mutations_running`].
    pub async fn delete_batches(&self, batch_ids: &[String]) -> Result<(), WarehouseError> {
        if batch_ids.is_empty() {
            return Ok(());
        }
        self.db
            .query("ALTER TABLE events DELETE WHERE has(?, batch_id)")
            .bind(batch_ids)
            .with_setting(QUERY_ID, self.write_query_id())
            .execute()
            .await
            .map_err(WarehouseError::clickhouse(
                "deleting rows of interrupted loads",
            ))
    }

    /// Mutations on `events` not finished yet.
    pub async fn events_mutations_running(&self) -> Result<u64, WarehouseError> {
        self.db
            .query(
                "SELECT count() FROM system.mutations \
                 WHERE database = ? AND table = 'events' AND is_done = 0",
            )
            .bind(self.database())
            .fetch_one::<u64>()
            .await
            .map_err(WarehouseError::clickhouse("reading system.mutations"))
    }

    /// Rebuilds every rollup's partition for `day` (`YYYYMMDD`, UTC) from
    /// `events` into a staging database (`<database>_rb_<day>`, tables
    /// `AS` the live ones, no views), then swaps each table's day in with
    /// `REPLACE PARTITION`: a reader sees the old day or the rebuilt one,
    /// never an empty one (a day with no events left is emptied by the
    /// swap). Staging is dropped first (leftovers of an interrupted
    /// rebuild) and after. Run only while nothing inserts into that day.
    pub async fn replace_rollups(&self, day: u32) -> Result<(), WarehouseError> {
        let staging = self.for_database(&format!("{}_rb_{day}", self.database()))?;
        staging.drop_database().await?;
        staging.create_database().await?;
        for (table, select) in ROLLUPS {
            let context = |what: &str| format!("rebuilding {table} for day {day}: {what}");
            // Both names were validated as identifiers; `events` in the
            // SELECT is this handle's.
            for (sql, what) in [
                (
                    format!(
                        "CREATE TABLE `{}`.{table} AS `{}`.{table}",
                        staging.database(),
                        self.database()
                    ),
                    "creating the staging table",
                ),
                (
                    format!("INSERT INTO `{}`.{table} {select}", staging.database()),
                    "aggregating events into staging",
                ),
                (
                    format!(
                        "ALTER TABLE {table} REPLACE PARTITION ? FROM `{}`.{table}",
                        staging.database()
                    ),
                    "swapping the day in",
                ),
            ] {
                let mut query = self.db.query(&sql);
                if !sql.starts_with("CREATE") {
                    query = query.bind(day);
                }
                query
                    .with_setting(QUERY_ID, self.write_query_id())
                    .execute()
                    .await
                    .map_err(WarehouseError::clickhouse(context(what)))?;
            }
        }
        staging.drop_database().await
    }

    /// Statements of this database's writers (`hourglass-write:<db>:…`)
    /// still running on the server, e.g. those of a loader that was killed.
    pub async fn writes_running(&self) -> Result<u64, WarehouseError> {
        self.server
            .query("SELECT count() FROM system.processes WHERE startsWith(query_id, ?)")
            .bind(self.write_query_prefix())
            .fetch_one::<u64>()
            .await
            .map_err(WarehouseError::clickhouse("reading system.processes"))
    }

    fn write_query_prefix(&self) -> String {
        format!("hourglass-write:{}:", self.database())
    }

    /// A query id no other running statement has: the prefix, this
    /// process, the time and a counter.
    fn write_query_id(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "{}{}-{nanos}-{}",
            self.write_query_prefix(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The HTTP parameter naming a statement in `system.processes`.
const QUERY_ID: &str = "query_id";
