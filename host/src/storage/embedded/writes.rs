//! Writes shared by several store methods, each inside an open write
//! transaction, so a method commits them together with its own.

use redb::ReadableTable;

use super::tables::*;
use crate::domain::{OutboxEvent, StoredChat, SyncRun};
use crate::storage::{SessionRecord, StoreError, StoreResult};

/// Adds `inserted` to a chat's `messageCount` (and sets `syncedAt`), if the
/// chat is known.
pub(super) fn bump_chat(
    txn: &redb::WriteTransaction,
    sid: &str,
    chat_id: &str,
    inserted: u64,
    synced_at: Option<i64>,
) -> StoreResult<()> {
    let mut chats = txn.open_table(CHATS).db()?;
    let old = chats.get((sid, chat_id)).db()?.map(|g| g.value().to_vec());
    if let Some(old) = old {
        let mut chat: StoredChat = dec(&old)?;
        chat.message_count += inserted;
        if synced_at.is_some() {
            chat.synced_at = synced_at;
        }
        chats.insert((sid, chat_id), enc(&chat)?.as_slice()).db()?;
    }
    Ok(())
}

/// The epoch of the document stored under `key`, if any.
fn stored_epoch<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
    epoch: impl Fn(T) -> u64,
) -> StoreResult<Option<u64>> {
    table
        .get(key)
        .db()?
        .map(|g| dec::<T>(g.value()))
        .transpose()
        .map(|d| d.map(epoch))
}

/// Refuses a write whose fencing epoch is older than the stored one's.
pub(super) fn check_epoch(what: &str, stored: Option<u64>, writer: u64) -> StoreResult<()> {
    match stored {
        Some(stored) if stored > writer => Err(StoreError::Fenced(format!(
            "{what} was written with epoch {stored}; this writer holds epoch {writer}"
        ))),
        _ => Ok(()),
    }
}

/// Writes a run unless a newer epoch wrote it (the store is one file: the
/// check and the write share the transaction).
pub(super) fn put_run(txn: &redb::WriteTransaction, run: &SyncRun) -> StoreResult<()> {
    let mut runs = txn.open_table(SYNC_RUNS).db()?;
    let stored = stored_epoch(&runs, run.sync_id.as_str(), |r: SyncRun| r.epoch)?;
    check_epoch(&format!("run {}", run.sync_id), stored, run.epoch)?;
    runs.insert(run.sync_id.as_str(), enc(run)?.as_slice())
        .db()?;
    let mut by_session = txn.open_table(RUNS_BY_SESSION).db()?;
    by_session
        .insert(
            (
                run.session_id.as_str(),
                ordered(run.started_at),
                run.sync_id.as_str(),
            ),
            (),
        )
        .db()?;
    Ok(())
}

/// An outbox event encoded for [`put_event`], before the write
/// transaction: the transaction's closure takes the bytes, not a copy of
/// the event (whose `data` may be large).
pub(super) struct EncodedEvent {
    event_id: String,
    pending: bool,
    bytes: Vec<u8>,
}

impl EncodedEvent {
    pub(super) fn new(ev: &OutboxEvent) -> StoreResult<Self> {
        Ok(Self {
            event_id: ev.event_id.clone(),
            pending: ev.published_at.is_none(),
            bytes: enc(ev)?,
        })
    }
}

/// Queues an event unless one with its id is already there.
pub(super) fn put_event(txn: &redb::WriteTransaction, ev: &EncodedEvent) -> StoreResult<()> {
    let mut outbox = txn.open_table(OUTBOX).db()?;
    if outbox.get(ev.event_id.as_str()).db()?.is_some() {
        return Ok(());
    }
    outbox
        .insert(ev.event_id.as_str(), ev.bytes.as_slice())
        .db()?;
    if ev.pending {
        let mut pending = txn.open_table(OUTBOX_PENDING).db()?;
        pending.insert(ev.event_id.as_str(), ()).db()?;
    }
    Ok(())
}

/// Writes a session record unless a newer epoch wrote it.
pub(super) fn put_session(txn: &redb::WriteTransaction, rec: &SessionRecord) -> StoreResult<()> {
    let mut sessions = txn.open_table(SESSIONS).db()?;
    let stored = stored_epoch(&sessions, rec.session_id.as_str(), |r: SessionRecord| {
        r.epoch
    })?;
    check_epoch(&format!("session {}", rec.session_id), stored, rec.epoch)?;
    sessions
        .insert(rec.session_id.as_str(), enc(rec)?.as_slice())
        .db()?;
    Ok(())
}
