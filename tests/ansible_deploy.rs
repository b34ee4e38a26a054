//! `ops/ansible` for real, on this machine: `site.yml` deploys ClickHouse
//! (a private instance from the `clickhouse` role), central-ingest with the
//! merchant API and two edges (two PoPs), every host under its own prefix in
//! a temporary directory, local connection, the `pidfile` service manager
//! (no systemd here), all on free loopback ports. Then:
//!
//! - hits sent to the deployed edges are found through the deployed API;
//! - a second `site.yml` run changes nothing;
//! - a broken config value fails at the template's `check-config` with the
//!   binary's message, and the running edge keeps its process and config;
//! - `upgrade_edges.yml` (a new release, one edge at a time: drain, switch,
//!   wait for /readyz) under a load generator loses no accepted hit and
//!   duplicates none (counted in ClickHouse);
//! - an edge failing its health check stops the roll before it is touched.
//!
//! Needs `ansible-playbook` from the venv `cargo xtask ansible-check`
//! installs (`$HOURGLASS_ANSIBLE_BIN_DIR`, which `cargo xtask test` sets) and
//! the workspace binaries (`cargo build --workspace --bins`). Every process
//! the playbooks start is stopped by pid from its pid file when the test
//! ends, passed or not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SITE_ID: &str = "deploy-test";
const DOMAIN: &str = "example.com";
const CH_PASSWORD: &str = "deploy-test-password";
const HOSTS: [&str; 4] = ["edge-a", "edge-b", "central-1", "ch-1"];
const EDGES: [&str; 2] = ["edge-a", "edge-b"];

fn ansible_bin_dir() -> PathBuf {
    let dir = std::env::var_os("HOURGLASS_ANSIBLE_BIN_DIR").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/hourglass-ansible-venv/bin")
        },
        PathBuf::from,
    );
    assert!(
        dir.join("ansible-playbook").exists(),
        "no ansible-playbook in {}: run `cargo xtask ansible-check` (it installs ansible-core) \
         or set HOURGLASS_ANSIBLE_BIN_DIR",
        dir.display()
    );
    dir
}

/// `target/<profile>/`, where `cargo build --bins` put the binaries.
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("a test knows its own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps")
        .to_path_buf();
    for b in ["central-ingest", "edge-agent", "warehouse-schema"] {
        assert!(
            dir.join(b).exists(),
            "{} is not built: run `cargo build --workspace --bins`",
            dir.join(b).display()
        );
    }
    dir
}

/// Alive and not a zombie (PID 1 here does not reap orphans).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

struct Ports {
    ch_http: u16,
    ch_tcp: u16,
    quic: u16,
    central_ops: u16,
    api: u16,
    edges: Vec<(u16, u16)>,
}

/// The deployment under a temporary directory; stops what it started.
struct Deployment {
    dir: tempfile::TempDir,
    ports: Ports,
    ansible: PathBuf,
}

impl Drop for Deployment {
    /// Every pid file the supervisor wrote, edges first (they drain into
    /// central), then central, then ClickHouse: SIGTERM, SIGKILL after 30 s.
    fn drop(&mut self) {
        for host in HOSTS {
            let run = self.prefix(host).join("run/hourglass");
            let Ok(entries) = std::fs::read_dir(&run) else {
                continue;
            };
            for entry in entries.flatten() {
                let Some(pid) = std::fs::read_to_string(entry.path())
                    .ok()
                    .and_then(|p| p.trim().parse::<u32>().ok())
                else {
                    continue;
                };
                if !alive(pid) {
                    continue;
                }
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
                let started = Instant::now();
                while alive(pid) && started.elapsed() < Duration::from_secs(30) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if alive(pid) {
                    let _ = Command::new("kill")
                        .arg("-KILL")
                        .arg(pid.to_string())
                        .status();
                }
            }
        }
    }
}

struct Run {
    ok: bool,
    output: String,
}

impl Run {
    /// `host -> (changed, failed)` from the PLAY RECAP.
    fn recap(&self) -> BTreeMap<String, (u32, u32)> {
        let field = |line: &str, name: &str| -> u32 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
                .unwrap_or(u32::MAX)
        };
        self.output
            .lines()
            .skip_while(|l| !l.starts_with("PLAY RECAP"))
            .filter(|l| l.contains(" ok="))
            .filter_map(|l| {
                let host = l.split_whitespace().next()?.to_owned();
                Some((host, (field(l, "changed"), field(l, "failed"))))
            })
            .collect()
    }
}

