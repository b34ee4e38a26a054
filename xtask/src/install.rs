//! Installing what the stack and the tests need on a fresh machine of the
//! project's kind (Debian, root): ClickHouse from apt, the chdb venv from
//! pip, rustup components, cargo-fuzz, and for the browser tests Debian's
//! Chromium and `playwright-core` from npm (it drives that Chromium).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::run_cmd;

/// The `chdb` version the schema tests run current ClickHouse through.
const CHDB_VERSION: &str = "4.4.0";

fn found(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// `apt-get install PACKAGES` as root on Debian, or a clear error naming
/// what to install.
fn apt_install(packages: &[&str], what: &str) -> Result<()> {
    if !(is_root() && Path::new("/usr/bin/apt-get").exists()) {
        bail!(
            "{what} is not installed. Install it (Debian/Ubuntu: `apt-get install {}`)",
            packages.join(" ")
        );
    }
    eprintln!("xtask: installing {} with apt-get", packages.join(" "));
    run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The `playwright-core` version the browser tests drive Chromium with.
const PLAYWRIGHT_CORE_VERSION: &str = "1.64.1";

/// Debian's Chromium and `playwright-core` (no browser download: it
/// drives `/usr/bin/chromium`). Returns the `node_modules` directory.
pub fn browser() -> Result<PathBuf> {
    if !Path::new("/usr/bin/chromium").exists() {
        apt_install(&["chromium"], "chromium")?;
    }
    if !found("node", &["--version"]) {
        apt_install(&["nodejs", "npm"], "node")?;
    }
    let prefix = hourglass_testkit::node_prefix();
    let modules = prefix.join("node_modules");
    if modules.join("playwright-core/package.json").exists() {
        return Ok(modules);
    }
    std::fs::create_dir_all(&prefix)?;
    eprintln!(
        "xtask: installing playwright-core {PLAYWRIGHT_CORE_VERSION} into {}",
        prefix.display()
    );
    run_cmd(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&prefix)
            .arg(format!("playwright-core@{PLAYWRIGHT_CORE_VERSION}"))
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"),
    )?;
    Ok(modules)
}

/// `curl` (with HTTP/2): the HTTPS client of the edge's TLS test.
pub fn curl() -> Result<()> {
    if found("curl", &["--version"]) {
        return Ok(());
    }
    apt_install(&["curl"], "curl")
}

/// `clickhouse-server` from the distribution's packages.
pub fn clickhouse() -> Result<()> {
    if ["/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        return Ok(());
    }
    if !(is_root() && Path::new("/usr/bin/apt-get").exists()) {
        bail!(
            "clickhouse-server is not installed. Install it (Debian/Ubuntu: `apt-get install clickhouse-server`) \
             or point CLICKHOUSE_URL at a running server"
        );
    }
    eprintln!("xtask: installing clickhouse-server with apt-get");
    run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
    run_cmd(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "clickhouse-server",
                "clickhouse-client",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// A Python venv with `chdb` (current ClickHouse, in-process) for the
/// schema compatibility test. Returns its interpreter.
pub fn chdb_python() -> Result<PathBuf> {
    let python = hourglass_testkit::python();
    if found(python.to_str().unwrap_or_default(), &["-c", "import chdb"]) {
        return Ok(python);
    }
    let venv = python
        .parent()
        .and_then(Path::parent)
        .context("HOURGLASS_PYTHON must be <venv>/bin/python")?
        .to_path_buf();
    eprintln!(
        "xtask: installing chdb {CHDB_VERSION} into {}",
        venv.display()
    );
    run_cmd(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run_cmd(
        Command::new(&python)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .arg(format!("chdb=={CHDB_VERSION}")),
    )?;
    Ok(python)
}

/// rustfmt and clippy for the toolchain in use.
pub fn rust_components() -> Result<()> {
    if found("cargo", &["fmt", "--version"]) && found("cargo", &["clippy", "--version"]) {
        return Ok(());
    }
    run_cmd(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))
}

/// `cargo fuzz`.
pub fn cargo_fuzz() -> Result<()> {
    if found("cargo", &["fuzz", "--version"]) {
        return Ok(());
    }
    run_cmd(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}
