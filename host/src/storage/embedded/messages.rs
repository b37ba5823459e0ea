//! Messages in the embedded store (layout 2): clustered by chat and time,
//! with a small id index.
//!
//! - `chat_messages`: `(sessionId, chatId, desc(timestamp), messageId)` →
//!   the message's binary record ([`super::record`]). A chat's messages
//!   sit side by side, newest first, so a sync's group of chats writes a
//!   few runs of neighbouring leaves (not one leaf per message), and a
//!   listing or a mark is one range read with no second lookup.
//! - `message_ids`: `(sessionId, messageId)` → `(chatId, desc(timestamp))`,
//!   where each message lives: what makes a message id unique per session,
//!   and how a change or `get_message` finds its message.
//!
//! A write inserts the id first: `insert` hands back the place the message
//! had, so a new message costs two inserts and no read, and only a message
//! stored before is read (and rewritten only when it changed).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::{Bound, Range};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::record;
use super::runs::insert_rows;
use super::tables::*;
use super::writes::bump_chat;
use super::{EmbeddedStore, Lane};
use crate::domain::{Message, MessageMark, PendingChange, SessionId, StoredMessage, SyncRun};
use crate::storage::{ChatCommit, MessageCursor, StoreResult, WriteStats};

/// `chat_messages` opened for writing.
pub(super) type Docs<'t> =
    redb::Table<'t, (&'static str, &'static str, u64, &'static str), &'static [u8]>;
