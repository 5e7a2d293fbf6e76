//! Signing in, shared by `ferry login` and the desktop app's Login view:
//! first contact learns (or checks) the appliance's certificate before any
//! secret is sent; then a password buys an API key, which is what is kept.

use ferry_api::LoginResponse;
use ferry_engine::tls::{Fingerprint, PinnedCert};

use crate::api::Api;
use crate::credentials::{Credentials, addresses, normalise_server};
use crate::error::ClientError;

/// What first contact found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstContact {
    /// The server's addresses, normalised (`https://host:port`, several
    /// separated by commas).
    pub server: String,
    /// The certificate it presented (every address that answered
    /// presented this one).
    pub fingerprint: Fingerprint,
    /// Addresses that did not answer, a node down perhaps: they stay in
    /// the list, unchecked.
    pub unreachable: Vec<String>,
}

/// Connects to each of `server`'s addresses and reads the certificate's
/// fingerprint. With `expected`, a different certificate is refused (the
/// error names both); without, whatever is presented is returned for the
/// person to confirm. The addresses of one appliance must all present the
/// same certificate, so that one pin fits them: two that differ are
/// refused, naming both. At least one address must answer.
pub async fn first_contact(
    server: &str,
    expected: Option<Fingerprint>,
) -> Result<FirstContact, ClientError> {
    let server = normalise_server(server)?;
    let mut seen: Option<(String, Fingerprint)> = None;
    let mut unreachable = Vec::new();
    let mut silent = None;
    for address in addresses(&server) {
        let pin = match expected {
            Some(fp) => PinnedCert::new(fp),
            None => PinnedCert::first_contact(),
        };
        let probe = Api::new(address, pin, None, None)?;
        match probe.health().await {
            Ok(_) => {}
            Err(e @ ClientError::Unreachable { .. }) => {
                unreachable.push(address.to_owned());
                silent.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(e),
        }
        let fingerprint = probe
            .seen_fingerprint()
            .ok_or_else(|| ClientError::Invalid(format!("{address} presented no certificate")))?;
        match &seen {
            Some((first, theirs)) if *theirs != fingerprint => {
                return Err(ClientError::Invalid(format!(
                    "{address} presents a different certificate ({fingerprint}) from {first} \
                     ({theirs}): the addresses of one appliance must present the same one, \
                     so that one pin fits them all"
                )));
            }
            Some(_) => {}
            None => seen = Some((address.to_owned(), fingerprint)),
        }
    }
    match (seen, silent) {
        (Some((_, fingerprint)), _) => Ok(FirstContact {
            server,
            fingerprint,
            unreachable,
        }),
        (None, Some(e)) => Err(e),
        (None, None) => Err(ClientError::Invalid("no address to contact".into())),
    }
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
