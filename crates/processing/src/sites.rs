//! The site directory: which sites exist and what admits a hit to each.
//!
//! A [`SiteDirectory`] is built (or deserialized) from a versioned list of
//! [`SiteConfig`]s and validated on the way in, so a directory that exists
//! has unique site ids, domains, GA4 measurement ids and write keys. It is
//! immutable; a new version replaces the whole directory (the edge swaps an
//! `Arc`).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde::{Deserialize, Serialize};

/// One merchant site as configured centrally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteConfig {
    pub site_id: String,
    /// The site's domain as the Plausible-style `d` field names it, e.g.
    /// `example.com` (compared case-insensitively, without a `www.` prefix).
    pub domain: String,
    /// Hostnames page URLs may have. Empty: the domain and its subdomains.
    /// Entries are exact hostnames, `*.example.com` (any subdomain, not the
    /// apex), or `*` (any hostname, e.g. for `app://` URLs).
    #[serde(default)]
    pub allowed_hostnames: Vec<String>,
    /// IANA time zone name, used by reports (not by processing).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default)]
    pub ga4: Vec<Ga4Stream>,
    /// Segment / RudderStack write keys that admit hits to this site.
    #[serde(default)]
    pub segment_write_keys: Vec<String>,
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

/// A GA4 data stream: its measurement id and the Measurement Protocol API
/// secret clients must present with it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ga4Stream {
    pub measurement_id: String,
    pub api_secret: String,
}

impl std::fmt::Debug for Ga4Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ga4Stream")
            .field("measurement_id", &self.measurement_id)
            .field("api_secret", &"<redacted>")
            .finish()
    }
}

impl SiteConfig {
    /// Whether a page on `hostname` (lower case, as the `url` crate gives
    /// it) may send hits to this site.
    pub fn allows_hostname(&self, hostname: &str) -> bool {
        let host = hostname.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return self.allowed_hostnames.iter().any(|p| p.trim() == "*");
        }
        let bare = strip_www(&host);
        if self.allowed_hostnames.is_empty() {
            let domain = normalize_domain(&self.domain);
            return bare == domain || bare.ends_with(&format!(".{domain}"));
        }
        self.allowed_hostnames.iter().any(|pattern| {
            let pattern = pattern.trim().to_ascii_lowercase();
            if pattern == "*" {
                true
            } else if let Some(suffix) = pattern.strip_prefix("*.") {
                host.ends_with(&format!(".{suffix}"))
            } else {
                host == pattern || bare == pattern
            }
        })
    }
}

/// What is wrong with a site list, named so `check-config` can say where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SiteConfigError {
    #[error("site #{index}: `site_id` is empty")]
    EmptySiteId { index: usize },
    #[error("site `{site_id}`: `domain` is empty")]
    EmptyDomain { site_id: String },
    #[error("site id `{site_id}` appears twice")]
    DuplicateSiteId { site_id: String },
    #[error("domain `{domain}` is claimed by sites `{first}` and `{second}`")]
    DuplicateDomain {
        domain: String,
        first: String,
        second: String,
    },
    #[error("site `{site_id}`: a GA4 stream has an empty measurement id or api secret")]
    EmptyGa4Stream { site_id: String },
    #[error("GA4 measurement id `{measurement_id}` is claimed by sites `{first}` and `{second}`")]
    DuplicateMeasurementId {
        measurement_id: String,
        first: String,
        second: String,
    },
    #[error("site `{site_id}`: a Segment write key is empty")]
    EmptyWriteKey { site_id: String },
    #[error("a Segment write key is claimed by sites `{first}` and `{second}`")]
    DuplicateWriteKey { first: String, second: String },
}

/// The serialized form of a [`SiteDirectory`]: what central sends to edges.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SiteDirectoryFile {
    version: u64,
    sites: Vec<SiteConfig>,
}

/// All sites, with their lookup indexes. Serializes as
/// `{ "version": u64, "sites": [SiteConfig…] }`; deserializing validates.
/// The default is the empty directory (version 0), which admits nothing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(try_from = "SiteDirectoryFile", into = "SiteDirectoryFile")]
pub struct SiteDirectory {
    version: u64,
    sites: Vec<SiteConfig>,
    by_domain: HashMap<String, usize>,
    /// measurement id -> (site index, stream index)
    by_measurement_id: HashMap<String, (usize, usize)>,
    /// Indexed by a digest of the key, so a lookup's timing says nothing
    /// about how much of a guessed key was right.
    by_write_key: HashMap<[u8; 32], usize>,
}

