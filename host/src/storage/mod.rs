//! The storage port: everything the host keeps, behind one trait.
//!
//! Adapters: [`embedded`] (one redb file, the default) and `mongo` (the
//! official driver, when `MONGODB_URI` is set). Both pass the same contract
//! suite (`contract` below, run by each adapter's tests and by the
//! integration suite), so the sync engine never knows which one it writes to.
//!
//! Durability contract: when a write method returns `Ok`, the data is
//! durably committed (fsync'd or journaled). The sync emits a progress event
//! only after that, so what a frontend is told is synced survives a crash.

pub mod embedded;
pub mod mongo;
pub mod retention;
pub mod webhooks;

#[doc(hidden)]
pub mod contract;

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{
    ChangeOutcome, Chat, Contact, GroupParticipants, MessageMark, MessageUpdate, OutboxEvent,
    QuarantinedMessage, SessionId, StoredChat, StoredContact, StoredMessage, SyncRun,
};

/// Errors at the storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing server or file cannot be reached right now; the caller may
    /// retry later. Maps to HTTP 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored document could not be decoded, or a constraint failed.
    #[error("store corrupt or inconsistent: {0}")]
    Corrupt(String),
    /// Anything else the backend reported.
    #[error("store error: {0}")]
    Backend(String),
    /// The write carried an older fencing epoch than the stored record: the
    /// writer lost the session's lease to another host and must stop.
    #[error("write fenced off: {0}")]
    Fenced(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A session's persisted state (`sessions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub session_id: String,
    /// Last known lifecycle status (see `session::Status`).
    pub status: String,
    pub provider: String,
    /// The create body, kept so a restart recreates the same session.
    pub options: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
    /// The account, once known.
    pub me: Option<crate::domain::Me>,
    /// Summary of the last finished sync.
    pub last_sync: Option<serde_json::Value>,
    /// False once the session was stopped with `DELETE`; such sessions are
    /// not restarted with the host.
    pub active: bool,
    /// Fencing token of the writer (the session lease's epoch; 0 on a
    /// single host): a write with a lower epoch than the stored one fails
    /// with [`StoreError::Fenced`].
    #[serde(default)]
    pub epoch: u64,
}

/// One chat's share of a sync commit: the chat (with its new counters) and
/// its messages, already through the plugin chain. The messages are shared,
/// so a store that hands the commit to another thread (the embedded store's
/// blocking task) takes them along without copying each one.
#[derive(Debug, Clone, Default)]
pub struct ChatCommit {
    pub chat_id: String,
    pub messages: std::sync::Arc<[crate::domain::Message]>,
    pub quarantined: Vec<QuarantinedMessage>,
    pub synced_at: i64,
}

/// What a message write did, for progress and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Messages not stored before.
    pub inserted: u64,
    /// Messages stored before whose content changed.
    pub updated: u64,
    /// Messages stored before, unchanged.
    pub unchanged: u64,
    /// Pending changes (changes that came before their message) the write
    /// applied to the messages it stored.
    pub changes_applied: u64,
}

impl WriteStats {
    /// The sum of two writes' stats.
    pub fn plus(self, o: WriteStats) -> WriteStats {
        WriteStats {
            inserted: self.inserted + o.inserted,
            updated: self.updated + o.updated,
            unchanged: self.unchanged + o.unchanged,
            changes_applied: self.changes_applied + o.changes_applied,
        }
    }
}

/// A page of chats plus the cursor of the next page.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatPage {
    pub chats: Vec<StoredChat>,
    /// Opaque; pass as `cursor` for the next page. `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Opaque paging cursor for chats: (lastMessageAt, chatId) of the last chat
/// on the previous page. Encoded as `<ms>:<chatId>` (`-` for no activity).
pub fn encode_chat_cursor(last_message_at: Option<i64>, chat_id: &str) -> String {
    match last_message_at {
        Some(t) => format!("{t}:{chat_id}"),
        None => format!("-:{chat_id}"),
    }
}

