//! The counters a message write keeps on each chat (`messageCount`,
//! `newestMessageAt`, `syncedAt`), and the per-chat locks that keep them
//! exact within this process.
//!
//! # Increment when certain, recount when not
//!
//! An unordered `insert_many` that reports no error inserted every one of
//! its documents exactly once, so the chat's count is raised by that many
//! with `$inc`: no read, which is what a first sync costs. A chat whose
//! write saw anything else (a duplicate: a re-sync, a live message the
//! sync also fetched, or the retry of a write whose acknowledgement was
//! lost, where the duplicate may be this writer's own) is recounted on the
//! index and raised with `$max`, as before. A write that fails outright is
//! retried whole by its caller, and the retry's insert then reports the
//! duplicates, so it recounts: the count ends exact after a lost
//! acknowledgement of the insert or of the counter update alike (the
//! update landed: the recount matches it; it did not: the recount raises
//! it).
//!
//! An increment and a recount do not commute: a recount that runs between
//! another writer's insert and that writer's increment already counts the
//! inserted documents, and the increment then counts them again. So a
//! writer holds its chats' locks ([`ChatLocks`]) from before its insert
//! until its counters are written; the writers of one session live in the
//! process holding its lease (a sync's commits and its live messages), so
//! a process-local lock covers them. A writer that lost the lease is
//! stopped before its insert (`check_run_epoch`, the fenced store) and its
//! run write fails after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, doc};
use tokio::sync::OwnedMutexGuard;

use super::schema::CHATS;
use super::{MongoStore, map_err};
use crate::domain::Message;
use crate::storage::{StoreError, StoreResult};

/// What a write adds to a chat's `messageCount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Added {
    /// Exactly this many documents, inserted by this write (its insert
    /// reported no duplicate and no error for the chat).
    Exactly(i64),
    /// Unknown: the chat is recounted.
    Recount,
}

/// One chat a write touched, for [`MongoStore::refresh_chats`].
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ChatTouch {
    pub chat_id: String,
    /// Set `syncedAt` (a sync's commit).
    pub synced_at: Option<i64>,
    /// The newest message written to the chat, ms.
    pub newest: Option<i64>,
    pub added: Added,
}

impl ChatTouch {
    /// The chats of `messages`, in first-seen order, each with its newest
    /// message's time; `inserted[i]` says whether `messages[i]` was
    /// inserted by this write (anything else makes its chat recounted).
    pub fn of(messages: &[Message], inserted: impl IntoIterator<Item = bool>) -> Vec<ChatTouch> {
        let mut out: Vec<ChatTouch> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (m, new) in messages.iter().zip(inserted) {
            let i = *index.entry(m.chat_id.as_str()).or_insert_with(|| {
                out.push(ChatTouch {
                    chat_id: m.chat_id.clone(),
                    synced_at: None,
                    newest: None,
                    added: Added::Exactly(0),
                });
                out.len() - 1
            });
            let c = &mut out[i];
            c.newest = c.newest.max(Some(m.timestamp));
            c.added = match (c.added, new) {
                (Added::Exactly(n), true) => Added::Exactly(n + 1),
                _ => Added::Recount,
            };
        }
        out
    }
}

/// A chat of a session: `(session id, chat id)`.
type ChatKey = (String, String);

/// Per-chat async locks of this process, keyed by session and chat; an
/// entry lives while someone holds or waits for it.
#[derive(Debug, Default)]
pub(super) struct ChatLocks {
    locks: Mutex<HashMap<ChatKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// The locks of one write's chats; released when dropped.
pub(super) struct ChatGuards<'a> {
    owner: &'a ChatLocks,
    keys: Vec<ChatKey>,
    guards: Vec<OwnedMutexGuard<()>>,
}

