//! The pipeline the edge and `reprocess` share.
//!
//! At the edge, per request:
//! 1. [`Pipeline::admit`] decodes and admits the hit, fast, before the
//!    client is answered, so a bad request gets its 4xx;
//! 2. [`Pipeline::stamp`] computes each event's identity (visitor and
//!    session) and writes the stamps into the hit, which is what is
//!    archived;
//! 3. [`Pipeline::process`] decodes the hit again, applies the *stored*
//!    stamps and runs the plugin chain.
//!
//! `reprocess` runs only step 3 on archived hits, so a reprocessed event is
//! made by the same code from the same bytes and stamps. Step 3 never looks
//! at `client_ip` or `user_agent`, and no [`Event`] carries an IP.

use std::collections::BTreeMap;
use std::sync::Arc;

use hourglass_model::{Event, Identity, Prop, RawHit, Reject};

use crate::decode::{self, Decoded, RejectReason, Rejection};
use crate::identity::{IdentityKeys, SessionTable};
use crate::sites::SiteDirectory;

/// The plugin chain events pass through after decoding.
///
/// Implementations must be deterministic (same events in, same out) for
/// `reprocess` to reproduce ingest. The WASM host implements this over its
/// platform and merchant plugins; [`NoPlugins`] passes events through.
pub trait PluginChain: Send + Sync {
    /// The plugin-set version recorded in each batch header.
    fn plugin_set(&self) -> &str;

    /// Keeps, modifies or drops events. A dropped event comes back as a
    /// [`Reject`] with its `hit_index`, a reason and the plugin's name.
    fn process(&mut self, events: Vec<Event>) -> (Vec<Event>, Vec<Reject>);

    /// [`process`](Self::process), with each event's hit context
    /// (`contexts[i]` belongs to `events[i]`; empty when unknown) for
    /// plugins that read the user agent, IP or language, which no
    /// [`Event`] carries. The default ignores the context.
    fn process_in_context(
        &mut self,
        events: Vec<Event>,
        contexts: &[HitContext<'_>],
    ) -> (Vec<Event>, Vec<Reject>) {
        let _ = contexts;
        self.process(events)
    }

    /// Counters per plugin since the chain was made (none for a chain
    /// without plugins), for the service to publish.
    fn stats(&self) -> Vec<PluginStats> {
        Vec::new()
    }
}

/// One plugin's counters since its chain was made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginStats {
    pub plugin: String,
    /// `process` calls, failed ones included.
    pub calls: u64,
    pub events_in: u64,
    /// Events dropped, by the plugin's reason (or `plugin_failed`).
    pub drops: BTreeMap<String, u64>,
    /// Failed calls by kind: `out_of_fuel`, `deadline`, `memory_cap`,
    /// `stack_overflow`, `trap`, `bad_output`, `oversized_output`,
    /// `init_error`, `error`.
    pub failures: BTreeMap<&'static str, u64>,
    /// Fresh instances made (the first, then one after each failure).
    pub instantiations: u64,
    pub fuel_used: u64,
    /// Wall-clock time in calls (instantiating included), nanoseconds.
    pub nanos: u64,
}

impl PluginStats {
    pub fn failed_calls(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Adds `other`'s counts to these (the same plugin in several chains).
    pub fn add(&mut self, other: &PluginStats) {
        self.calls += other.calls;
        self.events_in += other.events_in;
        for (reason, n) in &other.drops {
            *self.drops.entry(reason.clone()).or_default() += n;
        }
        for (kind, n) in &other.failures {
            *self.failures.entry(kind).or_default() += n;
        }
        self.instantiations += other.instantiations;
        self.fuel_used += other.fuel_used;
        self.nanos += other.nanos;
    }
}

/// What a plugin may read of the hit an event came from, besides the event.
/// Plugins see it, the warehouse never does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HitContext<'a> {
    pub user_agent: &'a str,
    pub client_ip: &'a str,
    pub accept_language: &'a str,
}

