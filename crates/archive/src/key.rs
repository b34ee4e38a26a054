//! Where things live in the archive: [`Hour`]s and [`BatchKey`]s, as plain
//! values with their path forms. No IO.
//!
//! ```text
//! raw/v1/YYYY/MM/DD/HH/<edge>/<batch_id>.hgb          an archived batch file
//! quarantine/YYYY/MM/DD/HH/<edge>/<batch_id>.hgb       a rejected request, as sent
//! quarantine/YYYY/MM/DD/HH/<edge>/<batch_id>.json      why it was rejected
//! ```
//!
//! `raw/` hours are the UTC hour the edge *received* the batch's hits;
//! `quarantine/` hours are the hour central refused it. `<batch_id>` is
//! [`BatchId`]'s `Display` (`<edge>-<seq:020>`), so names sort by sequence.

use std::fmt;
use std::str::FromStr;

use hourglass_model::{Batch, BatchId};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;
/// Prefix of archived batches; `v1` changes only if this layout does.
pub const RAW_PREFIX: &str = "raw/v1";
/// Prefix of rejected requests.
pub const QUARANTINE_PREFIX: &str = "quarantine";
/// File suffix of a batch file.
pub const BATCH_SUFFIX: &str = ".hgb";

/// A UTC hour, counted from the Unix epoch. Only hours of years 1970–9999
/// exist, so every `Hour` has a four-digit path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hour(i64);

/// A time outside the years an archive key can name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time {ms} ms since the epoch is outside 1970-01-01..10000-01-01")]
pub struct OutOfRange {
    pub ms: i64,
}

/// 10000-01-01T00:00:00Z in hours since the epoch.
const END_HOUR: i64 = 70_389_528;

impl Hour {
    /// The hour holding `ms` (milliseconds since the Unix epoch).
    pub fn from_unix_ms(ms: i64) -> Result<Hour, OutOfRange> {
        let hour = ms.div_euclid(HOUR_MS);
        if (0..END_HOUR).contains(&hour) {
            Ok(Hour(hour))
        } else {
            Err(OutOfRange { ms })
        }
    }

    /// Hours since the epoch.
    pub fn index(self) -> i64 {
        self.0
    }

    pub fn start_ms(self) -> i64 {
        self.0 * HOUR_MS
    }

    /// The next hour; saturates at the last one.
    pub fn next(self) -> Hour {
        Hour((self.0 + 1).min(END_HOUR - 1))
    }

    /// `n` hours earlier; saturates at the first one.
    pub fn minus(self, n: i64) -> Hour {
        Hour(self.0.saturating_sub(n).max(0))
    }

    fn civil(self) -> (i32, u8, u8, u8) {
        let at = OffsetDateTime::from_unix_timestamp(self.0 * 3600)
            .expect("an Hour is always within 1970..10000");
        (at.year(), at.month() as u8, at.day(), at.hour())
    }

    fn from_civil(year: i32, month: u8, day: u8, hour: u8) -> Option<Hour> {
        let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
        let at = PrimitiveDateTime::new(date, Time::from_hms(hour, 0, 0).ok()?).assume_utc();
        Hour::from_unix_ms(at.unix_timestamp().checked_mul(1000)?).ok()
    }

    /// `YYYY/MM/DD/HH`, the hour's part of a key.
    pub fn path(self) -> String {
        let (y, m, d, h) = self.civil();
        format!("{y:04}/{m:02}/{d:02}/{h:02}")
    }

    /// The inverse of [`Hour::path`] on its four segments.
    fn from_segments(segments: &[&str]) -> Option<Hour> {
        let [y, m, d, h] = segments else { return None };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !(digits(y, 4) && digits(m, 2) && digits(d, 2) && digits(h, 2)) {
            return None;
        }
        Hour::from_civil(
            y.parse().ok()?,
            m.parse().ok()?,
            d.parse().ok()?,
            h.parse().ok()?,
        )
    }
}

