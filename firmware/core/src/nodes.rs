//! This ferryd as one node of the appliance, and the others it shares the
//! database with: heartbeats, draining, and the list admins read.
//!
//! A single box is a one-node appliance: it has a name (the host's, unless
//! `--node-name` gives one), beats, and may be drained before maintenance
//! like any node. What a record means is the domain's rule
//! ([`ferry_domain::node::health`]), with this service's clock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use ferry_domain::AuditAction;
use ferry_domain::node::{self, Health, Singleton};
use ferry_domain::rules::Refusal;
use ferry_store::{Heartbeat, Node, Store, StoreError};

use crate::audit::{Actor, Audit};
use crate::authority::By;
use crate::clock::Clock;
use crate::failing;

/// Why a node could not do or be told something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodesError {
    /// This node is draining: it grants no new sessions.
    #[error(
        "node {0} is draining: its running transfers finish, and new ones go to another of the appliance's addresses"
    )]
    Draining(String),
    /// This node is full and another has room ([`node::pass_on`]).
    #[error(
        "node {name} carries {carrying} transfers, the most it takes; another of the appliance's nodes has room"
    )]
    Busy { name: String, carrying: usize },
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

failing!(NodesError {
    NodesError::Draining(_) => (Unavailable, NODE_DRAINING),
    NodesError::Busy { .. } => (Unavailable, NODE_BUSY),
    NodesError::Refused(r) => (r.failure(), r.code()),
    NodesError::Store(e) => (e.failure(), e.code()),
});

/// A node as admins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub node: Node,
    pub health: Health,
    /// This is the node answering.
    pub this: bool,
}

/// This node's identity and the store the nodes share.
#[derive(Clone, Debug)]
pub struct Nodes {
    store: Arc<dyn Store>,
    audit: Audit,
    clock: Arc<dyn Clock>,
    me: Arc<Heartbeat>,
    /// The tasks this node held when it last asked, to log a change.
    held: Arc<Mutex<HashSet<Singleton>>>,
}

impl Nodes {
    /// This node: `name` (checked), reached at `address`, started now.
    pub fn new(
        store: Arc<dyn Store>,
        audit: Audit,
        clock: Arc<dyn Clock>,
        name: String,
        address: String,
    ) -> Self {
        let started_at = clock.now();
        Nodes {
            store,
            audit,
            clock,
            me: Arc::new(Heartbeat {
                name,
                address,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at,
                sessions: 0,
            }),
            held: Arc::default(),
        }
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.me.name
    }

    /// Writes this node's heartbeat, with the sessions it carries now.
    pub async fn beat(&self, sessions: usize) -> Result<Node, StoreError> {
        let beat = Heartbeat {
            sessions: sessions as i64,
            ..(*self.me).clone()
        };
        self.store.node_heartbeat(&beat, self.clock.now()).await
    }

    /// Whether this node runs `task` now, taking it if it is free: asked
    /// before each round of the task's work. A store that cannot answer
    /// counts as no: better a round missed than one run twice.
    pub async fn hold(&self, task: Singleton) -> bool {
        let holds = match self
            .store
            .hold_singleton(task.as_str(), &self.me.name, self.clock.now())
            .await
        {
            Ok(h) => h,
            Err(e) => {
                log::warn!("cannot tell whether this node runs the {task}: {e}");
                false
            }
        };
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let changed = if holds {
            held.insert(task)
        } else {
            held.remove(&task)
        };
        if changed {
            match holds {
                true => log::info!("node {} now runs the {task}", self.me.name),
                false => log::info!("node {} no longer runs the {task}", self.me.name),
            }
        }
        holds
    }

    /// Which node holds (or last held) each task. A task this version
    /// does not know (written by a newer node) is left out, and logged.
    pub async fn holders(&self) -> Result<Vec<(Singleton, String)>, StoreError> {
        Ok(self
            .store
            .singletons()
            .await?
            .into_iter()
            .filter_map(|(task, node)| match task.parse() {
                Ok(t) => Some((t, node)),
                Err(e) => {
                    log::warn!("node {node} runs a task this version does not know: {e}");
                    None
                }
            })
            .collect())
    }

    /// Refused while this node is draining, or while it carries
    /// `carrying` sessions of the `takes` it takes and another node has
    /// room ([`node::pass_on`]): asked before a session is granted. It
    /// reads the store each time, so a drain from `ferryd admin` (another
    /// process) holds from the next grant.
    pub async fn check_granting(&self, carrying: usize, takes: usize) -> Result<(), NodesError> {
        let now = self.clock.now();
        let nodes = self.store.nodes().await?;
        let (me, others): (Vec<&Node>, Vec<&Node>) =
            nodes.iter().partition(|n| n.name == self.me.name);
        if let Some(n) = me.first().filter(|n| n.draining) {
            return Err(NodesError::Draining(n.name.clone()));
        }
        let others = others.iter().map(|n| {
            let sessions = usize::try_from(n.sessions).unwrap_or(usize::MAX);
            (node::health(n.seen_at, n.draining, now), sessions)
        });
        if node::pass_on(carrying, takes, others) {
            return Err(NodesError::Busy {
                name: self.me.name.clone(),
                carrying,
            });
        }
        Ok(())
    }

