//! The Hourglass plugin SDK: write a plugin as a Rust type and let the SDK
//! do the component plumbing.
//!
//! ```ignore
//! use hourglass_plugin_sdk::{DeclaredFields, Event, Field, Outcome, Plugin};
//!
//! struct Shout;
//!
//! impl Plugin for Shout {
//!     fn init(_config: &str, _data: &[u8]) -> Result<Self, String> {
//!         Ok(Shout)
//!     }
//!     fn fields(&self) -> DeclaredFields {
//!         DeclaredFields { reads: vec![Field::Name], writes: vec![Field::Name] }
//!     }
//!     fn process(&mut self, mut event: Event) -> Outcome {
//!         event.name = event.name.to_uppercase();
//!         Outcome::Modify(event)
//!     }
//! }
//!
//! hourglass_plugin_sdk::plugin!(Shout);
//! ```
//!
//! The host hands a plugin a batch by columns, carrying only the fields it
//! declared (`plugins/wit`); [`Instance`] turns it into [`Event`]s for the
//! per-event trait and the outcomes back into columns of the declared
//! writes only.
//!
//! It owns the guest side of `plugins/wit` and helpers every plugin needs
//! (config lines, URL pieces). It must not import anything from the host:
//! a plugin is a pure function of its config, its data and its events.

pub mod config;
pub mod url;

/// The generated bindings of the `plugin` world (`plugins/wit`).
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        default_bindings_module: "hourglass_plugin_sdk::bindings",
    });
}

pub use bindings::hourglass::plugin::types::{DeclaredFields, Field};
pub use bindings::{Guest, export};

/// The world's batch types as they cross the boundary (columns); a
/// [`Plugin`] never sees them, [`Instance`] converts.
pub mod wire {
    pub use crate::bindings::hourglass::plugin::types::{
        Action, Batch, DropReason, Outcomes, PropsColumn, Text, TextColumn,
    };
}

mod columns;
pub use columns::Instance;

/// A custom property of an event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prop {
    pub key: String,
    pub value: String,
}

/// One event as a plugin sees it: the fields it declared it reads are
/// filled, the others are empty strings / `false` / no props. The WIT
/// `batch` comments say what each field holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub hostname: String,
    pub pathname: String,
    pub referrer: String,
    pub user_agent: String,
    pub client_ip: String,
    pub language: String,
    pub props: Vec<Prop>,
    pub browser: String,
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    pub device: String,
    pub country: String,
    pub region: String,
    pub city: String,
    pub source: String,
    pub channel: String,
    pub utm_source: String,
    pub utm_medium: String,
    pub utm_campaign: String,
    pub utm_content: String,
    pub utm_term: String,
    pub is_bot: bool,
}

/// Why an event is dropped: `reason` is a lower_snake_case label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropReason {
    pub reason: String,
    pub field: Option<Field>,
}

/// What to do with one event.
// `Modify` carries the event by value, as plugins write it; outcomes are
// encoded one at a time, never stored in bulk, so the size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Keep,
    /// The declared `writes` fields are taken from this event.
    Modify(Event),
    Drop(DropReason),
}

/// A plugin, one event at a time. One value lives per instance: the host
/// calls [`Plugin::init`] once, then [`Plugin::process`] for every event of
/// every batch, in order. Keep outputs a function of the inputs only (a
/// cache is fine): `reprocess` must reproduce ingest.
pub trait Plugin: Sized + 'static {
    /// Reads the site's `config` and the plugin's `data` blob; an error
    /// refuses the plugin at load, with this message.
    fn init(config: &str, data: &[u8]) -> Result<Self, String>;

    /// The fields the plugin reads and writes: the host fills only the
    /// first and takes back only the second.
    fn fields(&self) -> DeclaredFields;

    /// Keeps, modifies (return the changed event) or drops one event.
    fn process(&mut self, event: Event) -> Outcome;
}

/// `Outcome::Drop` with a machine-readable reason (lower_snake_case).
pub fn drop_event(reason: &str, field: Option<Field>) -> Outcome {
    Outcome::Drop(DropReason {
        reason: reason.to_owned(),
        field,
    })
}

/// The value of the first prop named `key`.
pub fn prop<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event
        .props
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.as_str())
}

/// A [`Plugin`] behind a pointer: what [`plugin!`] hands out natively
/// (`native_plugin`), so benchmarks and tests can call a plugin's code
/// in-process, without the sandbox.
pub trait DynPlugin {
    fn fields(&self) -> DeclaredFields;
    fn process(&mut self, event: Event) -> Outcome;
}

impl<P: Plugin> DynPlugin for P {
    fn fields(&self) -> DeclaredFields {
        Plugin::fields(self)
    }

    fn process(&mut self, event: Event) -> Outcome {
        Plugin::process(self, event)
    }
}

/// Exports a [`Plugin`] type as the component's `init` and `process`
/// (on `wasm32` only, so several plugins can link into one native
/// program), and defines `pub fn native_plugin(config, data)`, the same
/// plugin as a [`DynPlugin`].
#[macro_export]
macro_rules! plugin {
    ($ty:ty) => {
        /// This crate's plugin, called natively (no sandbox).
        pub fn native_plugin(
            config: &str,
            data: &[u8],
        ) -> ::core::result::Result<::std::boxed::Box<dyn $crate::DynPlugin>, ::std::string::String>
        {
            let plugin = <$ty as $crate::Plugin>::init(config, data)?;
            ::core::result::Result::Ok(::std::boxed::Box::new(plugin))
        }

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct HourglassPluginExport;

            ::std::thread_local! {
                static HOURGLASS_PLUGIN: ::core::cell::RefCell<
                    ::core::option::Option<$crate::Instance<$ty>>,
                > = const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            impl $crate::Guest for HourglassPluginExport {
                fn init(
                    config: ::std::string::String,
                    data: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<$crate::DeclaredFields, ::std::string::String> {
                    let (instance, fields) = $crate::Instance::<$ty>::init(&config, &data)?;
                    HOURGLASS_PLUGIN
                        .with(|cell| *cell.borrow_mut() = ::core::option::Option::Some(instance));
                    ::core::result::Result::Ok(fields)
                }

                fn process(batch: $crate::wire::Batch) -> $crate::wire::Outcomes {
                    HOURGLASS_PLUGIN.with(|cell| {
                        let mut cell = cell.borrow_mut();
                        // The host calls `init` first on every instance.
                        let instance = cell.as_mut().expect("the host calls init before process");
                        instance.process(batch)
                    })
                }
            }

            $crate::export!(HourglassPluginExport);
        };
    };
}
