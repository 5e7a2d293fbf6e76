//! The shape of an email address, checked before it becomes an account or
//! a mail header.

/// Not an address Ferry will keep or write into a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid email address")]
pub struct BadEmail(pub String);

/// One `@`, a local part and a domain with a dot (or `localhost`), no
/// whitespace, commas, angle brackets, quotes or control characters (which
/// could split a header or smuggle a second recipient), at most 254 bytes.
pub fn check(email: &str) -> Result<(), BadEmail> {
    let bad = || BadEmail(email.to_owned());
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let forbidden = |c: char| {
        c.is_whitespace() || c.is_control() || matches!(c, ',' | '<' | '>' | '@' | '"' | ';' | '\\')
    };
    if local.is_empty()
        || domain.is_empty()
        || !domain.contains('.') && domain != "localhost"
        || email.len() > 254
        || local.chars().any(forbidden)
        || domain.chars().any(forbidden)
    {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_could_split_a_header_are_refused() {
        assert!(check("ann@example.com").is_ok());
        assert!(check("admin@localhost").is_ok());
        for bad in [
            "ann",
            "@example.com",
            "ann@",
            "ann@example",
            "a b@example.com",
            "ann@example.com\r\nBcc: x@y.z",
            "ann@example.com,bob@example.com",
            "<ann@example.com>",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }
}
