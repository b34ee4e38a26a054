//! The testkit's own contract: a private server answers, and databases are
//! separate and go away on drop.

#[test]
fn databases_are_private_and_dropped() {
    let a = hourglass_testkit::fresh_database();
    let b = hourglass_testkit::fresh_database();
    assert_ne!(a.name, b.name);
    a.query("CREATE TABLE t (x UInt8) ENGINE = Memory").unwrap();
    a.query("INSERT INTO t VALUES (1), (2)").unwrap();
    assert_eq!(a.query("SELECT count() FROM t").unwrap().trim(), "2");
    assert!(
        b.query("SELECT count() FROM t").is_err(),
        "b must not see a's table"
    );
    let url = a.url.clone();
    let name = a.name.clone();
    drop(a);
    let left = hourglass_testkit::http_post(
        &url,
        &format!("SELECT count() FROM system.databases WHERE name = '{name}'"),
    )
    .unwrap();
    assert_eq!(left.trim(), "0", "dropped database {name} still exists");
}
