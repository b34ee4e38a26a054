//! [`DiskBuffer`]: the segment files, the in-memory index of live records and
//! the ack watermark. The byte formats are in `format`, durable replacement
//! of the checkpoint in `crashsafe`.

use std::{
    collections::{BTreeMap, VecDeque},
    fs::{self, File, OpenOptions, TryLockError},
    io::{self, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::Instant,
};

use crate::{
    AppendError, Appended, Config, Durability, Error, FullPolicy, Record, RecordId, RecoveryReport,
    Stats, crashsafe,
    error::IoContext,
    format::{
        self, CHECKPOINT_FILE, CHECKPOINT_LEN, CHECKPOINT_TMP_FILE, HEADER_LEN, LOCK_FILE,
        SegmentScan,
    },
};

/// An on-disk queue of records, read oldest first and deleted segment by
/// segment once acked. See the crate documentation for the design.
///
/// One `DiskBuffer` owns its directory: a second [`DiskBuffer::open`] of the
/// same directory fails with [`Error::Locked`] until this one is dropped.
/// Dropping does not sync; call [`DiskBuffer::close`] for an orderly stop.
#[derive(Debug)]
pub struct DiskBuffer {
    dir: PathBuf,
    config: Config,
    /// Holds the advisory lock on `dir/lock` until the buffer is dropped.
    _lock: File,
    /// First record id of each segment on disk → its size in bytes. The last
    /// one is the writer's when `active` is set.
    segments: BTreeMap<u64, u64>,
    /// Live records in id order. Acked ones stay until the watermark passes
    /// them, so that out-of-order acks need no second structure.
    index: VecDeque<Entry>,
    active: Option<ActiveSegment>,
    /// The segment last read from, kept open for sequential reads.
    reader: Option<(u64, File)>,
    next_id: u64,
    /// Sum of `segments`.
    bytes: u64,
    /// Entries of `index` not yet acked.
    unacked: u64,
    /// `acked_below` of the checkpoint on disk.
    persisted_acked_below: u64,
    last_sync: Instant,
    /// Set when a failed write could not be rolled back: the segment's tail
    /// is unknown, so appending more could bury good records behind garbage.
    poisoned: Option<PathBuf>,
    scratch: Vec<u8>,
    dropped_records: u64,
    dropped_bytes: u64,
    full_rejections: u64,
    corrupt_records: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u64,
    segment: u64,
    offset: u64,
    len: u32,
    acked: bool,
}

#[derive(Debug)]
struct ActiveSegment {
    first_id: u64,
    path: PathBuf,
    /// Opened with `O_APPEND`, so a write after a rollback truncation lands at
    /// the new end.
    file: File,
    len: u64,
    synced_len: u64,
}

impl DiskBuffer {
    /// Opens (creating if needed) the buffer in `dir` and recovers what is on
    /// disk; see "Recovery" in the crate documentation.
    ///
    /// Damaged content is never an error: it is repaired and counted in the
    /// [`RecoveryReport`]. Errors are an invalid `config`, a directory already
    /// open elsewhere, and IO failures.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<(Self, RecoveryReport), Error> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).context("create directory", &dir)?;
        let lock = lock_dir(&dir)?;
        crashsafe::remove_if_exists(&dir.join(CHECKPOINT_TMP_FILE))?;

        let mut report = RecoveryReport::default();
        let acked_below = load_checkpoint(&dir, &mut report)?;
        report.acked_below = RecordId(acked_below);
        let first_ids = list_segments(&dir, &mut report)?;

        let mut buffer = Self {
            dir,
            config,
            _lock: lock,
            segments: BTreeMap::new(),
            index: VecDeque::new(),
            active: None,
            reader: None,
            next_id: acked_below,
            bytes: 0,
            unacked: 0,
            persisted_acked_below: acked_below,
            last_sync: Instant::now(),
            poisoned: None,
            scratch: Vec::new(),
            dropped_records: 0,
            dropped_bytes: 0,
            full_rejections: 0,
            corrupt_records: 0,
        };
        let mut scanned_end = 0u64;
        let mut removed_any = false;
        for first_id in first_ids {
            let path = buffer.segment_path(first_id);
            if first_id < scanned_end {
                // Overlaps the ids of the previous segment: not written by us.
                tracing::warn!(segment = %path.display(), "disk buffer: segment overlaps the previous one; left alone");
                report.ignored_files += 1;
                continue;
            }
            let scan = recover_segment(&path, buffer.config.max_record_bytes)?;
            scanned_end = first_id + scan.slots;
            report.corrupt_records += scan.corrupt_records;
            report.truncated_tail_bytes += scan.truncated_tail_bytes;
            report.truncated_tails += u64::from(scan.truncated_tail_bytes > 0);
            report.abandoned_bytes += scan.abandoned_bytes;

            let live: Vec<Entry> = scan
                .records
                .iter()
                .map(|r| Entry {
                    id: first_id + r.slot,
                    segment: first_id,
                    offset: r.offset,
                    len: r.len,
                    acked: false,
                })
                .filter(|e| e.id >= acked_below)
                .collect();
            report.acked_records += (scan.records.len() - live.len()) as u64;
            if live.is_empty() {
                crashsafe::remove_if_exists(&path)?;
                report.reclaimed_segments += 1;
                removed_any = true;
                continue;
            }
            report.segments += 1;
            report.records += live.len() as u64;
            report.record_bytes += live.iter().map(|e| u64::from(e.len)).sum::<u64>();
            buffer.segments.insert(first_id, scan.valid_len);
            buffer.bytes += scan.valid_len;
            buffer.index.extend(live);
        }
        if removed_any {
            crashsafe::fsync_dir(&buffer.dir)?;
        }
        buffer.next_id = buffer.next_id.max(scanned_end);
        buffer.unacked = buffer.index.len() as u64;
        Ok((buffer, report))
    }

    /// Appends one record (non-empty, at most `max_record_bytes`).
    ///
    /// With [`Durability::Sync`] the record is on disk when this returns `Ok`.
    /// If it returns an IO error after the write itself succeeded (a failed
    /// fsync), the record may still be delivered: delivery is at-least-once.
    pub fn append(&mut self, data: &[u8]) -> Result<Appended, AppendError> {
        let max = self.config.max_record_bytes;
        let len = match u32::try_from(data.len()) {
            Ok(0) => return Err(AppendError::Empty),
            Ok(len) if len <= max => len,
            _ => {
                return Err(AppendError::TooLarge {
                    len: data.len(),
                    max,
                });
            }
        };
        if let Some(path) = &self.poisoned {
            return Err(Error::WriterPoisoned { path: path.clone() }.into());
        }
        let needed = HEADER_LEN + u64::from(len);
        if self.bytes + needed > self.config.max_total_bytes {
            return match self.config.full_policy {
                FullPolicy::Block => {
                    self.full_rejections += 1;
                    Err(AppendError::Full {
                        used: self.bytes,
                        needed,
                        max: self.config.max_total_bytes,
                    })
                }
                FullPolicy::DropNewest => {
                    self.dropped_records += 1;
                    self.dropped_bytes += u64::from(len);
                    Ok(Appended::Dropped)
                }
            };
        }

        let mut active = match self.active.take() {
            Some(active) if active.len + needed <= self.config.max_segment_bytes => active,
            Some(full) => {
                seal(full)?;
                self.create_segment()?
            }
            None => self.create_segment()?,
        };
        self.scratch.clear();
        format::encode_record(len, data, &mut self.scratch);
        if let Err(source) = active.file.write_all(&self.scratch) {
            let path = active.path.clone();
            // Roll back the partial write so the next record starts at a frame.
            match active.file.set_len(active.len) {
                Ok(()) => self.active = Some(active),
                Err(_) => self.poisoned = Some(path.clone()),
            }
            let action = "append to";
            return Err(Error::Io {
                action,
                path,
                source,
            }
            .into());
        }

        let id = self.next_id;
        self.index.push_back(Entry {
            id,
            segment: active.first_id,
            offset: active.len,
            len,
            acked: false,
        });
        active.len += needed;
        *self.segments.entry(active.first_id).or_default() += needed;
        self.bytes += needed;
        self.unacked += 1;
        self.next_id += 1;
        self.active = Some(active);

        match self.config.durability {
            Durability::Sync => self.sync()?,
            Durability::Interval(_) => self.sync_if_due()?,
        }
        Ok(Appended::Stored(RecordId(id)))
    }

    /// Fsyncs the segment being written and persists the ack checkpoint if the
    /// watermark moved. The edge calls this on a timer with
    /// [`Durability::Interval`].
    pub fn sync(&mut self) -> Result<(), Error> {
        if let Some(active) = &mut self.active
            && active.synced_len < active.len
        {
            active.file.sync_data().context("fsync", &active.path)?;
            active.synced_len = active.len;
        }
        self.persist_checkpoint()?;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// The first unacked record whose id is at least `cursor`, without
    /// removing it. Pass `record.id.next()` to read on; pass
    /// [`RecordId::new(0)`](RecordId::new) to start over from the oldest.
    ///
    /// A record that fails its CRC now (it verified at open or was written by
    /// this process) is skipped, treated as acked, and counted in
    /// [`Stats::corrupt_records`].
    pub fn read_from(&mut self, cursor: RecordId) -> Result<Option<Record>, Error> {
        let mut i = self.index.partition_point(|e| e.id < cursor.0);
        let mut skipped_corrupt = false;
        let found = loop {
            let Some(entry) = self.index.get(i).copied() else {
                break None;
            };
            if !entry.acked {
                if let Some(data) = self.read_entry(&entry)? {
                    break Some(Record {
                        id: RecordId(entry.id),
                        data,
                    });
                }
                tracing::warn!(
                    segment = %self.segment_path(entry.segment).display(),
                    record = entry.id,
                    "disk buffer: record corrupt on read; skipped"
                );
                if let Some(e) = self.index.get_mut(i) {
                    e.acked = true;
                }
                self.unacked -= 1;
                self.corrupt_records += 1;
                skipped_corrupt = true;
            }
            i += 1;
        };
        if skipped_corrupt {
            self.release_acked()?;
        }
        Ok(found)
    }

    /// The oldest unacked record: `read_from(first_unacked)`.
    pub fn next_unacked(&mut self) -> Result<Option<Record>, Error> {
        self.read_from(RecordId(0))
    }

    /// The id of the oldest unacked record, if any.
    pub fn first_unacked(&self) -> Option<RecordId> {
        self.index.iter().find(|e| !e.acked).map(|e| RecordId(e.id))
    }

    /// Marks a record as delivered to the central tier. Acks may come in any
    /// order and repeating one is harmless; segments whose records are all
    /// below the contiguous acked watermark are deleted.
    pub fn ack(&mut self, id: RecordId) -> Result<(), Error> {
        if id.0 >= self.next_id {
            return Err(Error::UnknownRecord(id));
        }
        if id.0 < self.watermark() {
            return Ok(());
        }
        let Ok(i) = self.index.binary_search_by_key(&id.0, |e| e.id) else {
            // An id that recovery skipped as corrupt: never delivered.
            return Err(Error::UnknownRecord(id));
        };
        if let Some(entry) = self.index.get_mut(i)
            && !entry.acked
        {
            entry.acked = true;
            self.unacked -= 1;
        }
        self.release_acked()?;
        match self.config.durability {
            Durability::Sync => self.persist_checkpoint(),
            Durability::Interval(_) => self.sync_if_due(),
        }
    }

    /// What is in the buffer and the counters since open.
    pub fn stats(&self) -> Stats {
        Stats {
            records: self.unacked,
            bytes: self.bytes,
            segments: self.segments.len() as u64,
            dropped_records: self.dropped_records,
            dropped_bytes: self.dropped_bytes,
            full_rejections: self.full_rejections,
            corrupt_records: self.corrupt_records,
        }
    }

    /// The buffer's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Syncs, then releases the directory.
    pub fn close(mut self) -> Result<(), Error> {
        self.sync()
    }

    /// Every id below this is acked.
    fn watermark(&self) -> u64 {
        self.index.front().map_or(self.next_id, |e| e.id)
    }

    fn segment_path(&self, first_id: u64) -> PathBuf {
        self.dir.join(format::segment_file_name(first_id))
    }

    fn create_segment(&mut self) -> Result<ActiveSegment, Error> {
        let first_id = self.next_id;
        let path = self.segment_path(first_id);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .context("create segment", &path)?;
        self.segments.insert(first_id, 0);
        let segment = ActiveSegment {
            first_id,
            path,
            file,
            len: 0,
            synced_len: 0,
        };
        // Without this a crash could lose the new name and every record in it.
        if let Err(e) = crashsafe::fsync_dir(&self.dir) {
            self.active = Some(segment);
            return Err(e);
        }
        Ok(segment)
    }

    fn sync_if_due(&mut self) -> Result<(), Error> {
        match self.config.durability {
            Durability::Interval(interval) if self.last_sync.elapsed() >= interval => self.sync(),
            _ => Ok(()),
        }
    }

    fn persist_checkpoint(&mut self) -> Result<(), Error> {
        let watermark = self.watermark();
        if watermark > self.persisted_acked_below {
            crashsafe::overwrite(
                &self.dir,
                CHECKPOINT_FILE,
                CHECKPOINT_TMP_FILE,
                &format::encode_checkpoint(watermark),
            )?;
            self.persisted_acked_below = watermark;
        }
        Ok(())
    }

    /// Drops acked entries below the watermark and deletes every segment
    /// whose ids all lie below it.
    fn release_acked(&mut self) -> Result<(), Error> {
        while self.index.front().is_some_and(|e| e.acked) {
            self.index.pop_front();
        }
        let watermark = self.watermark();
        let mut reclaim = Vec::new();
        let mut first_ids = self.segments.keys().copied().peekable();
        while let Some(first_id) = first_ids.next() {
            let end = first_ids.peek().copied().unwrap_or(self.next_id);
            if end > watermark {
                break;
            }
            reclaim.push(first_id);
        }
        if reclaim.is_empty() {
            return Ok(());
        }
        // Checkpoint first: a crash before the deletes leaves segments that
        // recovery sees as fully acked, never a lost ack.
        self.persist_checkpoint()?;
        for first_id in reclaim {
            if self.active.as_ref().is_some_and(|a| a.first_id == first_id) {
                self.active = None;
            }
            if self.reader.as_ref().is_some_and(|(r, _)| *r == first_id) {
                self.reader = None;
            }
            crashsafe::remove_if_exists(&self.segment_path(first_id))?;
            if let Some(bytes) = self.segments.remove(&first_id) {
                self.bytes -= bytes;
            }
        }
        Ok(())
    }

    /// The payload of `entry`, or `None` if what is on disk no longer matches.
    fn read_entry(&mut self, entry: &Entry) -> Result<Option<Vec<u8>>, Error> {
        let path = self.segment_path(entry.segment);
        let file = match self.reader.take() {
            Some((first_id, file)) if first_id == entry.segment => file,
            _ => match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e).context("open segment", &path),
            },
        };
        let data = read_record_at(&file, entry).context("read", &path)?;
        self.reader = Some((entry.segment, file));
        Ok(data)
    }
}

