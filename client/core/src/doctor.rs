//! `ferry doctor`: what stands between this computer and the appliance,
//! checked from where it runs: the control plane and its certificate pin,
//! the round-trip time, the clock offset, and whether each data transport
//! gets through, with the ports a network must let out (or a facility
//! must forward) named.
//!
//! A transport is probed by opening a session with a token the appliance
//! never issued: a path that works carries the greeting there and the
//! appliance's refusal back, without starting a transfer (each probe is
//! one `session.refused` line in the appliance's audit log).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_api::{SessionKind, SessionRequest};
use ferry_engine::EngineError;
use ferry_proto::{ErrorCode, ProtoError, Transport};
use serde::Serialize;

use crate::api::Api;
use crate::error::ClientError;
use crate::transfer::{Options, probe};

/// What `ferry doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Checkup {
    pub server: String,
    /// The control plane answered, with the pinned certificate.
    pub control: Check,
    pub certificate_pin: Check,
    /// The shortest of a few API round trips, in ms.
    pub rtt_ms: Option<f64>,
    /// The appliance's clock minus ours, in seconds (tokens live for
    /// seconds, so a large offset matters).
    pub clock_offset_secs: Option<f64>,
    pub transports: Vec<TransportCheck>,
    /// What to open or forward, in words.
    pub ports: Vec<String>,
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransportCheck {
    pub transport: Transport,
    pub ok: bool,
    pub detail: String,
    /// From the first packet to the appliance's answer, in ms.
    pub ms: Option<f64>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs every check against `api`'s appliance, at the address in use
/// (an `Api` per address checks each of several).
pub async fn checkup(api: &Api) -> Checkup {
    let server = api.address().to_owned();
    let mut rtts = Vec::new();
    let mut offset = None;
    let mut failure = None;
    for _ in 0..3 {
        let sent = now_secs();
        let t0 = Instant::now();
        match api.health().await {
            Ok(h) => {
                let rtt = t0.elapsed();
                rtts.push(rtt);
                // The appliance read its clock about half way through.
                if let Some(t) = h.time {
                    offset = Some(t as f64 - (sent + rtt.as_secs_f64() / 2.0));
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let rtt = rtts.iter().min().copied();
    let (control, pin) = match &failure {
        None => (
            Check {
                ok: true,
                detail: "the control plane answers over HTTPS".into(),
            },
            Check {
                ok: true,
                detail: "the appliance presents the pinned certificate".into(),
            },
        ),
        Some(ClientError::Fingerprint(m)) => (
            Check {
                ok: false,
                detail: "refused: the certificate is not the pinned one".into(),
            },
            Check {
                ok: false,
                detail: m.clone(),
            },
        ),
        Some(e) => (
            Check {
                ok: false,
                detail: e.to_string(),
            },
            Check {
                ok: false,
                detail: "not checked: the control plane did not answer".into(),
            },
        ),
    };
    let mut transports = Vec::new();
    let mut ports = Vec::new();
    if control.ok {
        match probe_target(api).await {
            Ok(request) => {
                for t in Transport::ALL {
                    transports.push(check_transport(api, &request, t).await);
                }
                if let Ok(grant) = api.create_session(&request).await {
                    ports.push(format!(
                        "data: UDP and TCP ports {} to {} (UDP for QUIC, the fastest; TCP when UDP is dropped)",
                        grant.ports, grant.host
                    ));
                }
            }
            Err(e) => transports.push(TransportCheck {
                transport: Transport::Quic,
                ok: false,
                detail: format!("no share to probe the data ports with: {e}"),
                ms: None,
            }),
        }
    }
    let control_port = server
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
        .unwrap_or(443);
    ports.insert(
        0,
        format!("control and HTTPS data: TCP port {control_port} (through HTTPS_PROXY if your network needs one)"),
    );
    Checkup {
        server,
        control,
        certificate_pin: pin,
        rtt_ms: rtt.map(|r| r.as_secs_f64() * 1e3),
        clock_offset_secs: offset,
        transports,
        ports,
    }
}

/// A session the caller may open, to lease a data port with: a get of the
/// first share it may read.
async fn probe_target(api: &Api) -> Result<SessionRequest, ClientError> {
    let shares = api.shares().await?;
    let share = shares
        .iter()
        .find(|s| s.read)
        .ok_or_else(|| ClientError::Invalid("you may read no share".into()))?;
    Ok(SessionRequest {
        kind: SessionKind::Get,
        target: Some(format!("share={}/", share.name)),
        job: None,
        resume_key: None,
    })
}

async fn check_transport(api: &Api, request: &SessionRequest, t: Transport) -> TransportCheck {
    let started = Instant::now();
    let opts = Options {
        handshake_timeout: Duration::from_secs(5),
        ..Options::default()
    };
    let outcome = probe(api, request, t, &opts).await;
    let ms = Some(started.elapsed().as_secs_f64() * 1e3);
    match outcome {
        // The appliance read our greeting and refused the made-up token:
        // the path works both ways.
        Err(ClientError::Engine(EngineError::Proto(ProtoError::Peer {
            code: ErrorCode::BadToken,
            ..
        }))) => TransportCheck {
            transport: t,
            ok: true,
            detail: format!("gets through ({})", words(t)),
            ms,
        },
        Ok(()) => TransportCheck {
            transport: t,
            ok: true,
            detail: format!("gets through ({})", words(t)),
            ms,
        },
        Err(e) => TransportCheck {
            transport: t,
            ok: false,
            detail: e.to_string(),
            ms: None,
        },
    }
}

fn words(t: Transport) -> &'static str {
    match t {
        Transport::Quic => "UDP to the leased port",
        Transport::Tcp => "TCP to the leased port",
        Transport::Https => "the control port, as web traffic",
    }
}

impl Checkup {
    /// The checkup in plain words, a line each.
    pub fn words(&self) -> String {
        let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
        let mut out = format!("ferry doctor: {}\n", self.server);
        out += &format!(
            "{} control plane: {}\n",
            mark(self.control.ok),
            self.control.detail
        );
        out += &format!(
            "{} certificate: {}\n",
            mark(self.certificate_pin.ok),
            self.certificate_pin.detail
        );
        if let Some(r) = self.rtt_ms {
            out += &format!("     round trip: {r:.1} ms\n");
        }
        if let Some(o) = self.clock_offset_secs {
            let ok = o.abs() < 30.0;
            out += &format!(
                "{} clock: the appliance's is {:+.0} s from this computer's (to within a second){}\n",
                mark(ok),
                o,
                if ok {
                    ""
                } else {
                    " (set both by NTP: tokens last seconds)"
                }
            );
        }
        for t in &self.transports {
            let ms = t.ms.map(|m| format!(" in {m:.0} ms")).unwrap_or_default();
            out += &format!("{} {}: {}{ms}\n", mark(t.ok), t.transport, t.detail);
        }
        if let Some(best) = self.transports.iter().find(|t| t.ok) {
            out += &format!(
                "     transfers will use {} (with --transport auto)\n",
                best.transport
            );
        }
        out += "     to open or forward:\n";
        for p in &self.ports {
            out += &format!("       {p}\n");
        }
        out
    }
}
