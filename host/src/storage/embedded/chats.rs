//! Chats in the embedded store: a JSON document per chat under
//! `(sessionId, chatId)`, and `chats_by_activity` for the newest-first
//! listing.

use std::ops::Bound;

use redb::{ReadableDatabase, ReadableTable};

use super::tables::*;
use super::{EmbeddedStore, Lane};
use crate::domain::{Chat, SessionId, StoredChat};
use crate::storage::{ChatPage, StoreResult, decode_chat_cursor, encode_chat_cursor};

impl EmbeddedStore {
    /// `Store::upsert_chats`: one write, dropped (no fsync) when no chat
    /// changed.
    pub(super) async fn put_chats(&self, id: &SessionId, chats: &[Chat]) -> StoreResult<()> {
        let sid = id.to_string();
        let chats = chats.to_vec();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            // A re-sync of an unchanged account changes no chat: then the
            // transaction is dropped, and costs no fsync.
            let mut changed = false;
            {
                let mut table = txn.open_table(CHATS).db()?;
                let mut activity = txn.open_table(CHATS_BY_ACTIVITY).db()?;
                for chat in chats {
                    let old: Option<StoredChat> = table
                        .get((sid.as_str(), chat.id.as_str()))
                        .db()?
                        .map(|g| dec(g.value()))
                        .transpose()?;
                    if old.as_ref().is_some_and(|o| o.chat == chat) {
                        continue;
                    }
                    changed = true;
                    let (synced_at, message_count) = match &old {
                        Some(o) => {
                            activity
                                .remove((
                                    sid.as_str(),
                                    desc(o.chat.last_message_at),
                                    o.chat.id.as_str(),
                                ))
                                .db()?;
                            (o.synced_at, o.message_count)
                        }
                        None => (None, 0),
                    };
                    activity
                        .insert(
                            (sid.as_str(), desc(chat.last_message_at), chat.id.as_str()),
                            (),
                        )
                        .db()?;
                    let stored = StoredChat {
                        session_id: sid.clone(),
                        chat,
                        synced_at,
                        message_count,
                        participants: old.map(|o| o.participants).unwrap_or_default(),
                    };
                    table
                        .insert(
                            (sid.as_str(), stored.chat.id.as_str()),
                            enc(&stored)?.as_slice(),
                        )
                        .db()?;
                }
            }
            if changed {
                txn.commit().db()
            } else {
                txn.abort().db()
            }
        })
        .await
    }

    /// `Store::list_chats`: newest activity first, from the cursor on.
    pub(super) async fn chat_page(
        &self,
        id: &SessionId,
        limit: u32,
        cursor: Option<&str>,
    ) -> StoreResult<ChatPage> {
        let sid = id.to_string();
        let after = cursor.and_then(decode_chat_cursor);
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let activity = txn.open_table(CHATS_BY_ACTIVITY).db()?;
            let chats = txn.open_table(CHATS).db()?;
            let s = sid.as_str();
            let start = match &after {
                Some((t, chat_id)) => Bound::Excluded((s, desc(*t), chat_id.as_str())),
                None => Bound::Included((s, 0u64, "")),
            };
            let mut out = Vec::new();
            let mut more = false;
            for row in activity
                .range::<(&str, u64, &str)>((start, Bound::Unbounded))
                .db()?
            {
                let (k, _) = row.db()?;
                let (ks, _, chat_id) = k.value();
                if ks != s {
                    break;
                }
                if out.len() as u32 == limit {
                    more = true;
                    break;
                }
                if let Some(g) = chats.get((s, chat_id)).db()? {
                    out.push(dec::<StoredChat>(g.value())?);
                }
            }
            let next_cursor = if more {
                out.last()
                    .map(|c| encode_chat_cursor(c.chat.last_message_at, &c.chat.id))
            } else {
                None
            };
            Ok(ChatPage {
                chats: out,
                next_cursor,
            })
        })
        .await
    }

    /// `Store::get_chat`.
    pub(super) async fn chat(
        &self,
        id: &SessionId,
        chat_id: &str,
    ) -> StoreResult<Option<StoredChat>> {
        let sid = id.to_string();
        let chat_id = chat_id.to_owned();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let t = txn.open_table(CHATS).db()?;
            t.get((sid.as_str(), chat_id.as_str()))
                .db()?
                .map(|g| dec(g.value()))
                .transpose()
        })
        .await
    }
}
