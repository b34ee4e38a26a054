//! `hourglass-archive`: the archive of batch files, central's source of
//! truth, on `object_store` (a local directory by default).
//!
//! Design constraints, in the order they shaped the code:
//! - **Nothing half-written is ever visible**, and an Ack means durable.
//!   Puts go through the backend's staging-then-publish path; on the local
//!   backend that is `LocalFileSystem` with `with_fsync(true)`: write a
//!   staging file, fsync it, hard-link it into place (`PutMode::Create`),
//!   fsync the directory and every directory the put created. Staging files
//!   (`<name>#<n>`) never show in listings.
//! - **Re-sending is always safe**: the key is a function of the batch
//!   (receive hour + batch id), puts never overwrite, and an existing key
//!   with the same bytes is reported as already archived — the receiver
//!   Acks it again without a second copy.
//! - **Keys partition by the hour the edge received the hits**, see
//!   [`receive_hour`] (first raw hit's `received_at`) and the layout in
//!   [`key`]. The loader and `reprocess` list hours, never the whole archive.
//! - **Rejected requests are kept, not dropped**: `quarantine/` holds the
//!   bytes and a JSON reason.
//! - Retention is a sweep by hour ([`Archive::sweep`]); what to keep is the
//!   caller's decision.
//!
//! Must not: decode or judge batches (the receiver does, with
//! `hourglass_model`), know about ClickHouse or the loads ledger, or read
//! the clock (times are passed in).

pub mod key;
mod store;

pub use key::{
    BatchKey, HOUR_MS, Hour, InvalidHour, OutOfRange, PLUGIN_BLOB_PREFIX, is_sha256_hex,
    plugin_blob_key, receive_hour,
};
pub use store::{Archive, ArchiveError, Archived, Quarantine, Stored, SweepReport};

#[cfg(test)]
mod tests;
