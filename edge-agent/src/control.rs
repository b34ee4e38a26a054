//! The control channel's edge side: the site directory and plugin chains
//! from central, cached on disk.
//!
//! Every `poll_interval` (and at once on start) the edge asks central for
//! the state newer than its own (`Sync`). A new state is taken in steps,
//! any of which may refuse it — counted in
//! `hourglass_edge_control_refused_total{reason}`, logged, and the edge
//! keeps running on the state it has:
//! 1. parse and check it (`invalid_state`);
//! 2. fetch each plugin blob it names that is not cached, check its
//!    SHA-256 (`blob_sha256_mismatch`, `blob_unavailable`) and write it to
//!    `cache_dir/blobs/<sha256>` (temp file, fsync, rename, fsync dir);
//! 3. load the plugin chains from those files (`plugin_load`);
//! 4. write the state to `cache_dir/state.json` the same crash-safe way;
//! 5. hand the directory and chain to the writer, which finishes its open
//!    batch on the old chain and swaps between batches (no hit is dropped
//!    or processed twice; each batch names the set that made it), then
//!    swap the ingress's admission to the new directory.
//!
//! On start, the cached state is loaded the same way (steps 1, 3; blobs
//! checked against their names again), so an edge restarted while central
//! is down admits what it admitted before. A damaged cache is refused
//! (`corrupt_cache`) and the edge starts empty until central answers.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use hourglass_plugin_host::{Limits as PluginLimits, load_chains};
use hourglass_processing::control::sha256_hex;
use hourglass_processing::{
    ControlState, IdentityKeys, NoPlugins, Pipeline, PluginChain, SiteDirectory,
};
use hourglass_transport::{Client, ControlRequest, ControlResponse};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::ingress::SharedAdmission;
use crate::metrics::Metrics;
use crate::writer::Update;

const STATE_FILE: &str = "state.json";
const BLOBS_DIR: &str = "blobs";

/// A state ready to use: the directory and the loaded chain.
pub struct Loaded {
    pub version: u64,
    pub sites: Arc<SiteDirectory>,
    pub plugins: Box<dyn PluginChain>,
}

impl Loaded {
    /// Nothing yet: no sites, no plugins.
    pub fn empty() -> Loaded {
        Loaded {
            version: 0,
            sites: Arc::new(SiteDirectory::default()),
            plugins: Box::new(NoPlugins),
        }
    }
}

/// Why a state was refused: a metric label and a message.
#[derive(Debug)]
struct Refusal {
    reason: &'static str,
    error: anyhow::Error,
}

fn refuse(reason: &'static str) -> impl FnOnce(anyhow::Error) -> Refusal {
    move |error| Refusal { reason, error }
}

/// Loads the cached state, if any. `Ok(None)`: no cache yet.
pub fn load_cache(dir: &Path, metrics: &Metrics) -> Option<Loaded> {
    let path = dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            count_refusal(
                metrics,
                &Refusal {
                    reason: "corrupt_cache",
                    error: anyhow!(error).context(format!("reading {}", path.display())),
                },
            );
            return None;
        }
    };
    let loaded = ControlState::from_json(&bytes)
        .map_err(|e| anyhow!(e))
        .and_then(|state| {
            // The blobs were checked when fetched; check again, the disk
            // may have changed since.
            for blob in state.plugins.blobs() {
                let file = dir.join(BLOBS_DIR).join(blob);
                let bytes = std::fs::read(&file)
                    .with_context(|| format!("reading cached blob {}", file.display()))?;
                if sha256_hex(&bytes) != blob {
                    return Err(anyhow!(
                        "cached blob {} does not match its name",
                        file.display()
                    ));
                }
            }
            load(&state, dir)
        });
    match loaded {
        Ok(loaded) => {
            tracing::info!(
                version = loaded.version,
                sites = loaded.sites.sites().len(),
                plugin_set = %loaded.plugins.plugin_set(),
                "control state loaded from the cache"
            );
            Some(loaded)
        }
        Err(error) => {
            count_refusal(
                metrics,
                &Refusal {
                    reason: "corrupt_cache",
                    error: error.context(format!("the cached state {}", path.display())),
                },
            );
            None
        }
    }
}

