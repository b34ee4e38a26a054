//! Request rate limits (GCRA, `governor`): per client IP for browser
//! protocols, per site for everything. A limited request gets `429` with
//! `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::RateLimit;

pub struct Limits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_site: Option<DefaultKeyedRateLimiter<String>>,
}

fn quota(rate: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    Some(Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate)))
}

/// Whole seconds to wait, at least 1.
fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.as_secs() == 0))
}

impl Limits {
    pub fn new(cfg: &RateLimit) -> Self {
        Limits {
            per_ip: quota(cfg.per_ip_per_sec, cfg.per_ip_burst).map(DefaultKeyedRateLimiter::keyed),
            per_site: quota(cfg.per_site_per_sec, cfg.per_site_burst)
                .map(DefaultKeyedRateLimiter::keyed),
        }
    }

    /// `Err(seconds to wait)` when `ip` is over its rate.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), u64> {
        match &self.per_ip {
            Some(l) => l
                .check_key(&ip)
                .map_err(|n| retry_after(n.wait_time_from(DefaultClock::default().now()))),
            None => Ok(()),
        }
    }

    /// `Err(seconds to wait)` when `site` is over its rate.
    pub fn check_site(&self, site: &str) -> Result<(), u64> {
        match &self.per_site {
            Some(l) => l
                .check_key(&site.to_owned())
                .map_err(|n| retry_after(n.wait_time_from(DefaultClock::default().now()))),
            None => Ok(()),
        }
    }

    /// Forgets keys that are back to a full burst, so memory stays bounded.
    pub fn sweep(&self) {
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_site {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_with_a_wait() {
        let limits = Limits::new(&RateLimit {
            per_ip_per_sec: 1,
            per_ip_burst: 2,
            per_site_per_sec: 0,
            per_site_burst: 0,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limits.check_ip(ip).is_ok());
        assert!(limits.check_ip(ip).is_ok());
        assert_eq!(limits.check_ip(ip), Err(1));
        // Another client is not affected; sites are unlimited here.
        assert!(limits.check_ip("192.0.2.2".parse().unwrap()).is_ok());
        for _ in 0..100 {
            assert!(limits.check_site("s").is_ok());
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after(Duration::ZERO), 1);
        assert_eq!(retry_after(Duration::from_millis(10)), 1);
        assert_eq!(retry_after(Duration::from_secs(2)), 2);
        assert_eq!(retry_after(Duration::from_millis(2_100)), 3);
    }
}
