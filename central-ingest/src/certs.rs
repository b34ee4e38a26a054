//! `central-ingest certs …`: the project CA directory ([`CertDir`]) from the
//! command line. Every command prints which files it wrote and what to do
//! with them.

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;
use hourglass_pki::{CertDir, EdgeName, certificate_serial};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub fn init(dir: &CertDir, now: SystemTime) -> anyhow::Result<String> {
    dir.init(now)?;
    Ok(format!(
        "created the project CA in {root}\n  \
         {ca}  CA certificate: give it to every edge (`central.ca_file`)\n  \
         {key}  CA private key: keep it secret and backed up\n  \
         {crl}  revocation list (empty): central reads it\n\
         next: `central-ingest certs issue-server HOSTNAME` for central, \
         `central-ingest certs issue-edge NAME` for each edge\n",
        root = dir.root().display(),
        ca = dir.ca_cert_path().display(),
        key = dir.ca_key_path().display(),
        crl = dir.crl_path().display(),
    ))
}

pub fn issue_edge(dir: &CertDir, name: &str, now: SystemTime) -> anyhow::Result<String> {
    let name = EdgeName::new(name)?;
    dir.issue_edge(&name, now)?;
    Ok(format!(
        "issued a certificate for edge {name}\n  \
         {cert}  certificate (`central.cert_file`)\n  \
         {key}  private key (`central.key_file`): copy it to the edge only\n  \
         {ca}  CA certificate (`central.ca_file`)\n\
         the edge's `edge_id` must be `{name}`\n",
        cert = dir.edge_cert_path(&name).display(),
        key = dir.edge_key_path(&name).display(),
        ca = dir.ca_cert_path().display(),
    ))
}

pub fn issue_server(
    dir: &CertDir,
    hostnames: &[String],
    now: SystemTime,
) -> anyhow::Result<String> {
    dir.issue_server(hostnames, now)?;
    Ok(format!(
        "issued central's certificate for {names}\n  \
         {cert}  certificate\n  \
         {key}  private key\n\
         edges must use one of these names as `central.server_name`; \
         `central-ingest serve` reads both files from this directory\n",
        names = hostnames.join(", "),
        cert = dir.server_cert_path().display(),
        key = dir.server_key_path().display(),
    ))
}

pub fn revoke(dir: &CertDir, name: &str, now: SystemTime) -> anyhow::Result<String> {
    let name = EdgeName::new(name)?;
    let serial = dir.revoke(&name, now)?;
    Ok(format!(
        "revoked edge {name} (certificate serial {serial})\n  \
         {crl}  revocation list, re-signed\n  \
         {kept}  the revoked certificate, kept for audit; its key is deleted\n\
         a running `central-ingest serve` picks up the new list within `crl_reload_secs` \
         (10 s by default); connections already open stay open until they end\n",
        crl = dir.crl_path().display(),
        kept = dir
            .edges_dir()
            .join(format!("{name}.revoked-{serial}.pem"))
            .display(),
    ))
}

/// An edge certificate in the CA directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EdgeCert {
    pub name: String,
    /// `active` or `revoked` (by the revocation list).
    pub status: &'static str,
    pub serial: String,
}

/// Every edge certificate in the directory (revoked ones kept for audit
/// included), sorted by name.
pub fn edge_certificates(dir: &CertDir) -> anyhow::Result<Vec<EdgeCert>> {
    let ca = dir.ca()?;
    let crl = dir.revocation_list(&ca)?;
    let edges = dir.edges_dir();
    let mut rows = Vec::new();
    let entries =
        std::fs::read_dir(&edges).with_context(|| format!("cannot read {}", edges.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read {}", edges.display()))?
            .path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some(stem) = file.strip_suffix(".pem") else {
            continue;
        };
        let name = stem.split_once(".revoked-").map_or(stem, |(name, _)| name);
        let serial = serial_of(&path)?;
        let status = if crl.is_revoked(&serial) {
            "revoked"
        } else {
            "active"
        };
        rows.push(EdgeCert {
            name: name.to_string(),
            status,
            serial: serial.to_string(),
        });
    }
    rows.sort();
    Ok(rows)
}

/// One line per edge certificate in the directory: name, status, serial.
pub fn list(dir: &CertDir) -> anyhow::Result<String> {
    let rows = edge_certificates(dir)?;
    let mut out = format!("edge certificates in {}\n", dir.root().display());
    if rows.is_empty() {
        out.push_str("  (none yet: `central-ingest certs issue-edge NAME`)\n");
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(out, "  {:width$}  {:7}  SERIAL", "NAME", "STATUS");
    for r in rows {
        let _ = writeln!(out, "  {:width$}  {:7}  {}", r.name, r.status, r.serial);
    }
    Ok(out)
}

fn serial_of(path: &Path) -> anyhow::Result<hourglass_pki::Serial> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let der = CertificateDer::from_pem_slice(&pem)
        .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
    certificate_serial(&der).with_context(|| format!("{} has no usable serial", path.display()))
}
