//! The control channel's central side: builds the [`ControlState`] edges
//! run on (site directory and plugin chains) from the metadata tables,
//! keeps it in memory, refreshes it every `receiver.control_refresh_ms`,
//! and answers the edges' Sync and Blob requests on their mTLS connection.
//!
//! A refresh that fails (ClickHouse down) or builds an invalid directory
//! (two sites claiming one GA4 id) keeps the state served before, counted
//! in `hourglass_central_control_refreshes_total{outcome}`. Until the first
//! good refresh, Sync is answered `Reject{Unavailable}` and edges keep
//! what they have (their cached state).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use hourglass_archive::Archive;
use hourglass_transport::{ControlHandler, ControlResponse, EdgeIdentity, RejectReason};
use hourglass_warehouse::Warehouse;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The state as served: its version and JSON.
struct Served {
    version: u64,
    body: Vec<u8>,
}

/// The control channel's handler; refresh it with [`Control::run`].
pub struct Control {
    served: RwLock<Option<Arc<Served>>>,
    /// Whether the last refresh failed (logged once per outage).
    failing: std::sync::atomic::AtomicBool,
    archive: Archive,
    metrics: Metrics,
}

impl Control {
    pub fn new(archive: Archive, metrics: Metrics) -> Control {
        Control {
            served: RwLock::new(None),
            failing: std::sync::atomic::AtomicBool::new(false),
            archive,
            metrics,
        }
    }

    fn current(&self) -> Option<Arc<Served>> {
        self.served
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the metadata and serves the state it gives, when it changed.
    pub async fn refresh(&self, warehouse: &Warehouse) {
        use std::sync::atomic::Ordering;
        let rows = warehouse.control_rows().await;
        let was_failing = self.failing.swap(rows.is_err(), Ordering::Relaxed);
        let outcome = match rows {
            Err(error) => {
                if was_failing {
                    tracing::debug!(%error, "still cannot read the control state");
                } else {
                    tracing::warn!(%error, "cannot read the control state; serving the one before until it can be read");
                }
                "error"
            }
            Ok(rows) if self.current().is_some_and(|s| s.version == rows.version) => {
                if was_failing {
                    tracing::info!("control state readable again");
                }
                "unchanged"
            }
            Ok(rows) => match rows.state() {
                Ok(state) => {
                    let served = Served {
                        version: state.version,
                        body: state.to_json(),
                    };
                    tracing::info!(
                        version = state.version,
                        sites = state.sites.sites().len(),
                        plugin_set = %state.plugins.label,
                        "control state changed"
                    );
                    self.metrics
                        .control_state_version
                        .set(i64::try_from(state.version).unwrap_or(i64::MAX));
                    *self
                        .served
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(Arc::new(served));
                    "changed"
                }
                Err(error) => {
                    tracing::error!(
                        version = rows.version,
                        %error,
                        "the metadata gives an invalid control state; serving the one before"
                    );
                    "invalid"
                }
            },
        };
        self.metrics
            .control_refreshes
            .with_label_values(&[outcome])
            .inc();
    }

    /// Refreshes now, then every `every`, until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        warehouse: Warehouse,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            self.refresh(&warehouse).await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

#[async_trait::async_trait]
impl ControlHandler for Control {
    async fn sync(&self, edge: &EdgeIdentity, have_version: u64) -> ControlResponse {
        let Some(served) = self.current() else {
            return ControlResponse::Reject {
                reason: RejectReason::Unavailable,
                message: "central has not read the control state yet; keep yours and ask again"
                    .into(),
            };
        };
        if served.version == have_version {
            return ControlResponse::Unchanged {
                version: served.version,
            };
        }
        tracing::info!(edge = %edge.name, from = have_version, to = served.version, "sending the control state");
        ControlResponse::State {
            version: served.version,
            body: served.body.clone(),
        }
    }

    async fn blob(&self, edge: &EdgeIdentity, sha256: [u8; 32]) -> ControlResponse {
        let name = sha256_hex_of(&sha256);
        match self.archive.get_plugin_blob(&name).await {
            // Sent as stored: the edge checks the bytes against the name.
            Ok(Some(bytes)) => ControlResponse::Blob {
                bytes: bytes.to_vec(),
            },
            Ok(None) => ControlResponse::Reject {
                reason: RejectReason::NotFound,
                message: format!("no plugin blob {name}"),
            },
            Err(error) => {
                tracing::warn!(edge = %edge.name, blob = %name, %error, "cannot read a plugin blob");
                ControlResponse::Reject {
                    reason: RejectReason::Unavailable,
                    message: format!("cannot read blob {name} now; ask again"),
                }
            }
        }
    }
}

fn sha256_hex_of(bytes: &[u8; 32]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