impl<'a> HitContext<'a> {
    pub fn of(hit: &'a RawHit) -> Self {
        HitContext {
            user_agent: &hit.user_agent,
            client_ip: &hit.client_ip,
            accept_language: &hit.accept_language,
        }
    }
}

/// The empty chain.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPlugins;

impl PluginChain for NoPlugins {
    fn plugin_set(&self) -> &str {
        "none"
    }

    fn process(&mut self, events: Vec<Event>) -> (Vec<Event>, Vec<Reject>) {
        (events, Vec::new())
    }
}

/// What processing made of one hit or a run of hits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub events: Vec<Event>,
    pub rejects: Vec<Reject>,
}

pub struct Pipeline {
    /// Swapped whole when a new site directory version arrives.
    pub sites: Arc<SiteDirectory>,
    pub keys: IdentityKeys,
    pub plugins: Box<dyn PluginChain>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("sites_version", &self.sites.version())
            .field("plugin_set", &self.plugins.plugin_set())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    pub fn new(
        sites: Arc<SiteDirectory>,
        keys: IdentityKeys,
        plugins: Box<dyn PluginChain>,
    ) -> Self {
        Pipeline {
            sites,
            keys,
            plugins,
        }
    }

    /// Decodes and admits a hit (edge, before answering the client).
    pub fn admit(&self, hit: &RawHit) -> Result<Vec<Decoded>, Rejection> {
        decode::decode(hit, &self.sites)
    }

    /// Stamps `hit` with the identity of each of its `decoded` events (as
    /// [`admit`](Self::admit) returned them): `identity` is the first
    /// event's stamp, and `event_identities` lists every event's stamp when
    /// they differ (left empty when one stamp fits all).
    pub fn stamp(&self, hit: &mut RawHit, decoded: &[Decoded], sessions: &mut SessionTable) {
        let stamps: Vec<Identity> = decoded
            .iter()
            .map(|d| {
                let (visitor_id, source) = self.keys.visitor(d, &hit.client_ip, &hit.user_agent);
                Identity {
                    site_id: d.site_id.clone(),
                    visitor_id,
                    session_id: sessions.session_id(&d.site_id, visitor_id, d.ts_ms),
                    source: source as i32,
                }
            })
            .collect();
        hit.identity = stamps.first().cloned();
        hit.event_identities = if stamps.iter().all(|s| Some(s) == hit.identity.as_ref()) {
            Vec::new()
        } else {
            stamps
        };
    }

    /// Turns a stamped hit into events (through the plugin chain) and
    /// rejects. `hit_index` is the hit's position in its batch.
    pub fn process(&mut self, hit: &RawHit, hit_index: u32) -> Outcome {
        let mut outcome = Outcome::default();
        self.decode_stamped(hit, hit_index, &mut outcome);
        self.run_plugins(outcome, |_| HitContext::of(hit))
    }

    /// [`process`](Self::process) for a batch's hits, with one plugin call
    /// for all their events (the WASM boundary is paid once). Hit indexes
    /// are positions in `hits`.
    pub fn process_batch(&mut self, hits: &[RawHit]) -> Outcome {
        let mut outcome = Outcome::default();
        for (index, hit) in hits.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            self.decode_stamped(hit, index, &mut outcome);
        }
        self.run_plugins(outcome, |index| {
            hits.get(index as usize)
                .map_or_else(HitContext::default, HitContext::of)
        })
    }

    /// Runs the chain over the decoded events, handing it each event's hit
    /// context (user agent, IP, language: what plugins read but events do
    /// not keep).
    fn run_plugins<'h>(
        &mut self,
        mut outcome: Outcome,
        context_of: impl Fn(u32) -> HitContext<'h>,
    ) -> Outcome {
        if outcome.events.is_empty() {
            return outcome;
        }
        let contexts: Vec<HitContext<'h>> = outcome
            .events
            .iter()
            .map(|e| context_of(e.hit_index))
            .collect();
        let (events, rejects) = self
            .plugins
            .process_in_context(std::mem::take(&mut outcome.events), &contexts);
        outcome.events = events;
        outcome.rejects.extend(rejects);
        outcome
    }

    fn decode_stamped(&self, hit: &RawHit, hit_index: u32, outcome: &mut Outcome) {
        let result = decode::decode(hit, &self.sites).and_then(|decoded| {
            let stamps = stamps_for(hit, &decoded)?;
            Ok(decoded
                .into_iter()
                .zip(stamps)
                .map(|(d, stamp)| to_event(d, stamp, hit, hit_index))
                .collect::<Vec<_>>())
        });
        match result {
            Ok(events) => outcome.events.extend(events),
            Err(rejection) => outcome.rejects.push(rejection.to_reject(hit_index)),
        }
    }
}

