//! The per-stream protocol, sans IO: plain functions and a small state
//! machine over bytes. No tokio, no quinn, no clock; the glue in
//! [`crate::client`] and [`crate::server`] moves bytes between these and a
//! QUIC stream.
//!
//! Design constraints:
//! - **One batch per bidirectional stream.** The edge writes one request
//!   and finishes its side; central answers with one response and finishes
//!   its side. Streams are cheap in QUIC, so there is no multiplexing to get
//!   wrong and a broken stream never poisons the next.
//! - **Bytes come from the network**: decoding never panics, never indexes
//!   out of bounds, and allocates only what a checked length allows (the
//!   payload buffer grows to its declared size only after the batch file's
//!   own header has agreed with it).
//! - **The payload is a batch file**, already framed and checksummed by
//!   `hourglass_model` (`docs/wire-format.md`). This layer checks that its
//!   header is sane and that its length matches; the receiver decodes it.
//!
//! Layout (integers little-endian):
//!
//! | offset  | size | request (edge → central)                        |
//! |--------:|-----:|--------------------------------------------------|
//! | 0       | 4    | magic `b"HGQ\0"`                                 |
//! | 4       | 2    | protocol version (`1`)                           |
//! | 6       | 1    | kind: `1` = request                              |
//! | 7       | 1    | edge name length `L` (1..=64)                    |
//! | 8       | L    | edge name (`A-Z a-z 0-9 - _`)                    |
//! | 8+L     | 8    | batch sequence number                            |
//! | 16+L    | 4    | payload length `P` (20 ..= 20 + 256 MiB)         |
//! | 20+L    | P    | payload: one batch file, whose frame length is P |
//!
//! A response (central → edge) starts with the same magic and version, then
//! one kind byte, then:
//! - `2` = Ack: edge name length, edge name, sequence (as in the request);
//! - `3` = Busy: `u32` milliseconds to wait before retrying;
//! - `4` = Reject: `u16` reason code, `u16` message length (≤ 1024),
//!   UTF-8 message.
//!
//! A response must span exactly the bytes of its stream.
//!
//! The same connection carries the control channel, one request per stream
//! as well; the kind byte tells them apart (`docs/wire-format.md`):
//! - `5` = Sync (edge → central): byte 7 is `0`, then the `u64` state
//!   version the edge has (0: none). Answers: `7` = State (`u64` version,
//!   `u32` length ≤ 16 MiB, JSON body), `8` = Unchanged (`u64` version), or
//!   a Reject.
//! - `6` = Blob: byte 7 is `32`, then the 32-byte SHA-256 of the blob.
//!   Answers: `9` = Blob (`u32` length ≤ 64 MiB, the bytes), or a Reject
//!   (`not_found`).

use std::fmt;

use hourglass_model::codec::HEADER_LEN;
use hourglass_model::{BatchId, DecodeError, MAX_BATCH_BYTES, peek_header};
use hourglass_pki::{EdgeName, InvalidEdgeName, MAX_EDGE_NAME_LEN};

/// First four bytes of every request and response.
pub const MAGIC: [u8; 4] = *b"HGQ\0";
/// The protocol version this release speaks (a peer on another version is
/// refused, with the version in the error).
pub const PROTOCOL_VERSION: u16 = 1;
/// The TLS ALPN protocol name; it carries the version too.
pub const ALPN: &[u8] = b"hourglass/1";

/// Smallest payload: a batch file header.
pub const MIN_PAYLOAD_LEN: u32 = HEADER_LEN as u32;
/// Largest payload: the largest batch file `hourglass_model` will read.
pub const MAX_PAYLOAD_LEN: u32 = HEADER_LEN as u32 + MAX_BATCH_BYTES;
/// Longest Reject message; longer ones are cut at a character boundary.
pub const MAX_REJECT_MESSAGE_LEN: usize = 1024;

/// The bytes every request starts with: magic, version, kind, one more.
pub const PREFIX_LEN: usize = 8;
const KIND_REQUEST: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_BUSY: u8 = 3;
const KIND_REJECT: u8 = 4;

/// Longest request head (everything before the payload).
pub const MAX_REQUEST_HEAD_LEN: usize = PREFIX_LEN + MAX_EDGE_NAME_LEN + 8 + 4;
/// Longest response: a Reject with the longest message.
pub const MAX_RESPONSE_LEN: usize = PREFIX_LEN - 1 + 2 + 2 + MAX_REJECT_MESSAGE_LEN;

/// One decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub batch_id: BatchId,
    /// The batch file bytes, exactly as the edge sent them.
    pub payload: Vec<u8>,
}

/// Everything before the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub batch_id: BatchId,
    pub payload_len: u32,
}

/// Central's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The batch is durable at central; the edge may delete it.
    Ack { batch_id: BatchId },
    /// Central cannot take it now; send it again after the wait.
    Busy { retry_after_ms: u32 },
    /// Central will never take this request as sent; retrying the same
    /// bytes will not help.
    Reject {
        reason: RejectReason,
        message: String,
    },
}

/// Why a request was rejected: a stable code on the wire and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The request bytes do not follow this protocol.
    Malformed,
    /// The batch id names another edge than the client certificate.
    EdgeMismatch,
    /// The payload is not a valid batch file (checksum, decode, header id).
    InvalidBatch,
    /// Control: no blob has the SHA-256 the edge asked for.
    NotFound,
    /// Control: central has no state to give yet (its metadata is not
    /// readable); ask again later.
    Unavailable,
    /// Control: this central does not serve the control channel.
    Unsupported,
    /// A code this release does not know (sent by a newer central).
    Other(u16),
}

impl RejectReason {
    pub fn from_code(code: u16) -> Self {
        match code {
            1 => RejectReason::Malformed,
            2 => RejectReason::EdgeMismatch,
            3 => RejectReason::InvalidBatch,
            4 => RejectReason::NotFound,
            5 => RejectReason::Unavailable,
            6 => RejectReason::Unsupported,
            other => RejectReason::Other(other),
        }
    }

