//! Quarantine and retention in the embedded store: quarantined messages
//! as JSON under `(sessionId, messageId)`, and the pruning of published
//! events and old quarantine in small steps.

use redb::{ReadableDatabase, ReadableTable};

use super::tables::*;
use super::{EmbeddedStore, Lane};
use crate::domain::{OutboxEvent, QuarantinedMessage, SessionId};
use crate::storage::{Pruned, StoreResult};

/// Keys deleted per write transaction when pruning.
pub(super) const PRUNE_STEP: usize = 1_000;

impl EmbeddedStore {
    /// `Store::put_quarantine`.
    pub(super) async fn quarantine(
        &self,
        id: &SessionId,
        items: &[QuarantinedMessage],
    ) -> StoreResult<()> {
        let sid = id.to_string();
        let items = items.to_vec();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            {
                let mut q = txn.open_table(QUARANTINE).db()?;
                for item in &items {
                    q.insert(
                        (sid.as_str(), item.message.id.as_str()),
                        enc(item)?.as_slice(),
                    )
                    .db()?;
                }
            }
            txn.commit().db()
        })
        .await
    }

    /// `Store::quarantine_page`: by message id, after `after`.
    pub(super) async fn quarantined(
        &self,
        id: &SessionId,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Vec<QuarantinedMessage>> {
        let sid = id.to_string();
        let after = after.map(str::to_owned);
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            page_after(&txn, QUARANTINE, &sid, limit, after.as_deref())
        })
        .await
    }

    /// `Store::clear_quarantine`.
    pub(super) async fn unquarantine(&self, id: &SessionId) -> StoreResult<u64> {
        let sid = id.to_string();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            let s = sid.as_str();
            let above = format!("{s}\0");
            let mut count = 0u64;
            {
                let mut q = txn.open_table(QUARANTINE).db()?;
                q.retain_in((s, "")..(above.as_str(), ""), |_, _| {
                    count += 1;
                    false
                })
                .db()?;
            }
            txn.commit().db()?;
            Ok(count)
        })
        .await
    }

    /// `Store::prune`: keys found in a read, then deleted in write
    /// transactions of at most [`PRUNE_STEP`] keys, so a sync's commit
    /// waits for one step at most, not for a scan of the whole table.
    pub(super) async fn prune_old(
        &self,
        published_before: i64,
        quarantined_before: i64,
    ) -> StoreResult<Pruned> {
        let (events, quarantined) = self
            .blocking(Lane::Read, move |db| {
                let txn = db.begin_read().db()?;
                let outbox = txn.open_table(OUTBOX).db()?;
                let mut events = Vec::new();
                for row in outbox.iter().db()? {
                    let (k, val) = row.db()?;
                    let ev: OutboxEvent = dec(val.value())?;
                    if ev.published_at.is_some_and(|t| t < published_before) {
                        events.push(k.value().to_owned());
                    }
                }
                let q = txn.open_table(QUARANTINE).db()?;
                let mut quarantined = Vec::new();
                for row in q.iter().db()? {
                    let (k, val) = row.db()?;
                    let item: QuarantinedMessage = dec(val.value())?;
                    if item.quarantined_at < quarantined_before {
                        let (s, m) = k.value();
                        quarantined.push((s.to_owned(), m.to_owned()));
                    }
                }
                Ok((events, quarantined))
            })
            .await?;
        let events = self
            .delete_in_steps(events, PRUNE_STEP, |txn, step: &[String]| {
                let mut outbox = txn.open_table(OUTBOX).db()?;
                for id in step {
                    outbox.remove(id.as_str()).db()?;
                }
                Ok(step.len() as u64)
            })
            .await?;
        let quarantined = self
            .delete_in_steps(quarantined, PRUNE_STEP, |txn, step: &[(String, String)]| {
                let mut q = txn.open_table(QUARANTINE).db()?;
                for (s, m) in step {
                    q.remove((s.as_str(), m.as_str())).db()?;
                }
                Ok(step.len() as u64)
            })
            .await?;
        Ok(Pruned {
            events,
            quarantined,
        })
    }
}
