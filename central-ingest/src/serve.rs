//! `central-ingest serve`: wires the roles together — the QUIC receiver
//! (with the archive behind it), the loader, the API, the ops endpoint,
//! the retention sweep and the CRL reload — and drains on SIGTERM: no new
//! connections or streams, batches being archived finish and their Acks
//! reach the edges, a load in progress finishes.
//!
//! Roles run together by default; `receiver.enabled`, `loader.enabled` and
//! `api.enabled` split them across processes or nodes that share the
//! archive (the loader finds batches by listing it).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use hourglass_archive::{Archive, Hour};
use hourglass_pki::CertDir;
use hourglass_transport::{ServerCerts, server_config, server_endpoint};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::Control;
use crate::loader::{Loader, LoaderSettings};
use crate::metrics::Metrics;
use crate::receiver::Receiver;
use hourglass_warehouse::Warehouse;
use tokio::sync::mpsc;

/// How often the retention sweep runs (when retention is set).
const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let archive = Archive::local(&config.archive_dir)?;
    let metrics = Metrics::new();
    let ops = TcpListener::bind(config.ops_listen)
        .await
        .with_context(|| format!("cannot listen on ops_listen {}", config.ops_listen))?;
    tokio::spawn(hourglass_svc::http::serve_ops(
        ops,
        metrics.registry.clone(),
        Arc::new(|| Ok(())),
        shutdown.clone(),
    ));

    let api = match config.api_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on api.listen {addr}"))?;
            let settings = crate::api::ApiSettings {
                key_cache_ttl: Duration::from_secs(u64::from(config.api.key_cache_ttl_secs)),
                result_cache_ttl: Duration::from_secs(u64::from(config.api.result_cache_secs)),
                default_rate_limit_per_minute: std::num::NonZeroU32::new(
                    config.api.rate_limit_per_minute,
                )
                .unwrap_or(std::num::NonZeroU32::MIN),
                admin_token_sha256: Some(config.api.admin_token_sha256.clone())
                    .filter(|h| !h.is_empty()),
                certs_dir: config.certs_dir.clone(),
            };
            let registry = crate::registry::PluginRegistry::new(
                Warehouse::new(&config.warehouse)?,
                archive.clone(),
                hourglass_plugin_host::Limits::default(),
                config.registry,
                &metrics.registry,
            )?;
            let api = crate::api::Api::new(
                Warehouse::new(&config.warehouse)?,
                &settings,
                &metrics.registry,
            )
            .with_plugins(Arc::new(registry));
            tracing::info!(api = %addr, "merchant API on");
            Some(tokio::spawn(crate::api::serve(
                listener,
                Arc::new(api),
                shutdown.clone(),
            )))
        }
        None => None,
    };

    if config.archive_retention_hours > 0 {
        tokio::spawn(sweep(
            archive.clone(),
            i64::from(config.archive_retention_hours),
            metrics.clone(),
            shutdown.clone(),
        ));
    }

    let archive_for_control = archive.clone();
    let mut receiver = Receiver::new(
        archive.clone(),
        metrics.clone(),
        config.receiver.max_in_flight,
        config.receiver.busy_retry_after_ms,
    );
    let loader = if config.loader.enabled {
        let warehouse = Warehouse::new(&config.warehouse)?;
        // In one process the receiver hands the loader each archived key at
        // once; a loader of its own finds them by listing the archive.
        let (tx, rx) = mpsc::unbounded_channel();
        if config.receiver.enabled {
            receiver = receiver.notify(tx);
        }
        let settings = LoaderSettings {
            lookback_hours: config.loader.lookback_hours,
            max_rows: config.loader.max_rows as usize,
            max_wait: Duration::from_millis(u64::from(config.loader.max_wait_ms)),
        };
        tracing::info!(warehouse = %warehouse.url(), database = %warehouse.database(), "loader on");
        let loader = Loader::new(archive, warehouse, metrics.clone(), settings, rx);
        Some(tokio::spawn(loader.run(shutdown.clone())))
    } else {
        tracing::info!("loader off (loader.enabled = false): batches are archived only");
        None
    };

    if config.receiver.enabled {
        receive(&config, receiver, archive_for_control, metrics, shutdown).await?;
    } else {
        tracing::info!(
            ops = %config.ops_listen,
            archive = %config.archive_dir.display(),
            "receiver off (receiver.enabled = false): loading what other receivers archive"
        );
        shutdown.cancelled().await;
    }
    if let Some(loader) = loader {
        let _ = loader.await;
    }
    if let Some(api) = api {
        let _ = api.await;
    }
    tracing::info!("central-ingest stopped");
    Ok(())
}

