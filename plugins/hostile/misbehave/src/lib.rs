//! Test plugin: misbehaves as its config says, so the host's limits and
//! failure policies can be tested against a real component.
//!
//! Config: `mode` = `loop` | `grow` | `recurse` | `panic` | `init-error` |
//! `loop-init` | `wrong-count` | `undeclared-write` | `bad-reason` |
//! `huge` (a `browser` of 4 MiB);
//! `trigger` = an event name: misbehave only on events with that name
//! (default: every event). Never ship it.

use std::hint::black_box;

use hourglass_plugin_sdk::config::Config;
use hourglass_plugin_sdk::wire::{Action, Batch, Outcomes};
use hourglass_plugin_sdk::{DeclaredFields, Event, Field, Instance, Outcome, Plugin, drop_event};

struct Misbehave {
    mode: String,
    trigger: Option<String>,
}

impl Plugin for Misbehave {
    fn init(config: &str, _data: &[u8]) -> Result<Self, String> {
        let config = Config::parse(config, &["mode", "trigger"])?;
        let mode = config.get("mode").unwrap_or("").to_owned();
        match mode.as_str() {
            "init-error" => return Err("asked to fail".to_owned()),
            "loop-init" => spin(),
            _ => {}
        }
        Ok(Misbehave {
            mode,
            trigger: config.get("trigger").map(str::to_owned),
        })
    }

    fn fields(&self) -> DeclaredFields {
        DeclaredFields {
            reads: vec![Field::Name],
            writes: vec![Field::Browser],
        }
    }

    fn process(&mut self, mut event: Event) -> Outcome {
        if self.trigger.as_ref().is_some_and(|t| *t != event.name) {
            return Outcome::Keep;
        }
        match self.mode.as_str() {
            "loop" => spin(),
            "grow" => grow(),
            "recurse" => {
                black_box(recurse(0, black_box(u64::MAX)));
            }
            "panic" => panic!("asked to panic"),
            // The host takes back only `browser`.
            "undeclared-write" => {
                event.browser = "Declared".to_owned();
                event.country = "XX".to_owned();
                event.name = "renamed".to_owned();
                return Outcome::Modify(event);
            }
            "bad-reason" => return drop_event("Not A Label!", None),
            "huge" => {
                event.browser = "x".repeat(4 << 20);
                return Outcome::Modify(event);
            }
            _ => {}
        }
        Outcome::Keep
    }
}

fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn grow() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Reserve, touch one byte: memory grows by a MiB a round for
        // little fuel, so the cap is what stops it.
        let mut mib = Vec::<u8>::with_capacity(1 << 20);
        mib.push(1);
        hoard.push(mib);
        black_box(&hoard);
    }
}

/// Recurses with nothing in linear memory, so what runs out is the wasm
/// stack the host limits, not the guest's own shadow stack. The result
/// feeds a non-associative expression so LLVM cannot turn it into a loop.
#[inline(never)]
fn recurse(depth: u64, limit: u64) -> u64 {
    if depth == limit {
        return depth;
    }
    recurse(depth + 1, limit)
        .wrapping_mul(3)
        .wrapping_add(depth)
}

// `wrong-count` is the host-visible part of the plugin contract the SDK
// keeps for you; it is done by hand here.
struct Export;

impl hourglass_plugin_sdk::Guest for Export {
    fn init(config: String, data: Vec<u8>) -> Result<DeclaredFields, String> {
        let (instance, fields) = Instance::<Misbehave>::init(&config, &data)?;
        STATE.with(|s| *s.borrow_mut() = Some(instance));
        Ok(fields)
    }

    fn process(batch: Batch) -> Outcomes {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let instance = s.as_mut().expect("the host calls init before process");
            let mut out = instance.process(batch);
            if instance.plugin().mode == "wrong-count" {
                out.actions.push(Action::Keep);
            }
            out
        })
    }
}

std::thread_local! {
    static STATE: std::cell::RefCell<Option<Instance<Misbehave>>> = const { std::cell::RefCell::new(None) };
}

hourglass_plugin_sdk::export!(Export);
