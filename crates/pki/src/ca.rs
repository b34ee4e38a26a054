//! The project CA: makes itself, issues edge (client) and central (server)
//! certificates, and signs the revocation list. Pure: PEM text in, PEM text
//! out, `now` passed in; files live in [`crate::store`].

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName};
use time::OffsetDateTime;

use crate::identity::{EDGE_URI_PREFIX, Serial};
use crate::name::EdgeName;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// How long the CA certificate is valid. Replacing the CA means re-issuing
/// every edge certificate, so it is long.
pub const CA_VALIDITY: Duration = DAY.saturating_mul(3650);
/// How long an edge certificate is valid.
pub const EDGE_CERT_VALIDITY: Duration = DAY.saturating_mul(397);
/// How long a central (server) certificate is valid.
pub const SERVER_CERT_VALIDITY: Duration = DAY.saturating_mul(397);
/// The `nextUpdate` a signed CRL announces. rustls does not refuse an
/// expired CRL unless told to, so this is a promise, not a deadline; every
/// `revoke` signs a fresh one anyway.
pub const CRL_VALIDITY: Duration = DAY.saturating_mul(365);
/// Certificates start this long before `now`, so an edge whose clock is a
/// little behind central's still accepts a fresh certificate.
pub const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// A certificate and its private key, both PEM. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[secret]")
            .finish()
    }
}

/// Why a CA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("could not generate a key or sign: {0}")]
    Sign(#[source] rcgen::Error),
    #[error(
        "the CA certificate is not a PEM certificate ({0}); use the ca.pem that `certs init` wrote"
    )]
    BadCaCert(String),
    #[error("the CA key is not a PEM private key ({0}); use the ca.key that `certs init` wrote")]
    BadCaKey(String),
    #[error(
        "the CA certificate is not a CA (it has no CA basic constraint); use the ca.pem that `certs init` wrote"
    )]
    NotACa,
    #[error(
        "the CA key does not belong to the CA certificate; ca.key and ca.pem must come from the same `certs init`"
    )]
    KeyMismatch,
    #[error(
        "a server certificate needs at least one host name or IP address that edges will connect to"
    )]
    NoHostnames,
    #[error(
        "{0:?} is neither a DNS name nor an IP address; give the name edges use to reach central"
    )]
    BadHostname(String),
    #[error("the revocation list is not a valid PEM CRL ({0}); restore crl.pem or sign a new one")]
    BadCrl(String),
    #[error("the revocation list was not signed by this CA; it belongs to another CA directory")]
    CrlNotOurs,
    #[error("the time {0:?} cannot be written into a certificate; check the system clock")]
    BadTime(SystemTime),
}

/// The project certificate authority, loaded with its private key.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca").field("issuer", &self.issuer).finish()
    }
}

