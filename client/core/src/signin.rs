//! Signing in, shared by `ferry login` and the desktop app's Login view:
//! first contact learns (or checks) the appliance's certificate before any
//! secret is sent; then a password buys an API key, which is what is kept.

use ferry_api::LoginResponse;
use ferry_engine::tls::{Fingerprint, PinnedCert};

use crate::api::Api;
use crate::credentials::{Credentials, normalise_server};
use crate::error::ClientError;

/// What first contact found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstContact {
    /// The server's address, normalised (`https://host:port`).
    pub server: String,
    /// The certificate it presented.
    pub fingerprint: Fingerprint,
}

/// Connects to `server` and reads its certificate's fingerprint. With
/// `expected`, a different certificate is refused (the error names both);
/// without, whatever is presented is returned for the person to confirm.
pub async fn first_contact(
    server: &str,
    expected: Option<Fingerprint>,
) -> Result<FirstContact, ClientError> {
    let server = normalise_server(server)?;
    let pin = match expected {
        Some(fp) => PinnedCert::new(fp),
        None => PinnedCert::first_contact(),
    };
    let probe = Api::new(&server, pin, None, None)?;
    probe.health().await?;
    let fingerprint = probe
        .seen_fingerprint()
        .ok_or_else(|| ClientError::Invalid("the appliance presented no certificate".into()))?;
    Ok(FirstContact {
        server,
        fingerprint,
    })
}

/// A password traded for an API key.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub credentials: Credentials,
    pub role: ferry_api::Role,
    /// The password was one-time: call [`change_password`] before anything
    /// else works.
    pub must_change_password: bool,
}

/// Signs in to a confirmed appliance. `key_name` labels the new key in the
/// user's key list (which computer, which program).
pub async fn sign_in(
    contact: &FirstContact,
    email: &str,
    password: &str,
    key_name: String,
) -> Result<SignedIn, ClientError> {
    let api = Api::new(
        &contact.server,
        PinnedCert::new(contact.fingerprint),
        None,
        None,
    )?;
    let resp: LoginResponse = api.login(email, password, Some(key_name)).await?;
    Ok(SignedIn {
        role: resp.user.role,
        must_change_password: resp.must_change_password,
        credentials: Credentials {
            server: contact.server.clone(),
            user: Some(resp.user.email),
            api_key: resp.api_key,
            fingerprint: contact.fingerprint,
        },
    })
}

/// Replaces a one-time password, with the key that signing in gave.
pub async fn change_password(
    credentials: &Credentials,
    current: &str,
    new: &str,
) -> Result<(), ClientError> {
    Api::from_credentials(credentials)?
        .change_password(current, new)
        .await
}

/// This computer's name, for labelling keys.
pub fn this_computer() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "this computer".into())
}
