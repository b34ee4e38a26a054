//! The engine, its limits, and loading a plugin in checked steps.

use std::fmt;
use std::time::Duration;

use hourglass_model::Event;
use hourglass_processing::HitContext;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap};

use crate::bindings::hourglass::plugin::types::{self as wit, DeclaredFields};
use crate::bindings::{Plugin, PluginPre};
use crate::chain::FailurePolicy;
use crate::fields::{self, FieldSet};

/// What one plugin instance may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory cap per instance; a grow past it fails.
    pub memory_bytes: usize,
    /// Wasm stack per call; deeper recursion traps.
    pub max_wasm_stack: usize,
    /// Fuel for `init` (a plugin may parse a pattern list or a database).
    pub init_fuel: u64,
    /// Fuel for one `process` call: this plus `fuel_per_event` per event.
    /// About 1.5 G units burn per second; a table-driven enricher uses
    /// ~13 k per event.
    pub fuel_per_call: u64,
    pub fuel_per_event: u64,
    /// Wall-clock backstop for one call (fuel is the deterministic limit).
    pub deadline: Duration,
    /// Most bytes of strings one call may return, per event of the batch
    /// (every string of the answer counts, declared or not); more is the
    /// failure `oversized_output`. The memory cap bounds what the host
    /// copies out before it can check.
    pub output_bytes_per_event: usize,
    /// How often the epoch ticker thread ticks; deadlines are whole ticks.
    pub epoch_tick: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            max_wasm_stack: 512 << 10,
            init_fuel: 2_000_000_000,
            fuel_per_call: 10_000_000,
            fuel_per_event: 1_000_000,
            deadline: Duration::from_secs(1),
            output_bytes_per_event: 64 << 10,
            epoch_tick: Duration::from_millis(5),
        }
    }
}

impl Limits {
    fn deadline_ticks(&self) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        // +1: the current tick may be about to end.
        u64::try_from(self.deadline.as_nanos().div_ceil(tick))
            .unwrap_or(u64::MAX)
            .max(1)
            + 1
    }

    pub(crate) fn fuel_for(&self, events: usize) -> u64 {
        self.fuel_per_event
            .saturating_mul(events as u64)
            .saturating_add(self.fuel_per_call)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot set up the WASM engine: {0}")]
    Engine(String),
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(std::io::Error),
}

/// The steps of [`Host::load`], in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadStep {
    /// Is it a WebAssembly component (not random bytes, not a core module)?
    Decode,
    Compile,
    /// A plugin imports nothing.
    Imports,
    /// Does it export the `hourglass:plugin` world's `init` and `process`?
    World,
    /// `init` with the site's config and data, within the init limits.
    Init,
    /// One `process` call on a sample event, within the call limits.
    DryRun,
}

impl fmt::Display for LoadStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoadStep::Decode => "decode",
            LoadStep::Compile => "compile",
            LoadStep::Imports => "imports",
            LoadStep::World => "world",
            LoadStep::Init => "init",
            LoadStep::DryRun => "dry-run",
        })
    }
}

/// A plugin the host refused, with the step that failed.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}` refused at step `{step}`: {message}")]
pub struct LoadError {
    pub plugin: String,
    pub step: LoadStep,
    pub message: String,
}

/// A plugin to load: its component bytes and its settings for this chain.
#[derive(Clone, Debug)]
pub struct PluginSource {
    /// Names the plugin in rejects and counters.
    pub name: String,
    pub wasm: Vec<u8>,
    /// Passed to `init` as is.
    pub config: String,
    /// Passed to `init` as is (a pattern list, a database…).
    pub data: Vec<u8>,
    pub on_failure: FailurePolicy,
}

/// The WASM engine plugins run in: limits, and the epoch ticker thread
/// (it stops once the host and every plugin it loaded are dropped).
pub struct Host {
    engine: Engine,
    linker: Linker<Sandbox>,
    limits: Limits,
}

