//! Watch folders and what each has delivered.
//!
//! A watch is keyed by its folder (`share=NAME/dir`): one watch per folder.
//! Those from `[[watch]]` in ferryd.toml have origin `config` and follow
//! the file at each start; those an admin made have origin `admin`. What a
//! watch has seen is remembered by each entry's identity on disk (its
//! inode and birth time), with the delivery made of it, or none for what
//! lay there before the watch began (its baseline). A watch whose mode
//! changes takes its baseline again.

use crate::db::{Optional, Row, params};
use ferry_domain::watch::Mode;
pub use ferry_domain::watch::Origin as WatchOrigin;
use serde::Serialize;

use crate::{Database, DeliveryId, Result, StoreError, now};

/// A watch's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct WatchId(pub i64);

impl std::fmt::Display for WatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A watch as stored: its fields as text, which the domain's validator
/// checked before they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWatch {
    pub folder: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub priorities: Vec<String>,
    pub settle_secs: u64,
    pub mode: Mode,
    pub name: String,
    pub origin: WatchOrigin,
}

#[derive(Debug, Clone)]
pub struct Watch {
    pub id: WatchId,
    pub folder: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub priorities: Vec<String>,
    pub settle_secs: u64,
    pub mode: Mode,
    pub name: String,
    pub origin: WatchOrigin,
    /// What lay in its folder when it began has been remembered.
    pub baselined: bool,
    pub created_at: i64,
}

/// The entry a delivery is made of (see `DeliveryPlan::watched`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub watch: WatchId,
    pub identity: String,
    /// Its name inside the watched folder when it was delivered.
    pub path: String,
}

/// An entry a watch remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEntry {
    pub identity: String,
    pub path: String,
    /// `None`: it was there before the watch began.
    pub delivery: Option<DeliveryId>,
}

const COLUMNS: &str = "id, folder, sender, recipients, priorities, settle_secs, mode, name, origin,
    baselined, created_at";

fn lines(v: String) -> Vec<String> {
    v.lines().map(str::to_owned).collect()
}

/// A stored word that is not one of its column's values.
fn unknown(column: usize, what: &str, value: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        format!("{value:?} is not a watch {what}").into(),
    )
}

fn from_row(r: &Row) -> Result<Watch> {
    let origin: String = r.get(8)?;
    let origin = origin.parse().map_err(|_| unknown(8, "origin", origin))?;
    let mode: String = r.get(6)?;
    let mode = mode.parse().map_err(|_| unknown(6, "mode", mode))?;
    Ok(Watch {
        id: WatchId(r.get(0)?),
        folder: r.get(1)?,
        sender: r.get(2)?,
        recipients: lines(r.get(3)?),
        priorities: lines(r.get(4)?),
        settle_secs: r.get::<_, i64>(5)?.max(0) as u64,
        mode,
        name: r.get(7)?,
        origin,
        baselined: r.get(9)?,
        created_at: r.get(10)?,
    })
}

