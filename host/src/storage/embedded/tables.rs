//! The tables of the embedded store and how JSON documents are encoded in
//! them (messages have a binary record of their own, [`super::record`]).

use redb::TableDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::storage::{StoreError, StoreResult};

/// `sessionId` → session record.
pub(super) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// `(sessionId, chatId)` → stored chat.
pub(super) const CHATS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("chats");
/// `(sessionId, desc(lastMessageAt), chatId)`: chats newest activity first.
pub(super) const CHATS_BY_ACTIVITY: TableDefinition<(&str, u64, &str), ()> =
    TableDefinition::new("chats_by_activity");
/// `(sessionId, chatId, desc(timestamp), messageId)` → message record
/// ([`super::record`]): a chat's messages side by side, newest first.
pub(super) const MESSAGES: TableDefinition<(&str, &str, u64, &str), &[u8]> =
    TableDefinition::new("chat_messages");
/// `(sessionId, messageId)` → `(chatId, desc(timestamp))`: where each
/// message is.
pub(super) const MESSAGE_IDS: TableDefinition<(&str, &str), (&str, u64)> =
    TableDefinition::new("message_ids");
/// The store's own facts: `layout` → the layout number ([`super::layout`]).
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// `(sessionId, messageId)` → the changes waiting for that message (JSON
/// list of `PendingChange`, one winner per field).
pub(super) const PENDING_CHANGES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("pending_changes");
/// `syncId` → run.
pub(super) const SYNC_RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("sync_runs");
/// `(sessionId, startedAt, syncId)`: a session's runs, oldest first.
pub(super) const RUNS_BY_SESSION: TableDefinition<(&str, u64, &str), ()> =
    TableDefinition::new("sync_runs_by_session");
/// `eventId` → event. Event ids are UUIDv7, so they sort by creation.
pub(super) const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
/// `eventId` of every unpublished event.
pub(super) const OUTBOX_PENDING: TableDefinition<&str, ()> = TableDefinition::new("outbox_pending");
/// `(sessionId, messageId)` → quarantined message.
pub(super) const QUARANTINE: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("quarantine");
/// `webhookId` → webhook endpoint.
pub(super) const WEBHOOKS: TableDefinition<&str, &[u8]> = TableDefinition::new("webhooks");
/// `(webhookId, eventId)` → delivery.
pub(super) const DELIVERIES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("webhook_deliveries");
/// `(webhookId, status, createdAt, eventId)`: an endpoint's deliveries by
/// status, oldest event first (the pending window, the dead list, pruning).
pub(super) const DELIVERIES_BY_STATUS: TableDefinition<(&str, &str, u64, &str), ()> =
    TableDefinition::new("webhook_deliveries_by_status");

/// Default page cache of the store file (`WASYNC_STORE_CACHE_MIB`). Reads
/// hit recent pages and the kernel's page cache serves the rest; a sync
/// writes each chat's pages once, so a small cache costs it nothing
/// measurable (P2 ran at the same rate with 2, 4, 8 and 16 MiB) and keeps
/// the host's memory flat with the account (P5). The cache's pages are
/// allocated one by one among the sync's short-lived buffers, so each MiB
/// of cache kept the allocator holding about 3 MiB at the peak of a
/// 1M-message sync: 2 MiB rather than 4 took ~6 MiB off it.
pub const CACHE_BYTES: usize = 2 << 20;

/// Maps an `i64` onto a `u64` that sorts the same way.
pub(super) fn ordered(t: i64) -> u64 {
    (t as u64) ^ (1 << 63)
}

/// Sort key that puts newer first; `None` (no activity) sorts last.
pub(super) fn desc(t: Option<i64>) -> u64 {
    match t {
        Some(t) => !ordered(t),
        None => u64::MAX,
    }
}

pub(super) trait DbResult<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T, E: Into<redb::Error>> DbResult<T> for Result<T, E> {
    fn db(self) -> StoreResult<T> {
        self.map_err(|e| {
            let e: redb::Error = e.into();
            match e {
                redb::Error::Corrupted(m) => StoreError::Corrupt(m),
                redb::Error::Io(io) => StoreError::Unavailable(io.to_string()),
                other => StoreError::Backend(other.to_string()),
            }
        })
    }
}

pub(super) fn enc<T: Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Backend(format!("encode: {e}")))
}

pub(super) fn dec<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("decode: {e}")))
}

/// Up to `limit` JSON documents of session `sid` in a table keyed
/// `(sessionId, id)`, by id, strictly after `after`: the pages keyed by an
/// id (contacts, quarantine).
pub(super) fn page_after<T: DeserializeOwned>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<(&str, &str), &[u8]>,
    sid: &str,
    limit: u32,
    after: Option<&str>,
) -> StoreResult<Vec<T>> {
    use std::ops::Bound;
    let table = txn.open_table(table).db()?;
    let start = match after {
        Some(a) => Bound::Excluded((sid, a)),
        None => Bound::Included((sid, "")),
    };
    let mut out = Vec::new();
    for row in table
        .range::<(&str, &str)>((start, Bound::Unbounded))
        .db()?
    {
        if out.len() as u32 >= limit {
            break;
        }
        let (k, v) = row.db()?;
        if k.value().0 != sid {
            break;
        }
        out.push(dec(v.value())?);
    }
    Ok(out)
}