impl Host {
    pub fn new(limits: Limits) -> Result<Host, HostError> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(limits.max_wasm_stack);
        let engine = Engine::new(&config).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let ticker = engine.weak();
        let tick = limits.epoch_tick;
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(tick);
                    match ticker.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(HostError::Ticker)?;
        // Empty on purpose: plugins import nothing.
        let linker = Linker::new(&engine);
        Ok(Host {
            engine,
            linker,
            limits,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Checks and loads a plugin: decode, compile, imports, world, init,
    /// dry run. The instance that ran the checks is dropped; a chain
    /// instantiates its own.
    pub fn load(&self, source: PluginSource) -> Result<LoadedPlugin, LoadError> {
        let refuse = |step, message: String| LoadError {
            plugin: source.name.clone(),
            step,
            message,
        };
        check_header(&source.wasm).map_err(|m| refuse(LoadStep::Decode, m))?;
        let component = Component::new(&self.engine, &source.wasm)
            .map_err(|e| refuse(LoadStep::Compile, format!("{e:#}")))?;

        let ty = component.component_type();
        // The world's own `types` interface shows up as an imported
        // instance of types only: harmless, nothing to call.
        let imports: Vec<&str> = ty
            .imports(&self.engine)
            .filter(|(_, import)| !types_only(&self.engine, &import.ty))
            .map(|(name, _)| name)
            .collect();
        if !imports.is_empty() {
            return Err(refuse(
                LoadStep::Imports,
                format!(
                    "it imports {}; plugins may import nothing (build for wasm32-unknown-unknown, without WASI)",
                    imports.join(", ")
                ),
            ));
        }
        // Built against another version of the world: say which, rather
        // than a type mismatch.
        if let Some(other) = ty
            .imports(&self.engine)
            .map(|(name, _)| name)
            .find(|name| name.starts_with("hourglass:plugin/") && !name.ends_with(WORLD_VERSION))
        {
            return Err(refuse(
                LoadStep::World,
                format!(
                    "it is built against `{other}`; this host runs hourglass:plugin{WORLD_VERSION} plugins only: rebuild it with the current SDK"
                ),
            ));
        }
        let exports: Vec<(&str, ComponentItem)> = ty
            .exports(&self.engine)
            .map(|(name, item)| (name, item.ty))
            .collect();
        for wanted in ["init", "process"] {
            if !exports.iter().any(|(name, item)| {
                *name == wanted && matches!(item, ComponentItem::ComponentFunc(_))
            }) {
                let found: Vec<&str> = exports.iter().map(|(name, _)| *name).collect();
                return Err(refuse(
                    LoadStep::World,
                    format!(
                        "it does not export the function `{wanted}` of the hourglass:plugin world (it exports: {})",
                        if found.is_empty() {
                            "nothing".to_owned()
                        } else {
                            found.join(", ")
                        }
                    ),
                ));
            }
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|e| {
                refuse(
                    LoadStep::World,
                    format!("not the hourglass:plugin world: {e:#}"),
                )
            })?;

        let mut loaded = LoadedPlugin {
            name: source.name.clone(),
            pre,
            config: source.config,
            data: source.data,
            reads: FieldSet::default(),
            writes: FieldSet::default(),
            declared: DeclaredFields {
                reads: Vec::new(),
                writes: Vec::new(),
            },
            policy: source.on_failure,
            limits: self.limits.clone(),
        };
        let (mut instance, declared) = loaded
            .instantiate()
            .map_err(|f| refuse(LoadStep::Init, f.to_string()))?;
        let writes = FieldSet::of(&declared.writes);
        if writes.intersects(FieldSet::CONTEXT) {
            return Err(refuse(
                LoadStep::Init,
                "it declares writes to user-agent, client-ip or language, which come from the hit and are read-only".to_owned(),
            ));
        }
        loaded.reads = FieldSet::of(&declared.reads);
        loaded.writes = writes;
        loaded.declared = declared;

        let sample = sample_event();
        let batch = fields::batch(
            std::iter::once((&sample, SAMPLE_HIT, false)),
            1,
            loaded.reads,
        );
        instance
            .process(&batch, &loaded.limits)
            .map_err(|f| refuse(LoadStep::DryRun, f.to_string()))?;
        Ok(loaded)
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Whether an import provides types only (no function, no instance with
/// one, no module or component).
fn types_only(engine: &Engine, item: &ComponentItem) -> bool {
    match item {
        ComponentItem::Type(_) | ComponentItem::Resource(_) => true,
        ComponentItem::ComponentInstance(instance) => instance
            .exports(engine)
            .all(|(_, export)| types_only(engine, &export.ty)),
        _ => false,
    }
}

/// `\0asm` then the version: 1 for a core module, 0x0d + layer 1 for a
/// component.
fn check_header(wasm: &[u8]) -> Result<(), String> {
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(
            "it is a core WebAssembly module, not a component: turn it into one with wit-component (`cargo xtask plugins` does)".to_owned(),
        ),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', ..]) => Err("it is WebAssembly, but not a component".to_owned()),
        _ => Err(format!(
            "not WebAssembly ({} bytes, no `\\0asm` header)",
            wasm.len()
        )),
    }
}

/// The version of the `hourglass:plugin` package this host runs.
const WORLD_VERSION: &str = "@0.2.0";

const SAMPLE_HIT: HitContext<'static> = HitContext {
    user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    client_ip: "192.0.2.1",
    accept_language: "en-US,en;q=0.9",
};

fn sample_event() -> Event {
    Event {
        name: "pageview".into(),
        hostname: "example.com".into(),
        pathname: "/".into(),
        referrer: "https://www.google.com/".into(),
        interactive: true,
        ..Event::default()
    }
}

/// A plugin that passed every load step: what a chain needs to
/// instantiate it, as often as a trap makes it.
pub struct LoadedPlugin {
    pub(crate) name: String,
    pre: PluginPre<Sandbox>,
    config: String,
    data: Vec<u8>,
    pub(crate) reads: FieldSet,
    pub(crate) writes: FieldSet,
    declared: DeclaredFields,
    pub(crate) policy: FailurePolicy,
    pub(crate) limits: Limits,
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fields the plugin declared at `init`, as the event spells them.
    pub fn reads(&self) -> Vec<&'static str> {
        self.declared
            .reads
            .iter()
            .map(|f| fields::event_field_name(*f))
            .collect()
    }

    pub fn writes(&self) -> Vec<&'static str> {
        self.declared
            .writes
            .iter()
            .map(|f| fields::event_field_name(*f))
            .collect()
    }

    pub fn policy(&self) -> FailurePolicy {
        self.policy
    }

    /// A fresh store and instance, `init` run.
    pub(crate) fn instantiate(&self) -> Result<(Instance, DeclaredFields), Failure> {
        let mut store = Store::new(
            self.pre.engine(),
            Sandbox {
                limits: StoreLimitsBuilder::new()
                    .memory_size(self.limits.memory_bytes)
                    .instances(4)
                    .tables(4)
                    .memories(2)
                    .build(),
                memory_refused: false,
            },
        );
        store.limiter(|sandbox| sandbox);
        arm(&mut store, self.limits.init_fuel, &self.limits);
        let plugin = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| Failure::from_error("instantiating", &e, &store))?;
        let declared = plugin
            .call_init(&mut store, &self.config, &self.data)
            .map_err(|e| Failure::from_error("in init", &e, &store))?
            .map_err(|message| Failure {
                kind: "init_error",
                message: format!("init returned an error: {message}"),
            })?;
        Ok((Instance { store, plugin }, declared))
    }
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("reads", &self.reads())
            .field("writes", &self.writes())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn arm(store: &mut Store<Sandbox>, fuel: u64, limits: &Limits) {
    // Only fails when fuel is not enabled, and the engine enables it.
    store.set_fuel(fuel).expect("the engine consumes fuel");
    store.set_epoch_deadline(limits.deadline_ticks());
}

/// One live plugin instance in its own store. Dropped after any failure:
/// a trapped store cannot be entered again.
pub(crate) struct Instance {
    store: Store<Sandbox>,
    plugin: Plugin,
}

impl Instance {
    /// One `process` call within the call limits; the answer is checked
    /// (one action per event, sizes, offsets).
    pub(crate) fn process(
        &mut self,
        batch: &wit::Batch,
        limits: &Limits,
    ) -> Result<wit::Outcomes, Failure> {
        self.process_metered(batch, limits).0
    }

