//! Service plumbing every Hourglass binary shares, so each binary's `main`
//! stays a thin shell: configuration (TOML file + environment overrides +
//! validation), tracing initialisation, the `/metrics` + `/healthz` +
//! `/readyz` endpoint, and the shutdown signal.
//!
//! Must not: know about any particular service's settings or speak SQL.

pub mod config;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod shutdown;

use std::net::SocketAddr;
use std::process::ExitCode;

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

/// The body of every service's `serve`: loads and validates the config,
/// initialises logging, runs `serve(config, shutdown)` on a multi-threaded
/// runtime until it returns (SIGINT/SIGTERM cancel `shutdown`), and turns
/// the outcome into the exit code. Errors are printed once, with context.
pub fn run_service<T, F, Fut>(
    name: &str,
    file: Option<&std::path::Path>,
    log_format: impl Fn(&T::Valid) -> logging::LogFormat,
    serve: F,
) -> ExitCode
where
    T: serde::de::DeserializeOwned + serde::Serialize + Default + config::Validate,
    F: FnOnce(T::Valid, shutdown::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let config = match config::load_valid::<T>(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(1);
        }
    };
    logging::init(log_format(&config));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let shutdown = shutdown::on_signal()?;
        serve(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::from(1)
        }
    }
}