fn load(state: &ControlState, dir: &Path) -> Result<Loaded> {
    let plugins = load_chains(
        &state.plugins,
        &dir.join(BLOBS_DIR),
        PluginLimits::default(),
    )
    .with_context(|| format!("loading plugin set {}", state.plugins.label))?;
    Ok(Loaded {
        version: state.version,
        sites: Arc::new(state.sites.clone()),
        plugins,
    })
}

fn count_refusal(metrics: &Metrics, refusal: &Refusal) {
    metrics
        .control_refused
        .with_label_values(&[refusal.reason])
        .inc();
    tracing::error!(
        reason = refusal.reason,
        error = format!("{:#}", refusal.error),
        "control state refused; keeping the one in use"
    );
}

/// The polling task.
pub struct ControlTask {
    pub client: Client,
    pub endpoints: Vec<SocketAddr>,
    pub server_name: String,
    pub cache_dir: PathBuf,
    pub interval: Duration,
    pub keys: IdentityKeys,
    pub writer: mpsc::Sender<Update>,
    pub admission: SharedAdmission,
    pub metrics: Metrics,
    /// The version in use.
    pub version: u64,
}

impl ControlTask {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut conn: Option<quinn::Connection> = None;
        // A version refused once is not fetched and loaded again every poll.
        let mut refused: Option<u64> = None;
        let mut failing = false;
        loop {
            let synced = tokio::select! {
                () = shutdown.cancelled() => return,
                synced = self.sync_once(&mut conn, &mut refused) => synced,
            };
            match synced {
                Ok(()) => {
                    if failing {
                        tracing::info!("control sync works again");
                    }
                    failing = false;
                }
                Err(error) => {
                    conn = None;
                    self.metrics.control_sync_errors.inc();
                    // Once per outage at warn, then quietly (counted).
                    if failing {
                        tracing::debug!(error = format!("{error:#}"), "control sync failed again");
                    } else {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "control sync failed; keeping the state in use"
                        );
                    }
                    failing = true;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    async fn connect(&self) -> Result<quinn::Connection> {
        let mut last = None;
        for addr in &self.endpoints {
            match self.client.connect(*addr, &self.server_name).await {
                Ok(conn) => return Ok(conn),
                Err(error) => last = Some(error),
            }
        }
        Err(last.map_or_else(|| anyhow!("no central endpoint"), |e| anyhow!(e)))
    }

    async fn request(
        &self,
        conn: &mut Option<quinn::Connection>,
        request: &ControlRequest,
    ) -> Result<ControlResponse> {
        let live = match conn.take() {
            Some(c) if c.close_reason().is_none() => c,
            _ => self.connect().await?,
        };
        let response = self.client.control(&live, request).await?;
        *conn = Some(live);
        Ok(response)
    }

    async fn sync_once(
        &mut self,
        conn: &mut Option<quinn::Connection>,
        refused: &mut Option<u64>,
    ) -> Result<()> {
        let request = ControlRequest::Sync {
            have_version: self.version,
        };
        let (version, body) = match self.request(conn, &request).await? {
            ControlResponse::Unchanged { .. } => return Ok(()),
            ControlResponse::State { version, body } => (version, body),
            ControlResponse::Reject { reason, message } => {
                return Err(anyhow!("central refused the sync ({reason}): {message}"));
            }
            ControlResponse::Blob { .. } => {
                return Err(anyhow!("central answered a sync with a blob"));
            }
        };
        if *refused == Some(version) {
            return Ok(());
        }
        match self.take(conn, version, &body).await {
            Ok(loaded) => {
                *refused = None;
                self.apply(loaded).await
            }
            Err(refusal) => {
                *refused = Some(version);
                count_refusal(&self.metrics, &refusal);
                Ok(())
            }
        }
    }

    /// Steps 1 to 4 of the module doc.
    async fn take(
        &self,
        conn: &mut Option<quinn::Connection>,
        version: u64,
        body: &[u8],
    ) -> Result<Loaded, Refusal> {
        let state =
            ControlState::from_json(body).map_err(|e| refuse("invalid_state")(anyhow!(e)))?;
        if state.version != version {
            return Err(refuse("invalid_state")(anyhow!(
                "central sent version {version} holding a state of version {}",
                state.version
            )));
        }
        let blobs = self.cache_dir.join(BLOBS_DIR);
        for blob in state.plugins.blobs() {
            let file = blobs.join(blob);
            if file.is_file() {
                continue;
            }
            let mut sha256 = [0u8; 32];
            for (i, byte) in sha256.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&blob[2 * i..2 * i + 2], 16).unwrap_or_default();
            }
            let bytes = match self.request(conn, &ControlRequest::Blob { sha256 }).await {
                Ok(ControlResponse::Blob { bytes }) => bytes,
                Ok(ControlResponse::Reject { reason, message }) => {
                    return Err(refuse("blob_unavailable")(anyhow!(
                        "blob {blob}: central refused ({reason}): {message}"
                    )));
                }
                Ok(_) => {
                    return Err(refuse("blob_unavailable")(anyhow!(
                        "blob {blob}: central answered with something else"
                    )));
                }
                Err(error) => {
                    return Err(refuse("blob_unavailable")(
                        error.context(format!("fetching blob {blob}")),
                    ));
                }
            };
            let got = sha256_hex(&bytes);
            if got != blob {
                return Err(refuse("blob_sha256_mismatch")(anyhow!(
                    "blob {blob}: the {} bytes central sent hash to {got}",
                    bytes.len()
                )));
            }
            write_atomic(&blobs, blob, &bytes).map_err(refuse("cache_write"))?;
        }
        let loaded = load(&state, &self.cache_dir).map_err(refuse("plugin_load"))?;
        write_atomic(&self.cache_dir, STATE_FILE, body).map_err(refuse("cache_write"))?;
        Ok(loaded)
    }