    /// Every node, with its health now (admins).
    pub async fn list(&self, by: By<'_>) -> Result<Vec<NodeView>, NodesError> {
        by.admin("listing the appliance's nodes")?;
        let now = self.clock.now();
        Ok(self
            .store
            .nodes()
            .await?
            .into_iter()
            .map(|n| NodeView {
                health: node::health(n.seen_at, n.draining, now),
                this: n.name == self.me.name,
                node: n,
            })
            .collect())
    }

    /// Drains node `name`, or lets it take sessions again (admins).
    pub async fn set_draining(
        &self,
        by: By<'_>,
        who: Actor,
        name: &str,
        draining: bool,
    ) -> Result<(), NodesError> {
        by.admin("draining a node")?;
        self.store.set_node_draining(name, draining).await?;
        let action = if draining {
            AuditAction::NodeDrain
        } else {
            AuditAction::NodeResume
        };
        self.audit.record(who.line(action, name)).await?;
        Ok(())
    }

    /// Forgets node `name`'s record (admins): one taken out for good.
    pub async fn forget(&self, by: By<'_>, who: Actor, name: &str) -> Result<(), NodesError> {
        by.admin("forgetting a node")?;
        self.store.forget_node(name).await?;
        self.audit
            .record(who.line(AuditAction::NodeForget, name))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use ferry_store::SqlStore;

    /// Nodes `a` and `b` on one store, with a clock the test moves.
    fn two_nodes() -> (Nodes, Nodes, Arc<ManualClock>, Audit) {
        let store: Arc<dyn Store> = Arc::new(SqlStore::open_in_memory().unwrap());
        let audit = Audit::new(store.clone());
        let clock = Arc::new(ManualClock::new(1000));
        let node = |name: &str| {
            Nodes::new(
                store.clone(),
                audit.clone(),
                clock.clone(),
                name.into(),
                format!("{name}:8443"),
            )
        };
        (node("a"), node("b"), clock, audit)
    }

    #[tokio::test]
    async fn a_drained_node_grants_nothing_and_a_silent_one_shows_as_such() {
        let (a, b, clock, audit) = two_nodes();
        a.beat(2).await.unwrap();
        b.beat(0).await.unwrap();
        a.check_granting(0, 10).await.unwrap();

        b.set_draining(By::Operator, Actor::appliance(), "a", true)
            .await
            .unwrap();
        let refused = a.check_granting(0, 10).await.unwrap_err();
        assert!(matches!(&refused, NodesError::Draining(n) if n == "a"));
        assert_eq!(
            crate::Failing::code(&refused),
            ferry_api::codes::NODE_DRAINING
        );
        b.check_granting(0, 10).await.unwrap();

        clock.advance(node::SILENT_AFTER);
        b.beat(1).await.unwrap();
        let seen: Vec<(String, Health, bool)> = b
            .list(By::Operator)
            .await
            .unwrap()
            .into_iter()
            .map(|v| (v.node.name, v.health, v.this))
            .collect();
        assert_eq!(
            seen,
            [
                ("a".to_owned(), Health::Silent, false),
                ("b".to_owned(), Health::Up, true)
            ]
        );
        b.set_draining(By::Operator, Actor::appliance(), "a", false)
            .await
            .unwrap();
        a.check_granting(0, 10).await.unwrap();
        let lines = audit.list(10, None, Some("node.")).await.unwrap();
        assert_eq!(lines.len(), 2);
    }

    #[tokio::test]
    async fn a_full_node_sends_new_sessions_to_one_with_room() {
        let (a, b, clock, _) = two_nodes();
        a.beat(4).await.unwrap();
        b.beat(1).await.unwrap();
        a.check_granting(3, 4).await.unwrap();
        let refused = a.check_granting(4, 4).await.unwrap_err();
        assert!(matches!(refused, NodesError::Busy { carrying: 4, .. }));
        assert_eq!(crate::Failing::code(&refused), ferry_api::codes::NODE_BUSY);
        // b as full as a: a keeps its clients, who wait in line there.
        b.beat(4).await.unwrap();
        a.check_granting(4, 4).await.unwrap();
        // b with room again, but silent: no use sending anyone there.
        b.beat(0).await.unwrap();
        clock.advance(node::SILENT_AFTER);
        a.beat(4).await.unwrap();
        a.check_granting(4, 4).await.unwrap();
    }

    #[tokio::test]
    async fn one_node_runs_a_task_and_another_takes_it_when_the_first_falls_silent() {
        let (a, b, clock, _) = two_nodes();
        assert!(a.hold(Singleton::Mailer).await);
        assert!(!b.hold(Singleton::Mailer).await);
        assert!(b.hold(Singleton::Janitor).await);
        clock.advance(node::HEARTBEAT);
        a.beat(0).await.unwrap();
        clock.advance(node::SILENT_AFTER - 1);
        assert!(!b.hold(Singleton::Mailer).await, "a's heartbeat holds it");
        clock.advance(1);
        assert!(b.hold(Singleton::Mailer).await, "a fell silent");
        assert!(!a.hold(Singleton::Mailer).await);
    }
}
