//! `cargo xtask test`: the one command that runs every check, locally and in CI.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::Result;
use hourglass_testkit::{ClickHouseServer, Lifetime};

use crate::{cargo, install, run_cmd};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Seconds to run each fuzz target (0 skips fuzzing).
    #[arg(long, default_value_t = 30)]
    fuzz_seconds: u32,
    /// Skip `cargo fmt --check` and clippy.
    #[arg(long)]
    no_lint: bool,
    /// Arguments for `cargo test` after `--`, e.g. a test name filter.
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

pub fn run(args: &TestArgs) -> Result<()> {
    let started = Instant::now();
    step("install what is missing");
    install::rust_components()?;
    let external = std::env::var("CLICKHOUSE_URL").ok();
    if external.is_none() {
        install::clickhouse()?;
    }
    let python = install::chdb_python()?;

    if !args.no_lint {
        step("cargo fmt --check");
        run_cmd(cargo().args(["fmt", "--all", "--", "--check"]))?;
        step("cargo clippy -D warnings");
        run_cmd(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))?;
    }

    // One private ClickHouse for the whole run; every test makes its own
    // database in it. The watchdog stops it if we die.
    let mut server = None;
    let url = match external {
        Some(url) => url,
        None => {
            step("start a private ClickHouse");
            let dir = hourglass_testkit::state_dir().join("xtask-test-clickhouse");
            let s = ClickHouseServer::start(&dir, Lifetime::TiedTo(std::process::id()))?;
            eprintln!("xtask: ClickHouse at {} (pid {})", s.url, s.pid);
            let url = s.url.clone();
            server = Some(s);
            url
        }
    };

    // `cargo test` builds a package's binaries only for its own integration
    // tests; the end-to-end tests in `tests/` run every workspace binary.
    step("cargo build --bins");
    run_cmd(cargo().args(["build", "--workspace", "--bins", "--locked"]))?;
    step("cargo test");
    let tested = run_cmd(
        cargo()
            .args(["test", "--workspace", "--locked"])
            .args(&args.cargo_test_args)
            .env("CLICKHOUSE_URL", &url)
            .env("HOURGLASS_PYTHON", &python),
    );
    if let Some(mut s) = server.take() {
        s.stop();
    }
    tested?;

    if args.fuzz_seconds > 0 {
        step("fuzz");
        fuzz(args.fuzz_seconds)?;
    }
    eprintln!(
        "xtask: all checks passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A short run of every fuzz target over a scratch corpus seeded from the
/// committed one, so the checkout stays clean. Longer runs are manual.
fn fuzz(seconds: u32) -> Result<()> {
    install::cargo_fuzz()?;
    let root = hourglass_testkit::workspace_root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("fuzz");
    let mut targets: Vec<String> = std::fs::read_dir(root.join("fuzz/fuzz_targets"))?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    targets.sort();
    for target in &targets {
        let scratch = hourglass_testkit::state_dir()
            .join("fuzz-corpus")
            .join(target);
        std::fs::create_dir_all(&scratch)?;
        run_cmd(
            Command::new("cargo")
                .current_dir(&root)
                .env("RUSTC_BOOTSTRAP", "1")
                .args(["fuzz", "run", "--target-dir"])
                .arg(&target_dir)
                .arg(target)
                .arg(&scratch)
                .arg(root.join("fuzz/corpus").join(target))
                .arg("--")
                .arg(format!("-max_total_time={seconds}")),
        )?;
    }
    Ok(())
}

fn step(name: &str) {
    eprintln!("\n==== xtask test: {name}");
}
