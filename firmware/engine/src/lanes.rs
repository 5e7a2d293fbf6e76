//! Sessions over ordered byte streams: the TCP and HTTPS transports.
//!
//! QUIC gives a session a control stream and one stream per chunk. Over TCP
//! (TLS on the leased port) or HTTPS (upgraded connections to the control
//! port) a session has *lanes* instead: reliable, ordered byte streams. The
//! first lane carries the control stream; the others join once the session
//! is welcomed, and each carries whole chunks one after another. Several
//! lanes keep one flow's back-off after a loss from capping the session,
//! and since a sender hands its next chunk (in priority order) to whichever
//! lane frees first, priorities hold to within a chunk per lane.
//!
//! Wire format, inside TLS:
//! - a lane opens with one byte, [`OPEN_CONTROL`] or [`OPEN_LANE`];
//! - a control lane then carries records: [`REC_FRAME`] and a ferry frame;
//!   [`REC_CLOSE`], a u32 close code, a u16 length and the reason; and once,
//!   from the appliance after `Welcome`, [`REC_LANES`], the lane key (32
//!   bytes) and the most data lanes it takes (u8);
//! - a data lane presents the session id (u64) and the lane key, is answered
//!   with one byte ([`JOINED`] or [`REFUSED`]), then carries chunk records:
//!   header, bytes, BLAKE3 digest, exactly as a QUIC chunk stream does.
//!
//! A lane is not multiplexed, so there is no flow control to write here:
//! each TCP connection's own does the job. A data lane that fails in the
//! middle of a chunk ends the session (its client resumes in a new one); a
//! data lane that ends between chunks is only one lane fewer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferry_proto::frame::{self, LEN_PREFIX};
use ferry_proto::{ChunkHeader, ErrorCode, Frame, ProtoError, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::EngineError;

/// The first byte of a session's control lane.
pub const OPEN_CONTROL: u8 = b'C';
/// The first byte of a data lane joining a session.
pub const OPEN_LANE: u8 = b'L';
/// A control record holding a ferry frame.
pub const REC_FRAME: u8 = 1;
/// A control record closing the session, with a code and a reason.
pub const REC_CLOSE: u8 = 2;
/// A control record giving the client the lane key.
pub const REC_LANES: u8 = 3;
/// A data lane's answer: it joined its session.
pub const JOINED: u8 = 0;
/// A data lane's answer: no such session, wrong key or too many lanes.
pub const REFUSED: u8 = 1;
/// Data lanes a client opens unless told otherwise.
pub const DEFAULT_LANES: usize = 8;
/// Data lanes the appliance takes for one session.
pub const MAX_LANES: usize = 16;
/// The longest close reason sent.
const MAX_REASON: usize = 800;

/// What a lane runs over: a TLS stream, or an upgraded HTTPS connection.
pub trait LaneIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> LaneIo for T {}

/// A lane's connection, whatever carries it.
pub type BoxedLane = Box<dyn LaneIo>;
type Reader = ReadHalf<BoxedLane>;
type Writer = WriteHalf<BoxedLane>;

/// The secret that lets a data lane join its session. It is sent only
/// over the session's own control lane, inside TLS.
pub type LaneKey = [u8; 32];

/// How a session's lanes ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneEnd {
    /// Closed on purpose, by us or the peer, with a close code (0: done).
    Closed { code: u32, reason: String },
    /// A lane failed under the session.
    Lost(String),
}

impl LaneEnd {
    /// The error a session still waiting for its peer meets.
    pub fn error(&self) -> EngineError {
        match self {
            LaneEnd::Closed { code, reason } => {
                match ErrorCode::from_close_code(u64::from(*code)) {
                    Some(code) => EngineError::Proto(ProtoError::Peer {
                        code,
                        message: reason.clone(),
                    }),
                    None => EngineError::Lost(format!("the session was closed: {reason}")),
                }
            }
            LaneEnd::Lost(why) => EngineError::Lost(why.clone()),
        }
    }
}

