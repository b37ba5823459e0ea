//! The contacts phase of a run, before the chats: the account's contacts
//! are read in one provider call and stored (idempotent on
//! `(sessionId, contactId)`), and the members of its groups are set on the
//! group chats once the chat list is stored. A resumed run does it again
//! (it is cheap and idempotent) but reports the `contacts` event only once,
//! right after `start`.

use std::collections::HashSet;

use tokio_util::sync::CancellationToken;

use super::{Stop, SyncDeps, store_retry, with_retry};
use crate::domain::{
    AddressBook, Chat, GroupParticipants, SessionId, SyncPhase, SyncProgress, SyncRun,
};

/// Reads the address book and stores its contacts. Returns how many it
/// stored and the book's groups: the contacts themselves are dropped here,
/// before the chat list is read (10,000 of them are ~1 MB).
pub(super) async fn fetch_and_store(
    deps: &SyncDeps,
    sid: &SessionId,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<(u64, Vec<GroupParticipants>), Stop> {
    let mut book = match with_retry(deps, cancel, shutdown, || deps.client.list_contacts()).await? {
        Ok(b) => b,
        Err((_, e)) => return Err(Stop::Failed(format!("listing contacts: {e}"))),
    };
    book.normalise();
    store_retry(deps, cancel, shutdown, "storing the contacts", || {
        deps.store.upsert_contacts(sid, &book.contacts)
    })
    .await?;
    let AddressBook { contacts, groups } = book;
    Ok((contacts.len() as u64, groups))
}

/// Sets the members of the groups among `chats` (already stored); the
/// groups not in the list are dropped in place, not copied.
pub(super) async fn store_participants(
    deps: &SyncDeps,
    sid: &SessionId,
    mut groups: Vec<GroupParticipants>,
    chats: &[Chat],
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<(), Stop> {
    if groups.is_empty() {
        return Ok(());
    }
    let listed: HashSet<&str> = chats.iter().map(|c| c.id.as_str()).collect();
    groups.retain(|g| listed.contains(g.chat_id.as_str()));
    drop(listed);
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
