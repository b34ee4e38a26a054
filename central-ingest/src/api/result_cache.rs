//! Recent query answers by query (with the site's internal id), so a
//! dashboard reloaded by many viewers asks the warehouse once per TTL.
//!
//! Stale while revalidate: an answer older than the TTL is still served,
//! for at most one more TTL, while exactly one caller refreshes it in the
//! background. So when a popular answer expires, nobody waits for the
//! warehouse and the warehouse gets one query, not one per waiting
//! viewer (which, at 200 queries/s on a few answers, piled up into
//! seconds of queueing). An answer past twice the TTL, or one never
//! computed, is computed by the caller. A failed refresh lets the next
//! caller try again. Past [`ResultCache::MAX_ENTRIES`], the unusable
//! answers go first, then the oldest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What the cache has for a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Younger than the TTL.
    Fresh(String),
    /// Older than the TTL: serve it; when `refresh`, this caller was
    /// chosen to compute the new answer and [`ResultCache::put`] it (or
    /// [`ResultCache::refresh_failed`]).
    Stale { body: String, refresh: bool },
    /// Nothing usable: compute it.
    Miss,
}

struct Entry {
    at: Instant,
    body: String,
    refreshing: bool,
}

pub struct ResultCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl ResultCache {
    /// Entries kept at most; past this, the unusable ones are dropped,
    /// then all.
    const MAX_ENTRIES: usize = 1000;

    /// `ttl` zero: nothing is ever cached.
    pub fn new(ttl: Duration) -> Self {
        ResultCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn lookup(&self, key: &str) -> Lookup {
        if self.ttl.is_zero() {
            return Lookup::Miss;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = entries.get_mut(key) else {
            return Lookup::Miss;
        };
        let age = entry.at.elapsed();
        if age < self.ttl {
            Lookup::Fresh(entry.body.clone())
        } else if age < self.ttl.saturating_mul(2) {
            let refresh = !entry.refreshing;
            entry.refreshing = true;
            Lookup::Stale {
                body: entry.body.clone(),
                refresh,
            }
        } else {
            Lookup::Miss
        }
    }

    pub fn put(&self, key: String, body: String) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= Self::MAX_ENTRIES && !entries.contains_key(&key) {
            // The unusable ones, else the oldest: popular answers stay.
            let usable = self.ttl.saturating_mul(2);
            entries.retain(|_, e| e.at.elapsed() < usable);
            if entries.len() >= Self::MAX_ENTRIES
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.at)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            key,
            Entry {
                at: Instant::now(),
                body,
                refreshing: false,
            },
        );
    }

    /// The refresh [`Lookup::Stale`] asked for, as a guard: [`Refresh::put`]
    /// its answer; dropped without one (the query failed, the task
    /// panicked or was cancelled), the next caller refreshes instead.
    pub fn refresh(self: &Arc<Self>, key: String) -> Refresh {
        Refresh {
            cache: self.clone(),
            key: Some(key),
        }
    }

    fn refresh_failed(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(key) {
            entry.refreshing = false;
        }
    }
}

/// An owed refresh; see [`ResultCache::refresh`].
pub struct Refresh {
    cache: Arc<ResultCache>,
    key: Option<String>,
}

impl Refresh {
    pub fn put(mut self, body: String) {
        if let Some(key) = self.key.take() {
            self.cache.put(key, body);
        }
    }
}

impl Drop for Refresh {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            self.cache.refresh_failed(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stale(body: &str, refresh: bool) -> Lookup {
        Lookup::Stale {
            body: body.into(),
            refresh,
        }
    }

    #[test]
    fn fresh_then_stale_with_one_refresher_then_gone() {
        let cache = Arc::new(ResultCache::new(Duration::from_millis(80)));
        cache.put("q".into(), "a".into());
        assert_eq!(cache.lookup("q"), Lookup::Fresh("a".into()));
        assert_eq!(cache.lookup("other"), Lookup::Miss);
        std::thread::sleep(Duration::from_millis(90));
        // Past the TTL: served, and only the first caller refreshes.
        assert_eq!(cache.lookup("q"), stale("a", true));
        assert_eq!(cache.lookup("q"), stale("a", false));
        // A refresh dropped without an answer: the next caller is chosen.
        drop(cache.refresh("q".into()));
        assert_eq!(cache.lookup("q"), stale("a", true));
        // The refresh lands: fresh again.
        cache.refresh("q".into()).put("b".into());
        assert_eq!(cache.lookup("q"), Lookup::Fresh("b".into()));
        // Past twice the TTL: computed by the caller.
        std::thread::sleep(Duration::from_millis(170));
        assert_eq!(cache.lookup("q"), Lookup::Miss);
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let off = ResultCache::new(Duration::ZERO);
        off.put("q".into(), "a".into());
        assert_eq!(off.lookup("q"), Lookup::Miss);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = ResultCache::new(Duration::from_secs(60));
        for i in 0..ResultCache::MAX_ENTRIES + 5 {
            cache.put(i.to_string(), "x".into());
        }
        let len = cache.entries.lock().unwrap().len();
        assert!(len <= ResultCache::MAX_ENTRIES, "{len}");
        // The oldest went, not everything.
        assert_eq!(cache.lookup("0"), Lookup::Miss);
        assert_eq!(cache.lookup("10"), Lookup::Fresh("x".into()));
        assert_eq!(
            cache.lookup(&(ResultCache::MAX_ENTRIES + 4).to_string()),
            Lookup::Fresh("x".into())
        );
    }
}
