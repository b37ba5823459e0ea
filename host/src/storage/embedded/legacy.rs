//! The store's first layout (layout 1), kept only to migrate from it.
//!
//! Layout 1 kept each message as a JSON document (the API's camelCase
//! shape) under `(sessionId, messageId)` in `messages`, and its place in
//! its chat as a key-only index `(sessionId, chatId, desc(timestamp),
//! messageId)` in `messages_by_chat`. A sync paid two B-tree inserts of
//! which the larger one landed at a random place (message ids do not sort
//! by chat or time), plus the JSON encoding: P2's 59k msgs/s. Every other
//! table kept its shape in layout 2.

use redb::TableDefinition;

/// `(sessionId, messageId)` → message (JSON).
pub(super) const MESSAGES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("messages");
/// `(sessionId, chatId, desc(timestamp), messageId)`: a chat's messages
/// newest first.
pub(super) const MESSAGES_BY_CHAT: TableDefinition<(&str, &str, u64, &str), ()> =
    TableDefinition::new("messages_by_chat");

/// Writes `m` of session `sid` the way layout 1 did, for tests of the
/// migration that need more messages than the checked-in fixture holds.
#[cfg(test)]
pub(super) fn put(
    txn: &redb::WriteTransaction,
    sid: &str,
    m: &crate::domain::Message,
) -> crate::storage::StoreResult<()> {
    use super::tables::{DbResult, desc, enc};
    txn.open_table(MESSAGES)
        .db()?
        .insert((sid, m.id.as_str()), enc(m)?.as_slice())
        .db()?;
    txn.open_table(MESSAGES_BY_CHAT)
        .db()?
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
    Ok(())
}
