//! Embedded adapter: every collection in one redb file, so `cargo run`
//! needs no server.
//!
//! redb is a copy-on-write B-tree with ACID transactions; a committed write
//! transaction is fsync'd before `commit` returns, which is the durability
//! the storage port promises. All redb calls are blocking, so each store
//! method runs on tokio's blocking pool. Documents are JSON bytes (the same
//! camelCase shape as the API), and secondary orderings are extra tables
//! whose keys sort the way the reads need them.
//!
//! Store calls wait for a lane before they take a blocking thread: at most
//! [`WRITERS`] write calls and [`READERS`] read calls run at once, the rest
//! wait as futures. redb runs one write transaction at a time, so without
//! the lanes every session with a write due held a thread of its own
//! blocked in `begin_write`: under the soak's 100 sessions the blocking
//! pool grew with the queue (80 → 114 threads in 5 minutes), and each
//! thread kept its stack and its allocator cache resident, so the host's
//! memory crept up with the worst backlog it had seen (S1).

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::{
    ChatCommit, ChatPage, MessageCursor, Pruned, SessionRecord, Store, StoreError, StoreResult,
    WriteStats, decode_chat_cursor, encode_chat_cursor,
};
use crate::domain::{
    ChangeOutcome, Chat, Contact, GroupParticipants, Message, MessageMark, MessageUpdate,
    OutboxEvent, QuarantinedMessage, SessionId, StoredChat, StoredContact, StoredMessage, SyncRun,
};

mod changes;
mod contacts;
mod history;
mod tables;
mod webhooks;
mod writes;

use self::tables::*;
use self::writes::*;

/// Write calls running at once: one in redb's write transaction, one
/// ready to begin the moment it commits (redb would only block more).
pub const WRITERS: usize = 2;
/// Read calls running at once. Reads see a snapshot and never wait for a
/// write, so they have their own lane: a queue of writes does not delay a
/// REST read.
pub const READERS: usize = 16;

/// Which lane a store call waits in.
#[derive(Debug, Clone, Copy)]
pub(super) enum Lane {
    Read,
    Write,
}

