//! Loading a service's TOML config with environment overrides, and the
//! "raw struct validated into a type that cannot be invalid" convention.
//!
//! Precedence, lowest first: the struct's defaults, the TOML file,
//! `HOURGLASS_<SECTION>__<KEY>` variables, then the two well-known variables
//! `CLICKHOUSE_URL` and `CLICKHOUSE_DATABASE`, which set `warehouse.url` and
//! `warehouse.database` for every binary.

use std::fmt;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One thing wrong with a config: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the setting, e.g. `warehouse.url`.
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(String),
    #[error("cannot read config: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("invalid config:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// A raw (deserialised) config that can be checked into its valid form.
pub trait Validate {
    type Valid;
    /// Every problem found, not just the first.
    fn validate(&self) -> Result<Self::Valid, Vec<Problem>>;
}

/// Reads `T` from its defaults, the optional TOML file and the environment.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigError::Missing(file.display().to_string()));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    // Only variables naming a setting of `T`: other `HOURGLASS_*` variables
    // (the test tooling's, another service's) must not break this one.
    let known: Vec<String> = match figment::value::Value::serialize(T::default()) {
        Ok(figment::value::Value::Dict(_, dict)) => dict.keys().cloned().collect(),
        _ => Vec::new(),
    };
    // Services without a warehouse ignore the ClickHouse variables.
    let has_warehouse = known.iter().any(|k| k == "warehouse");
    figment
        .merge(Env::prefixed("HOURGLASS_").split("__").filter(move |key| {
            let top = key.as_str().split(['.']).next().unwrap_or_default();
            let top = top.split("__").next().unwrap_or_default();
            known.iter().any(|k| k.eq_ignore_ascii_case(top))
        }))
        .merge(
            Env::raw()
                .only(if has_warehouse {
                    &["CLICKHOUSE_URL", "CLICKHOUSE_DATABASE"]
                } else {
                    &[]
                })
                .map(|k| {
                    if k == "clickhouse_url" {
                        "warehouse.url".into()
                    } else {
                        "warehouse.database".into()
                    }
                }),
        )
        .extract()
        .map_err(|e| ConfigError::Parse(Box::new(e)))
}

/// Loads and validates: what every service does at start.
pub fn load_valid<T>(file: Option<&Path>) -> Result<T::Valid, ConfigError>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    load::<T>(file)?.validate().map_err(ConfigError::Invalid)
}

/// The `check-config` subcommand: prints what is wrong (or that all is
/// well) and returns the process exit code.
pub fn check<T>(file: Option<&Path>) -> i32
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    match load_valid::<T>(file) {
        Ok(_) => {
            let from = file.map_or("defaults and environment".to_string(), |f| {
                f.display().to_string()
            });
            println!("config OK ({from})");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

#[cfg(test)]
// `figment::Jail` closures return `figment::Error`, which is large; not ours to box.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Cfg {
        warehouse: Wh,
        batch_max_events: u32,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Wh {
        url: String,
        database: String,
    }

    impl Validate for Cfg {
        type Valid = u32;
        fn validate(&self) -> Result<u32, Vec<Problem>> {
            let mut problems = Vec::new();
            if self.batch_max_events == 0 {
                problems.push(Problem::new("batch_max_events", "must be at least 1"));
            }
            if !self.warehouse.url.starts_with("http") {
                problems.push(Problem::new("warehouse.url", "must be an http(s) URL"));
            }
            if problems.is_empty() {
                Ok(self.batch_max_events)
            } else {
                Err(problems)
            }
        }
    }

    #[test]
    fn file_then_env_then_clickhouse_vars() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "svc.toml",
                "batch_max_events = 5\n[warehouse]\nurl = \"http://file:8123\"\ndatabase = \"f\"\n",
            )?;
            let c: Cfg = load(Some(Path::new("svc.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.batch_max_events, 5);
            assert_eq!(c.warehouse.url, "http://file:8123");

            jail.set_env("HOURGLASS_BATCH_MAX_EVENTS", "7");
            jail.set_env("HOURGLASS_PYTHON", "/not/a/setting");
            jail.set_env("HOURGLASS_WAREHOUSE__DATABASE", "fromenv");
            let c: Cfg = load(Some(Path::new("svc.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.batch_max_events, 7);
            assert_eq!(c.warehouse.database, "fromenv");

            jail.set_env("CLICKHOUSE_URL", "http://127.0.0.1:9");
            jail.set_env("CLICKHOUSE_DATABASE", "chdb");
            let c: Cfg = load(Some(Path::new("svc.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.warehouse.url, "http://127.0.0.1:9");
            assert_eq!(c.warehouse.database, "chdb");
            Ok(())
        });
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "bad.toml",
                "batch_max_events = 0\n[warehouse]\nurl = \"ftp://x\"\n",
            )?;
            let err = load_valid::<Cfg>(Some(Path::new("bad.toml"))).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("batch_max_events: must be at least 1"),
                "{text}"
            );
            assert!(
                text.contains("warehouse.url: must be an http(s) URL"),
                "{text}"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("typo.toml", "batch_max_event = 3\n")?;
            let err = load::<Cfg>(Some(Path::new("typo.toml"))).unwrap_err();
            assert!(err.to_string().contains("batch_max_event"), "{err}");
            let err = load::<Cfg>(Some(Path::new("nope.toml"))).unwrap_err();
            assert!(matches!(err, ConfigError::Missing(_)), "{err}");
            Ok(())
        });
    }
}
