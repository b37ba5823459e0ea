//! Writes shared by several store methods, each inside an open write
//! transaction, so a method commits them together with its own.

use redb::{ReadableTable, ReadableTableMetadata};

use super::tables::*;
use crate::domain::{Message, OutboxEvent, PendingChange, StoredChat, SyncRun};
use crate::storage::{SessionRecord, StoreError, StoreResult, WriteStats};

/// Writes `messages` of one session inside an open transaction; returns
/// what changed. Unchanged messages cost one read and no write. A message
/// stored before keeps what changed about it after it was written
/// ([`Message::merge_stored`]); pending changes of a message are applied to
/// it and dropped.
pub(super) fn write_messages(
    txn: &redb::WriteTransaction,
    sid: &str,
    messages: &[Message],
) -> StoreResult<(WriteStats, Vec<(String, u64)>)> {
    let mut stats = WriteStats::default();
    // Inserted messages per chat, to keep `messageCount` exact.
    let mut inserted_per_chat: Vec<(String, u64)> = Vec::new();
    let mut table = txn.open_table(MESSAGES).db()?;
    let mut by_chat = txn.open_table(MESSAGES_BY_CHAT).db()?;
    let mut pending = txn.open_table(PENDING_CHANGES).db()?;
    // An empty table (the usual case) is not asked once per message.
    let any_pending = !pending.is_empty().db()?;
    for m in messages {
        let mut owned: Option<Message> = None;
        if any_pending {
            let waiting = pending
                .remove((sid, m.id.as_str()))
                .db()?
                .map(|g| g.value().to_vec());
            if let Some(waiting) = waiting {
                let waiting: Vec<PendingChange> = dec(&waiting)?;
                let mut changed = m.clone();
                for p in &waiting {
                    if changed.apply_change(&p.update.change, p.keep_revoked_bodies) {
                        stats.changes_applied += 1;
                    }
                }
                owned = Some(changed);
            }
        }
        let m = owned.as_ref().unwrap_or(m);
        let bytes = enc(m)?;
        // One B-tree descent: `insert` hands back what it replaced.
        let old = table
            .insert((sid, m.id.as_str()), bytes.as_slice())
            .db()?
            .map(|g| g.value().to_vec());
        match old {
            Some(old) if old == bytes => stats.unchanged += 1,
            Some(old) => {
                let old: Message = dec(&old)?;
                if !old.changes.is_empty() {
                    // Written before and changed since: the newer of each.
                    let mut merged = m.clone();
                    merged.merge_stored(&old);
                    let merged_bytes = enc(&merged)?;
                    table
                        .insert((sid, m.id.as_str()), merged_bytes.as_slice())
                        .db()?;
                    if merged == old {
                        stats.unchanged += 1;
                        continue;
                    }
                }
                if old.chat_id != m.chat_id || old.timestamp != m.timestamp {
                    by_chat
                        .remove((
                            sid,
                            old.chat_id.as_str(),
                            desc(Some(old.timestamp)),
                            old.id.as_str(),
                        ))
                        .db()?;
                    by_chat
                        .insert(
                            (
                                sid,
                                m.chat_id.as_str(),
                                desc(Some(m.timestamp)),
                                m.id.as_str(),
                            ),
                            (),
                        )
                        .db()?;
                }
                stats.updated += 1;
            }
            None => {
                by_chat
                    .insert(
                        (
                            sid,
                            m.chat_id.as_str(),
                            desc(Some(m.timestamp)),
                            m.id.as_str(),
                        ),
                        (),
                    )
                    .db()?;
                stats.inserted += 1;
                match inserted_per_chat.last_mut() {
                    Some((c, n)) if *c == m.chat_id => *n += 1,
                    _ => inserted_per_chat.push((m.chat_id.clone(), 1)),
                }
            }
        }
    }
    Ok((stats, inserted_per_chat))
}

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

/// Queues an event unless one with its id is already there.
pub(super) fn put_event(txn: &redb::WriteTransaction, ev: &OutboxEvent) -> StoreResult<()> {
    let mut outbox = txn.open_table(OUTBOX).db()?;
    if outbox.get(ev.event_id.as_str()).db()?.is_some() {
        return Ok(());
    }
    outbox
        .insert(ev.event_id.as_str(), enc(ev)?.as_slice())
        .db()?;
    if ev.published_at.is_none() {
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
