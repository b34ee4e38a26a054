//! Realistic beacon requests, generated from a seed: which site (Zipf-like
//! popularity), which page (Zipf-like within the site), referrer, UTM tags,
//! visitor (address + user agent), and the protocol mix (Plausible
//! `/api/event`, GA4 `/mp/collect`, Segment `/v1/batch`).
//!
//! Pure: no IO, no clock (the Segment `sentAt` text is passed in). The
//! site directory the server needs ([`sites_json`]) is made from the same
//! numbering, so every generated hit names a site the edge admits.

use std::fmt::Write as _;

use base64::Engine as _;

/// Which protocols to send, with integer weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    pub plausible: u32,
    pub ga4: u32,
    pub segment: u32,
}

impl Mix {
    /// Parses `plausible=90,ga4=5,segment=5` (any subset; missing is 0).
    pub fn parse(text: &str) -> Result<Mix, String> {
        let mut mix = Mix {
            plausible: 0,
            ga4: 0,
            segment: 0,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: the weight must be a whole number"))?;
            match name.trim() {
                "plausible" => mix.plausible = weight,
                "ga4" => mix.ga4 = weight,
                "segment" => mix.segment = weight,
                other => {
                    return Err(format!(
                        "unknown protocol `{other}`: use plausible, ga4 or segment"
                    ));
                }
            }
        }
        if mix.plausible + mix.ga4 + mix.segment == 0 {
            return Err("the mix needs at least one protocol with a weight above 0".into());
        }
        Ok(mix)
    }
}

/// Cumulative weights for sampling ranks 0..n with probability ∝ 1/(k+1)^s.
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cdf = (0..n.max(1))
            .map(|k| {
                total += 1.0 / ((k + 1) as f64).powf(s);
                total
            })
            .collect::<Vec<_>>();
        Zipf {
            cdf: cdf.into_iter().map(|c| c / total).collect(),
        }
    }

    pub fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Site `i`'s identifiers, shared by the generator and [`sites_json`].
pub fn site_domain(i: usize) -> String {
    format!("site{i}.example")
}
fn measurement_id(i: usize) -> String {
    format!("G-BENCH{i}")
}
fn api_secret(i: usize) -> String {
    format!("mp-secret-{i}")
}
fn write_key(i: usize) -> String {
    format!("wk_bench_{i}")
}

/// The site directory (`{"version":1,"sites":[…]}`) admitting `n` sites.
pub fn sites_json(n: usize) -> serde_json::Value {
    let sites = (0..n)
        .map(|i| {
            serde_json::json!({
                "site_id": format!("s{i}"),
                "domain": site_domain(i),
                "timezone": "UTC",
                "ga4": [{"measurement_id": measurement_id(i), "api_secret": api_secret(i)}],
                "segment_write_keys": [write_key(i)],
            })
        })
        .collect::<Vec<_>>();
    serde_json::json!({ "version": 1, "sites": sites })
}

const USER_AGENTS: &[(&str, u32)] = &[
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        30,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        18,
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
        16,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        10,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        8,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
        6,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
        5,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
        2,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.7 Mobile/15E148 Safari/604.1",
        3,
    ),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        2,
    ),
];

const LANGUAGES: &[&str] = &[
    "en-US,en;q=0.9",
    "de-CH,de;q=0.9,en;q=0.8",
    "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7",
    "en-GB,en;q=0.9",
    "es-ES,es;q=0.9",
    "ja,en-US;q=0.9,en;q=0.8",
];

const SECTIONS: &[&str] = &[
    "blog", "docs", "products", "pricing", "about", "careers", "help", "news", "shop", "guides",
];
const WORDS: &[&str] = &[
    "getting-started",
    "install",
    "privacy-first-analytics",
    "release-notes",
    "how-we-scaled",
    "dashboard",
    "api",
    "integrations",
    "comparison",
    "faq",
    "summer-sale",
    "red-running-shoes",
    "wireless-headphones",
    "team",
    "changelog",
    "roadmap",
    "self-hosting",
    "migrating-from-ga",
    "security",
    "contact",
];

