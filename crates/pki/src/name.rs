//! Edge names: the one spelling rule shared by edge configs, certificates,
//! batch ids and file names under `edges/`.

use std::fmt;
use std::str::FromStr;

/// Longest edge name accepted, in bytes.
pub const MAX_EDGE_NAME_LEN: usize = 64;

/// A validated edge name: 1 to [`MAX_EDGE_NAME_LEN`] characters of
/// `A-Z`, `a-z`, `0-9`, `-` or `_` — the rule `edge-agent`'s `edge_id`
/// config key already enforces. Safe as a file name, a URI path segment and
/// a metric label, so nothing downstream needs to escape it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EdgeName(String);

/// Why a string is not an [`EdgeName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{name:?} is not a valid edge name: use 1-64 characters of A-Z, a-z, 0-9, '-' or '_' (it names files, certificates and batches)"
)]
pub struct InvalidEdgeName {
    /// The rejected input, cut to a readable length.
    pub name: String,
}

impl EdgeName {
    /// Checks `name` against the spelling rule.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidEdgeName> {
        let name = name.into();
        if is_valid_edge_name(&name) {
            Ok(EdgeName(name))
        } else {
            Err(InvalidEdgeName {
                name: name.chars().take(80).collect(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The spelling rule of [`EdgeName`], for callers that only need a yes/no.
pub fn is_valid_edge_name(name: &str) -> bool {
    (1..=MAX_EDGE_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl fmt::Display for EdgeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EdgeName {
    type Err = InvalidEdgeName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EdgeName::new(s)
    }
}

impl AsRef<str> for EdgeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_edge_agent_spelling() {
        for ok in ["edge-1", "fra_2", "A", &"x".repeat(64)] {
            assert_eq!(EdgeName::new(ok).map(|n| n.to_string()), Ok(ok.to_string()));
        }
    }

    #[test]
    fn refuses_what_would_need_escaping() {
        for bad in ["", &"x".repeat(65), "a.b", "a/b", "../x", "a b", "é", "a:b"] {
            let err = EdgeName::new(bad).expect_err(bad);
            assert!(err.to_string().contains("1-64 characters"), "{err}");
        }
    }
}