/// Parses a cursor made by [`encode_chat_cursor`]; `None` if it is not one.
pub fn decode_chat_cursor(cursor: &str) -> Option<(Option<i64>, String)> {
    let (t, id) = cursor.split_once(':')?;
    if id.is_empty() {
        return None;
    }
    let t = if t == "-" {
        None
    } else {
        Some(t.parse().ok()?)
    };
    Some((t, id.to_owned()))
}

/// Where a page of a chat's messages starts: strictly after this position
/// in the listing order, newest first with ties (WhatsApp timestamps are
/// whole seconds, so bursts share one) broken by message id, ascending.
/// Without a message id: strictly before `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageCursor {
    pub timestamp: i64,
    pub message_id: Option<String>,
}

impl MessageCursor {
    /// Opaque text form, `<ms>:<messageId>`, for `nextCursor`.
    pub fn encode(&self) -> String {
        format!(
            "{}:{}",
            self.timestamp,
            self.message_id.as_deref().unwrap_or_default()
        )
    }

    /// Parses [`MessageCursor::encode`]'s form; `None` if it is not one.
    pub fn decode(text: &str) -> Option<MessageCursor> {
        let (t, id) = text.split_once(':')?;
        if id.is_empty() || id.len() > 512 {
            return None;
        }
        Some(MessageCursor {
            timestamp: t.parse().ok()?,
            message_id: Some(id.to_owned()),
        })
    }
}

