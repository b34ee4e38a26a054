//! A batch by columns to [`Event`]s, and [`Outcome`]s back to columns of
//! the declared writes.

use crate::wire::{Action, Batch, Outcomes, PropsColumn, Text, TextColumn};
use crate::{DeclaredFields, DropReason, Event, Field, Outcome, Plugin, Prop};

/// A [`Plugin`] and the fields it declared: what the component's exports
/// call. [`plugin!`](crate::plugin) uses it; a hand-written export can too.
pub struct Instance<P> {
    plugin: P,
    writes: Vec<Field>,
}

impl<P: Plugin> Instance<P> {
    /// The plugin's `init`, and the fields it declared.
    pub fn init(config: &str, data: &[u8]) -> Result<(Self, DeclaredFields), String> {
        let plugin = P::init(config, data)?;
        let fields = plugin.fields();
        let instance = Instance {
            plugin,
            writes: fields.writes.clone(),
        };
        Ok((instance, fields))
    }

    pub fn plugin(&self) -> &P {
        &self.plugin
    }

    /// Runs the plugin over every event of the batch, in order, one event
    /// at a time: each is built from the columns, processed, and its
    /// outcome written out before the next.
    pub fn process(&mut self, batch: Batch) -> Outcomes {
        let len = batch.len as usize;
        let mut out = Encoder::new(len, &self.writes);
        let mut next_prop = 0usize;
        for i in 0..len {
            let event = event(&batch, i, &mut next_prop);
            out.push(self.plugin.process(event));
        }
        out.finish()
    }
}

/// The string field `field` of `event` (`None` for props and is-bot).
fn text_mut(event: &mut Event, field: Field) -> Option<&mut String> {
    Some(match field {
        Field::Name => &mut event.name,
        Field::Hostname => &mut event.hostname,
        Field::Pathname => &mut event.pathname,
        Field::Referrer => &mut event.referrer,
        Field::UserAgent => &mut event.user_agent,
        Field::ClientIp => &mut event.client_ip,
        Field::Language => &mut event.language,
        Field::Browser => &mut event.browser,
        Field::BrowserVersion => &mut event.browser_version,
        Field::Os => &mut event.os,
        Field::OsVersion => &mut event.os_version,
        Field::Device => &mut event.device,
        Field::Country => &mut event.country,
        Field::Region => &mut event.region,
        Field::City => &mut event.city,
        Field::Source => &mut event.source,
        Field::Channel => &mut event.channel,
        Field::UtmSource => &mut event.utm_source,
        Field::UtmMedium => &mut event.utm_medium,
        Field::UtmCampaign => &mut event.utm_campaign,
        Field::UtmContent => &mut event.utm_content,
        Field::UtmTerm => &mut event.utm_term,
        Field::Props | Field::IsBot => return None,
    })
}

/// Value `i` of a [`Text`] (empty on bad offsets: the host writes them,
/// so that does not happen).
fn nth(text: &Text, i: usize) -> &str {
    let start = match i.checked_sub(1) {
        Some(before) => text.ends.get(before).map_or(0, |&e| e as usize),
        None => 0,
    };
    let end = text.ends.get(i).map_or(start, |&e| e as usize);
    text.data.get(start..end).unwrap_or("")
}

fn push(text: &mut Text, value: &str) {
    text.data.push_str(value);
    text.ends
        .push(u32::try_from(text.data.len()).unwrap_or(u32::MAX));
}

fn empty_text(values: usize) -> Text {
    Text {
        data: String::new(),
        ends: Vec::with_capacity(values),
    }
}

/// Event `i` of the batch; `next_prop` is where its props start (events
/// are built in order).
fn event(batch: &Batch, i: usize, next_prop: &mut usize) -> Event {
    let mut event = Event::default();
    for column in &batch.columns {
        if let Some(slot) = text_mut(&mut event, column.field) {
            nth(&column.values, i).clone_into(slot);
        }
    }
    if let Some(props) = &batch.props {
        let count = props.counts.get(i).map_or(0, |&c| c as usize);
        let first = *next_prop;
        *next_prop = first.saturating_add(count);
        event.props = (first..*next_prop)
            .map(|p| Prop {
                key: nth(&props.keys, p).to_owned(),
                value: nth(&props.values, p).to_owned(),
            })
            .collect();
    }
    if let Some(is_bot) = &batch.is_bot {
        event.is_bot = is_bot.get(i).copied().unwrap_or(false);
    }
    event
}

/// Outcomes as they come: actions, drop reasons, and the `writes` fields
/// of the modified events, by column.
struct Encoder {
    actions: Vec<Action>,
    drops: Vec<crate::wire::DropReason>,
    columns: Vec<TextColumn>,
    props: Option<PropsColumn>,
    is_bot: Option<Vec<bool>>,
}

