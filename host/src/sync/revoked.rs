//! A message a sync finds deleted for everyone.
//!
//! WhatsApp Web shows a revoked message without its body, so the copy a
//! sync fetches has none. Written as it is, it would drop the body the
//! store kept, which is right unless the session keeps revoked bodies
//! (`keepRevokedBodies`): then the body stored for the message (as its
//! plugins left it) goes into the copy before it is written, the same
//! outcome as a revoke that arrives live. Revoked messages are few, so
//! each is one read by id.

use tokio_util::sync::CancellationToken;

use super::{Stop, SyncDeps, store_retry};
use crate::domain::{Message, SessionId};

/// Gives every revoked message of `messages` without a body the body
/// stored for it, if any.
pub(super) async fn keep_stored_bodies(
    deps: &SyncDeps,
    sid: &SessionId,
    messages: &mut [Message],
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<(), Stop> {
    for m in messages
        .iter_mut()
        .filter(|m| m.changes.revoked && m.body.is_none())
    {
        let id = m.id.clone();
        let stored = store_retry(deps, cancel, shutdown, "reading a revoked message", || {
            deps.store.get_message(sid, &id)
        })
        .await?;
        if let Some(stored) = stored
            && stored.message.chat_id == m.chat_id
            && stored.message.body.is_some()
        {
            m.body = stored.message.body;
        }
    }
    Ok(())
}
