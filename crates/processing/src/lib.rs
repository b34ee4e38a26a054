//! # Processing: `RawHit -> Outcome`
//!
//! The one code path that turns a beacon as it was received (a
//! [`RawHit`](hourglass_model::RawHit)) into warehouse [`Event`]s and counted
//! [`Reject`]s. The edge agent runs it on live traffic and `reprocess` runs it
//! on archived hits, so a reprocessed hour is produced by exactly the same
//! code as the original one.
//!
//! It owns:
//! - [`sites`]: the site directory (domains, allowed hostnames, GA4 streams,
//!   Segment write keys) and its lookups;
//! - [`decode`](mod@decode): the client protocols (Plausible-compatible native API and
//!   pixel, GA4 Measurement Protocol, Segment HTTP API), admission (unknown
//!   site, hostname, credentials), the 72 h event-time rule, and the named
//!   [`RejectReason`]s with their HTTP statuses;
//! - [`identity`]: keyed visitor ids (daily salted hash, or a client/user
//!   id) and the edge's bounded [`SessionTable`];
//! - [`pipeline`]: [`Pipeline::admit`] / [`Pipeline::stamp`] /
//!   [`Pipeline::process`] and the [`PluginChain`] seam for WASM plugins.
//!
//! It must not do IO, spawn tasks or read a clock: time comes in as
//! `received_at_ms` on the hit or as a `now_ms` argument. It does not decide
//! the client IP (the edge applies its trusted-proxy rules and fills
//! `RawHit.client_ip`), and no [`Event`] it makes carries an IP.
//!
//! [`Event`]: hourglass_model::Event
//! [`Reject`]: hourglass_model::Reject

pub mod control;
pub mod decode;
pub mod identity;
pub mod pipeline;
pub mod sites;

pub use control::{ControlState, ControlStateError, PluginBinding, PluginChains};
pub use decode::{
    Decoded, Endpoint, RejectReason, Rejection, Revenue, Utm, ValidationCode, ValidationMessage,
    check_content_type, decode, endpoint_for, validate_ga4, validation_response_json,
};
pub use identity::{IdentityKeys, KeyError, SessionTable};
pub use pipeline::{HitContext, NoPlugins, Outcome, Pipeline, PluginChain, PluginStats};
pub use sites::{Ga4Stream, SiteConfig, SiteConfigError, SiteDirectory};
