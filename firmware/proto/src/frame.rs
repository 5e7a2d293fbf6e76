//! Control-stream frames.
//!
//! Each frame is a 4-byte big-endian length followed by a postcard-encoded
//! [`Frame`]. The length is checked against [`MAX_FRAME_LEN`] before a single
//! byte of the body is buffered, so a hostile peer cannot make us allocate.

use serde::{Deserialize, Serialize};

use crate::bitmap::ChunkBitmap;
use crate::chunk::ChunkRef;
use crate::digest::Digest;
use crate::pace::{Pace, Policy, Rate};
use crate::plan::{FileId, PlanFile, Priority};

/// The largest frame body accepted, in bytes. Plans travel in batches
/// below this size; a resume bitmap is at most 256 KiB.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// Length of the prefix that carries a frame's body length.
pub const LEN_PREFIX: usize = 4;

/// What a receiver already holds of one planned file.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum HaveState {
    /// Nothing: send every chunk.
    Nothing,
    /// Some chunks, kept from an earlier session: send the others.
    Partial(ChunkBitmap),
    /// The file is already in place with the same size and time, and this
    /// is its digest (BLAKE3 over its chunk digests): skip it. A sender
    /// that must be sure of a receipt checks the digest against its own.
    Complete(Digest),
}

/// Why a peer ended a session, as a stable code the other side can act on.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The session token is unknown.
    BadToken,
    /// The token was not used within its lifetime.
    TokenExpired,
    /// The token was used before.
    TokenReused,
    /// The connection comes from another address than the one the token was
    /// issued to.
    WrongAddress,
    /// The peer speaks another protocol version.
    Version,
    /// A frame or stream broke the protocol.
    Protocol,
    /// A path was refused by the share rules.
    PathRefused,
    /// The destination has no space left.
    NoSpace,
    /// A file could not be read or written.
    Io,
    /// The plan exceeds a limit (files, sizes).
    TooLarge,
    /// A newer session took over this transfer.
    Superseded,
    /// The job was paused, aborted or purged.
    Aborted,
    /// A file's digest did not match after every chunk was verified.
    DigestMismatch,
    /// Anything else on the peer's side.
    Internal,
    /// The appliance, or the account, runs as many sessions as it may;
    /// the client tries again shortly.
    Busy,
    /// The session made no progress for too long and was closed.
    Stalled,
}

impl ErrorCode {
    const ALL: [ErrorCode; 16] = [
        ErrorCode::BadToken,
        ErrorCode::TokenExpired,
        ErrorCode::TokenReused,
        ErrorCode::WrongAddress,
        ErrorCode::Version,
        ErrorCode::Protocol,
        ErrorCode::PathRefused,
        ErrorCode::NoSpace,
        ErrorCode::Io,
        ErrorCode::TooLarge,
        ErrorCode::Superseded,
        ErrorCode::Aborted,
        ErrorCode::DigestMismatch,
        ErrorCode::Internal,
        ErrorCode::Busy,
        ErrorCode::Stalled,
    ];

    /// The QUIC application close code that carries this error, so a
    /// session closed before its error frame arrived still says why.
    /// Zero is a clean close; codes are stable.
    pub fn close_code(self) -> u32 {
        Self::ALL
            .iter()
            .position(|c| *c == self)
            .map_or(0, |i| i as u32 + 1)
    }

    /// The error a close code carries, if any.
    pub fn from_close_code(code: u64) -> Option<Self> {
        let i = usize::try_from(code).ok()?.checked_sub(1)?;
        Self::ALL.get(i).copied()
    }
}

/// One control-stream message. Directions: `Hello` client→server first;
/// `Welcome` server→client; `Plan*` sender→receiver; `Have`, `Resend`,
/// `FileDone` receiver→sender; `Error` and `Bye` either way.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Frame {
    Hello {
        version: u32,
        token: [u8; 32],
        /// What the client asks for: a policy, and a cap of its own (the
        /// recipient's home link, say). The appliance's caps still apply.
        policy: Option<Policy>,
        rate: Option<Rate>,
    },
    Welcome {
        session: u64,
        /// The pace the session starts with.
        pace: Pace,
    },
    /// Appliance→client: the session's pace changed (an admin set the
    /// job's rate). Applied by whichever side sends.
    Pace(Pace),
    /// Opens the plan: chunk size and, when the sender knows them, totals,
    /// so the receiver can refuse a plan it cannot hold before any file is
    /// listed. An open plan (files still landing upstream) has no totals;
    /// `PlanFiles` then keep coming until `PlanEnd`.
    PlanStart {
        chunk_size: u32,
        files: Option<u64>,
        bytes: Option<u64>,
    },
    PlanFiles {
        files: Vec<PlanFile>,
    },
    PlanEnd,
    Have {
        files: Vec<(FileId, HaveState)>,
    },
    /// A chunk failed its digest check at the receiver: send it again.
    Resend {
        file: FileId,
        index: u32,
    },
    /// The receiver verified the file and moved it into place.
    FileDone {
        file: FileId,
        digest: Digest,
    },
    /// The sender changed a file's priority mid-session (informational for
    /// the receiver's progress display).
    Reprioritised {
        file: FileId,
        priority: Priority,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Bye,
}

impl Frame {
    pub fn resend(chunk: ChunkRef) -> Self {
        Frame::Resend {
            file: chunk.file,
            index: chunk.index,
        }
    }
}

