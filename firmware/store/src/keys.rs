//! API keys: long random secrets for the client and for automation.
//!
//! A key is `fk_` followed by 64 hex characters (256 bits). Only its BLAKE3
//! hash is stored; the key itself is returned once, when created. Looking a
//! key up by its hash is safe against timing attacks because the attacker
//! does not control the hash.

use crate::db::{Optional, params};
use ferry_domain::UserId;
use serde::Serialize;

use crate::users::User;
use crate::{Database, Result, StoreError, now, random_hex};

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
pub struct ApiKeyId(pub i64);

/// How a key came to be. A password change ends the keys its logins
/// minted (a stolen login must not outlive the password), but not the keys
/// made on purpose for automation.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyOrigin {
    /// Minted by a password login (`ferry login`, the desktop app).
    Login,
    /// Made for someone (`ferryd admin apikey create`, the web admin).
    Made,
}

impl KeyOrigin {
    fn as_str(self) -> &'static str {
        match self {
            KeyOrigin::Login => "login",
            KeyOrigin::Made => "made",
        }
    }
}

/// What a presented key turns out to be.
#[derive(Debug, Clone)]
pub enum KeyCheck {
    /// No such key here (mistyped, or for another appliance).
    Unknown,
    /// It was revoked.
    Revoked { user: User },
    /// A live key; whether its account may use it is the rulebook's call.
    Live { user: User, key: ApiKeyId },
}

/// A key as listed: never the secret.
#[derive(Clone, Debug, Serialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    pub origin: KeyOrigin,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A freshly created key, with its secret: show it once.
#[derive(Debug)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub secret: String,
}

const KEY_PREFIX: &str = "fk_";

fn key_hash(secret: &str) -> Vec<u8> {
    blake3::hash(secret.as_bytes()).as_bytes().to_vec()
}

impl Database {
    pub fn create_api_key(&self, user: UserId, name: &str, origin: KeyOrigin) -> Result<NewApiKey> {
        let secret = format!("{KEY_PREFIX}{}", random_hex(32));
        let prefix = secret[..KEY_PREFIX.len() + 8].to_owned();
        let conn = self.conn()?;
        let id = conn.query_row(
            "INSERT INTO api_keys (user_id, name, key_hash, prefix, origin, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             RETURNING id",
            params![user.0, name, key_hash(&secret), prefix, origin.as_str(), now()],
            |r| r.get(0),
        )?;
        Ok(NewApiKey {
            id: ApiKeyId(id),
            secret,
        })
    }

    /// What a presented key is, recording the use of a live one. Whether
    /// its account may use it (disabled, not yet active) is not decided
    /// here: the rulebook says, and the caller is told which.
    pub fn check_api_key(&self, secret: &str) -> Result<KeyCheck> {
        if !secret.starts_with(KEY_PREFIX) || secret.len() > 128 {
            return Ok(KeyCheck::Unknown);
        }
        let row: Option<(i64, i64, Option<i64>)> = self
            .conn()?
            .query_row(
                "SELECT id, user_id, revoked_at FROM api_keys WHERE key_hash = ?1",
                params![key_hash(secret)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((key_id, user_id, revoked)) = row else {
            return Ok(KeyCheck::Unknown);
        };
        let user = self.user(UserId(user_id))?;
        if revoked.is_some() {
            return Ok(KeyCheck::Revoked { user });
        }
        self.conn()?.execute(
            "UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2",
            params![now(), key_id],
        )?;
        Ok(KeyCheck::Live {
            user,
            key: ApiKeyId(key_id),
        })
    }

    pub fn list_api_keys(&self, user: UserId) -> Result<Vec<ApiKey>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT id, user_id, name, prefix, origin, created_at, last_used_at, revoked_at
             FROM api_keys WHERE user_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![user.0], |r| {
            Ok(ApiKey {
                id: ApiKeyId(r.get(0)?),
                user_id: UserId(r.get(1)?),
                name: r.get(2)?,
                prefix: r.get(3)?,
                origin: if r.get::<_, String>(4)? == "login" {
                    KeyOrigin::Login
                } else {
                    KeyOrigin::Made
                },
                created_at: r.get(5)?,
                last_used_at: r.get(6)?,
                revoked_at: r.get(7)?,
            })
        })?;
        Ok(rows)
    }

    /// Revokes a key of `user` (admins pass the key's owner).
    pub fn revoke_api_key(&self, user: UserId, key: ApiKeyId) -> Result<()> {
        let n = self.conn()?.execute(
            "UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND user_id = ?3 AND revoked_at IS NULL",
            params![now(), key.0, user.0],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("active API key {}", key.0)));
        }
        Ok(())
    }

    /// Revokes every live key `user`'s logins minted, but `except` (the
    /// key a password change was made with); returns how many.
    pub fn revoke_login_keys(&self, user: UserId, except: Option<ApiKeyId>) -> Result<usize> {
        self.conn()?.execute(
            "UPDATE api_keys SET revoked_at = ?1
             WHERE user_id = ?2 AND origin = 'login' AND revoked_at IS NULL AND id != ?3",
            params![now(), user.0, except.map_or(-1, |k| k.0)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    #[test]
    fn keys_are_shown_once_and_revocable() {
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            let u = s
                .create_user("a@b.io", "", Role::Employee, Some("password1"))
                .unwrap();
            let k = s.create_api_key(u.id, "laptop", KeyOrigin::Made).unwrap();
            assert!(k.secret.starts_with("fk_") && k.secret.len() == 67);
            let KeyCheck::Live { user, key } = s.check_api_key(&k.secret).unwrap() else {
                panic!("a new key is live");
            };
            assert_eq!((user.id, key), (u.id, k.id));
            assert!(matches!(
                s.check_api_key("fk_00").unwrap(),
                KeyCheck::Unknown
            ));
            let listed = s.list_api_keys(u.id).unwrap();
            assert_eq!(listed.len(), 1);
            assert!(listed[0].last_used_at.is_some());
            assert!(!format!("{listed:?}").contains(&k.secret));
            s.revoke_api_key(u.id, k.id).unwrap();
            assert!(matches!(
                s.check_api_key(&k.secret).unwrap(),
                KeyCheck::Revoked { .. }
            ));
        }
    }

    #[test]
    fn a_password_change_revokes_only_the_keys_logins_minted() {
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            let u = s
                .create_user("a@b.io", "", Role::Employee, Some("password1"))
                .unwrap();
            let login = s.create_api_key(u.id, "login", KeyOrigin::Login).unwrap();
            let made = s.create_api_key(u.id, "ftrack", KeyOrigin::Made).unwrap();
            let other = s.create_api_key(u.id, "login", KeyOrigin::Login).unwrap();
            assert_eq!(s.revoke_login_keys(u.id, Some(other.id)).unwrap(), 1);
            assert!(matches!(
                s.check_api_key(&login.secret).unwrap(),
                KeyCheck::Revoked { .. }
            ));
            assert!(matches!(
                s.check_api_key(&made.secret).unwrap(),
                KeyCheck::Live { .. }
            ));
        }
    }
}