/// The embedded store.
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    reads: Arc<tokio::sync::Semaphore>,
    writes: Arc<tokio::sync::Semaphore>,
    /// Calls on a blocking thread now, and the most there have been.
    running: Arc<std::sync::atomic::AtomicUsize>,
    most_running: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store file and its tables, with the default
    /// page cache.
    pub fn open(path: &Path) -> StoreResult<Self> {
        Self::open_with_cache(path, CACHE_BYTES)
    }

    /// Opens (or creates) the store file with a page cache of
    /// `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        // redb caches up to 1 GiB by default, which would make the host's
        // memory grow with the account; a bounded cache keeps it flat.
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                    "{} is already open by another wasync process",
                    path.display()
                )),
                other => {
                    StoreError::Unavailable(format!("cannot open {}: {other}", path.display()))
                }
            })?;
        let txn = db.begin_write().db()?;
        {
            txn.open_table(SESSIONS).db()?;
            txn.open_table(CHATS).db()?;
            txn.open_table(CHATS_BY_ACTIVITY).db()?;
            txn.open_table(MESSAGES).db()?;
            txn.open_table(MESSAGES_BY_CHAT).db()?;
            txn.open_table(PENDING_CHANGES).db()?;
            txn.open_table(SYNC_RUNS).db()?;
            txn.open_table(RUNS_BY_SESSION).db()?;
            txn.open_table(OUTBOX).db()?;
            txn.open_table(OUTBOX_PENDING).db()?;
            txn.open_table(QUARANTINE).db()?;
            txn.open_table(WEBHOOKS).db()?;
            txn.open_table(DELIVERIES).db()?;
            txn.open_table(DELIVERIES_BY_STATUS).db()?;
            contacts::create_tables(&txn)?;
        }
        txn.commit().db()?;
        Ok(Self {
            db: Arc::new(db),
            path: path.to_owned(),
            reads: Arc::new(tokio::sync::Semaphore::new(READERS)),
            writes: Arc::new(tokio::sync::Semaphore::new(WRITERS)),
            running: Arc::default(),
            most_running: Arc::default(),
        })
    }

    /// The most store calls that have been on blocking threads at once
    /// (at most [`READERS`] + [`WRITERS`]).
    pub fn most_running(&self) -> usize {
        self.most_running.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `f` on the blocking pool once `lane` has room. The permit is
    /// held by the blocking task itself, so a caller that gives up (a
    /// dropped future) does not free the lane while `f` still runs.
    async fn blocking<T, F>(&self, lane: Lane, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        use std::sync::atomic::Ordering;
        let sem = match lane {
            Lane::Read => &self.reads,
            Lane::Write => &self.writes,
        };
        let permit = sem
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("store closed".into()))?;
        let db = self.db.clone();
        let (running, most) = (self.running.clone(), self.most_running.clone());
        tokio::task::spawn_blocking(move || {
            let now = running.fetch_add(1, Ordering::Relaxed) + 1;
            most.fetch_max(now, Ordering::Relaxed);
            let out = f(&db);
            running.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
            out
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }
}

/// Removes every key of `table` whose first element is `sid`.
/// Removes every key of `table` in `lo..hi`: the keys of one session, whose
/// id is the first element of each key. `hi` puts `"<sid>\0"` first, the
/// least string above every key starting with exactly `sid` (and below a
/// longer id such as `sid0`), so the purge visits that session's keys only,
/// not the rest of the table inside the store's single write transaction.
macro_rules! purge_prefix {
    ($txn:expr, $table:expr, $lo:expr, $hi:expr) => {{
        let mut t = $txn.open_table($table).db()?;
        t.retain_in($lo..$hi, |_, _| false).db()?;
    }};
}

#[async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.blocking(Lane::Read, |db| {
            db.begin_read().db()?;
            Ok(())
        })
        .await
    }

    async fn put_session(&self, rec: &SessionRecord) -> StoreResult<()> {
        let rec = rec.clone();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            put_session(&txn, &rec)?;
            txn.commit().db()
        })
        .await
    }

    async fn get_session(&self, id: &SessionId) -> StoreResult<Option<SessionRecord>> {
        let id = id.to_string();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let t = txn.open_table(SESSIONS).db()?;
            t.get(id.as_str()).db()?.map(|g| dec(g.value())).transpose()
        })
        .await
    }

    async fn list_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        self.blocking(Lane::Read, |db| {
            let txn = db.begin_read().db()?;
            let t = txn.open_table(SESSIONS).db()?;
            let mut out = Vec::new();
            for row in t.iter().db()? {
                let (_, v) = row.db()?;
                out.push(dec(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_session(&self, id: &SessionId, purge: bool) -> StoreResult<()> {
        let sid = id.to_string();
        self.blocking(Lane::Write, move |db| {
            // The outbox is keyed by event id alone: its events of this
            // session are found in a read first, so the write transaction
            // only deletes (the outbox stays small: published events are
            // pruned).
            let (events, deliveries) = if purge {
                (
                    session_event_ids(db, &sid)?,
                    webhooks::session_deliveries(db, &sid)?,
                )
            } else {
                (Vec::new(), Vec::new())
            };
            let txn = db.begin_write().db()?;
            txn.open_table(SESSIONS).db()?.remove(sid.as_str()).db()?;
            if purge {
                let s = sid.as_str();
                let above = format!("{s}\0");
                let n = above.as_str();
                purge_prefix!(txn, CHATS, (s, ""), (n, ""));
                purge_prefix!(txn, CHATS_BY_ACTIVITY, (s, 0u64, ""), (n, 0u64, ""));
                purge_prefix!(txn, MESSAGES, (s, ""), (n, ""));
                purge_prefix!(txn, MESSAGES_BY_CHAT, (s, "", 0u64, ""), (n, "", 0u64, ""));
                purge_prefix!(txn, PENDING_CHANGES, (s, ""), (n, ""));
                purge_prefix!(txn, QUARANTINE, (s, ""), (n, ""));
                contacts::purge(&txn, s, n)?;
                let mut ids = Vec::new();
                {
                    let by_session = txn.open_table(RUNS_BY_SESSION).db()?;
                    for row in by_session.range((s, 0u64, "")..).db()? {
                        let (k, _) = row.db()?;
                        let (ks, _, sync_id) = k.value();
                        if ks != s {
                            break;
                        }
                        ids.push(sync_id.to_owned());
                    }
                }
                purge_prefix!(txn, RUNS_BY_SESSION, (s, 0u64, ""), (n, 0u64, ""));
                let mut runs = txn.open_table(SYNC_RUNS).db()?;
                for id in &ids {
                    runs.remove(id.as_str()).db()?;
                }
                let mut outbox = txn.open_table(OUTBOX).db()?;
                let mut pending = txn.open_table(OUTBOX_PENDING).db()?;
                for e in &events {
                    outbox.remove(e.as_str()).db()?;
                    pending.remove(e.as_str()).db()?;
                }
                // Deliveries carry their event's data (message bodies
                // among it), whatever their status.
                webhooks::remove_deliveries(&txn, &deliveries)?;
            }
            txn.commit().db()
        })
        .await
    }

    async fn upsert_chats(&self, id: &SessionId, chats: &[Chat]) -> StoreResult<()> {
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

    async fn commit_chats(
        &self,
        id: &SessionId,
        chats: &[ChatCommit],
        run: &SyncRun,
    ) -> StoreResult<Vec<WriteStats>> {
        let sid = id.to_string();
        let chats = chats.to_vec();
        let run = run.clone();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            let mut all = Vec::with_capacity(chats.len());
            for c in &chats {
                let (stats, _) = write_messages(&txn, &sid, &c.messages)?;
                bump_chat(&txn, &sid, &c.chat_id, stats.inserted, Some(c.synced_at))?;
                if !c.quarantined.is_empty() {
                    let mut q = txn.open_table(QUARANTINE).db()?;
                    for item in &c.quarantined {
                        q.insert(
                            (sid.as_str(), item.message.id.as_str()),
                            enc(item)?.as_slice(),
                        )
                        .db()?;
                    }
                }
                all.push(stats);
            }
            put_run(&txn, &run)?;
            txn.commit().db()?;
            Ok(all)
        })
        .await
    }

    async fn put_messages(&self, id: &SessionId, messages: &[Message]) -> StoreResult<WriteStats> {
        let sid = id.to_string();
        let messages = messages.to_vec();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            let (stats, per_chat) = write_messages(&txn, &sid, &messages)?;
            for (chat_id, n) in per_chat {
                bump_chat(&txn, &sid, &chat_id, n, None)?;
            }
            txn.commit().db()?;
            Ok(stats)
        })
        .await
    }

    async fn list_chats(
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

    async fn get_chat(&self, id: &SessionId, chat_id: &str) -> StoreResult<Option<StoredChat>> {
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

    async fn list_messages(
        &self,
        id: &SessionId,
        chat_id: &str,
        limit: u32,
        before: Option<&MessageCursor>,
    ) -> StoreResult<Vec<StoredMessage>> {
        let sid = id.to_string();
        let chat_id = chat_id.to_owned();
        let before = before.cloned();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let by_chat = txn.open_table(MESSAGES_BY_CHAT).db()?;
            let table = txn.open_table(MESSAGES).db()?;
            let (s, c) = (sid.as_str(), chat_id.as_str());
            // The index sorts newest first, ties by message id: the listing
            // order, so a page resumes right after its cursor's key.
            let start = match &before {
                Some(MessageCursor {
                    timestamp,
                    message_id: Some(mid),
                }) => Bound::Excluded((s, c, desc(Some(*timestamp)), mid.as_str())),
                Some(MessageCursor {
                    timestamp,
                    message_id: None,
                }) => Bound::Included((s, c, desc(Some(*timestamp)).saturating_add(1), "")),
                None => Bound::Included((s, c, 0, "")),
            };
            let mut out = Vec::new();
            for row in by_chat.range((start, Bound::Unbounded)).db()? {
                if out.len() as u32 >= limit {
                    break;
                }
                let (k, _) = row.db()?;
                let (ks, kc, _, mid) = k.value();
                if ks != s || kc != c {
                    break;
                }
                if let Some(g) = table.get((s, mid)).db()? {
                    out.push(StoredMessage {
                        session_id: sid.clone(),
                        message: dec(g.value())?,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn newest_message_times(
        &self,
        id: &SessionId,
        chat_ids: &[String],
    ) -> StoreResult<HashMap<String, i64>> {
        // The marks are a read of the index's first keys per chat already.
        Ok(self
            .message_marks(id, chat_ids)
            .await?
            .into_iter()
            .map(|(chat, mark)| (chat, mark.timestamp))
            .collect())
    }

    async fn message_marks(
        &self,
        id: &SessionId,
        chat_ids: &[String],
    ) -> StoreResult<HashMap<String, MessageMark>> {
        let sid = id.to_string();
        let chat_ids = chat_ids.to_vec();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let by_chat = txn.open_table(MESSAGES_BY_CHAT).db()?;
            let s = sid.as_str();
            let mut out = HashMap::new();
            // Keys only: the index sorts a chat's newest first, so its mark
            // is the run of keys sharing the first key's time.
            for c in &chat_ids {
                let mut mark: Option<(u64, Vec<String>)> = None;
                for row in by_chat.range((s, c.as_str(), 0u64, "")..).db()? {
                    let (k, _) = row.db()?;
                    let (ks, kc, t, mid) = k.value();
                    if ks != s || kc != c.as_str() {
                        break;
                    }
                    match &mut mark {
                        None => mark = Some((t, vec![mid.to_owned()])),
                        Some((first, ids)) if *first == t => ids.push(mid.to_owned()),
                        Some(_) => break,
                    }
                }
                if let Some((t, ids)) = mark {
                    let timestamp = ((!t) ^ (1 << 63)) as i64;
                    out.insert(c.clone(), MessageMark { timestamp, ids });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn oldest_mark(&self, id: &SessionId, chat_id: &str) -> StoreResult<Option<MessageMark>> {
        self.oldest_of(id, chat_id).await
    }

    async fn count_messages(&self, id: &SessionId, chat_id: Option<&str>) -> StoreResult<u64> {
        let sid = id.to_string();
        let chat_id = chat_id.map(str::to_owned);
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let s = sid.as_str();
            let mut n = 0u64;
            match chat_id {
                Some(c) => {
                    let t = txn.open_table(MESSAGES_BY_CHAT).db()?;
                    for row in t.range((s, c.as_str(), 0u64, "")..).db()? {
                        let (k, _) = row.db()?;
                        let (ks, kc, _, _) = k.value();
                        if ks != s || kc != c {
                            break;
                        }
                        n += 1;
                    }
                }
                None => {
                    let t = txn.open_table(MESSAGES).db()?;
                    for row in t.range((s, "")..).db()? {
                        let (k, _) = row.db()?;
                        if k.value().0 != s {
                            break;
                        }
                        n += 1;
                    }
                }
            }
            Ok(n)
        })
        .await
    }

    async fn get_message(
        &self,
        id: &SessionId,
        message_id: &str,
    ) -> StoreResult<Option<StoredMessage>> {
        self.message(id, message_id).await
    }

    async fn apply_changes(
        &self,
        id: &SessionId,
        updates: &[MessageUpdate],
        keep_revoked_bodies: bool,
    ) -> StoreResult<Vec<ChangeOutcome>> {
        self.changes(id, updates, keep_revoked_bodies).await
    }

    async fn prune_pending_changes(&self, before: i64) -> StoreResult<u64> {
        self.prune_pending(before).await
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
        let run = run.clone();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            put_run(&txn, &run)?;
            txn.commit().db()
        })
        .await
    }

    async fn get_sync_run(&self, sync_id: &str) -> StoreResult<Option<SyncRun>> {
        let sync_id = sync_id.to_owned();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let t = txn.open_table(SYNC_RUNS).db()?;
            t.get(sync_id.as_str())
                .db()?
                .map(|g| dec(g.value()))
                .transpose()
        })
        .await
    }

    async fn latest_sync_run(&self, id: &SessionId) -> StoreResult<Option<SyncRun>> {
        let sid = id.to_string();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let by_session = txn.open_table(RUNS_BY_SESSION).db()?;
            let runs = txn.open_table(SYNC_RUNS).db()?;
            let s = sid.as_str();
            let mut last: Option<String> = None;
            for row in by_session.range((s, 0u64, "")..).db()? {
                let (k, _) = row.db()?;
                let (ks, _, sync_id) = k.value();
                if ks != s {
                    break;
                }
                last = Some(sync_id.to_owned());
            }
            match last {
                Some(id) => runs
                    .get(id.as_str())
                    .db()?
                    .map(|g| dec(g.value()))
                    .transpose(),
                None => Ok(None),
            }
        })
        .await
    }

    async fn finish_sync(&self, run: &SyncRun, events: &[OutboxEvent]) -> StoreResult<()> {
        let run = run.clone();
        let events = events.to_vec();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            put_run(&txn, &run)?;
            for ev in &events {
                put_event(&txn, ev)?;
            }
            txn.commit().db()
        })
        .await
    }

    async fn enqueue_event(&self, event: &OutboxEvent) -> StoreResult<()> {
        let event = event.clone();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            put_event(&txn, &event)?;
            txn.commit().db()
        })
        .await
    }

    async fn pending_events(&self, limit: u32) -> StoreResult<Vec<OutboxEvent>> {
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let pending = txn.open_table(OUTBOX_PENDING).db()?;
            let outbox = txn.open_table(OUTBOX).db()?;
            let mut out = Vec::new();
            for row in pending.iter().db()? {
                if out.len() as u32 >= limit {
                    break;
                }
                let (k, _) = row.db()?;
                if let Some(g) = outbox.get(k.value()).db()? {
                    out.push(dec(g.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn count_pending_events(&self) -> StoreResult<u64> {
        self.blocking(Lane::Read, |db| {
            let txn = db.begin_read().db()?;
            txn.open_table(OUTBOX_PENDING).db()?.len().db()
        })
        .await
    }

    async fn mark_published(&self, event_ids: &[String], at: i64) -> StoreResult<()> {
        let ids = event_ids.to_vec();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            {
                let mut outbox = txn.open_table(OUTBOX).db()?;
                let mut pending = txn.open_table(OUTBOX_PENDING).db()?;
                for id in &ids {
                    let old = outbox.get(id.as_str()).db()?.map(|g| g.value().to_vec());
                    if let Some(old) = old {
                        let mut ev: OutboxEvent = dec(&old)?;
                        ev.published_at = Some(at);
                        ev.attempts += 1;
                        outbox.insert(id.as_str(), enc(&ev)?.as_slice()).db()?;
                    }
                    pending.remove(id.as_str()).db()?;
                }
            }
            txn.commit().db()
        })
        .await
    }

    async fn record_attempt(&self, event_ids: &[String]) -> StoreResult<()> {
        let ids = event_ids.to_vec();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            {
                let mut outbox = txn.open_table(OUTBOX).db()?;
                for id in &ids {
                    let old = outbox.get(id.as_str()).db()?.map(|g| g.value().to_vec());
                    if let Some(old) = old {
                        let mut ev: OutboxEvent = dec(&old)?;
                        ev.attempts += 1;
                        outbox.insert(id.as_str(), enc(&ev)?.as_slice()).db()?;
                    }
                }
            }
            txn.commit().db()
        })
        .await
    }

    async fn session_events(&self, id: &SessionId) -> StoreResult<Vec<OutboxEvent>> {
        let sid = id.to_string();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let outbox = txn.open_table(OUTBOX).db()?;
            let mut out = Vec::new();
            for row in outbox.iter().db()? {
                let (_, v) = row.db()?;
                let ev: OutboxEvent = dec(v.value())?;
                if ev.session_id == sid {
                    out.push(ev);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn put_quarantine(
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

    async fn list_quarantine(&self, id: &SessionId) -> StoreResult<Vec<QuarantinedMessage>> {
        self.quarantine_page(id, u32::MAX, None).await
    }

    async fn quarantine_page(
        &self,
        id: &SessionId,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Vec<QuarantinedMessage>> {
        let sid = id.to_string();
        let after = after.map(str::to_owned);
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let q = txn.open_table(QUARANTINE).db()?;
            let s = sid.as_str();
            let start = match &after {
                Some(a) => Bound::Excluded((s, a.as_str())),
                None => Bound::Included((s, "")),
            };
            let mut out = Vec::new();
            for row in q.range((start, Bound::Unbounded)).db()? {
                if out.len() as u32 >= limit {
                    break;
                }
                let (k, v) = row.db()?;
                if k.value().0 != s {
                    break;
                }
                out.push(dec(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn clear_quarantine(&self, id: &SessionId) -> StoreResult<u64> {
        let sid = id.to_string();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            let s = sid.as_str();
            let above = format!("{s}\0");
            let n;
            {
                let mut q = txn.open_table(QUARANTINE).db()?;
                let mut count = 0u64;
                q.retain_in((s, "")..(above.as_str(), ""), |_, _| {
                    count += 1;
                    false
                })
                .db()?;
                n = count;
            }
            txn.commit().db()?;
            Ok(n)
        })
        .await
    }

    async fn prune(&self, published_before: i64, quarantined_before: i64) -> StoreResult<Pruned> {
        self.blocking(Lane::Write, move |db| {
            let mut pruned = Pruned::default();
            // Keys are found in a read, then deleted in write transactions
            // of at most PRUNE_STEP keys: a sync's commit waits for one
            // step at most, not for a scan of the whole table.
            let events: Vec<String> = {
                let txn = db.begin_read().db()?;
                let outbox = txn.open_table(OUTBOX).db()?;
                let mut v = Vec::new();
                for row in outbox.iter().db()? {
                    let (k, val) = row.db()?;
                    let ev: OutboxEvent = dec(val.value())?;
                    if ev.published_at.is_some_and(|t| t < published_before) {
                        v.push(k.value().to_owned());
                    }
                }
                v
            };
            for step in events.chunks(PRUNE_STEP) {
                let txn = db.begin_write().db()?;
                {
                    let mut outbox = txn.open_table(OUTBOX).db()?;
                    for id in step {
                        outbox.remove(id.as_str()).db()?;
                    }
                }
                txn.commit().db()?;
                pruned.events += step.len() as u64;
            }
            let quarantined: Vec<(String, String)> = {
                let txn = db.begin_read().db()?;
                let q = txn.open_table(QUARANTINE).db()?;
                let mut v = Vec::new();
                for row in q.iter().db()? {
                    let (k, val) = row.db()?;
                    let item: QuarantinedMessage = dec(val.value())?;
                    if item.quarantined_at < quarantined_before {
                        let (s, m) = k.value();
                        v.push((s.to_owned(), m.to_owned()));
                    }
                }
                v
            };
            for step in quarantined.chunks(PRUNE_STEP) {
                let txn = db.begin_write().db()?;
                {
                    let mut q = txn.open_table(QUARANTINE).db()?;
                    for (s, m) in step {
                        q.remove((s.as_str(), m.as_str())).db()?;
                    }
                }
                txn.commit().db()?;
                pruned.quarantined += step.len() as u64;
            }
            Ok(pruned)
        })
        .await
    }
}

/// Keys deleted per write transaction when pruning.
const PRUNE_STEP: usize = 1_000;

/// Ids of every outbox event of session `sid`.
fn session_event_ids(db: &Database, sid: &str) -> StoreResult<Vec<String>> {
    let txn = db.begin_read().db()?;
    let outbox = txn.open_table(OUTBOX).db()?;
    let mut out = Vec::new();
    for row in outbox.iter().db()? {
        let (k, v) = row.db()?;
        let ev: OutboxEvent = dec(v.value())?;
        if ev.session_id == sid {
            out.push(k.value().to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desc_orders_newest_first_and_none_last() {
        let mut keys = [desc(Some(5)), desc(None), desc(Some(-3)), desc(Some(100))];
        keys.sort();
        assert_eq!(
            keys,
            [desc(Some(100)), desc(Some(5)), desc(Some(-3)), desc(None)]
        );
    }

    #[tokio::test]
    async fn passes_the_storage_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("wasync.redb")).unwrap();
        super::super::contract::run_all(&store).await;
        super::super::contract::webhooks::run_all(&store).await;
        super::super::contract::webhooks::a_purge_deletes_the_sessions_deliveries(&store).await;
    }

    /// A crowd of sessions writing at once waits in the lanes, not on a
    /// blocking thread each (the soak's creeping memory, S1).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_stay_within_the_lanes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("wasync.redb")).unwrap());
        let calls: Vec<_> = (0..100)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let id = SessionId::parse(&format!("s{i}")).unwrap();
                    let msg = super::super::contract::msg("c@c.us", i as i64);
                    store.put_messages(&id, &[msg]).await.unwrap();
                    store.count_messages(&id, None).await.unwrap()
                })
            })
            .collect();
        for c in calls {
            assert_eq!(c.await.unwrap(), 1);
        }
        let most = store.most_running();
        assert!(
            (1..=READERS + WRITERS).contains(&most),
            "{most} store calls ran at once"
        );
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wasync.redb");
        let _first = EmbeddedStore::open(&path).unwrap();
        let err = EmbeddedStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("already open"), "{err}");
    }
}
