//! A received delivery's manifest: fetched from the appliance and written
//! beside the files as `.ferry-manifest.b3` (b3sum's format, so `b3sum -c`
//! checks it too), and checked again later by `ferry verify`.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use ferry_api::Manifest;

use crate::api::Api;
use crate::error::ClientError;

/// The manifest's name in a received delivery's folder.
pub const FILE: &str = ".ferry-manifest.b3";

/// Fetches delivery `id`'s manifest and writes it into `dir` (through a
/// temporary name, so a half-written manifest never checks anything).
pub async fn keep(api: &Api, id: i64, dir: &Path) -> Result<PathBuf, ClientError> {
    let manifest: Manifest = api.get(&format!("/deliveries/{id}/manifest")).await?;
    let text: String = manifest
        .files
        .iter()
        .map(|f| ferry_domain::manifest::line(&f.blake3, &f.path))
        .collect();
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let io = |source: io::Error| ClientError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

/// What a check of a folder against its manifest found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Files whose BLAKE3 matches.
    pub matching: usize,
    /// Files whose contents differ from the manifest.
    pub differing: Vec<String>,
    /// Files the manifest lists that are not there (or cannot be read).
    pub missing: Vec<String>,
}

impl Checked {
    pub fn all_match(&self) -> bool {
        self.differing.is_empty() && self.missing.is_empty()
    }
}

/// Checks every file `manifest` lists (relative to `dir`) by its BLAKE3.
pub fn verify(dir: &Path, manifest: &Path) -> Result<Checked, ClientError> {
    let text = std::fs::read_to_string(manifest).map_err(|source| ClientError::Io {
        path: manifest.display().to_string(),
        source,
    })?;
    let files = ferry_domain::manifest::parse(&text)
        .map_err(|e| ClientError::Invalid(format!("{}: {e}", manifest.display())))?;
    let mut checked = Checked::default();
    let mut seen = BTreeSet::new();
    for (hex, path) in files {
        if !seen.insert(path.clone()) {
            continue;
        }
        // The manifest names files inside the folder, never outside it.
        if ferry_proto::SharePath::parse(&path).is_err() {
            return Err(ClientError::Invalid(format!(
                "{}: {path:?} is not a path inside the delivery",
                manifest.display()
            )));
        }
        match digest_of(&dir.join(&path)) {
            Ok(d) if d.to_hex().as_str() == hex => checked.matching += 1,
            Ok(_) => checked.differing.push(path),
            Err(_) => checked.missing.push(path),
        }
    }
    Ok(checked)
}

fn digest_of(path: &Path) -> io::Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("shot")).unwrap();
        std::fs::write(dir.path().join("a.mov"), b"movie").unwrap();
        std::fs::write(dir.path().join("shot/f.0001.exr"), b"frame").unwrap();
        let text = [
            ferry_domain::manifest::line(blake3::hash(b"movie").to_hex().as_str(), "a.mov"),
            ferry_domain::manifest::line(
                blake3::hash(b"other").to_hex().as_str(),
                "shot/f.0001.exr",
            ),
            ferry_domain::manifest::line(blake3::hash(b"gone").to_hex().as_str(), "b.mov"),
        ]
        .concat();
        let m = dir.path().join(FILE);
        std::fs::write(&m, text).unwrap();
        let checked = verify(dir.path(), &m).unwrap();
        assert_eq!(checked.matching, 1);
        assert_eq!(checked.differing, vec!["shot/f.0001.exr".to_owned()]);
        assert_eq!(checked.missing, vec!["b.mov".to_owned()]);
        assert!(!checked.all_match());
        std::fs::write(
            &m,
            ferry_domain::manifest::line(&"0".repeat(64), "../etc/passwd"),
        )
        .unwrap();
        assert!(verify(dir.path(), &m).is_err());
    }
}
