//! The webhooks' part of the store: endpoints, and one delivery record per
//! (endpoint, event) with its retry state.
//!
//! A separate port from [`Store`](super::Store) because only the webhooks
//! subsystem uses it: the session and sync code never see it, and the
//! fencing wrapper of the cluster has nothing to fence here (deliveries are
//! not a session's data). Both adapters implement it; the contract suite
//! (`contract::webhooks`) runs against both.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreResult;

/// One webhook endpoint as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRecord {
    pub webhook_id: String,
    /// `http://` or `https://`, validated at create.
    pub url: String,
    /// Event names (see `webhooks::EVENTS`).
    pub events: Vec<String>,
    /// Only this session's events; `None` is every session.
    pub session_id: Option<String>,
    /// The HMAC key. Stored because signing needs it; never returned by
    /// the API nor logged.
    pub secret: Option<String>,
    /// Events created before this are not delivered to the endpoint.
    pub created_at: i64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first attempt or its next retry.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Retried for the whole retry window without success; redeliverable.
    Dead,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// One event on its way to one endpoint. Unique per `(webhookId, eventId)`:
/// queueing it twice (a relay that retries a batch) changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    pub webhook_id: String,
    /// The outbox event's id: `X-Wasync-Delivery`, what receivers dedupe on.
    pub event_id: String,
    /// The event's name: `X-Wasync-Event`.
    pub event: String,
    pub session_id: String,
    /// The event's data, as the broker and WebSocket get it.
    pub data: serde_json::Value,
    /// When the event was created; deliveries of one session to one
    /// endpoint go out in this order (ties by event id).
    pub created_at: i64,
    pub status: DeliveryStatus,
    /// Attempts since it was queued (or redelivered).
    pub attempts: u32,
    /// Start of the retry window: the fan-out, or the last redeliver.
    pub queued_at: i64,
    /// Not before this.
    pub next_attempt_at: i64,
    pub last_attempt_at: Option<i64>,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed (`timeout`, `status 500`, ...).
    pub last_error: Option<String>,
    /// When it was delivered or declared dead.
    pub finished_at: Option<i64>,
}

/// Where a page of deliveries starts: after this `(createdAt, eventId)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryCursor {
    pub created_at: i64,
    pub event_id: String,
}

impl DeliveryCursor {
    /// Opaque text form `<ms>:<eventId>`.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.created_at, self.event_id)
    }

    pub fn decode(text: &str) -> Option<DeliveryCursor> {
        let (t, id) = text.split_once(':')?;
        if id.is_empty() || id.len() > 128 {
            return None;
        }
        Some(DeliveryCursor {
            created_at: t.parse().ok()?,
            event_id: id.to_owned(),
        })
    }

    pub fn of(d: &DeliveryRecord) -> DeliveryCursor {
        DeliveryCursor {
            created_at: d.created_at,
            event_id: d.event_id.clone(),
        }
    }
}

/// The webhooks' persistence port.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Writes an endpoint (insert or replace).
    async fn put_webhook(&self, hook: &WebhookRecord) -> StoreResult<()>;
    async fn get_webhook(&self, webhook_id: &str) -> StoreResult<Option<WebhookRecord>>;
    /// Every endpoint, oldest first.
    async fn list_webhooks(&self) -> StoreResult<Vec<WebhookRecord>>;
    /// Deletes the endpoint and all its deliveries; false if it did not exist.
    async fn delete_webhook(&self, webhook_id: &str) -> StoreResult<bool>;

    /// The endpoints `claimer` may deliver to now. On a store several hosts
    /// share, each endpoint is claimed by one host for `claim_ms` (renewed
    /// by every call of its holder; at most `take` unclaimed ones are taken
    /// per call, so the hosts share them), which keeps one endpoint's
    /// deliveries in order and under one concurrency cap. A store only one
    /// host uses returns every endpoint.
    async fn claim_webhooks(
        &self,
        claimer: &str,
        take: u32,
        claim_ms: i64,
    ) -> StoreResult<Vec<String>> {
        let _ = (claimer, take, claim_ms);
        Ok(self
            .list_webhooks()
            .await?
            .into_iter()
            .map(|h| h.webhook_id)
            .collect())
    }

    /// Queues deliveries; one whose `(webhookId, eventId)` exists already is
    /// left as it is (delivered, dead or mid-retry).
    async fn insert_deliveries(&self, deliveries: &[DeliveryRecord]) -> StoreResult<()>;

    /// Pending deliveries of an endpoint, oldest event first (ties by event
    /// id), leaving out the sessions in `skip` (lanes busy or backing off).
    async fn pending_deliveries(
        &self,
        webhook_id: &str,
        skip: &[String],
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>>;

    /// Writes a delivery's new state (after an attempt, or a redeliver);
    /// false if it is gone (its endpoint was deleted).
    async fn update_delivery(&self, delivery: &DeliveryRecord) -> StoreResult<bool>;

    async fn get_delivery(
        &self,
        webhook_id: &str,
        event_id: &str,
    ) -> StoreResult<Option<DeliveryRecord>>;

    /// A page of an endpoint's deliveries in `status`, oldest event first,
    /// after `after`.
    async fn list_deliveries(
        &self,
        webhook_id: &str,
        status: DeliveryStatus,
        limit: u32,
        after: Option<&DeliveryCursor>,
    ) -> StoreResult<Vec<DeliveryRecord>>;

    /// Deletes delivered and dead deliveries whose event was created before
    /// `before` (ms); pending ones are never pruned. Bounded work per call.
    async fn prune_deliveries(&self, before: i64) -> StoreResult<u64>;
}
