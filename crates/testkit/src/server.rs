//! Starting and stopping a private `clickhouse-server` process.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "clickhouse-server is not installed: run `cargo xtask test` (installs it with apt-get) or set CLICKHOUSE_URL"
    )]
    NotInstalled,
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("clickhouse-server did not answer /ping within {0:?}; see {1}")]
    NotReady(Duration, PathBuf),
    #[error("HTTP request to ClickHouse failed: {0}")]
    Http(String),
}

/// How long a started server lives.
#[derive(Clone, Copy, Debug)]
pub enum Lifetime {
    /// Stopped (and its data dir removed) by a watchdog once this pid exits.
    TiedTo(u32),
    /// Runs until stopped by pid (the dev stack).
    Detached,
}

/// A running private server.
#[derive(Debug)]
pub struct ClickHouseServer {
    pub url: String,
    pub http_port: u16,
    pub tcp_port: u16,
    /// The pid to signal to stop it (the watchdog's for `TiedTo`).
    pub pid: u32,
    pub dir: PathBuf,
    child: Option<Child>,
    /// `pid` is the watchdog's (`Lifetime::TiedTo`).
    watchdog: bool,
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> Result<u16, ServerError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|source| ServerError::Io {
        what: "finding a free port".into(),
        source,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| ServerError::Io {
            what: "finding a free port".into(),
            source,
        })
}

/// `GET /ping` answered `Ok.`.
pub fn ping(url: &str) -> bool {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .new_agent();
    match agent.get(&format!("{url}/ping")).call() {
        Ok(mut r) => r
            .body_mut()
            .read_to_string()
            .is_ok_and(|b| b.starts_with("Ok.")),
        Err(_) => false,
    }
}

/// A `GET` answered with a 2xx status.
pub fn http_get_ok(url: &str) -> bool {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .new_agent();
    agent.get(url).call().is_ok()
}

/// POSTs a query to ClickHouse's HTTP interface; returns the body or the
/// server's error text.
pub fn http_post(url: &str, sql: &str) -> Result<String, ServerError> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .new_agent();
    let mut resp = agent
        .post(url)
        .send(sql)
        .map_err(|e| ServerError::Http(e.to_string()))?;
    let status = resp.status();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| ServerError::Http(e.to_string()))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(ServerError::Http(format!("{status}: {}", body.trim())))
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

