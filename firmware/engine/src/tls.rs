//! Certificates and pinning.
//!
//! The appliance runs on a self-signed certificate made at first start,
//! or on one an ACME CA issued for the same key. Clients do not trust any
//! CA for it: they pin the SHA-256 of the certificate's public key (its
//! SubjectPublicKeyInfo), which an admin reads off the appliance (console,
//! web admin, `ferryd admin fingerprint`) and which the client shows on
//! first contact. The same pin protects the HTTPS control plane and QUIC.
//!
//! The pin is the key's rather than the certificate's so that a renewal,
//! which reissues the certificate for the same key, keeps every client
//! working. A pin taken before (the whole certificate's SHA-256) is still
//! accepted while that certificate is served.
//!
//! The certificate served can change while the appliance runs
//! ([`Served`]): a renewal swaps it for every new handshake, and an ACME
//! CA's TLS-ALPN-01 check (RFC 8737) is answered from the same place.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest as _, Sha256};

/// SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// SHA-256 of the whole certificate: the pin of earlier versions, and
    /// what browsers show.
    pub fn of(cert: &CertificateDer<'_>) -> Self {
        Fingerprint(Sha256::digest(cert.as_ref()).into())
    }

    /// SHA-256 of the certificate's SubjectPublicKeyInfo: the pin, which
    /// outlives renewals for the same key (as `openssl x509 -pubkey |
    /// openssl pkey -pubin -outform der | sha256sum` computes it). `None`
    /// for a certificate that does not parse.
    pub fn of_key(cert: &CertificateDer<'_>) -> Option<Self> {
        let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
        let spki = parsed.subject_public_key_info();
        Some(Fingerprint(Sha256::digest(spki.as_ref()).into()))
    }

    /// `AB:12:…`, as browsers show a certificate's SHA-256 fingerprint, for
    /// people comparing the two by eye.
    pub fn colon_pairs(&self) -> String {
        self.0
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Compares in constant time: the pin is not secret, but there is no
    /// reason to leak how much of it matched.
    pub fn matches(&self, other: &Fingerprint) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A fingerprint that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate fingerprint must be 64 hex digits (SHA-256), optionally separated by ':'")]
pub struct FingerprintError;

impl FromStr for Fingerprint {
    type Err = FingerprintError;
    /// Accepts `ab12…` and `AB:12:…`, as browsers and openssl print it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex: String = s.trim().chars().filter(|c| *c != ':').collect();
        if hex.len() != 64 {
            return Err(FingerprintError);
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| FingerprintError)?;
        }
        Ok(Fingerprint(out))
    }
}

/// The appliance's key, and the certificate served for it now.
pub struct Identity {
    key: PrivateKeyDer<'static>,
    served: Arc<Served>,
    pin: Fingerprint,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.fingerprint())
    }
}

/// Why an identity could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("no certificate in the PEM file")]
    NoCertificate,
    #[error("cannot read PEM: {0}")]
    Pem(String),
    #[error("TLS configuration refused the certificate: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the certificate does not parse as X.509")]
    Unparsable,
    #[error("the certificate is for another key than the appliance's")]
    OtherKey,
}

impl Identity {
    /// A new self-signed certificate for `names` (host names or IPs).
    /// Returns the identity with its PEM encodings (cert, key).
    pub fn self_signed(names: &[String]) -> Result<(Self, String, String), IdentityError> {
        let certified = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        let cert_pem = certified.cert.pem();
        let key_pem = certified.signing_key.serialize_pem();
        let id = Self::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
        Ok((id, cert_pem, key_pem))
    }

    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, IdentityError> {
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::Pem(e.to_string()))?;
        if certs.is_empty() {
            return Err(IdentityError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| IdentityError::Pem(e.to_string()))?;
        let certified = certified(certs, &key)?;
        let pin = Fingerprint::of_key(&certified.cert[0]).ok_or(IdentityError::Unparsable)?;
        Ok(Identity {
            key,
            served: Arc::new(Served {
                current: RwLock::new(Arc::new(certified)),
                challenges: RwLock::default(),
            }),
            pin,
        })
    }

    /// The pin: the SHA-256 of the key, the same for every certificate
    /// this identity serves.
    pub fn fingerprint(&self) -> Fingerprint {
        self.pin
    }

