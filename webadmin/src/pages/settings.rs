//! Settings (admins only): what an admin changes at run time — the public
//! address, trusted proxies, the site's pace (policy and target rate) and
//! the default expiry — beside what the appliance reports and is set in its
//! configuration file (port range, certificate fingerprint, SMTP).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ferry_domain::settings::{LETS_ENCRYPT, MAX_EXPIRY_DAYS, SettingsText};
use ferryd_core::ports::ApplianceFacts;
use maud::{Markup, html};
use serde::Deserialize;

use super::{done, html, html_status};
use crate::Web;
use crate::auth::{Admin, AdminPost, Staff};
use crate::layout::{Notice, csrf, staff_page};

/// What the page reports of the appliance.
#[derive(Debug, Clone)]
pub struct Info {
    pub facts: ApplianceFacts,
    /// The SMTP server and From address, when email is configured.
    pub smtp: Option<String>,
    /// Messages waiting, sent and refused for good.
    pub outbox: (i64, i64, i64),
    pub watches: Vec<ferry_api::WatchInfo>,
}

async fn info(web: &Web, staff: &Staff) -> Info {
    let s = &web.services;
    let site = s.settings.current();
    Info {
        facts: s.appliance.facts(),
        smtp: site.smtp.map(|m| format!("{} as {}", m.url, m.from)),
        outbox: match s.notifier.counts().await {
            Ok(c) => (c.waiting, c.sent, c.failed),
            Err(e) => {
                log::error!("cannot read the outbox's counts: {e}");
                (0, 0, 0)
            }
        },
        watches: match s.watches.list(staff.by()).await {
            Ok(w) => w,
            Err(e) => {
                log::error!("cannot read the watch folders: {e}");
                Vec::new()
            }
        },
    }
}

/// The page with the settings in force and a notice.
async fn render(web: &Web, staff: &Staff, notice: Option<&Notice>) -> Markup {
    view(
        staff,
        &web.services.settings.current().to_text(),
        &info(web, staff).await,
        notice,
    )
}

const POLICIES: [(&str, &str); 4] = [
    (
        "fair",
        "fair: holds the target, yields to other traffic on the path",
    ),
    (
        "fixed",
        "fixed: holds the target whatever else is on the path",
    ),
    (
        "cubic",
        "cubic: TCP-like, backs off on every loss (slow on long lossy links)",
    ),
    ("bbr", "bbr: model-based, fills queues"),
];

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    ok: Option<String>,
}

pub async fn page(
    State(web): State<Arc<Web>>,
    Admin(staff): Admin,
    Query(q): Query<PageQuery>,
) -> Response {
    html(render(&web, &staff, Notice::from_code(q.ok.as_deref()).as_ref()).await)
}

