//! Local adapter: no broker. Events stay in the outbox (marked published so
//! it does not grow a backlog) and are logged, which is what `cargo run`
//! needs with no RabbitMQ around.

use async_trait::async_trait;

use super::{EventBus, EventError};
use crate::domain::OutboxEvent;

/// Logs each event at `info` under the `wasync::events` target: its ids
/// and size only, never its body (phone numbers, message texts).
#[derive(Debug, Default)]
pub struct LocalEvents;

#[async_trait]
impl EventBus for LocalEvents {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn publish(&self, events: &[OutboxEvent]) -> Result<Vec<String>, EventError> {
        for ev in events {
            tracing::info!(
                target: "wasync::events",
                event_id = %ev.event_id,
                pattern = %ev.pattern,
                session_id = %ev.session_id,
                bytes = ev.data.to_string().len(),
                "event"
            );
        }
        Ok(events.iter().map(|e| e.event_id.clone()).collect())
    }

    async fn ping(&self) -> Result<(), EventError> {
        Ok(())
    }
}
