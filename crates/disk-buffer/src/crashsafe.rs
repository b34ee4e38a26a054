//! Durable file replacement, done once, here: write a temporary file, fsync
//! it, rename it over the target, fsync the directory. After a crash at any
//! point the target holds either its old or its new content, never a mix
//! (the temporary file may be left behind; the caller removes it at open).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::Path,
};

use crate::error::{Error, IoContext};

/// Replaces `dir/name` with `content` through `dir/tmp_name`.
pub(crate) fn overwrite(
    dir: &Path,
    name: &str,
    tmp_name: &str,
    content: &[u8],
) -> Result<(), Error> {
    let tmp = dir.join(tmp_name);
    let target = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .context("create", &tmp)?;
    file.write_all(content).context("write", &tmp)?;
    file.sync_all().context("fsync", &tmp)?;
    drop(file);
    fs::rename(&tmp, &target).context("rename into place", &target)?;
    fsync_dir(dir)
}

/// Makes creations, renames and removals in `dir` durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context("fsync directory", dir)
}

/// `remove_file` that treats an already missing file as removed.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).context("remove", path),
        _ => Ok(()),
    }
}
