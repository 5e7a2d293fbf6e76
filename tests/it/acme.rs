//! A certificate browsers trust: the appliance gets one from a real ACME
//! CA (Debian's pebble, started here), proving its name with TLS-ALPN-01
//! on its own HTTPS port, and renews it while it runs.
//!
//! Pebble resolves the appliance's public name through a hosts file of its
//! own (a private mount namespace: `unshare --mount`), so nothing on the
//! machine changes. Its certificates live 45 seconds, so that a renewal
//! falls inside the test. Checked:
//! - Chromium, with pebble's root in its trust store and no
//!   `--ignore-certificate-errors`, refuses the self-signed appliance and
//!   opens the ACME-certified one without a warning;
//! - a renewal happens on its own, in the same process;
//! - a client that pinned the appliance before any of this keeps working
//!   through both certificates, because the pin is the key's.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use ferry_tests::{Appliance, blake3_file, wait_for, write_random};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject as _};

use crate::browser::{CHROMIUM, free_port, start_chromedriver_at_home};
use crate::rules::Rest;

/// The appliance's public name in this test.
const NAME: &str = "ferry.test";
/// How long pebble's certificates live.
const LIFETIME_SECS: u64 = 45;

/// A running pebble, removed on drop.
struct Pebble {
    child: Child,
    dir: tempfile::TempDir,
    directory: String,
    management: u16,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pebble's own HTTPS certificate, from a CA made here: the appliance
/// trusts that CA for the directory (`[tls] acme_roots`).
fn https_pki(dir: &Path) -> PathBuf {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "pebble's HTTPS CA (test)");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("https.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("https-key.pem"), key.serialize_pem()).unwrap();
    let ca_path = dir.join("https-ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    ca_path
}

impl Pebble {
    /// Pebble in `dir` (where [`https_pki`] wrote), checking TLS-ALPN-01
    /// on `tls_port` and resolving [`NAME`] to `ip`.
    fn start(dir: tempfile::TempDir, ip: IpAddr, tls_port: u16) -> Self {
        let (listen, management) = (free_port(), free_port());
        let path = |f: &str| dir.path().join(f).display().to_string();
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": path("https.pem"),
            "privateKey": path("https-key.pem"),
            "httpPort": free_port(),
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": LIFETIME_SECS,
        }});
        std::fs::write(path("pebble.json"), config.to_string()).unwrap();
        std::fs::write(path("hosts"), format!("127.0.0.1 localhost\n{ip} {NAME}\n")).unwrap();
        let log = std::fs::File::create(path("pebble.log")).unwrap();
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" /etc/hosts && exec pebble -config "$2""#)
            .args(["sh", &path("hosts"), &path("pebble.json")])
            // Validate at once; never refuse a nonce on purpose; check the
            // name again for every order, so a renewal proves it again.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble (tests/run installs it)");
        let pebble = Pebble {
            child,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management,
            dir,
        };
        wait_for("pebble to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", listen)).is_ok()
        });
        pebble
    }

    /// The root pebble issues under (made afresh at each start).
    fn root(&self) -> CertificateDer<'static> {
        let out = Command::new("curl")
            .args(["-sSf", "--cacert"])
            .arg(self.dir.path().join("https-ca.pem"))
            .arg(format!("https://127.0.0.1:{}/roots/0", self.management))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(self.dir.path().join("root.pem"), &out.stdout).unwrap();
        CertificateDer::from_pem_slice(&out.stdout).expect("pebble's root")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

/// The chain `addr` serves for [`NAME`], if it verifies against `root` as
/// a browser would (chain, name, dates); else why not.
fn served(addr: SocketAddr, root: &CertificateDer<'static>) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut tls =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from(NAME).unwrap())
            .unwrap();
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let leaf = tls.peer_certificates().unwrap()[0].to_vec();
    // A request, to see HTTP behind it.
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    write!(
        stream,
        "GET /login HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    assert_eq!(
        &head, b"HTTP/1.1 200",
        "the login page over the CA's certificate"
    );
    Ok(leaf)
}

/// Chromium, trusting pebble's root (in `home`'s NSS database) and
/// nothing else, with [`NAME`] mapped to the appliance: can it open the
/// login page without a certificate warning?
async fn chromium_opens(driver: &str, ip: IpAddr, port: u16) -> Result<String, String> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                format!("--host-resolver-rules=MAP {NAME} {ip}"),
            ],
        }),
    );
    caps.insert("acceptInsecureCerts".into(), false.into());
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a Chromium session");
    let opened = async {
        c.goto(&format!("https://{NAME}:{port}/login"))
            .await
            .map_err(|e| e.to_string())?;
        c.find(Locator::Css("form input[name=password]"))
            .await
            .map_err(|e| e.to_string())?;
        c.title().await.map_err(|e| e.to_string())
    }
    .await;
    c.close().await.unwrap();
    opened
}

