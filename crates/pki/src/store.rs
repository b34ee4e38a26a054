//! The CA directory on disk, as `central-ingest certs …` uses it:
//!
//! ```text
//! <dir>/                      0700
//!   ca.pem                    the CA certificate (give it to every edge)
//!   ca.key                    the CA private key, 0600
//!   crl.pem                   the signed revocation list central loads
//!   server.pem, server.key    central's certificate (optional)
//!   edges/NAME.pem, NAME.key  one pair per issued edge (key 0600)
//!   edges/NAME.revoked-SERIAL.pem   a revoked edge certificate, kept for audit
//! ```
//!
//! Every file is replaced crash-safely (temp, fsync, rename, fsync dir).
//! Commit points: `init` writes `ca.pem` last, `issue_edge` writes
//! `NAME.pem` last, `revoke` writes `crl.pem` before it moves the edge's
//! files, so a crash at any step leaves a state the same command can be run
//! again on.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::ca::{Ca, CaError, Issued, RevocationList};
use crate::crashsafe::{self, Mode};
use crate::identity::{IdentityError, Serial, certificate_serial};
use crate::name::EdgeName;

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";
pub const CRL_FILE: &str = "crl.pem";
pub const SERVER_CERT_FILE: &str = "server.pem";
pub const SERVER_KEY_FILE: &str = "server.key";
pub const EDGES_DIR: &str = "edges";

/// Why a CA directory operation failed. Messages name the file and the
/// command that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "a CA already exists at {}; refusing to replace it, since every edge certificate depends on it (move the directory away to start over)",
        path.display()
    )]
    AlreadyInitialised { path: PathBuf },
    #[error("no CA at {}: run `central-ingest certs init` first", path.display())]
    NotInitialised { path: PathBuf },
    #[error(
        "edge {name} already has a certificate at {}; run `central-ingest certs revoke {name}` first to replace it",
        path.display()
    )]
    EdgeExists { name: EdgeName, path: PathBuf },
    #[error(
        "no certificate for edge {name} at {}: it was never issued here, or was already revoked",
        path.display()
    )]
    NoSuchEdge { name: EdgeName, path: PathBuf },
    #[error("{}: {source}", path.display())]
    BadFile {
        path: PathBuf,
        #[source]
        source: CaError,
    },
    #[error("{}: {source}", path.display())]
    BadCertificate {
        path: PathBuf,
        #[source]
        source: IdentityError,
    },
    #[error(transparent)]
    Ca(#[from] CaError),
}

impl StoreError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.to_owned();
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    }
}

