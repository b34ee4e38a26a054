//! Test and dev-stack support: a private ClickHouse server and fresh databases.
//!
//! Owns: starting `clickhouse-server` with a private data directory on free
//! loopback ports (no systemd, no root config), and handing every test its own
//! database so tests run in parallel without seeing each other's data. When
//! `CLICKHOUSE_URL` is set, that server is used instead and nothing is started.
//!
//! Must not: contain product logic or SQL beyond `CREATE/DROP DATABASE`.
//! It is sync (plain HTTP through `ureq`) so any test can use it.

mod server;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub use server::{
    ClickHouseServer, Lifetime, ServerError, free_port, http_get_ok, http_post, ping,
};

/// Where Hourglass keeps local state: `$HOURGLASS_STATE_DIR`, else
/// `<workspace>/target/hourglass`.
pub fn state_dir() -> PathBuf {
    match std::env::var_os("HOURGLASS_STATE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target").join("hourglass"),
    }
}

/// The workspace root: found at run time from `$CARGO_MANIFEST_DIR` (cargo
/// sets it for what it runs) or the current directory, walking up to the
/// directory that holds the workspace's `Cargo.toml` and `xtask/`; else the
/// one this crate was built in. Found at run time because cargo reuses a
/// workspace crate built in another checkout of the same sources when they
/// share a target directory, and a path baked in at build time would then
/// point at that other checkout.
pub fn workspace_root() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let start = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::current_dir().ok());
        start
            .and_then(|dir| {
                dir.ancestors()
                    .find(|d| {
                        d.join("Cargo.toml").is_file() && d.join("xtask/Cargo.toml").is_file()
                    })
                    .map(std::path::Path::to_path_buf)
            })
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")))
    })
    .clone()
}

/// Where `cargo xtask test` installs the npm packages of the browser tests
/// (`<prefix>/node_modules`): `$HOURGLASS_NODE_PREFIX`, else a cache dir.
pub fn node_prefix() -> PathBuf {
    if let Some(p) = std::env::var_os("HOURGLASS_NODE_PREFIX") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/hourglass-node")
}

/// The Python interpreter that has `chdb` (current ClickHouse, embedded):
/// `$HOURGLASS_PYTHON`, else the venv `cargo xtask test` installs.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("HOURGLASS_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/hourglass-venv/bin/python")
}

/// The ClickHouse every test in this process uses: `CLICKHOUSE_URL` when set
/// (`cargo xtask test` starts one server for the whole run and sets it),
/// else one private server started on first use and stopped when this
/// process exits.
pub fn clickhouse_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("CLICKHOUSE_URL") {
            return url.trim_end_matches('/').to_string();
        }
        let dir = state_dir()
            .join("testkit")
            .join(format!("ch-{}", std::process::id()));
        let server = ClickHouseServer::start(&dir, Lifetime::TiedTo(std::process::id()))
            .unwrap_or_else(|e| panic!("cannot start a private ClickHouse for tests: {e}"));
        let url = server.url.clone();
        // The watchdog stops the server when this process exits; the handle
        // must outlive every test, so it is leaked on purpose.
        std::mem::forget(server);
        url
    })
}

/// A database of its own for one test. Dropped (with its data) on drop.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub name: String,
}

/// Creates a new, empty, uniquely named database on the test ClickHouse.
pub fn fresh_database() -> TestDb {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let url = clickhouse_url().to_string();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "hg_test_{}_{}_{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    );
    http_post(&url, &format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("cannot create test database {name} at {url}: {e}"));
    TestDb { url, name }
}

impl TestDb {
    /// Runs one SQL statement (test setup and assertions only) and returns
    /// the response body, e.g. `TSV` rows.
    pub fn query(&self, sql: &str) -> Result<String, ServerError> {
        http_post(&format!("{}/?database={}", self.url, self.name), sql)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Best effort: the private server's data dir goes away anyway.
        let _ = http_post(&self.url, &format!("DROP DATABASE IF EXISTS {}", self.name));
    }
}
