//! How a model [`Event`] is laid out as a row of the `events` table.
//!
//! Pure: no IO. The field names are the column names (the insert names its
//! columns, so field order does not matter); the types are the RowBinary
//! encodings of the column types in `warehouse-schema`'s `0001_events.sql`.

use hourglass_model::Event;
use serde::Serialize;

/// One `events` row borrowing from an [`Event`] and its batch.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize)]
pub(crate) struct EventRow<'a> {
    /// `DateTime`: whole seconds since the Unix epoch, UTC.
    pub ts: u32,
    pub received_at: u32,
    pub site_id: &'a str,
    pub name: &'a str,
    pub visitor_id: u64,
    pub session_id: u64,
    pub hostname: &'a str,
    pub pathname: &'a str,
    pub referrer: &'a str,
    pub referrer_source: &'a str,
    pub channel: &'a str,
    pub utm_source: &'a str,
    pub utm_medium: &'a str,
    pub utm_campaign: &'a str,
    pub utm_content: &'a str,
    pub utm_term: &'a str,
    pub country: &'a str,
    pub region: &'a str,
    pub city: &'a str,
    pub device: &'a str,
    pub browser: &'a str,
    pub browser_version: &'a str,
    pub os: &'a str,
    pub os_version: &'a str,
    /// `props Nested(key String, value String)`: two arrays of equal length.
    #[serde(rename = "props.key")]
    pub props_key: Vec<&'a str>,
    #[serde(rename = "props.value")]
    pub props_value: Vec<&'a str>,
    pub revenue_micros: i64,
    pub revenue_currency: &'a str,
    pub interactive: u8,
    pub hit_index: u32,
    pub batch_id: &'a str,
    pub plugin_set: &'a str,
}

/// A timestamp field of an event that `DateTime` cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutOfRange {
    pub field: &'static str,
    pub value_ms: i64,
}

/// Latest accepted event time, 2099-12-31T23:59:59Z. `DateTime` holds up to
/// 2106, but ClickHouse 18.16's date tables stop earlier: there
/// `toDate(toDateTime(4294967294))` is `0000-00-00`, which would put such an
/// event in a nonsense partition.
pub const MAX_TIMESTAMP_S: u32 = 4_102_444_799;

/// Milliseconds since the epoch to `DateTime` seconds (rounding down), or
/// `None` when outside 1970-01-01T00:00:00Z ..= [`MAX_TIMESTAMP_S`].
///
/// Out-of-range times are refused rather than clamped: a clamped time would
/// silently land the event in a 1970 or 2099 partition.
pub fn unix_seconds(ms: i64) -> Option<u32> {
    if ms < 0 {
        return None;
    }
    u32::try_from(ms / 1000)
        .ok()
        .filter(|s| *s <= MAX_TIMESTAMP_S)
}

impl<'a> EventRow<'a> {
    /// The row for `event`, loaded as part of `batch_id` with `plugin_set`.
    pub(crate) fn new(
        event: &'a Event,
        batch_id: &'a str,
        plugin_set: &'a str,
    ) -> Result<Self, OutOfRange> {
        let seconds =
            |field, value_ms| unix_seconds(value_ms).ok_or(OutOfRange { field, value_ms });
        Ok(EventRow {
            ts: seconds("ts_ms", event.ts_ms)?,
            received_at: seconds("received_at_ms", event.received_at_ms)?,
            site_id: &event.site_id,
            name: &event.name,
            visitor_id: event.visitor_id,
            session_id: event.session_id,
            hostname: &event.hostname,
            pathname: &event.pathname,
            referrer: &event.referrer,
            referrer_source: &event.referrer_source,
            channel: &event.channel,
            utm_source: &event.utm_source,
            utm_medium: &event.utm_medium,
            utm_campaign: &event.utm_campaign,
            utm_content: &event.utm_content,
            utm_term: &event.utm_term,
            country: &event.country,
            region: &event.region,
            city: &event.city,
            device: &event.device,
            browser: &event.browser,
            browser_version: &event.browser_version,
            os: &event.os,
            os_version: &event.os_version,
            props_key: event.props.iter().map(|p| p.key.as_str()).collect(),
            props_value: event.props.iter().map(|p| p.value.as_str()).collect(),
            revenue_micros: event.revenue_micros,
            revenue_currency: &event.revenue_currency,
            interactive: u8::from(event.interactive),
            hit_index: event.hit_index,
            batch_id,
            plugin_set,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hourglass_model::Prop;

    #[test]
    fn seconds_round_down_and_stay_in_range() {
        assert_eq!(unix_seconds(0), Some(0));
        assert_eq!(unix_seconds(999), Some(0));
        assert_eq!(unix_seconds(1_764_000_000_123), Some(1_764_000_000));
        assert_eq!(unix_seconds(4_102_444_799_999), Some(MAX_TIMESTAMP_S));
        assert_eq!(unix_seconds(4_102_444_800_000), None);
        assert_eq!(unix_seconds(i64::from(u32::MAX) * 1000), None);
        assert_eq!(unix_seconds(-1), None);
        assert_eq!(unix_seconds(i64::MIN), None);
        assert_eq!(unix_seconds(i64::MAX), None);
    }

    #[test]
    fn maps_every_field() {
        let event = Event {
            ts_ms: 1_764_000_000_500,
            received_at_ms: 1_764_000_001_000,
            site_id: "s1".into(),
            name: "signup".into(),
            visitor_id: 7,
            session_id: 8,
            props: vec![
                Prop {
                    key: "plan".into(),
                    value: "pro".into(),
                },
                Prop {
                    key: "seats".into(),
                    value: "3".into(),
                },
            ],
            revenue_micros: -5,
            interactive: true,
            hit_index: 42,
            city: "Lyon".into(),
            ..Default::default()
        };
        let row = EventRow::new(&event, "edge-1-00000000000000000001", "ps1").unwrap();
        assert_eq!((row.ts, row.received_at), (1_764_000_000, 1_764_000_001));
        assert_eq!(row.props_key, ["plan", "seats"]);
        assert_eq!(row.props_value, ["pro", "3"]);
        assert_eq!(
            (row.interactive, row.hit_index, row.revenue_micros),
            (1, 42, -5)
        );
        assert_eq!(
            (row.city, row.batch_id, row.plugin_set),
            ("Lyon", "edge-1-00000000000000000001", "ps1")
        );
    }

    #[test]
    fn refuses_out_of_range_times() {
        let event = Event {
            ts_ms: -1,
            ..Default::default()
        };
        assert_eq!(
            EventRow::new(&event, "b", "p"),
            Err(OutOfRange {
                field: "ts_ms",
                value_ms: -1
            })
        );
        let event = Event {
            ts_ms: 0,
            received_at_ms: i64::MAX,
            ..Default::default()
        };
        assert_eq!(
            EventRow::new(&event, "b", "p").unwrap_err().field,
            "received_at_ms"
        );
    }
}
