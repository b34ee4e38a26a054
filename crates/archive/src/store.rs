//! [`Archive`]: the IO half, over any `object_store` backend.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use hourglass_model::BatchId;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::key::{
    BatchKey, Hour, QUARANTINE_PREFIX, RAW_PREFIX, hour_of, is_sha256_hex, plugin_blob_key,
    quarantine_stem, raw_hour_prefix,
};

/// Why an archive operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(
        "cannot open the archive directory {path}: {source}; check that it exists and is writable"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: object_store::Error,
    },
    #[error("archive {op} of `{key}` failed: {source}")]
    Store {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("`{0}` is not a plugin blob name (64 lower-case hex digits of a SHA-256)")]
    BadBlobName(String),
    #[error(
        "`{key}` is already archived with different bytes: two different batches carry id {batch_id}. \
         The edge's batch sequence went backwards (lost or replaced disk buffer?); give that edge a new edge id"
    )]
    Conflict { key: String, batch_id: String },
}

impl ArchiveError {
    fn store(op: &'static str, key: impl Into<String>) -> impl FnOnce(object_store::Error) -> Self {
        let key = key.into();
        move |source| ArchiveError::Store { op, key, source }
    }
}

/// What [`Archive::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The batch is now archived (and durable, on the local backend).
    New,
    /// The same bytes were already archived under this key: a re-send.
    AlreadyArchived,
}

/// A request central refused, kept with the reason for an operator.
#[derive(Debug, Clone)]
pub struct Quarantine<'a> {
    pub batch_id: &'a BatchId,
    /// When central refused it (milliseconds since the epoch).
    pub refused_at_ms: i64,
    /// A stable label, as in the `reason` metric label.
    pub reason: &'a str,
    pub message: &'a str,
    /// The request payload exactly as received.
    pub bytes: Bytes,
}

/// What a retention sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub batches_deleted: u64,
    pub quarantined_deleted: u64,
}

/// An archived batch, as listed: its key, size, and when it was archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub key: BatchKey,
    pub size: u64,
    /// When the object was written (the store's last-modified time), in
    /// milliseconds since the epoch.
    pub archived_at_ms: i64,
}

/// The batch archive. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
}

impl Archive {
    /// The archive in local directory `dir` (created if missing), with
    /// every write fsynced: the file, then every directory entry it added
    /// (`LocalFileSystem::with_fsync`). Empty directories are removed when
    /// a sweep empties them.
    pub fn local(dir: &Path) -> Result<Archive, ArchiveError> {
        let open = |source| ArchiveError::Open {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| {
            open(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            })
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(open)?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(Archive::new(Arc::new(store)))
    }

    /// An archive on any store (S3, memory for tests, …). The store must
    /// support `PutMode::Create`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Archive {
        Archive { store }
    }

