//! Chats: the provider's chat list, the counters a commit keeps on each
//! chat, and the marks an incremental sync starts from.

use std::collections::HashMap;

use crate::domain::Message;

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};

use super::marks::End;
use super::schema::{CHATS, ChatDoc};
use super::unchanged::same_fields;
use super::{MARK_READS_IN_FLIGHT, MongoStore, map_err};
use crate::domain::{Chat, MessageMark, SessionId, StoredChat};
use crate::storage::{ChatPage, StoreError, StoreResult, decode_chat_cursor, encode_chat_cursor};

impl MongoStore {
    /// Upserts the provider's fields of `chats`, skipping the chats stored
    /// with exactly these fields already: a re-sync of an unchanged
    /// account reads its chat list once and writes none of it (one read
    /// of the session's chats costs far less than a durable upsert of
    /// each).
    pub(super) async fn upsert_chats_impl(
        &self,
        id: &SessionId,
        chats: &[Chat],
    ) -> StoreResult<()> {
        if chats.is_empty() {
            return Ok(());
        }
        let sid = id.as_str();
        let mut fields: Vec<(&str, Document)> = chats
            .iter()
            .map(|c| (c.id.as_str(), ChatDoc::provider_fields(c)))
            .collect();
        let keys: Vec<String> = fields
            .first()
            .map(|(_, set)| set.keys().cloned().collect())
            .unwrap_or_default();
        let stored = self.stored_fields(CHATS, sid, "chatId", &keys).await?;
        fields.retain(|(chat_id, set)| {
            stored
                .get(*chat_id)
                .is_none_or(|have| !same_fields(set, have))
        });
        let statements: Vec<Document> = fields
            .into_iter()
            .map(|(chat_id, set)| {
                doc! {
                    "q": { "sessionId": sid, "chatId": chat_id },
                    "u": {
                        "$set": set,
                        "$setOnInsert": { "syncedAt": Bson::Null, "messageCount": 0_i64 },
                    },
                    "upsert": true,
                }
            })
            .collect();
        if statements.is_empty() {
            return Ok(());
        }
        self.upsert_statements(CHATS, statements).await
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

    /// Recounts the stored messages of `chats` and raises each chat's
    /// `messageCount` to it, and its `newestMessageAt` to the newest
    /// message written (and sets `syncedAt` where given). Chats that do
    /// not exist are left alone, as in the embedded store.
    pub(super) async fn refresh_chats(&self, sid: &str, chats: &[ChatTouch]) -> StoreResult<()> {
        if chats.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = chats.iter().map(|c| c.chat_id.as_str()).collect();
        let counts: HashMap<String, i64> = self
            .messages
            .aggregate([
                doc! { "$match": { "sessionId": sid, "chatId": { "$in": &ids } } },
                doc! { "$group": { "_id": "$chatId", "n": { "$sum": 1 } } },
            ])
            .await
            .map_err(map_err)?
            .map_ok(|d| {
                let n = match d.get("n") {
                    Some(Bson::Int32(n)) => i64::from(*n),
                    Some(Bson::Int64(n)) => *n,
                    Some(Bson::Double(n)) => *n as i64,
                    _ => 0,
                };
                (d.get_str("_id").unwrap_or_default().to_owned(), n)
            })
            .try_collect()
            .await
            .map_err(map_err)?;
        let mut statements = Vec::with_capacity(chats.len());
        for c in chats {
            let n = counts.get(&c.chat_id).copied().unwrap_or(0);
            if c.synced_at.is_none() && n == 0 {
                continue;
            }
            // `$max` on both: two writers at once never lower what the
            // other raised. The newest time only ever follows messages
            // that are written already, so it is never ahead of the data.
            let mut raise = doc! { "messageCount": n };
            if let Some(t) = c.newest {
                raise.insert("newestMessageAt", DateTime::from_millis(t));
            }
            let mut update = doc! { "$max": raise };
            if let Some(at) = c.synced_at {
                update.insert("$set", doc! { "syncedAt": DateTime::from_millis(at) });
            }
            statements.push(doc! {
                "q": { "sessionId": sid, "chatId": &c.chat_id },
                "u": update,
            });
        }
        if statements.is_empty() {
            return Ok(());
        }
        let reply = self.update_statements(CHATS, statements, false).await?;
        match reply.write_errors.first() {
            None => Ok(()),
            Some((_, code, msg)) => Err(StoreError::Backend(format!(
                "update of chat counters failed ({code}): {msg}"
            ))),
        }
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

/// One chat a write touched, for [`MongoStore::refresh_chats`].
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ChatTouch {
    pub chat_id: String,
    /// Set `syncedAt` (a sync's commit).
    pub synced_at: Option<i64>,
    /// The newest message written to the chat, ms.
    pub newest: Option<i64>,
}

impl ChatTouch {
    /// The chats of `messages`, in first-seen order, each with its newest
    /// message's time; `synced_at` for every one.
    pub fn of<'a>(messages: impl IntoIterator<Item = &'a Message>) -> Vec<ChatTouch> {
        let mut out: Vec<ChatTouch> = Vec::new();
        for m in messages {
            match out.iter_mut().find(|c| c.chat_id == m.chat_id) {
                Some(c) => c.newest = c.newest.max(Some(m.timestamp)),
                None => out.push(ChatTouch {
                    chat_id: m.chat_id.clone(),
                    synced_at: None,
                    newest: Some(m.timestamp),
                }),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(chat: &str, t: i64) -> Message {
        let mut m = crate::storage::contract::msg(chat, 0);
        m.timestamp = t;
        m
    }

    #[test]
    fn touches_keep_the_newest_time_per_chat_in_first_seen_order() {
        let ms = [msg("a", 5), msg("b", 3), msg("a", 9), msg("a", 7)];
        let t = ChatTouch::of(&ms);
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].chat_id.as_str(), t[0].newest), ("a", Some(9)));
        assert_eq!((t[1].chat_id.as_str(), t[1].newest), ("b", Some(3)));
    }
}
