//! The appliance's certificate at start: the one kept in the database
//! ([`ferryd_core::certificates`]), or, on a new database, the pair an
//! older appliance kept in `tls/` in its data folder (moved into the
//! database), or a new self-signed one. Clients pin it through the
//! SHA-256 of its key.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ferry_engine::tls::Identity;
use ferry_store::Certificate;
use ferryd_core::certificates::Certificates;

fn old_paths(data: &Path) -> (PathBuf, PathBuf) {
    let dir = data.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// The certificate every node serves; the first to ask on a new database
/// offers one (for `names`, when self-signed).
pub async fn load_or_create(
    certificates: &Certificates,
    data: &Path,
    names: &[String],
) -> Result<Identity> {
    if let Some(kept) = certificates
        .kept()
        .await
        .context("reading the certificate from the database")?
    {
        return Ok(kept);
    }
    let (cert_path, key_path) = old_paths(data);
    let from_files = cert_path.exists() && key_path.exists();
    let offered = if from_files {
        let read =
            |p: &Path| fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
        let pair = Certificate {
            cert_pem: read(&cert_path)?,
            key_pem: read(&key_path)?,
        };
        Certificates::check(&pair).with_context(|| format!("loading {}", cert_path.display()))?;
        pair
    } else {
        let (_, cert_pem, key_pem) = Identity::self_signed(names)?;
        Certificate { cert_pem, key_pem }
    };
    let (identity, ours) = certificates
        .offer(&offered)
        .await
        .context("keeping the certificate in the database")?;
    let fingerprint = identity.fingerprint();
    if !ours {
        log::info!("serving the certificate another node made, SHA-256 {fingerprint}");
    } else if from_files {
        // The database holds the key now; a second copy on disk would
        // only be a second thing to guard, and to drift.
        for path in [&key_path, &cert_path] {
            fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        }
        log::info!(
            "moved the certificate (SHA-256 {fingerprint}) from {} into the database",
            data.join("tls").display()
        );
    } else {
        log::info!("created a self-signed certificate, SHA-256 {fingerprint}");
    }
    Ok(identity)
}

/// Where the ACME account's key is kept (per node: each node that orders
/// has an account of its own).
pub fn acme_account(data: &Path) -> PathBuf {
    data.join("tls").join("acme-account.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_store::SqlStore;
    use std::sync::Arc;

    fn certificates() -> Certificates {
        Certificates::new(Arc::new(SqlStore::open_in_memory().unwrap()))
    }

    #[tokio::test]
    async fn made_once_and_not_kept_on_disk() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let c = certificates();
        let first = load_or_create(&c, a.path(), &["localhost".into()])
            .await
            .unwrap();
        // Another node, with its own data folder, on the same database.
        let second = load_or_create(&c, b.path(), &["other".into()])
            .await
            .unwrap();
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert!(!a.path().join("tls/key.pem").exists(), "no key on disk");
    }

    #[tokio::test]
    async fn an_older_appliances_pair_moves_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let (old, cert_pem, key_pem) = Identity::self_signed(&["old".into()]).unwrap();
        fs::create_dir_all(dir.path().join("tls")).unwrap();
        fs::write(dir.path().join("tls/cert.pem"), &cert_pem).unwrap();
        fs::write(dir.path().join("tls/key.pem"), &key_pem).unwrap();
        let c = certificates();
        let id = load_or_create(&c, dir.path(), &["new".into()])
            .await
            .unwrap();
        assert_eq!(id.fingerprint(), old.fingerprint(), "the pin holds");
        assert!(!dir.path().join("tls/key.pem").exists());
        let kept = c.kept().await.unwrap().unwrap();
        assert_eq!(kept.fingerprint(), old.fingerprint());
    }
}
