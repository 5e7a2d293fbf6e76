//! The appliance's nodes: each ferryd that serves this database writes its
//! heartbeat here, and an admin's drain waits here for the node to read it.
//! What a record means (up, draining, silent) is the domain's rule,
//! [`ferry_domain::node::health`].
//!
//! Tasks that must run on one node at a time (the mailer, the janitor,
//! the watch folders) are leased here: a node holds a task until
//! [`SILENT_AFTER`] after its last heartbeat, and each heartbeat extends
//! what it holds. A node that dies leaves its tasks to be taken by
//! another once that time has passed. Taking and extending are each one
//! statement, so two nodes asking at once cannot both win.

use crate::db::{Optional, params};
use ferry_domain::node::SILENT_AFTER;

use crate::{Database, Result, StoreError};

/// One node's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// Where its clients reach it (its public address, or its listen
    /// address when it has none).
    pub address: String,
    /// The ferryd version it runs.
    pub version: String,
    /// Unix seconds.
    pub started_at: i64,
    /// Its last heartbeat, Unix seconds.
    pub seen_at: i64,
    /// Data sessions it carried at its last heartbeat.
    pub sessions: i64,
    pub draining: bool,
}

/// What a node writes at each heartbeat.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub name: String,
    pub address: String,
    pub version: String,
    pub started_at: i64,
    pub sessions: i64,
}

impl Database {
    /// Records a node's heartbeat at `at`, adding the node the first time,
    /// and extends the tasks it holds. A node that starts again keeps its
    /// drain: an admin who drained it for maintenance decides when it
    /// takes sessions again.
    pub fn node_heartbeat(&self, beat: &Heartbeat, at: i64) -> Result<Node> {
        let conn = self.conn()?;
        conn.execute(
            "UPDATE singletons SET expires_at = ?2 WHERE node = ?1",
            params![beat.name, at + SILENT_AFTER],
        )?;
        conn.execute(
            "INSERT INTO nodes (name, address, version, started_at, seen_at, sessions)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (name) DO UPDATE SET address = ?2, version = ?3, started_at = ?4,
                 seen_at = ?5, sessions = ?6",
            params![
                beat.name,
                beat.address,
                beat.version,
                beat.started_at,
                at,
                beat.sessions
            ],
        )?;
        drop(conn);
        self.node(&beat.name)?
            .ok_or_else(|| StoreError::NotFound(format!("node {}", beat.name)))
    }

    /// The node called `name`, if it ever ran.
    pub fn node(&self, name: &str) -> Result<Option<Node>> {
        self.conn()?
            .query_row(
                &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE name = ?1"),
                params![name],
                node_from_row,
            )
            .optional()
    }

    /// Every node that ever ran, by name.
    pub fn nodes(&self) -> Result<Vec<Node>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY name"))?;
        let rows = stmt.query_map(params![], node_from_row)?;
        Ok(rows)
    }

    /// Drains a node (no new sessions) or lets it take sessions again.
    pub fn set_node_draining(&self, name: &str, draining: bool) -> Result<()> {
        let changed = self.conn()?.execute(
            "UPDATE nodes SET draining = ?2 WHERE name = ?1",
            params![name, draining],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("node {name}")));
        }
        Ok(())
    }

    /// Takes `task` for `node` at `at`, or keeps it: true when `node`
    /// holds it now. It is free when no one held it, or its holder's hold
    /// has run out ([`SILENT_AFTER`] past its last heartbeat).
    pub fn hold_singleton(&self, task: &str, node: &str, at: i64) -> Result<bool> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO singletons (task, node, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (task) DO UPDATE SET node = ?2, expires_at = ?3
                 WHERE singletons.node = ?2 OR singletons.expires_at <= ?4",
            params![task, node, at + SILENT_AFTER, at],
        )?;
        let holder: String = conn.query_row(
            "SELECT node FROM singletons WHERE task = ?1",
            params![task],
            |r| r.get(0),
        )?;
        Ok(holder == node)
    }

    /// Each task and the node that holds it (or last held it), by task.
    pub fn singletons(&self) -> Result<Vec<(String, String)>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT task, node FROM singletons ORDER BY task")?;
        let rows = stmt.query_map(params![], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows)
    }

    /// Forgets a node's record (one taken out of the appliance for good).
    pub fn forget_node(&self, name: &str) -> Result<()> {
        let changed = self
            .conn()?
            .execute("DELETE FROM nodes WHERE name = ?1", params![name])?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("node {name}")));
        }
        Ok(())
    }
}

