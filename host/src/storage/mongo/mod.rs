//! MongoDB adapter on the official driver, selected when `MONGODB_URI` is
//! set. The schema (collections, indexes, document shapes) is in
//! [`schema`] and `docs/storage.md`.
//!
//! # Why it is written the way it is
//!
//! - **Bulk, never per message.** A commit is one unordered `insert_many`
//!   of all its messages. A message that already exists comes back as a
//!   duplicate-key error (E11000) and is treated as "already stored"; only
//!   those are read back, and only the ones whose content really changed
//!   (an `ack` moving on, a plugin tag) are rewritten, in one `update`
//!   command. A first sync therefore costs one round trip for its messages,
//!   a re-sync of unchanged data one insert plus one read.
//! - **A rewrite keeps what changed after the sync.** A message edited,
//!   revoked, acked or reacted to since it was written is merged with the
//!   sync's copy (newest per field), and every rewrite is conditional on
//!   the document's `rev`, so a change landing between the read and the
//!   write is never lost (see [`changes`]).
//! - **Duplicates are impossible**, not merely unlikely: the unique
//!   `(sessionId, messageId)` index rejects the second copy whoever writes
//!   it, two writers at once included.
//! - **No multi-document transaction.** A standalone server has none, so a
//!   commit is made safe by its order instead: messages, then quarantine
//!   and the chat counters (both at once), then the run's checkpoint. A
//!   crash between two steps leaves the checkpoint behind the data, never
//!   ahead of it; the resumed run writes the same chat again, which is
//!   idempotent.
//! - **`messageCount` is incremented when certain, recounted otherwise**
//!   ([`counts`]). An insert that reported no error inserted each of its
//!   documents exactly once, so its chats are raised by that many with
//!   `$inc` (a first sync reads nothing back). A chat whose insert met a
//!   duplicate is recounted on the index and raised with `$max`; a write
//!   that failed (an acknowledgement lost, of the insert or of the counter
//!   update) is retried whole, and the retry meets its own documents as
//!   duplicates, so it recounts: exact after any failure. An increment
//!   landing after another writer's recount that already saw its
//!   documents would count them twice, so a write holds its chats' locks
//!   (in this process, which holds the session's lease) from its insert
//!   until its counters are written.
//! - **Groups sized for the server.** A sync commits up to
//!   [`GROUP_MESSAGES`] messages at once (`Store::group_messages`): each
//!   commit costs a few round trips and durable writes besides its insert,
//!   and the engine keeps fetching the next group while one commits.
//! - **What is stored already is not written again.** The chat list,
//!   contacts and group members a sync stores on every run are read first
//!   (one projected read per collection) and only the documents that differ
//!   are written ([`unchanged`]): the new ones in one insert (a first
//!   sync's chat list and contacts), the changed ones upserted; each chat
//!   records the time of its newest
//!   written message (`newestMessageAt`, raised with `$max` after the
//!   messages are written, so never ahead of them), so an incremental sync
//!   of an unchanged account costs a few reads, not a query per chat.
//! - **Durable before `Ok`.** Writes default to `w: "majority", j: true`
//!   (a URI's own `w`/`journal` is respected, `w=0` refused), so what a
//!   progress event reports survives a crash of the server.
//! - **Unreachable is quick and temporary.** Server selection gives up after
//!   a few seconds (`serverSelectionTimeoutMS` in the URI overrides it) and
//!   becomes [`StoreError::Unavailable`], which the gateway answers with
//!   503. The driver monitors the server and reconnects by itself, so the
//!   same store works again once the server is back.

mod changes;
mod chats;
mod commands;
mod commit;
mod connect;
mod contacts;
mod counts;
mod fencing;
mod marks;
mod outbox;
mod places;
mod probe;
pub mod schema;
mod unchanged;
mod webhooks;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::{Collection, Database};

use self::commands::{DUPLICATE_KEY, duplicate_indexes, map_err, number};
use self::marks::End;
use self::schema::{
    ChatDoc, MessageDoc, OUTBOX_DATES, QUARANTINE_DATES, RUN_DATES, SESSION_DATES, date, decode,
    encode,
};
use super::{
    ChatCommit, ChatPage, MessageCursor, Pruned, SessionRecord, Store, StoreResult, WriteStats,
};
use crate::domain::{
    ChangeOutcome, Chat, Contact, GroupParticipants, Message, MessageMark, MessageUpdate,
    OutboxEvent, QuarantinedMessage, SessionId, StoredChat, StoredContact, StoredMessage, SyncRun,
};

