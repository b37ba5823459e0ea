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
                bytes = json_len(&ev.data),
                "event"
            );
        }
        Ok(events.iter().map(|e| e.event_id.clone()).collect())
    }

    async fn ping(&self) -> Result<(), EventError> {
        Ok(())
    }
}

/// The length of `value` as JSON, counted as it is written rather than
/// written to a buffer (a `session_ready` of 10,000 chats is ~250 KB).
fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    match serde_json::to_writer(&mut n, value) {
        Ok(()) => n.0,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_logged_size_is_the_json_length() {
        let v = serde_json::json!({"chats": ["1@c.us", "2@g.us"], "n": 2, "s": "é\"q"});
        assert_eq!(super::json_len(&v), v.to_string().len());
    }
}
