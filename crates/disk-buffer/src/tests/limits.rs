//! Limits, full-buffer policies, acks and cursors.

use super::{append_all, bytes_on_disk, drain, ids, open, payload, small_config};
use crate::{AppendError, Appended, Config, DiskBuffer, Durability, Error, FullPolicy, RecordId};

#[test]
fn invalid_configs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let good = small_config(Durability::Sync);
    let bad = [
        Config {
            max_record_bytes: 0,
            ..good.clone()
        },
        Config {
            max_segment_bytes: u64::from(good.max_record_bytes) + 7,
            ..good.clone()
        },
        Config {
            max_total_bytes: good.max_segment_bytes - 1,
            ..good.clone()
        },
    ];
    for config in bad {
        let result = DiskBuffer::open(tmp.path(), config.clone());
        assert!(
            matches!(result, Err(Error::InvalidConfig(_))),
            "{config:?}: {result:?}"
        );
    }
    DiskBuffer::open(tmp.path(), Config::default()).unwrap();
}

#[test]
fn empty_and_oversized_records_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut buffer, _) = open(tmp.path(), &small_config(Durability::Sync));
    assert!(matches!(buffer.append(b""), Err(AppendError::Empty)));
    assert!(matches!(
        buffer.append(&[1; 41]),
        Err(AppendError::TooLarge { len: 41, max: 40 })
    ));
    assert!(matches!(buffer.append(&[1; 40]), Ok(Appended::Stored(_))));
    assert_eq!(buffer.stats().records, 1);
}

/// 40-byte records: 48 bytes on disk, two per 100-byte segment, twenty in
/// the 1000-byte buffer.
fn fill(buffer: &mut DiskBuffer, dir: &std::path::Path) -> Vec<RecordId> {
    let mut stored = Vec::new();
    for seq in 0..20 {
        match buffer.append(&payload(seq, 40)) {
            Ok(Appended::Stored(id)) => stored.push(id),
            other => panic!("record {seq}: {other:?}"),
        }
        assert!(bytes_on_disk(dir) <= 1_000);
    }
    stored
}

#[test]
fn block_policy_refuses_when_full_until_acks_free_a_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut buffer, _) = open(tmp.path(), &small_config(Durability::Sync));
    let stored = fill(&mut buffer, tmp.path());
    for _ in 0..3 {
        let refused = buffer.append(&payload(99, 40));
        assert!(
            matches!(
                refused,
                Err(AppendError::Full {
                    used: 960,
                    needed: 48,
                    max: 1_000
                })
            ),
            "{refused:?}"
        );
    }
    // A smaller record still fits.
    assert!(matches!(buffer.append(&[1; 10]), Ok(Appended::Stored(_))));
    let stats = buffer.stats();
    assert_eq!((stats.full_rejections, stats.records), (3, 21));
    assert_eq!(stats.bytes, bytes_on_disk(tmp.path()));
    assert!(stats.bytes <= 1_000);

    buffer.ack(stored[0]).unwrap();
    assert!(matches!(
        buffer.append(&payload(99, 40)),
        Err(AppendError::Full { .. })
    ));
    buffer.ack(stored[1]).unwrap(); // the first segment is reclaimed
    assert_eq!(bytes_on_disk(tmp.path()), 960 + 18 - 96);
    assert!(matches!(
        buffer.append(&payload(99, 40)),
        Ok(Appended::Stored(_))
    ));
    assert!(bytes_on_disk(tmp.path()) <= 1_000);
}

#[test]
fn drop_newest_discards_and_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let config = Config {
        full_policy: FullPolicy::DropNewest,
        ..small_config(Durability::Sync)
    };
    let (mut buffer, _) = open(tmp.path(), &config);
    fill(&mut buffer, tmp.path());
    let before = bytes_on_disk(tmp.path());
    for seq in 20..25 {
        assert!(matches!(
            buffer.append(&payload(seq, 40)),
            Ok(Appended::Dropped)
        ));
    }
    assert_eq!(bytes_on_disk(tmp.path()), before);
    let stats = buffer.stats();
    assert_eq!((stats.dropped_records, stats.dropped_bytes), (5, 200));
    assert_eq!((stats.records, stats.full_rejections), (20, 0));
    assert_eq!(ids(&drain(&mut buffer)), (0..20).collect::<Vec<_>>());
}

#[test]
fn out_of_order_acks_reclaim_once_the_watermark_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut buffer, _) = open(tmp.path(), &small_config(Durability::Sync));
    let stored = append_all(&mut buffer, &[(0, 40), (1, 40), (2, 40), (3, 40)]);
    assert_eq!(buffer.stats().segments, 2);
    buffer.ack(stored[3]).unwrap();
    buffer.ack(stored[2]).unwrap();
    let stats = buffer.stats();
    assert_eq!((stats.records, stats.segments, stats.bytes), (2, 2, 192));
    assert_eq!(buffer.first_unacked(), Some(stored[0]));
    buffer.ack(stored[1]).unwrap();
    assert_eq!(buffer.stats().segments, 2, "record 0 still holds both back");
    buffer.ack(stored[0]).unwrap();
    let stats = buffer.stats();
    assert_eq!((stats.records, stats.segments, stats.bytes), (0, 0, 0));
    assert_eq!(bytes_on_disk(tmp.path()), 0);
    assert_eq!(buffer.first_unacked(), None);
    // The writer starts a new segment after its own was reclaimed.
    let [id] = append_all(&mut buffer, &[(4, 40)]).try_into().unwrap();
    assert_eq!(id, RecordId::new(4));
    assert_eq!(buffer.stats().segments, 1);
}

#[test]
fn repeated_acks_are_harmless_and_unknown_ones_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut buffer, _) = open(tmp.path(), &small_config(Durability::Sync));
    let stored = append_all(&mut buffer, &[(0, 10), (1, 10)]);
    buffer.ack(stored[1]).unwrap();
    buffer.ack(stored[1]).unwrap();
    buffer.ack(stored[0]).unwrap();
    buffer.ack(stored[0]).unwrap();
    assert_eq!(buffer.stats().records, 0);
    assert!(matches!(
        buffer.ack(RecordId::new(2)),
        Err(Error::UnknownRecord(id)) if id == RecordId::new(2)
    ));
}

#[test]
fn read_from_follows_the_cursor_and_skips_acked_records() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut buffer, _) = open(tmp.path(), &small_config(Durability::Sync));
    let stored = append_all(&mut buffer, &[(0, 10), (1, 20), (2, 30), (3, 40)]);
    buffer.ack(stored[1]).unwrap();

    let first = buffer.next_unacked().unwrap().unwrap();
    assert_eq!((first.id, first.data), (stored[0], payload(0, 10)));
    let second = buffer.read_from(first.id.next()).unwrap().unwrap();
    assert_eq!((second.id, second.data), (stored[2], payload(2, 30)));
    // Reading removes nothing: the same cursor reads the same record.
    let again = buffer.read_from(first.id.next()).unwrap().unwrap();
    assert_eq!(again.id, stored[2]);
    assert!(buffer.read_from(stored[3].next()).unwrap().is_none());
    assert_eq!(buffer.stats().records, 3);
}
