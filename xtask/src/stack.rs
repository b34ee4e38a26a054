//! `cargo xtask up|down`: the local stack. What it started is written to
//! `target/hourglass/stack.json` so `down`, tests, benchmarks and people can
//! find it; `up --detach` is idempotent and starts only what is not running.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hourglass_testkit::{ClickHouseServer, Lifetime};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use hourglass_warehouse::{Warehouse, WarehouseConfig};

use crate::install;

const DATABASE: &str = "hourglass";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stack {
    clickhouse_url: String,
    database: String,
    /// Where beacons go (the tracker is at `<edge_url>/js/script.js`).
    #[serde(default)]
    edge_url: String,
    /// The demo site.
    #[serde(default)]
    site_id: String,
    #[serde(default)]
    site_domain: String,
    #[serde(default)]
    ga4_measurement_id: String,
    #[serde(default)]
    ga4_api_secret: String,
    #[serde(default)]
    segment_write_key: String,
    /// The merchant API and dashboard (`<api_url>/dashboard#key=<api_key>`).
    #[serde(default)]
    api_url: String,
    /// A key of the demo merchant (shown once by `admin key create`).
    #[serde(default)]
    api_key: String,
    /// The admin token of `<api_url>/api/v1/admin/…` (central's config has
    /// only its SHA-256).
    #[serde(default)]
    admin_token: String,
    /// Every process `up` started, by role.
    pids: BTreeMap<String, u32>,
}

const SITE_ID: &str = "demo";
const SITE_DOMAIN: &str = "example.com";
const EDGE_ID: &str = "edge-1";
const SERVER_NAME: &str = "central.hourglass.local";

fn stack_file() -> PathBuf {
    hourglass_testkit::state_dir().join("stack.json")
}

