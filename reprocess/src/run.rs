//! One reprocess run, day partition by day partition.
//!
//! For each UTC day the range touches (skipped when its checkpoint exists):
//! 1. wait until no batch overlapping the day is `loading` in the ledger;
//!    note the batches `loaded` for it (`L_pre`);
//! 2. list the archive's receive hours `[start, end + max lateness)` of
//!    the day's part of the range; the batches the ledger says are
//!    `loaded` are the day's *used* set `U` (the others are the loader's:
//!    it loads them on top of the swap, see 5.); every batch of `L_pre`
//!    must be in `U`, else the archive lost one and the run stops;
//! 3. build staging (`<db>_rp_<day>`): copy the live rows of the day the
//!    selection does not cover (other sites, other hours), stream the raw
//!    hits of `U` through `Pipeline::process_batch` with the chosen
//!    plugins (`--concurrency` pipelines on as many threads) and insert the
//!    events of the selection; staging's own views (the live views'
//!    SELECTs) build its rollups from both, block by block;
//! 4. tee the live day into staging (views on the live `events`: every
//!    load into the day from now on also goes to staging `events` and to
//!    each staging rollup), then `REPLACE PARTITION` the day of `events` and
//!    of every rollup from staging, table by table (each swap atomic for
//!    readers; a load landing between two swaps is in every table swapped
//!    after it, so nothing is lost from a rollup);
//! 5. *late batches*: every batch overlapping the day that the ledger shows
//!    `loading`/`loaded`, is not in `U` and was not `loaded` at step 1 was
//!    loaded by the live loader while this ran. Wait until none of them is `loading`, then count each
//!    one's rows in the live day inside and outside the selection: a part
//!    with no rows was inserted before the swap (or before the copy) and
//!    dropped by it, so it is inserted again, from the archived batch's
//!    own events, exactly as the loader inserted it. Then the day's
//!    checkpoint is written and staging dropped.
//!
//! The rule, in short: a batch is either in `U` (its selected rows made
//! with the new plugins) or a late batch (kept as the loader loaded it,
//! with the plugins it was ingested with), never both and never neither.
//! Step 5 relies on the loader inserting a batch's rows of one day in one
//! INSERT, which ClickHouse applies as one part: a late batch's part is
//! wholly before or wholly after the swap of `events`.
//!
//! The swap is five `REPLACE PARTITION`s, not one instant: the tee is what
//! keeps a load landing between two of them in every later table (without
//! it the load would stay in `events` and vanish from the rollups swapped
//! after it). A load that landed before the tee and was dropped by the
//! `events` swap is a late batch of step 5.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hourglass_archive::{Archive, BatchKey, HOUR_MS, Hour};
use hourglass_model::{BatchId, Event, decode_batch};
use hourglass_plugin_host::{Limits, PluginSet, load_chains};
use hourglass_processing::{IdentityKeys, Pipeline, SiteDirectory};
use hourglass_warehouse::{
    DAY_TABLES, ReprocessRun, Selection, SiteDaySummary, Warehouse, unix_seconds,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::RawConfig;
use crate::range::{Day, Range, day_id};

pub struct Args {
    pub range: Range,
    /// Sorted, no duplicates; empty: every site.
    pub sites: Vec<String>,
    pub plugins: Plugins,
    pub dry_run: bool,
    pub concurrency: usize,
    pub resume: bool,
}

/// The plugins a run applies.
pub enum Plugins {
    /// A plugin-set file (or the config's `active` set), with the config's
    /// site directory.
    Set(PluginSet),
    /// What the registry binds now, as central serves it to edges: the
    /// platform chain, then each site's own, with the registry's site
    /// directory; components and data from the archive's plugin blobs.
    Registry,
}

/// [`Plugins`] resolved: what every pipeline is built from.
enum Resolved<'a> {
    Set(&'a PluginSet),
    Registry {
        state: Box<hourglass_processing::ControlState>,
        blob_dir: PathBuf,
    },
}

/// The registry's current chains and site directory, with every blob
/// they need copied from the archive to `blob_dir` (checked against its
/// SHA-256).
async fn registry_state(
    warehouse: &Warehouse,
    archive: &Archive,
    blob_dir: &Path,
) -> Result<hourglass_processing::ControlState> {
    let rows = warehouse
        .control_rows()
        .await
        .context("reading the registry's bindings and sites")?;
    let state = rows
        .state()
        .map_err(|e| anyhow::anyhow!("the registry's sites and bindings: {e}"))?;
    std::fs::create_dir_all(blob_dir)
        .with_context(|| format!("creating {}", blob_dir.display()))?;
    for sha256 in state.plugins.blobs() {
        let bytes = archive
            .get_plugin_blob(sha256)
            .await
            .with_context(|| format!("reading plugin blob {sha256} from the archive"))?
            .ok_or_else(|| anyhow::anyhow!("plugin blob {sha256} is not in the archive"))?;
        if hourglass_processing::control::sha256_hex(&bytes) != sha256 {
            bail!("plugin blob {sha256} in the archive does not match its SHA-256");
        }
        // A temp file of its own, renamed into place: runs sharing the
        // state directory only ever see whole, checked blobs.
        let path = blob_dir.join(sha256);
        let mut tmp = tempfile::NamedTempFile::new_in(blob_dir)
            .with_context(|| format!("creating a temp file in {}", blob_dir.display()))?;
        std::io::Write::write_all(&mut tmp, &bytes)
            .map_err(anyhow::Error::from)
            .and_then(|()| tmp.persist(&path).map_err(|e| e.error.into()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(state)
}

/// A run that must not start: the operator's input or the archive says no
/// (exit code 2, nothing changed).
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

const LEDGER_CHUNK: usize = 1000;
/// Staging inserts of about this many rows.
const INSERT_ROWS: usize = 50_000;
/// Batches fetched and processed together, per pipeline.
const GROUP_PER_PIPELINE: usize = 16;

/// A day's checkpoint file.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    day: u32,
    range: String,
    sites: Vec<String>,
    plugin_set: String,
    batches: usize,
    late_batches: usize,
    before: Vec<SiteDaySummary>,
    after: Vec<SiteDaySummary>,
    swapped_at_unix_s: u64,
}

struct DayOutcome {
    before: Vec<SiteDaySummary>,
    after: Vec<SiteDaySummary>,
    batches: usize,
    events: usize,
    late_batches: usize,
    time: Timings,
}

/// Where a day's time went (seconds), printed with the day.
#[derive(Debug, Default, Clone, Copy)]
struct Timings {
    /// Copying the rows that stay into staging (and their rollups).
    copy: f64,
    /// Reading batches from the archive.
    fetch: f64,
    /// Decoding and running the pipelines (wall time of the threads).
    process: f64,
    /// Inserting the new events into staging, with their rollups (the
    /// staging views).
    insert: f64,
    /// `REPLACE PARTITION` of every table, and keeping late batches.
    swap: f64,
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "copy {:.1} s, fetch {:.1} s, process {:.1} s, insert {:.1} s, swap {:.1} s",
            self.copy, self.fetch, self.process, self.insert, self.swap
        )
    }
}

/// Seconds since `start`, and restarts it.
fn lap(start: &mut Instant) -> f64 {
    let seconds = start.elapsed().as_secs_f64();
    *start = Instant::now();
    seconds
}

/// What the summary table shows for a day.
enum DayState {
    Swapped,
    Skipped,
    DryRun,
}

pub async fn run(config: RawConfig, args: Args) -> Result<()> {
    let warehouse = Warehouse::new(&config.warehouse)?;
    let archive = Archive::local(&config.archive_dir)
        .with_context(|| format!("opening the archive {}", config.archive_dir.display()))?;
    // Days here are UTC days; partitions are days in the server's zone.
    let zone = warehouse.server_timezone().await?;
    if !matches!(
        zone.as_str(),
        "UTC" | "Etc/UTC" | "Etc/UCT" | "UCT" | "Universal" | "Zulu"
    ) {
        return Err(Refused(format!(
            "the ClickHouse server's time zone is {zone}: its day partitions are not UTC days, \
             which reprocess swaps; run the server in UTC (<timezone>UTC</timezone>)"
        ))
        .into());
    }
    let resolved = match &args.plugins {
        Plugins::Set(set) => Resolved::Set(set),
        Plugins::Registry => {
            let blob_dir = config.state_dir.join("plugin-blobs");
            let state = registry_state(&warehouse, &archive, &blob_dir).await?;
            // Its hits would all be refused as from an unknown site, and
            // its rows of the range replaced by none.
            if let Some(gone) = args
                .sites
                .iter()
                .find(|s| state.sites.by_site_id(s).is_none())
            {
                return Err(Refused(format!(
                    "--site {gone}: not a live site in the registry, so its hits would all be \
                     refused and its rows of the range removed"
                ))
                .into());
            }
            Resolved::Registry {
                state: Box::new(state),
                blob_dir,
            }
        }
    };
    let mut pipelines = (0..args.concurrency.max(1))
        .map(|_| pipeline(&config, &resolved))
        .collect::<Result<Vec<_>>>()?;
    let plugin_set = pipelines[0].plugins.plugin_set().to_owned();
    let days = args.range.days();
    let range_text = format!(
        "{}..{}",
        hour_text(args.range.from_s),
        hour_text(args.range.to_s)
    );
    let state = config.state_dir.join(job_name(
        warehouse.database(),
        &range_text,
        &args.sites.join(","),
        &plugin_set,
    ));
    if args.resume && !state.join("job.json").exists() {
        println!(
            "--resume: no earlier run of this job ({range_text}, {}, plugin set {plugin_set}) \
             left state in {}; starting it",
            sites_text(&args.sites),
            state.display()
        );
    }
    // One run per database at a time: runs share the staging databases.
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating {}", config.state_dir.display()))?;
    let lock_path = config
        .state_dir
        .join(format!("{}.lock", warehouse.database()));
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    if let Err(e) = lock.try_lock() {
        return Err(Refused(format!(
            "another reprocess is running on database {} ({}: {e}); wait for it to end",
            warehouse.database(),
            lock_path.display()
        ))
        .into());
    }
    let lateness_ms = i64::from(config.max_lateness_hours) * HOUR_MS;
    let window = (
        Hour::from_unix_ms(args.range.from_s * 1000 - HOUR_MS)?,
        Hour::from_unix_ms(args.range.to_s * 1000 + lateness_ms)?,
    );
    if archive.list_hours(window.0, window.1).await?.is_empty() {
        return Err(Refused(format!(
            "the archive {} holds no batch received in {}..{} (the range and {} h of \
             lateness): nothing to reprocess",
            config.archive_dir.display(),
            hour_text(args.range.from_s),
            hour_text(args.range.to_s + lateness_ms / 1000),
            config.max_lateness_hours
        ))
        .into());
    }
    println!(
        "reprocess {range_text} ({}) with plugin set {plugin_set}: {} day(s), {} pipeline(s){}",
        sites_text(&args.sites),
        days.len(),
        pipelines.len(),
        if args.dry_run { ", dry run" } else { "" }
    );
    if !args.dry_run {
        // Marks the job as started (what `--resume` looks for).
        std::fs::create_dir_all(&state)
            .with_context(|| format!("creating the job directory {}", state.display()))?;
        let job = state.join("job.json");
        if !job.exists() {
            let text = serde_json::json!({
                "range": range_text,
                "sites": args.sites,
                "plugin_set": plugin_set,
                "started_at_unix_s": unix_now(),
            });
            std::fs::write(&job, text.to_string())
                .with_context(|| format!("writing {}", job.display()))?;
        }
    }
    let mut record = ReprocessRun {
        run_id: format!("{}-{}", unix_now(), std::process::id()),
        started_at: unix_now() as u32,
        operator: operator(),
        host: host(),
        range_from: args.range.from_s as u32,
        range_to: args.range.to_s as u32,
        sites: args.sites.clone(),
        plugin_set: plugin_set.clone(),
        dry_run: u8::from(args.dry_run),
        status: "running".into(),
        days: days.len() as u32,
        version: 1,
        ..ReprocessRun::default()
    };
    warehouse.record_reprocess_run(&record).await?;
    let ctx = Job {
        config: &config,
        args: &args,
        warehouse: &warehouse,
        archive: &archive,
    };
    let mut table = Vec::new();
    let result = run_days(
        &ctx,
        &mut pipelines,
        &days,
        &state,
        &range_text,
        &plugin_set,
        &mut table,
    )
    .await;
    for (_, state, before, after) in &table {
        if !matches!(state, DayState::Skipped) {
            record.rows_before += before.iter().map(|s| s.events).sum::<u64>();
            record.rows_after += after.iter().map(|s| s.events).sum::<u64>();
        }
    }
    print_summary(&table);
    record.finished_at = unix_now() as u32;
    record.version = 2;
    record.status = match &result {
        Ok(batches) => {
            record.batches = *batches as u64;
            "done".into()
        }
        Err(e) => {
            record.error = format!("{e:#}");
            "failed".into()
        }
    };
    if let Err(e) = warehouse.record_reprocess_run(&record).await {
        eprintln!("reprocess: could not record the run's end in reprocess_runs: {e}");
    }
    result.map(drop)
}

/// What every day of a run shares.
struct Job<'a> {
    config: &'a RawConfig,
    args: &'a Args,
    warehouse: &'a Warehouse,
    archive: &'a Archive,
}

