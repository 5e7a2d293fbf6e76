//! Sending a composed message over SMTP (lettre, async, rustls).
//!
//! The URL says how: `smtp://host:port` (plain, upgraded with STARTTLS when
//! the URL says `?tls=required` or `?tls=opportunistic`), `smtps://host:port`
//! (implicit TLS). Failures are sorted into temporary ones (the server is
//! down or busy: try again later) and permanent ones (it refused the
//! recipient: trying again will not help).

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Where and as whom to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The From address (`Ferry <ferry@example.com>` or a bare address).
    pub from: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("SMTP URL {url:?}: {why}")]
    Url { url: String, why: String },
    #[error("from address {0:?} is not a valid address")]
    From(String),
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("recipient {0:?} is not a valid address")]
    Address(String),
    #[error("cannot build the message: {0}")]
    Build(String),
    /// Worth trying again later.
    #[error("{0}")]
    Temporary(String),
    /// The server refused it for good.
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    pub fn is_temporary(&self) -> bool {
        matches!(self, SendError::Temporary(_))
    }
}

/// A connection pool to one SMTP server.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Call within a tokio runtime (the connection pool lives on it).
    pub fn new(c: &SmtpConfig) -> Result<Self, ConfigError> {
        let from: Mailbox = c
            .from
            .parse()
            .map_err(|_| ConfigError::From(c.from.clone()))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&c.url).map_err(|e| {
            ConfigError::Url {
                url: c.url.clone(),
                why: e.to_string(),
            }
        })?;
        if let (Some(user), Some(password)) = (&c.user, &c.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let transport = builder.timeout(Some(Duration::from_secs(30))).build();
        Ok(Mailer { transport, from })
    }

    /// Sends one message (plain text with an HTML alternative) to one
    /// recipient with a fixed Message-ID, so a message sent again after a
    /// crash can be recognised as the same.
    pub async fn send(
        &self,
        to: &str,
        message_id: &str,
        subject: &str,
        text: &str,
        html: &str,
    ) -> Result<(), SendError> {
        let to_box: Mailbox = to.parse().map_err(|_| SendError::Address(to.to_owned()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(crate::compose::single_line(subject))
            .message_id(Some(message_id.to_owned()))
            .multipart(MultiPart::alternative_plain_html(
                text.to_owned(),
                html.to_owned(),
            ))
            .map_err(|e| SendError::Build(e.to_string()))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Err(e) => Err(SendError::Temporary(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, from: &str) -> SmtpConfig {
        SmtpConfig {
            url: url.into(),
            user: None,
            password: None,
            from: from.into(),
        }
    }

    #[tokio::test]
    async fn bad_settings_are_named() {
        assert!(
            Mailer::new(&config(
                "smtp://127.0.0.1:2525",
                "Ferry <ferry@example.com>"
            ))
            .is_ok()
        );
        assert!(Mailer::new(&config("smtps://mail.example.com:465", "ferry@example.com")).is_ok());
        let e = Mailer::new(&config("gopher://x", "ferry@example.com")).unwrap_err();
        assert!(e.to_string().contains("SMTP URL"), "{e}");
        let e = Mailer::new(&config("smtp://127.0.0.1:25", "not an address")).unwrap_err();
        assert!(e.to_string().contains("from address"), "{e}");
    }

    #[tokio::test]
    async fn an_address_with_a_comma_is_refused() {
        let m = Mailer::new(&config("smtp://127.0.0.1:9", "ferry@example.com")).unwrap();
        let c = crate::compose::Mail::Progress {
            delivery: crate::compose::DeliveryFacts {
                name: "x".into(),
                sender: "a@example.com".into(),
                files: vec![],
                total: 0,
                expires_at: 0,
            },
            percent: 50,
        }
        .compose();
        let e = m
            .send(
                "a@example.com, b@example.com",
                "<1@example.com>",
                &c.subject,
                &c.text,
                &c.html,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Address(_)), "{e}");
        // Nothing listens on port 9: a temporary failure, tried again later.
        let e = m
            .send(
                "a@example.com",
                "<1@example.com>",
                &c.subject,
                &c.text,
                &c.html,
            )
            .await
            .unwrap_err();
        assert!(e.is_temporary(), "{e}");
    }
}
