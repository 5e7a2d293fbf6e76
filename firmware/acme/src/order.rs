//! One certificate order, from the ACME account to the issued chain.
//!
//! Control of the name is proven with TLS-ALPN-01: the CA connects to
//! the name on port 443 (or the port its operator configured), offers
//! the `acme-tls/1` protocol, and expects a certificate carrying the
//! order's key authorization. The appliance answers that handshake from
//! its running HTTPS server ([`ferry_engine::tls::Served`]), so nothing
//! else needs to listen and no port is opened for it.
//!
//! The account's key is kept in a file beside the certificate, so that a
//! restart does not register a new account with the CA.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_engine::tls::Served;
use instant_acme::{
    AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder,
    OrderStatus, RetryPolicy,
};
use rustls_pki_types::PrivateKeyDer;
use serde::{Deserialize, Serialize};

/// Why no certificate was issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The CA answered with an error, or could not be reached.
    #[error("the ACME CA at {directory}: {source}")]
    Ca {
        directory: String,
        #[source]
        source: instant_acme::Error,
    },
    /// The CA could not confirm that the appliance answers for the name.
    #[error(
        "the ACME CA could not check that this appliance answers for {name}: {detail}. \
         The name must resolve to the appliance, and port 443 (or the CA's TLS-ALPN port) \
         must reach its HTTPS port"
    )]
    Unproven { name: String, detail: String },
    /// The CA offered no challenge this appliance can meet.
    #[error("the ACME CA offers no tls-alpn-01 challenge for {0}")]
    NoChallenge(String),
    /// The appliance's key cannot sign a certificate request.
    #[error("the appliance's key cannot sign a certificate request: {0}")]
    Key(String),
    #[error("the certificate does not read: {0}")]
    Certificate(String),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to order.
pub struct Request<'a> {
    /// The public DNS name browsers use.
    pub name: &'a str,
    /// The CA's directory URL.
    pub directory: &'a str,
    /// An email address the CA may write to about the certificate.
    pub contact: Option<&'a str>,
    /// A CA certificate to trust for the directory's own HTTPS, for a
    /// private ACME CA (step-ca, a test CA); `None`: the system's roots.
    pub roots: Option<&'a Path>,
    /// The appliance's key: the certificate is issued for it.
    pub key: &'a PrivateKeyDer<'static>,
}

/// Where the ACME account's key is kept.
#[derive(Debug, Clone)]
pub struct Account {
    pub file: PathBuf,
}

/// The account file: the directory it belongs to, and its credentials.
#[derive(Serialize, Deserialize)]
struct Kept {
    directory: String,
    credentials: AccountCredentials,
}

/// How long the CA may take to check the name and to issue.
const PATIENCE: Duration = Duration::from_secs(120);

/// Orders a certificate for `req.name` and returns its chain as PEM,
/// answering the CA's check from `served` meanwhile.
pub async fn obtain(
    req: &Request<'_>,
    account: &Account,
    served: &Served,
) -> Result<String, AcmeError> {
    let ca = |source| AcmeError::Ca {
        directory: req.directory.to_owned(),
        source,
    };
    let acme = login(req, account).await?;
    let identifiers = [Identifier::Dns(req.name.to_owned())];
    let mut order = acme
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(ca)?;
    // Withdrawn whatever happens below, so no challenge certificate
    // outlives its order.
    let _answering = Answering {
        served,
        name: req.name,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(ca)?;
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(AcmeError::Unproven {
                    name: req.name.to_owned(),
                    detail: format!("the authorization is {other:?}"),
                });
            }
        }
        let mut challenge = authz
            .challenge(ChallengeType::TlsAlpn01)
            .ok_or_else(|| AcmeError::NoChallenge(req.name.to_owned()))?;
        let proof = challenge_certificate(req.name, challenge.key_authorization().digest())?;
        served.answer(req.name, proof);
        challenge.set_ready().await.map_err(ca)?;
    }
    let patience = RetryPolicy::new()
        .initial_delay(Duration::from_millis(500))
        .timeout(PATIENCE);
    match order.poll_ready(&patience).await {
        Ok(OrderStatus::Ready) => {}
        Ok(status) => {
            return Err(AcmeError::Unproven {
                name: req.name.to_owned(),
                detail: format!("the order is {status:?}"),
            });
        }
        Err(instant_acme::Error::Api(problem)) => {
            return Err(AcmeError::Unproven {
                name: req.name.to_owned(),
                detail: problem.to_string(),
            });
        }
        Err(e) => return Err(ca(e)),
    }
    let csr = request_for(req.name, req.key)?;
    order.finalize_csr(&csr).await.map_err(ca)?;
    order.poll_certificate(&patience).await.map_err(ca)
}

