//! Deliveries in a browser, over real HTTPS to a real ferryd: an invited
//! collaborator follows the link from a real SMTP server's mailbox, lands
//! on the delivery, downloads one file and the whole zip, each cut
//! half-way and resumed with curl (`-C -`, as a download manager does);
//! the zip passes `unzip -t` and holds the very bytes sent; every byte
//! served counts, so the job is done and the sender hears it once. Other
//! people get 404, paths stay inside the delivery, and a 5 GiB zip
//! (ZIP64) streams while ferryd's memory stays flat.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ferry_tests::{Appliance, blake3_file, wait_for, write_random};
use reqwest::StatusCode;

use crate::mail::{Smtp, find, mailing_appliance};
use crate::webadmin::Browser;

/// curl against the appliance with a browser's session cookie; its
/// status line and headers.
fn curl(app: &Appliance, cookie: &str, path: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "-k", "-D", "-", "-o"])
        .args(args)
        .arg("-H")
        .arg(format!("Cookie: __Host-ferry={cookie}"))
        .arg(format!("{}{path}", app.url))
        .output()
        .expect("curl (tests/run installs it)");
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        format!("{head}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

/// Downloads `path` into `to` in two goes: the first `cut` bytes, then
/// the rest with `curl -C -`, which asks for the range after what the file
/// holds. Returns the second response's head.
fn download_in_two(app: &Appliance, cookie: &str, path: &str, to: &Path, cut: u64) -> String {
    let first = to.to_str().unwrap();
    let (ok, head) = curl(app, cookie, path, &[first, "-r", &format!("0-{}", cut - 1)]);
    assert!(ok, "{head}");
    assert!(
        head.starts_with("HTTP/1.1 206") || head.starts_with("HTTP/2 206"),
        "{head}"
    );
    assert_eq!(std::fs::metadata(to).unwrap().len(), cut);
    let (ok, head) = curl(app, cookie, path, &[first, "-C", "-"]);
    assert!(ok, "{head}");
    assert!(
        head.contains(&format!("content-range: bytes {cut}-")),
        "resumed where it was cut: {head}"
    );
    head
}

fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or("")
}

