//! The canonical records. Field numbers are the wire contract: never reuse or
//! renumber one; add new fields with new numbers (see `docs/wire-format.md`).

/// Which client protocol a hit arrived through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Protocol {
    Unspecified = 0,
    /// Our own tracker / Plausible-compatible `POST /api/event`.
    Native = 1,
    /// `POST /api/batch`.
    NativeBatch = 2,
    /// `GET /i.gif?…` no-JS pixel.
    Pixel = 3,
    /// GA4 Measurement Protocol.
    Ga4Mp = 4,
    /// Segment / RudderStack HTTP API.
    Segment = 5,
}

/// Where `Identity::visitor_id` came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum IdentitySource {
    Unspecified = 0,
    /// Keyed hash of (site, IP, UA) with the day's salt: stable within a day.
    DailyHash = 1,
    /// Keyed hash of a client-supplied id (GA4 client_id, Segment anonymousId…).
    ClientId = 2,
    /// Keyed hash of a client-supplied user id.
    UserId = 3,
}

/// The identity stamp the edge puts on every hit (host code, not plugin code).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Identity {
    #[prost(string, tag = "1")]
    pub site_id: String,
    #[prost(uint64, tag = "2")]
    pub visitor_id: u64,
    #[prost(uint64, tag = "3")]
    pub session_id: u64,
    #[prost(enumeration = "IdentitySource", tag = "4")]
    pub source: i32,
}

/// One beacon as it was received, before any decoding: what `reprocess`
/// needs to run the pipeline again.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RawHit {
    /// Receive time at the edge, milliseconds since the Unix epoch (UTC).
    #[prost(int64, tag = "1")]
    pub received_at_ms: i64,
    #[prost(string, tag = "2")]
    pub edge_id: String,
    /// Per-edge, monotonically increasing hit sequence number.
    #[prost(uint64, tag = "3")]
    pub seq: u64,
    #[prost(enumeration = "Protocol", tag = "4")]
    pub protocol: i32,
    #[prost(string, tag = "5")]
    pub method: String,
    /// Path and query string as requested, e.g. `/mp/collect?measurement_id=…`.
    #[prost(string, tag = "6")]
    pub path_and_query: String,
    #[prost(string, tag = "7")]
    pub user_agent: String,
    #[prost(string, tag = "8")]
    pub referer: String,
    #[prost(string, tag = "9")]
    pub origin: String,
    #[prost(string, tag = "10")]
    pub accept_language: String,
    /// Client IP after trusted-proxy rules. Lives only in archived raw hits;
    /// the warehouse never stores it.
    #[prost(string, tag = "11")]
    pub client_ip: String,
    #[prost(bytes = "vec", tag = "12")]
    pub body: Vec<u8>,
    /// The identity stamp of the hit's first (or only) event.
    #[prost(message, optional, tag = "13")]
    pub identity: Option<Identity>,
    /// The credential the client presented outside the URL and body: the
    /// Segment/RudderStack write key from Basic auth. Kept so `reprocess`
    /// admits the hit exactly as the edge did.
    #[prost(string, tag = "14")]
    pub write_key: String,
    /// One identity stamp per decoded event, in decode order, for hits that
    /// carry several events of possibly different visitors (`/api/batch`,
    /// GA4, Segment batches). Empty: `identity` applies to every event.
    #[prost(message, repeated, tag = "15")]
    pub event_identities: Vec<Identity>,
}

