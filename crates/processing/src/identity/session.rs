//! The edge's session table: which session a visitor's event belongs to.
//!
//! A session ends after [`SESSION_TIMEOUT_MS`] without an event. Session ids
//! are a hash of (site, visitor, session start), so the same sequence of
//! events always gets the same ids. Memory is bounded: at most
//! `max_entries` open sessions (~150 bytes each); when full, the visitor
//! seen least recently is forgotten (their next event starts a new
//! session), and [`SessionTable::sweep`] drops sessions that have timed out.
//!
//! Events arrive roughly in time order, but GA4 and Segment clients may send
//! events up to 72 h old. An event after the open session's end starts a
//! new one; an event more than the timeout *before* the open session's start
//! gets the id of the 30-minute slot it falls in, without disturbing the
//! open session, so a backfill of old events still groups into sessions.

use std::collections::{BTreeMap, HashMap};

use super::{first_u64, update_field};

/// Inactivity that ends a session.
pub const SESSION_TIMEOUT_MS: i64 = 30 * 60 * 1000;

const SESSION_ID_CONTEXT: &str = "hourglass 2025-01 session id";

#[derive(Clone, Debug)]
struct Slot {
    session_id: u64,
    start_ms: i64,
    last_seen_ms: i64,
    /// Position in `recency`.
    tick: u64,
}

/// Key: (fingerprint of the site id, visitor id).
type Key = (u64, u64);

/// Open sessions per (site, visitor), bounded, least recently seen evicted.
#[derive(Debug)]
pub struct SessionTable {
    max_entries: usize,
    entries: HashMap<Key, Slot>,
    /// tick -> key, oldest first: the eviction order.
    recency: BTreeMap<u64, Key>,
    next_tick: u64,
    evictions: u64,
}

impl SessionTable {
    /// A table holding at most `max_entries` sessions (at least one).
    pub fn new(max_entries: usize) -> Self {
        SessionTable {
            max_entries: max_entries.max(1),
            entries: HashMap::new(),
            recency: BTreeMap::new(),
            next_tick: 0,
            evictions: 0,
        }
    }

    /// The session of an event by `visitor_id` on `site_id` at `ts_ms`,
    /// opening a new one after [`SESSION_TIMEOUT_MS`] of inactivity.
    pub fn session_id(&mut self, site_id: &str, visitor_id: u64, ts_ms: i64) -> u64 {
        let key = (site_fingerprint(site_id), visitor_id);
        let tick = self.next_tick;
        self.next_tick += 1;
        if let Some(slot) = self.entries.get_mut(&key) {
            if ts_ms < slot.start_ms.saturating_sub(SESSION_TIMEOUT_MS) {
                // A late event from before the open session: its own slot.
                let slot_start = ts_ms.saturating_sub(ts_ms.rem_euclid(SESSION_TIMEOUT_MS));
                return session_hash(site_id, visitor_id, slot_start, true);
            }
            if ts_ms > slot.last_seen_ms.saturating_add(SESSION_TIMEOUT_MS) {
                slot.session_id = session_hash(site_id, visitor_id, ts_ms, false);
                slot.start_ms = ts_ms;
                slot.last_seen_ms = ts_ms;
            } else {
                slot.start_ms = slot.start_ms.min(ts_ms);
                slot.last_seen_ms = slot.last_seen_ms.max(ts_ms);
            }
            self.recency.remove(&slot.tick);
            slot.tick = tick;
            self.recency.insert(tick, key);
            return slot.session_id;
        }
        if self.entries.len() >= self.max_entries
            && let Some((_, oldest)) = self.recency.pop_first()
        {
            self.entries.remove(&oldest);
            self.evictions += 1;
        }
        let session_id = session_hash(site_id, visitor_id, ts_ms, false);
        self.entries.insert(
            key,
            Slot {
                session_id,
                start_ms: ts_ms,
                last_seen_ms: ts_ms,
                tick,
            },
        );
        self.recency.insert(tick, key);
        session_id
    }

    /// Forgets up to `max` sessions with no event in the
    /// [`SESSION_TIMEOUT_MS`] before `now_ms`, least recently seen first;
    /// returns how many. It stops at the first session still open, so a
    /// call costs what it removes, not the size of the table, and the edge
    /// can call it often under its lock without stalling requests. (A
    /// session last touched by a late event keeps its place in the recency
    /// order and goes when it reaches the front, or by eviction.)
    pub fn sweep(&mut self, now_ms: i64, max: usize) -> usize {
        let cutoff = now_ms.saturating_sub(SESSION_TIMEOUT_MS);
        let mut removed = 0;
        while removed < max {
            let Some(entry) = self.recency.first_entry() else {
                break;
            };
            let key = *entry.get();
            if self
                .entries
                .get(&key)
                .is_some_and(|slot| slot.last_seen_ms >= cutoff)
            {
                break;
            }
            entry.remove();
            self.entries.remove(&key);
            removed += 1;
        }
        removed
    }

