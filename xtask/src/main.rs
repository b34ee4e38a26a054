//! `cargo xtask …`: the developer entry points, in Rust instead of shell
//! scripts (as rust-analyzer does).
//!
//! - `test`: installs what the suite needs on a fresh machine, then runs
//!   fmt, clippy, every test against one private ClickHouse, and a short fuzz.
//! - `up [--detach]` / `down`: the local stack, recorded in
//!   `target/hourglass/stack.json`.
//! - `bench edge`: edge-agent against nginx under the same load.
//! - `bench ingest`: central's loader against `clickhouse-client`, and
//!   freshness from the edge's 202 to a row in ClickHouse.
//! - `bench plugins`: the WASM plugin chain against the same plugins native.
//! - `plugins`: builds the WASM plugins in `plugins/` into components and
//!   fetches the geo plugin's default database.
//!
//! Must not: hold product logic. It only installs, starts, stops and calls.

mod ansible;
mod bench;
mod bench_ingest;
mod bench_plugins;
mod bench_query;
mod install;
mod plugins;
mod stack;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Hourglass developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing, then run fmt, clippy, every test and a short fuzz run.
    Test(test::TestArgs),
    /// Bring the local stack up (ClickHouse + migrations) and print how to reach it.
    Up {
        /// Return once the stack is up instead of waiting for Ctrl-C.
        #[arg(long)]
        detach: bool,
    },
    /// Stop every process `up` started.
    Down,
    /// Run a benchmark against its baseline, side by side (see bench/README.md).
    Bench(bench::BenchArgs),
    /// Build the WASM plugins (plugins/) into components under target/hourglass/plugins/,
    /// and fetch the geo plugin's default database there.
    Plugins,
    /// Syntax-check and lint ops/ansible, render its configs and validate them (no services).
    AnsibleCheck,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Test(args) => test::run(&args),
        Cmd::Up { detach } => stack::up(detach),
        Cmd::Down => stack::down(),
        Cmd::Bench(args) => bench::run(&args),
        Cmd::Plugins => plugins::build().and_then(|_| plugins::geo_data()).map(drop),
        Cmd::AnsibleCheck => ansible::check(),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

/// Runs a command, echoing it; fails with its exit status.
pub(crate) fn run_cmd(cmd: &mut std::process::Command) -> anyhow::Result<()> {
    eprintln!("$ {}", show(cmd));
    let status = cmd
        .status()
        .map_err(|e| anyhow::anyhow!("cannot start `{}`: {e}", show(cmd)))?;
    anyhow::ensure!(status.success(), "`{}` failed: {status}", show(cmd));
    Ok(())
}

fn show(cmd: &std::process::Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `cargo`, as the one that runs us.
pub(crate) fn cargo() -> std::process::Command {
    let mut cmd =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(hourglass_testkit::workspace_root());
    cmd
}
