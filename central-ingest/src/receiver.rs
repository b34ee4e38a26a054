//! The receiver role: the [`BatchHandler`] behind the QUIC server. It
//! verifies a batch, archives it, and only then answers Ack.
//!
//! Answers:
//! - **Ack** when the batch is durable in the archive, whether this request
//!   wrote it or an earlier send of the same batch did (re-sending is safe).
//! - **Reject{InvalidBatch|EdgeMismatch}** when the bytes can never be
//!   accepted ([`verify`] says why). The request is kept under
//!   `quarantine/` with the reason, and counted in
//!   `hourglass_central_rejects_total{reason}`.
//! - **Busy** when more than `max_in_flight` batches are being handled
//!   (`backlog`) or the archive write failed (`archive_error`): the edge
//!   keeps the batch and sends it again later.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hourglass_archive::{Archive, ArchiveError, BatchKey, Quarantine, Stored, receive_hour};
use hourglass_model::{BatchId, DecodeError, decode_batch};
use hourglass_transport::{BatchHandler, EdgeIdentity, RejectReason, Response};
use tokio::sync::{Semaphore, mpsc};

use crate::metrics::Metrics;

/// Why a batch is refused: a stable metric label and a message for the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            reason,
            message: message.into(),
        }
    }

    fn wire_reason(&self) -> RejectReason {
        match self.reason {
            "edge_mismatch" => RejectReason::EdgeMismatch,
            _ => RejectReason::InvalidBatch,
        }
    }
}

/// Checks a batch file sent by `edge` on a stream announcing `batch_id`:
/// frame, version and checksum (by decoding it), the id in its header, the
/// edge, the header counts, and that it has a receive hour. Returns where
/// it goes in the archive. Pure: no IO, no clock.
pub fn verify(edge: &str, batch_id: &BatchId, bytes: &[u8]) -> Result<BatchKey, Refusal> {
    if batch_id.edge_id != edge {
        return Err(Refusal::new(
            "edge_mismatch",
            format!("batch id {batch_id} names another edge than the certificate ({edge})"),
        ));
    }
    let batch = decode_batch(bytes).map_err(|e| {
        let reason = match e {
            DecodeError::ChecksumMismatch { .. } => "checksum",
            DecodeError::UnsupportedVersion { .. } | DecodeError::UnknownFlags { .. } => "version",
            DecodeError::Truncated { .. } | DecodeError::TrailingBytes { .. } => "truncated",
            DecodeError::BadMagic
            | DecodeError::TooLarge { .. }
            | DecodeError::Decompress(_)
            | DecodeError::Decode(_) => "decode",
        };
        Refusal::new(reason, e.to_string())
    })?;
    let header = batch.header.as_ref();
    match batch.id() {
        None => {
            return Err(Refusal::new(
                "missing_id",
                "the batch header carries no batch id",
            ));
        }
        Some(id) if id != batch_id => {
            return Err(Refusal::new(
                "id_mismatch",
                format!("the stream announced batch {batch_id} but the batch header says {id}"),
            ));
        }
        Some(_) => {}
    }
    let counts = header.map_or((0, 0, 0), |h| (h.hit_count, h.event_count, h.reject_count));
    let actual = (
        batch.raw_hits.len(),
        batch.events.len(),
        batch.rejects.len(),
    );
    if (counts.0 as usize, counts.1 as usize, counts.2 as usize) != actual {
        return Err(Refusal::new(
            "counts_mismatch",
            format!(
                "the header counts (hits, events, rejects) {counts:?} do not match the contents {actual:?}"
            ),
        ));
    }
    let hour =
        receive_hour(&batch).map_err(|e| Refusal::new("time_out_of_range", e.to_string()))?;
    Ok(BatchKey {
        hour,
        batch_id: batch_id.clone(),
    })
}

pub struct Receiver {
    archive: Archive,
    metrics: Metrics,
    in_flight: Arc<Semaphore>,
    busy_retry_after_ms: u32,
    /// Archived keys, for the loader in this process.
    archived: Option<mpsc::UnboundedSender<BatchKey>>,
}