/// A custom property of an event.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Prop {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// One processed event, as it is loaded into the warehouse `events` table.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Event {
    /// Event time, milliseconds since the Unix epoch (UTC).
    #[prost(int64, tag = "1")]
    pub ts_ms: i64,
    #[prost(int64, tag = "2")]
    pub received_at_ms: i64,
    #[prost(string, tag = "3")]
    pub site_id: String,
    /// `pageview` or a custom event name.
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(uint64, tag = "5")]
    pub visitor_id: u64,
    #[prost(uint64, tag = "6")]
    pub session_id: u64,
    #[prost(string, tag = "7")]
    pub hostname: String,
    #[prost(string, tag = "8")]
    pub pathname: String,
    #[prost(string, tag = "9")]
    pub referrer: String,
    #[prost(string, tag = "10")]
    pub referrer_source: String,
    #[prost(string, tag = "11")]
    pub channel: String,
    #[prost(string, tag = "12")]
    pub utm_source: String,
    #[prost(string, tag = "13")]
    pub utm_medium: String,
    #[prost(string, tag = "14")]
    pub utm_campaign: String,
    #[prost(string, tag = "15")]
    pub utm_content: String,
    #[prost(string, tag = "16")]
    pub utm_term: String,
    /// ISO 3166-1 alpha-2, empty when unknown.
    #[prost(string, tag = "17")]
    pub country: String,
    #[prost(string, tag = "18")]
    pub region: String,
    #[prost(string, tag = "19")]
    pub city: String,
    #[prost(string, tag = "20")]
    pub device: String,
    #[prost(string, tag = "21")]
    pub browser: String,
    #[prost(string, tag = "22")]
    pub browser_version: String,
    #[prost(string, tag = "23")]
    pub os: String,
    #[prost(string, tag = "24")]
    pub os_version: String,
    #[prost(message, repeated, tag = "25")]
    pub props: Vec<Prop>,
    /// Revenue in millionths of `revenue_currency`; 0 when none.
    #[prost(int64, tag = "26")]
    pub revenue_micros: i64,
    #[prost(string, tag = "27")]
    pub revenue_currency: String,
    /// false for non-interactive events (they do not end a bounce).
    #[prost(bool, tag = "28")]
    pub interactive: bool,
    /// Index of the `RawHit` in the batch this event came from.
    #[prost(uint32, tag = "29")]
    pub hit_index: u32,
}

/// A hit (or one event of it) that processing refused, with the reason.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Reject {
    #[prost(uint32, tag = "1")]
    pub hit_index: u32,
    /// Machine-readable reason, also used as a metric label value.
    #[prost(string, tag = "2")]
    pub reason: String,
    /// The offending field, when there is one.
    #[prost(string, tag = "3")]
    pub field: String,
    /// The plugin that dropped it, empty for host-side rejects.
    #[prost(string, tag = "4")]
    pub plugin: String,
}

/// A batch id: the edge that made it and that edge's batch sequence number.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct BatchId {
    #[prost(string, tag = "1")]
    pub edge_id: String,
    #[prost(uint64, tag = "2")]
    pub seq: u64,
}

impl std::fmt::Display for BatchId {
    /// `<edge>-<seq, 20 digits>`: sorts like (edge, seq) and is safe in paths.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:020}", self.edge_id, self.seq)
    }
}

/// What a batch is and how it was made; the counts let a reader check it
/// got everything without decoding the events.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BatchHeader {
    #[prost(message, optional, tag = "1")]
    pub id: Option<BatchId>,
    #[prost(int64, tag = "2")]
    pub created_at_ms: i64,
    /// Version of the plugin set the events were processed with.
    #[prost(string, tag = "3")]
    pub plugin_set: String,
    #[prost(uint32, tag = "4")]
    pub hit_count: u32,
    #[prost(uint32, tag = "5")]
    pub event_count: u32,
    #[prost(uint32, tag = "6")]
    pub reject_count: u32,
}

/// The unit that moves through disk buffers, QUIC and the archive.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Batch {
    #[prost(message, optional, tag = "1")]
    pub header: Option<BatchHeader>,
    #[prost(message, repeated, tag = "2")]
    pub raw_hits: Vec<RawHit>,
    #[prost(message, repeated, tag = "3")]
    pub events: Vec<Event>,
    #[prost(message, repeated, tag = "4")]
    pub rejects: Vec<Reject>,
}

impl Batch {
    /// The batch id, when the header carries one (every batch a batcher
    /// closes does).
    pub fn id(&self) -> Option<&BatchId> {
        self.header.as_ref().and_then(|header| header.id.as_ref())
    }
}
