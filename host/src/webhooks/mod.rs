//! Signed HTTP webhooks: endpoints a client registers (`/webhooks`), and
//! the deliveries of the events they asked for, retried until delivered or
//! dead.
//!
//! # Why it is written the way it is
//!
//! - **Through the outbox, never beside it.** A webhook gets exactly the
//!   events the broker gets, from the same durable outbox: the sync and the
//!   session actor queue an event (in the same step as the data it
//!   announces) when the broker or a webhook wants it ([`EventGate`]), and
//!   the outbox relay hands every batch to the [`fanout`] before the
//!   broker. The fan-out writes one delivery per (endpoint, event) and only
//!   then lets the relay go on, so an event is in the outbox until its
//!   deliveries are stored: a crash or a restart anywhere loses nothing.
//! - **One delivery per (endpoint, event), keyed so.** A relay that retries
//!   a batch, or two hosts that fan out one event, write the same key; the
//!   second write is a no-op. Receivers still deduplicate on
//!   `X-Wasync-Delivery` (the event id): a host can die after the receiver
//!   answered and before the store heard it (at least once, like the broker).
//! - **Lanes keep order.** Deliveries of one session to one endpoint go one
//!   at a time, oldest event first; a delivery waiting for its retry holds
//!   back the ones behind it (and nothing else). Different sessions run side
//!   by side up to the endpoint's concurrency cap. On a shared store each
//!   endpoint is claimed by one host ([`WebhookStore::claim_webhooks`]), so
//!   one process owns its lanes and its cap.
//! - **Retries are bounded by age, not count.** Exponential backoff with
//!   jitter (so a receiver coming back is not hit by every lane at once),
//!   until the delivery has been queued for `WASYNC_WEBHOOK_MAX_AGE_SECS`;
//!   then it is `dead`, listed, and redeliverable by hand.
//! - **No request to where the server alone can reach.** URLs are checked
//!   at create and every connection re-checks the addresses it dials
//!   ([`target`]), so DNS rebinding cannot turn a webhook into a probe of
//!   the private network.
//! - **A slow receiver slows only its lane.** Deliveries run on their own
//!   tasks with a timeout each; the sync and the session never wait for
//!   one (they only queue the event, as for the broker).
//! - **Secrets stay in the store.** The API shows a fingerprint, logs never
//!   show the secret, the URL or the body (URLs carry tokens).

pub mod client;
pub mod dispatch;
pub mod fanout;
pub mod sign;
pub mod target;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{SessionId, now_ms};
use crate::events::{EventGate, Interest, WEBHOOK_EVENTS};
use crate::storage::StoreError;
use crate::storage::webhooks::{
    DeliveryCursor, DeliveryRecord, DeliveryStatus, WebhookRecord, WebhookStore,
};

use self::target::{AllowList, TargetError};

/// Shortest and longest secret accepted (bytes).
pub const SECRET_LEN: std::ops::RangeInclusive<usize> = 16..=256;

/// What the operator configures (`WASYNC_WEBHOOK_*`), plus the host's
/// identity for claims.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Endpoints at most (`WASYNC_MAX_WEBHOOKS`).
    pub max_webhooks: usize,
    /// Private networks deliveries may reach (`WASYNC_WEBHOOK_ALLOW_PRIVATE`).
    pub allow_private: AllowList,
    /// How long a delivery is retried before it is dead.
    pub max_age: Duration,
    /// First retry delay; doubles per attempt up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// One attempt's time limit (connect, headers, answer).
    pub timeout: Duration,
    /// Deliveries in flight per endpoint at most.
    pub concurrency: usize,
    /// Delivered and dead deliveries are deleted after this.
    pub retention: Duration,
    /// This host, as the claimer of endpoints on a shared store.
    pub host_id: String,
    pub tuning: WebhookTuning,
}

/// Knobs tests turn: how often the dispatcher looks without a signal, and
/// how long an endpoint's claim lasts.
#[derive(Debug, Clone)]
pub struct WebhookTuning {
    pub poll: Duration,
    pub claim: Duration,
    /// Pending deliveries read per look at an endpoint.
    pub window: u32,
    /// Period of the retention pass over deliveries.
    pub retention_every: Duration,
}

impl Default for WebhookTuning {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            claim: Duration::from_secs(30),
            window: 256,
            retention_every: Duration::from_secs(3_600),
        }
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            max_webhooks: 100,
            allow_private: AllowList::default(),
            max_age: Duration::from_secs(86_400),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
            concurrency: 4,
            retention: Duration::from_secs(168 * 3_600),
            host_id: "wasync".into(),
            tuning: WebhookTuning::default(),
        }
    }
}

