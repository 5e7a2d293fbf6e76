//! Settings (admins only): what an admin changes at run time — the public
//! address, trusted proxies, the site's pace (policy and target rate) and
//! the default expiry — beside what the appliance reports and is set in its
//! configuration file (port range, certificate fingerprint, SMTP).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::{done, html, html_status};
use crate::auth::{Admin, AdminPost, Staff};
use crate::layout::{Notice, csrf, staff_page};
use crate::{Appliance, ApplianceInfo, SiteSettings, Web};

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

pub async fn page<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    Admin(staff): Admin,
    Query(q): Query<PageQuery>,
) -> Response {
    html(view(
        &staff,
        &web.app.site(),
        &web.app.info(),
        Notice::from_code(q.ok.as_deref()).as_ref(),
    ))
}

pub fn view(
    staff: &Staff,
    site: &SiteSettings,
    info: &ApplianceInfo,
    notice: Option<&Notice>,
) -> Markup {
    let proxies: Vec<String> = site
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
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
                    input type="text" name="public_address" value=(site.public_address.as_deref().unwrap_or(""))
                        placeholder="ferry.example.com (empty: the address a client used)";
                    span.hint { "The name or IP that clients send UDP to: your edge router's public address." }
                }
                label { "Trusted proxies"
                    input type="text" name="trusted_proxies" value=(proxies.join(", ")) placeholder="10.0.0.5, 10.0.0.6";
                    span.hint { "Reverse proxies in front of this appliance whose X-Forwarded-For is believed." }
                }
                h2 { "Transfers" }
                label { "Congestion policy"
                    select name="policy" {
                        @for (p, label) in POLICIES { option value=(p) selected[site.policy == p] { (label) } }
                    }
                }
                label { "Target rate (site cap per transfer)"
                    input type="text" name="target_rate" value=(site.target_rate.as_deref().unwrap_or(""))
                        placeholder="e.g. 500M or 1.5G; empty: no cap";
                    span.hint { "Bits per second. Jobs may be capped lower; clients may ask for less, never more." }
                }
                label { "Default expiry of a delivery, in days"
                    input type="number" name="default_expiry_days" min="1" max="3650" value=(site.default_expiry_days);
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
                button.primary type="submit" { "Save settings" }
            }
            h2 { "This appliance" }
            dl.facts {
                dt { "Certificate fingerprint (SHA-256)" } dd { code #fingerprint { (info.fingerprint) } }
                dt { "Control port" } dd { (info.listen) }
                dt { "UDP data ports" } dd {
                    (info.ports)
                    br; span.hint { "Set in ferryd.toml and ferry-portguard's configuration; forward the same range on the edge router." }
                }
                dt { "Per-session firewall" } dd {
                    @if info.firewall_on { "on (nftables through ferry-portguard)" }
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
                dt { "Version" } dd { (info.version) }
            }
            p.hint {
                "Clients pin the certificate by the fingerprint above; compare it with what "
                code { "ferry login" } " shows."
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
    default_expiry_days: String,
}

/// Reads the form into settings, or says which field is wrong.
pub fn parse(form: &SettingsForm) -> Result<SiteSettings, String> {
    let public_address = form.public_address.trim();
    if public_address.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
        return Err(format!(
            "public address {public_address:?} is not a host name or IP address"
        ));
    }
    let trusted_proxies = form
        .trusted_proxies
        .split([',', ' '])
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("trusted proxy {:?} is not an IP address", s.trim()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !POLICIES.iter().any(|(p, _)| *p == form.policy) {
        return Err(format!(
            "policy {:?} is not one of fair, fixed, cubic, bbr",
            form.policy
        ));
    }
    let target_rate = form.target_rate.trim();
    if !target_rate.is_empty() {
        target_rate
            .parse::<ferry_proto::Rate>()
            .map_err(|e| format!("target rate: {e}"))?;
    }
    let days: u64 = form
        .default_expiry_days
        .trim()
        .parse()
        .ok()
        .filter(|d| (1..=3650).contains(d))
        .ok_or_else(|| {
            format!(
                "default expiry {:?} is not a number of days from 1 to 3650",
                form.default_expiry_days
            )
        })?;
    Ok(SiteSettings {
        public_address: (!public_address.is_empty()).then(|| public_address.to_owned()),
        trusted_proxies,
        policy: form.policy.clone(),
        target_rate: (!target_rate.is_empty()).then(|| target_rate.to_owned()),
        default_expiry_days: days,
        smtp_url: form.smtp_url.trim().to_owned(),
        smtp_user: form.smtp_user.trim().to_owned(),
        smtp_password_file: form.smtp_password_file.trim().to_owned(),
        smtp_from: form.smtp_from.trim().to_owned(),
    })
}

pub async fn save<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    posted: AdminPost<SettingsForm>,
) -> Response {
    let AdminPost { staff, form } = posted;
    let result = parse(&form).and_then(|site| {
        web.app
            .change_site(&staff.user, staff.from, site)
            .map_err(|e| e.message)
    });
    match result {
        Ok(()) => done("/settings", "saved"),
        Err(msg) => html_status(
            StatusCode::BAD_REQUEST,
            view(
                &staff,
                &web.app.site(),
                &web.app.info(),
                Some(&Notice::Error(msg)),
            ),
        ),
    }
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

pub async fn test_mail<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    posted: AdminPost<Empty>,
) -> Response {
    let staff = posted.staff;
    let notice = match web.app.test_mail(&staff.user) {
        Ok(()) => Notice::Done(format!(
            "A test message to {} is queued; the counts below show when it has gone.",
            staff.user.email
        )),
        Err(e) => Notice::Error(e.message),
    };
    html(view(
        &staff,
        &web.app.site(),
        &web.app.info(),
        Some(&notice),
    ))
}

#[derive(Debug, Deserialize)]
pub struct CertificateForm {
    certificate: String,
    key: String,
}

pub async fn certificate<A: Appliance>(
    State(web): State<Arc<Web<A>>>,
    posted: AdminPost<CertificateForm>,
) -> Response {
    let AdminPost { staff, form } = posted;
    let notice = match web.app.install_certificate(
        &staff.user,
        staff.from,
        &form.certificate,
        &form.key,
    ) {
        Ok(fingerprint) => Notice::Done(format!(
            "Certificate installed (SHA-256 {fingerprint}). Restart ferryd to use it; clients then log in again \
             and compare this fingerprint."
        )),
        Err(e) => Notice::Error(format!("The certificate was not installed: {}", e.message)),
    };
    let status = match notice {
        Notice::Done(_) => StatusCode::OK,
        Notice::Error(_) => StatusCode::BAD_REQUEST,
    };
    html_status(
        status,
        view(&staff, &web.app.site(), &web.app.info(), Some(&notice)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::tests::staff;

    fn form(rate: &str, proxies: &str, days: &str) -> SettingsForm {
        SettingsForm {
            smtp_url: String::new(),
            smtp_user: String::new(),
            smtp_password_file: String::new(),
            smtp_from: String::new(),
            public_address: " ferry.example.com ".into(),
            trusted_proxies: proxies.into(),
            policy: "fair".into(),
            target_rate: rate.into(),
            default_expiry_days: days.into(),
        }
    }

    #[test]
    fn the_form_is_checked_field_by_field() {
        let s = parse(&form("500M", "10.0.0.5, 10.0.0.6", "14")).unwrap();
        assert_eq!(s.public_address.as_deref(), Some("ferry.example.com"));
        assert_eq!(s.trusted_proxies.len(), 2);
        assert_eq!(s.target_rate.as_deref(), Some("500M"));
        assert_eq!(s.default_expiry_days, 14);
        assert!(
            parse(&form("fast", "", "14"))
                .unwrap_err()
                .contains("target rate")
        );
        assert!(
            parse(&form("", "proxy.example", "14"))
                .unwrap_err()
                .contains("not an IP address")
        );
        assert!(parse(&form("", "", "0")).unwrap_err().contains("1 to 3650"));
        let mut bad = form("", "", "7");
        bad.policy = "turbo".into();
        assert!(parse(&bad).unwrap_err().contains("policy"));
    }

    #[test]
    fn the_page_shows_the_fingerprint_and_current_values() {
        let site = SiteSettings {
            public_address: Some("ferry.example.com".into()),
            trusted_proxies: vec![],
            policy: "fixed".into(),
            target_rate: Some("1G".into()),
            default_expiry_days: 30,
            ..Default::default()
        };
        let info = ApplianceInfo {
            fingerprint: "ab:cd".into(),
            listen: "127.0.0.1:8443".into(),
            ports: "45190-45210".into(),
            firewall_on: false,
            version: "0.1.0",
            smtp: None,
            outbox: (3, 0, 0),
        };
        let out = view(&staff(true), &site, &info, None).into_string();
        assert!(out.contains("ab:cd"));
        assert!(out.contains(r#"value="ferry.example.com""#));
        assert!(out.contains(r#"<option value="fixed" selected>"#));
        assert!(out.contains("off: any address can reach a leased port"));
        assert!(out.contains("3 waiting"));
    }
}