/// The receiver role: the QUIC endpoint and its CRL reload, until
/// `shutdown`; batches being archived finish and are Acked.
async fn receive(
    config: &Config,
    receiver: Receiver,
    archive: Archive,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cert_dir = CertDir::new(&config.certs_dir);
    let certs = server_certs(&cert_dir)?;
    let endpoint = server_endpoint(config.quic_listen, &certs)?;
    let quic_addr = endpoint.local_addr().context("QUIC endpoint address")?;
    tokio::spawn(reload_crl(
        config.crl_reload,
        endpoint.clone(),
        cert_dir,
        certs,
        metrics.clone(),
        shutdown.clone(),
    ));
    tracing::info!(
        quic = %quic_addr,
        ops = %config.ops_listen,
        archive = %config.archive_dir.display(),
        "central-ingest receiving"
    );
    let mut server = hourglass_transport::Server::new(endpoint, Arc::new(receiver));
    if config.receiver.control_refresh_ms > 0 {
        let control = Arc::new(Control::new(archive, metrics.clone()));
        tokio::spawn(control.clone().run(
            Warehouse::new(&config.warehouse)?,
            Duration::from_millis(u64::from(config.receiver.control_refresh_ms)),
            shutdown.clone(),
        ));
        server = server.with_control(control);
        tracing::info!(
            refresh_ms = config.receiver.control_refresh_ms,
            "control channel on"
        );
    }
    let stats = server.stats();
    let exported = tokio::spawn(export_transport_stats(
        stats.clone(),
        metrics,
        shutdown.clone(),
    ));
    server.serve(shutdown).await;
    let _ = exported.await;
    tracing::info!(totals = ?stats.snapshot(), "transport totals");
    Ok(())
}

fn server_certs(dir: &CertDir) -> anyhow::Result<ServerCerts> {
    let read = |path: std::path::PathBuf, fix: &str| {
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}; {fix}", path.display()))
    };
    let issue = "run `central-ingest certs issue-server HOSTNAME`";
    Ok(ServerCerts {
        cert_pem: read(dir.server_cert_path(), issue)?,
        key_pem: read(dir.server_key_path(), issue)?,
        ca_pem: dir.ca_cert_pem()?,
        crl_pem: dir.crl_pem()?,
    })
}

/// Copies the transport's counters into the metrics once a second, and a
/// last time on shutdown.
async fn export_transport_stats(
    stats: Arc<hourglass_transport::ServerStats>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut last = hourglass_transport::StatsSnapshot::default();
    loop {
        let stop = tokio::select! {
            () = shutdown.cancelled() => true,
            () = tokio::time::sleep(Duration::from_secs(1)) => false,
        };
        let now = stats.snapshot();
        metrics.add_transport(&last, &now);
        last = now;
        if stop {
            return;
        }
    }
}

/// Applies a changed `crl.pem` (after `certs revoke`) to new connections.
async fn reload_crl(
    every: Duration,
    endpoint: quinn::Endpoint,
    dir: CertDir,
    mut certs: ServerCerts,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let crl_pem = match dir.crl_pem() {
            Ok(pem) if pem != certs.crl_pem => pem,
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "cannot read the revocation list; keeping the old one");
                continue;
            }
        };
        let candidate = ServerCerts {
            crl_pem,
            ..certs.clone()
        };
        match server_config(&candidate) {
            Ok(config) => {
                endpoint.set_server_config(Some(config));
                certs = candidate;
                metrics.crl_reloads.inc();
                tracing::info!("revocation list reloaded");
            }
            Err(error) => {
                tracing::warn!(%error, "the new revocation list is not usable; keeping the old one")
            }
        }
    }
}

/// Deletes archived hours older than the retention, once an hour.
async fn sweep(archive: Archive, keep_hours: i64, metrics: Metrics, shutdown: CancellationToken) {
    loop {
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if let Ok(now) = Hour::from_unix_ms(now_ms) {
            let before = now.minus(keep_hours);
            match archive.sweep(before).await {
                Ok(report) => {
                    metrics.swept_batches.inc_by(report.batches_deleted);
                    if report.batches_deleted + report.quarantined_deleted > 0 {
                        tracing::info!(
                            before = %before,
                            batches = report.batches_deleted,
                            quarantined = report.quarantined_deleted,
                            "retention sweep"
                        );
                    }
                }
                Err(error) => tracing::warn!(%error, "retention sweep failed; will try again"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SWEEP_INTERVAL) => {}
        }
    }
}