    /// The chain served now, end entity first.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.served.current().cert.clone()
    }

    /// The appliance's private key, for a certificate request.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// Whether `key_pem` holds this identity's key.
    pub fn is_key(&self, key_pem: &[u8]) -> bool {
        PrivateKeyDer::from_pem_slice(key_pem)
            .is_ok_and(|k| k.secret_der() == self.key.secret_der())
    }

    /// Serves `chain_pem` from the next handshake on, on every endpoint
    /// made from this identity. The chain must be for this identity's key,
    /// so every pin holds.
    pub fn renew(&self, chain_pem: &[u8]) -> Result<(), IdentityError> {
        let certs = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::Pem(e.to_string()))?;
        if certs.is_empty() {
            return Err(IdentityError::NoCertificate);
        }
        if Fingerprint::of_key(&certs[0]) != Some(self.pin) {
            return Err(IdentityError::OtherKey);
        }
        let certified = certified(certs, &self.key)?;
        *self
            .served
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
        Ok(())
    }

    /// Where an ACME CA's TLS-ALPN-01 checks are answered.
    pub fn challenges(&self) -> &Arc<Served> {
        &self.served
    }

    /// rustls server configuration offering `alpn`.
    pub fn server_config(
        &self,
        alpn: &[&[u8]],
        tls13_only: bool,
    ) -> Result<rustls::ServerConfig, IdentityError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(self.served.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// A chain with the key that signs for it; checks that they belong
/// together.
fn certified(
    certs: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<CertifiedKey, IdentityError> {
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(certs, key.clone_key(), &provider)?;
    Ok(certified)
}

/// The ALPN protocol of an ACME CA's TLS-ALPN-01 check (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The certificate every handshake gets, and the ACME challenge
/// certificates a CA's check gets instead, by the name it asks for.
#[derive(Debug)]
pub struct Served {
    current: RwLock<Arc<CertifiedKey>>,
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl Served {
    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Answers a CA's check for `name` with `cert` until [`Served::withdraw`].
    pub fn answer(&self, name: &str, cert: CertifiedKey) {
        self.challenges
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_ascii_lowercase(), Arc::new(cert));
    }

    /// Stops answering a check for `name`.
    pub fn withdraw(&self, name: &str) {
        self.challenges
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name.to_ascii_lowercase());
    }
}

impl ResolvesServerCert for Served {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A CA's check offers acme-tls/1 and nothing else (RFC 8737 §3),
        // and must get the challenge certificate; nobody else ever does.
        let acme = hello.alpn().is_some_and(|offered| {
            let offered: Vec<&[u8]> = offered.collect();
            offered == [ACME_TLS_ALPN]
        });
        if acme {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned();
        }
        Some(self.current())
    }
}

/// The error a pinned client reports when the server shows another
/// certificate than the one pinned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the server's key fingerprint is {seen}, but {expected} is pinned: \
     this is not the appliance you trusted (or its key changed); refusing to connect"
)]
pub struct FingerprintMismatch {
    pub expected: Fingerprint,
    pub seen: Fingerprint,
}

/// Verifies the server by its certificate's fingerprint instead of a CA
/// chain. The handshake signature is still checked, so the server must hold
/// the certificate's key.
///
/// It also keeps the TLS session tickets this one appliance gave, so that
/// a client's later connections to it resume (and a QUIC session can send
/// its greeting in the first flight). The tickets live as long as the
/// process: rustls keeps them in memory only.
#[derive(Debug)]
pub struct PinnedCert {
    expected: Option<Fingerprint>,
    seen: Arc<Mutex<Option<Fingerprint>>>,
    provider: Arc<CryptoProvider>,
    tickets: Arc<rustls::client::ClientSessionMemoryCache>,
    /// rustls resumes a session only under the very verifier and client
    /// credentials that made it, compared by address, so every
    /// configuration made here shares this one (and the verifier is `self`).
    no_client_cert: Arc<dyn rustls::client::ResolvesClientCert>,
}

/// A client that presents no certificate: the token proves who it is.
#[derive(Debug)]
struct NoClientCert;

impl rustls::client::ResolvesClientCert for NoClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

/// Tickets kept per appliance: a handful of server names (the control
/// plane's host, the data plane's "ferry"), two tickets each.
const TICKET_NAMES: usize = 8;

impl PinnedCert {
    /// Accepts only `expected`.
    pub fn new(expected: Fingerprint) -> Arc<Self> {
        Arc::new(PinnedCert {
            expected: Some(expected),
            seen: Arc::default(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            tickets: Arc::new(rustls::client::ClientSessionMemoryCache::new(TICKET_NAMES)),
            no_client_cert: Arc::new(NoClientCert),
        })
    }

    /// Accepts any certificate and records its fingerprint: for first
    /// contact, when the user is shown the fingerprint to confirm. Send no
    /// secret over a connection made this way.
    pub fn first_contact() -> Arc<Self> {
        Arc::new(PinnedCert {
            expected: None,
            seen: Arc::default(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            tickets: Arc::new(rustls::client::ClientSessionMemoryCache::new(TICKET_NAMES)),
            no_client_cert: Arc::new(NoClientCert),
        })
    }

    /// The fingerprint the server presented, once it has.
    pub fn seen(&self) -> Option<Fingerprint> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A rustls client configuration with this verifier and `alpn`.
    pub fn client_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
        tls13_only: bool,
    ) -> rustls::ClientConfig {
        let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(versions)
            // ring's default provider supports both versions, so this
            // cannot fail; fall back to TLS 1.3 only if it somehow does.
            .unwrap_or_else(|_| {
                rustls::ClientConfig::builder_with_provider(self.provider.clone())
                    .with_safe_default_protocol_versions()
                    .unwrap_or_else(|_| unreachable!("ring supports TLS 1.3"))
            })
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_client_cert_resolver(self.no_client_cert.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.resumption = rustls::client::Resumption::store(self.tickets.clone());
        config
    }
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(seen) = Fingerprint::of_key(end_entity) else {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ));
        };
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen);
        // A pin taken by an earlier version is the whole certificate's.
        let whole = Fingerprint::of(end_entity);
        match self.expected {
            None => Ok(ServerCertVerified::assertion()),
            Some(expected) if expected.matches(&seen) || expected.matches(&whole) => {
                Ok(ServerCertVerified::assertion())
            }
            Some(expected) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                    FingerprintMismatch { expected, seen },
                ))),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Finds a [`FingerprintMismatch`] anywhere in an error's source chain
