//! Closing batches: the pure rule of when the hits gathered so far become
//! one batch. No IO and no clock of its own (`now_ms` is passed in).
//!
//! A batch closes at `max_hits` hits, at `max_bytes` of raw hit bytes, when
//! it is `max_age_ms` old, or when a hit of a later UTC hour arrives: the
//! archive is partitioned by the hour the edge received the hits, so a batch
//! never spans two hours.

use hourglass_model::RawHit;

const HOUR_MS: i64 = 3_600_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_hits: usize,
    pub max_bytes: usize,
    pub max_age_ms: i64,
}

/// Hits waiting to become a batch, each with the caller's token (whoever
/// waits for the hit to be durable).
#[derive(Debug)]
pub struct Batcher<T> {
    limits: BatchLimits,
    hits: Vec<(RawHit, T)>,
    bytes: usize,
    opened_at_ms: i64,
}

/// Rough size of a hit in a batch: what the limits count.
pub fn hit_bytes(hit: &RawHit) -> usize {
    hit.body.len()
        + hit.path_and_query.len()
        + hit.user_agent.len()
        + hit.referer.len()
        + hit.origin.len()
        + hit.accept_language.len()
        + 64
}

impl<T> Batcher<T> {
    pub fn new(limits: BatchLimits) -> Self {
        Batcher {
            limits,
            hits: Vec::new(),
            bytes: 0,
            opened_at_ms: 0,
        }
    }

    /// Adds a hit. Returns the batch that closed: the previous one when this
    /// hit belongs to a later hour, or the one this hit filled.
    pub fn push(&mut self, hit: RawHit, token: T) -> Option<Vec<(RawHit, T)>> {
        let hour = hit.received_at_ms.div_euclid(HOUR_MS);
        let mut closed = None;
        if let Some((first, _)) = self.hits.first()
            && first.received_at_ms.div_euclid(HOUR_MS) != hour
        {
            closed = self.take();
        }
        if self.hits.is_empty() {
            self.opened_at_ms = hit.received_at_ms;
        }
        self.bytes += hit_bytes(&hit);
        self.hits.push((hit, token));
        if closed.is_none()
            && (self.hits.len() >= self.limits.max_hits || self.bytes >= self.limits.max_bytes)
        {
            closed = self.take();
        }
        closed
    }

    /// When the open batch must close by age, if there is one.
    pub fn deadline_ms(&self) -> Option<i64> {
        if self.hits.is_empty() {
            return None;
        }
        let hour_end = (self.opened_at_ms.div_euclid(HOUR_MS) + 1) * HOUR_MS;
        Some((self.opened_at_ms + self.limits.max_age_ms).min(hour_end))
    }

    /// Closes the open batch if it is due at `now_ms`.
    pub fn poll(&mut self, now_ms: i64) -> Option<Vec<(RawHit, T)>> {
        match self.deadline_ms() {
            Some(deadline) if now_ms >= deadline => self.take(),
            _ => None,
        }
    }

    /// Closes whatever is open (shutdown).
    pub fn take(&mut self) -> Option<Vec<(RawHit, T)>> {
        self.bytes = 0;
        if self.hits.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.hits))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(at_ms: i64, body: usize) -> RawHit {
        RawHit {
            received_at_ms: at_ms,
            body: vec![b'x'; body],
            ..RawHit::default()
        }
    }

    const LIMITS: BatchLimits = BatchLimits {
        max_hits: 3,
        max_bytes: 10_000,
        max_age_ms: 1_000,
    };

    #[test]
    fn closes_at_max_hits() {
        let mut b = Batcher::new(LIMITS);
        assert!(b.push(hit(0, 1), 1).is_none());
        assert!(b.push(hit(1, 1), 2).is_none());
        let closed = b.push(hit(2, 1), 3).unwrap();
        assert_eq!(
            closed.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(b.deadline_ms().is_none());
    }

    #[test]
    fn closes_at_max_bytes() {
        let mut b = Batcher::new(LIMITS);
        assert!(b.push(hit(0, 6_000), ()).is_none());
        assert_eq!(b.push(hit(0, 6_000), ()).unwrap().len(), 2);
    }

    #[test]
    fn closes_by_age() {
        let mut b = Batcher::new(LIMITS);
        b.push(hit(5_000, 1), ());
        assert_eq!(b.deadline_ms(), Some(6_000));
        assert!(b.poll(5_999).is_none());
        assert_eq!(b.poll(6_000).unwrap().len(), 1);
        assert!(b.poll(10_000).is_none());
    }

    #[test]
    fn never_spans_two_hours() {
        let mut b = Batcher::new(LIMITS);
        b.push(hit(HOUR_MS - 10, 1), 'a');
        // The age deadline is cut at the hour's end.
        assert_eq!(b.deadline_ms(), Some(HOUR_MS));
        let closed = b.push(hit(HOUR_MS, 1), 'b').unwrap();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].1, 'a');
        assert_eq!(b.take().unwrap()[0].1, 'b');
    }
}