    pub fn code(self) -> u16 {
        match self {
            RejectReason::Malformed => 1,
            RejectReason::EdgeMismatch => 2,
            RejectReason::InvalidBatch => 3,
            RejectReason::NotFound => 4,
            RejectReason::Unavailable => 5,
            RejectReason::Unsupported => 6,
            RejectReason::Other(code) => code,
        }
    }

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::EdgeMismatch => "edge_mismatch",
            RejectReason::InvalidBatch => "invalid_batch",
            RejectReason::NotFound => "not_found",
            RejectReason::Unavailable => "unavailable",
            RejectReason::Unsupported => "unsupported",
            RejectReason::Other(_) => "other",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Other(code) => write!(f, "other ({code})"),
            known => f.write_str(known.as_str()),
        }
    }
}

/// Why bytes are not a valid request or response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not an Hourglass transport frame: the first bytes are not the magic \"HGQ\\0\"")]
    BadMagic,
    #[error(
        "transport protocol version {found} is not supported: this release speaks version {supported}; run the same release on edge and central"
    )]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("expected a {expected} frame, got frame kind {found}")]
    UnexpectedKind { found: u8, expected: &'static str },
    #[error("the batch id's edge name is invalid: {0}")]
    BadEdgeName(#[from] InvalidEdgeName),
    #[error("payload length {declared} is outside {min}..={max} bytes")]
    PayloadLength { declared: u64, min: u64, max: u64 },
    #[error("the payload is not a batch file: {0}")]
    Batch(#[from] DecodeError),
    #[error(
        "the request declares a {request}-byte payload but the batch file header declares {batch} bytes"
    )]
    PayloadLengthMismatch { request: u64, batch: u64 },
    #[error("the stream ended after {got} bytes, before the {needed} bytes the frame needs")]
    Truncated { needed: u64, got: u64 },
    #[error("{extra} bytes follow the frame; a stream carries exactly one")]
    TrailingBytes { extra: u64 },
    #[error("the reject message is {len} bytes, over the {max}-byte cap")]
    MessageTooLong { len: u64, max: u64 },
    #[error("the reject message is not UTF-8")]
    MessageNotUtf8,
    #[error("the request reader was used after it reported an error")]
    ReaderFailed,
    #[error("control request: bad {field} ({value})")]
    BadControlField { field: &'static str, value: u64 },
}

/// Why a frame could not be encoded (a local mistake, caught before
/// anything is sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot send batch: {0}")]
    BadEdgeName(#[from] InvalidEdgeName),
    #[error(
        "cannot send a {len}-byte payload: a batch file is {min}..={max} bytes; close batches sooner"
    )]
    PayloadLength { len: u64, min: u64, max: u64 },
    #[error("cannot send the payload: it is not a batch file ({0}); send what encode_batch wrote")]
    NotABatch(#[source] DecodeError),
    #[error(
        "cannot send the payload: it is {len} bytes but its batch header says {batch}; it was cut or padded"
    )]
    PayloadLengthMismatch { len: u64, batch: u64 },
    #[error("cannot send a {len}-byte control answer: the cap is {max} bytes")]
    ControlTooLarge { len: u64, max: u64 },
}

/// Checks that `payload` is a plausible batch file of exactly its length.
fn check_payload(payload: &[u8]) -> Result<u32, EncodeError> {
    let len = payload.len() as u64;
    let in_range = (u64::from(MIN_PAYLOAD_LEN)..=u64::from(MAX_PAYLOAD_LEN)).contains(&len);
    let len32 = u32::try_from(len)
        .ok()
        .filter(|_| in_range)
        .ok_or(EncodeError::PayloadLength {
            len,
            min: MIN_PAYLOAD_LEN.into(),
            max: MAX_PAYLOAD_LEN.into(),
        })?;
    let header = peek_header(payload).map_err(EncodeError::NotABatch)?;
    if header.frame_len() != len {
        return Err(EncodeError::PayloadLengthMismatch {
            len,
            batch: header.frame_len(),
        });
    }
    Ok(len32)
}

/// Encodes everything before the payload; the caller sends `payload` right
/// after it. Checks the id and the payload's batch header first, so a bad
/// batch fails here rather than as a Reject.
pub fn encode_request_head(batch_id: &BatchId, payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let edge = EdgeName::new(batch_id.edge_id.as_str())?;
    let payload_len = check_payload(payload)?;
    let mut out = Vec::with_capacity(MAX_REQUEST_HEAD_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.push(KIND_REQUEST);
    put_batch_id(&mut out, &edge, batch_id.seq);
    out.extend_from_slice(&payload_len.to_le_bytes());
    Ok(out)
}

/// Encodes a whole request (head and payload) in one buffer.
pub fn encode_request(batch_id: &BatchId, payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let mut out = encode_request_head(batch_id, payload)?;
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decodes a whole request that must span all of `bytes`, with the same
/// checks and errors as [`RequestReader`].
pub fn decode_request(bytes: &[u8]) -> Result<Request, FrameError> {
    let mut reader = RequestReader::new();
    let mut rest = bytes;
    while !reader.is_complete() {
        if rest.is_empty() {
            return Err(reader.truncated());
        }
        let want = reader.unfilled();
        let n = want.len().min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        want.get_mut(..n)
            .ok_or(FrameError::ReaderFailed)?
            .copy_from_slice(chunk);
        rest = tail;
        reader.advance(n)?;
    }
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes {
            extra: rest.len() as u64,
        });
    }
    reader.into_request()
}

/// Reads one request incrementally, without IO: the caller fills
/// [`RequestReader::unfilled`] from its stream and reports how much with
/// [`RequestReader::advance`], until [`RequestReader::is_complete`]. The
/// head is available ([`RequestReader::head`]) before the payload is read,
/// so a request can be refused without receiving its payload.
#[derive(Debug)]
pub struct RequestReader {
    stage: Stage,
    /// The head so far (stages up to `Head`), then the payload.
    buf: Vec<u8>,
    filled: usize,
    /// Bytes consumed in earlier stages, for error messages.
    consumed: u64,
}

