//! The read a deepen starts from: a chat's oldest stored message.

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};

use super::{MongoStore, map_err};
use crate::domain::{MessageMark, SessionId};
use crate::storage::{StoreError, StoreResult};

impl MongoStore {
    /// The chat's oldest stored message with every id stored at its time:
    /// the index `session_chat_time_id` walked from its other end, keys
    /// only (ids and times, no bodies).
    pub(super) async fn oldest_of(
        &self,
        id: &SessionId,
        chat_id: &str,
    ) -> StoreResult<Option<MessageMark>> {
        const KEYS: i64 = 32;
        let rows: Vec<Document> = self
            .messages
            .clone_with_type::<Document>()
            .find(doc! { "sessionId": id.as_str(), "chatId": chat_id })
            .sort(doc! { "timestamp": 1, "messageId": -1 })
            .projection(doc! { "_id": 0, "timestamp": 1, "messageId": 1 })
            .limit(KEYS)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let key = |d: &Document| -> StoreResult<(i64, String)> {
            let t = d
                .get_datetime("timestamp")
                .map_err(|e| StoreError::Corrupt(format!("message timestamp: {e}")))?;
            let mid = d
                .get_str("messageId")
                .map_err(|e| StoreError::Corrupt(format!("message id: {e}")))?;
            Ok((t.timestamp_millis(), mid.to_owned()))
        };
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let (timestamp, _) = key(first)?;
        let mut ids = Vec::new();
        for d in &rows {
            let (t, mid) = key(d)?;
            if t != timestamp {
                break;
            }
            ids.push(mid);
        }
        if ids.len() as i64 == KEYS {
            // More messages share the oldest second than one read holds.
            return crate::storage::oldest_from_listing(self, id, chat_id).await;
        }
        ids.sort();
        Ok(Some(MessageMark { timestamp, ids }))
    }
}
