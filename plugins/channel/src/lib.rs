//! Referrer and UTM tags to a source and a channel, in this order:
//! 1. a paid `utm_medium` (cpc, ppc, paid…): Paid Search, or Social when the
//!    source is a social network;
//! 2. an email `utm_medium` or source: Email;
//! 3. a social `utm_medium`: Social;
//! 4. the source (from `utm_source`, else the referrer's host) in the tables
//!    below: Organic Search, Social or Email;
//! 5. a referrer from another host, or a `utm_source`: Referral;
//! 6. otherwise (no referrer, or the site's own host): Direct.
//!
//! Config: `internal_hosts` (a list of extra hosts that count as the site
//! itself, e.g. a payment page that returns the visitor).

use hourglass_plugin_sdk::config::Config;
use hourglass_plugin_sdk::url::{bare_host, host};
use hourglass_plugin_sdk::{DeclaredFields, Event, Field, Outcome, Plugin};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Search,
    Social,
    Email,
}

/// (host or `utm_source` prefix after `www.`/`m.`, source name, kind).
/// A prefix ending in `.` matches any TLD (`google.` matches `google.de`).
const SOURCES: &[(&str, &str, Kind)] = &[
    ("google.", "Google", Kind::Search),
    ("bing.com", "Bing", Kind::Search),
    ("duckduckgo.com", "DuckDuckGo", Kind::Search),
    ("search.yahoo.", "Yahoo!", Kind::Search),
    ("yahoo.", "Yahoo!", Kind::Search),
    ("yandex.", "Yandex", Kind::Search),
    ("baidu.com", "Baidu", Kind::Search),
    ("ecosia.org", "Ecosia", Kind::Search),
    ("search.brave.com", "Brave Search", Kind::Search),
    ("qwant.com", "Qwant", Kind::Search),
    ("facebook.com", "Facebook", Kind::Social),
    ("l.facebook.com", "Facebook", Kind::Social),
    ("lm.facebook.com", "Facebook", Kind::Social),
    ("instagram.com", "Instagram", Kind::Social),
    ("t.co", "Twitter", Kind::Social),
    ("twitter.com", "Twitter", Kind::Social),
    ("x.com", "Twitter", Kind::Social),
    ("linkedin.com", "LinkedIn", Kind::Social),
    ("lnkd.in", "LinkedIn", Kind::Social),
    ("reddit.com", "Reddit", Kind::Social),
    ("old.reddit.com", "Reddit", Kind::Social),
    ("youtube.com", "YouTube", Kind::Social),
    ("pinterest.", "Pinterest", Kind::Social),
    ("tiktok.com", "TikTok", Kind::Social),
    ("news.ycombinator.com", "Hacker News", Kind::Social),
    ("mastodon.social", "Mastodon", Kind::Social),
    ("mail.google.com", "Gmail", Kind::Email),
    ("outlook.live.com", "Outlook", Kind::Email),
    ("outlook.office.com", "Outlook", Kind::Email),
    ("mail.yahoo.com", "Yahoo! Mail", Kind::Email),
];

const PAID_MEDIUMS: &[&str] = &[
    "cpc",
    "ppc",
    "paid",
    "paidsearch",
    "paid_search",
    "paid-search",
    "cpm",
    "retargeting",
];
const EMAIL_WORDS: &[&str] = &["email", "e-mail", "e_mail", "newsletter", "mail"];
const SOCIAL_MEDIUMS: &[&str] = &[
    "social",
    "social-network",
    "social_network",
    "social-media",
    "sm",
];

struct Channel {
    internal_hosts: Vec<String>,
}

impl Plugin for Channel {
    fn init(config: &str, _data: &[u8]) -> Result<Self, String> {
        let config = Config::parse(config, &["internal_hosts"])?;
        let internal_hosts = config
            .list("internal_hosts")
            .unwrap_or_default()
            .into_iter()
            .map(|h| bare_host(&h.to_ascii_lowercase()).to_owned())
            .collect();
        Ok(Channel { internal_hosts })
    }

    fn fields(&self) -> DeclaredFields {
        DeclaredFields {
            reads: vec![
                Field::Hostname,
                Field::Referrer,
                Field::UtmSource,
                Field::UtmMedium,
            ],
            writes: vec![Field::Source, Field::Channel],
        }
    }

    fn process(&mut self, mut event: Event) -> Outcome {
        let (source, channel) = self.classify(&event);
        event.source = source;
        event.channel = channel.to_owned();
        Outcome::Modify(event)
    }
}

impl Channel {
    fn classify(&self, event: &Event) -> (String, &'static str) {
        let medium = event.utm_medium.trim().to_ascii_lowercase();
        let utm_source = event.utm_source.trim().to_ascii_lowercase();
        let referrer_host = host(&event.referrer).map(|h| bare_host(&h).to_owned());
        let own = bare_host(&event.hostname.to_ascii_lowercase()).to_owned();
        let external_referrer =
            referrer_host.filter(|h| *h != own && !self.internal_hosts.iter().any(|i| i == h));

        let known = [
            utm_source.as_str(),
            external_referrer.as_deref().unwrap_or(""),
        ]
        .into_iter()
        .find_map(lookup);
        let source = match (known, utm_source.is_empty(), &external_referrer) {
            (Some((name, _)), _, _) => name.to_owned(),
            (None, false, _) => event.utm_source.trim().to_owned(),
            (None, true, Some(h)) => h.clone(),
            (None, true, None) => String::new(),
        };
        let kind = known.map(|(_, kind)| kind);

        let channel = if PAID_MEDIUMS.contains(&medium.as_str()) {
            if kind == Some(Kind::Social) {
                "Social"
            } else {
                "Paid Search"
            }
        } else if EMAIL_WORDS.contains(&medium.as_str())
            || EMAIL_WORDS.contains(&utm_source.as_str())
        {
            "Email"
        } else if SOCIAL_MEDIUMS.contains(&medium.as_str()) {
            "Social"
        } else {
            match kind {
                Some(Kind::Search) => "Organic Search",
                Some(Kind::Social) => "Social",
                Some(Kind::Email) => "Email",
                None if !source.is_empty() => "Referral",
                None => "Direct",
            }
        };
        (source, channel)
    }
}

/// The source named by a bare host or a `utm_source` value.
fn lookup(name: &str) -> Option<(&'static str, Kind)> {
    if name.is_empty() {
        return None;
    }
    let name = bare_host(name);
    SOURCES
        .iter()
        .find(|(pattern, _, _)| {
            if pattern.ends_with('.') {
                name.starts_with(pattern) || name == pattern.trim_end_matches('.')
            } else {
                name == *pattern || name.strip_suffix(pattern).is_some_and(|p| p.ends_with('.'))
            }
        })
        .map(|(_, source, kind)| (*source, *kind))
}

hourglass_plugin_sdk::plugin!(Channel);
