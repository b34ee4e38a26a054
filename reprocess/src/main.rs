//! `reprocess --range`: reruns the processing pipeline, with a chosen
//! plugin set, over the archived raw hits of an event-time range and swaps
//! each touched UTC day partition into the warehouse (`events` and every
//! rollup) with `REPLACE PARTITION`. See `run.rs` for how a day goes and
//! the rule that keeps batches the loader loads meanwhile.
//!
//! Exit codes: 0 done (or dry run done), 1 failed (what was swapped stays
//! swapped and checkpointed; a rerun goes on from there), 2 usage or
//! configuration error.

mod range;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hourglass_plugin_host::{PluginConfig, PluginSet};
use hourglass_svc::config::{Problem, Validate};
use hourglass_warehouse::WarehouseConfig;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "reprocess",
    version,
    about = "Rerun plugins over archived batches"
)]
struct Cli {
    /// TOML config file.
    #[arg(long, short, env = "HOURGLASS_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
    /// Event-time range of UTC hours, end exclusive, e.g.
    /// `2026-11-01T00..2026-11-03T00`.
    #[arg(long, required_unless_present = "check_config")]
    range: Option<String>,
    /// Only this site; repeat for more (other sites' rows of the touched
    /// days are kept). Default: every site.
    #[arg(long = "site", value_name = "ID")]
    sites: Vec<String>,
    /// The plugins to run: `active` (the config's `plugin_set` and
    /// `[[plugins]]`), `registry` (the chains the plugin registry binds
    /// now, as central serves them to edges: the platform chain, then each
    /// site's own, with the registry's sites) or a TOML file shaped like
    /// `active`.
    #[arg(long, value_name = "SET", default_value = "active")]
    plugins: String,
    /// Build staging and print the before/after summary without swapping.
    #[arg(long)]
    dry_run: bool,
    /// Pipelines (threads) processing batches at once. Default: the cores.
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Go on with the checkpoints an interrupted run of the same job left
    /// (a plain rerun does the same; with none, the job starts afresh).
    #[arg(long)]
    resume: bool,
    /// Do not ask: allow a range longer than `max_range_hours`.
    #[arg(long)]
    yes: bool,
}

/// Adds a plugin set's problems under `prefix`.
fn plugin_problems(set: &PluginSet, prefix: &str, problems: &mut Vec<Problem>) {
    for (key, message) in set.problems() {
        problems.push(Problem::new(format!("{prefix}{key}"), message));
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub warehouse: WarehouseConfig,
    /// Local directory of the batch archive.
    pub archive_dir: PathBuf,
    /// JSON site directory, as the edges use it.
    pub sites_file: PathBuf,
    /// The identity master secret the edges share.
    pub master_secret_file: PathBuf,
    /// Checkpoints (one JSON file per swapped day partition).
    pub state_dir: PathBuf,
    /// How far event time may lag receive time (the edge accepts 72 h).
    pub max_lateness_hours: u32,
    /// How long to wait for an in-flight load of a day before giving up.
    pub wait_for_loads_secs: u64,
    /// Longer ranges need `--yes`.
    pub max_range_hours: u32,
    /// Version label of the plugin set below.
    pub plugin_set: String,
    pub plugins: Vec<PluginConfig>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            warehouse: WarehouseConfig::default(),
            archive_dir: PathBuf::from("data/archive"),
            sites_file: PathBuf::from("sites.json"),
            master_secret_file: PathBuf::from("master.key"),
            state_dir: PathBuf::from("data/reprocess"),
            max_lateness_hours: 72,
            wait_for_loads_secs: 120,
            max_range_hours: 7 * 24,
            plugin_set: "none".into(),
            plugins: Vec::new(),
        }
    }
}

impl Validate for RawConfig {
    type Valid = ();
    fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        if let Err(e) = self.warehouse.validate() {
            problems.push(Problem::new("warehouse", e.to_string()));
        }
        for (key, path) in [
            ("archive_dir", &self.archive_dir),
            ("sites_file", &self.sites_file),
            ("master_secret_file", &self.master_secret_file),
            ("state_dir", &self.state_dir),
        ] {
            if path.as_os_str().is_empty() {
                problems.push(Problem::new(key, "must not be empty"));
            }
        }
        let set = PluginSet {
            plugin_set: self.plugin_set.clone(),
            plugins: self.plugins.clone(),
        };
        plugin_problems(&set, "", &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.check_config {
        return ExitCode::from(
            hourglass_svc::config::check::<RawConfig>(cli.config.as_deref()) as u8,
        );
    }
    let config = match hourglass_svc::config::load::<RawConfig>(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return usage(&e.to_string()),
    };
    if let Err(problems) = config.validate() {
        return usage(&hourglass_svc::config::ConfigError::Invalid(problems).to_string());
    }
    let Some(range) = cli.range.as_deref() else {
        return usage("--range is required");
    };
    let range = match range::Range::parse(range) {
        Ok(r) => r,
        Err(e) => return usage(&e),
    };
    let hours = (range.to_s - range.from_s) / 3_600;
    if hours > i64::from(config.max_range_hours) && !cli.yes && !confirmed(hours) {
        return usage(&format!(
            "--range covers {hours} hours, more than max_range_hours ({}); add --yes to go ahead",
            config.max_range_hours
        ));
    }
    let plugins = match cli.plugins.as_str() {
        "active" => run::Plugins::Set(PluginSet {
            plugin_set: config.plugin_set.clone(),
            plugins: config.plugins.clone(),
        }),
        "registry" => run::Plugins::Registry,
        file => match load_plugin_set(std::path::Path::new(file)) {
            Ok(set) => run::Plugins::Set(set),
            Err(e) => return usage(&e),
        },
    };
    let mut sites = cli.sites;
    sites.sort();
    sites.dedup();
    let concurrency = match cli.concurrency {
        Some(0) => return usage("--concurrency must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let args = run::Args {
        range,
        sites,
        plugins,
        dry_run: cli.dry_run,
        concurrency,
        resume: cli.resume,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("reprocess: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(config, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<run::Refused>().is_some() => usage(&e.to_string()),
        Err(e) => {
            eprintln!("reprocess: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Asks on a terminal whether to reprocess a long range; `false` when
/// stdin is not a terminal (scripts pass `--yes`).
fn confirmed(hours: i64) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return false;
    }
    print!("Reprocess {hours} hours? This rebuilds every day it touches. [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

fn usage(message: &str) -> ExitCode {
    eprintln!("reprocess: {message}");
    ExitCode::from(2)
}

fn load_plugin_set(file: &std::path::Path) -> Result<PluginSet, String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        format!(
            "--plugins {}: unknown plugin set: neither `active`, `registry` nor a readable plugin-set file ({e})",
            file.display()
        )
    })?;
    let set: PluginSet =
        toml::from_str(&text).map_err(|e| format!("plugin set {}: {e}", file.display()))?;
    let mut problems = Vec::new();
    plugin_problems(&set, "--plugins: ", &mut problems);
    if let Some(p) = problems.first() {
        return Err(format!("{p}"));
    }
    Ok(set)
}