type TableRow = (u32, DayState, Vec<SiteDaySummary>, Vec<SiteDaySummary>);

/// Every day in order; returns the batches reprocessed.
async fn run_days(
    ctx: &Job<'_>,
    pipelines: &mut [Pipeline],
    days: &[Day],
    state: &Path,
    range_text: &str,
    plugin_set: &str,
    table: &mut Vec<TableRow>,
) -> Result<usize> {
    let mut batches = 0;
    for (n, day) in days.iter().enumerate() {
        let progress = format!("[{}/{}] day {}", n + 1, days.len(), day.id);
        let checkpoint = state.join(format!("{}.json", day.id));
        if !ctx.args.dry_run
            && let Some(done) = read_checkpoint(&checkpoint)?
        {
            println!(
                "{progress}: already swapped (checkpoint {}), skipped",
                checkpoint.display()
            );
            table.push((day.id, DayState::Skipped, done.before, done.after));
            continue;
        }
        let started = Instant::now();
        let swapping = state.join(format!("{}.swapping", day.id));
        let outcome = reprocess_day(ctx, pipelines, *day, &progress, &swapping)
            .await
            .with_context(|| format!("day {}", day.id))?;
        batches += outcome.batches;
        let total = |s: &[SiteDaySummary]| s.iter().map(|s| s.events).sum::<u64>();
        let line = format!(
            "{progress}: events {} -> {} ({} batches, {} events processed, {} late batch(es) kept, {:.1} s: {})",
            total(&outcome.before),
            total(&outcome.after),
            outcome.batches,
            outcome.events,
            outcome.late_batches,
            started.elapsed().as_secs_f64(),
            outcome.time
        );
        if ctx.args.dry_run {
            println!("{line}, not swapped (dry run)");
            table.push((day.id, DayState::DryRun, outcome.before, outcome.after));
            continue;
        }
        write_checkpoint(
            &checkpoint,
            &Checkpoint {
                day: day.id,
                range: range_text.to_owned(),
                sites: ctx.args.sites.clone(),
                plugin_set: plugin_set.to_owned(),
                batches: outcome.batches,
                late_batches: outcome.late_batches,
                before: outcome.before.clone(),
                after: outcome.after.clone(),
                swapped_at_unix_s: unix_now(),
            },
        )?;
        // The checkpoint supersedes the mark of a swap in progress.
        let _ = std::fs::remove_file(&swapping);
        println!("{line}, swapped");
        table.push((day.id, DayState::Swapped, outcome.before, outcome.after));
    }
    Ok(batches)
}

