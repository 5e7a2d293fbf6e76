//! The appliance's certificate: made on first start, kept in the data
//! folder (key readable by the daemon only), and pinned by clients through
//! the SHA-256 of its key. A certificate from an ACME CA replaces the
//! self-signed one for the same key.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ferry_engine::tls::Identity;

fn paths(data: &Path) -> (PathBuf, PathBuf) {
    let dir = data.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Loads the certificate, or makes a self-signed one for `names`.
pub fn load_or_create(data: &Path, names: &[String]) -> Result<Identity> {
    let (cert_path, key_path) = paths(data);
    if cert_path.exists() && key_path.exists() {
        let cert =
            fs::read(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
        let key = fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
        return Identity::from_pem(&cert, &key)
            .with_context(|| format!("loading {}", cert_path.display()));
    }
    let (identity, cert_pem, key_pem) = Identity::self_signed(names)?;
    install(data, cert_pem.as_bytes(), key_pem.as_bytes())?;
    log::info!(
        "created a self-signed certificate, SHA-256 {}",
        identity.fingerprint()
    );
    Ok(identity)
}

/// Where the ACME account's key is kept.
pub fn acme_account(data: &Path) -> PathBuf {
    data.join("tls").join("acme-account.json")
}

/// Keeps a chain issued for the appliance's key (already checked by
/// [`Identity::renew`]) for the next start, unless the key on disk is no
/// longer that key (an admin installed another certificate and key, which
/// take over at the next start): the pair on disk must stay a pair.
pub fn keep_chain(data: &Path, identity: &Identity, chain_pem: &[u8]) -> Result<()> {
    let (cert_path, key_path) = paths(data);
    let on_disk = fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    anyhow::ensure!(
        identity.is_key(&on_disk),
        "{} holds another key now (a certificate installed in Settings, used from the next start); \
         the CA's certificate is served until then but not kept",
        key_path.display()
    );
    write_atomic(&cert_path, chain_pem, 0o644)
}

/// Installs a certificate and key (checked to belong together), replacing
/// the current ones. The key file is written 0600 and renamed into place.
pub fn install(data: &Path, cert_pem: &[u8], key_pem: &[u8]) -> Result<Identity> {
    let identity = Identity::from_pem(cert_pem, key_pem)?;
    // Building a server config checks that the key matches the certificate.
    identity
        .server_config(&[b"http/1.1"], false)
        .context("the key does not match the certificate")?;
    let (cert_path, key_path) = paths(data);
    let dir = cert_path.parent().unwrap_or(data);
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(&key_path, key_pem, 0o600)?;
    write_atomic(&cert_path, cert_pem, 0o644)?;
    Ok(identity)
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("installing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewed_chain_is_kept_only_beside_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create(dir.path(), &["localhost".into()]).unwrap();
        let cert = fs::read(dir.path().join("tls/cert.pem")).unwrap();
        keep_chain(dir.path(), &id, &cert).unwrap();
        // An admin installs another certificate and key for the next start.
        let (_, other_cert, other_key) = Identity::self_signed(&["other".into()]).unwrap();
        install(dir.path(), other_cert.as_bytes(), other_key.as_bytes()).unwrap();
        let e = keep_chain(dir.path(), &id, &cert).unwrap_err();
        assert!(e.to_string().contains("another key"), "{e}");
        assert_eq!(
            fs::read_to_string(dir.path().join("tls/cert.pem")).unwrap(),
            other_cert,
            "the installed pair stays a pair"
        );
    }

    #[test]
    fn created_once_then_reused_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), &["localhost".into()]).unwrap();
        let b = load_or_create(dir.path(), &["other".into()]).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("tls/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
