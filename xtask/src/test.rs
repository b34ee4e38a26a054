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
    install::browser()?;
    install::curl()?;

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

    // The plugin host's tests load the reference plugins as components.
    step("cargo xtask plugins");
    crate::plugins::build()?;
    step("plugin unit tests (native)");
    crate::plugins::test_native()?;

    // `cargo test` builds a package's binaries only for its own integration
    // tests; the end-to-end tests in `tests/` run every workspace binary.
    step("cargo build --bins");
    run_cmd(cargo().args(["build", "--workspace", "--bins", "--locked"]))?;
    step("cargo xtask ansible-check");
    crate::ansible::check()?;
    step("cargo test");
    let tested = cargo_test(
        cargo()
            .args(["test", "--workspace", "--locked"])
            .args(&args.cargo_test_args)
            .env("CLICKHOUSE_URL", &url)
            .env("HOURGLASS_PYTHON", &python)
            // tests/ansible_deploy.rs runs the playbooks with it.
            .env("HOURGLASS_ANSIBLE_BIN_DIR", crate::ansible::venv()?),
    );
    if let Some(mut s) = server.take() {
        s.stop();
    }
    let totals = tested?;

    if args.fuzz_seconds > 0 {
        step("fuzz");
        fuzz(args.fuzz_seconds)?;
    }
    eprintln!(
        "xtask: all checks passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("{totals}");
    Ok(())
}

/// The sum of every `test result:` line of a `cargo test` run.
#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tests: {} passed, {} failed, {} skipped",
            self.passed, self.failed, self.ignored
        )
    }
}

impl Totals {
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let n: u64 = n.parse().unwrap_or(0);
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Runs `cargo test`, passing its output through, and totals its results.
fn cargo_test(cmd: &mut Command) -> Result<Totals> {
    use std::io::BufRead as _;
    eprintln!("$ cargo test …");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start cargo test: {e}"))?;
    let mut totals = Totals::default();
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            totals.add(&line);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        println!("{totals}");
        anyhow::bail!("cargo test failed: {status}");
    }
    Ok(totals)
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
        // libFuzzer reports every new input; keep that in a log and show
        // its last lines.
        let log_path = hourglass_testkit::state_dir().join(format!("fuzz-{target}.log"));
        let log = std::fs::File::create(&log_path)?;
        let fuzzed = run_cmd(
            Command::new("cargo")
                .current_dir(&root)
                .env("RUSTC_BOOTSTRAP", "1")
                .args(["fuzz", "run", "--target-dir"])
                .arg(&target_dir)
                .arg(target)
                .arg(&scratch)
                .arg(root.join("fuzz/corpus").join(target))
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                .stderr(log),
        );
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let shown = if fuzzed.is_ok() { 2 } else { 60 };
        for line in &lines[lines.len().saturating_sub(shown)..] {
            eprintln!("{line}");
        }
        fuzzed.map_err(|e| {
            anyhow::anyhow!(
                "fuzz target {target}: {e}; full log in {}",
                log_path.display()
            )
        })?;
    }
    Ok(())
}

fn step(name: &str) {
    eprintln!("\n==== xtask test: {name}");
}
