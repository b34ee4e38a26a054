//! The edge's Prometheus metrics: `hourglass_edge_<thing>_<unit>`, every
//! reject reason a label value.

use hourglass_svc::metrics::{counter, counter_vec, gauge};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Hits accepted (answered 202), by protocol.
    pub hits: IntCounterVec,
    /// Requests refused, by reason.
    pub rejects: IntCounterVec,
    /// Events dropped by processing (plugins, stamps), by reason.
    pub events_dropped: IntCounterVec,
    pub batches_written: IntCounter,
    pub batch_bytes: IntCounter,
    /// Hits the buffer refused (full, `block`) or dropped (`drop_newest`).
    pub buffer_refused_hits: IntCounterVec,
    pub buffer_records: IntGauge,
    pub buffer_bytes: IntGauge,
    /// Damage found when the buffer was opened.
    pub buffer_recovered: IntCounterVec,
    pub batches_shipped: IntCounter,
    /// Central's Busy / Reject answers and transport errors.
    pub ship_failures: IntCounterVec,
    /// Hits seen with a bot-like user agent or a prefetch header (still
    /// accepted: the bot-filter plugin decides).
    pub suspect_hits: IntCounterVec,
    /// TLS handshakes on the HTTPS listener that failed or timed out.
    pub tls_handshake_failures: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        Metrics {
            hits: counter_vec(
                &r,
                "hourglass_edge_hits_total",
                "Hits accepted (202)",
                "protocol",
            ),
            rejects: counter_vec(
                &r,
                "hourglass_edge_rejects_total",
                "Requests refused",
                "reason",
            ),
            events_dropped: counter_vec(
                &r,
                "hourglass_edge_events_dropped_total",
                "Events dropped by processing",
                "reason",
            ),
            batches_written: counter(
                &r,
                "hourglass_edge_batches_written_total",
                "Batches written to the disk buffer",
            ),
            batch_bytes: counter(
                &r,
                "hourglass_edge_batch_bytes_total",
                "Compressed batch bytes written",
            ),
            buffer_refused_hits: counter_vec(
                &r,
                "hourglass_edge_buffer_refused_hits_total",
                "Hits the full buffer refused or dropped",
                "policy",
            ),
            buffer_records: gauge(
                &r,
                "hourglass_edge_buffer_records",
                "Batches waiting for central",
            ),
            buffer_bytes: gauge(
                &r,
                "hourglass_edge_buffer_bytes",
                "Bytes of the disk buffer",
            ),
            buffer_recovered: counter_vec(
                &r,
                "hourglass_edge_buffer_recovery_total",
                "Damage repaired when the disk buffer was opened",
                "kind",
            ),
            batches_shipped: counter(
                &r,
                "hourglass_edge_batches_shipped_total",
                "Batches acknowledged by central",
            ),
            ship_failures: counter_vec(
                &r,
                "hourglass_edge_ship_failures_total",
                "Failed batch sends",
                "kind",
            ),
            suspect_hits: counter_vec(
                &r,
                "hourglass_edge_suspect_hits_total",
                "Accepted hits from bot-like agents or prefetches",
                "kind",
            ),
            tls_handshake_failures: counter(
                &r,
                "hourglass_edge_tls_handshake_failures_total",
                "TLS handshakes on the HTTPS listener that failed or timed out",
            ),
            registry: r,
        }
    }
}