    /// [`process`](Self::process) and the fuel it used.
    pub(crate) fn process_metered(
        &mut self,
        batch: &wit::Batch,
        limits: &Limits,
    ) -> (Result<wit::Outcomes, Failure>, u64) {
        let events = batch.len as usize;
        let budget = limits.fuel_for(events);
        arm(&mut self.store, budget, limits);
        let result = self
            .plugin
            .call_process(&mut self.store, batch)
            .map_err(|e| Failure::from_error("in process", &e, &self.store));
        let used = budget.saturating_sub(self.store.get_fuel().unwrap_or(0));
        let allowed = limits.output_bytes_per_event.saturating_mul(events.max(1));
        let result = result.and_then(|outcomes| {
            let bytes = fields::output_bytes(&outcomes);
            if bytes > allowed {
                return Err(Failure {
                    kind: "oversized_output",
                    message: format!(
                        "oversized_output: {bytes} bytes of strings returned for {events} events (at most {allowed})"
                    ),
                });
            }
            fields::check(&outcomes, events).map_err(|problem| Failure {
                kind: "bad_output",
                message: format!("bad_output: {problem}"),
            })?;
            Ok(outcomes)
        });
        (result, used)
    }
}

/// Why a call into a plugin failed: `kind` is a metric label value.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl Failure {
    fn from_error(during: &str, error: &wasmtime::Error, store: &Store<Sandbox>) -> Failure {
        let kind = if store.data().memory_refused {
            "memory_cap"
        } else {
            match error.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => "out_of_fuel",
                Some(Trap::Interrupt) => "deadline",
                Some(Trap::StackOverflow) => "stack_overflow",
                Some(_) => "trap",
                None => "error",
            }
        };
        Failure {
            kind,
            message: format!("{kind} {during}: {error:?}"),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A store's data: the memory cap, and whether it refused a grow (so a
/// guest's abort after a failed allocation is counted as the cap).
pub(crate) struct Sandbox {
    limits: StoreLimits,
    memory_refused: bool,
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.memory_refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