/// A frame that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Encodes a frame with its length prefix.
pub fn encode(frame: &Frame) -> Result<Vec<u8>, FrameError> {
    let mut out = postcard::to_extend(frame, vec![0u8; LEN_PREFIX])
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    let body = out.len() - LEN_PREFIX;
    if body > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: body,
            max: MAX_FRAME_LEN,
        });
    }
    out[..LEN_PREFIX].copy_from_slice(&(body as u32).to_be_bytes());
    Ok(out)
}

/// Reads a length prefix and checks it against the cap; the caller then
/// reads exactly that many bytes and calls [`decode_body`].
pub fn decode_len(prefix: [u8; LEN_PREFIX]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Decodes one frame body; trailing bytes are an error.
pub fn decode_body(body: &[u8]) -> Result<Frame, FrameError> {
    let (frame, rest) = postcard::take_from_bytes::<Frame>(body)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after frame",
            rest.len()
        )));
    }
    Ok(frame)
}

/// Incremental decoder for a byte stream of frames, for drivers that read
/// arbitrary slices (and for fuzzing).
#[derive(Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes. Refuses to grow past one maximal frame plus
    /// its prefix, which bounds memory whatever the peer sends.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        if self.buf.len() >= LEN_PREFIX {
            let mut prefix = [0u8; LEN_PREFIX];
            prefix.copy_from_slice(&self.buf[..LEN_PREFIX]);
            decode_len(prefix)?;
        }
        if self.buf.len() + bytes.len() > 2 * (MAX_FRAME_LEN + LEN_PREFIX) {
            // Drain whole frames first; a well-behaved caller pulls frames
            // between pushes, so this only trips on a flood.
            return Err(FrameError::TooLarge {
                len: self.buf.len() + bytes.len(),
                max: 2 * (MAX_FRAME_LEN + LEN_PREFIX),
            });
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < LEN_PREFIX {
            return Ok(None);
        }
        let mut prefix = [0u8; LEN_PREFIX];
        prefix.copy_from_slice(&self.buf[..LEN_PREFIX]);
        let len = decode_len(prefix)?;
        if self.buf.len() < LEN_PREFIX + len {
            return Ok(None);
        }
        let frame = decode_body(&self.buf[LEN_PREFIX..LEN_PREFIX + len]);
        self.buf.drain(..LEN_PREFIX + len);
        frame.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pace::{Pace, Policy, Rate};
    use crate::path::SharePath;

    fn sample() -> Vec<Frame> {
        vec![
            Frame::Hello {
                version: 1,
                token: [7; 32],
                policy: Some(Policy::Fixed),
                rate: Some(Rate::from_mbit(100).unwrap()),
            },
            Frame::Welcome {
                session: 9,
                pace: Pace::default(),
            },
            Frame::Pace(Pace {
                policy: Policy::Fair,
                target: Some(Rate::from_mbit(20).unwrap()),
            }),
            Frame::PlanStart {
                chunk_size: 1 << 20,
                files: Some(1),
                bytes: Some(10),
            },
            Frame::PlanFiles {
                files: vec![PlanFile {
                    id: FileId(0),
                    path: SharePath::parse("a/b.exr").unwrap(),
                    size: 10,
                    mtime_ns: 1,
                    priority: Priority::HIGH,
                }],
            },
            Frame::Have {
                files: vec![(FileId(0), HaveState::Partial(ChunkBitmap::new(3)))],
            },
            Frame::Error {
                code: ErrorCode::NoSpace,
                message: "disk full".into(),
            },
            Frame::Bye,
        ]
    }

    #[test]
    fn round_trip_through_the_stream_decoder() {
        let mut d = FrameDecoder::new();
        let mut wire = Vec::new();
        for f in sample() {
            wire.extend(encode(&f).unwrap());
        }
        // Feed in awkward slices.
        let mut out = Vec::new();
        for piece in wire.chunks(3) {
            d.push(piece).unwrap();
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, sample());
    }

    #[test]
    fn refuses_oversized_prefix_before_buffering() {
        let mut d = FrameDecoder::new();
        let huge = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
        d.push(&huge).unwrap();
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
        assert!(matches!(d.push(&[0; 10]), Err(FrameError::TooLarge { .. })));
        assert!(decode_len(u32::MAX.to_be_bytes()).is_err());
    }

    #[test]
    fn close_codes_round_trip() {
        for c in ErrorCode::ALL {
            assert_ne!(c.close_code(), 0);
            assert_eq!(
                ErrorCode::from_close_code(u64::from(c.close_code())),
                Some(c)
            );
        }
        assert_eq!(ErrorCode::from_close_code(0), None);
        assert_eq!(ErrorCode::from_close_code(999), None);
    }

    #[test]
    fn refuses_oversized_encode() {
        let f = Frame::Error {
            code: ErrorCode::Internal,
            message: "x".repeat(MAX_FRAME_LEN + 1),
        };
        assert!(matches!(encode(&f), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn refuses_garbage_and_trailing_bytes() {
        assert!(decode_body(&[0xff, 0xff, 0xff]).is_err());
        let mut body = encode(&Frame::Bye).unwrap()[LEN_PREFIX..].to_vec();
        body.push(0);
        assert!(decode_body(&body).is_err());
        // A path with '..' inside a plan is refused at decode time.
        let evil = b"\x04\x01\x00\x05../xx\x0a\x00\x01";
        assert!(decode_body(evil).is_err());
    }
}
