//! Golden files: batches written by earlier releases must decode, forever.
//!
//! `tests/golden/batch-v1.hgb` was written once from
//! `hourglass_model::golden::sample_batch()`. It is committed and must never
//! be regenerated (see `tests/golden/README.md`). `HOURGLASS_BLESS=1` writes
//! a golden file only where none exists, for a new format version.

use std::path::Path;

use hourglass_model::golden::sample_batch;
use hourglass_model::{FORMAT_VERSION, decode_batch, encode_batch, peek_header};

const BATCH_V1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/golden/batch-v1.hgb"
);

fn blessing() -> bool {
    std::env::var_os("HOURGLASS_BLESS").is_some_and(|value| value == "1")
}

#[test]
fn batch_v1_decodes_to_the_sample_batch() {
    let path = Path::new(BATCH_V1);
    // Blessing only creates a missing file; an existing golden file is
    // never overwritten, whatever the environment says.
    if blessing() && !path.exists() {
        assert_eq!(
            FORMAT_VERSION, 1,
            "batch-v1.hgb must be written by a version-1 encoder; add a new golden file for a new version"
        );
        std::fs::write(path, encode_batch(&sample_batch()))
            .unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
    }
    let bytes = std::fs::read(path).unwrap_or_else(|err| {
        panic!(
            "reading {}: {err} (the golden file is committed; only a new format version may \
             create one, with HOURGLASS_BLESS=1)",
            path.display()
        )
    });

    let header = peek_header(&bytes).expect("batch-v1.hgb has a valid header");
    assert_eq!(header.version, 1);
    assert_eq!(header.flags, 0);
    assert_eq!(header.frame_len(), bytes.len() as u64);

    let batch = decode_batch(&bytes).expect("batch-v1.hgb decodes");
    // Decoded values, not encoded bytes: zstd output may differ between
    // zstd releases, what a file means may not.
    assert_eq!(batch, sample_batch());
    let id = batch.id().expect("the sample batch has an id");
    assert_eq!(id.to_string(), "edge-fra-1-00000000000000001234");
    assert_eq!(batch.raw_hits.len(), 5);
    assert_eq!(batch.events.len(), 4);
    assert_eq!(batch.rejects.len(), 2);
}