/// A session's lanes: its control lane, and the data lanes that joined it.
pub struct Lanes {
    transport: Transport,
    key: LaneKey,
    /// The control lane's writing half; `None` once closed.
    control: tokio::sync::Mutex<Option<Writer>>,
    /// Data lanes free to carry a chunk from here.
    free_tx: mpsc::UnboundedSender<Writer>,
    free_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Writer>>,
    /// Chunks arriving on data lanes.
    incoming_tx: mpsc::Sender<IncomingChunk>,
    incoming_rx: tokio::sync::Mutex<mpsc::Receiver<IncomingChunk>>,
    ended: watch::Sender<Option<LaneEnd>>,
    joined: AtomicUsize,
    max_lanes: usize,
    /// The time the control lane took to open: its round trip, roughly.
    rtt: Duration,
    closing: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("transport", &self.transport)
            .field("joined", &self.joined.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Lanes {
    /// A session's lanes, starting with its control lane's writing half.
    fn new(
        transport: Transport,
        key: LaneKey,
        control: Writer,
        max_lanes: usize,
        rtt: Duration,
    ) -> Arc<Self> {
        let (free_tx, free_rx) = mpsc::unbounded_channel();
        let (incoming_tx, incoming_rx) = mpsc::channel(MAX_LANES);
        Arc::new(Lanes {
            transport,
            key,
            control: tokio::sync::Mutex::new(Some(control)),
            free_tx,
            free_rx: tokio::sync::Mutex::new(free_rx),
            incoming_tx,
            incoming_rx: tokio::sync::Mutex::new(incoming_rx),
            ended: watch::channel(None).0,
            joined: AtomicUsize::new(0),
            max_lanes,
            rtt,
            closing: Mutex::new(None),
        })
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// Data lanes that have joined so far.
    pub fn joined(&self) -> usize {
        self.joined.load(Ordering::Relaxed)
    }

    /// How the session ended, once it has.
    pub fn end(&self) -> Option<LaneEnd> {
        self.ended.borrow().clone()
    }

    /// Records how the session ended (the first word stands).
    fn set_end(&self, end: LaneEnd) {
        self.ended.send_if_modified(|e| {
            if e.is_none() {
                *e = Some(end);
                true
            } else {
                false
            }
        });
    }

    /// Waits until the session has ended, and says how.
    pub async fn ended(&self) -> LaneEnd {
        let mut rx = self.ended.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(end) => end.clone().unwrap_or_else(|| LaneEnd::Lost("ended".into())),
            Err(_) => LaneEnd::Lost("ended".into()),
        }
    }

    /// Checks a joining lane's key, in constant time.
    pub fn key_matches(&self, key: &LaneKey) -> bool {
        self.key
            .iter()
            .zip(key.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Takes a data lane into the session (both ends call this once the
    /// lane has been answered [`JOINED`]). Returns false, dropping the
    /// lane, when the session has all the lanes it takes or has ended.
    pub fn join(self: &Arc<Self>, lane: BoxedLane) -> bool {
        if self.end().is_some() {
            return false;
        }
        let n = self.joined.fetch_add(1, Ordering::Relaxed);
        if n >= self.max_lanes {
            self.joined.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let (reader, writer) = tokio::io::split(lane);
        if self.free_tx.send(writer).is_err() {
            return false;
        }
        tokio::spawn(read_lane(self.clone(), reader));
        true
    }

    /// A data lane to put one chunk on, once one is free.
    pub async fn open_chunk(self: &Arc<Self>) -> Result<LaneWriter, EngineError> {
        let mut free = self.free_rx.lock().await;
        let mut ended = self.ended.subscribe();
        tokio::select! {
            w = free.recv() => match w {
                Some(w) => Ok(LaneWriter { writer: Some(w), lanes: self.clone() }),
                None => Err(EngineError::Lost("no data lane is left".into())),
            },
            end = ended.wait_for(Option::is_some) => Err(match end {
                Ok(e) => e.clone().map_or_else(|| EngineError::Lost("ended".into()), |e| e.error()),
                Err(_) => EngineError::Lost("ended".into()),
            }),
        }
    }

    /// The next chunk arriving on any data lane.
    pub async fn accept_chunk(&self) -> Result<IncomingChunk, EngineError> {
        let mut incoming = self.incoming_rx.lock().await;
        let mut ended = self.ended.subscribe();
        tokio::select! {
            c = incoming.recv() => c.ok_or_else(|| EngineError::Lost("no data lane is left".into())),
            end = ended.wait_for(Option::is_some) => Err(match end {
                Ok(e) => e.clone().map_or_else(|| EngineError::Lost("ended".into()), |e| e.error()),
                Err(_) => EngineError::Lost("ended".into()),
            }),
        }
    }

    /// Writes one control record.
    async fn write_record(&self, record: &[u8]) -> Result<(), EngineError> {
        let mut control = self.control.lock().await;
        let Some(w) = control.as_mut() else {
            return Err(self.end().map_or_else(
                || EngineError::Lost("the control lane is closed".into()),
                |e| e.error(),
            ));
        };
        let written = async {
            w.write_all(record).await?;
            w.flush().await
        }
        .await;
        written.map_err(|e| {
            let why = format!("the control lane failed: {e}");
            self.set_end(LaneEnd::Lost(why.clone()));
            EngineError::Lost(why)
        })
    }

    /// Sends a ferry frame on the control lane.
    pub async fn write_frame(&self, frame: &Frame) -> Result<(), EngineError> {
        let bytes = frame::encode(frame).map_err(|e| ProtoError::Violation(e.to_string()))?;
        let mut record = Vec::with_capacity(1 + bytes.len());
        record.push(REC_FRAME);
        record.extend_from_slice(&bytes);
        self.write_record(&record).await
    }

    /// Closes the session: tells the peer why, then shuts every lane. The
    /// words go out in the background; [`Lanes::closed`] waits for them.
    pub fn close(self: &Arc<Self>, code: u32, reason: &[u8]) {
        let reason = String::from_utf8_lossy(&reason[..reason.len().min(MAX_REASON)]).into_owned();
        let lanes = self.clone();
        let task = tokio::spawn(async move {
            let mut record = vec![REC_CLOSE];
            record.extend_from_slice(&code.to_be_bytes());
            record.extend_from_slice(&(reason.len() as u16).to_be_bytes());
            record.extend_from_slice(reason.as_bytes());
            let mut control = lanes.control.lock().await;
            if let Some(mut w) = control.take() {
                let said = async {
                    w.write_all(&record).await?;
                    w.flush().await?;
                    w.shutdown().await
                };
                if let Err(e) = tokio::time::timeout(Duration::from_secs(3), said).await {
                    log::debug!("closing the control lane: {e}");
                }
            }
            drop(control);
            lanes.set_end(LaneEnd::Closed { code, reason });
            // Free data lanes are shut; those carrying a chunk go when the
            // chunk's writer is dropped.
            let mut free = lanes.free_rx.lock().await;
            free.close();
            while let Ok(mut w) = free.try_recv() {
                let _ = tokio::time::timeout(Duration::from_millis(500), w.shutdown()).await;
            }
        });
        *self.closing.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Waits until the session has ended (the peer closed, a lane failed,
    /// or our own close has been said).
    pub async fn closed(&self) {
        let task = self
            .closing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.ended().await;
    }
}

/// Reads one data lane's chunk records and hands each to the session,
/// taking the lane back once the chunk has been read to its end.
async fn read_lane(lanes: Arc<Lanes>, mut reader: Reader) {
    let mut ended = lanes.ended.subscribe();
    loop {
        let mut header = [0u8; ChunkHeader::LEN];
        let read = tokio::select! {
            r = reader.read_exact(&mut header) => r,
            _ = ended.wait_for(Option::is_some) => return,
        };
        if let Err(e) = read {
            // Between chunks: the peer is closing, or this lane alone went.
            log::debug!("a data lane ended: {e}");
            return;
        }
        let Some(header) = ChunkHeader::decode(&header) else {
            lanes.set_end(LaneEnd::Lost(
                "a data lane carried something that is not a chunk".into(),
            ));
            return;
        };
        let (back, returned) = oneshot::channel();
        let chunk = IncomingChunk {
            header,
            reader: Some(reader),
            remaining: header.len as usize + ferry_proto::Digest::LEN,
            back: Some(back),
        };
        if lanes.incoming_tx.send(chunk).await.is_err() {
            return;
        }
        match returned.await {
            Ok(r) => reader = r,
            // The chunk was not read to its end: the lane's framing is lost.
            Err(_) => return,
        }
    }
}

/// A data lane carrying one chunk from here. Finish it to give the lane
/// back; dropped unfinished, the lane is closed (its framing is lost).
pub struct LaneWriter {
    writer: Option<Writer>,
    lanes: Arc<Lanes>,
}

impl std::fmt::Debug for LaneWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneWriter").finish_non_exhaustive()
    }
}

impl LaneWriter {
    fn lost(&mut self, e: std::io::Error) -> EngineError {
        self.writer = None;
        let why = format!("a data lane failed: {e}");
        self.lanes.set_end(LaneEnd::Lost(why.clone()));
        EngineError::Lost(why)
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        let Some(w) = self.writer.as_mut() else {
            return Err(EngineError::Lost("the data lane is gone".into()));
        };
        match w.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.lost(e)),
        }
    }

    pub async fn write(&mut self, bytes: Bytes) -> Result<(), EngineError> {
        self.write_all(&bytes).await
    }

    /// The chunk is written: flush it and give the lane back.
    pub async fn finish(mut self) -> Result<(), EngineError> {
        let Some(w) = self.writer.as_mut() else {
            return Err(EngineError::Lost("the data lane is gone".into()));
        };
        if let Err(e) = w.flush().await {
            return Err(self.lost(e));
        }
        if let Some(w) = self.writer.take() {
            // A closed pool means the session is closing: the lane goes.
            let _ = self.lanes.free_tx.send(w);
        }
        Ok(())
    }
}

/// One chunk arriving on a data lane: its header is read; its bytes and
/// digest follow.
pub struct IncomingChunk {
    header: ChunkHeader,
    reader: Option<Reader>,
    /// Bytes of this chunk's record still to read (data and digest).
    remaining: usize,
    back: Option<oneshot::Sender<Reader>>,
}

impl std::fmt::Debug for IncomingChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingChunk")
            .field("header", &self.header)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl IncomingChunk {
    pub fn header(&self) -> ChunkHeader {
        self.header
    }

    fn reader(&mut self) -> std::io::Result<&mut Reader> {
        self.reader
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the data lane is gone"))
    }

    /// Appends up to `max` of the chunk's bytes to `buf`; 0 once the
    /// record is read to its end.
    pub async fn read_into(&mut self, buf: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
        let want = max.min(self.remaining);
        if want == 0 {
            return Ok(0);
        }
        let n = (&mut *self.reader()?)
            .take(want as u64)
            .read_buf(buf)
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.remaining -= n;
        Ok(n)
    }

    pub async fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        if buf.len() > self.remaining {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.reader()?.read_exact(buf).await?;
        self.remaining -= buf.len();
        Ok(())
    }

    /// Reads and drops the rest of the record (a chunk already held).
    pub async fn drain(&mut self) -> std::io::Result<()> {
        let mut scratch = vec![0u8; 64 << 10];
        while self.remaining > 0 {
            let n = scratch.len().min(self.remaining);
            self.read_exact(&mut scratch[..n]).await?;
        }
        Ok(())
    }
}

impl Drop for IncomingChunk {
    fn drop(&mut self) {
        if self.remaining == 0
            && let (Some(r), Some(back)) = (self.reader.take(), self.back.take())
        {
            let _ = back.send(r);
        }
    }
}

/// The reading half of a control lane.
pub struct ControlReader {
    reader: Reader,
    lanes: Arc<Lanes>,
}

impl std::fmt::Debug for ControlReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlReader").finish_non_exhaustive()
    }
}

/// A control record's body, as it came off the lane.
enum Read {
    /// A frame, still to be decoded.
    Frame(Vec<u8>),
    Lanes {
        key: LaneKey,
        max: u8,
    },
}

/// A control record, as read.
enum Record {
    Frame(Frame),
    Lanes { key: LaneKey, max: u8 },
}

impl ControlReader {
    /// Reads the next record; `None` once the session was closed cleanly.
    async fn record(&mut self) -> Result<Option<Record>, EngineError> {
        let lost = |lanes: &Lanes, e: std::io::Error| {
            let end = lanes
                .end()
                .unwrap_or_else(|| LaneEnd::Lost(format!("the control lane failed: {e}")));
            lanes.set_end(end.clone());
            end
        };
        let mut kind = [0u8; 1];
        if let Err(e) = self.reader.read_exact(&mut kind).await {
            return match lost(&self.lanes, e) {
                LaneEnd::Closed { code: 0, .. } => Ok(None),
                end => Err(end.error()),
            };
        }
        let read = async {
            match kind[0] {
                REC_FRAME => {
                    let mut prefix = [0u8; LEN_PREFIX];
                    self.reader.read_exact(&mut prefix).await?;
                    let len = frame::decode_len(prefix).map_err(|e| {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                    })?;
                    let mut body = vec![0u8; len];
                    self.reader.read_exact(&mut body).await?;
                    Ok(Ok(Read::Frame(body)))
                }
                REC_CLOSE => {
                    let mut head = [0u8; 6];
                    self.reader.read_exact(&mut head).await?;
                    let code = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
                    let len = usize::from(u16::from_be_bytes([head[4], head[5]])).min(MAX_REASON);
                    let mut reason = vec![0u8; len];
                    self.reader.read_exact(&mut reason).await?;
                    Ok(Err(LaneEnd::Closed {
                        code,
                        reason: String::from_utf8_lossy(&reason).into_owned(),
                    }))
                }
                REC_LANES => {
                    let mut key = [0u8; 32];
                    self.reader.read_exact(&mut key).await?;
                    let mut max = [0u8; 1];
                    self.reader.read_exact(&mut max).await?;
                    Ok(Ok(Read::Lanes { key, max: max[0] }))
                }
                other => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("unknown control record {other}"),
                )),
            }
        };
        match read.await {
            Err(e) => Err(lost(&self.lanes, e).error()),
            Ok(Err(end)) => {
                self.lanes.set_end(end.clone());
                match end {
                    LaneEnd::Closed { code: 0, .. } => Ok(None),
                    end => Err(end.error()),
                }
            }
            Ok(Ok(Read::Lanes { key, max })) => Ok(Some(Record::Lanes { key, max })),
            Ok(Ok(Read::Frame(body))) => frame::decode_body(&body)
                .map(|f| Some(Record::Frame(f)))
                .map_err(|e| EngineError::Proto(ProtoError::Violation(e.to_string()))),
        }
    }