/// Errors at the webhooks' boundary; each is a problem the client can fix,
/// except `Store`.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Url(#[from] TargetError),
    #[error("{0}")]
    Invalid(String),
    #[error("unknown event {name:?}; the events are {}", WEBHOOK_EVENTS.join(", "))]
    UnknownEvent { name: String },
    #[error("at most {max} webhooks; delete one first")]
    TooMany { max: usize },
    #[error("webhook {0} not found")]
    NotFound(String),
    #[error("delivery {event_id} of webhook {webhook_id} not found")]
    DeliveryNotFound {
        webhook_id: String,
        event_id: String,
    },
    #[error("delivery {0} is still pending: it is retried by itself")]
    StillPending(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The body of `POST /webhooks`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where deliveries are POSTed: `http://` or `https://`, at most 2048
    /// bytes, no credentials; private addresses only when allowed.
    #[schema(min_length = 1, max_length = 2048)]
    pub url: String,
    /// The events wanted (each at most once).
    #[schema(min_items = 1, max_items = 9)]
    pub events: Vec<String>,
    /// Only this session's events; absent: every session's.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub session_id: Option<String>,
    /// The HMAC key for `X-Wasync-Signature` (16 to 256 bytes); absent:
    /// deliveries are not signed.
    #[serde(default)]
    #[schema(min_length = 16, max_length = 256)]
    pub secret: Option<String>,
}

/// A webhook as the API shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub webhook_id: String,
    pub url: String,
    pub events: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Whether deliveries are signed.
    pub has_secret: bool,
    /// A fingerprint of the secret (`sha256:` and 8 hex digits), to tell
    /// which one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_hint: Option<String>,
    pub created_at: i64,
}

impl From<&WebhookRecord> for WebhookView {
    fn from(r: &WebhookRecord) -> Self {
        WebhookView {
            webhook_id: r.webhook_id.clone(),
            url: r.url.clone(),
            events: r.events.clone(),
            session_id: r.session_id.clone(),
            has_secret: r.secret.is_some(),
            secret_hint: r.secret.as_deref().map(sign::fingerprint),
            created_at: r.created_at,
        }
    }
}

/// One delivery as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub webhook_id: String,
    /// `X-Wasync-Delivery`.
    pub event_id: String,
    pub event: String,
    pub session_id: String,
    pub status: DeliveryStatus,
    /// Attempts since it was queued or redelivered.
    pub attempts: u32,
    pub created_at: i64,
    pub queued_at: i64,
    /// When the next attempt is due (pending only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// The body's `data`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(d: DeliveryRecord) -> Self {
        DeliveryView {
            next_attempt_at: (d.status == DeliveryStatus::Pending).then_some(d.next_attempt_at),
            webhook_id: d.webhook_id,
            event_id: d.event_id,
            event: d.event,
            session_id: d.session_id,
            status: d.status,
            attempts: d.attempts,
            created_at: d.created_at,
            queued_at: d.queued_at,
            last_attempt_at: d.last_attempt_at,
            last_status: d.last_status,
            last_error: d.last_error,
            finished_at: d.finished_at,
            data: d.data,
        }
    }
}

/// A page of deliveries.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Wakes the dispatcher's workers (new deliveries, a redeliver, a new
/// endpoint). A counter on a watch channel: a worker busy when it moves
/// still sees it change.
#[derive(Debug, Clone)]
pub struct Wake(Arc<tokio::sync::watch::Sender<u64>>);

impl Default for Wake {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(0).0))
    }
}

