//! Country, region and city from the client IP, by a MaxMind DB (`mmdb`)
//! given as the plugin's data blob. Reads `client-ip`; writes `country`,
//! `region`, `city`.
//!
//! Two record layouts are understood, so free databases work as they are:
//! - GeoIP2 / GeoLite2 (`country.iso_code`, `subdivisions[0].names.<lang>`,
//!   `city.names.<lang>`);
//! - ip-location-db (`country_code`, `state1`, `city`), e.g. the CC0
//!   `geo-whois-asn-country` database `cargo xtask plugins` fetches (country
//!   only).
//!
//! An address the database does not know, or that does not parse, is kept
//! unchanged: geography is an enrichment, never a reason to drop a hit.
//!
//! Config: `language` (names in that language, default `en`),
//! `cache_entries` (results cached by address, default 4096; the cache is
//! cleared when full).

use std::collections::HashMap;
use std::net::IpAddr;

use hourglass_plugin_sdk::config::Config;
use hourglass_plugin_sdk::{DeclaredFields, Event, Field, Outcome, Plugin};
use maxminddb::{PathElement, Reader};

/// Where an address is, as the event spells it; empty when unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    pub country: String,
    pub region: String,
    pub city: String,
}

impl Place {
    fn is_empty(&self) -> bool {
        self.country.is_empty() && self.region.is_empty() && self.city.is_empty()
    }
}

/// A database and the language names are read in.
pub struct Geo {
    reader: Reader<Vec<u8>>,
    language: String,
    cache: HashMap<String, Place>,
    cache_entries: usize,
}

impl Geo {
    /// Opens the `mmdb` in `data`; an empty or malformed blob is an error.
    pub fn new(config: &str, data: &[u8]) -> Result<Geo, String> {
        let config = Config::parse(config, &["language", "cache_entries"])?;
        if data.is_empty() {
            return Err(
                "geo needs a MaxMind DB (.mmdb) as its data file (data_file in the plugin's config)"
                    .to_owned(),
            );
        }
        let reader = Reader::from_source(data.to_vec())
            .map_err(|e| format!("the data file is not a MaxMind DB: {e}"))?;
        Ok(Geo {
            reader,
            language: config.get("language").unwrap_or("en").to_owned(),
            cache: HashMap::new(),
            cache_entries: config.usize_or("cache_entries", 4096)?,
        })
    }

    /// Where `ip` is, from the cache or the database.
    pub fn locate(&mut self, ip: &str) -> Place {
        if let Some(place) = self.cache.get(ip) {
            return place.clone();
        }
        let place = self.lookup(ip);
        if self.cache.len() >= self.cache_entries {
            self.cache.clear();
        }
        if self.cache_entries > 0 {
            self.cache.insert(ip.to_owned(), place.clone());
        }
        place
    }

    fn lookup(&self, ip: &str) -> Place {
        let Ok(ip) = ip.trim().parse::<IpAddr>() else {
            return Place::default();
        };
        // An IPv6 address in an IPv4-only database is an error: unknown.
        let Ok(found) = self.reader.lookup(ip) else {
            return Place::default();
        };
        if !found.has_data() {
            return Place::default();
        }
        let lang = self.language.as_str();
        // A path of the other layout is a type mismatch (an error) or
        // missing (None): either way, try the next.
        let first = |paths: &[&[PathElement<'_>]]| -> String {
            paths
                .iter()
                .find_map(|path| found.decode_path::<&str>(path).ok().flatten())
                .unwrap_or_default()
                .to_owned()
        };
        use PathElement::{Index, Key};
        Place {
            country: first(&[&[Key("country"), Key("iso_code")], &[Key("country_code")]]),
            region: first(&[
                &[Key("subdivisions"), Index(0), Key("names"), Key(lang)],
                &[Key("state1")],
            ]),
            city: first(&[&[Key("city"), Key("names"), Key(lang)], &[Key("city")]]),
        }
    }
}

impl Plugin for Geo {
    fn init(config: &str, data: &[u8]) -> Result<Self, String> {
        Geo::new(config, data)
    }

    fn fields(&self) -> DeclaredFields {
        DeclaredFields {
            reads: vec![Field::ClientIp],
            writes: vec![Field::Country, Field::Region, Field::City],
        }
    }

