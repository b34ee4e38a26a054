//! `central-ingest`: the central tier. It will receive batches from edges
//! over QUIC, archive them, load ClickHouse exactly once, serve the merchant
//! API and dashboard, and manage the edge certificates. Today it validates
//! its configuration; the other subcommands say they are not built yet.

mod config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "central-ingest", version, about = "Hourglass central ingest")]
struct Cli {
    /// TOML config file.
    #[arg(long, short, global = true, env = "HOURGLASS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the receiver, loader and API.
    Serve,
    /// Validate the configuration and print every problem.
    CheckConfig,
    /// Manage the project CA and edge certificates.
    #[command(subcommand)]
    Certs(Certs),
}

#[derive(Subcommand)]
enum Certs {
    /// Create the project CA.
    Init,
    /// Issue a certificate for an edge.
    IssueEdge { name: String },
    /// Revoke an edge certificate.
    Revoke { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig => ExitCode::from(hourglass_svc::config::check::<config::RawConfig>(
            cli.config.as_deref(),
        ) as u8),
        Cmd::Serve => hourglass_svc::not_built("central-ingest serve"),
        Cmd::Certs(Certs::Init) => hourglass_svc::not_built("central-ingest certs init"),
        Cmd::Certs(Certs::IssueEdge { .. }) => {
            hourglass_svc::not_built("central-ingest certs issue-edge")
        }
        Cmd::Certs(Certs::Revoke { .. }) => hourglass_svc::not_built("central-ingest certs revoke"),
    }
}
