//! The appliance's metrics in Prometheus' text format.
//!
//! Counters and histograms are recorded where things happen
//! ([`ferryd_core::meters`], through the `metrics` facade); the gauges
//! (sessions, leases, jobs by status, the outbox) are read from the
//! services at each scrape, so they are never stale. The recorder is
//! metrics-exporter-prometheus'.
//!
//! Who may scrape: on the control port, `GET /metrics` with an admin's API
//! key or the dedicated token of `[metrics] token_file` (a bearer token:
//! a Prometheus server should not hold an admin's key); on the plain-HTTP
//! address of `--metrics-listen`, anyone who reaches it, so that address
//! belongs on a management network.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use ferryd_core::Services;
use ferryd_core::meters;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The recorder is the process's: installed once.
static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Prometheus' text format, as its content type names it.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The appliance's metrics and who may read them.
pub struct Metrics {
    handle: PrometheusHandle,
    /// The scrape token's hash: compared in constant time.
    token: Option<blake3::Hash>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Installs the recorder (once per process) and reads the scrape
    /// token from `token_file`, if any.
    pub fn install(token_file: Option<&Path>) -> Result<Self> {
        let token = match token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the metrics token {}", path.display()))?;
                let token = text.trim();
                anyhow::ensure!(
                    token.len() >= 16,
                    "the metrics token in {} is shorter than 16 characters",
                    path.display()
                );
                Some(blake3::hash(token.as_bytes()))
            }
            None => None,
        };
        let handle = match RECORDER.get() {
            Some(h) => h.clone(),
            None => {
                let h = recorder()?;
                meters::describe();
                RECORDER.get_or_init(|| h).clone()
            }
        };
        Ok(Metrics { handle, token })
    }

    /// Whether `bearer` is the scrape token.
    pub fn is_token(&self, bearer: &str) -> bool {
        self.token
            .is_some_and(|t| t == blake3::hash(bearer.as_bytes()))
    }

    /// The metrics now, with the gauges read afresh.
    pub async fn render(&self, services: &Services) -> String {
        metrics::gauge!(meters::SESSIONS_ACTIVE).set(services.live.count() as f64);
        metrics::gauge!(meters::LEASES_ACTIVE).set(services.appliance.open_ports().len() as f64);
        match services.jobs.count_by_status().await {
            Ok(counts) => {
                for (status, n) in counts {
                    metrics::gauge!(meters::JOBS, "status" => status.as_str()).set(n as f64);
                }
            }
            Err(e) => log::error!("metrics: cannot count the jobs: {e}"),
        }
        match services.notifier.counts().await {
            Ok(c) => {
                for (state, n) in [
                    ("waiting", c.waiting),
                    ("sent", c.sent),
                    ("refused", c.failed),
                ] {
                    metrics::gauge!(meters::OUTBOX, "state" => state).set(n as f64);
                }
            }
            Err(e) => log::error!("metrics: cannot count the outbox: {e}"),
        }
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// The recorder, with buckets that fit a transfer appliance's sessions.
fn recorder() -> Result<PrometheusHandle> {
    let buckets = |name: &str, values: &[f64]| (Matcher::Full(name.to_owned()), values.to_vec());
    let mut builder = PrometheusBuilder::new();
    for (matcher, values) in [
        buckets(
            meters::SESSION_RATE,
            // 1 Mbit/s to 10 Gbit/s, in bytes.
            &[
                1.25e5, 1.25e6, 6.25e6, 1.25e7, 3.125e7, 6.25e7, 1.25e8, 3.125e8, 6.25e8, 1.25e9,
            ],
        ),
        buckets(
            meters::SESSION_RTT,
            &[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0,
            ],
        ),
        buckets(
            meters::SESSION_LOSS,
            &[0.0001, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2],
        ),
    ] {
        builder = builder.set_buckets_for_metric(matcher, &values)?;
    }
    Ok(builder.install_recorder()?)
}

/// The answer to a scrape.
pub async fn answer(metrics: &Metrics, services: &Services) -> axum::response::Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics.render(services).await,
    )
        .into_response()
}

/// Serves `/metrics`, and nothing else, over plain HTTP on `listener`.
pub async fn serve_plain(
    metrics: Arc<Metrics>,
    services: Services,
    listener: tokio::net::TcpListener,
) {
    let app = Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                |State((m, s)): State<(Arc<Metrics>, Services)>| async move {
                    answer(&m, &s).await
                },
            ),
        )
        .with_state((metrics, services));
    if let Err(e) = axum::serve(listener, app).await {
        log::error!("the metrics listener stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the shipped Grafana dashboard queries is one the
    /// appliance exports (a histogram's `_bucket` series included).
    #[test]
    fn the_dashboard_asks_only_for_metrics_that_exist() {
        let known = [
            meters::TRANSFER_BYTES,
            meters::SESSIONS_ACTIVE,
            meters::LEASES_ACTIVE,
            meters::JOBS,
            meters::OUTBOX,
            meters::MAIL_FAILURES,
            meters::SESSION_RATE,
            meters::SESSION_RTT,
            meters::SESSION_LOSS,
            meters::HTTP_REQUESTS,
            meters::LOGIN_FAILURES,
            meters::AUDIT_EVENTS,
            meters::WATCH_PENDING,
            meters::WATCH_DELIVERIES,
            meters::SITE_CAP,
        ];
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/grafana-ferry.json")).unwrap();
        let mut asked = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if let Some(name) = word.strip_prefix("ferry_") {
                        let name = format!("ferry_{name}");
                        let base = name.strip_suffix("_bucket").unwrap_or(&name);
                        assert!(known.contains(&base), "{name} in {expr:?} is not exported");
                        asked += 1;
                    }
                }
            }
        }
        assert!(
            asked >= known.len(),
            "the dashboard asks for {asked} series"
        );
    }

    #[test]
    fn only_the_token_is_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "a-scrape-token-0123456789\n").unwrap();
        let m = Metrics::install(Some(&file)).unwrap();
        assert!(m.is_token("a-scrape-token-0123456789"));
        assert!(!m.is_token("a-scrape-token-012345678"));
        assert!(!Metrics::install(None).unwrap().is_token(""));
        std::fs::write(&file, "short").unwrap();
        assert!(Metrics::install(Some(&file)).is_err());
    }
}
