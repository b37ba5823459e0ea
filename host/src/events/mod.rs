//! The events port: how `session_ready` (and friends) leave the host.
//!
//! Events are never published straight from the sync. The sync writes them
//! to the store's outbox in the same durable step as the run that produced
//! them; the [`relay`] publishes pending events through an [`EventBus`]
//! adapter and marks them published only once the adapter confirms. So an
//! event is never announced before its data exists, and never lost while a
//! broker is down.
//!
//! Adapters: [`local`] (logs; the default without `AMQP_URL`) and [`amqp`]
//! (RabbitMQ through `lapin`).

pub mod amqp;
pub mod local;
pub mod relay;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::domain::OutboxEvent;

/// Errors at the events boundary.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The broker cannot be reached; the relay retries with backoff.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused (nacked) or did not confirm in time.
    #[error("publish not confirmed: {0}")]
    NotConfirmed(String),
    /// The adapter's configuration is unusable (bad URL, bad queue name);
    /// reported at start-up, before anything is bound.
    #[error("invalid events configuration: {0}")]
    InvalidConfig(String),
}

/// Pattern of the event announcing a finished sync: `{sessionId, chats}`.
pub const SESSION_READY: &str = "session_ready";
/// Pattern of the event announcing a failed sync (optional).
pub const SYNC_FAILED: &str = "sync_failed";
/// Pattern of the event carrying a live message (optional, high volume).
pub const MESSAGE_RECEIVED: &str = "message_received";
/// Pattern of the event announcing a change of a stored message (an edit,
/// a revoke, an ack, a reaction; optional, `AMQP_PUBLISH_UPDATES`).
pub const MESSAGE_UPDATED: &str = "message_updated";
/// A sync's last word, queued with `session_ready` (webhooks only).
pub const SYNC_COMPLETE: &str = "sync_complete";
/// Lifecycle events, named as on the WebSocket (webhooks only).
pub const QR: &str = "qr";
pub const AUTHENTICATED: &str = "authenticated";
pub const AUTH_FAILURE: &str = "auth_failure";
pub const READY: &str = "ready";
pub const DISCONNECTED: &str = "disconnected";

/// Every event a webhook may ask for: the names the broker and the
/// WebSocket already use. A new event (`message_updated`) is added here by
/// name, queued by its producer when [`EventGate::wants`] it, and, if the
/// broker should not get it, listed in [`WEBHOOK_ONLY`].
pub const WEBHOOK_EVENTS: &[&str] = &[
    SESSION_READY,
    SYNC_COMPLETE,
    SYNC_FAILED,
    MESSAGE_RECEIVED,
    MESSAGE_UPDATED,
    QR,
    AUTHENTICATED,
    AUTH_FAILURE,
    READY,
    DISCONNECTED,
];

/// Events queued in the outbox only for webhooks: the broker's consumers
/// never asked for them, so its adapter confirms them without sending.
pub const WEBHOOK_ONLY: &[&str] = &[
    SYNC_COMPLETE,
    QR,
    AUTHENTICATED,
    AUTH_FAILURE,
    READY,
    DISCONNECTED,
];

/// Which optional patterns leave the host. `session_ready` always does: it
/// is the contract with the AI service. The others are opt-in per
/// deployment (`AMQP_PUBLISH_SYNC_FAILED`, `AMQP_PUBLISH_MESSAGES`,
/// `AMQP_PUBLISH_UPDATES`): the
/// producers skip enqueueing them when off, and the adapter drops any that
/// were queued before the switch was turned off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventSwitches {
    /// Publish `sync_failed`.
    pub sync_failed: bool,
    /// Publish `message_received` for live messages (one event per message:
    /// a volume a deployment should choose).
    pub message_received: bool,
    /// Publish `message_updated` for changes of stored messages (one event
    /// per change).
    pub message_updated: bool,
}

impl EventSwitches {
    /// Whether events of `pattern` are published. Unknown patterns are
    /// (nothing enqueues them by accident; a new one should not vanish);
    /// the ones queued only for webhooks are not.
    pub fn allows(&self, pattern: &str) -> bool {
        match pattern {
            SYNC_FAILED => self.sync_failed,
            MESSAGE_RECEIVED => self.message_received,
            MESSAGE_UPDATED => self.message_updated,
            p if WEBHOOK_ONLY.contains(&p) => false,
            _ => true,
        }
    }
}