impl Deployment {
    fn new() -> Deployment {
        let port = || hourglass_testkit::free_port().expect("a free port");
        let ports = Ports {
            ch_http: port(),
            ch_tcp: port(),
            quic: port(),
            central_ops: port(),
            api: port(),
            edges: EDGES.iter().map(|_| (port(), port())).collect(),
        };
        let d = Deployment {
            dir: tempfile::Builder::new()
                .prefix("hourglass-ansible-")
                .tempdir()
                .expect("a temp dir"),
            ports,
            ansible: ansible_bin_dir(),
        };
        std::fs::write(d.dir.path().join("inventory.yml"), d.inventory()).unwrap();
        d
    }

    fn prefix(&self, host: &str) -> PathBuf {
        self.dir.path().join(host)
    }

    fn inventory(&self) -> String {
        let p = &self.ports;
        let root = self.dir.path().display();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        let mut edges = String::new();
        for (name, (listen, ops)) in EDGES.iter().zip(&p.edges) {
            edges.push_str(&format!(
                "        {name}:\n          hourglass_prefix: {root}/{name}\n          \
                 edge_agent_listen: 127.0.0.1:{listen}\n          edge_agent_ops_listen: 127.0.0.1:{ops}\n"
            ));
        }
        format!(
            r#"# Written by tests/ansible_deploy.rs: every host is this machine.
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
    # Running as the deploying user into a prefix: no become, no system user.
    ansible_become: false
    hourglass_manage_user: false
    hourglass_user: {user}
    hourglass_admin_user: {user}
    hourglass_service_manager: pidfile
    hourglass_build_dir: {build}
    hourglass_server_name: central.hourglass.test
    hourglass_quic_port: {quic}
    hourglass_clickhouse_url: http://127.0.0.1:{ch_http}
    vault_clickhouse_password: {CH_PASSWORD}
    vault_hourglass_master_secret: deploy-test-master-secret-0123456789
  children:
    clickhouse:
      hosts:
        ch-1:
          ansible_host: 127.0.0.1
          hourglass_prefix: {root}/ch-1
          clickhouse_instance: private
          clickhouse_apt_update_cache: false
          clickhouse_run_user: {user}
          clickhouse_listen_hosts: ["127.0.0.1"]
          clickhouse_http_port: {ch_http}
          clickhouse_tcp_port: {ch_tcp}
    central:
      hosts:
        central-1:
          ansible_host: 127.0.0.1
          hourglass_prefix: {root}/central-1
          central_ingest_quic_listen: 127.0.0.1:{quic}
          central_ingest_ops_listen: 127.0.0.1:{central_ops}
          central_ingest_log_format: human
          central_ingest_api_enabled: true
          central_ingest_api_listen: 127.0.0.1:{api}
          central_ingest_api_result_cache_secs: 0
    edges:
      vars:
        edge_agent_log_format: human
        # A 202 before the fsync: only the SIGTERM drain keeps accepted hits
        # across a restart, so the roll below tests the drain.
        edge_agent_durability: interval
        edge_agent_batch_max_age_ms: 200
        # One client address sends everything here.
        edge_agent_rate_limit: {{per_ip_per_sec: 0, per_ip_burst: 0, per_site_per_sec: 0, per_site_burst: 0}}
        edge_agent_sites:
          - site_id: {SITE_ID}
            domain: {DOMAIN}
            allowed_hostnames: ["*"]
            timezone: UTC
            ga4: []
            segment_write_keys: []
      hosts:
{edges}"#,
            build = build_dir().display(),
            quic = p.quic,
            ch_http = p.ch_http,
            ch_tcp = p.ch_tcp,
            central_ops = p.central_ops,
            api = p.api,
        )
    }

