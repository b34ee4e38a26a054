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
    /// Only this site (other sites' rows of the touched days are kept).
    #[arg(long)]
    site: Option<String>,
    /// A TOML file with `plugin_set = "…"` and `[[plugins]]` (the edge's
    /// shape) to run instead of the config's own plugin set.
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Build staging and print the before/after summary without swapping.
    #[arg(long)]
    dry_run: bool,
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
    let plugins = match &cli.plugins {
        None => PluginSet {
            plugin_set: config.plugin_set.clone(),
            plugins: config.plugins.clone(),
        },
        Some(file) => match load_plugin_set(file) {
            Ok(set) => set,
            Err(e) => return usage(&e),
        },
    };
    let args = run::Args {
        range,
        site: cli.site.unwrap_or_default(),
        plugins,
        dry_run: cli.dry_run,
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
        Err(e) => {
            eprintln!("reprocess: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("reprocess: {message}");
    ExitCode::from(2)
}

fn load_plugin_set(file: &std::path::Path) -> Result<PluginSet, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read plugin set {}: {e}", file.display()))?;
    let set: PluginSet =
        toml::from_str(&text).map_err(|e| format!("plugin set {}: {e}", file.display()))?;
    let mut problems = Vec::new();
    plugin_problems(&set, "--plugins: ", &mut problems);
    if let Some(p) = problems.first() {
        return Err(format!("{p}"));
    }
    Ok(set)
}
