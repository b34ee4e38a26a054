//! What central sends edges over the control channel: one versioned
//! [`ControlState`] holding the site directory and the plugin chains.
//!
//! Central builds it from its metadata tables and serves it as JSON; the
//! edge parses it with [`ControlState::from_json`] (which checks everything
//! it can without the blobs), caches the same bytes on disk and builds its
//! site directory and plugin chain from it. Pure data: no IO.
//!
//! The plugin-set label is derived from the chains' content
//! ([`PluginChains::label_of`]): the same chains always get the same label,
//! on every central and after every restart, and different chains (another
//! component, config, data, policy or order) get another one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sites::SiteDirectory;

/// The label of the empty plugin set (no plugin runs), as edges without
/// plugins record it.
pub const NO_PLUGINS_LABEL: &str = "none";

/// Everything central tells an edge. `version` grows with every change of
/// anything in it (central derives it from the metadata rows' versions).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlState {
    pub version: u64,
    /// The site directory (validated when deserialized).
    pub sites: SiteDirectory,
    pub plugins: PluginChains,
}

/// The plugin chains: the platform's (every site, first), then each site's
/// own (that site's events only).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginChains {
    /// The plugin-set label recorded in every batch and row they make.
    pub label: String,
    pub platform: Vec<PluginBinding>,
    /// Site id → that site's chain (sites without one are absent).
    #[serde(default)]
    pub sites: BTreeMap<String, Vec<PluginBinding>>,
}

/// One plugin of a chain: the component and data blobs by SHA-256 (fetched
/// from central over the control channel), its config and failure policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginBinding {
    pub name: String,
    pub plugin_version: String,
    /// Lower-case hex SHA-256 of the component.
    pub sha256: String,
    /// Passed to the plugin's `init` as is.
    #[serde(default)]
    pub config: String,
    /// Lower-case hex SHA-256 of the data blob; empty when there is none.
    #[serde(default)]
    pub data_sha256: String,
    /// `skip-plugin` or `reject-batch`.
    pub on_failure: String,
}

/// Why a control state is refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlStateError {
    #[error("the control state is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the control state's site directory has version {sites} but the state has {state}")]
    VersionMismatch { state: u64, sites: u64 },
    #[error(
        "the plugin-set label is {found:?} but the chains' content gives {expected:?}; the state was altered"
    )]
    LabelMismatch { found: String, expected: String },
    #[error("plugin {name} ({scope}): {problem}")]
    Binding {
        scope: String,
        name: String,
        problem: String,
    },
}

/// Whether `s` is 64 lower-case hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl PluginChains {
    /// The chains with their content-derived label.
    pub fn new(
        platform: Vec<PluginBinding>,
        sites: BTreeMap<String, Vec<PluginBinding>>,
    ) -> PluginChains {
        let sites: BTreeMap<_, _> = sites.into_iter().filter(|(_, c)| !c.is_empty()).collect();
        PluginChains {
            label: Self::label_of(&platform, &sites),
            platform,
            sites,
        }
    }

    /// `none` for no plugins at all; otherwise `ps-` and the first 12 hex
    /// digits of the SHA-256 of the chains' canonical JSON (sites in id
    /// order, plugins in chain order).
    pub fn label_of(
        platform: &[PluginBinding],
        sites: &BTreeMap<String, Vec<PluginBinding>>,
    ) -> String {
        if platform.is_empty() && sites.values().all(Vec::is_empty) {
            return NO_PLUGINS_LABEL.to_owned();
        }
        #[derive(Serialize)]
        struct Canonical<'a> {
            platform: &'a [PluginBinding],
            sites: &'a BTreeMap<String, Vec<PluginBinding>>,
        }
        // Serializing plain structs, strings and a BTreeMap cannot fail.
        let json = serde_json::to_vec(&Canonical { platform, sites }).unwrap_or_default();
        let mut label = sha256_hex(&json);
        label.truncate(12);
        format!("ps-{label}")
    }

    pub fn is_empty(&self) -> bool {
        self.platform.is_empty() && self.sites.values().all(Vec::is_empty)
    }

    /// Every binding with its scope (`""` for the platform chain).
    pub fn bindings(&self) -> impl Iterator<Item = (&str, &PluginBinding)> {
        self.platform.iter().map(|b| ("", b)).chain(
            self.sites
                .iter()
                .flat_map(|(site, chain)| chain.iter().map(move |b| (site.as_str(), b))),
        )
    }

    /// The SHA-256 of every blob the chains need (components and data),
    /// each once, sorted.
    pub fn blobs(&self) -> Vec<&str> {
        let mut blobs: Vec<&str> = self
            .bindings()
            .flat_map(|(_, b)| [b.sha256.as_str(), b.data_sha256.as_str()])
            .filter(|s| !s.is_empty())
            .collect();
        blobs.sort_unstable();
        blobs.dedup();
        blobs
    }

    /// Checks names, hashes, policies and the label.
    pub fn validate(&self) -> Result<(), ControlStateError> {
        for (scope, b) in self.bindings() {
            let problem = if b.name.is_empty() {
                Some("the name is empty".to_owned())
            } else if !is_sha256_hex(&b.sha256) {
                Some(format!(
                    "component sha256 {:?} is not 64 hex digits",
                    b.sha256
                ))
            } else if !b.data_sha256.is_empty() && !is_sha256_hex(&b.data_sha256) {
                Some(format!(
                    "data sha256 {:?} is not 64 hex digits",
                    b.data_sha256
                ))
            } else if !matches!(b.on_failure.as_str(), "skip-plugin" | "reject-batch") {
                Some(format!(
                    "on_failure {:?} is not skip-plugin or reject-batch",
                    b.on_failure
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ControlStateError::Binding {
                    scope: if scope.is_empty() {
                        "platform chain".to_owned()
                    } else {
                        format!("chain of site {scope}")
                    },
                    name: b.name.clone(),
                    problem,
                });
            }
        }
        let expected = Self::label_of(&self.platform, &self.sites);
        if self.label != expected {
            return Err(ControlStateError::LabelMismatch {
                found: self.label.clone(),
                expected,
            });
        }
        Ok(())
    }
}