fn read_record_at(mut file: &File, entry: &Entry) -> io::Result<Option<Vec<u8>>> {
    file.seek(SeekFrom::Start(entry.offset))?;
    let mut header = [0u8; HEADER_LEN as usize];
    if !format::read_fully(&mut file, &mut header)? {
        return Ok(None);
    }
    let header = format::decode_header(header);
    if header.len != entry.len {
        return Ok(None);
    }
    let mut data = vec![0u8; entry.len as usize];
    if !format::read_fully(&mut file, &mut data)?
        || format::checksum(header.len, &data) != header.crc
    {
        return Ok(None);
    }
    Ok(Some(data))
}

/// Fsyncs a full segment before the writer leaves it for good.
fn seal(segment: ActiveSegment) -> Result<(), Error> {
    if segment.synced_len < segment.len {
        segment.file.sync_data().context("fsync", &segment.path)?;
    }
    Ok(())
}

fn lock_dir(dir: &Path) -> Result<File, Error> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .context("open lock file", &path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            dir: dir.to_path_buf(),
            lock: path,
        }),
        Err(TryLockError::Error(e)) => Err(e).context("lock", &path),
    }
}

/// `acked_below` from the checkpoint; 0 if it is missing or corrupt.
fn load_checkpoint(dir: &Path, report: &mut RecoveryReport) -> Result<u64, Error> {
    let path = dir.join(CHECKPOINT_FILE);
    let mut bytes = Vec::with_capacity(CHECKPOINT_LEN);
    match File::open(&path) {
        // One byte more than a checkpoint, so an overlong file fails to decode.
        Ok(file) => file
            .take(CHECKPOINT_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .context("read checkpoint", &path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).context("open checkpoint", &path),
    };
    match format::decode_checkpoint(&bytes) {
        Some(acked_below) => Ok(acked_below),
        None => {
            tracing::warn!(checkpoint = %path.display(), "disk buffer: ack checkpoint corrupt; unacked records will be re-sent from the oldest");
            report.checkpoint_corrupt = true;
            Ok(0)
        }
    }
}

/// First ids of the segment files in `dir`, ascending; counts other files.
fn list_segments(dir: &Path, report: &mut RecoveryReport) -> Result<Vec<u64>, Error> {
    let mut first_ids = Vec::new();
    for entry in fs::read_dir(dir).context("list", dir)? {
        let entry = entry.context("list", dir)?;
        let name = entry.file_name();
        let name = name.to_str().unwrap_or("");
        if name == LOCK_FILE || name == CHECKPOINT_FILE {
            continue;
        }
        let is_file = entry.file_type().context("stat", &entry.path())?.is_file();
        match format::parse_segment_file_name(name) {
            Some(first_id) if is_file => first_ids.push(first_id),
            _ => {
                tracing::warn!(file = %entry.path().display(), "disk buffer: unexpected file in buffer directory; left alone");
                report.ignored_files += 1;
            }
        }
    }
    first_ids.sort_unstable();
    Ok(first_ids)
}

/// Frames the records of one segment and cuts off any torn or unframeable
/// tail, so the file ends at its last whole record.
fn recover_segment(path: &Path, max_record_bytes: u32) -> Result<SegmentScan, Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .context("open segment", path)?;
    let len = file.metadata().context("stat", path)?.len();
    let scan = format::scan_segment(BufReader::new(&file), len, max_record_bytes)
        .context("read segment", path)?;
    if scan.valid_len < len {
        file.set_len(scan.valid_len).context("truncate", path)?;
        file.sync_all().context("fsync", path)?;
    }
    if scan.valid_len < len || scan.corrupt_records > 0 {
        tracing::warn!(
            segment = %path.display(),
            corrupt_records = scan.corrupt_records,
            truncated_tail_bytes = scan.truncated_tail_bytes,
            abandoned_bytes = scan.abandoned_bytes,
            "disk buffer: damaged segment recovered; intact records kept"
        );
    }
    Ok(scan)
}
