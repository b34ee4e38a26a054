//! Registering Prometheus metrics. Names are constants of the code, so a
//! bad name or a double registration is a bug and panics at start-up, with
//! the name in the message, never later.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
    name: &str,
) -> M {
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registers once: {e}"));
    metric
}

pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric name {name}: {e}"));
    register(registry, c, name)
}

pub fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label])
        .unwrap_or_else(|e| panic!("metric name {name}: {e}"));
    register(registry, c, name)
}

pub fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric name {name}: {e}"));
    register(registry, g, name)
}
