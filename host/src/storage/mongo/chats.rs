//! Chats: the provider's chat list and the marks an incremental sync
//! starts from (the counters a write keeps on each chat are in
//! [`super::counts`]).

use std::collections::HashMap;

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};

use super::marks::End;
use super::schema::{CHATS, ChatDoc};
use super::{MARK_READS_IN_FLIGHT, MongoStore, map_err};
use crate::domain::{Chat, MessageMark, SessionId, StoredChat};
use crate::storage::{ChatPage, StoreResult, decode_chat_cursor, encode_chat_cursor};

impl MongoStore {
    /// Upserts the provider's fields of `chats`, skipping the chats stored
    /// with exactly these fields already: a re-sync of an unchanged
    /// account reads its chat list once and writes none of it (one read
    /// of the session's chats costs far less than a durable upsert of
    /// each). A chat stored for the first time is inserted (see
    /// `unchanged`), its counters claimed for the writer's lease at `epoch`
    /// (`countEpoch`; none for 0), so the commits of the sync that lists it
    /// find it claimed already (see `counts`).
    pub(super) async fn upsert_chats_impl(
        &self,
        id: &SessionId,
        chats: &[Chat],
        epoch: u64,
    ) -> StoreResult<()> {
        if chats.is_empty() {
            return Ok(());
        }
        let sid = id.as_str();
        let fields: Vec<(&str, Document)> = chats
            .iter()
            .map(|c| (c.id.as_str(), ChatDoc::provider_fields(c)))
            .collect();
        let keys: Vec<String> = fields
            .first()
            .map(|(_, set)| set.keys().cloned().collect())
            .unwrap_or_default();
        let stored = self.stored_fields(CHATS, sid, "chatId", &keys).await?;
        let mut created = doc! { "syncedAt": Bson::Null, "messageCount": 0_i64 };
        if epoch > 0 {
            created.insert("countEpoch", epoch as i64);
        }
        self.write_differing(CHATS, (sid, "chatId"), &stored, fields, &created)
            .await
    }

    /// The time of the newest stored message of each of `chat_ids` that
    /// the chat document records (`newestMessageAt`, raised by every
    /// message write); chats written before the field existed are missing.
    /// One read of the session's chats, whatever their number.
    pub(super) async fn newest_message_times_impl(
        &self,
        id: &SessionId,
        chat_ids: &[String],
    ) -> StoreResult<HashMap<String, i64>> {
        if chat_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let wanted: std::collections::HashSet<&str> = chat_ids.iter().map(String::as_str).collect();
        let mut cursor = self
            .chats
            .clone_with_type::<Document>()
            .find(doc! { "sessionId": id.as_str(), "newestMessageAt": { "$ne": Bson::Null } })
            .projection(doc! { "_id": 0, "chatId": 1, "newestMessageAt": 1 })
            .await
            .map_err(map_err)?;
        let mut out = HashMap::new();
        while let Some(d) = cursor.try_next().await.map_err(map_err)? {
            let (Ok(chat_id), Ok(at)) = (d.get_str("chatId"), d.get_datetime("newestMessageAt"))
            else {
                continue;
            };
            if wanted.contains(chat_id) {
                out.insert(chat_id.to_owned(), at.timestamp_millis());
            }
        }
        Ok(out)
    }

    pub(super) async fn list_chats_impl(
        &self,
        id: &SessionId,
        limit: u32,
        cursor: Option<&str>,
    ) -> StoreResult<ChatPage> {
        if limit == 0 {
            return Ok(ChatPage {
                chats: Vec::new(),
                next_cursor: None,
            });
        }
        let sid = id.as_str();
        // Order: lastMessageAt desc (null last, which is where MongoDB puts
        // null in a descending sort), then chatId asc; the cursor seeks
        // strictly past the last chat of the previous page.
        let filter = match cursor.and_then(decode_chat_cursor) {
            None => doc! { "sessionId": sid },
            Some((Some(t), chat_id)) => doc! {
                "sessionId": sid,
                "$or": [
                    { "lastMessageAt": { "$lt": DateTime::from_millis(t) } },
                    { "lastMessageAt": DateTime::from_millis(t), "chatId": { "$gt": &chat_id } },
                    { "lastMessageAt": Bson::Null },
                ],
            },
            Some((None, chat_id)) => doc! {
                "sessionId": sid,
                "lastMessageAt": Bson::Null,
                "chatId": { "$gt": chat_id },
            },
        };
        let mut chats: Vec<StoredChat> = self
            .chats
            .find(filter)
            .sort(doc! { "lastMessageAt": -1, "chatId": 1 })
            .limit(i64::from(limit) + 1)
            .await
            .map_err(map_err)?
            .map_ok(ChatDoc::into_stored)
            .try_collect()
            .await
            .map_err(map_err)?;
        let next_cursor = if chats.len() > limit as usize {
            chats.truncate(limit as usize);
            chats
                .last()
                .map(|c| encode_chat_cursor(c.chat.last_message_at, &c.chat.id))
        } else {
            None
        };
        Ok(ChatPage { chats, next_cursor })
    }

    pub(super) async fn get_chat_impl(
        &self,
        id: &SessionId,
        chat_id: &str,
    ) -> StoreResult<Option<StoredChat>> {
        Ok(self
            .chats
            .find_one(doc! { "sessionId": id.as_str(), "chatId": chat_id })
            .await
            .map_err(map_err)?
            .map(ChatDoc::into_stored))
    }

    pub(super) async fn message_marks_impl(
        &self,
        id: &SessionId,
        chat_ids: &[String],
    ) -> StoreResult<HashMap<String, MessageMark>> {
        use futures_util::StreamExt;
        // One small indexed query per chat, a few in flight at a time: a
        // `$group` over the session would read every message document.
        let found: Vec<Option<(String, MessageMark)>> =
            futures_util::stream::iter(chat_ids.iter().cloned())
                .map(
                    |c| async move { Ok(self.mark_at(id, &c, End::Newest).await?.map(|m| (c, m))) },
                )
                .buffered(MARK_READS_IN_FLIGHT)
                .try_collect()
                .await?;
        Ok(found.into_iter().flatten().collect())
    }
}
