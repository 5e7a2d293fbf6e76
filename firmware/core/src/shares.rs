//! Shares: root shares (folders on the appliance), shares beneath them
//! (granted to people as a unit), grants, and paths beneath a share.
//!
//! Every path from outside is checked by the one share-path checker and
//! opened beneath its share root (the engine's [`ShareRoot`]), so nothing
//! leads out. Someone with no grant on a share is not told it exists, and
//! an error never says whether a path exists in a share the caller may
//! not read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_api::{EntryKind, SessionKind, ShareEntry, ShareInfo, ShareListing};
use ferry_domain::rules::{self, Access, Refusal};
use ferry_domain::{AuditAction, Role, ShareId};
use ferry_engine::EngineError;
use ferry_engine::share::{self as root, ShareRoot};
use ferry_proto::path::{ShareRef, ShareRefError};
use ferry_proto::{ErrorCode, SharePath};
use ferry_store::{Share, Store, StoreError, User};

use crate::audit::{Actor, Audit};
use crate::authority::By;
use crate::failing;
use crate::live::LiveSessions;

/// Why a share operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharesError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("there is no share named {0:?}")]
    Unknown(String),
    #[error("{0}")]
    BadPath(String),
    /// Not `share=NAME/path` at all.
    #[error("{0}")]
    BadTarget(String),
    #[error("{0} is not an absolute folder (it must start with /)")]
    NotAbsolute(String),
    #[error("there is no folder {0} on the appliance")]
    NoFolder(String),
    #[error("{0} holds or is inside the appliance's own state ({1}): it cannot be a share")]
    OwnState(String, String),
    #[error("there is no root share {0:?}")]
    NoRoot(String),
    #[error("{0} leads outside the share (through a symlink); refused")]
    Outside(String),
    #[error("{0} does not exist")]
    Missing(String),
    #[error("{0}: a file is in the way")]
    FileInTheWay(String),
    #[error("{0} exists and is not a folder")]
    NotAFolder(String),
    #[error("share {share} at {path}: {source}")]
    Io {
        share: String,
        path: String,
        source: EngineError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

failing!(SharesError {
    SharesError::Refused(r) => (r.failure(), r.code()),
    SharesError::Unknown(_) => (NotFound, UNKNOWN_SHARE),
    SharesError::BadPath(_) => (Invalid, INVALID_PATH),
    SharesError::BadTarget(_) => (Invalid, INVALID_REQUEST),
    SharesError::NotAbsolute(_) => (Invalid, INVALID_REQUEST),
    SharesError::NoFolder(_) => (Invalid, INVALID_REQUEST),
    SharesError::OwnState(..) => (Invalid, INVALID_REQUEST),
    SharesError::NoRoot(_) => (NotFound, NOT_FOUND),
    SharesError::Outside(_) => (Forbidden, OUTSIDE_SHARE),
    SharesError::Missing(_) => (NotFound, NOT_FOUND),
    SharesError::FileInTheWay(_) => (Invalid, INVALID_PATH),
    SharesError::NotAFolder(_) => (Invalid, INVALID_PATH),
    SharesError::Io { .. } => (Internal, INTERNAL),
    SharesError::Store(e) => (e.failure(), e.code()),
});

/// The shares service.
#[derive(Clone)]
pub struct Shares {
    store: Arc<dyn Store>,
    audit: Audit,
    live: Arc<LiveSessions>,
    /// The appliance's own folders (its data folder): a share may neither
    /// be one, nor hold one, nor lie inside one, or a transfer could read
    /// the certificate's key or overwrite the database.
    own: Vec<PathBuf>,
}

impl std::fmt::Debug for Shares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shares").finish_non_exhaustive()
    }
}

impl Shares {
    pub fn new(
        store: Arc<dyn Store>,
        audit: Audit,
        live: Arc<LiveSessions>,
        own: Vec<PathBuf>,
    ) -> Self {
        Shares {
            store,
            audit,
            live,
            own,
        }
    }

    /// The share's folder as a capability.
    pub fn root(&self, share: &Share) -> Result<ShareRoot, SharesError> {
        ShareRoot::open(&share.abs_path, format!("share={}", share.name)).map_err(|e| {
            SharesError::Io {
                share: share.name.clone(),
                path: share.abs_path.display().to_string(),
                source: e,
            }
        })
    }

