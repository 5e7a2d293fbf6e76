//! A share's folder on the appliance, as a capability. Every path is
//! opened beneath it with cap-std, so no name and no symlink leads
//! outside. This is the one place that opens, walks, stats and lists a
//! share, and it classifies IO errors where they arise
//! ([`EngineError::io`]), so no caller reads an error's message.

use std::path::Path;
use std::sync::Arc;

use cap_std::fs::Dir;
use ferry_proto::SharePath;
use ferry_proto::path::is_working_name;

use crate::error::EngineError;
use crate::files::mtime_ns;

/// What a name in a share is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Folder,
    /// A device, a socket, a dangling link: never sent, never listed.
    Other,
}

/// One name in a share, with its facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    /// Bytes (0 for a folder).
    pub size: u64,
    pub mtime_ns: i64,
}

/// A file found beneath a share path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Relative to the share's root.
    pub path: SharePath,
    pub size: u64,
    pub mtime_ns: i64,
}

/// A share's root folder.
#[derive(Debug, Clone)]
pub struct ShareRoot {
    dir: Arc<Dir>,
    label: String,
}

fn rel(path: &SharePath) -> &str {
    if path.is_root() { "." } else { path.as_str() }
}

impl ShareRoot {
    /// Opens the share at `path` on the appliance; `label` names it in
    /// errors (`share=NAME`).
    pub fn open(path: &Path, label: impl Into<String>) -> Result<Self, EngineError> {
        let label = label.into();
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .map_err(|e| EngineError::io(&label, e))?;
        Ok(ShareRoot {
            dir: Arc::new(dir),
            label,
        })
    }

