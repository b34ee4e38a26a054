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
    /// Hours of archived batches to keep; 0 keeps them forever.
    pub archive_retention_hours: u32,
    /// QUIC (UDP) address edges ship batches to.
    pub quic_listen: String,
    /// The CA directory `central-ingest certs` manages; `serve` reads
    /// `server.pem|key`, `ca.pem` and `crl.pem` from it.
    pub certs_dir: PathBuf,
    /// How often `serve` checks `crl.pem` for a new revocation list.
    pub crl_reload_secs: u32,
    pub receiver: ReceiverConfig,
    pub loader: LoaderConfig,
    pub log_format: LogFormat,
    pub api: ApiConfig,
    pub registry: RegistryConfig,
}

/// The plugin registry's size caps (uploads over the API and the CLI).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Largest plugin component accepted, in bytes.
    pub max_component_bytes: u32,
    /// Largest data file (patterns, a geo database) accepted, in bytes.
    pub max_data_bytes: u32,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            max_component_bytes: 8 << 20,
            max_data_bytes: 128 << 20,
        }
    }
}

/// The merchant API role (`POST /api/v1/query`, the dashboard).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the API in this process (off by default).
    pub enabled: bool,
    /// HTTP address of the API and the dashboard.
    pub listen: String,
    /// How long a resolved API key is cached (a revoked key works at most
    /// this much longer).
    pub key_cache_ttl_secs: u32,
    /// Requests per minute per key, for keys without their own limit.
    pub rate_limit_per_minute: u32,
    /// Seconds an answer is reused for the same query (0: no cache).
    pub result_cache_secs: u32,
    /// SHA-256 (64 hex digits) of the admin token that `/api/v1/admin/…`
    /// wants as `Authorization: Bearer <token>` (e.g. `printf %s "$TOKEN" |
    /// sha256sum`); empty: the admin API refuses every request.
    pub admin_token_sha256: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: false,
            listen: "127.0.0.1:8090".into(),
            key_cache_ttl_secs: 30,
            rate_limit_per_minute: 600,
            result_cache_secs: 10,
            admin_token_sha256: String::new(),
        }
    }
}

/// The loader role (archive → ClickHouse).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderConfig {
    /// Run the loader in this process.
    pub enabled: bool,
    /// How far back the first scan of the archive looks for batches that
    /// were archived but not loaded.
    pub lookback_hours: u32,
    /// Events per load: a load starts once this many are pending…
    /// (ClickHouse makes one part per table per insert, and runs the views
    /// once per insert: a backlog goes in fastest in large sets; each set
    /// and the one encoded ahead take ~200 bytes per event of memory.)
    pub max_rows: u32,
    /// …or once the oldest pending batch has waited this long.
    pub max_wait_ms: u32,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            enabled: true,
            lookback_hours: 72,
            max_rows: 200_000,
            max_wait_ms: 1000,
        }
    }
}

/// The receiver role (QUIC → archive) and its back-pressure.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Run the receiver in this process. Off, the process is a loader (or
    /// API) node reading an archive that receivers on other processes or
    /// nodes write: no QUIC endpoint, no certificates needed.
    pub enabled: bool,
    /// Batches being verified and archived at once; past this, edges are
    /// answered Busy.
    pub max_in_flight: u32,
    /// The wait a Busy answer asks for.
    pub busy_retry_after_ms: u32,
    /// Serve the control channel (site directory and plugin chains for
    /// edges), re-read from the metadata this often; 0 turns it off.
    pub control_refresh_ms: u32,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            enabled: true,
            max_in_flight: 64,
            busy_retry_after_ms: 1000,
            control_refresh_ms: 2000,
        }
    }
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            warehouse: WarehouseConfig::default(),
            ops_listen: "127.0.0.1:9464".into(),
            archive_dir: PathBuf::from("data/archive"),
            archive_retention_hours: 0,
            quic_listen: "127.0.0.1:4433".into(),
            certs_dir: PathBuf::from("data/certs"),
            crl_reload_secs: 10,
            receiver: ReceiverConfig::default(),
            loader: LoaderConfig::default(),
            log_format: LogFormat::Human,
            api: ApiConfig::default(),
            registry: RegistryConfig::default(),
        }
    }
}

