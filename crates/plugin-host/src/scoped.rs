//! Plugin chains as central sends them: the platform chain runs on every
//! event, then each site's own chain on that site's events only
//! ([`ScopedChain`]). [`load_chains`] builds one from a control state's
//! [`PluginChains`] and a directory of verified blobs named by SHA-256.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use hourglass_model::{Event, Reject};
use hourglass_processing::control::NO_PLUGINS_LABEL;
use hourglass_processing::{
    HitContext, NoPlugins, PluginBinding, PluginChain, PluginChains, PluginStats,
};

use crate::{Chain, FailurePolicy, Host, Limits, PluginSetError, PluginSource};

/// The platform chain, then per-site chains; one plugin-set label for all.
pub struct ScopedChain {
    label: String,
    platform: Chain,
    sites: BTreeMap<String, Chain>,
}

impl ScopedChain {
    pub fn new(label: String, platform: Chain, sites: BTreeMap<String, Chain>) -> ScopedChain {
        ScopedChain {
            label,
            platform,
            sites,
        }
    }
}

impl std::fmt::Debug for ScopedChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedChain")
            .field("label", &self.label)
            .field("platform", &self.platform)
            .field("sites", &self.sites)
            .finish()
    }
}

impl PluginChain for ScopedChain {
    fn plugin_set(&self) -> &str {
        &self.label
    }

    /// The platform plugins by name, then the site chains' plugins as
    /// `site:<name>`, summed over sites (one series per plugin, not per
    /// site and plugin: sites are many).
    fn stats(&self) -> Vec<PluginStats> {
        let mut by_name: BTreeMap<String, PluginStats> = BTreeMap::new();
        for chain in self.sites.values() {
            for stats in chain.stats() {
                let name = format!("site:{}", stats.plugin);
                by_name
                    .entry(name.clone())
                    .or_insert_with(|| PluginStats {
                        plugin: name,
                        ..PluginStats::default()
                    })
                    .add(&stats);
            }
        }
        let mut all = self.platform.stats();
        all.extend(by_name.into_values());
        all
    }

    fn process(&mut self, events: Vec<Event>) -> (Vec<Event>, Vec<Reject>) {
        self.process_in_context(events, &[])
    }

    fn process_in_context(
        &mut self,
        events: Vec<Event>,
        contexts: &[HitContext<'_>],
    ) -> (Vec<Event>, Vec<Reject>) {
        // A hit's context is the same for all its events: keep it by hit.
        let by_hit: HashMap<u32, HitContext<'_>> = if contexts.len() == events.len() {
            events
                .iter()
                .zip(contexts)
                .map(|(e, c)| (e.hit_index, *c))
                .collect()
        } else {
            HashMap::new()
        };
        let (events, mut rejects) = self.platform.process_in_context(events, contexts);
        if self.sites.is_empty() {
            return (events, rejects);
        }
        let mut out = Vec::with_capacity(events.len());
        let mut per_site: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for event in events {
            if self.sites.contains_key(&event.site_id) {
                per_site
                    .entry(event.site_id.clone())
                    .or_default()
                    .push(event);
            } else {
                out.push(event);
            }
        }
        for (site, events) in per_site {
            let Some(chain) = self.sites.get_mut(&site) else {
                out.extend(events);
                continue;
            };
            let site_contexts: Vec<HitContext<'_>> = if by_hit.is_empty() {
                Vec::new()
            } else {
                events
                    .iter()
                    .map(|e| by_hit.get(&e.hit_index).copied().unwrap_or_default())
                    .collect()
            };
            let (kept, dropped) = chain.process_in_context(events, &site_contexts);
            out.extend(kept);
            rejects.extend(dropped);
        }
        // Deterministic order whatever the grouping: by hit, then as made.
        out.sort_by_key(|e| e.hit_index);
        (out, rejects)
    }
}

/// Loads `chains`, reading each component and data blob from
/// `blob_dir/<sha256>` (the caller has checked the hashes). Every plugin is
/// loaded in the host's checked steps; the first failure stops the load.
/// No plugins at all gives [`NoPlugins`] (label `none`).
pub fn load_chains(
    chains: &PluginChains,
    blob_dir: &Path,
    limits: Limits,
) -> Result<Box<dyn PluginChain>, PluginSetError> {
    if chains.is_empty() {
        debug_assert_eq!(chains.label, NO_PLUGINS_LABEL);
        return Ok(Box::new(NoPlugins));
    }
    let host = Host::new(limits)?;
    let load = |bindings: &[PluginBinding]| -> Result<Chain, PluginSetError> {
        let mut loaded = Vec::with_capacity(bindings.len());
        for b in bindings {
            let path = blob_dir.join(&b.sha256);
            let wasm = std::fs::read(&path).map_err(|source| PluginSetError::Read {
                what: format!("plugin {}", b.name),
                path: path.clone(),
                source,
            })?;
            let data = if b.data_sha256.is_empty() {
                Vec::new()
            } else {
                let data_path = blob_dir.join(&b.data_sha256);
                std::fs::read(&data_path).map_err(|source| PluginSetError::Read {
                    what: format!("data of plugin {}", b.name),
                    path: data_path,
                    source,
                })?
            };
            let on_failure: FailurePolicy =
                b.on_failure
                    .parse()
                    .map_err(|message| PluginSetError::Policy {
                        name: b.name.clone(),
                        message,
                    })?;
            let plugin = host
                .load(PluginSource {
                    name: b.name.clone(),
                    wasm,
                    config: b.config.clone(),
                    data,
                    on_failure,
                })
                .map_err(|source| PluginSetError::Load {
                    name: b.name.clone(),
                    path,
                    source,
                })?;
            loaded.push(plugin);
        }
        Ok(Chain::new(chains.label.clone(), loaded))
    };
    let platform = load(&chains.platform)?;
    let mut sites = BTreeMap::new();
    for (site, bindings) in &chains.sites {
        sites.insert(site.clone(), load(bindings)?);
    }
    Ok(Box::new(ScopedChain::new(
        chains.label.clone(),
        platform,
        sites,
    )))
}
