//! The cluster's background work on each host: heartbeat and lease
//! renewal, the watchdog that stops sessions whose lease ran out here, and
//! the watch that takes over the sessions of hosts that are gone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::domain::now_ms;
use crate::session::Sessions;

/// Runs the three loops until `shutdown`, then releases this host's leases
/// (after the actors stopped: `sessions` must be joined first by the
/// caller, see [`retire`]).
pub async fn run(cluster: Arc<Cluster>, sessions: Arc<Sessions>, shutdown: CancellationToken) {
    tokio::join!(
        renew_loop(&cluster, &sessions, &shutdown),
        watchdog(&cluster, &sessions, &shutdown),
        takeover_loop(&cluster, &sessions, &shutdown),
    );
}

/// Heartbeat and renewal, every `renew_every`. A failed renewal is only
/// logged: the watchdog stops the sessions if the leases run out locally.
async fn renew_loop(cluster: &Cluster, sessions: &Arc<Sessions>, shutdown: &CancellationToken) {
    let every = cluster.settings.renew_every;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match cluster.leases.renew().await {
            Ok(lost) => forget(sessions, lost),
            Err(e) => tracing::warn!(error = %e, "could not renew the session leases"),
        }
        if cluster.is_shared()
            && let Err(e) = cluster.heartbeat().await
        {
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }
}

/// Wakes at the earliest local lease deadline and stops what ran out, so a
/// renewal stuck on an unreachable store cannot keep a session running
/// past its lease.
async fn watchdog(cluster: &Cluster, sessions: &Arc<Sessions>, shutdown: &CancellationToken) {
    loop {
        let wake = cluster
            .leases
            .next_deadline()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + cluster.settings.renew_every);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(wake) => {}
        }
        forget(sessions, cluster.leases.expire_overdue());
    }
}

/// Drops the sessions whose lease was lost, each in its own task: an
/// actor that takes a while to stop (a browser closing) must not hold up
/// the renewal of the other leases.
fn forget(sessions: &Arc<Sessions>, lost: Vec<String>) {
    for s in lost {
        let sessions = sessions.clone();
        tokio::spawn(async move { sessions.forget(&s).await });
    }
}

/// Every `watch_every`, takes up the active sessions whose lease expired.
async fn takeover_loop(cluster: &Cluster, sessions: &Sessions, shutdown: &CancellationToken) {
    if !cluster.is_shared() {
        return;
    }
    let every = cluster.settings.watch_every;
    let mut wait = every;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(jitter(wait)) => {}
        }
        // Each host takes its share of the orphans; the share is counted
        // from the orphans left when it looks, so the last one or two can be
        // left over by hosts that looked at different moments. While
        // orphans remain, look again soon rather than a whole period later.
        wait = match restore_pass(cluster, sessions).await {
            Ok(Pass { left, .. }) if left > 0 => (every / 10).max(Duration::from_millis(100)),
            Ok(_) => every,
            Err(e) => {
                tracing::warn!(error = %e, "takeover watch failed");
                every
            }
        };
    }
}

/// The period with up to a fifth added at random, so hosts started together
/// do not all race for the same leases at the same instant.
fn jitter(every: Duration) -> Duration {
    let spread = (every.as_millis() as u64 / 5).max(1);
    every + Duration::from_millis(u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * spread / 255)
}

/// What one [`restore_pass`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pass {
    /// Sessions this host took.
    pub taken: usize,
    /// Orphans still left after them (others' shares, or this host full).
    pub left: usize,
}

/// One pass: restores the active sessions whose lease no live host holds,
/// this host's fair share of them (the orphans divided by the live hosts
/// with room), up to its capacity.
pub async fn restore_pass(cluster: &Cluster, sessions: &Sessions) -> anyhow::Result<Pass> {
    let now = now_ms();
    let leases = cluster.coordinator.leases().await?;
    let taken: HashSet<String> = leases
        .iter()
        .filter(|l| l.is_held(now))
        .map(|l| l.session_id.clone())
        .collect();
    let hosts_with_room = cluster
        .live_hosts()
        .iter()
        .filter(|h| h.room() > 0 || h.host_id == cluster.host_id())
        .count()
        .max(1);
    let orphans = sessions.orphans(&taken).await?;
    if orphans.is_empty() {
        return Ok(Pass::default());
    }
    let share = orphans.len().div_ceil(hosts_with_room);
    let n = sessions.restore(&orphans, share).await?;
    if n > 0 {
        tracing::info!(restored = n, orphans = orphans.len(), "sessions taken up");
    }
    Ok(Pass {
        taken: n,
        left: orphans.len().saturating_sub(n),
    })
}

/// At a clean stop, after the actors ended: gives the leases back and
/// leaves the host list, so other hosts take the sessions over at once
/// instead of after the TTL.
pub async fn retire(cluster: &Cluster) {
    for l in cluster.leases.snapshot() {
        cluster.leases.release(&l.session_id).await;
    }
    if cluster.is_shared()
        && let Err(e) = cluster.coordinator.retire(cluster.host_id()).await
    {
        tracing::warn!(error = %e, "could not leave the host list");
    }
}
