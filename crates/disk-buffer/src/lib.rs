//! # Edge disk buffer
//!
//! The edge agent accepts tracking hits, groups them into encoded batches and
//! must not lose a batch it has answered `202` for, even if the central tier is
//! unreachable for hours or the process is killed. This crate is the queue that
//! sits between the two: an append-only log of opaque byte records in a
//! directory, read oldest first, and deleted only after the central tier has
//! acknowledged them. It owns the files in its directory and nothing else: it
//! does not encode batches, talk to the network, or spawn threads. Its IO is
//! plain synchronous `std`; the edge calls it from `spawn_blocking`.
//!
//! ## Design constraints
//!
//! These invariants keep the design small enough to reason about after a
//! crash:
//! - Records live in *segment files* of at most [`Config::max_segment_bytes`];
//!   all segments together never exceed [`Config::max_total_bytes`] on disk.
//! - Every record is `len: u32 LE | crc: u32 LE | bytes`, where `crc` is the
//!   CRC32C of the four length bytes followed by the payload. Covering the
//!   length means a zero-filled region (what some filesystems show after a
//!   crash) never verifies as a record.
//! - Records are non-empty and at most [`Config::max_record_bytes`] long, and
//!   never span two segments.
//! - The writer appends only to the newest segment; the reader reads from the
//!   oldest. A segment is deleted only when every record in it is acked.
//! - Record ids are consecutive `u64`s; a segment is named after the id of its
//!   first record, and the `n`-th record in it (counting corrupt ones) has id
//!   `first + n`. Ids are never stored per record.
//! - Delivery is at-least-once: anything not covered by the persisted ack
//!   checkpoint is delivered again after a restart. The central tier
//!   deduplicates by batch id, so a repeat is harmless; a loss is not.
//!
//! ## On-disk layout
//!
//! ```text
//! <dir>/
//!   00000000000000000000.seg   records with ids 0, 1, 2, ... (oldest)
//!   00000000000000000193.seg   first record id 193
//!   00000000000000000388.seg   newest: the writer appends here
//!   ack.checkpoint             acked_below (see below), replaced crash-safely
//!   lock                       advisory lock: one process per directory
//! ```
//!
//! The checkpoint is 20 bytes: magic `HGAK`, a version byte, three zero bytes,
//! `acked_below: u64 LE` and a CRC32C of the preceding 16 bytes. It says "every
//! record with an id below `acked_below` is acked". It is replaced the way
//! Neon's `crashsafe::overwrite` does it: write `ack.checkpoint.tmp`, fsync it,
//! rename it over `ack.checkpoint`, fsync the directory. A reader of the
//! directory therefore sees either the old or the new checkpoint, never a mix.
//!
//! ## Writing
//!
//! [`DiskBuffer::append`] checks the record against the limits, then writes
//! header and payload from one buffer to the newest segment. If the
//! record would push the segment past `max_segment_bytes`, that segment is
//! fsynced and closed first and a new one named after the next id is created
//! (and the directory fsynced, so the new name survives a crash). If the record
//! would push the buffer past `max_total_bytes`, nothing is written: under
//! [`FullPolicy::Block`] the caller gets [`AppendError::Full`] (the edge answers
//! `503` with `Retry-After`), under [`FullPolicy::DropNewest`] the record is
//! discarded and counted in [`Stats::dropped_records`].
//!
//! With [`Durability::Sync`] every append is followed by `fdatasync`, so a
//! record whose append returned is on disk; with [`Durability::Interval`] the
//! buffer syncs when an append or ack finds the interval elapsed, and when the
//! caller calls [`DiskBuffer::sync`] (the edge does so on a timer, so a quiet
//! buffer is flushed too). A failed write is rolled back by truncating the
//! segment to its previous length; if even that fails the writer refuses
//! further appends until the buffer is reopened, which runs recovery.
//!
//! ## Reading
//!
//! An in-memory index, rebuilt at open, lists every live record (id, segment,
//! offset, length) in id order. Reading does not remove anything:
//! [`DiskBuffer::read_from`] returns the first unacked record whose id is at
//! least the caller's cursor, so the shipper keeps a cursor for what it has
//! sent and can start over from [`DiskBuffer::first_unacked`] after a
//! reconnect. Every read checks the CRC again; a record that rotted since
//! recovery is skipped, treated as acked and counted in
//! [`Stats::corrupt_records`].
//!
//! ## Acking and deleting
//!
//! [`DiskBuffer::ack`] marks one id; acks may arrive out of order. The *acked
//! watermark* is the id of the oldest unacked record (or the next id to be
//! assigned when nothing is unacked). A segment is reclaimed as soon as all of
//! its ids are below the watermark: the checkpoint is first persisted with the
//! new watermark, then the file is deleted, so a crash between the two leaves
//! a segment that recovery recognises as fully acked and deletes. Whole
//! segments are deleted, never trimmed, so disk usage drops in segment-sized
//! steps. The newest segment is reclaimed too once fully acked; the next
//! append starts a fresh one.
//!
//! The watermark is persisted on every advance with [`Durability::Sync`], and
//! otherwise on [`DiskBuffer::sync`], when the interval elapses, and before
//! any segment is deleted. Acks beyond a gap (out-of-order acks) are kept only
//! in memory: after a restart those records are delivered again.
//!
//! ## Recovery
//!
//! [`DiskBuffer::open`] takes the directory lock, loads the checkpoint (a
//! missing one means nothing is acked; a corrupt one is reported and treated
//! as missing, which re-delivers rather than loses), then scans every segment
//! oldest first, record by record:
//! - a record whose CRC matches is live, unless its id is below the
//!   checkpoint;
//! - a record whose length is plausible (`1..=max_record_bytes` and inside the
//!   file) but whose CRC does not match is skipped and counted in
//!   [`RecoveryReport::corrupt_records`]; scanning continues after it;
//! - a header with a plausible length that runs past the end of the file, or
//!   fewer than 8 bytes left, is a torn write: the tail is dropped, counted in
//!   [`RecoveryReport::truncated_tail_bytes`], and the file truncated to the
//!   last whole record;
//! - a header with an implausible length means the rest of the segment cannot
//!   be framed: it is abandoned, counted in [`RecoveryReport::abandoned_bytes`],
//!   and the file truncated there.
//!
//! Segments left with no live record are deleted. The writer never appends to
//! a segment that existed before open: the first append after open creates a
//! new segment whose first id is above every id seen on disk and in the
//! checkpoint, so an id acked before a crash is never reused for a new record.
//! No content of the directory makes recovery panic; IO errors are returned.
//!
//! ## What is not here
//!
//! No background thread or timer (the caller drives [`DiskBuffer::sync`]), no
//! async, no batch encoding, no metrics registry ([`Stats`] and
//! [`RecoveryReport`] carry the numbers for the caller to export). Tests run
//! against real temporary directories rather than a `Filesystem` trait: the
//! recovery tests damage real files, and crashes are simulated by cutting the
//! newest segment back to its last fsynced length, which is all a `Filesystem`
//! double would add here.
//!
//! ## Example
//!
//! ```
//! use hourglass_disk_buffer::{Appended, Config, DiskBuffer, RecordId};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! # let dir = tmp.path();
//! let (mut buffer, report) = DiskBuffer::open(dir, Config::default())?;
//! assert_eq!(report.records, 0);
//!
//! let Appended::Stored(id) = buffer.append(b"encoded batch")? else {
//!     unreachable!("an empty buffer is not full");
//! };
//! let record = buffer.read_from(RecordId::new(0))?.expect("just appended");
//! assert_eq!((record.id, record.data.as_slice()), (id, &b"encoded batch"[..]));
//!
//! buffer.ack(record.id)?; // the central tier has it
//! assert_eq!(buffer.stats().records, 0);
//! buffer.close()?;
//! # Ok(())
//! # }
//! ```