    /// Reads the next frame; `None` once the session was closed cleanly.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, EngineError> {
        match self.record().await? {
            Some(Record::Frame(f)) => Ok(Some(f)),
            Some(Record::Lanes { .. }) => Err(EngineError::Proto(ProtoError::Violation(
                "a lane key in the middle of a session".into(),
            ))),
            None => Ok(None),
        }
    }
}

/// What arrived on a lane the appliance accepted.
pub enum Opening {
    /// A session's control lane, with its greeting read: answer it with
    /// `welcome` or `refuse` through the session's control stream.
    Control {
        lanes: Arc<Lanes>,
        reader: ControlReader,
        hello: Option<Frame>,
    },
    /// A data lane asking to join `session`.
    Join {
        session: u64,
        key: LaneKey,
        lane: BoxedLane,
    },
}

impl std::fmt::Debug for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Opening::Control { .. } => f.write_str("Opening::Control"),
            Opening::Join { session, .. } => write!(f, "Opening::Join({session})"),
        }
    }
}

/// Reads what a new lane is for (the appliance's side). The caller bounds
/// the time this may take.
pub async fn accept(mut lane: BoxedLane, transport: Transport) -> Result<Opening, EngineError> {
    let bad = |what: &str| EngineError::Proto(ProtoError::Violation(what.to_owned()));
    let mut open = [0u8; 1];
    lane.read_exact(&mut open).await.map_err(|e| {
        EngineError::Lost(format!(
            "the lane closed before it said what it is for: {e}"
        ))
    })?;
    match open[0] {
        OPEN_CONTROL => {
            let key: LaneKey = rand::random();
            let (reader, writer) = tokio::io::split(lane);
            let lanes = Lanes::new(transport, key, writer, MAX_LANES, Duration::ZERO);
            let mut reader = ControlReader {
                reader,
                lanes: lanes.clone(),
            };
            let hello = reader.read_frame().await?;
            Ok(Opening::Control {
                lanes,
                reader,
                hello,
            })
        }
        OPEN_LANE => {
            let mut body = [0u8; 40];
            lane.read_exact(&mut body)
                .await
                .map_err(|e| EngineError::Lost(format!("a data lane closed while joining: {e}")))?;
            let mut id = [0u8; 8];
            id.copy_from_slice(&body[..8]);
            let mut key = [0u8; 32];
            key.copy_from_slice(&body[8..]);
            Ok(Opening::Join {
                session: u64::from_be_bytes(id),
                key,
                lane,
            })
        }
        _ => Err(bad("a lane must open as a control lane or a data lane")),
    }
}