impl Receiver {
    pub fn new(
        archive: Archive,
        metrics: Metrics,
        max_in_flight: u32,
        busy_retry_after_ms: u32,
    ) -> Self {
        Receiver {
            archive,
            metrics,
            in_flight: Arc::new(Semaphore::new(max_in_flight as usize)),
            busy_retry_after_ms,
            archived: None,
        }
    }

    /// Hands every archived key to `loader` as well.
    pub fn notify(mut self, loader: mpsc::UnboundedSender<BatchKey>) -> Self {
        self.archived = Some(loader);
        self
    }

    fn archived(&self, key: BatchKey) {
        if let Some(loader) = &self.archived {
            // The loader also scans the archive; a closed channel loses nothing.
            let _ = loader.send(key);
        }
    }

    fn busy(&self, reason: &str) -> Response {
        self.metrics.busy.with_label_values(&[reason]).inc();
        Response::Busy {
            retry_after_ms: self.busy_retry_after_ms,
        }
    }

    async fn refuse(&self, batch_id: &BatchId, bytes: Bytes, refusal: Refusal) -> Response {
        self.metrics
            .rejects
            .with_label_values(&[refusal.reason])
            .inc();
        tracing::warn!(batch = %batch_id, reason = refusal.reason, message = %refusal.message, "batch refused");
        let kept = self
            .archive
            .quarantine(Quarantine {
                batch_id,
                refused_at_ms: now_ms(),
                reason: refusal.reason,
                message: &refusal.message,
                bytes,
            })
            .await;
        if let Err(error) = kept {
            self.metrics.quarantine_errors.inc();
            tracing::error!(batch = %batch_id, %error, "could not quarantine a refused batch");
        }
        Response::Reject {
            reason: refusal.wire_reason(),
            message: refusal.message,
        }
    }
}

#[async_trait::async_trait]
impl BatchHandler for Receiver {
    async fn handle(&self, edge: EdgeIdentity, batch_id: BatchId, bytes: Vec<u8>) -> Response {
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            return self.busy("backlog");
        };
        self.metrics.in_flight.inc();
        let _gauge = scopeguard(&self.metrics);
        let bytes = Bytes::from(bytes);

        let edge_name = edge.name.to_string();
        let (id, payload) = (batch_id.clone(), bytes.clone());
        // Decompressing and decoding a batch is CPU work; keep it off the
        // reactor threads.
        let verified = tokio::task::spawn_blocking(move || verify(&edge_name, &id, &payload)).await;
        let key = match verified {
            Ok(Ok(key)) => key,
            Ok(Err(refusal)) => return self.refuse(&batch_id, bytes, refusal).await,
            Err(error) => {
                tracing::error!(batch = %batch_id, %error, "batch verification task failed");
                return self.busy("internal");
            }
        };

        let len = bytes.len() as u64;
        match self.archive.put(&key, bytes.clone()).await {
            Ok(Stored::New) => {
                self.metrics.batches_archived.inc();
                self.metrics.archived_bytes.inc_by(len);
                tracing::debug!(batch = %batch_id, key = %key, "batch archived");
                self.archived(key);
                Response::Ack { batch_id }
            }
            Ok(Stored::AlreadyArchived) => {
                self.metrics.batches_duplicate.inc();
                tracing::debug!(batch = %batch_id, "batch re-sent; already archived");
                self.archived(key);
                Response::Ack { batch_id }
            }
            Err(ArchiveError::Conflict { .. }) => {
                let refusal = Refusal::new(
                    "id_conflict",
                    format!(
                        "another batch with id {batch_id} is already archived; \
                         the edge's batch sequence went backwards — give the edge a new edge id"
                    ),
                );
                self.refuse(&batch_id, bytes, refusal).await
            }
            Err(error) => {
                tracing::error!(batch = %batch_id, %error, "archive write failed; answering Busy");
                self.busy("archive_error")
            }
        }
    }
}

