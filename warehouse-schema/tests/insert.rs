//! `Warehouse::insert_events` against a real server: every field lands in
//! its column (RowBinary has no names, so a mismatch would only show here),
//! bad times are refused before anything is sent, empty batches are no-ops.

mod common;

use hourglass_model::{BatchId, Event, Prop};
use hourglass_warehouse::WarehouseError;

fn batch(seq: u64) -> BatchId {
    BatchId {
        edge_id: "edge-a".into(),
        seq,
    }
}

#[test]
fn every_field_round_trips() {
    let rt = common::runtime();
    let (db, wh) = common::migrated(&rt);
    let event = Event {
        ts_ms: 1_772_323_200_999, // 2026-03-01T00:00:00.999Z
        received_at_ms: 1_772_323_201_000,
        site_id: "site-1".into(),
        name: "signup".into(),
        visitor_id: u64::MAX,
        session_id: 42,
        hostname: "www.example.com".into(),
        pathname: "/pricing".into(),
        referrer: "https://news.example/item?id=1".into(),
        referrer_source: "Example News".into(),
        channel: "Referral".into(),
        utm_source: "us".into(),
        utm_medium: "um".into(),
        utm_campaign: "uc".into(),
        utm_content: "uco".into(),
        utm_term: "ut".into(),
        country: "FR".into(),
        region: "FR-ARA".into(),
        city: "Lyon".into(),
        device: "Mobile".into(),
        browser: "Firefox".into(),
        browser_version: "140.0".into(),
        os: "Android".into(),
        os_version: "15".into(),
        props: vec![
            Prop {
                key: "plan".into(),
                value: "pro".into(),
            },
            Prop {
                key: "note".into(),
                value: "tab\there, quote ' ü".into(),
            },
        ],
        revenue_micros: -1_250_000,
        revenue_currency: "EUR".into(),
        interactive: true,
        hit_index: 7,
    };
    let rows = rt
        .block_on(wh.insert_events(&batch(3), "ps-9", std::slice::from_ref(&event)))
        .unwrap();
    assert_eq!(rows, 1);

    let got = db
        .query(
            "SELECT ts, received_at, site_id, name, visitor_id, session_id, hostname, pathname, \
             referrer, referrer_source, channel, utm_source, utm_medium, utm_campaign, utm_content, \
             utm_term, country, region, city, device, browser, browser_version, os, os_version, \
             props.key, props.value, revenue_micros, revenue_currency, interactive, hit_index, \
             batch_id, plugin_set FROM events FORMAT TSV",
        )
        .unwrap();
    let expected = [
        "2026-03-01 00:00:00",
        "2026-03-01 00:00:01",
        "site-1",
        "signup",
        "18446744073709551615",
        "42",
        "www.example.com",
        "/pricing",
        "https://news.example/item?id=1",
        "Example News",
        "Referral",
        "us",
        "um",
        "uc",
        "uco",
        "ut",
        "FR",
        "FR-ARA",
        "Lyon",
        "Mobile",
        "Firefox",
        "140.0",
        "Android",
        "15",
        "['plan','note']",
        r"['pro','tab\there, quote \' ü']",
        "-1250000",
        "EUR",
        "1",
        "7",
        "edge-a-00000000000000000003",
        "ps-9",
    ]
    .join("\t");
    assert_eq!(got.trim_end_matches('\n'), expected);

    // The materialized views fired for this insert.
    let hourly = db
        .query("SELECT countIfMerge(pageviews), countMerge(events) FROM site_hourly FORMAT TSV")
        .unwrap();
    assert_eq!(hourly, "0\t1\n");
}

#[test]
fn refuses_out_of_range_times_and_sends_nothing() {
    let rt = common::runtime();
    let (db, wh) = common::migrated(&rt);
    let good = Event {
        ts_ms: 1_772_323_200_000,
        received_at_ms: 1_772_323_200_000,
        site_id: "s".into(),
        name: "pageview".into(),
        ..Default::default()
    };
    for (field, bad) in [
        (
            "ts_ms",
            Event {
                ts_ms: -1,
                ..good.clone()
            },
        ),
        (
            "ts_ms",
            Event {
                ts_ms: 4_102_444_800_000,
                ..good.clone()
            },
        ),
        (
            "received_at_ms",
            Event {
                received_at_ms: i64::MAX,
                ..good.clone()
            },
        ),
    ] {
        let events = [good.clone(), bad];
        match rt.block_on(wh.insert_events(&batch(1), "ps", &events)) {
            Err(WarehouseError::TimestampOutOfRange {
                index, field: f, ..
            }) => {
                assert_eq!((index, f), (1, field));
            }
            other => panic!("expected TimestampOutOfRange for {field}, got {other:?}"),
        }
    }
    assert_eq!(
        db.query("SELECT count() FROM events FORMAT TSV").unwrap(),
        "0\n"
    );

    assert_eq!(
        rt.block_on(wh.insert_events(&batch(2), "ps", &[])).unwrap(),
        0
    );
    assert_eq!(
        db.query("SELECT count() FROM events FORMAT TSV").unwrap(),
        "0\n"
    );
}

#[test]
fn server_errors_carry_context() {
    let rt = common::runtime();
    let db = hourglass_testkit::fresh_database();
    let wh = common::warehouse(&db); // not migrated: no `events` table
    let event = Event {
        ts_ms: 0,
        received_at_ms: 0,
        ..Default::default()
    };
    let err = rt
        .block_on(wh.insert_events(&batch(5), "ps", &[event]))
        .unwrap_err();
    let message = format!("{err}");
    assert!(
        message.contains("inserting batch edge-a-00000000000000000005"),
        "{message}"
    );
    let cause = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        cause.contains("events"),
        "the server's message names the table: {cause}"
    );
}