/// Answers a joining data lane, and takes it into the session if joined.
pub async fn answer_join(lanes: Option<&Arc<Lanes>>, mut lane: BoxedLane) -> bool {
    let joined = lanes.is_some_and(|l| l.joined() < l.max_lanes && l.end().is_none());
    let word = if joined { JOINED } else { REFUSED };
    let said = async {
        lane.write_all(&[word]).await?;
        lane.flush().await
    };
    if said.await.is_err() || !joined {
        return false;
    }
    lanes.is_some_and(|l| l.join(lane))
}

/// Sends the lane key and the most lanes taken, after `Welcome`.
pub async fn offer_lanes(lanes: &Lanes) -> Result<(), EngineError> {
    let mut record = vec![REC_LANES];
    record.extend_from_slice(&lanes.key);
    record.push(lanes.max_lanes.min(255) as u8);
    lanes.write_record(&record).await
}

/// A client's first lane: says it is a control lane and greets with
/// `hello`. `rtt` is how long opening it took.
pub async fn open_control(
    lane: BoxedLane,
    transport: Transport,
    hello: &Frame,
    rtt: Duration,
) -> Result<(Arc<Lanes>, ControlReader), EngineError> {
    let (reader, writer) = tokio::io::split(lane);
    let lanes = Lanes::new(transport, [0; 32], writer, MAX_LANES, rtt);
    lanes.write_record(&[OPEN_CONTROL]).await?;
    lanes.write_frame(hello).await?;
    let reader = ControlReader {
        reader,
        lanes: lanes.clone(),
    };
    Ok((lanes, reader))
}

