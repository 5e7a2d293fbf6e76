//! File IO for transfers.
//!
//! Senders read chunks from sources: local files (the client) or files
//! beneath a share root (the appliance). Receivers write chunks into
//! `NAME.ferry-part` beneath the destination root, keep the resume state in
//! `NAME.ferry-state`, and move a file to its final name only once every
//! chunk is verified and the data is on disk. A reader never sees a half
//! file under a final name.
//!
//! Everything on the appliance side is opened through a `cap_std::fs::Dir`
//! for the share root, so no path and no symlink can lead outside it.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cap_std::fs::{Dir, OpenOptions};
use ferry_proto::path::{PART_SUFFIX, STATE_SUFFIX};
use ferry_proto::session::LocalState;
use ferry_proto::{ChunkBitmap, ChunkLayout, Digest, FileId, PlanFile, Priority, SharePath};

use crate::error::EngineError;
use crate::share::ShareRoot;

/// Where a file to send comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A file on the local machine, named by the user.
    Local(PathBuf),
    /// A file beneath a share root on the appliance.
    Share { root: Arc<Dir>, path: SharePath },
}

/// A file to send, with the facts that go into the plan.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Destination path, relative to the transfer's destination folder.
    pub path: SharePath,
    pub origin: Origin,
    pub size: u64,
    pub mtime_ns: i64,
    pub priority: Priority,
    /// The file's digest (BLAKE3 over its chunk digests), when the sender
    /// knows it already: a receiver's claim to hold the file is checked
    /// against it without reading the file here.
    pub digest: Option<Digest>,
}

impl SourceFile {
    /// Our own digests of some of this file's chunks (a receiver claims to
    /// hold them), read from the source.
    pub fn chunk_digests(
        &self,
        layout: ChunkLayout,
        chunks: &[u32],
    ) -> Result<Vec<(u32, Digest)>, EngineError> {
        let file = self.open()?;
        let mut out = Vec::with_capacity(chunks.len());
        for &i in chunks {
            let len = layout
                .chunk_len(self.size, i)
                .ok_or_else(|| EngineError::SourceChanged {
                    path: self.path.to_string(),
                })?;
            let bytes = read_piece(&file, layout.offset(i), len as usize, &self.path)?;
            out.push((i, Digest::of_chunk(&bytes)));
        }
        Ok(out)
    }

    /// Opens the source and checks it is still the file that was planned.
    pub fn open(&self) -> Result<File, EngineError> {
        let file = match &self.origin {
            Origin::Local(p) => File::open(p).map_err(|e| EngineError::io(p.display(), e))?,
            Origin::Share { root, path } => root
                .open(path.as_str())
                .map_err(|e| EngineError::io(path, e))?
                .into_std(),
        };
        let meta = file
            .metadata()
            .map_err(|e| EngineError::io(&self.path, e))?;
        if meta.len() != self.size || mtime_ns(&meta) != self.mtime_ns {
            return Err(EngineError::SourceChanged {
                path: self.path.to_string(),
            });
        }
        Ok(file)
    }
}

pub(crate) fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified().ok().map(system_time_ns).unwrap_or(0)
}

pub(crate) fn system_time_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

fn ns_system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

use ferry_proto::path::is_working_name;

/// Lists local files and folders to send. A file goes as its name; a folder
/// goes as itself with everything beneath it. Symlinks to files are
/// followed (the user named them); symlinked folders are not descended, so
/// a loop cannot trap the walk.
pub fn plan_local(
    paths: &[PathBuf],
    priority: &dyn Fn(&SharePath) -> Priority,
) -> Result<Vec<SourceFile>, EngineError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| EngineError::io(p.display(), e))?;
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| EngineError::Io {
                path: p.display().to_string(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "name is not UTF-8"),
            })?;
        let dest = SharePath::parse(name).map_err(|e| EngineError::Io {
            path: p.display().to_string(),
            source: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
        })?;
        if meta.is_dir() {
            walk_local(p, &dest, priority, &mut out)?;
        } else {
            out.push(SourceFile {
                priority: priority(&dest),
                path: dest,
                origin: Origin::Local(p.clone()),
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
                digest: None,
            });
        }
    }
    Ok(out)
}