impl From<(&'static str, PathBuf, io::Error)> for StoreError {
    fn from((action, path, source): (&'static str, PathBuf, io::Error)) -> Self {
        StoreError::Io {
            action,
            path,
            source,
        }
    }
}

/// A CA directory (see the module doc for its layout).
#[derive(Debug, Clone)]
pub struct CertDir {
    root: PathBuf,
}

impl CertDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CertDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ca_cert_path(&self) -> PathBuf {
        self.root.join(CA_CERT_FILE)
    }

    pub fn ca_key_path(&self) -> PathBuf {
        self.root.join(CA_KEY_FILE)
    }

    pub fn crl_path(&self) -> PathBuf {
        self.root.join(CRL_FILE)
    }

    pub fn server_cert_path(&self) -> PathBuf {
        self.root.join(SERVER_CERT_FILE)
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.root.join(SERVER_KEY_FILE)
    }

    pub fn edges_dir(&self) -> PathBuf {
        self.root.join(EDGES_DIR)
    }

    pub fn edge_cert_path(&self, name: &EdgeName) -> PathBuf {
        self.edges_dir().join(format!("{name}.pem"))
    }

    pub fn edge_key_path(&self, name: &EdgeName) -> PathBuf {
        self.edges_dir().join(format!("{name}.key"))
    }

    /// Creates the directory, a new CA and an empty signed CRL. Refuses if
    /// a CA is already there.
    pub fn init(&self, now: SystemTime) -> Result<(), StoreError> {
        let cert_path = self.ca_cert_path();
        if cert_path.exists() {
            return Err(StoreError::AlreadyInitialised {
                path: self.root.clone(),
            });
        }
        create_private_dir(&self.root)?;
        create_private_dir(&self.edges_dir())?;
        let issued = Ca::init(now)?;
        let ca = Ca::load(&issued.cert_pem, &issued.key_pem)?;
        let crl = ca.sign_crl(&mut RevocationList::new(), now)?;
        crashsafe::write(&self.ca_key_path(), issued.key_pem.as_bytes(), Mode::Secret)?;
        crashsafe::write(&self.crl_path(), crl.as_bytes(), Mode::Public)?;
        crashsafe::write(&cert_path, issued.cert_pem.as_bytes(), Mode::Public)?;
        Ok(())
    }

    /// Loads the CA (certificate and key).
    pub fn ca(&self) -> Result<Ca, StoreError> {
        let cert_pem = self.ca_cert_pem()?;
        let key_path = self.ca_key_path();
        let key_pem = read(&key_path)?;
        Ca::load(&cert_pem, &key_pem).map_err(|source| StoreError::BadFile {
            path: key_path,
            source,
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_cert_pem(&self) -> Result<String, StoreError> {
        let path = self.ca_cert_path();
        match fs::read_to_string(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotInitialised {
                path: self.root.clone(),
            }),
            other => other.map_err(StoreError::io("read", &path)),
        }
    }

    /// The current CRL, PEM, as central loads it.
    pub fn crl_pem(&self) -> Result<String, StoreError> {
        read(&self.crl_path())
    }

    /// The current revocation list, checked against the CA's signature.
    pub fn revocation_list(&self, ca: &Ca) -> Result<RevocationList, StoreError> {
        let path = self.crl_path();
        ca.read_crl(&read(&path)?)
            .map_err(|source| StoreError::BadFile { path, source })
    }

    /// Issues a certificate for edge `name` into `edges/NAME.pem|key` and
    /// returns it. Refuses if the edge already has one.
    pub fn issue_edge(&self, name: &EdgeName, now: SystemTime) -> Result<Issued, StoreError> {
        let ca = self.ca()?;
        let cert_path = self.edge_cert_path(name);
        if cert_path.exists() {
            return Err(StoreError::EdgeExists {
                name: name.clone(),
                path: cert_path,
            });
        }
        create_private_dir(&self.edges_dir())?;
        let issued = ca.issue_edge(name, now)?;
        crashsafe::write(
            &self.edge_key_path(name),
            issued.key_pem.as_bytes(),
            Mode::Secret,
        )?;
        crashsafe::write(&cert_path, issued.cert_pem.as_bytes(), Mode::Public)?;
        Ok(issued)
    }

    /// Issues (or replaces) central's certificate for `hostnames` into
    /// `server.pem|key` and returns it.
    pub fn issue_server<S: AsRef<str>>(
        &self,
        hostnames: &[S],
        now: SystemTime,
    ) -> Result<Issued, StoreError> {
        let issued = self.ca()?.issue_server(hostnames, now)?;
        crashsafe::write(
            &self.server_key_path(),
            issued.key_pem.as_bytes(),
            Mode::Secret,
        )?;
        crashsafe::write(
            &self.server_cert_path(),
            issued.cert_pem.as_bytes(),
            Mode::Public,
        )?;
        Ok(issued)
    }

    /// Revokes edge `name`'s certificate: adds its serial to the CRL,
    /// re-signs `crl.pem`, then keeps the certificate as
    /// `edges/NAME.revoked-SERIAL.pem` and deletes the key, so the name can
    /// be issued again. Returns the revoked serial. Central must reload
    /// `crl.pem` for it to take effect.
    pub fn revoke(&self, name: &EdgeName, now: SystemTime) -> Result<Serial, StoreError> {
        let ca = self.ca()?;
        let cert_path = self.edge_cert_path(name);
        let cert_pem = match fs::read_to_string(&cert_path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NoSuchEdge {
                    name: name.clone(),
                    path: cert_path,
                });
            }
            other => other.map_err(StoreError::io("read", &cert_path))?,
        };
        let bad_cert = |source| StoreError::BadCertificate {
            path: cert_path.clone(),
            source,
        };
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| bad_cert(IdentityError::NotACertificate(e.to_string())))?;
        let serial = certificate_serial(&der).map_err(bad_cert)?;

        self.revoke_serial_with(&ca, serial.clone(), now)?;

        let kept = self
            .edges_dir()
            .join(format!("{name}.revoked-{serial}.pem"));
        fs::rename(&cert_path, &kept).map_err(StoreError::io("rename", &cert_path))?;
        let key_path = self.edge_key_path(name);
        crashsafe::remove_if_exists(&key_path).map_err(StoreError::io("remove", &key_path))?;
        let edges = self.edges_dir();
        crashsafe::fsync_dir(&edges).map_err(StoreError::io("fsync directory", &edges))?;
        Ok(serial)
    }

    /// Revokes a certificate by serial (one whose file is gone, or that was
    /// issued elsewhere by this CA). Returns `false` if it already was.
    pub fn revoke_serial(&self, serial: Serial, now: SystemTime) -> Result<bool, StoreError> {
        let ca = self.ca()?;
        self.revoke_serial_with(&ca, serial, now)
    }

    fn revoke_serial_with(
        &self,
        ca: &Ca,
        serial: Serial,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let mut list = self.revocation_list(ca)?;
        let added = list.revoke(serial, now);
        // Re-sign even when nothing was added: a run repeated after a crash
        // then still ends with a fresh CRL.
        let crl = ca.sign_crl(&mut list, now)?;
        crashsafe::write(&self.crl_path(), crl.as_bytes(), Mode::Public)?;
        Ok(added)
    }
}