/// `message_ids` opened for writing.
pub(super) type Ids<'t> = redb::Table<'t, (&'static str, &'static str), (&'static str, u64)>;

/// The time a `desc` key holds (the inverse of [`desc`] for `Some`).
pub(super) fn time_of(key: u64) -> i64 {
    ((!key) ^ (1 << 63)) as i64
}

/// Writes a message known not to be stored (the migration's moves).
pub(super) fn insert_new(
    ids: &mut Ids<'_>,
    docs: &mut Docs<'_>,
    sid: &str,
    m: &Message,
    buf: &mut Vec<u8>,
) -> StoreResult<()> {
    let t = desc(Some(m.timestamp));
    buf.clear();
    record::encode_into(m, buf)?;
    ids.insert((sid, m.id.as_str()), (m.chat_id.as_str(), t))
        .db()?;
    docs.insert((sid, m.chat_id.as_str(), t, m.id.as_str()), buf.as_slice())
        .db()?;
    Ok(())
}

/// The stored message `mid` of session `sid`, read through the id index.
pub(super) fn read_message(
    ids: &impl ReadableTable<(&'static str, &'static str), (&'static str, u64)>,
    docs: &impl ReadableTable<(&'static str, &'static str, u64, &'static str), &'static [u8]>,
    sid: &str,
    mid: &str,
) -> StoreResult<Option<Message>> {
    let Some(place) = ids.get((sid, mid)).db()? else {
        return Ok(None);
    };
    let (chat, t) = place.value();
    match docs.get((sid, chat, t, mid)).db()? {
        Some(g) => record::decode(chat, time_of(t), mid, g.value()).map(Some),
        None => Err(crate::storage::StoreError::Corrupt(format!(
            "message {mid}: the id index points at {chat}/{t}, where nothing is stored"
        ))),
    }
}

/// Writes `messages` of one session inside an open transaction; returns
/// what changed and the messages inserted per chat (for `messageCount`).
/// Unchanged messages cost a read and no write. A message stored before
/// keeps what changed about it after it was written
/// ([`Message::merge_stored`]); pending changes of a message are applied to
/// it and dropped.
///
/// The ids go into `message_ids` in id order and the new messages into
/// `chat_messages` in key order (chat, newest first, id), each through
/// [`insert_rows`]: a chat's messages fall into a gap or two of each
/// table, so a new chat costs a descent per gap, not two per message. A
/// call that names one message id twice is written in the caller's order
/// instead, one message at a time, where the last copy wins as it always
/// did.
pub(super) fn write_messages(
    txn: &redb::WriteTransaction,
    sid: &str,
    messages: &[Message],
) -> StoreResult<(WriteStats, Vec<(String, u64)>)> {
    let mut stats = WriteStats::default();
    let mut inserted_per_chat: Vec<(String, u64)> = Vec::new();
    let mut ids = txn.open_table(MESSAGE_IDS).db()?;
    let mut docs = txn.open_table(MESSAGES).db()?;
    let mut pending = txn.open_table(PENDING_CHANGES).db()?;
    // An empty table (the usual case) is not asked once per message.
    let any_pending = !pending.is_empty().db()?;
    let (order, distinct) = key_order(messages);
    // Each message as it is written (its pending changes applied), its
    // time key and its record (a range of `records`), in `order`.
    let mut rows: Vec<(Cow<'_, Message>, u64, Range<usize>)> = Vec::with_capacity(order.len());
    let mut records = Vec::with_capacity(order.len() * 128);
    for i in order {
        let mut m = Cow::Borrowed(&messages[i]);
        if any_pending {
            let waiting = pending
                .remove((sid, m.id.as_str()))
                .db()?
                .map(|g| g.value().to_vec());
            if let Some(waiting) = waiting {
                let waiting: Vec<PendingChange> = dec(&waiting)?;
                let changed = m.to_mut();
                for p in &waiting {
                    if changed.apply_change(&p.update.change, p.keep_revoked_bodies) {
                        stats.changes_applied += 1;
                    }
                }
            }
        }
        let start = records.len();
        record::encode_into(&m, &mut records)?;
        let t = desc(Some(m.timestamp));
        rows.push((m, t, start..records.len()));
    }
    let mut scratch = Vec::new();
    let mut count_new = |chat: &str| match inserted_per_chat.last_mut() {
        Some((c, n)) if c == chat => *n += 1,
        _ => inserted_per_chat.push((chat.to_owned(), 1)),
    };
    if !distinct {
        for (m, t, rec) in &rows {
            let rec = &records[rec.clone()];
            let before = ids
                .insert((sid, m.id.as_str()), (m.chat_id.as_str(), *t))
                .db()?
                .map(|g| {
                    let (c, t) = g.value();
                    (c.to_owned(), t)
                });
            match before {
                None => {
                    docs.insert((sid, m.chat_id.as_str(), *t, m.id.as_str()), rec)
                        .db()?;
                    stats.inserted += 1;
                    count_new(&m.chat_id);
                }
                Some(place) => {
                    rewrite(&mut docs, sid, m, *t, rec, place, &mut stats, &mut scratch)?
                }
            }
        }
        return Ok((stats, inserted_per_chat));
    }
    // Ids in id order; where a message was before, by row.
    let mut by_id: Vec<usize> = (0..rows.len()).collect();
    by_id.sort_unstable_by(|&a, &b| rows[a].0.id.cmp(&rows[b].0.id));
    let id_rows: Vec<_> = by_id
        .iter()
        .map(|&r| {
            let (m, t, _) = &rows[r];
            ((sid, m.id.as_str()), (m.chat_id.as_str(), *t))
        })
        .collect();
    let mut before: Vec<Option<(String, u64)>> = vec![None; rows.len()];
    insert_rows(&mut ids, &id_rows, |i, (c, t)| {
        before[by_id[i]] = Some((c.to_owned(), t));
        Ok(())
    })?;
    // The new messages in key order (a record found under a new message's
    // key, with no id pointing at it, is replaced, as `insert` did).
    let new_rows: Vec<_> = rows
        .iter()
        .zip(&before)
        .filter(|(_, b)| b.is_none())
        .map(|((m, t, rec), _)| {
            (
                (sid, m.chat_id.as_str(), *t, m.id.as_str()),
                &records[rec.clone()],
            )
        })
        .collect();
    insert_rows(&mut docs, &new_rows, |_, _| Ok(()))?;
    for ((_, chat, _, _), _) in &new_rows {
        stats.inserted += 1;
        count_new(chat);
    }
    for ((m, t, rec), place) in rows.iter().zip(before) {
        if let Some(place) = place {
            rewrite(
                &mut docs,
                sid,
                m,
                *t,
                &records[rec.clone()],
                place,
                &mut stats,
                &mut scratch,
            )?;
        }
    }
    Ok((stats, inserted_per_chat))
}

/// Writes message `m` (time key `t`, record `rec`) that was stored before
/// at `(old_chat, old_t)`: unchanged, it is left alone; changed since it
/// was written, the newer of each field is kept.
#[allow(clippy::too_many_arguments)]
fn rewrite(
    docs: &mut Docs<'_>,
    sid: &str,
    m: &Message,
    t: u64,
    rec: &[u8],
    (old_chat, old_t): (String, u64),
    stats: &mut WriteStats,
    scratch: &mut Vec<u8>,
) -> StoreResult<()> {
    let key = (sid, m.chat_id.as_str(), t, m.id.as_str());
    let moved = old_chat != m.chat_id || old_t != t;
    let old_key = (sid, old_chat.as_str(), old_t, m.id.as_str());
    let old_bytes = if moved {
        docs.remove(old_key).db()?.map(|g| g.value().to_vec())
    } else {
        docs.get(old_key).db()?.map(|g| g.value().to_vec())
    };
    let Some(old_bytes) = old_bytes else {
        return Err(crate::storage::StoreError::Corrupt(format!(
            "message {}: the id index points at {old_chat}/{old_t}, where nothing is stored",
            m.id
        )));
    };
    if !moved && old_bytes == rec {
        stats.unchanged += 1;
        return Ok(());
    }
    let old = record::decode(&old_chat, time_of(old_t), &m.id, &old_bytes)?;
    let mut rec = rec;
    if !old.changes.is_empty() {
        // Written before and changed since: the newer of each. (A merge
        // keeps the message's chat and time, so a merged message equal to
        // the stored one was not moved.)
        let mut merged = m.clone();
        merged.merge_stored(&old);
        if merged == old {
            stats.unchanged += 1;
            return Ok(());
        }
        scratch.clear();
        record::encode_into(&merged, scratch)?;
        rec = scratch;
    }
    docs.insert(key, rec).db()?;
    stats.updated += 1;
    Ok(())
}

/// The order to write `messages` in: by key, unless an id comes twice
/// (then as given, so the last copy wins); and whether the ids are
/// distinct.
fn key_order(messages: &[Message]) -> (Vec<usize>, bool) {
    let mut order: Vec<usize> = (0..messages.len()).collect();
    if messages.len() < 2 {
        return (order, true);
    }
    let mut seen = std::collections::HashSet::with_capacity(messages.len());
    if !messages.iter().all(|m| seen.insert(m.id.as_str())) {
        return (order, false);
    }
    order.sort_unstable_by(|&a, &b| {
        let (a, b) = (&messages[a], &messages[b]);
        (a.chat_id.as_str(), desc(Some(a.timestamp)), a.id.as_str()).cmp(&(
            b.chat_id.as_str(),
            desc(Some(b.timestamp)),
            b.id.as_str(),
        ))
    });
    (order, true)
}

/// The first key of chat `c` of session `s` and the first key after it.
fn chat_range<'a>(
    s: &'a str,
    c: &'a str,
    next: &'a str,
) -> std::ops::Range<(&'a str, &'a str, u64, &'a str)> {
    (s, c, 0u64, "")..(s, next, 0u64, "")
}

impl EmbeddedStore {
    /// `Store::commit_chats`: every chat's messages, quarantine, counters
    /// and the run in one write transaction (one fsync).
    pub(super) async fn commit(
        &self,
        id: &SessionId,
        chats: &[ChatCommit],
        run: &SyncRun,
    ) -> StoreResult<Vec<WriteStats>> {
        let sid = id.to_string();
        let chats = chats.to_vec();
        let run = run.clone();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            let mut all = Vec::with_capacity(chats.len());
            for c in &chats {
                let (stats, _) = write_messages(&txn, &sid, &c.messages)?;
                bump_chat(&txn, &sid, &c.chat_id, stats.inserted, Some(c.synced_at))?;
                if !c.quarantined.is_empty() {
                    let mut q = txn.open_table(QUARANTINE).db()?;
                    for item in &c.quarantined {
                        q.insert(
                            (sid.as_str(), item.message.id.as_str()),
                            enc(item)?.as_slice(),
                        )
                        .db()?;
                    }
                }
                all.push(stats);
            }
            super::writes::put_run(&txn, &run)?;
            txn.commit().db()?;
            Ok(all)
        })
        .await
    }

    /// `Store::put_messages`: live messages, counted into their chats.
    pub(super) async fn put_live(
        &self,
        id: &SessionId,
        messages: &[Message],
    ) -> StoreResult<WriteStats> {
        let sid = id.to_string();
        let messages = messages.to_vec();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            let (stats, per_chat) = write_messages(&txn, &sid, &messages)?;
            for (chat_id, n) in per_chat {
                bump_chat(&txn, &sid, &chat_id, n, None)?;
            }
            txn.commit().db()?;
            Ok(stats)
        })
        .await
    }

    /// `Store::list_messages`: one range read of the chat's records.
    pub(super) async fn list(
        &self,
        id: &SessionId,
        chat_id: &str,
        limit: u32,
        before: Option<&MessageCursor>,
    ) -> StoreResult<Vec<StoredMessage>> {
        let sid = id.to_string();
        let chat_id = chat_id.to_owned();
        let before = before.cloned();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let docs = txn.open_table(MESSAGES).db()?;
            let (s, c) = (sid.as_str(), chat_id.as_str());
            let next = format!("{c}\0");
            // Keys sort newest first, ties by message id: the listing
            // order, so a page resumes right after its cursor's key.
            let start = match &before {
                Some(MessageCursor {
                    timestamp,
                    message_id: Some(mid),
                }) => Bound::Excluded((s, c, desc(Some(*timestamp)), mid.as_str())),
                Some(MessageCursor {
                    timestamp,
                    message_id: None,
                }) => Bound::Included((s, c, desc(Some(*timestamp)).saturating_add(1), "")),
                None => Bound::Included((s, c, 0, "")),
            };
            let end = Bound::Excluded((s, next.as_str(), 0u64, ""));
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            for row in docs.range::<(&str, &str, u64, &str)>((start, end)).db()? {
                let (k, v) = row.db()?;
                let (_, _, t, mid) = k.value();
                out.push(StoredMessage {
                    session_id: sid.clone(),
                    message: record::decode(c, time_of(t), mid, v.value())?,
                });
                if out.len() as u32 >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    /// `Store::message_marks`: the first keys of each chat, no record
    /// decoded.
    pub(super) async fn marks(
        &self,
        id: &SessionId,
        chat_ids: &[String],
    ) -> StoreResult<HashMap<String, MessageMark>> {
        let sid = id.to_string();
        let chat_ids = chat_ids.to_vec();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let docs = txn.open_table(MESSAGES).db()?;
            let s = sid.as_str();
            let mut out = HashMap::new();
            for c in &chat_ids {
                let next = format!("{c}\0");
                let mut mark: Option<(u64, Vec<String>)> = None;
                for row in docs.range(chat_range(s, c, &next)).db()? {
                    let (k, _) = row.db()?;
                    let (_, _, t, mid) = k.value();
                    match &mut mark {
                        None => mark = Some((t, vec![mid.to_owned()])),
                        Some((first, ids)) if *first == t => ids.push(mid.to_owned()),
                        Some(_) => break,
                    }
                }
                if let Some((t, ids)) = mark {
                    out.insert(
                        c.clone(),
                        MessageMark {
                            timestamp: time_of(t),
                            ids,
                        },
                    );
                }
            }
            Ok(out)
        })
        .await
    }

    /// `Store::oldest_mark`: the chat's last keys, read backwards.
    pub(super) async fn oldest_of(
        &self,
        id: &SessionId,
        chat_id: &str,
    ) -> StoreResult<Option<MessageMark>> {
        let sid = id.to_string();
        let chat = chat_id.to_owned();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let docs = txn.open_table(MESSAGES).db()?;
            let (s, c) = (sid.as_str(), chat.as_str());
            let next = format!("{c}\0");
            let mut mark: Option<(u64, Vec<String>)> = None;
            for row in docs.range(chat_range(s, c, &next)).db()?.rev() {
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
                    timestamp: time_of(t),
                    ids,
                }
            }))
        })
        .await
    }

    /// `Store::count_messages`: keys counted in the chat's range, or in the
    /// session's id index.
    pub(super) async fn count(&self, id: &SessionId, chat_id: Option<&str>) -> StoreResult<u64> {
        let sid = id.to_string();
        let chat_id = chat_id.map(str::to_owned);
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let s = sid.as_str();
            let above = format!("{s}\0");
            let mut n = 0u64;
            match chat_id {
                Some(c) => {
                    let docs = txn.open_table(MESSAGES).db()?;
                    let next = format!("{c}\0");
                    for row in docs.range(chat_range(s, &c, &next)).db()? {
                        row.db()?;
                        n += 1;
                    }
                }
                None => {
                    let ids = txn.open_table(MESSAGE_IDS).db()?;
                    for row in ids.range((s, "")..(above.as_str(), "")).db()? {
                        row.db()?;
                        n += 1;
                    }
                }
            }
            Ok(n)
        })
        .await
    }

    /// `Store::get_message`.
    pub(super) async fn message(
        &self,
        id: &SessionId,
        message_id: &str,
    ) -> StoreResult<Option<StoredMessage>> {
        let sid = id.to_string();
        let message_id = message_id.to_owned();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let ids = txn.open_table(MESSAGE_IDS).db()?;
            let docs = txn.open_table(MESSAGES).db()?;
            Ok(
                read_message(&ids, &docs, &sid, &message_id)?.map(|message| StoredMessage {
                    session_id: sid.clone(),
                    message,
                }),
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Store;
    use crate::storage::contract::msg;

    /// One call mixing new messages (in two chats, so two runs in each
    /// table) with stored ones (unchanged, changed, moved in time, moved to
    /// another chat), in no particular order, lands as one write per
    /// message would have: the right stats, every message once, where its
    /// id says.
    #[tokio::test]
    async fn a_mixed_write_lands_each_message_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("wasync.redb")).unwrap();
        let s = SessionId::parse("mixed").unwrap();
        let first: Vec<Message> = (0..10).map(|n| msg("a@c.us", n)).collect();
        store.put_messages(&s, &first).await.unwrap();

        let mut body = first[5].clone();
        body.body = Some("edited".into());
        let mut later = first[7].clone();
        later.timestamp += 60_000;
        let mut elsewhere = first[8].clone();
        elsewhere.chat_id = "b@c.us".into();
        let mut call = vec![first[3].clone(), body, later.clone(), elsewhere];
        call.extend((10..15).map(|n| msg("a@c.us", n)));
        call.extend((0..5).map(|n| msg("b@c.us", n)));
        call.reverse();
        call.swap(1, 8);
        let stats = store.put_messages(&s, &call).await.unwrap();
        assert_eq!((stats.inserted, stats.updated, stats.unchanged), (10, 3, 1));

        assert_eq!(store.count_messages(&s, None).await.unwrap(), 20);
        let listed = |chat: &'static str| {
            let store = &store;
            let s = &s;
            async move {
                store
                    .list_messages(s, chat, 100, None)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|m| m.message)
                    .collect::<Vec<_>>()
            }
        };
        let a = listed("a@c.us").await;
        let b = listed("b@c.us").await;
        assert_eq!((a.len(), b.len()), (14, 6));
        for chat in [&a, &b] {
            assert!(chat.windows(2).all(|w| {
                (desc(Some(w[0].timestamp)), &w[0].id) < (desc(Some(w[1].timestamp)), &w[1].id)
            }));
        }
        assert_eq!(a[0].id, later.id);
        assert_eq!(a[0].timestamp, later.timestamp);
        assert!(b.iter().any(|m| m.id == first[8].id));
        for m in a.iter().chain(&b) {
            let stored = store.get_message(&s, &m.id).await.unwrap().unwrap();
            assert_eq!(&stored.message, m);
        }
        let edited = store.get_message(&s, &first[5].id).await.unwrap().unwrap();
        assert_eq!(edited.message.body.as_deref(), Some("edited"));
    }
}
