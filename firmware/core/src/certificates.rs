//! The appliance's certificate, kept with its key in the database so that
//! every node serves the same one and one pin fits them all. The first
//! node (or console) to need one offers it, and every node gets whichever
//! offer won. A chain renewed on one node (ACME) is kept for the same key
//! only, and the other nodes pick it up ([`Certificates::follow`]); a pair
//! an admin installs is served from each node's next start.
//!
//! Whoever reads the database can act as the appliance. The database
//! already holds everything that grants access, so it is guarded as the
//! key is.

use std::sync::Arc;

use ferry_engine::tls::{Identity, IdentityError};
use ferry_store::{Certificate, Store, StoreError};

/// Why a certificate was not kept or not served.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("the certificate kept in the database is not usable: {0}")]
    Unusable(#[from] IdentityError),
    /// A pair offered or installed that cannot be served.
    #[error("{0}")]
    Refused(String),
    /// A chain renewed for a key that is no longer the one kept.
    #[error(
        "the database holds another key now (a certificate installed in Settings, used from \
         the next start); the renewed certificate is served until then but not kept"
    )]
    OtherKey,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What following the kept certificate came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Followed {
    /// The kept certificate is the one served.
    Same,
    /// Another node kept a renewed chain for the same key; it is served
    /// from the next handshake.
    Renewed,
    /// Another key is kept (an admin installed it), served from the next
    /// start; its fingerprint.
    Waiting(String),
}

/// The certificate kept in the database.
#[derive(Clone)]
pub struct Certificates {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates").finish_non_exhaustive()
    }
}

impl Certificates {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Certificates { store }
    }

    /// The identity kept, if any.
    pub async fn kept(&self) -> Result<Option<Identity>, CertificateError> {
        match self.store.certificate().await? {
            Some(kept) => Ok(Some(identity(&kept)?)),
            None => Ok(None),
        }
    }

    /// Keeps `offered` unless a certificate is kept already; returns the
    /// identity kept and whether it is `offered`.
    pub async fn offer(&self, offered: &Certificate) -> Result<(Identity, bool), CertificateError> {
        let kept = self.store.offer_certificate(offered).await?;
        Ok((identity(&kept)?, kept == *offered))
    }

    /// Checks that a certificate and key belong together and can be
    /// served; the identity they make.
    pub fn check(pair: &Certificate) -> Result<Identity, CertificateError> {
        let identity = identity(pair).map_err(|e| CertificateError::Refused(e.to_string()))?;
        // Building a server config checks that the key matches the
        // certificate.
        identity.server_config(&[b"http/1.1"], false).map_err(|e| {
            CertificateError::Refused(format!("the key does not match the certificate: {e}"))
        })?;
        Ok(identity)
    }

    /// Checks a pair and keeps it for every node's next start; its
    /// fingerprint.
    pub async fn install(&self, pair: &Certificate) -> Result<String, CertificateError> {
        let identity = Self::check(pair)?;
        self.store.replace_certificate(pair).await?;
        Ok(identity.fingerprint().to_string())
    }

    /// Keeps a chain renewed for `serving`'s key (already checked by
    /// [`Identity::renew`]), unless another key is kept now: the pair
    /// kept stays a pair.
    pub async fn keep_chain(
        &self,
        serving: &Identity,
        chain_pem: &str,
    ) -> Result<(), CertificateError> {
        let kept = self
            .store
            .certificate()
            .await?
            .ok_or(CertificateError::OtherKey)?;
        if !serving.is_key(kept.key_pem.as_bytes())
            || !self
                .store
                .renew_certificate(&kept.key_pem, chain_pem)
                .await?
        {
            return Err(CertificateError::OtherKey);
        }
        Ok(())
    }

    /// Serves a chain another node renewed for `serving`'s key, and says
    /// when another key waits for the next start.
    pub async fn follow(&self, serving: &Identity) -> Result<Followed, CertificateError> {
        let Some(kept) = self.store.certificate().await? else {
            return Ok(Followed::Same);
        };
        let other = identity(&kept)?;
        if other.fingerprint() != serving.fingerprint() {
            return Ok(Followed::Waiting(other.fingerprint().to_string()));
        }
        if other.chain() == serving.chain() {
            return Ok(Followed::Same);
        }
        serving.renew(kept.cert_pem.as_bytes())?;
        Ok(Followed::Renewed)
    }
}

fn identity(kept: &Certificate) -> Result<Identity, IdentityError> {
    Identity::from_pem(kept.cert_pem.as_bytes(), kept.key_pem.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_store::SqlStore;

    fn certificates() -> Certificates {
        Certificates::new(Arc::new(SqlStore::open_in_memory().unwrap()))
    }

    fn new_pair(name: &str) -> (Identity, Certificate) {
        let (id, cert_pem, key_pem) = Identity::self_signed(&[name.to_owned()]).unwrap();
        (id, Certificate { cert_pem, key_pem })
    }

    /// A new self-signed chain for the key in `key_pem`.
    fn renewed_chain(key_pem: &str) -> String {
        let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
        let params = rcgen::CertificateParams::new(vec!["renewed.example".to_owned()]).unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[tokio::test]
    async fn a_key_from_another_certificate_is_refused_and_nothing_is_kept() {
        let c = certificates();
        let (_, a) = new_pair("a");
        let (_, b) = new_pair("b");
        let mixed = Certificate {
            cert_pem: a.cert_pem,
            key_pem: b.key_pem,
        };
        assert!(matches!(
            c.install(&mixed).await,
            Err(CertificateError::Refused(_))
        ));
        assert!(c.kept().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_first_offer_wins_and_every_node_serves_it() {
        let c = certificates();
        assert!(c.kept().await.unwrap().is_none());
        let (first, pair) = new_pair("a");
        let (a, ours) = c.offer(&pair).await.unwrap();
        assert!(ours);
        let (b, ours) = c.offer(&new_pair("b").1).await.unwrap();
        assert!(!ours, "a second node takes what is kept");
        assert_eq!(a.fingerprint(), first.fingerprint());
        assert_eq!(b.fingerprint(), first.fingerprint());
    }

    #[tokio::test]
    async fn a_renewed_chain_reaches_the_other_nodes_and_stays_beside_its_own_key() {
        let c = certificates();
        let (_, pair) = new_pair("a");
        let (a, _) = c.offer(&pair).await.unwrap();
        let (b, _) = c.offer(&pair).await.unwrap();
        assert_eq!(c.follow(&b).await.unwrap(), Followed::Same);

        // Node a renews; node b serves the new chain at its next look.
        let renewed = renewed_chain(&pair.key_pem);
        a.renew(renewed.as_bytes()).unwrap();
        c.keep_chain(&a, &renewed).await.unwrap();
        assert_eq!(c.follow(&b).await.unwrap(), Followed::Renewed);
        assert_eq!(a.chain(), b.chain());
        assert_eq!(c.follow(&b).await.unwrap(), Followed::Same);

        // An admin installs another pair: a chain for the old key is not
        // kept beside it, and every node says it waits for a restart.
        let (other, new) = new_pair("other");
        c.install(&new).await.unwrap();
        assert!(matches!(
            c.keep_chain(&a, &renewed).await,
            Err(CertificateError::OtherKey)
        ));
        assert_eq!(
            c.follow(&b).await.unwrap(),
            Followed::Waiting(other.fingerprint().to_string())
        );
        let kept = c.kept().await.unwrap().unwrap();
        assert_eq!(kept.fingerprint(), other.fingerprint());
    }
}
