//! Deliveries from the client: `ferry send` makes one (uploading local
//! files, or naming files already in a share), and the upload manifest
//! lets an interrupted upload be resumed later from this computer.

use std::path::{Path, PathBuf};

use ferry_api::{DeliveryCreated, DeliveryFile, DeliveryRequest};
use ferry_engine::files::{SourceFile, plan_local};
use ferry_proto::path::ShareRef;
use ferry_proto::sequence::SequencePattern;
use ferry_proto::{PriorityRules, SharePath};
use serde::{Deserialize, Serialize};

use crate::api::Api;
use crate::credentials::Credentials;
use crate::error::ClientError;
use crate::transfer::{self, Options, Report};

/// What `ferry send` was asked.
#[derive(Debug, Clone, Default)]
pub struct SendRequest {
    /// Local files, folders and sequences; or `share=NAME/path` items.
    pub paths: Vec<String>,
    pub recipients: Vec<String>,
    /// `share=NAME/dir` for uploads.
    pub dest: Option<String>,
    pub name: Option<String>,
    pub priorities: Vec<String>,
    pub expires_in_secs: Option<u64>,
    pub notify_progress: bool,
}

/// What `ferry send` did.
#[derive(Debug, Clone)]
pub struct Sent {
    pub created: DeliveryCreated,
    /// The upload, when the files were local.
    pub upload: Option<Report>,
    /// Frames a sequence notation named but that were not there.
    pub missing: Vec<String>,
}

/// Local files to send: files and folders as they are, and sequence
/// notations (`shot.%04d.exr[1001-1100]`, `shot.####.exr`) expanded to the
/// frames present. A sequence inside a folder keeps that folder's name, as
/// sending the folder would. Returns the files and a note per missing
/// frame range.
pub fn plan_local_items(
    items: &[String],
    rules: &PriorityRules,
) -> Result<(Vec<SourceFile>, Vec<String>), ClientError> {
    let prio = |p: &SharePath| rules.of(p);
    let mut plain = Vec::new();
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for item in items {
        let pattern =
            SequencePattern::parse(item).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let Some(pattern) = pattern.filter(|_| !Path::new(item).exists()) else {
            plain.push(PathBuf::from(item));
            continue;
        };
        let (dir, _) = pattern.folder();
        let dir_path = if dir.is_empty() {
            PathBuf::from(".")
        } else {
            PathBuf::from(dir)
        };
        let mut frames: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&dir_path).map_err(|e| ClientError::Io {
            path: dir_path.display().to_string(),
            source: e,
        })? {
            let entry = entry.map_err(|e| ClientError::Io {
                path: dir_path.display().to_string(),
                source: e,
            })?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let full = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            if let Some(frame) = pattern.frame_of(&full) {
                frames.push((frame, entry.path()));
            }
        }
        if frames.is_empty() {
            return Err(ClientError::Invalid(format!(
                "no frames of {item} are there"
            )));
        }
        frames.sort();
        let numbers: Vec<u64> = frames.iter().map(|(f, _)| *f).collect();
        let (first, last) = pattern
            .range
            .unwrap_or((numbers[0], numbers[numbers.len() - 1]));
        let mut expect = first;
        let mut gaps = Vec::new();
        for &n in numbers.iter().chain(std::iter::once(&(last + 1))) {
            if n > expect {
                gaps.push(if n - 1 == expect {
                    expect.to_string()
                } else {
                    format!("{expect}-{}", n - 1)
                });
            }
            expect = n + 1;
        }
        if !gaps.is_empty() {
            missing.push(format!("{item}: frames {} are missing", gaps.join(", ")));
        }
        // The folder's own name leads, as when sending the folder.
        let prefix = Path::new(dir)
            .file_name()
            .and_then(|n| n.to_str())
            .map(SharePath::parse)
            .transpose()
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let files: Vec<PathBuf> = frames.into_iter().map(|(_, p)| p).collect();
        for mut f in plan_local(&files, &prio)? {
            if let Some(prefix) = &prefix {
                f.path = prefix
                    .join(&f.path)
                    .map_err(|e| ClientError::Invalid(e.to_string()))?;
                f.priority = rules.of(&f.path);
            }
            out.push(f);
        }
    }
    out.extend(plan_local(&plain, &prio)?);
    Ok((out, missing))
}

/// Makes a delivery and, for local files, uploads them.
pub async fn send(
    api: &Api,
    creds: &Credentials,
    req: &SendRequest,
    opts: &Options,
) -> Result<Sent, ClientError> {
    send_then(api, creds, req, opts, |_| Ok(())).await
}

