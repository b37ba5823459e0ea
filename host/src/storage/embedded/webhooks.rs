//! Webhook endpoints and deliveries in the embedded store.
//!
//! A delivery lives in `DELIVERIES` under `(webhookId, eventId)` and is
//! indexed in `DELIVERIES_BY_STATUS` under `(webhookId, status, createdAt,
//! eventId)`; both change in one transaction, so the index never points at
//! a delivery in another status. The pending window, the dead list and
//! pruning are range scans of that index.

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable};

use super::tables::*;
use super::{EmbeddedStore, Lane, PRUNE_STEP};
use crate::storage::StoreResult;
use crate::storage::webhooks::{
    DeliveryCursor, DeliveryRecord, DeliveryStatus, WebhookRecord, WebhookStore,
};

/// Index key of a delivery.
fn index_key(d: &DeliveryRecord) -> (&str, &str, u64, &str) {
    (
        d.webhook_id.as_str(),
        d.status.as_str(),
        ordered(d.created_at),
        d.event_id.as_str(),
    )
}

/// Writes `d`, moving its index entry if its status changed.
fn write_delivery(
    txn: &redb::WriteTransaction,
    d: &DeliveryRecord,
    old: Option<&DeliveryRecord>,
) -> StoreResult<()> {
    let mut rows = txn.open_table(DELIVERIES).db()?;
    let mut index = txn.open_table(DELIVERIES_BY_STATUS).db()?;
    if let Some(old) = old {
        index.remove(index_key(old)).db()?;
    }
    rows.insert(
        (d.webhook_id.as_str(), d.event_id.as_str()),
        enc(d)?.as_slice(),
    )
    .db()?;
    index.insert(index_key(d), ()).db()?;
    Ok(())
}

/// The keys of `sid`'s deliveries, found in a read so a purge's write
/// transaction only deletes. Deliveries are pruned after
/// `WASYNC_WEBHOOK_RETENTION_HOURS`, which bounds the scan.
pub(super) fn session_deliveries(
    db: &redb::Database,
    sid: &str,
) -> StoreResult<Vec<(String, String)>> {
    let txn = db.begin_read().db()?;
    let rows = txn.open_table(DELIVERIES).db()?;
    let mut out = Vec::new();
    for row in rows.iter().db()? {
        let (_, v) = row.db()?;
        let d: DeliveryRecord = dec(v.value())?;
        if d.session_id == sid {
            out.push((d.webhook_id, d.event_id));
        }
    }
    Ok(out)
}

/// Deletes deliveries by `(webhookId, eventId)`, each with the index entry
/// of the status it has now (it may have moved since it was found).
pub(super) fn remove_deliveries(
    txn: &redb::WriteTransaction,
    keys: &[(String, String)],
) -> StoreResult<()> {
    let mut rows = txn.open_table(DELIVERIES).db()?;
    let mut index = txn.open_table(DELIVERIES_BY_STATUS).db()?;
    for (w, e) in keys {
        let removed = rows.remove((w.as_str(), e.as_str())).db()?;
        if let Some(old) = removed {
            let d: DeliveryRecord = dec(old.value())?;
            index.remove(index_key(&d)).db()?;
        }
    }
    Ok(())
}

fn read_delivery(
    txn: &redb::WriteTransaction,
    webhook_id: &str,
    event_id: &str,
) -> StoreResult<Option<DeliveryRecord>> {
    let rows = txn.open_table(DELIVERIES).db()?;
    let found = rows.get((webhook_id, event_id)).db()?;
    found.map(|g| dec(g.value())).transpose()
}

