//! Drops events whose user agent contains a bot pattern (case-insensitive
//! substrings, one a line, `#` comments). The patterns are the plugin's
//! data blob; without one it uses `data/patterns.txt`, built in.
//!
//! Config: `action` = `drop` (default; reason `bot`) or `flag` (keep the
//! event, set `is-bot` and device `bot`); `drop_empty_user_agent` (false).

use hourglass_plugin_sdk::config::Config;
use hourglass_plugin_sdk::{DeclaredFields, Event, Field, Outcome, Plugin, drop_event};

const BUILT_IN: &str = include_str!("../data/patterns.txt");

struct BotFilter {
    patterns: Vec<String>,
    flag_only: bool,
    drop_empty: bool,
}

impl Plugin for BotFilter {
    fn init(config: &str, data: &[u8]) -> Result<Self, String> {
        let config = Config::parse(config, &["action", "drop_empty_user_agent"])?;
        let flag_only = match config.get("action") {
            None | Some("drop") => false,
            Some("flag") => true,
            Some(other) => return Err(format!("config `action`: `{other}` is not drop or flag")),
        };
        let text = if data.is_empty() {
            BUILT_IN
        } else {
            std::str::from_utf8(data)
                .map_err(|e| format!("data: the pattern list is not UTF-8: {e}"))?
        };
        let patterns: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_lowercase)
            .collect();
        if patterns.is_empty() {
            return Err("data: the pattern list is empty".to_owned());
        }
        Ok(BotFilter {
            patterns,
            flag_only,
            drop_empty: config.bool_or("drop_empty_user_agent", false)?,
        })
    }

    fn fields(&self) -> DeclaredFields {
        DeclaredFields {
            reads: vec![Field::UserAgent],
            writes: if self.flag_only {
                vec![Field::IsBot, Field::Device]
            } else {
                Vec::new()
            },
        }
    }

    fn process(&mut self, mut event: Event) -> Outcome {
        let ua = event.user_agent.to_lowercase();
        let is_bot = if ua.is_empty() {
            self.drop_empty
        } else {
            self.patterns.iter().any(|p| ua.contains(p.as_str()))
        };
        match (is_bot, self.flag_only) {
            (false, _) => Outcome::Keep,
            (true, false) => drop_event("bot", Some(Field::UserAgent)),
            (true, true) => {
                event.is_bot = true;
                event.device = "bot".to_owned();
                Outcome::Modify(event)
            }
        }
    }
}

hourglass_plugin_sdk::plugin!(BotFilter);