/// `swapping` marks a day whose swap has begun and whose late batches are
/// not yet all kept: a run that finds it left by a killed run checks every
/// batch loaded for the day in step 5, not only those loaded meanwhile
/// (the killed swap may have dropped batches loaded before this run).
async fn reprocess_day(
    ctx: &Job<'_>,
    pipelines: &mut [Pipeline],
    day: Day,
    progress: &str,
    swapping: &Path,
) -> Result<DayOutcome> {
    let (config, args, warehouse, archive) = (ctx.config, ctx.args, ctx.warehouse, ctx.archive);
    let killed_mid_swap = swapping.exists();
    let (day_from, day_to) = (day.start_s as u32, day.end_s as u32);
    // 1. No load in flight for the day, then the loaded batches.
    let deadline = Instant::now() + Duration::from_secs(config.wait_for_loads_secs);
    let before_ledger = loop {
        let ledger = warehouse.loads_overlapping(day_from, day_to).await?;
        let loading: Vec<&str> = ledger
            .iter()
            .filter(|l| l.status == "loading")
            .map(|l| l.batch_id.as_str())
            .collect();
        if loading.is_empty() {
            break ledger;
        }
        if Instant::now() > deadline {
            bail!(
                "{} batch(es) overlapping the day are still `loading` (e.g. {}) after {} s: is the loader stuck? Rerun once it has recovered",
                loading.len(),
                loading[0],
                config.wait_for_loads_secs
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // 2. The day's part of the range, its archived batches, those loaded.
    let selection = Selection {
        from_s: args.range.from_s.max(day.start_s) as u32,
        to_s: args.range.to_s.min(day.end_s) as u32,
        site_ids: args.sites.clone(),
    };
    let lateness_ms = i64::from(config.max_lateness_hours) * HOUR_MS;
    // A batch is filed under the hour of its first hit, so its later hits
    // (event times) may fall in the next hour: start one hour early.
    let window = (
        Hour::from_unix_ms(i64::from(selection.from_s) * 1000 - HOUR_MS)?,
        Hour::from_unix_ms(i64::from(selection.to_s) * 1000 + lateness_ms)?,
    );
    let keys = archive.list_hours(window.0, window.1).await?;
    let mut used_keys = Vec::new();
    for chunk in keys.chunks(LEDGER_CHUNK) {
        let ids: Vec<String> = chunk.iter().map(|k| k.batch_id.to_string()).collect();
        let statuses: HashMap<String, String> = warehouse
            .load_statuses(&ids)
            .await?
            .into_iter()
            .map(|s| (s.batch_id, s.status))
            .collect();
        used_keys.extend(
            chunk
                .iter()
                .filter(|k| {
                    statuses.get(&k.batch_id.to_string()).map(String::as_str) == Some("loaded")
                })
                .cloned(),
        );
    }
    let used: HashSet<String> = used_keys.iter().map(|k| k.batch_id.to_string()).collect();
    // A loaded batch with events in the selection must be in the archive
    // window; if not (retention swept it?), its rows would be lost.
    if let Some(missing) = before_ledger.iter().find(|l| {
        l.status == "loaded"
            && l.min_ts < selection.to_s
            && l.max_ts >= selection.from_s
            && !used.contains(&l.batch_id)
    }) {
        bail!(
            "batch {} is loaded with events in the range but not in the archive's receive hours {}..{}; not swapping",
            missing.batch_id,
            hour_text(i64::from(selection.from_s)),
            hour_text(i64::from(selection.to_s) + lateness_ms / 1000)
        );
    }

    // 3. Staging: the rows that stay, then the used batches reprocessed.
    let mut time = Timings::default();
    let mut clock = Instant::now();
    let staging = warehouse.create_day_staging(day.id).await?;
    warehouse
        .copy_day_outside(&staging, day.id, &selection)
        .await?;
    time.copy = lap(&mut clock);
    let events = process_into(
        &staging,
        archive,
        pipelines,
        &used_keys,
        |e: &Event| {
            unix_seconds(e.ts_ms).is_some_and(|s| {
                day_id(i64::from(s)) == day.id && selection.contains(s, &e.site_id)
            })
        },
        progress,
        &mut time,
    )
    .await?;
    let before = warehouse.day_summary_by_site(day.id).await?;
    let after = staging.day_summary_by_site(day.id).await?;
    if args.dry_run {
        staging.drop_database().await?;
        return Ok(DayOutcome {
            before,
            after,
            batches: used_keys.len(),
            events,
            late_batches: 0,
            time,
        });
    }

    // 4. Swap (loads landing meanwhile reach staging too), 5. keep the
    // batches the loader loaded before that.
    test_barrier(&format!("{}", day.id)).await?;
    clock = Instant::now();
    if let Some(dir) = swapping.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(swapping, b"")
        .with_context(|| format!("marking the swap in {}", swapping.display()))?;
    warehouse.tee_day_into(&staging, day.id).await?;
    for table in DAY_TABLES {
        warehouse
            .replace_table_day_from(&staging, table, day.id)
            .await?;
        if table == "events" {
            test_barrier(&format!("mid-{}", day.id)).await?;
        }
    }
    let loaded_before: HashSet<String> = if killed_mid_swap {
        HashSet::new()
    } else {
        before_ledger
            .iter()
            .filter(|l| l.status == "loaded")
            .map(|l| l.batch_id.clone())
            .collect()
    };
    let late_batches = keep_late_batches(ctx, day, &selection, &used, &loaded_before).await?;
    time.swap = lap(&mut clock);
    staging.drop_database().await?;
    Ok(DayOutcome {
        before,
        after,
        batches: used_keys.len(),
        events,
        late_batches,
        time,
    })
}

/// Streams `keys` through the pipelines (one thread each) and inserts the
/// events `keep` accepts into `target`, about [`INSERT_ROWS`] at a time.
/// Returns how many events were inserted.
async fn process_into(
    target: &Warehouse,
    archive: &Archive,
    pipelines: &mut [Pipeline],
    keys: &[BatchKey],
    keep: impl Fn(&Event) -> bool + Sync,
    progress: &str,
    time: &mut Timings,
) -> Result<usize> {
    let bar = progress_bar(keys.len() as u64, progress);
    let started = Instant::now();
    let plugin_set = pipelines[0].plugins.plugin_set().to_owned();
    let mut pending: Vec<(BatchId, String, Vec<Event>)> = Vec::new();
    let (mut pending_rows, mut total) = (0, 0);
    let mut last_line = Instant::now();
    for group in keys.chunks(GROUP_PER_PIPELINE * pipelines.len()) {
        let mut clock = Instant::now();
        let mut blobs = Vec::with_capacity(group.len());
        for key in group {
            blobs.push((key, archive.get(key).await?));
        }
        time.fetch += lap(&mut clock);
        let processed = tokio::task::block_in_place(|| process_group(pipelines, &blobs, &keep))?;
        time.process += lap(&mut clock);
        for (id, events) in processed {
            if events.is_empty() {
                continue;
            }
            pending_rows += events.len();
            total += events.len();
            pending.push((id, plugin_set.clone(), events));
        }
        if pending_rows >= INSERT_ROWS {
            target.insert_event_batches(&pending).await?;
            pending.clear();
            pending_rows = 0;
            time.insert += lap(&mut clock);
        }
        bar.inc(group.len() as u64);
        let rate = total as f64 / started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!("{rate:.0} events/s"));
        if bar.is_hidden() && last_line.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "{progress}: {}/{} batches, {total} events, {rate:.0} events/s",
                bar.position(),
                keys.len()
            );
            last_line = Instant::now();
        }
    }
    let mut clock = Instant::now();
    target.insert_event_batches(&pending).await?;
    time.insert += lap(&mut clock);
    bar.finish_and_clear();
    Ok(total)
}

