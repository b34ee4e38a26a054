//! The edge's Prometheus metrics: `hourglass_edge_<thing>_<unit>`, every
//! reject reason a label value.

use hourglass_svc::metrics::{counter, counter_vec, gauge};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

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
    /// Control channel: the state version in use, states applied, states
    /// or blobs refused (by reason), syncs that failed.
    pub control_version: IntGauge,
    pub control_applied: IntCounter,
    pub control_refused: IntCounterVec,
    pub control_sync_errors: IntCounter,
    /// 1 for the plugin set the writer runs (label `plugin_set`).
    pub plugin_set: IntGaugeVec,
}

impl Metrics {
    /// Records that new batches run `plugin_set`.
    pub fn set_plugin_set(&self, plugin_set: &str) {
        self.plugin_set.reset();
        self.plugin_set.with_label_values(&[plugin_set]).set(1);
    }

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
            control_version: gauge(
                &r,
                "hourglass_edge_control_state_version",
                "Version of the control state in use (0: none)",
            ),
            control_applied: counter(
                &r,
                "hourglass_edge_control_applied_total",
                "Control states applied (site directory and plugin chain swapped in)",
            ),
            control_refused: counter_vec(
                &r,
                "hourglass_edge_control_refused_total",
                "Control states or blobs refused (the edge keeps its state), by reason",
                "reason",
            ),
            control_sync_errors: counter(
                &r,
                "hourglass_edge_control_sync_errors_total",
                "Control syncs that failed (central unreachable or refusing)",
            ),
            plugin_set: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "hourglass_edge_plugin_set_info",
                        "The plugin set new batches run (value 1)",
                    ),
                    &["plugin_set"],
                )
                .expect("metric names are valid");
                r.register(Box::new(g.clone()))
                    .expect("each metric is registered once");
                g
            },
            registry: r,
        }
    }
}
