//! Errors of the disk buffer: what failed, on which path, and what to do.

use std::{
    io,
    path::{Path, PathBuf},
};

use crate::RecordId;

/// An error opening, reading, syncing or acking the buffer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid disk buffer config: {0}")]
    InvalidConfig(String),

    #[error(
        "disk buffer {} is already open (lock held on {}); run one edge agent per buffer directory",
        .dir.display(),
        .lock.display()
    )]
    Locked { dir: PathBuf, lock: PathBuf },

    #[error("disk buffer: cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("ack for record {0}, which this buffer does not hold")]
    UnknownRecord(RecordId),

    #[error(
        "an earlier write to {} failed and could not be rolled back; reopen the buffer to recover it",
        .path.display()
    )]
    WriterPoisoned { path: PathBuf },
}

/// An error from [`crate::DiskBuffer::append`]; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("empty record: the disk buffer stores only non-empty records")]
    Empty,

    #[error("record of {len} bytes exceeds max_record_bytes ({max}); split the batch")]
    TooLarge { len: usize, max: u32 },

    #[error(
        "disk buffer full: {used} of {max} bytes used and the record needs {needed}; retry after the central tier acks"
    )]
    Full { used: u64, needed: u64, max: u64 },

    #[error(transparent)]
    Buffer(#[from] Error),
}

/// Attaches what was being done, and to which path, to an IO error.
pub(crate) trait IoContext<T> {
    fn context(self, action: &'static str, path: &Path) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, action: &'static str, path: &Path) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        })
    }
}
