//! The project CA behind edge ↔ central mutual TLS.
//!
//! Owns: making the CA ([`Ca::init`]), issuing edge client certificates
//! ([`Ca::issue_edge`]: the edge name as subject CN and as a
//! `urn:hourglass:edge:NAME` URI SAN) and central's server certificate
//! ([`Ca::issue_server`]), the revocation list ([`RevocationList`], signed
//! as an X.509 CRL by [`Ca::sign_crl`], the form rustls's
//! `WebPkiClientVerifier::with_crls` checks), reading the edge identity out
//! of a verified peer certificate ([`edge_identity`]), and the on-disk CA
//! directory ([`CertDir`]: `ca.pem`, `ca.key`, `crl.pem`, `edges/NAME.pem|key`,
//! written crash-safely) that `central-ingest certs init | issue-edge |
//! revoke` will drive.
//!
//! Must not: open sockets, verify TLS chains itself (rustls/webpki do that;
//! [`edge_identity`] only reads a certificate TLS already accepted), or read
//! the clock: every function that stamps a time takes `now`.
//!
//! Keys are ECDSA P-256 (rcgen with *ring*). Edge names follow one rule,
//! [`EdgeName`], the same as `edge-agent`'s `edge_id`.

mod ca;
mod crashsafe;
mod identity;
mod name;
pub mod store;

pub use ca::{
    BACKDATE, CA_VALIDITY, CRL_VALIDITY, Ca, CaError, EDGE_CERT_VALIDITY, Issued, RevocationList,
    RevokedEntry, SERVER_CERT_VALIDITY,
};
pub use identity::{
    EDGE_URI_PREFIX, EdgeIdentity, IdentityError, InvalidSerial, Serial, certificate_serial,
    edge_identity,
};
pub use name::{EdgeName, InvalidEdgeName, MAX_EDGE_NAME_LEN, is_valid_edge_name};
pub use store::{CertDir, StoreError};
