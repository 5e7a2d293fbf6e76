//! The one password policy: the web admin, the REST API, `ferry login` and
//! `ferryd admin` all check a new password here.
//!
//! At least 12 characters, and not guessable: zxcvbn estimates the guesses
//! an attacker with the common-password lists, keyboard patterns, dates and
//! the user's own address would need, and anything within a million is
//! refused. That refuses every common password (and its l33t and
//! capitalised variants) without keeping a list of our own.

/// Fewer characters are refused whatever they are.
pub const MIN_CHARS: usize = 12;
/// More are refused too: nobody types them, and hashing them is a cost an
/// attacker chooses.
pub const MAX_CHARS: usize = 256;

/// Why a password is refused, in words for the person choosing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    #[error("a password has at least {MIN_CHARS} characters (this one has {0})")]
    TooShort(usize),
    #[error("a password has at most {MAX_CHARS} characters")]
    TooLong,
    #[error("this password is too easy to guess ({0}); choose a few unrelated words")]
    Guessable(String),
}

/// Checks a new password; `personal` are words of the account (its email
/// address, its name) that must not carry the password.
pub fn check(password: &str, personal: &[&str]) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(PasswordError::TooShort(chars));
    }
    if chars > MAX_CHARS {
        return Err(PasswordError::TooLong);
    }
    // The parts of an address are what a guesser tries first.
    let mut words: Vec<&str> = Vec::new();
    for p in personal {
        words.push(p);
        words.extend(
            p.split(['@', '.', '-', '_', '+', ' '])
                .filter(|w| w.len() > 2),
        );
    }
    let estimate = zxcvbn::zxcvbn(password, &words);
    if u8::from(estimate.score()) < 2 {
        let why = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| w.to_string().trim_end_matches('.').to_lowercase())
            .unwrap_or_else(|| "it is within a million guesses".to_owned());
        return Err(PasswordError::Guessable(why));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_common_and_personal_passwords_are_refused() {
        assert_eq!(check("12345678", &[]), Err(PasswordError::TooShort(8)));
        for common in [
            "password1234",
            "123456789012",
            "qwertyuiop12",
            "aaaaaaaaaaaa",
            "Password1234!",
        ] {
            assert!(
                matches!(check(common, &[]), Err(PasswordError::Guessable(_))),
                "{common} passed"
            );
        }
        assert!(check("ann.smith@example.com", &["ann.smith@example.com"]).is_err());
        assert!(check("smithexample", &["ann.smith@example.com"]).is_err());
        assert!(check(&"x".repeat(300), &[]).is_err());
    }

    #[test]
    fn long_unrelated_words_pass() {
        for good in [
            "correct horse battery staple",
            "sunlit-ferry-crossing-42",
            "Vq8#mZ2!pL0w",
        ] {
            assert_eq!(check(good, &["ann@example.com"]), Ok(()), "{good}");
        }
    }
}
