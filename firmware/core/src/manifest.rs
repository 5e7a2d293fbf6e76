//! A delivery's manifest: each file's path, size and BLAKE3 (of its whole
//! contents, as b3sum computes it). The sender keeps it as proof of what
//! was delivered; the agent and the desktop app write it beside what they
//! receive, where `b3sum -c` and `ferry verify` check it.
//!
//! Whoever may see one of the delivery's jobs ([`rules::see`]) may read
//! it: its sender, its recipients and admins; anyone else learns nothing.
//! The digests are read from the files in the share once every file has
//! reached the appliance, and kept in each file's attributes
//! ([`ferry_engine::files::content_digest`]), so that each recipient's
//! fetch does not read the delivery again.

use std::sync::Arc;

use ferry_api::{Manifest, ManifestFile};
use ferry_domain::rules::{self, Caller, Refusal};
use ferry_domain::{DeliveryId, JobKind, TaskStatus};
use ferry_engine::EngineError;
use ferry_engine::share::ShareRoot;
use ferry_proto::SharePath;
use ferry_store::{JobFilter, Store, StoreError};

use crate::failing;
use crate::transfers::{Transfers, TransfersError};

/// Why there is no manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Some files are still on their way to the appliance.
    #[error(
        "{0} files of the delivery have not reached the appliance yet; its manifest follows once they have"
    )]
    NotYet(usize),
    /// A file on the appliance is no longer the one delivered.
    #[error("{0} changed on the appliance since it was delivered")]
    Changed(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Transfers(#[from] TransfersError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

failing!(ManifestError {
    ManifestError::Refused(r) => (r.failure(), r.code()),
    ManifestError::NotYet(_) => (Conflict, CONFLICT),
    ManifestError::Changed(_) => (Conflict, CONFLICT),
    ManifestError::Engine(EngineError::NotFound { .. }) => (NotFound, NOT_FOUND),
    ManifestError::Engine(_) => (Internal, INTERNAL),
    ManifestError::Transfers(e) => (e.failure(), e.code()),
    ManifestError::Store(e) => (e.failure(), e.code()),
});

/// The manifests service.
#[derive(Clone)]
pub struct Manifests {
    store: Arc<dyn Store>,
    transfers: Transfers,
}

impl std::fmt::Debug for Manifests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifests").finish_non_exhaustive()
    }
}

impl Manifests {
    pub fn new(store: Arc<dyn Store>, transfers: Transfers) -> Self {
        Manifests { store, transfers }
    }

    /// The manifest of delivery `id`, for `caller`.
    pub async fn of(&self, caller: &Caller, id: i64) -> Result<Manifest, ManifestError> {
        let unknown = || Refusal::NotFound(format!("there is no delivery {id}"));
        let jobs = self
            .store
            .list_jobs(&JobFilter {
                delivery: Some(DeliveryId(id)),
                all: true,
                ..Default::default()
            })
            .await?;
        let seen = jobs
            .iter()
            .find(|j| rules::see(caller, &j.facts()).is_ok())
            .ok_or_else(unknown)?;
        // A recipient's job lists what the delivery holds; an on-appliance
        // delivery has no upload job.
        let job = jobs
            .iter()
            .find(|j| j.kind == JobKind::Download)
            .unwrap_or(seen);
        let delivery = self.store.delivery(DeliveryId(id)).await?;
        let share = self.store.share(delivery.share_id).await?;
        let root = ShareRoot::open(&share.abs_path, format!("share={}", share.name))?;
        let folder = SharePath::parse_dir(&delivery.folder)
            .map_err(|e| StoreError::Invalid(format!("delivery {id} has a bad folder: {e}")))?;
        let landing = self.transfers.landing(job.id, delivery.id).await?;
        let files: Vec<_> = landing
            .tasks
            .into_iter()
            .filter(|t| t.status != TaskStatus::Excluded)
            .collect();
        let waiting = files
            .iter()
            .filter(|t| !landing.landed.contains(&t.path))
            .count();
        if waiting > 0 {
            return Err(ManifestError::NotYet(waiting));
        }
        let mut entries = tokio::task::spawn_blocking(move || {
            files
                .iter()
                .map(|t| {
                    let path = SharePath::parse(&t.path)
                        .and_then(|p| folder.join(&p))
                        .map_err(|e| StoreError::Invalid(format!("{:?}: {e}", t.path)))?;
                    let (file, found) = root.open_file(&path)?;
                    let size = u64::try_from(t.size).unwrap_or(0);
                    if found.size != size || found.mtime_ns != t.mtime_ns {
                        return Err(ManifestError::Changed(t.path.clone()));
                    }
                    let digest = ferry_engine::files::content_digest(&file, size, t.mtime_ns)
                        .map_err(|e| EngineError::io(path.as_str(), e))?;
                    Ok(ManifestFile {
                        path: t.path.clone(),
                        size,
                        blake3: digest.to_hex().to_string(),
                    })
                })
                .collect::<Result<Vec<_>, ManifestError>>()
        })
        .await
        .map_err(|e| EngineError::io("manifest", std::io::Error::other(e)))??;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Manifest {
            delivery: id,
            name: delivery.name,
            files: entries,
        })
    }
}

/// The manifest in b3sum's format.
pub fn b3_text(m: &Manifest) -> String {
    m.files
        .iter()
        .map(|f| ferry_domain::manifest::line(&f.blake3, &f.path))
        .collect()
}
