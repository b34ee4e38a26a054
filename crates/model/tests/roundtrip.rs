//! Property tests for the batch framing: arbitrary batches round-trip,
//! arbitrary bytes never panic, and every single-bit flip is caught.

use hourglass_model::codec::{HEADER_LEN, reseal};
use hourglass_model::{
    Batch, BatchHeader, BatchId, DecodeError, Event, Identity, Prop, RawHit, Reject, decode_batch,
    encode_batch, peek_header,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// Any text, including control characters and non-ASCII, kept short.
fn text() -> impl Strategy<Value = String> {
    "(?s).{0,12}"
}

fn arb_identity() -> impl Strategy<Value = Identity> {
    (text(), any::<u64>(), any::<u64>(), any::<i32>()).prop_map(
        |(site_id, visitor_id, session_id, source)| Identity {
            site_id,
            visitor_id,
            session_id,
            // Unknown enum values must survive too: a newer writer may add some.
            source,
        },
    )
}

fn arb_raw_hit() -> impl Strategy<Value = RawHit> {
    (
        (
            any::<i64>(),
            text(),
            any::<u64>(),
            any::<i32>(),
            text(),
            text(),
        ),
        (text(), text(), text(), text(), text()),
        vec(any::<u8>(), 0..64),
        option::of(arb_identity()),
        text(),
        vec(arb_identity(), 0..3),
    )
        .prop_map(
            |(
                (received_at_ms, edge_id, seq, protocol, method, path_and_query),
                (user_agent, referer, origin, accept_language, client_ip),
                body,
                identity,
                write_key,
                event_identities,
            )| RawHit {
                received_at_ms,
                edge_id,
                seq,
                protocol,
                method,
                path_and_query,
                user_agent,
                referer,
                origin,
                accept_language,
                client_ip,
                body,
                identity,
                write_key,
                event_identities,
            },
        )
}

fn arb_prop() -> impl Strategy<Value = Prop> {
    (text(), text()).prop_map(|(key, value)| Prop { key, value })
}

fn arb_event() -> impl Strategy<Value = Event> {
    (
        (
            any::<i64>(),
            any::<i64>(),
            text(),
            text(),
            any::<u64>(),
            any::<u64>(),
            text(),
            text(),
        ),
        (
            text(),
            text(),
            text(),
            text(),
            text(),
            text(),
            text(),
            text(),
        ),
        (
            text(),
            text(),
            text(),
            text(),
            text(),
            text(),
            text(),
            text(),
        ),
        (
            vec(arb_prop(), 0..4),
            any::<i64>(),
            text(),
            any::<bool>(),
            any::<u32>(),
        ),
    )
        .prop_map(
            |(
                (ts_ms, received_at_ms, site_id, name, visitor_id, session_id, hostname, pathname),
                (
                    referrer,
                    referrer_source,
                    channel,
                    utm_source,
                    utm_medium,
                    utm_campaign,
                    utm_content,
                    utm_term,
                ),
                (country, region, city, device, browser, browser_version, os, os_version),
                (props, revenue_micros, revenue_currency, interactive, hit_index),
            )| Event {
                ts_ms,
                received_at_ms,
                site_id,
                name,
                visitor_id,
                session_id,
                hostname,
                pathname,
                referrer,
                referrer_source,
                channel,
                utm_source,
                utm_medium,
                utm_campaign,
                utm_content,
                utm_term,
                country,
                region,
                city,
                device,
                browser,
                browser_version,
                os,
                os_version,
                props,
                revenue_micros,
                revenue_currency,
                interactive,
                hit_index,
            },
        )
}

fn arb_reject() -> impl Strategy<Value = Reject> {
    (any::<u32>(), text(), text(), text()).prop_map(|(hit_index, reason, field, plugin)| Reject {
        hit_index,
        reason,
        field,
        plugin,
    })
}

fn arb_header() -> impl Strategy<Value = BatchHeader> {
    (
        option::of((text(), any::<u64>()).prop_map(|(edge_id, seq)| BatchId { edge_id, seq })),
        any::<i64>(),
        text(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(id, created_at_ms, plugin_set, hit_count, event_count, reject_count)| BatchHeader {
                id,
                created_at_ms,
                plugin_set,
                hit_count,
                event_count,
                reject_count,
            },
        )
}

fn arb_batch() -> impl Strategy<Value = Batch> {
    (
        option::of(arb_header()),
        vec(arb_raw_hit(), 0..4),
        vec(arb_event(), 0..4),
        vec(arb_reject(), 0..3),
    )
        .prop_map(|(header, raw_hits, events, rejects)| Batch {
            header,
            raw_hits,
            events,
            rejects,
        })
}

proptest! {
    #[test]
    fn arbitrary_batches_round_trip(batch in arb_batch()) {
        let frame = encode_batch(&batch);
        prop_assert_eq!(decode_batch(&frame), Ok(batch));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = decode_batch(&bytes);
        let _ = peek_header(&bytes);
    }

    /// Garbage behind a plausible header, resealed so it gets past the
    /// checksum into zstd and protobuf decoding.
    #[test]
    fn garbage_behind_a_valid_header_never_panics(
        uncompressed_len in prop_oneof![0u32..4096, any::<u32>()],
        payload in vec(any::<u8>(), 0..512),
    ) {
        let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
        frame.extend_from_slice(b"HGB\0");
        frame.extend_from_slice(&1u16.to_le_bytes());
        frame.extend_from_slice(&0u16.to_le_bytes());
        frame.extend_from_slice(&uncompressed_len.to_le_bytes());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(&payload);
        reseal(&mut frame);
        let _ = decode_batch(&frame);
    }

    /// A valid frame whose payload was damaged and resealed: the checksum
    /// no longer helps, zstd and prost must refuse or decode, never panic.
    #[test]
    fn damaged_payload_behind_a_valid_checksum_never_panics(
        batch in arb_batch(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut frame = encode_batch(&batch);
        let payload_len = frame.len() - HEADER_LEN;
        for (at, byte) in edits {
            frame[HEADER_LEN + at.index(payload_len)] = byte;
        }
        reseal(&mut frame);
        if let Ok(decoded) = decode_batch(&frame) {
            prop_assert_eq!(decode_batch(&encode_batch(&decoded)), Ok(decoded));
        }
    }

    #[test]
    fn any_single_bit_flip_is_detected(batch in arb_batch(), bit in any::<prop::sample::Index>()) {
        let mut frame = encode_batch(&batch);
        let bit = bit.index(frame.len() * 8);
        frame[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(decode_batch(&frame).is_err(), "flip of bit {} went undetected", bit);
    }

    #[test]
    fn any_truncation_is_detected(batch in arb_batch(), cut in any::<prop::sample::Index>()) {
        let frame = encode_batch(&batch);
        let len = cut.index(frame.len());
        let result = decode_batch(&frame[..len]);
        prop_assert!(
            matches!(result, Err(DecodeError::Truncated { .. })),
            "cut at {} of {}: {:?}", len, frame.len(), result
        );
    }
}