/// Rounds of "read, merge, write if unchanged" of a re-written message
/// before the write fails (see `changes`).
const CAS_ATTEMPTS: usize = 8;
/// Mark reads (one indexed query per chat) an incremental sync keeps in
/// flight: enough to hide the round trip, few enough not to crowd the pool.
const MARK_READS_IN_FLIGHT: usize = 16;

/// Messages a sync commits at once (see `Store::group_messages`). A
/// commit costs a few round trips and durable writes besides its insert
/// (the epoch check, the pending-change lookup, the chat counters, the
/// checkpoint); larger groups spread them over more messages, and the sync
/// keeps fetching into the next group while one commits.
const GROUP_MESSAGES: usize = 5_000;

/// Knobs a deployment may want to change; the URI's own options win.
#[derive(Debug, Clone)]
pub struct MongoOptions {
    /// How long an operation waits for a usable server before failing with
    /// `Unavailable`. Short, so `/readyz` and REST answer 503 quickly
    /// instead of hanging; the driver keeps reconnecting in the background.
    pub server_selection_timeout: Duration,
    /// TCP/TLS connect timeout for one connection attempt.
    pub connect_timeout: Duration,
    /// Read back every conditional write rather than trust the server's
    /// count of modified documents (`probe` module), and skip the start-up
    /// check of it. The store does so by itself when the check finds the
    /// server counting documents an update kept as they were, or cannot
    /// run. Set by tests; the server's configuration has no variable for it.
    pub read_back_every_write: bool,
}

impl Default for MongoOptions {
    fn default() -> Self {
        Self {
            server_selection_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            read_back_every_write: false,
        }
    }
}

/// The MongoDB store. Cheap to share: the driver's client is a pool.
pub struct MongoStore {
    db: Database,
    /// Write concern applied to every write, including raw `update`
    /// commands (which do not inherit the client's).
    write_concern: Document,
    sessions: Collection<Document>,
    chats: Collection<ChatDoc>,
    messages: Collection<MessageDoc>,
    runs: Collection<Document>,
    outbox: Collection<Document>,
    quarantine: Collection<Document>,
    webhooks: Collection<Document>,
    deliveries: Collection<Document>,
    /// Changes of messages not stored yet.
    pending: Collection<Document>,
    /// Held by a write from its insert to its chats' counter update.
    chat_locks: counts::ChatLocks,
    /// The server's `nModified` counts only documents an update changed
    /// (checked at start, `probe` module): a conditional write whose
    /// statements all count as modified all landed.
    exact_modified_counts: bool,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URI: it may carry credentials.
        f.debug_struct("MongoStore")
            .field("database", &self.db.name())
            .finish()
    }
}

impl MongoStore {
    /// The database this store writes to.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Whether a conditional write whose statements all count as modified
    /// all landed, with no read back (`probe` module).
    pub fn trusts_modified_counts(&self) -> bool {
        self.exact_modified_counts
    }
}

/// A quarantine document: the refused message (its timestamp a date like
/// in `messages`) under `message`, keyed by `(sessionId, messageId)`.
fn quarantine_doc(q: &QuarantinedMessage) -> StoreResult<Document> {
    let mut d = encode(q, QUARANTINE_DATES)?;
    d.insert("messageId", q.message.id.as_str());
    if let Some(Bson::Document(m)) = d.get_mut("message") {
        m.insert("timestamp", DateTime::from_millis(q.message.timestamp));
    }
    Ok(d)
}

fn quarantine_from_doc(mut d: Document) -> StoreResult<QuarantinedMessage> {
    d.remove("messageId");
    if let Some(Bson::Document(m)) = d.get_mut("message")
        && let Some(Bson::DateTime(t)) = m.get("timestamp").cloned()
    {
        m.insert("timestamp", t.timestamp_millis());
    }
    decode(d, QUARANTINE_DATES)
}

