//! The edge's Prometheus metrics: `hourglass_edge_<thing>_<unit>`, every
//! reject reason a label value.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hourglass_processing::PluginStats;
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
    /// TLS handshakes on the HTTPS listener that failed or timed out.
    pub tls_handshake_failures: IntCounter,
    /// The plugin chain's counters, each labelled by `plugin`.
    pub plugins: PluginMetrics,
    /// Control channel: the state version in use, states applied, states
    /// or blobs refused (by reason), syncs that failed.
    pub control_version: IntGauge,
    pub control_applied: IntCounter,
    pub control_refused: IntCounterVec,
    pub control_sync_errors: IntCounter,
    /// 1 for the plugin set the writer runs (label `plugin_set`).
    pub plugin_set: IntGaugeVec,
}

/// A plugin chain's [`PluginStats`] as Prometheus counters. The chain
/// counts since it was made; these count since the process started (a
/// chain made anew, e.g. a new plugin set, starts its deltas from zero).
#[derive(Clone)]
pub struct PluginMetrics {
    pub calls: IntCounterVec,
    pub events: IntCounterVec,
    pub dropped: IntCounterVec,
    pub failures: IntCounterVec,
    pub instantiations: IntCounterVec,
    pub fuel: IntCounterVec,
    pub nanos: IntCounterVec,
    /// What was published last, per plugin.
    published: Arc<Mutex<BTreeMap<String, PluginStats>>>,
}

fn labelled(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric name {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registers once: {e}"));
    c
}

impl PluginMetrics {
    fn new(r: &Registry) -> Self {
        let per_plugin = |name: &str, help: &str| labelled(r, name, help, &["plugin"]);
        PluginMetrics {
            calls: per_plugin(
                "hourglass_edge_plugin_calls_total",
                "Batches handed to a plugin, failed calls included",
            ),
            events: per_plugin(
                "hourglass_edge_plugin_events_total",
                "Events handed to a plugin",
            ),
            dropped: labelled(
                r,
                "hourglass_edge_plugin_events_dropped_total",
                "Events a plugin dropped, by its reason (plugin_failed: its batch was rejected by its failure policy)",
                &["plugin", "reason"],
            ),
            failures: labelled(
                r,
                "hourglass_edge_plugin_failures_total",
                "Failed plugin calls, by kind (out_of_fuel, deadline, memory_cap, stack_overflow, trap, bad_output, oversized_output, init_error)",
                &["plugin", "kind"],
            ),
            instantiations: per_plugin(
                "hourglass_edge_plugin_instantiations_total",
                "Plugin instances made (the first, then one after each failure)",
            ),
            fuel: per_plugin(
                "hourglass_edge_plugin_fuel_used_total",
                "Fuel (WASM instructions, roughly) plugins used",
            ),
            nanos: per_plugin(
                "hourglass_edge_plugin_time_nanoseconds_total",
                "Wall-clock time in plugin calls",
            ),
            published: Arc::default(),
        }
    }

    /// Adds what each plugin counted since the last call.
    pub fn record(&self, stats: &[PluginStats]) {
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for now in stats {
            let before = published.entry(now.plugin.clone()).or_default();
            // Fewer calls than before: a new chain, counting from zero.
            if now.calls < before.calls {
                *before = PluginStats::default();
            }
            let delta = |now: u64, before: u64| now.saturating_sub(before);
            let p = now.plugin.as_str();
            self.calls
                .with_label_values(&[p])
                .inc_by(delta(now.calls, before.calls));
            self.events
                .with_label_values(&[p])
                .inc_by(delta(now.events_in, before.events_in));
            self.instantiations
                .with_label_values(&[p])
                .inc_by(delta(now.instantiations, before.instantiations));
            self.fuel
                .with_label_values(&[p])
                .inc_by(delta(now.fuel_used, before.fuel_used));
            self.nanos
                .with_label_values(&[p])
                .inc_by(delta(now.nanos, before.nanos));
            for (reason, n) in &now.drops {
                let was = before.drops.get(reason).copied().unwrap_or(0);
                self.dropped
                    .with_label_values(&[p, reason.as_str()])
                    .inc_by(delta(*n, was));
            }
            for (kind, n) in &now.failures {
                let was = before.failures.get(kind).copied().unwrap_or(0);
                self.failures
                    .with_label_values(&[p, kind])
                    .inc_by(delta(*n, was));
            }
            *before = now.clone();
        }
    }
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
            tls_handshake_failures: counter(
                &r,
                "hourglass_edge_tls_handshake_failures_total",
                "TLS handshakes on the HTTPS listener that failed or timed out",
            ),
            plugins: PluginMetrics::new(&r),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(calls: u64, trap: u64) -> PluginStats {
        PluginStats {
            plugin: "geo".into(),
            calls,
            events_in: calls * 10,
            failures: BTreeMap::from([("trap", trap)]),
            drops: BTreeMap::from([("bot".to_owned(), trap)]),
            ..PluginStats::default()
        }
    }

    #[test]
    fn plugin_counters_add_deltas_and_survive_a_new_chain() {
        let m = Metrics::new();
        m.plugins.record(&[stats(3, 1)]);
        m.plugins.record(&[stats(5, 1)]);
        assert_eq!(m.plugins.calls.with_label_values(&["geo"]).get(), 5);
        assert_eq!(m.plugins.events.with_label_values(&["geo"]).get(), 50);
        // A new chain starts from zero: its counts are added on.
        m.plugins.record(&[stats(2, 2)]);
        assert_eq!(m.plugins.calls.with_label_values(&["geo"]).get(), 7);
        assert_eq!(
            m.plugins.failures.with_label_values(&["geo", "trap"]).get(),
            3
        );
        assert_eq!(
            m.plugins.dropped.with_label_values(&["geo", "bot"]).get(),
            3
        );
    }
}
