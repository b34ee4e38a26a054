//! Who sent an event, without storing who they are.
//!
//! [`IdentityKeys`] turns a visitor into a `u64` with keyed BLAKE3 hashes of
//! keys derived from one master secret:
//! - without a client-supplied id: hash of (site, IP, User-Agent) keyed
//!   with the *daily salt* of the event's UTC day, so a visitor is the same
//!   all day and unlinkable across days, and anyone holding the master
//!   secret (the edge, `reprocess`) computes the same id;
//! - with one (GA4 `client_id`/`user_id`, Segment `anonymousId`/`userId`,
//!   the tracker's opt-in `cid`): hash of (site, that id), stable across
//!   days. A user id wins over a client id.
//!
//! [`SessionTable`] is the edge's memory of open sessions. Its answers
//! depend on arrival order, so they are stamped on the hit
//! (`RawHit.identity` / `event_identities`) and `reprocess` reads the stamps
//! instead of recomputing them.

mod session;

use hourglass_model::IdentitySource;

use crate::decode::Decoded;

pub use session::{SESSION_TIMEOUT_MS, SessionTable};

/// The shortest master secret accepted (128 bits).
pub const MIN_MASTER_SECRET_BYTES: usize = 16;

const MS_PER_DAY: i64 = 86_400_000;

// BLAKE3 `derive_key` contexts: one per purpose, never reused or changed
// (changing one changes every id derived from it).
const DAILY_SALT_CONTEXT: &str = "hourglass 2025-01 identity daily salt root";
const CLIENT_ID_CONTEXT: &str = "hourglass 2025-01 identity client and user ids";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(
        "the identity master secret is {len} bytes; use at least {MIN_MASTER_SECRET_BYTES} random bytes"
    )]
    TooShort { len: usize },
}

/// Keys for visitor ids, derived from the master secret.
#[derive(Clone)]
pub struct IdentityKeys {
    daily_root: [u8; 32],
    client: [u8; 32],
}

impl std::fmt::Debug for IdentityKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityKeys(<redacted>)")
    }
}

impl IdentityKeys {
    pub fn from_master_secret(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_MASTER_SECRET_BYTES {
            return Err(KeyError::TooShort { len: secret.len() });
        }
        Ok(IdentityKeys {
            daily_root: blake3::derive_key(DAILY_SALT_CONTEXT, secret),
            client: blake3::derive_key(CLIENT_ID_CONTEXT, secret),
        })
    }

    /// The UTC day (days since the epoch) an event time falls on.
    pub fn utc_day(ts_ms: i64) -> i64 {
        ts_ms.div_euclid(MS_PER_DAY)
    }

    /// The salt for one UTC day.
    pub fn daily_salt(&self, utc_day: i64) -> [u8; 32] {
        *blake3::keyed_hash(&self.daily_root, &utc_day.to_le_bytes()).as_bytes()
    }

    /// Visitor id from (site, IP, User-Agent) on the UTC day of `ts_ms`.
    pub fn daily_visitor_id(&self, site_id: &str, ip: &str, user_agent: &str, ts_ms: i64) -> u64 {
        let salt = self.daily_salt(Self::utc_day(ts_ms));
        let mut hasher = blake3::Hasher::new_keyed(&salt);
        for part in [site_id, ip, user_agent] {
            update_field(&mut hasher, part);
        }
        first_u64(&hasher)
    }

    /// Visitor id from a client-supplied client id (cookie, app instance).
    pub fn client_visitor_id(&self, site_id: &str, client_id: &str) -> u64 {
        self.id_hash(b'c', site_id, client_id)
    }

    /// Visitor id from a client-supplied user id.
    pub fn user_visitor_id(&self, site_id: &str, user_id: &str) -> u64 {
        self.id_hash(b'u', site_id, user_id)
    }

    /// The visitor id of a decoded event and where it came from.
    pub fn visitor(&self, decoded: &Decoded, ip: &str, user_agent: &str) -> (u64, IdentitySource) {
        if let Some(user_id) = &decoded.user_id {
            (
                self.user_visitor_id(&decoded.site_id, user_id),
                IdentitySource::UserId,
            )
        } else if let Some(client_id) = &decoded.client_id {
            (
                self.client_visitor_id(&decoded.site_id, client_id),
                IdentitySource::ClientId,
            )
        } else {
            (
                self.daily_visitor_id(&decoded.site_id, ip, user_agent, decoded.ts_ms),
                IdentitySource::DailyHash,
            )
        }
    }

