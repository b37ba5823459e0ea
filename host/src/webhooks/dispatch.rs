//! The dispatcher: one task that claims endpoints and runs a worker per
//! endpoint it holds; each worker delivers that endpoint's pending
//! deliveries, lane by lane (a lane: one session's deliveries, in order).
//!
//! A worker keeps in memory only which lanes are busy (a request in
//! flight) and which wait for a retry; everything else is read from the
//! store, so a worker that stops (shutdown, a claim lost, a crash) leaves
//! nothing behind but deliveries still `pending`, which the next holder
//! sends again. A request in flight when that happens may reach the
//! receiver twice: at least once, deduplicated by `X-Wasync-Delivery`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Webhooks;
use super::client::WebhookClient;
use super::sign;
use crate::domain::now_ms;
use crate::storage::webhooks::{DeliveryRecord, DeliveryStatus, WebhookRecord};
use crate::telemetry::OutcomeLabel;

/// Largest body sent; a bigger event is dead at once (a receiver would
/// refuse it anyway, and retrying it for a day helps nobody).
pub const MAX_BODY: usize = 4 << 20;

/// Lanes a worker leaves out of its store reads at most (busy or waiting).
const MAX_SKIP: usize = 1_000;

/// Endpoints a host takes per look on a shared store, so a host that
/// starts first does not take them all.
const TAKE_PER_LOOK: u32 = 4;

/// The JSON body of a delivery: the event's name, id, time, session and
/// data (the broker's `data`, `hostId` included).
pub fn body(d: &DeliveryRecord) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "event": d.event,
        "eventId": d.event_id,
        "createdAt": d.created_at,
        "sessionId": d.session_id,
        "data": d.data,
    }))
    .unwrap_or_default()
}

/// The delay before retry number `attempts` (1 = after the first
/// failure): `retry_min · 2^(attempts-1)` up to `retry_max`, with jitter
/// (the upper half of it drawn at random) so lanes that failed together do
/// not retry together.
pub fn backoff(attempts: u32, min: Duration, max: Duration) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    let base = min.saturating_mul(1u32 << exp).min(max);
    let half = base / 2;
    half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64))
}

/// Runs until `shutdown`: claims endpoints, keeps one worker per endpoint
/// held, keeps the producers' interest current, prunes old deliveries.
pub async fn run(hooks: Arc<Webhooks>, shutdown: CancellationToken) {
    let s = &hooks.settings;
    let client = match WebhookClient::new(s.allow_private.clone(), s.timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(target: "wasync::webhooks", error = %e, "webhooks disabled: cannot build the HTTP client");
            return;
        }
    };
    let mut workers: HashMap<String, (CancellationToken, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let mut pruned_at: Option<Instant> = None;
    loop {
        let claim_ms = s.tuning.claim.as_millis() as i64;
        match hooks
            .store
            .claim_webhooks(&s.host_id, TAKE_PER_LOOK, claim_ms)
            .await
        {
            Ok(held) => {
                let held: HashSet<String> = held.into_iter().collect();
                workers.retain(|id, (stop, task)| {
                    let keep = held.contains(id) && !task.is_finished();
                    if !keep {
                        stop.cancel();
                    }
                    keep
                });
                for id in held {
                    workers.entry(id.clone()).or_insert_with(|| {
                        let stop = shutdown.child_token();
                        let task =
                            tokio::spawn(work(hooks.clone(), client.clone(), id, stop.clone()));
                        (stop, task)
                    });
                }
            }
            Err(e) => {
                tracing::warn!(target: "wasync::webhooks", error = %e, "cannot claim webhooks; retrying")
            }
        }
        hooks.refresh_interest().await;
        if pruned_at.is_none_or(|t| t.elapsed() >= s.tuning.retention_every) {
            pruned_at = Some(Instant::now());
            let before = now_ms().saturating_sub(s.retention.as_millis() as i64);
            match hooks.store.prune_deliveries(before).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(target: "wasync::webhooks", deliveries = n, "retention: pruned")
                }
                Err(e) => {
                    tracing::warn!(target: "wasync::webhooks", error = %e, "retention: prune failed")
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(s.tuning.poll) => {}
        }
    }
    for (_, (stop, task)) in workers {
        stop.cancel();
        let _ = task.await;
    }
}