fn read_stack() -> Option<Stack> {
    let text = std::fs::read_to_string(stack_file()).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_stack(stack: &Stack) -> Result<()> {
    let path = stack_file();
    std::fs::create_dir_all(path.parent().context("stack file has a parent")?)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(stack)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// Alive and not a zombie (PID 1 here may not reap orphans).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

pub fn up(detach: bool) -> Result<()> {
    let mut stack = read_stack().unwrap_or_default();
    stack.database = DATABASE.to_string();

    if let Ok(url) = std::env::var("CLICKHOUSE_URL") {
        stack.clickhouse_url = url.trim_end_matches('/').to_string();
        stack.pids.remove("clickhouse");
    } else if stack.pids.get("clickhouse").is_some_and(|&p| alive(p))
        && hourglass_testkit::ping(&stack.clickhouse_url)
    {
        eprintln!(
            "xtask: ClickHouse already running at {}",
            stack.clickhouse_url
        );
    } else {
        install::clickhouse()?;
        let dir = hourglass_testkit::state_dir()
            .join("stack")
            .join("clickhouse");
        let server = ClickHouseServer::start(&dir, Lifetime::Detached)?;
        stack.clickhouse_url = server.url.clone();
        stack.pids.insert("clickhouse".into(), server.detach());
        eprintln!("xtask: started ClickHouse at {}", stack.clickhouse_url);
    }
    write_stack(&stack)?;

    migrate(&stack)?;
    services(&mut stack)?;
    write_stack(&stack)?;

    println!("{}", serde_json::to_string_pretty(&stack)?);
    println!("stack file: {}", stack_file().display());
    println!(
        "dashboard: {}/dashboard?site={}#key={}",
        stack.api_url, stack.site_domain, stack.api_key
    );
    println!(
        "tracker snippet:\n  <script defer data-domain=\"{}\" src=\"{}/js/script.js\"></script>",
        stack.site_domain, stack.edge_url
    );
    if detach {
        println!("stop it with: cargo xtask down");
        return Ok(());
    }
    println!("press Ctrl-C to stop");
    wait_for_interrupt()?;
    down()
}

fn migrate(stack: &Stack) -> Result<()> {
    let config = WarehouseConfig {
        url: stack.clickhouse_url.clone(),
        database: stack.database.clone(),
        ..WarehouseConfig::default()
    };
    let warehouse = Warehouse::new(&config)?;
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(warehouse_schema::migrate(&warehouse))?;
    eprintln!(
        "xtask: schema migrated ({} applied, {} already applied)",
        report.applied.len(),
        report.already_applied
    );
    Ok(())
}

/// A random secret, hex-encoded.
fn secret(bytes: usize) -> Result<String> {
    use std::io::Read as _;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `path` once: later `up`s keep the ports, keys and secrets.
fn write_once(path: &std::path::Path, make: impl FnOnce() -> Result<String>) -> Result<()> {
    if !path.exists() {
        std::fs::write(path, make()?)?;
    }
    Ok(())
}

/// The binaries to run: `$HOURGLASS_BIN_DIR` (tests set it to their own
/// target dir), else a fresh `cargo build`.
fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HOURGLASS_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    crate::run_cmd(crate::cargo().args([
        "build",
        "--quiet",
        "--package",
        "central-ingest",
        "--package",
        "edge-agent",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || hourglass_testkit::workspace_root().join("target"),
        PathBuf::from,
    );
    Ok(target.join("debug"))
}

/// Central ingest and one edge, with generated certificates and the demo
/// site; starts whichever is not running.
fn services(stack: &mut Stack) -> Result<()> {
    let dir = hourglass_testkit::state_dir().join("stack");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&dir)?;
    let cert_dir = hourglass_pki::CertDir::new(&certs);
    let now = std::time::SystemTime::now();
    if !cert_dir.ca_cert_path().exists() {
        cert_dir.init(now)?;
        cert_dir.issue_server(&[SERVER_NAME, "127.0.0.1"], now)?;
        cert_dir.issue_edge(&hourglass_pki::EdgeName::new(EDGE_ID)?, now)?;
    }
    let edge_name = hourglass_pki::EdgeName::new(EDGE_ID)?;
    let port = || hourglass_testkit::free_port().map_err(anyhow::Error::from);

    let central_toml = dir.join("central.toml");
    write_once(&central_toml, || {
        Ok(format!(
            "ops_listen = \"127.0.0.1:{ops}\"\nquic_listen = \"127.0.0.1:{quic}\"\narchive_dir = \"{archive}\"\ncerts_dir = \"{certs}\"\n\n[warehouse]\nurl = \"{url}\"\ndatabase = \"{db}\"\n\n[api]\nenabled = true\nlisten = \"127.0.0.1:{api}\"\n",
            ops = port()?,
            quic = port()?,
            api = port()?,
            archive = dir.join("archive").display(),
            certs = certs.display(),
            url = stack.clickhouse_url,
            db = stack.database,
        ))
    })?;
    let token_file = dir.join("admin.token");
    write_once(&token_file, || secret(32))?;
    stack.admin_token = std::fs::read_to_string(&token_file)?.trim().to_owned();
    let mut central: toml::Table = toml::from_str(&std::fs::read_to_string(&central_toml)?)?;
    // Also into a config an earlier `up` wrote without it.
    let token_sha256 = hourglass_warehouse::metadata::hash_api_key(&stack.admin_token);
    let api = central
        .entry("api")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(api) = api.as_table_mut()
        && api.get("admin_token_sha256").and_then(|v| v.as_str()) != Some(token_sha256.as_str())
    {
        api.insert(
            "admin_token_sha256".into(),
            toml::Value::String(token_sha256),
        );
        std::fs::write(&central_toml, toml::to_string(&central)?)?;
    }
    stack.api_url = format!(
        "http://{}",
        central
            .get("api")
            .and_then(|a| a.get("listen"))
            .and_then(|v| v.as_str())
            .context("central.toml has [api] listen")?
    );
    let quic = central
        .get("quic_listen")
        .and_then(|v| v.as_str())
        .context("central.toml has quic_listen")?
        .to_owned();

    // The demo site's GA4 stream and Segment write key: made once, written
    // to the metadata by `demo_merchant`, and brought to the edge by the
    // control channel.
    let demo = dir.join("demo-site.json");
    write_once(&demo, || {
        Ok(serde_json::json!({
            "ga4_measurement_id": "G-DEMO0001",
            "ga4_api_secret": secret(12)?,
            "segment_write_key": format!("wk_{}", secret(12)?),
        })
        .to_string())
    })?;
    write_once(&dir.join("master.key"), || secret(32))?;
    let edge_toml = dir.join("edge.toml");
    write_once(&edge_toml, || {
        Ok(format!(
            "edge_id = \"{EDGE_ID}\"\nlisten = \"127.0.0.1:{listen}\"\nops_listen = \"127.0.0.1:{ops}\"\nbuffer_dir = \"{buffer}\"\nmaster_secret_file = \"{key}\"\n\n[control]\nenabled = true\ncache_dir = \"{control}\"\npoll_interval_ms = 1000\n\n[central]\nendpoints = [\"{quic}\"]\nserver_name = \"{SERVER_NAME}\"\nca_file = \"{ca}\"\ncert_file = \"{cert}\"\nkey_file = \"{ekey}\"\n",
            listen = port()?,
            ops = port()?,
            buffer = dir.join("buffer").display(),
            control = dir.join("control").display(),
            key = dir.join("master.key").display(),
            ca = cert_dir.ca_cert_path().display(),
            cert = cert_dir.edge_cert_path(&edge_name).display(),
            ekey = cert_dir.edge_key_path(&edge_name).display(),
        ))
    })?;
    let edge: toml::Table = toml::from_str(&std::fs::read_to_string(&edge_toml)?)?;
    stack.edge_url = format!(
        "http://{}",
        edge.get("listen")
            .and_then(|v| v.as_str())
            .context("edge.toml has listen")?
    );
    let site: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&demo)?)?;
    let text = |key: &str| site[key].as_str().unwrap_or_default().to_owned();
    stack.site_id = SITE_ID.into();
    stack.site_domain = SITE_DOMAIN.into();
    stack.ga4_measurement_id = text("ga4_measurement_id");
    stack.ga4_api_secret = text("ga4_api_secret");
    stack.segment_write_key = text("segment_write_key");

    let bins = bin_dir()?;
    if stack.api_key.is_empty() {
        demo_merchant(stack, &bins.join("central-ingest"), &central_toml)?;
    }
    for (role, binary, config) in [
        ("central", "central-ingest", &central_toml),
        ("edge", "edge-agent", &edge_toml),
    ] {
        if stack.pids.get(role).is_some_and(|&p| alive(p)) {
            eprintln!("xtask: {role} already running");
            continue;
        }
        let log = std::fs::File::create(dir.join(format!("{role}.log")))?;
        let child = std::process::Command::new(bins.join(binary))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env_remove("CLICKHOUSE_URL")
            .env_remove("CLICKHOUSE_DATABASE")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bins.join(binary).display()))?;
        stack.pids.insert(role.into(), child.id());
        eprintln!(
            "xtask: started {role} (pid {}), log in {}",
            child.id(),
            dir.join(format!("{role}.log")).display()
        );
    }
    let started = Instant::now();
    while !hourglass_testkit::http_get_ok(&format!("{}/healthz", stack.edge_url)) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the edge did not answer within 30 s; see {}",
            dir.join("edge.log").display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Ready once the control channel has brought the sites.
    let ops = edge
        .get("ops_listen")
        .and_then(|v| v.as_str())
        .context("edge.toml has ops_listen")?;
    while !has_control_state(ops) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the edge got no site directory from central within 30 s; see {} and {}",
            dir.join("edge.log").display(),
            dir.join("central.log").display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Whether the edge whose ops endpoint is `ops` runs on a control state.
