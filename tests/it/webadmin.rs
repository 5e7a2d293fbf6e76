//! The web admin's security, over real HTTPS to a real ferryd: headers,
//! cookies, sessions that rotate, CSRF, cross-site forms, login
//! throttling, roles, and names that render inert. (The browser tests in
//! `browser.rs` drive the same pages through Chromium.)

use std::time::Duration;

use ferry_engine::tls::PinnedCert;
use ferry_tests::Appliance;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};

/// A browser-like HTTPS client: pinned to the appliance, no redirects
/// followed (the tests look at them), cookies handled by hand.
pub(crate) struct Browser {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) cookie: Option<String>,
    rt: tokio::runtime::Runtime,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Browser {
    pub(crate) fn new(app: &Appliance) -> Self {
        Self::at(&app.url, &app.fingerprint)
    }

    /// A browser for the appliance at `url` with this certificate.
    pub(crate) fn at(url: &str, fingerprint: &str) -> Self {
        let pin = PinnedCert::new(fingerprint.parse().unwrap());
        let tls = pin.client_config(&[b"http/1.1"], false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // reqwest's timers belong to the runtime the requests run on.
        let guard = rt.enter();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        drop(guard);
        Browser {
            http,
            base: url.to_owned(),
            cookie: None,
            rt,
        }
    }

    pub(crate) fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = match &self.cookie {
            Some(c) => req.header(COOKIE, format!("__Host-ferry={c}")),
            None => req,
        };
        let resp = self.rt.block_on(async { req.send().await }).unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = self.rt.block_on(resp.text()).unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    pub(crate) fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req)
    }

    /// A form post as a browser sends it from our own page.
    pub(crate) fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("sec-fetch-site", "same-origin")
            .form(form);
        self.send(req)
    }

    /// The first server-sent event of the stream at `path`.
    pub(crate) fn first_event(&mut self, path: &str) -> String {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, format!("__Host-ferry={c}"));
        }
        self.rt.block_on(async {
            let mut resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let mut text = String::new();
            while !text.contains("\n\n") {
                let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
                    .await
                    .expect("an event within 10 s")
                    .unwrap()
                    .expect("the stream stays open");
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
            text
        })
    }

    pub(crate) fn login(&mut self, email: &str, password: &str) -> Page {
        let page = self.post("/login", &[("email", email), ("password", password)]);
        if let Some(c) = session_cookie(&page) {
            self.cookie = Some(c);
        }
        page
    }

    /// This browser, signed in with another's session cookie.
    pub(crate) fn with_cookie(mut self, cookie: &str) -> Self {
        self.cookie = Some(cookie.to_owned());
        self
    }

    /// The session cookie's value (after a login).
    pub(crate) fn cookie(&self) -> &str {
        self.cookie.as_deref().unwrap_or_default()
    }

    /// The CSRF token on a page.
    pub(crate) fn csrf(&mut self, path: &str) -> String {
        let page = self.get(path);
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        let at = page
            .body
            .find(r#"name="csrf" value=""#)
            .expect("a form with a CSRF token")
            + 19;
        page.body[at..at + 64].to_owned()
    }
}

fn session_cookie(page: &Page) -> Option<String> {
    page.headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-ferry="))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
        .filter(|v| !v.is_empty())
}

fn location(page: &Page) -> &str {
    page.headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// An appliance whose first admin has a password of their own.
pub(crate) fn appliance_with_admin() -> (Appliance, Browser) {
    let app = Appliance::start();
    let one_time = app.first_password().expect("one-time password");
    let mut b = Browser::new(&app);
    let page = b.login("admin@localhost", &one_time);
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        location(&page),
        "/setup",
        "the one-time password must go first"
    );
    // Nothing else opens before it is changed.
    assert_eq!(location(&b.get("/shares")), "/setup");
    let csrf = b.csrf("/setup");
    let page = b.post(
        "/setup",
        &[
            ("csrf", &csrf),
            ("password", "a new long password"),
            ("again", "a new long password"),
            ("public_address", "ferry.example.com"),
        ],
    );
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    b.cookie = session_cookie(&page);
    assert!(b.cookie.is_some(), "set-up starts a fresh session");
    (app, b)
}

