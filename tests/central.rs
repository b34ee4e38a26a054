//! Running a real `central-ingest serve` for tests (receiver, loader and
//! merchant API in one process, on free loopback ports), and its admin CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use hourglass_testkit::TestDb;

use crate::{binary, run};

pub struct Central {
    pub dir: PathBuf,
    pub quic: SocketAddr,
    pub ops_url: String,
    pub api_url: String,
    child: Option<Child>,
}

impl Central {
    /// Starts on `db`, with the certificates in `certs` (CA and server
    /// certificate made already), the loader on or off, the API on, and
    /// `extra_toml` after the generated settings.
    pub fn start(dir: &Path, certs: &Path, db: &TestDb, loader: bool, extra_toml: &str) -> Central {
        std::fs::create_dir_all(dir).expect("central dir");
        let port = || hourglass_testkit::free_port().expect("a free port");
        let (quic, ops, api) = (port(), port(), port());
        let config = dir.join("central.toml");
        std::fs::write(
            &config,
            format!(
                "quic_listen = \"127.0.0.1:{quic}\"\nops_listen = \"127.0.0.1:{ops}\"\n\
                 archive_dir = \"{archive}\"\ncerts_dir = \"{certs}\"\ncrl_reload_secs = 1\n\
                 {extra_toml}\n\
                 [loader]\nenabled = {loader}\nmax_wait_ms = 200\n\
                 [api]\nenabled = true\nlisten = \"127.0.0.1:{api}\"\nkey_cache_ttl_secs = 1\nresult_cache_secs = 0\n",
                archive = dir.join("archive").display(),
                certs = certs.display(),
            ),
        )
        .expect("central config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("central.log"))
            .expect("central log");
        let child = binary("central-ingest")
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .env("CLICKHOUSE_URL", &db.url)
            .env("CLICKHOUSE_DATABASE", &db.name)
            .env_remove("HOURGLASS_CONFIG")
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("central-ingest starts");
        let mut central = Central {
            dir: dir.to_path_buf(),
            quic: format!("127.0.0.1:{quic}").parse().expect("an address"),
            ops_url: format!("http://127.0.0.1:{ops}"),
            api_url: format!("http://127.0.0.1:{api}"),
            child: Some(child),
        };
        let started = Instant::now();
        loop {
            if let Ok(r) = ureq::get(&format!("{}/api/v1/openapi.json", central.api_url)).call()
                && r.status() == 200
            {
                return central;
            }
            if let Some(status) = central
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("central-ingest exited with {status}:\n{}", central.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "central-ingest did not start:\n{}",
                central.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("central.log")).unwrap_or_default()
    }

    pub fn archive_dir(&self) -> PathBuf {
        self.dir.join("archive")
    }

    /// The value of the first `/metrics` sample starting with `sample`.
    pub fn metric(&self, sample: &str) -> f64 {
        let text = ureq::get(&format!("{}/metrics", self.ops_url))
            .call()
            .expect("metrics answer")
            .body_mut()
            .read_to_string()
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// SIGTERM, and the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().ok()?.code()
    }
}

impl Drop for Central {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Makes a CA and a server certificate for `server_name` in `dir`.
pub fn init_certs(dir: &Path, server_name: &str) {
    for args in [&["init"][..], &["issue-server", server_name]] {
        let out = run(binary("central-ingest")
            .arg("certs")
            .arg("--dir")
            .arg(dir)
            .args(args));
        assert_eq!(out.status.code(), Some(0), "certs {args:?}: {}", text(&out));
    }
}

/// Stdout and stderr of a finished command, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `central-ingest admin ARGS` against `db`.
pub fn admin_raw(db: &TestDb, args: &[&str]) -> Output {
    run(binary("central-ingest")
        .arg("admin")
        .args(args)
        .env("CLICKHOUSE_URL", &db.url)
        .env("CLICKHOUSE_DATABASE", &db.name)
        .env_remove("HOURGLASS_CONFIG"))
}

/// Runs `central-ingest admin ARGS`, asserts success and returns the
/// `name: value` lines it printed.
pub fn admin(db: &TestDb, args: &[&str]) -> Vec<(String, String)> {
    let out = admin_raw(db, args);
    assert_eq!(out.status.code(), Some(0), "admin {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The value of `name` among `admin`'s lines.
pub fn field(lines: &[(String, String)], name: &str) -> String {
    lines
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
        .1
        .clone()
}

/// A merchant with the site `site_id` (`domain`) and an API key for it
/// (rate limit high enough for a reader in a loop); returns the key.
pub fn merchant_with_site(db: &TestDb, site_id: &str, domain: &str) -> String {
    let merchant = field(&admin(db, &["merchant", "add", "Test shop"]), "merchant_id");
    admin(
        db,
        &[
            "site",
            "add",
            "--merchant",
            &merchant,
            "--domain",
            domain,
            "--id",
            site_id,
        ],
    );
    field(
        &admin(
            db,
            &[
                "key",
                "create",
                "--merchant",
                &merchant,
                "--rate-limit",
                "1000000",
            ],
        ),
        "key",
    )
}
