//! The leases this host holds, each with its [`Fence`].
//!
//! A lease is valid here until `sent + ttl - margin`, where `sent` is the
//! monotonic time this host sent the write that last acquired or renewed
//! it: the lease in the store runs until `wall(sent) + ttl`, so this host
//! gives it up at least `margin` before any other host may take it, however
//! long the answer took to arrive. When the deadline passes without a
//! renewal, or a renewal finds the lease gone, the fence is revoked, which
//! stops the session's actor and refuses its further writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::fence::Fence;
use super::{Claim, ClusterError, ClusterSettings, Coordinator, Lease};
use crate::domain::now_ms;

/// What [`LeaseTable::acquire`] got.
#[derive(Debug, Clone)]
pub enum Acquired {
    /// This host holds the lease; `took_over` when another host held it
    /// before and let it expire.
    Granted { fence: Fence, took_over: bool },
    /// Another host holds it.
    HeldBy(Lease),
}

/// The leases this host holds.
pub struct LeaseTable {
    coordinator: Arc<dyn Coordinator>,
    settings: ClusterSettings,
    metrics: Arc<crate::telemetry::Metrics>,
    shutdown: CancellationToken,
    held: Mutex<HashMap<String, Fence>>,
}

impl std::fmt::Debug for LeaseTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseTable")
            .field("held", &self.count())
            .finish()
    }
}

