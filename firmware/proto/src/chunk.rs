//! The framing of one chunk on its own unidirectional stream:
//! a fixed header, the chunk's bytes, then its BLAKE3 digest.

use crate::plan::FileId;

/// Identifies one chunk of one file in a session.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ChunkRef {
    pub file: FileId,
    pub index: u32,
}

/// Header that opens a chunk stream. Fixed size, so a receiver reads it
/// without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChunkHeader {
    pub chunk: ChunkRef,
    /// Bytes of data that follow the header (the digest comes after them).
    pub len: u32,
}

/// Marks a chunk stream, so that a stray or garbled stream is recognised.
const MAGIC: u32 = 0x4652_5943; // "FRYC"

impl ChunkHeader {
    pub const LEN: usize = 16;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        out[4..8].copy_from_slice(&self.chunk.file.0.to_be_bytes());
        out[8..12].copy_from_slice(&self.chunk.index.to_be_bytes());
        out[12..16].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// Decodes a header; `None` when the magic is wrong.
    pub fn decode(bytes: &[u8; Self::LEN]) -> Option<Self> {
        let word =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        (word(0) == MAGIC).then(|| ChunkHeader {
            chunk: ChunkRef {
                file: FileId(word(4)),
                index: word(8),
            },
            len: word(12),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = ChunkHeader {
            chunk: ChunkRef {
                file: FileId(7),
                index: 3,
            },
            len: 42,
        };
        assert_eq!(ChunkHeader::decode(&h.encode()), Some(h));
        assert_eq!(ChunkHeader::decode(&[0; 16]), None);
    }
}
