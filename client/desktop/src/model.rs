//! What the window shows and edits, without the window: the Send form
//! (dropped files grouped into sequences, recipients, destination,
//! priorities, the job's name), the rows of the Transfers list, and the
//! settings. Everything here is plain data and pure functions, so the
//! view-model tests need no display and no appliance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry_api::{JobAction, JobInfo, JobKind, JobStatus};
use ferry_client::deliver::SendRequest;
use ferry_proto::sequence::{Grouped, group, range_texts};

/// The app's own settings, kept in `desktop.toml` beside the
/// credentials.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Extensions whose files start at high priority (the proxies people
    /// review first).
    pub high_extensions: Vec<String>,
    /// Where Receive saves deliveries.
    pub receive_into: Option<PathBuf>,
    /// Receive was on when the app closed: it starts again with the app.
    pub receiving: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            high_extensions: ferry_proto::Priority::STARTS_HIGH
                .iter()
                .map(|e| (*e).to_owned())
                .collect(),
            receive_into: None,
            receiving: false,
        }
    }
}

impl Settings {
    /// The settings at `path`; the defaults when there are none or they
    /// cannot be read (a damaged file must not keep the app from opening).
    pub fn load(path: &Path) -> Self {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Writes the settings to `path`, through a temporary file.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, path)
    }
}

/// The priority a producer picks per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    High,
    Normal,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    pub fn label(self) -> &'static str {
        match self {
            Priority::High => "High",
            Priority::Normal => "Normal",
            Priority::Low => "Low",
        }
    }

    /// The word of `--priority GLOB=WORD`.
    fn rule_word(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// What one line of the Send list stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind {
    File,
    Folder,
    /// Numbered frames in one folder.
    Sequence {
        first: u64,
        last: u64,
        frames: usize,
        /// Inclusive ranges of frames absent between first and last.
        missing: Vec<(u64, u64)>,
        /// `prefix####suffix[first-last]` in its folder.
        notation: PathBuf,
    },
}

/// One line of the Send list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// What the producer reads: a file name, a folder name, or
    /// `shot.####.exr`.
    pub label: String,
    /// What identifies the line: the file, the folder, or the sequence's
    /// notation in its folder.
    pub path: PathBuf,
    /// The local files and folders it sends. Frames go by name, as the
    /// producer dropped them, not inside their folder.
    pub files: Vec<PathBuf>,
    pub kind: ItemKind,
    pub bytes: u64,
    pub priority: Priority,
}

impl Item {
    /// `1001-1100 (100 frames, missing 1050-1052)` for a sequence.
    pub fn detail(&self) -> String {
        match &self.kind {
            ItemKind::File => human_bytes(self.bytes),
            ItemKind::Folder => format!("folder, {}", human_bytes(self.bytes)),
            ItemKind::Sequence {
                first,
                last,
                frames,
                missing,
                ..
            } => {
                let mut s = format!(
                    "frames {first}-{last} ({frames} frames, {}",
                    human_bytes(self.bytes)
                );
                if !missing.is_empty() {
                    s.push_str(&format!(", missing {}", range_texts(missing).join(", ")));
                }
                s.push(')');
                s
            }
        }
    }

    /// The glob that picks out this line's files for a priority rule.
    fn glob(&self) -> String {
        match &self.kind {
            ItemKind::Sequence { notation, .. } => {
                let name = notation
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // `shot.####.exr[1-9]` → `shot.*.exr`
                let name = name.split('[').next().unwrap_or_default().to_owned();
                let start = name.find('#').unwrap_or(name.len());
                let end = name.rfind('#').map_or(start, |i| i + 1);
                format!(
                    "{}*{}",
                    escape_glob(&name[..start]),
                    escape_glob(&name[end..])
                )
            }
            ItemKind::Folder => format!("{}/**", escape_glob(&self.label)),
            ItemKind::File => escape_glob(&self.label),
        }
    }
}

/// Glob metacharacters in a name, taken literally.
fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('[');
            out.push(c);
            out.push(']');
        } else {
            out.push(c);
        }
    }
    out
}