pub fn view(staff: &Staff, site: &SettingsText, info: &Info, notice: Option<&Notice>) -> Markup {
    let proxies = site.trusted_proxies.join(", ");
    staff_page(
        "Settings",
        "/settings",
        staff,
        notice,
        html! {
            form.stack #settings method="post" action="/settings" {
                (csrf(staff))
                h2 { "Network" }
                label { "Public address"
                    input type="text" name="public_address" value=(site.public_address)
                        placeholder="ferry.example.com (empty: the address a client used)";
                    span.hint { "The name or IP that clients send UDP to: your edge router's public address." }
                }
                label { "Trusted proxies"
                    input type="text" name="trusted_proxies" value=(proxies) placeholder="10.0.0.5, 10.0.0.6";
                    span.hint { "Reverse proxies in front of this appliance whose X-Forwarded-For is believed." }
                }
                h2 { "Transfers" }
                label { "Congestion policy"
                    select name="policy" {
                        @for (p, label) in POLICIES { option value=(p) selected[site.policy == p] { (label) } }
                    }
                }
                label { "Target rate (site cap per transfer)"
                    input type="text" name="target_rate" value=(site.target_rate)
                        placeholder="e.g. 500M or 1.5G; empty: no cap";
                    span.hint { "Bits per second. Jobs may be capped lower; clients may ask for less, never more." }
                }
                label { "Site rate (cap on all transfers together)"
                    input type="text" name="site_rate" value=(site.site_rate)
                        placeholder="e.g. 300M; empty: no cap";
                    span.hint { "Bits per second for everything the appliance sends and receives at once. Running transfers share it fairly and are re-paced at once." }
                }
                label { "Transports"
                    input type="text" name="transports" value=(site.transports)
                        placeholder="quic, tcp, https";
                    span.hint { "How data may travel. QUIC (UDP) is the fastest; TCP on the same ports and HTTPS on this port reach networks that drop UDP or allow only a proxy. Clients fall back by themselves among those listed." }
                }
                label { "Bandwidth schedule"
                    textarea name="schedule" rows="3"
                        placeholder="mon-fri 09:00-19:00 200M\nsat,sun 00:00-24:00 none" {
                        (site.schedule.join("\n"))
                    }
                    span.hint {
                        "One rule a line: days, a span and a cap on all transfers together, in the appliance's time zone; "
                        "the first rule that covers a moment decides, and outside every rule the site rate holds. "
                        "A span that ends before it starts runs past midnight; none lifts every cap. "
                        "Running transfers are re-paced at each boundary; jobs an admin marks urgent are spared."
                    }
                }
                label { "Default expiry of a delivery, in days"
                    input type="number" name="default_expiry_days" min="1" max=(MAX_EXPIRY_DAYS) value=(site.default_expiry_days);
                }
                h2 { "Email" }
                label { "SMTP server"
                    input type="text" name="smtp_url" value=(site.smtp_url)
                        placeholder="smtp://mail.example.com:587?tls=required or smtps://mail.example.com:465";
                    span.hint { "smtp:// is plain or STARTTLS (add ?tls=required); smtps:// is implicit TLS. Empty: no email, messages wait." }
                }
                label { "User" input type="text" name="smtp_user" value=(site.smtp_user) autocomplete="off"; }
                label { "Password file on the appliance"
                    input type="text" name="smtp_password_file" value=(site.smtp_password_file) placeholder="/etc/ferry/smtp-password";
                    span.hint { "The password stays in a file readable by ferryd, not in the database." }
                }
                label { "From address"
                    input type="text" name="smtp_from" value=(site.smtp_from) placeholder="Ferry <ferry@example.com>";
                }
                h2 { "Certificate from an ACME CA" }
                p.hint {
                    "So that recipients' browsers trust this appliance without a warning. The CA checks the name with "
                    "TLS-ALPN-01: the name must resolve to this appliance, and port 443 must reach this HTTPS port. "
                    "The certificate is issued for the appliance's own key, so pinned clients keep working; "
                    "it is renewed when two thirds of its life have passed, without a restart."
                }
                label { "Public name"
                    input type="text" name="acme_name" value=(site.acme_name) placeholder="ferry.example.com; empty: no ACME";
                }
                label { "CA directory"
                    input type="text" name="acme_directory" value=(site.acme_directory) placeholder=(LETS_ENCRYPT);
                    span.hint { "Empty: Let's Encrypt." }
                }
                label { "Contact email"
                    input type="text" name="acme_contact" value=(site.acme_contact) placeholder="ops@example.com";
                    span.hint { "Where the CA may write about the certificate." }
                }
                button.primary type="submit" { "Save settings" }
            }
            h2 #watch-folders { "Watch folders" }
            p.hint {
                "Each new folder (or file) that settles in a watched folder becomes a delivery from its sender: "
                "once nothing in it has changed for the settle time and it holds no part or temporary file. "
                "What lay there when the watch began is not delivered; nothing is delivered twice, "
                "across restarts and renames."
            }
            @if info.watches.is_empty() {
                p.empty { "No watch folders." }
            } @else {
                table.watches {
                    thead { tr { th { "Folder" } th { "Sender" } th { "To" } th.num { "Settle" } th { "Each" } th { "Name" } th.num { "Delivered" } th.num { "Waiting files" } th {} } }
                    tbody {
                        @for w in &info.watches {
                            tr {
                                td { code { (w.folder) } }
                                td { (w.sender) }
                                td { (w.to.join(", ")) }
                                td.num { (w.settle_secs) " s" }
                                td { (w.mode) }
                                td { code { (w.name) } }
                                td.num { (w.delivered) }
                                td.num { (w.pending_files) }
                                td {
                                    @if w.origin == ferry_store::WatchOrigin::Config {
                                        span.hint { "set in ferryd.toml" }
                                    } @else {
                                        (crate::layout::button(staff, &format!("/settings/watches/{}/remove", w.id), "Remove", "danger", &[]))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.stack #add-watch method="post" action="/settings/watches" {
                (csrf(staff))
                label { "Folder" input type="text" name="folder" required placeholder="share=projects/outgoing"; }
                label { "Sender" input type="text" name="sender" required placeholder="render@studio.example (a service account)"; }
                label { "To" input type="text" name="to" required placeholder="client@example.com, producer@example.com"; }
                label { "Priorities" input type="text" name="priorities" placeholder="*.mp4=high"; }
                label { "Settle time, seconds" input type="number" name="settle_secs" min="1" value="30"; }
                label { "Each new"
                    select name="mode" {
                        option value="folder" selected { "folder is one delivery" }
                        option value="file" { "file is one delivery" }
                    }
                }
                label { "Delivery name" input type="text" name="name" value="{folder}";
                    span.hint { "{folder} (or {file}) and {date} are filled in." }
                }
                button type="submit" { "Add watch folder" }
            }
            h2 { "This appliance" }
            dl.facts {
                dt { "Key fingerprint (SHA-256), the pin" } dd { code #fingerprint { (info.facts.fingerprint) } }
                dt { "Certificate" } dd #served-certificate { (info.facts.certificate) }
                dt { "Control port" } dd { (info.facts.control) }
                dt { "UDP data ports" } dd {
                    (info.facts.ports)
                    br; span.hint { "Set in ferryd.toml and ferry-portguard's configuration; forward the same range on the edge router." }
                }
                dt { "Per-session firewall" } dd {
                    @if info.facts.firewall_on { "on (nftables through ferry-portguard)" }
                    @else { span.error { "off: any address can reach a leased port" } }
                }
                dt { "Email (SMTP)" } dd {
                    @match &info.smtp {
                        Some(s) => { (s) }
                        None => { span.error { "not configured: messages wait in the outbox" } }
                    }
                    br; span.hint {
                        (info.outbox.0) " waiting, " (info.outbox.1) " sent, " (info.outbox.2) " refused by the server."
                    }
                    (crate::layout::button(staff, "/settings/test-mail", "Send me a test message", "", &[]))
                }
                dt { "Version" } dd { (info.facts.version) }
            }
            p.hint {
                "Clients pin the certificate's key by the fingerprint above; compare it with what "
                code { "ferry login" } " shows. A renewed certificate keeps the key, so the pin holds."
            }
            h2 { "Install a certificate" }
            form.stack #certificate method="post" action="/settings/certificate" {
                (csrf(staff))
                p.hint {
                    "Replace the self-signed certificate with your own (for example one your CA issued for the public address). "
                    "It takes effect when ferryd restarts; clients then see a new fingerprint and must log in again to accept it."
                }
                label { "Certificate chain (PEM, the server's certificate first)"
                    textarea name="certificate" rows="6" required placeholder="-----BEGIN CERTIFICATE-----" {} }
                label { "Private key (PEM)"
                    textarea name="key" rows="4" required placeholder="-----BEGIN PRIVATE KEY-----" {} }
                button type="submit" { "Install certificate" }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    smtp_url: String,
    #[serde(default)]
    smtp_user: String,
    #[serde(default)]
    smtp_password_file: String,
    #[serde(default)]
    smtp_from: String,
    #[serde(default)]
    public_address: String,
    #[serde(default)]
    trusted_proxies: String,
    policy: String,
    #[serde(default)]
    target_rate: String,
    #[serde(default)]
    site_rate: String,
    default_expiry_days: String,
    #[serde(default)]
    transports: String,
    #[serde(default)]
    acme_name: String,
    #[serde(default)]
    acme_directory: String,
    #[serde(default)]
    acme_contact: String,
    #[serde(default)]
    schedule: String,
}

impl SettingsForm {
    /// The form as typed; the settings service checks every field.
    fn text(&self) -> SettingsText {
        SettingsText {
            public_address: self.public_address.clone(),
            trusted_proxies: vec![self.trusted_proxies.clone()],
            policy: self.policy.clone(),
            target_rate: self.target_rate.clone(),
            site_rate: self.site_rate.clone(),
            default_expiry_days: self.default_expiry_days.clone(),
            smtp_url: self.smtp_url.clone(),
            smtp_user: self.smtp_user.clone(),
            smtp_password_file: self.smtp_password_file.clone(),
            smtp_from: self.smtp_from.clone(),
            transports: self.transports.clone(),
            acme_name: self.acme_name.clone(),
            acme_directory: self.acme_directory.clone(),
            acme_contact: self.acme_contact.clone(),
            schedule: self.schedule.lines().map(str::to_owned).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct WatchForm {
    folder: String,
    sender: String,
    to: String,
    #[serde(default)]
    priorities: String,
    #[serde(default)]
    settle_secs: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    name: String,
}

impl WatchForm {
    fn text(&self) -> ferry_domain::watch::WatchText {
        ferry_domain::watch::WatchText {
            folder: self.folder.clone(),
            sender: self.sender.clone(),
            to: vec![self.to.clone()],
            priorities: self
                .priorities
                .split([',', ' '])
                .filter(|p| !p.trim().is_empty())
                .map(str::to_owned)
                .collect(),
            settle_secs: self.settle_secs.clone(),
            mode: self.mode.clone(),
            name: self.name.clone(),
        }
    }
}

/// Settings → Watch folders: adds one.
pub async fn add_watch(State(web): State<Arc<Web>>, posted: AdminPost<WatchForm>) -> Response {
    let AdminPost { staff, form } = posted;
    match web
        .services
        .watches
        .add(staff.by(), staff.actor(), &form.text())
        .await
    {
        Ok(_) => done("/settings", "watch-added"),
        Err(e) => html_status(
            StatusCode::BAD_REQUEST,
            view(
                &staff,
                &web.services.settings.current().to_text(),
                &info(&web, &staff).await,
                Some(&Notice::Error(e.to_string())),
            ),
        ),
    }
}

/// Settings → Watch folders: removes one (its deliveries stay).
pub async fn remove_watch(
    State(web): State<Arc<Web>>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    posted: AdminPost<Empty>,
) -> Response {
    let staff = posted.staff;
    match web
        .services
        .watches
        .remove(staff.by(), staff.actor(), id)
        .await
    {
        Ok(()) => done("/settings", "watch-removed"),
        Err(e) => crate::layout::failure_page(&e),
    }
}

pub async fn save(State(web): State<Arc<Web>>, posted: AdminPost<SettingsForm>) -> Response {
    let AdminPost { staff, form } = posted;
    let changed = web
        .services
        .settings
        .change(staff.by(), staff.actor(), &form.text())
        .await;
    match changed {
        Ok(_) => done("/settings", "saved"),
        Err(e) => html_status(
            StatusCode::BAD_REQUEST,
            // The page shows what was typed, with why it does not hold.
            view(
                &staff,
                &form.text(),
                &info(&web, &staff).await,
                Some(&Notice::Error(e.to_string())),
            ),
        ),
    }
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

pub async fn test_mail(State(web): State<Arc<Web>>, posted: AdminPost<Empty>) -> Response {
    let staff = posted.staff;
    let notice = match web.services.notifier.test_mail(&staff.user).await {
        Ok(()) => Notice::Done(format!(
            "A test message to {} is queued; the counts below show when it has gone.",
            staff.user.email
        )),
        Err(e) => Notice::Error(e.to_string()),
    };
    html(render(&web, &staff, Some(&notice)).await)
}

#[derive(Debug, Deserialize)]
pub struct CertificateForm {
    certificate: String,
    key: String,
}

pub async fn certificate(
    State(web): State<Arc<Web>>,
    posted: AdminPost<CertificateForm>,
) -> Response {
    let AdminPost { staff, form } = posted;
    let installed = web
        .services
        .install_certificate(staff.by(), staff.actor(), &form.certificate, &form.key)
        .await;
    let notice = match installed {
        Ok(fingerprint) => Notice::Done(format!(
            "Certificate installed (SHA-256 {fingerprint}). Restart ferryd to use it; clients then log in again \
             and compare this fingerprint."
        )),
        Err(e) => Notice::Error(e.to_string()),
    };
    let status = match notice {
        Notice::Done(_) => StatusCode::OK,
        Notice::Error(_) => StatusCode::BAD_REQUEST,
    };
    html_status(status, render(&web, &staff, Some(&notice)).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::tests::staff;

    #[test]
    fn the_form_goes_to_the_validator_as_typed() {
        let form = SettingsForm {
            smtp_url: String::new(),
            smtp_user: String::new(),
            smtp_password_file: String::new(),
            smtp_from: String::new(),
            public_address: " ferry.example.com ".into(),
            trusted_proxies: "10.0.0.5, 10.0.0.6".into(),
            policy: "fair".into(),
            target_rate: "500M".into(),
            site_rate: "2G".into(),
            default_expiry_days: "14".into(),
            transports: "tcp, https".into(),
            acme_name: "Ferry.Example.com".into(),
            acme_directory: String::new(),
            acme_contact: "ops@example.com".into(),
            schedule: "mon-fri 09:00-19:00 200M\r\nsat,sun 00:00-24:00 none\r\n".into(),
        };
        let site = ferry_domain::settings::parse(&form.text()).unwrap();
        assert_eq!(site.schedule.rules.len(), 2);
        let acme = site.acme.clone().unwrap();
        assert_eq!(acme.name, "ferry.example.com");
        assert_eq!(acme.directory, LETS_ENCRYPT);
        assert_eq!(site.public_address.as_deref(), Some("ferry.example.com"));
        assert_eq!(site.trusted_proxies.len(), 2);
        assert_eq!(site.default_expiry_days, 14);
        assert!(!site.transports.allows(ferry_proto::Transport::Quic));
    }

    #[test]
    fn the_page_shows_the_fingerprint_and_current_values() {
        let site = SettingsText {
            public_address: "ferry.example.com".into(),
            policy: "fixed".into(),
            target_rate: "1G".into(),
            default_expiry_days: "30".into(),
            ..Default::default()
        };
        let info = Info {
            facts: ApplianceFacts {
                fingerprint: "ab:cd".into(),
                certificate: "self-signed for localhost".into(),
                control: "127.0.0.1:8443".parse().unwrap(),
                ports: "45190-45210".into(),
                firewall_on: false,
                version: "0.1.0",
            },
            smtp: None,
            outbox: (3, 0, 0),
            watches: vec![ferry_api::WatchInfo {
                id: 4,
                folder: "share=projects/outgoing".into(),
                sender: "render@studio.example".into(),
                to: vec!["client@example.com".into()],
                priorities: vec![],
                settle_secs: 30,
                mode: ferry_domain::watch::Mode::Folder,
                name: "{folder}".into(),
                origin: ferry_domain::watch::Origin::Admin,
                delivered: 2,
                pending_files: 7,
            }],
        };
        let out = view(&staff(true), &site, &info, None).into_string();
        assert!(out.contains("ab:cd"));
        assert!(out.contains(r#"value="ferry.example.com""#));
        assert!(out.contains(r#"<option value="fixed" selected>"#));
        assert!(out.contains("off: any address can reach a leased port"));
        assert!(out.contains("3 waiting"));
        assert!(out.contains("share=projects/outgoing"));
        assert!(out.contains("/settings/watches/4/remove"));
    }
}
