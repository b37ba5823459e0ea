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

/// Which optional patterns leave the host. `session_ready` always does: it
/// is the contract with the AI service. The others are opt-in per
/// deployment (`AMQP_PUBLISH_SYNC_FAILED`, `AMQP_PUBLISH_MESSAGES`): the
/// producers skip enqueueing them when off, and the adapter drops any that
/// were queued before the switch was turned off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventSwitches {
    /// Publish `sync_failed`.
    pub sync_failed: bool,
    /// Publish `message_received` for live messages (one event per message:
    /// a volume a deployment should choose).
    pub message_received: bool,
}

impl EventSwitches {
    /// Whether events of `pattern` are published. Unknown patterns are
    /// (nothing enqueues them by accident; a new one should not vanish).
    pub fn allows(&self, pattern: &str) -> bool {
        match pattern {
            SYNC_FAILED => self.sync_failed,
            MESSAGE_RECEIVED => self.message_received,
            _ => true,
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
