//! The bytes on disk: record framing, scanning a segment, the checkpoint and
//! the file names. Plain functions over bytes and a `Read`; opening, syncing
//! and deleting files is `buffer`'s job.

use std::io::{self, Read};

/// `len: u32 LE | crc: u32 LE` before every payload.
pub(crate) const HEADER_LEN: u64 = 8;
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";
pub(crate) const CHECKPOINT_FILE: &str = "ack.checkpoint";
pub(crate) const CHECKPOINT_TMP_FILE: &str = "ack.checkpoint.tmp";
pub(crate) const LOCK_FILE: &str = "lock";

/// Ids at or above this are treated as damage rather than trusted. No buffer
/// stores 2^62 records, and the bound keeps id arithmetic far from overflow
/// whatever a file name or checkpoint says.
pub(crate) const MAX_ID: u64 = 1 << 62;

const CHECKPOINT_MAGIC: &[u8; 4] = b"HGAK";
const CHECKPOINT_VERSION: u8 = 1;
pub(crate) const CHECKPOINT_LEN: usize = 20;

/// `{first_id:020}.seg`: zero-padded so that name order is id order.
pub(crate) fn segment_file_name(first_id: u64) -> String {
    format!("{first_id:020}{SEGMENT_SUFFIX}")
}

/// The first record id of a segment named by [`segment_file_name`], or `None`
/// for any other name (including ids at or above [`MAX_ID`]).
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u64 = digits.parse().ok()?;
    (id < MAX_ID).then_some(id)
}

/// CRC32C of the length bytes followed by the payload.
pub(crate) fn checksum(len: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload)
}

/// Appends header and payload to `out`. `payload.len()` must equal `len`.
pub(crate) fn encode_record(len: u32, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub len: u32,
    pub crc: u32,
}

pub(crate) fn decode_header(bytes: [u8; HEADER_LEN as usize]) -> Header {
    let [l0, l1, l2, l3, c0, c1, c2, c3] = bytes;
    Header {
        len: u32::from_le_bytes([l0, l1, l2, l3]),
        crc: u32::from_le_bytes([c0, c1, c2, c3]),
    }
}

/// Whether a length can frame a record at all. Zero is excluded so that a
/// zero-filled region is never mistaken for a run of empty records.
pub(crate) fn plausible_len(len: u32, max_record_bytes: u32) -> bool {
    (1..=max_record_bytes).contains(&len)
}

/// A record that verified while scanning a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScannedRecord {
    /// Position among the segment's records, corrupt ones included; the
    /// record's id is the segment's first id plus this.
    pub slot: u64,
    /// Byte offset of the header in the file.
    pub offset: u64,
    pub len: u32,
}

/// What one pass over a segment file found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SegmentScan {
    pub records: Vec<ScannedRecord>,
    /// Records framed, corrupt ones included.
    pub slots: u64,
    /// Length of the framed prefix; the file should be cut to this.
    pub valid_len: u64,
    pub corrupt_records: u64,
    /// Bytes of a torn final record (0 if none).
    pub truncated_tail_bytes: u64,
    /// Bytes after a header whose length cannot frame a record (0 if none).
    pub abandoned_bytes: u64,
}

/// Reads a segment of `file_len` bytes from `reader` and frames its records.
///
/// `valid_len + truncated_tail_bytes + abandoned_bytes == file_len` always
/// holds. Only an IO error other than a short read is returned as an error.
pub(crate) fn scan_segment(
    mut reader: impl Read,
    file_len: u64,
    max_record_bytes: u32,
) -> io::Result<SegmentScan> {
    let mut scan = SegmentScan::default();
    let mut payload = Vec::new();
    let mut offset = 0u64;
    loop {
        let remaining = file_len - offset;
        if remaining == 0 {
            break;
        }
        if remaining < HEADER_LEN {
            scan.truncated_tail_bytes = remaining;
            break;
        }
        let mut header = [0u8; HEADER_LEN as usize];
        if !read_fully(&mut reader, &mut header)? {
            // The file shrank under us; what is left is a torn tail.
            scan.truncated_tail_bytes = remaining;
            break;
        }
        let header = decode_header(header);
        if !plausible_len(header.len, max_record_bytes) {
            scan.abandoned_bytes = remaining;
            break;
        }
        let record_len = HEADER_LEN + u64::from(header.len);
        if record_len > remaining {
            scan.truncated_tail_bytes = remaining;
            break;
        }
        payload.resize(header.len as usize, 0);
        if !read_fully(&mut reader, &mut payload)? {
            scan.truncated_tail_bytes = remaining;
            break;
        }
        if checksum(header.len, &payload) == header.crc {
            scan.records.push(ScannedRecord {
                slot: scan.slots,
                offset,
                len: header.len,
            });
        } else {
            scan.corrupt_records += 1;
        }
        scan.slots += 1;
        offset += record_len;
    }
    scan.valid_len = offset;
    Ok(scan)
}

