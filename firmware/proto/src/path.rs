//! Share-relative paths: the single gate for every path that crosses the
//! network or comes from a user.
//!
//! A [`SharePath`] can only be built by [`SharePath::parse`], so holding one
//! proves the text was checked: relative, `/`-separated, UTF-8, with no `..`,
//! no `.`, no empty component, no NUL or other control character, no
//! backslash and no drive letter. This module never touches a filesystem;
//! symlinks are the business of whoever opens the path (beneath the share
//! root, see `ferry-engine`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted path, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;
/// Longest accepted single component, in bytes (`NAME_MAX` on most filesystems).
pub const MAX_COMPONENT_LEN: usize = 255;

/// Why a path was refused. Each variant names the rule it broke, so the user
/// sees exactly what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    #[error("path is absolute: {0:?} (paths are relative to the share)")]
    Absolute(String),
    #[error("path contains '..': {0:?} (paths may not leave the share)")]
    DotDot(String),
    #[error("path contains a '.' component: {0:?}")]
    Dot(String),
    #[error("path contains an empty component ('//'): {0:?}")]
    EmptyComponent(String),
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path contains a control character: {0:?}")]
    ControlChar(String),
    #[error("path contains a backslash: {0:?} (use '/' as the separator)")]
    Backslash(String),
    #[error("path starts with a drive letter: {0:?}")]
    DriveLetter(String),
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("path component is longer than {MAX_COMPONENT_LEN} bytes: {0:?}")]
    ComponentTooLong(String),
    #[error("path is empty")]
    Empty,
    #[error("path names a Ferry working file: {0:?}")]
    Reserved(String),
}

/// A checked, share-relative path. The empty path is the share's root.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SharePath(String);

/// Suffixes Ferry uses for its own working files beside a file being received.
pub const PART_SUFFIX: &str = ".ferry-part";
/// Suffix of the resume state kept beside a part file.
pub const STATE_SUFFIX: &str = ".ferry-state";

/// True for a name Ferry uses for its own working files (a part file or
/// its resume state). The one test: such a name is never a share path,
/// never listed, never sent, and never mistaken for a user's file.
pub fn is_working_name(name: &str) -> bool {
    name.contains(PART_SUFFIX) || name.contains(STATE_SUFFIX)
}

impl SharePath {
    /// The share's root folder.
    pub fn root() -> Self {
        SharePath(String::new())
    }

    /// Checks `text` against every path rule. A single trailing `/` is
    /// accepted and dropped ("into this folder" is the caller's business);
    /// the empty string is refused, use [`SharePath::root`] or
    /// [`SharePath::parse_dir`] where the root is meant.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        if text.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        if text.contains('\0') {
            return Err(PathError::Nul);
        }
        if text.contains('\\') {
            return Err(PathError::Backslash(text.to_owned()));
        }
        if text.starts_with('/') {
            return Err(PathError::Absolute(text.to_owned()));
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(PathError::ControlChar(format!("{c:?} in {text:?}")));
        }
        let bytes = text.as_bytes();
        if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
            return Err(PathError::DriveLetter(text.to_owned()));
        }
        let trimmed = text.strip_suffix('/').unwrap_or(text);
        if trimmed.is_empty() {
            return Err(PathError::Absolute(text.to_owned()));
        }
        for component in trimmed.split('/') {
            match component {
                "" => return Err(PathError::EmptyComponent(text.to_owned())),
                "." => return Err(PathError::Dot(text.to_owned())),
                ".." => return Err(PathError::DotDot(text.to_owned())),
                c if c.len() > MAX_COMPONENT_LEN => {
                    return Err(PathError::ComponentTooLong(c.to_owned()));
                }
                c if is_working_name(c) => {
                    return Err(PathError::Reserved(c.to_owned()));
                }
                _ => {}
            }
        }
        Ok(SharePath(trimmed.to_owned()))
    }

    /// Like [`SharePath::parse`], but the empty string and `/`-only forms
    /// mean the share's root (for destinations such as `share=NAME/`).
    pub fn parse_dir(text: &str) -> Result<Self, PathError> {
        if text.is_empty() {
            Ok(Self::root())
        } else {
            Self::parse(text)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Components, root first; empty for the root.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// The last component, or `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        self.components().last()
    }

    /// The containing folder; the root's parent is `None`.
    pub fn parent(&self) -> Option<SharePath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => SharePath(self.0[..i].to_owned()),
            None => SharePath::root(),
        })
    }

    /// `self/other`. Both sides are already checked, so the result is too
    /// (short of the total length, which is checked again).
    pub fn join(&self, other: &SharePath) -> Result<SharePath, PathError> {
        let joined = match (self.is_root(), other.is_root()) {
            (true, _) => other.0.clone(),
            (false, true) => self.0.clone(),
            (false, false) => format!("{}/{}", self.0, other.0),
        };
        if joined.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        Ok(SharePath(joined))
    }

    /// Appends one checked component.
    pub fn child(&self, name: &str) -> Result<SharePath, PathError> {
        if name.contains('/') {
            return Err(PathError::EmptyComponent(name.to_owned()));
        }
        self.join(&SharePath::parse(name)?)
    }

    /// True when `self` is `other` or lies beneath it.
    pub fn starts_with(&self, other: &SharePath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }

    /// `self` relative to `base`, when `self` lies beneath `base`.
    pub fn strip_prefix(&self, base: &SharePath) -> Option<SharePath> {
        if base.is_root() {
            return Some(self.clone());
        }
        if self.0 == base.0 {
            return Some(SharePath::root());
        }
        self.0
            .strip_prefix(&base.0)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(|rest| SharePath(rest.to_owned()))
    }
}