    /// Step 5: the writer first (so a hit admitted under the new directory
    /// is never processed under the old one), then the ingress.
    async fn apply(&mut self, loaded: Loaded) -> Result<()> {
        let (applied, done) = oneshot::channel();
        let version = loaded.version;
        let sites = loaded.sites.clone();
        let label = loaded.plugins.plugin_set().to_owned();
        self.writer
            .send(Update {
                sites: loaded.sites,
                plugins: loaded.plugins,
                applied,
            })
            .await
            .map_err(|_| anyhow!("the batch writer has stopped"))?;
        done.await
            .map_err(|_| anyhow!("the batch writer stopped before swapping"))?;
        let admission = Arc::new(Pipeline::new(
            sites.clone(),
            self.keys.clone(),
            Box::new(NoPlugins),
        ));
        *self
            .admission
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = admission;
        self.version = version;
        self.metrics
            .control_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        self.metrics.control_applied.inc();
        tracing::info!(
            version,
            sites = sites.sites().len(),
            plugin_set = %label,
            "control state applied"
        );
        Ok(())
    }
}

/// Writes `dir/name` crash-safely: a temp file, fsync, rename over, fsync
/// the directory.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, &target)
        .with_context(|| format!("renaming {} to {}", tmp.display(), target.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "a", b"one").unwrap();
        write_atomic(dir.path(), "a", b"two").unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"two");
        assert!(!dir.path().join(".a.tmp").exists());
    }

    #[test]
    fn a_damaged_cache_is_refused_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        assert!(load_cache(dir.path(), &metrics).is_none(), "no cache");
        std::fs::write(dir.path().join(STATE_FILE), b"{\"version\": 3, \"si").unwrap();
        assert!(load_cache(dir.path(), &metrics).is_none());
        assert_eq!(
            metrics
                .control_refused
                .with_label_values(&["corrupt_cache"])
                .get(),
            1
        );
    }
}
