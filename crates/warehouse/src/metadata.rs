//! Merchants, sites and API keys (`0004_metadata.sql`): what the merchant
//! API and `central-ingest admin` need.
//!
//! The tables are `ReplacingMergeTree(version)`: an update or a delete is
//! an insert of the whole row with a higher `version` (milliseconds since
//! the epoch, or one more than the row it replaces), and readers take the
//! latest version per key with `argMax(…, version)` themselves and skip
//! deleted rows. Every value is a bound `?`; table names are constants.
//!
//! An API key is shown once, when it is made ([`NewApiKey::key`]); only its
//! SHA-256 (lower-case hex, [`hash_api_key`]) is stored, with a short
//! public prefix for listings and revocation.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Warehouse, WarehouseError};

/// What every API key starts with (and how they are recognised in logs).
pub const API_KEY_PREFIX: &str = "hgk_";
/// Characters of a key kept as its public `key_prefix` (`hgk_` + 8).
pub const KEY_PREFIX_LEN: usize = 12;

/// A row of `merchants` (latest version).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct Merchant {
    pub merchant_id: String,
    pub name: String,
    pub created_at: u32,
    pub version: u64,
    pub deleted: u8,
}

/// A row of `sites` (latest version). `site_id` is what events carry;
/// `domain` is what merchants name the site by in queries.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct Site {
    pub site_id: String,
    pub merchant_id: String,
    pub domain: String,
    pub allowed_hostnames: Vec<String>,
    pub timezone: String,
    pub created_at: u32,
    pub version: u64,
    pub deleted: u8,
}

/// A row of `api_keys` (latest version). Empty `site_ids` means every
/// site of the merchant; `expires_at` 0 means never; `rate_limit_per_minute`
/// 0 means the service's default.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct ApiKey {
    pub key_hash: String,
    pub key_prefix: String,
    pub merchant_id: String,
    pub site_ids: Vec<String>,
    pub name: String,
    pub rate_limit_per_minute: u32,
    pub created_at: u32,
    pub expires_at: u32,
    pub version: u64,
    pub deleted: u8,
}

/// A key just made: `key` is the secret, to show once and never store.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key: String,
    pub row: ApiKey,
}

/// What a valid key may read: its merchant's sites within its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    pub key: ApiKey,
    pub sites: Vec<Site>,
}

impl KeyGrant {
    /// The site this key may read whose domain is `domain`, if any.
    pub fn site_by_domain(&self, domain: &str) -> Option<&Site> {
        site_by_domain(&self.sites, domain)
    }
}

/// The site of `sites` whose domain is `domain` (case-insensitive).
pub fn site_by_domain<'a>(sites: &'a [Site], domain: &str) -> Option<&'a Site> {
    sites.iter().find(|s| s.domain.eq_ignore_ascii_case(domain))
}

/// Why a metadata change was refused.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("{0}")]
    Invalid(String),
    #[error("no {what} matches {value:?}")]
    NotFound { what: &'static str, value: String },
    #[error("{value:?} matches {count} API keys; give more of the prefix or the full hash")]
    Ambiguous { value: String, count: usize },
    #[error("cannot read random bytes from the OS: {0}")]
    Random(String),
}

/// Lower-case hex SHA-256 of a key, as stored in `api_keys.key_hash`.
pub fn hash_api_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// A random id: `prefix` + 16 hex digits (64 bits from the OS).
pub fn random_id(prefix: &str) -> Result<String, MetadataError> {
    Ok(format!("{prefix}{}", hex(&random_bytes::<8>()?)))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], MetadataError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| MetadataError::Random(e.to_string()))?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn now_s() -> u32 {
    (now_ms() / 1000) as u32
}

/// Latest version of each merchant (aliases differ from column names: on
/// 18.16 an alias equal to a column name inside an aggregate is ambiguous;
/// RowBinary reads by position).
const MERCHANTS: &str = "SELECT merchant_id, argMax(name, version) AS n, \
     argMax(created_at, version) AS c, max(version) AS v, argMax(deleted, version) AS d \
     FROM merchants WHERE merchant_id = ? GROUP BY merchant_id";

const SITES: &str = "SELECT site_id, argMax(merchant_id, version) AS m, \
     argMax(domain, version) AS dom, argMax(allowed_hostnames, version) AS h, \
     argMax(timezone, version) AS tz, argMax(created_at, version) AS c, \
     max(version) AS v, argMax(deleted, version) AS d FROM sites GROUP BY site_id";

