//! Embedded adapter: every collection in one redb file, so `cargo run`
//! needs no server.
//!
//! # Why it is written the way it is
//!
//! - **One file, ACID.** redb is a copy-on-write B-tree with transactions;
//!   a committed write transaction is fsync'd before `commit` returns,
//!   which is the durability the storage port promises. A sync's group is
//!   one transaction: messages, quarantine, counters and the checkpoint
//!   land together or not at all, so counts are exact after a crash.
//! - **Messages clustered by chat and time** ([`messages`]): a message is
//!   a binary record ([`record`]) under `(session, chat, desc(time), id)`,
//!   and a small id index maps `(session, id)` to its place. A sync writes
//!   a chat's messages into neighbouring leaves, in key order, and reads
//!   (listings, marks, counts) are range reads without a second lookup.
//!   Layout 1 (JSON documents by message id plus a `(chat, time)` index,
//!   [`legacy`]) spent most of a sync in those two inserts and the JSON
//!   encoding (P2); it is migrated at open ([`layout`]).
//! - **Everything else is JSON** (the API's camelCase shape): chats, runs,
//!   events, quarantine and contacts are written a few times per sync, so
//!   a self-describing format that tolerates new fields costs nothing
//!   measurable. Secondary orderings are extra tables whose keys sort the
//!   way the reads need them.
//! - **Blocking calls in lanes.** All redb calls are blocking, so each
//!   store method runs off the runtime, after waiting for a lane: reads on
//!   tokio's blocking pool, writes on the store's own writer thread
//!   ([`writer`]: one thread keeps a write's buffers in one allocator
//!   heap). At most [`WRITERS`] write calls (one running, one queued) and
//!   [`READERS`] read calls are let through at once, the rest wait as
//!   futures. A long maintenance write (pruning) is a read that finds the
//!   keys and one write call per step, so a sync's commit waits for one
//!   step at most. redb runs one write transaction at a
//!   time, so without the lanes every session with a write due held a
//!   thread of its own blocked in `begin_write`: under the soak's 100
//!   sessions the blocking pool grew with the queue (80 → 114 threads in
//!   5 minutes), and each thread kept its stack and its allocator cache
//!   resident, so the host's memory crept up with the worst backlog it had
//!   seen (S1).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::Database;

use super::{
    ChatCommit, ChatPage, MessageCursor, Pruned, SessionRecord, Store, StoreError, StoreResult,
    WriteStats,
};
use crate::domain::{
    ChangeOutcome, Chat, Contact, GroupParticipants, Message, MessageMark, MessageUpdate,
    OutboxEvent, QuarantinedMessage, SessionId, StoredChat, StoredContact, StoredMessage, SyncRun,
};

mod changes;
mod chats;
mod contacts;
#[cfg(test)]
mod fixture;
mod layout;
mod legacy;
mod messages;
mod outbox;
mod quarantine;
mod record;
mod runs;
mod sessions;
mod tables;
mod webhooks;
mod writer;
mod writes;