impl Wake {
    pub fn kick(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// The webhooks subsystem as the gateway and the dispatcher see it.
pub struct Webhooks {
    pub store: Arc<dyn WebhookStore>,
    pub gate: EventGate,
    pub settings: WebhookSettings,
    pub wake: Wake,
    pub metrics: Arc<crate::telemetry::Metrics>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Validates and stores a new endpoint.
    pub async fn create(&self, input: CreateWebhook) -> Result<WebhookView, WebhookError> {
        let target = target::parse(&input.url)?;
        let mut events = Vec::new();
        if input.events.is_empty() {
            return Err(WebhookError::Invalid(format!(
                "events must name at least one of {}",
                WEBHOOK_EVENTS.join(", ")
            )));
        }
        if input.events.len() > WEBHOOK_EVENTS.len() {
            return Err(WebhookError::Invalid(format!(
                "events names at most {} events",
                WEBHOOK_EVENTS.len()
            )));
        }
        for name in input.events {
            if !WEBHOOK_EVENTS.contains(&name.as_str()) {
                return Err(WebhookError::UnknownEvent {
                    name: name.chars().take(64).collect(),
                });
            }
            if !events.contains(&name) {
                events.push(name);
            }
        }
        if let Some(s) = &input.session_id {
            SessionId::parse(s)
                .map_err(|e| WebhookError::Invalid(format!("invalid sessionId: {e}")))?;
        }
        if let Some(secret) = &input.secret
            && (!SECRET_LEN.contains(&secret.len()) || secret.chars().any(char::is_control))
        {
            return Err(WebhookError::Invalid(format!(
                "secret must be {} to {} bytes without control characters",
                SECRET_LEN.start(),
                SECRET_LEN.end()
            )));
        }
        target
            .check(&self.settings.allow_private, Duration::from_secs(5))
            .await?;
        let existing = self.store.list_webhooks().await?;
        if existing.len() >= self.settings.max_webhooks {
            return Err(WebhookError::TooMany {
                max: self.settings.max_webhooks,
            });
        }
        let rec = WebhookRecord {
            webhook_id: uuid::Uuid::now_v7().to_string(),
            url: input.url,
            events,
            session_id: input.session_id,
            secret: input.secret,
            created_at: now_ms(),
        };
        self.store.put_webhook(&rec).await?;
        tracing::info!(target: "wasync::webhooks", webhook_id = %rec.webhook_id, events = ?rec.events, "webhook created");
        self.refresh_interest().await;
        self.wake.kick();
        Ok(WebhookView::from(&rec))
    }

    /// Every endpoint, or those of one session (global ones included).
    pub async fn list(&self, session: Option<&str>) -> Result<Vec<WebhookView>, WebhookError> {
        Ok(self
            .store
            .list_webhooks()
            .await?
            .iter()
            .filter(|h| {
                session.is_none() || h.session_id.is_none() || h.session_id.as_deref() == session
            })
            .map(WebhookView::from)
            .collect())
    }

    pub async fn get(&self, id: &str) -> Result<WebhookView, WebhookError> {
        match self.store.get_webhook(id).await? {
            Some(h) => Ok(WebhookView::from(&h)),
            None => Err(WebhookError::NotFound(id.to_owned())),
        }
    }

    /// Deletes an endpoint with its deliveries; pending ones are dropped.
    pub async fn delete(&self, id: &str) -> Result<(), WebhookError> {
        if !self.store.delete_webhook(id).await? {
            return Err(WebhookError::NotFound(id.to_owned()));
        }
        tracing::info!(target: "wasync::webhooks", webhook_id = %id, "webhook deleted");
        self.refresh_interest().await;
        self.wake.kick();
        Ok(())
    }

    /// A page of an endpoint's deliveries in `status`.
    pub async fn deliveries(
        &self,
        id: &str,
        status: DeliveryStatus,
        limit: u32,
        cursor: Option<&DeliveryCursor>,
    ) -> Result<DeliveryPage, WebhookError> {
        self.get(id).await?;
        let rows = self
            .store
            .list_deliveries(id, status, limit, cursor)
            .await?;
        let next_cursor = (rows.len() as u32 == limit)
            .then(|| rows.last().map(|d| DeliveryCursor::of(d).encode()))
            .flatten();
        Ok(DeliveryPage {
            deliveries: rows.into_iter().map(DeliveryView::from).collect(),
            next_cursor,
        })
    }

    /// Queues a dead (or delivered) delivery again, with a fresh retry
    /// window; it goes out in its lane's order.
    pub async fn redeliver(&self, id: &str, event_id: &str) -> Result<DeliveryView, WebhookError> {
        self.get(id).await?;
        let Some(mut d) = self.store.get_delivery(id, event_id).await? else {
            return Err(WebhookError::DeliveryNotFound {
                webhook_id: id.to_owned(),
                event_id: event_id.to_owned(),
            });
        };
        if d.status == DeliveryStatus::Pending {
            return Err(WebhookError::StillPending(event_id.to_owned()));
        }
        let now = now_ms();
        d.status = DeliveryStatus::Pending;
        d.attempts = 0;
        d.queued_at = now;
        d.next_attempt_at = now;
        d.finished_at = None;
        if !self.store.update_delivery(&d).await? {
            return Err(WebhookError::DeliveryNotFound {
                webhook_id: id.to_owned(),
                event_id: event_id.to_owned(),
            });
        }
        tracing::info!(target: "wasync::webhooks", webhook_id = %id, event_id = %event_id, "delivery queued again");
        self.wake.kick();
        Ok(DeliveryView::from(d))
    }

    /// Tells the producers which events the endpoints want now. A store
    /// that does not answer keeps the previous interest.
    pub async fn refresh_interest(&self) {
        let ticket = self.gate.interest_ticket();
        match self.store.list_webhooks().await {
            Ok(hooks) => self.gate.set_interest(ticket, interest_of(&hooks)),
            Err(e) => {
                tracing::warn!(target: "wasync::webhooks", error = %e, "cannot list webhooks; keeping the previous event interest")
            }
        }
    }
}

/// What a set of endpoints wants, for the [`EventGate`].
pub fn interest_of(hooks: &[WebhookRecord]) -> Interest {
    let mut i = Interest::default();
    for h in hooks {
        let set: &mut HashSet<String> = match &h.session_id {
            None => &mut i.global,
            Some(s) => i.sessions.entry(s.clone()).or_default(),
        };
        set.extend(h.events.iter().cloned());
    }
    i
}
