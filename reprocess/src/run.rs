//! One reprocess run, day partition by day partition.
//!
//! For each UTC day the range touches (skipped when its checkpoint exists):
//! 1. wait until no batch overlapping the day is `loading` in the ledger;
//!    note the batches `loaded` for it (`L_pre`);
//! 2. list the archive's receive hours `[start, end + max lateness)` of
//!    the day's part of the range; keep the batches the ledger says are
//!    `loaded` (the others are the loader's: it loads them after the swap,
//!    on top of it, through the views); run their raw hits through
//!    `Pipeline::process_batch` with the chosen plugins and keep the events
//!    of the range (and site);
//! 3. build staging (`<db>_rp_<day>`): copy the live rows of the day the
//!    selection does not cover (other sites, other hours), insert the new
//!    events, rebuild the rollups from staging `events` with the views'
//!    SELECTs;
//! 4. `REPLACE PARTITION` the day of `events` and of every rollup from
//!    staging, table by table (each swap atomic for readers; between
//!    tables a reader may briefly see new `events` with an old rollup);
//! 5. read the ledger again: if a batch overlapping the day is now
//!    `loading`/`loaded` that was not in `L_pre`, the loader wrote into the
//!    live day while staging was built, and the swap may have dropped its
//!    rows: redo the day (it is then in `L_pre`). Otherwise write the
//!    day's checkpoint and drop staging.
//!
//! Concurrency rule, in short: a reprocess swaps in exactly the batches
//! loaded before it looked, and proves after each swap that no load
//! happened meanwhile, else redoes the day. A batch is thus either in the
//! swapped partition (processed with the new plugins) or loaded on top of
//! it afterwards by the loader (with the plugins it was ingested with),
//! never both and never neither.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hourglass_archive::{Archive, BatchKey, HOUR_MS, Hour};
use hourglass_model::{BatchId, Event, decode_batch};
use hourglass_plugin_host::{Limits, PluginSet};
use hourglass_processing::{IdentityKeys, Pipeline, SiteDirectory};
use hourglass_warehouse::{DaySummary, Selection, Warehouse, unix_seconds};
use serde::{Deserialize, Serialize};

use crate::RawConfig;
use crate::range::{Day, Range, day_id};

pub struct Args {
    pub range: Range,
    pub site: String,
    pub plugins: PluginSet,
    pub dry_run: bool,
}

/// Attempts per day before giving up (each redo means the loader loaded
/// into the day while it was being swapped).
const MAX_ATTEMPTS: u32 = 5;
const LEDGER_CHUNK: usize = 1000;

/// A day's checkpoint file.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    day: u32,
    range: String,
    site: String,
    plugin_set: String,
    batches: usize,
    before: DaySummary,
    after: DaySummary,
    swapped_at_unix_s: u64,
}

pub async fn run(config: RawConfig, args: Args) -> Result<()> {
    let warehouse = Warehouse::new(&config.warehouse)?;
    let archive = Archive::local(&config.archive_dir)
        .with_context(|| format!("opening the archive {}", config.archive_dir.display()))?;
    let mut pipeline = pipeline(&config, &args.plugins)?;
    let plugin_set = pipeline.plugins.plugin_set().to_owned();
    let days = args.range.days();
    let range_text = format!(
        "{}..{}",
        hour_text(args.range.from_s),
        hour_text(args.range.to_s)
    );
    let state = config.state_dir.join(job_name(
        warehouse.database(),
        &range_text,
        &args.site,
        &plugin_set,
    ));
    println!(
        "reprocess {range_text}{} with plugin set {plugin_set}: {} day(s){}",
        if args.site.is_empty() {
            String::new()
        } else {
            format!(" (site {})", args.site)
        },
        days.len(),
        if args.dry_run { ", dry run" } else { "" }
    );
    let mut cache = Processed::default();
    for (n, day) in days.iter().enumerate() {
        let progress = format!("[{}/{}] day {}", n + 1, days.len(), day.id);
        let checkpoint = state.join(format!("{}.json", day.id));
        if !args.dry_run && checkpoint.exists() {
            println!(
                "{progress}: already swapped (checkpoint {}), skipped",
                checkpoint.display()
            );
            continue;
        }
        let started = Instant::now();
        let mut done = false;
        for attempt in 1..=MAX_ATTEMPTS {
            let outcome = reprocess_day(
                &config,
                &args,
                &warehouse,
                &archive,
                &mut pipeline,
                &mut cache,
                *day,
                attempt,
            )
            .await
            .with_context(|| format!("day {}", day.id))?;
            let line = format!(
                "{progress}: events {} -> {}, pageviews {} -> {}, visitors {} -> {} ({} batches, {:.1} s)",
                outcome.before.events,
                outcome.after.events,
                outcome.before.pageviews,
                outcome.after.pageviews,
                outcome.before.visitors,
                outcome.after.visitors,
                outcome.batches,
                started.elapsed().as_secs_f64()
            );
            match outcome.swapped {
                Swapped::DryRun => {
                    println!("{line}, not swapped (dry run)");
                    done = true;
                }
                Swapped::Clean => {
                    write_checkpoint(
                        &checkpoint,
                        &Checkpoint {
                            day: day.id,
                            range: range_text.clone(),
                            site: args.site.clone(),
                            plugin_set: plugin_set.clone(),
                            batches: outcome.batches,
                            before: outcome.before,
                            after: outcome.after,
                            swapped_at_unix_s: std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_secs()),
                        },
                    )?;
                    println!("{line}, swapped");
                    done = true;
                }
                Swapped::Raced(ids) => {
                    println!(
                        "{progress}: {} batch(es) were loaded into the day during attempt {attempt} (e.g. {}); redoing the day",
                        ids.len(),
                        ids.first().map_or("", String::as_str)
                    );
                }
            }
            if done {
                break;
            }
        }
        if !done {
            bail!(
                "day {}: the loader kept loading into it during {MAX_ATTEMPTS} attempts; rerun later",
                day.id
            );
        }
    }
    Ok(())
}

