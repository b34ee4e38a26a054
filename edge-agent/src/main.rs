//! `edge-agent`: runs at each point of presence. It will accept beacons
//! over HTTP, decode the supported protocols, stamp identity, run the WASM
//! plugin chain, batch into the disk buffer and ship to central over QUIC.
//! Today it validates its configuration; `serve` says it is not built yet.

mod config;

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
    /// Validate the configuration and print every problem.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig => ExitCode::from(hourglass_svc::config::check::<config::RawConfig>(
            cli.config.as_deref(),
        ) as u8),
        Cmd::Serve => hourglass_svc::not_built("edge-agent serve"),
    }
}
