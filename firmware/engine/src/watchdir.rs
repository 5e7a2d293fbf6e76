//! Reading a watched folder, for the appliance's watch folders and for
//! `ferry watch`: the entries at its top (folders or files), who each is
//! on disk (inode and birth time, so a rename is not a new entry),
//! and, for those the watcher does not know yet, every file's size and
//! modification time, which [`ferry_domain::watch::Settling`] compares from
//! one look to the next.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ferry_domain::watch::{self, Mode, Seen};

/// One top-level entry as seen now.
#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    pub identity: String,
    /// Its files, for an entry the watcher does not know yet.
    pub files: Option<Vec<Seen>>,
}

/// Who an entry is on disk: the same across a rename, different for a new
/// entry even if an old inode number is reused (the birth time differs,
/// where the filesystem keeps one). The device is left out: it may change
/// when the filesystem is mounted again, and the entry has not.
pub fn identity(m: &std::fs::Metadata) -> String {
    let born = m
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{}:{born}", m.ino())
}

/// The entries at the top of `folder` (folders or files, by `mode`;
/// temporary names left out), with the files of those `known` does not
/// know.
pub fn look(
    folder: &Path,
    mode: Mode,
    known: impl Fn(&str) -> bool,
) -> std::io::Result<Vec<Found>> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(folder)? {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if watch::is_temporary(&name) {
            continue;
        }
        let Ok(m) = e.path().symlink_metadata() else {
            // Gone between the listing and now.
            continue;
        };
        let fits = match mode {
            Mode::Folder => m.is_dir(),
            Mode::File => m.is_file(),
        };
        if !fits {
            continue;
        }
        let identity = identity(&m);
        let files = if known(&identity) {
            None
        } else if m.is_dir() {
            let mut files = Vec::new();
            walk(&e.path(), "", &mut files);
            Some(files)
        } else {
            Some(vec![seen(&name, &m)])
        };
        found.push(Found {
            name,
            identity,
            files,
        });
    }
    Ok(found)
}

fn seen(path: &str, m: &std::fs::Metadata) -> Seen {
    Seen {
        path: path.to_owned(),
        size: m.len(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
    }
}

/// Every file beneath `dir` (symbolic links are not followed: a delivery
/// sends what lies in the share). What vanishes while walked is skipped;
/// the next look sees the entry changed anyway.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<Seen>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        match e.path().symlink_metadata() {
            Ok(m) if m.is_dir() => walk(&e.path(), &path, out),
            Ok(m) if m.is_file() => out.push(seen(&path, &m)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_lists_new_entries_with_their_files_and_only_names_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("reel1/seq")).unwrap();
        std::fs::write(root.join("reel1/a.mov"), b"abc").unwrap();
        std::fs::write(root.join("reel1/seq/f.1001.exr"), b"x").unwrap();
        std::fs::create_dir(root.join("old")).unwrap();
        std::fs::create_dir(root.join(".incoming")).unwrap();
        std::fs::write(root.join("loose.mov"), b"z").unwrap();
        let old = identity(&root.join("old").symlink_metadata().unwrap());
        let mut found = look(root, Mode::Folder, |id| id == old).unwrap();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            found.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["old", "reel1"]
        );
        assert!(found[0].files.is_none());
        assert_eq!(found[0].identity, old);
        let mut files = found[1].files.clone().unwrap();
        files.sort();
        assert_eq!(
            files
                .iter()
                .map(|f| (f.path.as_str(), f.size))
                .collect::<Vec<_>>(),
            [("a.mov", 3), ("seq/f.1001.exr", 1)]
        );
        // A rename keeps the identity.
        let before = identity(&root.join("reel1").symlink_metadata().unwrap());
        std::fs::rename(root.join("reel1"), root.join("reel1-final")).unwrap();
        let after = identity(&root.join("reel1-final").symlink_metadata().unwrap());
        assert_eq!(before, after);
        // Files, in file mode.
        let files = look(root, Mode::File, |_| false).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "loose.mov");
    }
}