#[async_trait]
impl WebhookStore for EmbeddedStore {
    async fn put_webhook(&self, hook: &WebhookRecord) -> StoreResult<()> {
        let hook = hook.clone();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            {
                let mut t = txn.open_table(WEBHOOKS).db()?;
                t.insert(hook.webhook_id.as_str(), enc(&hook)?.as_slice())
                    .db()?;
            }
            txn.commit().db()
        })
        .await
    }

    async fn get_webhook(&self, webhook_id: &str) -> StoreResult<Option<WebhookRecord>> {
        let id = webhook_id.to_owned();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let t = txn.open_table(WEBHOOKS).db()?;
            let found = t.get(id.as_str()).db()?;
            found.map(|g| dec(g.value())).transpose()
        })
        .await
    }

    async fn list_webhooks(&self) -> StoreResult<Vec<WebhookRecord>> {
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let t = txn.open_table(WEBHOOKS).db()?;
            let mut out: Vec<WebhookRecord> = Vec::new();
            for row in t.iter().db()? {
                let (_, v) = row.db()?;
                out.push(dec(v.value())?);
            }
            out.sort_by(|a, b| (a.created_at, &a.webhook_id).cmp(&(b.created_at, &b.webhook_id)));
            Ok(out)
        })
        .await
    }

    async fn delete_webhook(&self, webhook_id: &str) -> StoreResult<bool> {
        let id = webhook_id.to_owned();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            let existed;
            {
                let mut t = txn.open_table(WEBHOOKS).db()?;
                existed = t.remove(id.as_str()).db()?.is_some();
                // `"<id>\0"` is the least string above every key starting
                // with exactly `id` (see `purge_prefix` in mod.rs).
                let above = format!("{id}\0");
                let mut rows = txn.open_table(DELIVERIES).db()?;
                rows.retain_in((id.as_str(), "")..(above.as_str(), ""), |_, _| false)
                    .db()?;
                let mut index = txn.open_table(DELIVERIES_BY_STATUS).db()?;
                index
                    .retain_in(
                        (id.as_str(), "", 0, "")..(above.as_str(), "", 0, ""),
                        |_, _| false,
                    )
                    .db()?;
            }
            txn.commit().db()?;
            Ok(existed)
        })
        .await
    }

    async fn insert_deliveries(&self, deliveries: &[DeliveryRecord]) -> StoreResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let deliveries = deliveries.to_vec();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            for d in &deliveries {
                if read_delivery(&txn, &d.webhook_id, &d.event_id)?.is_none() {
                    write_delivery(&txn, d, None)?;
                }
            }
            txn.commit().db()
        })
        .await
    }

    async fn pending_deliveries(
        &self,
        webhook_id: &str,
        skip: &[String],
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        let id = webhook_id.to_owned();
        let skip: std::collections::HashSet<String> = skip.iter().cloned().collect();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let index = txn.open_table(DELIVERIES_BY_STATUS).db()?;
            let rows = txn.open_table(DELIVERIES).db()?;
            let pending = DeliveryStatus::Pending.as_str();
            let mut out = Vec::new();
            let range =
                (id.as_str(), pending, 0u64, "")..=(id.as_str(), pending, u64::MAX, "\u{10FFFF}");
            for row in index.range(range).db()? {
                if out.len() >= limit as usize {
                    break;
                }
                let (k, _) = row.db()?;
                let (_, _, _, event_id) = k.value();
                let Some(g) = rows.get((id.as_str(), event_id)).db()? else {
                    continue;
                };
                let d: DeliveryRecord = dec(g.value())?;
                if !skip.contains(&d.session_id) {
                    out.push(d);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn update_delivery(&self, delivery: &DeliveryRecord) -> StoreResult<bool> {
        let d = delivery.clone();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            let Some(old) = read_delivery(&txn, &d.webhook_id, &d.event_id)? else {
                return Ok(false);
            };
            write_delivery(&txn, &d, Some(&old))?;
            txn.commit().db()?;
            Ok(true)
        })
        .await
    }

    async fn get_delivery(
        &self,
        webhook_id: &str,
        event_id: &str,
    ) -> StoreResult<Option<DeliveryRecord>> {
        let (w, e) = (webhook_id.to_owned(), event_id.to_owned());
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let rows = txn.open_table(DELIVERIES).db()?;
            let found = rows.get((w.as_str(), e.as_str())).db()?;
            found.map(|g| dec(g.value())).transpose()
        })
        .await
    }

    async fn list_deliveries(
        &self,
        webhook_id: &str,
        status: DeliveryStatus,
        limit: u32,
        after: Option<&DeliveryCursor>,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        let id = webhook_id.to_owned();
        let after = after.cloned();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let index = txn.open_table(DELIVERIES_BY_STATUS).db()?;
            let rows = txn.open_table(DELIVERIES).db()?;
            let s = status.as_str();
            let (from_t, from_id) = match &after {
                Some(c) => (ordered(c.created_at), c.event_id.clone()),
                None => (0, String::new()),
            };
            let range = (id.as_str(), s, from_t, from_id.as_str())
                ..=(id.as_str(), s, u64::MAX, "\u{10FFFF}");
            let mut out = Vec::new();
            for row in index.range(range).db()? {
                if out.len() >= limit as usize {
                    break;
                }
                let (k, _) = row.db()?;
                let (_, _, t, event_id) = k.value();
                if after.is_some() && t == from_t && event_id == from_id {
                    continue;
                }
                if let Some(g) = rows.get((id.as_str(), event_id)).db()? {
                    out.push(dec(g.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn prune_deliveries(&self, before: i64) -> StoreResult<u64> {
        // Keys are found in a read, then deleted in small write calls, like
        // the outbox's pruning.
        let doomed: Vec<(String, String, u64, String)> = self
            .blocking(Lane::Read, move |db| {
                let txn = db.begin_read().db()?;
                let hooks = txn.open_table(WEBHOOKS).db()?;
                let index = txn.open_table(DELIVERIES_BY_STATUS).db()?;
                let mut v = Vec::new();
                for row in hooks.iter().db()? {
                    let (k, _) = row.db()?;
                    let w = k.value().to_owned();
                    for status in [DeliveryStatus::Delivered, DeliveryStatus::Dead] {
                        let s = status.as_str();
                        let range = (w.as_str(), s, 0u64, "")..(w.as_str(), s, ordered(before), "");
                        for row in index.range(range).db()? {
                            let (k, _) = row.db()?;
                            let (w, s, t, e) = k.value();
                            v.push((w.to_owned(), s.to_owned(), t, e.to_owned()));
                            if v.len() >= PRUNE_MAX {
                                break;
                            }
                        }
                    }
                }
                Ok(v)
            })
            .await?;
        self.delete_in_steps(
            doomed,
            PRUNE_STEP,
            |txn, step: &[(String, String, u64, String)]| {
                let mut rows = txn.open_table(DELIVERIES).db()?;
                let mut index = txn.open_table(DELIVERIES_BY_STATUS).db()?;
                for (w, s, t, e) in step {
                    index
                        .remove((w.as_str(), s.as_str(), *t, e.as_str()))
                        .db()?;
                    rows.remove((w.as_str(), e.as_str())).db()?;
                }
                Ok(step.len() as u64)
            },
        )
        .await
    }
}

/// Deliveries one prune pass deletes at most (the next pass goes on).
const PRUNE_MAX: usize = 100_000;