/// The stored stamp of each decoded event, checked against it.
fn stamps_for<'a>(hit: &'a RawHit, decoded: &[Decoded]) -> Result<Vec<&'a Identity>, Rejection> {
    let mismatch = |detail: String| Rejection::new(RejectReason::IdentityMismatch, "", detail);
    let stamps: Vec<&Identity> = if decoded.is_empty() {
        Vec::new()
    } else if hit.event_identities.is_empty() {
        let stamp = hit
            .identity
            .as_ref()
            .ok_or_else(|| mismatch("the hit carries no identity stamp".to_owned()))?;
        vec![stamp; decoded.len()]
    } else if hit.event_identities.len() == decoded.len() {
        hit.event_identities.iter().collect()
    } else {
        return Err(mismatch(format!(
            "the hit has {} identity stamps for {} events",
            hit.event_identities.len(),
            decoded.len()
        )));
    };
    for (d, stamp) in decoded.iter().zip(&stamps) {
        if stamp.site_id != d.site_id {
            return Err(mismatch(format!(
                "stamped for site `{}`, decodes to site `{}`",
                stamp.site_id, d.site_id
            )));
        }
    }
    Ok(stamps)
}

fn to_event(d: Decoded, stamp: &Identity, hit: &RawHit, hit_index: u32) -> Event {
    let (revenue_micros, revenue_currency) = d
        .revenue
        .map(|r| (r.micros, r.currency))
        .unwrap_or_default();
    Event {
        ts_ms: d.ts_ms,
        received_at_ms: hit.received_at_ms,
        site_id: d.site_id,
        name: d.name,
        visitor_id: stamp.visitor_id,
        session_id: stamp.session_id,
        hostname: d.hostname,
        pathname: d.pathname,
        referrer: d.referrer,
        utm_source: d.utm.source,
        utm_medium: d.utm.medium,
        utm_campaign: d.utm.campaign,
        utm_content: d.utm.content,
        utm_term: d.utm.term,
        props: d
            .props
            .into_iter()
            .map(|(key, value)| Prop { key, value })
            .collect(),
        revenue_micros,
        revenue_currency,
        interactive: d.interactive,
        hit_index,
        // Filled by plugins (channel, geo, ua-parse).
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use hourglass_model::{IdentitySource, Protocol};

    use super::*;
    use crate::sites::{Ga4Stream, SiteConfig};

    const NOW: i64 = 1_700_000_000_000;

    fn pipeline() -> Pipeline {
        let sites = SiteDirectory::new(
            1,
            vec![SiteConfig {
                site_id: "ex".into(),
                domain: "example.com".into(),
                allowed_hostnames: vec![],
                timezone: "UTC".into(),
                ga4: vec![Ga4Stream {
                    measurement_id: "G-1".into(),
                    api_secret: "sec".into(),
                }],
                segment_write_keys: vec!["wk".into()],
            }],
        )
        .unwrap();
        Pipeline::new(
            Arc::new(sites),
            IdentityKeys::from_master_secret(&[7u8; 32]).unwrap(),
            Box::new(NoPlugins),
        )
    }

    fn native_hit(body: &str) -> RawHit {
        RawHit {
            received_at_ms: NOW,
            edge_id: "edge-1".into(),
            seq: 1,
            protocol: Protocol::Native as i32,
            method: "POST".into(),
            path_and_query: "/api/event".into(),
            user_agent: "Mozilla/5.0".into(),
            client_ip: "198.51.100.23".into(),
            body: body.as_bytes().to_vec(),
            ..RawHit::default()
        }
    }

    fn edge(p: &Pipeline, hit: &mut RawHit, sessions: &mut SessionTable) -> Result<(), Rejection> {
        let decoded = p.admit(hit)?;
        p.stamp(hit, &decoded, sessions);
        Ok(())
    }

    #[test]
    fn admit_stamp_process_makes_events_without_the_ip() {
        let mut p = pipeline();
        let mut sessions = SessionTable::new(100);
        let mut hit = native_hit(
            r#"{"n":"pageview","u":"https://example.com/a?utm_source=x","d":"example.com","p":{"k":"v"},"revenue":{"amount":"1.5","currency":"USD"}}"#,
        );
        edge(&p, &mut hit, &mut sessions).unwrap();
        let stamp = hit.identity.clone().unwrap();
        assert_eq!(stamp.site_id, "ex");
        assert_eq!(stamp.source, IdentitySource::DailyHash as i32);
        assert!(hit.event_identities.is_empty());

        let out = p.process(&hit, 3);
        assert!(out.rejects.is_empty());
        let e = &out.events[0];
        assert_eq!(
            (e.visitor_id, e.session_id),
            (stamp.visitor_id, stamp.session_id)
        );
        assert_eq!((e.ts_ms, e.received_at_ms, e.hit_index), (NOW, NOW, 3));
        assert_eq!(
            (
                e.hostname.as_str(),
                e.pathname.as_str(),
                e.utm_source.as_str()
            ),
            ("example.com", "/a", "x")
        );
        assert_eq!(
            e.props,
            vec![Prop {
                key: "k".into(),
                value: "v".into()
            }]
        );
        assert_eq!(
            (e.revenue_micros, e.revenue_currency.as_str()),
            (1_500_000, "USD")
        );
        let bytes = prost::Message::encode_to_vec(e);
        assert!(
            !bytes.windows(13).any(|w| w == b"198.51.100.23"),
            "no IP in events"
        );

        // Reprocessing uses the stamps, not the session table or the IP.
        let mut archived = hit.clone();
        archived.client_ip = String::new();
        assert_eq!(pipeline().process(&archived, 3), out);
    }

    #[test]
    fn same_visitor_same_session_new_session_after_half_an_hour() {
        let p = pipeline();
        let mut sessions = SessionTable::new(100);
        let body = r#"{"n":"pageview","u":"https://example.com/","d":"example.com"}"#;
        let mut stamps = Vec::new();
        for offset_min in [0, 10, 45] {
            let mut hit = native_hit(body);
            hit.received_at_ms = NOW + offset_min * 60_000;
            edge(&p, &mut hit, &mut sessions).unwrap();
            stamps.push(hit.identity.unwrap());
        }
        assert_eq!(stamps[0].visitor_id, stamps[2].visitor_id);
        assert_eq!(stamps[0].session_id, stamps[1].session_id);
        assert_ne!(stamps[1].session_id, stamps[2].session_id);
    }

    #[test]
    fn batches_of_several_visitors_get_one_stamp_per_event() {
        let mut p = pipeline();
        let mut sessions = SessionTable::new(100);
        let mut hit = RawHit {
            received_at_ms: NOW,
            protocol: Protocol::Segment as i32,
            method: "POST".into(),
            path_and_query: "/v1/batch".into(),
            write_key: "wk".into(),
            body: br#"{"batch":[{"type":"track","userId":"a","event":"x"},{"type":"identify","userId":"a"},{"type":"track","anonymousId":"b","event":"y"}]}"#.to_vec(),
            ..RawHit::default()
        };
        edge(&p, &mut hit, &mut sessions).unwrap();
        assert_eq!(hit.event_identities.len(), 2);
        assert_eq!(hit.identity.as_ref(), hit.event_identities.first());
        assert_eq!(
            hit.event_identities[0].source,
            IdentitySource::UserId as i32
        );
        assert_eq!(
            hit.event_identities[1].source,
            IdentitySource::ClientId as i32
        );
        let out = p.process(&hit, 0);
        assert_eq!(out.events.len(), 2);
        assert_ne!(out.events[0].visitor_id, out.events[1].visitor_id);
    }

    #[test]
    fn stamps_that_do_not_fit_are_rejected_by_name() {
        let mut p = pipeline();
        let hit = native_hit(r#"{"n":"pageview","u":"https://example.com/","d":"example.com"}"#);
        let out = p.process(&hit, 9);
        assert!(out.events.is_empty());
        assert_eq!(out.rejects[0].reason, "identity_mismatch");
        assert_eq!(out.rejects[0].hit_index, 9);

        let mut wrong_site = hit.clone();
        wrong_site.identity = Some(Identity {
            site_id: "other".into(),
            ..Identity::default()
        });
        assert_eq!(
            p.process(&wrong_site, 0).rejects[0].reason,
            "identity_mismatch"
        );

        let mut wrong_count = hit.clone();
        wrong_count.identity = Some(Identity {
            site_id: "ex".into(),
            ..Identity::default()
        });
        wrong_count.event_identities = vec![Identity::default(); 2];
        assert_eq!(
            p.process(&wrong_count, 0).rejects[0].reason,
            "identity_mismatch"
        );
    }

    #[test]
    fn admission_failures_become_rejects_with_reason_and_field() {
        let mut p = pipeline();
        let hit = native_hit(r#"{"n":"pageview","u":"https://example.com/","d":"unknown.org"}"#);
        assert_eq!(p.admit(&hit).unwrap_err().reason, RejectReason::UnknownSite);
        let out = p.process(&hit, 1);
        assert_eq!(
            out.rejects,
            vec![Reject {
                hit_index: 1,
                reason: "unknown_site".into(),
                field: "d".into(),
                plugin: String::new()
            }]
        );
    }

    struct DropCustomEvents;

    impl PluginChain for DropCustomEvents {
        fn plugin_set(&self) -> &str {
            "test-v1"
        }
        fn process(&mut self, events: Vec<Event>) -> (Vec<Event>, Vec<Reject>) {
            let (keep, drop): (Vec<_>, Vec<_>) =
                events.into_iter().partition(|e| e.name == "pageview");
            let rejects = drop
                .iter()
                .map(|e| Reject {
                    hit_index: e.hit_index,
                    reason: "custom_event".into(),
                    field: "name".into(),
                    plugin: "drop-custom".into(),
                })
                .collect();
            (keep, rejects)
        }
    }

    #[test]
    fn plugins_see_every_event_of_a_batch_once() {
        let mut p = pipeline();
        p.plugins = Box::new(DropCustomEvents);
        let mut sessions = SessionTable::new(10);
        let mut hits = Vec::new();
        for name in ["pageview", "click", "pageview"] {
            let mut hit = native_hit(&format!(
                r#"{{"n":"{name}","u":"https://example.com/","d":"example.com"}}"#
            ));
            edge(&p, &mut hit, &mut sessions).unwrap();
            hits.push(hit);
        }
        let out = p.process_batch(&hits);
        assert_eq!(
            out.events.iter().map(|e| e.hit_index).collect::<Vec<_>>(),
            vec![0, 2]
        );
        assert_eq!(out.rejects.len(), 1);
        assert_eq!(
            (out.rejects[0].hit_index, out.rejects[0].plugin.as_str()),
            (1, "drop-custom")
        );
        assert_eq!(
            format!("{p:?}"),
            "Pipeline { sites_version: 1, plugin_set: \"test-v1\", .. }"
        );
    }
}
