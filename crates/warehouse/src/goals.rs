//! Goals and funnels of a site: their definitions (rows of `goals` and
//! `funnels`, versioned like every metadata table) and the funnel
//! computation. Goals in stats queries (`event:goal`, `conversion_rate`)
//! are planned in [`query`](crate::query); a funnel is its own statement:
//! sessions of the range, each scored with `windowFunnel` over the steps'
//! conditions, then the distinct visitors that reached each step. Event
//! times are whole seconds, so two steps within the same second have no
//! order and may not count as consecutive.

use serde::{Deserialize, Serialize};

use crate::metadata::{MetadataError, now_ms, now_s, random_id};
use crate::query::Goal;
use crate::{Warehouse, WarehouseError};

/// Most steps a funnel may have.
pub const MAX_FUNNEL_STEPS: usize = 8;
/// Most goals a site may have: each is a condition in every goal query.
pub const MAX_GOALS: usize = 100;
/// Most funnels a site may have.
pub const MAX_FUNNELS: usize = 50;
/// A funnel's steps must happen within one session; sessions end after
/// 30 minutes without events, so a day bounds any session in practice.
const FUNNEL_WINDOW_S: u32 = 86_400;

/// A row of `goals`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct GoalRow {
    pub site_id: String,
    pub goal_id: String,
    /// `event` or `page`.
    pub kind: String,
    pub event_name: String,
    pub page_path: String,
    pub display_name: String,
    pub created_at: u32,
    pub version: u64,
    pub deleted: u8,
}

impl GoalRow {
    pub fn goal(&self) -> Goal {
        Goal {
            name: self.display_name.clone(),
            event_name: self.event_name.clone(),
            page_path: self.page_path.clone(),
        }
    }
}

/// A row of `funnels`: steps are goal names, in order.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct FunnelRow {
    pub site_id: String,
    pub funnel_id: String,
    pub name: String,
    pub steps: Vec<String>,
    pub window_seconds: u32,
    pub created_at: u32,
    pub version: u64,
    pub deleted: u8,
}

const GOALS: &str = "SELECT site_id, goal_id, argMax(kind, version) AS k, \
     argMax(event_name, version) AS e, argMax(page_path, version) AS p, \
     argMax(display_name, version) AS n, argMax(created_at, version) AS c, \
     max(version) AS v, argMax(deleted, version) AS d \
     FROM goals WHERE site_id = ? GROUP BY site_id, goal_id ORDER BY c, goal_id";

const FUNNELS: &str = "SELECT site_id, funnel_id, argMax(name, version) AS n, \
     argMax(steps, version) AS s, argMax(window_seconds, version) AS w, \
     argMax(created_at, version) AS c, max(version) AS v, argMax(deleted, version) AS d \
     FROM funnels WHERE site_id = ? GROUP BY site_id, funnel_id ORDER BY c, funnel_id";

impl Warehouse {
    /// The live goals of `site_id`, oldest first.
    pub async fn goals(&self, site_id: &str) -> Result<Vec<GoalRow>, WarehouseError> {
        let rows = self
            .db
            .query(GOALS)
            .bind(site_id)
            .fetch_all::<GoalRow>()
            .await
            .map_err(WarehouseError::clickhouse("reading goals"))?;
        Ok(rows.into_iter().filter(|g| g.deleted == 0).collect())
    }

    /// Adds a goal: exactly one of an event name or a page path (`*`
    /// wildcards), under a display name unique within the site.
    pub async fn add_goal(&self, site_id: &str, goal: &Goal) -> Result<GoalRow, MetadataError> {
        let name = goal.name.trim();
        let invalid = |m: &str| Err(MetadataError::Invalid(m.to_owned()));
        if name.is_empty() || name.chars().count() > 120 {
            return invalid("a goal's display name must have 1 to 120 characters");
        }
        let (kind, event_name, page_path) = match (goal.event_name.trim(), goal.page_path.trim()) {
            (e, "") if !e.is_empty() => ("event", e, ""),
            ("", p) if p.starts_with('/') => ("page", "", p),
            ("", _) => {
                return invalid("a page goal's path starts with / (e.g. /signup or /blog/*)");
            }
            _ => return invalid("a goal has either event_name or page_path, not both"),
        };
        if event_name.chars().count() > 120 || page_path.chars().count() > 500 {
            return invalid("a goal's event name has at most 120 characters, its path at most 500");
        }
        let goals = self.goals(site_id).await?;
        if goals.iter().any(|g| g.display_name == name) {
            return Err(MetadataError::Invalid(format!(
                "the site already has a goal named {name:?}"
            )));
        }
        if goals.len() >= MAX_GOALS {
            return Err(MetadataError::Invalid(format!(
                "a site has at most {MAX_GOALS} goals; delete one first"
            )));
        }
        let row = GoalRow {
            site_id: site_id.to_owned(),
            goal_id: random_id("g_")?,
            kind: kind.into(),
            event_name: event_name.into(),
            page_path: page_path.into(),
            display_name: name.into(),
            created_at: now_s(),
            version: now_ms(),
            deleted: 0,
        };
        self.insert_rows("goals", std::slice::from_ref(&row))
            .await?;
        Ok(row)
    }