/// Restores the account kept for this directory, or registers one.
async fn login(req: &Request<'_>, account: &Account) -> Result<instant_acme::Account, AcmeError> {
    let ca = |source| AcmeError::Ca {
        directory: req.directory.to_owned(),
        source,
    };
    let builder = || match req.roots {
        Some(roots) => instant_acme::Account::builder_with_root(roots),
        None => instant_acme::Account::builder(),
    };
    let kept = fs::read(&account.file)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Kept>(&bytes).ok())
        .filter(|k| k.directory == req.directory);
    if let Some(kept) = kept {
        return builder()
            .map_err(ca)?
            .from_credentials(kept.credentials)
            .await
            .map_err(ca);
    }
    let contact = req.contact.map(|c| format!("mailto:{c}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (acme, credentials) = builder()
        .map_err(ca)?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            req.directory.to_owned(),
            None,
        )
        .await
        .map_err(ca)?;
    keep(
        &account.file,
        &Kept {
            directory: req.directory.to_owned(),
            credentials,
        },
    )?;
    log::info!("registered an ACME account with {}", req.directory);
    Ok(acme)
}

/// Writes the account file, readable by the daemon only.
fn keep(path: &Path, kept: &Kept) -> Result<(), AcmeError> {
    let file = |source| AcmeError::File {
        path: path.to_owned(),
        source,
    };
    let json = serde_json::to_vec(kept).map_err(|e| file(e.into()))?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(file)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(file)?;
    f.write_all(&json).map_err(file)?;
    f.sync_all().map_err(file)?;
    fs::rename(&tmp, path).map_err(file)
}

/// The self-signed certificate that answers a TLS-ALPN-01 check: the
/// name, and the key authorization's digest in the acmeIdentifier
/// extension (RFC 8737 §3).
fn challenge_certificate(
    name: &str,
    digest: impl AsRef<[u8]>,
) -> Result<rustls::sign::CertifiedKey, AcmeError> {
    let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Key(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])
        .map_err(|e| AcmeError::Certificate(e.to_string()))?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest.as_ref()));
    let cert = params
        .self_signed(&key)
        .map_err(|e| AcmeError::Certificate(e.to_string()))?;
    let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| AcmeError::Key(e.into()))?;
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| AcmeError::Key(e.to_string()))?;
    // `CertifiedKey::new`, not `from_der`: the latter parses the
    // certificate, and refuses the critical acmeIdentifier extension that
    // only the CA understands.
    Ok(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    ))
}

/// A certificate signing request for `name`, signed with the appliance's
/// own key.
fn request_for(name: &str, key: &PrivateKeyDer<'static>) -> Result<Vec<u8>, AcmeError> {
    let key = rcgen::KeyPair::try_from(key).map_err(|e| AcmeError::Key(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])
        .map_err(|e| AcmeError::Certificate(e.to_string()))?;
    // No subject: rcgen's default common name would be one more name for
    // the CA to check, and Let's Encrypt refuses a CSR naming what the
    // order does not.
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Key(e.to_string()))?;
    Ok(csr.der().to_vec())
}

/// Withdraws the challenge certificate when the order ends, however it
/// ends.
struct Answering<'a> {
    served: &'a Served,
    name: &'a str,
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.served.withdraw(self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[test]
    fn the_challenge_certificate_carries_the_digest_in_a_critical_extension() {
        let digest = [7u8; 32];
        let proof = challenge_certificate("ferry.example.com", digest).unwrap();
        let (_, cert) = X509Certificate::from_der(proof.cert[0].as_ref()).unwrap();
        // id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // An OCTET STRING of the 32-byte SHA-256 digest.
        assert_eq!(ext.value, [&[0x04, 32][..], &digest[..]].concat());
    }

    #[test]
    fn the_request_is_for_the_appliances_own_key() {
        let key = rcgen::KeyPair::generate().unwrap();
        let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let csr = request_for("ferry.example.com", &der).unwrap();
        let (_, parsed) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&csr).unwrap();
        assert_eq!(
            parsed.certification_request_info.subject_pki.raw,
            rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
        );
        // The name is in the SAN only: an empty subject.
        assert_eq!(
            parsed
                .certification_request_info
                .subject
                .iter_attributes()
                .count(),
            0
        );
    }
}
