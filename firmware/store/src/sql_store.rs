//! [`SqlStore`]: the [`Store`] trait over the blocking [`Database`]
//! (SQLite or PostgreSQL), each call run on tokio's blocking pool.

use std::path::Path;
use std::sync::Arc;

use crate::*;

/// The store: the [`Database`]'s calls, off the async threads.
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: Arc<Database>,
}

impl SqlStore {
    /// Opens (creating if needed) the SQLite database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self::from(Database::open(path)?))
    }

    /// A throwaway SQLite database, for tests.
    pub fn open_in_memory() -> Result<Self> {
        Ok(Self::from(Database::open_in_memory()?))
    }

    /// The database `url` names (see [`Database::open_url`]). Connecting
    /// to PostgreSQL blocks, so an async caller runs this on the blocking
    /// pool.
    pub fn open_url(url: &str, ca: Option<&Path>) -> Result<Self> {
        Ok(Self::from(Database::open_url(url, ca)?))
    }

    /// Which engine holds the state.
    pub fn engine(&self) -> Engine {
        self.db.engine()
    }

    /// Runs `f` on the blocking pool: the database waits on the disk, on
    /// its one writer or on the network, and argon2 takes tens of
    /// milliseconds of CPU, none of which may stall an async worker thread.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Lost(e.to_string()))?
    }
}

impl From<Database> for SqlStore {
    fn from(db: Database) -> Self {
        SqlStore { db: Arc::new(db) }
    }
}

#[async_trait::async_trait]
impl Store for SqlStore {
    // --- What uploads committed ---

    async fn record_commit(
        &self,
        delivery: DeliveryId,
        path: &str,
        size: i64,
        mtime_ns: i64,
        digest: &str,
    ) -> Result<()> {
        let path = path.to_owned();
        let digest = digest.to_owned();
        self.run(move |db| db.record_commit(delivery, &path, size, mtime_ns, &digest))
            .await
    }

    async fn commits(&self, delivery: DeliveryId) -> Result<Vec<Commit>> {
        self.run(move |db| db.commits(delivery)).await
    }

    // --- Deliveries ---

    async fn create_delivery(&self, d: &NewDelivery) -> Result<DeliveryId> {
        let d = d.clone();
        self.run(move |db| db.create_delivery(&d)).await
    }

    async fn delivery(&self, id: DeliveryId) -> Result<Delivery> {
        self.run(move |db| db.delivery(id)).await
    }

    async fn expired_deliveries(&self, at: i64) -> Result<Vec<Delivery>> {
        self.run(move |db| db.expired_deliveries(at)).await
    }

    async fn live_deliveries(&self) -> Result<Vec<Delivery>> {
        self.run(move |db| db.live_deliveries()).await
    }

    async fn mark_reminder(&self, id: DeliveryId, bit: i64) -> Result<bool> {
        self.run(move |db| db.mark_reminder(id, bit)).await
    }

    async fn expire_delivery(&self, id: DeliveryId) -> Result<()> {
        self.run(move |db| db.expire_delivery(id)).await
    }

    async fn make_delivery(&self, plan: &DeliveryPlan) -> Result<DeliveryMade> {
        let plan = plan.clone();
        self.run(move |db| db.make_delivery(&plan)).await
    }

    // --- The audit log ---

    async fn record_event(&self, e: &NewEvent) -> Result<()> {
        let e = e.clone();
        self.run(move |db| db.record_event(&e)).await
    }

    async fn list_events(
        &self,
        limit: u32,
        before: Option<i64>,
        action_prefix: Option<&str>,
    ) -> Result<Vec<Event>> {
        let action_prefix = action_prefix.map(str::to_owned);
        self.run(move |db| db.list_events(limit, before, action_prefix.as_deref()))
            .await
    }

    // --- Invitations ---

    async fn create_invitation(&self, user: UserId, ttl_secs: i64) -> Result<String> {
        self.run(move |db| db.create_invitation(user, ttl_secs))
            .await
    }

    async fn invitation(&self, token: &str) -> Result<Invitation> {
        let token = token.to_owned();
        self.run(move |db| db.invitation(&token)).await
    }

