//! Watch folders at work: each watch looks at its folder when inotify says
//! something changed there, when an entry's settle time is up, and every
//! rescan period anyway (network filesystems send no inotify events), and
//! delivers each new entry once it has settled.
//!
//! What "settled" means is the domain's ([`ferry_domain::watch`]); what a
//! delivery is and how it is remembered is the watches service's. This
//! module reads the disk: the top level of the folder, the identity of
//! each entry (device, inode, birth time, so a rename is not a new entry),
//! and, for entries not delivered yet, every file's size and mtime.
//! Entries the watch remembers are not walked, so a folder holding a
//! hundred thousand delivered files costs one `stat` per top-level entry
//! at each look.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_domain::watch::{self, Mode, Readiness, Seen, Settling, WatchSpec};
use ferry_store::Watch;
use ferryd_core::Services;
use ferryd_core::watches::{WatchesError, spec_of};
use notify::Watcher;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Runs every watch, and starts them over when watches are added or
/// removed.
pub async fn run(services: Services, rescan: Duration, shutdown: CancellationToken) {
    let mut changes = services.watches.subscribe();
    loop {
        changes.borrow_and_update();
        let round = shutdown.child_token();
        match services.watches.all().await {
            Ok(watches) => {
                for w in watches {
                    tokio::spawn(watch_one(services.clone(), w, rescan, round.clone()));
                }
            }
            Err(e) => log::error!("cannot read the watch folders: {e}"),
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            () = shutdown.cancelled() => return,
        }
        round.cancel();
    }
}

/// One top-level entry as seen now.
#[derive(Debug)]
struct Found {
    name: String,
    identity: String,
    /// Its files, for an entry the watch does not remember yet.
    files: Option<Vec<Seen>>,
}

/// Who an entry is on disk: the same across a rename, different for a new
/// entry even if an old inode number is reused (the birth time differs,
/// where the filesystem keeps one).
fn identity(m: &std::fs::Metadata) -> String {
    let born = m
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{}:{}:{born}", m.dev(), m.ino())
}

/// The entries at the top of `folder` (folders or files, by `mode`;
/// temporary names left out), with the files of those not in `known`.
fn look(folder: &Path, mode: Mode, known: &HashSet<String>) -> std::io::Result<Vec<Found>> {
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
        let files = if known.contains(&identity) {
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

/// Today in the appliance's time zone, for `{date}`.
fn today() -> String {
    jiff::ZonedDateTime::now().date().to_string()
}

/// How long an entry whose delivery failed waits before it is tried
/// again, unless it changes first.
const RETRY_FAILED: Duration = Duration::from_secs(600);
/// Events come in bursts (a file written in many pieces): the watch looks
/// once the burst has quieted this long.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// One watch, until `stop`.
async fn watch_one(services: Services, w: Watch, rescan: Duration, stop: CancellationToken) {
    let spec = match spec_of(&w) {
        Ok(s) => s,
        Err(e) => {
            log::error!(
                "the watch on {} does not read: {e}; it is not run",
                w.folder
            );
            return;
        }
    };
    let folder = loop {
        match services.watches.folder(&spec).await {
            Ok(f) if f.is_dir() => break f,
            Ok(f) => log::warn!(
                "watch on {}: {} is not a folder; looking again in a minute",
                w.folder,
                f.display()
            ),
            Err(e) => log::warn!("watch on {}: {e}; looking again in a minute", w.folder),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
            () = stop.cancelled() => return,
        }
    };
    let wake = Arc::new(Notify::new());
    // Kept alive for as long as the watch runs; dropping it stops inotify.
    let _inotify = inotify(&folder, wake.clone(), &w.folder);
    let mut watcher = Watching {
        services: services.clone(),
        settle: Duration::from_secs(spec.settle_secs),
        spec,
        w,
        folder,
        known: HashMap::new(),
        settling: Settling::new(),
        failed: HashMap::new(),
        began: Instant::now(),
    };
    if let Err(e) = watcher.start().await {
        log::error!("watch on {}: {e}", watcher.w.folder);
        return;
    }
    loop {
        let next = watcher.look().await;
        let until = next.map_or(rescan, |n| n.min(rescan));
        tokio::select! {
            () = wake.notified() => {
                // Let the burst finish.
                tokio::time::sleep(DEBOUNCE).await;
            }
            () = tokio::time::sleep(until) => {}
            () = stop.cancelled() => {
                services.watches.set_pending(&watcher.w, 0);
                return;
            }
        }
    }
}

/// Wakes `wake` on any change beneath `folder` but reads. `None` when
/// inotify cannot watch it (too many watches, a filesystem without it):
/// rescans still find everything, later.
fn inotify(folder: &Path, wake: Arc<Notify>, label: &str) -> Option<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(e) if matches!(e.kind, notify::EventKind::Access(_)) => {}
        // An error (an overflowed queue among them) means events were
        // missed: look.
        _ => wake.notify_one(),
    };
    let made = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(folder, notify::RecursiveMode::Recursive)?;
        Ok(w)
    });
    match made {
        Ok(w) => Some(w),
        Err(e) => {
            log::warn!("watch on {label}: no inotify ({e}); finding changes by rescans only");
            None
        }
    }
}

