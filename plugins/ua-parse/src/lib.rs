//! Browser, OS and device class from the user agent, by tables of common
//! tokens: first match wins, so the order of each table matters (Edge and
//! Opera say `Chrome/` too, Chrome says `Safari/`). Results are cached by
//! user agent, since a site sees few distinct ones.
//!
//! Config: `cache_entries` (default 4096; the cache is cleared when full).

use std::collections::HashMap;

use hourglass_plugin_sdk::config::Config;
use hourglass_plugin_sdk::{DeclaredFields, Event, Field, Outcome, Plugin};

/// (name, the token whose following version is the browser's version).
const BROWSERS: &[(&str, &str)] = &[
    ("Edge", "Edg/"),
    ("Edge", "EdgA/"),
    ("Edge", "EdgiOS/"),
    ("Edge", "Edge/"),
    ("Opera", "OPR/"),
    ("Opera", "Opera/"),
    ("Samsung Internet", "SamsungBrowser/"),
    ("Yandex Browser", "YaBrowser/"),
    ("Firefox", "FxiOS/"),
    ("Firefox", "Firefox/"),
    ("Chrome", "CriOS/"),
    ("Chrome", "Chrome/"),
    ("Internet Explorer", "MSIE "),
    ("Internet Explorer", "Trident/"),
    // Safari's version is in `Version/`; `Safari/` alone is its build.
    ("Safari", "Version/"),
];

/// (name, token, where its version follows, if anywhere).
const SYSTEMS: &[(&str, &str, Option<&str>)] = &[
    ("Windows", "Windows NT", Some("Windows NT ")),
    ("iOS", "iPhone", Some("OS ")),
    ("iOS", "iPad", Some("OS ")),
    ("iOS", "iPod", Some("OS ")),
    ("Android", "Android", Some("Android ")),
    ("Chrome OS", "CrOS", None),
    ("macOS", "Mac OS X", Some("Mac OS X ")),
    ("Linux", "Linux", None),
];

#[derive(Clone, Default)]
struct Parsed {
    browser: &'static str,
    browser_version: String,
    os: &'static str,
    os_version: String,
    device: &'static str,
}

struct UaParse {
    cache: HashMap<String, Parsed>,
    cache_entries: usize,
}

impl Plugin for UaParse {
    fn init(config: &str, _data: &[u8]) -> Result<Self, String> {
        let config = Config::parse(config, &["cache_entries"])?;
        Ok(UaParse {
            cache: HashMap::new(),
            cache_entries: config.usize_or("cache_entries", 4096)?,
        })
    }

    fn fields(&self) -> DeclaredFields {
        DeclaredFields {
            reads: vec![Field::UserAgent],
            writes: vec![
                Field::Browser,
                Field::BrowserVersion,
                Field::Os,
                Field::OsVersion,
                Field::Device,
            ],
        }
    }

    fn process(&mut self, mut event: Event) -> Outcome {
        if event.user_agent.is_empty() {
            return Outcome::Keep;
        }
        let parsed = match self.cache.get(&event.user_agent) {
            Some(p) => p.clone(),
            None => {
                let p = parse(&event.user_agent);
                if self.cache.len() >= self.cache_entries {
                    self.cache.clear();
                }
                self.cache.insert(event.user_agent.clone(), p.clone());
                p
            }
        };
        event.browser = parsed.browser.to_owned();
        event.browser_version = parsed.browser_version;
        event.os = parsed.os.to_owned();
        event.os_version = parsed.os_version;
        event.device = parsed.device.to_owned();
        Outcome::Modify(event)
    }
}

fn parse(ua: &str) -> Parsed {
    let mut parsed = Parsed::default();
    if let Some((name, token)) = BROWSERS
        .iter()
        .find(|(name, token)| ua.contains(token) && (*name != "Safari" || ua.contains("Safari/")))
    {
        parsed.browser = name;
        parsed.browser_version = major_minor(version_after(ua, token), '.');
    }
    if let Some((name, _, version_token)) = SYSTEMS.iter().find(|(_, token, _)| ua.contains(token))
    {
        parsed.os = name;
        parsed.os_version = match (*name, version_token) {
            ("Windows", Some(t)) => windows_version(version_after(ua, t)).to_owned(),
            (_, Some(t)) => major_minor(version_after(ua, t), '_'),
            _ => String::new(),
        };
    }
    parsed.device = device(ua);
    parsed
}

fn device(ua: &str) -> &'static str {
    if ua.contains("iPad")
        || ua.contains("Tablet")
        || (ua.contains("Android") && !ua.contains("Mobile"))
    {
        "tablet"
    } else if ua.contains("Mobi") || ua.contains("iPhone") || ua.contains("iPod") {
        "mobile"
    } else {
        "desktop"
    }
}

/// The version-looking text right after `token`: digits, `.` and `_`.
fn version_after<'a>(ua: &'a str, token: &str) -> &'a str {
    let Some(start) = ua.find(token).map(|i| i + token.len()) else {
        return "";
    };
    let rest = &ua[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// `17_4_1` → `17.4`, `124.0.6367.91` → `124.0`.
fn major_minor(version: &str, separator: char) -> String {
    let mut parts = version
        .split(['.', separator])
        .filter(|p| !p.is_empty())
        .take(2);
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}"),
        (Some(major), None) => major.to_owned(),
        _ => String::new(),
    }
}

/// Windows NT kernel versions to product names (11 also says 10.0).
fn windows_version(nt: &str) -> &'static str {
    match nt {
        "10.0" => "10",
        "6.3" => "8.1",
        "6.2" => "8",
        "6.1" => "7",
        "6.0" => "Vista",
        "5.1" | "5.2" => "XP",
        _ => "",
    }
}

hourglass_plugin_sdk::plugin!(UaParse);
