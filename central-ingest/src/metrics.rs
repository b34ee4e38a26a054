//! central-ingest's Prometheus metrics: `hourglass_central_<thing>_<unit>`,
//! every reject and busy reason a label value.

use hourglass_svc::metrics::{counter, counter_vec, gauge};
use hourglass_transport::StatsSnapshot;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Batches newly archived, and their bytes.
    pub batches_archived: IntCounter,
    pub archived_bytes: IntCounter,
    /// Re-sent batches that were already archived (Acked again, not stored).
    pub batches_duplicate: IntCounter,
    /// Batches refused, by reason (see `receiver::Refusal`).
    pub rejects: IntCounterVec,
    /// Busy answers, by reason (`backlog`, `archive_error`).
    pub busy: IntCounterVec,
    /// Refused batches that could not be written to `quarantine/`.
    pub quarantine_errors: IntCounter,
    /// Batches being verified and archived right now.
    pub in_flight: IntGauge,
    /// Archived batches deleted by the retention sweep.
    pub swept_batches: IntCounter,
    /// Times `crl.pem` was reloaded into the QUIC endpoint.
    pub crl_reloads: IntCounter,
    /// Edge connections accepted, and handshakes that failed (unknown CA,
    /// revoked or expired certificate, not an edge certificate).
    pub connections: IntCounter,
    pub handshakes_failed: IntCounter,
    /// Streams that ended without an answer (edge reset, connection lost).
    pub streams_failed: IntCounter,
    /// Loader: batches and rows loaded into `events`, inserts made.
    pub loaded_batches: IntCounter,
    pub loaded_rows: IntCounter,
    pub load_inserts: IntCounter,
    /// Loader: failed cycles (ClickHouse down, …), recoveries of
    /// interrupted loads, batches given up on (marked `failed`).
    pub load_errors: IntCounter,
    pub load_recoveries: IntCounter,
    pub load_failed_batches: IntCounter,
    /// Loader: archived batches not loaded yet, and the age of the oldest.
    pub load_pending_batches: IntGauge,
    pub load_lag_seconds: Gauge,
    /// Control channel: requests answered by kind, the state served, and
    /// refreshes of it.
    pub control_requests: IntCounterVec,
    pub control_state_version: IntGauge,
    pub control_refreshes: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        Metrics {
            batches_archived: counter(
                &r,
                "hourglass_central_batches_archived_total",
                "Batches newly written to the archive (then Acked).",
            ),
            archived_bytes: counter(
                &r,
                "hourglass_central_archived_bytes_total",
                "Bytes of batch files newly written to the archive.",
            ),
            batches_duplicate: counter(
                &r,
                "hourglass_central_batches_duplicate_total",
                "Re-sent batches found already archived (Acked, not stored twice).",
            ),
            rejects: counter_vec(
                &r,
                "hourglass_central_rejects_total",
                "Batches refused and quarantined, by reason.",
                "reason",
            ),
            busy: counter_vec(
                &r,
                "hourglass_central_busy_total",
                "Batches answered Busy (edge retries later), by reason.",
                "reason",
            ),
            quarantine_errors: counter(
                &r,
                "hourglass_central_quarantine_errors_total",
                "Refused batches that could not be written to quarantine/.",
            ),
            in_flight: gauge(
                &r,
                "hourglass_central_in_flight_batches",
                "Batches being verified and archived right now.",
            ),
            swept_batches: counter(
                &r,
                "hourglass_central_swept_batches_total",
                "Archived batches deleted by the retention sweep.",
            ),
            crl_reloads: counter(
                &r,
                "hourglass_central_crl_reloads_total",
                "Times a changed crl.pem was applied to the QUIC endpoint.",
            ),
            connections: counter(
                &r,
                "hourglass_central_connections_total",
                "Edge connections accepted (mTLS handshake done, edge identified).",
            ),
            handshakes_failed: counter(
                &r,
                "hourglass_central_handshakes_failed_total",
                "Connections refused: failed handshake or a certificate that names no edge.",
            ),
            streams_failed: counter(
                &r,
                "hourglass_central_streams_failed_total",
                "Batch streams that ended without an answer (reset, lost, shutdown).",
            ),
            loaded_batches: counter(
                &r,
                "hourglass_central_loaded_batches_total",
                "Batches loaded into ClickHouse (ledger says loaded).",
            ),
            loaded_rows: counter(
                &r,
                "hourglass_central_loaded_rows_total",
                "Event rows loaded into ClickHouse.",
            ),
            load_inserts: counter(
                &r,
                "hourglass_central_load_inserts_total",
                "Inserts into events (one per day partition per load).",
            ),
            load_errors: counter(
                &r,
                "hourglass_central_load_errors_total",
                "Loader cycles that failed and were retried with backoff.",
            ),
            load_recoveries: counter(
                &r,
                "hourglass_central_load_recoveries_total",
                "Recoveries of interrupted loads (rows removed, rollups rebuilt).",
            ),
            load_failed_batches: counter(
                &r,
                "hourglass_central_load_failed_batches_total",
                "Archived batches that cannot be loaded (marked failed in the ledger).",
            ),
            load_pending_batches: gauge(
                &r,
                "hourglass_central_load_pending_batches",
                "Archived batches not loaded yet.",
            ),
            load_lag_seconds: {
                let g = Gauge::new(
                    "hourglass_central_load_lag_seconds",
                    "Age of the oldest archived batch not loaded yet (0 when none).",
                )
                .expect("metric names are valid");
                r.register(Box::new(g.clone()))
                    .expect("each metric is registered once");
                g
            },
            control_requests: counter_vec(
                &r,
                "hourglass_central_control_requests_total",
                "Control requests from edges, by answer: sync (state or unchanged), blob, refused.",
                "kind",
            ),
            control_state_version: gauge(
                &r,
                "hourglass_central_control_state_version",
                "Version of the control state served to edges (0: none yet).",
            ),
            control_refreshes: counter_vec(
                &r,
                "hourglass_central_control_refreshes_total",
                "Control state refreshes from metadata, by outcome: changed, unchanged, error, invalid.",
                "outcome",
            ),
            registry: r,
        }
    }
}

impl Metrics {
    /// Adds what the transport counted since `last` (its own refusals,
    /// made before the handler sees a request, join the handler's under
    /// `hourglass_central_rejects_total`).
    pub fn add_transport(&self, last: &StatsSnapshot, now: &StatsSnapshot) {
        let delta = |a: u64, b: u64| b.saturating_sub(a);
        self.connections
            .inc_by(delta(last.connections, now.connections));
        self.handshakes_failed.inc_by(
            delta(last.handshakes_failed, now.handshakes_failed)
                + delta(last.not_an_edge, now.not_an_edge),
        );
        self.streams_failed
            .inc_by(delta(last.streams_failed, now.streams_failed));
        self.rejects
            .with_label_values(&["malformed"])
            .inc_by(delta(last.rejected_malformed, now.rejected_malformed));
        self.rejects
            .with_label_values(&["edge_mismatch"])
            .inc_by(delta(
                last.rejected_edge_mismatch,
                now.rejected_edge_mismatch,
            ));
        for (kind, was, is) in [
            ("sync", last.control_syncs, now.control_syncs),
            ("blob", last.control_blobs, now.control_blobs),
            ("refused", last.control_refused, now.control_refused),
        ] {
            self.control_requests
                .with_label_values(&[kind])
                .inc_by(delta(was, is));
        }
    }
}