fn walk_local(
    dir: &Path,
    dest: &SharePath,
    priority: &dyn Fn(&SharePath) -> Priority,
    out: &mut Vec<SourceFile>,
) -> Result<(), EngineError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| EngineError::io(dir.display(), e))?
        .collect::<Result<_, _>>()
        .map_err(|e| EngineError::io(dir.display(), e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            log::warn!("skipping {}: name is not UTF-8", path.display());
            continue;
        };
        if is_working_name(&name) {
            continue;
        }
        let child = dest.child(&name).map_err(|e| EngineError::Io {
            path: path.display().to_string(),
            source: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
        })?;
        let kind = entry
            .file_type()
            .map_err(|e| EngineError::io(path.display(), e))?;
        if kind.is_dir() {
            walk_local(&path, &child, priority, out)?;
        } else {
            let meta = std::fs::metadata(&path).map_err(|e| EngineError::io(path.display(), e))?;
            if meta.is_file() {
                out.push(SourceFile {
                    priority: priority(&child),
                    path: child,
                    origin: Origin::Local(path),
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                    digest: None,
                });
            }
        }
    }
    Ok(())
}

/// Lists a file or folder beneath a share root to send. The destination
/// names start at the file or folder's own name, except for the share's
/// root, whose contents go directly into the destination.
pub fn plan_share(
    root: &ShareRoot,
    path: &SharePath,
    priority: &dyn Fn(&SharePath) -> Priority,
) -> Result<Vec<SourceFile>, EngineError> {
    // What the destination names are relative to: the parent of what was
    // named, so a folder arrives as itself; the root as its contents.
    let base = if path.is_root() {
        SharePath::root()
    } else {
        path.parent().unwrap_or_default()
    };
    let files = root.files_beneath(path)?;
    Ok(files
        .into_iter()
        .filter_map(|f| {
            let dest = f.path.strip_prefix(&base)?;
            Some(SourceFile {
                priority: priority(&dest),
                path: dest,
                origin: Origin::Share {
                    root: root.dir().clone(),
                    path: f.path,
                },
                size: f.size,
                mtime_ns: f.mtime_ns,
                digest: None,
            })
        })
        .collect())
}

/// Orders sources highest priority first (stable, so equal priorities keep
/// their listing order) and numbers them, giving the plan.
pub fn make_plan(files: Vec<SourceFile>) -> (Vec<SourceFile>, Vec<PlanFile>) {
    plan_batch(files, 0)
}

/// Like [`make_plan`], for files added to an open plan: numbering
/// continues from `first_id`.
pub fn plan_batch(mut files: Vec<SourceFile>, first_id: u32) -> (Vec<SourceFile>, Vec<PlanFile>) {
    files.sort_by_key(|f| std::cmp::Reverse(f.priority));
    let plan = files
        .iter()
        .enumerate()
        .map(|(i, f)| PlanFile {
            id: FileId(first_id + i as u32),
            path: f.path.clone(),
            size: f.size,
            mtime_ns: f.mtime_ns,
            priority: f.priority,
        })
        .collect();
    (files, plan)
}

/// Reads `len` bytes at `offset`; a short read means the file shrank.
/// The buffer is filled straight from the file, never zeroed first.
pub fn read_piece(
    file: &File,
    offset: u64,
    len: usize,
    path: &SharePath,
) -> Result<Bytes, EngineError> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut reader = file;
    reader
        .seek(SeekFrom::Start(offset))
        .map_err(|e| EngineError::io(path, e))?;
    let mut buf = Vec::with_capacity(len);
    reader
        .take(len as u64)
        .read_to_end(&mut buf)
        .map_err(|e| EngineError::io(path, e))?;
    if buf.len() < len {
        return Err(EngineError::SourceChanged {
            path: path.to_string(),
        });
    }
    Ok(Bytes::from(buf))
}

/// The extended attribute that keeps a received file's digest beside it,
/// so a later session can prove it holds the file without reading it.
const DIGEST_ATTR: &str = "user.ferry.digest";