fn binary() -> Result<PathBuf, ServerError> {
    ["/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or(ServerError::NotInstalled)
}

impl ClickHouseServer {
    /// Writes a private config under `dir` and starts the server on free
    /// loopback ports; returns once `/ping` answers.
    pub fn start(dir: &Path, lifetime: Lifetime) -> Result<Self, ServerError> {
        let bin = binary()?;
        let dir = dir.to_path_buf();
        // A test server's dir left by a killed run would hold old data; the
        // dev stack keeps its data across restarts.
        if matches!(lifetime, Lifetime::TiedTo(_)) && dir.exists() {
            fs::remove_dir_all(&dir).map_err(io(format!("removing {}", dir.display())))?;
        }
        fs::create_dir_all(dir.join("data")).map_err(io(format!("creating {}", dir.display())))?;
        let dir = dir
            .canonicalize()
            .map_err(io(format!("resolving {}", dir.display())))?;
        let http_port = free_port()?;
        let tcp_port = free_port()?;
        let config = dir.join("config.xml");
        fs::write(&config, config_xml(&dir, http_port, tcp_port))
            .map_err(io("writing config.xml"))?;
        fs::write(dir.join("users.xml"), USERS_XML).map_err(io("writing users.xml"))?;

        let child = match lifetime {
            Lifetime::Detached => Command::new(&bin)
                .arg(format!("--config-file={}", config.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(io("starting clickhouse-server"))?,
            Lifetime::TiedTo(parent) => Command::new("sh")
                .arg("-c")
                .arg(WATCHDOG)
                .arg("sh")
                .arg(&bin)
                .arg(&config)
                .arg(parent.to_string())
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(io("starting clickhouse-server watchdog"))?,
        };
        let url = format!("http://127.0.0.1:{http_port}");
        let mut server = ClickHouseServer {
            url,
            http_port,
            tcp_port,
            pid: child.id(),
            dir,
            child: Some(child),
            watchdog: matches!(lifetime, Lifetime::TiedTo(_)),
        };
        let limit = Duration::from_secs(60);
        let started = Instant::now();
        while !ping(&server.url) {
            let exited = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || started.elapsed() > limit {
                let log = server.dir.join("log").join("clickhouse-server.err.log");
                server.stop();
                return Err(ServerError::NotReady(limit, log));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// Stops the server (SIGTERM, then SIGKILL after 30 s) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the server process with SIGKILL, as a crash would, keeping its
    /// data directory and ports for [`ClickHouseServer::restart`]; returns
    /// once it no longer answers. Only for `Lifetime::TiedTo` servers (the
    /// watchdog does it); tests use it on a server of their own, never on
    /// the shared one.
    pub fn crash(&self) -> Result<(), ServerError> {
        self.signal_watchdog("-USR1")?;
        let started = Instant::now();
        while ping(&self.url) {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(ServerError::Http(format!(
                    "{} still answers 10 s after the kill",
                    self.url
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Starts a server [`ClickHouseServer::crash`]ed on the same data
    /// directory and ports; returns once `/ping` answers.
    pub fn restart(&self) -> Result<(), ServerError> {
        self.signal_watchdog("-USR2")?;
        let limit = Duration::from_secs(60);
        let started = Instant::now();
        while !ping(&self.url) {
            if started.elapsed() > limit {
                return Err(ServerError::NotReady(
                    limit,
                    self.dir.join("log").join("clickhouse-server.err.log"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn signal_watchdog(&self, signal: &str) -> Result<(), ServerError> {
        if self.child.is_none() || !self.watchdog {
            return Err(ServerError::Http(
                "only a running server with Lifetime::TiedTo can be crashed and restarted".into(),
            ));
        }
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.pid.to_string())
            .status()
            .map_err(io("signalling the clickhouse-server watchdog"))?;
        if status.success() {
            Ok(())
        } else {
            Err(ServerError::Http(format!(
                "kill {signal} {} failed: {status}",
                self.pid
            )))
        }
    }

    /// Forgets the child handle so dropping this value leaves the server
    /// running (the dev stack stops it later by pid).
    pub fn detach(mut self) -> u32 {
        self.child = None;
        self.pid
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `$1` binary, `$2` config, `$3` pid to outlive, `$4` data dir to remove.
/// Stops the server when `$3` exits or when this shell gets SIGTERM.
/// SIGUSR1 kills the server alone (SIGKILL, as a crash would) and keeps
/// its data; SIGUSR2 starts it again with the same config (outage tests).
const WATCHDOG: &str = r#"
bin=$1 config=$2
start() { "$bin" --config-file="$config" >/dev/null 2>&1 & ch=$!; }
start
down=0
trap 'kill "$ch" 2>/dev/null; wait "$ch"; rm -rf "$4"; exit 0' TERM INT
trap 'kill -KILL "$ch" 2>/dev/null; wait "$ch"; down=1' USR1
trap 'start; down=0' USR2
while kill -0 "$3" 2>/dev/null && { [ "$down" = 1 ] || kill -0 "$ch" 2>/dev/null; }; do sleep 1; done
kill "$ch" 2>/dev/null
wait "$ch"
rm -rf "$4"
"#;

fn config_xml(dir: &Path, http_port: u16, tcp_port: u16) -> String {
    let d = dir.display();
    format!(
        r#"<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{d}/log/clickhouse-server.log</log>
        <errorlog>{d}/log/clickhouse-server.err.log</errorlog>
        <size>50M</size>
        <count>2</count>
    </logger>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <max_concurrent_queries>200</max_concurrent_queries>
    <mark_cache_size>536870912</mark_cache_size>
</yandex>
"#
    )
}

const USERS_XML: &str = r#"<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"#;
