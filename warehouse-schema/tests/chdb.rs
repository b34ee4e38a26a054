//! Every migration statement, in order, on *current* ClickHouse (chdb,
//! embedded in Python), where the other tests use the 18.16 server. The
//! work is done by `chdb_migrations.py`; this test feeds it the statements
//! and fails — never skips — when Python or chdb is missing.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const INSTALL_HINT: &str = "run `cargo xtask test`, which installs the Python venv with chdb \
                            (or point HOURGLASS_PYTHON at a Python that has chdb)";

#[test]
fn migrations_run_on_current_clickhouse_via_chdb() {
    let python = hourglass_testkit::python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chdb_migrations.py");
    let input = serde_json::to_vec(&warehouse_schema::statements_json())
        .expect("statements encode as JSON");

    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}\n{INSTALL_HINT}", python.display()));
    // The script reads all of stdin before it writes anything.
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&input)
        .expect("write the statements to the script");
    let out = child.wait_with_output().expect("wait for the chdb script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            assert!(
                stdout.starts_with("ok: "),
                "unexpected output: {stdout}{stderr}"
            );
            println!("{}", stdout.trim());
        }
        Some(3) => panic!(
            "chdb is not available to {}:\n{stderr}\n{INSTALL_HINT}",
            python.display()
        ),
        _ => panic!(
            "the migrations failed on current ClickHouse (chdb), exit {:?}:\n{stdout}{stderr}",
            out.status.code()
        ),
    }
}