impl Ca {
    /// Makes a new CA (ECDSA P-256, self-signed, valid [`CA_VALIDITY`] from
    /// `now`). Returns its certificate and key; [`Ca::load`] them to issue.
    pub fn init(now: SystemTime) -> Result<Issued, CaError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name("Hourglass CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, now, CA_VALIDITY)?;
        let key = KeyPair::generate().map_err(CaError::Sign)?;
        let cert = params.self_signed(&key).map_err(CaError::Sign)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Loads a CA that [`Ca::init`] made, checking that the certificate is a
    /// CA and that the key is its key.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, CaError> {
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| CaError::BadCaCert(e.to_string()))?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::BadCaKey(e.to_string()))?;
        {
            let (_, x509) = x509_parser::parse_x509_certificate(&cert_der)
                .map_err(|e| CaError::BadCaCert(e.to_string()))?;
            if !x509.is_ca() {
                return Err(CaError::NotACa);
            }
            if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(CaError::KeyMismatch);
            }
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| CaError::BadCaCert(e.to_string()))?;
        Ok(Ca {
            issuer,
            cert_pem: cert_pem.to_owned(),
            cert_der,
        })
    }

    /// The CA certificate, PEM: what both sides trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Issues a client certificate for edge `name`: the name is the subject
    /// common name (for people) and a `urn:hourglass:edge:<name>` URI
    /// subject alternative name (what central reads, see
    /// [`crate::edge_identity`]). Fresh key, fresh serial.
    pub fn issue_edge(&self, name: &EdgeName, now: SystemTime) -> Result<Issued, CaError> {
        let uri = format!("{EDGE_URI_PREFIX}{name}")
            .try_into()
            .map_err(|e: rcgen::Error| CaError::Sign(e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(name.as_str());
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign_leaf(params, now, EDGE_CERT_VALIDITY)
    }

    /// Issues central's server certificate for `hostnames` (DNS names or IP
    /// addresses edges connect to).
    pub fn issue_server<S: AsRef<str>>(
        &self,
        hostnames: &[S],
        now: SystemTime,
    ) -> Result<Issued, CaError> {
        let first = hostnames.first().ok_or(CaError::NoHostnames)?;
        let sans = hostnames
            .iter()
            .map(|host| server_san(host.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(first.as_ref());
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign_leaf(params, now, SERVER_CERT_VALIDITY)
    }

    fn sign_leaf(
        &self,
        mut params: CertificateParams,
        now: SystemTime,
        validity: Duration,
    ) -> Result<Issued, CaError> {
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        // No explicit serial: rcgen derives 159 bits from the SHA-256 of the
        // public key, and every certificate gets a fresh key, so serials are
        // unique without keeping a counter.
        params.serial_number = None;
        set_validity(&mut params, now, validity)?;
        let key = KeyPair::generate().map_err(CaError::Sign)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CaError::Sign)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs `list` as a CRL (PEM) that rustls's
    /// `WebPkiClientVerifier::builder(..).with_crls(..)` accepts. Every
    /// signature takes the next CRL number, as RFC 5280 asks, so `list` is
    /// updated.
    pub fn sign_crl(&self, list: &mut RevocationList, now: SystemTime) -> Result<String, CaError> {
        list.number += 1;
        let this_update = to_offset(now)?;
        let next_update = to_offset(later(now, CRL_VALIDITY)?)?;
        let revoked_certs = list
            .revoked
            .iter()
            .map(|entry| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(entry.serial.as_bytes()),
                    revocation_time: to_offset(entry.revoked_at)?,
                    reason_code: Some(RevocationReason::Unspecified),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from_slice(&list.number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).map_err(CaError::Sign)?;
        crl.pem().map_err(CaError::Sign)
    }

    /// Reads a CRL this CA signed back into a [`RevocationList`], checking
    /// the signature, so a damaged or foreign `crl.pem` is refused rather
    /// than silently replaced by one that forgets revocations.
    pub fn read_crl(&self, crl_pem: &str) -> Result<RevocationList, CaError> {
        let der = CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes())
            .map_err(|e| CaError::BadCrl(e.to_string()))?;
        let (_, crl) = x509_parser::parse_x509_crl(der.as_ref())
            .map_err(|e| CaError::BadCrl(e.to_string()))?;
        let (_, ca) = x509_parser::parse_x509_certificate(&self.cert_der)
            .map_err(|e| CaError::BadCaCert(e.to_string()))?;
        if crl.issuer().as_raw() != ca.subject().as_raw()
            || crl.verify_signature(ca.public_key()).is_err()
        {
            return Err(CaError::CrlNotOurs);
        }
        let number = crl
            .crl_number()
            .map(|n| n.to_bytes_be())
            .ok_or_else(|| CaError::BadCrl("it has no CRL number".into()))?;
        let number = u64_from_be(&number)
            .ok_or_else(|| CaError::BadCrl("its CRL number is over 2^64".into()))?;
        let revoked = crl
            .iter_revoked_certificates()
            .map(|entry| RevokedEntry {
                serial: Serial::from_bytes(entry.raw_serial()),
                revoked_at: from_unix(entry.revocation_date.timestamp()),
            })
            .collect();
        Ok(RevocationList { number, revoked })
    }
}

/// The certificates a CA has revoked, and the number of the last CRL
/// signed from them. Edit with [`RevocationList::revoke`], publish with
/// [`Ca::sign_crl`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    number: u64,
    revoked: Vec<RevokedEntry>,
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    pub serial: Serial,
    pub revoked_at: SystemTime,
}

impl RevocationList {
    /// An empty list (no CRL signed yet).
    pub fn new() -> Self {
        RevocationList::default()
    }

    /// Adds `serial`; returns `false` if it was already revoked (the first
    /// revocation time is kept).
    pub fn revoke(&mut self, serial: Serial, now: SystemTime) -> bool {
        if self.is_revoked(&serial) {
            return false;
        }
        // CRLs carry whole seconds; keep the same here so a list read back
        // from its CRL compares equal.
        let revoked_at = from_unix(unix_secs(now));
        self.revoked.push(RevokedEntry { serial, revoked_at });
        true
    }

    pub fn is_revoked(&self, serial: &Serial) -> bool {
        self.revoked.iter().any(|entry| &entry.serial == serial)
    }

    pub fn entries(&self) -> &[RevokedEntry] {
        &self.revoked
    }

    /// The CRL number of the last CRL signed from this list (0: none yet).
    pub fn number(&self) -> u64 {
        self.number
    }
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Hourglass");
    name.push(DnType::CommonName, common_name);
    name
}

fn server_san(host: &str) -> Result<SanType, CaError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    // Check it the way the edge's TLS client will, so a name the client can
    // never match is refused here, at issue time.
    match ServerName::try_from(host) {
        Ok(ServerName::DnsName(_)) => host
            .to_owned()
            .try_into()
            .map(SanType::DnsName)
            .map_err(|_| CaError::BadHostname(host.to_owned())),
        _ => Err(CaError::BadHostname(host.to_owned())),
    }
}

fn set_validity(
    params: &mut CertificateParams,
    now: SystemTime,
    validity: Duration,
) -> Result<(), CaError> {
    params.not_before = to_offset(now.checked_sub(BACKDATE).unwrap_or(now))?;
    params.not_after = to_offset(later(now, validity)?)?;
    Ok(())
}

fn later(now: SystemTime, by: Duration) -> Result<SystemTime, CaError> {
    now.checked_add(by).ok_or(CaError::BadTime(now))
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn from_unix(secs: i64) -> SystemTime {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// Whole seconds: X.509 times have no fractions.
fn to_offset(t: SystemTime) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(unix_secs(t)).map_err(|_| CaError::BadTime(t))
}

fn u64_from_be(bytes: &[u8]) -> Option<u64> {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let significant = bytes.get(start..)?;
    if significant.len() > 8 {
        return None;
    }
    Some(
        significant
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{IdentityError, certificate_serial, edge_identity};

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_780_000_000)
    }

    fn ca() -> Ca {
        let issued = Ca::init(now()).expect("CA generation works");
        Ca::load(&issued.cert_pem, &issued.key_pem).expect("a fresh CA loads")
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("issued PEM parses")
    }

    #[test]
    fn edge_certificate_names_the_edge() {
        let ca = ca();
        let name = EdgeName::new("fra-1").expect("valid");
        let issued = ca.issue_edge(&name, now()).expect("issues");
        let cert = der(&issued.cert_pem);
        let identity = edge_identity(&cert).expect("edge cert has an identity");
        assert_eq!(identity.name, name);
        assert_eq!(Ok(identity.serial), certificate_serial(&cert));

        let (_, x509) = x509_parser::parse_x509_certificate(&cert).expect("parses");
        let cn: Vec<_> = x509
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .collect();
        assert_eq!(cn, ["fra-1"]);
        assert!(!x509.is_ca());
        assert!(
            x509.verify_signature(Some(der_ca_spki(&ca).public_key()))
                .is_ok()
        );
        assert_eq!(
            x509.validity().not_after.timestamp(),
            unix_secs(now() + EDGE_CERT_VALIDITY)
        );
        let key = KeyPair::from_pem(&issued.key_pem).expect("key PEM parses");
        assert_eq!(
            x509.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
    }

    fn der_ca_spki(ca: &Ca) -> x509_parser::certificate::X509Certificate<'_> {
        x509_parser::parse_x509_certificate(ca.cert_der())
            .expect("CA parses")
            .1
    }

    #[test]
    fn each_certificate_gets_its_own_serial() {
        let ca = ca();
        let name = EdgeName::new("e").expect("valid");
        let a = der(&ca.issue_edge(&name, now()).expect("issues").cert_pem);
        let b = der(&ca.issue_edge(&name, now()).expect("issues").cert_pem);
        assert_ne!(certificate_serial(&a), certificate_serial(&b));
    }

    #[test]
    fn server_certificate_is_not_an_edge_certificate() {
        let ca = ca();
        let issued = ca
            .issue_server(&["localhost", "127.0.0.1", "central.example"], now())
            .expect("issues");
        assert_eq!(
            edge_identity(&der(&issued.cert_pem)),
            Err(IdentityError::NotAnEdgeCertificate)
        );
    }

    #[test]
    fn server_certificate_needs_usable_names() {
        let ca = ca();
        assert!(matches!(
            ca.issue_server::<&str>(&[], now()),
            Err(CaError::NoHostnames)
        ));
        for bad in ["", "has space", "a..b"] {
            assert!(
                matches!(ca.issue_server(&[bad], now()), Err(CaError::BadHostname(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn load_refuses_a_key_from_another_ca() {
        let a = Ca::init(now()).expect("generates");
        let b = Ca::init(now()).expect("generates");
        assert!(matches!(
            Ca::load(&a.cert_pem, &b.key_pem),
            Err(CaError::KeyMismatch)
        ));
    }

    #[test]
    fn load_refuses_a_leaf_certificate_and_garbage() {
        let ca = ca();
        let leaf = ca
            .issue_edge(&EdgeName::new("e").expect("valid"), now())
            .expect("issues");
        assert!(matches!(
            Ca::load(&leaf.cert_pem, &leaf.key_pem),
            Err(CaError::NotACa)
        ));
        assert!(matches!(
            Ca::load("not pem", &leaf.key_pem),
            Err(CaError::BadCaCert(_))
        ));
        assert!(matches!(
            Ca::load(ca.cert_pem(), "not pem"),
            Err(CaError::BadCaKey(_))
        ));
    }

    #[test]
    fn crl_round_trips_and_numbers_increase() {
        let ca = ca();
        let mut list = RevocationList::new();
        let empty = ca.sign_crl(&mut list, now()).expect("signs");
        assert_eq!(ca.read_crl(&empty).expect("reads").number(), 1);

        let cert = der(&ca
            .issue_edge(&EdgeName::new("e").expect("valid"), now())
            .expect("issues")
            .cert_pem);
        let serial = certificate_serial(&cert).expect("has a serial");
        assert!(list.revoke(serial.clone(), now()));
        assert!(!list.revoke(serial.clone(), now() + DAY), "idempotent");
        let pem = ca.sign_crl(&mut list, now()).expect("signs");
        let read = ca.read_crl(&pem).expect("reads");
        assert_eq!(read, list);
        assert_eq!(read.number(), 2);
        assert!(read.is_revoked(&serial));
    }

    #[test]
    fn crl_from_another_ca_is_refused() {
        let ours = ca();
        let theirs = ca();
        let pem = theirs
            .sign_crl(&mut RevocationList::new(), now())
            .expect("signs");
        assert!(matches!(ours.read_crl(&pem), Err(CaError::CrlNotOurs)));
        assert!(matches!(ours.read_crl("junk"), Err(CaError::BadCrl(_))));
    }

    #[test]
    fn issued_debug_hides_the_key() {
        let issued = Ca::init(now()).expect("generates");
        assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
    }
}