use self::quarantine::PRUNE_STEP;
pub use self::tables::CACHE_BYTES;
use self::tables::*;

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
    /// Calls running now (on the blocking pool or the writer), and the
    /// most there have been.
    running: Arc<std::sync::atomic::AtomicUsize>,
    most_running: Arc<std::sync::atomic::AtomicUsize>,
    /// The thread every write call runs on ([`writer`]).
    writer: writer::Writer,
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
    /// `cache_bytes`, migrating a file of an older layout first.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> StoreResult<Self> {
        Self::open_upgraded(path, cache_bytes, layout::upgrade)
    }

    /// Opens the file, brings it to the current layout with `upgrade`, and
    /// creates the tables it lacks.
    fn open_upgraded(
        path: &Path,
        cache_bytes: usize,
        upgrade: impl FnOnce(&Database) -> StoreResult<()>,
    ) -> StoreResult<Self> {
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
        upgrade(&db)?;
        let txn = db.begin_write().db()?;
        {
            txn.open_table(SESSIONS).db()?;
            txn.open_table(CHATS).db()?;
            txn.open_table(CHATS_BY_ACTIVITY).db()?;
            txn.open_table(MESSAGES).db()?;
            txn.open_table(MESSAGE_IDS).db()?;
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
            writer: writer::Writer::start()?,
        })
    }

    /// The most store calls that have been on blocking threads at once
    /// (at most [`READERS`] + [`WRITERS`]).
    pub fn most_running(&self) -> usize {
        self.most_running.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Deletes `keys` in write calls of at most `step` keys each, one
    /// transaction per call (`delete` removes one step's keys and says how
    /// many things it removed), so other writes get in between steps.
    async fn delete_in_steps<K, F>(&self, keys: Vec<K>, step: usize, delete: F) -> StoreResult<u64>
    where
        K: Send + 'static,
        F: Fn(&redb::WriteTransaction, &[K]) -> StoreResult<u64> + Clone + Send + 'static,
    {
        let mut n = 0;
        let mut keys = keys.into_iter();
        loop {
            let chunk: Vec<K> = keys.by_ref().take(step).collect();
            if chunk.is_empty() {
                break;
            }
            let delete = delete.clone();
            n += self
                .blocking(Lane::Write, move |db| {
                    let txn = db.begin_write().db()?;
                    let n = delete(&txn, &chunk)?;
                    txn.commit().db()?;
                    Ok(n)
                })
                .await?;
        }
        Ok(n)
    }

    /// Runs `f` once `lane` has room: a read on the blocking pool, a write
    /// on the store's writer thread. The permit is held by the call itself,
    /// so a caller that gives up (a dropped future) does not free the lane
    /// while `f` still runs.
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
        let call = move || {
            let now = running.fetch_add(1, Ordering::Relaxed) + 1;
            most.fetch_max(now, Ordering::Relaxed);
            let out = f(&db);
            running.fetch_sub(1, Ordering::Relaxed);
            // The database handle goes before the caller hears back, so a
            // store dropped right after its last call closes the file.
            drop(db);
            drop(permit);
            out
        };
        match lane {
            Lane::Read => tokio::task::spawn_blocking(call)
                .await
                .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?,
            Lane::Write => self.writer.run(call).await,
        }
    }
}