    /// Archives one batch file under `key`, never overwriting: a put
    /// either leaves the whole object or none (the backend writes a staging
    /// object and publishes it in one step), and a key that exists already
    /// is compared, so a re-sent batch is [`Stored::AlreadyArchived`] with
    /// no second copy, and a *different* batch with the same id is a
    /// [`ArchiveError::Conflict`].
    pub async fn put(&self, key: &BatchKey, bytes: Bytes) -> Result<Stored, ArchiveError> {
        let path = key.path();
        let location = ObjectPath::from(path.as_str());
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&location, PutPayload::from_bytes(bytes.clone()), opts)
            .await
        {
            Ok(_) => Ok(Stored::New),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let existing = self.get_path(&path).await?;
                if existing == bytes {
                    Ok(Stored::AlreadyArchived)
                } else {
                    Err(ArchiveError::Conflict {
                        key: path,
                        batch_id: key.batch_id.to_string(),
                    })
                }
            }
            Err(source) => Err(ArchiveError::Store {
                op: "put",
                key: path,
                source,
            }),
        }
    }

    /// The batch file under `key`.
    pub async fn get(&self, key: &BatchKey) -> Result<Bytes, ArchiveError> {
        self.get_path(&key.path()).await
    }

    async fn get_path(&self, path: &str) -> Result<Bytes, ArchiveError> {
        let location = ObjectPath::from(path);
        let result = self
            .store
            .get(&location)
            .await
            .map_err(ArchiveError::store("get", path))?;
        result
            .bytes()
            .await
            .map_err(ArchiveError::store("get", path))
    }

    /// The batches archived for receive hour `hour`, sorted by edge and
    /// sequence. Files that are not batch keys are skipped.
    pub async fn list_hour(&self, hour: Hour) -> Result<Vec<BatchKey>, ArchiveError> {
        Ok(self
            .list_hour_archived(hour)
            .await?
            .into_iter()
            .map(|a| a.key)
            .collect())
    }

    /// [`Archive::list_hour`] with sizes and archive times.
    pub async fn list_hour_archived(&self, hour: Hour) -> Result<Vec<Archived>, ArchiveError> {
        let mut batches: Vec<Archived> = self
            .objects_under(&raw_hour_prefix(hour))
            .await?
            .into_iter()
            .filter_map(|meta| {
                Some(Archived {
                    key: BatchKey::parse(meta.location.as_ref())?,
                    size: meta.size,
                    archived_at_ms: meta.last_modified.timestamp_millis(),
                })
            })
            .collect();
        batches.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(batches)
    }

    /// The batches of receive hours `from` (inclusive) to `to` (exclusive),
    /// in hour order.
    pub async fn list_hours(&self, from: Hour, to: Hour) -> Result<Vec<BatchKey>, ArchiveError> {
        let mut keys = Vec::new();
        let mut hour = from;
        while hour < to {
            keys.extend(self.list_hour(hour).await?);
            if hour.next() == hour {
                break;
            }
            hour = hour.next();
        }
        Ok(keys)
    }

    /// Every receive hour that holds at least one archived batch, sorted.
    pub async fn raw_hours(&self) -> Result<Vec<Hour>, ArchiveError> {
        self.hours(RAW_PREFIX).await
    }

    /// Keeps a refused request and why: `<stem>.hgb` (the bytes as sent)
    /// and `<stem>.json` (reason, message, edge, batch id, time), under the
    /// hour central refused it. Returns the stem. A re-sent refused batch
    /// replaces its earlier copy.
    pub async fn quarantine(&self, q: Quarantine<'_>) -> Result<String, ArchiveError> {
        let hour = Hour::from_unix_ms(q.refused_at_ms)
            .unwrap_or_else(|_| Hour::from_unix_ms(0).expect("the epoch is a valid hour"));
        let stem = quarantine_stem(hour, q.batch_id);
        let why = serde_json::json!({
            "batch_id": q.batch_id.to_string(),
            "edge": q.batch_id.edge_id,
            "reason": q.reason,
            "message": q.message,
            "refused_at_ms": q.refused_at_ms,
            "bytes": q.bytes.len(),
        });
        for (suffix, payload) in [
            (".hgb", PutPayload::from_bytes(q.bytes)),
            (".json", PutPayload::from(why.to_string().into_bytes())),
        ] {
            let path = format!("{stem}{suffix}");
            self.store
                .put(&ObjectPath::from(path.as_str()), payload)
                .await
                .map_err(ArchiveError::store("put", path))?;
        }
        Ok(stem)
    }

    /// Retention: deletes archived batches of receive hours before
    /// `before`, and quarantined requests refused before it. The archive is
    /// the source of truth, so the caller chooses `before` far behind the
    /// loader and any reprocess it may still need.
    pub async fn sweep(&self, before: Hour) -> Result<SweepReport, ArchiveError> {
        let mut report = SweepReport::default();
        for (prefix, count) in [
            (RAW_PREFIX, &mut report.batches_deleted),
            (QUARANTINE_PREFIX, &mut report.quarantined_deleted),
        ] {
            for hour in self.hours(prefix).await? {
                if hour >= before {
                    break;
                }
                let hour_prefix = format!("{prefix}/{}", hour.path());
                for meta in self.objects_under(&hour_prefix).await? {
                    self.store
                        .delete(&meta.location)
                        .await
                        .map_err(ArchiveError::store("delete", meta.location.as_ref()))?;
                    *count += 1;
                }
            }
        }
        Ok(report)
    }

    /// Direct children of `prefix`: (sub-prefixes, objects), as paths.
    async fn children(&self, prefix: &str) -> Result<(Vec<String>, Vec<ObjectMeta>), ArchiveError> {
        let location = ObjectPath::from(prefix);
        match self.store.list_with_delimiter(Some(&location)).await {
            Ok(list) => Ok((
                list.common_prefixes
                    .into_iter()
                    .map(|p| p.to_string())
                    .collect(),
                list.objects,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok((Vec::new(), Vec::new())),
            Err(source) => Err(ArchiveError::Store {
                op: "list",
                key: prefix.to_string(),
                source,
            }),
        }
    }

    /// Objects in `<hour prefix>/<edge>/`.
    async fn objects_under(&self, hour_prefix: &str) -> Result<Vec<ObjectMeta>, ArchiveError> {
        let (edges, mut objects) = self.children(hour_prefix).await?;
        for edge in edges {
            objects.extend(self.children(&edge).await?.1);
        }
        Ok(objects)
    }

    /// The hours under `<prefix>/YYYY/MM/DD/HH`, sorted.
    async fn hours(&self, prefix: &str) -> Result<Vec<Hour>, ArchiveError> {
        let mut level = vec![prefix.to_string()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for dir in &level {
                next.extend(self.children(dir).await?.0);
            }
            level = next;
        }
        let mut hours: Vec<Hour> = level.iter().filter_map(|p| hour_of(prefix, p)).collect();
        hours.sort();
        hours.dedup();
        Ok(hours)
    }
}

/// Plugin blobs (components and data files), content-addressed under
/// [`plugin_blob_key`].
impl Archive {
    /// Stores a plugin blob under the SHA-256 of its bytes and returns that
    /// (lower-case hex). Storing the same bytes again is a no-op.
    pub async fn put_plugin_blob(&self, bytes: Bytes) -> Result<String, ArchiveError> {
        use sha2::{Digest, Sha256};
        let sha256: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = plugin_blob_key(&sha256);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(
                &ObjectPath::from(path.as_str()),
                PutPayload::from_bytes(bytes),
                opts,
            )
            .await
        {
            // Same key, same content: the name is the content's hash.
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(sha256),
            Err(source) => Err(ArchiveError::Store {
                op: "put",
                key: path,
                source,
            }),
        }
    }

    /// The plugin blob whose SHA-256 is `sha256`; `None` when there is none.
    /// The caller checks the bytes against the name (the edge does).
    pub async fn get_plugin_blob(&self, sha256: &str) -> Result<Option<Bytes>, ArchiveError> {
        if !is_sha256_hex(sha256) {
            return Err(ArchiveError::BadBlobName(sha256.to_owned()));
        }
        match self.get_path(&plugin_blob_key(sha256)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(ArchiveError::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }) => Ok(None),
            Err(other) => Err(other),
        }
    }
}