/// Why the form cannot be sent yet, in the producer's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("drop the files to send onto the window first")]
    NoFiles,
    #[error("add at least one recipient")]
    NoRecipients,
    #[error("pick a destination folder on the appliance")]
    NoDestination,
    #[error("{0:?} is not an email address")]
    NotAnEmail(String),
}

/// The Send form.
#[derive(Debug, Clone, Default)]
pub struct SendForm {
    pub items: Vec<Item>,
    pub recipients: Vec<String>,
    /// What is being typed into the recipient field.
    pub recipient_input: String,
    /// The share and the folder inside it that the files go into.
    pub share: Option<String>,
    pub folder: String,
    pub name: String,
}

impl SendForm {
    /// Adds dropped files and folders. Frames of one folder are grouped
    /// into a sequence line with its range and its gaps; files already in
    /// the list are not added twice. Returns what could not be read.
    pub fn add_paths(&mut self, paths: &[PathBuf], settings: &Settings) -> Vec<String> {
        let mut problems = Vec::new();
        // A file already on the list (alone, in a sequence line, or in a
        // dropped folder) is not added again: the appliance would refuse
        // a delivery that names it twice.
        let listed: std::collections::HashSet<&Path> = self
            .items
            .iter()
            .flat_map(|i| i.files.iter().map(PathBuf::as_path))
            .collect();
        let inside_listed_folder = |p: &Path| {
            self.items
                .iter()
                .any(|i| i.kind == ItemKind::Folder && p.starts_with(&i.path))
        };
        let fresh: Vec<&PathBuf> = paths
            .iter()
            .filter(|p| !listed.contains(p.as_path()) && !inside_listed_folder(p))
            .collect();
        // Files by folder, so that frames group.
        let mut by_dir: BTreeMap<PathBuf, Vec<(String, u64)>> = BTreeMap::new();
        for p in fresh {
            match std::fs::metadata(p) {
                Ok(m) if m.is_dir() => {
                    let label = file_name(p);
                    self.items.push(Item {
                        priority: Priority::Normal,
                        bytes: folder_bytes(p),
                        label,
                        path: p.clone(),
                        files: vec![p.clone()],
                        kind: ItemKind::Folder,
                    });
                }
                Ok(m) => {
                    let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
                    by_dir.entry(dir).or_default().push((file_name(p), m.len()));
                }
                Err(e) => problems.push(format!("{}: {e}", p.display())),
            }
        }
        for (dir, files) in by_dir {
            let sizes: BTreeMap<&str, u64> = files.iter().map(|(n, s)| (n.as_str(), *s)).collect();
            for g in group(files.iter().map(|(n, _)| n.as_str())) {
                match g {
                    Grouped::Single(name) => {
                        let priority = settings.default_priority(&name);
                        self.items.push(Item {
                            bytes: sizes.get(name.as_str()).copied().unwrap_or(0),
                            path: dir.join(&name),
                            files: vec![dir.join(&name)],
                            label: name,
                            kind: ItemKind::File,
                            priority,
                        });
                    }
                    Grouped::Sequence(seq) => {
                        let names: Vec<String> = seq.frame_names().collect();
                        let bytes = names.iter().filter_map(|n| sizes.get(n.as_str())).sum();
                        let label = seq.pattern();
                        let notation = dir.join(seq.notation());
                        if self.items.iter().any(|i| match &i.kind {
                            ItemKind::Sequence { notation: n, .. } => n == &notation,
                            _ => false,
                        }) {
                            continue;
                        }
                        self.items.push(Item {
                            priority: settings.default_priority(&label),
                            path: notation.clone(),
                            files: names.iter().map(|n| dir.join(n)).collect(),
                            label,
                            bytes,
                            kind: ItemKind::Sequence {
                                first: seq.first(),
                                last: seq.last(),
                                frames: seq.frames.len(),
                                missing: seq.missing(),
                                notation,
                            },
                        });
                    }
                }
            }
        }
        if self.name.is_empty()
            && let Some(first) = self.items.first()
        {
            self.name = first.label.clone();
        }
        problems
    }

