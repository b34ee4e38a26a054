//! Tests against real temporary directories: recovery from damaged files,
//! limits and policies, and the model test. Helpers shared by all three.

mod limits;
mod model;
mod recovery;

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{Appended, Config, DiskBuffer, Durability, FullPolicy, Record, RecordId, format};

/// Small limits so that a handful of records spans several segments.
fn small_config(durability: Durability) -> Config {
    Config {
        max_segment_bytes: 100,
        max_total_bytes: 1_000,
        max_record_bytes: 40,
        full_policy: FullPolicy::Block,
        durability,
    }
}

/// A payload that differs for every `seq`, so a record delivered in the
/// wrong place or twice is noticed.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq.wrapping_mul(131).wrapping_add(i as u64 * 7) % 251) as u8)
        .collect()
}

fn open(dir: &Path, config: &Config) -> (DiskBuffer, crate::RecoveryReport) {
    DiskBuffer::open(dir, config.clone()).expect("open disk buffer")
}

/// Appends `payload(seq, len)` for each `(seq, len)` and returns the ids.
fn append_all(buffer: &mut DiskBuffer, records: &[(u64, usize)]) -> Vec<RecordId> {
    records
        .iter()
        .map(|&(seq, len)| match buffer.append(&payload(seq, len)) {
            Ok(Appended::Stored(id)) => id,
            other => panic!("append of record {seq}: {other:?}"),
        })
        .collect()
}

/// Every unacked record, oldest first, following the cursor.
fn drain(buffer: &mut DiskBuffer) -> Vec<Record> {
    let mut out = Vec::new();
    let mut cursor = RecordId::new(0);
    while let Some(record) = buffer.read_from(cursor).expect("read") {
        cursor = record.id.next();
        out.push(record);
    }
    out
}

fn ids(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.id.get()).collect()
}

/// Segment files in `dir`, oldest first.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(format::parse_segment_file_name)
                .is_some()
        })
        .collect();
    files.sort();
    files
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").len()
}

/// Size of every segment file in `dir`: what `Stats::bytes` must equal.
fn bytes_on_disk(dir: &Path) -> u64 {
    segment_files(dir).iter().map(|p| file_len(p)).sum()
}
