//! The batch file framing: one [`Batch`] per frame, one frame per file
//! (disk-buffer record payload, QUIC stream payload, archive object).
//!
//! Design constraints, in the order they shaped the code:
//! - **Bytes come from disks and networks**, so decoding never panics, never
//!   indexes out of bounds, and never allocates more than
//!   [`MAX_BATCH_BYTES`], whatever the input.
//! - **Corruption is detected, not decoded**: a CRC32C covers the header and
//!   the compressed payload, and is checked before decompression.
//! - **Exactly one frame**: no trailing bytes, no concatenated frames; a
//!   short file is [`DecodeError::Truncated`], so a reader can tell a cut-off
//!   write from a damaged one.
//! - **Evolvable**: the payload is protobuf, so fields are added without a
//!   format bump; [`FORMAT_VERSION`] changes only when this framing does.
//!
//! Layout (all integers little-endian), documented for humans in
//! `docs/wire-format.md`:
//!
//! | offset | size | field                                              |
//! |-------:|-----:|----------------------------------------------------|
//! | 0      | 4    | magic `b"HGB\0"`                                   |
//! | 4      | 2    | format version (`1`)                               |
//! | 6      | 2    | flags (`0`; any set bit is an error)               |
//! | 8      | 4    | uncompressed length (bytes of the protobuf `Batch`)|
//! | 12     | 4    | compressed length (bytes of the zstd payload)      |
//! | 16     | 4    | CRC32C of bytes 0..20 (this field zeroed) + payload |
//! | 20     | n    | payload: one zstd frame, level 3, content size set |

use prost::Message;

use crate::Batch;

/// The first four bytes of every batch file.
pub const MAGIC: [u8; 4] = *b"HGB\0";

/// The framing version this release writes. Readers accept every version up
/// to this one (today there is only one).
pub const FORMAT_VERSION: u16 = 1;

/// Size of the fixed frame header, in bytes.
pub const HEADER_LEN: usize = 20;

/// Cap on both lengths a header may declare. Batches close at a few MiB, so
/// this is far above any real batch; it exists so a corrupt or hostile
/// header cannot make a reader allocate gigabytes.
pub const MAX_BATCH_BYTES: u32 = 256 * 1024 * 1024;

/// zstd level used by [`encode_batch`]: fast, and most of the ratio.
pub const ZSTD_LEVEL: i32 = 3;

/// Flag bits this release understands (none yet).
const KNOWN_FLAGS: u16 = 0;

const CRC_OFFSET: usize = 16;

/// Why bytes could not be decoded into a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a batch file: the first bytes are not the magic \"HGB\\0\"")]
    BadMagic,
    #[error(
        "batch format version {found} is not supported: this release reads versions 1 to {supported}; upgrade the reader"
    )]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("batch header sets unknown flag bits {flags:#06x}: written by a newer release")]
    UnknownFlags { flags: u16 },
    #[error("batch file truncated: expected {expected} bytes, got {got}")]
    Truncated { expected: u64, got: u64 },
    #[error("{extra} trailing bytes after the batch frame: a file holds exactly one frame")]
    TrailingBytes { extra: u64 },
    #[error(
        "batch checksum mismatch: header says {expected:#010x}, data hashes to {actual:#010x}; the file is corrupt"
    )]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error(
        "batch header declares {declared} bytes, over the {max}-byte cap; the header is corrupt"
    )]
    TooLarge { declared: u64, max: u64 },
    #[error("batch payload does not decompress: {0}")]
    Decompress(String),
    #[error("batch payload is not a valid protobuf Batch: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// Why a [`Batch`] could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("batch {what} is {size} bytes, over the {max}-byte cap; close batches sooner")]
    TooLarge {
        what: &'static str,
        size: u64,
        max: u64,
    },
    #[error("zstd compression failed: {0}")]
    Compress(String),
}

/// The fixed-size header of a frame, as read by [`peek_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: u16,
    pub flags: u16,
    /// Length of the protobuf-encoded `Batch`, after decompression.
    pub uncompressed_len: u32,
    /// Length of the zstd payload that follows the header.
    pub compressed_len: u32,
    /// CRC32C over the header (this field zeroed) and the payload.
    pub checksum: u32,
}