/// What one attempt came to.
struct Attempt {
    delivery: DeliveryRecord,
    result: Result<u16, String>,
    elapsed: Duration,
}

/// Delivers one endpoint's pending deliveries until `stop`.
async fn work(hooks: Arc<Webhooks>, client: WebhookClient, id: String, stop: CancellationToken) {
    let s = &hooks.settings;
    let mut wake = hooks.wake.subscribe();
    let mut inflight: JoinSet<Attempt> = JoinSet::new();
    // Lanes with a request in flight, and lanes waiting for a retry (when).
    let mut busy: HashSet<String> = HashSet::new();
    let mut waiting: HashMap<String, i64> = HashMap::new();
    // After a store error, do not read again before this.
    let mut quiet_until: Option<Instant> = None;
    loop {
        if stop.is_cancelled() {
            break;
        }
        let now = now_ms();
        waiting.retain(|_, at| *at > now);
        if inflight.len() < s.concurrency && quiet_until.is_none_or(|t| Instant::now() >= t) {
            match fill(&hooks, &client, &id, &mut inflight, &mut busy, &mut waiting).await {
                Ok(true) => {}
                Ok(false) => break, // the endpoint is gone
                Err(e) => {
                    tracing::warn!(target: "wasync::webhooks", webhook_id = %id, error = %e, "cannot read deliveries; retrying");
                    quiet_until = Some(Instant::now() + s.tuning.poll);
                }
            }
        }
        let next = waiting
            .values()
            .min()
            .map(|at| Duration::from_millis((at - now_ms()).max(1) as u64))
            .unwrap_or(s.tuning.poll)
            .min(s.tuning.poll);
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                if let Ok(attempt) = done {
                    record(&hooks, attempt, &mut busy, &mut waiting).await;
                }
            }
            _ = wake.changed() => {}
            _ = tokio::time::sleep(next) => {}
        }
    }
    // Whatever is in flight stays `pending` and is sent again later.
    inflight.abort_all();
}

/// Reads the pending window and starts the due lane heads up to the cap.
/// `Ok(false)` when the endpoint no longer exists.
async fn fill(
    hooks: &Webhooks,
    client: &WebhookClient,
    id: &str,
    inflight: &mut JoinSet<Attempt>,
    busy: &mut HashSet<String>,
    waiting: &mut HashMap<String, i64>,
) -> Result<bool, crate::storage::StoreError> {
    let s = &hooks.settings;
    let Some(hook) = hooks.store.get_webhook(id).await? else {
        return Ok(false);
    };
    let skip: Vec<String> = busy
        .iter()
        .chain(waiting.keys())
        .take(MAX_SKIP)
        .cloned()
        .collect();
    let window = hooks
        .store
        .pending_deliveries(id, &skip, s.tuning.window)
        .await?;
    let now = now_ms();
    let mut seen: HashSet<String> = HashSet::new();
    for d in window {
        if inflight.len() >= s.concurrency {
            break;
        }
        // The first delivery of a lane in the window is its head; the rest
        // wait behind it.
        if busy.contains(&d.session_id) || !seen.insert(d.session_id.clone()) {
            continue;
        }
        if d.next_attempt_at > now {
            waiting.insert(d.session_id.clone(), d.next_attempt_at);
            continue;
        }
        busy.insert(d.session_id.clone());
        let (client, hook) = (client.clone(), hook.clone());
        inflight.spawn(async move { attempt(&client, &hook, d).await });
    }
    Ok(true)
}

/// Sends one delivery.
async fn attempt(client: &WebhookClient, hook: &WebhookRecord, d: DeliveryRecord) -> Attempt {
    let started = Instant::now();
    let body = body(&d);
    let result = if body.len() > MAX_BODY {
        Err(format!("body of {} bytes is over {MAX_BODY}", body.len()))
    } else {
        let ts = now_ms() / 1000;
        let mut headers = vec![
            ("x-wasync-event", d.event.clone()),
            ("x-wasync-delivery", d.event_id.clone()),
            ("x-wasync-timestamp", ts.to_string()),
        ];
        if let Some(secret) = &hook.secret {
            headers.push(("x-wasync-signature", sign::signature(secret, ts, &body)));
        }
        client.post(&hook.url, &headers, Bytes::from(body)).await
    };
    Attempt {
        delivery: d,
        result,
        elapsed: started.elapsed(),
    }
}

