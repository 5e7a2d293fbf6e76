//! Watch folders: what a watch is, when what lands in it is ready to be
//! delivered, and what its delivery is called.
//!
//! The appliance's watches (`[[watch]]`, Settings → Watch folders,
//! `/api/v1/watches`) and a sender's hot folder (`ferry watch`) share
//! these rules, so "settled" means the same thing on both ends.
//!
//! An *entry* is what becomes one delivery: a top-level folder of the
//! watched folder (mode `folder`) or a top-level file (mode `file`). An
//! entry is ready once nothing in it has changed (the same files, with the
//! same sizes and modification times) for the settle time, as seen by
//! whoever watches, and it holds no temporary or part file. A render that
//! is still writing frames keeps changing the entry, so it keeps waiting.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use ferry_proto::PriorityRules;

/// What becomes one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each new top-level folder (a review session, a shot).
    #[default]
    Folder,
    /// Each new top-level file.
    File,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Folder => "folder",
            Mode::File => "file",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = WatchError;
    fn from_str(s: &str) -> Result<Self, WatchError> {
        match s.trim() {
            "folder" | "" => Ok(Mode::Folder),
            "file" => Ok(Mode::File),
            other => Err(bad(
                "mode",
                format!("{other:?}: say \"folder\" (each new folder is a delivery) or \"file\""),
            )),
        }
    }
}

/// Who made a watch, and so who may change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `[[watch]]` in ferryd.toml: the file decides (change it there).
    Config,
    /// An admin, in the web admin or through the API.
    Admin,
}

impl Origin {
    pub const ALL: [Origin; 2] = [Origin::Config, Origin::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Admin => "admin",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Origin {
    type Err = WatchError;
    fn from_str(s: &str) -> Result<Self, WatchError> {
        Origin::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| bad("origin", format!("{s:?}: \"config\" or \"admin\"")))
    }
}

/// The settle time when none is given.
pub const DEFAULT_SETTLE_SECS: u64 = 30;
/// The longest settle time: a day.
pub const MAX_SETTLE_SECS: u64 = 24 * 3600;
/// The name pattern when none is given.
pub const DEFAULT_NAME: &str = "{folder}";

/// A watch as people write it (`[[watch]]`, the form, the API's JSON).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WatchText {
    /// `share=NAME/dir`.
    pub folder: String,
    /// The account its deliveries come from.
    pub sender: String,
    pub to: Vec<String>,
    /// `GLOB=high|normal|low|N`, as `ferry send --priority`.
    pub priorities: Vec<String>,
    /// Empty: [`DEFAULT_SETTLE_SECS`].
    pub settle_secs: String,
    /// `folder` or `file`; empty: `folder`.
    pub mode: String,
    /// Empty: [`DEFAULT_NAME`].
    pub name: String,
}

/// A watch, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSpec {
    /// The share's name and the folder beneath it (no leading or trailing
    /// slash; empty: the share's root).
    pub share: String,
    pub dir: String,
    pub sender: String,
    pub to: Vec<String>,
    pub priorities: Vec<String>,
    pub settle_secs: u64,
    pub mode: Mode,
    pub name: String,
}

impl WatchSpec {
    /// `share=NAME/dir`, as it was written.
    pub fn folder(&self) -> String {
        format!("share={}/{}", self.share, self.dir)
    }

    /// The `share=…` source naming `entry` inside the watched folder.
    pub fn source(&self, entry: &str) -> String {
        if self.dir.is_empty() {
            format!("share={}/{entry}", self.share)
        } else {
            format!("share={}/{}/{entry}", self.share, self.dir)
        }
    }

    pub fn to_text(&self) -> WatchText {
        WatchText {
            folder: self.folder(),
            sender: self.sender.clone(),
            to: self.to.clone(),
            priorities: self.priorities.clone(),
            settle_secs: self.settle_secs.to_string(),
            mode: self.mode.to_string(),
            name: self.name.clone(),
        }
    }
}

/// A field of a watch that does not hold, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct WatchError {
    pub field: &'static str,
    pub why: String,
}

fn bad(field: &'static str, why: impl Into<String>) -> WatchError {
    WatchError {
        field,
        why: why.into(),
    }
}