impl FrameHeader {
    /// Total length of the frame: header plus payload. A stream reader reads
    /// [`HEADER_LEN`] bytes, calls [`peek_header`], then reads the rest.
    pub fn frame_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.compressed_len)
    }

    fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let fields = MAGIC
            .into_iter()
            .chain(self.version.to_le_bytes())
            .chain(self.flags.to_le_bytes())
            .chain(self.uncompressed_len.to_le_bytes())
            .chain(self.compressed_len.to_le_bytes())
            .chain(self.checksum.to_le_bytes());
        for (slot, byte) in out.iter_mut().zip(fields) {
            *slot = byte;
        }
        out
    }
}

/// Encodes `batch` as one frame (see the module doc).
///
/// # Panics
/// If the batch is over [`MAX_BATCH_BYTES`]; batchers close batches far
/// below it. Use [`try_encode_batch`] where the size is not bounded.
pub fn encode_batch(batch: &Batch) -> Vec<u8> {
    try_encode_batch(batch)
        .expect("batches are closed far below MAX_BATCH_BYTES and in-memory zstd does not fail")
}

/// Encodes `batch` as one frame, refusing batches over the cap that
/// [`decode_batch`] would refuse to read.
pub fn try_encode_batch(batch: &Batch) -> Result<Vec<u8>, EncodeError> {
    let raw = batch.encode_to_vec();
    let uncompressed_len = checked_len("uncompressed", raw.len())?;
    // The bulk API writes the content size into the zstd frame header, which
    // `decode_batch` requires.
    let payload = zstd::bulk::compress(&raw, ZSTD_LEVEL)
        .map_err(|err| EncodeError::Compress(err.to_string()))?;
    let compressed_len = checked_len("compressed", payload.len())?;
    let header = FrameHeader {
        version: FORMAT_VERSION,
        flags: 0,
        uncompressed_len,
        compressed_len,
        checksum: 0,
    };
    let header = FrameHeader {
        checksum: frame_checksum(&header.to_bytes(), &payload),
        ..header
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn checked_len(what: &'static str, len: usize) -> Result<u32, EncodeError> {
    u32::try_from(len)
        .ok()
        .filter(|&len| len <= MAX_BATCH_BYTES)
        .ok_or(EncodeError::TooLarge {
            what,
            size: len as u64,
            max: MAX_BATCH_BYTES.into(),
        })
}

/// Reads and validates the fixed header at the start of `bytes`: magic,
/// version, flags and the size caps. It does not look at the payload or the
/// checksum, so it needs only the first [`HEADER_LEN`] bytes.
///
/// Errors come in the order a reader can see them: a wrong magic or version
/// is reported even when fewer than [`HEADER_LEN`] bytes are present.
pub fn peek_header(bytes: &[u8]) -> Result<FrameHeader, DecodeError> {
    if bytes.iter().zip(MAGIC).any(|(&got, want)| got != want) {
        return Err(DecodeError::BadMagic);
    }
    let mut rest = bytes.get(MAGIC.len()..).unwrap_or_default();
    let truncated = || DecodeError::Truncated {
        expected: HEADER_LEN as u64,
        got: bytes.len() as u64,
    };

    let version = take_u16(&mut rest).ok_or_else(truncated)?;
    if version == 0 || version > FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let flags = take_u16(&mut rest).ok_or_else(truncated)?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(DecodeError::UnknownFlags { flags });
    }
    let uncompressed_len = take_u32(&mut rest).ok_or_else(truncated)?;
    let compressed_len = take_u32(&mut rest).ok_or_else(truncated)?;
    let checksum = take_u32(&mut rest).ok_or_else(truncated)?;
    for declared in [uncompressed_len, compressed_len] {
        if declared > MAX_BATCH_BYTES {
            return Err(DecodeError::TooLarge {
                declared: declared.into(),
                max: MAX_BATCH_BYTES.into(),
            });
        }
    }
    Ok(FrameHeader {
        version,
        flags,
        uncompressed_len,
        compressed_len,
        checksum,
    })
}

/// Decodes one frame that must span all of `bytes`.
///
/// Checks, in order: header ([`peek_header`]), length (truncated or
/// trailing bytes), checksum, then decompression (the zstd frame must
/// declare, and produce, exactly the header's uncompressed length) and the
/// protobuf decode. Nothing is allocated before the checksum has passed,
/// and never more than [`MAX_BATCH_BYTES`].
pub fn decode_batch(bytes: &[u8]) -> Result<Batch, DecodeError> {
    Ok(Batch::decode(verified_payload(bytes)?.as_slice())?)
}

/// A batch's header and events only: the loader's view of a batch. Same
/// tags as [`Batch`]; the raw hits and rejects (for `reprocess`) are
/// skipped on the wire, never decoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchEvents {
    #[prost(message, optional, tag = "1")]
    pub header: Option<crate::BatchHeader>,
    #[prost(message, repeated, tag = "3")]
    pub events: Vec<crate::Event>,
}