struct Watching {
    services: Services,
    w: Watch,
    spec: WatchSpec,
    settle: Duration,
    folder: PathBuf,
    /// Entries remembered (delivered, or there before the watch began):
    /// identity → name.
    known: HashMap<String, String>,
    settling: Settling,
    /// Entries whose delivery failed: what they held then, and when.
    failed: HashMap<String, (Vec<Seen>, Instant)>,
    began: Instant,
}

impl Watching {
    /// Reads what the watch remembers; a new watch first remembers what
    /// lies in its folder already, so only what arrives is delivered.
    async fn start(&mut self) -> Result<(), WatchesError> {
        if !self.w.baselined {
            let (folder, mode) = (self.folder.clone(), self.spec.mode);
            let present = tokio::task::spawn_blocking(move || {
                look(&folder, mode, &HashSet::new()).map(|found| {
                    found
                        .into_iter()
                        .map(|f| (f.identity, f.name))
                        .collect::<Vec<_>>()
                })
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            match present {
                Ok(present) => {
                    log::info!(
                        "watch on {}: {} entries there already are not delivered; new ones will be",
                        self.w.folder,
                        present.len()
                    );
                    self.services.watches.baseline(self.w.id, &present).await?;
                }
                Err(e) => log::warn!("watch on {}: reading the folder: {e}", self.w.folder),
            }
        }
        self.known = self
            .services
            .watches
            .remembered(self.w.id)
            .await?
            .into_iter()
            .map(|e| (e.identity, e.path))
            .collect();
        Ok(())
    }

    /// Looks at the folder once and delivers what settled. Returns how
    /// soon the next entry may be ready, if one is settling.
    async fn look(&mut self) -> Option<Duration> {
        let known: HashSet<String> = self.known.keys().cloned().collect();
        let (folder, mode) = (self.folder.clone(), self.spec.mode);
        let found = match tokio::task::spawn_blocking(move || look(&folder, mode, &known)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                log::warn!("watch on {}: reading the folder: {e}", self.w.folder);
                return None;
            }
            Err(e) => {
                log::error!("watch on {}: the look failed: {e}", self.w.folder);
                return None;
            }
        };
        let now = Instant::now();
        let now_ms = now.duration_since(self.began).as_millis() as i64;
        let settle_ms = self.settle.as_millis() as i64;
        let mut next: Option<Duration> = None;
        let mut waiting = HashSet::new();
        for f in found {
            let Some(files) = f.files else {
                self.renamed(&f.identity, &f.name).await;
                continue;
            };
            waiting.insert(f.identity.clone());
            match self
                .settling
                .observe(&f.identity, files.clone(), settle_ms, now_ms)
            {
                Readiness::Ready => {}
                Readiness::Settling { ready_at_ms } => {
                    let wait = Duration::from_millis((ready_at_ms - now_ms).max(0) as u64);
                    next = Some(next.map_or(wait, |n| n.min(wait)));
                    continue;
                }
                Readiness::Empty | Readiness::Writing(_) => continue,
            }
            if let Some((held, at)) = self.failed.get(&f.identity)
                && *held == files
                && now.duration_since(*at) < RETRY_FAILED
            {
                continue;
            }
            self.deliver(&f.name, &f.identity, files, now).await;
        }
        self.settling.keep_only(&waiting);
        self.failed.retain(|id, _| waiting.contains(id));
        self.services
            .watches
            .set_pending(&self.w, self.settling.pending_files());
        next
    }

    async fn renamed(&mut self, identity: &str, name: &str) {
        if self.known.get(identity).is_some_and(|n| n != name) {
            log::info!(
                "watch on {}: {:?} is now {name:?}; it was delivered or there before, so it is not delivered again",
                self.w.folder,
                self.known[identity]
            );
            match self
                .services
                .watches
                .renamed(self.w.id, identity, name)
                .await
            {
                Ok(()) => {
                    self.known.insert(identity.to_owned(), name.to_owned());
                }
                Err(e) => log::error!("watch on {}: remembering a rename: {e}", self.w.folder),
            }
        }
    }

    async fn deliver(&mut self, name: &str, identity: &str, files: Vec<Seen>, now: Instant) {
        match self
            .services
            .watches
            .deliver(&self.w, &self.spec, name, identity, &today())
            .await
        {
            Ok(made) => {
                log::info!(
                    "watch on {}: {name:?} settled ({} files) and is delivery {}",
                    self.w.folder,
                    files.len(),
                    made.delivery
                );
                self.known.insert(identity.to_owned(), name.to_owned());
                self.settling.forget(identity);
            }
            Err(WatchesError::Delivery(ferryd_core::deliveries::DeliveriesError::Store(
                ferry_store::StoreError::Conflict(_),
            ))) => {
                log::info!("watch on {}: {name:?} was delivered already", self.w.folder);
                self.known.insert(identity.to_owned(), name.to_owned());
                self.settling.forget(identity);
            }
            Err(e) => {
                log::error!(
                    "watch on {}: {name:?} could not be delivered: {e}; trying again when it changes or in {} min",
                    self.w.folder,
                    RETRY_FAILED.as_secs() / 60
                );
                self.failed.insert(identity.to_owned(), (files, now));
            }
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
        let known: HashSet<String> = [old.clone()].into();
        let mut found = look(root, Mode::Folder, &known).unwrap();
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
        let files = look(root, Mode::File, &HashSet::new()).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "loose.mov");
    }
}