/// The storage port.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Name of the adapter, for logs and `/readyz`.
    fn kind(&self) -> &'static str;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// Messages a sync should commit at once on this store, when it wants
    /// a size of its own: a commit's fixed costs (round trips, fsyncs)
    /// differ per store. `None` takes the engine's default
    /// ([`crate::sync::SyncOptions::group_messages`]).
    fn group_messages(&self) -> Option<usize> {
        None
    }

    // ---- sessions -------------------------------------------------------
    /// Writes the record; [`StoreError::Fenced`] when the stored one has a
    /// newer `epoch`.
    async fn put_session(&self, rec: &SessionRecord) -> StoreResult<()>;
    async fn get_session(&self, id: &SessionId) -> StoreResult<Option<SessionRecord>>;
    async fn list_sessions(&self) -> StoreResult<Vec<SessionRecord>>;
    /// Drops the session record; with `purge`, also its chats, contacts,
    /// messages, pending changes, sync runs, quarantine and outbox events (published or not: their
    /// bodies may carry its messages).
    async fn delete_session(&self, id: &SessionId, purge: bool) -> StoreResult<()>;

    // ---- chats and messages ----------------------------------------------
    /// Inserts or updates chats in one write; keeps `syncedAt` and
    /// `messageCount` of chats that already exist.
    async fn upsert_chats(&self, id: &SessionId, chats: &[Chat]) -> StoreResult<()>;

    /// [`Store::upsert_chats`] by the holder of the session's lease at
    /// `epoch`: a store that keeps counters per lease (MongoDB's
    /// `countEpoch`) creates the chats it stores first already claimed for
    /// `epoch`, so the sync's commits need not claim them again. The
    /// default writes as `upsert_chats` does.
    async fn upsert_chats_fenced(
        &self,
        id: &SessionId,
        chats: &[Chat],
        epoch: u64,
    ) -> StoreResult<()> {
        let _ = epoch;
        self.upsert_chats(id, chats).await
    }

    /// Writes the messages (idempotent on `(sessionId, messageId)`; a
    /// message stored before keeps what changed about it after it was
    /// written, newest per field: see [`crate::domain::Message::merge_stored`];
    /// pending changes of a message stored now are applied to it), the
    /// quarantined ones, each chat's `syncedAt`/`messageCount`, and `run`
    /// (its checkpoint), as one durable step. Returns per-chat stats in the
    /// order of `chats`. Fails with [`StoreError::Fenced`] when the stored
    /// run carries a newer epoch than `run`.
    async fn commit_chats(
        &self,
        id: &SessionId,
        chats: &[ChatCommit],
        run: &SyncRun,
    ) -> StoreResult<Vec<WriteStats>>;

    /// Writes live messages (outside a sync); idempotent, and keeping
    /// changes and applying pending ones like [`Store::commit_chats`].
    async fn put_messages(
        &self,
        id: &SessionId,
        messages: &[crate::domain::Message],
    ) -> StoreResult<WriteStats>;

    /// [`Store::put_messages`] by the holder of the session's lease at
    /// `epoch` (0: no lease). A store several hosts share refuses to let a
    /// writer whose lease a newer epoch took over touch the chat counters
    /// the new holder keeps ([`StoreError::Fenced`]); a store of one
    /// process has no other writer, and the default writes as
    /// `put_messages` does.
    async fn put_messages_fenced(
        &self,
        id: &SessionId,
        messages: &[crate::domain::Message],
        epoch: u64,
    ) -> StoreResult<WriteStats> {
        let _ = epoch;
        self.put_messages(id, messages).await
    }

    /// Chats, newest activity first (`lastMessageAt` desc, chats without
    /// activity last, ties by chat id).
    async fn list_chats(
        &self,
        id: &SessionId,
        limit: u32,
        cursor: Option<&str>,
    ) -> StoreResult<ChatPage>;

    async fn get_chat(&self, id: &SessionId, chat_id: &str) -> StoreResult<Option<StoredChat>>;

    /// A chat's messages, newest first (ties by message id); a page starts
    /// after `before`.
    async fn list_messages(
        &self,
        id: &SessionId,
        chat_id: &str,
        limit: u32,
        before: Option<&MessageCursor>,
    ) -> StoreResult<Vec<StoredMessage>>;

    async fn count_messages(&self, id: &SessionId, chat_id: Option<&str>) -> StoreResult<u64>;

    /// The newest stored message of each of `chat_ids` (its timestamp and
    /// every id stored at that timestamp), where an incremental sync starts;
    /// chats with no stored message are absent. Reads only: each adapter
    /// reads its index (keys only); [`mark_from_listing`] is the reference
    /// the contract checks them against. No default: a wrapper that forgot
    /// to delegate would silently read whole messages.
    async fn message_marks(
        &self,
        id: &SessionId,
        chat_ids: &[String],
    ) -> StoreResult<HashMap<String, MessageMark>>;

    /// The time of the newest stored message of each of `chat_ids`, read
    /// as cheaply as the adapter can for a whole chat list: what an
    /// incremental sync compares each chat's last activity with before it
    /// reads the exact mark of the chats that moved. Never later than
    /// [`Store::message_marks`]' time (it may be earlier, or a chat
    /// missing, where the adapter does not know: the sync then reads the
    /// mark). MongoDB keeps it on the chat document (`newestMessageAt`,
    /// raised after each message write); the embedded store reads its
    /// marks. No default, as for `message_marks`.
    async fn newest_message_times(
        &self,
        id: &SessionId,
        chat_ids: &[String],
    ) -> StoreResult<HashMap<String, i64>>;

    // ---- changes after the sync -------------------------------------------
    /// One stored message.
    async fn get_message(
        &self,
        id: &SessionId,
        message_id: &str,
    ) -> StoreResult<Option<StoredMessage>>;

    /// Applies changes (edits, revokes, acks, reactions) to stored
    /// messages in place, as one durable write; returns one outcome per
    /// change, in order. Per field the newest change wins (by its own
    /// time, [`crate::domain::Message::apply_change`]), so applying a
    /// batch twice, or its changes in any order, leaves the same
    /// documents. `keep_revoked_bodies`: a revoke keeps the body.
    ///
    /// A change for a message that is not stored (yet) is kept, pending,
    /// and applied when the message is stored (by a sync or as a live
    /// message); only the winner per field is kept. Pending changes of
    /// messages that never come expire ([`Store::prune_pending_changes`]).
    async fn apply_changes(
        &self,
        id: &SessionId,
        updates: &[MessageUpdate],
        keep_revoked_bodies: bool,
    ) -> StoreResult<Vec<ChangeOutcome>>;

    /// Deletes pending changes kept before `before` (ms); returns how many.
    /// Bounded work per call, like [`Store::prune`].
    async fn prune_pending_changes(&self, before: i64) -> StoreResult<u64>;

    /// The oldest stored message of a chat (its timestamp and every id
    /// stored at that timestamp), where a deepen goes on; `None` without
    /// stored messages. The adapters read the end of their index;
    /// [`oldest_from_listing`] is the reference (no default, as for
    /// [`Store::message_marks`]).
    async fn oldest_mark(&self, id: &SessionId, chat_id: &str) -> StoreResult<Option<MessageMark>>;

    // ---- contacts -----------------------------------------------------------
    /// Inserts or replaces contacts, idempotent on `(sessionId, id)`. A
    /// contact whose `lid` is set replaces a stored contact keyed by that
    /// `@lid` id (one the number was not known for yet), so one person is
    /// one contact.
    async fn upsert_contacts(&self, id: &SessionId, contacts: &[Contact]) -> StoreResult<()>;

    /// Contacts by id, ascending; a page starts after the contact id
    /// `after`.
    async fn list_contacts(
        &self,
        id: &SessionId,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Vec<StoredContact>>;

    /// The contact `contact_id` names: its id, or its `@lid`.
    async fn find_contact(
        &self,
        id: &SessionId,
        contact_id: &str,
    ) -> StoreResult<Option<StoredContact>>;

    async fn count_contacts(&self, id: &SessionId) -> StoreResult<u64>;

    /// Sets the members of stored group chats (a group not stored is
    /// skipped); kept by later [`Store::upsert_chats`].
    async fn put_participants(
        &self,
        id: &SessionId,
        groups: &[GroupParticipants],
    ) -> StoreResult<()>;

    // ---- sync runs --------------------------------------------------------
    async fn put_sync_run(&self, run: &SyncRun) -> StoreResult<()>;
    async fn get_sync_run(&self, sync_id: &str) -> StoreResult<Option<SyncRun>>;
    /// The newest run of a session.
    async fn latest_sync_run(&self, id: &SessionId) -> StoreResult<Option<SyncRun>>;

    /// Completes a run and queues its events (`session_ready`, and
    /// `sync_complete` when a webhook wants it) in one durable step, so an
    /// event exists if and only if the data it announces does. Fenced like
    /// [`Store::commit_chats`]: a stale writer queues nothing.
    async fn finish_sync(&self, run: &SyncRun, events: &[OutboxEvent]) -> StoreResult<()>;

    // ---- outbox -----------------------------------------------------------
    /// Queues an event; an event whose id is already queued is left as it
    /// is (published or not), so queueing twice never publishes twice.
    async fn enqueue_event(&self, event: &OutboxEvent) -> StoreResult<()>;
    /// Unpublished events, oldest first.
    async fn pending_events(&self, limit: u32) -> StoreResult<Vec<OutboxEvent>>;
    /// Unpublished events this relay may publish now, oldest first: on a
    /// shared store each is claimed for `claim_ms` by `claimer`, so relays
    /// on several hosts normally publish each event once (a claim that
    /// expires unconfirmed is taken again: still at least once). A store
    /// only one host uses has nothing to share and returns the pending ones.
    async fn claim_events(
        &self,
        claimer: &str,
        limit: u32,
        claim_ms: i64,
    ) -> StoreResult<Vec<OutboxEvent>> {
        let _ = (claimer, claim_ms);
        self.pending_events(limit).await
    }
    /// How many events are unpublished (the `/metrics` gauge), without
    /// reading them.
    async fn count_pending_events(&self) -> StoreResult<u64>;
    async fn mark_published(&self, event_ids: &[String], at: i64) -> StoreResult<()>;
    /// Counts a failed attempt.
    async fn record_attempt(&self, event_ids: &[String]) -> StoreResult<()>;
    /// Every outbox event of a session (published or not), oldest first.
    async fn session_events(&self, id: &SessionId) -> StoreResult<Vec<OutboxEvent>>;

    // ---- quarantine -------------------------------------------------------
    /// Keeps messages a fail-closed plugin refused outside a sync (live
    /// messages); idempotent on `(sessionId, messageId)`.
    async fn put_quarantine(&self, id: &SessionId, items: &[QuarantinedMessage])
    -> StoreResult<()>;
    async fn list_quarantine(&self, id: &SessionId) -> StoreResult<Vec<QuarantinedMessage>>;
    /// One page of a session's quarantine, by message id; `after` (the last
    /// message id of the previous page) pages on.
    async fn quarantine_page(
        &self,
        id: &SessionId,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Vec<QuarantinedMessage>>;
    /// Deletes a session's quarantine; returns how many messages went.
    async fn clear_quarantine(&self, id: &SessionId) -> StoreResult<u64>;

    // ---- retention --------------------------------------------------------
    /// Deletes outbox events published before `published_before` (pending
    /// ones are never pruned) and quarantined messages quarantined before
    /// `quarantined_before` (ms). Bounded work per call: a store prunes in
    /// small steps, so a sync never waits long behind it.
    async fn prune(&self, published_before: i64, quarantined_before: i64) -> StoreResult<Pruned>;
}

/// One chat's [`MessageMark`] read from its listing (newest first, ties by
/// id): the first page's newest timestamp, paging on while the page ends on
/// that timestamp.
pub async fn mark_from_listing<S: Store + ?Sized>(
    store: &S,
    id: &SessionId,
    chat_id: &str,
) -> StoreResult<Option<MessageMark>> {
    const PAGE: u32 = 16;
    let mut mark: Option<MessageMark> = None;
    let mut before: Option<MessageCursor> = None;
    loop {
        let page = store
            .list_messages(id, chat_id, PAGE, before.as_ref())
            .await?;
        let full = page.len() as u32 == PAGE;
        for m in &page {
            let m = &m.message;
            match &mut mark {
                None => {
                    mark = Some(MessageMark {
                        timestamp: m.timestamp,
                        ids: vec![m.id.clone()],
                    })
                }
                Some(k) if k.timestamp == m.timestamp => k.ids.push(m.id.clone()),
                Some(_) => return Ok(mark),
            }
        }
        match page.last() {
            Some(last) if full => {
                before = Some(MessageCursor {
                    timestamp: last.message.timestamp,
                    message_id: Some(last.message.id.clone()),
                })
            }
            _ => return Ok(mark),
        }
    }
}

/// One chat's oldest [`MessageMark`] read from its whole listing (newest
/// first, ties by id): the reference the adapters' answers are checked by.
pub async fn oldest_from_listing<S: Store + ?Sized>(
    store: &S,
    id: &SessionId,
    chat_id: &str,
) -> StoreResult<Option<MessageMark>> {
    const PAGE: u32 = 500;
    let mut mark: Option<MessageMark> = None;
    let mut before: Option<MessageCursor> = None;
    loop {
        let page = store
            .list_messages(id, chat_id, PAGE, before.as_ref())
            .await?;
        for m in &page {
            let m = &m.message;
            match &mut mark {
                Some(k) if k.timestamp == m.timestamp => k.ids.push(m.id.clone()),
                _ => {
                    mark = Some(MessageMark {
                        timestamp: m.timestamp,
                        ids: vec![m.id.clone()],
                    })
                }
            }
        }
        match page.last() {
            Some(last) if page.len() as u32 == PAGE => {
                before = Some(MessageCursor {
                    timestamp: last.message.timestamp,
                    message_id: Some(last.message.id.clone()),
                })
            }
            _ => return Ok(mark),
        }
    }
}

/// What [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub quarantined: u64,
}
