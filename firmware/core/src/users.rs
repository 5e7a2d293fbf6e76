//! Accounts: signing in (passwords, keys, web sessions), passwords,
//! invitations, service accounts, roles, and taking rights away.
//!
//! Every way in shares one login throttle (the web admin's form and
//! `POST /api/v1/login` alike) and one password policy (web, API,
//! `ferry login`, `ferryd admin`). A password change or reset ends the
//! account's web sessions and revokes the keys its logins minted (but the
//! credential the change was made with, for a change by its owner). Taking
//! a right away takes effect at once: disabling an account stops its
//! running sessions and holds its queued jobs; revoking a key stops the
//! sessions it opened.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_domain::password::{self, PasswordError};
use ferry_domain::rules::{self, AccountRefusal, Refusal};
use ferry_domain::throttle::LoginThrottle;
use ferry_domain::{AccountKind, AuditAction, JobKind, JobStatus, Party, Role, UserId, UserStatus};
use ferry_proto::ErrorCode;
use ferry_store::{
    ApiKey, ApiKeyId, Invitation, JobFilter, KeyCheck, KeyOrigin, NewApiKey, NewWebSession, Store,
    StoreError, User, WebSession,
};

use crate::audit::{Actor, Audit};
use crate::authority::By;
use crate::failing;
use crate::live::LiveSessions;
use crate::notifier::Notifier;

