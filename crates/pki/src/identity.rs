//! Reading who a certificate belongs to: the edge name and serial number of
//! a peer certificate that TLS has already verified against the CA.

use std::fmt;
use std::str::FromStr;

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use crate::name::{EdgeName, InvalidEdgeName};

/// URI subject-alternative-name prefix that carries an edge's name
/// (`urn:hourglass:edge:<name>`). The URI, not the common name, is what
/// central trusts: it is a typed field only our CA writes.
pub const EDGE_URI_PREFIX: &str = "urn:hourglass:edge:";

/// A certificate serial number: big-endian bytes without leading zeros.
/// Prints (and parses) as lowercase hex, e.g. `5d0e…`; `:` separators are
/// accepted when parsing, as `openssl x509 -serial` and others print them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(Vec<u8>);

/// Why a string is not a [`Serial`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a certificate serial number: give it in hex (e.g. 1a2b3c or 1a:2b:3c), as `certs` prints it"
)]
pub struct InvalidSerial(pub String);

impl Serial {
    /// Normalises DER integer content bytes (a leading `0x00` sign byte is
    /// dropped, so the same number always compares equal).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let start = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len().saturating_sub(1));
        let trimmed = bytes.get(start..).unwrap_or_default();
        Serial(if trimmed.is_empty() {
            vec![0]
        } else {
            trimmed.to_vec()
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl FromStr for Serial {
    type Err = InvalidSerial;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
        let invalid = || InvalidSerial(s.chars().take(80).collect());
        if digits.is_empty() || digits.len() > 42 {
            return Err(invalid());
        }
        // Left-pad odd lengths so "abc" means 0x0abc.
        let padded: Vec<u8> = if digits.len() % 2 == 1 {
            std::iter::once(b'0').chain(digits).collect()
        } else {
            digits
        };
        let bytes = padded
            .chunks(2)
            .map(|pair| {
                let hex = std::str::from_utf8(pair).map_err(|_| invalid())?;
                u8::from_str_radix(hex, 16).map_err(|_| invalid())
            })
            .collect::<Result<Vec<u8>, _>>()?;
        Ok(Serial::from_bytes(&bytes))
    }
}

/// Who is at the other end of a mutually authenticated connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EdgeIdentity {
    /// The edge name from the certificate's `urn:hourglass:edge:` URI.
    pub name: EdgeName,
    /// The certificate's serial number: what `revoke` takes, and what logs
    /// should carry so a leaked certificate can be found.
    pub serial: Serial,
}

/// Why no edge identity could be read from a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the certificate is not valid X.509 DER: {0}")]
    NotACertificate(String),
    #[error("the certificate's subject alternative names cannot be read: {0}")]
    BadSubjectAltNames(String),
    #[error(
        "the certificate carries no {EDGE_URI_PREFIX}<name> URI, so it is not an edge certificate; issue one with `central-ingest certs issue-edge NAME`"
    )]
    NotAnEdgeCertificate,
    #[error(
        "the certificate names {count} edges in {EDGE_URI_PREFIX} URIs; an edge certificate names exactly one"
    )]
    SeveralEdgeNames { count: usize },
    #[error("the certificate's edge URI does not hold a valid edge name: {0}")]
    BadEdgeName(#[from] InvalidEdgeName),
}

/// Reads the edge identity from `cert`, an end-entity certificate that TLS
/// has already verified against the project CA (this function checks no
/// signature, validity or revocation; it only reads).
pub fn edge_identity(cert: &CertificateDer<'_>) -> Result<EdgeIdentity, IdentityError> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| IdentityError::NotACertificate(e.to_string()))?;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| IdentityError::BadSubjectAltNames(e.to_string()))?;
    let names: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix(EDGE_URI_PREFIX),
            _ => None,
        })
        .collect();
    let name = match names.as_slice() {
        [] => return Err(IdentityError::NotAnEdgeCertificate),
        [one] => EdgeName::new(*one)?,
        several => {
            return Err(IdentityError::SeveralEdgeNames {
                count: several.len(),
            });
        }
    };
    Ok(EdgeIdentity {
        name,
        serial: Serial::from_bytes(x509.raw_serial()),
    })
}

/// The serial number of `cert` (any certificate, edge or not).
pub fn certificate_serial(cert: &CertificateDer<'_>) -> Result<Serial, IdentityError> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| IdentityError::NotACertificate(e.to_string()))?;
    Ok(Serial::from_bytes(x509.raw_serial()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_drops_sign_and_leading_zeros() {
        assert_eq!(Serial::from_bytes(&[0, 0x80, 1]).as_bytes(), &[0x80, 1]);
        assert_eq!(Serial::from_bytes(&[0, 0]).as_bytes(), &[0]);
        assert_eq!(Serial::from_bytes(&[]).as_bytes(), &[0]);
    }

    #[test]
    fn serial_hex_round_trips_and_accepts_colons() {
        let serial = Serial::from_bytes(&[0x1a, 0x2b, 0x03]);
        assert_eq!(serial.to_string(), "1a2b03");
        assert_eq!("1a2b03".parse(), Ok(serial.clone()));
        assert_eq!("1a:2b:03".parse(), Ok(serial.clone()));
        assert_eq!("00:1A:2B:03".parse(), Ok(serial));
        assert_eq!(
            "abc".parse::<Serial>().map(|s| s.to_string()),
            Ok("0abc".into())
        );
    }

    #[test]
    fn serial_refuses_non_hex() {
        for bad in ["", "xyz", "12 34", ":", &"f".repeat(43)] {
            assert!(bad.parse::<Serial>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        let err = edge_identity(&CertificateDer::from(vec![1, 2, 3]));
        assert!(matches!(err, Err(IdentityError::NotACertificate(_))));
    }
}