/// Decodes and processes `blobs` on one thread per pipeline.
fn process_group(
    pipelines: &mut [Pipeline],
    blobs: &[(&BatchKey, Bytes)],
    keep: &(impl Fn(&Event) -> bool + Sync),
) -> Result<Vec<(BatchId, Vec<Event>)>> {
    let per_thread = blobs.len().div_ceil(pipelines.len()).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = pipelines
            .iter_mut()
            .zip(blobs.chunks(per_thread))
            .map(|(pipeline, chunk)| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(key, bytes)| {
                            let batch = decode_batch(bytes)
                                .with_context(|| format!("decoding {}", key.path()))?;
                            let events = pipeline
                                .process_batch(&batch.raw_hits)
                                .events
                                .into_iter()
                                .filter(|e| keep(e))
                                .collect();
                            Ok((key.batch_id.clone(), events))
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(blobs.len());
        for worker in workers {
            out.extend(
                worker
                    .join()
                    .map_err(|_| anyhow::anyhow!("a processing thread panicked"))??,
            );
        }
        Ok(out)
    })
}

/// Step 5: every batch the loader loaded into the day while it was
/// rebuilt keeps its rows as the loader inserted them. Returns how many
/// late batches there were.
async fn keep_late_batches(
    ctx: &Job<'_>,
    day: Day,
    selection: &Selection,
    used: &HashSet<String>,
    loaded_before: &HashSet<String>,
) -> Result<usize> {
    let (config, warehouse, archive) = (ctx.config, ctx.warehouse, ctx.archive);
    let deadline = Instant::now() + Duration::from_secs(config.wait_for_loads_secs);
    let late: Vec<String> = loop {
        let late: Vec<_> = warehouse
            .loads_overlapping(day.start_s as u32, day.end_s as u32)
            .await?
            .into_iter()
            .filter(|l| {
                (l.status == "loaded" || l.status == "loading")
                    && !used.contains(&l.batch_id)
                    && !loaded_before.contains(&l.batch_id)
            })
            .collect();
        match late.iter().find(|l| l.status == "loading") {
            None => break late.into_iter().map(|l| l.batch_id).collect(),
            Some(l) if Instant::now() > deadline => bail!(
                "batch {} is still `loading` {} s after the swap; the day is not checkpointed: rerun once the loader has recovered",
                l.batch_id,
                config.wait_for_loads_secs
            ),
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    if late.is_empty() {
        return Ok(0);
    }
    let live: HashMap<String, (u64, u64)> = warehouse
        .batch_rows_in_day(day.id, selection, &late)
        .await?
        .into_iter()
        .map(|r| (r.batch_id, (r.inside, r.outside)))
        .collect();
    // The late batches' archive keys (they were archived before loaded).
    let late_set: HashSet<&String> = late.iter().collect();
    let lateness_ms = i64::from(config.max_lateness_hours) * HOUR_MS;
    let keys: BTreeMap<String, BatchKey> = archive
        .list_hours(
            Hour::from_unix_ms(day.start_s * 1000 - lateness_ms)?,
            Hour::from_unix_ms(unix_now() as i64 * 1000 + HOUR_MS)?,
        )
        .await?
        .into_iter()
        .map(|k| (k.batch_id.to_string(), k))
        .filter(|(id, _)| late_set.contains(id))
        .collect();
    let mut kept = Vec::new();
    for id in &late {
        let key = keys
            .get(id)
            .with_context(|| format!("late batch {id} is in the ledger but not in the archive"))?;
        let batch = decode_batch(&archive.get(key).await?)
            .with_context(|| format!("decoding {}", key.path()))?;
        let (inside_live, outside_live) = live.get(id).copied().unwrap_or((0, 0));
        let events: Vec<Event> = batch
            .events
            .into_iter()
            .filter(|e| {
                unix_seconds(e.ts_ms).is_some_and(|s| {
                    day_id(i64::from(s)) == day.id
                        && if selection.contains(s, &e.site_id) {
                            inside_live == 0
                        } else {
                            outside_live == 0
                        }
                })
            })
            .collect();
        if !events.is_empty() {
            let plugin_set = batch.header.map(|h| h.plugin_set).unwrap_or_default();
            kept.push((key.batch_id.clone(), plugin_set, events));
        }
    }
    warehouse.insert_event_batches(&kept).await?;
    Ok(late.len())
}

fn progress_bar(len: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} batches, {msg}, ETA {eta}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_owned());
    bar
}