    /// Deletes the goal `goal_id` of `site_id`.
    pub async fn delete_goal(&self, site_id: &str, goal_id: &str) -> Result<(), MetadataError> {
        let Some(mut row) = self
            .goals(site_id)
            .await?
            .into_iter()
            .find(|g| g.goal_id == goal_id)
        else {
            return Err(MetadataError::NotFound {
                what: "goal",
                value: goal_id.to_owned(),
            });
        };
        row.deleted = 1;
        row.version = now_ms().max(row.version + 1);
        Ok(self
            .insert_rows("goals", std::slice::from_ref(&row))
            .await?)
    }

    /// The live funnels of `site_id`, oldest first.
    pub async fn funnels(&self, site_id: &str) -> Result<Vec<FunnelRow>, WarehouseError> {
        let rows = self
            .db
            .query(FUNNELS)
            .bind(site_id)
            .fetch_all::<FunnelRow>()
            .await
            .map_err(WarehouseError::clickhouse("reading funnels"))?;
        Ok(rows.into_iter().filter(|f| f.deleted == 0).collect())
    }

    /// Adds a funnel of 2 to [`MAX_FUNNEL_STEPS`] steps, each the name of
    /// one of the site's goals.
    pub async fn add_funnel(
        &self,
        site_id: &str,
        name: &str,
        steps: &[String],
    ) -> Result<FunnelRow, MetadataError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(MetadataError::Invalid("a funnel needs a name".into()));
        }
        if !(2..=MAX_FUNNEL_STEPS).contains(&steps.len()) {
            return Err(MetadataError::Invalid(format!(
                "a funnel has 2 to {MAX_FUNNEL_STEPS} steps, got {}",
                steps.len()
            )));
        }
        let goals = self.goals(site_id).await?;
        if let Some(unknown) = steps
            .iter()
            .find(|s| !goals.iter().any(|g| &g.display_name == *s))
        {
            return Err(MetadataError::NotFound {
                what: "goal",
                value: unknown.clone(),
            });
        }
        let funnels = self.funnels(site_id).await?;
        if funnels.iter().any(|f| f.name == name) {
            return Err(MetadataError::Invalid(format!(
                "the site already has a funnel named {name:?}"
            )));
        }
        if funnels.len() >= MAX_FUNNELS || name.chars().count() > 120 {
            return Err(MetadataError::Invalid(format!(
                "a site has at most {MAX_FUNNELS} funnels, each named in at most 120 characters"
            )));
        }
        let row = FunnelRow {
            site_id: site_id.to_owned(),
            funnel_id: random_id("f_")?,
            name: name.into(),
            steps: steps.to_vec(),
            window_seconds: FUNNEL_WINDOW_S,
            created_at: now_s(),
            version: now_ms(),
            deleted: 0,
        };
        self.insert_rows("funnels", std::slice::from_ref(&row))
            .await?;
        Ok(row)
    }

    /// For each step of a funnel, the distinct visitors with a session in
    /// `[from_s, to_s)` that completed the steps up to it in order
    /// (`windowFunnel` per session: each step after the previous one).
    pub async fn funnel_visitors(
        &self,
        site_id: &str,
        from_s: u32,
        to_s: u32,
        steps: &[Goal],
    ) -> Result<Vec<u64>, WarehouseError> {
        if steps.is_empty() || steps.len() > MAX_FUNNEL_STEPS {
            return Ok(vec![0; steps.len()]);
        }
        // Conditions and counts are built from constants; every value is
        // a bind, in placeholder order.
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        for goal in steps {
            if goal.event_name.is_empty() {
                conditions.push("(name = 'pageview' AND match(pathname, ?))");
                binds.push(goal.page_pattern());
            } else {
                conditions.push("name = ?");
                binds.push(goal.event_name.clone());
            }
        }
        let counts: Vec<String> = (1..=steps.len())
            .map(|k| format!("uniqIf(v, level >= {k})"))
            .collect();
        let sql = format!(
            "SELECT [{}] FROM (SELECT any(visitor_id) AS v, windowFunnel({FUNNEL_WINDOW_S})(ts, {}) \
             AS level FROM events WHERE site_id = ? AND ts >= toDateTime(?) AND ts < toDateTime(?) \
             GROUP BY session_id)",
            counts.join(", "),
            conditions.join(", ")
        );
        let mut query = self.db.query(&sql);
        for b in &binds {
            query = query.bind(b);
        }
        let counts = query
            .bind(site_id)
            .bind(from_s)
            .bind(to_s)
            .fetch_one::<Vec<u64>>()
            .await
            .map_err(WarehouseError::clickhouse(format!(
                "computing a funnel of site {site_id}"
            )))?;
        Ok(counts)
    }
}
