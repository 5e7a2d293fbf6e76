//! The appliance's REST API over HTTPS, pinned to its certificate.
//!
//! An appliance may answer on several addresses (a cluster's nodes, one
//! box's uplinks). The client uses one at a time and moves to the next
//! when the one in use fails ([`after_failure`] says when), so the agent,
//! the desktop app and a transfer's retries carry on through another node.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferry_api::{
    DeliveryCreated, DeliveryRequest, ErrorBody, Health, JobDetail, JobInfo, JobList, LoginRequest,
    LoginResponse, PasswordChange, PriorityChange, PurgeRequest, RateChange, SessionGrant,
    SessionRequest, ShareInfo, USER_HEADER, UserInfo, codes,
};
use ferry_engine::tls::{Fingerprint, PinnedCert, find_mismatch, find_tls_failure};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::credentials::Credentials;
use crate::error::ClientError;

/// A connection to one appliance's API.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    /// Every address, as configured: what names the appliance.
    server: String,
    addresses: Arc<[String]>,
    /// The address in use, an index into `addresses`; shared by clones,
    /// so a move to another node holds for the whole client.
    current: Arc<AtomicUsize>,
    /// The address this computer's memory names as the one to start
    /// with (see [`crate::reach::first_address`]).
    noted: Arc<AtomicUsize>,
    key: Option<String>,
    user: Option<String>,
    pin: Arc<PinnedCert>,
}

/// How a request failed, as far as choosing another address goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection was made: the request never left this computer. Or
    /// the node refused it before acting on it: it is draining, or has no
    /// data port free.
    NotSent,
    /// The connection broke or timed out after the request went out: the
    /// appliance may have acted on it.
    Cut,
    /// The appliance answered, or refused us in a way another address
    /// would too (a certificate, a bad request).
    Final,
}

/// What to do after a request to one address failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Send it again to the next address now.
    TryNext,
    /// Use the next address from now on, but give this failure back: the
    /// request may have been carried out, and only the caller knows
    /// whether doing it twice is safe (a transfer's retry asks for a new
    /// grant; an upload's delivery carries its idempotency key).
    MoveOn,
    /// Give the failure back and stay.
    Stay,
}

/// The one rule for leaving an address: a request that never left is sent
/// to the next at once; one cut on its way is sent again only when doing
/// it twice is harmless (`idempotent`: reads), and otherwise leaves the
/// next call to go elsewhere.
pub fn after_failure(failure: Failure, idempotent: bool) -> NextStep {
    match failure {
        Failure::NotSent => NextStep::TryNext,
        Failure::Cut if idempotent => NextStep::TryNext,
        Failure::Cut => NextStep::MoveOn,
        Failure::Final => NextStep::Stay,
    }
}

/// How often an HTTP/2 connection is pinged, and how long its answer may
/// take: well above a long path's round trip, well under the request
/// timeout.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// How long to wait for a connection to one address. With several, a
/// dead node must not hold a command for long before the next is tried;
/// five seconds still covers two lost SYNs on a long path.
fn connect_timeout(addresses: usize) -> Duration {
    if addresses > 1 {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(10)
    }
}

