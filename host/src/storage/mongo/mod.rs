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
mod commit;
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

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
use mongodb::{Client, Collection, Database};

use self::marks::End;
use self::schema::{
    CHATS, COLLECTIONS, ChatDoc, MESSAGES, MessageDoc, OUTBOX, OUTBOX_DATES, QUARANTINE,
    QUARANTINE_DATES, RUN_DATES, SESSION_DATES, SESSIONS, SYNC_RUNS, date, decode, encode,
};
use super::{
    ChatCommit, ChatPage, MessageCursor, Pruned, SessionRecord, Store, StoreError, StoreResult,
    WriteStats,
};
use crate::domain::{
    ChangeOutcome, Chat, Contact, GroupParticipants, Message, MessageMark, MessageUpdate,
    OutboxEvent, QuarantinedMessage, SessionId, StoredChat, StoredContact, StoredMessage, SyncRun,
};

/// Server error codes that mean "the server is going away or not primary
/// right now": a retry later may succeed, so they map to `Unavailable`.
const UNAVAILABLE_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

const DUPLICATE_KEY: i32 = 11000;
/// Rounds of "read, merge, write if unchanged" of a re-written message
/// before the write fails (see `changes`).
const CAS_ATTEMPTS: usize = 8;
/// Mark reads (one indexed query per chat) an incremental sync keeps in
/// flight: enough to hide the round trip, few enough not to crowd the pool.
const MARK_READS_IN_FLIGHT: usize = 16;
const NAMESPACE_EXISTS: i32 = 48;
const INDEX_OPTIONS_CONFLICT: i32 = 85;
const INDEX_KEY_SPECS_CONFLICT: i32 = 86;

/// Messages a sync commits at once (see `Store::group_messages`). A
/// commit costs a few round trips and durable writes besides its insert
/// (the epoch check, the pending-change lookup, the chat counters, the
/// checkpoint); larger groups spread them over more messages, and the sync
/// keeps fetching into the next group while one commits.
const GROUP_MESSAGES: usize = 5_000;

/// Statements per `update` command, and their byte budget: well under the
/// server's 100,000-statement and 16 MiB limits, so a batch never has to be
/// split by the server.
const UPDATE_BATCH_STATEMENTS: usize = 1_000;
const UPDATE_BATCH_BYTES: usize = 8 * 1024 * 1024;

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

/// The parts of an `update` command reply the store acts on.
#[derive(Debug, Default)]
struct UpdateReply {
    /// `(statement index, error code, message)` of statements that failed.
    write_errors: Vec<(usize, i32, String)>,
    /// Documents the statements matched (the server's `n`).
    matched: u64,
    /// Documents the statements changed (the server's `nModified`).
    modified: u64,
}

/// A number in a document the server made, whichever of its numeric types
/// the server chose for it.
fn number(b: Option<&Bson>) -> Option<i64> {
    match b? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}

