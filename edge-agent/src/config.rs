//! edge-agent's configuration: the raw TOML shape, its defaults, and its
//! validation into [`Config`], which cannot be invalid.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use hourglass_disk_buffer as buffer;
use hourglass_plugin_host::{PluginConfig, PluginSet};
use hourglass_svc::config::{Problem, Validate};
use hourglass_svc::logging::LogFormat;
use serde::{Deserialize, Serialize};

use crate::batcher::BatchLimits;

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// This edge's name: part of every batch id, must match its certificate.
    pub edge_id: String,
    /// Beacon ingress (HTTP/1.1 and HTTP/2).
    pub listen: String,
    /// `/metrics`, `/healthz` and `/readyz`.
    pub ops_listen: String,
    /// Directory of the disk buffer.
    pub buffer_dir: PathBuf,
    pub log_format: LogFormat,
    /// JSON site directory (`{"version": N, "sites": [...]}`) admitting hits.
    pub sites_file: PathBuf,
    /// File holding the identity master secret (at least 16 bytes). Every
    /// edge and `reprocess` must share it: visitor ids derive from it.
    pub master_secret_file: PathBuf,
    /// `sync`: answer 202 only once the hit's batch is fsynced.
    /// `interval`: answer at once; fsync every `sync_interval_ms`.
    pub durability: DurabilityMode,
    pub sync_interval_ms: u64,
    /// What a full buffer does: `block` (503 + Retry-After) or `drop_newest`.
    pub full_policy: FullPolicyMode,
    pub buffer_max_bytes: u64,
    pub buffer_segment_bytes: u64,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Peers whose `X-Forwarded-For` is believed for the client IP.
    pub trusted_proxies: Vec<String>,
    /// Visitors remembered for sessions (least recently seen evicted).
    pub session_table_max: usize,
    pub batch: RawBatch,
    pub central: RawCentral,
    /// An HTTPS listener beside `listen` (HTTP/1.1 and HTTP/2 by ALPN).
    pub tls: Option<RawTls>,
    pub rate_limit: RateLimit,
    /// Version label of the plugin set below, recorded in every batch.
    pub plugin_set: String,
    /// The platform plugin chain, in order.
    pub plugins: Vec<PluginConfig>,
    pub control: RawControl,
}

/// The control channel: site directory and plugin chains from central.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawControl {
    /// Take the site directory and plugin chains from central (over the
    /// `[central]` connection) instead of `sites_file` and `[[plugins]]`,
    /// which are then ignored. Off by default (standalone edges).
    pub enabled: bool,
    /// Where the last state and its plugin blobs are kept, so a restarted
    /// edge runs on them while central is unreachable.
    pub cache_dir: PathBuf,
    /// How often central is asked for a newer state.
    pub poll_interval_ms: u64,
}

impl Default for RawControl {
    fn default() -> Self {
        RawControl {
            enabled: false,
            cache_dir: PathBuf::from("data/control"),
            poll_interval_ms: 5_000,
        }
    }
}

/// The control channel, checked.
#[derive(Debug, Clone)]
pub struct Control {
    pub cache_dir: PathBuf,
    pub poll_interval: Duration,
}

