//! The WASM plugin host: loads plugin components and runs them as the
//! processing pipeline's [`PluginChain`](hourglass_processing::PluginChain).
//!
//! Design constraints, in order:
//! - **A plugin imports nothing.** No WASI, no host functions: a component
//!   with any import is refused at load, so a plugin is a pure function of
//!   its config, its data and its events, and `reprocess` can reproduce
//!   ingest.
//! - **A plugin cannot hurt the host.** Each instance lives in its own
//!   `Store` with a memory cap, fuel (deterministic: the same batch runs
//!   out at the same instruction on every machine), an epoch deadline (the
//!   wall-clock backstop, ticked by one thread per [`Host`]) and a maximum
//!   wasm stack. Any error drops the store; the next call instantiates
//!   afresh.
//! - **Refuse early, say why.** [`Host::load`] checks a plugin in steps —
//!   decode, compile, imports, world, init, dry run — and the error names
//!   the step that failed.
//! - **A plugin sees only what it declared.** `init` returns the fields it
//!   reads and writes: the host copies only those into the sandbox and
//!   takes back only those.
//!
//! [`ScopedChain`] runs the platform chain on every event, then a site's
//! own chain on that site's events; [`load_chains`] builds one from the
//! chains central sends over the control channel.
//!
//! What is not here: where plugins come from (the registry in
//! `central-ingest`), precompiled artifacts, and metrics export (the
//! [`Chain`] keeps counters; the service publishes them).
//!
//! The WIT world is `plugins/wit`; `docs/plugins.md` tells how to write a
//! plugin.

mod chain;
mod fields;
mod host;
mod plugin_set;
mod scoped;

pub use chain::{Chain, FailurePolicy};
pub use host::{Host, HostError, Limits, LoadError, LoadStep, LoadedPlugin, PluginSource};
pub use hourglass_processing::PluginStats;
pub use plugin_set::{PluginConfig, PluginSet, PluginSetError};
pub use scoped::{ScopedChain, load_chains};

/// The `plugin` world's bindings, generated from `plugins/wit`.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../plugins/wit",
        world: "plugin",
    });
}
