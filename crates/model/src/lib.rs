//! The canonical `RawHit`, `Event` and `Batch` types, and the batch file
//! encoding every other part of Hourglass speaks (disk buffer, QUIC, archive).
//!
//! This crate owns the wire contract and nothing else: no IO, no async, no
//! clocks. Records are protobuf messages (prost derive, no `protoc`), framed
//! as described in `docs/wire-format.md`.

pub mod codec;
#[doc(hidden)]
pub mod golden;
mod types;

pub use codec::{
    BatchEvents, DecodeError, EncodeError, FORMAT_VERSION, FrameHeader, MAGIC, MAX_BATCH_BYTES,
    decode_batch, decode_batch_events, encode_batch, peek_header, try_encode_batch,
};
pub use types::*;