/// Checks every field of a watch. Whether the share, the sender and the
/// recipients exist is the service's to check; this is their shape.
pub fn parse(t: &WatchText) -> Result<WatchSpec, WatchError> {
    let folder = t.folder.trim();
    let (share, dir) = folder
        .strip_prefix("share=")
        .map(|r| r.split_once('/').unwrap_or((r, "")))
        .filter(|(s, _)| !s.is_empty())
        .ok_or_else(|| bad("folder", format!("{folder:?}: write share=NAME/dir")))?;
    let dir = dir.trim_matches('/');
    if !dir.is_empty() {
        ferry_proto::SharePath::parse(dir).map_err(|e| bad("folder", e.to_string()))?;
    }
    let sender = t.sender.trim();
    crate::email::check(sender).map_err(|e| bad("sender", e.to_string()))?;
    let to: Vec<String> =
        t.to.iter()
            .flat_map(|r| r.split([',', ' ', '\n']))
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
    if to.is_empty() {
        return Err(bad("to", "name at least one recipient"));
    }
    for r in &to {
        crate::email::check(r).map_err(|e| bad("to", e.to_string()))?;
    }
    let priorities: Vec<String> = t
        .priorities
        .iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    PriorityRules::parse(&priorities).map_err(|e| bad("priorities", e.to_string()))?;
    let settle_secs = match t.settle_secs.trim() {
        "" => DEFAULT_SETTLE_SECS,
        s => s
            .trim_end_matches('s')
            .parse::<u64>()
            .map_err(|_| bad("settle_secs", format!("{s:?} is not a number of seconds")))?,
    };
    if !(1..=MAX_SETTLE_SECS).contains(&settle_secs) {
        return Err(bad(
            "settle_secs",
            format!("{settle_secs}: between 1 second and a day"),
        ));
    }
    let mode: Mode = t.mode.parse()?;
    let name = match t.name.trim() {
        "" => DEFAULT_NAME.to_owned(),
        n => n.to_owned(),
    };
    check_pattern(&name)?;
    Ok(WatchSpec {
        share: share.to_owned(),
        dir: dir.to_owned(),
        sender: sender.to_owned(),
        to,
        priorities,
        settle_secs,
        mode,
        name,
    })
}

/// The placeholders a name pattern knows.
const PLACEHOLDERS: [&str; 3] = ["{folder}", "{file}", "{date}"];

