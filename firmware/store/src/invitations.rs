//! Invitation tokens: the link in an invitation email that lets an invited
//! user choose a password. A token is random, stored only as its BLAKE3
//! hash, expires, and works once.

use crate::db::{Optional, params};

use ferry_domain::UserId;

use crate::users::User;
use crate::{Database, Result, StoreError, now, random_hex};

/// What a token opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invitation {
    Valid { user: User, expires_at: i64 },
    Used,
    Expired,
    Unknown,
}

fn hash(token: &str) -> Vec<u8> {
    blake3::hash(token.as_bytes()).as_bytes().to_vec()
}

impl Database {
    /// A new token for `user`, valid for `ttl_secs`. Earlier unused tokens
    /// of the user stop working: only the newest invitation counts.
    pub fn create_invitation(&self, user: UserId, ttl_secs: i64) -> Result<String> {
        let token = random_hex(32);
        let t = now();
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE invitations SET expires_at = CASE WHEN expires_at < ?2 THEN expires_at ELSE ?2 END WHERE user_id = ?1 AND used_at IS NULL",
            params![user.0, t],
        )?;
        tx.execute(
            "INSERT INTO invitations (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![hash(&token), user.0, t, t + ttl_secs],
        )?;
        tx.commit()?;
        Ok(token)
    }

    pub fn invitation(&self, token: &str) -> Result<Invitation> {
        let row: Option<(i64, i64, Option<i64>)> = self
            .conn()?
            .query_row(
                "SELECT user_id, expires_at, used_at FROM invitations WHERE token_hash = ?1",
                params![hash(token)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(match row {
            None => Invitation::Unknown,
            Some((_, _, Some(_))) => Invitation::Used,
            Some((_, expires_at, None)) if expires_at <= now() => Invitation::Expired,
            Some((user, expires_at, None)) => Invitation::Valid {
                user: self.user(UserId(user))?,
                expires_at,
            },
        })
    }

    /// Spends a token: sets the user's password (activating an invited
    /// user) in the same transaction that marks the token used, so a token
    /// works exactly once.
    pub fn accept_invitation(&self, token: &str, password: &str) -> Result<User> {
        let password_hash = crate::users::hash_password(password)?;
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let user: Option<i64> = tx
            .query_row(
                "UPDATE invitations SET used_at = ?2
                 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2 RETURNING user_id",
                params![hash(token), now()],
                |r| r.get(0),
            )
            .optional()?;
        let Some(user) = user else {
            return Err(StoreError::Invalid(
                "this invitation link was used already or has expired".into(),
            ));
        };
        // An invitation opens a new account only: once the account has a
        // password (a reset, an admin), an old link must not take it over.
        let n = tx.execute(
            "UPDATE users SET password_hash = ?1, must_change_password = 0, status = 'active'
             WHERE id = ?2 AND status = 'invited'",
            params![password_hash, user],
        )?;
        if n == 0 {
            return Err(StoreError::Invalid(
                "this invitation was for a new account, which has a password now: log in with it"
                    .into(),
            ));
        }
        tx.commit()?;
        drop(conn);
        self.user(UserId(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Role, UserStatus};

    #[test]
    fn a_token_works_once_and_not_after_it_expires() {
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            let u = s
                .create_user("new@example.com", "", Role::Collaborator, None)
                .unwrap();
            assert_eq!(u.status, UserStatus::Invited);
            let token = s.create_invitation(u.id, 3600).unwrap();
            assert!(matches!(
                s.invitation(&token).unwrap(),
                Invitation::Valid { .. }
            ));
            assert_eq!(s.invitation("nope").unwrap(), Invitation::Unknown);
            let active = s.accept_invitation(&token, "a long new password").unwrap();
            assert_eq!(active.status, UserStatus::Active);
            assert!(
                s.verify_password("new@example.com", "a long new password")
                    .unwrap()
                    .is_some()
            );
            assert_eq!(s.invitation(&token).unwrap(), Invitation::Used);
            assert!(s.accept_invitation(&token, "another password!").is_err());

            let old = s.create_invitation(u.id, -1).unwrap();
            assert_eq!(s.invitation(&old).unwrap(), Invitation::Expired);
            assert!(s.accept_invitation(&old, "a long new password").is_err());
            // An account that got a password another way voids its links.
            let later = s
                .create_user("later@example.com", "", Role::Collaborator, None)
                .unwrap();
            let link = s.create_invitation(later.id, 3600).unwrap();
            s.set_password(later.id, "set by an admin, long").unwrap();
            assert_eq!(s.invitation(&link).unwrap(), Invitation::Expired);
            assert!(s.accept_invitation(&link, "a takeover attempt").is_err());
            // A newer invitation voids the older one.
            let first = s.create_invitation(u.id, 3600).unwrap();
            let second = s.create_invitation(u.id, 3600).unwrap();
            assert_eq!(s.invitation(&first).unwrap(), Invitation::Expired);
            assert!(matches!(
                s.invitation(&second).unwrap(),
                Invitation::Valid { .. }
            ));
        }
    }
}