impl Api {
    /// An API client for `server` (one address, or several separated by
    /// commas, as [`crate::credentials::normalise_server`] gives) that
    /// trusts only certificates matching `pin` (or, for first contact,
    /// records whatever it is shown).
    pub fn new(
        server: &str,
        pin: Arc<PinnedCert>,
        key: Option<String>,
        user: Option<String>,
    ) -> Result<Self, ClientError> {
        let addresses: Arc<[String]> = crate::credentials::addresses(server)
            .map(str::to_owned)
            .collect();
        let tls = pin.client_config(&[b"h2", b"http/1.1"], false);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(connect_timeout(addresses.len()))
            // A pooled connection to a node that died (or an uplink that
            // went dark) would otherwise take the next request and hold it
            // until the timeout; pings find it dead first, so the request
            // goes out on a new connection, or to the next address.
            .http2_keep_alive_interval(KEEP_ALIVE)
            .http2_keep_alive_timeout(KEEP_ALIVE)
            .http2_keep_alive_while_idle(true)
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Invalid(format!("HTTPS client: {e}")))?;
        // A fresh process starts where the last one found an answer, so
        // that a dead node at the head of the list does not cost every
        // command a connect timeout.
        let first = match addresses.len() {
            1 => 0,
            _ => crate::reach::first_address(server)
                .and_then(|a| addresses.iter().position(|x| *x == a))
                .unwrap_or(0),
        };
        Ok(Api {
            http,
            server: server.to_owned(),
            addresses,
            current: Arc::new(AtomicUsize::new(first)),
            noted: Arc::new(AtomicUsize::new(first)),
            key,
            user,
            pin,
        })
    }

    pub fn from_credentials(c: &Credentials) -> Result<Self, ClientError> {
        Api::new(
            &c.server,
            PinnedCert::new(c.fingerprint),
            Some(c.api_key.clone()),
            c.user.clone(),
        )
    }

    /// Every address of the appliance, as configured: what names it in
    /// this computer's records.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The address in use now (`https://host:port`).
    pub fn address(&self) -> &str {
        &self.addresses[self.current.load(Ordering::Relaxed) % self.addresses.len()]
    }

    /// The fingerprint the appliance presented on the last connection.
    pub fn seen_fingerprint(&self) -> Option<Fingerprint> {
        self.pin.seen()
    }

    /// The pin in force, for the data plane.
    pub fn pin(&self) -> &Arc<PinnedCert> {
        &self.pin
    }

    fn request(
        &self,
        method: reqwest::Method,
        address: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let url = format!("{address}{}{path}", ferry_api::PREFIX);
        let mut r = self.http.request(method, url);
        if let Some(key) = &self.key {
            r = r.bearer_auth(key);
        }
        if let Some(user) = &self.user {
            r = r.header(USER_HEADER, user);
        }
        r
    }

    /// Sends a request to the address in use, and to the others in turn
    /// as [`after_failure`] allows.
    async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let idempotent = method == reqwest::Method::GET;
        let count = self.addresses.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut failed = Vec::new();
        for step in 0..count {
            let at = (first + step) % count;
            let address = &self.addresses[at];
            let mut req = self.request(method.clone(), address, path);
            if let Some(body) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let (failure, error) = match req.send().await {
                Ok(resp) => match self.read(address, resp).await {
                    // A node that is draining, full, or has no data port
                    // free refused before acting: the next node may take it.
                    Err(e)
                        if matches!(
                            e.code(),
                            Some(codes::NODE_DRAINING | codes::NODE_BUSY | codes::NO_PORTS)
                        ) =>
                    {
                        (Failure::NotSent, e)
                    }
                    answer => {
                        if step > 0 {
                            log::info!("the appliance answers at {address}; using it from now on");
                            self.current.store(at, Ordering::Relaxed);
                        }
                        if self.noted.swap(at, Ordering::Relaxed) != at {
                            crate::reach::remember_address(&self.server, address);
                        }
                        return answer;
                    }
                },
                Err(e) => self.transport_error(address, e),
            };
            let next = after_failure(failure, idempotent);
            if next == NextStep::Stay || count == 1 {
                return Err(error);
            }
            let to = &self.addresses[(at + 1) % count];
            log::warn!("{error}; moving to {to}");
            self.current.store((at + 1) % count, Ordering::Relaxed);
            failed.push(error);
            if next == NextStep::MoveOn {
                break;
            }
        }
        Err(ClientError::Unreachable {
            server: self.server.clone(),
            detail: failed
                .iter()
                .map(|e| match e {
                    ClientError::Unreachable { server, detail } => format!("{server}: {detail}"),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("; "),
        })
    }

    /// An answer's body, or its error.
    async fn read<T: DeserializeOwned>(
        &self,
        address: &str,
        resp: reqwest::Response,
    ) -> Result<T, ClientError> {
        let status = resp.status();
        if status.is_success() {
            if status == reqwest::StatusCode::NO_CONTENT {
                return serde_json::from_str("null")
                    .map_err(|e| ClientError::Invalid(e.to_string()));
            }
            return resp
                .json()
                .await
                .map_err(|e| self.transport_error(address, e).1);
        }
        let text = resp.text().await.unwrap_or_default();
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => Err(ClientError::Api {
                status: status.as_u16(),
                code: body.error.code,
                message: body.error.message,
            }),
            Err(_) => Err(ClientError::Api {
                status: status.as_u16(),
                code: "http".into(),
                message: format!("the appliance answered {status}"),
            }),
        }
    }

    /// Classifies a failed request where it failed, and words it.
    fn transport_error(&self, address: &str, e: reqwest::Error) -> (Failure, ClientError) {
        if let Some(m) = find_mismatch(&e) {
            return (Failure::Final, ClientError::Fingerprint(m.to_string()));
        }
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail = s.to_string();
            source = s.source();
        }
        // A connection refused, reset or cut mid-request (an appliance
        // restarting) is worth trying again; a TLS failure (a certificate
        // refused, say) is not.
        let tls = find_tls_failure(&e).is_some();
        let failure = if tls {
            Failure::Final
        } else if e.is_connect() {
            Failure::NotSent
        } else if e.is_request() || e.is_body() || e.is_timeout() {
            Failure::Cut
        } else {
            Failure::Final
        };
        if failure == Failure::Final && !e.is_timeout() {
            return (
                failure,
                ClientError::Invalid(format!("talking to the appliance at {address}: {detail}")),
            );
        }
        (
            failure,
            ClientError::Unreachable {
                server: address.to_owned(),
                detail,
            },
        )
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Invalid(e.to_string()))?;
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("/health").await
    }

    pub async fn login(
        &self,
        email: &str,
        password: &str,
        key_name: Option<String>,
    ) -> Result<LoginResponse, ClientError> {
        self.post(
            "/login",
            &LoginRequest {
                email: email.to_owned(),
                password: password.to_owned(),
                key_name,
            },
        )
        .await
    }

    pub async fn change_password(&self, current: &str, new: &str) -> Result<(), ClientError> {
        self.post::<_, ()>(
            "/me/password",
            &PasswordChange {
                current: current.to_owned(),
                new: new.to_owned(),
            },
        )
        .await
    }

    pub async fn me(&self) -> Result<UserInfo, ClientError> {
        self.get("/me").await
    }

    /// Email notifications on or off for me.
    pub async fn set_notify(&self, notify: bool) -> Result<UserInfo, ClientError> {
        self.post("/me/notify", &ferry_api::NotifyChange { notify })
            .await
    }

    pub async fn shares(&self) -> Result<Vec<ShareInfo>, ClientError> {
        self.get("/shares").await
    }

    /// Adds a root share or a share beneath one (admins).
    pub async fn add_share(&self, req: &ferry_api::NewShare) -> Result<ShareInfo, ClientError> {
        self.post("/shares", req).await
    }

    /// The appliance at a glance (admins).
    pub async fn status(&self) -> Result<ferry_api::Status, ClientError> {
        self.get("/status").await
    }

    /// ferryd's recent journal lines (admins); `query` is the URL query
    /// (`job=7&lines=50`).
    pub async fn journal(&self, query: &str) -> Result<Vec<ferry_api::JournalLine>, ClientError> {
        self.get(&format!("/journal?{query}")).await
    }

    pub async fn create_session(&self, req: &SessionRequest) -> Result<SessionGrant, ClientError> {
        self.post("/sessions", req).await
    }

    pub async fn create_delivery(
        &self,
        req: &DeliveryRequest,
    ) -> Result<DeliveryCreated, ClientError> {
        self.post("/deliveries", req).await
    }

    /// A page of jobs; `query` is the URL query (`finished=true&all=true`…).
    pub async fn jobs(&self, query: &str) -> Result<JobList, ClientError> {
        if query.is_empty() {
            self.get("/jobs").await
        } else {
            self.get(&format!("/jobs?{query}")).await
        }
    }

    pub async fn job(&self, id: i64) -> Result<JobDetail, ClientError> {
        self.get(&format!("/jobs/{id}")).await
    }

    /// `pause`, `resume`, `abort` or `retry`.
    pub async fn job_action(&self, id: i64, action: &str) -> Result<JobInfo, ClientError> {
        self.post(&format!("/jobs/{id}/{action}"), &serde_json::json!({}))
            .await
    }

    pub async fn purge(&self, id: i64, delete_files: bool) -> Result<(), ClientError> {
        self.post::<_, ()>(&format!("/jobs/{id}/purge"), &PurgeRequest { delete_files })
            .await
    }

    /// Sets a job's own rate cap (`50M`), or with `None` gives it back the
    /// site's.
    pub async fn set_rate(&self, id: i64, rate: Option<&str>) -> Result<JobInfo, ClientError> {
        self.post(
            &format!("/jobs/{id}/rate"),
            &RateChange {
                rate: rate.map(str::to_owned),
            },
        )
        .await
    }

    /// Marks a job urgent, or not (admins): the bandwidth schedule does
    /// not slow an urgent job.
    pub async fn set_urgent(&self, id: i64, urgent: bool) -> Result<JobInfo, ClientError> {
        self.post(
            &format!("/jobs/{id}/urgent"),
            &ferry_api::UrgentChange { urgent },
        )
        .await
    }

    pub async fn set_priority(
        &self,
        id: i64,
        glob: &str,
        priority: &str,
    ) -> Result<JobDetail, ClientError> {
        self.post(
            &format!("/jobs/{id}/priority"),
            &PriorityChange {
                glob: glob.to_owned(),
                priority: priority.to_owned(),
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_that_never_left_or_a_read_goes_to_the_next_address_at_once() {
        assert_eq!(after_failure(Failure::NotSent, false), NextStep::TryNext);
        assert_eq!(after_failure(Failure::NotSent, true), NextStep::TryNext);
        assert_eq!(after_failure(Failure::Cut, true), NextStep::TryNext);
        assert_eq!(after_failure(Failure::Cut, false), NextStep::MoveOn);
        assert_eq!(after_failure(Failure::Final, true), NextStep::Stay);
        assert_eq!(after_failure(Failure::Final, false), NextStep::Stay);
    }

    /// Two addresses that take no request: one refuses connections, the
    /// other accepts and hangs up. Both are tried, in order, and the error
    /// names each.
    #[tokio::test]
    async fn every_address_is_tried_before_the_appliance_counts_as_unreachable() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = closed.local_addr().unwrap();
        drop(closed);
        let hangs_up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cutting = hangs_up.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((conn, _)) = hangs_up.accept().await {
                drop(conn);
            }
        });
        let server = format!("https://{refused},https://{cutting}");
        let api = Api::new(&server, PinnedCert::first_contact(), None, None).unwrap();
        assert_eq!(api.address(), format!("https://{refused}"));
        let err = api.health().await.unwrap_err();
        let ClientError::Unreachable {
            server: named,
            detail,
        } = &err
        else {
            panic!("not unreachable: {err:?}");
        };
        assert_eq!(named, &server);
        assert!(
            detail.contains(&format!("https://{refused}:"))
                && detail.contains(&format!("https://{cutting}:")),
            "{detail}"
        );
        assert!(err.is_transient());
    }
}
