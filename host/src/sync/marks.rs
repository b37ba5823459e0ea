//! Where an incremental run starts in each chat.

use std::collections::{HashMap, HashSet};

use tokio_util::sync::CancellationToken;

use super::{Stop, SyncDeps, retry::store_retry};
use crate::domain::{Chat, MessageMark, SessionId};

/// Where an incremental run starts in each chat to walk: first the time
/// of each chat's newest stored message, for the whole list in one cheap
/// read; then the exact mark (every id at that time) only of the chats
/// whose last activity is newer, the only ones the run reads. A chat that
/// has not moved gets a mark of its time alone, which only the walk's
/// "nothing new" test looks at.
pub(super) async fn incremental_marks(
    deps: &SyncDeps,
    sid: &SessionId,
    chats: &[Chat],
    done: &HashSet<String>,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<HashMap<String, MessageMark>, Stop> {
    let ids: Vec<String> = chats
        .iter()
        .filter(|c| !done.contains(&c.id))
        .map(|c| c.id.clone())
        .collect();
    let newest = store_retry(deps, cancel, shutdown, "reading the stored marks", || {
        deps.store.newest_message_times(sid, &ids)
    })
    .await?;
    let mut unmoved = HashMap::new();
    let mut moved = Vec::new();
    for chat in chats.iter().filter(|c| !done.contains(&c.id)) {
        match (newest.get(&chat.id), chat.last_message_at) {
            (Some(&t), Some(last)) if last <= t => {
                unmoved.insert(
                    chat.id.clone(),
                    MessageMark {
                        timestamp: t,
                        ids: Vec::new(),
                    },
                );
            }
            _ => moved.push(chat.id.clone()),
        }
    }
    let mut marks = store_retry(deps, cancel, shutdown, "reading the stored marks", || {
        deps.store.message_marks(sid, &moved)
    })
    .await?;
    marks.extend(unmoved);
    Ok(marks)
}
