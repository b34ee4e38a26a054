//! Events and their hit context to a WIT batch by columns and back,
//! copying only the fields a plugin declared.

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

/// The string fields, in the order batches carry them.
const TEXT_FIELDS: [Field; 22] = [
    Field::Name,
    Field::Hostname,
    Field::Pathname,
    Field::Referrer,
    Field::UserAgent,
    Field::ClientIp,
    Field::Language,
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
];

/// The value of a string field of an event or its hit.
fn text<'a>(event: &'a Event, hit: &HitContext<'a>, field: Field) -> &'a str {
    match field {
        Field::UserAgent => hit.user_agent,
        Field::ClientIp => hit.client_ip,
        Field::Language => hit.accept_language,
        // The context fields are handled above, props and is-bot are not text.
        Field::Props | Field::IsBot => "",
        _ => event_text(event, field),
    }
}

fn event_text(event: &Event, field: Field) -> &str {
    match field {
        Field::Name => &event.name,
        Field::Hostname => &event.hostname,
        Field::Pathname => &event.pathname,
        Field::Referrer => &event.referrer,
        Field::Browser => &event.browser,
        Field::BrowserVersion => &event.browser_version,
        Field::Os => &event.os,
        Field::OsVersion => &event.os_version,
        Field::Device => &event.device,
        Field::Country => &event.country,
        Field::Region => &event.region,
        Field::City => &event.city,
        Field::Source => &event.referrer_source,
        Field::Channel => &event.channel,
        Field::UtmSource => &event.utm_source,
        Field::UtmMedium => &event.utm_medium,
        Field::UtmCampaign => &event.utm_campaign,
        Field::UtmContent => &event.utm_content,
        Field::UtmTerm => &event.utm_term,
        Field::UserAgent | Field::ClientIp | Field::Language | Field::Props | Field::IsBot => "",
    }
}

/// The string field `field` of an event, when a plugin may write it.
fn event_text_mut(event: &mut Event, field: Field) -> Option<&mut String> {
    Some(match field {
        Field::Name => &mut event.name,
        Field::Hostname => &mut event.hostname,
        Field::Pathname => &mut event.pathname,
        Field::Referrer => &mut event.referrer,
        Field::Browser => &mut event.browser,
        Field::BrowserVersion => &mut event.browser_version,
        Field::Os => &mut event.os,
        Field::OsVersion => &mut event.os_version,
        Field::Device => &mut event.device,
        Field::Country => &mut event.country,
        Field::Region => &mut event.region,
        Field::City => &mut event.city,
        Field::Source => &mut event.referrer_source,
        Field::Channel => &mut event.channel,
        Field::UtmSource => &mut event.utm_source,
        Field::UtmMedium => &mut event.utm_medium,
        Field::UtmCampaign => &mut event.utm_campaign,
        Field::UtmContent => &mut event.utm_content,
        Field::UtmTerm => &mut event.utm_term,
        Field::UserAgent | Field::ClientIp | Field::Language | Field::Props | Field::IsBot => {
            return None;
        }
    })
}

fn empty_text(values: usize, bytes: usize) -> wit::Text {
    wit::Text {
        data: String::with_capacity(bytes),
        ends: Vec::with_capacity(values),
    }
}

fn push(text: &mut wit::Text, value: &str) {
    text.data.push_str(value);
    // A batch over 4 GiB of one field is far past any limit; saturate.
    text.ends
        .push(u32::try_from(text.data.len()).unwrap_or(u32::MAX));
}

/// A batch of `len` events (event, its hit, is-bot) by column, with only
/// the `reads` fields: one string and one list per string field, however
/// many events.
pub(crate) fn batch<'e, I>(events: I, len: usize, reads: FieldSet) -> wit::Batch
where
    I: Iterator<Item = (&'e Event, HitContext<'e>, bool)> + Clone,
{
    let mut columns = Vec::new();
    for field in TEXT_FIELDS {
        if !reads.has(field) {
            continue;
        }
        let bytes = events
            .clone()
            .map(|(event, hit, _)| text(event, &hit, field).len())
            .sum();
        let mut values = empty_text(len, bytes);
        for (event, hit, _) in events.clone() {
            push(&mut values, text(event, &hit, field));
        }
        columns.push(wit::TextColumn { field, values });
    }
    let props = reads.has(Field::Props).then(|| {
        let mut column = wit::PropsColumn {
            counts: Vec::with_capacity(len),
            keys: empty_text(0, 0),
            values: empty_text(0, 0),
        };
        for (event, _, _) in events.clone() {
            column
                .counts
                .push(u32::try_from(event.props.len()).unwrap_or(u32::MAX));
            for p in &event.props {
                push(&mut column.keys, &p.key);
                push(&mut column.values, &p.value);
            }
        }
        column
    });
    let is_bot = reads
        .has(Field::IsBot)
        .then(|| events.clone().map(|(_, _, is_bot)| is_bot).collect());
    wit::Batch {
        len: u32::try_from(len).unwrap_or(u32::MAX),
        columns,
        props,
        is_bot,
    }
}