const REFERRERS: &[(&str, u32)] = &[
    ("", 45),
    ("https://www.google.com/", 25),
    ("https://www.bing.com/", 3),
    ("https://duckduckgo.com/", 3),
    ("https://news.ycombinator.com/", 3),
    ("https://t.co/", 3),
    ("https://www.reddit.com/", 3),
    ("https://l.facebook.com/", 3),
    ("https://www.linkedin.com/", 2),
    ("https://github.com/", 2),
    ("internal", 8),
];

const UTM: &[&str] = &[
    "utm_source=newsletter&utm_medium=email&utm_campaign=november_digest",
    "utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=web+analytics",
    "utm_source=twitter&utm_medium=social",
    "utm_source=partner_blog&utm_medium=referral&utm_content=sidebar",
    "gclid=Cj0KCQiA4L67BhDUARIsADWrl7F2",
    "fbclid=IwAR2xQ9Zt1Vn8p",
];

const CUSTOM_EVENTS: &[&str] = &[
    "Signup",
    "Outbound Link: Click",
    "File Download",
    "Add to Cart",
    "404",
];

fn pick<'a>(rng: &mut fastrand::Rng, weighted: &'a [(&'a str, u32)]) -> &'a str {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut at = rng.u32(0..total);
    for (item, w) in weighted {
        if at < *w {
            return item;
        }
        at -= w;
    }
    weighted[0].0
}

/// A visitor: stable address and browser for its whole life.
#[derive(Clone, Copy, Debug)]
struct Visitor(u64);

impl Visitor {
    fn ip(self) -> String {
        // A spread of public-looking addresses (only ever sent as a header
        // value, never connected to).
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let a = 11 + (h >> 56) % 180;
        format!("{a}.{}.{}.{}", (h >> 40) & 0xff, (h >> 24) & 0xff, h & 0xff)
    }
    fn rng(self) -> fastrand::Rng {
        fastrand::Rng::with_seed(self.0 ^ 0xA5A5_5A5A)
    }
}

/// Generates beacon requests as complete HTTP/1.1 request bytes.
#[derive(Debug)]
pub struct Generator {
    rng: fastrand::Rng,
    mix: Mix,
    sites: Zipf,
    pages: Zipf,
    visitors: u64,
    host: String,
    /// RFC 3339 time for Segment's `sentAt`.
    sent_at: String,
    seq: u64,
    body: String,
    /// With a connection number: every Plausible hit is a pageview carrying
    /// the prop `lg` = `<connection>.<n>` (see [`Generator::marking`]).
    mark: Option<u32>,
    marked: u64,
    marker: String,
}

impl Generator {
    pub fn new(
        seed: u64,
        mix: Mix,
        sites: usize,
        visitors: u64,
        host: &str,
        sent_at: &str,
    ) -> Self {
        Generator {
            rng: fastrand::Rng::with_seed(seed),
            mix,
            sites: Zipf::new(sites, 1.0),
            pages: Zipf::new(200, 1.1),
            visitors: visitors.max(1),
            host: host.to_owned(),
            sent_at: sent_at.to_owned(),
            seq: seed << 32,
            body: String::with_capacity(2048),
            mark: None,
            marked: 0,
            marker: String::new(),
        }
    }

    /// Marks every Plausible hit (all pageviews then) with a prop `lg` =
    /// `<connection>.<n>`, so each row in the warehouse can be traced to
    /// the request that sent it (freshness measurements).
    pub fn marking(mut self, connection: u32) -> Self {
        self.mark = Some(connection);
        self
    }

    /// The marker of the last request, if it carried one.
    pub fn last_marker(&self) -> Option<&str> {
        (!self.marker.is_empty()).then_some(self.marker.as_str())
    }

    fn page_path(&mut self) -> String {
        let page = self.pages.sample(&mut self.rng);
        if page == 0 {
            return "/".into();
        }
        let section = SECTIONS[page % SECTIONS.len()];
        let word = WORDS[(page / SECTIONS.len()) % WORDS.len()];
        if page < SECTIONS.len() {
            format!("/{section}")
        } else {
            format!("/{section}/{word}-{page}")
        }
    }

    /// Writes the next request into `out` (cleared first).
    pub fn next_request(&mut self, out: &mut Vec<u8>) {
        out.clear();
        self.body.clear();
        self.marker.clear();
        self.seq += 1;
        let site = self.sites.sample(&mut self.rng);
        let visitor = Visitor(self.rng.u64(0..self.visitors));
        let mut vrng = visitor.rng();
        let ua = pick(&mut vrng, USER_AGENTS);
        let lang = LANGUAGES[vrng.usize(0..LANGUAGES.len())];
        let ip = visitor.ip();
        let domain = site_domain(site);
        let path = self.page_path();
        let query = if self.rng.u32(0..100) < 12 {
            format!("?{}", UTM[self.rng.usize(0..UTM.len())])
        } else {
            String::new()
        };
        let url = format!("https://{domain}{path}{query}");
        let mut referrer = pick(&mut self.rng, REFERRERS).to_owned();
        if referrer == "internal" {
            referrer = format!("https://{domain}{}", self.page_path());
        }
        let total = self.mix.plausible + self.mix.ga4 + self.mix.segment;
        let roll = self.rng.u32(0..total);
        let (target, content_type, auth) = if roll < self.mix.plausible {
            self.plausible_body(&domain, &url, &referrer);
            ("/api/event".to_owned(), "text/plain", None)
        } else if roll < self.mix.plausible + self.mix.ga4 {
            self.ga4_body(visitor, &url, &referrer);
            (
                format!(
                    "/mp/collect?measurement_id={}&api_secret={}",
                    measurement_id(site),
                    api_secret(site)
                ),
                "application/json",
                None,
            )
        } else {
            self.segment_body(visitor, &url, &referrer, &path);
            let key =
                base64::engine::general_purpose::STANDARD.encode(format!("{}:", write_key(site)));
            (
                "/v1/batch".to_owned(),
                "application/json",
                Some(format!("Basic {key}")),
            )
        };
        let mut head = String::with_capacity(768);
        let _ = write!(
            head,
            "POST {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nUser-Agent: {ua}\r\nAccept: */*\r\nAccept-Language: {lang}\r\nX-Forwarded-For: {ip}\r\n",
            self.host,
            self.body.len()
        );
        if auth.is_none() {
            // Browser beacons: sent from the page.
            let _ = write!(
                head,
                "Origin: https://{domain}\r\nReferer: https://{domain}{path}\r\n"
            );
        }
        if let Some(auth) = auth {
            let _ = write!(head, "Authorization: {auth}\r\n");
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(self.body.as_bytes());
    }

    fn plausible_body(&mut self, domain: &str, url: &str, referrer: &str) {
        let r = if referrer.is_empty() {
            "null".to_owned()
        } else {
            format!("\"{referrer}\"")
        };
        if let Some(connection) = self.mark {
            self.marked += 1;
            self.marker = format!("{connection}.{}", self.marked);
            let _ = write!(
                self.body,
                r#"{{"n":"pageview","u":"{url}","d":"{domain}","r":{r},"p":{{"lg":"{}"}}}}"#,
                self.marker
            );
            return;
        }
        let roll = self.rng.u32(0..100);
        if roll < 90 {
            let _ = write!(
                self.body,
                r#"{{"n":"pageview","u":"{url}","d":"{domain}","r":{r},"w":{}}}"#,
                [390, 414, 768, 1280, 1440, 1920][self.rng.usize(0..6)]
            );
        } else if roll < 98 {
            let name = CUSTOM_EVENTS[self.rng.usize(0..CUSTOM_EVENTS.len())];
            let _ = write!(
                self.body,
                r#"{{"n":"{name}","u":"{url}","d":"{domain}","r":{r},"p":{{"plan":"{}","variant":"{}"}}}}"#,
                ["free", "pro", "team"][self.rng.usize(0..3)],
                ["a", "b"][self.rng.usize(0..2)]
            );
        } else {
            let _ = write!(
                self.body,
                r#"{{"n":"Purchase","u":"{url}","d":"{domain}","r":{r},"revenue":{{"amount":"{}.{:02}","currency":"EUR"}}}}"#,
                self.rng.u32(5..300),
                self.rng.u32(0..100)
            );
        }
    }

    fn ga4_body(&mut self, visitor: Visitor, url: &str, referrer: &str) {
        let _ = write!(
            self.body,
            r#"{{"client_id":"{}.{}","events":[{{"name":"page_view","params":{{"page_location":"{url}","page_referrer":"{referrer}","engagement_time_msec":{},"session_id":"{}"}}}}"#,
            visitor.0,
            1_700_000_000 + visitor.0 % 10_000_000,
            self.rng.u32(50..20_000),
            visitor.0 % 100_000
        );
        if self.rng.u32(0..100) < 10 {
            let _ = write!(
                self.body,
                r#",{{"name":"purchase","params":{{"currency":"USD","value":{}.{:02},"transaction_id":"T_{}","items":[{{"item_id":"SKU_{}","item_name":"Stan and Friends Tee","price":{}.00,"quantity":1}}]}}}}"#,
                self.rng.u32(5..300),
                self.rng.u32(0..100),
                self.seq,
                self.rng.u32(1..500),
                self.rng.u32(5..300)
            );
        }
        self.body.push_str("]}");
    }

    fn segment_body(&mut self, visitor: Visitor, url: &str, referrer: &str, path: &str) {
        let messages = 1 + self.rng.usize(0..3);
        self.body.push_str(r#"{"batch":["#);
        for m in 0..messages {
            if m > 0 {
                self.body.push(',');
            }
            let common = format!(
                r#""anonymousId":"anon-{}","messageId":"bench-{}-{m}","timestamp":"{}","context":{{"library":{{"name":"analytics.js","version":"5.2.0"}},"page":{{"url":"{url}","path":"{path}","referrer":"{referrer}"}}}}"#,
                visitor.0, self.seq, self.sent_at
            );
            if m == 0 {
                let _ = write!(
                    self.body,
                    r#"{{"type":"page","properties":{{"url":"{url}","path":"{path}","referrer":"{referrer}"}},{common}}}"#
                );
            } else {
                let _ = write!(
                    self.body,
                    r#"{{"type":"track","event":"{}","properties":{{"plan":"{}"}},{common}}}"#,
                    ["Product Viewed", "Plan Upgraded", "Checkout Started"][self.rng.usize(0..3)],
                    ["free", "pro", "team"][self.rng.usize(0..3)]
                );
            }
        }
        let _ = write!(self.body, r#"],"sentAt":"{}"}}"#, self.sent_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_request(bytes: &[u8]) -> (String, Vec<(String, String)>, String) {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap().to_owned();
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(": ").unwrap();
                (k.to_ascii_lowercase(), v.to_owned())
            })
            .collect();
        (request_line, headers, body.to_owned())
    }

    #[test]
    fn every_protocol_makes_well_formed_requests_with_json_bodies() {
        let mix = Mix::parse("plausible=1,ga4=1,segment=1").unwrap();
        let mut g = Generator::new(7, mix, 50, 1000, "127.0.0.1:1", "2026-01-01T00:00:00Z");
        let mut out = Vec::new();
        let mut targets = std::collections::BTreeSet::new();
        for _ in 0..3000 {
            g.next_request(&mut out);
            let (line, headers, body) = parse_request(&out);
            let length: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .unwrap()
                .1
                .parse()
                .unwrap();
            assert_eq!(length, body.len(), "{line}");
            serde_json::from_str::<serde_json::Value>(&body)
                .unwrap_or_else(|e| panic!("{line}: {e}: {body}"));
            targets.insert(line.split(['?', ' ']).nth(1).unwrap().to_owned());
        }
        assert_eq!(
            targets.into_iter().collect::<Vec<_>>(),
            ["/api/event", "/mp/collect", "/v1/batch"]
        );
    }

    #[test]
    fn site_popularity_is_skewed() {
        let z = Zipf::new(100, 1.0);
        let mut rng = fastrand::Rng::with_seed(1);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        assert!(counts[0] > 10 * counts[50], "{counts:?}");
        assert!(counts[99] > 0);
    }

    #[test]
    fn same_seed_same_requests() {
        let mix = Mix::parse("plausible=90,ga4=5,segment=5").unwrap();
        let mut a = Generator::new(3, mix.clone(), 10, 10, "h", "t");
        let mut b = Generator::new(3, mix, 10, 10, "h", "t");
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            a.next_request(&mut x);
            b.next_request(&mut y);
            assert_eq!(x, y);
        }
    }

    #[test]
    fn mix_parsing_says_what_is_wrong() {
        assert!(Mix::parse("plausible=1,foo=2").unwrap_err().contains("foo"));
        assert!(Mix::parse("ga4=0").is_err());
        assert_eq!(Mix::parse("segment").unwrap().segment, 1);
    }
}
