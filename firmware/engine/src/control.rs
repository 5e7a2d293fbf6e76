//! The control stream: frames in both directions over one bidirectional
//! QUIC stream, or over a session's control lane.
//!
//! Reading and writing each run in their own task, so the session loops can
//! `select!` on a channel (cancel-safe) instead of on a half-read frame.
//! `Pace` frames concern the connection, not the session, so the reader
//! hands them to a callback instead of to the session loop.

use ferry_proto::frame::{self, LEN_PREFIX};
use ferry_proto::{Frame, Pace, ProtoError};
use quinn::{RecvStream, SendStream};
use tokio::sync::mpsc;

use crate::error::EngineError;
use crate::link::{ControlRecv, ControlSend};

/// Reads one frame; `None` when the peer finished the stream cleanly.
pub async fn read_frame(recv: &mut RecvStream) -> Result<Option<Frame>, EngineError> {
    let mut prefix = [0u8; LEN_PREFIX];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(read_error(e)),
    }
    let len = frame::decode_len(prefix).map_err(|e| ProtoError::Violation(e.to_string()))?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(read_error)?;
    let frame = frame::decode_body(&body).map_err(|e| ProtoError::Violation(e.to_string()))?;
    Ok(Some(frame))
}

fn read_error(e: quinn::ReadExactError) -> EngineError {
    match e {
        quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(c)) => {
            EngineError::from(c)
        }
        other => EngineError::Proto(ProtoError::Violation(format!("control stream: {other}"))),
    }
}

/// Writes one frame.
pub async fn write_frame(send: &mut SendStream, frame: &Frame) -> Result<(), EngineError> {
    let bytes = frame::encode(frame).map_err(|e| ProtoError::Violation(e.to_string()))?;
    send.write_all(&bytes).await.map_err(|e| match e {
        quinn::WriteError::ConnectionLost(c) => EngineError::from(c),
        other => EngineError::Proto(ProtoError::Violation(format!("control stream: {other}"))),
    })
}

/// A control stream driven by two tasks.
#[derive(Debug)]
pub struct Control {
    tx: mpsc::UnboundedSender<Frame>,
    rx: mpsc::Receiver<Result<Frame, EngineError>>,
    writer: tokio::task::JoinHandle<()>,
}

/// What to do when the peer changes the session's pace.
pub type OnPace = Box<dyn Fn(Pace) + Send + Sync>;

impl Control {
    pub fn spawn(send: ControlSend, recv: ControlRecv) -> Self {
        Self::spawn_paced(send, recv, None)
    }

    /// A control stream whose `Pace` frames go to `on_pace` (a client's:
    /// the appliance sets the pace).
    pub fn spawn_paced(
        mut send: ControlSend,
        mut recv: ControlRecv,
        on_pace: Option<OnPace>,
    ) -> Self {
        let (tx, mut out) = mpsc::unbounded_channel::<Frame>();
        let (inc, rx) = mpsc::channel(64);
        let writer = tokio::spawn(async move {
            while let Some(frame) = out.recv().await {
                if send.write_frame(&frame).await.is_err() {
                    return;
                }
            }
            // Give the last frames (often an error that explains the end)
            // a moment to arrive before the caller closes the connection.
            send.finish().await;
        });
        tokio::spawn(async move {
            loop {
                match recv.read_frame().await {
                    Ok(Some(Frame::Pace(pace))) => match &on_pace {
                        Some(f) => f(pace),
                        None => log::debug!("ignored a Pace frame from the client side"),
                    },
                    Ok(Some(frame)) => {
                        if inc.send(Ok(frame)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = inc.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Control { tx, rx, writer }
    }

    /// A way for others to queue frames (a new pace) that does not keep
    /// the stream open once the session is done with it.
    pub fn frames(&self) -> mpsc::WeakUnboundedSender<Frame> {
        self.tx.downgrade()
    }

    /// Queues a frame for the peer.
    pub fn send(&self, frame: Frame) {
        // If the writer is gone the connection is gone, which the reading
        // side reports; nothing to do here.
        let _ = self.tx.send(frame);
    }

    /// The next frame from the peer; `None` once the peer finished the
    /// stream.
    pub async fn recv(&mut self) -> Option<Result<Frame, EngineError>> {
        self.rx.recv().await
    }

    /// Finishes our side after every queued frame is written.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.writer.await;
    }
}
