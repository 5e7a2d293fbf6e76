//! A session's connection, whatever carries it: a QUIC connection, or
//! TCP/HTTPS [`lanes`](crate::lanes).
//!
//! The sender and receiver see only this: a control stream, chunk streams
//! to open and accept, and a close that tells the peer why. What differs
//! between transports (stream priorities and windows exist only in QUIC)
//! is decided here, once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_proto::{ChunkHeader, Frame, Pace, ProtoError, Transport};
use quinn::VarInt;

use crate::control;
use crate::error::EngineError;
use crate::lanes::{ControlReader, IncomingChunk, LaneWriter, Lanes};
use crate::transport::Tuning;

/// A session's connection.
#[derive(Debug, Clone)]
pub enum Link {
    Quic(quinn::Connection),
    Lanes(Arc<Lanes>),
}

impl Link {
    pub fn transport(&self) -> Transport {
        match self {
            Link::Quic(_) => Transport::Quic,
            Link::Lanes(l) => l.transport(),
        }
    }

    /// The round-trip time: QUIC's estimate, or how long the first lane
    /// took to open.
    pub fn rtt(&self) -> Duration {
        match self {
            Link::Quic(c) => c.rtt(),
            Link::Lanes(l) => l.rtt(),
        }
    }

    /// Packets sent and packets declared lost so far, on QUIC; `None` on
    /// lanes, where TCP hides its losses.
    pub fn losses(&self) -> Option<(u64, u64)> {
        match self {
            Link::Quic(c) => {
                let path = c.stats().path;
                Some((path.sent_packets, path.lost_packets))
            }
            Link::Lanes(_) => None,
        }
    }

    /// Opens a stream for one chunk. QUIC sends higher `priority` first;
    /// lanes carry chunks in the order they are opened.
    pub async fn open_chunk(&self, priority: i32) -> Result<ChunkOut, EngineError> {
        match self {
            Link::Quic(c) => {
                let stream = c.open_uni().await?;
                // Only fails on a stream already closed, which this is not.
                let _ = stream.set_priority(priority);
                Ok(ChunkOut::Quic(stream))
            }
            Link::Lanes(l) => Ok(ChunkOut::Lane(l.open_chunk().await?)),
        }
    }

    /// The next chunk stream from the peer.
    pub async fn accept_chunk(&self) -> Result<ChunkIn, EngineError> {
        match self {
            Link::Quic(c) => Ok(ChunkIn::Quic(c.accept_uni().await?)),
            Link::Lanes(l) => Ok(ChunkIn::Lane(l.accept_chunk().await?)),
        }
    }

    /// Closes the session with a close code (0: done) the peer reads as
    /// the reason, even if the error frame that said it is lost.
    pub fn close(&self, code: u32, reason: &[u8]) {
        // A close reason must fit in a packet.
        let reason = &reason[..reason.len().min(800)];
        match self {
            Link::Quic(c) => c.close(VarInt::from_u32(code), reason),
            Link::Lanes(l) => l.close(code, reason),
        }
    }

    /// Waits until the session is closed, by either side.
    pub async fn closed(&self) {
        match self {
            Link::Quic(c) => {
                c.closed().await;
            }
            Link::Lanes(l) => l.closed().await,
        }
    }

    /// Sizes the receive and send windows for `pace`, within `cap` bytes.
    /// Lanes have none to size: each TCP connection's are the kernel's.
    pub fn size_windows(&self, tuning: &Tuning, pace: Pace, cap: u64) {
        if let Link::Quic(c) = self {
            tuning.size_windows_within(c, pace, cap);
        }
    }

    /// Lets the peer open chunk streams once it has said who it is.
    pub fn open_up(&self, tuning: &Tuning, pace: Pace, cap: u64) {
        if let Link::Quic(c) = self {
            tuning.open_up(c, pace, cap);
        }
    }

    /// Chunk streams worth having open at once. On lanes a chunk waits for
    /// a free lane in the order it was opened, so a few per lane keep them
    /// busy while a chunk of a file moved up still goes next.
    pub fn chunk_streams(&self, quic: usize) -> usize {
        match self {
            Link::Quic(_) => quic,
            Link::Lanes(l) => quic.min(2 * l.joined().max(crate::lanes::DEFAULT_LANES)),
        }
    }

    /// The QUIC connection, where there is one (for its statistics).
    pub fn quic(&self) -> Option<&quinn::Connection> {
        match self {
            Link::Quic(c) => Some(c),
            Link::Lanes(_) => None,
        }
    }
}

/// Our side of the control stream.
#[derive(Debug)]
pub enum ControlSend {
    Quic(quinn::SendStream),
    Lane(Arc<Lanes>),
}

/// The peer's side of the control stream.
#[derive(Debug)]
pub enum ControlRecv {
    Quic(quinn::RecvStream),
    Lane(ControlReader),
}

impl ControlSend {
    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), EngineError> {
        match self {
            ControlSend::Quic(s) => control::write_frame(s, frame).await,
            ControlSend::Lane(l) => l.write_frame(frame).await,
        }
    }

    /// No more frames from here; waits a moment for the last ones to be
    /// read (often an error that explains the end).
    pub async fn finish(&mut self) {
        if let ControlSend::Quic(s) = self {
            let _ = s.finish();
            let _ = tokio::time::timeout(Duration::from_secs(1), s.stopped()).await;
        }
        // A control lane stays open for the close record.
    }
}

