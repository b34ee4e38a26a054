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

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hourglass_archive::Archive;
use hourglass_processing::Ga4Stream;
use hourglass_processing::{ControlState, PluginBinding, PluginChains, SiteConfig, SiteDirectory};
use hourglass_transport::{ControlHandler, ControlResponse, EdgeIdentity, RejectReason};
use hourglass_warehouse::control::{STREAM_GA4, STREAM_SEGMENT};
use hourglass_warehouse::{ControlRows, PluginBindingRow, Warehouse};
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

/// Builds the state edges get from metadata rows.
pub fn build_state(rows: &ControlRows) -> Result<ControlState, String> {
    let sites: Vec<SiteConfig> = rows
        .sites
        .iter()
        .map(|site| {
            let streams = rows.streams.iter().filter(|s| s.site_id == site.site_id);
            SiteConfig {
                site_id: site.site_id.clone(),
                domain: site.domain.clone(),
                allowed_hostnames: site.allowed_hostnames.clone(),
                timezone: site.timezone.clone(),
                ga4: streams
                    .clone()
                    .filter(|s| s.kind == STREAM_GA4)
                    .map(|s| Ga4Stream {
                        measurement_id: s.stream_id.clone(),
                        api_secret: s.secret.clone(),
                    })
                    .collect(),
                segment_write_keys: streams
                    .filter(|s| s.kind == STREAM_SEGMENT)
                    .map(|s| s.stream_id.clone())
                    .collect(),
            }
        })
        .collect();
    let directory = SiteDirectory::new(rows.version, sites).map_err(|e| e.to_string())?;
    let binding = |row: &PluginBindingRow| PluginBinding {
        name: row.name.clone(),
        plugin_version: row.plugin_version.clone(),
        sha256: row.sha256.clone(),
        config: row.config.clone(),
        data_sha256: row.data_sha256.clone(),
        on_failure: row.on_failure.clone(),
    };
    // Rows come sorted by scope, position, name.
    let platform = rows
        .bindings
        .iter()
        .filter(|b| b.scope.is_empty())
        .map(binding)
        .collect();
    let mut per_site: BTreeMap<String, Vec<PluginBinding>> = BTreeMap::new();
    for row in rows.bindings.iter().filter(|b| !b.scope.is_empty()) {
        // A chain of a deleted (or unknown) site has no hits to run on.
        if directory.by_site_id(&row.scope).is_some() {
            per_site
                .entry(row.scope.clone())
                .or_default()
                .push(binding(row));
        }
    }
    let plugins = PluginChains::new(platform, per_site);
    plugins.validate().map_err(|e| e.to_string())?;
    Ok(ControlState {
        version: rows.version,
        sites: directory,
        plugins,
    })
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
            Ok(rows) => match build_state(&rows) {
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

#[cfg(test)]
mod tests {
    use hourglass_warehouse::SiteStream;
    use hourglass_warehouse::metadata::Site;

    use super::*;

    fn site(id: &str, domain: &str) -> Site {
        Site {
            site_id: id.into(),
            merchant_id: "m".into(),
            domain: domain.into(),
            allowed_hostnames: vec![],
            timezone: "UTC".into(),
            created_at: 0,
            version: 1,
            deleted: 0,
        }
    }

    fn stream(site: &str, kind: &str, id: &str, secret: &str) -> SiteStream {
        SiteStream {
            site_id: site.into(),
            kind: kind.into(),
            stream_id: id.into(),
            secret: secret.into(),
            created_at: 0,
            version: 1,
            deleted: 0,
        }
    }

    fn binding(scope: &str, name: &str, position: u16) -> PluginBindingRow {
        PluginBindingRow {
            scope: scope.into(),
            name: name.into(),
            plugin_version: "1".into(),
            sha256: "a".repeat(64),
            config: String::new(),
            data_sha256: String::new(),
            on_failure: "skip-plugin".into(),
            position,
            activated_at: 0,
            activated_by: String::new(),
            version: 1,
            deleted: 0,
        }
    }

    #[test]
    fn the_state_carries_streams_and_chains_of_live_sites() {
        let rows = ControlRows {
            version: 42,
            sites: vec![site("a", "a.example"), site("b", "b.example")],
            streams: vec![
                stream("a", STREAM_GA4, "G-A", "secret-a"),
                stream("a", STREAM_SEGMENT, "wk_a", ""),
            ],
            bindings: vec![
                binding("", "bot-filter", 0),
                binding("", "channel", 1),
                binding("a", "pii-scrub", 0),
                binding("gone", "ua-parse", 0),
            ],
        };
        let state = build_state(&rows).unwrap();
        assert_eq!(state.version, 42);
        assert_eq!(state.sites.version(), 42);
        let (a, ga4) = state.sites.by_measurement_id("G-A").unwrap();
        assert_eq!(
            (a.site_id.as_str(), ga4.api_secret.as_str()),
            ("a", "secret-a")
        );
        assert_eq!(state.sites.by_write_key("wk_a").unwrap().site_id, "a");
        let names: Vec<&str> = state
            .plugins
            .platform
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        assert_eq!(names, ["bot-filter", "channel"]);
        assert_eq!(
            state.plugins.sites.keys().collect::<Vec<_>>(),
            ["a"],
            "no chain for a site that is gone"
        );
        // What the edge checks on arrival holds.
        let again = ControlState::from_json(&state.to_json()).unwrap();
        assert_eq!(again.plugins, state.plugins);
    }

    #[test]
    fn a_directory_that_does_not_validate_is_refused() {
        let rows = ControlRows {
            version: 1,
            sites: vec![site("a", "a.example"), site("b", "b.example")],
            streams: vec![
                stream("a", STREAM_GA4, "G-SAME", "x"),
                stream("b", STREAM_GA4, "G-SAME", "y"),
            ],
            bindings: vec![],
        };
        let err = build_state(&rows).unwrap_err();
        assert!(err.contains("G-SAME"), "{err}");
    }
}