/// Keeps a committed file's digest in its extended attributes. A
/// filesystem without them only costs a later proof a read of the file.
fn record_digest(file: &File, digest: Digest) {
    use xattr::FileExt as _;
    if let Err(e) = file.set_xattr(DIGEST_ATTR, &digest.0) {
        log::debug!("cannot keep a file's digest in its attributes: {e}");
    }
}

/// The digest kept with a file, if any.
fn recorded_digest(file: &File) -> Option<Digest> {
    use xattr::FileExt as _;
    let bytes = file.get_xattr(DIGEST_ATTR).ok()??;
    let raw: [u8; 32] = bytes.try_into().ok()?;
    Some(Digest(raw))
}

/// The extended attribute that keeps a file's plain BLAKE3 (of its whole
/// contents, as b3sum computes it) with the size and time it was taken
/// at: a delivery's manifest reads a file once, not once per recipient.
const CONTENT_ATTR: &str = "user.ferry.blake3";

/// The BLAKE3 of a file's whole contents (b3sum's), `size` bytes last
/// modified at `mtime_ns`: kept in its attributes, or read from it and
/// then kept. A filesystem without attributes only costs a read each time.
pub fn content_digest(file: &File, size: u64, mtime_ns: i64) -> io::Result<blake3::Hash> {
    use xattr::FileExt as _;
    let stamp = |digest: &[u8; 32]| {
        let mut v = digest.to_vec();
        v.extend_from_slice(&size.to_le_bytes());
        v.extend_from_slice(&mtime_ns.to_le_bytes());
        v
    };
    if let Ok(Some(kept)) = file.get_xattr(CONTENT_ATTR)
        && kept.len() == 48
        && let Ok(digest) = <[u8; 32]>::try_from(&kept[..32])
        && kept == stamp(&digest)
    {
        return Ok(blake3::Hash::from_bytes(digest));
    }
    let mut hasher = blake3::Hasher::new();
    let mut reader = file;
    hasher.update_reader(&mut reader)?;
    let digest = hasher.finalize();
    if let Err(e) = file.set_xattr(CONTENT_ATTR, &stamp(digest.as_bytes())) {
        log::debug!("cannot keep a file's BLAKE3 in its attributes: {e}");
    }
    Ok(digest)
}

/// A file's digest, read from it: BLAKE3 over its chunks' digests.
pub fn file_digest(
    file: &File,
    layout: ChunkLayout,
    size: u64,
    path: &SharePath,
) -> Result<Digest, EngineError> {
    let mut chunks = Vec::new();
    for i in 0..layout.chunk_count(size) as u32 {
        let len = layout.chunk_len(size, i).unwrap_or(0);
        let bytes = read_piece(file, layout.offset(i), len as usize, path)?;
        chunks.push(Digest::of_chunk(&bytes));
    }
    Ok(Digest::of_file(&chunks))
}

// ------------------------------------------------------------------ sink

/// A destination: a folder beneath a root that files are received into.
#[derive(Debug, Clone)]
pub struct Sink {
    root: Arc<Dir>,
    base: SharePath,
    /// Shown in messages: where the root is (a share name or a local folder).
    label: String,
}

/// A part file being written.
#[derive(Debug)]
pub struct PartFile {
    file: File,
    /// Set once the file is committed. Checkpoints and the commit take this
    /// lock, so a checkpoint that started before the commit cannot write a
    /// state file beside the finished file after it.
    committed: std::sync::Mutex<bool>,
}

impl PartFile {
    /// Writes `data` at `offset`.
    pub fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    /// How many bytes it holds. For a part written only by appending (a
    /// browser's resumable upload, never reserved ahead), that is how far
    /// the upload has come.
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Cuts it back to `len` bytes (what was appended and then refused).
    pub fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    /// Makes what it holds durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Its digest as a file of `size` bytes, read from it (the same digest
    /// a QUIC session's chunks make: BLAKE3 over the chunks' digests).
    pub fn digest(&self, size: u64, path: &SharePath) -> Result<Digest, EngineError> {
        file_digest(&self.file, ChunkLayout::default(), size, path)
    }
}

const STATE_MAGIC: &[u8; 4] = b"FRYS";
const STATE_VERSION: u32 = 1;