#[test]
fn pages_carry_security_headers_and_a_strict_cookie() {
    let (_app, mut b) = appliance_with_admin();
    let page = b.get("/");
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let h = |name: &str| {
        page.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let csp = h("content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(h("x-frame-options"), "DENY");
    assert_eq!(h("x-content-type-options"), "nosniff");
    assert_eq!(h("referrer-policy"), "same-origin");
    assert!(h("strict-transport-security").contains("max-age="));
    assert!(
        !page.body.contains("<script>"),
        "no inline script on a page"
    );

    let login = b.post(
        "/login",
        &[
            ("email", "admin@localhost"),
            ("password", "a new long password"),
        ],
    );
    let set = login
        .headers
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for part in [
        "__Host-ferry=",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(set.contains(part), "{set} lacks {part}");
    }
}

#[test]
fn a_login_rotates_the_session_and_logout_ends_it() {
    let (_app, mut b) = appliance_with_admin();
    let before = b.cookie.clone().unwrap();
    // Logging in again, while holding a session, mints a new token and
    // ends the old one: a token planted before login is worthless.
    let page = b.login("admin@localhost", "a new long password");
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let after = b.cookie.clone().unwrap();
    assert_ne!(before, after);
    b.cookie = Some(before);
    assert!(location(&b.get("/")).starts_with("/login"));
    b.cookie = Some(after.clone());
    assert_eq!(b.get("/").status, StatusCode::OK);

    let csrf = b.csrf("/");
    let out = b.post("/logout", &[("csrf", &csrf)]);
    assert_eq!(location(&out), "/login");
    assert!(
        out.headers
            .get(SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert!(
        location(&b.get("/")).starts_with("/login"),
        "the session is gone on the server too"
    );
}

#[test]
fn forms_without_the_token_or_from_another_site_change_nothing() {
    let (app, mut b) = appliance_with_admin();
    let root = app.dir.path().join("elsewhere");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.to_str().unwrap();

    // No token.
    let page = b.post("/shares/root", &[("name", "nocsrf"), ("path", root)]);
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("security token"), "{}", page.body);
    // A wrong token.
    let page = b.post(
        "/shares/root",
        &[
            ("csrf", &"0".repeat(64)),
            ("name", "badcsrf"),
            ("path", root),
        ],
    );
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // The right token, but the browser says the form came from elsewhere.
    let csrf = b.csrf("/shares");
    let req = b
        .http
        .post(format!("{}/shares/root", b.base))
        .header("sec-fetch-site", "cross-site")
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "crosssite"),
            ("path", root),
        ]);
    let page = b.send(req);
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("another site"), "{}", page.body);
    // An Origin header from another site, for browsers without Sec-Fetch.
    let req = b
        .http
        .post(format!("{}/shares/root", b.base))
        .header("origin", "https://evil.example")
        .form(&[("csrf", csrf.as_str()), ("name", "origin"), ("path", root)]);
    assert_eq!(b.send(req).status, StatusCode::FORBIDDEN);

    let shares = app.admin(&["share", "list"]);
    for name in ["nocsrf", "badcsrf", "crosssite", "origin"] {
        assert!(!shares.contains(name), "{name} was created: {shares}");
    }
    // The same form, done right, works.
    let page = b.post(
        "/shares/root",
        &[("csrf", &csrf), ("name", "proper"), ("path", root)],
    );
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(app.admin(&["share", "list"]).contains("proper"));
}

#[test]
fn failed_logins_are_throttled_per_account_and_recorded() {
    let (app, mut b) = appliance_with_admin();
    for _ in 0..5 {
        let page = b.login("admin@localhost", "wrong password");
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert!(page.body.contains("Wrong email or password."));
    }
    // Now even the right password waits.
    let page = b.login("admin@localhost", "a new long password");
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.body.contains("Too many failed logins"),
        "{}",
        page.body
    );
    // Another account from this address is not locked yet.
    app.admin_stdin(
        &[
            "user",
            "add",
            "ann@example.com",
            "--role",
            "employee",
            "--password-stdin",
        ],
        "ann's long password\n",
    );
    assert_eq!(
        b.login("ann@example.com", "ann's long password").status,
        StatusCode::SEE_OTHER
    );
    let audit = app.admin(&["audit", "--action", "login"]);
    assert!(audit.contains("login.failed"), "{audit}");
    assert!(audit.contains("login.throttled"), "{audit}");
}

