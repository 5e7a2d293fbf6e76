//! Watch folders: the appliance's watches, kept in the store, and the
//! deliveries they make of what settles in them.
//!
//! A watch comes from `[[watch]]` in ferryd.toml (the file decides: it is
//! followed at each start, and the API and web admin may not change it)
//! or from an admin. Its entries become deliveries from its sender, with
//! every rule a person sending from a share meets. Each delivery is
//! remembered with the entry's identity on disk in the transaction that
//! makes it, so a restart, a rescan or a rename never delivers it twice.
//!
//! Watching the disk (inotify, rescans, settling) is the daemon's; this
//! service decides what a watch is and what its deliveries are.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ferry_api::{DeliveryCreated, DeliveryRequest, WatchInfo};
use ferry_domain::AuditAction;
use ferry_domain::rules::{self, AccountRefusal, Refusal};
use ferry_domain::watch::{self, WatchError, WatchSpec, WatchText};
use ferry_store::{
    NewWatch, Share, Store, StoreError, User, Watch, WatchEntry, WatchId, WatchOrigin, Watched,
};
use tokio::sync::watch as channel;

use crate::audit::{Actor, Audit};
use crate::authority::By;
use crate::deliveries::{Deliveries, DeliveriesError};
use crate::failing;

/// Why a watch could not be added, removed or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchesError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Invalid(#[from] WatchError),
    /// The watch is `[[watch]]` in ferryd.toml.
    #[error("the watch on {0} is set in ferryd.toml; change it there")]
    FromConfig(String),
    #[error("sender: {0} has no account; make one (a service account, say) first")]
    NoSender(String),
    /// The sender's account may not be used (disabled, not yet active):
    /// the watch delivers nothing until it may.
    #[error("sender: {0}")]
    Sender(#[from] AccountRefusal),
    /// The watched folder is not a folder of its share (a symbolic link
    /// leads out of it).
    #[error("folder: {0} leads out of its share")]
    Outside(String),
    #[error("folder: reading {folder}: {source}")]
    Io {
        folder: String,
        source: std::io::Error,
    },
    #[error("folder: there is no share {0:?}")]
    NoShare(String),
    #[error("folder: {0} is not a folder on the appliance; make it first")]
    NoFolder(String),
    #[error("no watch {0}")]
    Missing(i64),
    #[error(transparent)]
    Delivery(#[from] DeliveriesError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

failing!(WatchesError {
    WatchesError::Refused(r) => (r.failure(), r.code()),
    WatchesError::Invalid(_) => (Invalid, INVALID_REQUEST),
    WatchesError::FromConfig(_) => (Conflict, CONFLICT),
    WatchesError::NoSender(_) => (Invalid, INVALID_REQUEST),
    WatchesError::Sender(_) => (Invalid, INVALID_REQUEST),
    WatchesError::Outside(_) => (Forbidden, OUTSIDE_SHARE),
    WatchesError::Io { .. } => (Internal, INTERNAL),
    WatchesError::NoShare(_) => (Invalid, UNKNOWN_SHARE),
    WatchesError::NoFolder(_) => (Invalid, INVALID_PATH),
    WatchesError::Missing(_) => (NotFound, NOT_FOUND),
    WatchesError::Delivery(e) => (e.failure(), e.code()),
    WatchesError::Store(e) => (e.failure(), e.code()),
});

/// The watches service.
#[derive(Clone)]
pub struct Watches {
    store: Arc<dyn Store>,
    audit: Audit,
    deliveries: Deliveries,
    /// Bumped whenever the set of watches changes, so the daemon's
    /// watchers follow.
    changed: Arc<channel::Sender<u64>>,
    /// Files each watch has seen and not delivered, as its watcher last
    /// counted them.
    pending: Arc<Mutex<HashMap<WatchId, usize>>>,
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches").finish_non_exhaustive()
    }
}

fn new_watch(spec: &WatchSpec, origin: WatchOrigin) -> NewWatch {
    NewWatch {
        folder: spec.folder(),
        sender: spec.sender.clone(),
        recipients: spec.to.clone(),
        priorities: spec.priorities.clone(),
        settle_secs: spec.settle_secs,
        mode: spec.mode,
        name: spec.name.clone(),
        origin,
    }
}

/// A stored watch, read back through the validator.
pub fn spec_of(w: &Watch) -> Result<WatchSpec, WatchError> {
    watch::parse(&WatchText {
        folder: w.folder.clone(),
        sender: w.sender.clone(),
        to: w.recipients.clone(),
        priorities: w.priorities.clone(),
        settle_secs: w.settle_secs.to_string(),
        mode: w.mode.to_string(),
        name: w.name.clone(),
    })
}

impl Watches {
    pub fn new(store: Arc<dyn Store>, audit: Audit, deliveries: Deliveries) -> Self {
        Watches {
            store,
            audit,
            deliveries,
            changed: Arc::new(channel::channel(0).0),
            pending: Arc::default(),
        }
    }

    /// Told each time watches are added or removed.
    pub fn subscribe(&self) -> channel::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Every watch (admins).
    pub async fn list(&self, by: By<'_>) -> Result<Vec<WatchInfo>, WatchesError> {
        by.admin("the watch folders")?;
        let mut out = Vec::new();
        for w in self.store.watches().await? {
            out.push(self.info(&w).await?);
        }
        Ok(out)
    }

    async fn info(&self, w: &Watch) -> Result<WatchInfo, WatchesError> {
        let delivered = self.store.watch_deliveries(w.id).await?;
        Ok(WatchInfo {
            id: w.id.0,
            folder: w.folder.clone(),
            sender: w.sender.clone(),
            to: w.recipients.clone(),
            priorities: w.priorities.clone(),
            settle_secs: w.settle_secs,
            mode: w.mode,
            name: w.name.clone(),
            origin: w.origin,
            delivered,
            pending_files: self.pending_of(w.id) as u64,
        })
    }

    /// Checks that a watch can run: its sender has an account that may
    /// send from its share, and its folder is there.
    async fn check(&self, spec: &WatchSpec) -> Result<(), WatchesError> {
        let sender = self.sender(spec).await?;
        let share = self
            .store
            .share_by_name(&spec.share)
            .await?
            .ok_or_else(|| WatchesError::NoShare(spec.share.clone()))?;
        let access = self.store.access(&sender, &share).await?;
        rules::use_share(access, &share.name, false)?;
        real_folder(&share, spec).await?;
        Ok(())
    }

    /// The watch's sender, if their account may send from a share now: a
    /// disabled account's watches deliver nothing.
    async fn sender(&self, spec: &WatchSpec) -> Result<User, WatchesError> {
        let sender = self
            .store
            .user_by_email(&spec.sender)
            .await?
            .ok_or_else(|| WatchesError::NoSender(spec.sender.clone()))?;
        rules::key_use(&sender.account())?;
        rules::send(&sender.caller(), rules::Sending::FromShares)?;
        Ok(sender)
    }

    /// The watched folder on the appliance's disk, as a real path: a
    /// folder of its share, with no symbolic link leading out of it.
    pub async fn folder(&self, spec: &WatchSpec) -> Result<PathBuf, WatchesError> {
        let share = self
            .store
            .share_by_name(&spec.share)
            .await?
            .ok_or_else(|| WatchesError::NoShare(spec.share.clone()))?;
        real_folder(&share, spec).await
    }

    /// What lies in the watch's folder now, remembered without a delivery,
    /// unless the watch has taken its baseline already. Done before an
    /// admin is told the watch runs, so that "from now on" is true.
    pub async fn take_baseline(&self, w: &Watch, spec: &WatchSpec) -> Result<(), WatchesError> {
        if w.baselined {
            return Ok(());
        }
        let folder = self.folder(spec).await?;
        let mode = spec.mode;
        let io = |source: std::io::Error| WatchesError::Io {
            folder: spec.folder(),
            source,
        };
        let present = tokio::task::spawn_blocking(move || {
            ferry_engine::watchdir::look(&folder, mode, |_| false)
        })
        .await
        .map_err(|e| io(std::io::Error::other(e.to_string())))?
        .map_err(io)?;
        let entries: Vec<(String, String)> =
            present.into_iter().map(|f| (f.identity, f.name)).collect();
        self.store.baseline_watch(w.id, &entries).await?;
        log::info!(
            "watch on {}: {} entries there already are not delivered; new ones will be",
            w.folder,
            entries.len()
        );
        Ok(())
    }

    /// An admin adds a watch (Settings → Watch folders, the API).
    pub async fn add(
        &self,
        by: By<'_>,
        who: Actor,
        text: &WatchText,
    ) -> Result<WatchInfo, WatchesError> {
        by.admin("adding a watch folder")?;
        let spec = watch::parse(text)?;
        self.check(&spec).await?;
        let w = self
            .store
            .put_watch(&new_watch(&spec, WatchOrigin::Admin), false)
            .await?;
        if let Err(e) = self.take_baseline(&w, &spec).await {
            // Not running without its baseline: it would deliver what
            // was there already.
            self.store.remove_watch(w.id).await?;
            return Err(e);
        }
        let w = self.store.watch(w.id).await?;
        self.audit
            .note(
                who.line(AuditAction::WatchAdd, w.folder.clone())
                    .detail(format!(
                        "by {}, to {}, settle {} s, each {}",
                        w.sender,
                        w.recipients.join(", "),
                        w.settle_secs,
                        w.mode
                    )),
            )
            .await;
        self.bump();
        self.info(&w).await
    }

    /// An admin removes a watch; its deliveries stay.
    pub async fn remove(&self, by: By<'_>, who: Actor, id: i64) -> Result<(), WatchesError> {
        by.admin("removing a watch folder")?;
        let w = match self.store.watch(WatchId(id)).await {
            Ok(w) => w,
            Err(StoreError::NotFound(_)) => return Err(WatchesError::Missing(id)),
            Err(e) => return Err(e.into()),
        };
        if w.origin == WatchOrigin::Config {
            return Err(WatchesError::FromConfig(w.folder));
        }
        self.store.remove_watch(w.id).await?;
        self.audit
            .note(who.line(AuditAction::WatchRemove, w.folder))
            .await;
        self.bump();
        Ok(())
    }

    /// Makes the watches from ferryd.toml the ones in the store: each is
    /// added or changed (keeping what it remembers), and one removed from
    /// the file is removed. A watch an admin made on the same folder
    /// becomes the file's. A watch that cannot run yet (its folder or
    /// sender is missing) is kept and named in the log.
    pub async fn follow_config(&self, texts: &[WatchText]) -> Result<(), WatchesError> {
        let mut folders = Vec::new();
        for t in texts {
            let spec = watch::parse(t)?;
            if let Err(e) = self.check(&spec).await {
                log::warn!("watch on {}: {e}; it waits until it can run", spec.folder());
            }
            let w = self
                .store
                .put_watch(&new_watch(&spec, WatchOrigin::Config), true)
                .await?;
            if let Err(e) = self.take_baseline(&w, &spec).await {
                log::warn!(
                    "watch on {}: {e}; its baseline is taken when it can run",
                    w.folder
                );
            }
            folders.push(spec.folder());
        }
        for w in self.store.watches().await? {
            if w.origin == WatchOrigin::Config && !folders.contains(&w.folder) {
                log::info!("the watch on {} left ferryd.toml: removed", w.folder);
                self.store.remove_watch(w.id).await?;
            }
        }
        self.bump();
        Ok(())
    }

    /// The watches to run now.
    pub async fn all(&self) -> Result<Vec<Watch>, WatchesError> {
        Ok(self.store.watches().await?)
    }

    pub async fn remembered(&self, id: WatchId) -> Result<Vec<WatchEntry>, WatchesError> {
        Ok(self.store.watch_entries(id).await?)
    }

    /// A remembered entry was renamed: it is not new.
    pub async fn renamed(
        &self,
        id: WatchId,
        identity: &str,
        path: &str,
    ) -> Result<(), WatchesError> {
        Ok(self.store.rename_watch_entry(id, identity, path).await?)
    }

    /// How many files wait in a watch's entries, as its watcher counted.
    pub fn set_pending(&self, w: &Watch, files: usize) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(w.id, files);
        crate::meters::watch_pending(&w.folder, files);
    }

    fn pending_of(&self, id: WatchId) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied()
            .unwrap_or(0)
    }

    /// Delivers a settled entry (`entry`, its name in the watched folder;
    /// `identity`, who it is on disk) on `date` (for `{date}`). A second
    /// try at the same entry is refused as a conflict and makes nothing.
    pub async fn deliver(
        &self,
        w: &Watch,
        spec: &WatchSpec,
        entry: &str,
        identity: &str,
        date: &str,
    ) -> Result<DeliveryCreated, WatchesError> {
        let sender = self.sender(spec).await?;
        let req = DeliveryRequest {
            name: Some(watch::delivery_name(&spec.name, entry, date)),
            recipients: spec.to.clone(),
            priorities: spec.priorities.clone(),
            sources: vec![spec.source(entry)],
            ..DeliveryRequest::default()
        };
        let watched = Watched {
            watch: w.id,
            identity: identity.to_owned(),
            path: entry.to_owned(),
        };
        match self.deliveries.create_watched(&sender, req, watched).await {
            Ok(made) => {
                crate::meters::watch_delivered(&w.folder);
                Ok(made)
            }
            // Delivered already (a race with another scan): nothing to say.
            Err(e @ DeliveriesError::Store(StoreError::Conflict(_))) => Err(e.into()),
            Err(e) => {
                self.audit
                    .note(
                        Actor::appliance()
                            .line(AuditAction::WatchFailed, format!("{}/{entry}", w.folder))
                            .detail(e.to_string()),
                    )
                    .await;
                Err(e.into())
            }
        }
    }
}

/// `spec`'s folder in `share` on the appliance's disk, as a real path: a
/// folder of the share, with no symbolic link leading out of it.
async fn real_folder(share: &Share, spec: &WatchSpec) -> Result<PathBuf, WatchesError> {
    // The validator refused `..` and absolute paths in `dir`.
    let path = if spec.dir.is_empty() {
        share.abs_path.clone()
    } else {
        share.abs_path.join(&spec.dir)
    };
    let missing = || WatchesError::NoFolder(spec.folder());
    let real = tokio::fs::canonicalize(&path)
        .await
        .map_err(|_| missing())?;
    let root = tokio::fs::canonicalize(&share.abs_path)
        .await
        .map_err(|_| missing())?;
    if !real.starts_with(&root) {
        return Err(WatchesError::Outside(spec.folder()));
    }
    if !tokio::fs::metadata(&real).await.is_ok_and(|m| m.is_dir()) {
        return Err(missing());
    }
    Ok(real)
}