    /// Adds the typed recipient (or `email`), if it looks like an address
    /// and is not there yet.
    pub fn add_recipient(&mut self, email: &str) -> Result<(), FormError> {
        let email = email.trim();
        let valid = email.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !host.ends_with('.')
        }) && !email.chars().any(|c| c.is_whitespace() || c == ',');
        if !valid {
            return Err(FormError::NotAnEmail(email.to_owned()));
        }
        if !self
            .recipients
            .iter()
            .any(|r| r.eq_ignore_ascii_case(email))
        {
            self.recipients.push(email.to_owned());
        }
        self.recipient_input.clear();
        Ok(())
    }

    /// Known addresses that complete what is typed, not yet added.
    pub fn suggestions<'a>(&self, known: &'a [String]) -> Vec<&'a str> {
        let typed = self.recipient_input.trim().to_lowercase();
        if typed.is_empty() {
            return Vec::new();
        }
        known
            .iter()
            .filter(|k| k.to_lowercase().contains(&typed))
            .filter(|k| !self.recipients.iter().any(|r| r.eq_ignore_ascii_case(k)))
            .map(String::as_str)
            .take(8)
            .collect()
    }

    /// `share=NAME/folder`, the destination as the appliance reads it.
    pub fn destination(&self) -> Option<String> {
        let share = self.share.as_ref()?;
        let folder = self.folder.trim_matches('/');
        Some(if folder.is_empty() {
            format!("share={share}/")
        } else {
            format!("share={share}/{folder}/")
        })
    }

    /// Whether Transmit can go, and the destination it would use; cheap
    /// enough for every frame (a request lists every file).
    pub fn ready(&self) -> Result<String, FormError> {
        if self.items.is_empty() {
            return Err(FormError::NoFiles);
        }
        if self.recipients.is_empty() {
            return Err(FormError::NoRecipients);
        }
        self.destination().ok_or(FormError::NoDestination)
    }

    /// The request Transmit sends, or what is missing.
    pub fn request(&self, settings: &Settings) -> Result<SendRequest, FormError> {
        let dest = self.ready()?;
        // Each line's choice is a rule of its own, first (the first rule
        // that matches wins); files inside dropped folders then get the
        // high-priority extensions; everything else keeps the default.
        let mut priorities: Vec<String> = self
            .items
            .iter()
            .filter(|i| i.kind != ItemKind::Folder || i.priority != Priority::Normal)
            .map(|i| format!("{}={}", i.glob(), i.priority.rule_word()))
            .collect();
        if self.items.iter().any(|i| i.kind == ItemKind::Folder) {
            priorities.extend(
                settings
                    .high_extensions
                    .iter()
                    .map(|e| format!("*.{}=high", escape_glob(e))),
            );
        }
        Ok(SendRequest {
            paths: self
                .items
                .iter()
                .flat_map(|i| &i.files)
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            recipients: self.recipients.clone(),
            dest: Some(dest),
            name: Some(self.name.trim().to_owned()).filter(|n| !n.is_empty()),
            priorities,
            ..Default::default()
        })
    }
}

impl Settings {
    pub fn default_priority(&self, name: &str) -> Priority {
        let ext = Path::new(name)
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase());
        if ext.is_some_and(|e| {
            self.high_extensions
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&e))
        }) {
            Priority::High
        } else {
            Priority::Normal
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn folder_bytes(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => folder_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// The Transfers tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    All,
    Finished,
}

/// One row of the Transfers list, as shown.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: i64,
    pub name: String,
    /// "upload", "to ann@example.com", …
    pub direction: String,
    pub status: JobStatus,
    pub fraction: f32,
    pub progress: String,
    pub rate: String,
    pub eta: String,
    /// Moving right now: a marker in the list.
    pub in_motion: bool,
    pub error: Option<String>,
    /// What the appliance's rulebook lets this user do to the job now.
    pub allowed: Vec<JobAction>,
}