impl ChatLocks {
    /// Locks the chats `chat_ids` of session `sid`, in key order (so two
    /// writers never wait on each other in a cycle).
    pub async fn lock(&self, sid: &str, chat_ids: Vec<&str>) -> ChatGuards<'_> {
        let mut keys: Vec<ChatKey> = chat_ids
            .into_iter()
            .map(|c| (sid.to_owned(), c.to_owned()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut guards = Vec::with_capacity(keys.len());
        for key in &keys {
            let lock = {
                let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
                locks.entry(key.clone()).or_default().clone()
            };
            guards.push(lock.lock_owned().await);
        }
        ChatGuards {
            owner: self,
            keys,
            guards,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().unwrap().len()
    }
}

impl Drop for ChatGuards<'_> {
    fn drop(&mut self) {
        self.guards.clear();
        let mut locks = self.owner.locks.lock().unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            // Only the map holds it: nobody holds or waits for the lock
            // (a waiter clones it under the map's lock first).
            if locks.get(key).is_some_and(|l| Arc::strong_count(l) == 1) {
                locks.remove(key);
            }
        }
    }
}

impl MongoStore {
    /// Raises each chat's `messageCount` by what the write added (or to
    /// its recount), its `newestMessageAt` to the newest message written,
    /// and sets `syncedAt` where given: one aggregation over the chats to
    /// recount (none on a first sync) and one `update` command. Chats that
    /// do not exist are left alone, as in the embedded store.
    pub(super) async fn refresh_chats(&self, sid: &str, chats: &[ChatTouch]) -> StoreResult<()> {
        let recount: Vec<&str> = chats
            .iter()
            .filter(|c| c.added == Added::Recount)
            .map(|c| c.chat_id.as_str())
            .collect();
        let counts: HashMap<String, i64> = if recount.is_empty() {
            HashMap::new()
        } else {
            self.messages
                .aggregate([
                    doc! { "$match": { "sessionId": sid, "chatId": { "$in": &recount } } },
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
                .map_err(map_err)?
        };
        let mut statements = Vec::with_capacity(chats.len());
        for c in chats {
            // `$max` on the recount and the newest time: two writers at
            // once never lower what the other raised. The newest time only
            // ever follows messages that are written already, so it is
            // never ahead of the data.
            let mut raise = doc! {};
            let mut update = doc! {};
            match c.added {
                Added::Recount => {
                    raise.insert("messageCount", counts.get(&c.chat_id).copied().unwrap_or(0));
                }
                Added::Exactly(0) => {}
                Added::Exactly(n) => {
                    update.insert("$inc", doc! { "messageCount": n });
                }
            }
            if let Some(t) = c.newest {
                raise.insert("newestMessageAt", DateTime::from_millis(t));
            }
            if !raise.is_empty() {
                update.insert("$max", raise);
            }
            if let Some(at) = c.synced_at {
                update.insert("$set", doc! { "syncedAt": DateTime::from_millis(at) });
            }
            if update.is_empty() {
                continue;
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
        let t = ChatTouch::of(&ms, [true; 4]);
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].chat_id.as_str(), t[0].newest), ("a", Some(9)));
        assert_eq!((t[1].chat_id.as_str(), t[1].newest), ("b", Some(3)));
        assert_eq!(t[0].added, Added::Exactly(3));
        assert_eq!(t[1].added, Added::Exactly(1));
    }

    #[test]
    fn a_chat_with_anything_but_inserts_is_recounted() {
        let ms = [msg("a", 5), msg("b", 3), msg("a", 9)];
        let t = ChatTouch::of(&ms, [true, true, false]);
        assert_eq!(t[0].added, Added::Recount);
        assert_eq!(t[1].added, Added::Exactly(1));
    }

    #[tokio::test]
    async fn chat_locks_exclude_and_are_dropped_when_free() {
        let locks = Arc::new(ChatLocks::default());
        let first = locks.lock("s", vec!["b", "a", "a"]).await;
        assert_eq!(locks.len(), 2);
        let other = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _g = locks.lock("s", vec!["a"]).await;
            })
        };
        // Another session's chat of the same id is not the same lock.
        drop(locks.lock("t", vec!["a"]).await);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!other.is_finished(), "the second writer waits");
        drop(first);
        other.await.unwrap();
        assert_eq!(locks.len(), 0);
    }
}
