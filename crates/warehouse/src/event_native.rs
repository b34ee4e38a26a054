//! [`EventRow`]s as one block of ClickHouse's `Native` format: the
//! columnar layout the server reads straight into its columns (no per-row
//! parsing, unlike `RowBinary`), and what `clickhouse-client` sends.
//!
//! Pure: no IO. A block is encoded off the insert's critical path (the
//! loader does it while the previous set is being inserted) and the
//! insert only streams bytes. The columns are [`EventRow`]'s fields, in
//! order, with the types of `warehouse-schema`'s `0001_events.sql`
//! (checked against the row's column names here, and against the real
//! table by the insert tests).
//!
//! Layout (HTTP, no block info): varint columns, varint rows; then per
//! column its name and type (varint length + bytes) and its values:
//! fixed-width numbers little-endian, `String` as varint length + bytes,
//! `Array(String)` as the cumulative `UInt64` end offsets of each row and
//! then every element.

use bytes::{BufMut, Bytes, BytesMut};

use crate::event_row::EventRow;

/// `(column, ClickHouse type)` of each [`EventRow`] field, in field order.
pub(crate) const COLUMNS: [(&str, &str); 32] = [
    ("ts", "DateTime"),
    ("received_at", "DateTime"),
    ("site_id", "String"),
    ("name", "String"),
    ("visitor_id", "UInt64"),
    ("session_id", "UInt64"),
    ("hostname", "String"),
    ("pathname", "String"),
    ("referrer", "String"),
    ("referrer_source", "String"),
    ("channel", "String"),
    ("utm_source", "String"),
    ("utm_medium", "String"),
    ("utm_campaign", "String"),
    ("utm_content", "String"),
    ("utm_term", "String"),
    ("country", "String"),
    ("region", "String"),
    ("city", "String"),
    ("device", "String"),
    ("browser", "String"),
    ("browser_version", "String"),
    ("os", "String"),
    ("os_version", "String"),
    ("props.key", "Array(String)"),
    ("props.value", "Array(String)"),
    ("revenue_micros", "Int64"),
    ("revenue_currency", "String"),
    ("interactive", "UInt8"),
    ("hit_index", "UInt32"),
    ("batch_id", "String"),
    ("plugin_set", "String"),
];

/// One `Native` block of events, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeBlock {
    rows: usize,
    bytes: Bytes,
}

impl NativeBlock {
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// `rows` as one block (empty input: an empty block, which is never sent).
    pub(crate) fn encode(rows: &[EventRow<'_>]) -> NativeBlock {
        // About what a row takes; the buffer grows if it is more.
        let mut out = BytesMut::with_capacity(rows.len() * 256 + 1024);
        varint(&mut out, COLUMNS.len() as u64);
        varint(&mut out, rows.len() as u64);
        let mut columns = COLUMNS.iter();
        let mut header = |out: &mut BytesMut| {
            let (name, ty) = columns.next().expect("one header per column");
            for s in [name, ty] {
                varint(out, s.len() as u64);
                out.put_slice(s.as_bytes());
            }
        };
        macro_rules! fixed {
            ($field:ident, $put:ident) => {{
                header(&mut out);
                for r in rows {
                    out.$put(r.$field);
                }
            }};
        }
        macro_rules! string {
            ($field:ident) => {{
                header(&mut out);
                for r in rows {
                    string(&mut out, r.$field);
                }
            }};
        }
        macro_rules! array {
            ($field:ident) => {{
                header(&mut out);
                let mut end = 0u64;
                for r in rows {
                    end += r.$field.len() as u64;
                    out.put_u64_le(end);
                }
                for r in rows {
                    for s in &r.$field {
                        string(&mut out, s);
                    }
                }
            }};
        }
        fixed!(ts, put_u32_le);
        fixed!(received_at, put_u32_le);
        string!(site_id);
        string!(name);
        fixed!(visitor_id, put_u64_le);
        fixed!(session_id, put_u64_le);
        string!(hostname);
        string!(pathname);
        string!(referrer);
        string!(referrer_source);
        string!(channel);
        string!(utm_source);
        string!(utm_medium);
        string!(utm_campaign);
        string!(utm_content);
        string!(utm_term);
        string!(country);
        string!(region);
        string!(city);
        string!(device);
        string!(browser);
        string!(browser_version);
        string!(os);
        string!(os_version);
        array!(props_key);
        array!(props_value);
        fixed!(revenue_micros, put_i64_le);
        string!(revenue_currency);
        fixed!(interactive, put_u8);
        fixed!(hit_index, put_u32_le);
        string!(batch_id);
        string!(plugin_set);
        debug_assert!(columns.next().is_none(), "every column written");
        NativeBlock {
            rows: rows.len(),
            bytes: out.freeze(),
        }
    }
}

fn string(out: &mut BytesMut, s: &str) {
    varint(out, s.len() as u64);
    out.put_slice(s.as_bytes());
}

/// LEB128, as ClickHouse's `writeVarUInt`.
fn varint(out: &mut BytesMut, mut n: u64) {
    while n >= 0x80 {
        out.put_u8((n as u8) | 0x80);
        n >>= 7;
    }
    out.put_u8(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::Row;
    use hourglass_model::{Event, Prop};

    #[test]
    fn columns_are_the_rows_fields_in_order() {
        let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, EventRow::COLUMN_NAMES);
    }

    #[test]
    fn varints_are_leb128() {
        for (n, expected) in [
            (0u64, &[0u8][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
        ] {
            let mut out = BytesMut::new();
            varint(&mut out, n);
            assert_eq!(&out[..], expected, "{n}");
        }
    }

    #[test]
    fn a_block_lays_out_columns_with_offsets_for_props() {
        let e = |props: &[(&str, &str)]| Event {
            ts_ms: 1_000,
            received_at_ms: 2_000,
            site_id: "s".into(),
            props: props
                .iter()
                .map(|(k, v)| Prop {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
            hit_index: 7,
            ..Default::default()
        };
        let events = [e(&[("a", "1"), ("b", "2")]), e(&[]), e(&[("c", "3")])];
        let rows: Vec<EventRow> = events
            .iter()
            .map(|ev| EventRow::new(ev, "b1", "p").unwrap())
            .collect();
        let block = NativeBlock::encode(&rows);
        assert_eq!(block.rows(), 3);
        let b = block.bytes();
        assert_eq!(&b[..2], &[32, 3], "32 columns, 3 rows");
        // First column: "ts" DateTime, then three u32 of 1.
        assert_eq!(&b[2..5], b"\x02ts");
        assert_eq!(&b[5..14], b"\x08DateTime");
        assert_eq!(&b[14..26], &[1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]);
        // props.key: end offsets 2, 2, 3 then "a", "b", "c".
        let header = b"\x09props.key\x0dArray(String)";
        let at = b
            .windows(header.len())
            .position(|w| w == header)
            .expect("props.key column")
            + header.len();
        let offsets: Vec<u64> = (0..3)
            .map(|i| u64::from_le_bytes(b[at + 8 * i..at + 8 * i + 8].try_into().unwrap()))
            .collect();
        assert_eq!(offsets, [2, 2, 3]);
        assert_eq!(&b[at + 24..at + 30], b"\x01a\x01b\x01c");
        // Last column: plugin_set "p" three times.
        assert!(b.ends_with(b"\x0aplugin_set\x06String\x01p\x01p\x01p"));
    }
}