impl JobRow {
    pub fn of(j: &JobInfo) -> Self {
        let total = j.bytes_total.max(0) as u64;
        // Skipped and resent bytes can count past the total: never show
        // "12 MB of 10 MB".
        let raw = j.bytes_done.max(0) as u64;
        let done = if total > 0 { raw.min(total) } else { raw };
        // The one measure of progress (bytes), as the CLI and the web show.
        let fraction = f32::from(j.percent()) / 100.0;
        let in_motion = j.status == JobStatus::Running;
        let rate = if in_motion && j.rate > 0 {
            // How it travels, when it is not the fastest way (a network
            // that drops UDP is worth knowing about).
            let over = j
                .transport
                .filter(|t| *t != ferry_proto::Transport::Quic)
                .map(|t| format!(" over {t}"))
                .unwrap_or_default();
            format!("{}/s{over}", human_bytes(j.rate as u64))
        } else {
            String::new()
        };
        let eta = if in_motion && j.rate > 0 && total > done {
            human_duration((total - done) / j.rate as u64)
        } else {
            String::new()
        };
        let direction = match (j.kind, &j.recipient) {
            (JobKind::Download, Some(r)) => format!("to {r}"),
            (JobKind::Upload, _) => "upload to the appliance".to_owned(),
            (k, _) => k.to_string(),
        };
        JobRow {
            id: j.id,
            name: j.delivery_name.clone().unwrap_or_else(|| j.name.clone()),
            direction,
            status: j.status,
            fraction,
            progress: format!(
                "{} of {} · {}/{} files",
                human_bytes(done),
                human_bytes(total),
                j.files_done,
                j.files_total
            ),
            rate,
            eta,
            in_motion,
            error: j.error.clone(),
            allowed: j.actions.clone(),
        }
    }

    pub fn shown_in(&self, filter: Filter) -> bool {
        match filter {
            Filter::All => true,
            Filter::Finished => self.status == JobStatus::Done,
        }
    }

    /// The buttons for this job: the actions the appliance says this
    /// user may take now (its rulebook's answer, in the job itself), so the
    /// window never offers what would be refused. Priority and rate have
    /// their own controls.
    pub fn actions(&self) -> Vec<JobAction> {
        self.allowed
            .iter()
            .copied()
            .filter(|a| BUTTONS.contains(a))
            .collect()
    }

    /// Whether its files' priorities may be changed now.
    pub fn may_reprioritise(&self) -> bool {
        self.allowed.contains(&JobAction::Priority)
    }
}

/// Actions that are buttons, in the order they show.
const BUTTONS: [JobAction; 5] = [
    JobAction::Resume,
    JobAction::Pause,
    JobAction::Retry,
    JobAction::Abort,
    JobAction::Purge,
];