mod buffer;
mod crashsafe;
mod error;
mod format;

#[cfg(test)]
mod tests;

use std::{fmt, time::Duration};

pub use buffer::DiskBuffer;
pub use error::{AppendError, Error};

/// Limits and policies of a [`DiskBuffer`], checked by [`DiskBuffer::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest size of one segment file, headers included. Must hold at least
    /// one record of `max_record_bytes` plus its 8-byte header.
    pub max_segment_bytes: u64,
    /// Largest size of all segment files together. At least
    /// `max_segment_bytes`.
    pub max_total_bytes: u64,
    /// Largest record payload accepted by [`DiskBuffer::append`]. Lowering it
    /// below records already on disk makes recovery treat them as corrupt.
    pub max_record_bytes: u32,
    /// What [`DiskBuffer::append`] does when the buffer is full.
    pub full_policy: FullPolicy,
    /// When appended records and acks reach the disk.
    pub durability: Durability,
}

impl Default for Config {
    /// 16 MiB segments, 1 GiB in total, 4 MiB records, block when full,
    /// fsync at most every 200 ms.
    fn default() -> Self {
        Self {
            max_segment_bytes: 16 << 20,
            max_total_bytes: 1 << 30,
            max_record_bytes: 4 << 20,
            full_policy: FullPolicy::Block,
            durability: Durability::Interval(Duration::from_millis(200)),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |why: String| Err(Error::InvalidConfig(why));
        if self.max_record_bytes == 0 {
            return invalid("max_record_bytes must be at least 1".into());
        }
        let smallest_segment = u64::from(self.max_record_bytes) + format::HEADER_LEN;
        if self.max_segment_bytes < smallest_segment {
            return invalid(format!(
                "max_segment_bytes ({}) must be at least max_record_bytes + {} ({smallest_segment})",
                self.max_segment_bytes,
                format::HEADER_LEN
            ));
        }
        if self.max_total_bytes < self.max_segment_bytes {
            return invalid(format!(
                "max_total_bytes ({}) must be at least max_segment_bytes ({})",
                self.max_total_bytes, self.max_segment_bytes
            ));
        }
        Ok(())
    }
}

/// What [`DiskBuffer::append`] does with a record that does not fit under
/// [`Config::max_total_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Refuse it with [`AppendError::Full`]; the edge answers `503` with
    /// `Retry-After` and the client retries later.
    Block,
    /// Accept and discard it ([`Appended::Dropped`]), counted in
    /// [`Stats::dropped_records`].
    DropNewest,
}