    async fn accept_invitation(&self, token: &str, password: &str) -> Result<User> {
        let token = token.to_owned();
        let password = password.to_owned();
        self.run(move |db| db.accept_invitation(&token, &password))
            .await
    }

    // --- Jobs ---

    async fn create_job(&self, job: &NewJob) -> Result<JobId> {
        let job = job.clone();
        self.run(move |db| db.create_job(&job)).await
    }

    async fn resumable_job(
        &self,
        owner: UserId,
        kind: JobKind,
        key: &str,
    ) -> Result<Option<JobId>> {
        let key = key.to_owned();
        self.run(move |db| db.resumable_job(owner, kind, &key))
            .await
    }

    async fn reopen_job(&self, id: JobId, client: &str) -> Result<()> {
        let client = client.to_owned();
        self.run(move |db| db.reopen_job(id, &client)).await
    }

    async fn job(&self, id: JobId) -> Result<Job> {
        self.run(move |db| db.job(id)).await
    }

    async fn set_job_totals(&self, id: JobId, files: i64, bytes: i64) -> Result<()> {
        self.run(move |db| db.set_job_totals(id, files, bytes))
            .await
    }

    async fn set_job_progress(
        &self,
        id: JobId,
        files_done: i64,
        bytes_done: i64,
        bytes_skipped: i64,
        rate: i64,
    ) -> Result<()> {
        self.run(move |db| db.set_job_progress(id, files_done, bytes_done, bytes_skipped, rate))
            .await
    }

    async fn set_job_rate(&self, id: JobId, rate: i64, bytes_skipped: i64) -> Result<()> {
        self.run(move |db| db.set_job_rate(id, rate, bytes_skipped))
            .await
    }

    async fn set_job_cap(&self, id: JobId, cap: Option<RateCap>) -> Result<()> {
        self.run(move |db| db.set_job_cap(id, cap)).await
    }

    async fn set_job_urgent(&self, id: JobId, urgent: bool) -> Result<()> {
        self.run(move |db| db.set_job_urgent(id, urgent)).await
    }

