//! Drops events that break simple rules, each with its own reason:
//! `empty_name`, `name_too_long`, `bad_hostname`, `bad_pathname`,
//! `too_many_props`, `prop_too_long`.
//!
//! Config (`key = value` lines, all optional): `max_name_chars` (120),
//! `max_props` (30), `max_prop_chars` (2000), `allowed_names` (a list; empty
//! allows every name).

use hourglass_plugin_sdk::config::Config;
use hourglass_plugin_sdk::{DeclaredFields, Event, Field, Outcome, Plugin, drop_event};

struct Validate {
    max_name_chars: usize,
    max_props: usize,
    max_prop_chars: usize,
    allowed_names: Vec<String>,
}

impl Plugin for Validate {
    fn init(config: &str, _data: &[u8]) -> Result<Self, String> {
        let config = Config::parse(
            config,
            &[
                "max_name_chars",
                "max_props",
                "max_prop_chars",
                "allowed_names",
            ],
        )?;
        Ok(Validate {
            max_name_chars: config.usize_or("max_name_chars", 120)?,
            max_props: config.usize_or("max_props", 30)?,
            max_prop_chars: config.usize_or("max_prop_chars", 2000)?,
            allowed_names: config.list("allowed_names").unwrap_or_default(),
        })
    }

    fn fields(&self) -> DeclaredFields {
        DeclaredFields {
            reads: vec![Field::Name, Field::Hostname, Field::Pathname, Field::Props],
            writes: Vec::new(),
        }
    }

    fn process(&mut self, event: Event) -> Outcome {
        let name = event.name.trim();
        if name.is_empty() {
            return drop_event("empty_name", Some(Field::Name));
        }
        if name.chars().count() > self.max_name_chars {
            return drop_event("name_too_long", Some(Field::Name));
        }
        if !self.allowed_names.is_empty() && !self.allowed_names.iter().any(|n| n == name) {
            return drop_event("name_not_allowed", Some(Field::Name));
        }
        if !valid_hostname(&event.hostname) {
            return drop_event("bad_hostname", Some(Field::Hostname));
        }
        if !event.pathname.starts_with('/') || event.pathname.chars().any(char::is_control) {
            return drop_event("bad_pathname", Some(Field::Pathname));
        }
        if event.props.len() > self.max_props {
            return drop_event("too_many_props", Some(Field::Props));
        }
        let too_long = |s: &str| s.chars().count() > self.max_prop_chars;
        if event
            .props
            .iter()
            .any(|p| too_long(&p.key) || too_long(&p.value))
        {
            return drop_event("prop_too_long", Some(Field::Props));
        }
        Outcome::Keep
    }
}

/// Letters, digits, `-` and `.`, dot-separated labels of 1–63 characters.
fn valid_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

hourglass_plugin_sdk::plugin!(Validate);
