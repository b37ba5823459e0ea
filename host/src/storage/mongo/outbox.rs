//! The outbox on MongoDB: queueing without overwriting, and claims, so the
//! relays of several hosts share the pending events instead of all
//! publishing each one.

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use super::schema::{OUTBOX_DATES, date, decode, encode};
use super::{MongoStore, map_err};
use crate::domain::{OutboxEvent, now_ms};
use crate::storage::StoreResult;

/// An event nobody holds a live claim on.
pub(super) fn unclaimed(now: i64) -> Document {
    doc! {
        "$or": [
            { "claimUntil": { "$exists": false } },
            { "claimUntil": Bson::Null },
            { "claimUntil": { "$lt": date(Some(now)) } },
        ],
    }
}

impl MongoStore {
    /// Inserts the event unless its id is queued already; a queued event,
    /// published or not, is left as it is (`$setOnInsert`), so a second
    /// host completing the same run does not publish its event again.
    pub(super) async fn put_event(&self, ev: &OutboxEvent) -> StoreResult<()> {
        let d = encode(ev, OUTBOX_DATES)?;
        self.outbox
            .update_one(
                doc! { "_id": ev.event_id.as_str() },
                doc! { "$setOnInsert": d },
            )
            .upsert(true)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Claims up to `limit` pending events for `claim_ms`: reads candidates,
    /// claims those still unclaimed with one conditional `updateMany` under
    /// a fresh token, and returns exactly the ones that token won. Two
    /// relays racing for one event: the server applies one update first,
    /// and the other's filter no longer matches it.
    pub(super) async fn claim(
        &self,
        claimer: &str,
        limit: u32,
        claim_ms: i64,
    ) -> StoreResult<Vec<OutboxEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut filter = unclaimed(now);
        filter.insert("publishedAt", Bson::Null);
        let candidates: Vec<Document> = self
            .outbox
            .find(filter.clone())
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .projection(doc! { "_id": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Bson> = candidates
            .into_iter()
            .filter_map(|mut d| d.remove("_id"))
            .collect();
        let token = uuid::Uuid::new_v4().to_string();
        filter.insert("_id", doc! { "$in": ids.clone() });
        self.outbox
            .update_many(
                filter,
                doc! { "$set": {
                    "claimedBy": claimer,
                    "claimToken": token.as_str(),
                    "claimUntil": date(Some(now + claim_ms)),
                } },
            )
            .await
            .map_err(map_err)?;
        let cursor = self
            .outbox
            .find(doc! { "_id": { "$in": ids }, "claimToken": token.as_str() })
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .await
            .map_err(map_err)?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(map_err)?;
        docs.into_iter()
            .map(|mut d| {
                for k in ["claimedBy", "claimToken", "claimUntil"] {
                    d.remove(k);
                }
                decode(d, OUTBOX_DATES)
            })
            .collect()
    }
}