/// A job action's label on a button.
pub fn label(a: JobAction) -> &'static str {
    match a {
        JobAction::Pause => "Pause",
        JobAction::Resume => "Resume",
        JobAction::Abort => "Abort",
        JobAction::Retry => "Retry",
        JobAction::Purge => "Purge",
        JobAction::Priority => "Priority",
        JobAction::Rate => "Rate",
        JobAction::Urgent => "Urgent",
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub fn human_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str, len: usize) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, vec![0u8; len]).unwrap();
        p
    }

    #[test]
    fn dropped_frames_group_into_a_sequence_with_its_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = vec![touch(dir.path(), "review.mov", 10)];
        for f in (1001..=1010).filter(|f| !(1004..=1005).contains(f)) {
            paths.push(touch(dir.path(), &format!("sh010.{f}.exr"), 100));
        }
        let mut form = SendForm::default();
        assert!(form.add_paths(&paths, &Settings::default()).is_empty());
        assert_eq!(form.items.len(), 2, "{:?}", form.items);
        let seq = form
            .items
            .iter()
            .find(|i| i.label == "sh010.####.exr")
            .unwrap();
        assert_eq!(
            seq.detail(),
            "frames 1001-1010 (8 frames, 800 B, missing 1004-1005)"
        );
        assert_eq!(seq.priority, Priority::Normal);
        let mov = form.items.iter().find(|i| i.label == "review.mov").unwrap();
        assert_eq!(mov.priority, Priority::High, ".mov starts high");
        assert_eq!(form.name, form.items[0].label, "named after the first line");
        // Dropped again: nothing doubles.
        form.add_paths(&paths, &Settings::default());
        assert_eq!(form.items.len(), 2);
    }

    #[test]
    fn files_already_listed_are_not_listed_twice() {
        let dir = tempfile::tempdir().unwrap();
        let frames: Vec<PathBuf> = (1..=3)
            .map(|f| touch(dir.path(), &format!("a.{f:04}.exr"), 10))
            .collect();
        let mut form = SendForm::default();
        form.add_paths(&frames, &Settings::default());
        // One frame again, alone: already in the sequence line.
        form.add_paths(&frames[1..2], &Settings::default());
        let sub = dir.path().join("plates");
        std::fs::create_dir(&sub).unwrap();
        let inside = touch(&sub, "p.mov", 10);
        form.add_paths(std::slice::from_ref(&sub), &Settings::default());
        // A file inside a folder already on the list.
        form.add_paths(&[inside], &Settings::default());
        let files: Vec<&PathBuf> = form.items.iter().flat_map(|i| &i.files).collect();
        assert_eq!(files.len(), 4, "{files:?}");
        // Files inside the folder get the high extensions too.
        form.add_recipient("d@client.example").unwrap();
        form.share = Some("media".into());
        let req = form.request(&Settings::default()).unwrap();
        let rules = ferry_proto::PriorityRules::parse(&req.priorities).unwrap();
        let of = |p: &str| rules.of(&ferry_proto::SharePath::parse(p).unwrap());
        assert_eq!(of("plates/p.mov"), ferry_proto::Priority::HIGH);
        assert_eq!(of("a.0002.exr"), ferry_proto::Priority::DEFAULT);
    }

    #[test]
    fn settings_survive_a_restart_and_a_damaged_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desktop.toml");
        assert_eq!(Settings::load(&path), Settings::default());
        let s = Settings {
            high_extensions: vec!["mxf".into()],
            receive_into: Some(dir.path().join("in")),
            receiving: true,
        };
        s.save(&path).unwrap();
        assert_eq!(Settings::load(&path), s);
        std::fs::write(&path, "high_extensions = 3").unwrap();
        assert_eq!(Settings::load(&path), Settings::default());
    }

    #[test]
    fn the_high_extensions_are_a_setting() {
        let s = Settings {
            high_extensions: vec!["exr".into()],
            ..Default::default()
        };
        assert_eq!(s.default_priority("a.EXR"), Priority::High);
        assert_eq!(s.default_priority("a.mov"), Priority::Normal);
    }

    #[test]
    fn recipients_are_checked_deduplicated_and_completed() {
        let mut form = SendForm::default();
        form.add_recipient("ann@studio.example").unwrap();
        form.add_recipient("ANN@studio.example").unwrap();
        assert_eq!(form.recipients, ["ann@studio.example"]);
        assert_eq!(
            form.add_recipient("not an address"),
            Err(FormError::NotAnEmail("not an address".into()))
        );
        let known = vec![
            "ann@studio.example".to_owned(),
            "bob@studio.example".to_owned(),
            "director@client.example".to_owned(),
        ];
        form.recipient_input = "studio".into();
        assert_eq!(form.suggestions(&known), ["bob@studio.example"]);
    }

    #[test]
    fn the_request_carries_each_lines_priority_and_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let paths = vec![
            touch(dir.path(), "cut[v2].mov", 10),
            touch(dir.path(), "notes.pdf", 10),
            touch(dir.path(), "a.0001.exr", 10),
            touch(dir.path(), "a.0002.exr", 10),
        ];
        let mut form = SendForm::default();
        form.add_paths(&paths, &Settings::default());
        assert_eq!(
            form.request(&Settings::default()).unwrap_err(),
            FormError::NoRecipients
        );
        form.add_recipient("dir@client.example").unwrap();
        assert_eq!(
            form.request(&Settings::default()).unwrap_err(),
            FormError::NoDestination
        );
        form.share = Some("media".into());
        form.folder = "/20261127/review/".into();
        let seq = form
            .items
            .iter_mut()
            .find(|i| matches!(i.kind, ItemKind::Sequence { .. }))
            .unwrap();
        seq.priority = Priority::Low;
        let req = form.request(&Settings::default()).unwrap();
        assert_eq!(req.dest.as_deref(), Some("share=media/20261127/review/"));
        assert_eq!(req.recipients, ["dir@client.example"]);
        let rules = ferry_proto::PriorityRules::parse(&req.priorities).unwrap();
        let of = |p: &str| rules.of(&ferry_proto::SharePath::parse(p).unwrap());
        assert_eq!(of("cut[v2].mov"), ferry_proto::Priority::HIGH);
        assert!(of("cut[v2].mov") > of("notes.pdf"));
        assert!(of("a.0001.exr") < of("notes.pdf"));
        let names: Vec<&str> = req
            .paths
            .iter()
            .map(|p| p.rsplit('/').next().unwrap())
            .collect();
        // In name order, as the folder lists them.
        assert_eq!(
            names,
            ["a.0001.exr", "a.0002.exr", "cut[v2].mov", "notes.pdf"]
        );
    }

    fn job(status: JobStatus, done: i64, total: i64, rate: i64) -> JobInfo {
        JobInfo {
            id: 7,
            kind: JobKind::Download,
            name: "job".into(),
            status,
            owner: "me@studio.example".into(),
            recipient: Some("dir@client.example".into()),
            delivery: Some(1),
            delivery_name: Some("Review 27".into()),
            share: None,
            folder: String::new(),
            files_total: 3,
            files_done: 1,
            bytes_total: total,
            bytes_done: done,
            bytes_skipped: 0,
            rate,
            target_rate: None,
            pace: None,
            transport: None,
            retries: 0,
            error: None,
            created_at: 0,
            started_at: None,
            finished_at: None,
            next_retry_at: None,
            expires_at: None,
            urgent: false,
            // A recipient's view of their download.
            actions: match status {
                JobStatus::Running => vec![JobAction::Pause, JobAction::Priority, JobAction::Rate],
                JobStatus::Failed => vec![JobAction::Retry, JobAction::Priority, JobAction::Rate],
                _ => vec![],
            },
        }
    }

    #[test]
    fn rows_show_progress_rate_eta_and_the_actions_the_appliance_allows() {
        let row = JobRow::of(&job(
            JobStatus::Running,
            250_000_000,
            1_000_000_000,
            50_000_000,
        ));
        assert!(row.in_motion);
        assert_eq!(row.fraction, 0.25);
        assert_eq!(row.rate, "50.0 MB/s");
        assert_eq!(row.eta, "15 s");
        let mut over_tcp = job(JobStatus::Running, 250_000_000, 1_000_000_000, 50_000_000);
        over_tcp.transport = Some(ferry_proto::Transport::Tcp);
        assert_eq!(JobRow::of(&over_tcp).rate, "50.0 MB/s over tcp");
        assert_eq!(row.direction, "to dir@client.example");
        assert_eq!(row.name, "Review 27");
        // A recipient may pause their download, but neither abort nor
        // purge it: those buttons are not offered.
        assert_eq!(row.actions(), [JobAction::Pause]);
        assert!(row.may_reprioritise());
        assert!(!row.shown_in(Filter::Finished));
        let done = JobRow::of(&job(JobStatus::Done, 10, 10, 0));
        assert!(!done.in_motion && done.shown_in(Filter::Finished));
        assert_eq!(done.eta, "");
        assert!(done.actions().is_empty());
        assert_eq!(
            JobRow::of(&job(JobStatus::Failed, 0, 10, 0)).actions(),
            [JobAction::Retry]
        );
    }
}