#[async_trait]
impl Store for MongoStore {
    fn kind(&self) -> &'static str {
        "mongo"
    }

    fn group_messages(&self) -> Option<usize> {
        Some(GROUP_MESSAGES)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn put_session(&self, rec: &SessionRecord) -> StoreResult<()> {
        self.put_session_fenced(rec).await
    }

    async fn get_session(&self, id: &SessionId) -> StoreResult<Option<SessionRecord>> {
        self.sessions
            .find_one(doc! { "_id": id.as_str() })
            .await
            .map_err(map_err)?
            .map(|d| decode(d, SESSION_DATES))
            .transpose()
    }

    async fn list_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        let cursor = self
            .sessions
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .map_err(map_err)?;
        Self::collect_docs(cursor, SESSION_DATES).await
    }

    async fn delete_session(&self, id: &SessionId, purge: bool) -> StoreResult<()> {
        let sid = id.as_str();
        // The session record goes first, so a purge that fails half-way
        // never leaves a session that would be restarted over partial data.
        self.sessions
            .delete_one(doc! { "_id": sid })
            .await
            .map_err(map_err)?;
        if purge {
            let filter = doc! { "sessionId": sid };
            self.messages
                .delete_many(filter.clone())
                .await
                .map_err(map_err)?;
            self.quarantine
                .delete_many(filter.clone())
                .await
                .map_err(map_err)?;
            self.runs
                .delete_many(filter.clone())
                .await
                .map_err(map_err)?;
            self.outbox
                .delete_many(filter.clone())
                .await
                .map_err(map_err)?;
            // Deliveries carry their event's data (message bodies among
            // it), whatever their status.
            self.deliveries
                .delete_many(filter.clone())
                .await
                .map_err(map_err)?;
            // Pending edits carry message bodies too.
            self.pending
                .delete_many(filter.clone())
                .await
                .map_err(map_err)?;
            self.database()
                .collection::<Document>(schema::CONTACTS)
                .delete_many(filter.clone())
                .await
                .map_err(map_err)?;
            self.chats.delete_many(filter).await.map_err(map_err)?;
        }
        Ok(())
    }

    async fn upsert_chats(&self, id: &SessionId, chats: &[Chat]) -> StoreResult<()> {
        self.upsert_chats_impl(id, chats, 0).await
    }

    async fn upsert_chats_fenced(
        &self,
        id: &SessionId,
        chats: &[Chat],
        epoch: u64,
    ) -> StoreResult<()> {
        self.upsert_chats_impl(id, chats, epoch).await
    }

    async fn commit_chats(
        &self,
        id: &SessionId,
        chats: &[ChatCommit],
        run: &SyncRun,
    ) -> StoreResult<Vec<WriteStats>> {
        self.commit_chats_impl(id, chats, run).await
    }

    async fn put_messages(&self, id: &SessionId, messages: &[Message]) -> StoreResult<WriteStats> {
        self.put_messages_impl(id, messages, 0).await
    }

    async fn put_messages_fenced(
        &self,
        id: &SessionId,
        messages: &[Message],
        epoch: u64,
    ) -> StoreResult<WriteStats> {
        self.put_messages_impl(id, messages, epoch).await
    }

    async fn list_chats(
        &self,
        id: &SessionId,
        limit: u32,
        cursor: Option<&str>,
    ) -> StoreResult<ChatPage> {
        self.list_chats_impl(id, limit, cursor).await
    }

    async fn get_chat(&self, id: &SessionId, chat_id: &str) -> StoreResult<Option<StoredChat>> {
        self.get_chat_impl(id, chat_id).await
    }

    async fn list_messages(
        &self,
        id: &SessionId,
        chat_id: &str,
        limit: u32,
        before: Option<&MessageCursor>,
    ) -> StoreResult<Vec<StoredMessage>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "sessionId": id.as_str(), "chatId": chat_id };
        match before {
            Some(MessageCursor {
                timestamp,
                message_id: Some(mid),
            }) => {
                let t = DateTime::from_millis(*timestamp);
                filter.insert(
                    "$or",
                    vec![
                        doc! { "timestamp": { "$lt": t } },
                        doc! { "timestamp": t, "messageId": { "$gt": mid.as_str() } },
                    ],
                );
            }
            Some(MessageCursor {
                timestamp,
                message_id: None,
            }) => {
                filter.insert(
                    "timestamp",
                    doc! { "$lt": DateTime::from_millis(*timestamp) },
                );
            }
            None => {}
        }
        // The listing order, on the index `session_chat_time_id`.
        self.messages
            .find(filter)
            .sort(doc! { "timestamp": -1, "messageId": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(map_err)?
            .map_ok(MessageDoc::into_stored)
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn message_marks(
        &self,
        id: &SessionId,
        chat_ids: &[String],
    ) -> StoreResult<HashMap<String, MessageMark>> {
        self.message_marks_impl(id, chat_ids).await
    }

    async fn newest_message_times(
        &self,
        id: &SessionId,
        chat_ids: &[String],
    ) -> StoreResult<HashMap<String, i64>> {
        self.newest_message_times_impl(id, chat_ids).await
    }

    async fn oldest_mark(&self, id: &SessionId, chat_id: &str) -> StoreResult<Option<MessageMark>> {
        self.mark_at(id, chat_id, End::Oldest).await
    }

    async fn count_messages(&self, id: &SessionId, chat_id: Option<&str>) -> StoreResult<u64> {
        let mut filter = doc! { "sessionId": id.as_str() };
        if let Some(c) = chat_id {
            filter.insert("chatId", c);
        }
        self.messages.count_documents(filter).await.map_err(map_err)
    }

    async fn get_message(
        &self,
        id: &SessionId,
        message_id: &str,
    ) -> StoreResult<Option<StoredMessage>> {
        Ok(self
            .messages
            .find_one(doc! { "sessionId": id.as_str(), "messageId": message_id })
            .await
            .map_err(map_err)?
            .map(MessageDoc::into_stored))
    }

    async fn apply_changes(
        &self,
        id: &SessionId,
        updates: &[MessageUpdate],
        keep_revoked_bodies: bool,
    ) -> StoreResult<Vec<ChangeOutcome>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        self.apply_changes_impl(id.as_str(), updates, keep_revoked_bodies)
            .await
    }

    async fn prune_pending_changes(&self, before: i64) -> StoreResult<u64> {
        Ok(self
            .pending
            .delete_many(doc! { "receivedAt": { "$lt": DateTime::from_millis(before) } })
            .await
            .map_err(map_err)?
            .deleted_count)
    }

    async fn upsert_contacts(&self, id: &SessionId, contacts: &[Contact]) -> StoreResult<()> {
        self.upsert_contacts_impl(id, contacts).await
    }

    async fn list_contacts(
        &self,
        id: &SessionId,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Vec<StoredContact>> {
        self.list_contacts_impl(id, limit, after).await
    }

    async fn find_contact(
        &self,
        id: &SessionId,
        contact_id: &str,
    ) -> StoreResult<Option<StoredContact>> {
        self.find_contact_impl(id, contact_id).await
    }

    async fn count_contacts(&self, id: &SessionId) -> StoreResult<u64> {
        self.count_contacts_impl(id).await
    }

    async fn put_participants(
        &self,
        id: &SessionId,
        groups: &[GroupParticipants],
    ) -> StoreResult<()> {
        self.put_participants_impl(id, groups).await
    }

    async fn put_sync_run(&self, run: &SyncRun) -> StoreResult<()> {
        self.put_run(run).await
    }

    async fn get_sync_run(&self, sync_id: &str) -> StoreResult<Option<SyncRun>> {
        self.runs
            .find_one(doc! { "_id": sync_id })
            .await
            .map_err(map_err)?
            .map(|d| decode(d, RUN_DATES))
            .transpose()
    }

    async fn latest_sync_run(&self, id: &SessionId) -> StoreResult<Option<SyncRun>> {
        self.runs
            .find_one(doc! { "sessionId": id.as_str() })
            .sort(doc! { "startedAt": -1, "_id": -1 })
            .await
            .map_err(map_err)?
            .map(|d| decode(d, RUN_DATES))
            .transpose()
    }

    async fn finish_sync(&self, run: &SyncRun, events: &[OutboxEvent]) -> StoreResult<()> {
        // Without a transaction, the event goes first: the data it announces
        // is already committed, and if the run update then fails the worst
        // case is a repeated announcement (consumers dedupe on the event
        // id), never a completed run whose event is missing. A writer that
        // lost the session's lease is stopped before the event.
        self.check_run_epoch(run).await?;
        for ev in events {
            self.put_event(ev).await?;
        }
        self.put_run(run).await
    }

    async fn enqueue_event(&self, event: &OutboxEvent) -> StoreResult<()> {
        self.put_event(event).await
    }

    async fn pending_events(&self, limit: u32) -> StoreResult<Vec<OutboxEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let cursor = self
            .outbox
            .find(doc! { "publishedAt": Bson::Null })
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(map_err)?;
        Self::collect_docs(cursor, OUTBOX_DATES).await
    }

    async fn claim_events(
        &self,
        claimer: &str,
        limit: u32,
        claim_ms: i64,
    ) -> StoreResult<Vec<OutboxEvent>> {
        self.claim(claimer, limit, claim_ms).await
    }

    async fn count_pending_events(&self) -> StoreResult<u64> {
        self.outbox
            .count_documents(doc! { "publishedAt": Bson::Null })
            .await
            .map_err(map_err)
    }

    async fn mark_published(&self, event_ids: &[String], at: i64) -> StoreResult<()> {
        if event_ids.is_empty() {
            return Ok(());
        }
        self.outbox
            .update_many(
                doc! { "_id": { "$in": event_ids } },
                doc! {
                    "$set": { "publishedAt": date(Some(at)) },
                    "$inc": { "attempts": 1 },
                },
            )
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn record_attempt(&self, event_ids: &[String]) -> StoreResult<()> {
        if event_ids.is_empty() {
            return Ok(());
        }
        self.outbox
            .update_many(
                doc! { "_id": { "$in": event_ids } },
                doc! { "$inc": { "attempts": 1 } },
            )
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn session_events(&self, id: &SessionId) -> StoreResult<Vec<OutboxEvent>> {
        let cursor = self
            .outbox
            .find(doc! { "sessionId": id.as_str() })
            .sort(doc! { "createdAt": 1, "_id": 1 })
            .await
            .map_err(map_err)?;
        Self::collect_docs(cursor, OUTBOX_DATES).await
    }

    async fn put_quarantine(
        &self,
        id: &SessionId,
        items: &[QuarantinedMessage],
    ) -> StoreResult<()> {
        let items: Vec<&QuarantinedMessage> = items.iter().collect();
        self.write_quarantine(id.as_str(), &items).await
    }

    async fn list_quarantine(&self, id: &SessionId) -> StoreResult<Vec<QuarantinedMessage>> {
        let docs: Vec<Document> = self
            .quarantine
            .find(doc! { "sessionId": id.as_str() })
            .sort(doc! { "messageId": 1 })
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        docs.into_iter().map(quarantine_from_doc).collect()
    }

    async fn quarantine_page(
        &self,
        id: &SessionId,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Vec<QuarantinedMessage>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "sessionId": id.as_str() };
        if let Some(a) = after {
            filter.insert("messageId", doc! { "$gt": a });
        }
        let docs: Vec<Document> = self
            .quarantine
            .find(filter)
            .sort(doc! { "messageId": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        docs.into_iter().map(quarantine_from_doc).collect()
    }

    async fn clear_quarantine(&self, id: &SessionId) -> StoreResult<u64> {
        Ok(self
            .quarantine
            .delete_many(doc! { "sessionId": id.as_str() })
            .await
            .map_err(map_err)?
            .deleted_count)
    }

    async fn prune(&self, published_before: i64, quarantined_before: i64) -> StoreResult<Pruned> {
        let events = self
            .outbox
            .delete_many(doc! {
                "publishedAt": { "$ne": Bson::Null, "$lt": date(Some(published_before)) },
            })
            .await
            .map_err(map_err)?
            .deleted_count;
        let quarantined = self
            .quarantine
            .delete_many(doc! { "quarantinedAt": { "$lt": date(Some(quarantined_before)) } })
            .await
            .map_err(map_err)?
            .deleted_count;
        Ok(Pruned {
            events,
            quarantined,
        })
    }
}
