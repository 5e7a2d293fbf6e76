//! A deadline on each HTTP/1 request head, apart from the idle wait
//! between requests.
//!
//! hyper has one timer for both: its `header_read_timeout` starts when it
//! begins waiting for a request, so on a keep-alive connection it also
//! times the idle wait before the next one. With the 10 s a slow-loris
//! defence wants, a client that reuses a connection idle for ten seconds
//! could send its request just as the appliance closed it, and see the
//! TLS stream cut with no answer (what Schemathesis met under load). So
//! the two are kept apart: this wrapper gives every request head
//! [`HEAD`] to arrive whole, counted from the connection's start for the
//! first and from its first byte for the others, and hyper's own timer is
//! set to [`IDLE`], the time an idle keep-alive connection is kept.
//!
//! The wrapper reads the bytes going by only to find where a head ends
//! (the blank line) and where the next begins (the first byte after a
//! response was written). HTTP/2, chosen by ALPN or by its preface, has
//! no heads of this kind and passes through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A request head must arrive whole within this.
pub const HEAD: Duration = Duration::from_secs(10);
/// An idle keep-alive connection is kept this long: longer than clients
/// usually wait between calls, so that they rarely reuse a connection at
/// the moment it closes.
pub const IDLE: Duration = Duration::from_secs(75);

const BLANK_LINE: &[u8; 4] = b"\r\n\r\n";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";
const SWITCHING: &[u8] = b"HTTP/1.1 101 ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head, against the deadline.
    Head,
    /// The head is in; a body may follow and a response goes out. The next
    /// byte read after a response begins the next head.
    Served { wrote: bool },
    /// HTTP/2: no deadline here.
    Through,
}

/// An HTTP connection's stream with a deadline on each request head.
pub struct HeadDeadline<S> {
    inner: S,
    limit: Duration,
    phase: Phase,
    deadline: Option<Pin<Box<Sleep>>>,
    /// How much of [`BLANK_LINE`] the last bytes matched.
    matched: usize,
    /// Bytes read so far, while fewer than the HTTP/2 preface.
    start: Vec<u8>,
}

impl<S> HeadDeadline<S> {
    /// Wraps a connection's stream; `http2` when ALPN chose HTTP/2.
    pub fn new(inner: S, limit: Duration, http2: bool) -> Self {
        let (phase, deadline) = if http2 {
            (Phase::Through, None)
        } else {
            (
                Phase::Head,
                Some(Box::pin(tokio::time::sleep_until(Instant::now() + limit))),
            )
        };
        HeadDeadline {
            inner,
            limit,
            phase,
            deadline,
            matched: 0,
            start: Vec::new(),
        }
    }