/// A web session ends this long after login, used or not.
pub const WEB_LIFETIME_SECS: i64 = 12 * 3600;
/// …or after this long unused.
pub const WEB_IDLE_SECS: i64 = 3600;

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsersError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Account(#[from] AccountRefusal),
    /// The email or password is wrong (which one is not said).
    #[error("wrong email or password (or the account is not active)")]
    BadCredentials,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error("too many failed sign-ins; try again in {} minutes", .0.as_secs().div_ceil(60))]
    Throttled(Duration),
    #[error("the API key is not valid: it may be mistyped, or for another appliance")]
    UnknownKey,
    #[error("this API key was revoked; sign in again or ask an admin for a new one")]
    RevokedKey,
    #[error(transparent)]
    WeakPassword(#[from] PasswordError),
    #[error("the new password must differ from the current one")]
    SamePassword,
    #[error("{0} already has an account")]
    Exists(String),
    #[error("there is no user {0}")]
    NoUser(String),
    #[error("{0}")]
    Invitation(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

failing!(UsersError {
    UsersError::Refused(r) => (r.failure(), r.code()),
    UsersError::Account(AccountRefusal::Disabled(_)) => (Unauthorized, ACCOUNT_DISABLED),
    UsersError::Account(AccountRefusal::NotActive(_)) => (Unauthorized, ACCOUNT_NOT_ACTIVE),
    UsersError::Account(AccountRefusal::ServiceAccount(_)) => (Unauthorized, SERVICE_ACCOUNT),
    UsersError::Account(_) => (Forbidden, FORBIDDEN),
    UsersError::BadCredentials => (Unauthorized, BAD_CREDENTIALS),
    UsersError::WrongCurrentPassword => (Unauthorized, BAD_CREDENTIALS),
    UsersError::Throttled(w) => (TooMany { retry_after: w.as_secs().max(1) }, RATE_LIMITED),
    UsersError::UnknownKey => (Unauthorized, BAD_API_KEY),
    UsersError::RevokedKey => (Unauthorized, KEY_REVOKED),
    UsersError::WeakPassword(_) => (Invalid, WEAK_PASSWORD),
    UsersError::SamePassword => (Invalid, WEAK_PASSWORD),
    UsersError::Exists(_) => (Conflict, CONFLICT),
    UsersError::NoUser(_) => (NotFound, NOT_FOUND),
    UsersError::Invitation(_) => (Gone, INVALID_REQUEST),
    UsersError::Store(e) => (e.failure(), e.code()),
});

/// The credential a password change was made with, which it leaves alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Through {
    /// An API key (the caller's own).
    Key(ApiKeyId),
    /// A web session, which is replaced by a fresh one.
    Web,
}

/// The users service.
#[derive(Clone)]
pub struct Users {
    store: Arc<dyn Store>,
    audit: Audit,
    notifier: Notifier,
    live: Arc<LiveSessions>,
    throttle: Arc<Mutex<LoginThrottle>>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

impl Users {
    pub fn new(
        store: Arc<dyn Store>,
        audit: Audit,
        notifier: Notifier,
        live: Arc<LiveSessions>,
    ) -> Self {
        Users {
            store,
            audit,
            notifier,
            live,
            throttle: Arc::default(),
        }
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, LoginThrottle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    // --- Signing in ---

    /// Who a presented API key belongs to, when it may be used now.
    pub async fn authenticate(&self, secret: &str) -> Result<(User, ApiKeyId), UsersError> {
        match self.store.check_api_key(secret).await? {
            KeyCheck::Unknown => Err(UsersError::UnknownKey),
            KeyCheck::Revoked { .. } => Err(UsersError::RevokedKey),
            KeyCheck::Live { user, key } => {
                rules::key_use(&user.account())?;
                Ok((user, key))
            }
        }
    }

    /// Checks a password under the shared throttle, auditing failures.
    async fn check_password(
        &self,
        email: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<User, UsersError> {
        let email = email.trim();
        // The lock is let go before anything is awaited.
        let attempt = self.throttle().attempt(email, from, Instant::now());
        if let Err(wait) = attempt {
            self.audit
                .note(
                    Actor {
                        user: None,
                        from: Some(from),
                    }
                    .line(AuditAction::LoginThrottled, email.to_owned())
                    .detail(format!("locked for {} s", wait.as_secs())),
                )
                .await;
            return Err(UsersError::Throttled(wait));
        }
        let Some(user) = self.store.verify_password(email, password).await? else {
            self.audit
                .note(
                    Actor {
                        user: None,
                        from: Some(from),
                    }
                    .line(AuditAction::LoginFailed, email.to_owned()),
                )
                .await;
            return Err(UsersError::BadCredentials);
        };
        self.throttle().succeeded(email, from);
        rules::password_sign_in(&user.account())?;
        Ok(user)
    }

    /// `POST /api/v1/login`: a password for a new API key.
    pub async fn api_login(
        &self,
        email: &str,
        password: &str,
        from: IpAddr,
        key_name: Option<&str>,
    ) -> Result<(User, NewApiKey), UsersError> {
        let user = self.check_password(email, password, from).await?;
        let name = key_name
            .map(str::to_owned)
            .unwrap_or_else(|| format!("login from {from}"));
        let key = self
            .store
            .create_api_key(user.id, &name, KeyOrigin::Login)
            .await?;
        self.audit
            .record(
                Actor::user(user.id, from)
                    .line(AuditAction::Login, user.email.clone())
                    .detail(format!("API key {name:?}")),
            )
            .await?;
        Ok((user, key))
    }

    /// The web pages' login form: a password for a web session (staff
    /// reach the admin with it, collaborators their deliveries).
    pub async fn web_login(
        &self,
        email: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<(User, NewWebSession), UsersError> {
        let user = self.check_password(email, password, from).await?;
        let session = self.start_web_session(&user, from, "web").await?;
        Ok((user, session))
    }

    /// A web session for someone who just proved who they are another way
    /// (they chose their password from their invitation link), so they
    /// land on their delivery without logging in again.
    pub async fn web_session_for(
        &self,
        user: &User,
        from: IpAddr,
    ) -> Result<NewWebSession, UsersError> {
        self.start_web_session(user, from, "web, from the invitation link")
            .await
    }

    /// A new web session for `user`, if they may sign in, audited with
    /// how it began.
    async fn start_web_session(
        &self,
        user: &User,
        from: IpAddr,
        how: &str,
    ) -> Result<NewWebSession, UsersError> {
        rules::web_sign_in(&user.account())?;
        let session = self
            .store
            .create_web_session(user.id, WEB_LIFETIME_SECS)
            .await?;
        self.audit
            .record(
                Actor::user(user.id, from)
                    .line(AuditAction::Login, user.email.clone())
                    .detail(how),
            )
            .await?;
        Ok(session)
    }

    /// How long `email` must wait before trying again from `from`.
    pub fn login_wait(&self, email: &str, from: IpAddr) -> Option<Duration> {
        self.throttle().wait(email, from, Instant::now())
    }

    /// The session behind a browser's cookie, renewing its idle deadline.
    pub async fn web_session(&self, token: &str) -> Result<Option<WebSession>, UsersError> {
        let Some(s) = self.store.web_session(token, WEB_IDLE_SECS).await? else {
            return Ok(None);
        };
        Ok(rules::web_sign_in(&s.user.account()).is_ok().then_some(s))
    }

    /// Whether a session holds, without renewing it (a live page).
    pub async fn web_session_alive(&self, token: &str) -> Result<bool, UsersError> {
        Ok(self.store.web_session_alive(token, WEB_IDLE_SECS).await?)
    }

    pub async fn logout(&self, token: &str, who: Actor, email: &str) -> Result<(), UsersError> {
        self.store.end_web_session(token).await?;
        self.audit
            .note(who.line(AuditAction::Logout, email.to_owned()))
            .await;
        Ok(())
    }

    // --- Passwords ---

    /// The owner changes their password. The current one is asked for
    /// (under the login throttle), unless the account still has the
    /// one-time password it just signed in with. The change ends their
    /// other web sessions and revokes the keys their logins minted,
    /// keeping only the credential it was made with; through the web that
    /// is a fresh session, returned here.
    pub async fn change_password(
        &self,
        user: &User,
        current: Option<&str>,
        new: &str,
        through: Through,
        from: IpAddr,
    ) -> Result<Option<NewWebSession>, UsersError> {
        match current {
            Some(current) => {
                if new == current {
                    return Err(UsersError::SamePassword);
                }
                password::check(new, &[&user.email, &user.name])?;
                match self.check_password(&user.email, current, from).await {
                    Err(UsersError::BadCredentials) => {
                        return Err(UsersError::WrongCurrentPassword);
                    }
                    other => other?,
                };
            }
            None if user.must_change_password => {
                password::check(new, &[&user.email, &user.name])?;
            }
            None => return Err(UsersError::WrongCurrentPassword),
        }
        self.store.set_password(user.id, new).await?;
        let keep = match through {
            Through::Key(k) => Some(k),
            Through::Web => None,
        };
        let ended = self.store.end_web_sessions_of(user.id).await?;
        let revoked = self.store.revoke_login_keys(user.id, keep).await?;
        self.audit
            .record(
                Actor::user(user.id, from)
                    .line(AuditAction::PasswordChange, user.email.clone())
                    .detail(format!(
                        "{ended} web sessions ended, {revoked} login keys revoked"
                    )),
            )
            .await?;
        Ok(match through {
            Through::Web => Some(
                self.store
                    .create_web_session(user.id, WEB_LIFETIME_SECS)
                    .await?,
            ),
            Through::Key(_) => None,
        })
    }

    /// An admin resets someone's password to a one-time one, which must be
    /// changed at the next sign-in. Everything the old password opened
    /// ends.
    pub async fn reset_password(
        &self,
        by: By<'_>,
        who: Actor,
        id: UserId,
    ) -> Result<(User, String), UsersError> {
        by.admin("resetting passwords")?;
        let user = self.store.user(id).await?;
        if user.kind == AccountKind::Service {
            return Err(AccountRefusal::ServiceAccount(user.email).into());
        }
        let one_time = one_time_password();
        self.store.set_password(user.id, &one_time).await?;
        self.store.set_must_change_password(user.id, true).await?;
        self.store.end_web_sessions_of(user.id).await?;
        self.store.revoke_login_keys(user.id, None).await?;
        self.audit
            .record(
                who.line(AuditAction::PasswordReset, user.email.clone())
                    .detail("one-time password"),
            )
            .await?;
        Ok((user, one_time))
    }

    /// Sets a password without knowing the old one (`ferryd admin user
    /// passwd`, on the appliance itself), under the same policy.
    pub async fn set_password(&self, email: &str, new: &str) -> Result<User, UsersError> {
        let user = self.by_email(email).await?;
        password::check(new, &[&user.email, &user.name])?;
        self.store.set_password(user.id, new).await?;
        self.store.end_web_sessions_of(user.id).await?;
        self.store.revoke_login_keys(user.id, None).await?;
        self.audit
            .record(
                Actor::appliance()
                    .line(AuditAction::PasswordReset, user.email.clone())
                    .detail("set on the appliance"),
            )
            .await?;
        Ok(self.store.user(user.id).await?)
    }

    // --- Accounts ---

    /// Adds an account from the appliance itself (`ferryd admin user
    /// add`): with a password (policy-checked) it is active; a service
    /// account has none; otherwise it is invited.
    pub async fn add(
        &self,
        email: &str,
        name: &str,
        role: Role,
        password: Option<&str>,
        service: bool,
    ) -> Result<User, UsersError> {
        let email = email.trim();
        if self.store.user_by_email(email).await?.is_some() {
            return Err(UsersError::Exists(email.to_owned()));
        }
        let user = if service {
            self.store.create_service_account(email, name, role).await?
        } else {
            if let Some(p) = password {
                password::check(p, &[email, name])?;
            }
            self.store.create_user(email, name, role, password).await?
        };
        self.audit
            .record(
                Actor::appliance()
                    .line(AuditAction::UserAdd, user.email.clone())
                    .detail(format!("{} {}", user.role, user.kind)),
            )
            .await?;
        Ok(user)
    }

    /// An admin invites someone: an account without a password and an
    /// email with a link to choose one. Returns the link too, for when no
    /// mail goes out.
    pub async fn invite(
        &self,
        by: By<'_>,
        who: Actor,
        email: &str,
        name: &str,
        role: Role,
    ) -> Result<(User, String), UsersError> {
        by.admin("inviting people")?;
        let email = email.trim();
        if self.store.user_by_email(email).await?.is_some() {
            return Err(UsersError::Exists(email.to_owned()));
        }
        let user = self
            .store
            .create_user(email, name.trim(), role, None)
            .await?;
        self.audit
            .record(
                who.line(AuditAction::UserInvite, user.email.clone())
                    .detail(role.as_str()),
            )
            .await?;
        let link = self.notifier.invite(&user, by.name()).await?;
        Ok((user, link))
    }

    /// An admin makes a service account for automation: active at once,
    /// keys only.
    pub async fn add_service_account(
        &self,
        by: By<'_>,
        who: Actor,
        email: &str,
        name: &str,
        role: Role,
    ) -> Result<User, UsersError> {
        by.admin("adding accounts")?;
        let email = email.trim();
        if self.store.user_by_email(email).await?.is_some() {
            return Err(UsersError::Exists(email.to_owned()));
        }
        let user = self
            .store
            .create_service_account(email, name.trim(), role)
            .await?;
        self.audit
            .record(
                who.line(AuditAction::UserAdd, user.email.clone())
                    .detail(format!("{} service account", user.role)),
            )
            .await?;
        Ok(user)
    }

    /// A fresh invitation link for someone who has not chosen a password
    /// yet, for an admin to hand over when mail does not reach them.
    pub async fn invitation_link(
        &self,
        by: By<'_>,
        who: Actor,
        email: &str,
    ) -> Result<String, UsersError> {
        by.admin("invitation links")?;
        let user = self.by_email(email).await?;
        if user.status != UserStatus::Invited || user.kind == AccountKind::Service {
            return Err(UsersError::Invitation(format!(
                "{} has no invitation waiting: the account is {}",
                user.email, user.status
            )));
        }
        let link = self.notifier.invitation_link(&user).await?;
        self.audit
            .record(who.line(AuditAction::InvitationLink, user.email.clone()))
            .await?;
        Ok(link)
    }

    /// What an invitation link opens.
    pub async fn invitation(&self, token: &str) -> Result<Invitation, UsersError> {
        Ok(self.store.invitation(token).await?)
    }

    /// Someone follows their invitation and chooses a password.
    pub async fn accept_invitation(
        &self,
        token: &str,
        new: &str,
        from: IpAddr,
    ) -> Result<User, UsersError> {
        let Invitation::Valid { user, .. } = self.store.invitation(token).await? else {
            return Err(UsersError::Invitation(
                "this invitation link was used already or has expired".into(),
            ));
        };
        password::check(new, &[&user.email, &user.name])?;
        let user = self
            .store
            .accept_invitation(token, new)
            .await
            .map_err(|e| match e {
                StoreError::Invalid(m) => UsersError::Invitation(m),
                other => other.into(),
            })?;
        self.audit
            .record(
                Actor::user(user.id, from)
                    .line(AuditAction::InvitationAccepted, user.email.clone()),
            )
            .await?;
        Ok(user)
    }

    /// Changes someone's role (admins; not their own).
    pub async fn set_role(
        &self,
        by: By<'_>,
        who: Actor,
        id: UserId,
        role: Role,
    ) -> Result<User, UsersError> {
        by.admin("changing roles")?;
        if by.user().is_some_and(|u| u.id == id) {
            return Err(Refusal::Forbidden("you cannot change your own role".into()).into());
        }
        let user = self.store.user(id).await?;
        self.store.set_role(id, role).await?;
        self.audit
            .record(
                who.line(AuditAction::UserRole, user.email.clone())
                    .detail(role.as_str()),
            )
            .await?;
        Ok(self.store.user(id).await?)
    }

    /// Enables or disables someone (admins; not themselves). Disabling
    /// takes effect at once: their web sessions end, their running
    /// sessions stop, and their queued jobs are held.
    pub async fn set_status(
        &self,
        by: By<'_>,
        who: Actor,
        id: UserId,
        status: UserStatus,
    ) -> Result<User, UsersError> {
        by.admin("enabling and disabling accounts")?;
        if by.user().is_some_and(|u| u.id == id) {
            return Err(Refusal::Forbidden("you cannot disable yourself".into()).into());
        }
        let user = self.store.user(id).await?;
        self.store.set_status(id, status).await?;
        self.audit
            .record(
                who.line(AuditAction::UserStatus, user.email.clone())
                    .detail(status.as_str()),
            )
            .await?;
        if status == UserStatus::Disabled {
            self.store.end_web_sessions_of(id).await?;
            self.cut_off(&user, who, "the account was disabled").await?;
        }
        Ok(self.store.user(id).await?)
    }

    /// Stops `user`'s sessions and holds their queued jobs (paused by an
    /// admin, so only an admin lets them go on).
    async fn cut_off(&self, user: &User, who: Actor, why: &str) -> Result<(), UsersError> {
        let stopped = self
            .live
            .stop_where(|s| s.user == user.id, ErrorCode::Aborted, why);
        let mut held = 0;
        let theirs = self
            .store
            .list_jobs(&JobFilter {
                visible_to: Some(user.id),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        for job in theirs {
            let runs_it = match job.kind {
                JobKind::Download => job.recipient_id == Some(user.id),
                _ => job.owner_id == user.id,
            };
            if runs_it
                && matches!(
                    job.status,
                    JobStatus::Queued
                        | JobStatus::Running
                        | JobStatus::Interrupted
                        | JobStatus::Failed
                )
            {
                self.store
                    .hold_job(job.id, JobStatus::Paused, Party::Admin, Some(why))
                    .await?;
                held += 1;
            }
        }
        self.audit
            .note(
                who.line(AuditAction::SessionRevoked, user.email.clone())
                    .detail(format!(
                        "{why}: {stopped} sessions stopped, {held} jobs held"
                    )),
            )
            .await;
        Ok(())
    }

    /// Turns email notifications on or off for the caller.
    pub async fn set_notify(&self, user: &User, who: Actor, on: bool) -> Result<User, UsersError> {
        self.store.set_notify(user.id, on).await?;
        self.audit
            .record(
                who.line(AuditAction::UserNotify, user.email.clone())
                    .detail(if on { "on" } else { "off" }),
            )
            .await?;
        Ok(self.store.user(user.id).await?)
    }

    // --- Keys ---

    /// Makes a key for `owner` (admins, or the owner for themselves). A
    /// key that could not be used (a disabled account, or an invited one
    /// that has no password yet) is refused now, saying why.
    pub async fn create_key(
        &self,
        by: By<'_>,
        who: Actor,
        owner: &str,
        name: &str,
    ) -> Result<(User, NewApiKey), UsersError> {
        let owner = self.by_email(owner).await?;
        by.owner_or_admin(owner.id, "making keys for others")?;
        rules::key_mint(&owner.account())?;
        let name = name.trim();
        if name.is_empty() {
            return Err(Refusal::Conflict(
                "give the key a name (the script or machine that uses it)".into(),
            )
            .into());
        }
        let key = self
            .store
            .create_api_key(owner.id, name, KeyOrigin::Made)
            .await?;
        self.audit
            .record(
                who.line(AuditAction::KeyCreate, owner.email.clone())
                    .detail(name.to_owned()),
            )
            .await?;
        Ok((owner, key))
    }

    /// Revokes a key; the sessions it opened stop at once.
    pub async fn revoke_key(
        &self,
        by: By<'_>,
        who: Actor,
        owner: UserId,
        key: ApiKeyId,
    ) -> Result<(), UsersError> {
        by.owner_or_admin(owner, "revoking others' keys")?;
        let user = self.store.user(owner).await?;
        self.store.revoke_api_key(owner, key).await?;
        let why = "the API key this transfer was started with was revoked";
        let jobs = self
            .live
            .stop_jobs_where(|s| s.key == Some(key), ErrorCode::Aborted, why);
        let stopped = jobs.len();
        // Held, so that the job waits for its owner (with another key) or
        // an admin rather than looking as if it still ran.
        for job in jobs {
            self.store
                .hold_job(job, JobStatus::Paused, Party::Admin, Some(why))
                .await?;
        }
        self.audit
            .record(
                who.line(AuditAction::KeyRevoke, user.email.clone())
                    .detail(format!("key {}; {stopped} sessions stopped", key.0)),
            )
            .await?;
        Ok(())
    }

    pub async fn keys(&self, by: By<'_>, owner: UserId) -> Result<Vec<ApiKey>, UsersError> {
        by.owner_or_admin(owner, "others' keys")?;
        Ok(self.store.list_api_keys(owner).await?)
    }

    // --- Looking people up ---

    /// How many accounts there are (the watchdog asks, to see that the
    /// store answers).
    pub async fn count(&self) -> Result<i64, UsersError> {
        Ok(self.store.count_users().await?)
    }

    pub async fn get(&self, id: UserId) -> Result<User, UsersError> {
        Ok(self.store.user(id).await?)
    }

    pub async fn by_email(&self, email: &str) -> Result<User, UsersError> {
        self.store
            .user_by_email(email.trim())
            .await?
            .ok_or_else(|| UsersError::NoUser(email.trim().to_owned()))
    }

    /// Everyone, for admins.
    pub async fn list(&self, by: By<'_>) -> Result<Vec<User>, UsersError> {
        by.admin("the list of people")?;
        Ok(self.store.list_users().await?)
    }

    /// Addresses that complete what a sender typed: staff only, enabled
    /// accounts only, at most `limit`.
    pub async fn recipients(
        &self,
        by: &User,
        typed: &str,
        limit: usize,
    ) -> Result<Vec<String>, UsersError> {
        rules::look_up_people(&by.caller())?;
        let q = typed.trim().to_lowercase();
        if q.chars().count() < 2 {
            return Ok(Vec::new());
        }
        let mut emails: Vec<String> = self
            .store
            .list_users()
            .await?
            .into_iter()
            .filter(|u| u.id != by.id && u.status != UserStatus::Disabled)
            .map(|u| u.email)
            .filter(|e| e.to_lowercase().contains(&q))
            .collect();
        emails.sort();
        emails.truncate(limit);
        Ok(emails)
    }

    /// The first administrator's one-time password, when someone must be
    /// shown one: on the very first start; and, on an appliance whose
    /// console shows it, at every start until it has been changed, with a
    /// new one each time (the console file of an earlier start is gone,
    /// and nobody may have read it).
    pub async fn first_admin(
        &self,
        email: &str,
        console: bool,
    ) -> Result<Option<String>, UsersError> {
        if self.store.count_users().await? == 0 {
            let password = one_time_password();
            let admin = self
                .store
                .create_user(email, "Administrator", Role::Admin, Some(&password))
                .await?;
            self.store.set_must_change_password(admin.id, true).await?;
            return Ok(Some(password));
        }
        if console
            && let Some(admin) = self.store.user_by_email(email).await?
            && admin.must_change_password
        {
            let password = one_time_password();
            self.store.set_password(admin.id, &password).await?;
            self.store.set_must_change_password(admin.id, true).await?;
            return Ok(Some(password));
        }
        Ok(None)
    }
}

/// A one-time password people can read off a console: 4 groups of 5 from
/// an alphabet without look-alikes (about 100 bits).
pub fn one_time_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 20];
    fill_random(&mut bytes);
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    chars
        .chunks(5)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

fn fill_random(buf: &mut [u8]) {
    // The store's random source (the OS's CSPRNG) makes hex; two hex
    // digits are a byte.
    let hex = ferry_store::random_hex(buf.len());
    for (i, b) in buf.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use ferry_domain::settings::SiteSettings;
    use ferry_store::SqlStore;

    const FROM: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));
    const GOOD: &str = "sunlit ferry crossing";

    async fn users() -> (Arc<dyn Store>, Users, Arc<LiveSessions>) {
        let store: Arc<dyn Store> = Arc::new(SqlStore::open_in_memory().unwrap());
        let audit = Audit::new(store.clone());
        let site = tokio::sync::watch::channel(SiteSettings::default()).1;
        let notifier = Notifier::new(
            store.clone(),
            audit.clone(),
            Arc::new(ManualClock::new(0)),
            site,
            443,
            "ferry.test".into(),
        );
        let live = Arc::new(LiveSessions::default());
        (
            store.clone(),
            Users::new(store, audit, notifier, live.clone()),
            live,
        )
    }

    #[tokio::test]
    async fn password_guessing_is_throttled_the_same_over_the_api_and_the_web() {
        let (store, users, _) = users().await;
        store
            .create_user("ann@x.io", "Ann", Role::Employee, Some(GOOD))
            .await
            .unwrap();
        for i in 0..5 {
            let r = if i % 2 == 0 {
                users
                    .api_login("ann@x.io", "wrong", FROM, None)
                    .await
                    .map(drop)
            } else {
                users.web_login("ann@x.io", "wrong", FROM).await.map(drop)
            };
            assert!(matches!(r, Err(UsersError::BadCredentials)));
        }
        // The right password is refused too now, on either door.
        assert!(matches!(
            users.api_login("ann@x.io", GOOD, FROM, None).await,
            Err(UsersError::Throttled(_))
        ));
        assert!(matches!(
            users.web_login("ann@x.io", GOOD, FROM).await,
            Err(UsersError::Throttled(_))
        ));
        let audit = store.list_events(20, None, Some("login")).await.unwrap();
        assert!(audit.iter().any(|e| e.action == "login.throttled"));
        assert_eq!(
            audit.iter().filter(|e| e.action == "login.failed").count(),
            5
        );
    }

    #[tokio::test]
    async fn one_policy_and_a_change_ends_other_sessions_and_login_keys() {
        let (store, users, _) = users().await;
        let ann = store
            .create_user("ann@x.io", "Ann", Role::Employee, Some(GOOD))
            .await
            .unwrap();
        let (_, k1) = users.api_login("ann@x.io", GOOD, FROM, None).await.unwrap();
        let (_, k2) = users.api_login("ann@x.io", GOOD, FROM, None).await.unwrap();
        let (_, web) = users.web_login("ann@x.io", GOOD, FROM).await.unwrap();
        let (_, made) = users
            .create_key(By::Operator, Actor::appliance(), "ann@x.io", "ftrack")
            .await
            .unwrap();
        assert!(matches!(
            users
                .change_password(&ann, Some(GOOD), "12345678", Through::Key(k1.id), FROM)
                .await,
            Err(UsersError::WeakPassword(_))
        ));
        assert!(matches!(
            users
                .change_password(&ann, Some(GOOD), "password1234", Through::Key(k1.id), FROM)
                .await,
            Err(UsersError::WeakPassword(_))
        ));
        users
            .change_password(
                &ann,
                Some(GOOD),
                "quiet harbour lanterns",
                Through::Key(k1.id),
                FROM,
            )
            .await
            .unwrap();
        assert!(
            users.authenticate(&k1.secret).await.is_ok(),
            "the key it was made with"
        );
        assert!(matches!(
            users.authenticate(&k2.secret).await,
            Err(UsersError::RevokedKey)
        ));
        assert!(
            users.authenticate(&made.secret).await.is_ok(),
            "made on purpose"
        );
        assert!(users.web_session(&web.token).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn service_accounts_use_keys_only_and_useless_keys_are_refused_when_made() {
        let (store, users, _) = users().await;
        let root = store
            .create_user("root@x.io", "", Role::Admin, Some(GOOD))
            .await
            .unwrap();
        let who = Actor::user(root.id, FROM);
        let bot = users
            .add_service_account(
                By::User(&root),
                who,
                "ftrack@x.io",
                "ftrack",
                Role::Employee,
            )
            .await
            .unwrap();
        assert_eq!(
            (bot.kind, bot.status),
            (AccountKind::Service, UserStatus::Active)
        );
        let (_, key) = users
            .create_key(By::User(&root), who, "ftrack@x.io", "action")
            .await
            .unwrap();
        assert_eq!(users.authenticate(&key.secret).await.unwrap().0.id, bot.id);
        assert!(matches!(
            users.web_login("ftrack@x.io", "", FROM).await,
            Err(UsersError::BadCredentials)
        ));
        // An invited person: no key until they have a password.
        let (invited, link) = users
            .invite(By::User(&root), who, "dir@x.io", "Dir", Role::Collaborator)
            .await
            .unwrap();
        assert!(link.contains("/invite/"));
        let e = users
            .create_key(By::User(&root), who, "dir@x.io", "x")
            .await
            .unwrap_err();
        assert!(
            matches!(e, UsersError::Account(AccountRefusal::NotActive(_))),
            "{e}"
        );
        assert!(e.to_string().contains("service account"));
        // Disabled: a key stops, saying so.
        users
            .set_status(By::User(&root), who, bot.id, UserStatus::Disabled)
            .await
            .unwrap();
        assert!(matches!(
            users.authenticate(&key.secret).await,
            Err(UsersError::Account(AccountRefusal::Disabled(_)))
        ));
        assert!(matches!(
            users.authenticate("fk_nope").await,
            Err(UsersError::UnknownKey)
        ));
        // An invitation accepted with a weak password is refused, and the
        // link still works for a good one.
        let token = link.rsplit('/').next().unwrap();
        assert!(users.accept_invitation(token, "short", FROM).await.is_err());
        let dir = users.accept_invitation(token, GOOD, FROM).await.unwrap();
        assert_eq!((dir.id, dir.status), (invited.id, UserStatus::Active));
    }

    #[tokio::test]
    async fn disabling_someone_stops_their_sessions() {
        let (store, users, live) = users().await;
        let root = store
            .create_user("root@x.io", "", Role::Admin, Some(GOOD))
            .await
            .unwrap();
        let ann = store
            .create_user("ann@x.io", "", Role::Collaborator, Some(GOOD))
            .await
            .unwrap();
        let handle = Arc::new(crate::live::tests::Recorded::default());
        live.admit(crate::live::tests::session(1, 3, ann.id.0, handle.clone()))
            .unwrap();
        users
            .set_status(
                By::User(&root),
                Actor::appliance(),
                ann.id,
                UserStatus::Disabled,
            )
            .await
            .unwrap();
        assert!(handle.stopped.lock().unwrap().is_some());
        assert!(matches!(
            users
                .set_status(
                    By::User(&root),
                    Actor::appliance(),
                    root.id,
                    UserStatus::Disabled
                )
                .await,
            Err(UsersError::Refused(_))
        ));
    }

    #[test]
    fn one_time_passwords_are_readable_and_differ() {
        let a = one_time_password();
        assert_eq!(a.len(), 23);
        assert!(!a.contains(['0', 'o', '1', 'l', 'i']));
        assert_ne!(a, one_time_password());
    }
}
