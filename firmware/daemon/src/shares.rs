//! Making shares, for the web admin and the REST API alike: a root share is
//! a folder that exists on the appliance; a share is a folder made beneath
//! a root share (never outside it) that can be granted to people.

use std::path::Path;

use cap_std::fs::Dir;
use ferry_proto::path::SharePath;
use ferry_store::{Share, Store, StoreError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ShareError {
    #[error("{0} is not an absolute folder (it must start with /)")]
    NotAbsolute(String),
    #[error("there is no folder {0} on the appliance")]
    NoFolder(String),
    #[error("{0} holds or is inside the appliance's own state ({1}): it cannot be a share")]
    OwnState(String, String),
    #[error("folder {folder:?}: {reason}")]
    BadFolder { folder: String, reason: String },
    #[error("there is no root share {0:?}")]
    NoRoot(String),
    #[error("cannot make {folder} in {root}: {source}")]
    Mkdir {
        folder: String,
        root: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Adds a root share over a folder that already exists on the appliance.
/// `own` are the appliance's own folders (its data folder: database,
/// certificate key): a share may neither be one of them, nor hold one, nor
/// lie inside one, or an admin key could read the key or overwrite the
/// database through a transfer.
pub fn add_root(store: &Store, name: &str, path: &str, own: &[&Path]) -> Result<Share, ShareError> {
    let path = Path::new(path.trim());
    if !path.is_absolute() {
        return Err(ShareError::NotAbsolute(path.display().to_string()));
    }
    let Ok(real) = path.canonicalize() else {
        return Err(ShareError::NoFolder(path.display().to_string()));
    };
    if !real.is_dir() {
        return Err(ShareError::NoFolder(path.display().to_string()));
    }
    for dir in own {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        if real.starts_with(&dir) || dir.starts_with(&real) {
            return Err(ShareError::OwnState(
                path.display().to_string(),
                dir.display().to_string(),
            ));
        }
    }
    Ok(store.add_root_share(name.trim(), &real)?)
}

/// Adds a share: `folder` beneath root share `root`, made if missing.
pub fn add_beneath(
    store: &Store,
    name: &str,
    root: &str,
    folder: &str,
) -> Result<Share, ShareError> {
    let folder_path =
        SharePath::parse(folder.trim().trim_matches('/')).map_err(|e| ShareError::BadFolder {
            folder: folder.to_owned(),
            reason: e.to_string(),
        })?;
    let root_share = store
        .share_by_name(root)?
        .filter(Share::is_root)
        .ok_or_else(|| ShareError::NoRoot(root.to_owned()))?;
    // Opened as a capability, so the folder is made beneath the root share
    // and nowhere else, whatever links lie inside it.
    let mkdir = |e| ShareError::Mkdir {
        folder: folder_path.to_string(),
        root: root_share.name.clone(),
        source: e,
    };
    let dir =
        Dir::open_ambient_dir(&root_share.abs_path, cap_std::ambient_authority()).map_err(mkdir)?;
    dir.create_dir_all(folder_path.as_str()).map_err(mkdir)?;
    Ok(store.add_share(name.trim(), &root_share.name, &folder_path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_must_exist_and_shares_stay_beneath_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("ferry.db")).unwrap();
        let media = dir.path().join("media");
        std::fs::create_dir(&media).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("tls")).unwrap();
        let own = [data.as_path()];
        assert!(matches!(
            add_root(&store, "rel", "media", &own),
            Err(ShareError::NotAbsolute(_))
        ));
        assert!(matches!(
            add_root(&store, "gone", "/no/such/folder", &own),
            Err(ShareError::NoFolder(_))
        ));
        // The data folder, a folder inside it, or one that holds it.
        for p in [
            data.clone(),
            data.join("tls"),
            dir.path().to_path_buf(),
            data.join("tls/../tls"),
        ] {
            assert!(
                matches!(
                    add_root(&store, "x", p.to_str().unwrap(), &own),
                    Err(ShareError::OwnState(..))
                ),
                "{}",
                p.display()
            );
        }
        add_root(&store, "media", media.to_str().unwrap(), &own).unwrap();
        let s = add_beneath(&store, "client", "media", "/jobs/client/").unwrap();
        assert_eq!(s.path, "jobs/client");
        assert!(media.join("jobs/client").is_dir());
        assert!(matches!(
            add_beneath(&store, "up", "media", "../escape"),
            Err(ShareError::BadFolder { .. })
        ));
        assert!(!dir.path().join("escape").exists());
        assert!(matches!(
            add_beneath(&store, "x", "nope", "y"),
            Err(ShareError::NoRoot(_))
        ));
        // A share is not a root: nothing is made beneath it.
        assert!(matches!(
            add_beneath(&store, "y", "client", "z"),
            Err(ShareError::NoRoot(_))
        ));
    }
}
