//! A rate-limited UDP relay on loopback, for tests that need a transfer to
//! last long enough to be interrupted. It listens on the appliance's data
//! ports at its own loopback address and forwards to the appliance from the
//! client's own address, so the appliance still sees the client it granted
//! the session to. (Delay and loss are the business of the WAN emulator in
//! tests/wanem; this only paces.)

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// A running relay; dropping it stops it.
pub struct Relay {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Paces packets to `rate` bytes per second (per direction).
struct Pacer {
    rate: f64,
    next: Instant,
}

impl Pacer {
    async fn wait(&mut self, bytes: usize) {
        // Timers tick in milliseconds: sleep only when a few ms ahead, and
        // let packets through in small bursts otherwise.
        let now = Instant::now();
        if self.next > now + Duration::from_millis(2) {
            tokio::time::sleep_until(self.next).await;
        }
        self.next = self.next.max(now) + Duration::from_secs_f64(bytes as f64 / self.rate);
    }
}

impl Relay {
    /// Relays `listen:port` → `upstream:port` for each port, sending
    /// upstream from `source` (the client's address), at `rate` bytes/s.
    pub fn start(
        listen: IpAddr,
        upstream: IpAddr,
        source: IpAddr,
        ports: std::ops::RangeInclusive<u16>,
        rate: u64,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("relay runtime");
        let up_pacer = Arc::new(Mutex::new(Pacer {
            rate: rate as f64,
            next: Instant::now(),
        }));
        let down_pacer = Arc::new(Mutex::new(Pacer {
            rate: rate as f64,
            next: Instant::now(),
        }));
        for port in ports {
            let front = runtime
                .block_on(UdpSocket::bind(SocketAddr::new(listen, port)))
                .expect("relay bind");
            let front = Arc::new(front);
            let (up, down) = (up_pacer.clone(), down_pacer.clone());
            runtime.spawn(async move {
                let mut flows: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
                let mut buf = vec![0u8; 65536];
                loop {
                    let Ok((n, client)) = front.recv_from(&mut buf).await else {
                        return;
                    };
                    let upstream_sock = match flows.get(&client) {
                        Some(s) => s.clone(),
                        None => {
                            let Ok(s) = UdpSocket::bind(SocketAddr::new(source, 0)).await else {
                                continue;
                            };
                            if s.connect(SocketAddr::new(upstream, port)).await.is_err() {
                                continue;
                            }
                            let s = Arc::new(s);
                            flows.insert(client, s.clone());
                            let (front, s2, down) = (front.clone(), s.clone(), down.clone());
                            tokio::spawn(async move {
                                let mut buf = vec![0u8; 65536];
                                while let Ok(n) = s2.recv(&mut buf).await {
                                    down.lock().await.wait(n).await;
                                    let _ = front.send_to(&buf[..n], client).await;
                                }
                            });
                            s
                        }
                    };
                    up.lock().await.wait(n).await;
                    let _ = upstream_sock.send(&buf[..n]).await;
                }
            });
        }
        Relay {
            runtime: Some(runtime),
        }
    }
}
