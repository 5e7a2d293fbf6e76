//! Who may do what, tried with real accounts of every role against a real
//! ferryd: the authorization matrix (every operation of the OpenAPI
//! document and every form of the web admin, by every kind of caller, on
//! their own and other people's objects), the eight holes the review
//! found, each refused now, and service accounts. Revocation during a
//! running transfer is in `revocation_stops_running_transfers_and_holds_jobs`.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use ferry_api::{JobAction, JobInfo, JobStatus};
use ferry_engine::tls::PinnedCert;
use ferry_tests::{Appliance, Running, write_random};
use reqwest::Method;
use serde_json::{Value, json};

use crate::webadmin::{Browser, Page};

const PASSWORD: &str = "harbour lights at dawn";

/// The REST API over HTTPS pinned to the appliance, answered as (status,
/// JSON body or null).
pub(crate) struct Rest {
    http: reqwest::Client,
    base: String,
    rt: tokio::runtime::Runtime,
}

impl Rest {
    pub(crate) fn new(a: &Appliance) -> Self {
        let pin = PinnedCert::new(a.fingerprint.parse().unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let guard = rt.enter();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(pin.client_config(&[b"http/1.1"], false))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        drop(guard);
        Rest {
            http,
            base: a.url.clone(),
            rt,
        }
    }

    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.call_with(method, path, key, body, &[])
    }

    pub(crate) fn call_with(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self.http.request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", self.base),
        );
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.rt.block_on(async {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }

    /// A call that must succeed; its body.
    pub(crate) fn ok(&self, method: &str, path: &str, key: &str, body: Option<&Value>) -> Value {
        let (status, v) = self.call(method, path, Some(key), body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }
}

/// The kinds of caller, in the matrix's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Who {
    Anonymous,
    /// A collaborator with nothing to do with the delivery.
    Stranger,
    /// The collaborator the delivery is for.
    Recipient,
    /// An employee with no grant on the share and no part in the delivery.
    Colleague,
    /// The employee who sent the delivery (read and write on `media`).
    Sender,
    Admin,
}

const CALLERS: [Who; 6] = [
    Who::Anonymous,
    Who::Stranger,
    Who::Recipient,
    Who::Colleague,
    Who::Sender,
    Who::Admin,
];

impl Who {
    fn email(self) -> &'static str {
        match self {
            Who::Anonymous => "nobody@nowhere.example",
            Who::Stranger => "stranger@elsewhere.example",
            Who::Recipient => "recipient@client.example",
            Who::Colleague => "colleague@studio.example",
            Who::Sender => "sender@studio.example",
            Who::Admin => "boss@studio.example",
        }
    }
}

/// An appliance with one account of each kind and a delivery from the
/// sender to the recipient (an upload job and a download job).
struct World {
    a: Appliance,
    rest: Rest,
    keys: HashMap<Who, String>,
    /// The recipient's download job.
    download: i64,
    /// The sender's upload job.
    upload: i64,
    fresh: std::cell::Cell<u32>,
}

impl World {
    fn new() -> Self {
        let a = Appliance::start();
        let mut keys = HashMap::new();
        for (who, role) in [
            (Who::Stranger, "collaborator"),
            (Who::Recipient, "collaborator"),
            (Who::Colleague, "employee"),
            (Who::Admin, "admin"),
        ] {
            keys.insert(who, a.user(who.email(), role));
        }
        keys.insert(Who::Sender, a.media_user(Who::Sender.email()));
        let rest = Rest::new(&a);
        let w = World {
            a,
            rest,
            keys,
            download: 0,
            upload: 0,
            fresh: Default::default(),
        };
        let (upload, download) = w.delivery();
        World {
            upload,
            download,
            ..w
        }
    }

    fn key(&self, who: Who) -> Option<&str> {
        self.keys.get(&who).map(String::as_str)
    }

    /// A name not used before.
    fn fresh(&self, stem: &str) -> String {
        let n = self.fresh.get() + 1;
        self.fresh.set(n);
        format!("{stem}{n}")
    }

