//! `key = value` lines, the config format of the reference plugins: no
//! parser dependency in the guest, easy to write by hand. `#` starts a
//! comment line; lists are comma-separated.

/// Parsed config lines, in order.
#[derive(Debug, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// Parses `text`, accepting only the keys in `known` (a typo in a
    /// site's config should refuse the plugin, not be ignored).
    pub fn parse(text: &str, known: &[&str]) -> Result<Config, String> {
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "config line {}: expected `key = value`, got `{line}`",
                    number + 1
                ));
            };
            let key = key.trim();
            if !known.contains(&key) {
                return Err(format!(
                    "config line {}: unknown key `{key}` (known: {})",
                    number + 1,
                    known.join(", ")
                ));
            }
            entries.push((key.to_owned(), value.trim().to_owned()));
        }
        Ok(Config { entries })
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key`'s comma-separated items, trimmed, empty ones skipped.
    pub fn list(&self, key: &str) -> Option<Vec<String>> {
        self.get(key).map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }

    /// `key` as a number, `default` when absent.
    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("config `{key}`: `{v}` is not a whole number")),
        }
    }

    /// `key` as `true`/`false`, `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(format!("config `{key}`: `{v}` is not true or false")),
        }
    }
}