    /// What `user` may do in `share`.
    pub async fn access(&self, user: &User, share: &Share) -> Result<Access, SharesError> {
        Ok(self.store.access(user, share).await?)
    }

    /// Shares `user` may read or write (every share for an admin).
    pub async fn visible(&self, user: &User) -> Result<Vec<ShareInfo>, SharesError> {
        let mut out = Vec::new();
        for share in self.store.list_shares().await? {
            let access = self.store.access(user, &share).await?;
            if access.read || access.write {
                out.push(ShareInfo {
                    name: share.name.clone(),
                    parent: share.parent_name.clone(),
                    path: user
                        .is_admin()
                        .then(|| share.abs_path.display().to_string()),
                    read: access.read,
                    write: access.write,
                });
            }
        }
        Ok(out)
    }

    /// Every share, for admins' pages.
    pub async fn all(&self, by: By<'_>) -> Result<Vec<Share>, SharesError> {
        by.admin("the list of all shares")?;
        Ok(self.store.list_shares().await?)
    }

    /// Who holds which grant on a share (admins).
    pub async fn grants(
        &self,
        by: By<'_>,
        share: ShareId,
    ) -> Result<Vec<(ferry_domain::UserId, String, Access)>, SharesError> {
        by.admin("the grants of a share")?;
        Ok(self.store.share_acl(share).await?)
    }

    /// Resolves `share=NAME/path` to a share `user` may use that way.
    pub async fn resolve(
        &self,
        user: &User,
        target: &str,
        write: bool,
    ) -> Result<(Share, ShareRef), SharesError> {
        let target = ShareRef::parse(target).map_err(|e| match e {
            ShareRefError::Path(p) => SharesError::BadPath(p.to_string()),
            other => SharesError::BadTarget(other.to_string()),
        })?;
        let share = self
            .store
            .share_by_name(&target.share)
            .await?
            .ok_or_else(|| SharesError::Unknown(target.share.clone()))?;
        let access = self.store.access(user, &share).await?;
        rules::use_share(access, &share.name, write).map_err(|r| match r {
            Refusal::NotFound(_) => SharesError::Unknown(target.share.clone()),
            other => other.into(),
        })?;
        Ok((share, target))
    }

    /// Checks what a session would move beneath its share: the source of
    /// a get must exist; the destination of a put is a folder or made on
    /// the way. Only asked after [`Shares::resolve`], so it speaks only of
    /// shares the caller may use.
    pub async fn check_target(
        &self,
        share: &Share,
        path: &SharePath,
        kind: SessionKind,
    ) -> Result<(), SharesError> {
        let root = self.root(share)?;
        let (path, name) = (
            path.clone(),
            format!("share={}/{}", share.name, path.as_str()),
        );
        let stat = tokio::task::spawn_blocking(move || root.stat(&path))
            .await
            .map_err(|e| SharesError::Io {
                share: share.name.clone(),
                path: name.clone(),
                source: EngineError::task("stat", e),
            })?;
        match stat {
            Ok(entry) => {
                if kind == SessionKind::Put && entry.kind != root::EntryKind::Folder {
                    return Err(SharesError::NotAFolder(name));
                }
                Ok(())
            }
            Err(EngineError::NotFound { .. }) => match kind {
                SessionKind::Put | SessionKind::Upload => Ok(()),
                SessionKind::Get | SessionKind::Download => Err(SharesError::Missing(name)),
            },
            Err(e) => Err(classify(share, name, e)),
        }
    }

