//! Where the warehouse is and how to log in.

use serde::{Deserialize, Serialize};

use crate::{WarehouseError, ident::validate_identifier};

/// Connection settings, usually a `[warehouse]` section of a service's TOML.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarehouseConfig {
    /// HTTP interface of the server, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Database holding the Hourglass tables.
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl WarehouseConfig {
    pub const DEFAULT_URL: &'static str = "http://127.0.0.1:8123";
    pub const DEFAULT_DATABASE: &'static str = "hourglass";

    /// Checks what can be checked without a server: the URL's scheme and
    /// the database name (which goes into DDL as an identifier).
    pub fn validate(&self) -> Result<(), WarehouseError> {
        let invalid_url = |reason| WarehouseError::InvalidUrl {
            url: self.url.clone(),
            reason,
        };
        let Some(rest) = self.url.strip_prefix("http://") else {
            return Err(invalid_url(if self.url.starts_with("https://") {
                "https is not supported by this build (no TLS in the client); use http:// or a local proxy"
            } else {
                "must start with http://"
            }));
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid_url("has no host"));
        }
        validate_identifier("database name", &self.database)
    }
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        WarehouseConfig {
            url: Self::DEFAULT_URL.to_owned(),
            database: Self::DEFAULT_DATABASE.to_owned(),
            user: None,
            password: None,
        }
    }
}

/// Never prints the password.
impl std::fmt::Debug for WarehouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarehouseConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = WarehouseConfig::default();
        assert_eq!(c.url, "http://127.0.0.1:8123");
        assert_eq!(c.database, "hourglass");
        c.validate().unwrap();
    }

    #[test]
    fn rejects_bad_url_and_database() {
        let bad = |url: &str, db: &str| {
            WarehouseConfig {
                url: url.into(),
                database: db.into(),
                ..Default::default()
            }
            .validate()
            .is_err()
        };
        assert!(bad("127.0.0.1:8123", "hourglass"));
        assert!(bad("https://ch.example:8443", "hourglass"));
        assert!(bad("http://", "hourglass"));
        assert!(bad("http://127.0.0.1:8123", "hour-glass"));
        assert!(bad("http://127.0.0.1:8123", "x; DROP DATABASE y"));
        assert!(!bad("http://localhost:8123/", "hg_1"));
    }

    #[test]
    fn debug_redacts_password() {
        let c = WarehouseConfig {
            password: Some("s3cret".into()),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