/// Writes an attempt's outcome and schedules the lane.
async fn record(
    hooks: &Webhooks,
    a: Attempt,
    busy: &mut HashSet<String>,
    waiting: &mut HashMap<String, i64>,
) {
    let s = &hooks.settings;
    let m = &hooks.metrics;
    let mut d = a.delivery;
    busy.remove(&d.session_id);
    let now = now_ms();
    d.attempts += 1;
    d.last_attempt_at = Some(now);
    m.webhook_seconds.observe(a.elapsed.as_secs_f64());
    let failure = match a.result {
        Ok(status) if (200..300).contains(&status) => {
            d.status = DeliveryStatus::Delivered;
            d.last_status = Some(status);
            d.last_error = None;
            d.finished_at = Some(now);
            None
        }
        Ok(status) => {
            d.last_status = Some(status);
            Some(format!("status {status}"))
        }
        Err(e) => {
            d.last_status = None;
            Some(e)
        }
    };
    let outcome = match failure {
        None => "delivered",
        Some(e) => {
            let age = now - d.queued_at;
            let max_age = s.max_age.as_millis() as i64;
            let oversize = e.starts_with("body of ");
            d.last_error = Some(e);
            if age >= max_age || oversize {
                d.status = DeliveryStatus::Dead;
                d.finished_at = Some(now);
                "dead"
            } else {
                // The last retry falls on the window's end, not past it.
                let wait = backoff(d.attempts, s.retry_min, s.retry_max).as_millis() as i64;
                d.next_attempt_at = (now + wait).min(d.queued_at + max_age);
                waiting.insert(d.session_id.clone(), d.next_attempt_at);
                "failed"
            }
        }
    };
    m.webhook_deliveries
        .get_or_create(&OutcomeLabel {
            outcome: outcome.into(),
        })
        .inc();
    if outcome != "delivered" {
        tracing::debug!(target: "wasync::webhooks", webhook_id = %d.webhook_id, event_id = %d.event_id,
            attempts = d.attempts, error = d.last_error.as_deref().unwrap_or(""), outcome, "delivery attempt failed");
    }
    if outcome == "dead" {
        tracing::warn!(target: "wasync::webhooks", webhook_id = %d.webhook_id, event_id = %d.event_id,
            attempts = d.attempts, "delivery dead: retried for the whole window; redeliver it by hand");
    }
    if let Err(e) = hooks.store.update_delivery(&d).await {
        // Not recorded: the delivery stays as it was (pending) and is sent
        // again once the store answers; a delivered one twice at worst.
        tracing::warn!(target: "wasync::webhooks", error = %e, "cannot record a delivery attempt");
        waiting.insert(d.session_id.clone(), now + s.retry_min.as_millis() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_ceiling() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        for _ in 0..100 {
            let first = backoff(1, min, max);
            assert!((50..=100).contains(&first.as_millis()), "{first:?}");
            let third = backoff(3, min, max);
            assert!((200..=400).contains(&third.as_millis()), "{third:?}");
            let late = backoff(40, min, max);
            assert!((1000..=2000).contains(&late.as_millis()), "{late:?}");
        }
    }

    #[test]
    fn the_body_carries_the_event_and_its_data() {
        let d = DeliveryRecord {
            webhook_id: "w".into(),
            event_id: "e1".into(),
            event: "session_ready".into(),
            session_id: "s1".into(),
            data: serde_json::json!({"sessionId": "s1", "chats": ["a"]}),
            created_at: 5,
            status: DeliveryStatus::Pending,
            attempts: 0,
            queued_at: 5,
            next_attempt_at: 5,
            last_attempt_at: None,
            last_status: None,
            last_error: None,
            finished_at: None,
        };
        let v: serde_json::Value = serde_json::from_slice(&body(&d)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event": "session_ready", "eventId": "e1", "createdAt": 5,
                "sessionId": "s1", "data": {"sessionId": "s1", "chats": ["a"]}})
        );
    }
}