impl fmt::Display for SharePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            f.write_str("/")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl fmt::Debug for SharePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharePath({:?})", self.0)
    }
}

impl Serialize for SharePath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Decoding re-applies every rule: a path from the wire is never trusted.
impl<'de> Deserialize<'de> for SharePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        SharePath::parse_dir(&text).map_err(serde::de::Error::custom)
    }
}

/// `share=NAME/some/dir/`: a place on the appliance, as users write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRef {
    /// The share's name.
    pub share: String,
    /// The path inside the share (the root when absent).
    pub path: SharePath,
    /// A trailing `/` means "into this folder".
    pub into_folder: bool,
}

/// Why a `share=` reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareRefError {
    #[error("expected share=NAME/path, got {0:?}")]
    NotAShareRef(String),
    #[error("share name is empty in {0:?}")]
    EmptyName(String),
    #[error("share name {0:?} may contain only letters, digits, '-', '_' and '.'")]
    BadName(String),
    #[error(transparent)]
    Path(#[from] PathError),
}

/// Share names are identifiers users type; keep them plain.
pub fn check_share_name(name: &str) -> Result<(), ShareRefError> {
    if name.is_empty() {
        return Err(ShareRefError::EmptyName(name.to_owned()));
    }
    let ok = name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ShareRefError::BadName(name.to_owned()))
    }
}

impl ShareRef {
    /// Parses `share=NAME`, `share=NAME/`, `share=NAME/path` and
    /// `share=NAME/dir/`.
    pub fn parse(text: &str) -> Result<Self, ShareRefError> {
        let rest = text
            .strip_prefix("share=")
            .ok_or_else(|| ShareRefError::NotAShareRef(text.to_owned()))?;
        let (share, path) = match rest.split_once('/') {
            Some((share, path)) => (share, path),
            None => (rest, ""),
        };
        if share.is_empty() {
            return Err(ShareRefError::EmptyName(text.to_owned()));
        }
        check_share_name(share)?;
        let into_folder = path.is_empty() || path.ends_with('/');
        Ok(ShareRef {
            share: share.to_owned(),
            path: SharePath::parse_dir(path)?,
            into_folder,
        })
    }

    /// True when `text` uses the `share=` notation at all.
    pub fn is_share_ref(text: &str) -> bool {
        text.starts_with("share=")
    }
}

