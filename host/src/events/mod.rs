//! The events port: how `session_ready` (and friends) leave the host.
//!
//! Events are never published straight from the sync. The sync writes them
//! to the store's outbox in the same durable step as the run that produced
//! them; the [`relay`] publishes pending events through an [`EventBus`]
//! adapter and marks them published only once the adapter confirms. So an
//! event is never announced before its data exists, and never lost while a
//! broker is down.
//!
//! Adapters: [`local`] (logs; the default without `AMQP_URL`) and `amqp`.

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