/// Request rates, per second with a burst; 0 turns a limit off. The
/// per-IP limit applies to browser protocols (tracker, Plausible, pixel)
/// only: GA4 and Segment hits come from merchants' servers, many users
/// behind one address, and are limited per site instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    pub per_ip_per_sec: u32,
    pub per_ip_burst: u32,
    pub per_site_per_sec: u32,
    pub per_site_burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_ip_per_sec: 50,
            per_ip_burst: 100,
            per_site_per_sec: 0,
            per_site_burst: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityMode {
    Sync,
    Interval,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicyMode {
    Block,
    DropNewest,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawBatch {
    pub max_hits: usize,
    pub max_bytes: usize,
    pub max_age_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCentral {
    /// Central receivers (`host:port` of QUIC), tried in order with failover.
    pub endpoints: Vec<String>,
    /// Name on central's certificate.
    pub server_name: String,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `[tls]`: beacons over HTTPS, for an edge that terminates TLS itself
/// rather than behind a load balancer that does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Address of the HTTPS listener.
    pub listen: String,
    /// Certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// The certificate's private key, PEM.
    pub key_file: PathBuf,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            edge_id: "edge-1".into(),
            listen: "127.0.0.1:8080".into(),
            ops_listen: "127.0.0.1:9465".into(),
            buffer_dir: PathBuf::from("data/buffer"),
            log_format: LogFormat::Human,
            sites_file: PathBuf::from("sites.json"),
            master_secret_file: PathBuf::from("master.key"),
            durability: DurabilityMode::Sync,
            sync_interval_ms: 200,
            full_policy: FullPolicyMode::Block,
            buffer_max_bytes: 1 << 30,
            buffer_segment_bytes: 16 << 20,
            max_body_bytes: 256 << 10,
            trusted_proxies: Vec::new(),
            session_table_max: 1_000_000,
            batch: RawBatch::default(),
            central: RawCentral::default(),
            tls: None,
            rate_limit: RateLimit::default(),
            plugin_set: "none".into(),
            plugins: Vec::new(),
            control: RawControl::default(),
        }
    }
}

impl Default for RawBatch {
    fn default() -> Self {
        RawBatch {
            max_hits: 5_000,
            max_bytes: 4 << 20,
            max_age_ms: 1_000,
        }
    }
}

impl Default for RawCentral {
    fn default() -> Self {
        RawCentral {
            endpoints: vec!["127.0.0.1:7443".into()],
            server_name: "central.hourglass".into(),
            ca_file: PathBuf::from("certs/ca.pem"),
            cert_file: PathBuf::from("certs/edge.pem"),
            key_file: PathBuf::from("certs/edge.key"),
        }
    }
}

/// A configuration that has been checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub edge_id: String,
    pub listen: SocketAddr,
    pub ops_listen: SocketAddr,
    pub buffer_dir: PathBuf,
    pub buffer: buffer::Config,
    pub durability: DurabilityMode,
    pub sync_interval: Duration,
    pub log_format: LogFormat,
    pub sites_file: PathBuf,
    pub master_secret_file: PathBuf,
    pub max_body_bytes: usize,
    pub trusted_proxies: Vec<IpAddr>,
    pub session_table_max: usize,
    pub batch: BatchLimits,
    pub central: Central,
    pub tls: Option<Tls>,
    pub rate_limit: RateLimit,
    pub plugins: PluginSet,
    /// `Some` when the site directory and plugins come from central.
    pub control: Option<Control>,
}

/// The HTTPS listener, checked: the files exist when the service starts
/// (`serve` reads them and says which one is wrong).
#[derive(Debug, Clone)]
pub struct Tls {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Central {
    pub endpoints: Vec<SocketAddr>,
    pub server_name: String,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Largest batch record the buffer takes; a batch closes far below it.
const MAX_RECORD_BYTES: u32 = 8 << 20;

impl RawConfig {
    /// The top-level `plugin_set` and `[[plugins]]` as one set.
    fn plugin_set(&self) -> PluginSet {
        PluginSet {
            plugin_set: self.plugin_set.clone(),
            plugins: self.plugins.clone(),
        }
    }
}

impl Validate for RawConfig {
    type Valid = Config;