    /// Wraps a folder already opened as a capability (a client's local
    /// destination).
    pub fn from_dir(dir: Dir, label: impl Into<String>) -> Self {
        ShareRoot {
            dir: Arc::new(dir),
            label: label.into(),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The capability itself, for the file IO of transfers.
    pub fn dir(&self) -> &Arc<Dir> {
        &self.dir
    }

    /// A receiving sink for files into `base` beneath this share.
    pub fn sink(&self, base: SharePath) -> Result<crate::files::Sink, EngineError> {
        let dir = self
            .dir
            .try_clone()
            .map_err(|e| EngineError::io(&self.label, e))?;
        Ok(crate::files::Sink::new(dir, base, self.label.clone()))
    }

    /// `share=NAME/path`, for messages.
    pub fn name_of(&self, path: &SharePath) -> String {
        format!("{}/{}", self.label, path.as_str())
    }

    /// What `path` is (symlinks followed, within the share).
    pub fn stat(&self, path: &SharePath) -> Result<Entry, EngineError> {
        let meta = self
            .dir
            .metadata(rel(path))
            .map_err(|e| EngineError::io(self.name_of(path), e))?;
        let kind = if meta.is_dir() {
            EntryKind::Folder
        } else if meta.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        };
        Ok(Entry {
            name: path.file_name().unwrap_or("").to_owned(),
            kind,
            size: if kind == EntryKind::File {
                meta.len()
            } else {
                0
            },
            mtime_ns: meta
                .modified()
                .ok()
                .map(|t| crate::files::system_time_ns(t.into_std()))
                .unwrap_or(0),
        })
    }

    /// The entries of one folder, by name: not Ferry's working files, not
    /// names that are not UTF-8 (no share path can name them).
    pub fn list(&self, folder: &SharePath) -> Result<Vec<Entry>, EngineError> {
        let at = |e| EngineError::io(self.name_of(folder), e);
        let mut out = Vec::new();
        for entry in self.dir.read_dir(rel(folder)).map_err(at)? {
            let entry = entry.map_err(at)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if is_working_name(&name) {
                continue;
            }
            let Ok(child) = folder.child(&name) else {
                continue;
            };
            // A dangling or escaping link is left out of a listing, not an
            // error for the whole folder.
            match self.stat(&child) {
                Ok(e) => out.push(Entry { name, ..e }),
                Err(EngineError::NotFound { .. } | EngineError::OutsideShare { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Every file at or beneath `path`, by path: a file is itself; a folder
    /// is everything below it. Working files are left out, and a symlinked
    /// folder is not descended (a loop cannot trap the walk); a symlink
    /// that leads outside the share is an error with its path.
    pub fn files_beneath(&self, path: &SharePath) -> Result<Vec<Found>, EngineError> {
        let mut out = Vec::new();
        let top = self.stat(path)?;
        match top.kind {
            EntryKind::File => out.push(self.found(path)?),
            EntryKind::Folder => self.walk(path, &mut out)?,
            EntryKind::Other => {
                return Err(EngineError::NotFound {
                    path: self.name_of(path),
                });
            }
        }
        Ok(out)
    }

    /// Opens a file beneath the share for reading, with its facts as
    /// opened (a browser download reads it from here).
    pub fn open_file(&self, path: &SharePath) -> Result<(std::fs::File, Found), EngineError> {
        let file = self
            .dir
            .open(rel(path))
            .map_err(|e| EngineError::io(self.name_of(path), e))?
            .into_std();
        let meta = file
            .metadata()
            .map_err(|e| EngineError::io(self.name_of(path), e))?;
        if !meta.is_file() {
            return Err(EngineError::NotFound {
                path: self.name_of(path),
            });
        }
        let found = Found {
            path: path.clone(),
            size: meta.len(),
            mtime_ns: mtime_ns(&meta),
        };
        Ok((file, found))
    }

    fn found(&self, path: &SharePath) -> Result<Found, EngineError> {
        // The size and time of the file as opened, not of the name, so a
        // swap between the stat and the open cannot mislead.
        let file = self
            .dir
            .open(rel(path))
            .map_err(|e| EngineError::io(self.name_of(path), e))?
            .into_std();
        let meta = file
            .metadata()
            .map_err(|e| EngineError::io(self.name_of(path), e))?;
        Ok(Found {
            path: path.clone(),
            size: meta.len(),
            mtime_ns: mtime_ns(&meta),
        })
    }

    fn walk(&self, dir: &SharePath, out: &mut Vec<Found>) -> Result<(), EngineError> {
        let at = |e| EngineError::io(self.name_of(dir), e);
        let mut names = Vec::new();
        for entry in self.dir.read_dir(rel(dir)).map_err(at)? {
            let entry = entry.map_err(at)?;
            match entry.file_name().to_str() {
                Some(name) if !is_working_name(name) => names.push(name.to_owned()),
                Some(_) => {}
                None => log::warn!("skipping a name that is not UTF-8 in {}", self.name_of(dir)),
            }
        }
        names.sort();
        for name in names {
            let Ok(child) = dir.child(&name) else {
                log::warn!(
                    "skipping {name:?} in {}: not a valid share path",
                    self.name_of(dir)
                );
                continue;
            };
            let entry = self.stat(&child)?;
            let link = self
                .dir
                .symlink_metadata(child.as_str())
                .map(|m| m.is_symlink())
                .unwrap_or(false);
            match entry.kind {
                EntryKind::Folder if !link => self.walk(&child, out)?,
                EntryKind::File => out.push(self.found(&child)?),
                _ => {}
            }
        }
        Ok(())
    }

    /// Makes `folder` and its parents beneath the share.
    pub fn make_folder(&self, folder: &SharePath) -> Result<(), EngineError> {
        self.dir
            .create_dir_all(rel(folder))
            .map_err(|e| match e.kind() {
                // A file stands where a folder of the path should be.
                std::io::ErrorKind::AlreadyExists => EngineError::NotAFolder {
                    path: self.name_of(folder),
                },
                _ => EngineError::io(self.name_of(folder), e),
            })
    }

    /// Removes a file; `false` when it was not there.
    pub fn remove_file(&self, path: &SharePath) -> Result<bool, EngineError> {
        match self.dir.remove_file(path.as_str()) {
            Ok(()) => Ok(true),
            Err(e) => match EngineError::io(self.name_of(path), e) {
                EngineError::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> SharePath {
        SharePath::parse_dir(s).unwrap()
    }

    #[test]
    fn a_walk_stays_beneath_the_share_and_skips_working_files() {
        let t = tempfile::tempdir().unwrap();
        let share = t.path().join("share");
        std::fs::create_dir_all(share.join("seq")).unwrap();
        std::fs::write(share.join("a.mov"), b"movie").unwrap();
        std::fs::write(share.join("seq/f.0001.exr"), b"1").unwrap();
        std::fs::write(share.join("seq/f.0002.exr.ferry-part"), b"2").unwrap();
        std::fs::write(t.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(t.path().join("secret"), share.join("link")).unwrap();
        // A loop back to the share itself, by a relative link (an absolute
        // one would be an escape).
        std::os::unix::fs::symlink("..", share.join("seq/loop")).unwrap();
        let root = ShareRoot::open(&share, "share=media").unwrap();

        let names: Vec<String> = root
            .list(&p(""))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        // The escaping link is left out of a listing…
        assert_eq!(names, ["a.mov", "seq"]);
        // …and named as an escape when asked for.
        assert!(matches!(
            root.stat(&p("link")),
            Err(EngineError::OutsideShare { .. })
        ));
        assert!(matches!(
            root.files_beneath(&p("")),
            Err(EngineError::OutsideShare { .. })
        ));
        std::fs::remove_file(share.join("link")).unwrap();
        let found: Vec<String> = root
            .files_beneath(&p(""))
            .unwrap()
            .into_iter()
            .map(|f| f.path.as_str().to_owned())
            .collect();
        assert_eq!(found, ["a.mov", "seq/f.0001.exr"]);
        assert!(matches!(
            root.stat(&p("nope")),
            Err(EngineError::NotFound { .. })
        ));
        assert!(matches!(
            root.stat(&p("a.mov/x")),
            Err(EngineError::NotAFolder { .. })
        ));
        root.make_folder(&p("new/deep")).unwrap();
        std::fs::write(share.join("file"), b"f").unwrap();
        assert!(matches!(
            root.make_folder(&p("file")),
            Err(EngineError::NotAFolder { .. })
        ));
        assert!(share.join("new/deep").is_dir());
        assert!(root.remove_file(&p("a.mov")).unwrap());
        assert!(!root.remove_file(&p("a.mov")).unwrap());
    }
}
