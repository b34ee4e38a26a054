//! `central-ingest`: the central tier. Today it receives batches from
//! edges over QUIC, archives them and loads them into ClickHouse exactly
//! once (`serve`), and manages the project CA and edge certificates
//! (`certs`). With `[api] enabled`, `serve` also answers the merchant
//! stats API and serves the dashboard; `admin` manages merchants, sites
//! and API keys; `plugin` is the plugin registry (also on the API).

mod api;
mod certs;
mod config;
mod control;
mod loader;
mod metrics;
mod receiver;
mod registry;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};
use hourglass_pki::CertDir;
use hourglass_svc::config::load_valid;

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
    /// Run the receiver (QUIC → archive), the loader (archive → ClickHouse)
    /// and, with `[api] enabled`, the merchant API and dashboard.
    Serve,
    /// Validate the configuration and print every problem.
    CheckConfig,
    /// Manage the project CA and edge certificates.
    Certs(CertsArgs),
    /// Manage merchants, sites and API keys (in the warehouse).
    Admin(api::admin::AdminArgs),
    /// The plugin registry: upload, list, activate, deactivate, roll back.
    Plugin(registry::cli::PluginArgs),
}

#[derive(Args)]
struct CertsArgs {
    /// The CA directory (default: `certs_dir` from the config).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Certs,
}

#[derive(Subcommand)]
enum Certs {
    /// Create the project CA.
    Init,
    /// Issue a certificate for an edge.
    IssueEdge { name: String },
    /// Issue (or replace) central's own certificate for these host names.
    IssueServer {
        #[arg(required = true)]
        hostnames: Vec<String>,
    },
    /// Revoke an edge certificate.
    Revoke { name: String },
    /// List edge certificates and whether they are revoked.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig => ExitCode::from(hourglass_svc::config::check::<config::RawConfig>(
            cli.config.as_deref(),
        ) as u8),
        Cmd::Serve => serve(cli.config),
        Cmd::Certs(args) => certs(cli.config, args),
        Cmd::Admin(args) => api::admin::run(cli.config.as_deref(), args),
        Cmd::Plugin(args) => registry::cli::run(cli.config.as_deref(), args),
    }
}

fn serve(config_file: Option<PathBuf>) -> ExitCode {
    hourglass_svc::run_service::<config::RawConfig, _, _>(
        "central-ingest",
        config_file.as_deref(),
        |c| c.log_format,
        serve::run,
    )
}

fn certs(config_file: Option<PathBuf>, args: CertsArgs) -> ExitCode {
    let dir = match args.dir {
        Some(dir) => dir,
        None => match load_valid::<config::RawConfig>(config_file.as_deref()) {
            Ok(c) => c.certs_dir,
            Err(e) => {
                eprintln!("central-ingest: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let dir = CertDir::new(dir);
    let now = SystemTime::now();
    let result = match &args.cmd {
        Certs::Init => certs::init(&dir, now),
        Certs::IssueEdge { name } => certs::issue_edge(&dir, name, now),
        Certs::IssueServer { hostnames } => certs::issue_server(&dir, hostnames, now),
        Certs::Revoke { name } => certs::revoke(&dir, name, now),
        Certs::List => certs::list(&dir),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("central-ingest certs: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
