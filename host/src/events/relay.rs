//! The outbox relay: one task that moves pending outbox events to the
//! [`EventBus`], marking each published only when the bus confirms it.
//!
//! It wakes when the sync signals a new event and otherwise polls, so events
//! left from a previous run (or a broker outage) go out without a trigger.
//! Failures back off exponentially up to `max_backoff`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::EventBus;
use crate::domain::now_ms;
use crate::storage::Store;

/// Relay tuning.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Events taken from the outbox per publish.
    pub batch: u32,
    /// Poll period when nothing signals.
    pub poll: Duration,
    /// First retry delay after a failure; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Ceiling of the retry delay.
    pub max_backoff: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            poll: Duration::from_secs(1),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Handle to wake the relay.
#[derive(Debug, Clone, Default)]
pub struct RelaySignal(Arc<Notify>);

impl RelaySignal {
    /// Tells the relay there is something new in the outbox.
    pub fn kick(&self) {
        self.0.notify_one();
    }
}

/// Runs until `shutdown`. Returns the number of events published.
///
/// After a failure the relay sleeps its backoff even if the sync kicks it:
/// during an outage every finished sync kicks, and retrying on each kick
/// would hammer a broker that is coming back up. A publish in flight is
/// abandoned on shutdown; its events stay pending (at-least-once).
pub async fn run(
    store: Arc<dyn Store>,
    bus: Arc<dyn EventBus>,
    signal: RelaySignal,
    cfg: RelayConfig,
    shutdown: CancellationToken,
) -> u64 {
    let mut published = 0u64;
    let mut backoff = cfg.min_backoff;
    loop {
        let drained = tokio::select! {
            _ = shutdown.cancelled() => return published,
            r = drain_once(&*store, &*bus, cfg.batch) => r,
        };
        match drained {
            Ok(0) => {
                backoff = cfg.min_backoff;
                tokio::select! {
                    _ = shutdown.cancelled() => return published,
                    _ = signal.0.notified() => {}
                    _ = tokio::time::sleep(cfg.poll) => {}
                }
            }
            Ok(n) => {
                published += n;
                backoff = cfg.min_backoff;
            }
            Err(e) => {
                tracing::warn!(target: "wasync::events", error = %e, retry_in = ?backoff, "outbox relay: publish failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return published,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(cfg.max_backoff);
            }
        }
    }
}

/// Publishes one batch of pending events; returns how many were confirmed.
pub async fn drain_once(store: &dyn Store, bus: &dyn EventBus, batch: u32) -> Result<u64, String> {
    let pending = store
        .pending_events(batch)
        .await
        .map_err(|e| e.to_string())?;
    if pending.is_empty() {
        return Ok(0);
    }
    match bus.publish(&pending).await {
        Ok(acked) => {
            if !acked.is_empty() {
                store
                    .mark_published(&acked, now_ms())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if acked.len() < pending.len() {
                let missing: Vec<String> = pending
                    .iter()
                    .map(|e| e.event_id.clone())
                    .filter(|id| !acked.contains(id))
                    .collect();
                let _ = store.record_attempt(&missing).await;
                return Err(format!(
                    "{} of {} events not confirmed",
                    missing.len(),
                    pending.len()
                ));
            }
            Ok(acked.len() as u64)
        }
        Err(e) => {
            let ids: Vec<String> = pending.iter().map(|e| e.event_id.clone()).collect();
            let _ = store.record_attempt(&ids).await;
            Err(e.to_string())
        }
    }
}
