//! [`Event`] and its hit context to the WIT event record and back, copying
//! only the fields a plugin declared.

use hourglass_model::{Event, Prop};
use hourglass_processing::HitContext;

use crate::bindings::hourglass::plugin::types::{self as wit, Field};

/// A set of [`Field`]s, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSet(u32);

impl FieldSet {
    /// Fields that come from the hit, not the event: readable, never
    /// written back.
    pub(crate) const CONTEXT: FieldSet = FieldSet(
        1 << Field::UserAgent as u32 | 1 << Field::ClientIp as u32 | 1 << Field::Language as u32,
    );

    pub(crate) fn of(fields: &[Field]) -> FieldSet {
        FieldSet(fields.iter().fold(0, |bits, f| bits | 1 << *f as u32))
    }

    pub(crate) fn has(self, field: Field) -> bool {
        self.0 & (1 << field as u32) != 0
    }

    pub(crate) fn intersects(self, other: FieldSet) -> bool {
        self.0 & other.0 != 0
    }
}

/// The name of `field` as the [`Event`] (and a `Reject`'s `field`) spells it.
pub(crate) fn event_field_name(field: Field) -> &'static str {
    match field {
        Field::Name => "name",
        Field::Hostname => "hostname",
        Field::Pathname => "pathname",
        Field::Referrer => "referrer",
        Field::UserAgent => "user_agent",
        Field::ClientIp => "client_ip",
        Field::Language => "accept_language",
        Field::Props => "props",
        Field::Browser => "browser",
        Field::BrowserVersion => "browser_version",
        Field::Os => "os",
        Field::OsVersion => "os_version",
        Field::Device => "device",
        Field::Country => "country",
        Field::Region => "region",
        Field::City => "city",
        Field::Source => "referrer_source",
        Field::Channel => "channel",
        Field::UtmSource => "utm_source",
        Field::UtmMedium => "utm_medium",
        Field::UtmCampaign => "utm_campaign",
        Field::UtmContent => "utm_content",
        Field::UtmTerm => "utm_term",
        Field::IsBot => "is_bot",
    }
}

/// The WIT record for `event`, with only the `reads` fields filled.
pub(crate) fn to_wit(
    event: &Event,
    hit: &HitContext<'_>,
    is_bot: bool,
    reads: FieldSet,
) -> wit::Event {
    let get = |field: Field, value: &str| {
        if reads.has(field) {
            value.to_owned()
        } else {
            String::new()
        }
    };
    wit::Event {
        name: get(Field::Name, &event.name),
        hostname: get(Field::Hostname, &event.hostname),
        pathname: get(Field::Pathname, &event.pathname),
        referrer: get(Field::Referrer, &event.referrer),
        user_agent: get(Field::UserAgent, hit.user_agent),
        client_ip: get(Field::ClientIp, hit.client_ip),
        language: get(Field::Language, hit.accept_language),
        props: if reads.has(Field::Props) {
            event
                .props
                .iter()
                .map(|p| wit::Prop {
                    key: p.key.clone(),
                    value: p.value.clone(),
                })
                .collect()
        } else {
            Vec::new()
        },
        browser: get(Field::Browser, &event.browser),
        browser_version: get(Field::BrowserVersion, &event.browser_version),
        os: get(Field::Os, &event.os),
        os_version: get(Field::OsVersion, &event.os_version),
        device: get(Field::Device, &event.device),
        country: get(Field::Country, &event.country),
        region: get(Field::Region, &event.region),
        city: get(Field::City, &event.city),
        source: get(Field::Source, &event.referrer_source),
        channel: get(Field::Channel, &event.channel),
        utm_source: get(Field::UtmSource, &event.utm_source),
        utm_medium: get(Field::UtmMedium, &event.utm_medium),
        utm_campaign: get(Field::UtmCampaign, &event.utm_campaign),
        utm_content: get(Field::UtmContent, &event.utm_content),
        utm_term: get(Field::UtmTerm, &event.utm_term),
        is_bot: reads.has(Field::IsBot) && is_bot,
    }
}

/// Takes the `writes` fields of a plugin's modified record into `event`.
/// Context fields are never written back.
pub(crate) fn apply(event: &mut Event, is_bot: &mut bool, from: wit::Event, writes: FieldSet) {
    macro_rules! take {
        ($($field:ident => $dst:expr, $src:expr;)*) => {
            $(if writes.has(Field::$field) {
                $dst = $src;
            })*
        };
    }
    take! {
        Name => event.name, from.name;
        Hostname => event.hostname, from.hostname;
        Pathname => event.pathname, from.pathname;
        Referrer => event.referrer, from.referrer;
        Props => event.props, from.props.into_iter().map(|p| Prop { key: p.key, value: p.value }).collect();
        Browser => event.browser, from.browser;
        BrowserVersion => event.browser_version, from.browser_version;
        Os => event.os, from.os;
        OsVersion => event.os_version, from.os_version;
        Device => event.device, from.device;
        Country => event.country, from.country;
        Region => event.region, from.region;
        City => event.city, from.city;
        Source => event.referrer_source, from.source;
        Channel => event.channel, from.channel;
        UtmSource => event.utm_source, from.utm_source;
        UtmMedium => event.utm_medium, from.utm_medium;
        UtmCampaign => event.utm_campaign, from.utm_campaign;
        UtmContent => event.utm_content, from.utm_content;
        UtmTerm => event.utm_term, from.utm_term;
        IsBot => *is_bot, from.is_bot;
    }
}

/// Bytes of strings in an outcome a plugin returned.
pub(crate) fn output_bytes(outcome: &wit::Outcome) -> usize {
    match outcome {
        wit::Outcome::Keep => 0,
        wit::Outcome::Drop(reason) => reason.reason.len(),
        wit::Outcome::Modify(e) => {
            let props: usize = e.props.iter().map(|p| p.key.len() + p.value.len()).sum();
            props
                + [
                    &e.name,
                    &e.hostname,
                    &e.pathname,
                    &e.referrer,
                    &e.user_agent,
                    &e.client_ip,
                    &e.language,
                    &e.browser,
                    &e.browser_version,
                    &e.os,
                    &e.os_version,
                    &e.device,
                    &e.country,
                    &e.region,
                    &e.city,
                    &e.source,
                    &e.channel,
                    &e.utm_source,
                    &e.utm_medium,
                    &e.utm_campaign,
                    &e.utm_content,
                    &e.utm_term,
                ]
                .iter()
                .map(|s| s.len())
                .sum::<usize>()
        }
    }
}
