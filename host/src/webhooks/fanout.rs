//! The fan-out: the outbox relay's [`OutboxTap`]. For each batch it reads
//! the endpoints and stores one delivery per (endpoint, matching event)
//! before the relay lets the batch go, so an event leaves the outbox only
//! once its deliveries are durable.
//!
//! An endpoint gets the events created after it was (an endpoint added
//! today does not receive last week's backlog of the outbox), of its
//! session if it names one, and of the names it asked for.

use std::sync::Arc;

use async_trait::async_trait;

use super::Webhooks;
use crate::domain::OutboxEvent;
use crate::events::WEBHOOK_EVENTS;
use crate::events::relay::OutboxTap;
use crate::storage::webhooks::{DeliveryRecord, DeliveryStatus, WebhookRecord};

/// The webhooks' tap on the outbox.
#[derive(Debug, Clone)]
pub struct Fanout(pub Arc<Webhooks>);

/// Whether `hook` wants `ev`.
pub fn matches(hook: &WebhookRecord, ev: &OutboxEvent) -> bool {
    ev.created_at >= hook.created_at
        && hook.events.contains(&ev.pattern)
        && hook.session_id.as_ref().is_none_or(|s| *s == ev.session_id)
}

/// The delivery of `ev` to `hook`, due now.
pub fn delivery(hook: &WebhookRecord, ev: &OutboxEvent, now: i64) -> DeliveryRecord {
    DeliveryRecord {
        webhook_id: hook.webhook_id.clone(),
        event_id: ev.event_id.clone(),
        event: ev.pattern.clone(),
        session_id: ev.session_id.clone(),
        data: ev.data.clone(),
        created_at: ev.created_at,
        status: DeliveryStatus::Pending,
        attempts: 0,
        queued_at: now,
        next_attempt_at: now,
        last_attempt_at: None,
        last_status: None,
        last_error: None,
        finished_at: None,
    }
}

#[async_trait]
impl OutboxTap for Fanout {
    async fn take(&self, events: &[OutboxEvent]) -> Result<(), String> {
        if !events
            .iter()
            .any(|e| WEBHOOK_EVENTS.contains(&e.pattern.as_str()))
        {
            return Ok(());
        }
        let ticket = self.0.gate.interest_ticket();
        let hooks = self
            .0
            .store
            .list_webhooks()
            .await
            .map_err(|e| e.to_string())?;
        // The producers' view of what is wanted follows the endpoints
        // without waiting for the dispatcher's next look.
        self.0.gate.set_interest(ticket, super::interest_of(&hooks));
        if hooks.is_empty() {
            return Ok(());
        }
        let now = crate::domain::now_ms();
        let deliveries: Vec<DeliveryRecord> = events
            .iter()
            .flat_map(|ev| {
                hooks
                    .iter()
                    .filter(|h| matches(h, ev))
                    .map(move |h| delivery(h, ev, now))
            })
            .collect();
        if deliveries.is_empty() {
            return Ok(());
        }
        self.0
            .store
            .insert_deliveries(&deliveries)
            .await
            .map_err(|e| e.to_string())?;
        self.0.wake.kick();
        Ok(())
    }
}
