//! Shares: the folders on the appliance that users send into and pull from.
//!
//! A root share names an absolute folder on the appliance (a volume, a
//! mount of the media disk). A share is a folder inside a root share, made
//! so that a project's review media can be granted and removed as a unit.
//! Both live in one namespace: `share=NAME` finds either.

use std::path::{Path, PathBuf};

use crate::db::{Optional, Row, params};
use ferry_proto::path::{SharePath, check_share_name};
use serde::Serialize;

use ferry_domain::rules::Access;
use ferry_domain::{ShareId, UserId};

use crate::users::User;
use crate::{Database, DbError, Result, StoreError, conflict, now};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Share {
    pub id: ShareId,
    pub name: String,
    /// The root share this share lies in; `None` for a root share.
    pub parent: Option<ShareId>,
    pub parent_name: Option<String>,
    /// For a root share the absolute folder; for a share the folder
    /// relative to its root share.
    pub path: String,
    /// The absolute folder on the appliance.
    pub abs_path: PathBuf,
    pub created_at: i64,
}

impl Share {
    pub fn is_root(&self) -> bool {
        self.parent.is_none()
    }
}

struct Raw {
    id: i64,
    name: String,
    parent: Option<i64>,
    path: String,
    created_at: i64,
}

fn raw(r: &Row) -> Result<Raw> {
    Ok(Raw {
        id: r.get(0)?,
        name: r.get(1)?,
        parent: r.get(2)?,
        path: r.get(3)?,
        created_at: r.get(4)?,
    })
}

impl Database {
    /// Adds a root share over an absolute folder, which must exist.
    pub fn add_root_share(&self, name: &str, path: &Path) -> Result<Share> {
        check_share_name(name).map_err(|e| StoreError::Invalid(e.to_string()))?;
        if !path.is_absolute() {
            return Err(StoreError::Invalid(format!(
                "root share path {} must be absolute",
                path.display()
            )));
        }
        if !path.is_dir() {
            return Err(StoreError::Invalid(format!(
                "root share path {} is not a folder on the appliance",
                path.display()
            )));
        }
        let text = path
            .to_str()
            .ok_or_else(|| StoreError::Invalid("root share path must be UTF-8".into()))?;
        self.conn()?
            .execute(
                "INSERT INTO shares (name, parent_id, path, created_at) VALUES (?1, NULL, ?2, ?3)",
                params![name, text, now()],
            )
            .map_err(|e| conflict(e, || format!("a share named {name:?}")))?;
        self.share_by_name(name)?
            .ok_or_else(|| StoreError::NotFound(format!("share {name}")))
    }

    /// Adds a share as `folder` inside the root share `root`. The folder is
    /// created by the caller (which knows how to do it beneath the root).
    pub fn add_share(&self, name: &str, root: &str, folder: &SharePath) -> Result<Share> {
        check_share_name(name).map_err(|e| StoreError::Invalid(e.to_string()))?;
        if folder.is_root() {
            return Err(StoreError::Invalid(
                "a share needs a folder inside its root share".into(),
            ));
        }
        let parent = self
            .share_by_name(root)?
            .ok_or_else(|| StoreError::NotFound(format!("root share {root:?}")))?;
        if !parent.is_root() {
            return Err(StoreError::Invalid(format!(
                "{root:?} is a share, not a root share"
            )));
        }
        self.conn()?
            .execute(
                "INSERT INTO shares (name, parent_id, path, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, parent.id.0, folder.as_str(), now()],
            )
            .map_err(|e| conflict(e, || format!("a share named {name:?}")))?;
        self.share_by_name(name)?
            .ok_or_else(|| StoreError::NotFound(format!("share {name}")))
    }

    pub fn share_by_name(&self, name: &str) -> Result<Option<Share>> {
        let r = self
            .conn()?
            .query_row(
                "SELECT id, name, parent_id, path, created_at FROM shares WHERE name = ?1",
                params![name],
                raw,
            )
            .optional()?;
        r.map(|r| self.resolve(r)).transpose()
    }

