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