impl LeaseTable {
    pub fn new(
        coordinator: Arc<dyn Coordinator>,
        settings: ClusterSettings,
        metrics: Arc<crate::telemetry::Metrics>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            coordinator,
            settings,
            metrics,
            shutdown,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Fence>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ttl_ms(&self) -> i64 {
        self.settings.lease_ttl.as_millis() as i64
    }

    /// The local deadline of a lease written at `sent`.
    fn deadline(&self, sent: Instant) -> Instant {
        sent + self
            .settings
            .lease_ttl
            .saturating_sub(self.settings.margin())
    }

    /// Takes `session`'s lease, or returns the valid fence this host
    /// already holds for it.
    pub async fn acquire(&self, session: &str) -> Result<Acquired, ClusterError> {
        if let Some(f) = self.lock().get(session).cloned()
            && f.is_valid()
        {
            return Ok(Acquired::Granted {
                fence: f,
                took_over: false,
            });
        }
        let sent = Instant::now();
        let until = now_ms() + self.ttl_ms();
        let claim = self
            .coordinator
            .acquire(session, &self.settings.host_id, until)
            .await?;
        match claim {
            Claim::Held(lease) => Ok(Acquired::HeldBy(lease)),
            Claim::Granted {
                lease,
                previous_owner,
            } => {
                let fence = Fence::new(
                    session,
                    lease.epoch,
                    &self.settings.host_id,
                    self.deadline(sent),
                    self.shutdown.child_token(),
                );
                let old = self.lock().insert(session.to_owned(), fence.clone());
                if let Some(old) = old {
                    // A stale fence of ours (deadline passed): its actor
                    // must not write beside the new one.
                    old.revoke();
                }
                self.metrics.leases_held.set(self.count() as i64);
                let took_over = previous_owner
                    .as_deref()
                    .is_some_and(|o| o != self.settings.host_id);
                if took_over {
                    self.metrics.takeovers.inc();
                }
                Ok(Acquired::Granted { fence, took_over })
            }
        }
    }

    /// Gives a lease up (the session stopped here).
    pub async fn release(&self, session: &str) {
        let fence = self.lock().remove(session);
        self.metrics.leases_held.set(self.count() as i64);
        if let Some(f) = fence
            && let Err(e) = self
                .coordinator
                .release(session, &self.settings.host_id, f.epoch())
                .await
        {
            // It expires by itself within the TTL.
            tracing::warn!(session_id = %session, error = %e, "could not release a lease");
        }
    }

    /// Whether this host holds a valid lease on `session`.
    pub fn holds(&self, session: &str) -> bool {
        self.lock().get(session).is_some_and(Fence::is_valid)
    }

    /// The fence of a lease this host holds.
    pub fn fence(&self, session: &str) -> Option<Fence> {
        self.lock().get(session).cloned()
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// The held leases as [`Lease`]s (for a single host's `GET /cluster`).
    pub fn snapshot(&self) -> Vec<Lease> {
        let until = now_ms() + self.ttl_ms();
        let mut v: Vec<Lease> = self
            .lock()
            .iter()
            .map(|(s, f)| Lease {
                session_id: s.clone(),
                owner: Some(self.settings.host_id.clone()),
                epoch: f.epoch(),
                expires_at: until,
            })
            .collect();
        v.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        v
    }

    /// Renews every held lease in one write; returns the sessions whose
    /// lease is lost (taken, or past its local deadline), already revoked
    /// and removed. A failed write renews nothing: leases then run out at
    /// their deadlines ([`LeaseTable::expire_overdue`]).
    pub async fn renew(&self) -> Result<Vec<String>, ClusterError> {
        let mut lost = self.expire_overdue();
        let sessions: Vec<String> = self.lock().keys().cloned().collect();
        if sessions.is_empty() {
            return Ok(lost);
        }
        let sent = Instant::now();
        let until = now_ms() + self.ttl_ms();
        let stored = self
            .coordinator
            .renew(&self.settings.host_id, &sessions, until)
            .await?;
        let stored: HashMap<&str, &Lease> =
            stored.iter().map(|l| (l.session_id.as_str(), l)).collect();
        let deadline = self.deadline(sent);
        let mut held = self.lock();
        for s in sessions {
            let Some(fence) = held.get(&s) else { continue };
            let renewed = stored.get(s.as_str()).is_some_and(|l| {
                l.owner.as_deref() == Some(self.settings.host_id.as_str())
                    && l.epoch == fence.epoch()
                    && l.expires_at == until
            });
            if renewed && fence.is_valid() {
                fence.extend(deadline);
            } else {
                tracing::warn!(session_id = %s, epoch = fence.epoch(), "lease lost: stopping the session here");
                fence.revoke();
                held.remove(&s);
                self.metrics.leases_lost.inc();
                lost.push(s);
            }
        }
        drop(held);
        self.metrics.leases_held.set(self.count() as i64);
        Ok(lost)
    }

    /// Revokes and removes every lease past its local deadline; returns
    /// their sessions.
    pub fn expire_overdue(&self) -> Vec<String> {
        let mut held = self.lock();
        let overdue: Vec<String> = held
            .iter()
            .filter(|(_, f)| !f.is_valid())
            .map(|(s, _)| s.clone())
            .collect();
        for s in &overdue {
            if let Some(f) = held.remove(s) {
                if !self.shutdown.is_cancelled() {
                    tracing::warn!(session_id = %s, epoch = f.epoch(), "lease not renewed in time: stopping the session here");
                    self.metrics.leases_lost.inc();
                }
                f.revoke();
            }
        }
        drop(held);
        if !overdue.is_empty() {
            self.metrics.leases_held.set(self.count() as i64);
        }
        overdue
    }

    /// The earliest local deadline of a held lease.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lock().values().map(Fence::deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::solo::SoloCoordinator;
    use std::time::Duration;

    fn settings(ttl_ms: u64) -> ClusterSettings {
        ClusterSettings {
            host_id: "h1".into(),
            advertise_url: "http://127.0.0.1:1".into(),
            max_sessions: 10,
            lease_ttl: Duration::from_millis(ttl_ms),
            renew_every: Duration::from_millis(ttl_ms / 3),
            watch_every: Duration::from_millis(ttl_ms / 3),
        }
    }

    /// A solo lease table (lease TTL `ttl_ms`, stopping with `shutdown`)
    /// and the fence of the lease it grants on session `s`.
    async fn granted(ttl_ms: u64, shutdown: CancellationToken) -> (LeaseTable, Fence) {
        let t = LeaseTable::new(
            Arc::new(SoloCoordinator::default()),
            settings(ttl_ms),
            Arc::new(crate::telemetry::Metrics::new()),
            shutdown,
        );
        let Acquired::Granted { fence, .. } = t.acquire("s").await.unwrap() else {
            panic!("solo grants")
        };
        (t, fence)
    }

    #[tokio::test]
    async fn a_lease_not_renewed_is_revoked_at_its_local_deadline() {
        let (t, fence) = granted(1000, CancellationToken::new()).await;
        assert!(fence.is_valid());
        assert!(t.holds("s"));
        // ttl 1 s, margin 500 ms: invalid after ~500 ms without renewal.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!fence.is_valid());
        assert_eq!(t.expire_overdue(), vec!["s".to_string()]);
        assert!(fence.revoked().is_cancelled());
        assert!(!t.holds("s"));
    }

    #[tokio::test]
    async fn renewal_extends_and_shutdown_stops_the_session_but_keeps_the_lease() {
        let shutdown = CancellationToken::new();
        let (t, fence) = granted(1000, shutdown.clone()).await;
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(t.renew().await.unwrap().is_empty());
        }
        assert!(fence.is_valid(), "renewed past the first deadline");
        shutdown.cancel();
        assert!(
            fence.revoked().is_cancelled(),
            "the host's shutdown stops the session"
        );
        assert!(
            fence.is_valid(),
            "a stopping host keeps its leases until its actors stopped: what they write \
             while stopping lands"
        );
        assert!(t.holds("s"));
        // Renewals stopped with the host: the lease runs out at its deadline
        // (ttl 1 s, margin 500 ms), and writes with it.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            !fence.is_valid(),
            "past its deadline a stopping host writes nothing"
        );
    }

    #[tokio::test]
    async fn a_lost_lease_refuses_writes_at_once() {
        let (t, fence) = granted(60_000, CancellationToken::new()).await;
        fence.revoke();
        assert!(fence.revoked().is_cancelled());
        assert!(!fence.is_valid(), "well before its deadline");
        assert!(!t.holds("s"));
    }
}
