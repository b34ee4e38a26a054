//! A fixed sample batch for golden-file tests, the fuzz seed corpus and
//! other crates' tests. It is part of the wire contract: the golden file
//! `tests/golden/batch-v1.hgb` must decode to exactly this value, so never
//! change what it returns; add a new sample (and a new golden file) instead.

use crate::{
    Batch, BatchHeader, BatchId, Event, Identity, IdentitySource, Prop, Protocol, RawHit, Reject,
};

/// 2026-11-25T14:00:00Z, the receive hour of the sample.
const HOUR_MS: i64 = 1_795_615_200_000;
const EDGE: &str = "edge-fra-1";
const SITE: &str = "site-example-com";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0";

/// Five hits, one per client protocol; four events (with props, revenue, a
/// non-interactive one and non-ASCII text); two rejects (a plugin drop and a
/// host-side one).
pub fn sample_batch() -> Batch {
    let raw_hits = vec![
        RawHit {
            received_at_ms: HOUR_MS + 1_250,
            edge_id: EDGE.into(),
            seq: 9_001,
            protocol: Protocol::Native.into(),
            method: "POST".into(),
            path_and_query: "/api/event".into(),
            user_agent: FIREFOX.into(),
            referer: "https://example.com/pricing".into(),
            origin: "https://example.com".into(),
            accept_language: "de-CH,de;q=0.9,en;q=0.8".into(),
            client_ip: "192.0.2.10".into(),
            body: br#"{"n":"pageview","u":"https://example.com/pricing?utm_source=newsletter&utm_medium=email","d":"example.com","r":"https://news.ycombinator.com/"}"#.to_vec(),
            identity: Some(Identity {
                site_id: SITE.into(),
                visitor_id: 0x1f2e_3d4c_5b6a_7980,
                session_id: 0x0102_0304_0506_0708,
                source: IdentitySource::DailyHash.into(),
            }),
            write_key: String::new(),
            event_identities: Vec::new(),
        },
        RawHit {
            received_at_ms: HOUR_MS + 2_000,
            edge_id: EDGE.into(),
            seq: 9_002,
            protocol: Protocol::Pixel.into(),
            method: "GET".into(),
            path_and_query: "/i.gif?d=example.com&u=%2Fdocs%2Finstall&n=pageview".into(),
            user_agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1".into(),
            referer: String::new(),
            origin: String::new(),
            accept_language: "en-GB".into(),
            client_ip: "2001:db8::7".into(),
            body: Vec::new(),
            identity: Some(Identity {
                site_id: SITE.into(),
                visitor_id: 42,
                session_id: 4_242,
                source: IdentitySource::DailyHash.into(),
            }),
            write_key: String::new(),
            event_identities: Vec::new(),
        },
        RawHit {
            received_at_ms: HOUR_MS + 3_500,
            edge_id: EDGE.into(),
            seq: 9_003,
            protocol: Protocol::Ga4Mp.into(),
            method: "POST".into(),
            path_and_query: "/mp/collect?measurement_id=G-TEST123&api_secret=s3cr3t".into(),
            user_agent: "python-requests/2.32.3".into(),
            referer: String::new(),
            origin: String::new(),
            accept_language: String::new(),
            client_ip: "198.51.100.23".into(),
            body: br#"{"client_id":"123.456","timestamp_micros":"1795611600000000","events":[{"name":"purchase","params":{"currency":"EUR","value":49.9,"transaction_id":"T-1001"}}]}"#.to_vec(),
            identity: Some(Identity {
                site_id: SITE.into(),
                visitor_id: u64::MAX,
                session_id: 1,
                source: IdentitySource::ClientId.into(),
            }),
            write_key: String::new(),
            event_identities: Vec::new(),
        },
        RawHit {
            received_at_ms: HOUR_MS + 4_000,
            edge_id: EDGE.into(),
            seq: 9_004,
            protocol: Protocol::NativeBatch.into(),
            method: "POST".into(),
            path_and_query: "/api/batch".into(),
            user_agent: FIREFOX.into(),
            referer: "https://example.com/signup".into(),
            origin: "https://example.com".into(),
            accept_language: "fr".into(),
            client_ip: "192.0.2.10".into(),
            body: br#"[{"n":"Signup","u":"https://example.com/signup","p":{"plan":"pro"}},{"n":"","u":"https://example.com/signup"}]"#.to_vec(),
            identity: Some(Identity {
                site_id: SITE.into(),
                visitor_id: 0x1f2e_3d4c_5b6a_7980,
                session_id: 0x0102_0304_0506_0708,
                source: IdentitySource::DailyHash.into(),
            }),
            write_key: String::new(),
            event_identities: Vec::new(),
        },
        RawHit {
            received_at_ms: HOUR_MS + 5_999,
            edge_id: EDGE.into(),
            seq: 9_005,
            protocol: Protocol::Segment.into(),
            method: "POST".into(),
            path_and_query: "/v1/track".into(),
            user_agent: "Googlebot/2.1 (+http://www.google.com/bot.html)".into(),
            referer: String::new(),
            origin: String::new(),
            accept_language: String::new(),
            client_ip: "203.0.113.99".into(),
            body: br#"{"userId":"u-77","event":"Viewed Page","properties":{}}"#.to_vec(),
            identity: Some(Identity {
                site_id: SITE.into(),
                visitor_id: 7,
                session_id: 77,
                source: IdentitySource::UserId.into(),
            }),
            write_key: String::new(),
            event_identities: Vec::new(),
        },
    ];

    let pageview_pricing = Event {
        ts_ms: HOUR_MS + 1_250,
        received_at_ms: HOUR_MS + 1_250,
        site_id: SITE.into(),
        name: "pageview".into(),
        visitor_id: 0x1f2e_3d4c_5b6a_7980,
        session_id: 0x0102_0304_0506_0708,
        hostname: "example.com".into(),
        pathname: "/pricing".into(),
        referrer: "https://news.ycombinator.com/".into(),
        referrer_source: "Hacker News".into(),
        channel: "Email".into(),
        utm_source: "newsletter".into(),
        utm_medium: "email".into(),
        country: "CH".into(),
        region: "CH-ZH".into(),
        city: "Zürich".into(),
        device: "Desktop".into(),
        browser: "Firefox".into(),
        browser_version: "145.0".into(),
        os: "GNU/Linux".into(),
        interactive: true,
        hit_index: 0,
        ..Event::default()
    };
    let pageview_docs = Event {
        ts_ms: HOUR_MS + 2_000,
        received_at_ms: HOUR_MS + 2_000,
        name: "pageview".into(),
        visitor_id: 42,
        session_id: 4_242,
        pathname: "/docs/install".into(),
        referrer: String::new(),
        referrer_source: String::new(),
        channel: "Direct".into(),
        utm_source: String::new(),
        utm_medium: String::new(),
        country: "GB".into(),
        region: String::new(),
        city: String::new(),
        device: "Mobile".into(),
        browser: "Safari".into(),
        browser_version: "18.1".into(),
        os: "iOS".into(),
        os_version: "18.1".into(),
        hit_index: 1,
        ..pageview_pricing.clone()
    };
    let purchase = Event {
        // GA4 MP sent its own timestamp, an hour before receipt.
        ts_ms: HOUR_MS - 3_600_000,
        received_at_ms: HOUR_MS + 3_500,
        site_id: SITE.into(),
        name: "purchase".into(),
        visitor_id: u64::MAX,
        session_id: 1,
        hostname: "example.com".into(),
        channel: "Direct".into(),
        props: vec![Prop {
            key: "transaction_id".into(),
            value: "T-1001".into(),
        }],
        revenue_micros: 49_900_000,
        revenue_currency: "EUR".into(),
        interactive: false,
        hit_index: 2,
        ..Event::default()
    };
    let signup = Event {
        ts_ms: HOUR_MS + 4_000,
        received_at_ms: HOUR_MS + 4_000,
        name: "Signup".into(),
        pathname: "/signup".into(),
        referrer: String::new(),
        referrer_source: String::new(),
        channel: "Direct".into(),
        utm_source: String::new(),
        utm_medium: String::new(),
        utm_campaign: String::new(),
        props: vec![
            Prop {
                key: "plan".into(),
                value: "pro".into(),
            },
            Prop {
                key: "cohort".into(),
                value: "2026-W48 ✓".into(),
            },
        ],
        hit_index: 3,
        ..pageview_pricing.clone()
    };
    let events = vec![pageview_pricing, pageview_docs, purchase, signup];

    let rejects = vec![
        Reject {
            hit_index: 3,
            reason: "invalid_event_name".into(),
            field: "n".into(),
            // Host-side: the native protocol parser refused an empty name.
            plugin: String::new(),
        },
        Reject {
            hit_index: 4,
            reason: "bot".into(),
            field: "user_agent".into(),
            plugin: "bot-filter".into(),
        },
    ];

    Batch {
        header: Some(BatchHeader {
            id: Some(BatchId {
                edge_id: EDGE.into(),
                seq: 1_234,
            }),
            created_at_ms: HOUR_MS + 6_000,
            plugin_set: "ps-7".into(),
            hit_count: 5,
            event_count: 4,
            reject_count: 2,
        }),
        raw_hits,
        events,
        rejects,
    }
}
