//! `cargo xtask plugins`: builds the guest workspace in `plugins/` for
//! `wasm32-unknown-unknown` (release) and turns each core module into a
//! component with `wit-component`, into [`components_dir`]. No WASI
//! adapter: a guest that imports WASI fails here, as it would at load.

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
    built.sort();
    eprintln!(
        "xtask: components in {}: {}",
        out.display(),
        built.join(", ")
    );
    Ok(out)
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