impl fmt::Display for Hour {
    /// `2026-11-25T14`, the form `reprocess --range` and the CLI take.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d, h) = self.civil();
        write!(f, "{y:04}-{m:02}-{d:02}T{h:02}")
    }
}

/// Why a string is not an hour like `2026-11-25T14`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a UTC hour like 2026-11-25T14")]
pub struct InvalidHour(pub String);

impl FromStr for Hour {
    type Err = InvalidHour;

    fn from_str(s: &str) -> Result<Hour, InvalidHour> {
        let bad = || InvalidHour(s.to_string());
        let (date, hour) = s.split_once('T').ok_or_else(bad)?;
        let mut parts: Vec<&str> = date.split('-').collect();
        parts.push(hour);
        Hour::from_segments(&parts).ok_or_else(bad)
    }
}

/// The hour a batch belongs to in the archive: the receive time of its
/// first raw hit. The edge's batcher closes a batch when a hit of a later
/// hour arrives, so every hit of a batch was received in that hour. The
/// header's `created_at` is *not* used: a batch closed by its age timer
/// just after an hour boundary is created in the next hour. A batch with no
/// raw hits (none is ever made, but the format allows it) falls back to
/// `created_at`.
pub fn receive_hour(batch: &Batch) -> Result<Hour, OutOfRange> {
    let ms = match batch.raw_hits.first() {
        Some(hit) => hit.received_at_ms,
        None => batch.header.as_ref().map_or(0, |h| h.created_at_ms),
    };
    Hour::from_unix_ms(ms)
}

/// An archived batch: its hour and id. Its key is [`BatchKey::path`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchKey {
    pub hour: Hour,
    pub batch_id: BatchId,
}

impl BatchKey {
    /// `raw/v1/YYYY/MM/DD/HH/<edge>/<edge>-<seq:020>.hgb`
    pub fn path(&self) -> String {
        format!(
            "{RAW_PREFIX}/{}/{}/{}{BATCH_SUFFIX}",
            self.hour.path(),
            self.batch_id.edge_id,
            self.batch_id
        )
    }

    /// The inverse of [`BatchKey::path`]; `None` for anything else (e.g.
    /// a stray file an operator left in the directory).
    pub fn parse(path: &str) -> Option<BatchKey> {
        let rest = path.strip_prefix(RAW_PREFIX)?.strip_prefix('/')?;
        let segments: Vec<&str> = rest.split('/').collect();
        let [y, m, d, h, edge, file] = segments[..] else {
            return None;
        };
        let hour = Hour::from_segments(&[y, m, d, h])?;
        let seq = file
            .strip_suffix(BATCH_SUFFIX)?
            .strip_prefix(edge)?
            .strip_prefix('-')?;
        if seq.len() != 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(BatchKey {
            hour,
            batch_id: BatchId {
                edge_id: edge.to_string(),
                seq: seq.parse().ok()?,
            },
        })
    }
}

impl fmt::Display for BatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// `raw/v1/YYYY/MM/DD/HH` of `hour`.
pub(crate) fn raw_hour_prefix(hour: Hour) -> String {
    format!("{RAW_PREFIX}/{}", hour.path())
}

/// `quarantine/YYYY/MM/DD/HH/<edge>/<batch_id>` (no suffix).
pub(crate) fn quarantine_stem(hour: Hour, batch_id: &BatchId) -> String {
    format!(
        "{QUARANTINE_PREFIX}/{}/{}/{batch_id}",
        hour.path(),
        batch_id.edge_id
    )
}

/// Parses the hour out of `<prefix>/YYYY/MM/DD/HH[/…]`.
pub(crate) fn hour_of(prefix: &str, path: &str) -> Option<Hour> {
    let rest = path.strip_prefix(prefix)?.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').take(4).collect();
    Hour::from_segments(&segments)
}

/// Where plugin components and data blobs live: content-addressed by the
/// lower-case hex SHA-256 of their bytes.
pub const PLUGIN_BLOB_PREFIX: &str = "plugins/blobs/";