/// The port, each method in the file of its concern.
#[async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.blocking(Lane::Read, |db| {
            use redb::ReadableDatabase;
            db.begin_read().db()?;
            Ok(())
        })
        .await
    }

    async fn put_session(&self, rec: &SessionRecord) -> StoreResult<()> {
        self.put_session_record(rec).await
    }

    async fn get_session(&self, id: &SessionId) -> StoreResult<Option<SessionRecord>> {
        self.session_record(id).await
    }

    async fn list_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        self.session_records().await
    }

    async fn delete_session(&self, id: &SessionId, purge: bool) -> StoreResult<()> {
        self.remove_session(id, purge).await
    }

    async fn upsert_chats(&self, id: &SessionId, chats: &[Chat]) -> StoreResult<()> {
        self.put_chats(id, chats).await
    }

    async fn commit_chats(
        &self,
        id: &SessionId,
        chats: &[ChatCommit],
        run: &SyncRun,
    ) -> StoreResult<Vec<WriteStats>> {
        self.commit(id, chats, run).await
    }

    async fn put_messages(&self, id: &SessionId, messages: &[Message]) -> StoreResult<WriteStats> {
        self.put_live(id, messages).await
    }

    async fn list_chats(
        &self,
        id: &SessionId,
        limit: u32,
        cursor: Option<&str>,
    ) -> StoreResult<ChatPage> {
        self.chat_page(id, limit, cursor).await
    }

    async fn get_chat(&self, id: &SessionId, chat_id: &str) -> StoreResult<Option<StoredChat>> {
        self.chat(id, chat_id).await
    }

    async fn list_messages(
        &self,
        id: &SessionId,
        chat_id: &str,
        limit: u32,
        before: Option<&MessageCursor>,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.list(id, chat_id, limit, before).await
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
        self.marks(id, chat_ids).await
    }

    async fn oldest_mark(&self, id: &SessionId, chat_id: &str) -> StoreResult<Option<MessageMark>> {
        self.oldest_of(id, chat_id).await
    }

    async fn count_messages(&self, id: &SessionId, chat_id: Option<&str>) -> StoreResult<u64> {
        self.count(id, chat_id).await
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
        self.put_run(run).await
    }

    async fn get_sync_run(&self, sync_id: &str) -> StoreResult<Option<SyncRun>> {
        self.run(sync_id).await
    }

    async fn latest_sync_run(&self, id: &SessionId) -> StoreResult<Option<SyncRun>> {
        self.latest_run(id).await
    }

    async fn finish_sync(&self, run: &SyncRun, events: &[OutboxEvent]) -> StoreResult<()> {
        self.finish_run(run, events).await
    }

    async fn enqueue_event(&self, event: &OutboxEvent) -> StoreResult<()> {
        self.enqueue(event).await
    }

    async fn pending_events(&self, limit: u32) -> StoreResult<Vec<OutboxEvent>> {
        self.pending(limit).await
    }

    async fn count_pending_events(&self) -> StoreResult<u64> {
        self.count_pending().await
    }

    async fn mark_published(&self, event_ids: &[String], at: i64) -> StoreResult<()> {
        self.attempted(event_ids, Some(at)).await
    }

    async fn record_attempt(&self, event_ids: &[String]) -> StoreResult<()> {
        self.attempted(event_ids, None).await
    }

    async fn session_events(&self, id: &SessionId) -> StoreResult<Vec<OutboxEvent>> {
        self.events_of(id).await
    }

    async fn put_quarantine(
        &self,
        id: &SessionId,
        items: &[QuarantinedMessage],
    ) -> StoreResult<()> {
        self.quarantine(id, items).await
    }

    async fn list_quarantine(&self, id: &SessionId) -> StoreResult<Vec<QuarantinedMessage>> {
        self.quarantined(id, u32::MAX, None).await
    }

    async fn quarantine_page(
        &self,
        id: &SessionId,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Vec<QuarantinedMessage>> {
        self.quarantined(id, limit, after).await
    }

    async fn clear_quarantine(&self, id: &SessionId) -> StoreResult<u64> {
        self.unquarantine(id).await
    }

    async fn prune(&self, published_before: i64, quarantined_before: i64) -> StoreResult<Pruned> {
        self.prune_old(published_before, quarantined_before).await
    }
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

    /// The checked-in store of the first layout (`fixture`).
    pub(super) fn fixture_path(ext: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(format!("embedded-layout1.{ext}"))
    }

    /// `fixture::write` writes the same store every time: a fresh one
    /// answers the checked-in snapshot.
    #[tokio::test]
    async fn a_fresh_fixture_store_answers_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("wasync.redb")).unwrap();
        fixture::write(&store).await;
        let want: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture_path("json")).unwrap()).unwrap();
        assert_eq!(fixture::snapshot(&store).await, want);
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wasync.redb");
        let _first = EmbeddedStore::open(&path).unwrap();
        let err = EmbeddedStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("already open"), "{err}");
    }

    /// Pruning deletes in steps: every key, one write call (and
    /// transaction) per step, the last step short.
    #[tokio::test]
    async fn deletes_run_in_steps_of_at_most_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("wasync.redb")).unwrap();
        let keys: Vec<String> = (0..2_500).map(|i| format!("ev-{i:05}")).collect();
        let stored = keys.clone();
        store
            .blocking(Lane::Write, move |db| {
                let txn = db.begin_write().db()?;
                {
                    let mut outbox = txn.open_table(OUTBOX).db()?;
                    for k in &stored {
                        outbox.insert(k.as_str(), b"{}".as_slice()).db()?;
                    }
                }
                txn.commit().db()
            })
            .await
            .unwrap();
        let steps = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = steps.clone();
        let n = store
            .delete_in_steps(keys, 1_000, move |txn, step: &[String]| {
                seen.lock().unwrap().push(step.len());
                let mut outbox = txn.open_table(OUTBOX).db()?;
                for k in step {
                    outbox.remove(k.as_str()).db()?;
                }
                Ok(step.len() as u64)
            })
            .await
            .unwrap();
        assert_eq!(n, 2_500);
        assert_eq!(*steps.lock().unwrap(), [1_000, 1_000, 500]);
        let left = store
            .blocking(Lane::Read, |db| {
                use redb::{ReadableDatabase, ReadableTableMetadata};
                let txn = db.begin_read().db()?;
                txn.open_table(OUTBOX).db()?.len().db()
            })
            .await
            .unwrap();
        assert_eq!(left, 0);
    }
}
