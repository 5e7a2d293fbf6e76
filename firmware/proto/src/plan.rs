//! What a transfer moves: the files, their priorities and how each is cut
//! into chunks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::path::SharePath;

/// Index of a file within one session's plan.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct FileId(pub u32);

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A task priority from 1 (lowest) to 1000 (highest); 500 by default.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
pub struct Priority(u16);

/// A priority outside 1–1000, or a word that is not `high`, `medium` or `low`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("priority must be 1-1000, 'high', 'medium' or 'low', not {0:?}")]
pub struct PriorityError(pub String);

impl Priority {
    pub const LOW: Priority = Priority(1);
    pub const DEFAULT: Priority = Priority(500);
    pub const HIGH: Priority = Priority(999);
    pub const MAX: Priority = Priority(1000);

    /// Extensions (without the dot) of the files a sender's tools start
    /// at High unless told otherwise: the review's movies, which a
    /// recipient opens first. The desktop app's default and the send
    /// page both use it.
    pub const STARTS_HIGH: &[&str] = &["mov", "mp4"];

    pub fn new(value: u16) -> Result<Self, PriorityError> {
        if (1..=1000).contains(&value) {
            Ok(Priority(value))
        } else {
            Err(PriorityError(value.to_string()))
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::DEFAULT
    }
}

impl FromStr for Priority {
    type Err = PriorityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "high" => Ok(Priority::HIGH),
            "medium" | "normal" => Ok(Priority::DEFAULT),
            "low" => Ok(Priority::LOW),
            other => other
                .parse::<u16>()
                .ok()
                .and_then(|v| Priority::new(v).ok())
                .ok_or_else(|| PriorityError(s.to_owned())),
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Priority::new(u16::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Bounds a receiver enforces on a plan before it commits memory or disk.
pub mod limits {
    /// Smallest chunk a sender may propose.
    pub const MIN_CHUNK_SIZE: u32 = 64 * 1024;
    /// Largest chunk a sender may propose.
    pub const MAX_CHUNK_SIZE: u32 = 64 * 1024 * 1024;
    /// Default chunk size (DESIGN §4).
    pub const DEFAULT_CHUNK_SIZE: u32 = 8 * 1024 * 1024;
    /// A file may have at most this many chunks, which bounds a resume
    /// bitmap to 256 KiB (16 TiB at the default chunk size).
    pub const MAX_CHUNKS_PER_FILE: u64 = 1 << 21;
    /// Files in one session.
    pub const MAX_FILES: u64 = 1_000_000;
}

/// How files are cut into chunks: every chunk is `chunk_size` bytes but the
/// last, which is shorter. An empty file has no chunks.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ChunkLayout {
    pub chunk_size: u32,
}

impl ChunkLayout {
    pub fn new(chunk_size: u32) -> Option<Self> {
        (limits::MIN_CHUNK_SIZE..=limits::MAX_CHUNK_SIZE)
            .contains(&chunk_size)
            .then_some(ChunkLayout { chunk_size })
    }

    /// Number of chunks in a file of `size` bytes.
    pub fn chunk_count(&self, size: u64) -> u64 {
        size.div_ceil(u64::from(self.chunk_size))
    }

    /// Byte offset of chunk `index`.
    pub fn offset(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.chunk_size)
    }

    /// Length of chunk `index` of a file of `size` bytes, or `None` when the
    /// file has no such chunk.
    pub fn chunk_len(&self, size: u64, index: u32) -> Option<u32> {
        let offset = self.offset(index);
        if offset >= size {
            return None;
        }
        let len = (size - offset).min(u64::from(self.chunk_size));
        u32::try_from(len).ok()
    }
}

impl Default for ChunkLayout {
    fn default() -> Self {
        ChunkLayout {
            chunk_size: limits::DEFAULT_CHUNK_SIZE,
        }
    }
}

/// One file of a transfer, as the sender announces it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PlanFile {
    pub id: FileId,
    /// Where the file goes, relative to the transfer's destination folder.
    pub path: SharePath,
    pub size: u64,
    /// Modification time of the source, nanoseconds since the Unix epoch;
    /// the receiver keeps it so an unchanged file is not sent twice.
    pub mtime_ns: i64,
    pub priority: Priority,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities() {
        assert_eq!("high".parse::<Priority>().unwrap(), Priority::HIGH);
        assert_eq!("LOW".parse::<Priority>().unwrap(), Priority::LOW);
        assert_eq!("750".parse::<Priority>().unwrap().get(), 750);
        assert!("0".parse::<Priority>().is_err());
        assert!("1001".parse::<Priority>().is_err());
        assert!("urgent".parse::<Priority>().is_err());
        assert!(
            postcard::from_bytes::<Priority>(&postcard::to_allocvec(&2000u16).unwrap()).is_err()
        );
    }

    #[test]
    fn layout() {
        let l = ChunkLayout::new(1 << 20).unwrap();
        assert_eq!(l.chunk_count(0), 0);
        assert_eq!(l.chunk_count(1), 1);
        assert_eq!(l.chunk_count(1 << 20), 1);
        assert_eq!(l.chunk_count((1 << 20) + 1), 2);
        assert_eq!(l.chunk_len((1 << 20) + 1, 1), Some(1));
        assert_eq!(l.chunk_len((1 << 20) + 1, 2), None);
        assert_eq!(l.chunk_len(0, 0), None);
        assert!(ChunkLayout::new(1).is_none());
    }
}