    async fn set_job_status(
        &self,
        id: JobId,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<()> {
        let error = error.map(str::to_owned);
        self.run(move |db| db.set_job_status(id, status, error.as_deref()))
            .await
    }

    async fn hold_job(
        &self,
        id: JobId,
        status: JobStatus,
        by: Party,
        error: Option<&str>,
    ) -> Result<()> {
        let error = error.map(str::to_owned);
        self.run(move |db| db.hold_job(id, status, by, error.as_deref()))
            .await
    }

    async fn count_jobs_by_status(&self) -> Result<Vec<(JobStatus, i64)>> {
        self.run(move |db| db.count_jobs_by_status()).await
    }

    async fn list_jobs(&self, f: &JobFilter) -> Result<Vec<Job>> {
        let f = f.clone();
        self.run(move |db| db.list_jobs(&f)).await
    }

    async fn carry_job(&self, id: JobId, node: &str) -> Result<()> {
        let node = node.to_owned();
        self.run(move |db| db.carry_job(id, &node)).await
    }

    async fn fail_interrupted_jobs(&self, node: &str, reason: &str) -> Result<usize> {
        let node = node.to_owned();
        let reason = reason.to_owned();
        self.run(move |db| db.fail_interrupted_jobs(&node, &reason))
            .await
    }

    async fn fail_job(&self, id: JobId, error: &str, retry_at: Option<i64>) -> Result<()> {
        let error = error.to_owned();
        self.run(move |db| db.fail_job(id, &error, retry_at)).await
    }

    async fn purge_job(&self, id: JobId) -> Result<()> {
        self.run(move |db| db.purge_job(id)).await
    }

    async fn requeue_job(&self, id: JobId) -> Result<()> {
        self.run(move |db| db.requeue_job(id)).await
    }

    // --- Tasks (a job's files) ---

    async fn add_tasks(&self, job: JobId, tasks: &[NewTask]) -> Result<()> {
        let tasks = tasks.to_vec();
        self.run(move |db| db.add_tasks(job, &tasks)).await
    }

    async fn tasks(&self, job: JobId) -> Result<Vec<Task>> {
        self.run(move |db| db.tasks(job)).await
    }

    async fn task_done(&self, job: JobId, path: &str, digest: Option<&str>) -> Result<()> {
        let path = path.to_owned();
        let digest = digest.map(str::to_owned);
        self.run(move |db| db.task_done(job, &path, digest.as_deref()))
            .await
    }

    async fn task_progress(&self, job: JobId, path: &str, bytes_done: i64) -> Result<()> {
        let path = path.to_owned();
        self.run(move |db| db.task_progress(job, &path, bytes_done))
            .await
    }

    async fn set_task_priority(
        &self,
        job: JobId,
        paths: &[String],
        priority: u16,
    ) -> Result<usize> {
        let paths = paths.to_vec();
        self.run(move |db| db.set_task_priority(job, &paths, priority))
            .await
    }

    async fn live_users_of(
        &self,
        share: ShareId,
        share_path: &str,
        except: DeliveryId,
    ) -> Result<i64> {
        let share_path = share_path.to_owned();
        self.run(move |db| db.live_users_of(share, &share_path, except))
            .await
    }

    // --- API keys ---

    async fn create_api_key(
        &self,
        user: UserId,
        name: &str,
        origin: KeyOrigin,
    ) -> Result<NewApiKey> {
        let name = name.to_owned();
        self.run(move |db| db.create_api_key(user, &name, origin))
            .await
    }

    async fn check_api_key(&self, secret: &str) -> Result<KeyCheck> {
        let secret = secret.to_owned();
        self.run(move |db| db.check_api_key(&secret)).await
    }

    async fn list_api_keys(&self, user: UserId) -> Result<Vec<ApiKey>> {
        self.run(move |db| db.list_api_keys(user)).await
    }

    async fn revoke_api_key(&self, user: UserId, key: ApiKeyId) -> Result<()> {
        self.run(move |db| db.revoke_api_key(user, key)).await
    }

    async fn revoke_login_keys(&self, user: UserId, except: Option<ApiKeyId>) -> Result<usize> {
        self.run(move |db| db.revoke_login_keys(user, except)).await
    }

    // --- Users ---

    async fn create_user(
        &self,
        email: &str,
        name: &str,
        role: Role,
        password: Option<&str>,
    ) -> Result<User> {
        let email = email.to_owned();
        let name = name.to_owned();
        let password = password.map(str::to_owned);
        self.run(move |db| db.create_user(&email, &name, role, password.as_deref()))
            .await
    }

    async fn create_service_account(&self, email: &str, name: &str, role: Role) -> Result<User> {
        let email = email.to_owned();
        let name = name.to_owned();
        self.run(move |db| db.create_service_account(&email, &name, role))
            .await
    }

    async fn user(&self, id: UserId) -> Result<User> {
        self.run(move |db| db.user(id)).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = email.to_owned();
        self.run(move |db| db.user_by_email(&email)).await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        self.run(move |db| db.list_users()).await
    }

    async fn verify_password(&self, email: &str, password: &str) -> Result<Option<User>> {
        let email = email.to_owned();
        let password = password.to_owned();
        self.run(move |db| db.verify_password(&email, &password))
            .await
    }

    async fn set_password(&self, id: UserId, password: &str) -> Result<()> {
        let password = password.to_owned();
        self.run(move |db| db.set_password(id, &password)).await
    }

    async fn set_must_change_password(&self, id: UserId, must: bool) -> Result<()> {
        self.run(move |db| db.set_must_change_password(id, must))
            .await
    }

    async fn set_notify(&self, id: UserId, notify: bool) -> Result<()> {
        self.run(move |db| db.set_notify(id, notify)).await
    }

    async fn set_role(&self, id: UserId, role: Role) -> Result<()> {
        self.run(move |db| db.set_role(id, role)).await
    }

    async fn set_status(&self, id: UserId, status: UserStatus) -> Result<()> {
        self.run(move |db| db.set_status(id, status)).await
    }

    async fn set_user_name(&self, id: UserId, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.run(move |db| db.set_user_name(id, &name)).await
    }

    async fn count_users(&self) -> Result<i64> {
        self.run(move |db| db.count_users()).await
    }

    // --- Web admin sessions ---

    async fn create_web_session(&self, user: UserId, lifetime_secs: i64) -> Result<NewWebSession> {
        self.run(move |db| db.create_web_session(user, lifetime_secs))
            .await
    }

    async fn web_session(&self, token: &str, idle_secs: i64) -> Result<Option<WebSession>> {
        let token = token.to_owned();
        self.run(move |db| db.web_session(&token, idle_secs)).await
    }

    async fn web_session_alive(&self, token: &str, idle_secs: i64) -> Result<bool> {
        let token = token.to_owned();
        self.run(move |db| db.web_session_alive(&token, idle_secs))
            .await
    }

    async fn end_web_session(&self, token: &str) -> Result<()> {
        let token = token.to_owned();
        self.run(move |db| db.end_web_session(&token)).await
    }

    async fn end_web_sessions_of(&self, user: UserId) -> Result<usize> {
        self.run(move |db| db.end_web_sessions_of(user)).await
    }

    async fn sweep_web_sessions(&self, idle_secs: i64) -> Result<usize> {
        self.run(move |db| db.sweep_web_sessions(idle_secs)).await
    }

    // --- Shares and grants ---

    async fn add_root_share(&self, name: &str, path: &Path) -> Result<Share> {
        let name = name.to_owned();
        let path = path.to_path_buf();
        self.run(move |db| db.add_root_share(&name, &path)).await
    }

    async fn add_share(&self, name: &str, root: &str, folder: &SharePath) -> Result<Share> {
        let name = name.to_owned();
        let root = root.to_owned();
        let folder = folder.clone();
        self.run(move |db| db.add_share(&name, &root, &folder))
            .await
    }

    async fn share_by_name(&self, name: &str) -> Result<Option<Share>> {
        let name = name.to_owned();
        self.run(move |db| db.share_by_name(&name)).await
    }

    async fn share(&self, id: ShareId) -> Result<Share> {
        self.run(move |db| db.share(id)).await
    }

    async fn list_shares(&self) -> Result<Vec<Share>> {
        self.run(move |db| db.list_shares()).await
    }

    async fn remove_share(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.run(move |db| db.remove_share(&name)).await
    }

    async fn grant(&self, share: ShareId, user: UserId, access: Access) -> Result<()> {
        self.run(move |db| db.grant(share, user, access)).await
    }

    async fn share_acl(&self, share: ShareId) -> Result<Vec<(UserId, String, Access)>> {
        self.run(move |db| db.share_acl(share)).await
    }

    async fn access(&self, user: &User, share: &Share) -> Result<Access> {
        let user = user.clone();
        let share = share.clone();
        self.run(move |db| db.access(&user, &share)).await
    }

    // --- Settings ---

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.run(move |db| db.setting(&key)).await
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let key = key.to_owned();
        let value = value.to_owned();
        self.run(move |db| db.set_setting(&key, &value)).await
    }