fn read(path: &Path) -> Result<String, StoreError> {
    fs::read_to_string(path).map_err(StoreError::io("read", path))
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(StoreError::io("create directory", dir))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        crashsafe::fsync_dir(parent).map_err(StoreError::io("fsync directory", parent))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_780_000_000)
    }

    fn edge(name: &str) -> EdgeName {
        EdgeName::new(name).expect("valid edge name")
    }

    fn initialised() -> (tempfile::TempDir, CertDir) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = CertDir::new(tmp.path().join("ca"));
        dir.init(now()).expect("init");
        (tmp, dir)
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).expect("exists").permissions().mode() & 0o777
    }

    #[test]
    fn init_writes_the_layout_with_private_keys() {
        let (_tmp, dir) = initialised();
        for path in [dir.ca_cert_path(), dir.ca_key_path(), dir.crl_path()] {
            assert!(path.is_file(), "{}", path.display());
        }
        assert!(dir.edges_dir().is_dir());
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir.ca_key_path()), 0o600);
            assert_eq!(mode(&dir.ca_cert_path()), 0o644);
            assert_eq!(mode(dir.root()), 0o700);
        }
        let ca = dir.ca().expect("loads");
        let list = dir.revocation_list(&ca).expect("signed CRL");
        assert!(list.entries().is_empty());
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.root())
            .expect("lists")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(
            names.iter().all(|n| !n.to_string_lossy().starts_with('.')),
            "{names:?}"
        );
    }

    #[test]
    fn init_refuses_to_replace_a_ca() {
        let (_tmp, dir) = initialised();
        let before = dir.ca_cert_pem().expect("reads");
        let err = dir.init(now()).expect_err("second init");
        assert!(matches!(err, StoreError::AlreadyInitialised { .. }));
        assert!(err.to_string().contains("refusing"), "{err}");
        assert_eq!(dir.ca_cert_pem().expect("reads"), before);
    }

    #[test]
    fn commands_before_init_say_to_run_init() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = CertDir::new(tmp.path());
        let err = dir.issue_edge(&edge("e"), now()).expect_err("no CA");
        assert!(err.to_string().contains("certs init"), "{err}");
    }

    #[test]
    fn issue_edge_writes_a_pair_and_refuses_a_second() {
        let (_tmp, dir) = initialised();
        let name = edge("fra-1");
        let issued = dir.issue_edge(&name, now()).expect("issues");
        assert_eq!(
            fs::read_to_string(dir.edge_cert_path(&name)).expect("cert file"),
            issued.cert_pem
        );
        assert_eq!(
            fs::read_to_string(dir.edge_key_path(&name)).expect("key file"),
            issued.key_pem
        );
        #[cfg(unix)]
        assert_eq!(mode(&dir.edge_key_path(&name)), 0o600);
        let err = dir.issue_edge(&name, now()).expect_err("exists");
        assert!(err.to_string().contains("certs revoke fra-1"), "{err}");
    }

    #[test]
    fn revoke_lists_the_serial_and_frees_the_name() {
        let (_tmp, dir) = initialised();
        let name = edge("fra-1");
        let first = dir.issue_edge(&name, now()).expect("issues");
        let first_serial = certificate_serial(
            &CertificateDer::from_pem_slice(first.cert_pem.as_bytes()).expect("PEM"),
        )
        .expect("serial");

        let revoked = dir.revoke(&name, now()).expect("revokes");
        assert_eq!(revoked, first_serial);
        let ca = dir.ca().expect("loads");
        let list = dir.revocation_list(&ca).expect("reads CRL");
        assert!(list.is_revoked(&first_serial));
        assert_eq!(list.number(), 2);
        assert!(!dir.edge_cert_path(&name).exists());
        assert!(!dir.edge_key_path(&name).exists());
        assert!(
            dir.edges_dir()
                .join(format!("fra-1.revoked-{first_serial}.pem"))
                .is_file()
        );

        let err = dir
            .revoke(&name, now())
            .expect_err("nothing left to revoke");
        assert!(matches!(err, StoreError::NoSuchEdge { .. }));

        // The name can be issued again, and the new certificate is not revoked.
        let second = dir.issue_edge(&name, now()).expect("re-issues");
        assert_ne!(second.cert_pem, first.cert_pem);
        assert_eq!(dir.revocation_list(&ca).expect("reads").entries().len(), 1);
    }

    #[test]
    fn revoke_serial_is_idempotent() {
        let (_tmp, dir) = initialised();
        let serial: Serial = "01ab".parse().expect("hex");
        assert!(dir.revoke_serial(serial.clone(), now()).expect("revokes"));
        assert!(!dir.revoke_serial(serial, now()).expect("revokes again"));
        let ca = dir.ca().expect("loads");
        assert_eq!(dir.revocation_list(&ca).expect("reads").entries().len(), 1);
    }

    #[test]
    fn a_foreign_crl_is_reported_with_its_path() {
        let (_tmp, dir) = initialised();
        let (_other_tmp, other) = initialised();
        fs::copy(other.crl_path(), dir.crl_path()).expect("copies");
        let err = dir
            .revoke_serial("01".parse().expect("hex"), now())
            .expect_err("foreign");
        assert!(err.to_string().contains("crl.pem"), "{err}");
        assert!(err.to_string().contains("not signed by this CA"), "{err}");
    }

    #[test]
    fn issue_server_writes_central_pair() {
        let (_tmp, dir) = initialised();
        let issued = dir.issue_server(&["localhost"], now()).expect("issues");
        assert_eq!(
            fs::read_to_string(dir.server_cert_path()).expect("cert"),
            issued.cert_pem
        );
        #[cfg(unix)]
        assert_eq!(mode(&dir.server_key_path()), 0o600);
    }
}