impl ControlState {
    /// Parses and checks a state as central sends it and the edge caches
    /// it: the site directory is valid, its version is the state's, every
    /// binding names its blobs by SHA-256 with a known policy, and the
    /// label is the chains' own.
    pub fn from_json(bytes: &[u8]) -> Result<ControlState, ControlStateError> {
        let state: ControlState = serde_json::from_slice(bytes)?;
        if state.sites.version() != state.version {
            return Err(ControlStateError::VersionMismatch {
                state: state.version,
                sites: state.sites.version(),
            });
        }
        state.plugins.validate()?;
        Ok(state)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites::SiteConfig;

    fn binding(name: &str, sha: char) -> PluginBinding {
        PluginBinding {
            name: name.into(),
            plugin_version: "1.0.0".into(),
            sha256: sha.to_string().repeat(64),
            config: String::new(),
            data_sha256: String::new(),
            on_failure: "skip-plugin".into(),
        }
    }

    fn state(plugins: PluginChains) -> ControlState {
        let site = SiteConfig {
            site_id: "s1".into(),
            domain: "example.com".into(),
            allowed_hostnames: vec![],
            timezone: "UTC".into(),
            ga4: vec![],
            segment_write_keys: vec![],
        };
        ControlState {
            version: 5,
            sites: SiteDirectory::new(5, vec![site]).unwrap(),
            plugins,
        }
    }

    #[test]
    fn labels_follow_the_content() {
        let none = PluginChains::new(vec![], BTreeMap::new());
        assert_eq!(none.label, "none");
        let a = PluginChains::new(vec![binding("a", 'a')], BTreeMap::new());
        let again = PluginChains::new(vec![binding("a", 'a')], BTreeMap::new());
        assert_eq!(a.label, again.label);
        assert!(
            a.label.starts_with("ps-") && a.label.len() == 15,
            "{}",
            a.label
        );
        let mut other = binding("a", 'a');
        other.config = "x=1".into();
        assert_ne!(
            PluginChains::new(vec![other], BTreeMap::new()).label,
            a.label
        );
        let per_site = PluginChains::new(
            vec![],
            BTreeMap::from([("s1".to_owned(), vec![binding("a", 'a')])]),
        );
        assert_ne!(per_site.label, a.label, "scope is part of the content");
        assert_eq!(
            PluginChains::new(
                vec![binding("a", 'a')],
                BTreeMap::from([("s2".into(), vec![])])
            )
            .label,
            a.label,
            "an empty site chain is no chain"
        );
    }

    #[test]
    fn states_round_trip_and_are_checked() {
        let s = state(PluginChains::new(
            vec![binding("a", 'a'), binding("b", 'b')],
            BTreeMap::new(),
        ));
        let json = s.to_json();
        let back = ControlState::from_json(&json).unwrap();
        assert_eq!(back.plugins, s.plugins);
        assert_eq!(back.plugins.blobs(), ["a".repeat(64), "b".repeat(64)]);

        let mut forged = s.clone();
        forged.plugins.platform[0].sha256 = "c".repeat(64);
        let err = ControlState::from_json(&forged.to_json()).unwrap_err();
        assert!(
            matches!(err, ControlStateError::LabelMismatch { .. }),
            "{err}"
        );

        let mut bad = s.clone();
        bad.plugins = PluginChains::new(vec![binding("a", 'X')], BTreeMap::new());
        assert!(matches!(
            ControlState::from_json(&bad.to_json()),
            Err(ControlStateError::Binding { .. })
        ));

        let mut versions = s.clone();
        versions.version = 6;
        assert!(matches!(
            ControlState::from_json(&versions.to_json()),
            Err(ControlStateError::VersionMismatch { .. })
        ));
        assert!(matches!(
            ControlState::from_json(b"{\"version\":1"),
            Err(ControlStateError::Json(_))
        ));
    }
}
