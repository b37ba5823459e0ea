//! Retrying provider calls and store writes: backoff, the store outage
//! window, and stopping early at cancellation or shutdown.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{Stop, StoreStop, SyncDeps, SyncOptions};
use crate::browser::ClientError;
use crate::storage::StoreError;

/// Retries a store write: a write the store refused for a reason of its
/// own up to `store_attempts` times, an unreachable store for up to
/// `store_outage_window`, a fenced one never. Stops early at `shutdown`.
pub(super) async fn retry_store<T, F, Fut>(
    options: &SyncOptions,
    what: &str,
    shutdown: &CancellationToken,
    mut call: F,
) -> Result<T, StoreStop>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let started = Instant::now();
    let mut delay = options.retry_backoff;
    let mut failures = 0u32;
    loop {
        let e = match call().await {
            Ok(v) => return Ok(v),
            Err(StoreError::Fenced(e)) => {
                tracing::warn!(error = %e, "{what}: fenced off; the session moved to another host");
                return Err(StoreStop::Fenced);
            }
            Err(e) => e,
        };
        let unavailable = matches!(e, StoreError::Unavailable(_));
        failures += 1;
        if unavailable && started.elapsed() >= options.store_outage_window {
            return Err(StoreStop::Down(format!("{what}: {e}")));
        }
        if !unavailable && failures >= options.store_attempts.max(1) {
            return Err(StoreStop::Failed(format!("{what}: {e}")));
        }
        tracing::warn!(attempt = failures, error = %e, retry_in = ?delay, "{what} failed; retrying");
        tokio::select! {
            _ = shutdown.cancelled() => return Err(StoreStop::Shutdown),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(options.store_max_backoff);
    }
}

/// Waits for `fut` unless the run is cancelled or the host stops first.
pub(super) async fn guarded<T>(
    fut: impl Future<Output = T>,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<T, Stop> {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Err(Stop::Shutdown),
        _ = cancel.cancelled() => Err(Stop::Cancelled),
        v = fut => Ok(v),
    }
}

/// Retries a provider call with exponential backoff.
pub(super) async fn with_retry<T, F, Fut>(
    deps: &SyncDeps,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
    mut call: F,
) -> Result<Result<T, (u32, ClientError)>, Stop>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let attempts = deps.options.fetch_attempts.max(1);
    let mut delay = deps.options.retry_backoff;
    for attempt in 1..=attempts {
        match guarded(call(), cancel, shutdown).await? {
            Ok(v) => return Ok(Ok(v)),
            Err(e @ ClientError::Disconnected(_)) | Err(e @ ClientError::Unsupported(_)) => {
                return Ok(Err((attempt, e)));
            }
            Err(e) if attempt == attempts => return Ok(Err((attempt, e))),
            Err(e) => {
                tracing::debug!(attempt, error = %e, "provider call failed; retrying");
                guarded(tokio::time::sleep(delay), cancel, shutdown).await?;
                delay *= 2;
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// Retries a store write ([`retry_store`]) unless the run is cancelled or
/// the host stops first.
pub(super) async fn store_retry<T, F, Fut>(
    deps: &SyncDeps,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
    what: &str,
    call: F,
) -> Result<T, Stop>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    guarded(
        retry_store(&deps.options, what, shutdown, call),
        cancel,
        shutdown,
    )
    .await?
    .map_err(Stop::from)
}
