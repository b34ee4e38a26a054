//! The realtime view of a site: who is on it now. Read from `events` (the
//! hourly rollups are too coarse for "the last 30 minutes"), bounded by the
//! time index, so it stays cheap however old the site is.

use serde::Serialize;

use crate::{Warehouse, WarehouseError};

/// How far back "now" reaches.
pub const REALTIME_WINDOW_S: u32 = 30 * 60;
/// Pages listed, most visitors first.
const TOP_PAGES: u64 = 10;

/// A site's last [`REALTIME_WINDOW_S`] seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Realtime {
    pub window_minutes: u32,
    /// Distinct visitors with any event in the window.
    pub visitors: u64,
    pub pageviews: u64,
    /// Pages by distinct visitors who viewed them in the window.
    pub top_pages: Vec<PageVisitors>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, clickhouse::Row)]
pub struct PageVisitors {
    pub page: String,
    pub visitors: u64,
}

#[derive(Debug, serde::Deserialize, clickhouse::Row)]
struct Totals {
    visitors: u64,
    pageviews: u64,
}

impl Warehouse {
    /// Visitors and pageviews of `site_id` in the window ending at `now_s`
    /// (seconds since the epoch), and its top pages.
    pub async fn realtime(&self, site_id: &str, now_s: u32) -> Result<Realtime, WarehouseError> {
        let from = now_s.saturating_sub(REALTIME_WINDOW_S);
        let context = || format!("reading the realtime view of site {site_id}");
        let totals = self
            .db
            .query(
                "SELECT uniq(visitor_id), countIf(name = 'pageview') FROM events \
                 WHERE site_id = ? AND ts >= toDateTime(?) AND ts <= toDateTime(?)",
            )
            .bind(site_id)
            .bind(from)
            .bind(now_s)
            .fetch_one::<Totals>()
            .await
            .map_err(WarehouseError::clickhouse(context()))?;
        let top_pages = self
            .db
            .query(
                "SELECT pathname, uniq(visitor_id) AS v FROM events \
                 WHERE site_id = ? AND ts >= toDateTime(?) AND ts <= toDateTime(?) \
                 AND name = 'pageview' GROUP BY pathname ORDER BY v DESC, pathname LIMIT ?",
            )
            .bind(site_id)
            .bind(from)
            .bind(now_s)
            .bind(TOP_PAGES)
            .fetch_all::<PageVisitors>()
            .await
            .map_err(WarehouseError::clickhouse(context()))?;
        Ok(Realtime {
            window_minutes: REALTIME_WINDOW_S / 60,
            visitors: totals.visitors,
            pageviews: totals.pageviews,
            top_pages,
        })
    }
}