    /// Open sessions held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Sessions forgotten because the table was full, since it was made.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }
}

fn site_fingerprint(site_id: &str) -> u64 {
    let mut hasher = blake3::Hasher::new();
    update_field(&mut hasher, site_id);
    first_u64(&hasher)
}

fn session_hash(site_id: &str, visitor_id: u64, start_ms: i64, late_slot: bool) -> u64 {
    let mut hasher = blake3::Hasher::new_derive_key(SESSION_ID_CONTEXT);
    update_field(&mut hasher, site_id);
    hasher.update(&visitor_id.to_le_bytes());
    hasher.update(&start_ms.to_le_bytes());
    hasher.update(&[u8::from(late_slot)]);
    first_u64(&hasher)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;
    const MIN: i64 = 60_000;

    #[test]
    fn a_session_splits_after_thirty_minutes_of_inactivity() {
        let mut t = SessionTable::new(100);
        let s1 = t.session_id("site", 7, T0);
        assert_eq!(t.session_id("site", 7, T0 + 29 * MIN), s1);
        // Activity extends the session: 29 min after the last event.
        assert_eq!(t.session_id("site", 7, T0 + 58 * MIN), s1);
        assert_eq!(
            t.session_id("site", 7, T0 + 88 * MIN),
            s1,
            "exactly 30 min is still the same"
        );
        let s2 = t.session_id("site", 7, T0 + 118 * MIN + 1);
        assert_ne!(s1, s2);
        // Other visitors and sites have their own sessions.
        assert_ne!(t.session_id("site", 8, T0), s1);
        assert_ne!(t.session_id("other", 7, T0), s1);
    }

    #[test]
    fn ids_are_deterministic_given_the_sequence() {
        let events = [
            ("a", 1, T0),
            ("a", 1, T0 + 5 * MIN),
            ("b", 2, T0),
            ("a", 1, T0 + 90 * MIN),
        ];
        let run = || {
            let mut t = SessionTable::new(10);
            events
                .iter()
                .map(|&(s, v, ts)| t.session_id(s, v, ts))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn late_events_do_not_disturb_the_open_session() {
        let mut t = SessionTable::new(10);
        let live = t.session_id("s", 1, T0);
        let old_a = t.session_id("s", 1, T0 - 48 * 60 * MIN);
        let old_b = t.session_id("s", 1, T0 - 48 * 60 * MIN + MIN);
        assert_ne!(old_a, live);
        assert_eq!(old_a, old_b, "a backfill groups by 30-minute slot");
        assert_eq!(t.session_id("s", 1, T0 + MIN), live);
        // Slightly out of order (within the timeout) joins the open session.
        assert_eq!(t.session_id("s", 1, T0 - 10 * MIN), live);
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_least_recently_seen() {
        let mut t = SessionTable::new(3);
        let first = t.session_id("s", 1, T0);
        t.session_id("s", 2, T0);
        t.session_id("s", 3, T0);
        // Touch 1 so that 2 is now the least recently seen.
        assert_eq!(t.session_id("s", 1, T0 + MIN), first);
        t.session_id("s", 4, T0 + MIN);
        assert_eq!(t.len(), 3);
        assert_eq!(t.evictions(), 1);
        // 1 survived; 2 was evicted and starts over with a new session.
        assert_eq!(t.session_id("s", 1, T0 + 2 * MIN), first);
        let two_again = t.session_id("s", 2, T0 + 2 * MIN);
        assert_ne!(two_again, session_hash("s", 2, T0, false));
        for v in 0..10_000 {
            t.session_id("s", v, T0 + v as i64);
            assert!(t.len() <= 3);
        }
        assert_eq!(t.recency.len(), t.entries.len());
    }

    #[test]
    fn sweep_drops_timed_out_sessions() {
        let mut t = SessionTable::new(100);
        t.session_id("s", 1, T0);
        t.session_id("s", 2, T0 + 20 * MIN);
        assert_eq!(t.sweep(T0 + 30 * MIN, 10), 0);
        assert_eq!(t.sweep(T0 + 31 * MIN, 10), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.recency.len(), 1);
        assert_eq!(t.sweep(T0 + 120 * MIN, 10), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn sweep_removes_at_most_max_and_stops_at_the_first_open_session() {
        let mut t = SessionTable::new(100);
        for visitor in 0..5 {
            t.session_id("s", visitor, T0);
        }
        t.session_id("s", 99, T0 + 40 * MIN);
        assert_eq!(t.sweep(T0 + 45 * MIN, 3), 3);
        assert_eq!(t.sweep(T0 + 45 * MIN, 3), 2);
        // Visitor 99 is still open: nothing more goes.
        assert_eq!(t.sweep(T0 + 45 * MIN, 3), 0);
        assert_eq!((t.len(), t.recency.len()), (1, 1));
    }
}