/// A configuration that has been checked.
pub struct Config {
    pub warehouse: WarehouseConfig,
    pub ops_listen: SocketAddr,
    pub archive_dir: PathBuf,
    pub archive_retention_hours: u32,
    pub quic_listen: SocketAddr,
    pub certs_dir: PathBuf,
    pub crl_reload: std::time::Duration,
    pub receiver: ReceiverConfig,
    pub loader: LoaderConfig,
    pub log_format: LogFormat,
    pub api: ApiConfig,
    /// `api.listen`, parsed (when the API is enabled).
    pub api_listen: Option<SocketAddr>,
    pub registry: crate::registry::RegistryLimits,
}

impl Validate for RawConfig {
    type Valid = Config;

    fn validate(&self) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        if let Err(e) = self.warehouse.validate() {
            problems.push(Problem::new("warehouse", e.to_string()));
        }
        let ops_listen = hourglass_svc::parse_addr("ops_listen", &self.ops_listen, &mut problems);
        let quic_listen =
            hourglass_svc::parse_addr("quic_listen", &self.quic_listen, &mut problems);
        if self.archive_dir.as_os_str().is_empty() {
            problems.push(Problem::new("archive_dir", "must not be empty"));
        }
        if self.certs_dir.as_os_str().is_empty() {
            problems.push(Problem::new("certs_dir", "must not be empty"));
        }
        if self.receiver.max_in_flight == 0 {
            problems.push(Problem::new(
                "receiver.max_in_flight",
                "must be at least 1, or no batch is ever accepted",
            ));
        }
        if self.receiver.busy_retry_after_ms == 0 {
            problems.push(Problem::new(
                "receiver.busy_retry_after_ms",
                "must be at least 1 ms, or busy edges retry in a tight loop",
            ));
        }
        if !self.receiver.enabled && !self.loader.enabled && !self.api.enabled {
            problems.push(Problem::new(
                "receiver.enabled",
                "receiver, loader and api are all off: this process would do nothing",
            ));
        }
        if self.crl_reload_secs == 0 {
            problems.push(Problem::new("crl_reload_secs", "must be at least 1"));
        }
        if self.loader.max_rows == 0 {
            problems.push(Problem::new("loader.max_rows", "must be at least 1"));
        }
        let api_listen = if self.api.enabled {
            hourglass_svc::parse_addr("api.listen", &self.api.listen, &mut problems)
        } else {
            None
        };
        if self.api.enabled && self.api.rate_limit_per_minute == 0 {
            problems.push(Problem::new(
                "api.rate_limit_per_minute",
                "must be at least 1",
            ));
        }
        if self.registry.max_component_bytes == 0 {
            problems.push(Problem::new(
                "registry.max_component_bytes",
                "must be at least 1",
            ));
        }
        if self.registry.max_data_bytes == 0 {
            problems.push(Problem::new(
                "registry.max_data_bytes",
                "must be at least 1",
            ));
        }
        if !self.api.admin_token_sha256.is_empty()
            && crate::api::admin_token::parse_sha256_hex(&self.api.admin_token_sha256).is_none()
        {
            problems.push(Problem::new(
                "api.admin_token_sha256",
                "must be the token's SHA-256 as 64 hex digits (not the token itself)",
            ));
        }
        match (ops_listen, quic_listen) {
            (Some(ops_listen), Some(quic_listen)) if problems.is_empty() => Ok(Config {
                warehouse: self.warehouse.clone(),
                ops_listen,
                archive_dir: self.archive_dir.clone(),
                archive_retention_hours: self.archive_retention_hours,
                quic_listen,
                certs_dir: self.certs_dir.clone(),
                crl_reload: std::time::Duration::from_secs(u64::from(self.crl_reload_secs)),
                receiver: self.receiver.clone(),
                loader: self.loader.clone(),
                log_format: self.log_format,
                api: self.api.clone(),
                api_listen,
                registry: crate::registry::RegistryLimits {
                    max_component_bytes: self.registry.max_component_bytes as usize,
                    max_data_bytes: self.registry.max_data_bytes as usize,
                },
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_setting_must_be_a_sha256_not_the_token() {
        let with = |value: &str| {
            let mut raw = RawConfig::default();
            raw.api.admin_token_sha256 = value.to_owned();
            raw.validate().err().unwrap_or_default()
        };
        assert!(with("").is_empty(), "empty: the admin API is off");
        assert!(with(&"ab".repeat(32)).is_empty());
        let problems = with("my-admin-token");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["api.admin_token_sha256"]);
    }
}
