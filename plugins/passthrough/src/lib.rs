//! Keeps every event. By default it reads no field, so a call costs only
//! the host's fixed per-call and per-event work; with `fields = all` it
//! reads every field, and with `modify = true` it also writes them all
//! back: the full marshalling cost both ways.

use hourglass_plugin_sdk::config::Config;
use hourglass_plugin_sdk::{DeclaredFields, Event, Field, Outcome, Plugin};

const ALL: [Field; 24] = [
    Field::Name,
    Field::Hostname,
    Field::Pathname,
    Field::Referrer,
    Field::UserAgent,
    Field::ClientIp,
    Field::Language,
    Field::Props,
    Field::Browser,
    Field::BrowserVersion,
    Field::Os,
    Field::OsVersion,
    Field::Device,
    Field::Country,
    Field::Region,
    Field::City,
    Field::Source,
    Field::Channel,
    Field::UtmSource,
    Field::UtmMedium,
    Field::UtmCampaign,
    Field::UtmContent,
    Field::UtmTerm,
    Field::IsBot,
];

struct Passthrough {
    read_all: bool,
    modify: bool,
}

impl Plugin for Passthrough {
    fn init(config: &str, _data: &[u8]) -> Result<Self, String> {
        let config = Config::parse(config, &["fields", "modify"])?;
        let read_all = match config.get("fields") {
            None | Some("none") => false,
            Some("all") => true,
            Some(other) => return Err(format!("config `fields`: `{other}` is not none or all")),
        };
        let modify = config.bool_or("modify", false)?;
        Ok(Passthrough { read_all, modify })
    }

    fn fields(&self) -> DeclaredFields {
        let reads = if self.read_all || self.modify {
            ALL.to_vec()
        } else {
            Vec::new()
        };
        // The host never takes back the hit's context fields.
        let writes = if self.modify {
            ALL.iter()
                .copied()
                .filter(|f| !matches!(f, Field::UserAgent | Field::ClientIp | Field::Language))
                .collect()
        } else {
            Vec::new()
        };
        DeclaredFields { reads, writes }
    }

    fn process(&mut self, event: Event) -> Outcome {
        if self.modify {
            Outcome::Modify(event)
        } else {
            Outcome::Keep
        }
    }
}

hourglass_plugin_sdk::plugin!(Passthrough);