    /// A new delivery from the sender to the recipient: (upload job,
    /// download job).
    fn delivery(&self) -> (i64, i64) {
        let folder = self.fresh("reel");
        let created = self.rest.ok(
            "POST",
            "/api/v1/deliveries",
            self.key(Who::Sender).unwrap(),
            Some(&json!({
                "recipients": [Who::Recipient.email()],
                "dest": format!("share=media/{folder}/"),
                "files": [{"path": "a.mov", "size": 1000, "mtime_ns": 0, "priority": 100}],
            })),
        );
        let job = |kind: &str| {
            created["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["kind"] == kind)
                .unwrap_or_else(|| panic!("no {kind} job in {created}"))["id"]
                .as_i64()
                .unwrap()
        };
        (job("upload"), job("download"))
    }

    /// The admin puts a job back as it was: running, no cap of its own.
    fn restore(&self, job: i64) {
        let admin = self.key(Who::Admin).unwrap();
        let (_, j) = self
            .rest
            .call("GET", &format!("/api/v1/jobs/{job}"), Some(admin), None);
        match j["job"]["status"].as_str() {
            Some("paused") => {
                self.rest
                    .ok("POST", &format!("/api/v1/jobs/{job}/resume"), admin, None);
            }
            Some("aborted") => {
                self.rest
                    .ok("POST", &format!("/api/v1/jobs/{job}/retry"), admin, None);
            }
            _ => {}
        }
        self.rest.ok(
            "POST",
            &format!("/api/v1/jobs/{job}/rate"),
            admin,
            Some(&json!({})),
        );
        self.rest.ok(
            "POST",
            &format!("/api/v1/jobs/{job}/urgent"),
            admin,
            Some(&json!({"urgent": false})),
        );
    }
}

/// How a row calls its operation as one caller: the path and the body.
type Call = Box<dyn Fn(&World, Who) -> (String, Option<Value>)>;
/// What puts things back after a row's call.
type After = Box<dyn Fn(&World)>;

/// One row of the matrix: an operation, how to call it as each caller
/// (path and body), and the status each caller must get.
struct Case {
    method: &'static str,
    /// The operation's path as the OpenAPI document writes it.
    template: &'static str,
    /// What the row tries, in words.
    what: &'static str,
    call: Call,
    /// By caller, in [`CALLERS`] order.
    expect: [u16; 6],
    /// Puts things back after a call that changed them.
    after: Option<After>,
}

fn case(
    method: &'static str,
    template: &'static str,
    what: &'static str,
    expect: [u16; 6],
    call: impl Fn(&World, Who) -> (String, Option<Value>) + 'static,
) -> Case {
    Case {
        method,
        template,
        what,
        call: Box::new(call),
        expect,
        after: None,
    }
}

fn fixed(
    method: &'static str,
    template: &'static str,
    what: &'static str,
    path: impl Fn(&World) -> String + 'static,
    body: Option<Value>,
    expect: [u16; 6],
) -> Case {
    case(method, template, what, expect, move |w, _| {
        (path(w), body.clone())
    })
}

impl Case {
    fn then(mut self, after: impl Fn(&World) + 'static) -> Self {
        self.after = Some(Box::new(after));
        self
    }
}

const A: u16 = 401;
const NO: u16 = 403;
const NF: u16 = 404;

/// Every REST operation, with each caller's answer. The password change
/// comes last: it ends the sessions and login keys of whoever makes it.
fn rest_cases() -> Vec<Case> {
    let download = |w: &World| w.download;
    let delivery_of = |w: &World| {
        let detail = w.rest.ok(
            "GET",
            &format!("/api/v1/jobs/{}", w.download),
            w.key(Who::Admin).unwrap(),
            None,
        );
        detail["job"]["delivery"].as_i64().unwrap()
    };
    vec![
        fixed(
            "GET",
            "/api/v1/health",
            "anyone may ask",
            |_| "/api/v1/health".into(),
            None,
            [200; 6],
        ),
        case(
            "POST",
            "/api/v1/login",
            "each logs in as themselves; anonymous with an unknown email",
            [A, 200, 200, 200, 200, 200],
            |_, who| {
                (
                    "/api/v1/login".into(),
                    Some(json!({"email": who.email(), "password": PASSWORD, "key_name": "matrix"})),
                )
            },
        ),
        fixed(
            "GET",
            "/api/v1/me",
            "their own account",
            |_| "/api/v1/me".into(),
            None,
            [A, 200, 200, 200, 200, 200],
        ),
        fixed(
            "POST",
            "/api/v1/me/notify",
            "their own notices",
            |_| "/api/v1/me/notify".into(),
            Some(json!({"notify": true})),
            [A, 200, 200, 200, 200, 200],
        ),
        fixed(
            "GET",
            "/api/v1/shares",
            "the shares they may use",
            |_| "/api/v1/shares".into(),
            None,
            [A, 200, 200, 200, 200, 200],
        ),
        case(
            "POST",
            "/api/v1/shares",
            "a share beneath media (admins)",
            [A, NO, NO, NO, NO, 201],
            |w, _| {
                (
                    "/api/v1/shares".into(),
                    Some(
                        json!({"name": w.fresh("sub"), "root": "media", "folder": w.fresh("sub")}),
                    ),
                )
            },
        ),
        // Here ferryd logs to standard error, so even an admin is told
        // there is no journal to read (the image's boot test reads it).
        fixed(
            "GET",
            "/api/v1/journal",
            "ferryd's journal (admins)",
            |_| "/api/v1/journal".into(),
            None,
            [A, NO, NO, NO, NO, NF],
        ),
        fixed(
            "POST",
            "/api/v1/sessions",
            "a put into media: only those with a grant learn it exists",
            |_| "/api/v1/sessions".into(),
            Some(json!({"kind": "put", "target": "share=media/in/"})),
            [A, NF, NF, NF, 200, 200],
        ),
        fixed(
            "POST",
            "/api/v1/sessions",
            "a put into a share that does not exist",
            |_| "/api/v1/sessions".into(),
            Some(json!({"kind": "put", "target": "share=nosuch/in/"})),
            [A, NF, NF, NF, NF, NF],
        ),
        case(
            "POST",
            "/api/v1/sessions",
            "the recipient's download: only they run it",
            [A, NF, 200, NF, NO, NO],
            move |w, _| {
                (
                    "/api/v1/sessions".into(),
                    Some(json!({"kind": "download", "job": download(w)})),
                )
            },
        ),
        case(
            "POST",
            "/api/v1/sessions",
            "the sender's upload: only they run it",
            [A, NF, NF, NF, 200, NO],
            |w, _| {
                (
                    "/api/v1/sessions".into(),
                    Some(json!({"kind": "upload", "job": w.upload})),
                )
            },
        ),
        fixed(
            "GET",
            "/api/v1/status",
            "the appliance at a glance (admins)",
            |_| "/api/v1/status".into(),
            None,
            [A, NO, NO, NO, NO, 200],
        ),
        case(
            "POST",
            "/api/v1/deliveries",
            "a delivery uploaded into media: whoever may write to it",
            [A, NF, NF, NF, 201, 201],
            |w, _| {
                (
                    "/api/v1/deliveries".into(),
                    Some(json!({
                        "recipients": [Who::Recipient.email()],
                        "dest": format!("share=media/{}/", w.fresh("matrix")),
                        "files": [{"path": "b.mov", "size": 10, "mtime_ns": 0, "priority": 100}],
                    })),
                )
            },
        ),
        fixed(
            "GET",
            "/api/v1/users",
            "everyone's accounts (admins)",
            |_| "/api/v1/users".into(),
            None,
            [A, NO, NO, NO, NO, 200],
        ),
        case(
            "POST",
            "/api/v1/users",
            "an invitation (admins)",
            [A, NO, NO, NO, NO, 201],
            |w, _| {
                (
                    "/api/v1/users".into(),
                    Some(
                        json!({"email": format!("{}@invited.example", w.fresh("guest")), "role": "collaborator"}),
                    ),
                )
            },
        ),
        fixed(
            "GET",
            "/api/v1/recipients",
            "address completion (staff)",
            |_| "/api/v1/recipients?q=rec".into(),
            None,
            [A, NO, NO, 200, 200, 200],
        ),
        fixed(
            "GET",
            "/api/v1/shares/{name}/files",
            "browsing media",
            |_| "/api/v1/shares/media/files".into(),
            None,
            [A, NF, NF, NF, 200, 200],
        ),
        fixed(
            "GET",
            "/api/v1/shares/{name}/files",
            "browsing a share that does not exist",
            |_| "/api/v1/shares/nosuch/files".into(),
            None,
            [A, NF, NF, NF, NF, NF],
        ),
        case(
            "POST",
            "/api/v1/shares/{name}/folders",
            "a folder in media",
            [A, NF, NF, NF, 201, 201],
            |w, _| {
                (
                    "/api/v1/shares/media/folders".into(),
                    Some(json!({"path": w.fresh("made/f")})),
                )
            },
        ),
        fixed(
            "GET",
            "/api/v1/jobs",
            "the jobs they may see",
            |_| "/api/v1/jobs".into(),
            None,
            [A, 200, 200, 200, 200, 200],
        ),
        fixed(
            "GET",
            "/api/v1/jobs/{id}",
            "the recipient's download",
            move |w| format!("/api/v1/jobs/{}", download(w)),
            None,
            [A, NF, 200, NF, 200, 200],
        ),
        fixed(
            "GET",
            "/api/v1/jobs/{id}",
            "the sender's upload",
            |w| format!("/api/v1/jobs/{}", w.upload),
            None,
            [A, NF, NF, NF, 200, 200],
        ),
        // The world's delivery has not been uploaded: whoever may see it
        // hears that its manifest follows (409); nobody else learns of it.
        fixed(
            "GET",
            "/api/v1/deliveries/{id}/manifest",
            "the manifest of a delivery still uploading",
            move |w| format!("/api/v1/deliveries/{}/manifest", delivery_of(w)),
            None,
            [A, NF, 409, NF, 409, 409],
        ),
        fixed(
            "GET",
            "/api/v1/deliveries/{id}/manifest.b3",
            "the b3sum manifest of a delivery still uploading",
            move |w| format!("/api/v1/deliveries/{}/manifest.b3", delivery_of(w)),
            None,
            [A, NF, 409, NF, 409, 409],
        ),
        fixed(
            "GET",
            "/api/v1/deliveries/{id}/manifest",
            "the manifest of a delivery that does not exist",
            |_| "/api/v1/deliveries/999999/manifest".into(),
            None,
            [A, NF, NF, NF, NF, NF],
        ),
        fixed(
            "GET",
            "/api/v1/jobs/{id}",
            "a job that does not exist",
            |_| "/api/v1/jobs/999999".into(),
            None,
            [A, NF, NF, NF, NF, NF],
        ),
        fixed(
            "POST",
            "/api/v1/jobs/{id}/{action}",
            "pausing the recipient's download",
            move |w| format!("/api/v1/jobs/{}/pause", download(w)),
            None,
            [A, NF, 200, NF, 200, 200],
        )
        .then(move |w| w.restore(download(w))),
        fixed(
            "POST",
            "/api/v1/jobs/{id}/{action}",
            "aborting the recipient's download: the sender's call",
            move |w| format!("/api/v1/jobs/{}/abort", download(w)),
            None,
            [A, NF, NO, NF, 200, 200],
        )
        .then(move |w| w.restore(download(w))),
        fixed(
            "POST",
            "/api/v1/jobs/{id}/rate",
            "capping the recipient's download",
            move |w| format!("/api/v1/jobs/{}/rate", download(w)),
            Some(json!({"rate": "50M"})),
            [A, NF, 200, NF, 200, 200],
        )
        .then(move |w| w.restore(download(w))),
        fixed(
            "POST",
            "/api/v1/jobs/{id}/urgent",
            "marking the recipient's download urgent: admins only",
            move |w| format!("/api/v1/jobs/{}/urgent", download(w)),
            Some(json!({"urgent": true})),
            [A, NF, NO, NF, NO, 200],
        )
        .then(move |w| w.restore(download(w))),
        fixed(
            "POST",
            "/api/v1/jobs/{id}/priority",
            "raising files of the recipient's download",
            move |w| format!("/api/v1/jobs/{}/priority", download(w)),
            Some(json!({"glob": "*.mov", "priority": "high"})),
            [A, NF, 200, NF, 200, 200],
        ),
        case(
            "POST",
            "/api/v1/jobs/{id}/purge",
            "withdrawing a delivery's download for good",
            [A, NF, NO, NF, 204, 204],
            |w, _| {
                let (_, download) = w.delivery();
                (
                    format!("/api/v1/jobs/{download}/purge"),
                    Some(json!({"delete_files": false})),
                )
            },
        ),
        fixed(
            "GET",
            "/api/v1/watches",
            "the watch folders (admins)",
            |_| "/api/v1/watches".into(),
            None,
            [A, NO, NO, NO, NO, 200],
        ),
        case(
            "POST",
            "/api/v1/watches",
            "watching a folder of media (admins)",
            [A, NO, NO, NO, NO, 201],
            |w, _| {
                let folder = w.fresh("watched");
                std::fs::create_dir_all(w.a.share.join(&folder)).unwrap();
                (
                    "/api/v1/watches".into(),
                    Some(json!({
                        "folder": format!("share=media/{folder}"),
                        "sender": Who::Sender.email(),
                        "to": [Who::Recipient.email()],
                    })),
                )
            },
        ),
        case(
            "DELETE",
            "/api/v1/watches/{id}",
            "no longer watching a folder (admins)",
            [A, NO, NO, NO, NO, 204],
            |w, _| {
                let folder = w.fresh("unwatched");
                std::fs::create_dir_all(w.a.share.join(&folder)).unwrap();
                let made = w.rest.ok(
                    "POST",
                    "/api/v1/watches",
                    w.key(Who::Admin).unwrap(),
                    Some(&json!({
                        "folder": format!("share=media/{folder}"),
                        "sender": Who::Sender.email(),
                        "to": [Who::Recipient.email()],
                    })),
                );
                (format!("/api/v1/watches/{}", made["id"]), None)
            },
        ),
        fixed(
            "GET",
            "/api/v1/settings",
            "the site settings (admins)",
            |_| "/api/v1/settings".into(),
            None,
            [A, NO, NO, NO, NO, 200],
        ),
        case(
            "PUT",
            "/api/v1/settings",
            "saving the site settings as they are (admins)",
            [A, NO, NO, NO, NO, 200],
            |w, _| {
                let now = w
                    .rest
                    .ok("GET", "/api/v1/settings", w.key(Who::Admin).unwrap(), None);
                ("/api/v1/settings".into(), Some(now))
            },
        ),
        fixed(
            "POST",
            "/api/v1/me/password",
            "their own password",
            |_| "/api/v1/me/password".into(),
            Some(json!({"current": PASSWORD, "new": "a harbour at dusk now"})),
            [A, 204, 204, 204, 204, 204],
        ),
    ]
}

/// The operations the OpenAPI document names, as (METHOD, path).
fn documented(rest: &Rest) -> BTreeSet<(String, String)> {
    let (status, doc) = rest.call("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// The web admin's form routes, read from its router: every
/// `.route(PATH, … post(…))` in webadmin/src/lib.rs.
fn web_forms() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../webadmin/src/lib.rs"),
    )
    .unwrap();
    // Each `.route(` up to the next, however rustfmt wrapped it.
    lib.split(".route(")
        .skip(1)
        .map(|call| call.trim_start())
        .filter(|call| call.starts_with('"') && call.contains("post("))
        .map(|call| call[1..].split('"').next().unwrap().to_owned())
        .collect()
}

/// The web admin's callers for its staff forms; signed-in collaborators
/// are refused every one of them (checked on their own below).
const WEB_CALLERS: [Who; 4] = [Who::Anonymous, Who::Colleague, Who::Sender, Who::Admin];

/// One form of the web admin and what each of [`WEB_CALLERS`] gets: a
/// status, and for a redirect where it goes.
struct Form {
    route: &'static str,
    what: &'static str,
    path: Box<dyn Fn(&World) -> String>,
    fields: Vec<(&'static str, String)>,
    expect: [&'static str; 4],
}

fn form(
    route: &'static str,
    what: &'static str,
    path: impl Fn(&World) -> String + 'static,
    fields: &[(&'static str, &str)],
    expect: [&'static str; 4],
) -> Form {
    Form {
        route,
        what,
        path: Box::new(path),
        fields: fields.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        expect,
    }
}

const LOGIN: &str = "303 /login";

fn web_cases(w: &World) -> Vec<Form> {
    // The user forms act on an account of their own, so that their effects
    // (a reset password, a grant) do not change the callers of other rows.
    w.a.user("target@client.example", "collaborator");
    let target = {
        let users = w
            .rest
            .ok("GET", "/api/v1/users", w.key(Who::Admin).unwrap(), None);
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == "target@client.example")
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let download = w.download;
    std::fs::write(w.a.share.join("matrix-src.mov"), b"a cut").unwrap();
    vec![
        form(
            "/transfers/{id}/action",
            "pausing the recipient's download",
            move |_| format!("/transfers/{download}/action"),
            &[("action", "pause")],
            [LOGIN, "404", "303 /", "303 /"],
        ),
        form(
            "/transfers/{id}/priority",
            "raising its files",
            move |_| format!("/transfers/{download}/priority"),
            &[("glob", "*.mov"), ("priority", "high")],
            [LOGIN, "404", "303 /transfers", "303 /transfers"],
        ),
        form(
            "/transfers/{id}/urgent",
            "marking it urgent: admins only",
            move |_| format!("/transfers/{download}/urgent"),
            &[("urgent", "true"), ("back", "/transfers")],
            [LOGIN, "404", "403", "303 /transfers"],
        ),
        form(
            "/settings/watches",
            "watching a folder of media (admins)",
            |w| {
                std::fs::create_dir_all(w.a.share.join("form-watched")).unwrap();
                "/settings/watches".into()
            },
            &[
                ("folder", "share=media/form-watched"),
                ("sender", "sender@studio.example"),
                ("to", "recipient@client.example"),
                ("settle_secs", "30"),
                ("mode", "folder"),
                ("name", "{folder}"),
            ],
            [LOGIN, "403", "403", "303 /settings"],
        ),
        form(
            "/settings/watches/{id}/remove",
            "no longer watching a folder (admins)",
            |w| {
                let folder = w.fresh("form-unwatched");
                std::fs::create_dir_all(w.a.share.join(&folder)).unwrap();
                let made = w.rest.ok(
                    "POST",
                    "/api/v1/watches",
                    w.key(Who::Admin).unwrap(),
                    Some(&json!({
                        "folder": format!("share=media/{folder}"),
                        "sender": Who::Sender.email(),
                        "to": [Who::Recipient.email()],
                    })),
                );
                format!("/settings/watches/{}/remove", made["id"])
            },
            &[],
            [LOGIN, "403", "403", "303 /settings"],
        ),
        form(
            "/shares/root",
            "a root share",
            |_| "/shares/root".into(),
            &[("name", "other"), ("path", "/nonexistent/other")],
            [LOGIN, "403", "403", "400"],
        ),
        form(
            "/shares/share",
            "a share beneath media",
            |_| "/shares/share".into(),
            &[
                ("name", "webshare"),
                ("root", "media"),
                ("folder", "webshare"),
            ],
            [LOGIN, "403", "403", "303 /shares"],
        ),
        form(
            "/shares/grant",
            "a grant on media",
            |_| "/shares/grant".into(),
            &[
                ("share", "media"),
                ("email", "target@client.example"),
                ("read", "on"),
            ],
            [LOGIN, "403", "403", "303 /shares"],
        ),
        form(
            "/users/invite",
            "an invitation",
            |_| "/users/invite".into(),
            &[
                ("email", "webguest@invited.example"),
                ("name", ""),
                ("role", "collaborator"),
            ],
            [LOGIN, "403", "403", "303 /users"],
        ),
        form(
            "/users/{id}/role",
            "making a collaborator an employee",
            move |_| format!("/users/{target}/role"),
            &[("role", "collaborator")],
            [LOGIN, "403", "403", "303 /users"],
        ),
        form(
            "/users/{id}/status",
            "disabling a collaborator",
            move |_| format!("/users/{target}/status"),
            &[("status", "active")],
            [LOGIN, "403", "403", "303 /users"],
        ),
        form(
            "/users/{id}/reset",
            "a reset link",
            move |_| format!("/users/{target}/reset"),
            &[],
            [LOGIN, "403", "403", "200"],
        ),
        form(
            "/users/{id}/invite-link",
            "an invitation link for someone with none waiting",
            move |_| format!("/users/{target}/invite-link"),
            &[],
            [LOGIN, "403", "403", "400"],
        ),
        form(
            "/outbox/{id}/retry",
            "sending a message again",
            |_| "/outbox/999999/retry".into(),
            &[],
            [LOGIN, "403", "403", "400"],
        ),
        form(
            "/outbox/{id}/discard",
            "discarding a message",
            |_| "/outbox/999999/discard".into(),
            &[],
            [LOGIN, "403", "403", "400"],
        ),
        form(
            "/users/{id}/keys",
            "a key for someone",
            move |_| format!("/users/{target}/keys"),
            &[("name", "web-made")],
            [LOGIN, "403", "403", "200"],
        ),
        form(
            "/users/{id}/keys/{key}/revoke",
            "revoking someone's key",
            move |_| format!("/users/{target}/keys/999999/revoke"),
            &[],
            [LOGIN, "403", "403", "400"],
        ),
        form(
            "/settings",
            "the site settings",
            |_| "/settings".into(),
            &[
                ("smtp_url", ""),
                ("smtp_user", ""),
                ("smtp_password_file", ""),
                ("smtp_from", ""),
                ("public_address", ""),
                ("trusted_proxies", ""),
                ("policy", "fair"),
                ("target_rate", ""),
                ("default_expiry_days", "30"),
            ],
            [LOGIN, "403", "403", "303 /settings"],
        ),
        form(
            "/settings/certificate",
            "a certificate that is not one",
            |_| "/settings/certificate".into(),
            &[("certificate", "not a certificate"), ("key", "not a key")],
            [LOGIN, "403", "403", "400"],
        ),
        form(
            "/settings/test-mail",
            "a test mail (no mail server is set: the page says so)",
            |_| "/settings/test-mail".into(),
            &[],
            [LOGIN, "403", "403", "200"],
        ),
        form(
            "/invite/{token}",
            "an invitation that does not exist",
            |_| format!("/invite/{}", "0".repeat(64)),
            &[("password", PASSWORD), ("again", PASSWORD)],
            ["404", "404", "404", "404"],
        ),
        form(
            "/setup",
            "the first admin's set-up, for someone who has set up",
            |_| "/setup".into(),
            &[
                ("current", PASSWORD),
                ("password", PASSWORD),
                ("again", PASSWORD),
            ],
            [LOGIN, "400", "400", "400"],
        ),
        form(
            "/send/share",
            "files already in media, to one more recipient",
            |_| "/send/share".into(),
            &[
                ("sources", "share=media/matrix-src.mov"),
                ("recipients", Who::Recipient.email()),
            ],
            [LOGIN, "404", "200", "200"],
        ),
        form(
            "/send/deliveries",
            "a delivery from the send page's script, posted as a form without its token header",
            |_| "/send/deliveries".into(),
            &[],
            ["401", "403", "403", "403"],
        ),
        form(
            "/api/v1/uploads",
            "a tus upload, posted as a form without its token header",
            |_| "/api/v1/uploads".into(),
            &[],
            ["401", "403", "403", "403"],
        ),
        form(
            "/logout",
            "signing out",
            |_| "/logout".into(),
            &[],
            [LOGIN, "303 /login", "303 /login", "303 /login"],
        ),
    ]
}

fn answer(page: &Page) -> String {
    let status = page.status.as_u16();
    if status == 303 {
        let to = page
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // Where it goes, without its query (notices, next).
        let to = to.split('?').next().unwrap_or("");
        let to = if to.starts_with("/transfers") {
            "/transfers"
        } else {
            to
        };
        format!("303 {to}")
    } else {
        status.to_string()
    }
}

#[test]
fn every_operation_and_form_answers_each_caller_as_the_rulebook_says() {
    let started = Instant::now();
    let w = World::new();
    let mut wrong = Vec::new();
    let mut count = 0;

    // --- The web admin's forms (before the password changes below). ---
    let forms = web_cases(&w);
    let routes: BTreeSet<String> = forms.iter().map(|f| f.route.to_owned()).collect();
    let mut expected_routes = web_forms();
    expected_routes.remove("/login");
    assert_eq!(
        routes, expected_routes,
        "every form of the web admin is in the matrix, and only those"
    );
    // Everyone with a password signs in (collaborators to their
    // deliveries); a wrong password does not.
    for who in CALLERS {
        let mut b = Browser::new(&w.a);
        let page = b.login(who.email(), PASSWORD);
        let want = match who {
            Who::Anonymous => "401",
            _ => "303 /",
        };
        count += 1;
        if answer(&page) != want {
            wrong.push(format!(
                "POST /login as {who:?}: {} (wanted {want})",
                answer(&page)
            ));
        }
    }
    for f in &forms {
        for (i, who) in WEB_CALLERS.iter().enumerate() {
            let mut b = Browser::new(&w.a);
            let mut fields: Vec<(&str, String)> = f.fields.clone();
            if *who != Who::Anonymous {
                let page = b.login(who.email(), PASSWORD);
                assert_eq!(answer(&page), "303 /", "{who:?} signs in");
                fields.push(("csrf", b.csrf("/transfers")));
            }
            let borrowed: Vec<(&str, &str)> =
                fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let page = b.post(&(f.path)(&w), &borrowed);
            count += 1;
            let got = answer(&page);
            if got != f.expect[i] {
                wrong.push(format!(
                    "POST {} ({}) as {who:?}: {got} (wanted {}): {}",
                    f.route,
                    f.what,
                    f.expect[i],
                    page.body.chars().take(300).collect::<String>()
                ));
            }
            // Each caller starts from the same place.
            w.restore(w.download);
        }
    }

    // Signed-in collaborators post no staff form: each is refused; they
    // may only sign out (and an invitation is nobody's).
    for f in &forms {
        for who in [Who::Stranger, Who::Recipient] {
            let mut b = Browser::new(&w.a);
            b.login(who.email(), PASSWORD);
            let csrf = b.csrf("/deliveries");
            let mut fields: Vec<(&str, &str)> =
                f.fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            fields.push(("csrf", &csrf));
            let page = b.post(&(f.path)(&w), &fields);
            let want = match f.route {
                "/logout" => "303 /login",
                "/invite/{token}" => "404",
                _ => "403",
            };
            count += 1;
            if answer(&page) != want {
                wrong.push(format!(
                    "POST {} ({}) as {who:?}: {} (wanted {want})",
                    f.route,
                    f.what,
                    answer(&page)
                ));
            }
            w.restore(w.download);
        }
    }

    // --- Deliveries in the browser, and their files over the API: only
    // the recipient (whose files have not reached the appliance yet, so a
    // download is refused as a conflict); nobody else learns it exists.
    let d = w.download;
    let pages: Vec<(String, [&str; 6])> = vec![
        (
            "/deliveries".into(),
            [LOGIN, "200", "200", "200", "200", "200"],
        ),
        (
            format!("/deliveries/{d}"),
            [LOGIN, "404", "200", "404", "404", "404"],
        ),
        (
            format!("/deliveries/{d}/all.zip"),
            [LOGIN, "404", "409", "404", "404", "404"],
        ),
        (
            format!("/deliveries/{d}/files/b.mov"),
            [LOGIN, "404", "409", "404", "404", "404"],
        ),
    ];
    for (path, expect) in &pages {
        for (i, who) in CALLERS.iter().enumerate() {
            let mut b = Browser::new(&w.a);
            if *who != Who::Anonymous {
                b.login(who.email(), PASSWORD);
            }
            let got = answer(&b.get(path));
            count += 1;
            if got != expect[i] {
                wrong.push(format!(
                    "GET {path} as {who:?}: {got} (wanted {})",
                    expect[i]
                ));
            }
        }
    }
    let file = format!("/api/v1/jobs/{d}/files/b.mov");
    for (i, who) in CALLERS.iter().enumerate() {
        let (status, reply) = w.rest.call("GET", &file, w.key(*who), None);
        let want = [A, 404, 409, 404, 404, 404][i];
        count += 1;
        if status != want {
            wrong.push(format!(
                "GET {file} as {who:?}: {status} (wanted {want}): {reply}"
            ));
        }
    }

    // --- The REST API. ---
    let cases = rest_cases();
    let covered: BTreeSet<(String, String)> = cases
        .iter()
        .map(|c| (c.method.to_owned(), c.template.to_owned()))
        .collect();
    let mut documented = documented(&w.rest);
    documented.remove(&("GET".to_owned(), "/api/v1/openapi.json".to_owned()));
    assert_eq!(
        covered, documented,
        "every operation of the OpenAPI document is in the matrix, and only those"
    );
    for c in &cases {
        for (i, who) in CALLERS.iter().enumerate() {
            let (path, body) = (c.call)(&w, *who);
            let (status, reply) = w.rest.call(c.method, &path, w.key(*who), body.as_ref());
            count += 1;
            if status != c.expect[i] {
                wrong.push(format!(
                    "{} {path} ({}) as {who:?}: {status} (wanted {}): {reply}",
                    c.method, c.what, c.expect[i]
                ));
            }
            if let Some(after) = &c.after {
                after(&w);
            }
        }
    }
    let took = started.elapsed();
    println!(
        "authorization matrix: {count} cases ({} REST rows and {} forms by their callers) in {:.1} s",
        cases.len(),
        forms.len(),
        took.as_secs_f64()
    );
    assert!(
        wrong.is_empty(),
        "{} of {count} cases answered otherwise:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// The stable code of an API error.
fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("")
}

fn message(reply: &Value) -> &str {
    reply["error"]["message"].as_str().unwrap_or("")
}

/// A job as `who` sees it, as the API's own type.
fn job(w: &World, who: Who, id: i64) -> JobInfo {
    let detail = w.rest.ok(
        "GET",
        &format!("/api/v1/jobs/{id}"),
        w.key(who).unwrap(),
        None,
    );
    serde_json::from_value::<ferry_api::JobDetail>(detail)
        .unwrap()
        .job
}

/// The review's hole 1: the sender aborts the recipient's download; the
/// recipient's retry made it run again. Now it is refused, and no data
/// session can be opened for it.
#[test]
fn hole_1_a_recipient_cannot_undo_the_senders_abort() {
    let w = World::new();
    let (sender, recipient) = (w.key(Who::Sender).unwrap(), w.key(Who::Recipient).unwrap());
    let d = w.download;
    w.rest
        .ok("POST", &format!("/api/v1/jobs/{d}/abort"), sender, None);
    let (status, reply) = w.rest.call(
        "POST",
        &format!("/api/v1/jobs/{d}/retry"),
        Some(recipient),
        None,
    );
    assert_eq!(status, 403, "{reply}");
    assert!(message(&reply).contains("aborted by the sender"), "{reply}");
    let (status, reply) = w.rest.call(
        "POST",
        "/api/v1/sessions",
        Some(recipient),
        Some(&json!({"kind": "download", "job": d})),
    );
    assert_eq!((status, code(&reply)), (409, "job_aborted"), "{reply}");
    // The recipient is offered nothing; the sender may send it again.
    let seen = job(&w, Who::Recipient, d);
    assert!(seen.actions.is_empty(), "{:?}", seen.actions);
    assert_eq!(seen.status, JobStatus::Aborted);
    w.rest
        .ok("POST", &format!("/api/v1/jobs/{d}/retry"), sender, None);
    assert_eq!(job(&w, Who::Recipient, d).status, JobStatus::Queued);
}

/// Hole 2: an admin pauses and caps a recipient's job; the recipient
/// resumed it and raised the rate. Now only lowering is theirs.
#[test]
fn hole_2_a_recipient_cannot_override_an_admin() {
    let w = World::new();
    let (admin, recipient) = (w.key(Who::Admin).unwrap(), w.key(Who::Recipient).unwrap());
    let d = w.download;
    w.rest
        .ok("POST", &format!("/api/v1/jobs/{d}/pause"), admin, None);
    w.rest.ok(
        "POST",
        &format!("/api/v1/jobs/{d}/rate"),
        admin,
        Some(&json!({"rate": "1M"})),
    );
    let (status, reply) = w.rest.call(
        "POST",
        &format!("/api/v1/jobs/{d}/resume"),
        Some(recipient),
        None,
    );
    assert_eq!(status, 403, "{reply}");
    assert!(message(&reply).contains("paused by an admin"), "{reply}");
    let rate = |r: &str| {
        w.rest.call(
            "POST",
            &format!("/api/v1/jobs/{d}/rate"),
            Some(recipient),
            Some(&json!({"rate": r})),
        )
    };
    let (status, reply) = rate("100G");
    assert_eq!(status, 403, "{reply}");
    assert!(message(&reply).contains("only lower"), "{reply}");
    let (status, reply) = rate("500k");
    assert_eq!(status, 200, "{reply}");
    assert_eq!(job(&w, Who::Recipient, d).target_rate, Some(500_000));
    // The lowered cap is still the admin's: the recipient cannot raise it
    // back, and is not offered Resume.
    assert_eq!(rate("1M").0, 403);
    let actions = job(&w, Who::Recipient, d).actions;
    assert!(!actions.contains(&JobAction::Resume), "{actions:?}");
    w.rest
        .ok("POST", &format!("/api/v1/jobs/{d}/resume"), admin, None);
}

/// Hole 3: password guessing over the API was unlimited. One throttle,
/// per account and per address, now counts the API and the web alike.
#[test]
fn hole_3_password_guessing_is_throttled_on_the_api_and_the_web_alike() {
    let w = World::new();
    let login = |password: &str| {
        w.rest.call(
            "POST",
            "/api/v1/login",
            None,
            Some(&json!({"email": Who::Sender.email(), "password": password})),
        )
    };
    for n in 0..5 {
        let (status, reply) = login(&format!("guess number {n} is wrong"));
        assert_eq!(status, 401, "guess {n}: {reply}");
    }
    // The right password, now: refused until the window passes.
    let (status, reply) = login(PASSWORD);
    assert_eq!(status, 429, "{reply}");
    assert!(reply["api_key"].is_null());
    // The web login counts the same failures.
    let mut b = Browser::new(&w.a);
    assert_eq!(b.login(Who::Sender.email(), PASSWORD).status.as_u16(), 429);
    let audit = w.a.admin(&["audit", "--action", "login."]);
    assert!(audit.contains("login.throttled"), "{audit}");
    assert_eq!(audit.matches("login.failed").count(), 5, "{audit}");
    // Another account from the same address is not locked out by it.
    let (status, _) = w.rest.call(
        "POST",
        "/api/v1/login",
        None,
        Some(&json!({"email": Who::Colleague.email(), "password": PASSWORD})),
    );
    assert_eq!(status, 200);
}

/// Hole 4: a delivery that declared an existing file of the share, never
/// uploaded it and was purged with its files deleted the original. Now a
/// delivery may not adopt a file it would overwrite, and a purge deletes
/// only what the delivery's upload committed.
#[test]
fn hole_4_a_purge_deletes_only_what_its_delivery_wrote() {
    let w = World::new();
    let sender = w.key(Who::Sender).unwrap();
    let master = w.a.share.join("master");
    std::fs::create_dir_all(&master).unwrap();
    std::fs::write(master.join("important.mov"), b"the only copy").unwrap();
    let declare = |path: &str| {
        w.rest.call(
            "POST",
            "/api/v1/deliveries",
            Some(sender),
            Some(&json!({
                "recipients": [Who::Recipient.email()],
                "dest": "share=media/master/",
                "files": [{"path": path, "size": 13, "mtime_ns": 0, "priority": 100}],
            })),
        )
    };
    let (status, reply) = declare("important.mov");
    assert_eq!(status, 409, "{reply}");
    assert!(
        message(&reply).contains("share=media/master/important.mov"),
        "{reply}"
    );
    // A new name is accepted; aborted and purged with delete_files before
    // any upload, it deletes nothing.
    let (status, reply) = declare("new.mov");
    assert_eq!(status, 201, "{reply}");
    let upload = reply["jobs"][0]["id"].as_i64().unwrap();
    w.rest.ok(
        "POST",
        &format!("/api/v1/jobs/{upload}/abort"),
        sender,
        None,
    );
    w.rest.ok(
        "POST",
        &format!("/api/v1/jobs/{upload}/purge"),
        sender,
        Some(&json!({"delete_files": true})),
    );
    assert_eq!(
        std::fs::read(master.join("important.mov")).unwrap(),
        b"the only copy"
    );

    // A real upload: its files go with the purge; a file someone else put
    // beside them stays.
    let src = tempfile::tempdir().unwrap();
    write_random(&src.path().join("take1.mov"), 300_000, 4);
    let sent =
        w.a.client(sender)
            .run(&[
                "send",
                src.path().join("take1.mov").to_str().unwrap(),
                "--to",
                Who::Recipient.email(),
                "--dest",
                "share=media/dailies/",
                "--json",
            ])
            .json();
    let upload = sent["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "upload")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let dailies = w.a.share.join("dailies");
    assert!(dailies.join("take1.mov").exists());
    std::fs::write(dailies.join("notes.txt"), b"someone else's").unwrap();
    w.rest.ok(
        "POST",
        &format!("/api/v1/jobs/{upload}/purge"),
        sender,
        Some(&json!({"delete_files": true})),
    );
    assert!(
        !dailies.join("take1.mov").exists(),
        "the upload's file goes"
    );
    assert!(
        dailies.join("notes.txt").exists(),
        "what it did not write stays"
    );
    assert!(master.join("important.mov").exists());
}

/// Hole 5: the API took `12345678` and a change left the other sessions
/// alive. One policy now, and a change ends web sessions and login keys.
#[test]
fn hole_5_one_password_policy_and_a_change_ends_other_sessions() {
    let w = World::new();
    let made = w.key(Who::Sender).unwrap();
    let change = |new: &str| {
        w.rest.call(
            "POST",
            "/api/v1/me/password",
            Some(made),
            Some(&json!({"current": PASSWORD, "new": new})),
        )
    };
    for weak in ["12345678", "password1234", "aaaaaaaaaaaa"] {
        let (status, reply) = change(weak);
        assert_eq!(
            (status, code(&reply)),
            (400, "weak_password"),
            "{weak}: {reply}"
        );
    }
    // The same policy for ferryd admin.
    let out = std::process::Command::new(ferry_tests::bin("ferryd"))
        .args(["admin", "--data"])
        .arg(&w.a.data)
        .args([
            "user",
            "add",
            "weak@studio.example",
            "--role",
            "employee",
            "--password-stdin",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"12345678\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("12 characters"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A login key and a web session, then a change.
    let login = w.rest.ok(
        "POST",
        "/api/v1/login",
        made,
        Some(&json!({"email": Who::Sender.email(), "password": PASSWORD})),
    );
    let minted = login["api_key"].as_str().unwrap().to_owned();
    let mut b = Browser::new(&w.a);
    assert_eq!(b.login(Who::Sender.email(), PASSWORD).status.as_u16(), 303);
    assert_eq!(b.get("/transfers").status.as_u16(), 200);
    let (status, reply) = change("a harbour at dusk now");
    assert_eq!(status, 204, "{reply}");
    let (status, reply) = w.rest.call("GET", "/api/v1/me", Some(&minted), None);
    assert_eq!((status, code(&reply)), (401, "key_revoked"), "{reply}");
    assert_eq!(
        b.get("/transfers").status.as_u16(),
        303,
        "the web session ended"
    );
    // A key made for a script is not a login's, and stays.
    assert_eq!(w.rest.call("GET", "/api/v1/me", Some(made), None).0, 200);
}

/// Hole 6: behind a trusted proxy the web admin took the leftmost
/// `X-Forwarded-For`, which the client writes. The API and the web now
/// share one rule: the rightmost address that is not a trusted proxy.
#[test]
fn hole_6_the_api_and_the_web_read_the_client_address_one_way() {
    let w = World::new();
    let admin = w.key(Who::Admin).unwrap();
    let mut settings = w.rest.ok("GET", "/api/v1/settings", admin, None);
    // The test's own connections are the proxy's: from 127.0.0.1, or from
    // the appliance's own loopback address.
    settings["trusted_proxies"] = json!(["127.0.0.1", w.a.ip.to_string()]);
    w.rest.ok("PUT", "/api/v1/settings", admin, Some(&settings));
    let forwarded = "198.51.100.66, 203.0.113.9";
    let (status, _) = w.rest.call_with(
        "POST",
        "/api/v1/login",
        None,
        Some(&json!({"email": Who::Colleague.email(), "password": "not the password at all"})),
        &[("x-forwarded-for", forwarded)],
    );
    assert_eq!(status, 401);
    let mut b = Browser::new(&w.a);
    let req = b
        .http
        .post(format!("{}/login", w.a.url))
        .header("sec-fetch-site", "same-origin")
        .header("x-forwarded-for", forwarded)
        .form(&[
            ("email", Who::Sender.email()),
            ("password", "not the password at all"),
        ]);
    assert_eq!(b.send(req).status.as_u16(), 401);
    let audit = w.a.admin(&["audit", "--action", "login.failed"]);
    let addresses: Vec<&str> = audit.lines().filter_map(|l| l.split('\t').nth(2)).collect();
    assert_eq!(addresses, ["203.0.113.9", "203.0.113.9"], "{audit}");
}

/// Hole 7: a default expiry of 0 broke deliveries and a huge one
/// overflowed. One validator answers for the API and the web.
#[test]
fn hole_7_settings_are_bounded_in_one_place() {
    let w = World::new();
    let admin = w.key(Who::Admin).unwrap();
    let before = w.rest.ok("GET", "/api/v1/settings", admin, None);
    for days in [0u64, 367, u64::MAX / 2] {
        let mut s = before.clone();
        s["default_expiry_days"] = json!(days);
        let (status, reply) = w
            .rest
            .call("PUT", "/api/v1/settings", Some(admin), Some(&s));
        assert_eq!(status, 400, "{days}: {reply}");
        assert!(message(&reply).contains("from 1 to 366"), "{reply}");
    }
    let mut b = Browser::new(&w.a);
    assert_eq!(b.login(Who::Admin.email(), PASSWORD).status.as_u16(), 303);
    let csrf = b.csrf("/settings");
    let page = b.post(
        "/settings",
        &[
            ("csrf", &csrf),
            ("smtp_url", ""),
            ("smtp_user", ""),
            ("smtp_password_file", ""),
            ("smtp_from", ""),
            ("public_address", ""),
            ("trusted_proxies", ""),
            ("policy", "fair"),
            ("target_rate", ""),
            ("default_expiry_days", "0"),
        ],
    );
    assert_eq!(page.status.as_u16(), 400);
    assert!(page.body.contains("from 1 to 366"), "{}", page.body);
    assert_eq!(w.rest.ok("GET", "/api/v1/settings", admin, None), before);
    // A delivery with no expiry of its own still gets the default.
    let (_, d) = w.delivery();
    let expires = job(&w, Who::Sender, d).expires_at.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (expires - now - 30 * 86400).abs() < 600,
        "{expires} vs {now}"
    );
}

/// Hole 8: a key for an invited user was made and never worked. Keys are
/// now refused when made for an account that could not use them; service
/// accounts are for automation; a refused key says why.
#[test]
fn hole_8_keys_are_refused_when_made_and_service_accounts_use_them() {
    let w = World::new();
    let try_admin = |args: &[&str]| {
        std::process::Command::new(ferry_tests::bin("ferryd"))
            .args(["admin", "--data"])
            .arg(&w.a.data)
            .args(args)
            .output()
            .unwrap()
    };
    w.a.admin(&[
        "user",
        "add",
        "invited@client.example",
        "--role",
        "collaborator",
    ]);
    let out = try_admin(&["apikey", "create", "invited@client.example"]);
    assert!(!out.status.success());
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(why.contains("has not chosen a password"), "{why}");

    w.a.admin(&[
        "user",
        "add",
        "bot@studio.example",
        "--role",
        "employee",
        "--service",
    ]);
    let bot =
        w.a.admin(&["apikey", "create", "bot@studio.example"])
            .trim()
            .to_owned();
    let me = w.rest.ok("GET", "/api/v1/me", &bot, None);
    assert_eq!(me["kind"], "service", "{me}");
    assert!(w.a.admin(&["user", "list"]).contains("service"));
    // No password, no login, no web admin.
    let (status, reply) = w.rest.call(
        "POST",
        "/api/v1/login",
        None,
        Some(&json!({"email": "bot@studio.example", "password": PASSWORD})),
    );
    assert_eq!(status, 401, "{reply}");
    let mut b = Browser::new(&w.a);
    assert_ne!(b.login("bot@studio.example", PASSWORD).status.as_u16(), 303);

    // Refused keys say why.
    let (status, reply) = w.rest.call(
        "GET",
        "/api/v1/me",
        Some(&format!("fk_{}", "0".repeat(64))),
        None,
    );
    assert_eq!((status, code(&reply)), (401, "bad_api_key"), "{reply}");
    let list = w.a.admin(&["apikey", "list", "bot@studio.example"]);
    let id = list.split('\t').next().unwrap().trim().to_owned();
    w.a.admin(&["apikey", "revoke", "bot@studio.example", &id]);
    let (status, reply) = w.rest.call("GET", "/api/v1/me", Some(&bot), None);
    assert_eq!((status, code(&reply)), (401, "key_revoked"), "{reply}");
    let colleague = w.key(Who::Colleague).unwrap();
    w.a.admin(&["user", "disable", Who::Colleague.email()]);
    let (status, reply) = w.rest.call("GET", "/api/v1/me", Some(colleague), None);
    assert_eq!((status, code(&reply)), (401, "account_disabled"), "{reply}");
}

/// Automation through the Python client with a service account: an admin
/// adds it through the API, a key is made for it, and it sends a delivery
/// of local files that the recipient's agent receives.
#[test]
fn a_service_account_automates_a_delivery_through_the_python_client() {
    let _serial = ferry_tests::heavy_io();
    let w = World::new();
    let into = tempfile::tempdir().unwrap();
    let agent = Running::start(
        &w.a.client(w.key(Who::Recipient).unwrap()),
        &[
            "agent",
            "--into",
            into.path().to_str().unwrap(),
            "--poll",
            "1",
        ],
    );
    let src = tempfile::tempdir().unwrap();
    write_random(&src.path().join("cut.mov"), 2_000_000, 8);
    let script = r#"
import os, sys
from ferry import Session, FerryError
admin = Session(api_key=os.environ["ADMIN_KEY"])
bot = admin.invite("render-farm@studio.example", role="employee", service=True)
assert bot.kind == "service", bot
print("made", bot.email, flush=True)
key = sys.stdin.readline().strip()
farm = Session(api_key=key)
assert farm.me().kind == "service"
d = farm.create_delivery("farm-review", [os.environ["SRC"]], ["recipient@client.example"], dest="share=media/farm/")
farm.wait(d.upload.id, timeout=120)
try:
    farm.users()
    raise SystemExit("a service account listed the users")
except FerryError as e:
    assert e.status == 403, e
print("delivered", d.id, flush=True)
"#;
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/python");
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .current_dir(&python)
        .env("FERRY_SERVER", &w.a.url)
        .env("FERRY_FINGERPRINT", &w.a.fingerprint)
        .env("FERRY_BINARY", ferry_tests::bin("ferry"))
        .env("ADMIN_KEY", w.key(Who::Admin).unwrap())
        .env("SRC", src.path().join("cut.mov"))
        .env("HOME", src.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    if line.trim() != "made render-farm@studio.example" {
        let failed = child.wait_with_output().unwrap();
        panic!(
            "the script did not make the account: {line}{}",
            String::from_utf8_lossy(&failed.stderr)
        );
    }
    w.a.admin(&[
        "share",
        "grant",
        "media",
        "render-farm@studio.example",
        "--read",
        "--write",
    ]);
    let key =
        w.a.admin(&["apikey", "create", "render-farm@studio.example"]);
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(key.as_bytes()).unwrap();
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{rest}\n{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(rest.contains("delivered"), "{rest}");
    agent.wait_line(": complete", Duration::from_secs(60));
    let got = ferry_tests::delivered_files(into.path());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        ferry_tests::blake3_file(&into.path().join(&got[0])),
        ferry_tests::blake3_file(&src.path().join("cut.mov"))
    );
}

/// Disabling a user, revoking their grant on a share, or revoking their
/// key stops their running transfer within 5 s and holds their jobs.
#[test]
fn revocation_stops_running_transfers_and_holds_jobs() {
    let _serial = ferry_tests::heavy_io();
    let w = World::new();
    let big = w.a.share.join("big");
    std::fs::create_dir_all(&big).unwrap();
    write_random(&big.join("plate.exr"), 64 << 20, 5);
    let admin = w.key(Who::Admin).unwrap();
    let mut b = Browser::new(&w.a);
    assert_eq!(b.login(Who::Admin.email(), PASSWORD).status.as_u16(), 303);
    // Three employees with read on media, each pulling the big file at
    // 8 Mbit/s (a minute's work).
    let people = [
        "disabled@studio.example",
        "ungranted@studio.example",
        "unkeyed@studio.example",
    ];
    let mut keys = Vec::new();
    for p in people {
        keys.push(w.a.media_user(p));
    }
    let dest = tempfile::tempdir().unwrap();
    let mut pulls: Vec<Running> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let into = dest.path().join(i.to_string());
            std::fs::create_dir_all(&into).unwrap();
            Running::start(
                &w.a.client(k),
                &[
                    "get",
                    "share=media/big/plate.exr",
                    into.to_str().unwrap(),
                    "--rate",
                    "8M",
                    "--retries",
                    "0",
                ],
            )
        })
        .collect();
    let moving = |email: &str| {
        let jobs = w.rest.ok("GET", "/api/v1/jobs?all=true", admin, None);
        jobs["jobs"].as_array().unwrap().iter().any(|j| {
            j["owner"] == email && j["status"] == "running" && j["bytes_done"].as_i64() > Some(0)
        })
    };
    ferry_tests::wait_for("three transfers moving", Duration::from_secs(30), || {
        people.iter().all(|p| moving(p))
    });
    let users = w.rest.ok("GET", "/api/v1/users", admin, None);
    let id_of = |email: &str| {
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == email)
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let key_id = w.a.admin(&["apikey", "list", people[2]]);
    let key_id = key_id.split('\t').next().unwrap().trim().to_owned();
    let csrf = b.csrf("/users");
    let mut revoke = |form: String, fields: &[(&str, &str)]| {
        let mut f = vec![("csrf", csrf.as_str())];
        f.extend_from_slice(fields);
        let page = b.post(&form, &f);
        assert_eq!(page.status.as_u16(), 303, "{form}: {}", page.body);
        Instant::now()
    };
    // One of each: the account disabled, the grant taken away, the key
    // the transfer was started with revoked.
    let revoked = [
        revoke(
            format!("/users/{}/status", id_of(people[0])),
            &[("status", "disabled")],
        ),
        revoke(
            "/shares/grant".into(),
            &[("share", "media"), ("email", people[1])],
        ),
        revoke(
            format!("/users/{}/keys/{key_id}/revoke", id_of(people[2])),
            &[],
        ),
    ];
    let mut ended: [Option<Duration>; 3] = [None; 3];
    ferry_tests::wait_for(
        "the three transfers to end",
        Duration::from_secs(20),
        || {
            for (i, pull) in pulls.iter_mut().enumerate() {
                if ended[i].is_none() && pull.ended() {
                    ended[i] = Some(revoked[i].elapsed());
                }
            }
            ended.iter().all(Option::is_some)
        },
    );
    for (i, took) in ended.iter().enumerate() {
        let took = took.unwrap();
        println!(
            "{}: the transfer ended {:.2} s after its revocation",
            people[i],
            took.as_secs_f64()
        );
        assert!(took < Duration::from_secs(5), "{}: {took:?}", people[i]);
    }
    for (i, p) in people.iter().enumerate() {
        ferry_tests::wait_for(
            &format!("{p}'s job to stop"),
            Duration::from_secs(5).saturating_sub(revoked[i].elapsed()),
            || !moving(p),
        );
    }
    let audit = w.a.admin(&["audit", "--action", "session."]);
    for p in people {
        assert!(audit.contains(p), "nothing audited for {p}: {audit}");
    }
    // Their jobs are held: paused by an admin or stopped for good, and
    // none is queued to run again by itself.
    let jobs = w.rest.ok("GET", "/api/v1/jobs?all=true", admin, None);
    for p in people {
        let theirs: Vec<&Value> = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["owner"] == p)
            .collect();
        assert!(!theirs.is_empty(), "{p} has no job");
        assert!(
            theirs
                .iter()
                .all(|j| j["status"] == "paused" || j["status"] == "aborted"),
            "{p}: {theirs:?}"
        );
    }
}
