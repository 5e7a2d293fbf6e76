//! API keys: long random secrets for the client and for automation.
//!
//! A key is `fk_` followed by 64 hex characters (256 bits). Only its BLAKE3
//! hash is stored; the key itself is returned once, when created. Looking a
//! key up by its hash is safe against timing attacks because the attacker
//! does not control the hash.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::users::{User, UserId};
use crate::{Result, Store, StoreError, now, random_hex};

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
pub struct ApiKeyId(pub i64);

/// A key as listed: never the secret.
#[derive(Clone, Debug, Serialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
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

impl Store {
    pub fn create_api_key(&self, user: UserId, name: &str) -> Result<NewApiKey> {
        let secret = format!("{KEY_PREFIX}{}", random_hex(32));
        let prefix = secret[..KEY_PREFIX.len() + 8].to_owned();
        let conn = self.conn();
        conn.execute(
            "INSERT INTO api_keys (user_id, name, key_hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user.0, name, key_hash(&secret), prefix, now()],
        )?;
        Ok(NewApiKey {
            id: ApiKeyId(conn.last_insert_rowid()),
            secret,
        })
    }

    /// The active user a key belongs to, recording its use; `None` for an
    /// unknown or revoked key, or a user who is not active.
    pub fn authenticate_api_key(&self, secret: &str) -> Result<Option<(User, ApiKeyId)>> {
        if !secret.starts_with(KEY_PREFIX) || secret.len() > 128 {
            return Ok(None);
        }
        let row: Option<(i64, i64)> = self
            .conn()
            .query_row(
                "SELECT k.id, k.user_id FROM api_keys k JOIN users u ON u.id = k.user_id
                 WHERE k.key_hash = ?1 AND k.revoked_at IS NULL AND u.status = 'active'",
                [key_hash(secret)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((key_id, user_id)) = row else {
            return Ok(None);
        };
        self.conn().execute(
            "UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2",
            params![now(), key_id],
        )?;
        Ok(Some((self.user(UserId(user_id))?, ApiKeyId(key_id))))
    }

    pub fn list_api_keys(&self, user: UserId) -> Result<Vec<ApiKey>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, user_id, name, prefix, created_at, last_used_at, revoked_at
             FROM api_keys WHERE user_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([user.0], |r| {
            Ok(ApiKey {
                id: ApiKeyId(r.get(0)?),
                user_id: UserId(r.get(1)?),
                name: r.get(2)?,
                prefix: r.get(3)?,
                created_at: r.get(4)?,
                last_used_at: r.get(5)?,
                revoked_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Revokes a key of `user` (admins pass the key's owner).
    pub fn revoke_api_key(&self, user: UserId, key: ApiKeyId) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND user_id = ?3 AND revoked_at IS NULL",
            params![now(), key.0, user.0],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("active API key {}", key.0)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Role, Store};

    #[test]
    fn keys_are_shown_once_and_revocable() {
        let s = Store::open_in_memory().unwrap();
        let u = s
            .create_user("a@b.io", "", Role::Employee, Some("password1"))
            .unwrap();
        let k = s.create_api_key(u.id, "laptop").unwrap();
        assert!(k.secret.starts_with("fk_") && k.secret.len() == 67);
        let (who, id) = s.authenticate_api_key(&k.secret).unwrap().unwrap();
        assert_eq!((who.id, id), (u.id, k.id));
        assert!(s.authenticate_api_key("fk_00").unwrap().is_none());
        let listed = s.list_api_keys(u.id).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].last_used_at.is_some());
        assert!(!format!("{listed:?}").contains(&k.secret));
        s.revoke_api_key(u.id, k.id).unwrap();
        assert!(s.authenticate_api_key(&k.secret).unwrap().is_none());
    }
}
