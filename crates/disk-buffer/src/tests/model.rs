//! The model test, after Vector's `disk_v2/tests/model`: random sequences of
//! appends, reads, acks, syncs, crashes and reopens run against the real
//! buffer in a temporary directory and against an in-memory model. After
//! every step the records delivered, the stats, the recovery reports and the
//! bytes actually on disk must match the model.
//!
//! A crash drops the buffer without syncing, then cuts the newest segment to
//! a random length between what was last fsynced and what was written: the
//! page cache a real crash may lose. With `Durability::Sync` nothing is
//! unsynced, so every appended record must survive.

use std::{fs::OpenOptions, path::Path, time::Duration};

use proptest::prelude::*;

use super::{bytes_on_disk, file_len, payload, segment_files};
use crate::{
    AppendError, Appended, Config, DiskBuffer, Durability, FullPolicy, RecordId, RecoveryReport,
    Stats,
    format::{HEADER_LEN, segment_file_name},
};

const MAX_RECORD: u32 = 48;
const MAX_SEGMENT: u64 = 160;
const MAX_TOTAL: u64 = 480;

#[derive(Debug, Clone)]
enum Action {
    Append(usize),
    /// Read the next record after the cursor.
    Read,
    /// Move the cursor back to the start, as the shipper does on reconnect.
    Rewind,
    AckOldest,
    /// Ack the n-th unacked record (modulo their count): out of order.
    AckAny(usize),
    Sync,
    /// Drop without sync; the seed picks how much unsynced data survives.
    Crash(u64),
    /// `close` and open again.
    Reopen,
}

fn arb_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (1..=MAX_RECORD as usize).prop_map(Action::Append),
        5 => Just(Action::Read),
        1 => Just(Action::Rewind),
        3 => Just(Action::AckOldest),
        2 => any::<usize>().prop_map(Action::AckAny),
        1 => Just(Action::Sync),
        1 => any::<u64>().prop_map(Action::Crash),
        1 => Just(Action::Reopen),
    ]
}

#[derive(Debug)]
struct ModelRecord {
    id: u64,
    offset: u64,
    data: Vec<u8>,
    acked: bool,
}

impl ModelRecord {
    fn end(&self) -> u64 {
        self.offset + HEADER_LEN + self.data.len() as u64
    }
}

#[derive(Debug)]
struct ModelSegment {
    first_id: u64,
    records: Vec<ModelRecord>,
    len: u64,
    synced_len: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Stored(u64),
    Dropped,
    Full,
}

/// The buffer as a list of segments of records, with none of the IO.
#[derive(Debug)]
struct Model {
    sync_every_append: bool,
    drop_newest: bool,
    segments: Vec<ModelSegment>,
    /// The last segment is the one the writer appends to.
    writing: bool,
    next_id: u64,
    /// `acked_below` of the checkpoint on disk.
    persisted: u64,
    dropped_records: u64,
    dropped_bytes: u64,
    full_rejections: u64,
}

impl Model {
    fn new(sync_every_append: bool, drop_newest: bool) -> Self {
        Self {
            sync_every_append,
            drop_newest,
            segments: Vec::new(),
            writing: false,
            next_id: 0,
            persisted: 0,
            dropped_records: 0,
            dropped_bytes: 0,
            full_rejections: 0,
        }
    }

    fn records(&self) -> impl Iterator<Item = &ModelRecord> {
        self.segments.iter().flat_map(|s| &s.records)
    }

    fn unacked(&self) -> Vec<u64> {
        self.records().filter(|r| !r.acked).map(|r| r.id).collect()
    }

    fn watermark(&self) -> u64 {
        self.records()
            .find(|r| !r.acked)
            .map_or(self.next_id, |r| r.id)
    }

    fn stats(&self) -> Stats {
        Stats {
            records: self.unacked().len() as u64,
            bytes: self.segments.iter().map(|s| s.len).sum(),
            segments: self.segments.len() as u64,
            dropped_records: self.dropped_records,
            dropped_bytes: self.dropped_bytes,
            full_rejections: self.full_rejections,
            corrupt_records: 0,
        }
    }

