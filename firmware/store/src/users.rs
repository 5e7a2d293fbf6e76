//! Users: who may log in, with which role, and their password hashes.

use crate::db::{Optional, Row, params};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use ferry_domain::rules::Account;
use ferry_domain::{AccountKind, Role, UserId, UserStatus};
use serde::Serialize;

use crate::{Database, Result, StoreError, conflict, now};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub status: UserStatus,
    pub must_change_password: bool,
    pub notify: bool,
    pub created_at: i64,
    /// A person's account, or a service account for automation.
    pub kind: AccountKind,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// What the rulebook needs of this account.
    pub fn account(&self) -> Account<'_> {
        Account {
            email: &self.email,
            role: self.role,
            status: self.status,
            kind: self.kind,
        }
    }

    /// Who the rulebook sees asking.
    pub fn caller(&self) -> ferry_domain::rules::Caller {
        ferry_domain::rules::Caller {
            user: self.id,
            role: self.role,
        }
    }
}

const USER_COLUMNS: &str =
    "id, email, name, role, status, must_change_password, notify, created_at, kind";
/// The same columns of a `users` table aliased `u`, for joins.
pub(crate) const USER_COLUMNS_U: &str =
    "u.id, u.email, u.name, u.role, u.status, u.must_change_password, u.notify,
    u.created_at, u.kind";

pub(crate) fn user_from_row(r: &Row) -> Result<User> {
    let role: String = r.get(3)?;
    let status: String = r.get(4)?;
    Ok(User {
        id: UserId(r.get(0)?),
        email: r.get(1)?,
        name: r.get(2)?,
        role: role.parse().unwrap_or(Role::Collaborator),
        status: status.parse().unwrap_or(UserStatus::Disabled),
        must_change_password: r.get(5)?,
        notify: r.get(6)?,
        created_at: r.get(7)?,
        kind: r
            .get::<_, String>(8)?
            .parse()
            .unwrap_or(AccountKind::Person),
    })
}

/// Checks the shape of an email address before it becomes a user.
pub fn check_email(email: &str) -> Result<()> {
    ferry_domain::email::check(email).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// Hashes a password with argon2id and a random salt (PHC string). The
/// password policy is checked before it gets here
/// (`ferry_domain::password`); the store keeps whatever it is given.
pub fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| StoreError::PasswordHash(e.to_string()))
}

fn password_matches(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash that no password matches, checked when the user does not exist so
/// that a login for an unknown email costs the same time as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password that nobody has").unwrap_or_default())
}

impl Database {
    /// Creates a user. With a password the user is active; without one the
    /// user is invited and sets it later.
    pub fn create_user(
        &self,
        email: &str,
        name: &str,
        role: Role,
        password: Option<&str>,
    ) -> Result<User> {
        let email = email.trim();
        check_email(email)?;
        let hash = password.map(hash_password).transpose()?;
        let status = if hash.is_some() {
            UserStatus::Active
        } else {
            UserStatus::Invited
        };
        let conn = self.conn()?;
        let id = conn
            .query_row(
                "INSERT INTO users (email, name, role, status, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                params![email, name, role.as_str(), status.as_str(), hash, now()],
                |r| r.get(0),
            )
            .map(UserId)
            .map_err(|e| conflict(e, || format!("a user with email {email}")))?;
        drop(conn);
        self.user(id)
    }

    /// Creates a service account: active at once, with no password (it
    /// signs in only with API keys).
    pub fn create_service_account(&self, email: &str, name: &str, role: Role) -> Result<User> {
        let email = email.trim();
        check_email(email)?;
        let conn = self.conn()?;
        let id = conn
            .query_row(
                "INSERT INTO users (email, name, role, status, kind, created_at) VALUES (?1, ?2, ?3, 'active', 'service', ?4) RETURNING id",
                params![email, name, role.as_str(), now()],
                |r| r.get(0),
            )
            .map(UserId)
            .map_err(|e| conflict(e, || format!("a user with email {email}")))?;
        drop(conn);
        self.user(id)
    }