/// A name pattern uses only the placeholders there are.
pub fn check_pattern(pattern: &str) -> Result<(), WatchError> {
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let tail = &rest[open..];
        match PLACEHOLDERS.iter().find(|p| tail.starts_with(*p)) {
            Some(p) => rest = &tail[p.len()..],
            None => {
                return Err(bad(
                    "name",
                    format!(
                        "{pattern:?}: the placeholders are {}",
                        PLACEHOLDERS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A delivery's name from the pattern: `{folder}` and `{file}` are the
/// entry's name, `{date}` the day it was delivered (`YYYY-MM-DD`, in the
/// watcher's time zone).
pub fn delivery_name(pattern: &str, entry: &str, date: &str) -> String {
    pattern
        .replace("{folder}", entry)
        .replace("{file}", entry)
        .replace("{date}", date)
}

/// Is this a file still being written, by the names writers give such
/// files: part and temporary files, editors' backups, a browser's or a
/// transfer tool's unfinished download, and Ferry's own working files? One
/// inside an entry holds the entry back.
pub fn is_being_written(name: &str) -> bool {
    const SUFFIXES: [&str; 8] = [
        ".part",
        ".partial",
        ".tmp",
        ".temp",
        ".crdownload",
        ".download",
        ".filepart",
        ".swp",
    ];
    let lower = name.to_ascii_lowercase();
    name.starts_with('~')
        || name.ends_with('~')
        || ferry_proto::path::is_working_name(name)
        || SUFFIXES.iter().any(|s| lower.ends_with(s))
}

/// Is this top-level name not an entry (yet): being written, or hidden,
/// as a folder is while it is staged and before it is renamed into place?
/// Hidden files inside an entry (`.DS_Store`) are ordinary content.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') || is_being_written(name)
}

/// One file of an entry as the watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seen {
    /// Its path inside the entry (`/`-separated).
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
}

/// What an entry is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Nothing in it yet.
    Empty,
    /// A part or temporary file is in it (named): it is still being
    /// written, however long it has been quiet.
    Writing(String),
    /// It changed; it is ready at this time if nothing changes again.
    Settling {
        ready_at_ms: i64,
    },
    Ready,
}

/// Tracks how long each entry has stayed the same. Keyed by the entry's
/// identity (not its name), so that a rename does not start it over.
#[derive(Debug, Default)]
pub struct Settling {
    entries: HashMap<String, Quiet>,
}

#[derive(Debug)]
struct Quiet {
    files: Vec<Seen>,
    since_ms: i64,
}

impl Settling {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records what `entry` holds at `now_ms` and says whether it has been
    /// the same for `settle_ms`.
    pub fn observe(
        &mut self,
        entry: &str,
        mut files: Vec<Seen>,
        settle_ms: i64,
        now_ms: i64,
    ) -> Readiness {
        files.sort();
        let quiet = match self.entries.get_mut(entry) {
            Some(q) if q.files == files => q,
            _ => {
                self.entries.insert(
                    entry.to_owned(),
                    Quiet {
                        files: files.clone(),
                        since_ms: now_ms,
                    },
                );
                self.entries.get_mut(entry).expect("just inserted")
            }
        };
        if files.is_empty() {
            return Readiness::Empty;
        }
        if let Some(f) = files
            .iter()
            .find(|f| f.path.split('/').any(is_being_written))
        {
            return Readiness::Writing(f.path.clone());
        }
        let ready_at_ms = quiet.since_ms.saturating_add(settle_ms);
        if now_ms >= ready_at_ms {
            Readiness::Ready
        } else {
            Readiness::Settling { ready_at_ms }
        }
    }

    /// Forgets an entry (delivered, or gone).
    pub fn forget(&mut self, entry: &str) {
        self.entries.remove(entry);
    }

    /// Forgets every entry not in `present`.
    pub fn keep_only(&mut self, present: &std::collections::HashSet<String>) {
        self.entries.retain(|k, _| present.contains(k));
    }

    /// How many files wait in entries not yet ready.
    pub fn pending_files(&self) -> usize {
        self.entries.values().map(|q| q.files.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> WatchText {
        WatchText {
            folder: "share=projects/outgoing".into(),
            sender: "render@studio.example".into(),
            to: vec!["client@example.com".into()],
            priorities: vec!["*.mp4=high".into()],
            settle_secs: "30".into(),
            mode: "folder".into(),
            name: "{folder} {date}".into(),
        }
    }

    #[test]
    fn a_watch_is_read_with_every_field_checked() {
        let w = parse(&text()).unwrap();
        assert_eq!((w.share.as_str(), w.dir.as_str()), ("projects", "outgoing"));
        assert_eq!(w.folder(), "share=projects/outgoing");
        assert_eq!(w.source("reel1"), "share=projects/outgoing/reel1");
        assert_eq!(w.settle_secs, 30);
        assert_eq!(w.mode, Mode::Folder);
        assert_eq!(parse(&w.to_text()).unwrap(), w);
        let root = parse(&WatchText {
            folder: "share=drop".into(),
            settle_secs: String::new(),
            mode: String::new(),
            name: String::new(),
            ..text()
        })
        .unwrap();
        assert_eq!(root.source("a"), "share=drop/a");
        assert_eq!(root.settle_secs, DEFAULT_SETTLE_SECS);
        assert_eq!(root.name, DEFAULT_NAME);
    }

    #[test]
    fn a_bad_field_is_named() {
        let field = |t: WatchText| parse(&t).unwrap_err().field;
        assert_eq!(
            field(WatchText {
                folder: "/srv/x".into(),
                ..text()
            }),
            "folder"
        );
        assert_eq!(
            field(WatchText {
                folder: "share=p/../etc".into(),
                ..text()
            }),
            "folder"
        );
        assert_eq!(
            field(WatchText {
                to: vec![],
                ..text()
            }),
            "to"
        );
        assert_eq!(
            field(WatchText {
                settle_secs: "0".into(),
                ..text()
            }),
            "settle_secs"
        );
        assert_eq!(
            field(WatchText {
                mode: "tree".into(),
                ..text()
            }),
            "mode"
        );
        assert_eq!(
            field(WatchText {
                name: "{shot}".into(),
                ..text()
            }),
            "name"
        );
        assert_eq!(
            field(WatchText {
                priorities: vec!["*.mp4=urgentest".into()],
                ..text()
            }),
            "priorities"
        );
        assert_eq!(
            field(WatchText {
                sender: "render".into(),
                ..text()
            }),
            "sender"
        );
    }

    #[test]
    fn names_fill_the_pattern() {
        assert_eq!(
            delivery_name("{folder} {date}", "reel1", "2026-12-05"),
            "reel1 2026-12-05"
        );
        assert_eq!(delivery_name("dailies", "x", "d"), "dailies");
    }

    #[test]
    fn part_and_temporary_files_are_recognised() {
        for n in [
            ".hidden",
            "a.exr.part",
            "a.MOV.tmp",
            "b.crdownload",
            "c.ferry-part",
            "~lock",
            "notes.txt~",
        ] {
            assert!(is_temporary(n), "{n}");
        }
        for n in ["a.exr", "shot.mp4", "partial_render.mov", "tmp.1001.exr"] {
            assert!(!is_temporary(n), "{n}");
        }
        // Hidden names are staging at the top, content inside.
        assert!(is_temporary(".reel1.incoming"));
        assert!(!is_being_written(".DS_Store"));
        assert!(is_being_written("a.exr.ferry-state"));
    }

    fn seen(path: &str, size: u64, mtime_ns: i64) -> Seen {
        Seen {
            path: path.into(),
            size,
            mtime_ns,
        }
    }

    #[test]
    fn an_entry_is_ready_once_it_has_held_still_for_the_settle_time() {
        let mut s = Settling::new();
        let settle = 30_000;
        assert_eq!(s.observe("e", vec![], settle, 0), Readiness::Empty);
        let one = vec![seen("a.mov", 10, 1)];
        assert_eq!(
            s.observe("e", one.clone(), settle, 1_000),
            Readiness::Settling {
                ready_at_ms: 31_000
            }
        );
        // Growing: the clock starts again.
        let grown = vec![seen("a.mov", 20, 2)];
        assert_eq!(
            s.observe("e", grown.clone(), settle, 20_000),
            Readiness::Settling {
                ready_at_ms: 50_000
            }
        );
        // A new frame: again.
        let more = vec![seen("a.mov", 20, 2), seen("f.1001.exr", 5, 3)];
        assert_eq!(
            s.observe("e", more.clone(), settle, 40_000),
            Readiness::Settling {
                ready_at_ms: 70_000
            }
        );
        assert_eq!(s.pending_files(), 2);
        // The same files in another order are the same entry.
        let mut reordered = more.clone();
        reordered.reverse();
        assert_eq!(
            s.observe("e", reordered, settle, 69_999),
            Readiness::Settling {
                ready_at_ms: 70_000
            }
        );
        assert_eq!(s.observe("e", more, settle, 70_000), Readiness::Ready);
        s.forget("e");
        assert_eq!(s.pending_files(), 0);
    }

    #[test]
    fn a_hidden_file_inside_an_entry_does_not_hold_it_back() {
        let mut s = Settling::new();
        let files = vec![seen("a.exr", 1, 1), seen("sub/.DS_Store", 1, 1)];
        s.observe("e", files.clone(), 1_000, 0);
        assert_eq!(s.observe("e", files, 1_000, 1_000), Readiness::Ready);
    }

    #[test]
    fn a_part_file_holds_an_entry_back_however_long_it_is_quiet() {
        let mut s = Settling::new();
        let files = vec![seen("a.exr", 1, 1), seen("sub/b.exr.part", 1, 1)];
        assert_eq!(
            s.observe("e", files.clone(), 1_000, 0),
            Readiness::Writing("sub/b.exr.part".into())
        );
        assert_eq!(
            s.observe("e", files, 1_000, 1_000_000),
            Readiness::Writing("sub/b.exr.part".into())
        );
        let mut present = std::collections::HashSet::new();
        s.keep_only(&present);
        assert_eq!(s.pending_files(), 0);
        present.insert("x".to_owned());
        s.keep_only(&present);
    }
}