impl Database {
    pub fn watches(&self) -> Result<Vec<Watch>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM watches ORDER BY id"))?;
        let rows = stmt.query_map(params![], from_row)?;
        Ok(rows)
    }

    pub fn watch(&self, id: WatchId) -> Result<Watch> {
        self.conn()?
            .query_row(
                &format!("SELECT {COLUMNS} FROM watches WHERE id = ?1"),
                params![id.0],
                from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("watch {id}")))
    }

    /// Adds a watch, or changes the one on the same folder when `replace`
    /// (what it remembers stays). A folder watched already is a conflict
    /// otherwise.
    pub fn put_watch(&self, w: &NewWatch, replace: bool) -> Result<Watch> {
        let conn = self.conn()?;
        let values = params![
            w.folder,
            w.sender,
            w.recipients.join("\n"),
            w.priorities.join("\n"),
            i64::try_from(w.settle_secs).unwrap_or(i64::MAX),
            w.mode.as_str(),
            w.name,
            w.origin.as_str(),
            now()
        ];
        if replace {
            conn.execute(
                "INSERT INTO watches (folder, sender, recipients, priorities, settle_secs, mode, name, origin, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (folder) DO UPDATE SET sender = ?2, recipients = ?3, priorities = ?4,
                     settle_secs = ?5, mode = ?6, name = ?7, origin = ?8,
                     baselined = CASE WHEN watches.mode = ?6 THEN watches.baselined ELSE 0 END",
                values,
            )?;
        } else {
            conn.execute(
                "INSERT INTO watches (folder, sender, recipients, priorities, settle_secs, mode, name, origin, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                values,
            )
            .map_err(|e| crate::conflict(e, || format!("a watch on {}", w.folder)))?;
        }
        let id: i64 = conn.query_row(
            "SELECT id FROM watches WHERE folder = ?1",
            params![&w.folder],
            |r| r.get(0),
        )?;
        drop(conn);
        self.watch(WatchId(id))
    }

    /// Removes a watch and what it remembers (its deliveries stay).
    pub fn remove_watch(&self, id: WatchId) -> Result<()> {
        let n = self
            .conn()?
            .execute("DELETE FROM watches WHERE id = ?1", params![id.0])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("watch {id}")));
        }
        Ok(())
    }

    pub fn watch_entries(&self, id: WatchId) -> Result<Vec<WatchEntry>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT identity, path, delivery_id FROM watch_entries WHERE watch_id = ?1 ORDER BY seen_at, path",
        )?;
        let rows = stmt.query_map(params![id.0], |r| {
            Ok(WatchEntry {
                identity: r.get(0)?,
                path: r.get(1)?,
                delivery: r.get::<_, Option<i64>>(2)?.map(DeliveryId),
            })
        })?;
        Ok(rows)
    }

    /// How many of a watch's entries became deliveries.
    pub fn watch_deliveries(&self, id: WatchId) -> Result<u64> {
        let n: i64 = self.conn()?.query_row(
            "SELECT COUNT(*) FROM watch_entries WHERE watch_id = ?1 AND delivery_id IS NOT NULL",
            params![id.0],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Remembers what lies in a watch's folder when it begins, so that
    /// only what arrives afterwards is delivered; from then on the watch
    /// is baselined. One transaction.
    pub fn baseline_watch(&self, id: WatchId, entries: &[(String, String)]) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO watch_entries (watch_id, identity, path, seen_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
            )?;
            let t = now();
            for (identity, path) in entries {
                stmt.execute(params![id.0, identity, path, t])?;
            }
        }
        let n = tx.execute(
            "UPDATE watches SET baselined = 1 WHERE id = ?1",
            params![id.0],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("watch {id}")));
        }
        tx.commit()?;
        Ok(())
    }

    /// A remembered entry has a new name (it was renamed).
    pub fn rename_watch_entry(&self, id: WatchId, identity: &str, path: &str) -> Result<()> {
        self.conn()?.execute(
            "UPDATE watch_entries SET path = ?3 WHERE watch_id = ?1 AND identity = ?2",
            params![id.0, identity, path],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeliveryPlan, NewDelivery, NewTask, Role};

    fn new_watch(folder: &str) -> NewWatch {
        NewWatch {
            folder: folder.into(),
            sender: "render@x.io".into(),
            recipients: vec!["a@x.io".into(), "b@x.io".into()],
            priorities: vec!["*.mp4=high".into()],
            settle_secs: 30,
            mode: Mode::Folder,
            name: "{folder}".into(),
            origin: WatchOrigin::Admin,
        }
    }

    #[test]
    fn a_watch_round_trips_and_one_folder_has_one_watch() {
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            let w = s.put_watch(&new_watch("share=p/out"), false).unwrap();
            assert_eq!(w.recipients, ["a@x.io", "b@x.io"]);
            assert_eq!(w.priorities, ["*.mp4=high"]);
            assert!(!w.baselined);
            assert!(matches!(
                s.put_watch(&new_watch("share=p/out"), false),
                Err(StoreError::Conflict(_))
            ));
            let changed = s
                .put_watch(
                    &NewWatch {
                        settle_secs: 5,
                        origin: WatchOrigin::Config,
                        ..new_watch("share=p/out")
                    },
                    true,
                )
                .unwrap();
            assert_eq!((changed.id, changed.settle_secs), (w.id, 5));
            assert_eq!(changed.origin, WatchOrigin::Config);
            // A new mode takes its baseline again.
            s.baseline_watch(w.id, &[]).unwrap();
            let same = s.put_watch(&new_watch("share=p/out"), true).unwrap();
            assert!(same.baselined);
            let files = s
                .put_watch(
                    &NewWatch {
                        mode: Mode::File,
                        ..new_watch("share=p/out")
                    },
                    true,
                )
                .unwrap();
            assert!(!files.baselined);
            s.remove_watch(w.id).unwrap();
            assert!(s.watches().unwrap().is_empty());
            assert!(matches!(s.remove_watch(w.id), Err(StoreError::NotFound(_))));
        }
    }

    #[test]
    fn an_entry_is_delivered_once_with_its_delivery_and_a_baseline_delivers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            let share = s.add_root_share("p", dir.path()).unwrap();
            let sender = s
                .create_user("render@x.io", "", Role::Employee, Some("password1"))
                .unwrap();
            let w = s.put_watch(&new_watch("share=p/out"), false).unwrap();
            s.baseline_watch(w.id, &[("1:10:0".into(), "old".into())])
                .unwrap();
            assert!(s.watch(w.id).unwrap().baselined);
            let plan = DeliveryPlan {
                delivery: NewDelivery {
                    name: "reel1".into(),
                    sender: sender.id,
                    share: share.id,
                    folder: "out/reel1".into(),
                    onprem: true,
                    notify_progress: false,
                    expires_at: now() + 3600,
                },
                upload: None,
                tasks: vec![NewTask {
                    path: "a.mov".into(),
                    size: 1,
                    mtime_ns: 0,
                    priority: 500,
                }],
                recipients: vec!["a@x.io".into()],
                client_address: None,
                watched: Some(Watched {
                    watch: w.id,
                    identity: "1:11:0".into(),
                    path: "reel1".into(),
                }),
            };
            let made = s.make_delivery(&plan).unwrap();
            // The same entry again (a restart that raced, a rescan): refused,
            // and nothing of the second delivery is left.
            let again = s.make_delivery(&plan);
            assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
            assert!(s.delivery(DeliveryId(made.id.0 + 1)).is_err());
            s.rename_watch_entry(w.id, "1:11:0", "reel1-final").unwrap();
            let entries = s.watch_entries(w.id).unwrap();
            assert_eq!(
                entries,
                [
                    WatchEntry {
                        identity: "1:10:0".into(),
                        path: "old".into(),
                        delivery: None
                    },
                    WatchEntry {
                        identity: "1:11:0".into(),
                        path: "reel1-final".into(),
                        delivery: Some(made.id)
                    }
                ]
            );
            // Of the two entries, the one that became a delivery is counted.
            assert_eq!(s.watch_deliveries(w.id).unwrap(), 1);
        }
    }
}
