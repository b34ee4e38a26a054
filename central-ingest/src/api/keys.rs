//! API keys as the API sees them: resolved from their SHA-256 through a
//! short-lived in-memory cache (a revoked key stops working within the
//! TTL), and rate-limited per key.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hourglass_warehouse::metadata::{KeyGrant, hash_api_key};
use hourglass_warehouse::{Warehouse, WarehouseError};

/// When a key was looked up, and its grant (`None`: no such live key).
type Cached = (Instant, Option<Arc<KeyGrant>>);

/// Resolves bearer keys to what they may read.
pub struct Keys {
    warehouse: Warehouse,
    ttl: Duration,
    default_per_minute: NonZeroU32,
    /// key hash → (when looked up, the grant or `None` for no such key).
    cache: Mutex<HashMap<String, Cached>>,
    /// key hash → (its quota per minute, its limiter); kept across cache
    /// refreshes so a refresh does not reset a key's budget.
    limiters: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

impl Keys {
    pub fn new(warehouse: Warehouse, ttl: Duration, default_per_minute: NonZeroU32) -> Self {
        Keys {
            warehouse,
            ttl,
            default_per_minute,
            cache: Mutex::new(HashMap::new()),
            limiters: Mutex::new(HashMap::new()),
        }
    }

    /// The grant of `key`, `None` when it is unknown, revoked or expired.
    pub async fn resolve(&self, key: &str) -> Result<Option<Arc<KeyGrant>>, WarehouseError> {
        let hash = hash_api_key(key);
        if let Some((at, grant)) = lock(&self.cache).get(&hash)
            && at.elapsed() < self.ttl
        {
            return Ok(grant.clone());
        }
        let grant = self
            .warehouse
            .api_key_grant(&hash, SystemTime::now())
            .await?
            .map(Arc::new);
        let mut cache = lock(&self.cache);
        // Bounded: unknown keys are cached too, so forget stale entries
        // before a flood of made-up keys can grow the map for long.
        if cache.len() > 10_000 {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        cache.insert(hash, (Instant::now(), grant.clone()));
        Ok(grant)
    }

    /// Drops what is cached for the key whose SHA-256 is `key_hash` (after
    /// a revocation on this node, so it stops working at once).
    pub fn forget(&self, key_hash: &str) {
        lock(&self.cache).remove(key_hash);
    }

    /// `Ok` when the key may make a request now, else how long to wait.
    pub fn check_rate(&self, grant: &KeyGrant) -> Result<(), Duration> {
        let per_minute = NonZeroU32::new(grant.key.rate_limit_per_minute)
            .unwrap_or(self.default_per_minute)
            .get();
        let limiter = {
            let mut limiters = lock(&self.limiters);
            let entry = limiters
                .entry(grant.key.key_hash.clone())
                .or_insert_with(|| (per_minute, Arc::new(limiter(per_minute))));
            if entry.0 != per_minute {
                *entry = (per_minute, Arc::new(limiter(per_minute)));
            }
            entry.1.clone()
        };
        limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

fn limiter(per_minute: u32) -> DefaultDirectRateLimiter {
    let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_minute(n))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
