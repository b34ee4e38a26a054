//! A plugin set as services configure it — a version label and the chain
//! in order (`plugin_set = "…"` and `[[plugins]]` in TOML) — and loading it
//! into a [`Chain`]. The edge and `reprocess` both use this, so a chain is
//! built the same way wherever it runs.

use std::path::{Path, PathBuf};

use hourglass_processing::{NoPlugins, PluginChain};
use serde::{Deserialize, Serialize};

use crate::{Chain, FailurePolicy, Host, HostError, Limits, LoadError, PluginSource};

/// One WASM plugin of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    pub name: String,
    /// The component (`.wasm`).
    pub path: PathBuf,
    /// Passed to the plugin's `init` as is.
    #[serde(default)]
    pub config: String,
    /// A data file passed to `init` (patterns, a database…).
    #[serde(default)]
    pub data_file: Option<PathBuf>,
    /// `skip-plugin` (default) or `reject-batch`.
    #[serde(default = "skip_plugin")]
    pub on_failure: String,
}

fn skip_plugin() -> String {
    "skip-plugin".into()
}

/// A plugin set: its version label (recorded in every batch and row) and
/// its chain, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginSet {
    pub plugin_set: String,
    pub plugins: Vec<PluginConfig>,
}

impl Default for PluginSet {
    fn default() -> Self {
        PluginSet {
            plugin_set: "none".into(),
            plugins: Vec::new(),
        }
    }
}

/// Why a plugin set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginSetError {
    #[error("reading {what} {path}: {source}")]
    Read {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {name}: {message}")]
    Policy { name: String, message: String },
    #[error("starting the WASM engine: {0}")]
    Engine(#[from] HostError),
    #[error("plugin {name} ({path}): {source}")]
    Load {
        name: String,
        path: PathBuf,
        source: LoadError,
    },
}

fn read(path: &Path, what: String) -> Result<Vec<u8>, PluginSetError> {
    std::fs::read(path).map_err(|source| PluginSetError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

impl PluginSet {
    /// What is wrong with the set, as `(key, message)` with keys relative
    /// to where the set sits in a config (`plugins[0].on_failure`, …).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (i, p) in self.plugins.iter().enumerate() {
            if p.name.is_empty() {
                problems.push((format!("plugins[{i}].name"), "must not be empty".into()));
            }
            if p.on_failure.parse::<FailurePolicy>().is_err() {
                problems.push((
                    format!("plugins[{i}].on_failure"),
                    "must be skip-plugin or reject-batch".into(),
                ));
            }
        }
        if !self.plugins.is_empty() && (self.plugin_set.is_empty() || self.plugin_set == "none") {
            problems.push((
                "plugin_set".into(),
                "name the version of the plugin set (it is recorded in every batch and row)".into(),
            ));
        }
        problems
    }

    /// Loads every plugin (each checked step by step; the first that fails
    /// stops the load, naming the plugin and the step) into a chain; no
    /// plugins gives [`NoPlugins`].
    pub fn load(&self, limits: Limits) -> Result<Box<dyn PluginChain>, PluginSetError> {
        if self.plugins.is_empty() {
            return Ok(Box::new(NoPlugins));
        }
        let host = Host::new(limits)?;
        let mut loaded = Vec::new();
        for p in &self.plugins {
            let wasm = read(&p.path, format!("plugin {}", p.name))?;
            let data = match &p.data_file {
                Some(file) => read(file, format!("data file of plugin {}", p.name))?,
                None => Vec::new(),
            };
            let on_failure: FailurePolicy =
                p.on_failure
                    .parse()
                    .map_err(|message| PluginSetError::Policy {
                        name: p.name.clone(),
                        message,
                    })?;
            let plugin = host
                .load(PluginSource {
                    name: p.name.clone(),
                    wasm,
                    config: p.config.clone(),
                    data,
                    on_failure,
                })
                .map_err(|source| PluginSetError::Load {
                    name: p.name.clone(),
                    path: p.path.clone(),
                    source,
                })?;
            loaded.push(plugin);
        }
        Ok(Box::new(Chain::new(self.plugin_set.clone(), loaded)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_keys() {
        let set = PluginSet {
            plugin_set: "none".into(),
            plugins: vec![PluginConfig {
                name: String::new(),
                path: "x.wasm".into(),
                config: String::new(),
                data_file: None,
                on_failure: "ignore".into(),
            }],
        };
        let keys: Vec<String> = set.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["plugins[0].name", "plugins[0].on_failure", "plugin_set"]
        );
        assert!(PluginSet::default().problems().is_empty());
    }

    #[test]
    fn a_missing_component_is_named() {
        let set = PluginSet {
            plugin_set: "v1".into(),
            plugins: vec![PluginConfig {
                name: "ua-parse".into(),
                path: "does/not/exist.wasm".into(),
                config: String::new(),
                data_file: None,
                on_failure: "skip-plugin".into(),
            }],
        };
        let err = set.load(Limits::default()).err().expect("no such file");
        assert!(err.to_string().contains("plugin ua-parse"), "{err}");
        assert!(err.to_string().contains("does/not/exist.wasm"), "{err}");
    }
}