/// What a state file says, and whether it still applies to the plan.
struct SavedState {
    size: u64,
    mtime_ns: i64,
    chunk_size: u32,
    have: ChunkBitmap,
    digests: Vec<Digest>,
}

impl SavedState {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.have.as_bytes().len() + 32 * self.digests.len());
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&STATE_VERSION.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.mtime_ns.to_le_bytes());
        out.extend_from_slice(&self.chunk_size.to_le_bytes());
        out.extend_from_slice(&self.have.len().to_le_bytes());
        out.extend_from_slice(self.have.as_bytes());
        for i in self.have.present() {
            out.extend_from_slice(&self.digests[i as usize].0);
        }
        let check = blake3::hash(&out);
        out.extend_from_slice(check.as_bytes());
        out
    }

    /// Decodes a state file; `None` for anything torn, foreign or corrupt.
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (body, check) = bytes.split_at(bytes.len().checked_sub(32)?);
        if blake3::hash(body).as_bytes() != check {
            return None;
        }
        let mut r = body;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = r.split_at_checked(n)?;
            r = tail;
            Some(head)
        };
        if take(4)? != STATE_MAGIC || u32::from_le_bytes(take(4)?.try_into().ok()?) != STATE_VERSION
        {
            return None;
        }
        let size = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let mtime_ns = i64::from_le_bytes(take(8)?.try_into().ok()?);
        let chunk_size = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let len = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let have = ChunkBitmap::from_bytes(len, take((len as usize).div_ceil(8))?.to_vec()).ok()?;
        let mut digests = vec![Digest::default(); len as usize];
        for i in have.present() {
            digests[i as usize] = Digest(take(32)?.try_into().ok()?);
        }
        Some(SavedState {
            size,
            mtime_ns,
            chunk_size,
            have,
            digests,
        })
    }
}

impl Sink {
    /// Receives into `base` beneath `root`.
    pub fn new(root: Dir, base: SharePath, label: impl Into<String>) -> Self {
        Sink {
            root: Arc::new(root),
            base,
            label: label.into(),
        }
    }