/// The per-day, per-site before/after table.
fn print_summary(table: &[TableRow]) {
    if table.is_empty() {
        return;
    }
    println!(
        "\n{:<10} {:<24} {:>21} {:>21} {:>21}  state",
        "day", "site", "events", "pageviews", "visitors"
    );
    let pair = |a: u64, b: u64| format!("{a} -> {b}");
    for (day, state, before, after) in table {
        let mut sites: BTreeMap<&str, (SiteDaySummary, SiteDaySummary)> = BTreeMap::new();
        for s in before {
            sites.entry(&s.site_id).or_default().0 = s.clone();
        }
        for s in after {
            sites.entry(&s.site_id).or_default().1 = s.clone();
        }
        let state = match state {
            DayState::Swapped => "swapped",
            DayState::Skipped => "checkpointed earlier",
            DayState::DryRun => "dry run",
        };
        if sites.is_empty() {
            println!(
                "{day:<10} {:<24} {:>21} {:>21} {:>21}  {state}",
                "(none)", "0 -> 0", "0 -> 0", "0 -> 0"
            );
        }
        for (site, (b, a)) in sites {
            println!(
                "{day:<10} {site:<24} {:>21} {:>21} {:>21}  {state}",
                pair(b.events, a.events),
                pair(b.pageviews, a.pageviews),
                pair(b.visitors, a.visitors)
            );
        }
    }
}