#[derive(Debug)]
enum Stage {
    /// Magic, version, kind, edge name length.
    Prefix,
    /// Edge name, sequence, payload length.
    Head {
        edge_len: usize,
    },
    /// The batch file's own header, checked before the rest is buffered.
    PayloadHeader {
        head: RequestHead,
    },
    /// The rest of the batch file.
    Payload {
        head: RequestHead,
    },
    Complete {
        head: RequestHead,
    },
    Failed,
}

impl Default for RequestReader {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestReader {
    pub fn new() -> Self {
        RequestReader {
            stage: Stage::Prefix,
            buf: vec![0; PREFIX_LEN],
            filled: 0,
            consumed: 0,
        }
    }

    /// Where the next bytes go. Never longer than what the current stage
    /// needs, so the caller never reads past the request; empty once the
    /// request is complete (or after an error).
    pub fn unfilled(&mut self) -> &mut [u8] {
        match self.stage {
            Stage::Complete { .. } | Stage::Failed => &mut [],
            _ => self.buf.get_mut(self.filled..).unwrap_or_default(),
        }
    }

    /// Records that `n` bytes of [`RequestReader::unfilled`] were written,
    /// and checks each part of the request as soon as it is whole.
    pub fn advance(&mut self, n: usize) -> Result<(), FrameError> {
        if matches!(self.stage, Stage::Failed) {
            return Err(FrameError::ReaderFailed);
        }
        let room = self.buf.len() - self.filled.min(self.buf.len());
        debug_assert!(n <= room, "advance({n}) past the {room} unfilled bytes");
        self.filled += n.min(room);
        if self.filled < self.buf.len() {
            return Ok(());
        }
        match self.step() {
            Ok(()) => Ok(()),
            Err(err) => {
                self.stage = Stage::Failed;
                Err(err)
            }
        }
    }

    /// The request head, once it has been read and checked.
    pub fn head(&self) -> Option<&RequestHead> {
        match &self.stage {
            Stage::PayloadHeader { head } | Stage::Payload { head } | Stage::Complete { head } => {
                Some(head)
            }
            Stage::Prefix | Stage::Head { .. } | Stage::Failed => None,
        }
    }

    pub fn is_complete(&self) -> bool {
        matches!(self.stage, Stage::Complete { .. })
    }

    /// Total bytes taken so far.
    pub fn bytes_read(&self) -> u64 {
        self.consumed + self.filled as u64
    }

    /// The error for a stream that ended now.
    pub fn truncated(&self) -> FrameError {
        let needed = match &self.stage {
            Stage::PayloadHeader { head } | Stage::Payload { head } => {
                self.consumed + u64::from(head.payload_len)
            }
            _ => self.consumed + self.buf.len() as u64,
        };
        FrameError::Truncated {
            needed,
            got: self.bytes_read(),
        }
    }

    /// The finished request; [`FrameError::Truncated`] if it is not.
    pub fn into_request(self) -> Result<Request, FrameError> {
        match self.stage {
            Stage::Complete { head } => Ok(Request {
                batch_id: head.batch_id,
                payload: self.buf,
            }),
            Stage::Failed => Err(FrameError::ReaderFailed),
            _ => Err(self.truncated()),
        }
    }

    /// The current stage's buffer is full: check it and set up the next.
    fn step(&mut self) -> Result<(), FrameError> {
        match std::mem::replace(&mut self.stage, Stage::Failed) {
            Stage::Prefix => {
                let edge_len = usize::from(check_prefix(&self.buf, KIND_REQUEST, "request")?);
                if !(1..=MAX_EDGE_NAME_LEN).contains(&edge_len) {
                    return Err(FrameError::BadEdgeName(InvalidEdgeName {
                        name: format!("<{edge_len} bytes>"),
                    }));
                }
                self.next_stage(Stage::Head { edge_len }, edge_len + 8 + 4);
            }
            Stage::Head { edge_len } => {
                let mut rest = self.buf.as_slice();
                let batch_id = take_batch_id(&mut rest, edge_len)?;
                let payload_len = take_u32(&mut rest).ok_or(FrameError::ReaderFailed)?;
                if !(MIN_PAYLOAD_LEN..=MAX_PAYLOAD_LEN).contains(&payload_len) {
                    return Err(FrameError::PayloadLength {
                        declared: payload_len.into(),
                        min: MIN_PAYLOAD_LEN.into(),
                        max: MAX_PAYLOAD_LEN.into(),
                    });
                }
                let head = RequestHead {
                    batch_id,
                    payload_len,
                };
                self.next_stage(Stage::PayloadHeader { head }, HEADER_LEN);
            }
            Stage::PayloadHeader { head } => {
                let batch = peek_header(&self.buf)?.frame_len();
                if batch != u64::from(head.payload_len) {
                    return Err(FrameError::PayloadLengthMismatch {
                        request: head.payload_len.into(),
                        batch,
                    });
                }
                // Checked above: payload_len is at most MAX_PAYLOAD_LEN and
                // agrees with the batch file's own capped header.
                let len = head.payload_len as usize;
                self.stage = if len == HEADER_LEN {
                    Stage::Complete { head }
                } else {
                    Stage::Payload { head }
                };
                self.buf.resize(len, 0);
            }
            Stage::Payload { head } => self.stage = Stage::Complete { head },
            Stage::Complete { .. } | Stage::Failed => return Err(FrameError::ReaderFailed),
        }
        Ok(())
    }