/// An NSS database in `home` that trusts `root` for TLS servers.
fn trust_in_chromium(home: &Path, root: &Path) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db = format!("sql:{}", db.display());
    for args in [
        vec!["-N", "-d", &db, "--empty-password"],
        vec![
            "-A",
            "-d",
            &db,
            "-t",
            "C,,",
            "-n",
            "pebble",
            "-i",
            root.to_str().unwrap(),
        ],
    ] {
        let out = Command::new("certutil")
            .args(&args)
            .output()
            .expect("certutil");
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
#[ignore = "root: pebble resolves the name in a mount namespace of its own"]
fn an_acme_certificate_browsers_trust_renews_without_a_restart_and_pins_hold() {
    let pki = tempfile::tempdir().unwrap();
    let ca = https_pki(pki.path());
    let config = pki.path().join("ferryd.toml");
    std::fs::write(
        &config,
        format!("[tls]\nacme_roots = {:?}\n", ca.display().to_string()),
    )
    .unwrap();
    let mut app = Appliance::start_with(&["--config", config.to_str().unwrap()]);
    let addr = SocketAddr::new(app.ip, app.port());
    let pid = app.pid();

    // A client pins the appliance on its self-signed certificate.
    let ed = app.client(&app.media_user("ed@example.com"));
    let first = tempfile::tempdir().unwrap();
    write_random(&first.path().join("a.mov"), 3 << 20, 1);
    let put = |dir: &Path, name: &str| {
        let file = dir.join(name);
        let run = ed.run(&["put", file.to_str().unwrap(), "share=media/in/", "--json"]);
        assert!(run.ok, "a pinned client after the change: {}", run.stderr);
    };
    put(first.path(), "a.mov");

    let pebble = Pebble::start(pki, app.ip, app.port());
    let root = pebble.root();
    let home = tempfile::tempdir().unwrap();
    trust_in_chromium(home.path(), &pebble.dir.path().join("root.pem"));
    let (_driver, driver) = start_chromedriver_at_home(Some(home.path()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Before ACME: the self-signed certificate fails both checks.
    let refused = served(addr, &root).expect_err("a self-signed certificate verified");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    let warned = rt.block_on(chromium_opens(&driver, app.ip, app.port()));
    assert!(
        warned.is_err(),
        "Chromium opened a self-signed appliance: {warned:?}"
    );

    // Turned on through the settings (the API; the web admin's form
    // saves the same text).
    let admin = app.user("boss@example.com", "admin");
    let rest = Rest::new(&app);
    let (status, mut settings) = rest.call("GET", "/api/v1/settings", Some(&admin), None);
    assert_eq!(status, 200, "{settings}");
    settings["acme_name"] = "10.1.2.3".into();
    let (status, refused) = rest.call("PUT", "/api/v1/settings", Some(&admin), Some(&settings));
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("ACME name"), "{refused}");
    settings["acme_name"] = NAME.into();
    settings["acme_directory"] = pebble.directory.clone().into();
    settings["acme_contact"] = "ops@example.com".into();
    let (status, saved) = rest.call("PUT", "/api/v1/settings", Some(&admin), Some(&settings));
    assert_eq!(status, 200, "{saved}");

    let mut issued = None;
    wait_for(
        "the CA's certificate to be served",
        Duration::from_secs(60),
        || {
            issued = served(addr, &root).ok();
            issued.is_some()
        },
    );
    let issued =
        issued.unwrap_or_else(|| panic!("pebble:\n{}\nferryd:\n{}", pebble.log(), app.log()));
    let title = rt
        .block_on(chromium_opens(&driver, app.ip, app.port()))
        .expect("Chromium opens the appliance without a warning");
    assert!(title.contains("Ferry"), "{title}");

    // The pin held: the same client, no new login.
    let second = tempfile::tempdir().unwrap();
    write_random(&second.path().join("b.mov"), 3 << 20, 2);
    put(second.path(), "b.mov");

    // Renewed on its own, two thirds into the certificate's life, by the
    // same process.
    let mut renewed = None;
    wait_for("a renewal", Duration::from_secs(LIFETIME_SECS + 30), || {
        renewed = served(addr, &root).ok().filter(|leaf| *leaf != issued);
        renewed.is_some()
    });
    assert_eq!(app.pid(), pid, "ferryd restarted");
    let third = tempfile::tempdir().unwrap();
    write_random(&third.path().join("c.mov"), 3 << 20, 3);
    put(third.path(), "c.mov");
    for (dir, name) in [(&first, "a.mov"), (&second, "b.mov"), (&third, "c.mov")] {
        assert_eq!(
            blake3_file(&app.share.join("in").join(name)),
            blake3_file(&dir.path().join(name))
        );
    }
    let audit = app.admin(&["audit", "--action", "certificate.issued"]);
    assert!(
        audit.matches(NAME).count() >= 2,
        "two issuances audited:\n{audit}"
    );
    let log = app.log();
    assert!(
        log.contains("serving a certificate for ferry.test"),
        "{log}"
    );
    // The order is one node's task (alone here, it takes it).
    assert!(log.contains("now runs the certificate"), "{log}");

    // The renewed chain was kept (in the database, where every node
    // reads it): after a restart it is served before any new order.
    app.restart();
    assert_eq!(
        served(addr, &root).ok(),
        renewed,
        "the renewed certificate is served after a restart"
    );
}