/// Which sessions' events the webhooks want: the event names of the
/// endpoints for every session, and of those for one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interest {
    pub global: HashSet<String>,
    pub sessions: HashMap<String, HashSet<String>>,
}

impl Interest {
    fn wants(&self, pattern: &str, session: &str) -> bool {
        self.global.contains(pattern)
            || self
                .sessions
                .get(session)
                .is_some_and(|s| s.contains(pattern))
    }
}

/// Whether a producer should queue an optional event in the outbox: the
/// broker is switched on for it, or a webhook wants it. Cheap to clone and
/// to ask (no I/O); the webhooks subsystem keeps the interest current.
#[derive(Debug, Clone, Default)]
pub struct EventGate {
    inner: Arc<GateInner>,
}

#[derive(Debug, Default)]
struct GateInner {
    broker: EventSwitches,
    /// What the webhooks want, with the ticket of the read it came from.
    hooks: RwLock<(u64, Interest)>,
    /// The last ticket handed out ([`EventGate::interest_ticket`]).
    tickets: AtomicU64,
}

impl EventGate {
    pub fn new(broker: EventSwitches) -> Self {
        Self {
            inner: Arc::new(GateInner {
                broker,
                hooks: RwLock::default(),
                tickets: AtomicU64::new(0),
            }),
        }
    }

    /// Whether an event of `pattern` of `session` goes to the outbox.
    /// `session_ready` always does (it is the broker's contract).
    pub fn wants(&self, pattern: &str, session: &str) -> bool {
        let broker = match pattern {
            SESSION_READY => true,
            SYNC_FAILED => self.inner.broker.sync_failed,
            MESSAGE_RECEIVED => self.inner.broker.message_received,
            MESSAGE_UPDATED => self.inner.broker.message_updated,
            _ => false,
        };
        broker
            || self
                .inner
                .hooks
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .wants(pattern, session)
    }

    /// A ticket for an update of the interest: taken before the endpoints
    /// are read, and handed to [`EventGate::set_interest`] with what the
    /// read found.
    pub fn interest_ticket(&self) -> u64 {
        self.inner.tickets.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Replaces what the webhooks want with what a read that began at
    /// `ticket` found, unless a read that began later was applied already:
    /// several tasks refresh the interest (the dispatcher's loop, a
    /// create or delete, the fan-out), and a slow read of the endpoints
    /// from before a create must not undo the create's own refresh (its
    /// endpoint's first events would be dropped until the next look).
    pub fn set_interest(&self, ticket: u64, interest: Interest) {
        let mut hooks = self.inner.hooks.write().unwrap_or_else(|p| p.into_inner());
        if ticket >= hooks.0 {
            *hooks = (ticket, interest);
        }
    }
}

/// A publisher of outbox events.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Adapter name for logs and `/readyz`.
    fn kind(&self) -> &'static str;

    /// Publishes a batch and returns the ids the broker confirmed (a subset
    /// of `events`, in any order). Ids not returned stay pending and are
    /// retried; publishing one twice is allowed (consumers dedupe by
    /// `message_id`).
    async fn publish(&self, events: &[OutboxEvent]) -> Result<Vec<String>, EventError>;

    /// Reachability for `/readyz`.
    async fn ping(&self) -> Result<(), EventError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanting(event: &str) -> Interest {
        Interest {
            global: [event.to_owned()].into(),
            sessions: HashMap::new(),
        }
    }

    #[test]
    fn a_slow_read_of_the_endpoints_does_not_undo_a_newer_one() {
        let gate = EventGate::new(EventSwitches::default());
        // The dispatcher starts reading before an endpoint is created...
        let stale = gate.interest_ticket();
        // ...the create's own refresh reads after it and lands first...
        let fresh = gate.interest_ticket();
        gate.set_interest(fresh, wanting(READY));
        assert!(gate.wants(READY, "s"));
        // ...and the dispatcher's older read, landing last, is dropped.
        gate.set_interest(stale, Interest::default());
        assert!(gate.wants(READY, "s"), "the newer interest stays");
        // A later read applies, even one that found nothing.
        let later = gate.interest_ticket();
        gate.set_interest(later, Interest::default());
        assert!(!gate.wants(READY, "s"));
    }
}