impl TryFrom<SiteDirectoryFile> for SiteDirectory {
    type Error = SiteConfigError;
    fn try_from(file: SiteDirectoryFile) -> Result<Self, Self::Error> {
        SiteDirectory::new(file.version, file.sites)
    }
}

impl From<SiteDirectory> for SiteDirectoryFile {
    fn from(dir: SiteDirectory) -> Self {
        SiteDirectoryFile {
            version: dir.version,
            sites: dir.sites,
        }
    }
}

impl SiteDirectory {
    /// Validates `sites` and builds the indexes.
    pub fn new(version: u64, sites: Vec<SiteConfig>) -> Result<Self, SiteConfigError> {
        let mut dir = SiteDirectory {
            version,
            ..SiteDirectory::default()
        };
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (index, site) in sites.iter().enumerate() {
            if site.site_id.trim().is_empty() {
                return Err(SiteConfigError::EmptySiteId { index });
            }
            if ids.insert(&site.site_id, index).is_some() {
                return Err(SiteConfigError::DuplicateSiteId {
                    site_id: site.site_id.clone(),
                });
            }
            let domain = normalize_domain(&site.domain);
            if domain.is_empty() {
                return Err(SiteConfigError::EmptyDomain {
                    site_id: site.site_id.clone(),
                });
            }
            match dir.by_domain.entry(domain) {
                Entry::Occupied(e) => {
                    return Err(SiteConfigError::DuplicateDomain {
                        domain: e.key().clone(),
                        first: sites[*e.get()].site_id.clone(),
                        second: site.site_id.clone(),
                    });
                }
                Entry::Vacant(e) => {
                    e.insert(index);
                }
            }
            for (stream_index, stream) in site.ga4.iter().enumerate() {
                if stream.measurement_id.trim().is_empty() || stream.api_secret.is_empty() {
                    return Err(SiteConfigError::EmptyGa4Stream {
                        site_id: site.site_id.clone(),
                    });
                }
                match dir
                    .by_measurement_id
                    .entry(stream.measurement_id.trim().to_owned())
                {
                    Entry::Occupied(e) => {
                        return Err(SiteConfigError::DuplicateMeasurementId {
                            measurement_id: e.key().clone(),
                            first: sites[e.get().0].site_id.clone(),
                            second: site.site_id.clone(),
                        });
                    }
                    Entry::Vacant(e) => {
                        e.insert((index, stream_index));
                    }
                }
            }
            for key in &site.segment_write_keys {
                if key.is_empty() {
                    return Err(SiteConfigError::EmptyWriteKey {
                        site_id: site.site_id.clone(),
                    });
                }
                match dir
                    .by_write_key
                    .entry(*blake3::hash(key.as_bytes()).as_bytes())
                {
                    Entry::Occupied(e) => {
                        return Err(SiteConfigError::DuplicateWriteKey {
                            first: sites[*e.get()].site_id.clone(),
                            second: site.site_id.clone(),
                        });
                    }
                    Entry::Vacant(e) => {
                        e.insert(index);
                    }
                }
            }
        }
        dir.sites = sites;
        Ok(dir)
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn sites(&self) -> &[SiteConfig] {
        &self.sites
    }

    pub fn by_site_id(&self, site_id: &str) -> Option<&SiteConfig> {
        self.sites.iter().find(|s| s.site_id == site_id)
    }

    /// The site for one domain (case-insensitive, `www.` ignored).
    pub fn by_domain(&self, domain: &str) -> Option<&SiteConfig> {
        self.by_domain
            .get(&normalize_domain(domain))
            .map(|&i| &self.sites[i])
    }

    /// The sites for a Plausible `d` value, which may list several domains
    /// separated by commas (rollup sites). Duplicates are merged; the first
    /// domain that names no site is the error.
    pub fn by_domain_list<'a>(&self, list: &'a str) -> Result<Vec<&SiteConfig>, &'a str> {
        let mut found: Vec<&SiteConfig> = Vec::new();
        for domain in list.split(',') {
            let trimmed = domain.trim();
            let site = self.by_domain(trimmed).ok_or(trimmed)?;
            if !found.iter().any(|s| s.site_id == site.site_id) {
                found.push(site);
            }
        }
        Ok(found)
    }

    /// The site and GA4 stream for a measurement id.
    pub fn by_measurement_id(&self, measurement_id: &str) -> Option<(&SiteConfig, &Ga4Stream)> {
        let &(site, stream) = self.by_measurement_id.get(measurement_id.trim())?;
        let site = &self.sites[site];
        Some((site, &site.ga4[stream]))
    }

    /// The site a Segment write key admits to.
    pub fn by_write_key(&self, write_key: &str) -> Option<&SiteConfig> {
        self.by_write_key
            .get(blake3::hash(write_key.as_bytes()).as_bytes())
            .map(|&i| &self.sites[i])
    }
}