#[test]
fn the_dashboards_port_leases_follow_sessions_live() {
    let app = Appliance::start();
    app.user("ops@example.com", "admin");
    let mut b = Browser::new(&app);
    b.login("ops@example.com", "harbour lights at dawn");
    let idle = b.first_event("/live");
    assert!(idle.contains(r#""leases":[]"#), "{idle}");
    // A capped get holds a lease while it runs.
    let c = app.client(&app.media_user("ann@example.com"));
    ferry_tests::write_random(&app.share.join("slow.mov"), 8 << 20, 5);
    let down = tempfile::tempdir().unwrap();
    let mut get = c.spawn(&[
        "get",
        "share=media/slow.mov",
        down.path().to_str().unwrap(),
        "--rate",
        "8M",
    ]);
    let mut seen = String::new();
    let start = std::time::Instant::now();
    while !seen.contains(r#""user":"ann@example.com""#) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no lease of ann's on the live stream: {seen}"
        );
        seen = b.first_event("/live");
    }
    assert!(seen.contains(r#""port":"#), "{seen}");
    get.kill().unwrap();
    get.wait().unwrap();
    // The page itself has the elements the script fills.
    let page = b.get("/");
    assert!(page.body.contains(r#"id="leases""#) && page.body.contains(r#"id="lease-count""#));
    // Others see no leases on the stream.
    let mut employee = Browser::new(&app);
    employee.login("ann@example.com", "harbour lights at dawn");
    assert!(!employee.first_event("/live").contains("leases"));
}

#[test]
fn roles_decide_what_opens() {
    let (app, mut admin) = appliance_with_admin();
    app.admin_stdin(
        &[
            "user",
            "add",
            "ed@example.com",
            "--role",
            "employee",
            "--password-stdin",
        ],
        "employee password\n",
    );
    app.admin_stdin(
        &[
            "user",
            "add",
            "cat@example.com",
            "--role",
            "collaborator",
            "--password-stdin",
        ],
        "collaborator password\n",
    );
    // Collaborators sign in to their deliveries and never see a staff
    // page: each sends them back to their deliveries, and a staff form is
    // refused.
    let mut cat = Browser::new(&app);
    let page = cat.login("cat@example.com", "collaborator password");
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(cat.cookie.is_some());
    let home = cat.get("/deliveries");
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(home.body.contains("Your deliveries"));
    for path in [
        "/users",
        "/transfers",
        "/shares",
        "/settings",
        "/audit",
        "/outbox",
    ] {
        assert!(
            !home.body.contains(&format!(r#"href="{path}""#)),
            "{path} linked"
        );
    }
    for path in [
        "/",
        "/transfers",
        "/shares",
        "/users",
        "/settings",
        "/audit",
        "/outbox",
        "/setup",
    ] {
        let page = cat.get(path);
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.headers[LOCATION], "/deliveries", "{path}");
    }
    let csrf = cat.csrf("/deliveries");
    let page = cat.post(
        "/shares/root",
        &[("csrf", &csrf), ("name", "x"), ("path", "/tmp")],
    );
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("Collaborators receive"));

    // Employees see the dashboard, transfers and shares, not the admin pages.
    let mut ed = Browser::new(&app);
    assert_eq!(
        ed.login("ed@example.com", "employee password").status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(ed.get("/").status, StatusCode::OK);
    assert_eq!(ed.get("/transfers").status, StatusCode::OK);
    assert_eq!(ed.get("/shares").status, StatusCode::OK);
    for path in ["/users", "/settings", "/audit"] {
        assert_eq!(ed.get(path).status, StatusCode::FORBIDDEN, "{path}");
    }
    let csrf = ed.csrf("/");
    let page = ed.post(
        "/users/invite",
        &[
            ("csrf", &csrf),
            ("email", "x@example.com"),
            ("role", "admin"),
        ],
    );
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        app.admin(&["user", "list"])
            .lines()
            .all(|l| !l.starts_with("x@example.com"))
    );

    // The admin sees everything.
    for path in [
        "/",
        "/transfers",
        "/shares",
        "/users",
        "/settings",
        "/audit",
    ] {
        assert_eq!(admin.get(path).status, StatusCode::OK, "{path}");
    }
}

#[test]
fn user_supplied_names_render_inert() {
    let (_app, mut b) = appliance_with_admin();
    let csrf = b.csrf("/users");
    let evil = "<script>alert(1)</script>";
    let page = b.post(
        "/users/invite",
        &[
            ("csrf", &csrf),
            ("email", "eve@example.com"),
            ("name", evil),
            ("role", "collaborator"),
        ],
    );
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let page = b.get("/users");
    assert!(page.body.contains("eve@example.com"));
    assert!(!page.body.contains(evil));
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // An email that is markup is refused outright, with a reason.
    let page = b.post(
        "/users/invite",
        &[
            ("csrf", &csrf),
            ("email", "<img src=x onerror=alert(1)>@example.com"),
            ("role", "employee"),
        ],
    );
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.body.contains("not a valid email address"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<img src=x"));
}

#[test]
fn settings_apply_at_once_and_survive_a_restart() {
    let (mut app, mut b) = appliance_with_admin();
    let csrf = b.csrf("/settings");
    let bad = b.post(
        "/settings",
        &[
            ("csrf", &csrf),
            ("policy", "fair"),
            ("target_rate", "fast"),
            ("default_expiry_days", "14"),
        ],
    );
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("target rate"), "{}", bad.body);
    let ok = b.post(
        "/settings",
        &[
            ("csrf", &csrf),
            ("public_address", "edge.example.com"),
            ("trusted_proxies", "10.0.0.5"),
            ("policy", "fixed"),
            ("target_rate", "250M"),
            ("default_expiry_days", "14"),
        ],
    );
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    // A new session is told the new public address at once.
    let key = app.media_user("ann@example.com");
    let req = b
        .http
        .post(format!("{}/api/v1/sessions", b.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({"kind": "put", "target": "share=media/x/"}));
    let grant = b.send(req);
    assert_eq!(grant.status, StatusCode::OK, "{}", grant.body);
    let grant: serde_json::Value = serde_json::from_str(&grant.body).unwrap();
    assert_eq!(grant["host"], "edge.example.com");
    app.restart();
    let mut b = Browser::new(&app);
    assert_eq!(
        b.login("admin@localhost", "a new long password").status,
        StatusCode::SEE_OTHER
    );
    let page = b.get("/settings");
    assert!(
        page.body.contains(r#"value="edge.example.com""#),
        "kept across a restart"
    );
    assert!(page.body.contains("250 Mbit/s"), "{}", page.body);
    assert!(page.body.contains(r#"<option value="fixed" selected>"#));
    let audit = app.admin(&["audit", "--action", "settings"]);
    assert!(audit.contains("public address edge.example.com"), "{audit}");
}

#[test]
fn an_installed_certificate_takes_over_at_the_next_start() {
    use ferry_engine::tls::Identity;
    let (mut app, mut b) = appliance_with_admin();
    let (new, cert_pem, key_pem) = Identity::self_signed(&["ferry.example.com".into()]).unwrap();
    let (_, _, other_key) = Identity::self_signed(&["elsewhere.example".into()]).unwrap();
    let new_fp = new.fingerprint().to_string();
    let csrf = b.csrf("/settings");

    // A key that belongs to another certificate is refused; nothing changes.
    let bad = b.post(
        "/settings/certificate",
        &[
            ("csrf", &csrf),
            ("certificate", &cert_pem),
            ("key", &other_key),
        ],
    );
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("was not installed"), "{}", bad.body);
    assert_eq!(app.admin(&["fingerprint"]).trim(), app.fingerprint);
    let garbage = b.post(
        "/settings/certificate",
        &[
            ("csrf", &csrf),
            ("certificate", "not a certificate"),
            ("key", &key_pem),
        ],
    );
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.admin(&["fingerprint"]).trim(), app.fingerprint);

    let ok = b.post(
        "/settings/certificate",
        &[
            ("csrf", &csrf),
            ("certificate", &cert_pem),
            ("key", &key_pem),
        ],
    );
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(ok.body.contains(&new_fp));
    assert_eq!(app.admin(&["fingerprint"]).trim(), new_fp);
    // Until ferryd restarts, the old one serves and the dashboard says so.
    assert!(b.get("/").body.contains("not yet in use"));
    app.restart();
    app.fingerprint = new_fp;
    let mut pinned_to_new = Browser::new(&app);
    let page = pinned_to_new.login("admin@localhost", "a new long password");
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let audit = app.admin(&["audit", "--action", "settings"]);
    assert!(audit.contains("settings.certificate"), "{audit}");
}

#[test]
fn changing_a_password_later_asks_for_the_current_one() {
    let (_app, mut b) = appliance_with_admin();
    let csrf = b.csrf("/setup");
    let page = b.post(
        "/setup",
        &[
            ("csrf", &csrf),
            ("password", "someone else's pick"),
            ("again", "someone else's pick"),
        ],
    );
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.body.contains("current password is wrong"),
        "{}",
        page.body
    );
    let page = b.post(
        "/setup",
        &[
            ("csrf", &csrf),
            ("current", "a new long password"),
            ("password", "an even newer password"),
            ("again", "an even newer password"),
        ],
    );
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let mut other = Browser::new(&_app);
    assert_eq!(
        other
            .login("admin@localhost", "an even newer password")
            .status,
        StatusCode::SEE_OTHER
    );
}

#[test]
fn a_login_link_cannot_send_the_browser_elsewhere() {
    let (_app, mut b) = appliance_with_admin();
    for next in [
        "/%09/evil.example",
        "//evil.example",
        "/%5Cevil.example",
        "https://evil.example",
    ] {
        let page = b.get(&format!("/login?next={next}"));
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(location(&page), "/", "{next}");
    }
}
