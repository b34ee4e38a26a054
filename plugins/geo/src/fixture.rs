//! A minimal MaxMind DB writer for the test fixtures in `testdata/`: an
//! IPv6 search tree (IPv4 under `::/96`), 24-bit records, a data section
//! of maps, arrays, strings and unsigned integers, and the metadata the
//! format requires. Networks must not overlap. The networks are the
//! documentation ranges (RFC 5737, RFC 3849) with made-up places; the
//! fixtures are this project's own work, under its licence.

use std::collections::BTreeMap;
use std::net::IpAddr;

pub enum Value {
    Str(&'static str),
    Map(Vec<(&'static str, Value)>),
    Array(Vec<Value>),
    U16(u16),
    U32(u32),
    U64(u64),
}

use Value::{Array, Map, Str};

fn names(pairs: &[(&'static str, &'static str)]) -> Value {
    Map(vec![(
        "names",
        Map(pairs.iter().map(|(k, v)| (*k, Str(v))).collect()),
    )])
}

/// GeoIP2-City layout.
pub fn city() -> Vec<u8> {
    let record = |iso: &'static str,
                  region: &[(&'static str, &'static str)],
                  city: &[(&'static str, &'static str)]| {
        let mut fields = vec![("country", Map(vec![("iso_code", Str(iso))]))];
        if !region.is_empty() {
            fields.push(("subdivisions", Array(vec![names(region)])));
        }
        if !city.is_empty() {
            fields.push(("city", names(city)));
        }
        Map(fields)
    };
    write(
        "Hourglass-Geo-City-Fixture",
        &[
            (
                "192.0.2.0/24",
                record(
                    "US",
                    &[("en", "California"), ("de", "Kalifornien")],
                    &[("en", "San Francisco")],
                ),
            ),
            (
                "198.51.100.0/24",
                record(
                    "DE",
                    &[("en", "Berlin"), ("de", "Berlin")],
                    &[("en", "Berlin"), ("de", "Berlin")],
                ),
            ),
            (
                "2001:db8::/32",
                record("FR", &[("en", "Île-de-France")], &[("en", "Paris")]),
            ),
        ],
    )
}

/// ip-location-db country layout.
pub fn country() -> Vec<u8> {
    write(
        "geo-whois-asn-country-fixture",
        &[
            ("192.0.2.0/25", Map(vec![("country_code", Str("US"))])),
            ("203.0.113.0/24", Map(vec![("country_code", Str("JP"))])),
        ],
    )
}

#[derive(Clone, Copy)]
enum Record {
    Empty,
    Node(usize),
    Data(usize),
}

fn bits(network: &str) -> Vec<bool> {
    let (addr, len) = network.split_once('/').expect("a network");
    let len: usize = len.parse().expect("a prefix length");
    let (bytes, len) = match addr.parse::<IpAddr>().expect("an address") {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[12..].copy_from_slice(&v4.octets());
            (b, 96 + len)
        }
        IpAddr::V6(v6) => (v6.octets(), len),
    };
    (0..len)
        .map(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0)
        .collect()
}

fn write(database_type: &'static str, networks: &[(&str, Value)]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
    for (network, value) in networks {
        let offset = data.len();
        encode(value, &mut data);
        let path = bits(network);
        let mut node = 0;
        for (i, &bit) in path.iter().enumerate() {
            let side = usize::from(bit);
            if i + 1 == path.len() {
                nodes[node][side] = Record::Data(offset);
                break;
            }
            node = match nodes[node][side] {
                Record::Node(next) => next,
                Record::Empty => {
                    nodes.push([Record::Empty; 2]);
                    let next = nodes.len() - 1;
                    nodes[node][side] = Record::Node(next);
                    next
                }
                Record::Data(_) => panic!("{network} overlaps another network"),
            };
        }
    }
    let node_count = nodes.len();
    let mut out = Vec::new();
    for node in &nodes {
        for record in node {
            let value = match *record {
                Record::Empty => node_count,
                Record::Node(n) => n,
                Record::Data(offset) => node_count + 16 + offset,
            };
            out.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let metadata: BTreeMap<&str, Value> = BTreeMap::from([
        ("binary_format_major_version", Value::U16(2)),
        ("binary_format_minor_version", Value::U16(0)),
        // Fixed, so the fixture is reproducible byte for byte.
        ("build_epoch", Value::U64(1_767_225_600)),
        ("database_type", Str(database_type)),
        (
            "description",
            Map(vec![(
                "en",
                Str("Hourglass test fixture: documentation networks, made-up places"),
            )]),
        ),
        ("ip_version", Value::U16(6)),
        ("languages", Array(vec![Str("en"), Str("de")])),
        ("node_count", Value::U32(node_count as u32)),
        ("record_size", Value::U16(24)),
    ]);
    encode(&Map(metadata.into_iter().collect()), &mut out);
    out
}

/// Control byte(s) for `kind` (1–15) and `size` (< 285 here).
fn control(kind: u8, size: usize, out: &mut Vec<u8>) {
    let (low, extra) = if size < 29 {
        (size as u8, None)
    } else {
        (29, Some((size - 29) as u8))
    };
    if kind <= 7 {
        out.push(kind << 5 | low);
    } else {
        out.push(low);
        out.push(kind - 7);
    }
    out.extend(extra);
}

fn uint(kind: u8, value: u64, out: &mut Vec<u8>) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(kind, 8 - skip, out);
    out.extend_from_slice(&bytes[skip..]);
}

fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Str(s) => {
            control(2, s.len(), out);
            out.extend_from_slice(s.as_bytes());
        }
        Map(entries) => {
            control(7, entries.len(), out);
            for (key, value) in entries {
                encode(&Str(key), out);
                encode(value, out);
            }
        }
        Array(items) => {
            control(11, items.len(), out);
            for item in items {
                encode(item, out);
            }
        }
        Value::U16(v) => uint(5, u64::from(*v), out),
        Value::U32(v) => uint(6, u64::from(*v), out),
        Value::U64(v) => uint(9, *v, out),
    }
}
