//! The contacts phase of a run, before the chats: the account's contacts
//! are read in one provider call and stored (idempotent on
//! `(sessionId, contactId)`), and the members of its groups are set on the
//! group chats once the chat list is stored. A resumed run does it again
//! (it is cheap and idempotent) but reports the `contacts` event only once,
//! right after `start`.

use std::collections::HashSet;

use tokio_util::sync::CancellationToken;

use super::{Stop, SyncDeps, store_retry, with_retry};
use crate::domain::{AddressBook, Chat, SessionId, SyncPhase, SyncProgress, SyncRun};

/// Reads the address book and stores its contacts.
pub(super) async fn fetch_and_store(
    deps: &SyncDeps,
    sid: &SessionId,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<AddressBook, Stop> {
    let mut book = match with_retry(deps, cancel, shutdown, || deps.client.list_contacts()).await? {
        Ok(b) => b,
        Err((_, e)) => return Err(Stop::Failed(format!("listing contacts: {e}"))),
    };
    book.normalise();
    store_retry(deps, cancel, shutdown, "storing the contacts", || {
        deps.store.upsert_contacts(sid, &book.contacts)
    })
    .await?;
    Ok(book)
}

/// Sets the members of the groups among `chats` (already stored).
pub(super) async fn store_participants(
    deps: &SyncDeps,
    sid: &SessionId,
    book: &AddressBook,
    chats: &[Chat],
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<(), Stop> {
    let listed: HashSet<&str> = chats.iter().map(|c| c.id.as_str()).collect();
    let groups: Vec<_> = book
        .groups
        .iter()
        .filter(|g| listed.contains(g.chat_id.as_str()))
        .cloned()
        .collect();
    if groups.is_empty() {
        return Ok(());
    }
    store_retry(deps, cancel, shutdown, "storing the group members", || {
        deps.store.put_participants(sid, &groups)
    })
    .await
}

/// Reports the `contacts` event: `contacts` stored, no chat yet.
pub(super) fn emit(deps: &SyncDeps, run: &SyncRun, seq: u64, contacts: u64) {
    deps.sink.progress(&SyncProgress {
        session_id: run.session_id.clone(),
        sync_id: run.sync_id.clone(),
        seq,
        n_chats: run.n_chats,
        current_chat: 0,
        chat_id: None,
        messages_synced: 0,
        total_messages_synced: run.total_messages_synced,
        phase: SyncPhase::Contacts,
        done: false,
        contacts: Some(contacts),
    });
}
