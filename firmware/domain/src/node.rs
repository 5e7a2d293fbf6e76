//! The appliance's nodes: each ferryd that serves one database, and what
//! its record says about it.
//!
//! A node writes a heartbeat (when it was last seen, how many sessions it
//! carries) every [`HEARTBEAT`]. One that has not written for
//! [`SILENT_AFTER`] is taken for dead: killed, cut off, or its host down.
//! An admin may drain a node: its running sessions finish, and it grants
//! no new ones, so its clients move to another address of the appliance
//! (or wait, for a single box) before it is stopped.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::status::UnknownValue;

/// How often a node writes its heartbeat, in seconds.
pub const HEARTBEAT: i64 = 10;

/// A node silent this long (three heartbeats missed) counts as dead.
pub const SILENT_AFTER: i64 = 3 * HEARTBEAT;

word_enum!(
    /// What a node's record says about it.
    Health, "node health" {
        /// Seen lately, and granting sessions.
        Up = "up",
        /// Seen lately; finishing what it carries and granting nothing new.
        Draining = "draining",
        /// Not seen for [`SILENT_AFTER`] seconds.
        Silent = "silent",
    }
);

word_enum!(
    /// The work that must run on one node at a time, whichever: the
    /// others stand by, and one takes over within [`SILENT_AFTER`] of its
    /// holder's last heartbeat. (The bandwidth schedule is not one: each
    /// node paces the sessions it carries.)
    Singleton, "singleton task" {
        /// Sends the outbox: one sender, so no message goes twice.
        Mailer = "mailer",
        /// Sends reminders and retires expired deliveries.
        Janitor = "janitor",
        /// Follows the watch folders: one watcher, so no entry is
        /// delivered twice.
        Watches = "watches",
        /// Orders the certificate from the ACME CA when it falls due:
        /// one order for the appliance, which the other nodes then serve.
        Certificate = "certificate",
    }
);

/// A node's health at `now` (Unix seconds), from when it was last seen and
/// whether it is draining. A silent node is silent whether drained or not:
/// what it carried has stopped either way.
pub fn health(seen_at: i64, draining: bool, now: i64) -> Health {
    if now - seen_at >= SILENT_AFTER {
        Health::Silent
    } else if draining {
        Health::Draining
    } else {
        Health::Up
    }
}

/// Whether a node should turn a new session away, so that its client
/// goes to another of the appliance's addresses: it carries as many
/// sessions as it takes (`takes`), and another node is up with room by
/// its last heartbeat (`others`: each one's health and sessions; every
/// node is taken to have the same limit). A node alone, or among nodes
/// as full as itself, keeps the client: the admission's own refusal then
/// tells it when to try again, as on a single box.
pub fn pass_on(
    carrying: usize,
    takes: usize,
    others: impl IntoIterator<Item = (Health, usize)>,
) -> bool {
    carrying >= takes
        && others
            .into_iter()
            .any(|(health, sessions)| health == Health::Up && sessions < takes)
}

/// A node's name: what `--node-name` gives, else the host's name. Short,
/// printable and without spaces, since admins type it (`node drain NAME`).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "node name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_node_passes_sessions_on_only_to_a_node_with_room() {
        use Health::*;
        assert!(pass_on(4, 4, [(Up, 3)]), "full, and another has room");
        assert!(!pass_on(3, 4, [(Up, 0)]), "not full");
        assert!(!pass_on(4, 4, []), "alone");
        assert!(!pass_on(4, 4, [(Up, 4)]), "the other is as full");
        assert!(
            !pass_on(5, 4, [(Draining, 0), (Silent, 0)]),
            "no node takes it"
        );
        assert!(pass_on(5, 4, [(Silent, 0), (Up, 1)]));
    }

    #[test]
    fn a_node_is_up_draining_or_silent_by_its_heartbeat() {
        assert_eq!(health(100, false, 100), Health::Up);
        assert_eq!(health(100, false, 100 + SILENT_AFTER - 1), Health::Up);
        assert_eq!(health(100, true, 110), Health::Draining);
        assert_eq!(health(100, false, 100 + SILENT_AFTER), Health::Silent);
        assert_eq!(health(100, true, 100 + SILENT_AFTER), Health::Silent);
        assert_eq!("draining".parse(), Ok(Health::Draining));
    }

    #[test]
    fn node_names_are_short_words() {
        assert!(check_name("ferry-a.dmz_1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("node a").is_err());
        assert!(check_name(&"n".repeat(65)).is_err());
    }
}
