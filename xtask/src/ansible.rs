//! `cargo xtask ansible-check`: checks `ops/ansible/` on a machine without
//! systemd. Installs pinned `ansible-core` + `ansible-lint` into a venv under
//! `$HOME/.cache`, syntax-checks every playbook, lints with the committed
//! `.ansible-lint`, then runs the real roles in render-only mode
//! (`check_render.yml`): configs and unit files go to a scratch directory,
//! the config templates are validated by the debug binaries' `check-config`
//! (as the template task's `validate`, and again here), and a second run
//! must change nothing.
//!
//! Must not: claim more than it did. No package, user, certificate,
//! migration or service task runs here. The real run (site.yml onto this
//! machine with the `pidfile` service manager, a second run, a broken
//! config, a rolling edge upgrade under load) is the end-to-end test
//! `tests/ansible_deploy.rs`, which `cargo test` runs with this venv's
//! `ansible-playbook` (`HOURGLASS_ANSIBLE_BIN_DIR`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::run_cmd;

const ANSIBLE_CORE: &str = "2.19.14";
const ANSIBLE_LINT: &str = "26.10.1";

/// Every playbook and the inventory its syntax check uses.
const PLAYBOOKS: &[(&str, &str)] = &[
    ("site.yml", "inventory.example.yml"),
    ("rotate_edge_cert.yml", "inventory.example.yml"),
    ("revoke_edge.yml", "inventory.example.yml"),
    ("upgrade_edges.yml", "inventory.example.yml"),
    ("check_render.yml", "check/inventory.yml"),
];

/// The whole check; expects `cargo build --bins` to have run.
pub fn check() -> Result<()> {
    let root = hourglass_testkit::workspace_root();
    let dir = root.join("ops/ansible");
    let bin = venv()?;
    let tool = |name: &str| {
        let mut cmd = Command::new(bin.join(name));
        cmd.current_dir(&dir)
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
            // The venv's tools find each other on PATH.
            .env("PATH", path_with(&bin));
        cmd
    };

    for (playbook, inventory) in PLAYBOOKS {
        run_cmd(tool("ansible-playbook").args(["--syntax-check", "-i", inventory, playbook]))?;
    }
    run_cmd(tool("ansible-lint").args(["--strict", "--nocolor"]))?;

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("debug");
    for b in ["central-ingest", "edge-agent"] {
        ensure!(
            target.join(b).exists(),
            "{} is missing: run `cargo build --bins` first",
            target.join(b).display()
        );
    }
    let plugins = hourglass_testkit::state_dir().join("plugins");
    ensure!(
        plugins.join("validate.wasm").exists(),
        "{} has no components: run `cargo xtask plugins` first",
        plugins.display()
    );
    let render = hourglass_testkit::state_dir().join("ansible-render");
    if render.exists() {
        std::fs::remove_dir_all(&render)?;
    }
    std::fs::create_dir_all(&render)?;
    let render_playbook = |run: &str| -> Result<String> {
        let mut cmd = tool("ansible-playbook");
        cmd.args(["-i", "check/inventory.yml", "check_render.yml", "-e"])
            .arg(format!("render_root={}", render.display()))
            .arg("-e")
            .arg(format!("hourglass_check_bin_dir={}", target.display()))
            .arg("-e")
            .arg(format!("hourglass_check_plugins_dir={}", plugins.display()))
            .arg("-e")
            .arg(format!(
                "hourglass_check_repo_dir={}",
                hourglass_testkit::workspace_root().display()
            ));
        eprintln!("$ ansible-playbook check_render.yml ({run})");
        let out = cmd.output().context("cannot start ansible-playbook")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
            bail!("check_render.yml failed ({run}): {}", out.status);
        }
        Ok(text)
    };
    render_playbook("first run")?;
    let again = render_playbook("second run")?;
    let recap: Vec<&str> = again
        .lines()
        .skip_while(|l| !l.starts_with("PLAY RECAP"))
        .skip(1)
        .filter(|l| l.contains("ok="))
        .collect();
    ensure!(!recap.is_empty(), "no PLAY RECAP in:\n{again}");
    for line in &recap {
        ensure!(
            line.contains(" changed=0 "),
            "check_render.yml is not idempotent, second run: {line}"
        );
    }
    eprintln!(
        "xtask: second render run changed nothing ({} hosts)",
        recap.len()
    );

    // The rendered configs, through the real binaries once more, plus what
    // `check-config` does not look at.
    let mut central_nodes = 0;
    for host in ["central-1", "central-2"] {
        let config = render.join(host).join("etc/central.toml");
        run_cmd(
            Command::new(target.join("central-ingest"))
                .arg("check-config")
                .arg("--config")
                .arg(&config),
        )?;
        central_nodes += 1;
    }
    let edge = render.join("edge-check-1/etc");
    run_cmd(
        Command::new(target.join("edge-agent"))
            .arg("check-config")
            .arg("--config")
            .arg(edge.join("edge.toml")),
    )?;
    let edge_toml: toml::Value = toml::from_str(&read(&edge.join("edge.toml"))?)?;
    let endpoints = edge_toml["central"]["endpoints"]
        .as_array()
        .map_or(0, Vec::len);
    ensure!(
        endpoints == central_nodes,
        "edge.toml lists {endpoints} central endpoints, the inventory has {central_nodes} central nodes"
    );
    let sites: serde_json::Value = serde_json::from_str(&read(&edge.join("sites.json"))?)?;
    ensure!(
        sites["version"].is_u64() && sites["sites"][0]["site_id"] == "site-check",
        "sites.json does not have the site directory's shape: {sites}"
    );
    ensure!(
        std::fs::metadata(edge.join("master.key"))?.len() >= 16,
        "master.key is shorter than 16 bytes"
    );
    eprintln!(
        "xtask: ansible ok: {} playbooks syntax-checked, ansible-lint clean, configs rendered into {} \
         and accepted by check-config (no service was started: this machine has no systemd)",
        PLAYBOOKS.len(),
        render.display()
    );
    Ok(())
}

/// The venv's `bin/`, with the pinned versions installed.
pub fn venv() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let venv = Path::new(&home).join(".cache/hourglass-ansible-venv");
    let bin = venv.join("bin");
    let has = |program: &str, version: &str| {
        Command::new(bin.join(program))
            .arg("--version")
            .env("PATH", path_with(&bin))
            .output()
            .is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains(version)
            })
    };
    if has("ansible-playbook", ANSIBLE_CORE) && has("ansible-lint", ANSIBLE_LINT) {
        return Ok(bin);
    }
    eprintln!(
        "xtask: installing ansible-core {ANSIBLE_CORE} and ansible-lint {ANSIBLE_LINT} into {}",
        venv.display()
    );
    run_cmd(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run_cmd(
        Command::new(bin.join("python"))
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .arg(format!("ansible-core=={ANSIBLE_CORE}"))
            .arg(format!("ansible-lint=={ANSIBLE_LINT}")),
    )?;
    Ok(bin)
}

fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut paths = vec![bin.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap_or_default()
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
