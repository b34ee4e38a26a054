//! The plugin chain: runs loaded plugins in order over a batch, applies
//! their outcomes, contains their failures, and counts.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use hourglass_model::{Event, Reject};
use hourglass_processing::{HitContext, PluginChain, PluginStats};

use crate::bindings::hourglass::plugin::types::{self as wit, DropReason};
use crate::fields;
use crate::host::{Failure, Instance, LoadedPlugin};

/// What a chain does with a batch when a plugin fails on it (traps, runs
/// out of fuel or time, hits the memory cap, answers with the wrong number
/// of outcomes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Go on as if the plugin were not there (an enricher: the events lose
    /// only its fields).
    #[default]
    SkipPlugin,
    /// Reject every event still in the batch with reason `plugin_failed`
    /// (a filter that must not be bypassed).
    RejectBatch,
}

impl FromStr for FailurePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip-plugin" => Ok(FailurePolicy::SkipPlugin),
            "reject-batch" => Ok(FailurePolicy::RejectBatch),
            other => Err(format!(
                "`{other}` is not a failure policy (skip-plugin or reject-batch)"
            )),
        }
    }
}

struct Slot {
    plugin: LoadedPlugin,
    instance: Option<Instance>,
    stats: PluginStats,
    last_failure: Option<String>,
}

/// Loaded plugins in order, as the pipeline's [`PluginChain`]. Instances
/// are reused across batches and made afresh after any failure.
pub struct Chain {
    plugin_set: String,
    slots: Vec<Slot>,
}

/// An event on its way through the chain, with what only the chain knows.
struct Item {
    event: Event,
    /// Index into the call's contexts, when it has them.
    context: Option<usize>,
    is_bot: bool,
}

impl Chain {
    /// `plugin_set` is the version recorded in batch headers; `plugins`
    /// run in the given order.
    pub fn new(plugin_set: impl Into<String>, plugins: Vec<LoadedPlugin>) -> Chain {
        Chain {
            plugin_set: plugin_set.into(),
            slots: plugins
                .into_iter()
                .map(|plugin| Slot {
                    stats: PluginStats {
                        plugin: plugin.name.clone(),
                        ..PluginStats::default()
                    },
                    plugin,
                    instance: None,
                    last_failure: None,
                })
                .collect(),
        }
    }

    pub fn stats(&self) -> Vec<PluginStats> {
        self.slots.iter().map(|s| s.stats.clone()).collect()
    }