    fn append(&mut self, data: Vec<u8>) -> Outcome {
        let needed = HEADER_LEN + data.len() as u64;
        if self.stats().bytes + needed > MAX_TOTAL {
            if self.drop_newest {
                self.dropped_records += 1;
                self.dropped_bytes += data.len() as u64;
                return Outcome::Dropped;
            }
            self.full_rejections += 1;
            return Outcome::Full;
        }
        if self.writing
            && let Some(last) = self.segments.last_mut()
            && last.len + needed > MAX_SEGMENT
        {
            last.synced_len = last.len; // sealed segments are fsynced
            self.writing = false;
        }
        if !self.writing {
            self.segments.push(ModelSegment {
                first_id: self.next_id,
                records: Vec::new(),
                len: 0,
                synced_len: 0,
            });
            self.writing = true;
        }
        let id = self.next_id;
        let last = self.segments.last_mut().expect("pushed above");
        last.records.push(ModelRecord {
            id,
            offset: last.len,
            data,
            acked: false,
        });
        last.len += needed;
        self.next_id += 1;
        if self.sync_every_append {
            self.sync();
        }
        Outcome::Stored(id)
    }

    fn read_from(&self, cursor: u64) -> Option<(u64, Vec<u8>)> {
        self.records()
            .find(|r| r.id >= cursor && !r.acked)
            .map(|r| (r.id, r.data.clone()))
    }

    fn ack(&mut self, id: u64) {
        for record in self.segments.iter_mut().flat_map(|s| &mut s.records) {
            if record.id == id {
                record.acked = true;
            }
        }
        self.reclaim();
        if self.sync_every_append {
            self.persist();
        }
    }

    fn persist(&mut self) {
        self.persisted = self.persisted.max(self.watermark());
    }

    /// Deletes the leading segments whose ids all lie below the watermark,
    /// checkpointing first.
    fn reclaim(&mut self) {
        let watermark = self.watermark();
        let ends: Vec<u64> = self
            .segments
            .iter()
            .skip(1)
            .map(|s| s.first_id)
            .chain([self.next_id])
            .collect();
        let n = ends.iter().take_while(|&&end| end <= watermark).count();
        if n == 0 {
            return;
        }
        self.persist();
        if n == self.segments.len() {
            self.writing = false;
        }
        self.segments.drain(..n);
    }

    fn sync(&mut self) {
        if self.writing
            && let Some(last) = self.segments.last_mut()
        {
            last.synced_len = last.len;
        }
        self.persist();
    }

    /// Open after the newest segment was cut to `cut` bytes (if given): the
    /// report recovery must produce, and the state after it.
    fn recover(&mut self, cut: Option<u64>) -> RecoveryReport {
        let mut report = RecoveryReport::default();
        if let (Some(cut), Some(last)) = (cut, self.segments.last_mut()) {
            last.records.retain(|r| r.end() <= cut);
            let end = last.records.last().map_or(0, ModelRecord::end);
            report.truncated_tail_bytes = cut - end;
            report.truncated_tails = u64::from(cut > end);
            last.len = end;
        }
        self.writing = false;
        self.dropped_records = 0;
        self.dropped_bytes = 0;
        self.full_rejections = 0;
        let acked_below = self.persisted;
        report.acked_below = RecordId::new(acked_below);
        let mut scanned_end = 0;
        self.segments.retain_mut(|segment| {
            scanned_end = segment.first_id + segment.records.len() as u64;
            segment.synced_len = segment.len;
            for record in &mut segment.records {
                // Acks beyond the checkpoint were only in memory.
                record.acked = record.id < acked_below;
            }
            let acked = segment.records.iter().filter(|r| r.acked).count() as u64;
            let live = segment.records.len() as u64 - acked;
            report.acked_records += acked;
            if live == 0 {
                report.reclaimed_segments += 1;
                return false;
            }
            report.segments += 1;
            report.records += live;
            report.record_bytes += segment
                .records
                .iter()
                .filter(|r| !r.acked)
                .map(|r| r.data.len() as u64)
                .sum::<u64>();
            true
        });
        self.next_id = acked_below.max(scanned_end);
        report
    }
}

fn config(sync: bool, drop_newest: bool) -> Config {
    Config {
        max_segment_bytes: MAX_SEGMENT,
        max_total_bytes: MAX_TOTAL,
        max_record_bytes: MAX_RECORD,
        full_policy: if drop_newest {
            FullPolicy::DropNewest
        } else {
            FullPolicy::Block
        },
        durability: if sync {
            Durability::Sync
        } else {
            // Never due during a test: only explicit syncs, seals and
            // reclaims make anything durable, which the model can follow.
            Durability::Interval(Duration::from_secs(3600))
        },
    }
}