const NODE_COLUMNS: &str = "name, address, version, started_at, seen_at, sessions, draining";

fn node_from_row(r: &crate::db::Row) -> Result<Node> {
    Ok(Node {
        name: r.get(0)?,
        address: r.get(1)?,
        version: r.get(2)?,
        started_at: r.get(3)?,
        seen_at: r.get(4)?,
        sessions: r.get(5)?,
        draining: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(name: &str, sessions: i64) -> Heartbeat {
        Heartbeat {
            name: name.into(),
            address: format!("{name}.example:8443"),
            version: "0.1.0".into(),
            started_at: 100,
            sessions,
        }
    }

    #[test]
    fn a_node_beats_is_drained_keeps_its_drain_across_a_restart_and_is_forgotten() {
        for db in crate::testing::databases() {
            eprintln!("on {}", db.engine());
            let a = db.node_heartbeat(&beat("a", 0), 110).unwrap();
            assert_eq!((a.seen_at, a.sessions, a.draining), (110, 0, false));
            db.node_heartbeat(&beat("b", 2), 111).unwrap();
            let a = db.node_heartbeat(&beat("a", 3), 120).unwrap();
            assert_eq!((a.seen_at, a.sessions), (120, 3));

            db.set_node_draining("a", true).unwrap();
            let restarted = Heartbeat {
                started_at: 130,
                ..beat("a", 0)
            };
            let a = db.node_heartbeat(&restarted, 131).unwrap();
            assert!(a.draining, "a drain outlives a restart");
            assert_eq!(a.started_at, 130);

            let names: Vec<String> = db.nodes().unwrap().into_iter().map(|n| n.name).collect();
            assert_eq!(names, ["a", "b"]);
            assert!(matches!(
                db.set_node_draining("c", true),
                Err(StoreError::NotFound(_))
            ));
            db.forget_node("b").unwrap();
            assert!(db.node("b").unwrap().is_none());
            assert!(matches!(db.forget_node("b"), Err(StoreError::NotFound(_))));
        }
    }

    #[test]
    fn a_task_runs_on_one_node_until_its_heartbeats_stop() {
        for db in crate::testing::databases() {
            eprintln!("on {}", db.engine());
            assert!(db.hold_singleton("mailer", "a", 100).unwrap());
            assert!(
                !db.hold_singleton("mailer", "b", 101).unwrap(),
                "a holds it"
            );
            assert!(
                db.hold_singleton("janitor", "b", 101).unwrap(),
                "tasks apart"
            );
            // a's heartbeats keep it past the first hold's end.
            db.node_heartbeat(&beat("a", 0), 120).unwrap();
            assert!(
                !db.hold_singleton("mailer", "b", 100 + SILENT_AFTER)
                    .unwrap()
            );
            assert!(db.hold_singleton("mailer", "a", 125).unwrap());
            // a falls silent: once its hold runs out, b takes the task.
            assert!(
                !db.hold_singleton("mailer", "b", 125 + SILENT_AFTER - 1)
                    .unwrap()
            );
            assert!(
                db.hold_singleton("mailer", "b", 125 + SILENT_AFTER)
                    .unwrap()
            );
            assert!(
                !db.hold_singleton("mailer", "a", 125 + SILENT_AFTER + 1)
                    .unwrap()
            );
            assert_eq!(
                db.singletons().unwrap(),
                [
                    ("janitor".to_owned(), "b".to_owned()),
                    ("mailer".to_owned(), "b".to_owned())
                ]
            );
        }
    }
}
