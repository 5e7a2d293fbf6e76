//! The Ferry transfer protocol, without IO.
//!
//! This crate is the deterministic heart of a transfer. It takes bytes and
//! events from whoever drives it (the QUIC session in `ferry-engine`, or a
//! simulated network in tests) and answers with frames to send and chunks
//! to move. It never reads a clock, a socket or a file, so every behaviour
//! can be reproduced in a unit test.
//!
//! - [`path`]: the one function that decides whether a share-relative path
//!   from the network is acceptable, and the `share=NAME/dir` notation.
//! - [`frame`]: control-stream frames, length-prefixed with a hard cap that is
//!   checked before any allocation.
//! - [`plan`]: the files of a transfer, their priorities and chunk layout.
//! - [`bitmap`]: which chunks of a file a receiver already holds (resume).
//! - [`schedule`]: the order in which a sender puts chunks on the wire.
//! - [`session`]: the sender and receiver state machines.
//! - [`chunk`]: the header and trailer of a chunk on its own stream.
//! - [`sequence`]: frame-sequence notation (`shot.%04d.exr[1001-1100]`).
//! - [`rules`]: `GLOB=high|low|N` priority rules.
//! - [`pace`]: congestion policy and target rate of a session.
//! - [`transport`]: QUIC, TCP or HTTPS, the ways a session's bytes travel.

pub mod bitmap;
pub mod chunk;
pub mod digest;
pub mod frame;
pub mod pace;
pub mod path;
pub mod plan;
pub mod rules;
pub mod schedule;
pub mod sequence;
pub mod session;
pub mod transport;

pub use bitmap::ChunkBitmap;
pub use chunk::{ChunkHeader, ChunkRef};
pub use digest::Digest;
pub use frame::{ErrorCode, Frame, FrameDecoder, FrameError, MAX_FRAME_LEN};
pub use pace::{Pace, Policy, Rate, RateError};
pub use path::{PathError, SharePath, ShareRef};
pub use plan::{ChunkLayout, FileId, PlanFile, Priority, PriorityError};
pub use rules::PriorityRules;
pub use session::{ProtoError, Receiver, ReceiverEvent, Sender, SenderEvent};
pub use transport::{Transport, Transports};

/// ALPN protocol name of Ferry's QUIC data plane.
pub const ALPN: &[u8] = b"ferry/1";

/// Protocol version carried in `Hello`; a peer with another version is refused.
pub const PROTOCOL_VERSION: u32 = 2;