/// [`send`], telling `made` of the delivery as soon as the appliance made
/// it and before anything is uploaded (a hot folder records it then, so
/// that a restart resumes the upload rather than sending again).
pub(crate) async fn send_then(
    api: &Api,
    creds: &Credentials,
    req: &SendRequest,
    opts: &Options,
    made: impl FnOnce(&DeliveryCreated) -> Result<(), ClientError>,
) -> Result<Sent, ClientError> {
    let shared: Vec<&String> = req
        .paths
        .iter()
        .filter(|p| ShareRef::is_share_ref(p))
        .collect();
    if !shared.is_empty() && shared.len() != req.paths.len() {
        return Err(ClientError::Invalid(
            "send either local files or share=… files in one delivery, not both".into(),
        ));
    }
    let mut request = DeliveryRequest {
        name: req.name.clone(),
        recipients: req.recipients.clone(),
        dest: req.dest.clone(),
        priorities: req.priorities.clone(),
        expires_in_secs: req.expires_in_secs,
        notify_progress: req.notify_progress,
        ..Default::default()
    };
    if !shared.is_empty() {
        request.sources = req.paths.clone();
        let created = api.create_delivery(&request).await?;
        made(&created)?;
        return Ok(Sent {
            created,
            upload: None,
            missing: Vec::new(),
        });
    }
    if req.dest.is_none() {
        return Err(ClientError::Invalid(
            "local files go into a folder on the appliance: --dest share=NAME/folder".into(),
        ));
    }
    let rules =
        PriorityRules::parse(&req.priorities).map_err(|e| ClientError::Invalid(e.to_string()))?;
    let items = req.paths.clone();
    let (files, missing) = tokio::task::spawn_blocking(move || plan_local_items(&items, &rules))
        .await
        .map_err(|e| ClientError::Invalid(format!("listing files: {e}")))??;
    request.files = files
        .iter()
        .map(|f| DeliveryFile {
            path: f.path.as_str().to_owned(),
            size: f.size,
            mtime_ns: f.mtime_ns,
            priority: f.priority.get(),
        })
        .collect();
    let created = api.create_delivery(&request).await?;
    made(&created)?;
    let upload_job = created
        .jobs
        .iter()
        .find(|j| j.kind == ferry_api::JobKind::Upload)
        .map(|j| j.id);
    let upload = match upload_job {
        Some(job) => {
            let manifest = Manifest::new(creds, job, &files);
            manifest.save()?;
            let report = transfer::upload(api, job, files, opts).await?;
            manifest.remove();
            Some(report)
        }
        None => None,
    };
    Ok(Sent {
        created,
        upload,
        missing,
    })
}

/// What an upload needs to be resumed from this computer: which local file
/// is which file of the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub server: String,
    pub job: i64,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub local: PathBuf,
    pub priority: u16,
}

impl Manifest {
    fn new(creds: &Credentials, job: i64, files: &[SourceFile]) -> Self {
        Manifest {
            server: creds.server.clone(),
            job,
            files: files
                .iter()
                .filter_map(|f| match &f.origin {
                    ferry_engine::files::Origin::Local(p) => Some(ManifestFile {
                        path: f.path.as_str().to_owned(),
                        local: p.clone(),
                        priority: f.priority.get(),
                    }),
                    _ => None,
                })
                .collect(),
        }
    }

    fn dir() -> Result<PathBuf, ClientError> {
        let creds = Credentials::path()?;
        Ok(creds.parent().unwrap_or(Path::new(".")).join("uploads"))
    }

    fn file(server: &str, job: i64) -> Result<PathBuf, ClientError> {
        let tag = blake3_tag(server);
        Ok(Self::dir()?.join(format!("{tag}-{job}.json")))
    }

    pub fn save(&self) -> Result<(), ClientError> {
        let path = Self::file(&self.server, self.job)?;
        let io = |e| ClientError::Io {
            path: path.display().to_string(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string(self).map_err(|e| ClientError::Invalid(e.to_string()))?;
        std::fs::write(&path, text).map_err(io)
    }

    pub fn load(server: &str, job: i64) -> Result<Option<Self>, ClientError> {
        let path = Self::file(server, job)?;
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(serde_json::from_str(&text).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ClientError::Io {
                path: path.display().to_string(),
                source: e,
            }),
        }
    }

    /// Every unfinished upload of `server` started from this computer.
    pub fn pending(server: &str) -> Vec<Self> {
        let tag = blake3_tag(server);
        let Ok(dir) = Self::dir() else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&tag))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str(&t).ok())
            .collect()
    }

    pub fn remove(&self) {
        if let Ok(path) = Self::file(&self.server, self.job) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// The files to upload again, checked against what is on disk now.
    pub fn sources(&self) -> Result<Vec<SourceFile>, ClientError> {
        let mut out = Vec::new();
        for f in &self.files {
            let path =
                SharePath::parse(&f.path).map_err(|e| ClientError::Invalid(e.to_string()))?;
            let meta = std::fs::metadata(&f.local).map_err(|e| ClientError::Io {
                path: f.local.display().to_string(),
                source: e,
            })?;
            let mtime_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0);
            out.push(SourceFile {
                path,
                origin: ferry_engine::files::Origin::Local(f.local.clone()),
                size: meta.len(),
                mtime_ns,
                priority: ferry_proto::Priority::new(f.priority).unwrap_or_default(),
                digest: None,
            });
        }
        Ok(out)
    }

    /// Runs the upload again.
    pub async fn resume(self, api: &Api, opts: &Options) -> Result<Report, ClientError> {
        let files = self.sources()?;
        let report = transfer::upload(api, self.job, files, opts).await?;
        self.remove();
        Ok(report)
    }
}

fn blake3_tag(server: &str) -> String {
    let h = blake3::hash(server.as_bytes());
    h.to_hex()[..12].to_owned()
}
