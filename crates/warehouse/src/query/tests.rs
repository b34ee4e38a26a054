//! Validation errors and source choice, without a server.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::*;

/// 2026-03-10T15:30:00Z.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_773_156_600)
}

fn query(v: Value) -> Query {
    let mut base = json!({"site_id": "s1", "metrics": ["visitors"], "date_range": "7d"});
    for (k, x) in v.as_object().expect("an object") {
        base[k] = x.clone();
    }
    serde_json::from_value(base).expect("a well-formed query")
}

fn error_at(v: Value) -> (String, String) {
    match plan(&query(v), now()) {
        Err(QueryError::Invalid { path, message }) => (path, message),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

fn source(v: Value) -> Source {
    plan(&query(v), now()).expect("a valid query").source
}

#[test]
fn errors_name_the_json_path_and_what_is_allowed() {
    let cases: &[(Value, &str, &str)] = &[
        (json!({"site_id": ""}), "site_id", "must not be empty"),
        (json!({"metrics": []}), "metrics", "visitors, visits"),
        (
            json!({"metrics": ["visitors", "hits"]}),
            "metrics[1]",
            "allowed: visitors",
        ),
        (
            json!({"metrics": ["visits", "visits"]}),
            "metrics[1]",
            "twice",
        ),
        (
            json!({"metrics": ["bounce_rate"], "dimensions": ["time:day", "event:page"]}),
            "dimensions[1]",
            "event:page is per event; a query with bounce_rate, visit_duration or entry/exit \
             pages groups sessions and allows only: time:*, visit:entry_page",
        ),
        (
            json!({"dimensions": ["event:page", "page"]}),
            "dimensions[1]",
            "event:props:<key>",
        ),
        (
            json!({"dimensions": ["event:props:"]}),
            "dimensions[0]",
            "unknown dimension",
        ),
        (
            json!({"dimensions": ["time:day", "time:hour"]}),
            "dimensions[1]",
            "one time dimension",
        ),
        (
            json!({"dimensions": ["event:props:plan"], "filters": [["is", "visit:source", ["x"]], ["not", ["is", "visit:exit_page", ["/"]]]]}),
            "dimensions[0]",
            "event:props:plan is per event",
        ),
        (
            json!({"filters": [["is", "visit:entry_page", ["/"]], ["or", [["is", "visit:os", ["iOS"]], ["is", "visit:city", ["Paris"]]]]]}),
            "filters[1][1][1][1]",
            "visit:city is per event",
        ),
        (json!({"filters": ["x"]}), "filters[0]", "must be a list"),
        (
            json!({"filters": [["is", "visit:country", ["DE"]], ["like", "x", []]]}),
            "filters[1][0]",
            "allowed: is, is_not, contains, matches, and, or, not",
        ),
        (
            json!({"filters": [["is", "visit:country", ["DE"]], ["is", "country", ["DE"]]]}),
            "filters[1][1]",
            "allowed: any dimension except time",
        ),
        (
            json!({"filters": [["is", "time:day", ["2026-03-01"]]]}),
            "filters[0][1]",
            "use date_range",
        ),
        (
            json!({"filters": [["is", "visit:country", []]]}),
            "filters[0][2]",
            "non-empty list of strings",
        ),
        (
            json!({"filters": [["is", "visit:country", ["DE", 3]]]}),
            "filters[0][2][1]",
            "must be a string",
        ),
        (
            json!({"filters": [["is", "visit:country"]]}),
            "filters[0]",
            "3 elements",
        ),
        (
            json!({"filters": [["or", [["is", "visit:os", ["iOS"]], ["not", ["is", "visit:os"]]]]]}),
            "filters[0][1][1][1]",
            "3 elements",
        ),
        (
            json!({"filters": [["and", []]]}),
            "filters[0][1]",
            "non-empty list of filters",
        ),
        (
            json!({"order_by": [["pageviews", "desc"]]}),
            "order_by[0][0]",
            "visitors",
        ),
        (
            json!({"order_by": [["visitors", "up"]]}),
            "order_by[0][1]",
            "\"asc\" or \"desc\"",
        ),
        (json!({"order_by": ["visitors"]}), "order_by[0]", "asc"),
        (
            json!({"pagination": {"limit": 0}}),
            "pagination.limit",
            "between 1 and 10000",
        ),
        (json!({"timezone": "Mars/Olympus"}), "timezone", "IANA"),
        (json!({"date_range": "yesterday"}), "date_range", "\"7d\""),
        (
            json!({"date_range": ["2026-03-01", "soon"]}),
            "date_range[1]",
            "ISO date",
        ),
    ];
    for (v, path, needle) in cases {
        let (p, message) = error_at(v.clone());
        assert_eq!(&p, path, "{v}: {message}");
        assert!(
            message.contains(needle),
            "{v}: {p}: {message:?} lacks {needle:?}"
        );
    }
}

#[test]
fn unknown_fields_are_rejected_by_serde() {
    let e = serde_json::from_value::<Query>(
        json!({"site_id": "s", "metrics": ["visitors"], "date_range": "day", "limit": 3}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown field `limit`"), "{e}");
}

#[test]
fn the_cheapest_exact_source_is_chosen() {
    let cases: &[(Value, Source)] = &[
        (json!({}), Source::SiteDaily),
        (
            json!({"metrics": ["visitors", "visits", "pageviews", "events", "views_per_visit"], "dimensions": ["time:day"]}),
            Source::SiteDaily,
        ),
        (
            json!({"dimensions": ["time:month"], "date_range": "all"}),
            Source::SiteDaily,
        ),
        // UTC days are not local days, weeks or hours elsewhere.
        (
            json!({"dimensions": ["time:week"], "timezone": "America/New_York"}),
            Source::Events,
        ),
        (json!({"dimensions": ["time:hour"]}), Source::Events),
        (
            json!({"dimensions": ["event:page"]}),
            Source::DimensionsDaily,
        ),
        (
            json!({"dimensions": ["time:day"], "filters": [["contains", "event:page", ["/blog"]]]}),
            Source::DimensionsDaily,
        ),
        (
            json!({"dimensions": ["visit:source"], "filters": [["not", ["is", "visit:source", ["Google"]]]]}),
            Source::DimensionsDaily,
        ),
        (
            json!({"dimensions": ["visit:utm_campaign", "time:month"]}),
            Source::DimensionsDaily,
        ),
        // Two attributes: no rollup has both.
        (
            json!({"dimensions": ["visit:source", "visit:device"]}),
            Source::Events,
        ),
        (
            json!({"dimensions": ["event:page"], "filters": [["is", "visit:country", ["US"]]]}),
            Source::Events,
        ),
        (json!({"dimensions": ["event:name"]}), Source::Events),
        (
            json!({"filters": [["is", "event:name", ["signup"]]]}),
            Source::Events,
        ),
        (json!({"dimensions": ["visit:city"]}), Source::Events),
        (json!({"dimensions": ["visit:referrer"]}), Source::Events),
        (json!({"dimensions": ["event:props:plan"]}), Source::Events),
        (json!({"timezone": "Asia/Kolkata"}), Source::Events),
        (
            json!({"date_range": ["2026-03-01T10:00:00", "2026-03-01T12:59:59"]}),
            Source::Events,
        ),
        (
            json!({"date_range": ["2026-03-01T00:00:00", "2026-03-02T23:59:59"]}),
            Source::SiteDaily,
        ),
        // Session queries: `sessions` over whole UTC days, else events.
        (
            json!({"metrics": ["bounce_rate", "visit_duration", "visitors"]}),
            Source::Sessions,
        ),
        (
            json!({"dimensions": ["visit:entry_page", "visit:channel", "time:hour"], "timezone": "Asia/Kolkata", "date_range": ["2026-03-01T05:30:00", "2026-03-03T05:29:59"]}),
            Source::Sessions,
        ),
        (
            json!({"filters": [["matches", "visit:exit_page", ["^/docs"]]], "date_range": "all"}),
            Source::Sessions,
        ),
        (
            json!({"metrics": ["visit_duration"], "timezone": "Europe/Berlin"}),
            Source::Events,
        ),
        (
            json!({"metrics": ["bounce_rate"], "date_range": ["2026-03-01T10:00:00", "2026-03-01T12:59:59"]}),
            Source::Events,
        ),
    ];
    for (v, want) in cases {
        assert_eq!(source(v.clone()), *want, "{v}");
    }
}

#[test]
fn forcing_a_source_that_cannot_answer_says_why() {
    let q = query(json!({"dimensions": ["event:name"]}));
    for s in [Source::SiteDaily, Source::DimensionsDaily, Source::Sessions] {
        assert!(
            matches!(
                plan_from(&q, s, now()),
                Err(QueryError::SourceUnavailable { .. })
            ),
            "{s}"
        );
    }
    let e = plan_from(
        &query(json!({"timezone": "Asia/Kolkata"})),
        Source::SiteDaily,
        now(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not whole UTC days"), "{e}");
    let e = plan_from(
        &query(json!({"dimensions": ["time:hour"]})),
        Source::SiteDaily,
        now(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not time:hour in UTC"), "{e}");
    let e = plan_from(
        &query(json!({"dimensions": ["visit:os", "visit:browser"]})),
        Source::DimensionsDaily,
        now(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("exactly one of its dimensions"),
        "{e}"
    );
    // Every valid query can be planned on events and, when eligible, on
    // any rollup that has its columns.
    assert_eq!(
        plan_from(&q, Source::Events, now()).unwrap().source,
        Source::Events
    );
    let q = query(json!({"dimensions": ["time:day"]}));
    for s in [Source::SiteDaily, Source::Events] {
        assert_eq!(plan_from(&q, s, now()).unwrap().source, s);
    }
    // A time-only query has no dimension for dimensions_daily to pick.
    assert!(plan_from(&q, Source::DimensionsDaily, now()).is_err());
    // Session queries: only sessions and events.
    let q = query(json!({"metrics": ["bounce_rate"]}));
    for s in [Source::SiteDaily, Source::DimensionsDaily] {
        assert!(plan_from(&q, s, now()).is_err(), "{s}");
    }
    assert!(plan_from(&query(json!({})), Source::Sessions, now()).is_err());
}

#[test]
fn values_are_bound_never_formatted() {
    let evil = "x') OR 1=1 --?";
    let q = query(json!({
        "site_id": evil,
        "dimensions": ["event:props:k'ey", "time:hour"],
        "filters": [["or", [["matches", "event:page", [evil]], ["is_not", "visit:os", [evil, "b"]]]]],
        "timezone": "Europe/Berlin",
        "pagination": {"limit": 5, "offset": 10},
    }));
    let p = plan(&q, now()).unwrap();
    assert!(
        !p.sql.contains("OR 1=1") && !p.sql.contains("k'ey") && !p.sql.contains("Berlin"),
        "{}",
        p.sql
    );
    assert_eq!(p.sql.matches('?').count(), p.binds.len());
    assert_eq!(
        p.sql,
        "SELECT props.value[indexOf(props.key, ?)] AS d0, toUInt32(toStartOfHour(ts, ?)) AS d1, \
         uniqHLL12(visitor_id) AS m0 FROM events WHERE site_id = ? AND ts >= toDateTime(?) AND ts < toDateTime(?) \
         AND ((match(pathname, ?)) OR os NOT IN (?, ?)) GROUP BY d0, d1 \
         ORDER BY d1 ASC, d0 ASC LIMIT ?, ?"
    );
    let s = |x: &str| Bind::Str(x.into());
    assert_eq!(
        p.binds,
        vec![
            s("k'ey"),
            s("Europe/Berlin"),
            s(evil),
            Bind::U32(1_772_578_800),
            Bind::U32(1_773_183_600),
            s(evil),
            s(evil),
            s("b"),
            Bind::U64(10),
            Bind::U64(5),
        ]
    );
}

#[test]
fn rollup_sql_merges_states_and_orders_deterministically() {
    let q = query(json!({
        "metrics": ["pageviews", "views_per_visit"],
        "dimensions": ["visit:channel", "time:day"],
        "filters": [["contains", "visit:channel", ["Search", "Social"]]],
        "order_by": [["visit:channel", "desc"]],
    }));
    let p = plan(&q, now()).unwrap();
    assert_eq!(p.source, Source::DimensionsDaily);
    assert_eq!(
        p.sql,
        "SELECT value AS d0, toDate(day, ?) AS d1, countIfMerge(pageviews) AS m0, \
         intDiv(countIfMerge(pageviews) * 200 + uniqHLL12Merge(visits), greatest(uniqHLL12Merge(visits), 1) * 2) / 100 AS m1 \
         FROM dimensions_daily WHERE site_id = ? AND dimension = ? AND day >= toDateTime(?) AND day < toDateTime(?) \
         AND (position(value, ?) > 0 OR position(value, ?) > 0) GROUP BY d0, d1 \
         ORDER BY d0 DESC, d1 ASC LIMIT ?, ?"
    );
    assert_eq!(p.binds[1], Bind::Str("s1".into()));
    assert_eq!(p.binds[2], Bind::Str("channel".into()));
    assert_eq!(p.columns.len(), 4);
    assert_eq!(p.columns[3], Column::Metric(Metric::ViewsPerVisit));
    assert_eq!(p.dimension_count, 2);
}

#[test]
fn rendered_sql_inlines_escaped_values() {
    let q = query(json!({"site_id": "it's", "filters": [["is", "event:page", ["/a?b"]]]}));
    let p = plan(&q, now()).unwrap();
    let sql = p.rendered_sql();
    assert!(sql.contains("site_id = 'it\\'s'"), "{sql}");
    assert!(sql.contains("value IN ('/a?b')"), "{sql}");
    assert!(sql.ends_with("LIMIT 0, 10000"), "{sql}");
}

#[test]
fn session_queries_group_sessions_first() {
    let q = query(json!({
        "metrics": ["visits", "bounce_rate", "visit_duration"],
        "dimensions": ["visit:entry_page"],
        "filters": [["is", "visit:country", ["DE"]]],
        "date_range": ["2026-03-01", "2026-03-02"],
    }));
    let p = plan(&q, now()).unwrap();
    assert_eq!(p.source, Source::Sessions);
    assert!(
        p.sql.starts_with(
            "SELECT s_entry AS d0, count() AS m0, \
             intDiv(countIf(s_inter <= 1) * 200 + count(), greatest(count(), 1) * 2) AS m1, \
             intDiv(sum(toUInt64(s_end) - toUInt64(s_start)) * 2 + count(), greatest(count(), 1) * 2) AS m2 \
             FROM (SELECT anyMerge(visitor) AS s_visitor, "
        ),
        "{}",
        p.sql
    );
    assert!(
        p.sql.ends_with(
            "FROM sessions WHERE site_id = ? AND day >= toDate(?) AND day < toDate(?) \
             GROUP BY session_id) WHERE s_country IN (?) GROUP BY d0 ORDER BY m0 DESC, d0 ASC LIMIT ?, ?"
        ),
        "{}",
        p.sql
    );
    // 2026-03-01 is day 20513; the end day is exclusive.
    assert_eq!(p.binds[1..3], [Bind::U16(20513), Bind::U16(20515)]);
    assert_eq!(
        p.columns[1..],
        [
            Column::Metric(Metric::Visits),
            Column::Metric(Metric::BounceRate),
            Column::Metric(Metric::VisitDuration)
        ]
    );

    let e = plan_from(&q, Source::Events, now()).unwrap();
    assert!(
        e.sql.contains("argMin(country, ts) AS s_country"),
        "{}",
        e.sql
    );
    assert!(
        e.sql.contains("FROM events WHERE site_id = ? AND ts >= toDateTime(?) AND ts < toDateTime(?) GROUP BY session_id)"),
        "{}",
        e.sql
    );
}

#[test]
fn goals_need_events_a_top_level_filter_and_no_sessions() {
    let cases: &[(Value, &str, &str)] = &[
        (
            json!({"metrics": ["visitors", "conversion_rate"]}),
            "metrics[1]",
            "conversion_rate needs the event:goal dimension or a filter on event:goal",
        ),
        (
            json!({"filters": [["not", ["is", "event:goal", ["Signup"]]]]}),
            "filters[0][1][1]",
            "only at the top level",
        ),
        (
            json!({"metrics": ["bounce_rate"], "dimensions": ["event:goal"]}),
            "dimensions[0]",
            "event:goal is per event",
        ),
    ];
    for (v, path, message) in cases {
        let (p, m) = error_at(v.clone());
        assert_eq!(&p, path, "{v}: {m}");
        assert!(m.contains(message), "{v}: {m}");
    }
    let mut q = query(json!({
        "metrics": ["visitors", "events", "conversion_rate"],
        "dimensions": ["event:goal"],
        "filters": [["is", "visit:country", ["DE"]]],
    }));
    q.goals = vec![
        Goal {
            name: "Signup".into(),
            event_name: "signup".into(),
            page_path: String::new(),
        },
        Goal {
            name: "Blog".into(),
            event_name: String::new(),
            page_path: "/blog/*".into(),
        },
    ];
    let p = plan(&q, now()).unwrap();
    assert_eq!(p.source, Source::Events);
    assert_eq!(p.sql.matches('?').count(), p.binds.len());
    assert!(
        p.sql.starts_with(
            "SELECT arrayJoin(arrayFilter(g -> g != '', [if(name = ?, ?, ''), \
             if((name = 'pageview' AND match(pathname, ?)), ?, '')])) AS d0"
        ),
        "{}",
        p.sql
    );
    assert!(p.binds.contains(&Bind::Str("^/blog/.*$".into())));
    // The rate's denominator keeps the country filter.
    assert_eq!(p.sql.matches("country IN (?)").count(), 3, "{}", p.sql);
    let page = Goal {
        name: "x".into(),
        event_name: String::new(),
        page_path: "/a.b/(c)*".into(),
    };
    assert_eq!(page.page_pattern(), r"^/a\.b/\(c\).*$");
}