    /// One page of a folder's entries, by name.
    pub async fn browse(
        &self,
        user: &User,
        name: &str,
        folder: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ShareListing, SharesError> {
        let (share, target) = self.folder(user, name, folder, false).await?;
        let root = self.root(&share)?;
        let path = target.path.clone();
        let listed = tokio::task::spawn_blocking(move || root.list(&path))
            .await
            .map_err(|e| SharesError::Io {
                share: share.name.clone(),
                path: folder.to_owned(),
                source: EngineError::task("listing", e),
            })?;
        let here = format!("share={}/{}", share.name, target.path.as_str());
        let entries = listed.map_err(|e| match e {
            EngineError::NotFound { .. } => SharesError::Missing(here.clone()),
            e => classify(&share, here.clone(), e),
        })?;
        let mut entries: Vec<ShareEntry> = entries
            .into_iter()
            .filter_map(|e| {
                let kind = match e.kind {
                    root::EntryKind::File => EntryKind::File,
                    root::EntryKind::Folder => EntryKind::Folder,
                    root::EntryKind::Other => return None,
                };
                Some(ShareEntry {
                    name: e.name,
                    kind,
                    size: e.size,
                    mtime: Some(e.mtime_ns.div_euclid(1_000_000_000)),
                })
            })
            .collect();
        if let Some(after) = after {
            entries.retain(|e| e.name.as_str() > after);
        }
        let more = entries.len() > limit;
        entries.truncate(limit);
        Ok(ShareListing {
            next_cursor: more
                .then(|| entries.last().map(|e| e.name.clone()))
                .flatten(),
            entries,
        })
    }

    /// Makes a folder (and its parents) in a share `user` may write.
    pub async fn make_folder(
        &self,
        user: &User,
        who: Actor,
        name: &str,
        folder: &str,
    ) -> Result<(), SharesError> {
        let (share, target) = self.folder(user, name, folder, true).await?;
        if target.path.is_root() {
            return Err(SharesError::BadPath("name the folder to make".into()));
        }
        let root = self.root(&share)?;
        let path = target.path.clone();
        let here = format!("share={}/{}", share.name, path.as_str());
        tokio::task::spawn_blocking(move || root.make_folder(&path))
            .await
            .map_err(|e| SharesError::Io {
                share: share.name.clone(),
                path: here.clone(),
                source: EngineError::task("mkdir", e),
            })?
            .map_err(|e| classify(&share, here.clone(), e))?;
        self.audit
            .note(who.line(AuditAction::ShareFolder, here))
            .await;
        Ok(())
    }

    async fn folder(
        &self,
        user: &User,
        name: &str,
        folder: &str,
        write: bool,
    ) -> Result<(Share, ShareRef), SharesError> {
        let folder = folder.trim().trim_matches('/');
        self.resolve(user, &format!("share={name}/{folder}"), write)
            .await
    }

    /// Adds a root share over a folder that already exists on the
    /// appliance (admins).
    pub async fn add_root(
        &self,
        by: By<'_>,
        who: Actor,
        name: &str,
        path: &str,
    ) -> Result<Share, SharesError> {
        by.admin("adding shares")?;
        let real = self.checked_root_folder(path)?;
        let share = self.store.add_root_share(name.trim(), &real).await?;
        self.audit
            .record(
                who.line(AuditAction::ShareAdd, share.name.clone())
                    .detail(format!("root share at {}", share.abs_path.display())),
            )
            .await?;
        Ok(share)
    }

    fn checked_root_folder(&self, path: &str) -> Result<PathBuf, SharesError> {
        let path = Path::new(path.trim());
        if !path.is_absolute() {
            return Err(SharesError::NotAbsolute(path.display().to_string()));
        }
        let Ok(real) = path.canonicalize() else {
            return Err(SharesError::NoFolder(path.display().to_string()));
        };
        if !real.is_dir() {
            return Err(SharesError::NoFolder(path.display().to_string()));
        }
        for dir in &self.own {
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            if real.starts_with(&dir) || dir.starts_with(&real) {
                return Err(SharesError::OwnState(
                    path.display().to_string(),
                    dir.display().to_string(),
                ));
            }
        }
        Ok(real)
    }

    /// Adds a share: `folder` beneath root share `root`, made if missing
    /// (admins).
    pub async fn add_beneath(
        &self,
        by: By<'_>,
        who: Actor,
        name: &str,
        root_name: &str,
        folder: &str,
    ) -> Result<Share, SharesError> {
        by.admin("adding shares")?;
        let folder_path = SharePath::parse(folder.trim().trim_matches('/'))
            .map_err(|e| SharesError::BadPath(format!("folder {folder:?}: {e}")))?;
        let root_share = self
            .store
            .share_by_name(root_name.trim())
            .await?
            .filter(Share::is_root)
            .ok_or_else(|| SharesError::NoRoot(root_name.to_owned()))?;
        // Made beneath the root share as a capability, whatever links lie
        // inside it.
        let root = self.root(&root_share)?;
        let (p, here) = (
            folder_path.clone(),
            format!("share={}/{}", root_share.name, folder_path.as_str()),
        );
        tokio::task::spawn_blocking(move || root.make_folder(&p))
            .await
            .map_err(|e| SharesError::Io {
                share: root_share.name.clone(),
                path: here.clone(),
                source: EngineError::task("mkdir", e),
            })?
            .map_err(|e| classify(&root_share, here.clone(), e))?;
        let share = self
            .store
            .add_share(name.trim(), &root_share.name, &folder_path)
            .await?;
        self.audit
            .record(
                who.line(AuditAction::ShareAdd, share.name.clone())
                    .detail(format!("in {} at {}", root_share.name, share.path)),
            )
            .await?;
        Ok(share)
    }

    /// Grants (or, with no rights, revokes) `email`'s access to `share`
    /// (admins). A right taken away takes effect at once: the person's
    /// running sessions on the share stop, and their queued jobs on it are
    /// held.
    pub async fn grant(
        &self,
        by: By<'_>,
        who: Actor,
        share_name: &str,
        email: &str,
        access: Access,
    ) -> Result<(), SharesError> {
        by.admin("granting shares")?;
        let share = self
            .store
            .share_by_name(share_name.trim())
            .await?
            .ok_or_else(|| SharesError::Unknown(share_name.to_owned()))?;
        let user = self
            .store
            .user_by_email(email.trim())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {}", email.trim())))?;
        let before = self.store.access(&user, &share).await?;
        self.store.grant(share.id, user.id, access).await?;
        self.audit
            .record(
                who.line(AuditAction::ShareGrant, share.name.clone())
                    .detail(format!(
                        "{}: read={} write={}",
                        user.email, access.read, access.write
                    )),
            )
            .await?;
        let after = self.store.access(&user, &share).await?;
        let lost_read = before.read && !after.read;
        let lost_write = before.write && !after.write;
        if lost_read || lost_write {
            self.revoked(&user, &share, lost_write, who).await?;
        }
        Ok(())
    }

    /// `user` lost a right on `share`; it takes effect now. Their direct
    /// transfers there stop; if they lost writing, so do their deliveries'
    /// uploads into it, and those not running are held (paused by an
    /// admin). A recipient's download is not touched: it was granted by
    /// its delivery's sender, not by the recipient's own grants.
    async fn revoked(
        &self,
        user: &User,
        share: &Share,
        lost_write: bool,
        who: Actor,
    ) -> Result<(), SharesError> {
        if user.role == Role::Admin {
            return Ok(());
        }
        let why = format!("your access to share {} was revoked", share.name);
        let stopped_jobs = self.live.stop_jobs_where(
            |s| {
                s.user == user.id
                    && s.share == Some(share.id)
                    && match s.kind {
                        ferry_domain::JobKind::Put | ferry_domain::JobKind::Get => true,
                        ferry_domain::JobKind::Upload => lost_write,
                        ferry_domain::JobKind::Download => false,
                    }
            },
            ErrorCode::Aborted,
            &why,
        );
        let stopped = stopped_jobs.len();
        let mut held = 0;
        // The jobs whose sessions stopped are held, so that their clients
        // do not take them up again by themselves.
        for job in stopped_jobs {
            self.store
                .hold_job(
                    job,
                    ferry_domain::JobStatus::Paused,
                    ferry_domain::Party::Admin,
                    Some(&why),
                )
                .await?;
            held += 1;
        }
        if lost_write {
            let uploads = self
                .store
                .list_jobs(&ferry_store::JobFilter {
                    owner: Some(user.id),
                    kind: Some(ferry_domain::JobKind::Upload),
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            for job in uploads.iter().filter(|j| j.share_id == Some(share.id)) {
                if matches!(
                    job.status,
                    ferry_domain::JobStatus::Queued
                        | ferry_domain::JobStatus::Running
                        | ferry_domain::JobStatus::Failed
                ) {
                    self.store
                        .hold_job(
                            job.id,
                            ferry_domain::JobStatus::Paused,
                            ferry_domain::Party::Admin,
                            Some(&why),
                        )
                        .await?;
                    held += 1;
                }
            }
        }
        if stopped + held > 0 {
            self.audit
                .note(
                    who.line(AuditAction::SessionRevoked, user.email.clone())
                        .detail(format!(
                            "share {}: {stopped} sessions stopped, {held} jobs held",
                            share.name
                        )),
                )
                .await;
        }
        Ok(())
    }

    /// Removes a share from Ferry (its files stay) (admins).
    pub async fn remove(&self, by: By<'_>, who: Actor, name: &str) -> Result<(), SharesError> {
        by.admin("removing shares")?;
        self.store.remove_share(name.trim()).await?;
        self.audit
            .record(who.line(AuditAction::ShareRemove, name.trim().to_owned()))
            .await?;
        Ok(())
    }

    /// Finds a share by name, for admins' pages.
    pub async fn by_name(&self, name: &str) -> Result<Option<Share>, SharesError> {
        Ok(self.store.share_by_name(name).await?)
    }

    /// A share by id.
    pub async fn get(&self, id: ShareId) -> Result<Share, SharesError> {
        Ok(self.store.share(id).await?)
    }
}

/// Turns an engine error beneath a share into this service's error,
/// naming the path only; the message never carries the appliance's own
/// folders.
fn classify(share: &Share, name: String, e: EngineError) -> SharesError {
    match e {
        EngineError::OutsideShare { .. } => SharesError::Outside(name),
        EngineError::NotFound { .. } => SharesError::Missing(name),
        EngineError::NotAFolder { .. } => SharesError::FileInTheWay(name),
        other => SharesError::Io {
            share: share.name.clone(),
            path: name,
            source: other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_store::SqlStore;

    struct Fixture {
        _dir: tempfile::TempDir,
        media: PathBuf,
        data: PathBuf,
        store: Arc<dyn Store>,
        shares: Shares,
        admin: User,
        emp: User,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("media");
        std::fs::create_dir(&media).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("tls")).unwrap();
        let store: Arc<dyn Store> = Arc::new(SqlStore::open_in_memory().unwrap());
        let shares = Shares::new(
            store.clone(),
            Audit::new(store.clone()),
            Arc::new(LiveSessions::default()),
            vec![data.clone()],
        );
        let admin = store
            .create_user("root@x.io", "", Role::Admin, Some("pw"))
            .await
            .unwrap();
        let emp = store
            .create_user("emp@x.io", "", Role::Employee, Some("pw"))
            .await
            .unwrap();
        Fixture {
            _dir: dir,
            media,
            data,
            store,
            shares,
            admin,
            emp,
        }
    }

    fn me() -> Actor {
        Actor::appliance()
    }

    #[tokio::test]
    async fn roots_must_exist_outside_the_appliances_state_and_shares_stay_beneath_them() {
        let f = fixture().await;
        let s = &f.shares;
        assert!(matches!(
            s.add_root(By::User(&f.admin), me(), "rel", "media").await,
            Err(SharesError::NotAbsolute(_))
        ));
        assert!(matches!(
            s.add_root(By::User(&f.admin), me(), "gone", "/no/such/folder")
                .await,
            Err(SharesError::NoFolder(_))
        ));
        for p in [
            f.data.clone(),
            f.data.join("tls"),
            f.data.parent().unwrap().to_path_buf(),
        ] {
            assert!(
                matches!(
                    s.add_root(By::User(&f.admin), me(), "x", p.to_str().unwrap())
                        .await,
                    Err(SharesError::OwnState(..))
                ),
                "{}",
                p.display()
            );
        }
        assert!(matches!(
            s.add_root(By::User(&f.emp), me(), "media", f.media.to_str().unwrap())
                .await,
            Err(SharesError::Refused(_))
        ));
        s.add_root(By::User(&f.admin), me(), "media", f.media.to_str().unwrap())
            .await
            .unwrap();
        let sh = s
            .add_beneath(By::User(&f.admin), me(), "client", "media", "/jobs/client/")
            .await
            .unwrap();
        assert_eq!(sh.path, "jobs/client");
        assert!(f.media.join("jobs/client").is_dir());
        assert!(matches!(
            s.add_beneath(By::User(&f.admin), me(), "up", "media", "../escape")
                .await,
            Err(SharesError::BadPath(_))
        ));
        assert!(matches!(
            s.add_beneath(By::User(&f.admin), me(), "y", "client", "z")
                .await,
            Err(SharesError::NoRoot(_))
        ));
        let audit = f.store.list_events(10, None, Some("share")).await.unwrap();
        assert_eq!(audit.len(), 2);
    }

    #[tokio::test]
    async fn a_share_without_a_grant_does_not_exist_for_its_caller() {
        let f = fixture().await;
        let s = &f.shares;
        s.add_root(By::User(&f.admin), me(), "media", f.media.to_str().unwrap())
            .await
            .unwrap();
        std::fs::write(f.media.join("a.mov"), b"x").unwrap();
        // No grant: the same answer as for a share that does not exist,
        // whatever the path.
        for target in [
            "share=media/a.mov",
            "share=media/nope",
            "share=nothere/a.mov",
        ] {
            assert!(
                matches!(
                    s.resolve(&f.emp, target, false).await,
                    Err(SharesError::Unknown(_))
                ),
                "{target}"
            );
        }
        assert!(s.visible(&f.emp).await.unwrap().is_empty());
        s.grant(
            By::User(&f.admin),
            me(),
            "media",
            "emp@x.io",
            Access {
                read: true,
                write: false,
            },
        )
        .await
        .unwrap();
        let (share, t) = s.resolve(&f.emp, "share=media/a.mov", false).await.unwrap();
        s.check_target(&share, &t.path, SessionKind::Get)
            .await
            .unwrap();
        assert!(matches!(
            s.resolve(&f.emp, "share=media/", true).await,
            Err(SharesError::Refused(Refusal::Forbidden(_)))
        ));
        let missing = SharePath::parse("nope").unwrap();
        assert!(matches!(
            s.check_target(&share, &missing, SessionKind::Get).await,
            Err(SharesError::Missing(_))
        ));
        let listing = s.browse(&f.emp, "media", "/", None, 10).await.unwrap();
        assert_eq!(listing.entries.len(), 1);
        assert_eq!(listing.entries[0].kind, EntryKind::File);
        assert!(matches!(
            s.make_folder(&f.emp, me(), "media", "new").await,
            Err(SharesError::Refused(_))
        ));
    }

    #[tokio::test]
    async fn revoking_a_grant_stops_the_persons_sessions_on_that_share() {
        let f = fixture().await;
        let s = &f.shares;
        let share = s
            .add_root(By::User(&f.admin), me(), "media", f.media.to_str().unwrap())
            .await
            .unwrap();
        s.grant(
            By::User(&f.admin),
            me(),
            "media",
            "emp@x.io",
            Access {
                read: true,
                write: true,
            },
        )
        .await
        .unwrap();
        let job = s
            .store
            .create_job(&ferry_store::NewJob {
                kind: ferry_domain::JobKind::Put,
                name: "a put".into(),
                owner: f.emp.id,
                share: Some(share.id),
                folder: "in/".into(),
                status: ferry_domain::JobStatus::Running,
                client_address: None,
                delivery: None,
                recipient: None,
                resume_key: None,
            })
            .await
            .unwrap();
        let handle = Arc::new(crate::live::tests::Recorded::default());
        let mut put = crate::live::tests::session(1, job.0, f.emp.id.0, handle.clone());
        put.kind = ferry_domain::JobKind::Put;
        put.share = Some(share.id);
        s.live.admit(put).unwrap();
        s.grant(
            By::User(&f.admin),
            me(),
            "media",
            "emp@x.io",
            Access {
                read: true,
                write: false,
            },
        )
        .await
        .unwrap();
        let stopped = handle.stopped.lock().unwrap().clone();
        assert!(stopped.unwrap().1.contains("revoked"));
        // Its job is held, not left looking as if it ran.
        assert_eq!(
            s.store.job(job).await.unwrap().status,
            ferry_domain::JobStatus::Paused
        );
    }
}
