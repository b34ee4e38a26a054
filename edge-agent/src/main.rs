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
mod ingress;
mod limits;
mod metrics;
mod serve;
mod shipper;
mod writer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hourglass_svc::config::load_valid;

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
    /// Validate the configuration and print every problem.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig => ExitCode::from(hourglass_svc::config::check::<config::RawConfig>(
            cli.config.as_deref(),
        ) as u8),
        Cmd::Serve => {
            let config = match load_valid::<config::RawConfig>(cli.config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("edge-agent: {e}");
                    return ExitCode::from(1);
                }
            };
            hourglass_svc::logging::init(config.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("edge-agent: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            let result = runtime.block_on(async {
                let shutdown = hourglass_svc::shutdown::on_signal()?;
                serve::run(config, shutdown).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("edge-agent: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
