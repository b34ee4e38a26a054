//! The batch writer: one task that owns the batcher and the processing
//! pipeline (with its plugin chain). It turns closed batches into batch
//! files, appends them to the disk buffer, and tells each waiting request
//! whether its hit is durable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hourglass_disk_buffer::{AppendError, Appended, DiskBuffer};
use hourglass_model::{Batch, BatchHeader, BatchId, RawHit, try_encode_batch};
use hourglass_processing::pipeline::Pipeline;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::batcher::{BatchLimits, Batcher};
use crate::metrics::Metrics;

/// Why a hit could not be made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The buffer is full and the policy is `block`.
    Full,
    /// The buffer could not be written; the operator must look.
    Io,
}

/// A new site directory and plugin chain from the control channel. The
/// writer finishes the open batch with the old ones, swaps, then answers
/// `applied`: every batch runs wholly on one chain and names it.
pub struct Update {
    pub sites: Arc<hourglass_processing::SiteDirectory>,
    pub plugins: Box<dyn hourglass_processing::PluginChain>,
    pub applied: oneshot::Sender<()>,
}

/// A hit the ingress accepted, and who waits for it to be durable (`sync`
/// durability) — `None` when the client was answered already.
#[derive(Debug)]
pub struct Accepted {
    pub hit: RawHit,
    pub done: Option<oneshot::Sender<Result<(), Refused>>>,
}

pub type Waiter = Option<oneshot::Sender<Result<(), Refused>>>;

pub struct Writer {
    pub edge_id: String,
    pub pipeline: Pipeline,
    pub limits: BatchLimits,
    pub buffer: Arc<Mutex<DiskBuffer>>,
    pub metrics: Metrics,
    /// Woken when a batch is appended.
    pub shipper: Arc<Notify>,
    /// Set while the buffer refuses appends (`block` policy), so the
    /// ingress answers 503 before taking more.
    pub full: Arc<AtomicBool>,
    /// `Some` with `interval` durability: how often to fsync.
    pub sync_every: Option<Duration>,
    pub now_ms: fn() -> i64,
    /// Control channel updates (never sends when the control channel is off).
    pub updates: mpsc::Receiver<Update>,
}