/// When appended records and acks are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fdatasync` after every append and a checkpoint after every ack that
    /// moves the watermark: a record is on disk when `append` returns.
    Sync,
    /// Sync when an append or ack finds this much time passed since the last
    /// sync, and on [`DiskBuffer::sync`]. A crash loses at most the records
    /// appended since the last sync.
    Interval(Duration),
}

/// The position of a record in the buffer. Ids are consecutive and
/// increasing, and are not reused for a different record while an ack of the
/// old one could still be persisted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(u64);

impl RecordId {
    /// The id `raw`; `RecordId::new(0)` is a cursor before every record.
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The cursor just after this record, for [`DiskBuffer::read_from`].
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A record read back from the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: RecordId,
    pub data: Vec<u8>,
}

/// What [`DiskBuffer::append`] did with a record it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written (and, with [`Durability::Sync`], on disk) under this id.
    Stored(RecordId),
    /// The buffer was full and the policy is [`FullPolicy::DropNewest`].
    Dropped,
}

/// The buffer's current contents and its counters since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records stored and not yet acked.
    pub records: u64,
    /// Size of all segment files, acked-but-not-yet-reclaimed records included.
    pub bytes: u64,
    /// Segment files on disk.
    pub segments: u64,
    /// Records discarded under [`FullPolicy::DropNewest`] since open.
    pub dropped_records: u64,
    /// Payload bytes of those records.
    pub dropped_bytes: u64,
    /// Appends refused with [`AppendError::Full`] since open.
    pub full_rejections: u64,
    /// Records found corrupt when read since open (skipped, never delivered).
    pub corrupt_records: u64,
}

/// What [`DiskBuffer::open`] found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Intact records that will be delivered (not covered by the checkpoint).
    pub records: u64,
    /// Their payload bytes.
    pub record_bytes: u64,
    /// Intact records skipped because the checkpoint says they were acked.
    pub acked_records: u64,
    /// Segment files kept.
    pub segments: u64,
    /// Segment files deleted because nothing live was left in them.
    pub reclaimed_segments: u64,
    /// Segments that ended in a torn (partially written) record.
    pub truncated_tails: u64,
    /// Bytes of those torn records, cut from the files.
    pub truncated_tail_bytes: u64,
    /// Records whose CRC did not match; skipped, the scan went on after them.
    pub corrupt_records: u64,
    /// Bytes after a header with an implausible length; cut from the files.
    pub abandoned_bytes: u64,
    /// Every id below this was acked according to the checkpoint.
    pub acked_below: RecordId,
    /// The checkpoint file did not verify and was ignored (nothing counts as
    /// acked, so records may be delivered again).
    pub checkpoint_corrupt: bool,
    /// Files in the directory that are not part of the buffer, left alone.
    pub ignored_files: u64,
}

impl RecoveryReport {
    /// Whether recovery found anything damaged on disk.
    pub fn found_damage(&self) -> bool {
        self.truncated_tails > 0
            || self.corrupt_records > 0
            || self.abandoned_bytes > 0
            || self.checkpoint_corrupt
    }
}