const KEYS: &str = "SELECT key_hash, argMax(key_prefix, version) AS p, \
     argMax(merchant_id, version) AS m, argMax(site_ids, version) AS s, \
     argMax(name, version) AS n, argMax(rate_limit_per_minute, version) AS r, \
     argMax(created_at, version) AS c, argMax(expires_at, version) AS e, \
     max(version) AS v, argMax(deleted, version) AS d FROM api_keys";

impl Warehouse {
    pub(crate) async fn insert_rows<T>(&self, table: &str, rows: &[T]) -> Result<(), WarehouseError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        let context = |what: &str| format!("writing {table} in {}: {what}", self.database());
        let mut insert = self
            .db
            .insert::<T>(table)
            .await
            .map_err(WarehouseError::clickhouse(context("starting the insert")))?;
        for row in rows {
            insert
                .write(row)
                .await
                .map_err(WarehouseError::clickhouse(context("writing a row")))?;
        }
        insert
            .end()
            .await
            .map_err(WarehouseError::clickhouse(context("finishing the insert")))
    }

    /// Adds a merchant with a new random id.
    pub async fn add_merchant(&self, name: &str) -> Result<Merchant, MetadataError> {
        if name.trim().is_empty() {
            return Err(MetadataError::Invalid(
                "a merchant name must not be empty".into(),
            ));
        }
        let row = Merchant {
            merchant_id: random_id("m_")?,
            name: name.to_owned(),
            created_at: now_s(),
            version: now_ms(),
            deleted: 0,
        };
        self.insert_rows("merchants", std::slice::from_ref(&row))
            .await?;
        Ok(row)
    }

    /// The merchant `merchant_id`, unless unknown or deleted.
    pub async fn merchant(&self, merchant_id: &str) -> Result<Option<Merchant>, WarehouseError> {
        let rows = self
            .db
            .query(MERCHANTS)
            .bind(merchant_id)
            .fetch_all::<Merchant>()
            .await
            .map_err(WarehouseError::clickhouse("reading merchants"))?;
        Ok(rows.into_iter().find(|m| m.deleted == 0))
    }

    /// Every site that is not deleted.
    pub async fn sites(&self) -> Result<Vec<Site>, WarehouseError> {
        let rows = self
            .db
            .query(SITES)
            .fetch_all::<Site>()
            .await
            .map_err(WarehouseError::clickhouse("reading sites"))?;
        Ok(rows.into_iter().filter(|s| s.deleted == 0).collect())
    }

    /// Adds a site for an existing merchant. `site_id` is the id events
    /// carry (a new random one when `None`); the domain must not belong to
    /// another live site; `timezone` is an IANA name.
    pub async fn add_site(
        &self,
        merchant_id: &str,
        domain: &str,
        timezone: &str,
        site_id: Option<&str>,
    ) -> Result<Site, MetadataError> {
        let domain = domain.trim().to_ascii_lowercase();
        if domain.is_empty() || domain.contains(['/', ' ', ':']) {
            return Err(MetadataError::Invalid(format!(
                "{domain:?} is not a domain (e.g. example.com)"
            )));
        }
        if jiff::tz::TimeZone::get(timezone).is_err() {
            return Err(MetadataError::Invalid(format!(
                "{timezone:?} is not an IANA time zone (e.g. Europe/Berlin)"
            )));
        }
        if self.merchant(merchant_id).await?.is_none() {
            return Err(MetadataError::NotFound {
                what: "merchant",
                value: merchant_id.to_owned(),
            });
        }
        let sites = self.sites().await?;
        if sites.iter().any(|s| s.domain == domain) {
            return Err(MetadataError::Invalid(format!(
                "a site for {domain} already exists"
            )));
        }
        let site_id = match site_id {
            Some(id) if id.trim().is_empty() => {
                return Err(MetadataError::Invalid("a site id must not be empty".into()));
            }
            Some(id) if sites.iter().any(|s| s.site_id == id) => {
                return Err(MetadataError::Invalid(format!("site id {id} is taken")));
            }
            Some(id) => id.to_owned(),
            None => random_id("s_")?,
        };
        let row = Site {
            site_id,
            merchant_id: merchant_id.to_owned(),
            domain,
            allowed_hostnames: Vec::new(),
            timezone: timezone.to_owned(),
            created_at: now_s(),
            version: now_ms(),
            deleted: 0,
        };
        self.insert_rows("sites", std::slice::from_ref(&row))
            .await?;
        Ok(row)
    }

    /// Makes an API key for `merchant_id`, scoped to `site_ids` (which must
    /// be the merchant's; empty means all its sites). Returns the key once.
    pub async fn create_api_key(
        &self,
        merchant_id: &str,
        site_ids: &[String],
        name: &str,
        rate_limit_per_minute: u32,
    ) -> Result<NewApiKey, MetadataError> {
        if self.merchant(merchant_id).await?.is_none() {
            return Err(MetadataError::NotFound {
                what: "merchant",
                value: merchant_id.to_owned(),
            });
        }
        let sites = self.sites().await?;
        for id in site_ids {
            if !sites
                .iter()
                .any(|s| &s.site_id == id && s.merchant_id == merchant_id)
            {
                return Err(MetadataError::NotFound {
                    what: "site of this merchant",
                    value: id.clone(),
                });
            }
        }
        let key = format!("{API_KEY_PREFIX}{}", hex(&random_bytes::<24>()?));
        let row = ApiKey {
            key_hash: hash_api_key(&key),
            key_prefix: key[..KEY_PREFIX_LEN].to_owned(),
            merchant_id: merchant_id.to_owned(),
            site_ids: site_ids.to_vec(),
            name: name.to_owned(),
            rate_limit_per_minute,
            created_at: now_s(),
            expires_at: 0,
            version: now_ms(),
            deleted: 0,
        };
        self.insert_rows("api_keys", std::slice::from_ref(&row))
            .await?;
        Ok(NewApiKey { key, row })
    }

    /// Revokes the one live key whose hash or public prefix is
    /// `prefix_or_hash`; returns it.
    pub async fn revoke_api_key(&self, prefix_or_hash: &str) -> Result<ApiKey, MetadataError> {
        let needle = prefix_or_hash.trim();
        if needle.is_empty() {
            return Err(MetadataError::Invalid("give a key prefix or hash".into()));
        }
        let sql = format!(
            "SELECT * FROM ({KEYS} GROUP BY key_hash) WHERE d = 0 AND (key_hash = ? OR p = ?)"
        );
        let matches = self
            .db
            .query(&sql)
            .bind(needle)
            .bind(needle)
            .fetch_all::<ApiKey>()
            .await
            .map_err(WarehouseError::clickhouse("reading api_keys"))?;
        let mut row = match matches.len() {
            0 => {
                return Err(MetadataError::NotFound {
                    what: "live API key",
                    value: needle.to_owned(),
                });
            }
            1 => matches.into_iter().next().expect("one row"),
            count => {
                return Err(MetadataError::Ambiguous {
                    value: needle.to_owned(),
                    count,
                });
            }
        };
        row.version = now_ms().max(row.version + 1);
        row.deleted = 1;
        self.insert_rows("api_keys", std::slice::from_ref(&row))
            .await?;
        Ok(row)
    }

    /// The live, unexpired key whose hash is `key_hash`, with the live
    /// sites of its merchant it may read; `None` for any other key.
    pub async fn api_key_grant(
        &self,
        key_hash: &str,
        now: SystemTime,
    ) -> Result<Option<KeyGrant>, WarehouseError> {
        let sql = format!("{KEYS} WHERE key_hash = ? GROUP BY key_hash");
        let rows = self
            .db
            .query(&sql)
            .bind(key_hash)
            .fetch_all::<ApiKey>()
            .await
            .map_err(WarehouseError::clickhouse("reading api_keys"))?;
        let now_s = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs().min(u64::from(u32::MAX)) as u32);
        let Some(key) = rows
            .into_iter()
            .find(|k| k.deleted == 0 && (k.expires_at == 0 || k.expires_at > now_s))
        else {
            return Ok(None);
        };
        if self.merchant(&key.merchant_id).await?.is_none() {
            return Ok(None);
        }
        let sites = self
            .sites()
            .await?
            .into_iter()
            .filter(|s| s.merchant_id == key.merchant_id)
            .filter(|s| key.site_ids.is_empty() || key.site_ids.contains(&s.site_id))
            .collect();
        Ok(Some(KeyGrant { key, sites }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_to_lowercase_sha256_hex() {
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn random_ids_differ_and_have_the_prefix() {
        let a = random_id("m_").unwrap();
        let b = random_id("m_").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("m_") && a.len() == 2 + 16);
    }
}