    /// Runs a playbook; its output is kept in the temp dir and returned.
    fn playbook(&self, playbook: &str, extra: &[&str], label: &str) -> Run {
        let dir = hourglass_testkit::workspace_root().join("ops/ansible");
        let mut cmd = Command::new(self.ansible.join("ansible-playbook"));
        cmd.current_dir(&dir)
            .arg("-i")
            .arg(self.dir.path().join("inventory.yml"))
            .arg(playbook)
            .args(extra)
            .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("PATH", {
                let mut paths = vec![self.ansible.clone()];
                paths.extend(std::env::split_paths(
                    &std::env::var_os("PATH").unwrap_or_default(),
                ));
                std::env::join_paths(paths).unwrap()
            });
        // The test harness's ClickHouse and settings must not leak into the
        // deployed services' check-config, migrations or admin commands.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("CLICKHOUSE_") || k.starts_with("HOURGLASS_") {
                cmd.env_remove(&key);
            }
        }
        let started = Instant::now();
        let out = cmd.output().expect("ansible-playbook starts");
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(self.dir.path().join(format!("{label}.log")), &output).unwrap();
        eprintln!(
            "ansible-playbook {playbook} ({label}): {} in {:.0} s",
            out.status,
            started.elapsed().as_secs_f64()
        );
        Run {
            ok: out.status.success(),
            output,
        }
    }

    fn pid(&self, host: &str, service: &str) -> u32 {
        let path = self
            .prefix(host)
            .join(format!("run/hourglass/{service}.pid"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .unwrap()
    }

    fn edge_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports.edges[i].0)
    }

    fn ready(&self, i: usize) -> bool {
        hourglass_testkit::http_get_ok(&format!(
            "http://127.0.0.1:{}/readyz",
            self.ports.edges[i].1
        ))
    }

    /// SQL against the deployed ClickHouse as the `hourglass` user.
    fn sql(&self, sql: &str) -> String {
        hourglass_testkit::http_post(
            &format!(
                "http://127.0.0.1:{}/?user=hourglass&password={CH_PASSWORD}&database=hourglass",
                self.ports.ch_http
            ),
            sql,
        )
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// `central-ingest admin …` with the deployed binary and config, as an
    /// operator on the central host would.
    fn admin(&self, args: &[&str]) -> BTreeMap<String, String> {
        let prefix = self.prefix("central-1");
        let out = Command::new(prefix.join("opt/hourglass/current/bin/central-ingest"))
            .arg("admin")
            .args(args)
            .arg("--config")
            .arg(prefix.join("etc/hourglass/central.toml"))
            .env_remove("CLICKHOUSE_URL")
            .env_remove("CLICKHOUSE_DATABASE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Pageviews of the site, through the deployed merchant API.
    fn api_pageviews(&self, key: &str) -> u64 {
        let mut answer = ureq::post(&format!("http://127.0.0.1:{}/api/v1/query", self.ports.api))
            .header("Authorization", &format!("Bearer {key}"))
            .send(format!(
                r#"{{"site_id":"{DOMAIN}","metrics":["pageviews"],"date_range":"all"}}"#
            ))
            .expect("the API answers");
        let answer: serde_json::Value =
            serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap();
        answer["results"][0]["metrics"][0]
            .as_u64()
            .unwrap_or_else(|| panic!("no pageviews in {answer}"))
    }

    fn dump_logs(&self) -> String {
        let mut text = String::new();
        for host in HOSTS {
            let logs = self.prefix(host).join("var/log/hourglass");
            for entry in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
                let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = body.lines().rev().take(30).collect();
                text.push_str(&format!("--- {}\n", entry.path().display()));
                for l in tail.iter().rev() {
                    text.push_str(l);
                    text.push('\n');
                }
            }
        }
        text
    }
}

/// Fails the test with the end of the playbook's output and the services' logs.
fn fail(what: &str, run: &Run, d: &Deployment) -> ! {
    let lines: Vec<&str> = run.output.lines().collect();
    panic!(
        "{what}\n{}\n{}",
        lines[lines.len().saturating_sub(80)..].join("\n"),
        d.dump_logs()
    )
}

/// One beacon to an edge: `Some(true)` 202, `Some(false)` refused or
/// answered otherwise (nothing accepted), `None` when the request may have
/// reached the edge but no answer came back.
fn post_hit(url: &str, path: &str) -> Option<bool> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let body = format!(r#"{{"n":"pageview","u":"https://{DOMAIN}{path}","d":"{DOMAIN}"}}"#);
    match agent
        .post(&format!("{url}/api/event"))
        .header("Content-Type", "text/plain")
        // One connection per hit: a draining edge closes its listener, so
        // a hit is either refused before it is sent or answered.
        .header("Connection", "close")
        .send(body)
    {
        Ok(r) => Some(r.status().as_u16() == 202),
        Err(ureq::Error::ConnectionFailed) => Some(false),
        Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(false),
        Err(_) => None,
    }
}

/// Hits to both edges in turn (as a load balancer would spread them) until
/// `stop`; returns the paths answered 202 and the number of unanswered sends.
fn load(urls: Vec<String>, stop: Arc<AtomicBool>, thread: usize) -> (Vec<String>, u64) {
    let mut accepted = Vec::new();
    let mut unanswered = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let path = format!("/roll/{thread}-{n}");
        match post_hit(&urls[n as usize % urls.len()], &path) {
            Some(true) => accepted.push(path),
            Some(false) => std::thread::sleep(Duration::from_millis(20)),
            None => unanswered += 1,
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    (accepted, unanswered)
}

#[test]
fn site_yml_deploys_idempotently_refuses_a_bad_config_and_an_edge_roll_loses_nothing() {
    let started = Instant::now();
    let d = Deployment::new();
    let fail = |what: &str, run: &Run| fail(what, run, &d);

    // 1. Deploy everything.
    let first = d.playbook("site.yml", &[], "site-1");
    if !first.ok {
        fail("site.yml failed", &first);
    }
    let recap = first.recap();
    assert_eq!(recap.len(), HOSTS.len(), "{recap:?}");
    for i in 0..EDGES.len() {
        assert!(d.ready(i), "edge {i} is not ready after site.yml");
    }

    // The demo merchant, its site and a key, then hits through the edges,
    // found through the API.
    let merchant = d.admin(&["merchant", "add", "Deploy test"]);
    let merchant = merchant["merchant_id"].clone();
    d.admin(&[
        "site",
        "add",
        "--merchant",
        &merchant,
        "--domain",
        DOMAIN,
        "--id",
        SITE_ID,
    ]);
    let key = d.admin(&["key", "create", "--merchant", &merchant])["key"].clone();
    for n in 0..20 {
        let edge = d.edge_url(n % EDGES.len());
        assert_eq!(
            post_hit(&edge, &format!("/first/{n}")),
            Some(true),
            "hit {n} to {edge}"
        );
    }
    let waited = Instant::now();
    while d.api_pageviews(&key) != 20 {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the API shows {} pageviews, 20 were sent\n{}",
            d.api_pageviews(&key),
            d.dump_logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // 2. Again: nothing changes.
    let second = d.playbook("site.yml", &[], "site-2");
    if !second.ok {
        fail("second site.yml failed", &second);
    }
    let recap = second.recap();
    assert_eq!(recap.len(), HOSTS.len(), "{recap:?}");
    for (host, (changed, failed)) in &recap {
        assert_eq!((*changed, *failed), (0, 0), "second run, {host}: {recap:?}");
    }
    eprintln!("second site.yml run: {recap:?}");

    // 3. A broken value: check-config refuses the template, the running
    // edge keeps its process and its config.
    let config = d.prefix("edge-a").join("etc/hourglass/edge.toml");
    let config_before = std::fs::read_to_string(&config).unwrap();
    let pid_before = d.pid("edge-a", "hourglass-edge-agent");
    let broken = d.playbook(
        "site.yml",
        &["--limit", "edge-a", "-e", "edge_agent_batch_max_hits=0"],
        "site-broken",
    );
    assert!(!broken.ok, "a zero batch size must fail the play");
    let fatal = broken
        .output
        .split("TASK [")
        .find(|t| t.contains("fatal:"))
        .unwrap_or_else(|| fail("no failed task", &broken));
    assert!(
        fatal.starts_with("edge_agent : Write edge.toml (checked by `edge-agent check-config`)"),
        "the play must fail at the config template: {fatal}"
    );
    assert!(
        fatal.contains("batch.max_hits: must be greater than 0"),
        "the failure must carry check-config's message: {fatal}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), config_before);
    assert_eq!(d.pid("edge-a", "hourglass-edge-agent"), pid_before);
    assert!(alive(pid_before) && d.ready(0), "edge-a must keep running");
    assert_eq!(post_hit(&d.edge_url(0), "/after-broken"), Some(true));

    // 4. Roll a new release over the edges under load.
    let before: Vec<u32> = EDGES
        .iter()
        .map(|e| d.pid(e, "hourglass-edge-agent"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..2)
        .map(|t| {
            let urls: Vec<String> = (0..EDGES.len()).map(|i| d.edge_url(i)).collect();
            let stop = stop.clone();
            std::thread::spawn(move || load(urls, stop, t))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let roll = d.playbook(
        "upgrade_edges.yml",
        &["-e", "hourglass_release=v2"],
        "upgrade",
    );
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let mut accepted = Vec::new();
    let mut unanswered = 0;
    for l in loaders {
        let (a, u) = l.join().unwrap();
        accepted.extend(a);
        unanswered += u;
    }
    if !roll.ok {
        fail("upgrade_edges.yml failed", &roll);
    }
    for (i, edge) in EDGES.iter().enumerate() {
        let pid = d.pid(edge, "hourglass-edge-agent");
        assert_ne!(pid, before[i], "{edge} was not restarted");
        let current = std::fs::read_link(d.prefix(edge).join("opt/hourglass/current")).unwrap();
        assert!(
            current.ends_with("releases/v2"),
            "{edge}: current -> {}",
            current.display()
        );
        assert!(d.ready(i), "{edge} is not ready after the roll");
    }

    // Every accepted hit lands exactly once.
    let count_rows = || -> BTreeMap<String, u64> {
        d.sql(&format!(
            "SELECT pathname, count() FROM events WHERE site_id = '{SITE_ID}' \
             AND pathname LIKE '/roll/%' GROUP BY pathname FORMAT TSV"
        ))
        .lines()
        .filter_map(|l| {
            let (p, n) = l.split_once('\t')?;
            Some((p.to_owned(), n.parse().ok()?))
        })
        .collect()
    };
    let waited = Instant::now();
    let mut rows = count_rows();
    while accepted.iter().any(|p| !rows.contains_key(p))
        && waited.elapsed() < Duration::from_secs(90)
    {
        std::thread::sleep(Duration::from_millis(500));
        rows = count_rows();
    }
    let lost: Vec<&String> = accepted.iter().filter(|p| !rows.contains_key(*p)).collect();
    let duplicated: Vec<(&String, &u64)> = rows.iter().filter(|(_, n)| **n > 1).collect();
    let stored: u64 = rows.values().sum();
    eprintln!(
        "roll under load: {} hits answered 202, {} unanswered sends, {} rows in ClickHouse, \
         {} lost, {} duplicated",
        accepted.len(),
        unanswered,
        stored,
        lost.len(),
        duplicated.len()
    );
    assert!(
        accepted.len() > 100,
        "the load generator barely ran: {}",
        accepted.len()
    );
    assert!(
        lost.is_empty(),
        "{} of {} accepted hits are not in ClickHouse, e.g. {:?}\n{}",
        lost.len(),
        accepted.len(),
        &lost[..lost.len().min(5)],
        d.dump_logs()
    );
    assert!(duplicated.is_empty(), "stored twice: {duplicated:?}");
    // Rows without a 202 can only come from sends whose answer was lost.
    assert!(
        stored <= accepted.len() as u64 + unanswered,
        "{stored} rows for {} accepted hits and {unanswered} unanswered sends",
        accepted.len()
    );
    // And the API sees them all: the first 20, one after the broken run,
    // and the roll.
    assert_eq!(d.api_pageviews(&key), 21 + stored);
    for edge in EDGES {
        let log = std::fs::read_to_string(
            d.prefix(edge)
                .join("var/log/hourglass/hourglass-edge-agent.log"),
        )
        .unwrap();
        assert!(
            log.contains("edge agent stopped"),
            "{edge} did not drain:\n{log}"
        );
    }

    // 5. An edge that fails its health check stops the roll before any
    // edge is touched: nothing answers on this port.
    let pids: Vec<u32> = EDGES
        .iter()
        .map(|e| d.pid(e, "hourglass-edge-agent"))
        .collect();
    let closed = hourglass_testkit::free_port().unwrap();
    let stopped = d.playbook(
        "upgrade_edges.yml",
        &[
            "-e",
            "hourglass_release=v3",
            "-e",
            &format!("edge_agent_ready_url=http://127.0.0.1:{closed}/readyz"),
        ],
        "upgrade-unhealthy",
    );
    assert!(!stopped.ok, "the roll must stop at an unready edge");
    let recap = stopped.recap();
    assert_eq!(recap.get("edge-a").map(|r| r.1), Some(1), "{recap:?}");
    assert!(
        !stopped.output.contains("[edge-b]"),
        "edge-b must not be touched once edge-a failed:\n{}",
        stopped.output
    );
    for (i, edge) in EDGES.iter().enumerate() {
        assert_eq!(d.pid(edge, "hourglass-edge-agent"), pids[i]);
        let current = std::fs::read_link(d.prefix(edge).join("opt/hourglass/current")).unwrap();
        assert!(
            current.ends_with("releases/v2"),
            "{edge}: current -> {}",
            current.display()
        );
    }
    eprintln!(
        "deploy test done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