/// Value `i` of a text (checked by [`check`] first; empty if not).
fn nth(text: &wit::Text, i: usize) -> &str {
    let start = if i == 0 {
        0
    } else {
        text.ends.get(i - 1).map_or(0, |&e| e as usize)
    };
    let end = text.ends.get(i).map_or(start, |&e| e as usize);
    text.data.get(start..end).unwrap_or("")
}

/// Whether a text has `values` values with offsets that are in order, in
/// bounds and on character boundaries.
fn check_text(text: &wit::Text, values: usize, what: &str) -> Result<(), String> {
    if text.ends.len() != values {
        return Err(format!(
            "{what} has {} values for {values} events",
            text.ends.len()
        ));
    }
    let mut start = 0usize;
    for &end in &text.ends {
        let end = end as usize;
        if end < start || text.data.get(start..end).is_none() {
            return Err(format!(
                "{what} has a bad offset {end} (after {start}, in {} bytes)",
                text.data.len()
            ));
        }
        start = end;
    }
    Ok(())
}

/// What is wrong with a plugin's answer to a batch of `len` events, if
/// anything: one action per event, one reason per drop, one value per
/// modified event in every column, offsets in bounds.
pub(crate) fn check(outcomes: &wit::Outcomes, len: usize) -> Result<(), String> {
    if outcomes.actions.len() != len {
        return Err(format!(
            "{} outcomes for {len} events",
            outcomes.actions.len()
        ));
    }
    let count = |wanted: wit::Action| outcomes.actions.iter().filter(|a| **a == wanted).count();
    let (modified, dropped) = (count(wit::Action::Modify), count(wit::Action::Drop));
    if outcomes.drops.len() != dropped {
        return Err(format!(
            "{} drop reasons for {dropped} dropped events",
            outcomes.drops.len()
        ));
    }
    for column in &outcomes.columns {
        check_text(
            &column.values,
            modified,
            &format!("the column {}", event_field_name(column.field)),
        )?;
    }
    if let Some(props) = &outcomes.props {
        if props.counts.len() != modified {
            return Err(format!(
                "props has {} counts for {modified} modified events",
                props.counts.len()
            ));
        }
        let total = props
            .counts
            .iter()
            .try_fold(0usize, |sum, &c| sum.checked_add(c as usize))
            .unwrap_or(usize::MAX);
        check_text(&props.keys, total, "the prop keys")?;
        check_text(&props.values, total, "the prop values")?;
    }
    if let Some(is_bot) = &outcomes.is_bot
        && is_bot.len() != modified
    {
        return Err(format!(
            "is-bot has {} values for {modified} modified events",
            is_bot.len()
        ));
    }
    Ok(())
}

/// Takes the `writes` fields of the modified events of a [`check`]ed
/// answer into their events, one modified event after the other. Context
/// fields are never written back.
pub(crate) struct Modified<'o> {
    outcomes: &'o wit::Outcomes,
    writes: FieldSet,
    next: usize,
    next_prop: usize,
}

impl<'o> Modified<'o> {
    pub(crate) fn new(outcomes: &'o wit::Outcomes, writes: FieldSet) -> Self {
        Modified {
            outcomes,
            writes,
            next: 0,
            next_prop: 0,
        }
    }

    /// Applies the next modified event's values to `event`.
    pub(crate) fn apply_next(&mut self, event: &mut Event, is_bot: &mut bool) {
        let i = self.next;
        self.next += 1;
        for column in &self.outcomes.columns {
            if !self.writes.has(column.field) {
                continue;
            }
            if let Some(slot) = event_text_mut(event, column.field) {
                nth(&column.values, i).clone_into(slot);
            }
        }
        if let Some(props) = &self.outcomes.props {
            let count = props.counts.get(i).map_or(0, |&c| c as usize);
            let first = self.next_prop;
            self.next_prop = first.saturating_add(count);
            if self.writes.has(Field::Props) {
                event.props = (first..self.next_prop)
                    .map(|p| Prop {
                        key: nth(&props.keys, p).to_owned(),
                        value: nth(&props.values, p).to_owned(),
                    })
                    .collect();
            }
        }
        if let Some(bots) = &self.outcomes.is_bot
            && self.writes.has(Field::IsBot)
        {
            *is_bot = bots.get(i).copied().unwrap_or(*is_bot);
        }
    }
}

