//! central-ingest's configuration: the raw TOML shape and its validation.

use std::net::SocketAddr;
use std::path::PathBuf;

use hourglass_svc::config::{Problem, Validate};
use hourglass_svc::logging::LogFormat;
use hourglass_warehouse::WarehouseConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub warehouse: WarehouseConfig,
    /// `/metrics` and `/healthz`.
    pub ops_listen: String,
    /// Local directory of the batch archive.
    pub archive_dir: PathBuf,
    pub log_format: LogFormat,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            warehouse: WarehouseConfig::default(),
            ops_listen: "127.0.0.1:9464".into(),
            archive_dir: PathBuf::from("data/archive"),
            log_format: LogFormat::Human,
        }
    }
}

/// A configuration that has been checked.
#[allow(dead_code)] // read by `serve`, which is not built yet
pub struct Config {
    pub warehouse: WarehouseConfig,
    pub ops_listen: SocketAddr,
    pub archive_dir: PathBuf,
    pub log_format: LogFormat,
}

impl Validate for RawConfig {
    type Valid = Config;

    fn validate(&self) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        if let Err(e) = self.warehouse.validate() {
            problems.push(Problem::new("warehouse", e.to_string()));
        }
        let ops_listen = hourglass_svc::parse_addr("ops_listen", &self.ops_listen, &mut problems);
        if self.archive_dir.as_os_str().is_empty() {
            problems.push(Problem::new("archive_dir", "must not be empty"));
        }
        match ops_listen {
            Some(ops_listen) if problems.is_empty() => Ok(Config {
                warehouse: self.warehouse.clone(),
                ops_listen,
                archive_dir: self.archive_dir.clone(),
                log_format: self.log_format,
            }),
            _ => Err(problems),
        }
    }
}