/// Decrements the in-flight gauge however `handle` returns.
fn scopeguard(metrics: &Metrics) -> impl Drop + '_ {
    struct Guard<'a>(&'a Metrics);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            self.0.in_flight.dec();
        }
    }
    Guard(metrics)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use hourglass_model::{Batch, BatchHeader, RawHit, encode_batch};

    // 2026-11-25T14:30:00Z
    const T: i64 = 1_795_617_000_000;

    fn id(edge: &str, seq: u64) -> BatchId {
        BatchId {
            edge_id: edge.into(),
            seq,
        }
    }

    fn batch(id: BatchId, hits: usize) -> Batch {
        Batch {
            header: Some(BatchHeader {
                id: Some(id),
                created_at_ms: T + 3_600_000,
                plugin_set: "v1".into(),
                hit_count: hits as u32,
                ..BatchHeader::default()
            }),
            raw_hits: (0..hits)
                .map(|i| RawHit {
                    received_at_ms: T + i as i64,
                    ..RawHit::default()
                })
                .collect(),
            ..Batch::default()
        }
    }

    fn edge(name: &str) -> EdgeIdentity {
        EdgeIdentity {
            name: hourglass_pki::EdgeName::new(name).unwrap(),
            serial: hourglass_pki::Serial::from_bytes(&[1, 2, 3]),
        }
    }

    fn receiver(dir: &std::path::Path, max_in_flight: u32) -> (Receiver, Metrics) {
        let metrics = Metrics::new();
        let archive = Archive::local(dir).unwrap();
        (
            Receiver::new(archive, metrics.clone(), max_in_flight, 250),
            metrics,
        )
    }

    #[tokio::test]
    async fn acks_only_what_is_archived_and_resends_are_acked_once_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (receiver, metrics) = receiver(dir.path(), 4);
        let bytes = encode_batch(&batch(id("pop-1", 1), 3));
        let answer = receiver
            .handle(edge("pop-1"), id("pop-1", 1), bytes.clone())
            .await;
        assert_eq!(
            answer,
            Response::Ack {
                batch_id: id("pop-1", 1)
            }
        );
        let stored = dir
            .path()
            .join("raw/v1/2026/11/25/14/pop-1/pop-1-00000000000000000001.hgb");
        assert_eq!(std::fs::read(&stored).unwrap(), bytes);

        let again = receiver.handle(edge("pop-1"), id("pop-1", 1), bytes).await;
        assert_eq!(
            again,
            Response::Ack {
                batch_id: id("pop-1", 1)
            }
        );
        assert_eq!(metrics.batches_archived.get(), 1);
        assert_eq!(metrics.batches_duplicate.get(), 1);

        // The same id with other contents: the edge's sequence went back.
        let other = encode_batch(&batch(id("pop-1", 1), 5));
        let answer = receiver.handle(edge("pop-1"), id("pop-1", 1), other).await;
        assert!(
            matches!(
                answer,
                Response::Reject {
                    reason: RejectReason::InvalidBatch,
                    ..
                }
            ),
            "{answer:?}"
        );
        assert_eq!(metrics.rejects.with_label_values(&["id_conflict"]).get(), 1);
        assert_eq!(metrics.in_flight.get(), 0);
    }

    #[tokio::test]
    async fn an_archive_that_cannot_be_written_answers_busy_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let (receiver, metrics) = receiver(dir.path(), 4);
        // A file where the `raw` directory must go: no put can succeed
        // (even as root, unlike a permission bit).
        std::fs::write(dir.path().join("raw"), b"in the way").unwrap();
        let bytes = encode_batch(&batch(id("pop-1", 2), 1));
        let answer = receiver
            .handle(edge("pop-1"), id("pop-1", 2), bytes.clone())
            .await;
        assert_eq!(
            answer,
            Response::Busy {
                retry_after_ms: 250
            }
        );
        assert_eq!(metrics.busy.with_label_values(&["archive_error"]).get(), 1);

        std::fs::remove_file(dir.path().join("raw")).unwrap();
        let answer = receiver.handle(edge("pop-1"), id("pop-1", 2), bytes).await;
        assert_eq!(
            answer,
            Response::Ack {
                batch_id: id("pop-1", 2)
            }
        );
    }

    #[tokio::test]
    async fn past_the_backlog_limit_edges_are_told_busy() {
        let dir = tempfile::tempdir().unwrap();
        let (receiver, metrics) = receiver(dir.path(), 1);
        let _held = receiver.in_flight.clone().try_acquire_owned().unwrap();
        let bytes = encode_batch(&batch(id("pop-1", 3), 1));
        let answer = receiver.handle(edge("pop-1"), id("pop-1", 3), bytes).await;
        assert_eq!(
            answer,
            Response::Busy {
                retry_after_ms: 250
            }
        );
        assert_eq!(metrics.busy.with_label_values(&["backlog"]).get(), 1);
        assert!(!dir.path().join("raw").exists());
    }

    #[tokio::test]
    async fn a_bad_batch_is_quarantined_with_its_reason_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (receiver, metrics) = receiver(dir.path(), 4);
        let mut bytes = encode_batch(&batch(id("pop-1", 4), 2));
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let answer = receiver.handle(edge("pop-1"), id("pop-1", 4), bytes).await;
        assert!(
            matches!(
                answer,
                Response::Reject {
                    reason: RejectReason::InvalidBatch,
                    ..
                }
            ),
            "{answer:?}"
        );
        assert_eq!(metrics.rejects.with_label_values(&["checksum"]).get(), 1);
        assert!(!dir.path().join("raw").exists(), "nothing archived");
        let quarantine = dir.path().join("quarantine");
        let mut found = Vec::new();
        let mut stack = vec![quarantine];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    found.push(p.file_name().unwrap().to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        assert_eq!(
            found,
            [
                "pop-1-00000000000000000004.hgb",
                "pop-1-00000000000000000004.json"
            ]
        );
    }

    #[test]
    fn a_good_batch_goes_to_its_receive_hour() {
        let bytes = encode_batch(&batch(id("pop-1", 3), 2));
        let key = verify("pop-1", &id("pop-1", 3), &bytes).unwrap();
        assert_eq!(
            key.path(),
            "raw/v1/2026/11/25/14/pop-1/pop-1-00000000000000000003.hgb"
        );
    }

    #[test]
    fn every_bad_batch_is_refused_with_its_reason() {
        let good = encode_batch(&batch(id("pop-1", 3), 2));
        let reason = |edge: &str, stream_id: BatchId, bytes: &[u8]| {
            verify(edge, &stream_id, bytes).unwrap_err().reason
        };
        assert_eq!(reason("pop-2", id("pop-1", 3), &good), "edge_mismatch");
        assert_eq!(reason("pop-1", id("pop-1", 4), &good), "id_mismatch");

        let mut corrupt = good.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert_eq!(reason("pop-1", id("pop-1", 3), &corrupt), "checksum");
        assert_eq!(
            reason("pop-1", id("pop-1", 3), &good[..good.len() - 1]),
            "truncated"
        );
        let mut newer = good.clone();
        newer[4] = 9;
        assert_eq!(reason("pop-1", id("pop-1", 3), &newer), "version");
        assert_eq!(reason("pop-1", id("pop-1", 3), b"hello"), "decode");

        let mut no_id = batch(id("pop-1", 3), 1);
        no_id.header.as_mut().unwrap().id = None;
        assert_eq!(
            reason("pop-1", id("pop-1", 3), &encode_batch(&no_id)),
            "missing_id"
        );
        let mut miscounted = batch(id("pop-1", 3), 2);
        miscounted.header.as_mut().unwrap().hit_count = 5;
        assert_eq!(
            reason("pop-1", id("pop-1", 3), &encode_batch(&miscounted)),
            "counts_mismatch"
        );
        let mut ancient = batch(id("pop-1", 3), 1);
        ancient.raw_hits[0].received_at_ms = -1;
        assert_eq!(
            reason("pop-1", id("pop-1", 3), &encode_batch(&ancient)),
            "time_out_of_range"
        );
    }
}
