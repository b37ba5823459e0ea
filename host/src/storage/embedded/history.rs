//! The read a deepen starts from: a chat's oldest stored message.

use redb::ReadableDatabase;

use super::tables::*;
use super::{EmbeddedStore, Lane};
use crate::domain::{MessageMark, SessionId};
use crate::storage::StoreResult;

impl EmbeddedStore {
    /// The chat's oldest stored message with every id stored at its time:
    /// the last keys of the chat in `messages_by_chat` (newest first), read
    /// backwards, keys only.
    pub(super) async fn oldest_of(
        &self,
        id: &SessionId,
        chat_id: &str,
    ) -> StoreResult<Option<MessageMark>> {
        let sid = id.to_string();
        let chat = chat_id.to_owned();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let by_chat = txn.open_table(MESSAGES_BY_CHAT).db()?;
            let (s, c) = (sid.as_str(), chat.as_str());
            // The smallest chat id after `c` bounds the chat's keys.
            let next = format!("{c}\0");
            let mut mark: Option<(u64, Vec<String>)> = None;
            for row in by_chat
                .range((s, c, 0u64, "")..(s, next.as_str(), 0u64, ""))
                .db()?
                .rev()
            {
                let (k, _) = row.db()?;
                let (_, _, t, mid) = k.value();
                match &mut mark {
                    None => mark = Some((t, vec![mid.to_owned()])),
                    Some((last, ids)) if *last == t => ids.push(mid.to_owned()),
                    Some(_) => break,
                }
            }
            Ok(mark.map(|(t, mut ids)| {
                ids.sort();
                MessageMark {
                    timestamp: ((!t) ^ (1 << 63)) as i64,
                    ids,
                }
            }))
        })
        .await
    }
}