    /// Opens a local folder (the client's download folder) as a sink,
    /// creating it if needed.
    pub fn local(dir: &Path) -> Result<Self, EngineError> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir.display(), e))?;
        let root = Dir::open_ambient_dir(dir, cap_std::ambient_authority())
            .map_err(|e| EngineError::io(dir.display(), e))?;
        Ok(Sink::new(
            root,
            SharePath::root(),
            dir.display().to_string(),
        ))
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The final path of a planned file, relative to the root.
    pub fn final_path(&self, file: &SharePath) -> Result<SharePath, EngineError> {
        self.base.join(file).map_err(|e| EngineError::Io {
            path: file.to_string(),
            source: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
        })
    }

    /// A string that identifies the final file across sessions (for
    /// claims): the root's identity and the relative path.
    pub fn claim_key(&self, file: &SharePath) -> Result<String, EngineError> {
        let meta = self
            .root
            .dir_metadata()
            .map_err(|e| EngineError::io(&self.label, e))?;
        use cap_std::fs::MetadataExt;
        Ok(format!(
            "{}:{}/{}",
            meta.dev(),
            meta.ino(),
            self.final_path(file)?
        ))
    }

    fn part_name(final_path: &SharePath) -> String {
        format!("{}{PART_SUFFIX}", final_path.as_str())
    }

    fn state_name(final_path: &SharePath) -> String {
        format!("{}{STATE_SUFFIX}", final_path.as_str())
    }

    /// Removes a file's part and resume state, if any (an upload given up).
    pub fn remove_part(&self, file: &SharePath) -> Result<(), EngineError> {
        let final_path = self.final_path(file)?;
        for name in [Self::part_name(&final_path), Self::state_name(&final_path)] {
            match self.root.remove_file(&name) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(EngineError::io(&final_path, e)),
            }
        }
        Ok(())
    }

    /// Total and available bytes on the destination filesystem.
    pub fn capacity(&self) -> Option<(u64, u64)> {
        let st = nix::sys::statvfs::fstatvfs(&*self.root).ok()?;
        let frsize = st.fragment_size() as u64;
        Some((
            st.blocks() as u64 * frsize,
            st.blocks_available() as u64 * frsize,
        ))
    }

    /// What is already here of a planned file.
    pub fn local_state(
        &self,
        plan: &PlanFile,
        layout: ChunkLayout,
    ) -> Result<LocalState, EngineError> {
        let final_path = self.final_path(&plan.path)?;
        match self.root.metadata(final_path.as_str()) {
            Ok(meta) if meta.is_file() => {
                let mtime = meta
                    .modified()
                    .ok()
                    .map(|t| system_time_ns(t.into_std()))
                    .unwrap_or(0);
                if meta.len() == plan.size && mtime == plan.mtime_ns {
                    let file = self
                        .root
                        .open(final_path.as_str())
                        .map_err(|e| EngineError::io(&final_path, e))?
                        .into_std();
                    let digest = match recorded_digest(&file) {
                        Some(d) => d,
                        // Not written by Ferry (or the filesystem keeps no
                        // attributes): the proof is made by reading it.
                        None => file_digest(&file, layout, plan.size, &plan.path)?,
                    };
                    return Ok(LocalState::Complete(digest));
                }
            }
            Ok(meta) if meta.is_dir() => {
                return Err(EngineError::Io {
                    path: final_path.to_string(),
                    source: io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a folder of that name is in the way",
                    ),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io(&final_path, e)),
        }
        let saved = match self.root.read(Self::state_name(&final_path)) {
            Ok(bytes) => SavedState::decode(&bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(EngineError::io(&final_path, e)),
        };
        let part_len = self
            .root
            .metadata(Self::part_name(&final_path))
            .map(|m| m.len())
            .ok();
        match saved {
            Some(s)
                if s.size == plan.size
                    && s.mtime_ns == plan.mtime_ns
                    && s.chunk_size == layout.chunk_size
                    && u64::from(s.have.len()) == layout.chunk_count(plan.size)
                    && part_len == Some(plan.size) =>
            {
                Ok(LocalState::Partial {
                    have: s.have,
                    digests: s.digests,
                })
            }
            _ => Ok(LocalState::Nothing),
        }
    }

    /// Opens the part file of a planned file for writing, creating folders
    /// on the way. `fresh` starts it over (no usable resume state); the
    /// whole size is reserved up front so a full disk shows now, not at
    /// 90 %.
    pub fn open_part(&self, plan: &PlanFile, fresh: bool) -> Result<PartFile, EngineError> {
        let final_path = self.final_path(&plan.path)?;
        if let Some(parent) = final_path.parent()
            && !parent.is_root()
        {
            self.root.create_dir_all(parent.as_str()).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    EngineError::Io {
                        path: parent.to_string(),
                        source: io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            "a file or a link that leads elsewhere is in the way of this folder",
                        ),
                    }
                } else {
                    EngineError::io(&parent, e)
                }
            })?;
        }
        let part = Self::part_name(&final_path);
        if fresh {
            // A stale state file must never describe new data.
            match self.root.remove_file(Self::state_name(&final_path)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(EngineError::io(&final_path, e)),
            }
        }
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(fresh);
        let file = self
            .root
            .open_with(&part, &opts)
            .map_err(|e| EngineError::io(&final_path, e))?
            .into_std();
        if fresh && plan.size > 0 {
            reserve(&file, plan.size).map_err(|e| EngineError::io(&final_path, e))?;
        }
        Ok(PartFile {
            file,
            committed: std::sync::Mutex::new(false),
        })
    }

    /// Makes the written chunks durable, then records them as held. The
    /// order matters: a state file must never claim data that is not on disk.
    pub fn checkpoint(
        &self,
        plan: &PlanFile,
        layout: ChunkLayout,
        part: &PartFile,
        have: &ChunkBitmap,
        digests: &[Digest],
    ) -> Result<(), EngineError> {
        let final_path = self.final_path(&plan.path)?;
        let committed = part.committed.lock().unwrap_or_else(|e| e.into_inner());
        if *committed {
            return Ok(());
        }
        part.file
            .sync_data()
            .map_err(|e| EngineError::io(&final_path, e))?;
        let state = SavedState {
            size: plan.size,
            mtime_ns: plan.mtime_ns,
            chunk_size: layout.chunk_size,
            have: have.clone(),
            digests: digests.to_vec(),
        }
        .encode();
        let name = Self::state_name(&final_path);
        let tmp = format!("{name}.new");
        let mut f = self
            .root
            .create(&tmp)
            .map_err(|e| EngineError::io(&final_path, e))?;
        f.write_all(&state)
            .map_err(|e| EngineError::io(&final_path, e))?;
        f.sync_data().map_err(|e| EngineError::io(&final_path, e))?;
        self.root
            .rename(&tmp, &self.root, &name)
            .map_err(|e| EngineError::io(&final_path, e))?;
        drop(committed);
        Ok(())
    }

    /// Moves a verified file into place: data to disk, the source's
    /// modification time, an atomic rename over any older version, then
    /// the working files go.
    pub fn commit(
        &self,
        plan: &PlanFile,
        part: Option<&PartFile>,
        digest: Digest,
    ) -> Result<(), EngineError> {
        let final_path = self.final_path(&plan.path)?;
        let opened;
        let part = match part {
            Some(p) => p,
            None => {
                opened = self.open_part(plan, false)?;
                &opened
            }
        };
        let mut committed = part.committed.lock().unwrap_or_else(|e| e.into_inner());
        let len = part
            .file
            .metadata()
            .map_err(|e| EngineError::io(&final_path, e))?
            .len();
        if len != plan.size {
            part.file
                .set_len(plan.size)
                .map_err(|e| EngineError::io(&final_path, e))?;
        }
        part.file
            .set_modified(ns_system_time(plan.mtime_ns))
            .map_err(|e| EngineError::io(&final_path, e))?;
        record_digest(&part.file, digest);
        part.file
            .sync_all()
            .map_err(|e| EngineError::io(&final_path, e))?;
        self.root
            .rename(
                Self::part_name(&final_path),
                &self.root,
                final_path.as_str(),
            )
            .map_err(|e| EngineError::io(&final_path, e))?;
        *committed = true;
        match self.root.remove_file(Self::state_name(&final_path)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io(&final_path, e)),
        }
        // The rename is durable once its folder is. (A `Dir` handle is
        // O_PATH and cannot be synced, so the folder is opened for reading.)
        let parent = final_path.parent().unwrap_or_default();
        let folder = if parent.is_root() {
            "."
        } else {
            parent.as_str()
        };
        self.root
            .open(folder)
            .and_then(|d| d.into_std().sync_all())
            .map_err(|e| EngineError::io(&final_path, e))?;
        Ok(())
    }
}

