//! The loader role: archive → ClickHouse `events`, exactly once, keyed by
//! batch id in the `loads` ledger. Rollups follow through their
//! materialized views.
//!
//! How one load goes (one *set* of batches: ≥ `max_rows` events, or
//! whatever is pending once the oldest pending batch has waited
//! `max_wait`):
//! 1. ledger rows `loading` for every batch of the set;
//! 2. one insert per day partition of the set's events (an insert is
//!    atomic only per block and partition, so never span days);
//! 3. ledger rows `loaded` (a higher version).
//!
//! While a set is inserted, the next one is read, decoded and encoded in
//! the background (as `Native` blocks, one per batch and day: a few
//! hundred bytes per event instead of the decoded events), so the insert
//! itself only streams bytes and the loader's work overlaps ClickHouse's.
//!
//! Recovery (at start, and after any failed load): every batch whose latest
//! ledger status is `loading` may be partly in `events`, and the views may
//! have fired for part of it. First it waits until no statement of an
//! earlier loader is still running on the server (ClickHouse finishes the
//! insert of a loader killed mid-request; see `hourglass_warehouse`'s
//! `loads`). Then the batch's rows are deleted (a mutation, waited for)
//! and every rollup partition of the days it touched (±1 day, for the
//! server's time zone) is rebuilt from `events` in staging and swapped in
//! with `REPLACE PARTITION`, so readers never see a day's rollups empty;
//! the batch stays `loading` (so a crash here just recovers again) and is
//! loaded again like any pending batch. Rows without any ledger entry cannot exist: the `loading` row is
//! written before the insert. A batch that cannot be loaded at all (does
//! not decode, times `DateTime` cannot hold) is marked `failed` with the
//! error and skipped from then on.
//!
//! Finding work: the receiver hands every archived key over a channel;
//! besides, the archive hours from a cursor (started `lookback_hours` back)
//! to now are listed each cycle, and keys not known to be loaded are
//! checked against the ledger. The cursor trails the oldest pending hour
//! and never passes the previous hour.
//!
//! While ClickHouse is down, cycles fail and are retried with backoff
//! (0.5 s doubling to 30 s); the receiver keeps archiving meanwhile.
//! `hourglass_central_load_lag_seconds` is the age of the oldest archived
//! batch not loaded yet.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hourglass_archive::{Archive, BatchKey, Hour};
use hourglass_model::decode_batch_events;
use hourglass_warehouse::{
    LoadEntry, MAX_TIMESTAMP_S, NativeBlock, Warehouse, encode_events, unix_seconds,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct LoaderSettings {
    pub lookback_hours: u32,
    pub max_rows: usize,
    pub max_wait: Duration,
}

struct Pending {
    archived_at_ms: i64,
    batch: Option<Prepared>,
}

/// An archived batch ready to load: what its ledger rows say and its
/// events encoded, one block per UTC day (an insert never spans days).
struct Prepared {
    plugin_set: String,
    rows: u64,
    min_ts: u32,
    max_ts: u32,
    days: Vec<(u32, NativeBlock)>,
}

pub struct Loader {
    archive: Archive,
    warehouse: Warehouse,
    metrics: Metrics,
    settings: LoaderSettings,
    inbox: mpsc::UnboundedReceiver<BatchKey>,
    cursor: Option<Hour>,
    /// Keys at or after the cursor that are done: `loaded` or `failed`.
    done: HashSet<BatchKey>,
    pending: BTreeMap<BatchKey, Pending>,
    /// Archived keys found but not yet checked against the ledger (kept
    /// across failed cycles, so the lag still counts them while ClickHouse
    /// is down).
    unchecked: BTreeMap<BatchKey, i64>,
    needs_recovery: bool,
    last_version: u64,
}

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const LEDGER_CHUNK: usize = 1000;
const DAY_S: u32 = 86_400;
const ORPHAN_WRITE_LOG_AFTER: Duration = Duration::from_secs(5);
/// At most this many batches are decoded ahead of the load in progress.
const PREFETCH_MAX_BATCHES: usize = 10_000;

type Prefetch = tokio::task::JoinHandle<Vec<(BatchKey, Prepared)>>;

impl Loader {
    pub fn new(
        archive: Archive,
        warehouse: Warehouse,
        metrics: Metrics,
        settings: LoaderSettings,
        inbox: mpsc::UnboundedReceiver<BatchKey>,
    ) -> Self {
        Loader {
            archive,
            warehouse,
            metrics,
            settings,
            inbox,
            cursor: None,
            done: HashSet::new(),
            pending: BTreeMap::new(),
            unchecked: BTreeMap::new(),
            needs_recovery: true,
            last_version: 0,
        }
    }

    /// Loads until `shutdown`; a load in progress is finished first.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        while !shutdown.is_cancelled() {
            let wait = match self.cycle().await {
                Ok(true) => {
                    backoff = MIN_BACKOFF;
                    continue;
                }
                Ok(false) => {
                    backoff = MIN_BACKOFF;
                    self.settings.max_wait.min(Duration::from_millis(200))
                }
                Err(error) => {
                    self.metrics.load_errors.inc();
                    self.report_lag(now_ms());
                    tracing::warn!(error = %format!("{error:#}"), retry_in = ?backoff, "load failed; retrying");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One step: recover if needed, find work, load one set if it is ready.
    /// `Ok(true)` when a set was loaded (more may be ready at once).
    async fn cycle(&mut self) -> anyhow::Result<bool> {
        self.find(now_ms()).await?;
        if self.needs_recovery {
            self.recover().await?;
            self.needs_recovery = false;
        }
        let now = now_ms();
        self.discover(now).await?;
        self.report_lag(now);
        let Some(set) = self.take_set(now).await? else {
            return Ok(false);
        };
        // Decode the next set while this one is inserted: on a small box
        // the loader's decoding and ClickHouse's insert then share the
        // cores instead of taking turns.
        let prefetch = self.start_prefetch(&set);
        let loaded = self.load(set).await;
        self.finish_prefetch(prefetch).await;
        loaded?;
        self.report_lag(now_ms());
        Ok(true)
    }

    /// Starts reading and decoding, in the background, the pending
    /// batches after `set` (in key order, about `max_rows` events' worth).
    fn start_prefetch(&self, set: &[(BatchKey, Prepared)]) -> Option<Prefetch> {
        let taken: HashSet<&BatchKey> = set.iter().map(|(k, _)| k).collect();
        let keys: Vec<BatchKey> = self
            .pending
            .iter()
            .filter(|(k, p)| p.batch.is_none() && !taken.contains(k))
            .map(|(k, _)| k.clone())
            .take(PREFETCH_MAX_BATCHES)
            .collect();
        if keys.is_empty() {
            return None;
        }
        let archive = self.archive.clone();
        let max_rows = self.settings.max_rows;
        Some(tokio::spawn(async move {
            let mut decoded = Vec::new();
            let mut rows = 0;
            for key in keys {
                // Failures are left to `take_set`, which reports them.
                let Ok(bytes) = archive.get(&key).await else {
                    break;
                };
                let id = key.batch_id.to_string();
                let Ok(Ok(batch)) = tokio::task::spawn_blocking(move || prepare(&id, &bytes)).await
                else {
                    break;
                };
                rows += batch.rows as usize;
                decoded.push((key, batch));
                if rows >= max_rows {
                    break;
                }
            }
            decoded
        }))
    }

    async fn finish_prefetch(&mut self, prefetch: Option<Prefetch>) {
        let Some(prefetch) = prefetch else {
            return;
        };
        if let Ok(decoded) = prefetch.await {
            for (key, batch) in decoded {
                if let Some(pending) = self.pending.get_mut(&key)
                    && pending.batch.is_none()
                {
                    pending.batch = Some(batch);
                }
            }
        }
    }

    async fn recover(&mut self) -> anyhow::Result<()> {
        let unfinished = self.warehouse.unfinished_loads().await?;
        if unfinished.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = unfinished.iter().map(|u| u.batch_id.clone()).collect();
        tracing::warn!(batches = ids.len(), "recovering interrupted loads");
        // A killed loader's last statement may still be running on the
        // server; rows it adds after the delete would stay.
        let waiting = std::time::Instant::now();
        while self.warehouse.writes_running().await? > 0 {
            if waiting.elapsed() > ORPHAN_WRITE_LOG_AFTER {
                tracing::warn!(waited = ?waiting.elapsed(), "waiting for an earlier loader's statements to finish");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.warehouse.delete_batches(&ids).await?;
        while self.warehouse.events_mutations_running().await? > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut days = BTreeSet::new();
        for u in &unfinished {
            let mut t = u.min_ts.saturating_sub(DAY_S);
            while t <= u.max_ts.saturating_add(DAY_S) {
                days.insert(yyyymmdd(t));
                t = match t.checked_add(DAY_S) {
                    Some(next) => next,
                    None => break,
                };
            }
        }
        for day in &days {
            self.warehouse.replace_rollups(*day).await?;
        }
        self.metrics.load_recoveries.inc();
        tracing::info!(
            batches = ids.len(),
            days = days.len(),
            "interrupted loads recovered"
        );
        Ok(())
    }

    /// Lists the archive (no ClickHouse needed): archived keys not known
    /// to be done or pending become `unchecked`.
    async fn find(&mut self, now: i64) -> anyhow::Result<()> {
        let now_hour = Hour::from_unix_ms(now)?;
        let cursor = *self
            .cursor
            .get_or_insert_with(|| now_hour.minus(i64::from(self.settings.lookback_hours)));
        let mut candidates: Vec<(BatchKey, i64)> = Vec::new();
        while let Ok(key) = self.inbox.try_recv() {
            candidates.push((key, now));
        }
        let mut hour = cursor;
        while hour <= now_hour {
            for archived in self.archive.list_hour_archived(hour).await? {
                candidates.push((archived.key, archived.archived_at_ms));
            }
            hour = hour.next();
        }
        for (key, archived_at_ms) in candidates {
            if !self.done.contains(&key) && !self.pending.contains_key(&key) {
                let at = self.unchecked.entry(key).or_insert(archived_at_ms);
                *at = (*at).min(archived_at_ms);
            }
        }
        Ok(())
    }

    /// Checks `unchecked` keys against the ledger: done ones are
    /// remembered, the others become `pending`.
    async fn discover(&mut self, now: i64) -> anyhow::Result<()> {
        let now_hour = Hour::from_unix_ms(now)?;
        let cursor = self.cursor.unwrap_or(now_hour);
        let candidates: Vec<(BatchKey, i64)> = self
            .unchecked
            .iter()
            .map(|(k, at)| (k.clone(), *at))
            .collect();
        for chunk in candidates.chunks(LEDGER_CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|(k, _)| k.batch_id.to_string()).collect();
            let done: HashSet<String> = self
                .warehouse
                .load_statuses(&ids)
                .await?
                .into_iter()
                .filter(|s| s.status == "loaded" || s.status == "failed")
                .map(|s| s.batch_id)
                .collect();
            for (key, archived_at_ms) in chunk {
                self.unchecked.remove(key);
                if done.contains(&key.batch_id.to_string()) {
                    self.done.insert(key.clone());
                } else {
                    self.pending.insert(
                        key.clone(),
                        Pending {
                            archived_at_ms: *archived_at_ms,
                            batch: None,
                        },
                    );
                }
            }
        }

        let oldest_pending = self.pending.keys().map(|k| k.hour).min();
        let next = oldest_pending.unwrap_or(now_hour).min(now_hour.minus(1));
        if next > cursor {
            self.cursor = Some(next);
            self.done.retain(|k| k.hour >= next);
        }
        self.metrics
            .load_pending_batches
            .set(self.pending.len() as i64);
        Ok(())
    }

    fn report_lag(&self, now: i64) {
        let pending = self.pending.values().map(|p| p.archived_at_ms);
        let oldest = pending.chain(self.unchecked.values().copied()).min();
        let lag = oldest.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
        self.metrics.load_lag_seconds.set(lag);
        self.metrics
            .load_pending_batches
            .set((self.pending.len() + self.unchecked.len()) as i64);
    }

    /// Decodes pending batches in key order until `max_rows` events; returns
    /// them if that many are there or the oldest has waited `max_wait`.
    async fn take_set(&mut self, now: i64) -> anyhow::Result<Option<Vec<(BatchKey, Prepared)>>> {
        let mut rows = 0;
        let mut chosen = Vec::new();
        let mut unreadable = Vec::new();
        for (key, pending) in self.pending.iter_mut() {
            if pending.batch.is_none() {
                let bytes = self.archive.get(key).await?;
                let id = key.batch_id.to_string();
                match tokio::task::spawn_blocking(move || prepare(&id, &bytes)).await? {
                    Ok(batch) => pending.batch = Some(batch),
                    Err(error) => {
                        tracing::error!(key = %key, %error, "not loading archived batch");
                        unreadable.push((key.clone(), error));
                        continue;
                    }
                }
            }
            rows += pending.batch.as_ref().map_or(0, |b| b.rows as usize);
            chosen.push(key.clone());
            if rows >= self.settings.max_rows {
                break;
            }
        }
        for (key, error) in unreadable {
            self.pending.remove(&key);
            self.mark_failed(&key, &error).await?;
        }
        let oldest = self.pending.values().map(|p| p.archived_at_ms).min();
        let waited = oldest.is_some_and(|at| now - at >= self.settings.max_wait.as_millis() as i64);
        if chosen.is_empty() || (rows < self.settings.max_rows && !waited) {
            return Ok(None);
        }
        let set = chosen
            .into_iter()
            .filter_map(|key| {
                let batch = self.pending.get_mut(&key)?.batch.take()?;
                Some((key, batch))
            })
            .collect();
        Ok(Some(set))
    }

    async fn mark_failed(&mut self, key: &BatchKey, error: &str) -> anyhow::Result<()> {
        self.metrics.load_failed_batches.inc();
        self.done.insert(key.clone());
        let entry = LoadEntry {
            batch_id: key.batch_id.to_string(),
            archive_key: key.path(),
            plugin_set: String::new(),
            rows: 0,
            min_ts: 0,
            max_ts: 0,
            status: "failed".into(),
            error: error.to_string(),
            loaded_at: (now_ms() / 1000) as u32,
            version: self.next_version(),
        };
        self.warehouse.record_loads(&[entry]).await?;
        Ok(())
    }

    async fn load(&mut self, set: Vec<(BatchKey, Prepared)>) -> anyhow::Result<()> {
        let loaded_at = (now_ms() / 1000) as u32;
        let mut entries = Vec::with_capacity(set.len());
        let mut days: BTreeMap<u32, Vec<NativeBlock>> = BTreeMap::new();
        let mut keys = Vec::with_capacity(set.len());
        let mut total_rows = 0u64;
        for (key, batch) in set {
            total_rows += batch.rows;
            entries.push(LoadEntry {
                batch_id: key.batch_id.to_string(),
                archive_key: key.path(),
                plugin_set: batch.plugin_set,
                rows: batch.rows,
                min_ts: batch.min_ts,
                max_ts: batch.max_ts,
                status: "loading".into(),
                error: String::new(),
                loaded_at,
                version: 0,
            });
            for (day, block) in batch.days {
                days.entry(day).or_default().push(block);
            }
            keys.push(key);
        }
        if entries.is_empty() {
            return Ok(());
        }

        let version = self.next_version();
        for entry in &mut entries {
            entry.version = version;
        }
        self.warehouse.record_loads(&entries).await?;
        // From here until the `loaded` rows are written, a failure leaves
        // rows that recovery must remove.
        self.needs_recovery = true;
        for blocks in days.values() {
            let blocks: Vec<&NativeBlock> = blocks.iter().collect();
            self.warehouse.insert_native_events(&blocks).await?;
            self.metrics.load_inserts.inc();
        }
        let version = self.next_version();
        for entry in &mut entries {
            entry.status = "loaded".into();
            entry.version = version;
        }
        self.warehouse.record_loads(&entries).await?;
        self.needs_recovery = false;

        self.metrics.loaded_batches.inc_by(keys.len() as u64);
        self.metrics.loaded_rows.inc_by(total_rows);
        tracing::debug!(
            batches = keys.len(),
            rows = total_rows,
            days = days.len(),
            "loaded"
        );
        for key in keys {
            self.pending.remove(&key);
            self.done.insert(key);
        }
        self.metrics
            .load_pending_batches
            .set(self.pending.len() as i64);
        Ok(())
    }

    /// Ledger versions: milliseconds, strictly increasing within a process.
    fn next_version(&mut self) -> u64 {
        let now = now_ms().max(0) as u64;
        self.last_version = now.max(self.last_version + 1);
        self.last_version
    }
}

/// Decodes an archived batch and encodes its events for the insert, one
/// block per UTC day. `Err` (the reason) when it can never be loaded: it
/// does not decode, or an event has a time `DateTime` cannot hold.
fn prepare(batch_id: &str, bytes: &[u8]) -> Result<Prepared, String> {
    let batch = decode_batch_events(bytes).map_err(|e| e.to_string())?;
    let plugin_set = batch
        .header
        .as_ref()
        .map(|h| h.plugin_set.clone())
        .unwrap_or_default();
    let mut by_day: BTreeMap<u32, Vec<&hourglass_model::Event>> = BTreeMap::new();
    let (mut min_ts, mut max_ts) = (u32::MAX, 0);
    for (index, event) in batch.events.iter().enumerate() {
        let (Some(ts), Some(_)) = (
            unix_seconds(event.ts_ms),
            unix_seconds(event.received_at_ms),
        ) else {
            return Err(format!(
                "event {index} has a time outside 1970..{MAX_TIMESTAMP_S} s, which DateTime cannot hold"
            ));
        };
        (min_ts, max_ts) = (min_ts.min(ts), max_ts.max(ts));
        by_day.entry(yyyymmdd(ts)).or_default().push(event);
    }
    let days = by_day
        .into_iter()
        .map(|(day, events)| {
            encode_events(batch_id, &plugin_set, events)
                .map(|block| (day, block))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let rows = batch.events.len() as u64;
    Ok(Prepared {
        plugin_set,
        rows,
        min_ts: if rows == 0 { 0 } else { min_ts },
        max_ts,
        days,
    })
}

/// `YYYYMMDD` (UTC) of `seconds` since the epoch.
fn yyyymmdd(seconds: u32) -> u32 {
    // Days since the epoch to a civil date (Howard Hinnant's algorithm).
    let z = i64::from(seconds / DAY_S) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year * 10_000 + month * 100 + day) as u32
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::yyyymmdd;

    #[test]
    fn days_are_utc_calendar_days() {
        assert_eq!(yyyymmdd(0), 19_700_101);
        assert_eq!(yyyymmdd(1_795_617_000), 20_261_125); // 2026-11-25T14:30Z
        assert_eq!(yyyymmdd(951_782_400), 20_000_229); // leap day 2000
        assert_eq!(yyyymmdd(4_102_444_799), 20_991_231);
    }
}