enum Swapped {
    DryRun,
    Clean,
    /// Batches loaded while the day was rebuilt: the day must be redone.
    Raced(Vec<String>),
}

struct DayOutcome {
    before: DaySummary,
    after: DaySummary,
    batches: usize,
    swapped: Swapped,
}

/// Selected events of every archived batch processed so far, by batch id,
/// so a redo processes only new batches.
#[derive(Default)]
struct Processed {
    events: HashMap<BatchKey, Vec<Event>>,
}

#[allow(clippy::too_many_arguments)]
async fn reprocess_day(
    config: &RawConfig,
    args: &Args,
    warehouse: &Warehouse,
    archive: &Archive,
    pipeline: &mut Pipeline,
    cache: &mut Processed,
    day: Day,
    attempt: u32,
) -> Result<DayOutcome> {
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
    let l_pre: HashSet<String> = before_ledger
        .iter()
        .filter(|l| l.status == "loaded")
        .map(|l| l.batch_id.clone())
        .collect();

    // 2. The day's part of the range, its archived batches, those loaded.
    let sel_from = args.range.from_s.max(day.start_s);
    let sel_to = args.range.to_s.min(day.end_s);
    let lateness_ms = i64::from(config.max_lateness_hours) * HOUR_MS;
    let first = Hour::from_unix_ms(sel_from * 1000)?;
    let last = Hour::from_unix_ms(sel_to * 1000 + lateness_ms)?;
    let keys = archive.list_hours(first, last).await?;
    let mut loaded_keys = Vec::new();
    for chunk in keys.chunks(LEDGER_CHUNK) {
        let ids: Vec<String> = chunk.iter().map(|k| k.batch_id.to_string()).collect();
        let statuses: HashMap<String, String> = warehouse
            .load_statuses(&ids)
            .await?
            .into_iter()
            .map(|s| (s.batch_id, s.status))
            .collect();
        loaded_keys.extend(
            chunk
                .iter()
                .filter(|k| {
                    statuses.get(&k.batch_id.to_string()).map(String::as_str) == Some("loaded")
                })
                .cloned(),
        );
    }
    let used: HashSet<String> = loaded_keys.iter().map(|k| k.batch_id.to_string()).collect();
    // A loaded batch with events in the selection must be in the archive
    // window; if not (retention swept it?), its rows would be lost.
    if let Some(missing) = before_ledger.iter().find(|l| {
        l.status == "loaded"
            && i64::from(l.min_ts) < sel_to
            && i64::from(l.max_ts) >= sel_from
            && !used.contains(&l.batch_id)
    }) {
        bail!(
            "batch {} is loaded with events in the range but not in the archive's receive hours {}..{}; not swapping",
            missing.batch_id,
            hour_text(sel_from),
            hour_text(sel_to + lateness_ms / 1000)
        );
    }
    for key in &loaded_keys {
        if cache.events.contains_key(key) {
            continue;
        }
        let bytes = archive.get(key).await?;
        let batch = decode_batch(&bytes).with_context(|| format!("decoding {}", key.path()))?;
        let outcome = pipeline.process_batch(&batch.raw_hits);
        let range = args.range;
        let events = outcome
            .events
            .into_iter()
            .filter(|e| {
                unix_seconds(e.ts_ms).is_some_and(|s| range.contains_s(i64::from(s)))
                    && (args.site.is_empty() || e.site_id == args.site)
            })
            .collect();
        cache.events.insert(key.clone(), events);
    }
    let plugin_set = pipeline.plugins.plugin_set().to_owned();
    let batches: Vec<(BatchId, String, Vec<Event>)> = loaded_keys
        .iter()
        .filter_map(|key| {
            let events: Vec<Event> = cache
                .events
                .get(key)?
                .iter()
                .filter(|e| unix_seconds(e.ts_ms).map(|s| day_id(i64::from(s))) == Some(day.id))
                .cloned()
                .collect();
            (!events.is_empty()).then(|| (key.batch_id.clone(), plugin_set.clone(), events))
        })
        .collect();

    // 3. Staging.
    let staging = warehouse.create_day_staging(day.id).await?;
    let selection = Selection {
        from_s: sel_from as u32,
        to_s: sel_to as u32,
        site_id: args.site.clone(),
    };
    warehouse
        .copy_day_outside(&staging, day.id, &selection)
        .await?;
    // One insert per few thousand rows keeps requests small; the day is
    // not visible to anyone until the swap.
    let mut chunk = Vec::new();
    let mut rows = 0;
    for batch in batches {
        rows += batch.2.len();
        chunk.push(batch);
        if rows >= 50_000 {
            staging.insert_event_batches(&chunk).await?;
            chunk.clear();
            rows = 0;
        }
    }
    staging.insert_event_batches(&chunk).await?;
    staging.rebuild_rollups(day.id).await?;
    let before = warehouse.day_summary(day.id).await?;
    let after = staging.day_summary(day.id).await?;
    let n_batches = loaded_keys.len();
    if args.dry_run {
        staging.drop_database().await?;
        return Ok(DayOutcome {
            before,
            after,
            batches: n_batches,
            swapped: Swapped::DryRun,
        });
    }

    // 4. Swap, 5. check nobody loaded meanwhile.
    test_barrier(day.id, attempt).await?;
    warehouse.replace_day_from(&staging, day.id).await?;
    let raced: Vec<String> = warehouse
        .loads_overlapping(day_from, day_to)
        .await?
        .into_iter()
        .filter(|l| (l.status == "loaded" || l.status == "loading") && !l_pre.contains(&l.batch_id))
        .map(|l| l.batch_id)
        .collect();
    staging.drop_database().await?;
    Ok(DayOutcome {
        before,
        after,
        batches: n_batches,
        swapped: if raced.is_empty() {
            Swapped::Clean
        } else {
            Swapped::Raced(raced)
        },
    })
}