/// [`decode_batch`] (the same checks) decoding only the header and events.
pub fn decode_batch_events(bytes: &[u8]) -> Result<BatchEvents, DecodeError> {
    Ok(BatchEvents::decode(verified_payload(bytes)?.as_slice())?)
}

/// The decompressed payload of one frame that must span all of `bytes`,
/// after every check but the protobuf decode.
fn verified_payload(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let header = peek_header(bytes)?;
    let got = bytes.len() as u64;
    let expected = header.frame_len();
    if got < expected {
        return Err(DecodeError::Truncated { expected, got });
    }
    if got > expected {
        return Err(DecodeError::TrailingBytes {
            extra: got - expected,
        });
    }
    let Some((header_bytes, payload)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        // peek_header has read HEADER_LEN bytes, so this cannot happen; an
        // error is still cheaper to reason about than a panic.
        return Err(DecodeError::Truncated { expected, got });
    };

    let mut zeroed = *header_bytes;
    zeroed[CRC_OFFSET..].fill(0);
    let actual = frame_checksum(&zeroed, payload);
    if actual != header.checksum {
        return Err(DecodeError::ChecksumMismatch {
            expected: header.checksum,
            actual,
        });
    }

    decompress(payload, header.uncompressed_len)
}

/// Decompresses `payload`, which must be one zstd frame declaring exactly
/// `declared` bytes of content, and producing them.
fn decompress(payload: &[u8], declared: u32) -> Result<Vec<u8>, DecodeError> {
    // Ask the zstd frame header first, so a payload that disagrees with our
    // header is refused before `declared` bytes are allocated.
    let content_size = zstd::zstd_safe::get_frame_content_size(payload).map_err(|_| {
        DecodeError::Decompress("payload does not start with a zstd frame header".into())
    })?;
    match content_size {
        Some(size) if size == u64::from(declared) => {}
        Some(size) => {
            return Err(DecodeError::Decompress(format!(
                "zstd frame declares {size} bytes, batch header declares {declared}"
            )));
        }
        None => {
            return Err(DecodeError::Decompress(
                "zstd frame does not declare its content size".into(),
            ));
        }
    }
    let capacity = usize::try_from(declared)
        .map_err(|_| DecodeError::Decompress("declared length does not fit in memory".into()))?;
    let raw = zstd::bulk::Decompressor::new()
        .and_then(|mut decompressor| decompressor.decompress(payload, capacity))
        .map_err(|err| DecodeError::Decompress(err.to_string()))?;
    if raw.len() != capacity {
        return Err(DecodeError::Decompress(format!(
            "decompressed to {} bytes, batch header declares {declared}",
            raw.len()
        )));
    }
    Ok(raw)
}

fn frame_checksum(header_with_zero_crc: &[u8; HEADER_LEN], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header_with_zero_crc), payload)
}

fn take_u16(rest: &mut &[u8]) -> Option<u16> {
    let (head, tail) = rest.split_first_chunk::<2>()?;
    *rest = tail;
    Some(u16::from_le_bytes(*head))
}

