//! A chat's marks: the newest stored message (where an incremental sync
//! starts) and the oldest (where a deepen goes on), each with every id
//! stored at its time, read from either end of the index
//! `session_chat_time_id`, keys only (ids and times, no bodies).

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};

use super::{MongoStore, map_err};
use crate::domain::{MessageMark, SessionId};
use crate::storage::{StoreError, StoreResult};

/// Keys one read takes; more messages sharing the end's second than this
/// fall back to the listing.
const KEYS: i64 = 32;

/// Which end of a chat's stored messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Newest,
    Oldest,
}

impl MongoStore {
    /// The chat's mark at `end`; `None` without stored messages.
    pub(super) async fn mark_at(
        &self,
        id: &SessionId,
        chat_id: &str,
        end: End,
    ) -> StoreResult<Option<MessageMark>> {
        // The listing order (newest first, ties by id), or its reverse.
        let sort = match end {
            End::Newest => doc! { "timestamp": -1, "messageId": 1 },
            End::Oldest => doc! { "timestamp": 1, "messageId": -1 },
        };
        let rows: Vec<Document> = self
            .messages
            .clone_with_type::<Document>()
            .find(doc! { "sessionId": id.as_str(), "chatId": chat_id })
            .sort(sort)
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
            // More messages share that second than one read holds.
            return match end {
                End::Newest => crate::storage::mark_from_listing(self, id, chat_id).await,
                End::Oldest => crate::storage::oldest_from_listing(self, id, chat_id).await,
            };
        }
        if end == End::Oldest {
            ids.sort();
        }
        Ok(Some(MessageMark { timestamp, ids }))
    }
}
