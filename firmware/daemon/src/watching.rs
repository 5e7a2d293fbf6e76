//! Watch folders at work: each watch looks at its folder when inotify says
//! something changed there, when an entry's settle time is up, and every
//! rescan period anyway (network filesystems send no inotify events), and
//! delivers each new entry once it has settled.
//!
//! What "settled" means is the domain's ([`ferry_domain::watch`]); what a
//! delivery is and how it is remembered is the watches service's; how a
//! folder is read is the engine's ([`ferry_engine::watchdir`]). Entries
//! the watch remembers are not walked, so a folder holding a hundred
//! thousand delivered files costs one `stat` per top-level entry at each
//! look.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_domain::node::Singleton;
use ferry_domain::watch::{Readiness, Seen, Settling, WatchSpec};
use ferry_engine::watchdir::look;
use ferry_store::{Watch, WatchId};
use ferryd_core::Services;
use ferryd_core::watches::{WatchesError, spec_of};
use notify::Watcher;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Runs every watch. When watches are added, changed or removed, only
/// those watchers start or stop: the others keep their settle clocks.
pub async fn run(services: Services, rescan: Duration, shutdown: CancellationToken) {
    let mut changes = services.watches.subscribe();
    let mut running: HashMap<WatchId, (Option<WatchSpec>, CancellationToken)> = HashMap::new();
    let heartbeat = Duration::from_secs(ferry_domain::node::HEARTBEAT as u64);
    loop {
        changes.borrow_and_update();
        // One node follows the watch folders; the others stand by, and
        // one that loses its hold (it was taken for silent) stops its own.
        if !services.nodes.hold(Singleton::Watches).await {
            for (_, (_, stop)) in running.drain() {
                stop.cancel();
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                () = tokio::time::sleep(heartbeat) => {}
                () = shutdown.cancelled() => return,
            }
            continue;
        }
        match services.watches.all().await {
            Ok(watches) => {
                let now: HashMap<WatchId, Option<WatchSpec>> =
                    watches.iter().map(|w| (w.id, spec_of(w).ok())).collect();
                running.retain(|id, (spec, stop)| {
                    let same = now.get(id) == Some(spec);
                    if !same {
                        stop.cancel();
                    }
                    same
                });
                for w in watches {
                    if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(w.id) {
                        let stop = shutdown.child_token();
                        slot.insert((spec_of(&w).ok(), stop.clone()));
                        tokio::spawn(watch_one(services.clone(), w, rescan, stop));
                    }
                }
            }
            Err(e) => log::error!("cannot read the watch folders: {e}"),
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            () = tokio::time::sleep(heartbeat) => {}
            () = shutdown.cancelled() => return,
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
    // Until its folder is there and it has taken its baseline, it waits:
    // looking without a baseline would deliver what was there already.
    let folder = loop {
        let ready = match services.watches.folder(&spec).await {
            Ok(f) => services.watches.take_baseline(&w, &spec).await.map(|()| f),
            Err(e) => Err(e),
        };
        match ready {
            Ok(f) => break f,
            Err(e) => log::warn!("watch on {}: {e}; trying again in a minute", w.folder),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
            () = stop.cancelled() => return,
        }
    };
    let wake = Arc::new(Notify::new());
    // Setting up a recursive inotify watch walks the whole tree: not on an
    // async worker. Kept for as long as the watch runs; dropping it stops
    // inotify.
    let _inotify = {
        let (folder, wake, label) = (folder.clone(), wake.clone(), w.folder.clone());
        tokio::task::spawn_blocking(move || inotify(&folder, wake, &label))
            .await
            .unwrap_or_else(|e| {
                log::error!("watch on {}: setting up inotify failed: {e}", w.folder);
                None
            })
    };
    let mut watcher = Watching {
        services: services.clone(),
        settle: Duration::from_secs(spec.settle_secs),
        spec,
        w,
        folder,
        known: Arc::default(),
        settling: Settling::new(),
        failed: HashMap::new(),
        began: Instant::now(),
    };
    loop {
        match watcher.start().await {
            Ok(()) => break,
            Err(e) => log::error!(
                "watch on {}: {e}; trying again in a minute",
                watcher.w.folder
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
            () = stop.cancelled() => return,
        }
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
    /// Shared with the blocking look without a copy.
    known: Arc<HashMap<String, String>>,
    settling: Settling,
    /// Entries whose delivery failed: what they held then, and when.
    failed: HashMap<String, (Vec<Seen>, Instant)>,
    began: Instant,
}

impl Watching {
    /// Reads what the watch remembers (its baseline is taken by then).
    async fn start(&mut self) -> Result<(), WatchesError> {
        self.known = Arc::new(
            self.services
                .watches
                .remembered(self.w.id)
                .await?
                .into_iter()
                .map(|e| (e.identity, e.path))
                .collect(),
        );
        Ok(())
    }

    /// Looks at the folder once and delivers what settled. Returns how
    /// soon the next entry may be ready, if one is settling.
    async fn look(&mut self) -> Option<Duration> {
        let known = self.known.clone();
        let (folder, mode) = (self.folder.clone(), self.spec.mode);
        let found = match tokio::task::spawn_blocking(move || {
            look(&folder, mode, |id| known.contains_key(id))
        })
        .await
        {
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
                    Arc::make_mut(&mut self.known).insert(identity.to_owned(), name.to_owned());
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
                Arc::make_mut(&mut self.known).insert(identity.to_owned(), name.to_owned());
                self.settling.forget(identity);
            }
            Err(WatchesError::Delivery(ferryd_core::deliveries::DeliveriesError::Store(
                ferry_store::StoreError::Conflict(_),
            ))) => {
                log::info!("watch on {}: {name:?} was delivered already", self.w.folder);
                Arc::make_mut(&mut self.known).insert(identity.to_owned(), name.to_owned());
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