    async fn clear_setting(&self, key: &str) -> Result<()> {
        let key = key.to_owned();
        self.run(move |db| db.clear_setting(&key)).await
    }

    async fn settings(&self) -> Result<Vec<(String, String)>> {
        self.run(move |db| db.settings()).await
    }

    // --- Watch folders ---

    async fn watches(&self) -> Result<Vec<Watch>> {
        self.run(move |db| db.watches()).await
    }

    async fn watch(&self, id: WatchId) -> Result<Watch> {
        self.run(move |db| db.watch(id)).await
    }

    async fn put_watch(&self, w: &NewWatch, replace: bool) -> Result<Watch> {
        let w = w.clone();
        self.run(move |db| db.put_watch(&w, replace)).await
    }

    async fn remove_watch(&self, id: WatchId) -> Result<()> {
        self.run(move |db| db.remove_watch(id)).await
    }

    async fn watch_entries(&self, id: WatchId) -> Result<Vec<WatchEntry>> {
        self.run(move |db| db.watch_entries(id)).await
    }

    async fn watch_deliveries(&self, id: WatchId) -> Result<u64> {
        self.run(move |db| db.watch_deliveries(id)).await
    }

    async fn baseline_watch(&self, id: WatchId, entries: &[(String, String)]) -> Result<()> {
        let entries = entries.to_vec();
        self.run(move |db| db.baseline_watch(id, &entries)).await
    }