/// Reserves `len` bytes for a file. Filesystems without `fallocate` get a
/// sparse file of the right length instead.
fn reserve(file: &File, len: u64) -> io::Result<()> {
    use nix::fcntl::{FallocateFlags, fallocate};
    match fallocate(file, FallocateFlags::empty(), 0, len as i64) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EOPNOTSUPP) => file.set_len(len),
        Err(e) => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(path: &str, size: u64) -> PlanFile {
        PlanFile {
            id: FileId(0),
            path: SharePath::parse(path).unwrap(),
            size,
            mtime_ns: 1_700_000_000_123_456_789,
            priority: Priority::DEFAULT,
        }
    }

    #[test]
    fn part_checkpoint_resume_commit() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::local(dir.path()).unwrap();
        let layout = ChunkLayout::new(64 * 1024).unwrap();
        let p = plan("sub/dir/a.bin", 100_000);
        assert_eq!(sink.local_state(&p, layout).unwrap(), LocalState::Nothing);
        let part = sink.open_part(&p, true).unwrap();
        let data = vec![7u8; 64 * 1024];
        part.write_at(&data, 0).unwrap();
        let mut have = ChunkBitmap::new(2);
        have.set(0);
        let mut digests = vec![Digest::default(); 2];
        digests[0] = Digest::of_chunk(&data);
        sink.checkpoint(&p, layout, &part, &have, &digests).unwrap();
        drop(part);
        match sink.local_state(&p, layout).unwrap() {
            LocalState::Partial {
                have: h,
                digests: d,
            } => {
                assert_eq!(h, have);
                assert_eq!(d[0], digests[0]);
            }
            other => panic!("{other:?}"),
        }
        // A different source (mtime) invalidates the saved state.
        let mut changed = p.clone();
        changed.mtime_ns += 1;
        assert_eq!(
            sink.local_state(&changed, layout).unwrap(),
            LocalState::Nothing
        );
        // Working files are invisible under the final name until commit.
        assert!(!dir.path().join("sub/dir/a.bin").exists());
        let part = sink.open_part(&p, false).unwrap();
        part.write_at(&vec![8u8; 100_000 - 65536], 65536).unwrap();
        let written = std::fs::read(dir.path().join("sub/dir/a.bin.ferry-part")).unwrap();
        let chunks: Vec<Digest> = written.chunks(65536).map(Digest::of_chunk).collect();
        let digest = Digest::of_file(&chunks);
        sink.commit(&p, Some(&part), digest).unwrap();
        let meta = std::fs::metadata(dir.path().join("sub/dir/a.bin")).unwrap();
        assert_eq!(meta.len(), 100_000);
        // A complete file answers with its digest, kept beside it or read.
        assert_eq!(
            sink.local_state(&p, layout).unwrap(),
            LocalState::Complete(digest)
        );
        let f = std::fs::File::open(dir.path().join("sub/dir/a.bin")).unwrap();
        assert_eq!(file_digest(&f, layout, 100_000, &p.path).unwrap(), digest);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sub/dir"))
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1, "no working files left");
    }

    #[test]
    fn corrupt_state_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::local(dir.path()).unwrap();
        let layout = ChunkLayout::new(64 * 1024).unwrap();
        let p = plan("a.bin", 10);
        let part = sink.open_part(&p, true).unwrap();
        sink.checkpoint(
            &p,
            layout,
            &part,
            &ChunkBitmap::full(1),
            &[Digest::default()],
        )
        .unwrap();
        let state = dir.path().join("a.bin.ferry-state");
        let mut bytes = std::fs::read(&state).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&state, bytes).unwrap();
        assert_eq!(sink.local_state(&p, layout).unwrap(), LocalState::Nothing);
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let share = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), share.path().join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), share.path().join("link"))
            .unwrap();
        let root = ShareRoot::open(share.path(), "share").unwrap();
        let none = |_: &SharePath| Priority::DEFAULT;
        for p in ["escape/secret", "link"] {
            let err = plan_share(&root, &SharePath::parse(p).unwrap(), &none).unwrap_err();
            assert!(
                matches!(err, EngineError::OutsideShare { .. }),
                "{p}: {err:?}"
            );
        }
        let err = plan_share(&root, &SharePath::root(), &none).unwrap_err();
        assert!(
            matches!(err, EngineError::OutsideShare { .. }),
            "walk: {err:?}"
        );
        // Receiving through the escaping folder symlink is refused too.
        let sink = Sink::new(
            Dir::open_ambient_dir(share.path(), cap_std::ambient_authority()).unwrap(),
            SharePath::root(),
            "share",
        );
        let err = sink.open_part(&plan("escape/new", 1), true).unwrap_err();
        assert!(
            matches!(
                err,
                EngineError::OutsideShare { .. } | EngineError::Io { .. }
            ),
            "{err:?}"
        );
        assert!(!outside.path().join("new.ferry-part").exists());
    }

    #[test]
    fn plans_sort_by_priority_and_skip_working_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("seq")).unwrap();
        for f in [
            "seq/a.0001.exr",
            "seq/a.0002.exr",
            "seq/x.ferry-part",
            "proxy.mp4",
        ] {
            std::fs::write(dir.path().join(f), f).unwrap();
        }
        let root = ShareRoot::open(dir.path(), "share").unwrap();
        let prio = |p: &SharePath| {
            if p.as_str().ends_with(".mp4") {
                Priority::HIGH
            } else {
                Priority::DEFAULT
            }
        };
        let files = plan_share(&root, &SharePath::root(), &prio).unwrap();
        let (_, plan) = make_plan(files);
        let names: Vec<&str> = plan.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, vec!["proxy.mp4", "seq/a.0001.exr", "seq/a.0002.exr"]);
    }
}
