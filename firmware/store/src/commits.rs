//! What each delivery's upload wrote into its share: path, size,
//! modification time and BLAKE3 digest of every file it committed.
//!
//! Purging a delivery with its files, and expiry, delete only what is
//! recorded here, and only while the file there is still the one the
//! upload wrote (same size and modification time). A file the delivery
//! found already in place, declared without uploading it, or replaced
//! since by someone else is never the delivery's to delete.

use crate::db::params;
use ferry_domain::DeliveryId;

use crate::{Database, Result, now};

/// A file an upload committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub delivery: DeliveryId,
    /// Relative to the share root (the delivery's folder included).
    pub path: String,
    pub size: i64,
    pub mtime_ns: i64,
    pub digest: String,
    pub committed_at: i64,
}

impl Database {
    /// Records a file the upload of `delivery` committed (again, if it
    /// wrote the same path twice).
    pub fn record_commit(
        &self,
        delivery: DeliveryId,
        path: &str,
        size: i64,
        mtime_ns: i64,
        digest: &str,
    ) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO commits (delivery_id, path, size, mtime_ns, digest, committed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (delivery_id, path) DO UPDATE
                 SET size = ?3, mtime_ns = ?4, digest = ?5, committed_at = ?6",
            params![delivery.0, path, size, mtime_ns, digest, now()],
        )?;
        Ok(())
    }

    /// Everything the upload of `delivery` committed, by path.
    pub fn commits(&self, delivery: DeliveryId) -> Result<Vec<Commit>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT delivery_id, path, size, mtime_ns, digest, committed_at FROM commits
             WHERE delivery_id = ?1 ORDER BY path",
        )?;
        let rows = stmt.query_map(params![delivery.0], |r| {
            Ok(Commit {
                delivery: DeliveryId(r.get(0)?),
                path: r.get(1)?,
                size: r.get(2)?,
                mtime_ns: r.get(3)?,
                digest: r.get(4)?,
                committed_at: r.get(5)?,
            })
        })?;
        Ok(rows)
    }
}
