//! Schema drift: what differs between the schema the migrations produce and
//! what a server has. Pure: comparing two snapshots needs no server.

use std::collections::BTreeMap;
use std::fmt;

use hourglass_warehouse::{ColumnInfo, TableInfo};

/// Tables and columns of one database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaSnapshot {
    /// By table name.
    pub tables: BTreeMap<String, TableInfo>,
    /// `(table, column)` → type.
    pub columns: BTreeMap<(String, String), String>,
}

impl SchemaSnapshot {
    pub fn new(tables: Vec<TableInfo>, columns: Vec<ColumnInfo>) -> Self {
        SchemaSnapshot {
            tables: tables.into_iter().map(|t| (t.name.clone(), t)).collect(),
            columns: columns
                .into_iter()
                .map(|c| ((c.table, c.name), c.column_type))
                .collect(),
        }
    }
}

/// One difference, phrased from the server's point of view: "missing"
/// means the migrations create it and the server lacks it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Drift {
    MissingTable {
        name: String,
        engine: String,
    },
    ExtraTable {
        name: String,
        engine: String,
    },
    /// Same name, different engine, partition key, sorting key or settings.
    EngineMismatch {
        table: String,
        expected: String,
        actual: String,
    },
    MissingColumn {
        table: String,
        column: String,
        column_type: String,
    },
    ExtraColumn {
        table: String,
        column: String,
        column_type: String,
    },
    TypeMismatch {
        table: String,
        column: String,
        expected: String,
        actual: String,
    },
}

fn kind(engine: &str) -> &'static str {
    if engine.ends_with("View") {
        "view"
    } else {
        "table"
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::MissingTable { name, engine } => {
                write!(f, "missing {} {name} ({engine})", kind(engine))
            }
            Drift::ExtraTable { name, engine } => {
                write!(f, "extra {} {name} ({engine})", kind(engine))
            }
            Drift::EngineMismatch {
                table,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "table {table}: engine is `{actual}`, expected `{expected}`"
                )
            }
            Drift::MissingColumn {
                table,
                column,
                column_type,
            } => {
                write!(f, "missing column {table}.{column} ({column_type})")
            }
            Drift::ExtraColumn {
                table,
                column,
                column_type,
            } => {
                write!(f, "extra column {table}.{column} ({column_type})")
            }
            Drift::TypeMismatch {
                table,
                column,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "column {table}.{column} has type {actual}, expected {expected}"
                )
            }
        }
    }
}

/// Every difference between `expected` (what the migrations make) and
/// `actual` (the server), sorted. Columns of a table that is missing or
/// extra as a whole are not listed one by one.
pub fn diff(expected: &SchemaSnapshot, actual: &SchemaSnapshot) -> Vec<Drift> {
    let mut out = Vec::new();
    for (name, want) in &expected.tables {
        match actual.tables.get(name) {
            None => out.push(Drift::MissingTable {
                name: name.clone(),
                engine: want.engine.clone(),
            }),
            Some(have)
                if (have.engine.as_str(), have.engine_full.as_str())
                    != (want.engine.as_str(), want.engine_full.as_str()) =>
            {
                let show = |t: &TableInfo| {
                    if t.engine_full.is_empty() {
                        t.engine.clone()
                    } else {
                        t.engine_full.clone()
                    }
                };
                out.push(Drift::EngineMismatch {
                    table: name.clone(),
                    expected: show(want),
                    actual: show(have),
                });
            }
            Some(_) => {}
        }
    }
    for (name, have) in &actual.tables {
        if !expected.tables.contains_key(name) {
            out.push(Drift::ExtraTable {
                name: name.clone(),
                engine: have.engine.clone(),
            });
        }
    }
    let in_both =
        |table: &str| expected.tables.contains_key(table) && actual.tables.contains_key(table);
    for ((table, column), want) in &expected.columns {
        if !in_both(table) {
            continue;
        }
        match actual.columns.get(&(table.clone(), column.clone())) {
            None => out.push(Drift::MissingColumn {
                table: table.clone(),
                column: column.clone(),
                column_type: want.clone(),
            }),
            Some(have) if have != want => out.push(Drift::TypeMismatch {
                table: table.clone(),
                column: column.clone(),
                expected: want.clone(),
                actual: have.clone(),
            }),
            Some(_) => {}
        }
    }
    for ((table, column), have) in &actual.columns {
        if in_both(table)
            && !expected
                .columns
                .contains_key(&(table.clone(), column.clone()))
        {
            out.push(Drift::ExtraColumn {
                table: table.clone(),
                column: column.clone(),
                column_type: have.clone(),
            });
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, engine: &str, full: &str) -> TableInfo {
        TableInfo {
            name: name.into(),
            engine: engine.into(),
            engine_full: full.into(),
        }
    }
    fn column(table: &str, name: &str, ty: &str) -> ColumnInfo {
        ColumnInfo {
            table: table.into(),
            name: name.into(),
            column_type: ty.into(),
        }
    }

    fn expected() -> SchemaSnapshot {
        SchemaSnapshot::new(
            vec![
                table("events", "MergeTree", "MergeTree() ORDER BY ts"),
                table("pages_hourly_mv", "MaterializedView", ""),
            ],
            vec![
                column("events", "ts", "DateTime"),
                column("events", "city", "String"),
                column("pages_hourly_mv", "hour", "DateTime"),
            ],
        )
    }

    #[test]
    fn identical_is_clean() {
        assert!(diff(&expected(), &expected()).is_empty());
    }

    #[test]
    fn reports_every_kind_of_difference() {
        let actual = SchemaSnapshot::new(
            vec![
                table("events", "MergeTree", "MergeTree() ORDER BY (ts, x)"),
                table("stray", "Log", "Log"),
            ],
            vec![
                column("events", "ts", "UInt32"),
                column("events", "extra", "UInt8"),
                column("stray", "a", "UInt8"),
            ],
        );
        let found: Vec<String> = diff(&expected(), &actual)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "missing view pages_hourly_mv (MaterializedView)",
                "extra table stray (Log)",
                "table events: engine is `MergeTree() ORDER BY (ts, x)`, expected `MergeTree() ORDER BY ts`",
                "missing column events.city (String)",
                "extra column events.extra (UInt8)",
                "column events.ts has type UInt32, expected DateTime",
            ]
        );
    }
}