fn has_control_state(ops: &str) -> bool {
    let Ok(mut response) = ureq::get(&format!("http://{ops}/metrics")).call() else {
        return false;
    };
    let text = response.body_mut().read_to_string().unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("hourglass_edge_control_state_version "))
        .any(|v| v.trim().parse::<f64>().is_ok_and(|v| v > 0.0))
}

/// The demo merchant, its site (the edge's demo site id) and an API key,
/// made once with `central-ingest admin` as an operator would.
fn demo_merchant(
    stack: &mut Stack,
    central: &std::path::Path,
    config: &std::path::Path,
) -> Result<()> {
    let admin = |args: &[&str]| -> Result<BTreeMap<String, String>> {
        let out = std::process::Command::new(central)
            .arg("admin")
            .args(args)
            .arg("--config")
            .arg(config)
            .env_remove("CLICKHOUSE_URL")
            .env_remove("CLICKHOUSE_DATABASE")
            .output()
            .with_context(|| format!("running {}", central.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "central-ingest admin {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    };
    let merchant = admin(&["merchant", "add", "Demo merchant"])?;
    let merchant_id = merchant
        .get("merchant_id")
        .context("admin prints merchant_id")?
        .clone();
    let ga4 = format!("{}:{}", stack.ga4_measurement_id, stack.ga4_api_secret);
    admin(&[
        "site",
        "add",
        "--merchant",
        &merchant_id,
        "--domain",
        SITE_DOMAIN,
        "--id",
        SITE_ID,
        "--allowed-hostname",
        "*",
        "--ga4",
        &ga4,
        "--segment-write-key",
        &stack.segment_write_key,
    ])?;
    let key = admin(&["key", "create", "--merchant", &merchant_id])?;
    stack.api_key = key.get("key").context("admin prints the key")?.clone();
    Ok(())
}

fn wait_for_interrupt() -> Result<()> {
    use nix::sys::signal::{SigSet, Signal::SIGINT, Signal::SIGTERM};
    let mut set = SigSet::empty();
    set.add(SIGINT);
    set.add(SIGTERM);
    set.thread_block()?;
    set.wait()?;
    Ok(())
}

pub fn down() -> Result<()> {
    let Some(stack) = read_stack() else {
        eprintln!("xtask: no stack file, nothing to stop");
        return Ok(());
    };
    // Edges first (they drain into central), then central, then ClickHouse.
    let rank = |role: &str| {
        ["edge", "central", "clickhouse"]
            .iter()
            .position(|r| *r == role)
    };
    let mut order: Vec<(&String, &u32)> = stack.pids.iter().collect();
    order.sort_by_key(|(role, _)| rank(role));
    for (role, &pid) in order {
        if !alive(pid) {
            continue;
        }
        eprintln!("xtask: stopping {role} (pid {pid})");
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        let started = Instant::now();
        while alive(pid) && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if alive(pid) {
            eprintln!("xtask: {role} ignored SIGTERM for 30 s, killing it");
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
    std::fs::remove_file(stack_file())?;
    eprintln!("xtask: stack stopped");
    Ok(())
}