    fn process(&mut self, mut event: Event) -> Outcome {
        let place = self.locate(&event.client_ip);
        if place.is_empty() {
            return Outcome::Keep;
        }
        event.country = place.country;
        event.region = place.region;
        event.city = place.city;
        Outcome::Modify(event)
    }
}

hourglass_plugin_sdk::plugin!(Geo);

#[cfg(test)]
mod fixture;

#[cfg(test)]
mod tests {
    use super::*;

    fn city_db() -> Vec<u8> {
        fixture::city()
    }

    fn place(country: &str, region: &str, city: &str) -> Place {
        Place {
            country: country.into(),
            region: region.into(),
            city: city.into(),
        }
    }

    #[test]
    fn geoip2_layout_gives_country_region_and_city() {
        let mut geo = Geo::new("", &city_db()).unwrap();
        assert_eq!(
            geo.locate("192.0.2.10"),
            place("US", "California", "San Francisco")
        );
        assert_eq!(
            geo.locate("198.51.100.200"),
            place("DE", "Berlin", "Berlin")
        );
        assert_eq!(
            geo.locate("2001:db8::1"),
            place("FR", "Île-de-France", "Paris")
        );
        // Names in another language, where the database has them.
        let mut geo = Geo::new("language = de", &city_db()).unwrap();
        assert_eq!(geo.locate("198.51.100.1"), place("DE", "Berlin", "Berlin"));
        assert_eq!(geo.locate("192.0.2.10"), place("US", "Kalifornien", ""));
    }

    #[test]
    fn ip_location_db_layout_gives_the_country() {
        let mut geo = Geo::new("", &fixture::country()).unwrap();
        assert_eq!(geo.locate("203.0.113.7"), place("JP", "", ""));
        assert_eq!(geo.locate("192.0.2.1"), place("US", "", ""));
        assert_eq!(geo.locate("198.51.100.1"), place("", "", ""));
    }

    #[test]
    fn unknown_and_malformed_addresses_are_kept_unchanged() {
        let mut geo = Geo::new("", &city_db()).unwrap();
        for ip in ["10.0.0.1", "", "not an ip", "999.1.1.1", "::1"] {
            assert_eq!(geo.locate(ip), Place::default(), "{ip}");
            let event = Event {
                client_ip: ip.into(),
                ..Event::default()
            };
            assert!(matches!(geo.process(event), Outcome::Keep), "{ip}");
        }
    }

    #[test]
    fn process_writes_the_place() {
        let mut geo = Geo::new("cache_entries = 1", &city_db()).unwrap();
        for _ in 0..3 {
            for ip in ["192.0.2.10", "198.51.100.1"] {
                let event = Event {
                    client_ip: ip.into(),
                    ..Event::default()
                };
                let Outcome::Modify(out) = geo.process(event) else {
                    panic!("{ip} is in the database");
                };
                assert_eq!(
                    (out.country.as_str(), out.city.is_empty()),
                    (if ip.starts_with("192") { "US" } else { "DE" }, false)
                );
            }
        }
        assert!(geo.cache.len() <= 1);
    }

    #[test]
    fn a_missing_or_bad_database_refuses_the_plugin() {
        let err = Geo::new("", &[]).err().unwrap();
        assert!(err.contains("needs a MaxMind DB"), "{err}");
        let err = Geo::new("", b"certainly not a database").err().unwrap();
        assert!(err.contains("not a MaxMind DB"), "{err}");
        let err = Geo::new("lang = en", &city_db()).err().unwrap();
        assert!(err.contains("unknown key `lang`"), "{err}");
    }

    /// The committed fixtures are what this crate's writer makes: change
    /// the networks in `fixture.rs`, then rerun with `UPDATE_FIXTURES=1`.
    #[test]
    fn committed_fixtures_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        for (file, bytes) in [
            ("geo-city-fixture.mmdb", fixture::city()),
            ("geo-country-fixture.mmdb", fixture::country()),
        ] {
            let path = dir.join(file);
            if std::env::var_os("UPDATE_FIXTURES").is_some() {
                std::fs::write(&path, &bytes).unwrap();
            }
            let committed = std::fs::read(&path).unwrap();
            assert!(
                committed == bytes,
                "{file} is stale: run `UPDATE_FIXTURES=1 cargo test -p geo` in plugins/"
            );
        }
    }
}