    async fn rename_watch_entry(&self, id: WatchId, identity: &str, path: &str) -> Result<()> {
        let (identity, path) = (identity.to_owned(), path.to_owned());
        self.run(move |db| db.rename_watch_entry(id, &identity, &path))
            .await
    }

    // --- The mail outbox ---

    async fn node_heartbeat(&self, beat: &Heartbeat, at: i64) -> Result<Node> {
        let beat = beat.clone();
        self.run(move |db| db.node_heartbeat(&beat, at)).await
    }

    async fn node(&self, name: &str) -> Result<Option<Node>> {
        let name = name.to_owned();
        self.run(move |db| db.node(&name)).await
    }

    async fn nodes(&self) -> Result<Vec<Node>> {
        self.run(|db| db.nodes()).await
    }

    async fn set_node_draining(&self, name: &str, draining: bool) -> Result<()> {
        let name = name.to_owned();
        self.run(move |db| db.set_node_draining(&name, draining))
            .await
    }

    async fn forget_node(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.run(move |db| db.forget_node(&name)).await
    }

    async fn hold_singleton(&self, task: &str, node: &str, at: i64) -> Result<bool> {
        let (task, node) = (task.to_owned(), node.to_owned());
        self.run(move |db| db.hold_singleton(&task, &node, at))
            .await
    }

    async fn singletons(&self) -> Result<Vec<(String, String)>> {
        self.run(|db| db.singletons()).await
    }

    async fn certificate(&self) -> Result<Option<Certificate>> {
        self.run(|db| db.certificate()).await
    }

    async fn offer_certificate(&self, offered: &Certificate) -> Result<Certificate> {
        let offered = offered.clone();
        self.run(move |db| db.offer_certificate(&offered)).await
    }

    async fn replace_certificate(&self, new: &Certificate) -> Result<()> {
        let new = new.clone();
        self.run(move |db| db.replace_certificate(&new)).await
    }

    async fn renew_certificate(&self, key_pem: &str, chain_pem: &str) -> Result<bool> {
        let (key, chain) = (key_pem.to_owned(), chain_pem.to_owned());
        self.run(move |db| db.renew_certificate(&key, &chain)).await
    }

    async fn enqueue_mail(&self, m: &NewMail, domain: &str) -> Result<Option<i64>> {
        let m = m.clone();
        let domain = domain.to_owned();
        self.run(move |db| db.enqueue_mail(&m, &domain)).await
    }

    async fn due_mail(&self, limit: u32) -> Result<Vec<OutboxMail>> {
        self.run(move |db| db.due_mail(limit)).await
    }

    async fn claim_mail(&self, id: i64, attempts: i64) -> Result<bool> {
        self.run(move |db| db.claim_mail(id, attempts)).await
    }

    async fn mail_sent(&self, id: i64) -> Result<()> {
        self.run(move |db| db.mail_sent(id)).await
    }

    async fn mail_retry(&self, id: i64, error: &str, retry_at: i64) -> Result<()> {
        let error = error.to_owned();
        self.run(move |db| db.mail_retry(id, &error, retry_at))
            .await
    }

    async fn mail_hold_all(&self, until: i64) -> Result<()> {
        self.run(move |db| db.mail_hold_all(until)).await
    }

    async fn mail_failed(&self, id: i64, error: &str) -> Result<()> {
        let error = error.to_owned();
        self.run(move |db| db.mail_failed(id, &error)).await
    }

    async fn next_mail_at(&self) -> Result<Option<i64>> {
        self.run(move |db| db.next_mail_at()).await
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts> {
        self.run(move |db| db.outbox_counts()).await
    }

    async fn unsent_mail(&self, limit: u32) -> Result<Vec<UnsentMail>> {
        self.run(move |db| db.unsent_mail(limit)).await
    }

    async fn mail_again(&self, id: i64) -> Result<String> {
        self.run(move |db| db.mail_again(id)).await
    }

    async fn mail_discard(&self, id: i64) -> Result<String> {
        self.run(move |db| db.mail_discard(id)).await
    }

    // --- The database itself ---

    async fn schema_version(&self) -> Result<i64> {
        self.run(move |db| db.schema_version()).await
    }

    async fn integrity_check(&self) -> Result<String> {
        self.run(move |db| db.integrity_check()).await
    }
}
