//! Web admin sessions: a browser's login. The cookie holds a random token;
//! only its BLAKE3 hash is stored (a stolen database opens no session), next
//! to the session's CSRF token and its two expiries: an absolute one, and
//! an idle one renewed as the browser is used.

use crate::db::{Optional, params};

use ferry_domain::{UserId, UserStatus};

use crate::users::{USER_COLUMNS_U, User, user_from_row};
use crate::{Database, Result, now, random_hex};

/// A live session, found from its cookie.
#[derive(Clone, Debug)]
pub struct WebSession {
    pub user: User,
    /// The token every state-changing form must carry.
    pub csrf: String,
    pub expires_at: i64,
}

/// A session just made: the cookie value is shown to the browser once.
#[derive(Clone, Debug)]
pub struct NewWebSession {
    pub token: String,
    pub csrf: String,
    pub expires_at: i64,
}

fn token_hash(token: &str) -> Vec<u8> {
    blake3::hash(token.as_bytes()).as_bytes().to_vec()
}

impl Database {
    /// Starts a session for `user` that lasts at most `lifetime_secs`.
    pub fn create_web_session(&self, user: UserId, lifetime_secs: i64) -> Result<NewWebSession> {
        let token = random_hex(32);
        let csrf = random_hex(32);
        let t = now();
        let expires_at = t + lifetime_secs;
        self.conn()?.execute(
            "INSERT INTO web_sessions (token_hash, user_id, csrf, created_at, last_seen_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            params![token_hash(&token), user.0, csrf, t, expires_at],
        )?;
        Ok(NewWebSession {
            token,
            csrf,
            expires_at,
        })
    }

    /// The session behind a cookie, when it is known, neither expired nor
    /// idle for more than `idle_secs`, and its user is active. Using it
    /// renews the idle deadline.
    pub fn web_session(&self, token: &str, idle_secs: i64) -> Result<Option<WebSession>> {
        let t = now();
        let conn = self.conn()?;
        let found = conn
            .query_row(
                &format!(
                    "SELECT {USER_COLUMNS_U}, s.csrf, s.expires_at FROM web_sessions s
                     JOIN users u ON u.id = s.user_id
                     WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND s.last_seen_at > ?2 - ?3"
                ),
                params![token_hash(token), t, idle_secs],
                |r| {
                    Ok((
                        user_from_row(r)?,
                        r.get::<_, String>(9)?,
                        r.get::<_, i64>(10)?,
                    ))
                },
            )
            .optional()?;
        let Some((user, csrf, expires_at)) = found else {
            return Ok(None);
        };
        if user.status != UserStatus::Active {
            return Ok(None);
        }
        // Renewed at most once a minute: a page load need not be a write.
        conn.execute(
            "UPDATE web_sessions SET last_seen_at = ?2 WHERE token_hash = ?1 AND last_seen_at < ?2 - 60",
            params![token_hash(token), t],
        )?;
        Ok(Some(WebSession {
            user,
            csrf,
            expires_at,
        }))
    }

    /// Whether a session still holds (known, unexpired, user active),
    /// without renewing it: for a page that stays open, such as a live
    /// stream, which must not keep the session alive by itself.
    pub fn web_session_alive(&self, token: &str, idle_secs: i64) -> Result<bool> {
        let t = now();
        let alive: Option<i64> = self
            .conn()?
            .query_row(
                "SELECT 1 FROM web_sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND s.last_seen_at > ?2 - ?3
                   AND u.status = 'active'",
                params![token_hash(token), t, idle_secs],
                |r| r.get(0),
            )
            .optional()?;
        Ok(alive.is_some())
    }

    /// Logs a browser out.
    pub fn end_web_session(&self, token: &str) -> Result<()> {
        self.conn()?.execute(
            "DELETE FROM web_sessions WHERE token_hash = ?1",
            params![token_hash(token)],
        )?;
        Ok(())
    }

    /// Logs a user out everywhere (disabled, password reset).
    pub fn end_web_sessions_of(&self, user: UserId) -> Result<usize> {
        self.conn()?.execute(
            "DELETE FROM web_sessions WHERE user_id = ?1",
            params![user.0],
        )
    }

    /// Forgets expired sessions; returns how many.
    pub fn sweep_web_sessions(&self, idle_secs: i64) -> Result<usize> {
        self.conn()?.execute(
            "DELETE FROM web_sessions WHERE expires_at <= ?1 OR last_seen_at <= ?1 - ?2",
            params![now(), idle_secs],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    #[test]
    fn a_session_is_found_by_its_token_only_while_it_lives() {
        for store in crate::testing::databases() {
            eprintln!("on {}", store.engine());
            let ann = store
                .create_user("ann@example.com", "", Role::Admin, Some("a long password"))
                .unwrap();
            let s = store.create_web_session(ann.id, 3600).unwrap();
            let found = store.web_session(&s.token, 600).unwrap().unwrap();
            assert_eq!(found.user.id, ann.id);
            assert_eq!(found.csrf, s.csrf);
            assert!(store.web_session("not-the-token", 600).unwrap().is_none());

            // Expired sessions are not found, and are swept.
            let old = store.create_web_session(ann.id, -1).unwrap();
            assert!(store.web_session(&old.token, 600).unwrap().is_none());
            assert_eq!(store.sweep_web_sessions(600).unwrap(), 1);

            // Disabling the user closes the session at once.
            store.set_status(ann.id, UserStatus::Disabled).unwrap();
            assert!(store.web_session(&s.token, 600).unwrap().is_none());
            store.set_status(ann.id, UserStatus::Active).unwrap();
            assert!(store.web_session_alive(&s.token, 600).unwrap());
            store.end_web_session(&s.token).unwrap();
            assert!(store.web_session(&s.token, 600).unwrap().is_none());
            assert!(!store.web_session_alive(&s.token, 600).unwrap());
        }
    }

    #[test]
    fn the_database_holds_no_usable_token() {
        for store in crate::testing::databases() {
            eprintln!("on {}", store.engine());
            let ann = store
                .create_user("ann@example.com", "", Role::Admin, Some("a long password"))
                .unwrap();
            let s = store.create_web_session(ann.id, 3600).unwrap();
            let stored: Vec<u8> = store
                .conn()
                .unwrap()
                .query_row("SELECT token_hash FROM web_sessions", params![], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_ne!(stored, s.token.as_bytes());
            assert_eq!(stored, token_hash(&s.token));
        }
    }
}
