//! Errors in words a producer understands, with what to do next. The CLI
//! prints the library's message, which is written for people who run
//! commands; a window owes its users one step more: who to ask, and what
//! to ask for. Never a stack trace.

use ferry_api::codes;
use ferry_client::ClientError;
use ferry_engine::{ConnectError, EngineError};

/// The host name of an appliance URL, for sentences.
fn host(server: &str) -> &str {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let rest = rest.split('/').next().unwrap_or(rest);
    match rest.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => rest,
    }
}

/// What to tell the person at the window about `e`, which happened while
/// talking to `server`.
pub fn in_words(e: &ClientError, server: &str) -> String {
    let host = host(server);
    match e {
        ClientError::Unreachable { .. } => format!(
            "Ferry cannot reach {host}. Check the address, and that this computer is on a network \
             that can reach it (a VPN may be needed)."
        ),
        ClientError::Fingerprint(_) => format!(
            "The appliance at {host} shows a different certificate from the one this computer \
             trusted. Do not go on: ask the facility's IT whether the appliance's certificate \
             was changed."
        ),
        ClientError::Api { code, message, .. } => match code.as_str() {
            codes::BAD_CREDENTIALS => "The email or password is not right.".to_owned(),
            codes::BAD_API_KEY => {
                format!("This computer's sign-in to {host} is no longer valid: sign in again.")
            }
            codes::RATE_LIMITED => "Too many attempts: wait a minute, then try again.".to_owned(),
            codes::PASSWORD_CHANGE_REQUIRED => {
                "Your password was for the first sign-in only: sign in again to choose your own."
                    .to_owned()
            }
            codes::FORBIDDEN => format!("Your account may not do that: {message}"),
            codes::NO_PORTS => {
                format!("{host} is busy with other transfers: Ferry tries again in a moment.")
            }
            _ => capitalise(message),
        },
        ClientError::Engine(EngineError::NoSpace { path }) => format!(
            "The disk is full where {path} is being saved. Free some space: the transfer carries \
             on from where it stopped."
        ),
        ClientError::Engine(EngineError::Connect(ConnectError::Unreachable { addr, .. })) => {
            let port = format!("port {}", addr.port());
            format!(
                "UDP {port} on {host} is not reachable from this network: ask the facility's IT \
                 to forward the appliance's UDP transfer ports (45190–45210 unless they changed \
                 them)."
            )
        }
        ClientError::Engine(EngineError::Connection(_)) => format!(
            "The connection to {host} was lost. Ferry tries again by itself; nothing already \
             received is sent twice."
        ),
        other => capitalise(&other.to_string()),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_udp_port_says_what_to_ask_it_for() {
        let e = ClientError::Engine(EngineError::Connect(ConnectError::Unreachable {
            addr: "10.0.0.5:45195".parse().unwrap(),
            secs: 10,
            hint: Box::default(),
            greeted: false,
        }));
        assert_eq!(
            in_words(&e, "https://ferry.company.com:443"),
            "UDP port 45195 on ferry.company.com is not reachable from this network: ask the \
             facility's IT to forward the appliance's UDP transfer ports (45190–45210 unless \
             they changed them)."
        );
    }

    #[test]
    fn the_others_say_what_to_do() {
        let api = |code: &str| ClientError::Api {
            status: 401,
            code: code.into(),
            message: "x".into(),
        };
        assert_eq!(
            in_words(&api("bad_credentials"), "https://f.example"),
            "The email or password is not right."
        );
        assert!(in_words(&api("bad_api_key"), "https://f.example:8443").contains("f.example"));
        let e = ClientError::Unreachable {
            server: "https://f.example".into(),
            detail: "connection refused".into(),
        };
        assert!(in_words(&e, "https://f.example").starts_with("Ferry cannot reach f.example."));
        let e = ClientError::Engine(EngineError::NoSpace {
            path: "/Users/d/Review".into(),
        });
        assert!(in_words(&e, "https://f.example").contains("Free some space"));
        let e = ClientError::Invalid("no share named x".into());
        assert_eq!(in_words(&e, ""), "No share named x");
    }
}
