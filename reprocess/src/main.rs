//! `reprocess --range`: will rerun the processing pipeline with a chosen
//! plugin set over archived raw batches and swap each day partition in
//! atomically. Today it validates its configuration and its arguments; the
//! run itself says it is not built yet.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
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
    /// Event-time range, e.g. `2026-11-01T00..2026-11-03T00`.
    #[arg(long, required_unless_present = "check_config")]
    range: Option<String>,
    /// Only this site.
    #[arg(long)]
    site: Option<String>,
    /// Plugin set version to run (default: each site's active set).
    #[arg(long)]
    plugins: Option<String>,
    /// Show what would change without swapping anything.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    warehouse: WarehouseConfig,
    /// Local directory of the batch archive.
    archive_dir: PathBuf,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            warehouse: WarehouseConfig::default(),
            archive_dir: PathBuf::from("data/archive"),
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
        if self.archive_dir.as_os_str().is_empty() {
            problems.push(Problem::new(
                "archive_dir",
                "must be set to the batch archive directory",
            ));
        }
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
    hourglass_svc::not_built("reprocess --range")
}