    /// The message of each plugin's most recent failure, for logs.
    pub fn last_failures(&self) -> Vec<(&str, Option<&str>)> {
        self.slots
            .iter()
            .map(|s| (s.plugin.name.as_str(), s.last_failure.as_deref()))
            .collect()
    }
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("plugin_set", &self.plugin_set)
            .field(
                "plugins",
                &self
                    .slots
                    .iter()
                    .map(|s| &s.plugin.name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl PluginChain for Chain {
    fn plugin_set(&self) -> &str {
        &self.plugin_set
    }

    fn stats(&self) -> Vec<PluginStats> {
        Chain::stats(self)
    }

    fn process(&mut self, events: Vec<Event>) -> (Vec<Event>, Vec<Reject>) {
        self.process_in_context(events, &[])
    }

    fn process_in_context(
        &mut self,
        events: Vec<Event>,
        contexts: &[HitContext<'_>],
    ) -> (Vec<Event>, Vec<Reject>) {
        let with_context = contexts.len() == events.len();
        let mut items: Vec<Item> = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| Item {
                event,
                context: with_context.then_some(i),
                is_bot: false,
            })
            .collect();
        let mut rejects = Vec::new();
        for slot in &mut self.slots {
            if items.is_empty() {
                break;
            }
            let context = |item: &Item| item.context.map(|i| contexts[i]).unwrap_or_default();
            let batch = fields::batch(
                items
                    .iter()
                    .map(|item| (&item.event, context(item), item.is_bot)),
                items.len(),
                slot.plugin.reads,
            );
            match slot.call(&batch) {
                Ok(outcomes) => {
                    items = slot.apply(items, outcomes, &mut rejects);
                }
                Err(failure) => {
                    *slot.stats.failures.entry(failure.kind).or_default() += 1;
                    slot.last_failure = Some(failure.message);
                    if slot.plugin.policy == FailurePolicy::RejectBatch {
                        *slot
                            .stats
                            .drops
                            .entry("plugin_failed".to_owned())
                            .or_default() += items.len() as u64;
                        rejects.extend(items.drain(..).map(|item| Reject {
                            hit_index: item.event.hit_index,
                            reason: "plugin_failed".to_owned(),
                            field: String::new(),
                            plugin: slot.plugin.name.clone(),
                        }));
                    }
                }
            }
        }
        (items.into_iter().map(|item| item.event).collect(), rejects)
    }
}

impl Slot {
    /// One `process` call, instantiating first when needed; the instance is
    /// dropped on any failure.
    fn call(&mut self, batch: &wit::Batch) -> Result<wit::Outcomes, Failure> {
        let started = Instant::now();
        let result = self.call_untimed(batch);
        self.stats.nanos += u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        result
    }

    fn call_untimed(&mut self, batch: &wit::Batch) -> Result<wit::Outcomes, Failure> {
        self.stats.calls += 1;
        self.stats.events_in += u64::from(batch.len);
        let mut instance = match self.instance.take() {
            Some(instance) => instance,
            None => {
                self.stats.instantiations += 1;
                self.plugin.instantiate()?.0
            }
        };
        // Checks the answer too: a wrong count is `bad_output`.
        let (result, fuel) = instance.process_metered(batch, &self.plugin.limits);
        self.stats.fuel_used += fuel;
        let outcomes = result?;
        self.instance = Some(instance);
        Ok(outcomes)
    }

    /// Applies a checked answer: keeps, takes back the declared writes of
    /// modified events, rejects the dropped ones.
    fn apply(
        &mut self,
        items: Vec<Item>,
        outcomes: wit::Outcomes,
        rejects: &mut Vec<Reject>,
    ) -> Vec<Item> {
        let mut kept = Vec::with_capacity(items.len());
        let mut modified = fields::Modified::new(&outcomes, self.plugin.writes);
        let mut drops = outcomes.drops.iter();
        for (mut item, action) in items.into_iter().zip(&outcomes.actions) {
            match action {
                wit::Action::Keep => kept.push(item),
                wit::Action::Modify => {
                    modified.apply_next(&mut item.event, &mut item.is_bot);
                    kept.push(item);
                }
                wit::Action::Drop => {
                    let (reason, field) = match drops.next() {
                        Some(DropReason { reason, field }) => (label(reason), *field),
                        None => ("invalid_reason".to_owned(), None),
                    };
                    *self.stats.drops.entry(reason.clone()).or_default() += 1;
                    rejects.push(Reject {
                        hit_index: item.event.hit_index,
                        reason,
                        field: field.map(fields::event_field_name).unwrap_or("").to_owned(),
                        plugin: self.plugin.name.clone(),
                    });
                }
            }
        }
        kept
    }
}

/// A plugin's drop reason as a safe metric label: lower_snake_case ASCII,
/// at most 64 characters; anything else becomes `invalid_reason`.
fn label(reason: &str) -> String {
    let ok = !reason.is_empty()
        && reason.len() <= 64
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        reason.to_owned()
    } else {
        "invalid_reason".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_become_safe_labels() {
        assert_eq!(label("bot"), "bot");
        assert_eq!(label("name_too_long_2"), "name_too_long_2");
        assert_eq!(label("Not A Label!"), "invalid_reason");
        assert_eq!(label(""), "invalid_reason");
        assert_eq!(label(&"a".repeat(65)), "invalid_reason");
    }

    #[test]
    fn failure_policies_parse_by_their_config_names() {
        assert_eq!("skip-plugin".parse(), Ok(FailurePolicy::SkipPlugin));
        assert_eq!("reject-batch".parse(), Ok(FailurePolicy::RejectBatch));
        assert!("ignore".parse::<FailurePolicy>().is_err());
    }
}
