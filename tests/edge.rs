//! Running a real `edge-agent` process for tests: its certificates, site
//! directory, secret and config in a temp dir, on free loopback ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::SystemTime;

use hourglass_pki::{CertDir, EdgeName};

use crate::receiver::SERVER_NAME;

pub const EDGE_ID: &str = "edge-test";
pub const SITE_ID: &str = "site-1";
pub const DOMAIN: &str = "example.com";
pub const GA4_ID: &str = "G-TEST123";
pub const GA4_SECRET: &str = "ga4-secret-1";
pub const WRITE_KEY: &str = "wk_test_1";
pub const MASTER_SECRET: &[u8] = b"test master secret, 32 bytes ok!";

pub struct Edge {
    pub dir: PathBuf,
    pub url: String,
    pub ops_url: String,
    pub config: PathBuf,
    child: Option<Child>,
}

/// Writes everything an edge needs into `dir` (certs in `certs`, which must
/// hold the CA already) and returns its config path.
pub fn prepare(
    dir: &Path,
    certs: &Path,
    central: SocketAddr,
    extra_toml: &str,
) -> (PathBuf, String, String) {
    std::fs::create_dir_all(dir).unwrap();
    let cert_dir = CertDir::new(certs);
    let name = EdgeName::new(EDGE_ID).unwrap();
    if !cert_dir.edge_cert_path(&name).exists() {
        cert_dir.issue_edge(&name, SystemTime::now()).unwrap();
    }
    let sites = serde_json::json!({
        "version": 1,
        "sites": [{
            "site_id": SITE_ID,
            "domain": DOMAIN,
            "timezone": "Europe/Zurich",
            "ga4": [{"measurement_id": GA4_ID, "api_secret": GA4_SECRET}],
            "segment_write_keys": [WRITE_KEY]
        }]
    });
    std::fs::write(dir.join("sites.json"), sites.to_string()).unwrap();
    std::fs::write(dir.join("master.key"), MASTER_SECRET).unwrap();
    let port = hourglass_testkit::free_port().unwrap();
    let ops = hourglass_testkit::free_port().unwrap();
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            r#"edge_id = "{EDGE_ID}"
listen = "127.0.0.1:{port}"
ops_listen = "127.0.0.1:{ops}"
buffer_dir = "{buffer}"
sites_file = "{sites}"
master_secret_file = "{secret}"
max_body_bytes = 65536
{extra_toml}

[batch]
max_hits = 50
max_age_ms = 200

[central]
endpoints = ["{central}"]
server_name = "{SERVER_NAME}"
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"
"#,
            buffer = dir.join("buffer").display(),
            sites = dir.join("sites.json").display(),
            secret = dir.join("master.key").display(),
            ca = cert_dir.ca_cert_path().display(),
            cert = cert_dir.edge_cert_path(&name).display(),
            key = cert_dir.edge_key_path(&name).display(),
        ),
    )
    .unwrap();
    (
        config,
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{ops}"),
    )
}

/// One `[[plugins]]` entry running `component` (as `cargo xtask plugins`
/// builds it) under `name`; `config` goes in a TOML basic string, so
/// write line breaks as `\\n`.
pub fn plugin_toml(
    name: &str,
    component: &str,
    policy: &str,
    config: &str,
    data_file: Option<&Path>,
) -> String {
    let path = hourglass_testkit::state_dir()
        .join("plugins")
        .join(format!("{component}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the plugins first (`cargo xtask plugins`)",
        path.display()
    );
    let data = data_file
        .map(|d| format!("data_file = \"{}\"\n", d.display()))
        .unwrap_or_default();
    format!(
        "[[plugins]]\nname = \"{name}\"\npath = \"{}\"\non_failure = \"{policy}\"\nconfig = \"{config}\"\n{data}",
        path.display()
    )
}

impl Edge {
    pub fn start(dir: &Path, certs: &Path, central: SocketAddr, extra_toml: &str) -> Edge {
        let (config, url, ops_url) = prepare(dir, certs, central, extra_toml);
        let mut edge = Edge {
            dir: dir.to_path_buf(),
            url,
            ops_url,
            config,
            child: None,
        };
        edge.spawn();
        edge
    }

    /// Starts the process (again) and waits until it answers.
    pub fn spawn(&mut self) {
        let mut cmd = crate::binary("edge-agent");
        cmd.arg("serve").arg("--config").arg(&self.config);
        self.child = Some(crate::spawn_until_healthy(
            cmd,
            &self.dir.join("edge.log"),
            &format!("{}/healthz", self.url),
        ));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("edge.log")).unwrap_or_default()
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

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The whole /metrics page.
    pub fn metrics_text(&self) -> String {
        ureq::get(&format!("{}/metrics", self.ops_url))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    }

    /// The value of one Prometheus sample, e.g.
    /// `hourglass_edge_rejects_total{reason="unknown_site"}`.
    pub fn metric(&self, sample: &str) -> f64 {
        self.metrics_text()
            .lines()
            .find_map(|l| l.strip_prefix(sample).map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0.0)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.kill9();
    }
}