/// Lower case, trimmed, no trailing dot, no `www.` prefix.
pub(crate) fn normalize_domain(domain: &str) -> String {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    strip_www(&d).to_owned()
}

pub(crate) fn strip_www(host: &str) -> &str {
    host.strip_prefix("www.").unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(id: &str, domain: &str) -> SiteConfig {
        SiteConfig {
            site_id: id.into(),
            domain: domain.into(),
            allowed_hostnames: vec![],
            timezone: "UTC".into(),
            ga4: vec![],
            segment_write_keys: vec![],
        }
    }

    #[test]
    fn lookups_by_domain_measurement_id_and_write_key() {
        let mut a = site("a", "Example.com");
        a.ga4.push(Ga4Stream {
            measurement_id: "G-AAAA".into(),
            api_secret: "s3cret".into(),
        });
        a.segment_write_keys.push("wk_a".into());
        let dir = SiteDirectory::new(7, vec![a, site("b", "other.org")]).unwrap();
        assert_eq!(dir.version(), 7);
        assert_eq!(dir.by_domain("www.example.com").unwrap().site_id, "a");
        assert_eq!(dir.by_domain(" EXAMPLE.COM ").unwrap().site_id, "a");
        assert!(dir.by_domain("nope.com").is_none());
        let (s, stream) = dir.by_measurement_id("G-AAAA").unwrap();
        assert_eq!(
            (s.site_id.as_str(), stream.api_secret.as_str()),
            ("a", "s3cret")
        );
        assert_eq!(dir.by_write_key("wk_a").unwrap().site_id, "a");
        assert!(dir.by_write_key("wk_b").is_none());
        let both = dir
            .by_domain_list("example.com, other.org,example.com")
            .unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(
            dir.by_domain_list("example.com,unknown.net").unwrap_err(),
            "unknown.net"
        );
    }

    #[test]
    fn duplicates_are_refused_by_name() {
        let err =
            SiteDirectory::new(1, vec![site("a", "x.com"), site("b", "www.x.com")]).unwrap_err();
        assert!(
            matches!(err, SiteConfigError::DuplicateDomain { .. }),
            "{err}"
        );
        let err = SiteDirectory::new(1, vec![site("a", "x.com"), site("a", "y.com")]).unwrap_err();
        assert!(matches!(err, SiteConfigError::DuplicateSiteId { .. }));
        let mut a = site("a", "x.com");
        let mut b = site("b", "y.com");
        a.segment_write_keys.push("k".into());
        b.segment_write_keys.push("k".into());
        let err = SiteDirectory::new(1, vec![a, b]).unwrap_err();
        assert!(matches!(err, SiteConfigError::DuplicateWriteKey { .. }));
    }

    #[test]
    fn hostname_rules() {
        let mut s = site("a", "example.com");
        assert!(s.allows_hostname("example.com"));
        assert!(s.allows_hostname("www.example.com"));
        assert!(s.allows_hostname("blog.example.com"));
        assert!(!s.allows_hostname("example.com.evil.net"));
        assert!(!s.allows_hostname("notexample.com"));
        assert!(!s.allows_hostname(""));
        s.allowed_hostnames = vec!["shop.example.com".into(), "*.cdn.net".into()];
        assert!(s.allows_hostname("shop.example.com"));
        assert!(!s.allows_hostname("example.com"));
        assert!(s.allows_hostname("a.cdn.net"));
        assert!(!s.allows_hostname("cdn.net"));
        s.allowed_hostnames = vec!["*".into()];
        assert!(s.allows_hostname("localhost"));
        assert!(s.allows_hostname(""));
    }

    #[test]
    fn serde_round_trip_validates() {
        let json = r#"{"version":3,"sites":[{"site_id":"a","domain":"example.com",
            "ga4":[{"measurement_id":"G-1","api_secret":"x"}],"segment_write_keys":["k"]}]}"#;
        let dir: SiteDirectory = serde_json::from_str(json).unwrap();
        assert_eq!(dir.sites()[0].timezone, "UTC");
        let back = serde_json::to_string(&dir).unwrap();
        let again: SiteDirectory = serde_json::from_str(&back).unwrap();
        assert_eq!(again.sites(), dir.sites());
        let dup = r#"{"version":1,"sites":[{"site_id":"a","domain":"x.com"},{"site_id":"a","domain":"y.com"}]}"#;
        assert!(serde_json::from_str::<SiteDirectory>(dup).is_err());
    }
}