impl ControlRecv {
    /// The next frame; `None` when the peer finished the stream cleanly.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, EngineError> {
        match self {
            ControlRecv::Quic(r) => control::read_frame(r).await,
            ControlRecv::Lane(r) => r.read_frame().await,
        }
    }
}

/// A chunk stream from here.
#[derive(Debug)]
pub enum ChunkOut {
    Quic(quinn::SendStream),
    Lane(LaneWriter),
}

impl ChunkOut {
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        match self {
            ChunkOut::Quic(s) => s.write_all(bytes).await.map_err(write_error),
            ChunkOut::Lane(l) => l.write_all(bytes).await,
        }
    }

    pub async fn write(&mut self, bytes: Bytes) -> Result<(), EngineError> {
        match self {
            ChunkOut::Quic(s) => s.write_chunk(bytes).await.map_err(write_error),
            ChunkOut::Lane(l) => l.write(bytes).await,
        }
    }

    /// Ends the chunk and waits until it is off our hands: on QUIC until
    /// the receiver has all of it (so the window bounds what is on the
    /// wire, not what is buffered here), on a lane once it is flushed to
    /// the connection.
    pub async fn finish(self) -> Result<(), EngineError> {
        match self {
            ChunkOut::Quic(mut s) => {
                let _ = s.finish();
                match s.stopped().await {
                    Ok(None) => Ok(()),
                    Ok(Some(code)) => Err(EngineError::Stream(format!(
                        "the receiver stopped the chunk (code {code})"
                    ))),
                    Err(quinn::StoppedError::ConnectionLost(c)) => Err(EngineError::from(c)),
                    Err(e) => Err(EngineError::Stream(e.to_string())),
                }
            }
            ChunkOut::Lane(l) => l.finish().await,
        }
    }
}

fn write_error(e: quinn::WriteError) -> EngineError {
    match e {
        quinn::WriteError::ConnectionLost(c) => EngineError::from(c),
        other => EngineError::Stream(other.to_string()),
    }
}

/// How a chunk stream ended early.
#[derive(Debug)]
pub enum ChunkEnd {
    /// The sender reset or cut the stream: it will be sent again.
    Abandoned,
    /// The session is gone.
    Lost(EngineError),
}

/// A chunk stream from the peer.
#[derive(Debug)]
pub enum ChunkIn {
    Quic(quinn::RecvStream),
    Lane(IncomingChunk),
}

impl ChunkIn {
    /// The chunk's header; `None` when the stream is not a chunk.
    pub async fn header(&mut self) -> Result<ChunkHeader, ChunkEnd> {
        match self {
            ChunkIn::Quic(s) => {
                let mut header = [0u8; ChunkHeader::LEN];
                s.read_exact(&mut header).await.map_err(read_exact_end)?;
                ChunkHeader::decode(&header).ok_or_else(|| {
                    ChunkEnd::Lost(EngineError::Proto(ProtoError::Violation(
                        "a stream that is not a chunk".into(),
                    )))
                })
            }
            ChunkIn::Lane(c) => Ok(c.header()),
        }
    }

    /// Appends up to `max` bytes to `buf`, as many as have arrived.
    pub async fn read_into(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<usize, ChunkEnd> {
        match self {
            ChunkIn::Quic(s) => match s.read_chunk(max, true).await {
                Ok(Some(piece)) => {
                    buf.extend_from_slice(&piece.bytes);
                    Ok(piece.bytes.len())
                }
                Ok(None) => Err(ChunkEnd::Abandoned),
                Err(quinn::ReadError::ConnectionLost(c)) => Err(ChunkEnd::Lost(c.into())),
                Err(_) => Err(ChunkEnd::Abandoned),
            },
            ChunkIn::Lane(c) => c.read_into(buf, max).await.map_err(lane_end),
        }
    }

    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ChunkEnd> {
        match self {
            ChunkIn::Quic(s) => s.read_exact(buf).await.map_err(read_exact_end),
            ChunkIn::Lane(c) => c.read_exact(buf).await.map_err(lane_end),
        }
    }

    /// Reads and drops the rest (a chunk already held).
    pub async fn drain(&mut self) {
        match self {
            ChunkIn::Quic(s) => while let Ok(Some(_)) = s.read_chunk(usize::MAX, true).await {},
            ChunkIn::Lane(c) => {
                if let Err(e) = c.drain().await {
                    log::debug!("draining a held chunk: {e}");
                }
            }
        }
    }
}

fn read_exact_end(e: quinn::ReadExactError) -> ChunkEnd {
    match e {
        quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(c)) => {
            ChunkEnd::Lost(c.into())
        }
        _ => ChunkEnd::Abandoned,
    }
}

/// A data lane that fails in the middle of a chunk takes the session with
/// it: its framing is gone.
fn lane_end(e: std::io::Error) -> ChunkEnd {
    ChunkEnd::Lost(EngineError::Lost(format!("a data lane failed: {e}")))
}
