//! Shared setup of the integration tests: a runtime and a [`Warehouse`] on
//! a fresh test database (ClickHouse 18.16 from `hourglass-testkit`, or the
//! server `CLICKHOUSE_URL` names).
#![allow(dead_code)] // each test file uses a different part

use hourglass_testkit::TestDb;
use hourglass_warehouse::{Warehouse, WarehouseConfig};

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
}

pub fn warehouse(db: &TestDb) -> Warehouse {
    Warehouse::new(&WarehouseConfig {
        url: db.url.clone(),
        database: db.name.clone(),
        user: None,
        password: None,
    })
    .expect("testkit database names are plain identifiers")
}

/// A fresh database with every migration applied.
pub fn migrated(rt: &tokio::runtime::Runtime) -> (TestDb, Warehouse) {
    let db = hourglass_testkit::fresh_database();
    let wh = warehouse(&db);
    rt.block_on(warehouse_schema::migrate(&wh))
        .expect("migrate a fresh database");
    (db, wh)
}
