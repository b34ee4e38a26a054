//! End-to-end tests: they run the real binaries (built by `cargo build
//! --workspace --bins` into the same target directory, as `cargo xtask test`
//! does first) against a real ClickHouse.
//! This library only finds those binaries; the tests are the `[[test]]`
//! files beside it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// A workspace binary built beside this test executable.
pub fn binary(name: &str) -> Command {
    let exe = std::env::current_exe().expect("a test knows its own path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/<profile>/deps");
    let path: PathBuf = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (`cargo xtask test` does)",
        path.display()
    );
    Command::new(path)
}

/// Runs and captures, for assertions on exit code and output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the binary can be started")
}

/// Starts `cmd` (output appended to `log`) and waits, up to 20 s, until
/// `healthz` answers 200; panics with the log if it exits or never does.
pub fn spawn_until_healthy(mut cmd: Command, log: &Path, healthz: &str) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = cmd
        .env("RUST_LOG", "info")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let what = cmd.get_program().to_string_lossy().into_owned();
    let text = || std::fs::read_to_string(log).unwrap_or_default();
    let started = Instant::now();
    loop {
        if let Ok(r) = ureq::get(healthz).call()
            && r.status() == 200
        {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status}:\n{}", text());
        }
        if started.elapsed() > Duration::from_secs(20) {
            // Not left running (with its ports) after the test fails.
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not start:\n{}", text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub mod central;
pub mod edge;
pub mod receiver;
pub mod warehouse;