    pub fn user(&self, id: UserId) -> Result<User> {
        self.conn()?
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                params![id.0],
                user_from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("user {id}")))
    }

    pub fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.conn()?
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"),
                params![email.trim()],
                user_from_row,
            )
            .optional()
    }

    pub fn list_users(&self) -> Result<Vec<User>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY email"))?;
        let rows = stmt.query_map(params![], user_from_row)?;
        Ok(rows)
    }

    /// Checks a password. `None` for an unknown, disabled or password-less
    /// user as for a wrong password: the caller cannot tell which, nor can
    /// an attacker from the time it takes.
    pub fn verify_password(&self, email: &str, password: &str) -> Result<Option<User>> {
        let row: Option<(i64, Option<String>)> = self
            .conn()?
            .query_row(
                "SELECT id, password_hash FROM users WHERE email = ?1 AND status = 'active'",
                params![email.trim()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            Some((id, Some(hash))) if password_matches(password, &hash) => {
                Ok(Some(self.user(UserId(id))?))
            }
            Some(_) => Ok(None),
            None => {
                let _ = password_matches(password, decoy_hash());
                Ok(None)
            }
        }
    }

    /// Sets a new password, activates an invited user and clears the
    /// must-change flag.
    pub fn set_password(&self, id: UserId, password: &str) -> Result<()> {
        let hash = hash_password(password)?;
        let n = self.conn()?.execute(
            "UPDATE users SET password_hash = ?1, must_change_password = 0,
                 status = CASE status WHEN 'invited' THEN 'active' ELSE status END
             WHERE id = ?2",
            params![hash, id.0],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {id}")));
        }
        // Invitation links stop working once the account has a password.
        self.conn()?.execute(
            "UPDATE invitations SET expires_at = CASE WHEN expires_at < ?2 THEN expires_at ELSE ?2 END WHERE user_id = ?1 AND used_at IS NULL",
            params![id.0, crate::now()],
        )?;
        Ok(())
    }

    /// Marks a password as one-time: the user must change it at next login.
    pub fn set_must_change_password(&self, id: UserId, must: bool) -> Result<()> {
        self.conn()?.execute(
            "UPDATE users SET must_change_password = ?1 WHERE id = ?2",
            params![must, id.0],
        )?;
        Ok(())
    }

    /// Email notifications on or off for a user (invitations always go).
    pub fn set_notify(&self, id: UserId, notify: bool) -> Result<()> {
        self.conn()?.execute(
            "UPDATE users SET notify = ?1 WHERE id = ?2",
            params![notify, id.0],
        )?;
        Ok(())
    }

    pub fn set_role(&self, id: UserId, role: Role) -> Result<()> {
        self.conn()?.execute(
            "UPDATE users SET role = ?1 WHERE id = ?2",
            params![role.as_str(), id.0],
        )?;
        Ok(())
    }

    pub fn set_status(&self, id: UserId, status: UserStatus) -> Result<()> {
        self.conn()?.execute(
            "UPDATE users SET status = ?1 WHERE id = ?2",
            params![status.as_str(), id.0],
        )?;
        Ok(())
    }

    pub fn set_user_name(&self, id: UserId, name: &str) -> Result<()> {
        self.conn()?.execute(
            "UPDATE users SET name = ?1 WHERE id = ?2",
            params![name, id.0],
        )?;
        Ok(())
    }

    pub fn count_users(&self) -> Result<i64> {
        self.conn()?
            .query_row("SELECT count(*) FROM users", params![], |r| r.get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_and_verify() {
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            let u = s
                .create_user("Ann@Example.com", "Ann", Role::Admin, Some("correct horse"))
                .unwrap();
            assert_eq!(u.status, UserStatus::Active);
            assert!(
                s.verify_password("ann@example.com", "correct horse")
                    .unwrap()
                    .is_some()
            );
            assert!(
                s.verify_password("ann@example.com", "wrong password")
                    .unwrap()
                    .is_none()
            );
            assert!(
                s.verify_password("nobody@example.com", "correct horse")
                    .unwrap()
                    .is_none()
            );
            assert!(matches!(
                s.create_user("ann@example.com", "", Role::Employee, None),
                Err(StoreError::Conflict(_))
            ));
            s.set_status(u.id, UserStatus::Disabled).unwrap();
            assert!(
                s.verify_password("ann@example.com", "correct horse")
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn invited_users_activate_with_a_password() {
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            let u = s
                .create_user("bob@example.com", "Bob", Role::Collaborator, None)
                .unwrap();
            assert_eq!(u.status, UserStatus::Invited);
            assert!(s.verify_password("bob@example.com", "").unwrap().is_none());
            s.set_password(u.id, "a new password").unwrap();
            assert_eq!(s.user(u.id).unwrap().status, UserStatus::Active);
        }
    }

    #[test]
    fn a_service_account_is_active_and_has_no_password() {
        for s in crate::testing::databases() {
            eprintln!("on {}", s.engine());
            let u = s
                .create_service_account("ftrack@example.com", "ftrack", Role::Employee)
                .unwrap();
            assert_eq!(
                (u.status, u.kind),
                (UserStatus::Active, AccountKind::Service)
            );
            assert!(
                s.verify_password("ftrack@example.com", "")
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn refuses_bad_emails() {
        for bad in [
            "",
            "a",
            "a@",
            "@b.c",
            "a b@c.d",
            "a@b.c,d@e.f",
            "a@b.c\r\nBcc: x@y.z",
            "<a@b.c>",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
        assert!(check_email("first.last+tag@sub.example.com").is_ok());
    }
}