    fn validate(&self) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        if !hourglass_pki::is_valid_edge_name(&self.edge_id) {
            problems.push(Problem::new(
                "edge_id",
                "must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_' (it names files and batches)",
            ));
        }
        let listen = hourglass_svc::parse_addr("listen", &self.listen, &mut problems);
        let ops_listen = hourglass_svc::parse_addr("ops_listen", &self.ops_listen, &mut problems);
        let tls = self.tls.as_ref().and_then(|tls| {
            for (key, path) in [
                ("tls.cert_file", &tls.cert_file),
                ("tls.key_file", &tls.key_file),
            ] {
                if path.as_os_str().is_empty() {
                    problems.push(Problem::new(key, "must not be empty"));
                }
            }
            let listen = hourglass_svc::parse_addr("tls.listen", &tls.listen, &mut problems)?;
            if self
                .listen
                .parse::<SocketAddr>()
                .is_ok_and(|plain| plain == listen)
            {
                problems.push(Problem::new("tls.listen", "must differ from `listen`"));
            }
            Some(Tls {
                listen,
                cert_file: tls.cert_file.clone(),
                key_file: tls.key_file.clone(),
            })
        });
        for (key, path) in [
            ("buffer_dir", &self.buffer_dir),
            ("sites_file", &self.sites_file),
            ("master_secret_file", &self.master_secret_file),
            ("central.ca_file", &self.central.ca_file),
            ("central.cert_file", &self.central.cert_file),
            ("central.key_file", &self.central.key_file),
        ] {
            if path.as_os_str().is_empty() {
                problems.push(Problem::new(key, "must not be empty"));
            }
        }
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .filter_map(|p| match p.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    problems.push(Problem::new(
                        "trusted_proxies",
                        format!("`{p}` is not an IP address"),
                    ));
                    None
                }
            })
            .collect();
        let endpoints: Vec<SocketAddr> = self
            .central
            .endpoints
            .iter()
            .filter_map(|e| hourglass_svc::parse_addr("central.endpoints", e, &mut problems))
            .collect();
        if self.central.endpoints.is_empty() {
            problems.push(Problem::new(
                "central.endpoints",
                "list at least one central receiver",
            ));
        }
        for (key, rate, burst) in [
            (
                "rate_limit.per_ip_burst",
                self.rate_limit.per_ip_per_sec,
                self.rate_limit.per_ip_burst,
            ),
            (
                "rate_limit.per_site_burst",
                self.rate_limit.per_site_per_sec,
                self.rate_limit.per_site_burst,
            ),
        ] {
            if rate > 0 && burst < rate {
                problems.push(Problem::new(
                    key,
                    format!("must be at least the rate ({rate}) when the limit is on"),
                ));
            }
        }
        for (key, message) in self.plugin_set().problems() {
            problems.push(Problem::new(key, message));
        }
        let mut positive = |key: &str, value: u64| {
            if value == 0 {
                problems.push(Problem::new(key, "must be greater than 0"));
            }
        };
        positive("sync_interval_ms", self.sync_interval_ms);
        if self.control.enabled {
            positive("control.poll_interval_ms", self.control.poll_interval_ms);
        }
        positive("max_body_bytes", self.max_body_bytes as u64);
        positive("session_table_max", self.session_table_max as u64);
        positive("batch.max_hits", self.batch.max_hits as u64);
        positive("batch.max_bytes", self.batch.max_bytes as u64);
        positive("batch.max_age_ms", self.batch.max_age_ms);
        if self.batch.max_bytes as u64 > u64::from(MAX_RECORD_BYTES) / 2 {
            problems.push(Problem::new(
                "batch.max_bytes",
                format!("must be at most {} bytes", MAX_RECORD_BYTES / 2),
            ));
        }
        if self.control.enabled && !self.plugins.is_empty() {
            problems.push(Problem::new(
                "plugins",
                "not used with [control] enabled (central sends the plugin chains); remove them",
            ));
        }
        if self.control.enabled && self.control.cache_dir.as_os_str().is_empty() {
            problems.push(Problem::new("control.cache_dir", "must not be empty"));
        }
        let sync_interval = Duration::from_millis(self.sync_interval_ms);
        let buffer = buffer::Config {
            max_segment_bytes: self.buffer_segment_bytes,
            max_total_bytes: self.buffer_max_bytes,
            max_record_bytes: MAX_RECORD_BYTES,
            full_policy: match self.full_policy {
                FullPolicyMode::Block => buffer::FullPolicy::Block,
                FullPolicyMode::DropNewest => buffer::FullPolicy::DropNewest,
            },
            durability: match self.durability {
                DurabilityMode::Sync => buffer::Durability::Sync,
                DurabilityMode::Interval => buffer::Durability::Interval(sync_interval),
            },
        };
        if let Err(e) = buffer.validate() {
            problems.push(Problem::new(
                "buffer_max_bytes / buffer_segment_bytes",
                e.to_string(),
            ));
        }
        match (listen, ops_listen) {
            (Some(listen), Some(ops_listen)) if problems.is_empty() => Ok(Config {
                edge_id: self.edge_id.clone(),
                listen,
                ops_listen,
                buffer_dir: self.buffer_dir.clone(),
                buffer,
                durability: self.durability,
                sync_interval,
                log_format: self.log_format,
                sites_file: self.sites_file.clone(),
                master_secret_file: self.master_secret_file.clone(),
                max_body_bytes: self.max_body_bytes,
                trusted_proxies,
                session_table_max: self.session_table_max,
                batch: BatchLimits {
                    max_hits: self.batch.max_hits,
                    max_bytes: self.batch.max_bytes,
                    max_age_ms: i64::try_from(self.batch.max_age_ms).unwrap_or(i64::MAX),
                },
                rate_limit: self.rate_limit,
                tls,
                plugins: self.plugin_set(),
                control: self.control.enabled.then(|| Control {
                    cache_dir: self.control.cache_dir.clone(),
                    poll_interval: Duration::from_millis(self.control.poll_interval_ms),
                }),
                central: Central {
                    endpoints,
                    server_name: self.central.server_name.clone(),
                    ca_file: self.central.ca_file.clone(),
                    cert_file: self.central.cert_file.clone(),
                    key_file: self.central.key_file.clone(),
                },
            }),
            _ => Err(problems),
        }
    }
}