    fn next_stage(&mut self, stage: Stage, len: usize) {
        self.consumed += self.buf.len() as u64;
        self.stage = stage;
        self.buf.clear();
        self.buf.resize(len, 0);
        self.filled = 0;
    }
}

/// Encodes a response.
pub fn encode_response(response: &Response) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    match response {
        Response::Ack { batch_id } => {
            let edge = EdgeName::new(batch_id.edge_id.as_str())?;
            out.push(KIND_ACK);
            put_batch_id(&mut out, &edge, batch_id.seq);
        }
        Response::Busy { retry_after_ms } => {
            out.push(KIND_BUSY);
            out.extend_from_slice(&retry_after_ms.to_le_bytes());
        }
        Response::Reject { reason, message } => {
            out.push(KIND_REJECT);
            out.extend_from_slice(&reason.code().to_le_bytes());
            let message = truncate_at_char(message, MAX_REJECT_MESSAGE_LEN);
            // At most MAX_REJECT_MESSAGE_LEN, which fits in u16.
            out.extend_from_slice(&(message.len() as u16).to_le_bytes());
            out.extend_from_slice(message.as_bytes());
        }
    }
    Ok(out)
}

/// Decodes a response that must span all of `bytes`.
pub fn decode_response(bytes: &[u8]) -> Result<Response, FrameError> {
    let truncated = |needed: usize| FrameError::Truncated {
        needed: needed as u64,
        got: bytes.len() as u64,
    };
    let prefix = bytes.get(..PREFIX_LEN - 1).ok_or_else(|| {
        // Report a wrong magic even on a short response.
        if bytes.iter().zip(MAGIC).any(|(&got, want)| got != want) {
            FrameError::BadMagic
        } else {
            truncated(PREFIX_LEN - 1)
        }
    })?;
    check_magic_version(prefix)?;
    let kind = prefix
        .get(6)
        .copied()
        .ok_or_else(|| truncated(PREFIX_LEN - 1))?;
    let mut rest = bytes.get(PREFIX_LEN - 1..).unwrap_or_default();
    let response = match kind {
        KIND_ACK => {
            let edge_len = usize::from(take_u8(&mut rest).ok_or_else(|| truncated(PREFIX_LEN))?);
            if !(1..=MAX_EDGE_NAME_LEN).contains(&edge_len) {
                return Err(FrameError::BadEdgeName(InvalidEdgeName {
                    name: format!("<{edge_len} bytes>"),
                }));
            }
            if rest.len() < edge_len + 8 {
                return Err(truncated(PREFIX_LEN + edge_len + 8));
            }
            let batch_id = take_batch_id(&mut rest, edge_len)?;
            Response::Ack { batch_id }
        }
        KIND_BUSY => {
            let retry_after_ms =
                take_u32(&mut rest).ok_or_else(|| truncated(PREFIX_LEN - 1 + 4))?;
            Response::Busy { retry_after_ms }
        }
        KIND_REJECT => {
            let code = take_u16(&mut rest).ok_or_else(|| truncated(PREFIX_LEN - 1 + 2))?;
            let len =
                usize::from(take_u16(&mut rest).ok_or_else(|| truncated(PREFIX_LEN - 1 + 4))?);
            if len > MAX_REJECT_MESSAGE_LEN {
                return Err(FrameError::MessageTooLong {
                    len: len as u64,
                    max: MAX_REJECT_MESSAGE_LEN as u64,
                });
            }
            let message =
                take(&mut rest, len).ok_or_else(|| truncated(PREFIX_LEN - 1 + 4 + len))?;
            let message = std::str::from_utf8(message)
                .map_err(|_| FrameError::MessageNotUtf8)?
                .to_owned();
            Response::Reject {
                reason: RejectReason::from_code(code),
                message,
            }
        }
        found => {
            return Err(FrameError::UnexpectedKind {
                found,
                expected: "response",
            });
        }
    };
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes {
            extra: rest.len() as u64,
        });
    }
    Ok(response)
}

fn check_magic_version(bytes: &[u8]) -> Result<(), FrameError> {
    let mut rest = bytes;
    if take(&mut rest, MAGIC.len()) != Some(MAGIC.as_slice()) {
        return Err(FrameError::BadMagic);
    }
    let version = take_u16(&mut rest).ok_or(FrameError::Truncated {
        needed: 6,
        got: bytes.len() as u64,
    })?;
    if version != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion {
            found: version,
            supported: PROTOCOL_VERSION,
        });
    }
    Ok(())
}

/// Checks magic, version and kind of an 8-byte prefix; returns byte 7.
fn check_prefix(prefix: &[u8], kind: u8, expected: &'static str) -> Result<u8, FrameError> {
    check_magic_version(prefix)?;
    match prefix.get(6..8) {
        Some(&[found, _]) if found != kind => Err(FrameError::UnexpectedKind { found, expected }),
        Some(&[_, last]) => Ok(last),
        _ => Err(FrameError::ReaderFailed),
    }
}

