//! `edge-agent serve`: wires the parts together and runs them until
//! SIGTERM, then drains: stop accepting, write the open batch, ship what
//! is buffered (up to a deadline), exit 0. `/readyz` on the ops listener
//! answers 200 only while the ingress accepts beacons.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use hourglass_disk_buffer::DiskBuffer;
use hourglass_plugin_host::Limits as PluginLimits;
use hourglass_processing::{IdentityKeys, NoPlugins, Pipeline, SessionTable, SiteDirectory};
use hourglass_svc::http::Tls;
use hourglass_transport::{Client, ClientCerts, client_endpoint};
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DurabilityMode};
use crate::control::{ControlTask, Loaded};
use crate::ingress::{Ingress, SharedAdmission};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::shipper::Shipper;
use crate::writer::{Writer, lock};

/// How long a stopping edge keeps shipping what is buffered.
const DRAIN: Duration = Duration::from_secs(10);

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let metrics = Metrics::new();
    // With the control channel, the site directory and plugins come from
    // central (the cache until it answers); otherwise from the files.
    let initial =
        match &config.control {
            Some(control) => crate::control::load_cache(&control.cache_dir, &metrics)
                .unwrap_or_else(Loaded::empty),
            None => {
                let sites: SiteDirectory =
                    serde_json::from_slice(&read(&config.sites_file, "site directory")?)
                        .with_context(|| {
                            format!(
                                "the site directory {} is invalid",
                                config.sites_file.display()
                            )
                        })?;
                Loaded {
                    version: sites.version(),
                    sites: Arc::new(sites),
                    plugins: config
                        .plugins
                        .load(PluginLimits::default())
                        .context("loading the plugin chain")?,
                }
            }
        };
    let sites = initial.sites.clone();
    metrics.set_plugin_set(initial.plugins.plugin_set());
    if config.control.is_some() {
        metrics
            .control_version
            .set(i64::try_from(initial.version).unwrap_or(i64::MAX));
    }
    let secret = read(&config.master_secret_file, "master secret")?;
    let keys = IdentityKeys::from_master_secret(&secret).with_context(|| {
        format!(
            "the master secret in {}",
            config.master_secret_file.display()
        )
    })?;

    let (buffer, report) = {
        let dir = config.buffer_dir.clone();
        let cfg = config.buffer.clone();
        tokio::task::spawn_blocking(move || DiskBuffer::open(dir, cfg))
            .await?
            .with_context(|| {
                format!("opening the disk buffer in {}", config.buffer_dir.display())
            })?
    };
    for (kind, n) in [
        ("truncated_tail", report.truncated_tails),
        ("corrupt_record", report.corrupt_records),
        ("abandoned_bytes", report.abandoned_bytes),
    ] {
        metrics
            .buffer_recovered
            .with_label_values(&[kind])
            .inc_by(n);
    }
    if report.found_damage() {
        tracing::warn!(?report, "disk buffer repaired on open");
    }
    tracing::info!(records = report.records, "disk buffer open");
    let buffer = Arc::new(Mutex::new(buffer));

    let certs = ClientCerts {
        cert_pem: String::from_utf8(read(&config.central.cert_file, "edge certificate")?)?,
        key_pem: String::from_utf8(read(&config.central.key_file, "edge key")?)?,
        ca_pem: String::from_utf8(read(&config.central.ca_file, "CA certificate")?)?,
    };
    let bind: SocketAddr = if config.central.endpoints.iter().all(SocketAddr::is_ipv4) {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let (endpoint, cert_name) =
        client_endpoint(bind, &certs).context("setting up QUIC to central")?;
    anyhow::ensure!(
        cert_name.as_str() == config.edge_id,
        "the edge certificate is for `{}` but edge_id is `{}`",
        cert_name.as_str(),
        config.edge_id
    );

    let full = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    let (tx, rx) = mpsc::channel(4096);
    let (updates_tx, updates) = mpsc::channel(1);
    let writer = Writer {
        edge_id: config.edge_id.clone(),
        pipeline: Pipeline::new(sites.clone(), keys.clone(), initial.plugins),
        updates,
        limits: config.batch,
        buffer: buffer.clone(),
        metrics: metrics.clone(),
        shipper: wake.clone(),
        full: full.clone(),
        sync_every: (config.durability == DurabilityMode::Interval).then_some(config.sync_interval),
        now_ms,
    };
    let writer = tokio::spawn(writer.run(rx));

    let stop_shipping = CancellationToken::new();
    let shipper = Shipper {
        client: Client::new(endpoint.clone()),
        endpoints: config.central.endpoints.clone(),
        server_name: config.central.server_name.clone(),
        buffer: buffer.clone(),
        rejected_dir: config.buffer_dir.join("rejected"),
        metrics: metrics.clone(),
        wake: wake.clone(),
        full: full.clone(),
    };
    let shipper = tokio::spawn(shipper.run(stop_shipping.clone(), DRAIN));

    let ops = TcpListener::bind(config.ops_listen)
        .await
        .with_context(|| format!("binding ops_listen {}", config.ops_listen))?;
    // `/readyz`: only once the ingress listens and until the drain starts,
    // so a rolling deploy moves on when this edge takes beacons again.
    let ready = Arc::new(AtomicBool::new(false));
    let readiness = {
        let ready = ready.clone();
        let shutdown = shutdown.clone();
        Arc::new(move || {
            if shutdown.is_cancelled() {
                Err("draining".to_owned())
            } else if ready.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("starting".to_owned())
            }
        })
    };
    let ops = tokio::spawn(hourglass_svc::http::serve_ops_with_readiness(
        ops,
        metrics.registry.clone(),
        Arc::new(|| Ok(())),
        readiness,
        shutdown.clone(),
    ));

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding listen {}", config.listen))?;
    let tls = match &config.tls {
        None => None,
        Some(tls) => {
            let cert = read(&tls.cert_file, "TLS certificate")?;
            let key = read(&tls.key_file, "TLS key")?;
            let acceptor = Tls::new(&cert, &key, metrics.tls_handshake_failures.clone())
                .with_context(|| {
                    format!(
                        "TLS with {} and {}",
                        tls.cert_file.display(),
                        tls.key_file.display()
                    )
                })?;
            let listener = TcpListener::bind(tls.listen)
                .await
                .with_context(|| format!("binding tls.listen {}", tls.listen))?;
            tracing::info!(listen = %tls.listen, "accepting beacons over HTTPS");
            Some((acceptor, listener))
        }
    };
    ready.store(true, Ordering::Relaxed);
    tracing::info!(listen = %config.listen, edge = %config.edge_id, "edge agent accepting beacons");
    let admission: SharedAdmission = Arc::new(std::sync::RwLock::new(Arc::new(Pipeline::new(
        sites,
        keys.clone(),
        Box::new(NoPlugins),
    ))));
    let control = config.control.as_ref().map(|control| {
        let task = ControlTask {
            client: Client::new(endpoint.clone()),
            endpoints: config.central.endpoints.clone(),
            server_name: config.central.server_name.clone(),
            cache_dir: control.cache_dir.clone(),
            interval: control.poll_interval,
            keys: keys.clone(),
            writer: updates_tx.clone(),
            admission: admission.clone(),
            metrics: metrics.clone(),
            version: initial.version,
        };
        tokio::spawn(task.run(shutdown.clone()))
    });
    drop(updates_tx);
    let ingress = Arc::new(Ingress {
        edge_id: config.edge_id.clone(),
        admission,
        sessions: Mutex::new(SessionTable::new(config.session_table_max)),
        writer: tx,
        sync: config.durability == DurabilityMode::Sync,
        max_body_bytes: config.max_body_bytes,
        trusted_proxies: config.trusted_proxies.clone(),
        seq: AtomicU64::new(u64::try_from(now_ms()).unwrap_or(0).saturating_mul(1000)),
        full,
        limits: Limits::new(&config.rate_limit),
        metrics,
        now_ms,
    });
    let upkeep = {
        let ingress = ingress.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut sessions = tokio::time::interval(Duration::from_secs(1));
            let mut limits = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = sessions.tick() => ingress.sweep_sessions(),
                    _ = limits.tick() => ingress.sweep_limits(),
                    () = shutdown.cancelled() => return,
                }
            }
        })
    };
    let https = match tls {
        None => None,
        Some((tls, listener)) => {
            let ingress = ingress.clone();
            let shutdown = shutdown.clone();
            Some(tokio::spawn(async move {
                hourglass_svc::http::serve_with(
                    listener,
                    Some(tls),
                    move |peer| {
                        let ingress = ingress.clone();
                        service_fn(move |req| ingress.clone().handle(req, peer))
                    },
                    shutdown,
                    "ingress-tls",
                )
                .await;
            }))
        }
    };
    hourglass_svc::http::serve(
        listener,
        move |peer| {
            let ingress = ingress.clone();
            service_fn(move |req| ingress.clone().handle(req, peer))
        },
        shutdown.clone(),
        "ingress",
    )
    .await;
    if let Some(https) = https {
        let _ = https.await;
    }
    let _ = upkeep.await;
    if let Some(control) = control {
        let _ = control.await;
    }

    // The ingress is closed and its writer handle dropped: the writer
    // writes the open batch and ends.
    writer.await.context("the batch writer failed")?;
    stop_shipping.cancel();
    shipper.await.context("the shipper failed")?;
    endpoint.close(0u32.into(), b"edge shutting down");
    let _ = ops.await;
    let left = lock(&buffer).stats().records;
    tracing::info!(batches_left = left, "edge agent stopped");
    Ok(())
}
