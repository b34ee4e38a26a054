//! `decode_batch` on arbitrary bytes: it must never panic, and whatever it
//! accepts must re-encode to a frame that decodes to the same batch.

#![no_main]

use hourglass_model::codec::reseal;
use hourglass_model::{decode_batch, encode_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    // Almost every mutation breaks the CRC, which stops decoding early.
    // Checking a resealed copy too lets the fuzzer reach zstd and protobuf.
    let mut sealed = data.to_vec();
    reseal(&mut sealed);
    check(&sealed);
});

fn check(bytes: &[u8]) {
    if let Ok(batch) = decode_batch(bytes) {
        let again = decode_batch(&encode_batch(&batch))
            .expect("a batch decode_batch accepted re-encodes to a frame it accepts");
        assert_eq!(again, batch, "re-encoding changed the batch");
    }
}
