//! Service plumbing every Hourglass binary shares, so each binary's `main`
//! stays a thin shell: configuration (TOML file + environment overrides +
//! validation), tracing initialisation, the `/metrics` + `/healthz` endpoint,
//! and the shutdown signal.
//!
//! Must not: know about any particular service's settings or speak SQL.

pub mod config;
pub mod http;
pub mod logging;
pub mod shutdown;

use std::net::SocketAddr;
use std::process::ExitCode;

/// What a subcommand that does not exist yet does: say so, exit 2.
pub fn not_built(command: &str) -> ExitCode {
    eprintln!("`{command}` is not built yet in this release of Hourglass");
    ExitCode::from(2)
}

/// Parses a listen address, recording a problem under `key` when it is not one.
pub fn parse_addr(
    key: &str,
    value: &str,
    problems: &mut Vec<config::Problem>,
) -> Option<SocketAddr> {
    match value.parse() {
        Ok(addr) => Some(addr),
        Err(e) => {
            problems.push(config::Problem::new(
                key,
                format!("`{value}` is not an address like 127.0.0.1:8080 ({e})"),
            ));
            None
        }
    }
}