impl Writer {
    /// Runs until every sender of `rx` is gone, then writes what is left.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Accepted>) {
        let mut batcher: Batcher<Waiter> = Batcher::new(self.limits);
        let mut last_seq = 0u64;
        let mut sync_tick =
            tokio::time::interval(self.sync_every.unwrap_or(Duration::from_secs(3600)));
        sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = batcher.deadline_ms().map(|at| {
                let wait = at.saturating_sub((self.now_ms)()).max(0);
                tokio::time::Instant::now()
                    + Duration::from_millis(u64::try_from(wait).unwrap_or(0))
            });
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Accepted { hit, done }) => {
                        if let Some(closed) = batcher.push(hit, done) {
                            self.write(closed, &mut last_seq).await;
                        }
                    }
                    None => break,
                },
                () = sleep_until(deadline) => {
                    if let Some(closed) = batcher.poll((self.now_ms)()) {
                        self.write(closed, &mut last_seq).await;
                    }
                }
                _ = sync_tick.tick(), if self.sync_every.is_some() => self.sync().await,
                Some(update) = self.updates.recv() => {
                    // Hits already batched run on the chain they were
                    // admitted under; the next batch on the new one.
                    if let Some(closed) = batcher.take() {
                        self.write(closed, &mut last_seq).await;
                    }
                    tracing::info!(
                        from = %self.pipeline.plugins.plugin_set(),
                        to = %update.plugins.plugin_set(),
                        sites_version = update.sites.version(),
                        "swapping in the new site directory and plugin chain"
                    );
                    self.pipeline.sites = update.sites;
                    self.pipeline.plugins = update.plugins;
                    self.metrics.set_plugin_set(self.pipeline.plugins.plugin_set());
                    let _ = update.applied.send(());
                }
            }
        }
        if let Some(closed) = batcher.take() {
            self.write(closed, &mut last_seq).await;
        }
        self.sync().await;
    }

    async fn sync(&self) {
        let buffer = self.buffer.clone();
        let result = tokio::task::spawn_blocking(move || lock(&buffer).sync()).await;
        if !matches!(result, Ok(Ok(()))) {
            tracing::error!(?result, "disk buffer fsync failed");
        }
    }

    /// Processing, encoding and the append are CPU and disk work: they run
    /// with `block_in_place`, so the runtime moves the other tasks (the
    /// ingress) off this thread meanwhile.
    async fn write(&mut self, closed: Vec<(RawHit, Waiter)>, last_seq: &mut u64) {
        tokio::task::block_in_place(|| self.write_blocking(closed, last_seq));
    }

    fn write_blocking(&mut self, closed: Vec<(RawHit, Waiter)>, last_seq: &mut u64) {
        let (hits, waiters): (Vec<RawHit>, Vec<Waiter>) = closed.into_iter().unzip();
        let outcome = self.pipeline.process_batch(&hits);
        self.metrics.plugins.record(&self.pipeline.plugins.stats());
        for r in &outcome.rejects {
            self.metrics
                .events_dropped
                .with_label_values(&[r.reason.as_str()])
                .inc();
        }
        let now = (self.now_ms)();
        // Batch ids must grow across restarts too: a re-used id would be
        // taken by central for a re-sent batch. Microseconds of the wall
        // clock, forced to increase within the process.
        let seq = u64::try_from(now)
            .unwrap_or(0)
            .saturating_mul(1000)
            .max(*last_seq + 1);
        *last_seq = seq;
        let batch = Batch {
            header: Some(BatchHeader {
                id: Some(BatchId {
                    edge_id: self.edge_id.clone(),
                    seq,
                }),
                created_at_ms: now,
                plugin_set: self.pipeline.plugins.plugin_set().to_owned(),
                hit_count: u32::try_from(hits.len()).unwrap_or(u32::MAX),
                event_count: u32::try_from(outcome.events.len()).unwrap_or(u32::MAX),
                reject_count: u32::try_from(outcome.rejects.len()).unwrap_or(u32::MAX),
            }),
            raw_hits: hits,
            events: outcome.events,
            rejects: outcome.rejects,
        };
        let result = match try_encode_batch(&batch) {
            Ok(bytes) => {
                let len = bytes.len() as u64;
                let appended = lock(&self.buffer).append(&bytes);
                match appended {
                    Ok(Appended::Stored(_)) => {
                        self.metrics.batches_written.inc();
                        self.metrics.batch_bytes.inc_by(len);
                        self.shipper.notify_one();
                        Ok(())
                    }
                    Ok(Appended::Dropped) => {
                        self.metrics
                            .buffer_refused_hits
                            .with_label_values(&["drop_newest"])
                            .inc_by(waiters.len() as u64);
                        Ok(())
                    }
                    Err(AppendError::Full { .. }) => {
                        self.full.store(true, Ordering::Relaxed);
                        self.metrics
                            .buffer_refused_hits
                            .with_label_values(&["block"])
                            .inc_by(waiters.len() as u64);
                        Err(Refused::Full)
                    }
                    other => {
                        tracing::error!(result = ?other, "appending a batch to the disk buffer failed");
                        Err(Refused::Io)
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "encoding a batch failed");
                Err(Refused::Io)
            }
        };
        let stats = lock(&self.buffer).stats();
        self.metrics
            .buffer_records
            .set(i64::try_from(stats.records).unwrap_or(i64::MAX));
        self.metrics
            .buffer_bytes
            .set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
        for done in waiters.into_iter().flatten() {
            // The request may have gone away; nothing to tell then.
            let _ = done.send(result);
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The buffer lock. A panic while holding it would be a bug in this
/// process; the data on disk stays consistent (every write is framed and
/// checked), so carry on with it.
pub fn lock(buffer: &Mutex<DiskBuffer>) -> std::sync::MutexGuard<'_, DiskBuffer> {
    buffer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
