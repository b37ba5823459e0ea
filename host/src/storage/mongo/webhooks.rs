//! Webhook endpoints (`webhooks`) and deliveries (`webhook_deliveries`) on
//! MongoDB.
//!
//! A delivery's `_id` is `<webhookId>/<eventId>`, so queueing one twice
//! (a relay retrying a batch, two hosts fanning out the same event) is a
//! duplicate key, counted as "already queued", never a second delivery.
//! Endpoints carry a claim (`claimedBy`, `claimUntil`) like outbox events:
//! one host delivers an endpoint's events at a time, which keeps them in
//! order per session and under one concurrency cap.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};

use super::outbox::unclaimed;
use super::schema::{DELIVERY_DATES, WEBHOOK_DATES, date, decode, encode};
use super::{DUPLICATE_KEY, MongoStore, map_err};
use crate::domain::now_ms;
use crate::storage::StoreResult;
use crate::storage::webhooks::{
    DeliveryCursor, DeliveryRecord, DeliveryStatus, WebhookRecord, WebhookStore,
};

fn delivery_key(webhook_id: &str, event_id: &str) -> String {
    format!("{webhook_id}/{event_id}")
}

fn delivery_doc(d: &DeliveryRecord) -> StoreResult<Document> {
    let mut doc = encode(d, DELIVERY_DATES)?;
    doc.insert("_id", delivery_key(&d.webhook_id, &d.event_id));
    Ok(doc)
}

fn decode_hook(mut d: Document) -> StoreResult<WebhookRecord> {
    for k in ["claimedBy", "claimUntil"] {
        d.remove(k);
    }
    decode(d, WEBHOOK_DATES)
}

/// True when every error of a failed unordered insert is a duplicate key.
fn only_duplicates(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::InsertMany(f) => {
            f.write_concern_error.is_none()
                && f.write_errors
                    .as_ref()
                    .is_some_and(|w| w.iter().all(|w| w.code == DUPLICATE_KEY))
        }
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        _ => false,
    }
}