/// Test hook: when `HOURGLASS_REPROCESS_BARRIER_DIR` is set, creates
/// `ready-<day>-<attempt>` there just before the swap and waits for
/// `go-<day>-<attempt>`, so a test can load a batch into the day at exactly
/// that point (the race the post-swap ledger check exists for). Unset in
/// production: nothing happens.
async fn test_barrier(day: u32, attempt: u32) -> Result<()> {
    let Some(dir) = std::env::var_os("HOURGLASS_REPROCESS_BARRIER_DIR") else {
        return Ok(());
    };
    let dir = PathBuf::from(dir);
    std::fs::write(dir.join(format!("ready-{day}-{attempt}")), b"")?;
    let go = dir.join(format!("go-{day}-{attempt}"));
    while !go.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn pipeline(config: &RawConfig, plugins: &PluginSet) -> Result<Pipeline> {
    let sites: SiteDirectory = serde_json::from_slice(&read(&config.sites_file, "site directory")?)
        .with_context(|| format!("site directory {}", config.sites_file.display()))?;
    let secret = read(&config.master_secret_file, "master secret")?;
    let keys = IdentityKeys::from_master_secret(&secret)
        .with_context(|| format!("master secret {}", config.master_secret_file.display()))?;
    let chain = plugins
        .load(Limits::default())
        .context("loading the plugin chain")?;
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