/// Maps a driver error onto the storage boundary.
fn map_err(e: mongodb::error::Error) -> StoreError {
    match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => StoreError::Unavailable(e.to_string()),
        ErrorKind::Command(c) if UNAVAILABLE_CODES.contains(&c.code) => {
            StoreError::Unavailable(e.to_string())
        }
        ErrorKind::Write(WriteFailure::WriteError(w)) if UNAVAILABLE_CODES.contains(&w.code) => {
            StoreError::Unavailable(e.to_string())
        }
        ErrorKind::BsonDeserialization(_) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// The documents an unordered `insert_many` into `collection` found stored
/// already (a duplicate key), by index; any other failure is an error.
fn duplicate_indexes<T>(
    collection: &str,
    inserted: Result<T, mongodb::error::Error>,
) -> StoreResult<Vec<usize>> {
    let e = match inserted {
        Ok(_) => return Ok(Vec::new()),
        Err(e) => e,
    };
    match e.kind.as_ref() {
        ErrorKind::InsertMany(f) if f.write_concern_error.is_none() => {
            let errors = f.write_errors.as_deref().unwrap_or_default();
            if let Some(other) = errors.iter().find(|w| w.code != DUPLICATE_KEY) {
                return Err(StoreError::Backend(format!(
                    "insert into {collection} failed ({}): {}",
                    other.code, other.message
                )));
            }
            Ok(errors.iter().map(|w| w.index).collect())
        }
        _ => Err(map_err(e)),
    }
}

fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

/// MongoDB's rules for database names, checked up front so a bad
/// `MONGODB_DB` is a clear start-up error rather than a driver message.
fn validate_db_name(name: &str) -> StoreResult<()> {
    if name.is_empty() || name.len() > 63 {
        return Err(StoreError::Backend(format!(
            "invalid MongoDB database name {name:?}: must be 1 to 63 bytes"
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| matches!(c, '/' | '\\' | '.' | ' ' | '"' | '$' | '\0'))
    {
        return Err(StoreError::Backend(format!(
            "invalid MongoDB database name {name:?}: it must not contain {bad:?}"
        )));
    }
    Ok(())
}

/// The durability the port promises, or the URI's own choice if it made
/// one that still waits for an acknowledgement.
fn durable_write_concern(from_uri: Option<WriteConcern>) -> StoreResult<WriteConcern> {
    let mut wc = from_uri.unwrap_or_default();
    if wc.w == Some(Acknowledgment::Nodes(0)) {
        return Err(StoreError::Backend(
            "MONGODB_URI asks for w=0 (unacknowledged writes); wasync needs acknowledged, \
             journaled writes to report only durable data"
                .into(),
        ));
    }
    if wc.w.is_none() {
        wc.w = Some(Acknowledgment::Majority);
    }
    if wc.journal.is_none() {
        wc.journal = Some(true);
    }
    Ok(wc)
}

impl MongoStore {
    /// Connects with default [`MongoOptions`] and makes sure the collections
    /// and indexes of DESIGN §6 exist (idempotent).
    ///
    /// Fails with `Unavailable` if the server cannot be reached within the
    /// server-selection timeout, and with a message naming the collection if
    /// a unique index cannot be built because the data already holds
    /// duplicates.
    pub async fn connect(uri: &str, db: &str) -> StoreResult<Self> {
        Self::connect_with(uri, db, MongoOptions::default()).await
    }

    /// [`connect`](Self::connect) with explicit options.
    pub async fn connect_with(uri: &str, db: &str, options: MongoOptions) -> StoreResult<Self> {
        validate_db_name(db)?;
        let mut opts = ClientOptions::parse(uri)
            .await
            .map_err(|e| match e.kind.as_ref() {
                ErrorKind::DnsResolve { .. } => {
                    StoreError::Unavailable(format!("cannot resolve MONGODB_URI: {e}"))
                }
                _ => StoreError::Backend(format!("invalid MONGODB_URI: {e}")),
            })?;
        opts.server_selection_timeout
            .get_or_insert(options.server_selection_timeout);
        opts.connect_timeout.get_or_insert(options.connect_timeout);
        opts.app_name.get_or_insert_with(|| "wasync".to_owned());
        let wc = durable_write_concern(opts.write_concern.take())?;
        opts.write_concern = Some(wc.clone());
        let write_concern = mongodb::bson::to_document(&wc)
            .map_err(|e| StoreError::Backend(format!("encode write concern: {e}")))?;
        let client = Client::with_options(opts)
            .map_err(|e| StoreError::Backend(format!("invalid MONGODB_URI: {e}")))?;
        let db = client.database(db);
        let mut store = Self {
            sessions: db.collection(SESSIONS),
            chats: db.collection(CHATS),
            messages: db.collection(MESSAGES),
            runs: db.collection(SYNC_RUNS),
            outbox: db.collection(OUTBOX),
            quarantine: db.collection(QUARANTINE),
            webhooks: db.collection(schema::WEBHOOKS),
            deliveries: db.collection(schema::WEBHOOK_DELIVERIES),
            pending: db.collection(schema::PENDING_CHANGES),
            chat_locks: counts::ChatLocks::default(),
            exact_modified_counts: false,
            write_concern,
            db,
        };
        store.ensure_schema().await?;
        if !options.read_back_every_write {
            store.exact_modified_counts = store.counts_only_changed_documents().await;
        }
        Ok(store)
    }

    /// The database this store writes to.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Whether a conditional write whose statements all count as modified
    /// all landed, with no read back (`probe` module).
    pub fn trusts_modified_counts(&self) -> bool {
        self.exact_modified_counts
    }

    /// Creates missing collections and indexes. Creating what exists is a
    /// no-op on the server, so every start runs it.
    async fn ensure_schema(&self) -> StoreResult<()> {
        let existing: HashSet<String> = self
            .db
            .list_collection_names()
            .await
            .map_err(map_err)?
            .into_iter()
            .collect();
        for name in COLLECTIONS {
            if existing.contains(name) {
                continue;
            }
            if let Err(e) = self.db.create_collection(name).await
                && command_code(&e) != Some(NAMESPACE_EXISTS)
            {
                return Err(map_err(e));
            }
        }
        for (collection, name) in schema::RETIRED_INDEXES {
            // Absent (a new database, or dropped already) is the goal.
            let _ = self
                .db
                .collection::<Document>(collection)
                .drop_index(*name)
                .await;
        }
        for spec in schema::indexes() {
            let coll = self.db.collection::<Document>(spec.collection);
            if let Err(e) = coll.create_index(spec.model()).await {
                return Err(match command_code(&e) {
                    Some(DUPLICATE_KEY) => StoreError::Corrupt(format!(
                        "cannot build the unique index {} on collection `{}`: the collection \
                         already holds documents with the same {}; remove the duplicates and \
                         start again ({e})",
                        spec.name, spec.collection, spec.keys
                    )),
                    Some(INDEX_OPTIONS_CONFLICT | INDEX_KEY_SPECS_CONFLICT) => {
                        StoreError::Corrupt(format!(
                            "collection `{}` already has an index that conflicts with {} {} \
                             (unique: {}); drop it and start again ({e})",
                            spec.collection, spec.name, spec.keys, spec.unique
                        ))
                    }
                    _ => map_err(e),
                });
            }
        }
        Ok(())
    }

    /// Runs `update` statements on `collection` in as few commands as the
    /// size limits allow. Statement errors are returned (indexes into
    /// `statements`), not raised, so callers can decide what a duplicate
    /// key means for them; a write-concern failure is an error.
    async fn update_statements(
        &self,
        collection: &str,
        statements: Vec<Document>,
        ordered: bool,
    ) -> StoreResult<UpdateReply> {
        // Commands of up to UPDATE_BATCH_STATEMENTS statements and
        // UPDATE_BATCH_BYTES; a statement that would take a command over
        // its bytes starts the next one.
        let mut batches: Vec<Vec<Document>> = Vec::new();
        let mut bytes = 0;
        for stmt in statements {
            let size = mongodb::bson::to_vec(&stmt).map_or(0, |v| v.len());
            match batches.last_mut() {
                Some(batch)
                    if batch.len() < UPDATE_BATCH_STATEMENTS
                        && bytes + size <= UPDATE_BATCH_BYTES =>
                {
                    batch.push(stmt);
                    bytes += size;
                }
                _ => {
                    batches.push(vec![stmt]);
                    bytes = size;
                }
            }
        }
        let mut reply = UpdateReply::default();
        let mut offset = 0;
        for batch in batches {
            let n = batch.len();
            let cmd = doc! {
                "update": collection,
                "updates": batch,
                "ordered": ordered,
                "writeConcern": self.write_concern.clone(),
            };
            let out = self.db.run_command(cmd).await.map_err(map_err)?;
            reply.matched += number(out.get("n"))
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0);
            reply.modified += number(out.get("nModified"))
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0);
            if let Ok(wce) = out.get_document("writeConcernError") {
                return Err(StoreError::Backend(format!(
                    "write concern failed on {collection}: {wce}"
                )));
            }
            if let Ok(errors) = out.get_array("writeErrors") {
                for e in errors.iter().filter_map(Bson::as_document) {
                    let index = number(e.get("index")).unwrap_or(0) as usize;
                    let code = number(e.get("code")).unwrap_or(0) as i32;
                    let msg = e.get_str("errmsg").unwrap_or_default().to_owned();
                    reply.write_errors.push((offset + index, code, msg));
                }
                if ordered && !reply.write_errors.is_empty() {
                    return Ok(reply);
                }
            }
            offset += n;
        }
        Ok(reply)
    }

    /// Upserts whose only possible failure is the race of two writers
    /// creating the same new document: the loser hits the unique index, and
    /// running its statement again updates the winner's document.
    async fn upsert_statements(
        &self,
        collection: &str,
        statements: Vec<Document>,
    ) -> StoreResult<()> {
        let reply = self
            .update_statements(collection, statements.clone(), false)
            .await?;
        if reply.write_errors.is_empty() {
            return Ok(());
        }
        if let Some((_, code, msg)) = reply.write_errors.iter().find(|e| e.1 != DUPLICATE_KEY) {
            return Err(StoreError::Backend(format!(
                "upsert into {collection} failed ({code}): {msg}"
            )));
        }
        let again: Vec<Document> = reply
            .write_errors
            .iter()
            .filter_map(|(i, _, _)| statements.get(*i).cloned())
            .collect();
        let reply = self.update_statements(collection, again, false).await?;
        match reply.write_errors.first() {
            None => Ok(()),
            Some((_, code, msg)) => Err(StoreError::Backend(format!(
                "upsert into {collection} failed ({code}): {msg}"
            ))),
        }
    }

    async fn collect_docs<T: serde::de::DeserializeOwned>(
        cursor: mongodb::Cursor<Document>,
        dates: &[&str],
    ) -> StoreResult<Vec<T>> {
        let docs: Vec<Document> = cursor.try_collect().await.map_err(map_err)?;
        docs.into_iter().map(|d| decode(d, dates)).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_checked() {
        assert!(validate_db_name("wasync").is_ok());
        assert!(validate_db_name("wasync_test-1").is_ok());
        for bad in ["", "a.b", "a/b", "a b", "a$b", &"x".repeat(64)] {
            let err = validate_db_name(bad).unwrap_err();
            assert!(err.to_string().contains("database name"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn write_concern_is_durable_unless_the_uri_says_otherwise() {
        let wc = durable_write_concern(None).unwrap();
        assert_eq!(wc.w, Some(Acknowledgment::Majority));
        assert_eq!(wc.journal, Some(true));
        let wc = durable_write_concern(Some(WriteConcern::nodes(1))).unwrap();
        assert_eq!(wc.w, Some(Acknowledgment::Nodes(1)));
        assert_eq!(wc.journal, Some(true));
        assert!(durable_write_concern(Some(WriteConcern::nodes(0))).is_err());
    }

    #[tokio::test]
    async fn a_bad_uri_is_a_clear_error() {
        let err = MongoStore::connect("http://nope", "wasync")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("invalid MONGODB_URI"), "{err}");
    }
}
