//! The outbox relay: one task that moves pending outbox events to the
//! [`EventBus`], marking each published only when the bus confirms it.
//!
//! It wakes when the sync signals a new event and otherwise polls, so events
//! left from a previous run (or a broker outage) go out without a trigger.
//! On a store several hosts share, each relay claims the batch it publishes
//! ([`Store::claim_events`]) so the relays do not all publish every event;
//! a claim that runs out unconfirmed (its host died) is taken again, so
//! delivery stays at least once.
//! Failures back off exponentially up to `max_backoff`.
//!
//! An [`OutboxTap`] (the webhooks' fan-out) sees every claimed batch before
//! the bus does; a batch it cannot take stays pending, so the tap, like the
//! bus, gets every event at least once.

use std::collections::HashSet;
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
    /// Where to count published events and failed attempts.
    pub metrics: Option<Arc<crate::telemetry::Metrics>>,
    /// Who claims events on a shared store (the host id).
    pub claimer: String,
    /// How long a claim keeps other hosts' relays off a batch: longer than
    /// a publish takes, short enough that a host that dies mid-publish
    /// delays its events only by this much.
    pub claim: Duration,
    /// Sees each batch before it is published (the webhooks' fan-out).
    pub tap: Option<Arc<dyn OutboxTap>>,
}

/// A second consumer of the outbox, fed by the relay: it is handed each
/// claimed batch before the bus, and an error leaves the batch pending
/// (retried with the relay's backoff). Taking a batch twice must be
/// harmless.
#[async_trait::async_trait]
pub trait OutboxTap: Send + Sync + std::fmt::Debug + 'static {
    async fn take(&self, events: &[crate::domain::OutboxEvent]) -> Result<(), String>;
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            poll: Duration::from_secs(1),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            metrics: None,
            claimer: "wasync".into(),
            claim: Duration::from_secs(30),
            tap: None,
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
/// would hammer a broker that is coming back up. On shutdown a publish in
/// flight is abandoned (its events stay pending: at-least-once), but a store
/// write in flight is finished, so the store is closed when `run` returns.
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
        if shutdown.is_cancelled() {
            return published;
        }
        let Drained { confirmed, failure } = drain(&*store, &*bus, &cfg, &shutdown).await;
        published += confirmed;
        if let Some(m) = &cfg.metrics {
            m.outbox_published.inc_by(confirmed);
            if failure.is_some() {
                m.outbox_failures.inc();
            }
        }
        match failure {
            None if confirmed == 0 => {
                backoff = cfg.min_backoff;
                tokio::select! {
                    _ = shutdown.cancelled() => return published,
                    _ = signal.0.notified() => {}
                    _ = tokio::time::sleep(cfg.poll) => {}
                }
            }
            None => backoff = cfg.min_backoff,
            Some(e) => {
                if shutdown.is_cancelled() {
                    return published;
                }
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
/// An error means some (or all) were not; those stay pending.
pub async fn drain_once(store: &dyn Store, bus: &dyn EventBus, batch: u32) -> Result<u64, String> {
    let cfg = RelayConfig {
        batch,
        ..RelayConfig::default()
    };
    let d = drain(store, bus, &cfg, &CancellationToken::new()).await;
    match d.failure {
        None => Ok(d.confirmed),
        Some(e) => Err(e),
    }
}

/// What one pass did: events confirmed and marked, and why the rest (if
/// any) were not.
struct Drained {
    confirmed: u64,
    failure: Option<String>,
}

async fn drain(
    store: &dyn Store,
    bus: &dyn EventBus,
    cfg: &RelayConfig,
    shutdown: &CancellationToken,
) -> Drained {
    let fail = |confirmed, e: String| Drained {
        confirmed,
        failure: Some(e),
    };
    let claim_ms = cfg.claim.as_millis() as i64;
    let pending = match store.claim_events(&cfg.claimer, cfg.batch, claim_ms).await {
        Ok(p) if p.is_empty() => {
            return Drained {
                confirmed: 0,
                failure: None,
            };
        }
        Ok(p) => p,
        Err(e) => return fail(0, e.to_string()),
    };
    if let Some(tap) = &cfg.tap
        && let Err(e) = tap.take(&pending).await
    {
        return fail(0, format!("webhook fan-out: {e}"));
    }
    // Only the publish is abandoned on shutdown: store calls run on
    // blocking threads that would outlive a dropped future.
    let published = tokio::select! {
        _ = shutdown.cancelled() => return fail(0, "shutting down".into()),
        r = bus.publish(&pending) => r,
    };
    let acked = match published {
        Ok(acked) => acked,
        Err(e) => {
            let ids: Vec<String> = pending.iter().map(|e| e.event_id.clone()).collect();
            let _ = store.record_attempt(&ids).await;
            return fail(0, e.to_string());
        }
    };
    if !acked.is_empty()
        && let Err(e) = store.mark_published(&acked, now_ms()).await
    {
        // Published but not marked: they go out again later (same
        // message_id), which consumers dedupe.
        return fail(0, format!("marking published: {e}"));
    }
    let confirmed = acked.len() as u64;
    if acked.len() < pending.len() {
        let acked: HashSet<&str> = acked.iter().map(String::as_str).collect();
        let missing: Vec<String> = pending
            .iter()
            .filter(|e| !acked.contains(e.event_id.as_str()))
            .map(|e| e.event_id.clone())
            .collect();
        let _ = store.record_attempt(&missing).await;
        return fail(
            confirmed,
            format!(
                "{} of {} events not confirmed",
                missing.len(),
                pending.len()
            ),
        );
    }
    Drained {
        confirmed,
        failure: None,
    }
}
