//! Which chunks of a file a receiver holds: the resume bitmap.

use serde::{Deserialize, Serialize};

/// A fixed-length set of chunk indices.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ChunkBitmap {
    len: u32,
    bytes: Vec<u8>,
}

/// A bitmap whose byte length or padding bits disagree with its chunk count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunk bitmap: {0}")]
pub struct BitmapError(&'static str);

impl ChunkBitmap {
    /// An empty bitmap for `len` chunks.
    pub fn new(len: u32) -> Self {
        ChunkBitmap {
            len,
            bytes: vec![0; (len as usize).div_ceil(8)],
        }
    }

    /// A bitmap with every chunk present.
    pub fn full(len: u32) -> Self {
        let mut b = Self::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// Rebuilds a bitmap from its bytes, refusing stray bits past `len`.
    pub fn from_bytes(len: u32, bytes: Vec<u8>) -> Result<Self, BitmapError> {
        if bytes.len() != (len as usize).div_ceil(8) {
            return Err(BitmapError("byte length does not match chunk count"));
        }
        let b = ChunkBitmap { len, bytes };
        if !len.is_multiple_of(8)
            && let Some(last) = b.bytes.last()
            && last >> (len % 8) != 0
        {
            return Err(BitmapError("bits set past the last chunk"));
        }
        Ok(b)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bytes[(i / 8) as usize] & (1 << (i % 8)) != 0
    }

    /// Marks chunk `i` present; out-of-range indices are ignored (callers
    /// check indices against the plan first).
    pub fn set(&mut self, i: u32) {
        if i < self.len {
            self.bytes[(i / 8) as usize] |= 1 << (i % 8);
        }
    }

    pub fn count(&self) -> u32 {
        self.bytes.iter().map(|b| b.count_ones()).sum()
    }

    pub fn is_complete(&self) -> bool {
        self.count() == self.len
    }

    /// Indices of missing chunks, ascending.
    pub fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| !self.get(i))
    }

    /// Indices of present chunks, ascending.
    pub fn present(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }
}

impl Serialize for ChunkBitmap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.len, &self.bytes).serialize(s)
    }
}

impl<'de> Deserialize<'de> for ChunkBitmap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (len, bytes): (u32, Vec<u8>) = Deserialize::deserialize(d)?;
        ChunkBitmap::from_bytes(len, bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_count() {
        let mut b = ChunkBitmap::new(10);
        assert_eq!(b.count(), 0);
        b.set(0);
        b.set(9);
        b.set(10);
        assert!(b.get(0) && b.get(9) && !b.get(10));
        assert_eq!(b.count(), 2);
        assert_eq!(b.missing().count(), 8);
        assert!(!b.is_complete());
        assert!(ChunkBitmap::full(10).is_complete());
        assert!(ChunkBitmap::new(0).is_complete());
    }

    #[test]
    fn round_trip_and_refuse_stray_bits() {
        let mut b = ChunkBitmap::new(13);
        b.set(12);
        let bytes = postcard::to_allocvec(&b).unwrap();
        assert_eq!(postcard::from_bytes::<ChunkBitmap>(&bytes).unwrap(), b);
        assert!(ChunkBitmap::from_bytes(13, vec![0, 0x20]).is_err());
        assert!(ChunkBitmap::from_bytes(13, vec![0]).is_err());
    }
}