/// Whether `sha256` is 64 lower-case hex digits (a blob name).
pub fn is_sha256_hex(sha256: &str) -> bool {
    sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The archive key of the plugin blob (component or data file) whose
/// SHA-256 is `sha256` (64 lower-case hex digits): `plugins/blobs/<sha256>`.
/// The registry writes blobs there and central's control channel reads
/// them; both go through this function.
pub fn plugin_blob_key(sha256: &str) -> String {
    format!("{PLUGIN_BLOB_PREFIX}{sha256}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hourglass_model::{BatchHeader, RawHit};

    // 2026-11-25T14:30:00Z
    const T: i64 = 1_795_617_000_000;

    #[test]
    fn hour_paths_and_display() {
        let hour = Hour::from_unix_ms(T).unwrap();
        assert_eq!(hour.path(), "2026/11/25/14");
        assert_eq!(hour.to_string(), "2026-11-25T14");
        assert_eq!("2026-11-25T14".parse::<Hour>().unwrap(), hour);
        assert_eq!(hour.start_ms(), T - 30 * 60 * 1000);
        assert_eq!(hour.next().path(), "2026/11/25/15");
        assert_eq!(Hour::from_unix_ms(0).unwrap().path(), "1970/01/01/00");
        assert_eq!(Hour(END_HOUR - 1).path(), "9999/12/31/23");
        assert!(Hour::from_unix_ms(-1).is_err());
        assert!(Hour::from_unix_ms(i64::MAX).is_err());
        for bad in [
            "2026-11-25",
            "2026-13-01T00",
            "2026-02-30T00",
            "2026-11-25T24",
            "26-11-25T14",
        ] {
            assert!(bad.parse::<Hour>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_hour_of_a_leap_year_round_trips() {
        let start = "2028-01-01T00".parse::<Hour>().unwrap();
        for i in 0..(366 * 24) {
            let hour = Hour(start.0 + i);
            assert_eq!(hour.to_string().parse::<Hour>().unwrap(), hour);
            let segments: Vec<&str> = Box::leak(hour.path().into_boxed_str()).split('/').collect();
            assert_eq!(Hour::from_segments(&segments), Some(hour));
        }
    }

    #[test]
    fn batch_keys_round_trip_and_reject_strays() {
        let key = BatchKey {
            hour: Hour::from_unix_ms(T).unwrap(),
            batch_id: BatchId {
                edge_id: "pop-zrh_1".into(),
                seq: 42,
            },
        };
        let path = key.path();
        assert_eq!(
            path,
            "raw/v1/2026/11/25/14/pop-zrh_1/pop-zrh_1-00000000000000000042.hgb"
        );
        assert_eq!(BatchKey::parse(&path), Some(key));
        for stray in [
            "raw/v1/2026/11/25/14/pop/pop-00000000000000000042.hgb#1",
            "raw/v1/2026/11/25/14/pop/other-00000000000000000042.hgb",
            "raw/v1/2026/11/25/14/pop/pop-42.hgb",
            "raw/v1/2026/11/25/pop/pop-00000000000000000042.hgb",
            "raw/v2/2026/11/25/14/pop/pop-00000000000000000042.hgb",
            "quarantine/2026/11/25/14/pop/pop-00000000000000000042.hgb",
        ] {
            assert_eq!(BatchKey::parse(stray), None, "{stray}");
        }
    }

    #[test]
    fn the_first_raw_hit_decides_the_hour() {
        let hit = |ms| RawHit {
            received_at_ms: ms,
            ..RawHit::default()
        };
        let mut batch = Batch {
            header: Some(BatchHeader {
                created_at_ms: T + 3_600_000, // closed by its timer in the next hour
                ..BatchHeader::default()
            }),
            raw_hits: vec![hit(T), hit(T + 1000)],
            ..Batch::default()
        };
        assert_eq!(receive_hour(&batch).unwrap().path(), "2026/11/25/14");
        batch.raw_hits.clear();
        assert_eq!(receive_hour(&batch).unwrap().path(), "2026/11/25/15");
        batch.raw_hits.push(hit(-5));
        assert!(receive_hour(&batch).is_err());
    }
}
