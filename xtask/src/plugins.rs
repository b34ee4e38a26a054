//! `cargo xtask plugins`: builds the guest workspace in `plugins/` for
//! `wasm32-unknown-unknown` (release) and turns each core module into a
//! component with `wit-component`, into [`components_dir`]. No WASI
//! adapter: a guest that imports WASI fails here, as it would at load.
//! [`geo_data`] fetches the `geo` plugin's default database from npm.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{cargo, run_cmd};

const TARGET: &str = "wasm32-unknown-unknown";

/// Where the components go: `<state dir>/plugins/<name>.wasm`, i.e.
/// `target/hourglass/plugins/` unless `HOURGLASS_STATE_DIR` says otherwise.
/// The plugin host's tests read them from there.
pub fn components_dir() -> PathBuf {
    hourglass_testkit::state_dir().join("plugins")
}

/// Builds every guest and writes its component; returns the directory.
pub fn build() -> Result<PathBuf> {
    wasm_target()?;
    let root = hourglass_testkit::workspace_root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("plugins");
    run_cmd(
        cargo()
            .current_dir(root.join("plugins"))
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                TARGET,
                "--target-dir",
            ])
            .arg(&target_dir),
    )?;

    let modules = target_dir.join(TARGET).join("release");
    let out = components_dir();
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut built = Vec::new();
    for entry in
        std::fs::read_dir(&modules).with_context(|| format!("cannot list {}", modules.display()))?
    {
        let path = entry?.path();
        let Some(stem) = path
            .extension()
            .filter(|e| *e == "wasm")
            .and(path.file_stem())
        else {
            continue;
        };
        // Cargo writes `ua-parse` as `ua_parse.wasm`; plugins keep their crate name.
        let name = stem.to_string_lossy().replace('_', "-");
        let component = encode(&path)
            .with_context(|| format!("cannot make a component of {}", path.display()))?;
        write_atomically(&out.join(format!("{name}.wasm")), &component)?;
        built.push(format!("{name} ({} KiB)", component.len().div_ceil(1024)));
    }
    // One core module as it is, for the tests that check a core module is
    // refused (it is WebAssembly, but not a component).
    std::fs::copy(
        modules.join("passthrough.wasm"),
        out.join("core-module.wasm"),
    )
    .context("cannot copy the passthrough core module")?;
    built.sort();
    eprintln!(
        "xtask: components in {}: {}",
        out.display(),
        built.join(", ")
    );
    Ok(out)
}

/// The guests' own unit tests, built for this machine (the guest
/// workspace targets wasm by default). Only crates that have them.
pub fn test_native() -> Result<()> {
    let host = Command::new("rustc")
        .args(["--print", "host-tuple"])
        .output()
        .context("cannot run rustc")?;
    let host = String::from_utf8(host.stdout)?.trim().to_owned();
    let root = hourglass_testkit::workspace_root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("plugins");
    run_cmd(
        cargo()
            .current_dir(root.join("plugins"))
            .args([
                "test",
                "--locked",
                "-p",
                "geo",
                "-p",
                "hourglass-plugin-sdk",
                "--target",
                &host,
                "--target-dir",
            ])
            .arg(&target_dir),
    )
}

fn encode(module: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(module)?;
    wit_component::ComponentEncoder::default()
        .module(&bytes)?
        .validate(true)
        .encode()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = path.with_extension("wasm.tmp");
    std::fs::write(&temp, bytes).with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// `rustup target add wasm32-unknown-unknown` when it is missing.
fn wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup (the plugins need the wasm32-unknown-unknown target)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    run_cmd(Command::new("rustup").args(["target", "add", TARGET]))
}

/// The npm package of the `geo` plugin's default database: the CC0
/// `geo-whois-asn-country` MaxMind DB (country only) of ip-location-db.
const GEO_PACKAGE: &str = "@ip-location-db/geo-whois-asn-country-mmdb";
const GEO_VERSION: &str = "2.3.2026061719";
const GEO_FILE: &str = "geo-whois-asn-country.mmdb";

/// The `geo` plugin's default data file, `<components dir>/geo-whois-asn-country.mmdb`,
/// installed from npm when missing (about 8 MB). Tests do not need it: they
/// use the fixtures in `plugins/geo/testdata/`.
pub fn geo_data() -> Result<PathBuf> {
    let out = components_dir().join(GEO_FILE);
    if out.exists() {
        return Ok(out);
    }
    let prefix = components_dir().join("npm");
    std::fs::create_dir_all(&prefix)
        .with_context(|| format!("cannot create {}", prefix.display()))?;
    eprintln!(
        "xtask: installing {GEO_PACKAGE}@{GEO_VERSION} (CC0) into {}",
        prefix.display()
    );
    run_cmd(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&prefix)
            .arg(format!("{GEO_PACKAGE}@{GEO_VERSION}")),
    )
    .context("installing the geo database needs node and npm (Debian: `apt-get install npm`)")?;
    let installed = prefix.join("node_modules").join(GEO_PACKAGE).join(GEO_FILE);
    std::fs::copy(&installed, out.with_extension("mmdb.tmp"))
        .with_context(|| format!("cannot copy {}", installed.display()))?;
    std::fs::rename(out.with_extension("mmdb.tmp"), &out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("xtask: geo data in {}", out.display());
    Ok(out)
}
