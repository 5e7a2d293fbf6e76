//! The appliance's REST API over HTTPS, pinned to its certificate.

use std::sync::Arc;
use std::time::Duration;

use ferry_api::{
    DeliveryCreated, DeliveryRequest, ErrorBody, Health, JobDetail, JobInfo, JobList, LoginRequest,
    LoginResponse, PasswordChange, PriorityChange, PurgeRequest, RateChange, SessionGrant,
    SessionRequest, ShareInfo, USER_HEADER, UserInfo,
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
    server: String,
    key: Option<String>,
    user: Option<String>,
    pin: Arc<PinnedCert>,
}

impl Api {
    /// An API client for `server` that trusts only certificates matching
    /// `pin` (or, for first contact, records whatever it is shown).
    pub fn new(
        server: &str,
        pin: Arc<PinnedCert>,
        key: Option<String>,
        user: Option<String>,
    ) -> Result<Self, ClientError> {
        let tls = pin.client_config(&[b"h2", b"http/1.1"], false);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Invalid(format!("HTTPS client: {e}")))?;
        Ok(Api {
            http,
            server: server.to_owned(),
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

    pub fn server(&self) -> &str {
        &self.server
    }

    /// The fingerprint the appliance presented on the last connection.
    pub fn seen_fingerprint(&self) -> Option<Fingerprint> {
        self.pin.seen()
    }

    /// The pin in force, for the data plane.
    pub fn pin(&self) -> &Arc<PinnedCert> {
        &self.pin
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}{path}", self.server, ferry_api::PREFIX)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, self.url(path));
        if let Some(key) = &self.key {
            r = r.bearer_auth(key);
        }
        if let Some(user) = &self.user {
            r = r.header(USER_HEADER, user);
        }
        r
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        if status.is_success() {
            if status == reqwest::StatusCode::NO_CONTENT {
                return serde_json::from_str("null")
                    .map_err(|e| ClientError::Invalid(e.to_string()));
            }
            return resp.json().await.map_err(|e| self.transport_error(e));
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

    fn transport_error(&self, e: reqwest::Error) -> ClientError {
        if let Some(m) = find_mismatch(&e) {
            return ClientError::Fingerprint(m.to_string());
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
        let cut = e.is_connect() || e.is_request() || e.is_body();
        if cut && find_tls_failure(&e).is_none() || e.is_timeout() {
            ClientError::Unreachable {
                server: self.server.clone(),
                detail,
            }
        } else {
            ClientError::Invalid(format!(
                "talking to the appliance at {}: {detail}",
                self.server
            ))
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
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
