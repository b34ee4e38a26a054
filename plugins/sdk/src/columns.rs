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

    /// Runs the plugin over every event of the batch, in order.
    pub fn process(&mut self, batch: Batch) -> Outcomes {
        let outcomes: Vec<Outcome> = events(batch)
            .into_iter()
            .map(|event| self.plugin.process(event))
            .collect();
        encode(outcomes, &self.writes)
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

/// The values of a [`Text`], in order (empty past its end or on bad
/// offsets: the host writes them, so that does not happen).
fn values(text: &Text) -> impl Iterator<Item = &str> {
    let mut start = 0usize;
    text.ends.iter().map(move |&end| {
        let end = end as usize;
        let value = text.data.get(start..end).unwrap_or("");
        start = end;
        value
    })
}

fn push(text: &mut Text, value: &str) {
    text.data.push_str(value);
    text.ends
        .push(u32::try_from(text.data.len()).unwrap_or(u32::MAX));
}

fn empty_text() -> Text {
    Text {
        data: String::new(),
        ends: Vec::new(),
    }
}

/// The batch as events.
fn events(batch: Batch) -> Vec<Event> {
    let mut events = vec![Event::default(); batch.len as usize];
    for column in &batch.columns {
        for (event, value) in events.iter_mut().zip(values(&column.values)) {
            if let Some(slot) = text_mut(event, column.field) {
                value.clone_into(slot);
            }
        }
    }
    if let Some(props) = &batch.props {
        let mut pairs = values(&props.keys).zip(values(&props.values));
        for (event, &count) in events.iter_mut().zip(&props.counts) {
            event.props = pairs
                .by_ref()
                .take(count as usize)
                .map(|(key, value)| Prop {
                    key: key.to_owned(),
                    value: value.to_owned(),
                })
                .collect();
        }
    }
    if let Some(is_bot) = &batch.is_bot {
        for (event, &bot) in events.iter_mut().zip(is_bot) {
            event.is_bot = bot;
        }
    }
    events
}

/// Outcomes as actions, drop reasons, and columns of the `writes` fields
/// for the modified events.
fn encode(outcomes: Vec<Outcome>, writes: &[Field]) -> Outcomes {
    let mut actions = Vec::with_capacity(outcomes.len());
    let mut drops = Vec::new();
    let mut modified = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Keep => actions.push(Action::Keep),
            Outcome::Modify(event) => {
                actions.push(Action::Modify);
                modified.push(event);
            }
            Outcome::Drop(DropReason { reason, field }) => {
                actions.push(Action::Drop);
                drops.push(crate::wire::DropReason { reason, field });
            }
        }
    }
    let mut columns = Vec::new();
    let mut props = None;
    let mut is_bot = None;
    for &field in writes {
        match field {
            Field::Props => {
                let mut column = PropsColumn {
                    counts: Vec::with_capacity(modified.len()),
                    keys: empty_text(),
                    values: empty_text(),
                };
                for event in &modified {
                    column
                        .counts
                        .push(u32::try_from(event.props.len()).unwrap_or(u32::MAX));
                    for p in &event.props {
                        push(&mut column.keys, &p.key);
                        push(&mut column.values, &p.value);
                    }
                }
                props = Some(column);
            }
            Field::IsBot => is_bot = Some(modified.iter().map(|e| e.is_bot).collect()),
            _ => {
                let mut values = empty_text();
                for event in &mut modified {
                    if let Some(value) = text_mut(event, field) {
                        push(&mut values, value);
                    }
                }
                columns.push(TextColumn { field, values });
            }
        }
    }
    Outcomes {
        actions,
        columns,
        props,
        is_bot,
        drops,
    }
}