fn take_u32(rest: &mut &[u8]) -> Option<u32> {
    let (head, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    Some(u32::from_le_bytes(*head))
}

/// Recomputes the checksum of `frame` in place, whatever the rest of it
/// holds; does nothing if `frame` is shorter than a header. For tests and
/// the fuzzer, so that mutated frames get past the checksum and exercise
/// decompression and protobuf decoding. Never use it to "repair" real data.
#[doc(hidden)]
pub fn reseal(frame: &mut [u8]) {
    let Some((header, payload)) = frame.split_first_chunk_mut::<HEADER_LEN>() else {
        return;
    };
    header[CRC_OFFSET..].fill(0);
    let crc = frame_checksum(header, payload);
    header[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::sample_batch;

    fn encoded() -> Vec<u8> {
        encode_batch(&sample_batch())
    }

    /// Overwrites a little-endian field and reseals, so the check under test
    /// is reached rather than the checksum.
    fn with_field(mut frame: Vec<u8>, offset: usize, le_bytes: &[u8]) -> Vec<u8> {
        frame[offset..offset + le_bytes.len()].copy_from_slice(le_bytes);
        reseal(&mut frame);
        frame
    }

    #[test]
    fn the_events_view_skips_raw_hits_and_rejects_and_checks_the_same() {
        let batch = sample_batch();
        assert!(!batch.raw_hits.is_empty() && !batch.events.is_empty());
        let view = decode_batch_events(&encoded()).unwrap();
        assert_eq!(view.header, batch.header);
        assert_eq!(view.events, batch.events);
        let mut bad = encoded();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            decode_batch_events(&bad),
            Err(DecodeError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn round_trips_sample_batch() {
        let frame = encoded();
        assert_eq!(decode_batch(&frame), Ok(sample_batch()));
        let header = peek_header(&frame).expect("encoder writes a valid header");
        assert_eq!(header.version, FORMAT_VERSION);
        assert_eq!(header.flags, 0);
        assert_eq!(header.frame_len(), frame.len() as u64);
        assert_eq!(
            header.uncompressed_len as usize,
            sample_batch().encoded_len()
        );
        assert_eq!(&frame[..4], b"HGB\0");
    }

    #[test]
    fn round_trips_empty_batch() {
        let frame = encode_batch(&Batch::default());
        assert_eq!(decode_batch(&frame), Ok(Batch::default()));
    }

    #[test]
    fn corrupt_payload_byte_is_checksum_mismatch() {
        let mut frame = encoded();
        let last = frame.len() - 1;
        frame[last] ^= 0x40;
        assert!(matches!(
            decode_batch(&frame),
            Err(DecodeError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn corrupt_checksum_field_is_checksum_mismatch() {
        let mut frame = encoded();
        frame[CRC_OFFSET] ^= 1;
        assert!(matches!(
            decode_batch(&frame),
            Err(DecodeError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn truncated_payload_is_truncated() {
        let frame = encoded();
        let cut = &frame[..frame.len() - 3];
        assert_eq!(
            decode_batch(cut),
            Err(DecodeError::Truncated {
                expected: frame.len() as u64,
                got: cut.len() as u64,
            })
        );
    }

    #[test]
    fn truncated_header_is_truncated() {
        let frame = encoded();
        for len in [0, 4, 7, 8, 12, HEADER_LEN - 1] {
            assert_eq!(
                decode_batch(&frame[..len]),
                Err(DecodeError::Truncated {
                    expected: HEADER_LEN as u64,
                    got: len as u64,
                }),
                "cut at {len}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut frame = encoded();
        frame.extend_from_slice(&encoded());
        assert_eq!(
            decode_batch(&frame),
            Err(DecodeError::TrailingBytes {
                extra: encoded().len() as u64
            })
        );
    }

    #[test]
    fn version_2_is_unsupported() {
        let frame = with_field(encoded(), 4, &2u16.to_le_bytes());
        assert_eq!(
            decode_batch(&frame),
            Err(DecodeError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        );
        // Reported as soon as the version is visible, even if the rest of a
        // newer (perhaps longer) header is not there.
        assert!(matches!(
            decode_batch(&frame[..6]),
            Err(DecodeError::UnsupportedVersion { found: 2, .. })
        ));
    }

    #[test]
    fn version_0_is_unsupported() {
        let frame = with_field(encoded(), 4, &0u16.to_le_bytes());
        assert!(matches!(
            decode_batch(&frame),
            Err(DecodeError::UnsupportedVersion { found: 0, .. })
        ));
    }

    #[test]
    fn unknown_flags_are_refused() {
        let frame = with_field(encoded(), 6, &0x0100u16.to_le_bytes());
        assert_eq!(
            decode_batch(&frame),
            Err(DecodeError::UnknownFlags { flags: 0x0100 })
        );
    }

    #[test]
    fn garbage_is_bad_magic() {
        let garbage = b"PK\x03\x04 definitely not a batch file, just some bytes";
        assert_eq!(decode_batch(garbage), Err(DecodeError::BadMagic));
        assert_eq!(decode_batch(b"X"), Err(DecodeError::BadMagic));
        assert_eq!(decode_batch(b"HGX\0\x01\0"), Err(DecodeError::BadMagic));
        // A prefix of the magic is a cut-off file, not a foreign one.
        assert!(matches!(
            decode_batch(b"HG"),
            Err(DecodeError::Truncated { got: 2, .. })
        ));
        let mut zstd_only = encoded();
        zstd_only.drain(..HEADER_LEN);
        assert_eq!(decode_batch(&zstd_only), Err(DecodeError::BadMagic));
    }

    #[test]
    fn header_declaring_4_gib_is_too_large() {
        let frame = with_field(encoded(), 8, &u32::MAX.to_le_bytes());
        assert_eq!(
            decode_batch(&frame),
            Err(DecodeError::TooLarge {
                declared: u32::MAX.into(),
                max: MAX_BATCH_BYTES.into(),
            })
        );
        // Known from the header alone, before any payload is read.
        assert!(matches!(
            peek_header(&frame[..HEADER_LEN]),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn compressed_length_over_cap_is_too_large() {
        let frame = with_field(encoded(), 12, &(MAX_BATCH_BYTES + 1).to_le_bytes());
        assert!(matches!(
            decode_batch(&frame),
            Err(DecodeError::TooLarge { declared, .. }) if declared == u64::from(MAX_BATCH_BYTES) + 1
        ));
    }

    #[test]
    fn wrong_uncompressed_length_is_decompress_error() {
        let frame = encoded();
        let real = peek_header(&frame)
            .expect("encoder writes a valid header")
            .uncompressed_len;
        for wrong in [0, real - 1, real + 1, MAX_BATCH_BYTES] {
            let frame = with_field(frame.clone(), 8, &wrong.to_le_bytes());
            assert!(
                matches!(decode_batch(&frame), Err(DecodeError::Decompress(_))),
                "declared {wrong}"
            );
        }
    }

    #[test]
    fn payload_that_is_not_zstd_is_decompress_error() {
        let mut frame = encoded();
        let payload_start = HEADER_LEN;
        frame[payload_start..].fill(0xAB);
        reseal(&mut frame);
        assert!(matches!(
            decode_batch(&frame),
            Err(DecodeError::Decompress(_))
        ));
    }

    #[test]
    fn zstd_frame_without_content_size_is_refused() {
        let raw = sample_batch().encode_to_vec();
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)
            .expect("zstd encoder allocates");
        encoder
            .include_contentsize(false)
            .expect("flag is supported");
        std::io::Write::write_all(&mut encoder, &raw).expect("writes to a Vec");
        let payload = encoder.finish().expect("writes to a Vec");
        let mut frame = FrameHeader {
            version: 1,
            flags: 0,
            uncompressed_len: raw.len() as u32,
            compressed_len: payload.len() as u32,
            checksum: 0,
        }
        .to_bytes()
        .to_vec();
        frame.extend_from_slice(&payload);
        reseal(&mut frame);
        assert_eq!(
            decode_batch(&frame),
            Err(DecodeError::Decompress(
                "zstd frame does not declare its content size".into()
            ))
        );
    }

    #[test]
    fn payload_that_is_not_protobuf_is_decode_error() {
        // A valid zstd frame whose content is not a protobuf message
        // (field number 0 is invalid).
        let raw = [0u8; 16];
        let payload = zstd::bulk::compress(&raw, ZSTD_LEVEL).expect("in-memory zstd");
        let mut frame = FrameHeader {
            version: 1,
            flags: 0,
            uncompressed_len: raw.len() as u32,
            compressed_len: payload.len() as u32,
            checksum: 0,
        }
        .to_bytes()
        .to_vec();
        frame.extend_from_slice(&payload);
        reseal(&mut frame);
        assert!(matches!(decode_batch(&frame), Err(DecodeError::Decode(_))));
    }

    #[test]
    fn every_single_bit_flip_of_the_sample_is_detected() {
        let frame = encoded();
        for bit in 0..frame.len() * 8 {
            let mut flipped = frame.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_batch(&flipped).is_err(),
                "bit {bit} flip went undetected"
            );
        }
    }

    #[test]
    fn error_messages_name_the_problem() {
        let cases = [
            (DecodeError::BadMagic, "magic"),
            (
                DecodeError::UnsupportedVersion {
                    found: 2,
                    supported: 1,
                },
                "version 2",
            ),
            (DecodeError::UnknownFlags { flags: 1 }, "flag"),
            (
                DecodeError::Truncated {
                    expected: 20,
                    got: 3,
                },
                "truncated",
            ),
            (DecodeError::TrailingBytes { extra: 1 }, "trailing"),
            (
                DecodeError::ChecksumMismatch {
                    expected: 1,
                    actual: 2,
                },
                "checksum",
            ),
            (
                DecodeError::TooLarge {
                    declared: 1 << 32,
                    max: 1,
                },
                "cap",
            ),
        ];
        for (err, needle) in cases {
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn encoder_refuses_nothing_below_the_cap() {
        // A large, incompressible-ish batch still encodes and decodes.
        let mut batch = sample_batch();
        batch.raw_hits[0].body = (0..1_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        assert_eq!(decode_batch(&encode_batch(&batch)), Ok(batch));
    }
}