fn put_batch_id(out: &mut Vec<u8>, edge: &EdgeName, seq: u64) {
    // EdgeName is at most MAX_EDGE_NAME_LEN (64) bytes.
    out.push(edge.as_str().len() as u8);
    out.extend_from_slice(edge.as_str().as_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
}

fn take_batch_id(rest: &mut &[u8], edge_len: usize) -> Result<BatchId, FrameError> {
    let edge = take(rest, edge_len).ok_or(FrameError::ReaderFailed)?;
    let edge = std::str::from_utf8(edge).map_err(|_| InvalidEdgeName {
        name: String::from_utf8_lossy(edge).into_owned(),
    })?;
    let edge = EdgeName::new(edge)?;
    let seq = take_u64(rest).ok_or(FrameError::ReaderFailed)?;
    Ok(BatchId {
        edge_id: edge.into_string(),
        seq,
    })
}

fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let end = (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    s.get(..end).unwrap_or_default()
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

fn take_u8(rest: &mut &[u8]) -> Option<u8> {
    let (head, tail) = rest.split_first()?;
    *rest = tail;
    Some(*head)
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

fn take_u64(rest: &mut &[u8]) -> Option<u64> {
    let (head, tail) = rest.split_first_chunk::<8>()?;
    *rest = tail;
    Some(u64::from_le_bytes(*head))
}

// ---------------------------------------------------------------------------
// The control channel: what central tells edges (site directory, plugin
// chains, plugin blobs), on streams of their own on the same connection.

/// Request kind: the edge asks for the control state.
const KIND_SYNC: u8 = 5;
/// Request kind: the edge asks for one plugin blob.
const KIND_BLOB: u8 = 6;
/// Response kind: the control state, with its version.
const KIND_STATE: u8 = 7;
/// Response kind: the edge has the current version already.
const KIND_UNCHANGED: u8 = 8;
/// Response kind: a plugin blob's bytes.
const KIND_BLOB_DATA: u8 = 9;

/// Largest control state body (JSON).
pub const MAX_STATE_LEN: u32 = 16 << 20;
/// Largest plugin blob (a component or a data file).
pub const MAX_BLOB_LEN: u32 = 64 << 20;
/// Length of a Sync request.
pub const SYNC_REQUEST_LEN: usize = PREFIX_LEN + 8;
/// Length of a Blob request.
pub const BLOB_REQUEST_LEN: usize = PREFIX_LEN + 32;
/// Longest control response: a blob of the largest size.
pub const MAX_CONTROL_RESPONSE_LEN: usize = PREFIX_LEN - 1 + 4 + MAX_BLOB_LEN as usize;

/// An edge's control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRequest {
    /// The state, unless the edge has `have_version` already (0: none).
    Sync { have_version: u64 },
    /// The blob whose SHA-256 is `sha256`.
    Blob { sha256: [u8; 32] },
}

/// Central's answer to a control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlResponse {
    /// The current state (JSON, see `hourglass_processing::ControlState`).
    State { version: u64, body: Vec<u8> },
    /// The edge's version is current.
    Unchanged { version: u64 },
    /// The blob's bytes, unverified: the edge checks them against the
    /// SHA-256 it asked for.
    Blob { bytes: Vec<u8> },
    /// Central cannot answer (no such blob, no state yet, control off).
    Reject {
        reason: RejectReason,
        message: String,
    },
}

/// What kind of stream a request prefix opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// A batch (the [`RequestReader`] reads it).
    Batch,
    /// A control request of this many bytes in all.
    Control { len: usize },
}

/// Reads the first [`PREFIX_LEN`] bytes of a request stream: magic,
/// version and kind. A stream is a batch or a control request.
pub fn stream_kind(prefix: &[u8]) -> Result<StreamKind, FrameError> {
    check_magic_version(prefix)?;
    match prefix.get(6).copied() {
        Some(KIND_REQUEST) => Ok(StreamKind::Batch),
        Some(KIND_SYNC) => Ok(StreamKind::Control {
            len: SYNC_REQUEST_LEN,
        }),
        Some(KIND_BLOB) => Ok(StreamKind::Control {
            len: BLOB_REQUEST_LEN,
        }),
        Some(found) => Err(FrameError::UnexpectedKind {
            found,
            expected: "request",
        }),
        None => Err(FrameError::Truncated {
            needed: PREFIX_LEN as u64,
            got: prefix.len() as u64,
        }),
    }
}

/// Encodes a control request (16 or 40 bytes).
pub fn encode_control_request(request: &ControlRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOB_REQUEST_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    match request {
        ControlRequest::Sync { have_version } => {
            out.push(KIND_SYNC);
            out.push(0);
            out.extend_from_slice(&have_version.to_le_bytes());
        }
        ControlRequest::Blob { sha256 } => {
            out.push(KIND_BLOB);
            out.push(32);
            out.extend_from_slice(sha256);
        }
    }
    out
}

/// Decodes a control request that must span all of `bytes`.
pub fn decode_control_request(bytes: &[u8]) -> Result<ControlRequest, FrameError> {
    let truncated = |needed: usize| FrameError::Truncated {
        needed: needed as u64,
        got: bytes.len() as u64,
    };
    let prefix = bytes.get(..PREFIX_LEN).ok_or_else(|| {
        if bytes.iter().zip(MAGIC).any(|(&got, want)| got != want) {
            FrameError::BadMagic
        } else {
            truncated(PREFIX_LEN)
        }
    })?;
    let StreamKind::Control { len } = stream_kind(prefix)? else {
        return Err(FrameError::UnexpectedKind {
            found: KIND_REQUEST,
            expected: "control request",
        });
    };
    if bytes.len() < len {
        return Err(truncated(len));
    }
    if bytes.len() > len {
        return Err(FrameError::TrailingBytes {
            extra: (bytes.len() - len) as u64,
        });
    }
    let mut rest = bytes.get(PREFIX_LEN..).unwrap_or_default();
    match (prefix.get(6).copied(), prefix.get(7).copied()) {
        (Some(KIND_SYNC), Some(0)) => Ok(ControlRequest::Sync {
            have_version: take_u64(&mut rest).ok_or_else(|| truncated(len))?,
        }),
        (Some(KIND_BLOB), Some(32)) => {
            let (sha256, _) = rest
                .split_first_chunk::<32>()
                .ok_or_else(|| truncated(len))?;
            Ok(ControlRequest::Blob { sha256: *sha256 })
        }
        (_, found) => Err(FrameError::BadControlField {
            field: "reserved byte",
            value: u64::from(found.unwrap_or_default()),
        }),
    }
}

