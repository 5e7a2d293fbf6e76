//! Credentials: the appliance's address, the user, an API key and the
//! pinned certificate fingerprint.
//!
//! `FERRY_SERVER`, `FERRY_USER`, `FERRY_API_KEY` and `FERRY_FINGERPRINT`
//! take precedence, one by one, over what `ferry login` stored in
//! `<config dir>/ferry/credentials.toml` (mode 0600).
//!
//! The server may be several addresses, separated by commas: the nodes of
//! a cluster, or one appliance's uplinks. They are one appliance to the
//! client (one certificate pin, one key), tried in the order given; see
//! [`crate::api`] for when a request moves to the next.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use ferry_engine::tls::Fingerprint;
use serde::{Deserialize, Serialize};

use crate::error::ClientError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `https://host:port`, without a trailing slash; or several such
    /// addresses separated by commas (see [`normalise_server`]).
    pub server: String,
    pub user: Option<String>,
    pub api_key: String,
    pub fingerprint: Fingerprint,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    server: Option<String>,
    user: Option<String>,
    api_key: Option<String>,
    fingerprint: Option<String>,
}

/// Normalises a server's addresses: each to `https://host:port`, joined
/// by commas in the order given. One address is the usual case; several
/// name the nodes (or uplinks) of one appliance. The result is also what
/// names the appliance in this computer's records (manifests, run keys),
/// so the same list written twice the same way is the same appliance.
pub fn normalise_server(text: &str) -> Result<String, ClientError> {
    let mut addresses: Vec<String> = Vec::new();
    for part in text.split(',') {
        let address = normalise_address(part).map_err(|e| match e {
            ClientError::Invalid(why) if text.contains(',') => {
                ClientError::Invalid(format!("in the server list {text:?}: {why}"))
            }
            other => other,
        })?;
        if addresses.contains(&address) {
            return Err(ClientError::Invalid(format!(
                "{address} is listed twice in the server list {text:?}"
            )));
        }
        addresses.push(address);
    }
    Ok(addresses.join(","))
}

/// A normalised server list's addresses, in order.
pub fn addresses(server: &str) -> impl Iterator<Item = &str> {
    server.split(',')
}

/// Normalises one address to `https://host:port`.
fn normalise_address(text: &str) -> Result<String, ClientError> {
    let t = text.trim().trim_end_matches('/');
    let rest = if let Some(r) = t.strip_prefix("https://") {
        r
    } else if t.starts_with("http://") {
        return Err(ClientError::Invalid(format!(
            "{t}: Ferry only talks HTTPS to the appliance (use https://)"
        )));
    } else {
        t
    };
    if rest.is_empty() {
        return Err(ClientError::Invalid(
            "an empty address: expected https://HOST[:PORT] (for example https://ferry.example.com)"
                .into(),
        ));
    }
    if rest.contains('/') {
        return Err(ClientError::Invalid(format!(
            "{t}: expected https://HOST[:PORT] (for example https://ferry.example.com)"
        )));
    }
    Ok(format!("https://{rest}"))
}

impl Credentials {
    /// Where `ferry login` keeps credentials (`FERRY_CONFIG` overrides).
    pub fn path() -> Result<PathBuf, ClientError> {
        if let Some(p) = std::env::var_os("FERRY_CONFIG") {
            return Ok(PathBuf::from(p));
        }
        dirs::config_dir()
            .map(|d| d.join("ferry").join("credentials.toml"))
            .ok_or_else(|| {
                ClientError::NotConfigured("no configuration folder for this user".into())
            })
    }

    /// Credentials from the environment, then from the stored file.
    pub fn load() -> Result<Self, ClientError> {
        Self::load_from(&Self::path()?)
    }

    /// Credentials from the environment, then from the file at `path`.
    pub fn load_from(path: &std::path::Path) -> Result<Self, ClientError> {
        let stored: Stored = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                ClientError::NotConfigured(format!(
                    "{} is damaged ({e}); run ferry login again",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => {
                return Err(ClientError::Io {
                    path: path.display().to_string(),
                    source: e,
                });
            }
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let server = env("FERRY_SERVER").or(stored.server).ok_or_else(|| {
            ClientError::NotConfigured(
                "not logged in: run `ferry login https://APPLIANCE`, or set FERRY_SERVER, FERRY_API_KEY and FERRY_FINGERPRINT"
                    .into(),
            )
        })?;
        let api_key = env("FERRY_API_KEY").or(stored.api_key).ok_or_else(|| {
            ClientError::NotConfigured("no API key: run `ferry login`, or set FERRY_API_KEY".into())
        })?;
        let fingerprint = env("FERRY_FINGERPRINT").or(stored.fingerprint).ok_or_else(|| {
            ClientError::NotConfigured(
                "no certificate fingerprint pinned: run `ferry login`, or set FERRY_FINGERPRINT \
                 (the appliance's admin can read it in the web admin or with `ferryd admin fingerprint`)"
                    .into(),
            )
        })?;
        Ok(Credentials {
            server: normalise_server(&server)?,
            user: env("FERRY_USER").or(stored.user),
            api_key,
            fingerprint: fingerprint
                .parse()
                .map_err(|e| ClientError::Invalid(format!("FERRY_FINGERPRINT: {e}")))?,
        })
    }

    /// Stores the credentials, readable by this user only.
    pub fn save(&self) -> Result<PathBuf, ClientError> {
        self.save_to(Self::path()?)
    }

    /// Stores the credentials at `path`, readable by this user only.
    pub fn save_to(&self, path: PathBuf) -> Result<PathBuf, ClientError> {
        let io = |e| ClientError::Io {
            path: path.display().to_string(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = toml::to_string(&Stored {
            server: Some(self.server.clone()),
            user: self.user.clone(),
            api_key: Some(self.api_key.clone()),
            fingerprint: Some(self.fingerprint.to_string()),
        })
        .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(path)
    }

    /// Forgets stored credentials.
    pub fn remove() -> Result<(), ClientError> {
        let path = Self::path()?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ClientError::Io {
                path: path.display().to_string(),
                source: e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        assert_eq!(
            normalise_server("ferry.example.com").unwrap(),
            "https://ferry.example.com"
        );
        assert_eq!(
            normalise_server("https://127.0.0.1:8443/").unwrap(),
            "https://127.0.0.1:8443"
        );
        assert!(normalise_server("http://x").is_err());
        assert!(normalise_server("https://x/api").is_err());
    }

    #[test]
    fn a_server_may_be_several_addresses_in_order() {
        let list = normalise_server(" https://a.example:8443/, b.example:8443 ").unwrap();
        assert_eq!(list, "https://a.example:8443,https://b.example:8443");
        assert_eq!(
            addresses(&list).collect::<Vec<_>>(),
            ["https://a.example:8443", "https://b.example:8443"]
        );
        let twice = normalise_server("https://a:1,a:1").unwrap_err().to_string();
        assert!(twice.contains("https://a:1 is listed twice"), "{twice}");
        let empty = normalise_server("https://a:1,,https://b:1")
            .unwrap_err()
            .to_string();
        assert!(empty.contains("an empty address"), "{empty}");
        let bad = normalise_server("https://a:1,http://b:1")
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("in the server list") && bad.contains("http://b:1"),
            "{bad}"
        );
    }
}
