//! A whole set of services over an in-memory store, a folder for a share,
//! and a clock the test moves: for the services' unit tests.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_domain::Role;
use ferry_domain::settings::SiteSettings;
use ferry_store::{SqlStore, Store, User};

use crate::audit::{Actor, Audit};
use crate::authority::By;
use crate::clock::ManualClock;
use crate::live::Limits;
use crate::ports::{Appliance, ApplianceFacts, OpenPort};
use crate::services::{Services, Setup};
use crate::settings::SecretDirs;

pub const FROM: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));
pub const NOW: i64 = 1_764_633_600;

struct NoAppliance;

impl Appliance for NoAppliance {
    fn facts(&self) -> ApplianceFacts {
        ApplianceFacts {
            fingerprint: "00".into(),
            certificate: "self-signed for localhost".into(),
            control: "127.0.0.1:8443"
                .parse()
                .unwrap_or(([127, 0, 0, 1], 8443).into()),
            ports: "45190-45210".into(),
            firewall_on: false,
            version: "test",
        }
    }
    fn open_ports(&self) -> Vec<OpenPort> {
        Vec::new()
    }
    fn bound_ports(&self) -> Vec<u16> {
        Vec::new()
    }
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    fn will_serve(&self, _: &str) {}
}

/// Services, their store, people and a root share `media` over a folder.
pub struct World {
    pub _dir: tempfile::TempDir,
    pub media: PathBuf,
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub s: Services,
    pub admin: User,
    /// An employee with read and write on `media`.
    pub sender: User,
    pub recipient: User,
    /// Another employee with no grant.
    pub colleague: User,
}

impl World {
    pub async fn new() -> World {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let media = dir.path().join("media");
        std::fs::create_dir(&media).expect("the share's folder");
        let store: Arc<dyn Store> = Arc::new(SqlStore::open_in_memory().expect("a store"));
        let clock = Arc::new(ManualClock::new(NOW));
        let s = Services::start(
            store.clone(),
            Audit::new(store.clone()),
            clock.clone(),
            Arc::new(NoAppliance),
            Setup {
                baseline: SiteSettings {
                    default_expiry_days: 30,
                    ..Default::default()
                },
                secrets: SecretDirs { allowed: vec![] },
                own_folders: vec![dir.path().join("data")],
                limits: Limits::default(),
                control_port: 8443,
                fallback_host: "ferry.test".into(),
                node: ("test".into(), "ferry.test:8443".into()),
            },
        )
        .await
        .expect("services");
        let user = |email: &'static str, role| {
            let store = store.clone();
            async move {
                store
                    .create_user(email, "", role, Some("sunlit ferry crossing"))
                    .await
                    .expect("a user")
            }
        };
        let admin = user("root@x.io", Role::Admin).await;
        let sender = user("prod@x.io", Role::Employee).await;
        let recipient = user("dir@client.io", Role::Collaborator).await;
        let colleague = user("other@x.io", Role::Employee).await;
        s.shares
            .add_root(
                By::Operator,
                Actor::appliance(),
                "media",
                &media.display().to_string(),
            )
            .await
            .expect("the root share");
        s.shares
            .grant(
                By::Operator,
                Actor::appliance(),
                "media",
                &sender.email,
                ferry_domain::rules::Access {
                    read: true,
                    write: true,
                },
            )
            .await
            .expect("a grant");
        World {
            _dir: dir,
            media,
            store,
            clock,
            s,
            admin,
            sender,
            recipient,
            colleague,
        }
    }

    /// A delivery of `files` (path, size) uploaded into `media/review`, to
    /// the recipient; returns (upload job, download job).
    pub async fn delivery(&self, files: &[(&str, u64)]) -> (i64, i64) {
        let made = self
            .s
            .deliveries
            .create(
                &self.sender,
                FROM,
                ferry_api::DeliveryRequest {
                    name: Some("review".into()),
                    recipients: vec![self.recipient.email.clone()],
                    dest: Some("share=media/review".into()),
                    files: files
                        .iter()
                        .map(|(p, size)| ferry_api::DeliveryFile {
                            path: (*p).into(),
                            size: *size,
                            mtime_ns: 0,
                            priority: 500,
                        })
                        .collect(),
                    ..Default::default()
                },
            )
            .await
            .expect("a delivery");
        let id = |k| {
            made.jobs
                .iter()
                .find(|j| j.kind == k)
                .map(|j| j.id)
                .expect("its job")
        };
        (
            id(ferry_domain::JobKind::Upload),
            id(ferry_domain::JobKind::Download),
        )
    }
}