fn session(page: &crate::webadmin::Page) -> String {
    page.headers["set-cookie"]
        .to_str()
        .unwrap()
        .strip_prefix("__Host-ferry=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn an_invited_collaborator_downloads_in_the_browser_and_the_sender_hears_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = Smtp::reserve(dir.path());
    smtp.start();
    let app = mailing_appliance(&smtp, "Ferry <ferry@example.com>", &[]);
    let ann = app.media_user("ann@example.com");
    let bob = app.user("bob@example.com", "collaborator");

    // A review session: a movie (non-ASCII name) and a 20-frame sequence,
    // uploaded by `ferry send` over QUIC.
    let src = dir.path().join("review");
    std::fs::create_dir_all(src.join("shot020")).unwrap();
    write_random(&src.join("scène 20.mov"), 12 << 20, 1);
    for f in 1001..=1020 {
        write_random(&src.join(format!("shot020/shot020.{f}.exr")), 300_000, f);
    }
    let send = app.client(&ann).run(&[
        "send",
        src.join("scène 20.mov").to_str().unwrap(),
        src.join("shot020").to_str().unwrap(),
        "--to",
        "director@client.example",
        "--to",
        "bob@example.com",
        "--dest",
        "share=media/review-0420",
        "--name",
        "review-0420",
    ]);
    assert!(send.ok, "{}", send.stderr);

    // The invitation, from the real mailbox.
    let mails = smtp.wait_for(3, Duration::from_secs(60));
    let invitation = find(
        &mails,
        "director@client.example",
        "ann@example.com invited you to Ferry",
    );
    assert_eq!(invitation.len(), 1, "{mails:#?}");
    let waiting = find(
        &mails,
        "director@client.example",
        "ann@example.com sent you review-0420",
    );
    assert_eq!(waiting.len(), 1, "{mails:#?}");
    let invite = invitation[0].link("/invite/");
    let delivery = waiting[0].link("/deliveries/");
    assert!(invite.starts_with(&app.url) && delivery.starts_with(&app.url));
    let delivery = delivery[app.url.len()..].to_owned();

    // Following the invitation: a password, then straight to the delivery.
    let mut guest = Browser::new(&app);
    let page = guest.post(
        &invite[app.url.len()..],
        &[
            ("password", "the director's own password"),
            ("again", "the director's own password"),
        ],
    );
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.headers["location"], delivery.as_str());
    let cookie = session(&page);
    let mut guest = Browser::new(&app);
    let page = guest.login("director@client.example", "the director's own password");
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let list = guest.get("/deliveries");
    assert_eq!(list.status, StatusCode::OK);
    for part in ["review-0420", "ann@example.com", &delivery] {
        assert!(list.body.contains(part), "{part} not in {}", list.body);
    }
    let page = guest.get(&delivery);
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for part in [
        "scène 20.mov",
        "shot020/shot020.####.exr",
        "[1001-1020]",
        "/all.zip",
        "Download all",
    ] {
        assert!(page.body.contains(part), "{part} not in {}", page.body);
    }

    // One file, cut half-way and resumed: the same bytes, a safe name.
    let file_url = format!("{delivery}/files/sc%C3%A8ne%2020.mov");
    let got = dir.path().join("movie");
    let head = download_in_two(&app, &cookie, &file_url, &got, 5 << 20);
    assert_eq!(blake3_file(&got), blake3_file(&src.join("scène 20.mov")));
    let etag = header(&head, "etag").to_owned();
    assert!(etag.starts_with("\"b3-"), "{head}");
    assert_eq!(header(&head, "accept-ranges"), "bytes");
    assert!(
        header(&head, "content-disposition").contains("filename*=UTF-8''sc%C3%A8ne%2020.mov"),
        "{head}"
    );
    // If-Range: the same version resumes, another starts over.
    let (_, head) = curl(
        &app,
        &cookie,
        &file_url,
        &[
            "/dev/null",
            "-r",
            "10-19",
            "-H",
            &format!("If-Range: {etag}"),
        ],
    );
    assert!(head.contains(" 206"), "{head}");
    let (_, head) = curl(
        &app,
        &cookie,
        &file_url,
        &["/dev/null", "-r", "10-19", "-H", "If-Range: \"b3-older\""],
    );
    assert!(head.contains(" 200"), "{head}");
    let (_, head) = curl(&app, &cookie, &file_url, &["/dev/null", "-r", "99999999-"]);
    assert!(head.contains(" 416") && head.contains("bytes */"), "{head}");

    // Not yet received: the sequence has not been served.
    let api = |key: &str, path: &str, range: Option<&str>| {
        let mut c = Command::new("curl");
        c.args(["-sS", "-k", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {key}"));
        if let Some(r) = range {
            c.args(["-r", r]);
        }
        let out = c.arg(format!("{}{path}", app.url)).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let id = delivery.rsplit('/').next().unwrap().to_owned();

    // The whole delivery as a zip, cut half-way and resumed too.
    let zip = dir.path().join("all.zip");
    let size = {
        let (ok, head) = curl(
            &app,
            &cookie,
            &format!("{delivery}/all.zip"),
            &["/dev/null", "-I"],
        );
        assert!(ok, "{head}");
        header(&head, "content-length").parse::<u64>().unwrap()
    };
    download_in_two(
        &app,
        &cookie,
        &format!("{delivery}/all.zip"),
        &zip,
        size / 2,
    );
    assert_eq!(std::fs::metadata(&zip).unwrap().len(), size);
    let test = Command::new("unzip").arg("-t").arg(&zip).output().unwrap();
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stdout)
    );
    let out = dir.path().join("unzipped");
    let x = Command::new("unzip")
        .arg("-q")
        .arg(&zip)
        .arg("-d")
        .arg(&out)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    ferry_tests::assert_same_tree(&src, &out);

    // Every byte served: the job is done, and the sender hears it once.
    let mails = smtp.wait_for(4, Duration::from_secs(30));
    let received = find(
        &mails,
        "ann@example.com",
        "director@client.example received review-0420",
    );
    assert_eq!(received.len(), 1, "{mails:#?}");
    wait_for("the job to be done", Duration::from_secs(10), || {
        guest.get("/deliveries").body.contains("badge done")
    });

    // Someone else's delivery does not exist for them: pages, files, the
    // zip and the API alike; nor do paths outside it.
    let mut other = Browser::new(&app);
    other.login("bob@example.com", "harbour lights at dawn");
    for path in [
        delivery.clone(),
        format!("{delivery}/all.zip"),
        format!("{delivery}/files/sc%C3%A8ne%2020.mov"),
    ] {
        assert_eq!(other.get(&path).status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        api(
            &bob,
            &format!("/api/v1/jobs/{id}/files/shot020/shot020.1001.exr"),
            None
        ),
        "404"
    );
    assert_eq!(
        api(
            &ann,
            &format!("/api/v1/jobs/{id}/files/shot020/shot020.1001.exr"),
            None
        ),
        "404"
    );
    // Sent as written (`--path-as-is`): no client tidies the dots away.
    for path in [
        "files/../../../etc/passwd",
        "files/%2e%2e/%2e%2e/ferryd.db",
        "files/shot020",
        "files//etc/passwd",
    ] {
        let (_, head) = curl(
            &app,
            &cookie,
            &format!("{delivery}/{path}"),
            &["/dev/null", "--path-as-is"],
        );
        assert!(
            head.starts_with("HTTP/1.1 404") || head.starts_with("HTTP/2 404"),
            "{path}: {head}"
        );
    }

    // The API's route for scripts, with the recipient's key and a range.
    let key = app
        .admin(&["apikey", "create", "director@client.example"])
        .trim()
        .to_owned();
    assert_eq!(
        api(
            &key,
            &format!("/api/v1/jobs/{id}/files/shot020/shot020.1005.exr"),
            Some("0-99")
        ),
        "206"
    );

    // A forged cross-site form is refused, and the session holds.
    let forged = guest.send(
        guest
            .http
            .post(format!("{}/logout", app.url))
            .header("sec-fetch-site", "cross-site")
            .form(&[("csrf", "x")]),
    );
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(guest.get("/deliveries").status, StatusCode::OK);
}

/// A 5 GiB delivery of sparse files (one of them over 4 GiB, so ZIP64)
/// streams as one zip while ferryd's memory stays flat; Python's zipfile,
/// reading the zip through ranges, finds every member and its CRC right.
#[test]
fn a_five_gib_zip_streams_in_flat_memory_and_is_a_valid_zip64() {
    let app = Appliance::start();
    let ann = app.media_user("ann@example.com");
    app.user("dir@client.example", "collaborator");
    let big = app.share.join("big");
    std::fs::create_dir_all(big.join("plates")).unwrap();
    // Sparse: no disk, and reads of zeros cost no IO.
    let sparse = |p: &Path, len: u64| {
        let f = std::fs::File::create(p).unwrap();
        f.set_len(len).unwrap();
    };
    sparse(&big.join("plates/plate.exr"), (4 << 30) + (512 << 20));
    sparse(&big.join("edit.mov"), 512 << 20);
    std::fs::write(big.join("notes.txt"), b"grade notes\n").unwrap();
    let sent = app
        .client(&ann)
        .run(&["send", "share=media/big", "--to", "dir@client.example"]);
    assert!(sent.ok, "{}", sent.stderr);

    let mut guest = Browser::new(&app);
    guest.login("dir@client.example", "harbour lights at dawn");
    let list = guest.get("/deliveries");
    let at = list
        .body
        .find("href=\"/deliveries/")
        .expect("the delivery listed")
        + 6;
    let delivery = &list.body[at..at + list.body[at..].find('"').unwrap()];
    let cookie = guest.cookie().to_owned();

    let pid = app.pid().unwrap();
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    let before = rss();
    let mut curl = Command::new("curl")
        .args([
            "-sS",
            "-k",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download} %{http_code}",
            "-H",
        ])
        .arg(format!("Cookie: __Host-ferry={cookie}"))
        .arg(format!("{}{delivery}/all.zip", app.url))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = before;
    while curl.try_wait().unwrap().is_none() {
        peak = peak.max(rss());
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = ferry_tests::finish(curl);
    let (size, code) = out.stdout.trim().split_once(' ').unwrap();
    assert_eq!(code, "200", "{}", out.stderr);
    let size: u64 = size.parse().unwrap();
    assert!(size > 5 << 30, "{size}");
    let grew = peak.saturating_sub(before);
    eprintln!(
        "5 GiB zip: {size} bytes; ferryd RSS {} MiB before, {} MiB at peak (+{} MiB)",
        before >> 20,
        peak >> 20,
        grew >> 20
    );
    ferry_tests::record_scenario(
        "zip-5gib",
        serde_json::json!({"bytes": size, "rss_before": before, "rss_peak": peak}),
    );
    assert!(grew < 64 << 20, "ferryd grew by {} MiB", grew >> 20);

    // The zip as an unzipper sees it, read through HTTP ranges.
    let check = r#"
import io, ssl, sys, urllib.request, zipfile
url, cookie = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
class Ranged(io.RawIOBase):
    def __init__(s):
        s.pos = 0
        r = urllib.request.urlopen(urllib.request.Request(url, method="HEAD", headers={"Cookie": cookie}), context=ctx)
        s.size = int(r.headers["Content-Length"])
    def seekable(s): return True
    def readable(s): return True
    def tell(s): return s.pos
    def seek(s, off, whence=0):
        s.pos = [off, s.pos + off, s.size + off][whence]; return s.pos
    def readinto(s, b):
        n = min(len(b), s.size - s.pos)
        if n <= 0: return 0
        r = urllib.request.urlopen(urllib.request.Request(url, headers={"Cookie": cookie, "Range": "bytes=%d-%d" % (s.pos, s.pos + n - 1)}), context=ctx)
        assert r.status == 206, r.status
        data = r.read(); b[:len(data)] = data; s.pos += len(data); return len(data)
z = zipfile.ZipFile(io.BufferedReader(Ranged(), 1 << 20))
names = {i.filename: i.file_size for i in z.infolist()}
print(sorted(names.items()))
assert names == {"big/": 0, "big/edit.mov": 512 << 20, "big/notes.txt": 12, "big/plates/": 0, "big/plates/plate.exr": (4 << 30) + (512 << 20)}, names
assert z.read("big/notes.txt") == b"grade notes\n"
# The big member's CRC, as zipfile checks it at the end of a read.
with z.open("big/plates/plate.exr") as f:
    while f.read(64 << 20): pass
print("ok")
"#;
    let py = Command::new("python3")
        .arg("-c")
        .arg(check)
        .arg(format!("{}{delivery}/all.zip", app.url))
        .arg(format!("__Host-ferry={cookie}"))
        .output()
        .unwrap();
    assert!(
        py.status.success() && String::from_utf8_lossy(&py.stdout).contains("ok"),
        "{}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
}

/// A tus request from the send page's script: same-origin, the session's
/// CSRF token in its header.
fn tus(
    b: &mut Browser,
    method: &str,
    path: &str,
    csrf: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> crate::webadmin::Page {
    let mut req = b
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", b.base),
        )
        .header("sec-fetch-site", "same-origin")
        .header("x-csrf-token", csrf)
        .header("tus-resumable", "1.0.0");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    b.send(req.body(body))
}

fn sha256(bytes: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    format!(
        "sha256 {}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
    )
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The send page's protocol, spoken by hand: a delivery made as `ferry
/// send` makes one, then each file up with tus: pieces with their SHA-256,
/// one that does not match refused and not kept, an offset that survives a
/// restart of ferryd, a piece at the wrong offset refused, termination;
/// the files land byte-identical with no part left, the recipients' jobs
/// appear and one of them downloads in the browser. Forged requests
/// create nothing, and nobody else may touch the uploads.
#[test]
fn a_browser_upload_resumes_across_a_restart_and_becomes_a_delivery() {
    let mut app = Appliance::start();
    app.media_user("ann@example.com");
    app.user("colleague@example.com", "employee");
    app.user("dir@client.example", "collaborator");
    app.user("ed@client.example", "collaborator");
    let dir = tempfile::tempdir().unwrap();
    let movie = dir.path().join("cut.mp4");
    write_random(&movie, 20 << 20, 9);
    let movie_bytes = std::fs::read(&movie).unwrap();
    let frames: Vec<Vec<u8>> = (0..3u8)
        .map(|i| vec![i; 100_000 + usize::from(i)])
        .collect();

    let mut ann = Browser::new(&app);
    ann.login("ann@example.com", "harbour lights at dawn");
    let page = ann.get("/send");
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for part in [
        "/static/tus.min.js",
        "data-high=\"mov mp4\"",
        "data-priorities=\"High=999 Normal=500 Low=1\"",
        "share=media/",
    ] {
        assert!(page.body.contains(part), "{part} not in the page");
    }
    let csrf = ann.csrf("/send");
    let mut files = vec![
        serde_json::json!({"path": "cut.mp4", "size": movie_bytes.len(), "mtime_ns": 1_700_000_000_000_000_000i64, "priority": 999}),
    ];
    for (i, f) in frames.iter().enumerate() {
        files.push(serde_json::json!({"path": format!("seq/f.{:04}.exr", i + 1), "size": f.len(), "mtime_ns": 1_700_000_000_000_000_000i64, "priority": 500}));
    }
    files.push(
        serde_json::json!({"path": "notes/empty.txt", "size": 0, "mtime_ns": 0, "priority": 500}),
    );
    let request = serde_json::json!({
        "name": "review-0600",
        "recipients": ["dir@client.example", "ed@client.example"],
        "dest": "share=media/review-0600",
        "files": files,
    });
    let make = |b: &mut Browser, site: &str, token: &str| {
        let req = b
            .http
            .post(format!("{}/send/deliveries", b.base))
            .header("sec-fetch-site", site)
            .header("x-csrf-token", token)
            .json(&request);
        b.send(req)
    };
    // Forged: from another site, or without the token. Nothing is made.
    assert_eq!(
        make(&mut ann, "cross-site", &csrf).status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        make(&mut ann, "same-origin", "wrong").status,
        StatusCode::FORBIDDEN
    );
    assert!(!app.share.join("review-0600").exists());
    let made = make(&mut ann, "same-origin", &csrf);
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let made: serde_json::Value = serde_json::from_str(&made.body).unwrap();
    let jobs = made["jobs"].as_array().unwrap();
    let upload = jobs.iter().find(|j| j["kind"] == "upload").unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(jobs.iter().filter(|j| j["kind"] == "download").count(), 2);

    let options = tus(&mut ann, "OPTIONS", "/api/v1/uploads", &csrf, &[], vec![]);
    assert_eq!(options.headers["tus-version"], "1.0.0");
    assert!(
        options.headers["tus-extension"]
            .to_str()
            .unwrap()
            .contains("checksum")
    );
    let create = |b: &mut Browser, path: &str, len: usize| {
        tus(
            b,
            "POST",
            "/api/v1/uploads",
            &csrf,
            &[
                ("upload-length", len.to_string()),
                (
                    "upload-metadata",
                    format!("job {},path {}", b64(&upload.to_string()), b64(path)),
                ),
            ],
            vec![],
        )
    };
    let created = create(&mut ann, "cut.mp4", movie_bytes.len());
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let url = created.headers["location"].to_str().unwrap().to_owned();
    let offset = |b: &mut Browser| -> u64 {
        let h = tus(b, "HEAD", &url, &csrf, &[], vec![]);
        assert_eq!(h.status, StatusCode::OK, "{}", h.body);
        h.headers["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(offset(&mut ann), 0);
    let patch = |b: &mut Browser, at: usize, bytes: &[u8], sum: String| {
        tus(
            b,
            "PATCH",
            &url,
            &csrf,
            &[
                ("content-type", "application/offset+octet-stream".into()),
                ("upload-offset", at.to_string()),
                ("upload-checksum", sum),
            ],
            bytes.to_vec(),
        )
    };
    let first = &movie_bytes[..8 << 20];
    let p = patch(&mut ann, 0, first, sha256(first));
    assert_eq!(p.status, StatusCode::NO_CONTENT, "{}", p.body);
    assert_eq!(p.headers["upload-offset"], (8 << 20).to_string().as_str());
    // A piece that does not match its checksum is refused and not kept.
    let second = &movie_bytes[8 << 20..16 << 20];
    let p = patch(&mut ann, 8 << 20, second, sha256(b"something else"));
    assert_eq!(p.status.as_u16(), 460, "{}", p.body);
    assert_eq!(offset(&mut ann), 8 << 20);
    // Nobody else may see or touch it.
    let mut colleague = Browser::new(&app);
    colleague.login("colleague@example.com", "harbour lights at dawn");
    let their_csrf = colleague.csrf("/send");
    let h = tus(&mut colleague, "HEAD", &url, &their_csrf, &[], vec![]);
    assert_eq!(h.status, StatusCode::NOT_FOUND);
    // A refusal before any handler (no CSRF header) still speaks tus.
    let no_csrf = tus(&mut colleague, "HEAD", &url, "", &[], vec![]);
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    assert_eq!(no_csrf.headers["tus-resumable"], "1.0.0");

    // ferryd restarts mid-upload: the offset holds, the rest follows (on
    // a new connection, as a browser retries; the session holds).
    app.restart();
    let mut ann = Browser::new(&app).with_cookie(ann.cookie());
    assert_eq!(offset(&mut ann), 8 << 20);
    let p = patch(&mut ann, 0, first, sha256(first));
    assert_eq!(
        p.status,
        StatusCode::CONFLICT,
        "a piece at the wrong offset: {}",
        p.body
    );
    let p = patch(
        &mut ann,
        8 << 20,
        &movie_bytes[8 << 20..],
        sha256(&movie_bytes[8 << 20..]),
    );
    assert_eq!(p.status, StatusCode::NO_CONTENT, "{}", p.body);
    let landed = app.share.join("review-0600/cut.mp4");
    assert_eq!(std::fs::read(&landed).unwrap(), movie_bytes);
    assert!(!app.share.join("review-0600/cut.mp4.ferry-part").exists());

    // Termination: a started upload given up leaves no part behind.
    let created = create(&mut ann, "seq/f.0001.exr", frames[0].len());
    let frame_url = created.headers["location"].to_str().unwrap().to_owned();
    let half = &frames[0][..50_000];
    let p = tus(
        &mut ann,
        "PATCH",
        &frame_url,
        &csrf,
        &[
            ("content-type", "application/offset+octet-stream".into()),
            ("upload-offset", "0".into()),
        ],
        half.to_vec(),
    );
    assert_eq!(p.status, StatusCode::NO_CONTENT, "{}", p.body);
    assert!(
        app.share
            .join("review-0600/seq/f.0001.exr.ferry-part")
            .exists()
    );
    let d = tus(&mut ann, "DELETE", &frame_url, &csrf, &[], vec![]);
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.body);
    assert!(
        !app.share
            .join("review-0600/seq/f.0001.exr.ferry-part")
            .exists()
    );

    // The frames, whole, and the delivery is on the appliance.
    for (i, f) in frames.iter().enumerate() {
        let path = format!("seq/f.{:04}.exr", i + 1);
        let created = create(&mut ann, &path, f.len());
        let u = created.headers["location"].to_str().unwrap().to_owned();
        let p = tus(
            &mut ann,
            "PATCH",
            &u,
            &csrf,
            &[
                ("content-type", "application/offset+octet-stream".into()),
                ("upload-offset", "0".into()),
                ("upload-checksum", sha256(f)),
            ],
            f.clone(),
        );
        assert_eq!(p.status, StatusCode::NO_CONTENT, "{path}: {}", p.body);
        assert_eq!(
            std::fs::read(app.share.join("review-0600").join(&path)).unwrap(),
            *f
        );
    }

    // An empty file: a tus client sends no bytes for it, only creates it.
    let created = create(&mut ann, "notes/empty.txt", 0);
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(
        std::fs::metadata(app.share.join("review-0600/notes/empty.txt"))
            .unwrap()
            .len(),
        0
    );

    // A recipient sees it and downloads the movie in the browser.
    let mut director = Browser::new(&app);
    director.login("dir@client.example", "harbour lights at dawn");
    let list = director.get("/deliveries");
    assert!(list.body.contains("review-0600"), "{}", list.body);
    let at = list.body.find("href=\"/deliveries/").unwrap() + 6;
    let delivery = list.body[at..at + list.body[at..].find('"').unwrap()].to_owned();
    let got = dir.path().join("got.mp4");
    let (ok, head) = curl(
        &app,
        director.cookie(),
        &format!("{delivery}/files/cut.mp4"),
        &[got.to_str().unwrap()],
    );
    assert!(ok && head.contains(" 200"), "{head}");
    assert_eq!(std::fs::read(&got).unwrap(), movie_bytes);
    let page = director.get(&delivery);
    assert!(
        page.body.contains("/all.zip"),
        "every file landed: {}",
        page.body
    );

    // A collaborator sends only with a write grant, and only uploads.
    let one = serde_json::json!({
        "recipients": ["ann@example.com"],
        "dest": "share=media/from-ed",
        "files": [{"path": "notes.txt", "size": 5, "mtime_ns": 0, "priority": 500}],
    });
    let mut ed = Browser::new(&app);
    ed.login("ed@client.example", "harbour lights at dawn");
    let ed_csrf = ed.csrf("/send");
    let post = |b: &mut Browser, token: &str| {
        let req = b
            .http
            .post(format!("{}/send/deliveries", b.base))
            .header("sec-fetch-site", "same-origin")
            .header("x-csrf-token", token)
            .json(&one);
        b.send(req)
    };
    assert_eq!(post(&mut ed, &ed_csrf).status, StatusCode::NOT_FOUND);
    app.admin(&["share", "grant", "media", "ed@client.example", "--write"]);
    let made = post(&mut ed, &ed_csrf);
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let page = ed.get("/send");
    assert!(page.body.contains("share=media/") && !page.body.contains("/send/share"));
}
