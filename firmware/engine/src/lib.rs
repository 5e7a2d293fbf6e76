//! Ferry's transfer engine, shared by the appliance daemon and the client.
//!
//! It runs the `ferry-proto` state machines over QUIC (quinn + rustls), or
//! over TLS-over-TCP lanes where UDP does not pass, and
//! does the file IO they ask for:
//!
//! - [`tls`]: the appliance's certificate and fingerprint pinning;
//! - [`transport`]: QUIC endpoint and flow-control settings;
//! - [`lanes`] and [`tcp`]: the same sessions over TLS byte streams, for
//!   networks that drop UDP (TCP on the leased port, or upgraded HTTPS);
//! - [`link`]: a session's connection, whichever of these carries it;
//! - [`congestion`]: the session's pace (policy and target rate) and the
//!   delay-based controller behind `fixed` and `fair`;
//! - [`handshake`]: opening a session with a token from the control plane;
//! - [`send`] and [`receive`]: the two sides of a session;
//! - [`files`]: sources, part files, resume state, atomic commit;
//! - [`share`]: a share's folder as a capability (open, walk, stat, list);
//! - [`claims`]: one session per destination file;
//! - [`watchdir`]: reading a watched folder (its entries, who each is on
//!   disk, and their files);
//! - [`progress`] and [`stop`]: watching and stopping a session.

pub mod claims;
pub mod congestion;
pub mod control;
pub mod error;
pub mod files;
pub mod handshake;
pub mod lanes;
pub mod link;
pub mod pacer;
pub mod progress;
pub mod receive;
pub mod send;
pub mod share;
pub mod stop;
pub mod tcp;
pub mod tls;
pub mod transport;
pub mod watchdir;

pub use error::{ConnectError, EngineError};
pub use link::Link;
pub use progress::{FileEvent, Progress, Snapshot};
pub use send::Outcome;
pub use stop::StopSignal;
