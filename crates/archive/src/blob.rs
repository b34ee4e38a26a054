//! Plugin components and their data files, content-addressed beside the
//! batches: `plugins/blobs/<sha256 hex>`. The registry in `central-ingest`
//! stores them after validation; whatever ships chains to edges reads them
//! by the hash a binding names. A blob never changes once written (its key
//! is its content), so a second put of the same bytes stores nothing.

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::store::{Archive, ArchiveError, Stored};

/// Prefix of plugin blobs.
pub const PLUGIN_BLOB_PREFIX: &str = "plugins/blobs";

/// The archive key of the plugin component or data file whose SHA-256 is
/// `sha256` (lower-case hex).
pub fn plugin_blob_key(sha256: &str) -> String {
    format!("{PLUGIN_BLOB_PREFIX}/{sha256}")
}

/// Whether `s` is a SHA-256 as blob keys spell it: 64 lower-case hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Archive {
    /// Stores a plugin blob under [`plugin_blob_key`]`(sha256)`, which the
    /// caller computed from `bytes`. Create-only: when the key exists the
    /// blob is already stored ([`Stored::AlreadyArchived`]), nothing is
    /// written.
    pub async fn put_plugin_blob(
        &self,
        sha256: &str,
        bytes: Bytes,
    ) -> Result<Stored, ArchiveError> {
        let key = plugin_blob_key(sha256);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store()
            .put_opts(
                &ObjectPath::from(key.as_str()),
                PutPayload::from_bytes(bytes),
                opts,
            )
            .await
        {
            Ok(_) => Ok(Stored::New),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Stored::AlreadyArchived),
            Err(source) => Err(ArchiveError::Store {
                op: "put",
                key,
                source,
            }),
        }
    }

    /// The plugin blob whose SHA-256 is `sha256`, or `None` when there is
    /// none.
    pub async fn plugin_blob(&self, sha256: &str) -> Result<Option<Bytes>, ArchiveError> {
        let key = plugin_blob_key(sha256);
        let location = ObjectPath::from(key.as_str());
        let result = match self.store().get(&location).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => {
                return Err(ArchiveError::Store {
                    op: "get",
                    key,
                    source,
                });
            }
        };
        result
            .bytes()
            .await
            .map(Some)
            .map_err(|source| ArchiveError::Store {
                op: "get",
                key,
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;

    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn keys_are_the_hash_under_the_prefix() {
        assert_eq!(plugin_blob_key(HASH), format!("plugins/blobs/{HASH}"));
        assert!(is_sha256_hex(HASH));
        assert!(!is_sha256_hex(&HASH.to_uppercase()));
        assert!(!is_sha256_hex("../../etc/passwd"));
        assert!(!is_sha256_hex(&HASH[1..]));
    }

    #[tokio::test]
    async fn a_blob_is_stored_once_and_read_back() {
        let archive = Archive::new(Arc::new(InMemory::new()));
        assert_eq!(archive.plugin_blob(HASH).await.unwrap(), None);
        let bytes = Bytes::from_static(b"test");
        assert_eq!(
            archive.put_plugin_blob(HASH, bytes.clone()).await.unwrap(),
            Stored::New
        );
        assert_eq!(
            archive.put_plugin_blob(HASH, bytes.clone()).await.unwrap(),
            Stored::AlreadyArchived
        );
        assert_eq!(archive.plugin_blob(HASH).await.unwrap(), Some(bytes));
    }
}
