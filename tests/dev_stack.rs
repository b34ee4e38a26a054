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
        let bins = std::env::current_exe().unwrap();
        let bins = bins.parent().unwrap().parent().unwrap();
        cmd.env("HOURGLASS_STATE_DIR", state.path())
            .env("HOURGLASS_BIN_DIR", bins)
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
    let pids: Vec<u64> = ["clickhouse", "central", "edge"]
        .iter()
        .map(|role| {
            first["pids"][role]
                .as_u64()
                .unwrap_or_else(|| panic!("pids.{role} in {first}"))
        })
        .collect();
    assert!(pids.iter().all(|&p| alive(p)));
    for key in [
        "edge_url",
        "site_id",
        "site_domain",
        "ga4_measurement_id",
        "ga4_api_secret",
        "segment_write_key",
    ] {
        assert!(
            !first[key].as_str().unwrap_or_default().is_empty(),
            "{key} in {first}"
        );
    }

    // A hit through the whole stack lands in ClickHouse.
    let edge = first["edge_url"].as_str().unwrap();
    let r = ureq::post(&format!("{edge}/api/event"))
        .header("Content-Type", "text/plain")
        .send(r#"{"n":"pageview","u":"https://example.com/dev-stack","d":"example.com"}"#)
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    // The demo GA4 stream reached the edge over the control channel.
    let ga4 = ureq::post(&format!(
        "{edge}/mp/collect?measurement_id={}&api_secret={}",
        first["ga4_measurement_id"].as_str().unwrap(),
        first["ga4_api_secret"].as_str().unwrap()
    ))
    .header("Content-Type", "application/json")
    .send(r#"{"client_id":"1.2","events":[{"name":"sign_up","params":{"page_location":"https://example.com/ga4"}}]}"#)
    .unwrap();
    assert_eq!(ga4.status().as_u16(), 202);
    let started = Instant::now();
    loop {
        let n = hourglass_testkit::http_post(
            &url,
            "SELECT count() FROM hourglass.events WHERE pathname = '/dev-stack'",
        )
        .unwrap();
        if n.trim() == "1" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the hit did not reach ClickHouse ({n})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The merchant API answers for the demo site with the demo key. The
    // rollup it reads is written by a view right after `events` (and an
    // answer is cached for a few seconds): wait for it, bounded.
    let api = first["api_url"].as_str().unwrap();
    let key = first["api_key"].as_str().unwrap();
    let started = Instant::now();
    loop {
        let mut answer = ureq::post(&format!("{api}/api/v1/query"))
            .header("Authorization", &format!("Bearer {key}"))
            .send(r#"{"site_id":"example.com","metrics":["pageviews"],"date_range":"all"}"#)
            .unwrap();
        let answer: serde_json::Value =
            serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap();
        if answer["results"][0]["metrics"][0] == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the API never counted the pageview: {answer}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The admin API opens with the stack's admin token, and only with it.
    let token = first["admin_token"].as_str().unwrap();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let edges = |bearer: &str| {
        let mut r = agent
            .get(&format!("{api}/api/v1/admin/edges"))
            .header("Authorization", &format!("Bearer {bearer}"))
            .call()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().unwrap())
    };
    let (status, body) = edges(token);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"edge-1\""), "{body}");
    assert_eq!(edges(key).0, 401, "a merchant key is not the admin token");

    let out = run(xtask().args(["up", "--detach"]));
    assert!(
        out.status.success(),
        "second up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = stack(state.path());
    for (role, &p) in ["clickhouse", "central", "edge"].iter().zip(&pids) {
        assert_eq!(
            second["pids"][role].as_u64(),
            Some(p),
            "second up must reuse the running {role}"
        );
    }

    let out = run(xtask().arg("down"));
    assert!(
        out.status.success(),
        "down failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    while pids.iter().any(|&p| alive(p)) && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in &pids {
        assert!(!alive(*p), "pid {p} still running after down");
    }
    assert!(!hourglass_testkit::ping(&url));
    assert!(!state.path().join("stack.json").exists());
}
