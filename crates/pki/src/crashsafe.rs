//! Durable file replacement: write a temporary file beside the target with
//! its final permissions, fsync it, rename it over the target, fsync the
//! directory. After a crash the target holds its old or its new content,
//! never a mix, and a key is never readable by others, not even briefly.
//!
//! (`hourglass-disk-buffer` has the same steps for its checkpoint, private
//! to that crate; this copy adds the file mode keys need.)

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Permissions of a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `0644`: certificates and CRLs.
    Public,
    /// `0600`: private keys.
    Secret,
}

impl Mode {
    #[cfg(unix)]
    fn bits(self) -> u32 {
        match self {
            Mode::Public => 0o644,
            Mode::Secret => 0o600,
        }
    }
}

/// Replaces `path` with `content`. On error, reports which step failed on
/// which path.
pub(crate) fn write(
    path: &Path,
    content: &[u8],
    mode: Mode,
) -> Result<(), (&'static str, PathBuf, io::Error)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    // A temporary file left by a crash may have other permissions; start over.
    remove_if_exists(&tmp).map_err(|e| ("remove stale", tmp.clone(), e))?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode.bits());
    }
    let mut file = options.open(&tmp).map_err(|e| ("create", tmp.clone(), e))?;
    file.write_all(content)
        .map_err(|e| ("write", tmp.clone(), e))?;
    file.sync_all().map_err(|e| ("fsync", tmp.clone(), e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| ("rename into place", path.to_owned(), e))?;
    fsync_dir(dir).map_err(|e| ("fsync directory", dir.to_owned(), e))
}

/// Makes creations, renames and removals in `dir` durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `remove_file` that treats an already missing file as removed.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
