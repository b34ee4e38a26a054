//! `edge-agent`: runs at each point of presence. Accepts beacons over HTTP
//! (our tracker, Plausible, GA4 Measurement Protocol, Segment), admits and
//! stamps them, batches them into a durable disk buffer and ships the
//! batches to central over QUIC with mutual TLS.
//!
//! Map: `ingress` (HTTP) → `writer` (batcher + pipeline → disk buffer) →
//! `shipper` (QUIC). `batcher` is the pure closing rule; `serve` wires it
//! all; `config` and `metrics` are what operators set and see.

mod batcher;
mod config;
mod control;
mod ingress;
mod limits;
mod metrics;
mod serve;
mod shipper;
mod writer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "edge-agent", version, about = "Hourglass edge agent")]
struct Cli {
    /// TOML config file.
    #[arg(long, short, global = true, env = "HOURGLASS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Accept beacons and ship them to central.
    Serve,
    /// Validate the configuration and print every problem, then load the
    /// plugin chain (each plugin checked step by step, as `serve` does).
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig => check_config(cli.config.as_deref()),
        Cmd::Serve => hourglass_svc::run_service::<config::RawConfig, _, _>(
            "edge-agent",
            cli.config.as_deref(),
            |c| c.log_format,
            serve::run,
        ),
    }
}

fn check_config(file: Option<&std::path::Path>) -> ExitCode {
    let code = hourglass_svc::config::check::<config::RawConfig>(file);
    if code != 0 {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let Ok(config) = hourglass_svc::config::load_valid::<config::RawConfig>(file) else {
        return ExitCode::FAILURE;
    };
    match config
        .plugins
        .load(hourglass_plugin_host::Limits::default())
    {
        Ok(chain) => {
            println!(
                "plugins OK ({} loaded, plugin set `{}`)",
                config.plugins.plugins.len(),
                chain.plugin_set()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
