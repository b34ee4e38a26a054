//! `bench-receiver`: central's QUIC receiver as far as a benchmark of the
//! edge needs it — mTLS with the project's certificates (made with the e2e
//! test harness), an Ack for every batch, and counts of what arrived.
//!
//! It does not decode batches while the load runs (that is central's cost,
//! not the edge's, and would take CPU from the edge on a small machine). At
//! SIGTERM it decodes a bounded sample of what it kept to split the bytes
//! into raw hits and processed events, then prints its figures as one JSON
//! line on stdout.
//!
//! Stdout protocol: first line `{"addr", "server_name", "ca_file",
//! "cert_file", "key_file"}` once listening; last line the figures.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::Parser;
use hourglass_e2e::receiver::{SERVER_NAME, server_certs};
use hourglass_model::{BatchId, decode_batch, try_encode_batch};
use hourglass_pki::{CertDir, EdgeIdentity, EdgeName};
use hourglass_transport::{BatchHandler, Response, server_endpoint};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "bench-receiver",
    about = "Acking QUIC receiver for edge benchmarks"
)]
struct Cli {
    /// Certificate directory: the CA and central's pair are made here if
    /// missing, and a certificate for `--edge-id`.
    #[arg(long)]
    certs: PathBuf,
    #[arg(long, default_value = "bench-edge")]
    edge_id: String,
    /// Loopback address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Bytes of batches kept to analyse at exit.
    #[arg(long, default_value_t = 64 << 20)]
    sample_bytes: u64,
}

#[derive(Default)]
struct Counts {
    batches: AtomicU64,
    bytes: AtomicU64,
    kept_bytes: AtomicU64,
    sample: Mutex<Vec<Vec<u8>>>,
    sample_limit: u64,
}

struct Ack(Arc<Counts>);

#[async_trait::async_trait]
impl BatchHandler for Ack {
    async fn handle(&self, _edge: EdgeIdentity, batch_id: BatchId, bytes: Vec<u8>) -> Response {
        let c = &self.0;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let len = bytes.len() as u64;
        if c.kept_bytes.fetch_add(len, Ordering::Relaxed) + len <= c.sample_limit {
            c.sample
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(bytes);
        }
        Response::Ack { batch_id }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        cli.listen.ip().is_loopback(),
        "--listen must be a loopback address"
    );
    std::fs::create_dir_all(&cli.certs)
        .with_context(|| format!("creating {}", cli.certs.display()))?;
    let certs = server_certs(&cli.certs);
    let dir = CertDir::new(&cli.certs);
    let name = EdgeName::new(&cli.edge_id)
        .map_err(|e| anyhow::anyhow!("--edge-id `{}`: {e}", cli.edge_id))?;
    dir.issue_edge(&name, SystemTime::now())
        .context("issuing the edge certificate")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let counts = Arc::new(Counts {
        sample_limit: cli.sample_bytes,
        ..Counts::default()
    });
    runtime.block_on(async {
        let endpoint = server_endpoint(cli.listen, &certs).context("binding the QUIC endpoint")?;
        let ready = serde_json::json!({
            "addr": endpoint.local_addr()?.to_string(),
            "server_name": SERVER_NAME,
            "ca_file": dir.ca_cert_path(),
            "cert_file": dir.edge_cert_path(&name),
            "key_file": dir.edge_key_path(&name),
        });
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{ready}")?;
            out.flush()?;
        }
        let stop = CancellationToken::new();
        let signals = stop.clone();
        tokio::spawn(async move {
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            signals.cancel();
        });
        hourglass_transport::serve(endpoint, Arc::new(Ack(counts.clone())), stop).await;
        anyhow::Ok(())
    })?;

    let sample = std::mem::take(
        &mut *counts
            .sample
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let (mut raw_hits, mut events, mut sample_bytes, mut undecodable) = (0u64, 0u64, 0u64, 0u64);
    let (mut raw_only_bytes, mut unstamped_raw_bytes) = (0u64, 0u64);
    let encoded_len =
        |batch: &hourglass_model::Batch| try_encode_batch(batch).map_or(0, |b| b.len() as u64);
    for bytes in &sample {
        match decode_batch(bytes) {
            Ok(mut batch) => {
                sample_bytes += bytes.len() as u64;
                raw_hits += batch.raw_hits.len() as u64;
                events += batch.events.len() as u64;
                // The same batch without its processed events: what the raw
                // hits alone cost in this format.
                batch.events.clear();
                raw_only_bytes += encoded_len(&batch);
                // ... and without the identity stamps (keyed hashes, which
                // do not compress): the request bytes alone.
                for hit in &mut batch.raw_hits {
                    hit.identity = None;
                    hit.event_identities.clear();
                }
                unstamped_raw_bytes += encoded_len(&batch);
            }
            Err(_) => undecodable += 1,
        }
    }
    let figures = serde_json::json!({
        "batches": counts.batches.load(Ordering::Relaxed),
        "bytes": counts.bytes.load(Ordering::Relaxed),
        "sample": {
            "batches": sample.len(),
            "bytes": sample_bytes,
            "raw_hits": raw_hits,
            "events": events,
            "raw_only_bytes": raw_only_bytes,
            "unstamped_raw_bytes": unstamped_raw_bytes,
            "undecodable": undecodable,
        },
    });
    println!("{figures}");
    Ok(())
}