    fn id_hash(&self, kind: u8, site_id: &str, id: &str) -> u64 {
        let mut hasher = blake3::Hasher::new_keyed(&self.client);
        hasher.update(&[kind]);
        update_field(&mut hasher, site_id);
        update_field(&mut hasher, id);
        first_u64(&hasher)
    }
}

/// Length-prefixed, so ("ab", "c") and ("a", "bc") hash differently.
pub(crate) fn update_field(hasher: &mut blake3::Hasher, part: &str) {
    hasher.update(&(part.len() as u64).to_le_bytes());
    hasher.update(part.as_bytes());
}

pub(crate) fn first_u64(hasher: &blake3::Hasher) -> u64 {
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = MS_PER_DAY;
    // 2023-11-14T00:00:00Z
    const MIDNIGHT: i64 = 19_675 * DAY;

    fn keys() -> IdentityKeys {
        IdentityKeys::from_master_secret(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            IdentityKeys::from_master_secret(b"short").unwrap_err(),
            KeyError::TooShort { len: 5 }
        );
        assert_eq!(format!("{:?}", keys()), "IdentityKeys(<redacted>)");
    }

    #[test]
    fn daily_hash_is_stable_within_a_day_and_changes_the_next() {
        let k = keys();
        let ua = "Mozilla/5.0 (X11; Linux x86_64)";
        let morning = k.daily_visitor_id("site", "203.0.113.7", ua, MIDNIGHT + 1);
        let night = k.daily_visitor_id("site", "203.0.113.7", ua, MIDNIGHT + DAY - 1);
        let next_day = k.daily_visitor_id("site", "203.0.113.7", ua, MIDNIGHT + DAY);
        assert_eq!(morning, night);
        assert_ne!(morning, next_day);
        // Reprocessing derives the same keys from the same secret.
        let again = IdentityKeys::from_master_secret(b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            again.daily_visitor_id("site", "203.0.113.7", ua, MIDNIGHT + 5),
            morning
        );
        // Each input matters; so does the secret.
        assert_ne!(
            k.daily_visitor_id("other", "203.0.113.7", ua, MIDNIGHT),
            morning
        );
        assert_ne!(
            k.daily_visitor_id("site", "203.0.113.8", ua, MIDNIGHT),
            morning
        );
        assert_ne!(
            k.daily_visitor_id("site", "203.0.113.7", "curl/8", MIDNIGHT),
            morning
        );
        let other = IdentityKeys::from_master_secret(b"another secret, 32 bytes long!!!").unwrap();
        assert_ne!(
            other.daily_visitor_id("site", "203.0.113.7", ua, MIDNIGHT),
            morning
        );
        // Days before the epoch are days too.
        assert_eq!(IdentityKeys::utc_day(-1), -1);
    }

    #[test]
    fn client_and_user_ids_are_stable_across_days() {
        let k = keys();
        let mut d = Decoded {
            site_id: "site".into(),
            name: "pageview".into(),
            ts_ms: MIDNIGHT,
            url: String::new(),
            hostname: String::new(),
            pathname: "/".into(),
            referrer: String::new(),
            utm: Default::default(),
            props: vec![],
            revenue: None,
            interactive: true,
            client_id: Some("123456.7654321".into()),
            user_id: None,
        };
        let (today, source) = k.visitor(&d, "1.2.3.4", "ua");
        assert_eq!(source, IdentitySource::ClientId);
        d.ts_ms += 10 * DAY;
        let (later, _) = k.visitor(&d, "5.6.7.8", "other ua");
        assert_eq!(today, later);
        d.user_id = Some("123456.7654321".into());
        let (user, source) = k.visitor(&d, "1.2.3.4", "ua");
        assert_eq!(source, IdentitySource::UserId);
        assert_ne!(user, today, "client and user ids hash apart");
        d.user_id = None;
        d.client_id = None;
        assert_eq!(k.visitor(&d, "1.2.3.4", "ua").1, IdentitySource::DailyHash);
    }
}
