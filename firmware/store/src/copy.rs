//! Copying an appliance's whole state from one database to another:
//! from the SQLite of a single box to the PostgreSQL its nodes will
//! share (and back, should a facility return to one box).
//!
//! Rows are copied table by table, parents first, with their ids, in one
//! transaction on the target: a copy that fails leaves the target as
//! empty as it was. The target must hold no appliance yet.

use crate::db::{ToValue, Value, params};
use crate::postgres_schema::TABLES;
use crate::{Database, Engine, Result, StoreError};

/// How many rows of each table a copy moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub tables: Vec<(&'static str, usize)>,
}

impl Database {
    /// The columns of `table`, in order.
    pub fn columns(&self, table: &str) -> Result<Vec<String>> {
        let conn = self.conn()?;
        let sql = match conn.engine() {
            Engine::Sqlite => "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
            Engine::Postgres => {
                "SELECT CAST(column_name AS TEXT) FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = ?1
                 ORDER BY ordinal_position"
            }
        };
        conn.query_map(sql, params![table], |r| r.get(0))
    }

    /// Copies every row of this database into `to`, which must be new
    /// (no users, no jobs, no shares).
    pub fn copy_to(&self, to: &Database) -> Result<Copied> {
        // Columns first: SQLite has one connection, held below.
        let mut plan = Vec::new();
        for &table in TABLES {
            let columns = self.columns(table)?;
            let theirs = to.columns(table)?;
            if columns != theirs {
                return Err(StoreError::Invalid(format!(
                    "table {table} differs: {columns:?} here, {theirs:?} there"
                )));
            }
            plan.push((table, columns));
        }
        let from = self.conn()?;
        let mut target = to.conn()?;
        for table in ["users", "shares", "jobs", "certificate"] {
            let n: i64 =
                target.query_row(&format!("SELECT count(*) FROM {table}"), params![], |r| {
                    r.get(0)
                })?;
            if n > 0 {
                return Err(StoreError::Invalid(format!(
                    "the target database already holds an appliance ({n} rows in {table}): \
                     copy into a new, empty database"
                )));
            }
        }
        let mut tables = Vec::new();
        let tx = target.transaction()?;
        for (table, columns) in plan {
            let list = columns.join(", ");
            let rows: Vec<Vec<Value>> = from.query_map(
                &format!("SELECT {list} FROM {table} ORDER BY 1"),
                params![],
                |r| Ok(r.values()),
            )?;
            let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
            let mut insert = tx.prepare(&format!(
                "INSERT INTO {table} ({list}) VALUES ({})",
                placeholders.join(", ")
            ))?;
            for row in &rows {
                let values: Vec<&dyn ToValue> = row.iter().map(|v| v as &dyn ToValue).collect();
                insert.execute(&values)?;
            }
            // The next id PostgreSQL hands out follows the copied ones.
            if tx.engine() == Engine::Postgres && columns.first().is_some_and(|c| c == "id") {
                tx.query_row(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                                       (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
                    ),
                    params![],
                    |_| Ok(()),
                )?;
            }
            tables.push((table, rows.len()));
        }
        tx.commit()?;
        Ok(Copied { tables })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobKind, JobStatus, NewJob, Role};

    #[test]
    fn every_table_is_copied_and_has_the_same_columns_on_both_engines() {
        let engines = crate::testing::databases();
        let sqlite = &engines[0];
        let conn = sqlite.conn().unwrap();
        let mut tables: Vec<String> = conn
            .query_map(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                params![],
                |r| r.get(0),
            )
            .unwrap();
        drop(conn);
        tables.sort();
        let mut listed: Vec<&str> = TABLES.to_vec();
        listed.sort();
        assert_eq!(tables, listed, "a table the copy does not know");
        for db in &engines[1..] {
            for table in TABLES {
                assert_eq!(
                    sqlite.columns(table).unwrap(),
                    db.columns(table).unwrap(),
                    "{table} on {}",
                    db.engine()
                );
            }
        }
    }

    #[test]
    fn a_copy_holds_the_same_state_and_goes_on_numbering_after_it() {
        let engines = crate::testing::databases();
        let from = &engines[0];
        let ann = from
            .create_user(
                "Ann@Example.com",
                "Ann",
                Role::Admin,
                Some("a long password"),
            )
            .unwrap();
        let root = tempfile::tempdir().unwrap();
        let share = from.add_root_share("projects", root.path()).unwrap();
        let job = from
            .create_job(&NewJob {
                kind: JobKind::Put,
                name: "reel 1".into(),
                owner: ann.id,
                share: Some(share.id),
                folder: String::new(),
                status: JobStatus::Queued,
                client_address: None,
                delivery: None,
                recipient: None,
                resume_key: None,
            })
            .unwrap();
        from.create_web_session(ann.id, 3600).unwrap();
        // Into a new database of each engine (SQLite to SQLite as well).
        let targets: Vec<Database> = std::iter::once(Database::open_in_memory().unwrap())
            .chain(crate::testing::databases().into_iter().skip(1))
            .collect();
        for to in &targets {
            let copied = from.copy_to(to).unwrap();
            assert!(copied.tables.contains(&("users", 1)), "{copied:?}");
            assert!(copied.tables.contains(&("web_sessions", 1)), "{copied:?}");
            let user = to.user_by_email("ann@example.com").unwrap().unwrap();
            assert_eq!((user.id, user.name.as_str()), (ann.id, "Ann"));
            assert!(
                to.verify_password("ann@example.com", "a long password")
                    .unwrap()
                    .is_some()
            );
            assert_eq!(to.job(job).unwrap().name, "reel 1");
            assert_eq!(to.share_by_name("projects").unwrap().unwrap().id, share.id);
            // New rows follow the copied ones.
            let bob = to
                .create_user("bob@example.com", "", Role::Employee, None)
                .unwrap();
            assert!(bob.id.0 > ann.id.0, "{}", to.engine());
            // A second copy into the same database is refused, and changes nothing.
            let again = from.copy_to(to).unwrap_err();
            assert!(again.to_string().contains("already holds"), "{again}");
            assert_eq!(to.list_users().unwrap().len(), 2);
        }
    }
}
