//! Retention: published outbox events and quarantined messages are deleted
//! once older than their configured age, by one task per host (the deletes
//! are idempotent, so several hosts on one database do no harm).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Store;
use crate::domain::now_ms;

/// What to keep, and how often to look.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Published events older than this go.
    pub published: Duration,
    /// Quarantined messages older than this go.
    pub quarantined: Duration,
    /// Changes whose message was not stored (yet) wait this long for it
    /// ([`PENDING_CHANGES`]).
    pub pending_changes: Duration,
    /// Period of the pass (the first one runs right away).
    pub every: Duration,
}

/// How long a change waits for its message: a change of a message no sync
/// will store (older than any `limitPerChat` window) would wait forever,
/// and an edit carries a body. A week covers any outage the spool covers.
pub const PENDING_CHANGES: Duration = Duration::from_secs(7 * 24 * 3600);

/// Prunes until `shutdown`.
pub async fn run(store: Arc<dyn Store>, r: Retention, shutdown: CancellationToken) {
    loop {
        let now = now_ms();
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match store
            .prune(
                now.saturating_sub(ms(r.published)),
                now.saturating_sub(ms(r.quarantined)),
            )
            .await
        {
            Ok(p) if p.events + p.quarantined > 0 => {
                tracing::info!(
                    events = p.events,
                    quarantined = p.quarantined,
                    "retention: pruned"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention: prune failed; next pass retries"),
        }
        match store
            .prune_pending_changes(now.saturating_sub(ms(r.pending_changes)))
            .await
        {
            Ok(n) if n > 0 => tracing::info!(changes = n, "retention: pruned pending changes"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention: pruning pending changes failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(r.every) => {}
        }
    }
}
