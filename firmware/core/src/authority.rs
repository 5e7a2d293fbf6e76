//! Who asks for an admin's act: a signed-in admin, or the operator at the
//! appliance itself (`ferryd admin`, run by root with the database), who
//! holds every right there. Services that do admins' work take a [`By`]
//! and ask the rulebook through it, so the console is not a second set of
//! rules but one more kind of caller.

use ferry_domain::rules::{self, Refusal};
use ferry_store::User;

#[derive(Debug, Clone, Copy)]
pub enum By<'a> {
    User(&'a User),
    /// The operator at the appliance's console.
    Operator,
}

impl<'a> By<'a> {
    /// Admins' work: refused to anyone but an admin or the operator.
    pub fn admin(&self, what: &str) -> Result<(), Refusal> {
        match self {
            By::User(u) => rules::admin(&u.caller(), what),
            By::Operator => Ok(()),
        }
    }

    /// Work on `owner`'s own things (their keys): the owner, an admin, or
    /// the operator.
    pub fn owner_or_admin(&self, owner: ferry_domain::UserId, what: &str) -> Result<(), Refusal> {
        match self {
            By::User(u) if u.id == owner => Ok(()),
            other => other.admin(what),
        }
    }

    pub fn user(&self) -> Option<&'a User> {
        match self {
            By::User(u) => Some(u),
            By::Operator => None,
        }
    }

    /// The name people see for who did it.
    pub fn name(&self) -> &str {
        match self {
            By::User(u) => &u.email,
            By::Operator => "the appliance's operator",
        }
    }
}