fn check(real: &DiskBuffer, model: &Model, dir: &Path) -> Result<(), TestCaseError> {
    let stats = real.stats();
    prop_assert_eq!(stats, model.stats());
    prop_assert_eq!(
        bytes_on_disk(dir),
        stats.bytes,
        "Stats::bytes is what is on disk"
    );
    prop_assert_eq!(segment_files(dir).len() as u64, stats.segments);
    prop_assert!(stats.bytes <= MAX_TOTAL);
    prop_assert_eq!(
        real.first_unacked().map(RecordId::get),
        model.unacked().first().copied()
    );
    Ok(())
}

fn run(sync: bool, drop_newest: bool, actions: Vec<Action>) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = config(sync, drop_newest);
    let (mut real, report) = DiskBuffer::open(dir, config.clone()).unwrap();
    prop_assert_eq!(report, RecoveryReport::default());
    let mut model = Model::new(sync, drop_newest);
    let mut cursor = 0u64;
    let mut seq = 0u64;

    for action in actions {
        match action {
            Action::Append(len) => {
                let data = payload(seq, len);
                seq += 1;
                let expected = model.append(data.clone());
                let got = match real.append(&data) {
                    Ok(Appended::Stored(id)) => Outcome::Stored(id.get()),
                    Ok(Appended::Dropped) => Outcome::Dropped,
                    Err(AppendError::Full { .. }) => Outcome::Full,
                    Err(e) => return Err(TestCaseError::fail(format!("append: {e}"))),
                };
                prop_assert_eq!(got, expected);
            }
            Action::Read => {
                let got = real
                    .read_from(RecordId::new(cursor))
                    .unwrap()
                    .map(|r| (r.id.get(), r.data));
                prop_assert_eq!(&got, &model.read_from(cursor));
                if let Some((id, _)) = got {
                    cursor = id + 1;
                }
            }
            Action::Rewind => cursor = 0,
            Action::AckOldest | Action::AckAny(_) => {
                let unacked = model.unacked();
                let pick = match action {
                    Action::AckAny(n) if !unacked.is_empty() => n % unacked.len(),
                    _ => 0,
                };
                if let Some(&id) = unacked.get(pick) {
                    model.ack(id);
                    real.ack(RecordId::new(id)).unwrap();
                }
            }
            Action::Sync => {
                model.sync();
                real.sync().unwrap();
            }
            Action::Crash(seed) => {
                let survivors_expected =
                    model.records().filter(|r| r.id >= model.persisted).count();
                let cut = match model.segments.last() {
                    Some(last) if model.writing => {
                        let path = dir.join(segment_file_name(last.first_id));
                        prop_assert_eq!(file_len(&path), last.len);
                        let unsynced = last.len - last.synced_len;
                        Some((path, last.synced_len + seed % (unsynced + 1)))
                    }
                    _ => None,
                };
                drop(real);
                if let Some((path, len)) = &cut {
                    let file = OpenOptions::new().write(true).open(path).unwrap();
                    file.set_len(*len).unwrap();
                }
                let expected = model.recover(cut.map(|(_, len)| len));
                let report;
                (real, report) = DiskBuffer::open(dir, config.clone()).unwrap();
                if sync {
                    prop_assert_eq!(
                        report.records as usize,
                        survivors_expected,
                        "Sync loses nothing"
                    );
                }
                prop_assert_eq!(report, expected);
                cursor = 0;
            }
            Action::Reopen => {
                real.close().unwrap();
                model.sync();
                let expected = model.recover(None);
                let report;
                (real, report) = DiskBuffer::open(dir, config.clone()).unwrap();
                prop_assert_eq!(report, expected);
                cursor = 0;
            }
        }
        check(&real, &model, dir)?;
    }

    // Everything unacked is still delivered, in order, exactly once.
    let mut delivered = Vec::new();
    let mut cursor = RecordId::new(0);
    while let Some(record) = real.read_from(cursor).unwrap() {
        cursor = record.id.next();
        delivered.push((record.id.get(), record.data));
    }
    let expected: Vec<(u64, Vec<u8>)> = model
        .records()
        .filter(|r| !r.acked)
        .map(|r| (r.id, r.data.clone()))
        .collect();
    prop_assert_eq!(delivered, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn buffer_matches_model(
        sync in any::<bool>(),
        drop_newest in any::<bool>(),
        actions in proptest::collection::vec(arb_action(), 1..150),
    ) {
        run(sync, drop_newest, actions)?;
    }
}
