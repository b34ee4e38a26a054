//! Edge → central batch transport: QUIC (quinn) with mutual TLS (rustls on
//! *ring*), one bidirectional stream per batch.
//!
//! Owns:
//! - [`codec`]: the per-stream protocol as plain functions over bytes
//!   (request = magic, version, batch id, length, batch file; response =
//!   Ack / Busy / Reject). Sans IO: no tokio, no quinn, never panics on
//!   input. The layout is in its module doc.
//! - [`endpoint`]: quinn endpoints from PEM files; central requires client
//!   certificates that chain to the project CA and are not on its CRL.
//! - [`client`]: the edge's `send_batch` and `control` requests.
//! - [`server`]: central's accept loop, which takes the edge identity from
//!   the verified certificate, refuses batch ids of other edges, answers
//!   malformed streams with Reject, and hands good ones to a
//!   [`BatchHandler`] — or, for control requests (the edge asking for its
//!   site directory, plugin chains and plugin blobs), to a
//!   [`ControlHandler`].
//!
//! Must not: decide what a batch means or where it goes (the handler
//! archives it; `hourglass_model` decodes it), retry or fail over (the
//! edge's shipper does), or issue certificates (`hourglass_pki` does).
//! Nothing here blocks on disks or reads the clock.

pub mod client;
pub mod codec;
pub mod endpoint;
pub mod server;

pub use client::{Client, SendError};
pub use codec::{
    ALPN, ControlRequest, ControlResponse, FrameError, RejectReason, Request, Response,
};
pub use endpoint::{
    ClientCerts, ServerCerts, SetupError, client_config, client_endpoint, server_config,
    server_endpoint,
};
pub use hourglass_pki::EdgeIdentity;
pub use server::{BatchHandler, ControlHandler, Server, ServerStats, StatsSnapshot, serve};