impl fmt::Display for ShareRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "share={}/", self.share)?;
        if !self.path.is_root() {
            f.write_str(self.path.as_str())?;
            if self.into_folder {
                f.write_str("/")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_relative_paths() {
        for ok in [
            "a",
            "a/b",
            "shot010/shot010.1001.exr",
            "dir/",
            "ünï/cödé",
            "a b/c",
        ] {
            assert!(SharePath::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(SharePath::parse("dir/").unwrap().as_str(), "dir");
    }

    #[test]
    fn refuses_every_escape() {
        type Check = fn(&PathError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("..", |e| matches!(e, PathError::DotDot(_))),
            ("../x", |e| matches!(e, PathError::DotDot(_))),
            ("a/../../x", |e| matches!(e, PathError::DotDot(_))),
            ("a/..", |e| matches!(e, PathError::DotDot(_))),
            ("/etc/passwd", |e| matches!(e, PathError::Absolute(_))),
            ("/", |e| matches!(e, PathError::Absolute(_))),
            ("a\\..\\b", |e| matches!(e, PathError::Backslash(_))),
            ("..\\x", |e| matches!(e, PathError::Backslash(_))),
            ("\\\\server\\share", |e| {
                matches!(e, PathError::Backslash(_))
            }),
            ("C:/Windows", |e| matches!(e, PathError::DriveLetter(_))),
            ("c:x", |e| matches!(e, PathError::DriveLetter(_))),
            ("a\0b", |e| matches!(e, PathError::Nul)),
            ("a//b", |e| matches!(e, PathError::EmptyComponent(_))),
            ("./a", |e| matches!(e, PathError::Dot(_))),
            ("a\nb", |e| matches!(e, PathError::ControlChar(_))),
            ("", |e| matches!(e, PathError::Empty)),
            ("x.mov.ferry-part", |e| matches!(e, PathError::Reserved(_))),
            ("x.ferry-state.new", |e| matches!(e, PathError::Reserved(_))),
        ];
        for (text, check) in cases {
            let err = SharePath::parse(text).expect_err(text);
            assert!(check(&err), "{text:?} gave {err:?}");
        }
        let long = "a/".repeat(3000);
        assert_eq!(SharePath::parse(&long), Err(PathError::TooLong));
        let component = "x".repeat(256);
        assert!(matches!(
            SharePath::parse(&component),
            Err(PathError::ComponentTooLong(_))
        ));
    }

    #[test]
    fn decoding_checks_again() {
        let bytes = postcard::to_allocvec(&"../etc/passwd").unwrap();
        assert!(postcard::from_bytes::<SharePath>(&bytes).is_err());
        let bytes = postcard::to_allocvec(&"ok/file").unwrap();
        assert_eq!(
            postcard::from_bytes::<SharePath>(&bytes).unwrap().as_str(),
            "ok/file"
        );
    }

    #[test]
    fn joins_and_prefixes() {
        let a = SharePath::parse("a/b").unwrap();
        let c = SharePath::parse("c").unwrap();
        assert_eq!(a.join(&c).unwrap().as_str(), "a/b/c");
        assert_eq!(SharePath::root().join(&c).unwrap(), c);
        assert!(a.join(&c).unwrap().starts_with(&a));
        assert!(!SharePath::parse("a/bc").unwrap().starts_with(&a));
        assert_eq!(a.join(&c).unwrap().strip_prefix(&a).unwrap().as_str(), "c");
        assert_eq!(a.parent().unwrap().as_str(), "a");
        assert_eq!(a.parent().unwrap().parent().unwrap(), SharePath::root());
        assert_eq!(a.file_name(), Some("b"));
    }

    #[test]
    fn share_refs() {
        let r = ShareRef::parse("share=theproject/review-2020-10-07/").unwrap();
        assert_eq!(r.share, "theproject");
        assert_eq!(r.path.as_str(), "review-2020-10-07");
        assert!(r.into_folder);
        let r = ShareRef::parse("share=p").unwrap();
        assert!(r.path.is_root() && r.into_folder);
        let r = ShareRef::parse("share=p/file.mov").unwrap();
        assert!(!r.into_folder);
        assert!(ShareRef::parse("share=p/../x").is_err());
        assert!(ShareRef::parse("share=/x").is_err());
        assert!(ShareRef::parse("share=a b/x").is_err());
        assert!(ShareRef::parse("volume=p/x").is_err());
    }
}