#[async_trait]
impl WebhookStore for MongoStore {
    async fn put_webhook(&self, hook: &WebhookRecord) -> StoreResult<()> {
        let d = encode(hook, WEBHOOK_DATES)?;
        self.webhooks
            .update_one(doc! { "_id": hook.webhook_id.as_str() }, doc! { "$set": d })
            .upsert(true)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn get_webhook(&self, webhook_id: &str) -> StoreResult<Option<WebhookRecord>> {
        self.webhooks
            .find_one(doc! { "_id": webhook_id })
            .await
            .map_err(map_err)?
            .map(decode_hook)
            .transpose()
    }

    async fn list_webhooks(&self) -> StoreResult<Vec<WebhookRecord>> {
        let docs: Vec<Document> = self
            .webhooks
            .find(doc! {})
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        docs.into_iter().map(decode_hook).collect()
    }

    async fn delete_webhook(&self, webhook_id: &str) -> StoreResult<bool> {
        // The endpoint first: once it is gone no fan-out queues for it, and
        // a crash before its deliveries go leaves rows nobody reads, which
        // the next delete of the same id (or retention) removes.
        let gone = self
            .webhooks
            .delete_one(doc! { "_id": webhook_id })
            .await
            .map_err(map_err)?
            .deleted_count
            > 0;
        self.deliveries
            .delete_many(doc! { "webhookId": webhook_id })
            .await
            .map_err(map_err)?;
        Ok(gone)
    }

    async fn claim_webhooks(
        &self,
        claimer: &str,
        take: u32,
        claim_ms: i64,
    ) -> StoreResult<Vec<String>> {
        let now = now_ms();
        let until = date(Some(now + claim_ms));
        // Renew what this host holds, in one write.
        self.webhooks
            .update_many(
                doc! { "claimedBy": claimer },
                doc! { "$set": { "claimUntil": until.clone() } },
            )
            .await
            .map_err(map_err)?;
        if take > 0 {
            let free: Vec<Document> = self
                .webhooks
                .find(unclaimed(now))
                .sort(doc! { "createdAt": 1, "_id": 1 })
                .projection(doc! { "_id": 1 })
                .limit(i64::from(take))
                .await
                .map_err(map_err)?
                .try_collect()
                .await
                .map_err(map_err)?;
            for d in free {
                let Some(id) = d.get("_id").cloned() else {
                    continue;
                };
                // Conditional: of two hosts racing, the server applies one
                // update first and the other's filter no longer matches.
                let mut filter = unclaimed(now);
                filter.insert("_id", id);
                self.webhooks
                    .update_one(
                        filter,
                        doc! { "$set": { "claimedBy": claimer, "claimUntil": until.clone() } },
                    )
                    .await
                    .map_err(map_err)?;
            }
        }
        let mine: Vec<Document> = self
            .webhooks
            .find(doc! { "claimedBy": claimer, "claimUntil": { "$gte": date(Some(now)) } })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        Ok(mine
            .into_iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect())
    }

    async fn insert_deliveries(&self, deliveries: &[DeliveryRecord]) -> StoreResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let docs = deliveries
            .iter()
            .map(delivery_doc)
            .collect::<StoreResult<Vec<_>>>()?;
        match self.deliveries.insert_many(docs).ordered(false).await {
            Ok(_) => Ok(()),
            Err(e) if only_duplicates(&e) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn pending_deliveries(
        &self,
        webhook_id: &str,
        skip: &[String],
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter =
            doc! { "webhookId": webhook_id, "status": DeliveryStatus::Pending.as_str() };
        if !skip.is_empty() {
            filter.insert("sessionId", doc! { "$nin": skip.to_vec() });
        }
        let cursor = self
            .deliveries
            .find(filter)
            .sort(doc! { "createdAt": 1, "eventId": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(map_err)?;
        Self::collect_docs(cursor, DELIVERY_DATES).await
    }

    async fn update_delivery(&self, delivery: &DeliveryRecord) -> StoreResult<bool> {
        let d = delivery_doc(delivery)?;
        let r = self
            .deliveries
            .replace_one(
                doc! { "_id": delivery_key(&delivery.webhook_id, &delivery.event_id) },
                d,
            )
            .await
            .map_err(map_err)?;
        Ok(r.matched_count > 0)
    }

    async fn get_delivery(
        &self,
        webhook_id: &str,
        event_id: &str,
    ) -> StoreResult<Option<DeliveryRecord>> {
        self.deliveries
            .find_one(doc! { "_id": delivery_key(webhook_id, event_id) })
            .await
            .map_err(map_err)?
            .map(|d| decode(d, DELIVERY_DATES))
            .transpose()
    }

    async fn list_deliveries(
        &self,
        webhook_id: &str,
        status: DeliveryStatus,
        limit: u32,
        after: Option<&DeliveryCursor>,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "webhookId": webhook_id, "status": status.as_str() };
        if let Some(c) = after {
            let t = date(Some(c.created_at));
            filter.insert(
                "$or",
                vec![
                    doc! { "createdAt": { "$gt": t.clone() } },
                    doc! { "createdAt": t, "eventId": { "$gt": c.event_id.as_str() } },
                ],
            );
        }
        let cursor = self
            .deliveries
            .find(filter)
            .sort(doc! { "createdAt": 1, "eventId": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(map_err)?;
        Self::collect_docs(cursor, DELIVERY_DATES).await
    }

    async fn prune_deliveries(&self, before: i64) -> StoreResult<u64> {
        Ok(self
            .deliveries
            .delete_many(doc! {
                "status": { "$in": [DeliveryStatus::Delivered.as_str(), DeliveryStatus::Dead.as_str()] },
                "createdAt": { "$lt": date(Some(before)) },
            })
            .await
            .map_err(map_err)?
            .deleted_count)
    }
}