/// `read_exact` that reports a short read as `false` instead of an error.
pub(crate) fn read_fully(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// `HGAK | version u8 | 3 zero bytes | acked_below u64 LE | crc32c u32 LE`.
pub(crate) fn encode_checkpoint(acked_below: u64) -> [u8; CHECKPOINT_LEN] {
    let mut out = [0u8; CHECKPOINT_LEN];
    out[..4].copy_from_slice(CHECKPOINT_MAGIC);
    out[4] = CHECKPOINT_VERSION;
    out[8..16].copy_from_slice(&acked_below.to_le_bytes());
    let crc = crc32c::crc32c(&out[..16]);
    out[16..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The `acked_below` of a checkpoint, or `None` if the bytes are not a valid
/// one.
pub(crate) fn decode_checkpoint(bytes: &[u8]) -> Option<u64> {
    let bytes: &[u8; CHECKPOINT_LEN] = bytes.try_into().ok()?;
    let (body, crc) = bytes.split_at(16);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?)
        || &body[..4] != CHECKPOINT_MAGIC
        || body[4] != CHECKPOINT_VERSION
        || body[5..8] != [0, 0, 0]
    {
        return None;
    }
    let acked_below = u64::from_le_bytes(body[8..16].try_into().ok()?);
    (acked_below < MAX_ID).then_some(acked_below)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use proptest::prelude::*;

    use super::*;

    fn encode_all(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_record(p.len() as u32, p, &mut out);
        }
        out
    }

    fn scan(bytes: &[u8], max: u32) -> SegmentScan {
        scan_segment(Cursor::new(bytes), bytes.len() as u64, max).expect("a Cursor never fails")
    }

    #[test]
    fn segment_names_sort_by_id_and_round_trip() {
        assert_eq!(segment_file_name(193), "00000000000000000193.seg");
        assert_eq!(
            parse_segment_file_name("00000000000000000193.seg"),
            Some(193)
        );
        assert!(segment_file_name(9) < segment_file_name(10));
        for bad in [
            "193.seg",
            "0000000000000000019x.seg",
            "00000000000000000193.tmp",
            "99999999999999999999.seg",
            "+0000000000000000193.seg",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn scan_frames_every_record() {
        let bytes = encode_all(&[b"a", b"bcd", b"efghij"]);
        let s = scan(&bytes, 16);
        assert_eq!(s.slots, 3);
        assert_eq!(
            s.records
                .iter()
                .map(|r| (r.slot, r.offset, r.len))
                .collect::<Vec<_>>(),
            vec![(0, 0, 1), (1, 9, 3), (2, 20, 6)]
        );
        assert_eq!(s.valid_len, bytes.len() as u64);
    }

    #[test]
    fn zeroed_bytes_are_not_records() {
        let mut bytes = encode_all(&[b"abc"]);
        bytes.extend_from_slice(&[0; 64]);
        let s = scan(&bytes, 16);
        assert_eq!((s.records.len(), s.corrupt_records), (1, 0));
        assert_eq!((s.valid_len, s.abandoned_bytes), (11, 64));
    }

    #[test]
    fn checksum_covers_the_length() {
        let mut bytes = encode_all(&[b"abcd"]);
        // Shrink the length by one: the payload prefix alone must not verify.
        bytes[0] = 3;
        let s = scan(&bytes, 16);
        assert_eq!((s.records.len(), s.corrupt_records), (0, 1));
    }

    #[test]
    fn checkpoint_round_trips_and_rejects_damage() {
        let bytes = encode_checkpoint(42);
        assert_eq!(decode_checkpoint(&bytes), Some(42));
        for i in 0..CHECKPOINT_LEN {
            let mut damaged = bytes;
            damaged[i] ^= 0x10;
            assert_eq!(decode_checkpoint(&damaged), None, "byte {i}");
        }
        assert_eq!(decode_checkpoint(&bytes[..19]), None);
        assert_eq!(decode_checkpoint(&encode_checkpoint(MAX_ID)), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn scan_accounts_for_every_byte_of_any_input(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            max in 1u32..64,
        ) {
            let s = scan(&bytes, max);
            prop_assert_eq!(
                s.valid_len + s.truncated_tail_bytes + s.abandoned_bytes,
                bytes.len() as u64
            );
            prop_assert_eq!(s.slots, s.records.len() as u64 + s.corrupt_records);
            prop_assert!(s.truncated_tail_bytes == 0 || s.abandoned_bytes == 0);
        }

        #[test]
        fn any_bytes_decode_as_checkpoint_without_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let _ = decode_checkpoint(&bytes);
        }
    }
}
