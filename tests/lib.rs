//! End-to-end tests: they run the real binaries (built by `cargo build
//! --workspace --bins` into the same target directory, as `cargo xtask test`
//! does first) against a real ClickHouse.
//! This library only finds those binaries; the tests are the `[[test]]`
//! files beside it.

use std::path::PathBuf;
use std::process::{Command, Output};

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

pub mod central;
pub mod edge;
pub mod receiver;