/// After `Welcome`, reads the lane key the appliance gave.
pub async fn read_offer(reader: &mut ControlReader) -> Result<(LaneKey, usize), EngineError> {
    match reader.record().await? {
        Some(Record::Lanes { key, max }) => Ok((key, usize::from(max))),
        Some(Record::Frame(f)) => Err(EngineError::Proto(ProtoError::Violation(format!(
            "expected the lane key after Welcome, got {f:?}"
        )))),
        None => Err(EngineError::Lost("the appliance closed the session".into())),
    }
}

/// Joins one more data lane to a client's session.
pub async fn join(
    lanes: &Arc<Lanes>,
    mut lane: BoxedLane,
    session: u64,
    key: &LaneKey,
) -> Result<(), EngineError> {
    let mut ask = Vec::with_capacity(41);
    ask.push(OPEN_LANE);
    ask.extend_from_slice(&session.to_be_bytes());
    ask.extend_from_slice(key);
    let mut answer = [0u8; 1];
    let io = async {
        lane.write_all(&ask).await?;
        lane.flush().await?;
        lane.read_exact(&mut answer).await
    };
    io.await
        .map_err(|e| EngineError::Lost(format!("a data lane could not join: {e}")))?;
    if answer[0] != JOINED {
        return Err(EngineError::Lost(
            "the appliance refused a data lane".into(),
        ));
    }
    if !lanes.join(lane) {
        return Err(EngineError::Lost("the session has ended".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::{ChunkRef, FileId};

    fn pair() -> (BoxedLane, BoxedLane) {
        let (a, b) = tokio::io::duplex(1 << 16);
        (Box::new(a), Box::new(b))
    }

    #[tokio::test]
    async fn chunks_cross_lanes_and_a_close_carries_its_code() {
        // Control lane.
        let (c_client, c_server) = pair();
        let hello = Frame::Bye;
        let server = tokio::spawn(async move { accept(c_server, Transport::Tcp).await });
        let (client, mut creader) = open_control(c_client, Transport::Tcp, &hello, Duration::ZERO)
            .await
            .expect("control lane opens");
        let Ok(Ok(Opening::Control {
            lanes: server,
            reader: _sreader,
            hello,
        })) = server.await
        else {
            panic!("the appliance saw a control lane");
        };
        assert_eq!(hello, Some(Frame::Bye));
        offer_lanes(&server).await.expect("offer");
        let (key, max) = read_offer(&mut creader)
            .await
            .expect("the client reads the key");
        assert_eq!(max, MAX_LANES);
        // Two data lanes: one with the right key, one with a wrong one.
        for (i, k) in [key, [7u8; 32]].into_iter().enumerate() {
            let (l_client, l_server) = pair();
            let srv = server.clone();
            let answered = tokio::spawn(async move {
                match accept(l_server, Transport::Tcp).await {
                    Ok(Opening::Join { session, key, lane }) => {
                        assert_eq!(session, 42);
                        let ok = srv.key_matches(&key);
                        answer_join(ok.then_some(&srv), lane).await
                    }
                    _ => false,
                }
            });
            let joined = join(&client, l_client, 42, &k).await;
            assert_eq!(joined.is_ok(), i == 0, "lane {i}");
            assert_eq!(answered.await.unwrap_or(false), i == 0);
        }
        assert_eq!((client.joined(), server.joined()), (1, 1));
        // A chunk from the client to the appliance.
        let header = ChunkHeader {
            chunk: ChunkRef {
                file: FileId(3),
                index: 9,
            },
            len: 5,
        };
        let mut w = client.open_chunk().await.expect("a free lane");
        w.write_all(&header.encode()).await.expect("header");
        w.write(Bytes::from_static(b"hello")).await.expect("bytes");
        w.write_all(&[9u8; 32]).await.expect("digest");
        w.finish().await.expect("finish");
        let mut incoming = server.accept_chunk().await.expect("a chunk");
        assert_eq!(incoming.header(), header);
        let mut buf = Vec::new();
        assert_eq!(incoming.read_into(&mut buf, 5).await.expect("read"), 5);
        assert_eq!(buf, b"hello");
        let mut digest = [0u8; 32];
        incoming.read_exact(&mut digest).await.expect("digest");
        drop(incoming);
        // The lane came back to the free pool: a second chunk goes too.
        let w = client.open_chunk().await.expect("the lane is free again");
        drop(w);
        // Frames both ways, then a close with a code.
        server.write_frame(&Frame::Bye).await.expect("frame");
        assert_eq!(creader.read_frame().await.expect("frame"), Some(Frame::Bye));
        server.close(ErrorCode::Busy.close_code(), b"too busy");
        server.closed().await;
        match creader.read_frame().await {
            Err(EngineError::Proto(ProtoError::Peer { code, message })) => {
                assert_eq!(code, ErrorCode::Busy);
                assert_eq!(message, "too busy");
            }
            other => panic!("expected the peer's close, got {other:?}"),
        }
        assert!(matches!(client.end(), Some(LaneEnd::Closed { .. })));
        assert!(client.accept_chunk().await.is_err());
    }
}