/// Encodes a control response; refuses bodies over their caps.
pub fn encode_control_response(response: &ControlResponse) -> Result<Vec<u8>, EncodeError> {
    let sized = |len: usize, max: u32| {
        u32::try_from(len)
            .ok()
            .filter(|&n| n <= max)
            .ok_or(EncodeError::ControlTooLarge {
                len: len as u64,
                max: max.into(),
            })
    };
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    match response {
        ControlResponse::State { version, body } => {
            let len = sized(body.len(), MAX_STATE_LEN)?;
            out.reserve(12 + body.len());
            out.push(KIND_STATE);
            out.extend_from_slice(&version.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(body);
        }
        ControlResponse::Unchanged { version } => {
            out.push(KIND_UNCHANGED);
            out.extend_from_slice(&version.to_le_bytes());
        }
        ControlResponse::Blob { bytes } => {
            let len = sized(bytes.len(), MAX_BLOB_LEN)?;
            out.reserve(4 + bytes.len());
            out.push(KIND_BLOB_DATA);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(bytes);
        }
        ControlResponse::Reject { reason, message } => {
            return encode_response(&Response::Reject {
                reason: *reason,
                message: message.clone(),
            });
        }
    }
    Ok(out)
}

/// Decodes a control response that must span all of `bytes`.
pub fn decode_control_response(bytes: &[u8]) -> Result<ControlResponse, FrameError> {
    let truncated = |needed: u64| FrameError::Truncated {
        needed,
        got: bytes.len() as u64,
    };
    let head = PREFIX_LEN - 1;
    let prefix = bytes.get(..head).ok_or_else(|| {
        if bytes.iter().zip(MAGIC).any(|(&got, want)| got != want) {
            FrameError::BadMagic
        } else {
            truncated(head as u64)
        }
    })?;
    check_magic_version(prefix)?;
    let mut rest = bytes.get(head..).unwrap_or_default();
    let body = |rest: &mut &[u8], at: usize, max: u32| -> Result<Vec<u8>, FrameError> {
        let len = take_u32(rest).ok_or_else(|| truncated(at as u64 + 4))?;
        if len > max {
            return Err(FrameError::PayloadLength {
                declared: len.into(),
                min: 0,
                max: max.into(),
            });
        }
        let len = len as usize;
        take(rest, len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| truncated((at + 4 + len) as u64))
    };
    let response = match prefix.get(6).copied() {
        Some(KIND_STATE) => {
            let version = take_u64(&mut rest).ok_or_else(|| truncated(head as u64 + 8))?;
            let body = body(&mut rest, head + 8, MAX_STATE_LEN)?;
            ControlResponse::State { version, body }
        }
        Some(KIND_UNCHANGED) => ControlResponse::Unchanged {
            version: take_u64(&mut rest).ok_or_else(|| truncated(head as u64 + 8))?,
        },
        Some(KIND_BLOB_DATA) => ControlResponse::Blob {
            bytes: body(&mut rest, head, MAX_BLOB_LEN)?,
        },
        Some(KIND_REJECT) => {
            return match decode_response(bytes)? {
                Response::Reject { reason, message } => {
                    Ok(ControlResponse::Reject { reason, message })
                }
                _ => Err(FrameError::ReaderFailed),
            };
        }
        found => {
            return Err(FrameError::UnexpectedKind {
                found: found.unwrap_or_default(),
                expected: "control response",
            });
        }
    };
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes {
            extra: rest.len() as u64,
        });
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use hourglass_model::{Batch, BatchHeader, encode_batch};
    use proptest::prelude::*;

    use super::*;

    fn id(edge: &str, seq: u64) -> BatchId {
        BatchId {
            edge_id: edge.into(),
            seq,
        }
    }

    fn batch_file(edge: &str, seq: u64) -> Vec<u8> {
        encode_batch(&Batch {
            header: Some(BatchHeader {
                id: Some(id(edge, seq)),
                plugin_set: "v1".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn request_round_trips() {
        let payload = batch_file("fra-1", 7);
        let bytes = encode_request(&id("fra-1", 7), &payload).expect("encodes");
        assert_eq!(&bytes[..4], b"HGQ\0");
        assert_eq!(
            decode_request(&bytes),
            Ok(Request {
                batch_id: id("fra-1", 7),
                payload,
            })
        );
    }

    #[test]
    fn request_layout_is_as_documented() {
        let payload = batch_file("ab", 1);
        let bytes = encode_request(&id("ab", 0x0102), &payload).expect("encodes");
        let mut expected = b"HGQ\0".to_vec();
        expected.extend_from_slice(&[1, 0, 1, 2, b'a', b'b']);
        expected.extend_from_slice(&0x0102u64.to_le_bytes());
        expected.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        expected.extend_from_slice(&payload);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn reader_exposes_the_head_before_the_payload() {
        let payload = batch_file("e", 1);
        let bytes = encode_request(&id("e", 1), &payload).expect("encodes");
        let mut reader = RequestReader::new();
        let mut offset = 0;
        while reader.head().is_none() {
            let want = reader.unfilled();
            let n = want.len();
            want.copy_from_slice(&bytes[offset..offset + n]);
            offset += n;
            reader.advance(n).expect("valid head");
        }
        assert_eq!(
            offset,
            8 + 1 + 8 + 4,
            "the head is read, not a payload byte"
        );
        assert_eq!(
            reader.head(),
            Some(&RequestHead {
                batch_id: id("e", 1),
                payload_len: payload.len() as u32
            })
        );
        assert!(
            matches!(reader.truncated(), FrameError::Truncated { needed, got }
            if needed == bytes.len() as u64 && got == offset as u64)
        );
    }

    #[test]
    fn request_errors_name_the_problem() {
        let payload = batch_file("e", 1);
        let good = encode_request(&id("e", 1), &payload).expect("encodes");
        let with = |offset: usize, bytes: &[u8]| {
            let mut frame = good.clone();
            frame[offset..offset + bytes.len()].copy_from_slice(bytes);
            decode_request(&frame)
        };
        assert_eq!(with(0, b"HTTP"), Err(FrameError::BadMagic));
        assert_eq!(
            with(4, &[2, 0]),
            Err(FrameError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        );
        assert_eq!(
            with(6, &[KIND_ACK]),
            Err(FrameError::UnexpectedKind {
                found: KIND_ACK,
                expected: "request"
            })
        );
        assert!(matches!(with(7, &[0]), Err(FrameError::BadEdgeName(_))));
        assert!(matches!(with(7, &[65]), Err(FrameError::BadEdgeName(_))));
        assert!(matches!(with(8, b"/"), Err(FrameError::BadEdgeName(_))));
        assert!(matches!(
            with(17, &(MAX_PAYLOAD_LEN + 1).to_le_bytes()),
            Err(FrameError::PayloadLength { .. })
        ));
        assert!(matches!(
            with(17, &3u32.to_le_bytes()),
            Err(FrameError::PayloadLength { .. })
        ));
        assert!(matches!(
            with(21, b"XXXX"),
            Err(FrameError::Batch(DecodeError::BadMagic))
        ));
        assert!(matches!(
            with(17, &(payload.len() as u32 + 1).to_le_bytes()),
            Err(FrameError::PayloadLengthMismatch { .. })
        ));
        assert!(matches!(
            decode_request(&good[..good.len() - 1]),
            Err(FrameError::Truncated { .. })
        ));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            decode_request(&long),
            Err(FrameError::TrailingBytes { extra: 1 })
        );
        assert!(matches!(
            decode_request(&[]),
            Err(FrameError::Truncated { needed: 8, got: 0 })
        ));
    }

    #[test]
    fn encoder_refuses_what_the_decoder_would() {
        let payload = batch_file("e", 1);
        assert!(matches!(
            encode_request(&id("no/slash", 1), &payload),
            Err(EncodeError::BadEdgeName(_))
        ));
        assert!(matches!(
            encode_request(&id("e", 1), &payload[..10]),
            Err(EncodeError::PayloadLength { .. })
        ));
        assert!(matches!(
            encode_request(&id("e", 1), &payload[..payload.len() - 1]),
            Err(EncodeError::PayloadLengthMismatch { .. })
        ));
        assert!(matches!(
            encode_request(&id("e", 1), &[0u8; 40]),
            Err(EncodeError::NotABatch(_))
        ));
    }

    #[test]
    fn responses_round_trip() {
        for response in [
            Response::Ack {
                batch_id: id("fra-1", u64::MAX),
            },
            Response::Busy {
                retry_after_ms: 1500,
            },
            Response::Reject {
                reason: RejectReason::EdgeMismatch,
                message: "batch names edge b, certificate says a".into(),
            },
            Response::Reject {
                reason: RejectReason::Other(900),
                message: String::new(),
            },
        ] {
            let bytes = encode_response(&response).expect("encodes");
            assert!(bytes.len() <= MAX_RESPONSE_LEN);
            assert_eq!(decode_response(&bytes), Ok(response));
        }
    }

    #[test]
    fn long_reject_messages_are_cut_at_a_character() {
        let message = "é".repeat(MAX_REJECT_MESSAGE_LEN);
        let bytes = encode_response(&Response::Reject {
            reason: RejectReason::InvalidBatch,
            message,
        })
        .expect("encodes");
        assert_eq!(bytes.len(), MAX_RESPONSE_LEN);
        let Ok(Response::Reject { message, .. }) = decode_response(&bytes) else {
            panic!("decodes as a reject");
        };
        assert_eq!(message, "é".repeat(MAX_REJECT_MESSAGE_LEN / 2));
    }

    #[test]
    fn response_errors_name_the_problem() {
        let ack = encode_response(&Response::Ack {
            batch_id: id("e", 1),
        })
        .expect("encodes");
        assert_eq!(decode_response(b"HTT"), Err(FrameError::BadMagic));
        assert!(matches!(
            decode_response(&ack[..3]),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            decode_response(&ack[..ack.len() - 1]),
            Err(FrameError::Truncated { .. })
        ));
        let mut long = ack.clone();
        long.push(1);
        assert_eq!(
            decode_response(&long),
            Err(FrameError::TrailingBytes { extra: 1 })
        );
        let mut request_kind = ack.clone();
        request_kind[6] = KIND_REQUEST;
        assert!(matches!(
            decode_response(&request_kind),
            Err(FrameError::UnexpectedKind { .. })
        ));
        let mut reject = encode_response(&Response::Reject {
            reason: RejectReason::Malformed,
            message: "ab".into(),
        })
        .expect("encodes");
        let n = reject.len();
        reject[n - 2] = 0xff;
        assert_eq!(decode_response(&reject), Err(FrameError::MessageNotUtf8));
        reject[9..11].copy_from_slice(&2000u16.to_le_bytes());
        assert!(matches!(
            decode_response(&reject),
            Err(FrameError::MessageTooLong { .. })
        ));
    }

    fn arb_batch_id() -> impl Strategy<Value = BatchId> {
        ("[A-Za-z0-9_-]{1,64}", any::<u64>()).prop_map(|(edge_id, seq)| BatchId { edge_id, seq })
    }

    fn arb_response() -> impl Strategy<Value = Response> {
        prop_oneof![
            arb_batch_id().prop_map(|batch_id| Response::Ack { batch_id }),
            any::<u32>().prop_map(|retry_after_ms| Response::Busy { retry_after_ms }),
            (any::<u16>(), ".{0,300}").prop_map(|(code, message)| Response::Reject {
                reason: RejectReason::from_code(code),
                message: truncate_at_char(&message, MAX_REJECT_MESSAGE_LEN).to_owned(),
            }),
        ]
    }

    #[test]
    fn control_requests_round_trip_and_are_checked() {
        for request in [
            ControlRequest::Sync { have_version: 0 },
            ControlRequest::Sync {
                have_version: u64::MAX,
            },
            ControlRequest::Blob { sha256: [7; 32] },
        ] {
            let bytes = encode_control_request(&request);
            let kind = stream_kind(&bytes[..PREFIX_LEN]).expect("a control prefix");
            assert_eq!(kind, StreamKind::Control { len: bytes.len() });
            assert_eq!(decode_control_request(&bytes), Ok(request));
            assert!(matches!(
                decode_control_request(&bytes[..bytes.len() - 1]),
                Err(FrameError::Truncated { .. })
            ));
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(
                decode_control_request(&long),
                Err(FrameError::TrailingBytes { extra: 1 })
            );
        }
        let mut sync = encode_control_request(&ControlRequest::Sync { have_version: 1 });
        assert_eq!(sync.len(), SYNC_REQUEST_LEN);
        sync[7] = 9;
        assert!(matches!(
            decode_control_request(&sync),
            Err(FrameError::BadControlField { .. })
        ));
        let batch = encode_request(&id("e", 1), &batch_file("e", 1)).expect("encodes");
        assert_eq!(stream_kind(&batch[..PREFIX_LEN]), Ok(StreamKind::Batch));
        assert!(matches!(
            decode_control_request(&batch),
            Err(FrameError::UnexpectedKind { .. })
        ));
        assert!(matches!(
            stream_kind(b"HGQ\0\x01\x00\x63\x00"),
            Err(FrameError::UnexpectedKind { found: 0x63, .. })
        ));
        assert_eq!(
            decode_control_request(b"GET / HT"),
            Err(FrameError::BadMagic)
        );
    }

    #[test]
    fn control_responses_round_trip_and_are_bounded() {
        for response in [
            ControlResponse::State {
                version: 42,
                body: br#"{"version":42}"#.to_vec(),
            },
            ControlResponse::Unchanged { version: 42 },
            ControlResponse::Blob {
                bytes: vec![0, 1, 2, 255],
            },
            ControlResponse::Blob { bytes: Vec::new() },
            ControlResponse::Reject {
                reason: RejectReason::NotFound,
                message: "no blob".into(),
            },
        ] {
            let bytes = encode_control_response(&response).expect("encodes");
            assert_eq!(decode_control_response(&bytes), Ok(response.clone()));
            assert!(matches!(
                decode_control_response(&bytes[..bytes.len() - 1]),
                Err(FrameError::Truncated { .. })
            ));
        }
        let too_big = ControlResponse::State {
            version: 1,
            body: vec![b' '; MAX_STATE_LEN as usize + 1],
        };
        assert!(matches!(
            encode_control_response(&too_big),
            Err(EncodeError::ControlTooLarge { .. })
        ));
        // A declared length over the cap is refused before anything is read.
        let mut state = encode_control_response(&ControlResponse::State {
            version: 1,
            body: vec![],
        })
        .expect("encodes");
        state[15..19].copy_from_slice(&(MAX_STATE_LEN + 1).to_le_bytes());
        assert!(matches!(
            decode_control_response(&state),
            Err(FrameError::PayloadLength { .. })
        ));
        let ack = encode_response(&Response::Ack {
            batch_id: id("e", 1),
        })
        .expect("encodes");
        assert!(matches!(
            decode_control_response(&ack),
            Err(FrameError::UnexpectedKind { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
            let _ = decode_control_request(&bytes);
            let _ = decode_control_response(&bytes);
            let _ = stream_kind(&bytes);
        }

        #[test]
        fn garbage_after_a_valid_prefix_never_panics(
            edge in "[a-z]{1,8}",
            tail in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            // Reach the later stages: a valid head, then arbitrary bytes.
            let mut bytes = encode_request_head(&id(&edge, 1), &batch_file(&edge, 1)).expect("encodes");
            bytes.extend_from_slice(&tail);
            let _ = decode_request(&bytes);
            let mut ack = encode_response(&Response::Ack { batch_id: id(&edge, 1) }).expect("encodes");
            ack.truncate(7);
            ack.extend_from_slice(&tail);
            let _ = decode_response(&ack);
        }

        #[test]
        fn requests_round_trip(batch_id in arb_batch_id(), split in any::<prop::sample::Index>()) {
            let payload = batch_file(&batch_id.edge_id, batch_id.seq);
            let bytes = encode_request(&batch_id, &payload).expect("encodes");
            prop_assert_eq!(decode_request(&bytes), Ok(Request { batch_id: batch_id.clone(), payload: payload.clone() }));
            // Any truncation is reported as such, never as another error.
            let cut = split.index(bytes.len());
            let truncated = matches!(decode_request(&bytes[..cut]), Err(FrameError::Truncated { .. }));
            prop_assert!(truncated);
        }

        #[test]
        fn mutated_frames_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            response in arb_response(),
        ) {
            let mut request = encode_request(&id("e", 1), &batch_file("e", 1)).expect("encodes");
            let mut response = encode_response(&response).expect("encodes");
            for (at, value) in &flips {
                let i = at.index(request.len());
                request[i] = *value;
                let j = at.index(response.len());
                response[j] = *value;
            }
            let _ = decode_request(&request);
            let _ = decode_response(&response);
        }

        #[test]
        fn reader_gives_the_same_request_whatever_the_chunking(
            chunks in proptest::collection::vec(1usize..300, 1..50),
        ) {
            // Streams deliver bytes in arbitrary pieces; the result must not depend on them.
            let payload = batch_file("e", 9);
            let bytes = encode_request(&id("e", 9), &payload).expect("encodes");
            let mut reader = RequestReader::new();
            let mut offset = 0;
            let mut sizes = chunks.iter().cycle();
            while !reader.is_complete() {
                let want = reader.unfilled();
                let n = want.len().min(*sizes.next().expect("cycle never ends"));
                want[..n].copy_from_slice(&bytes[offset..offset + n]);
                offset += n;
                prop_assert_eq!(reader.advance(n), Ok(()));
            }
            prop_assert_eq!(offset, bytes.len());
            prop_assert_eq!(reader.into_request(), Ok(Request { batch_id: id("e", 9), payload }));
        }

        #[test]
        fn responses_round_trip_prop(response in arb_response()) {
            let bytes = encode_response(&response).expect("encodes");
            prop_assert!(bytes.len() <= MAX_RESPONSE_LEN);
            prop_assert_eq!(decode_response(&bytes), Ok(response));
        }

        #[test]
        fn mutated_control_frames_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            version in any::<u64>(),
        ) {
            let mut request = encode_control_request(&ControlRequest::Sync { have_version: version });
            let mut blob = encode_control_request(&ControlRequest::Blob { sha256: [1; 32] });
            let mut state = encode_control_response(&ControlResponse::State { version, body: body.clone() }).expect("encodes");
            let mut data = encode_control_response(&ControlResponse::Blob { bytes: body }).expect("encodes");
            for (at, value) in &flips {
                for frame in [&mut request, &mut blob, &mut state, &mut data] {
                    let i = at.index(frame.len());
                    frame[i] = *value;
                }
            }
            let _ = decode_control_request(&request);
            let _ = decode_control_request(&blob);
            let _ = decode_control_response(&state);
            let _ = decode_control_response(&data);
        }
    }
}
