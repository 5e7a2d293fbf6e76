//! Typed identities and states: what a job, a task and a user can be.
//!
//! These are the words every layer shares: the store keeps them as text,
//! the REST API sends them as lowercase strings (serde), and the clients
//! match on the enums, never on the strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A value read from outside (a query, a database row) that names no
/// state of this kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (one of: {allowed})")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub allowed: &'static str,
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A user (a person or a service account).
    UserId
);
id_type!(
    /// A job: one transfer of a set of files between two parties.
    JobId
);
id_type!(
    /// A delivery: files sent once, to one or more recipients.
    DeliveryId
);
id_type!(
    /// A root share or a share beneath one.
    ShareId
);
id_type!(
    /// One file of a job.
    TaskId
);

/// An enum whose values travel as lowercase words: `as_str`, `FromStr`,
/// `Display`, serde and (for the OpenAPI document) a schema, from one
/// list, so the word and the variant can never drift apart.
macro_rules! word_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownValue {
                        what: $what,
                        value: s.to_owned(),
                        allowed: concat!($($word, " "),+).trim_ascii_end(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

word_enum!(
    /// Which way a job moves files. `put` and `get` are direct client
    /// transfers; `upload` and `download` belong to deliveries.
    JobKind, "job kind" {
        /// A delivery's files from its sender to the appliance.
        Upload = "upload",
        /// A delivery's files from the appliance to one recipient.
        Download = "download",
        /// Files from a client into a share.
        Put = "put",
        /// Files of a share to a client.
        Get = "get",
    }
);

impl JobKind {
    /// Part of a delivery (as opposed to a direct put or get).
    pub fn is_delivery(self) -> bool {
        matches!(self, JobKind::Upload | JobKind::Download)
    }
}

word_enum!(
    /// `queued → running → done`, with `paused`, `failed` and `aborted`.
    JobStatus, "job status" {
        Queued = "queued",
        Running = "running",
        Paused = "paused",
        /// A direct put or get whose client went away mid-transfer: what
        /// arrived is kept, and the same command run again continues it.
        Interrupted = "interrupted",
        /// Retried with back-off while retries remain, then left failed.
        Failed = "failed",
        Aborted = "aborted",
        Done = "done",
    }
);

impl JobStatus {
    /// Finished jobs drop out of default listings.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Done | JobStatus::Aborted | JobStatus::Failed
        )
    }
}

word_enum!(
    /// One file of a job.
    TaskStatus, "task status" {
        Queued = "queued",
        Running = "running",
        Done = "done",
        Failed = "failed",
        /// Taken out of its job; kept as the record of what was planned.
        Excluded = "excluded",
    }
);

impl TaskStatus {
    /// Orders statuses from least to most advanced, for a line's summary
    /// (a sequence is as far as its least advanced frame).
    pub fn rank(self) -> u8 {
        match self {
            TaskStatus::Failed => 0,
            TaskStatus::Queued => 1,
            TaskStatus::Running => 2,
            TaskStatus::Done => 3,
            TaskStatus::Excluded => 4,
        }
    }
}

word_enum!(
    /// What a user may do. Admins run the appliance; employees send and see
    /// their own deliveries and granted shares; collaborators receive.
    Role, "role" {
        Admin = "admin",
        Employee = "employee",
        Collaborator = "collaborator",
    }
);

impl Role {
    /// The facility's own people (who may send, and see the web admin).
    pub fn is_staff(self) -> bool {
        matches!(self, Role::Admin | Role::Employee)
    }
}

word_enum!(
    /// Where an account stands.
    UserStatus, "user status" {
        /// Created by an invitation; no password yet.
        Invited = "invited",
        Active = "active",
        Disabled = "disabled",
    }
);

word_enum!(
    /// Whether an account is a person's or a program's.
    AccountKind, "account kind" {
        /// Logs in with a password (web, `ferry login`) or keys.
        Person = "person",
        /// Automation (an ftrack action, a render farm's hook): keys only,
        /// never a password or a web login.
        Service = "service",
    }
);

word_enum!(
    /// How a job stands to someone who may act on it, ordered by authority:
    /// a hold or a cap set by a party binds every party below it.
    Party, "party" {
        /// The person a download job delivers to.
        Recipient = "recipient",
        /// The job's owner: who sent the delivery, or ran the put or get.
        Sender = "sender",
        Admin = "admin",
    }
);

impl Party {
    fn rank(self) -> u8 {
        match self {
            Party::Recipient => 0,
            Party::Sender => 1,
            Party::Admin => 2,
        }
    }

    /// True when this party's word may undo what `other` decided.
    pub fn outranks_or_equals(self, other: Party) -> bool {
        self.rank() >= other.rank()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_ones_are_named() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), *s);
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        let e = "stuck".parse::<JobStatus>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown job status \"stuck\" (one of: queued running paused interrupted failed aborted done)"
        );
        assert_eq!("collaborator".parse::<Role>().unwrap(), Role::Collaborator);
        assert_eq!(serde_json::to_string(&UserId(7)).unwrap(), "7");
    }

    #[test]
    fn parties_are_ordered_by_authority() {
        assert!(Party::Admin.outranks_or_equals(Party::Sender));
        assert!(Party::Sender.outranks_or_equals(Party::Sender));
        assert!(!Party::Recipient.outranks_or_equals(Party::Sender));
    }
}