impl Encoder {
    fn new(len: usize, writes: &[Field]) -> Self {
        let mut out = Encoder {
            actions: Vec::with_capacity(len),
            drops: Vec::new(),
            columns: Vec::new(),
            props: None,
            is_bot: None,
        };
        for &field in writes {
            match field {
                Field::Props => {
                    out.props = Some(PropsColumn {
                        counts: Vec::new(),
                        keys: empty_text(0),
                        values: empty_text(0),
                    });
                }
                Field::IsBot => out.is_bot = Some(Vec::new()),
                _ => out.columns.push(TextColumn {
                    field,
                    values: empty_text(0),
                }),
            }
        }
        out
    }

    fn push(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Keep => self.actions.push(Action::Keep),
            Outcome::Modify(mut event) => {
                self.actions.push(Action::Modify);
                for column in &mut self.columns {
                    if let Some(value) = text_mut(&mut event, column.field) {
                        push(&mut column.values, value);
                    }
                }
                if let Some(props) = &mut self.props {
                    props
                        .counts
                        .push(u32::try_from(event.props.len()).unwrap_or(u32::MAX));
                    for p in &event.props {
                        push(&mut props.keys, &p.key);
                        push(&mut props.values, &p.value);
                    }
                }
                if let Some(is_bot) = &mut self.is_bot {
                    is_bot.push(event.is_bot);
                }
            }
            Outcome::Drop(DropReason { reason, field }) => {
                self.actions.push(Action::Drop);
                self.drops.push(crate::wire::DropReason { reason, field });
            }
        }
    }

    fn finish(self) -> Outcomes {
        Outcomes {
            actions: self.actions,
            columns: self.columns,
            props: self.props,
            is_bot: self.is_bot,
            drops: self.drops,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(values: &[&str]) -> Text {
        let mut t = empty_text(values.len());
        for v in values {
            push(&mut t, v);
        }
        t
    }

    /// Upper-cases `name`, copies `country` into `city`, adds a prop, flags
    /// events named `bot`, drops events named `drop`.
    struct Toy;

    impl Plugin for Toy {
        fn init(_config: &str, _data: &[u8]) -> Result<Self, String> {
            Ok(Toy)
        }
        fn fields(&self) -> DeclaredFields {
            DeclaredFields {
                reads: vec![Field::Name, Field::Country, Field::Props, Field::IsBot],
                writes: vec![Field::City, Field::Props, Field::IsBot],
            }
        }
        fn process(&mut self, mut event: Event) -> Outcome {
            match event.name.as_str() {
                "drop" => crate::drop_event("dropped", Some(Field::Name)),
                "keep" => Outcome::Keep,
                name => {
                    event.is_bot = name == "bot" || event.is_bot;
                    event.city = format!("{}-{}", event.country, event.props.len());
                    event.props.push(Prop {
                        key: "k".into(),
                        value: "ü".into(),
                    });
                    Outcome::Modify(event)
                }
            }
        }
    }

    #[test]
    fn a_batch_by_columns_round_trips_through_the_per_event_trait() {
        let (mut toy, fields) = Instance::<Toy>::init("", &[]).unwrap();
        assert_eq!(fields.writes.len(), 3);
        let batch = Batch {
            len: 4,
            columns: vec![
                TextColumn {
                    field: Field::Name,
                    values: text(&["keep", "bot", "drop", "ünïcode"]),
                },
                TextColumn {
                    field: Field::Country,
                    values: text(&["DE", "", "FR", "JP"]),
                },
            ],
            props: Some(PropsColumn {
                counts: vec![0, 2, 0, 1],
                keys: text(&["a", "b", "c"]),
                values: text(&["1", "2", "3"]),
            }),
            is_bot: Some(vec![false, false, false, true]),
        };
        let out = toy.process(batch);
        assert_eq!(
            out.actions,
            [Action::Keep, Action::Modify, Action::Drop, Action::Modify]
        );
        assert_eq!(out.drops.len(), 1);
        assert_eq!(out.drops[0].reason, "dropped");
        assert_eq!(out.drops[0].field, Some(Field::Name));
        // Only the declared writes come back, for the modified events only.
        assert_eq!(out.columns.len(), 1);
        assert_eq!(out.columns[0].field, Field::City);
        let cities: Vec<&str> = (0..2).map(|i| nth(&out.columns[0].values, i)).collect();
        assert_eq!(cities, ["-2", "JP-1"]);
        let props = out.props.as_ref().unwrap();
        assert_eq!(props.counts, [3, 2]);
        let keys: Vec<&str> = (0..5).map(|i| nth(&props.keys, i)).collect();
        assert_eq!(keys, ["a", "b", "k", "c", "k"]);
        assert_eq!(nth(&props.values, 4), "ü");
        assert_eq!(out.is_bot, Some(vec![true, true]));
    }
}
