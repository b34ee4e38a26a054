//! The shipper: sends buffered batches to central over QUIC, one stream per
//! batch, and deletes a batch from the disk buffer only on central's `Ack`.
//!
//! Batches go out oldest first, one at a time (the in-flight window is one
//! batch: a batch is thousands of hits, so this is not the bottleneck on
//! loopback or a PoP link, and it keeps the ack order simple). On `Busy`
//! it waits what central asks; on a transport error it backs off with
//! jitter and fails over to the next central endpoint; on `Reject` it sets
//! the batch aside under `rejected/` in the buffer directory, counts it,
//! and moves on, so one bad batch never blocks the rest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hourglass_disk_buffer::{DiskBuffer, Record};
use hourglass_model::{BatchId, decode_batch};
use hourglass_transport::{Client, Response};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::writer::lock;

pub struct Shipper {
    pub client: Client,
    pub endpoints: Vec<SocketAddr>,
    pub server_name: String,
    pub buffer: Arc<Mutex<DiskBuffer>>,
    pub rejected_dir: PathBuf,
    pub metrics: Metrics,
    pub wake: Arc<Notify>,
    pub full: Arc<AtomicBool>,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// A central that does not complete a handshake in this time is treated as
/// down (UDP gives no "connection refused"), so failover is quick.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for central's answer to one batch.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Shipper {
    /// Ships until `stop` is cancelled and the buffer is empty, or until
    /// `stop` is cancelled and `drain` has passed since.
    pub async fn run(self, stop: CancellationToken, drain: Duration) {
        let mut conn: Option<quinn::Connection> = None;
        let mut endpoint = 0usize;
        let mut backoff = MIN_BACKOFF;
        let give_up = async {
            stop.cancelled().await;
            tokio::time::sleep(drain).await;
        };
        tokio::pin!(give_up);
        loop {
            let next = self.next_record().await;
            let Some(record) = next else {
                if stop.is_cancelled() {
                    return;
                }
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = stop.cancelled() => {}
                    // The buffer may hold batches from before a restart.
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            };
            let Some(batch_id) = batch_id(&record.data) else {
                tracing::error!(record = %record.id, "buffered batch does not decode; setting it aside");
                self.set_aside(&record, "undecodable").await;
                continue;
            };
            let connection = match &conn {
                Some(c) if c.close_reason().is_none() => c.clone(),
                _ => {
                    let addr = self.endpoints[endpoint % self.endpoints.len()];
                    let connected = tokio::select! {
                        c = tokio::time::timeout(CONNECT_TIMEOUT, self.client.connect(addr, &self.server_name)) => c,
                        () = &mut give_up => return,
                    };
                    match connected {
                        Ok(Ok(c)) => {
                            tracing::info!(%addr, "connected to central");
                            conn = Some(c.clone());
                            c
                        }
                        failed => {
                            let error = failed.map_or_else(
                                |_| "handshake timed out".to_owned(),
                                |r| r.err().map(|e| e.to_string()).unwrap_or_default(),
                            );
                            tracing::warn!(%addr, %error, "cannot reach central; trying the next endpoint");
                            self.metrics
                                .ship_failures
                                .with_label_values(&["connect"])
                                .inc();
                            endpoint += 1;
                            if pause(&mut backoff, &mut give_up).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            let sent = tokio::select! {
                r = tokio::time::timeout(SEND_TIMEOUT, self.client.send_batch(&connection, &batch_id, &record.data)) => {
                    r.unwrap_or_else(|_| Err(hourglass_transport::SendError::Stream("no answer from central within 30 s".into())))
                }
                () = &mut give_up => return,
            };
            match sent {
                Ok(Response::Ack { .. }) => {
                    backoff = MIN_BACKOFF;
                    self.ack(&record).await;
                    self.metrics.batches_shipped.inc();
                }
                Ok(Response::Busy { retry_after_ms }) => {
                    self.metrics
                        .ship_failures
                        .with_label_values(&["busy"])
                        .inc();
                    let wait = Duration::from_millis(u64::from(retry_after_ms)).min(MAX_BACKOFF);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = &mut give_up => return,
                    }
                }
                Ok(Response::Reject { reason, message }) => {
                    tracing::error!(batch = %batch_id, reason = reason.as_str(), %message, "central rejected a batch; setting it aside");
                    self.set_aside(&record, reason.as_str()).await;
                }
                Err(e) => {
                    tracing::warn!(batch = %batch_id, error = %e, "sending a batch failed; will retry");
                    self.metrics
                        .ship_failures
                        .with_label_values(&["transport"])
                        .inc();
                    conn = None;
                    endpoint += 1;
                    if pause(&mut backoff, &mut give_up).await {
                        return;
                    }
                }
            }
        }
    }

    async fn next_record(&self) -> Option<Record> {
        let buffer = self.buffer.clone();
        match tokio::task::spawn_blocking(move || lock(&buffer).next_unacked()).await {
            Ok(Ok(r)) => r,
            other => {
                tracing::error!(result = ?other.map(|r| r.map(|o| o.map(|rec| rec.id))), "reading the disk buffer failed");
                None
            }
        }
    }

    async fn ack(&self, record: &Record) {
        let buffer = self.buffer.clone();
        let id = record.id;
        let stats = tokio::task::spawn_blocking(move || {
            let mut b = lock(&buffer);
            let acked = b.ack(id);
            (acked, b.stats())
        })
        .await;
        match stats {
            Ok((Ok(()), stats)) => {
                self.full.store(false, Ordering::Relaxed);
                self.metrics
                    .buffer_records
                    .set(i64::try_from(stats.records).unwrap_or(i64::MAX));
                self.metrics
                    .buffer_bytes
                    .set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
            }
            other => {
                tracing::error!(result = ?other.map(|(r, _)| r), "acking a shipped batch failed")
            }
        }
    }

    /// Keeps a batch central will never take in `rejected/`, then acks it.
    async fn set_aside(&self, record: &Record, reason: &str) {
        self.metrics
            .ship_failures
            .with_label_values(&[&format!("rejected_{reason}")])
            .inc();
        let path = self.rejected_dir.join(format!("{}.hgb", record.id));
        let data = record.data.clone();
        let dir = self.rejected_dir.clone();
        let saved = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&path, data)
        })
        .await;
        match saved {
            Ok(Ok(())) => self.ack(record).await,
            other => {
                tracing::error!(result = ?other, "cannot set a rejected batch aside; keeping it in the buffer")
            }
        }
    }
}

fn batch_id(bytes: &[u8]) -> Option<BatchId> {
    decode_batch(bytes).ok()?.header?.id
}

/// Sleeps the backoff with jitter and doubles it. True when it is time to
/// give up.
async fn pause<F: std::future::Future<Output = ()> + Unpin>(
    backoff: &mut Duration,
    give_up: &mut F,
) -> bool {
    let jitter = Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2));
    let wait = *backoff + jitter;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        () = give_up => true,
    }
}
