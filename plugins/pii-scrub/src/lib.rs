//! Takes personal data out of paths, referrers and props:
//! - email addresses become `[email]`;
//! - long tokens (32+ characters of letters, digits, `-`, `_` with both
//!   letters and digits) become `[token]`;
//! - the listed query parameters are removed from the referrer;
//! - the listed prop keys are removed.
//!
//! Config: `params` (default: a list of common credential names),
//! `props` (default: `email, phone`), `min_token_chars` (32).

use hourglass_plugin_sdk::config::Config;
use hourglass_plugin_sdk::url::split_query;
use hourglass_plugin_sdk::{DeclaredFields, Event, Field, Outcome, Plugin};

const DEFAULT_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "id_token",
    "auth",
    "code",
    "password",
    "pwd",
    "secret",
    "api_key",
    "apikey",
    "key",
    "session",
    "sessionid",
    "sid",
    "email",
    "mail",
];

struct PiiScrub {
    params: Vec<String>,
    props: Vec<String>,
    min_token_chars: usize,
}

impl Plugin for PiiScrub {
    fn init(config: &str, _data: &[u8]) -> Result<Self, String> {
        let config = Config::parse(config, &["params", "props", "min_token_chars"])?;
        let lower = |v: Vec<String>| v.into_iter().map(|s| s.to_ascii_lowercase()).collect();
        Ok(PiiScrub {
            params: lower(
                config
                    .list("params")
                    .unwrap_or_else(|| DEFAULT_PARAMS.iter().map(|s| (*s).to_owned()).collect()),
            ),
            props: lower(
                config
                    .list("props")
                    .unwrap_or_else(|| vec!["email".to_owned(), "phone".to_owned()]),
            ),
            min_token_chars: config.usize_or("min_token_chars", 32)?,
        })
    }

    fn fields(&self) -> DeclaredFields {
        let fields = vec![Field::Pathname, Field::Referrer, Field::Props];
        DeclaredFields {
            reads: fields.clone(),
            writes: fields,
        }
    }

    fn process(&mut self, mut event: Event) -> Outcome {
        let mut changed = false;
        let mut scrub = |s: &mut String, scrubbed: String| {
            if *s != scrubbed {
                *s = scrubbed;
                changed = true;
            }
        };
        let pathname = self.scrub_text(&event.pathname);
        scrub(&mut event.pathname, pathname);
        let referrer = self.scrub_text(&self.drop_params(&event.referrer));
        scrub(&mut event.referrer, referrer);
        let before = event.props.len();
        event
            .props
            .retain(|p| !self.props.contains(&p.key.to_ascii_lowercase()));
        changed |= event.props.len() != before;
        for prop in &mut event.props {
            let value = self.scrub_text(&prop.value);
            if value != prop.value {
                prop.value = value;
                changed = true;
            }
        }
        if changed {
            Outcome::Modify(event)
        } else {
            Outcome::Keep
        }
    }
}

impl PiiScrub {
    /// `url` without the query parameters in `self.params`.
    fn drop_params(&self, url: &str) -> String {
        let (base, Some(query), fragment) = split_query(url) else {
            return url.to_owned();
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let key = pair.split('=').next().unwrap_or("");
                !self.params.contains(&key.to_ascii_lowercase())
            })
            .collect();
        if kept.is_empty() {
            format!("{base}{fragment}")
        } else {
            format!("{base}?{}{fragment}", kept.join("&"))
        }
    }

    /// `text` with emails and long tokens replaced, word by word (a word is
    /// a run between separators that cannot be in an email or a token).
    fn scrub_text(&self, text: &str) -> String {
        let is_word = |c: char| c.is_alphanumeric() || "@.-_+%".contains(c);
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while !rest.is_empty() {
            let start = rest.find(is_word).unwrap_or(rest.len());
            out.push_str(&rest[..start]);
            rest = &rest[start..];
            let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
            let word = &rest[..end];
            if is_email(word) {
                out.push_str("[email]");
            } else {
                out.push_str(&self.scrub_tokens(word));
            }
            rest = &rest[end..];
        }
        out
    }

    fn scrub_tokens(&self, word: &str) -> String {
        word.split_inclusive(['.', '%', '+'])
            .map(|part| {
                let core = part.trim_end_matches(['.', '%', '+']);
                if self.is_token(core) {
                    format!("[token]{}", &part[core.len()..])
                } else {
                    part.to_owned()
                }
            })
            .collect()
    }

    fn is_token(&self, s: &str) -> bool {
        s.chars().count() >= self.min_token_chars
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && s.chars().any(|c| c.is_ascii_digit())
            && s.chars().any(|c| c.is_ascii_alphabetic())
    }
}

/// `local@domain.tld`, loosely: one `@`, something before it, and a dot
/// in a domain after it that does not start or end with one.
fn is_email(word: &str) -> bool {
    let word = word.trim_matches(|c: char| ".-_+%".contains(c));
    let Some((local, domain)) = word.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

hourglass_plugin_sdk::plugin!(PiiScrub);