/// Bytes of strings in a plugin's answer, declared fields or not.
pub(crate) fn output_bytes(outcomes: &wit::Outcomes) -> usize {
    let columns: usize = outcomes.columns.iter().map(|c| c.values.data.len()).sum();
    let props = outcomes
        .props
        .as_ref()
        .map_or(0, |p| p.keys.data.len() + p.values.data.len());
    let drops: usize = outcomes.drops.iter().map(|d| d.reason.len()).sum();
    columns + props + drops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(data: &str, ends: &[u32]) -> wit::Text {
        wit::Text {
            data: data.to_owned(),
            ends: ends.to_vec(),
        }
    }

    fn answer(actions: &[wit::Action], columns: Vec<wit::TextColumn>) -> wit::Outcomes {
        wit::Outcomes {
            actions: actions.to_vec(),
            columns,
            props: None,
            is_bot: None,
            drops: Vec::new(),
        }
    }

    #[test]
    fn only_the_declared_fields_cross_and_come_back() {
        let mut event = Event {
            name: "pageview".into(),
            pathname: "/ä".into(),
            props: vec![Prop {
                key: "plan".into(),
                value: "pro".into(),
            }],
            ..Event::default()
        };
        let hit = HitContext {
            user_agent: "UA",
            ..HitContext::default()
        };
        let reads = FieldSet::of(&[Field::Pathname, Field::UserAgent, Field::Props]);
        let batch = batch([(&event, hit, false)].into_iter(), 1, reads);
        let fields: Vec<Field> = batch.columns.iter().map(|c| c.field).collect();
        assert_eq!(fields, [Field::Pathname, Field::UserAgent]);
        assert_eq!(nth(&batch.columns[0].values, 0), "/ä");
        assert_eq!(
            batch.props.as_ref().map(|p| p.counts.clone()),
            Some(vec![1])
        );
        assert!(batch.is_bot.is_none());

        // Writes to `name` (declared) and `country` (not) come back: only
        // `name` is taken.
        let outcomes = answer(
            &[wit::Action::Modify],
            vec![
                wit::TextColumn {
                    field: Field::Name,
                    values: text("signup", &[6]),
                },
                wit::TextColumn {
                    field: Field::Country,
                    values: text("XX", &[2]),
                },
            ],
        );
        check(&outcomes, 1).unwrap();
        let mut is_bot = false;
        Modified::new(&outcomes, FieldSet::of(&[Field::Name])).apply_next(&mut event, &mut is_bot);
        assert_eq!(
            (event.name.as_str(), event.country.as_str()),
            ("signup", "")
        );
    }

    #[test]
    fn a_malformed_answer_is_refused_not_trusted() {
        use wit::Action::{Drop, Keep, Modify};
        let column = |data: &str, ends: &[u32]| {
            vec![wit::TextColumn {
                field: Field::Browser,
                values: text(data, ends),
            }]
        };
        // (answer, events in the batch, what is wrong)
        let cases = [
            (answer(&[Keep, Keep], vec![]), 1, "2 outcomes for 1 events"),
            (answer(&[Drop], vec![]), 1, "0 drop reasons"),
            (answer(&[Modify], column("ab", &[1, 2])), 1, "2 values"),
            (answer(&[Modify], column("ab", &[3])), 1, "bad offset 3"),
            // Inside the two bytes of `é`.
            (answer(&[Modify], column("é", &[1])), 1, "bad offset 1"),
            (
                answer(&[Modify, Modify], column("ab", &[2, 1])),
                2,
                "bad offset 1",
            ),
        ];
        for (outcomes, len, problem) in cases {
            let err = check(&outcomes, len).expect_err(problem);
            assert!(err.contains(problem), "{err} (wanted {problem})");
        }
        let mut props = answer(&[Modify], vec![]);
        props.props = Some(wit::PropsColumn {
            counts: vec![u32::MAX],
            keys: text("", &[]),
            values: text("", &[]),
        });
        assert!(check(&props, 1).is_err());
    }
}
