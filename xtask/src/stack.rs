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
    /// Every process `up` started, by role.
    pids: BTreeMap<String, u32>,
}

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

    println!("{}", serde_json::to_string_pretty(&stack)?);
    println!("stack file: {}", stack_file().display());
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
    for (role, &pid) in &stack.pids {
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
