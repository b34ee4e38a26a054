//! What an operator sees from each binary's command line: config checks
//! that name every problem.

use hourglass_e2e::{binary, run};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn check_config_accepts_defaults_and_names_every_problem() {
    for bin in ["central-ingest", "edge-agent"] {
        let out = run(binary(bin).arg("check-config").env_remove("CLICKHOUSE_URL"));
        assert_eq!(out.status.code(), Some(0), "{bin}: {}", text(&out));
        assert!(text(&out).contains("config OK"), "{bin}: {}", text(&out));
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("central.toml");
    std::fs::write(
        &file,
        "ops_listen = \"not-an-address\"\n[warehouse]\nurl = \"ftp://x\"\ndatabase = \"bad-name\"\n",
    )
    .unwrap();
    let out = run(binary("central-ingest")
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .env_remove("CLICKHOUSE_URL")
        .env_remove("CLICKHOUSE_DATABASE"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("ops_listen"), "{t}");
    assert!(t.contains("warehouse"), "{t}");

    let out = run(binary("edge-agent")
        .args(["check-config", "--config"])
        .arg(dir.path().join("missing.toml")));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edge.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:8080\"\n").unwrap();
    let out = run(binary("edge-agent")
        .args(["check-config", "--config"])
        .arg(&file)
        .env("HOURGLASS_LISTEN", "nonsense")
        // Unrelated to the edge: must not trip its strict config.
        .env("CLICKHOUSE_URL", "http://127.0.0.1:1")
        .env("HOURGLASS_PYTHON", "/usr/bin/python3"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("`nonsense`"), "{}", text(&out));
}