fn sites_text(sites: &[String]) -> String {
    if sites.is_empty() {
        "all sites".into()
    } else {
        format!("sites {}", sites.join(", "))
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn operator() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Test hook: when `HOURGLASS_REPROCESS_BARRIER_DIR` is set, creates
/// `ready-<point>` there and waits for `go-<point>`, so a test can load a
/// batch into the day at exactly that point: `<day>` just before the swap
/// (the race step 5 exists for), `mid-<day>` right after `events` is
/// swapped (the race the tee exists for). Unset in production: nothing
/// happens.
async fn test_barrier(point: &str) -> Result<()> {
    let Some(dir) = std::env::var_os("HOURGLASS_REPROCESS_BARRIER_DIR") else {
        return Ok(());
    };
    let dir = PathBuf::from(dir);
    std::fs::write(dir.join(format!("ready-{point}")), b"")?;
    let go = dir.join(format!("go-{point}"));
    while !go.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn pipeline(config: &RawConfig, plugins: &Resolved) -> Result<Pipeline> {
    let secret = read(&config.master_secret_file, "master secret")?;
    let keys = IdentityKeys::from_master_secret(&secret)
        .with_context(|| format!("master secret {}", config.master_secret_file.display()))?;
    let (sites, chain) = match plugins {
        Resolved::Set(set) => {
            let sites: SiteDirectory =
                serde_json::from_slice(&read(&config.sites_file, "site directory")?)
                    .with_context(|| format!("site directory {}", config.sites_file.display()))?;
            let chain = set
                .load(Limits::default())
                .context("loading the plugin chain")?;
            (sites, chain)
        }
        Resolved::Registry { state, blob_dir } => {
            let chain =
                load_chains(&state.plugins, blob_dir, Limits::default()).with_context(|| {
                    format!("loading the registry's chains {}", state.plugins.label)
                })?;
            (state.sites.clone(), chain)
        }
    };
    Ok(Pipeline::new(Arc::new(sites), keys, chain))
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// `YYYY-MM-DDTHH` of an hour boundary.
fn hour_text(seconds: i64) -> String {
    let id = day_id(seconds);
    format!(
        "{:04}-{:02}-{:02}T{:02}",
        id / 10_000,
        id / 100 % 100,
        id % 100,
        seconds.rem_euclid(86_400) / 3_600
    )
}

/// The checkpoint directory of one job: same database, range, site and
/// plugin set resume each other; anything else is another job.
fn job_name(database: &str, range: &str, site: &str, plugin_set: &str) -> String {
    let raw = format!("{database}_{range}_{site}_{plugin_set}");
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The checkpoint at `path`, if the day was swapped by an earlier run.
fn read_checkpoint(path: &Path) -> Result<Option<Checkpoint>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "checkpoint {} is unreadable; delete it to redo that day",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading checkpoint {}", path.display())),
    }
}

fn write_checkpoint(path: &Path, checkpoint: &Checkpoint) -> Result<()> {
    let dir = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    let json = serde_json::to_vec_pretty(checkpoint)?;
    std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_and_hours_print_back() {
        assert_eq!(
            job_name("hg", "2026-11-01T00..2026-11-03T00", "", "v2"),
            "hg_2026-11-01T00__2026-11-03T00__v2"
        );
        assert!(!job_name("hg", "r", "../x", "a/b").contains('/'));
        let r = Range::parse("2026-11-01T05..2026-11-03T00").unwrap();
        assert_eq!(hour_text(r.from_s), "2026-11-01T05");
        assert_eq!(hour_text(r.to_s), "2026-11-03T00");
    }
}
