//! The archive against a temp directory, as central uses it.

use std::path::Path;

use bytes::Bytes;
use hourglass_model::BatchId;

use crate::{Archive, ArchiveError, BatchKey, Hour, Quarantine, Stored};

fn hour(s: &str) -> Hour {
    s.parse().unwrap()
}

fn key(h: &str, edge: &str, seq: u64) -> BatchKey {
    BatchKey {
        hour: hour(h),
        batch_id: BatchId {
            edge_id: edge.into(),
            seq,
        },
    }
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn a_put_leaves_exactly_one_file_and_a_resend_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::local(dir.path()).unwrap();
    let k = key("2026-11-25T14", "pop-1", 7);
    let bytes = Bytes::from_static(b"batch file bytes");

    assert_eq!(archive.put(&k, bytes.clone()).await.unwrap(), Stored::New);
    assert_eq!(
        archive.put(&k, bytes.clone()).await.unwrap(),
        Stored::AlreadyArchived
    );
    assert_eq!(
        files(dir.path()),
        vec![k.path()],
        "no staging file, no copy"
    );
    assert_eq!(archive.get(&k).await.unwrap(), bytes);

    // Same id, other bytes: refused, the first copy kept.
    let err = archive
        .put(&k, Bytes::from_static(b"something else"))
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Conflict { .. }), "{err}");
    assert_eq!(archive.get(&k).await.unwrap(), bytes);
}

#[tokio::test]
async fn concurrent_puts_of_one_batch_store_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::local(dir.path()).unwrap();
    let k = key("2026-11-25T14", "pop-1", 1);
    let bytes = Bytes::from(vec![7u8; 100_000]);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (archive, k, bytes) = (archive.clone(), k.clone(), bytes.clone());
            tokio::spawn(async move { archive.put(&k, bytes).await.unwrap() })
        })
        .collect();
    let mut new = 0;
    for t in tasks {
        if t.await.unwrap() == Stored::New {
            new += 1;
        }
    }
    assert_eq!(new, 1);
    assert_eq!(files(dir.path()), vec![k.path()]);
}

#[tokio::test]
async fn listing_by_hour_range_and_strays_and_staging_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::local(dir.path()).unwrap();
    let keys = [
        key("2026-11-25T13", "pop-2", 1),
        key("2026-11-25T14", "pop-2", 3),
        key("2026-11-25T14", "pop-1", 10),
        key("2026-11-25T14", "pop-1", 9),
        key("2026-11-25T23", "pop-1", 11),
        key("2026-11-26T00", "pop-1", 12),
    ];
    for k in &keys {
        archive.put(k, Bytes::from_static(b"x")).await.unwrap();
    }
    // What a crash mid-put leaves, and an operator's stray file.
    let edge_dir = dir.path().join("raw/v1/2026/11/25/14/pop-1");
    std::fs::write(edge_dir.join("pop-1-00000000000000000099.hgb#3"), b"half").unwrap();
    std::fs::write(edge_dir.join("notes.txt"), b"hi").unwrap();

    let got = archive.list_hour(hour("2026-11-25T14")).await.unwrap();
    assert_eq!(got, vec![keys[3].clone(), keys[2].clone(), keys[1].clone()]);
    let got = archive
        .list_hours(hour("2026-11-25T14"), hour("2026-11-26T00"))
        .await
        .unwrap();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got.last(), Some(&keys[4]));
    assert!(
        archive
            .list_hour(hour("2020-01-01T00"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        archive.raw_hours().await.unwrap(),
        [
            "2026-11-25T13",
            "2026-11-25T14",
            "2026-11-25T23",
            "2026-11-26T00"
        ]
        .map(hour)
    );
}

#[tokio::test]
async fn quarantine_keeps_the_bytes_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::local(dir.path()).unwrap();
    let id = BatchId {
        edge_id: "pop-1".into(),
        seq: 5,
    };
    let stem = archive
        .quarantine(Quarantine {
            batch_id: &id,
            refused_at_ms: hour("2026-11-25T14").start_ms() + 5,
            reason: "checksum",
            message: "batch checksum mismatch",
            bytes: Bytes::from_static(b"garbage"),
        })
        .await
        .unwrap();
    assert_eq!(
        stem,
        "quarantine/2026/11/25/14/pop-1/pop-1-00000000000000000005"
    );
    assert_eq!(
        std::fs::read(dir.path().join(format!("{stem}.hgb"))).unwrap(),
        b"garbage"
    );
    let why: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("{stem}.json"))).unwrap())
            .unwrap();
    assert_eq!(why["reason"], "checksum");
    assert_eq!(why["batch_id"], "pop-1-00000000000000000005");
    // Never listed as an archived batch.
    assert!(archive.raw_hours().await.unwrap().is_empty());
}

#[tokio::test]
async fn sweep_deletes_only_hours_before_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::local(dir.path()).unwrap();
    let old = key("2026-11-01T05", "pop-1", 1);
    let kept = key("2026-11-20T00", "pop-1", 2);
    for k in [&old, &kept] {
        archive.put(k, Bytes::from_static(b"x")).await.unwrap();
    }
    archive
        .quarantine(Quarantine {
            batch_id: &old.batch_id,
            refused_at_ms: old.hour.start_ms(),
            reason: "decode",
            message: "bad",
            bytes: Bytes::from_static(b"?"),
        })
        .await
        .unwrap();

    let report = archive.sweep(hour("2026-11-20T00")).await.unwrap();
    assert_eq!(report.batches_deleted, 1);
    assert_eq!(report.quarantined_deleted, 2);
    assert_eq!(files(dir.path()), vec![kept.path()]);
    assert_eq!(archive.raw_hours().await.unwrap(), vec![kept.hour]);
    assert!(
        !dir.path().join("raw/v1/2026/11/01").exists(),
        "emptied directories are removed"
    );
}

#[tokio::test]
async fn plugin_blobs_are_content_addressed() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::local(dir.path()).unwrap();
    let sha = archive
        .put_plugin_blob(bytes::Bytes::from_static(b"abc"))
        .await
        .unwrap();
    assert_eq!(
        sha,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert!(dir.path().join(crate::plugin_blob_key(&sha)).is_file());
    // Again: the same name, no error.
    assert_eq!(
        archive
            .put_plugin_blob(bytes::Bytes::from_static(b"abc"))
            .await
            .unwrap(),
        sha
    );
    assert_eq!(
        archive.get_plugin_blob(&sha).await.unwrap().as_deref(),
        Some(&b"abc"[..])
    );
    let missing = "0".repeat(64);
    assert!(archive.get_plugin_blob(&missing).await.unwrap().is_none());
    assert!(matches!(
        archive.get_plugin_blob("../raw").await,
        Err(crate::ArchiveError::BadBlobName(_))
    ));
}