    /// Follows the request stream through `bytes` just read.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.phase == Phase::Head && self.start.len() < H2_PREFACE.len() {
            self.start.extend_from_slice(bytes);
            if self.start.starts_with(H2_PREFACE) {
                self.phase = Phase::Through;
                self.deadline = None;
                return;
            }
        }
        if self.phase == (Phase::Served { wrote: true }) {
            // A response went out and bytes come: the next head begins.
            self.phase = Phase::Head;
            self.matched = 0;
            self.deadline = Some(Box::pin(tokio::time::sleep_until(
                Instant::now() + self.limit,
            )));
        }
        if self.phase != Phase::Head {
            // A body, or HTTP/2.
            return;
        }
        for &b in bytes {
            self.matched = if b == BLANK_LINE[self.matched] {
                self.matched + 1
            } else if b == b'\r' {
                1
            } else {
                0
            };
            if self.matched == BLANK_LINE.len() {
                // The head is whole; what follows is its body, if any.
                self.phase = Phase::Served { wrote: false };
                self.deadline = None;
                self.matched = 0;
                return;
            }
        }
    }

    /// Follows the response stream through `data`, of which `n` bytes
    /// were written. A `101 Switching Protocols` hands the connection to
    /// another protocol (the HTTPS data lanes): it has no heads any more.
    fn wrote(&mut self, data: &[u8], n: usize) {
        if n > 0
            && let Phase::Served { wrote } = &mut self.phase
        {
            if !*wrote && data.starts_with(SWITCHING) {
                self.phase = Phase::Through;
                self.deadline = None;
                return;
            }
            *wrote = true;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request head did not arrive in time",
            )));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        this.saw(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, data))?;
        self.wrote(data, n);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        let first: &[u8] = bufs.iter().find(|b| !b.is_empty()).map_or(&[], |b| b);
        self.wrote(first, n);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    const LIMIT: Duration = Duration::from_secs(10);

    /// Reads what the client sent, as hyper would.
    async fn read_some<S: AsyncRead + Unpin>(s: &mut HeadDeadline<S>) -> io::Result<usize> {
        let mut buf = [0u8; 256];
        s.read(&mut buf).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_never_ends_is_cut_at_the_deadline() {
        let (mut client, server) = duplex(1024);
        let mut s = HeadDeadline::new(server, LIMIT, false);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        assert!(read_some(&mut s).await.is_ok());
        let started = Instant::now();
        let e = read_some(&mut s).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_is_not_timed_by_the_head_deadline() {
        let (mut client, server) = duplex(1024);
        let mut s = HeadDeadline::new(server, LIMIT, false);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_some(&mut s).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        // A minute of quiet: no deadline runs.
        let idle = tokio::time::timeout(Duration::from_secs(60), read_some(&mut s)).await;
        assert!(idle.is_err(), "the idle connection was cut");
        // The next request starts a new head, with its own deadline.
        client.write_all(b"GET /again HTTP/1.1\r\n").await.unwrap();
        read_some(&mut s).await.unwrap();
        let started = Instant::now();
        let e = read_some(&mut s).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_body_and_a_head_split_across_reads_are_fine() {
        let (mut client, server) = duplex(1024);
        let mut s = HeadDeadline::new(server, LIMIT, false);
        // The blank line arrives in two pieces.
        client.write_all(b"POST / HTTP/1.1\r\n\r").await.unwrap();
        read_some(&mut s).await.unwrap();
        client.write_all(b"\n\r\n{").await.unwrap();
        read_some(&mut s).await.unwrap();
        // The body trickles for longer than the deadline.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(8)).await;
            client.write_all(b"\"a\": 1").await.unwrap();
            read_some(&mut s).await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn http2_passes_through() {
        let (mut client, server) = duplex(1024);
        let mut s = HeadDeadline::new(server, LIMIT, false);
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        read_some(&mut s).await.unwrap();
        s.write_all(b"settings").await.unwrap();
        client.write_all(b"frames").await.unwrap();
        read_some(&mut s).await.unwrap();
        let quiet = tokio::time::timeout(Duration::from_secs(60), read_some(&mut s)).await;
        assert!(quiet.is_err(), "an HTTP/2 connection was timed");
        let mut by_alpn = HeadDeadline::new(tokio::io::empty(), LIMIT, true);
        assert_eq!(read_some(&mut by_alpn).await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upgraded_connection_is_not_timed() {
        let (mut client, server) = duplex(1024);
        let mut s = HeadDeadline::new(server, LIMIT, false);
        client
            .write_all(b"GET /api/v1/lanes HTTP/1.1\r\nUpgrade: ferry-lanes/1\r\n\r\n")
            .await
            .unwrap();
        read_some(&mut s).await.unwrap();
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .await
            .unwrap();
        // Lane bytes, with no blank line among them, for longer than a head
        // may take.
        for _ in 0..3 {
            client.write_all(b"\x01chunk bytes").await.unwrap();
            read_some(&mut s).await.unwrap();
            tokio::time::sleep(Duration::from_secs(8)).await;
        }
        client.write_all(b"more").await.unwrap();
        assert_eq!(read_some(&mut s).await.unwrap(), 4);
    }
}
