//! edge-agent's configuration: the raw TOML shape and its validation.

use std::net::SocketAddr;
use std::path::PathBuf;

use hourglass_svc::config::{Problem, Validate};
use hourglass_svc::logging::LogFormat;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// This edge's name: part of every batch id, must match its certificate.
    pub edge_id: String,
    /// Beacon ingress (HTTP).
    pub listen: String,
    /// `/metrics` and `/healthz`.
    pub ops_listen: String,
    /// Directory of the disk buffer.
    pub buffer_dir: PathBuf,
    pub log_format: LogFormat,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            edge_id: "edge-1".into(),
            listen: "127.0.0.1:8080".into(),
            ops_listen: "127.0.0.1:9465".into(),
            buffer_dir: PathBuf::from("data/buffer"),
            log_format: LogFormat::Human,
        }
    }
}

/// A configuration that has been checked.
#[allow(dead_code)] // read by `serve`, which is not built yet
pub struct Config {
    pub edge_id: String,
    pub listen: SocketAddr,
    pub ops_listen: SocketAddr,
    pub buffer_dir: PathBuf,
    pub log_format: LogFormat,
}

impl Validate for RawConfig {
    type Valid = Config;

    fn validate(&self) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        let id_ok = !self.edge_id.is_empty()
            && self.edge_id.len() <= 64
            && self
                .edge_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            problems.push(Problem::new(
                "edge_id",
                "must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_' (it names files and batches)",
            ));
        }
        let listen = hourglass_svc::parse_addr("listen", &self.listen, &mut problems);
        let ops_listen = hourglass_svc::parse_addr("ops_listen", &self.ops_listen, &mut problems);
        if self.buffer_dir.as_os_str().is_empty() {
            problems.push(Problem::new("buffer_dir", "must not be empty"));
        }
        match (listen, ops_listen) {
            (Some(listen), Some(ops_listen)) if problems.is_empty() => Ok(Config {
                edge_id: self.edge_id.clone(),
                listen,
                ops_listen,
                buffer_dir: self.buffer_dir.clone(),
                log_format: self.log_format,
            }),
            _ => Err(problems),
        }
    }
}