    pub fn share(&self, id: ShareId) -> Result<Share> {
        let r = self
            .conn()?
            .query_row(
                "SELECT id, name, parent_id, path, created_at FROM shares WHERE id = ?1",
                params![id.0],
                raw,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("share {}", id.0)))?;
        self.resolve(r)
    }

    pub fn list_shares(&self) -> Result<Vec<Share>> {
        let raws: Vec<Raw> = {
            let conn = self.conn()?;
            let mut stmt = conn.prepare(
                "SELECT id, name, parent_id, path, created_at FROM shares ORDER BY name",
            )?;

            stmt.query_map(params![], raw)?
        };
        raws.into_iter().map(|r| self.resolve(r)).collect()
    }

    fn resolve(&self, r: Raw) -> Result<Share> {
        let (abs_path, parent_name) = match r.parent {
            None => (PathBuf::from(&r.path), None),
            Some(p) => {
                let parent = self.share(ShareId(p))?;
                (parent.abs_path.join(&r.path), Some(parent.name))
            }
        };
        Ok(Share {
            id: ShareId(r.id),
            name: r.name,
            parent: r.parent.map(ShareId),
            parent_name,
            path: r.path,
            abs_path,
            created_at: r.created_at,
        })
    }

    /// Removes a share's record (never its files). A root share with shares
    /// inside cannot be removed.
    pub fn remove_share(&self, name: &str) -> Result<()> {
        let n = self
            .conn()?
            .execute("DELETE FROM shares WHERE name = ?1", params![name])
            .map_err(|e| match e {
                StoreError::Database(DbError::Constraint(_)) => {
                    StoreError::Invalid(format!("{name:?} still has shares or jobs that use it"))
                }
                e => e,
            })?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("share {name:?}")));
        }
        Ok(())
    }

    /// Grants (or changes) a user's access to a share. Granting neither read
    /// nor write removes the grant.
    pub fn grant(&self, share: ShareId, user: UserId, access: Access) -> Result<()> {
        let conn = self.conn()?;
        if !access.read && !access.write {
            conn.execute(
                "DELETE FROM share_acl WHERE share_id = ?1 AND user_id = ?2",
                params![share.0, user.0],
            )?;
        } else {
            conn.execute(
                "INSERT INTO share_acl (share_id, user_id, can_read, can_write) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (share_id, user_id) DO UPDATE SET can_read = ?3, can_write = ?4",
                params![share.0, user.0, access.read, access.write],
            )?;
        }
        Ok(())
    }

    /// Who has been granted what on a share.
    pub fn share_acl(&self, share: ShareId) -> Result<Vec<(UserId, String, Access)>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT a.user_id, u.email, a.can_read, a.can_write FROM share_acl a
             JOIN users u ON u.id = a.user_id WHERE a.share_id = ?1 ORDER BY u.email",
        )?;
        let rows = stmt.query_map(params![share.0], |r| {
            Ok((
                UserId(r.get(0)?),
                r.get(1)?,
                Access {
                    read: r.get(2)?,
                    write: r.get(3)?,
                },
            ))
        })?;
        Ok(rows)
    }

    /// A user's access to a share: everything for admins, otherwise the
    /// grants on the share and on its root share combined.
    pub fn access(&self, user: &User, share: &Share) -> Result<Access> {
        if user.is_admin() {
            return Ok(Access {
                read: true,
                write: true,
            });
        }
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT max(can_read), max(can_write) FROM share_acl
             WHERE user_id = ?1 AND share_id IN (?2, ?3)",
        )?;
        let (read, write): (Option<bool>, Option<bool>) = stmt.query_row(
            params![
                user.id.0,
                share.id.0,
                share.parent.map(|p| p.0).unwrap_or(-1)
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(Access {
            read: read.unwrap_or(false),
            write: write.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    #[test]
    fn root_shares_shares_and_access() {
        let dir = tempfile::tempdir().unwrap();
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            let root = s.add_root_share("storage", dir.path()).unwrap();
            assert!(root.is_root());
            let share = s
                .add_share(
                    "theproject",
                    "storage",
                    &SharePath::parse("theproject").unwrap(),
                )
                .unwrap();
            assert_eq!(share.abs_path, dir.path().join("theproject"));
            assert_eq!(share.parent_name.as_deref(), Some("storage"));
            assert!(matches!(
                s.add_root_share("storage", dir.path()),
                Err(StoreError::Conflict(_))
            ));
            assert!(s.add_root_share("rel", Path::new("relative/path")).is_err());
            assert!(s.add_root_share("../x", dir.path()).is_err());
            assert!(
                s.add_share("x", "theproject", &SharePath::parse("y").unwrap())
                    .is_err()
            );
            assert!(
                s.add_share("x", "nope", &SharePath::parse("y").unwrap())
                    .is_err()
            );

            let admin = s
                .create_user("root@x.io", "", Role::Admin, Some("password1"))
                .unwrap();
            let emp = s
                .create_user("emp@x.io", "", Role::Employee, Some("password1"))
                .unwrap();
            assert!(s.access(&admin, &share).unwrap().write);
            assert_eq!(s.access(&emp, &share).unwrap(), Access::default());
            s.grant(
                root.id,
                emp.id,
                Access {
                    read: true,
                    write: false,
                },
            )
            .unwrap();
            assert_eq!(
                s.access(&emp, &share).unwrap(),
                Access {
                    read: true,
                    write: false
                }
            );
            s.grant(
                share.id,
                emp.id,
                Access {
                    read: false,
                    write: true,
                },
            )
            .unwrap();
            assert_eq!(
                s.access(&emp, &share).unwrap(),
                Access {
                    read: true,
                    write: true
                }
            );
            assert_eq!(s.share_acl(share.id).unwrap().len(), 1);
            assert!(s.remove_share("storage").is_err());
            s.remove_share("theproject").unwrap();
            assert!(s.share_by_name("theproject").unwrap().is_none());
        }
    }
}
