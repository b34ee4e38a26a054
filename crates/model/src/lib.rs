//! The canonical `RawHit`, `Event` and `Batch` types, and the batch file
//! encoding every other part of Hourglass speaks (disk buffer, QUIC, archive).
//!
//! This crate owns the wire contract and nothing else: no IO, no async, no
//! clocks. Records are protobuf messages (prost derive, no `protoc`), framed
//! as described in `docs/wire-format.md`.

mod types;

pub use types::*;