/// (reqwest and quinn wrap rustls errors several layers deep).
pub fn find_mismatch(err: &(dyn std::error::Error + 'static)) -> Option<FingerprintMismatch> {
    find_in_chain(err, &|e| {
        if let Some(m) = e.downcast_ref::<FingerprintMismatch>() {
            return Some(m.clone());
        }
        match e.downcast_ref::<rustls::Error>() {
            Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
                other.0.downcast_ref::<FingerprintMismatch>().cloned()
            }
            _ => None,
        }
    })
}

/// The TLS failure behind `err`, if TLS itself failed (a certificate, an
/// alert, a broken record) rather than the path under it: trying the same
/// connection again will not mend it.
pub fn find_tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    find_in_chain(err, &|e| e.downcast_ref::<rustls::Error>().cloned())
}

/// The first thing `pick` finds in `err` or its sources, looking inside
/// the `io::Error`s that carry other errors too (their `source()` skips
/// the error they wrap).
fn find_in_chain<T>(
    err: &(dyn std::error::Error + 'static),
    pick: &dyn Fn(&(dyn std::error::Error + 'static)) -> Option<T>,
) -> Option<T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = pick(e) {
            return Some(found);
        }
        if let Some(found) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| find_in_chain(inner, pick))
        {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that wraps another, as HTTP clients wrap their IO.
    #[derive(Debug, thiserror::Error)]
    #[error("request failed")]
    struct Wrapped(#[source] std::io::Error);

    #[test]
    fn a_tls_failure_is_found_inside_the_io_error_that_carries_it() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        let carried = Wrapped(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            tls.clone(),
        ));
        assert_eq!(find_tls_failure(&carried), Some(tls));
        let reset = Wrapped(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(find_tls_failure(&reset), None);
    }

    #[test]
    fn fingerprint_text_forms() {
        let (id, _, _) = Identity::self_signed(&["localhost".into()]).unwrap();
        let fp = id.fingerprint();
        let plain = fp.to_string();
        assert_eq!(plain.len(), 64);
        assert_eq!(plain.parse::<Fingerprint>().unwrap(), fp);
        let colons = fp.colon_pairs();
        assert_eq!(colons.len(), 32 * 3 - 1);
        assert_eq!(colons, colons.to_ascii_uppercase());
        assert_eq!(colons.parse::<Fingerprint>().unwrap(), fp);
        assert!("abc".parse::<Fingerprint>().is_err());
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
    }

    #[test]
    fn the_pin_is_the_keys_and_outlives_a_new_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = |name: &str| rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        let first = params("a.example").self_signed(&key).unwrap();
        let second = params("b.example").self_signed(&key).unwrap();
        let id =
            Identity::from_pem(first.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
        let pin = id.fingerprint();
        assert_ne!(pin, Fingerprint::of(first.der()));
        id.renew(second.pem().as_bytes()).unwrap();
        assert_eq!(id.fingerprint(), pin);
        assert_eq!(id.chain()[0].as_ref(), second.der().as_ref());
        assert_eq!(Fingerprint::of_key(second.der()), Some(pin));
        // A certificate for another key is refused and changes nothing.
        let (other, other_pem, _) = Identity::self_signed(&["c.example".into()]).unwrap();
        assert!(matches!(
            id.renew(other_pem.as_bytes()),
            Err(IdentityError::OtherKey)
        ));
        assert_ne!(other.fingerprint(), pin);
        assert_eq!(id.chain()[0].as_ref(), second.der().as_ref());
    }

    #[test]
    fn pem_round_trip() {
        let (id, cert, key) = Identity::self_signed(&["127.0.0.1".into()]).unwrap();
        let again = Identity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(again.fingerprint(), id.fingerprint());
        assert!(Identity::from_pem(b"", key.as_bytes()).is_err());
    }
}
