//! `cargo xtask up --detach` / `down`: the dev stack comes up, is
//! idempotent, and leaves no process behind.

use std::time::{Duration, Instant};

use hourglass_e2e::{binary, run};

fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

fn stack(state: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(state.join("stack.json")).expect("stack.json written by up");
    serde_json::from_str(&text).expect("stack.json is JSON")
}

#[test]
fn up_detach_is_idempotent_and_down_leaves_nothing_running() {
    let state = tempfile::tempdir().unwrap();
    let xtask = || {
        let mut cmd = binary("xtask");
        cmd.env("HOURGLASS_STATE_DIR", state.path())
            .env_remove("CLICKHOUSE_URL");
        cmd
    };

    let out = run(xtask().args(["up", "--detach"]));
    assert!(
        out.status.success(),
        "up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = stack(state.path());
    let url = first["clickhouse_url"].as_str().unwrap().to_string();
    assert_eq!(first["database"], "hourglass");
    let pid = first["pids"]["clickhouse"].as_u64().unwrap();
    assert!(alive(pid));
    assert!(hourglass_testkit::ping(&url));
    let tables = hourglass_testkit::http_post(
        &url,
        "SELECT count() FROM system.tables WHERE database = 'hourglass' AND name = 'events'",
    )
    .unwrap();
    assert_eq!(tables.trim(), "1", "up must migrate the schema");

    let out = run(xtask().args(["up", "--detach"]));
    assert!(
        out.status.success(),
        "second up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stack(state.path())["pids"]["clickhouse"].as_u64(),
        Some(pid),
        "second up must reuse the running server"
    );

    let out = run(xtask().arg("down"));
    assert!(
        out.status.success(),
        "down failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    while alive(pid) && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !alive(pid),
        "clickhouse (pid {pid}) still running after down"
    );
    assert!(!hourglass_testkit::ping(&url));
    assert!(!state.path().join("stack.json").exists());
}
