//! Changes after the sync on MongoDB: edits, revokes, acks and reactions
//! applied to stored message documents, and the changes waiting for their
//! message in `pending_changes`.
//!
//! A change is a read-modify-write of one message (the newest value per
//! field wins, decided in [`crate::domain::Message::apply_change`]), and so
//! is a re-sync of a message that changed since it was written. Without a
//! transaction the two could overwrite each other (a sync reads, a change
//! lands, the sync writes back what it read), so every such write is
//! conditional on the document's `rev`, the version it read: "if `rev` is
//! still what I read, write my version, else leave the document".
//!
//! The condition is inside the update (a pipeline whose `$cond` keeps
//! `$$ROOT` when `rev` moved), and the statement's filter is the unique
//! key alone (`messageId` in a list: one statement writes up to
//! [`MESSAGES_PER_UPDATE`] messages, each finding its entry by its place).
//! A filter with `rev` in it would be the same on MongoDB, but a server
//! whose planner treats a filter beyond the unique key as a scan
//! (SecantusDB does) pays a collection scan per statement (BENCHMARKS U1).
//! The reply counts the documents changed; when it counts every message,
//! all landed (the store checked at start that the server counts only
//! documents an update changed: `probe` module; where it does not, every
//! write is read back). Otherwise the store reads the documents back, and a
//! statement landed when the document holds its version. A version is a
//! random token, new for each write, not a counter: two writers that read
//! the same `r` would both write `r + 1`, and neither could tell whose
//! landed. A document also keeps the tokens of its last [`PRIOR_REVS`]
//! versions (`priorRevs`), so a write that landed and was rewritten again
//! before its writer read back is still known as landed. Those that did
//! not land are read again and retried. Documents written before `rev`
//! existed have none (matched as such).
//!
//! A change whose message is not stored is kept in `pending_changes`, one
//! document per change (its id a digest of session, message and change, so
//! keeping one twice is a no-op). A write that inserts messages looks up
//! the pending changes of their chats (one indexed query, nearly always
//! empty) and applies and deletes those of the new messages. The two sides
//! race only for a change that comes while its message is being inserted:
//! the change side keeps it pending, then looks for the message again and
//! applies it if it is there now; the insert side inserts, then looks for
//! pending changes. Each side writes before it reads, so at least one of
//! them sees the other's write, and applying twice is harmless.

use std::collections::{HashMap, HashSet};

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::ErrorKind;

use super::places::{at_place, update_by_place};
use super::schema::{MESSAGES, MessageDoc, to_document};
use super::{CAS_ATTEMPTS, DUPLICATE_KEY, MongoStore, map_err, number};
use crate::domain::{ChangeOutcome, Message, MessageChange, MessageUpdate, now_ms};
use crate::storage::{StoreError, StoreResult};

/// Message ids per `$in` read. A server may match `$in` in time that
/// grows faster than the list (SecantusDB: 18 ms for 100 ids, 1.3 s for
/// 1,000), so long lists are read in short ones.
const IDS_PER_READ: usize = 100;

/// The versions before its current one that a rewritten message document
/// keeps (`priorRevs`).
const PRIOR_REVS: i32 = 8;

/// Messages per conditional update statement: one statement for many
/// messages costs the server less than one each (SecantusDB: 1,000
/// messages in statements of 50 took 1.0 s, as 1,000 statements 2.0 s),
/// and its `$in` stays short.
const MESSAGES_PER_UPDATE: usize = 50;

/// New fields per statement, bytes, so that a statement of large messages
/// stays far below the server's 16 MiB limit on a command.
const BYTES_PER_UPDATE: usize = 1 << 20;

/// A pending change as read back.
struct Waiting {
    id: String,
    message_id: String,
    change: MessageChange,
    keep_revoked_bodies: bool,
}

fn pending_id(sid: &str, u: &MessageUpdate) -> String {
    use sha2::Digest;
    let change = serde_json::to_string(&u.change).unwrap_or_default();
    let digest = sha2::Sha256::digest(format!("{sid}\0{}\0{change}", u.message_id).as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// A new version token: random, never 0 (an inserted document's
/// version) and never negative.
fn new_version() -> i64 {
    let (high, _) = uuid::Uuid::new_v4().as_u64_pair();
    ((high >> 1) as i64).max(1)
}

/// One update statement writing `part` (message id, the version it was
/// read at or null for a document without one, its new fields), by place
/// ([`update_by_place`]): each document takes its new fields, and its old
/// version goes to `priorRevs`, if its `rev` is still the one read;
/// otherwise it stays as it is.
pub(super) fn conditional_update(sid: &str, part: Vec<(&str, Bson, Document)>) -> Document {
    let mut ids = Vec::with_capacity(part.len());
    let mut revs = Vec::with_capacity(part.len());
    let mut sets = Vec::with_capacity(part.len());
    for (id, rev, set) in part {
        ids.push(Bson::from(id));
        revs.push(rev);
        sets.push(Bson::Document(set));
    }
    let read = at_place(revs);
    let unchanged = doc! { "$cond": [
        { "$eq": [read.clone(), Bson::Null] },
        { "$in": [{ "$type": "$rev" }, ["missing", "null"]] },
        { "$eq": ["$rev", read] },
    ] };
    let prior = doc! { "$slice": [
        { "$concatArrays": [
            [{ "$ifNull": ["$rev", 0_i64] }],
            { "$ifNull": ["$priorRevs", []] },
        ] },
        PRIOR_REVS,
    ] };
    let written = doc! { "$mergeObjects": ["$$ROOT", at_place(sets), { "priorRevs": prior }] };
    let result = doc! { "$cond": [unchanged, written, "$$ROOT"] };
    update_by_place(sid, "messageId", ids, result)
}

impl MongoStore {
    /// The stored documents of `ids` (those that exist), by message id.
    pub(super) async fn read_messages(
        &self,
        sid: &str,
        ids: &[&str],
    ) -> StoreResult<HashMap<String, MessageDoc>> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_READ) {
            let mut cursor = self
                .messages
                .find(doc! { "sessionId": sid, "messageId": { "$in": chunk } })
                .await
                .map_err(map_err)?;
            while let Some(d) = cursor.try_next().await.map_err(map_err)? {
                out.insert(d.message_id.clone(), d);
            }
        }
        Ok(out)
    }

    /// Writes each message over the version it was read at (`rev`), up to
    /// [`MESSAGES_PER_UPDATE`] messages a statement; returns the ids of
    /// those whose stored version moved on meanwhile (not written).
    pub(super) async fn write_if_unchanged(
        &self,
        sid: &str,
        writes: &[(Option<i64>, Message)],
    ) -> StoreResult<Vec<String>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        debug_assert!(
            writes
                .iter()
                .map(|(_, m)| m.id.as_str())
                .collect::<HashSet<_>>()
                .len()
                == writes.len(),
            "one write per message"
        );
        let mut statements = Vec::new();
        let mut versions = Vec::with_capacity(writes.len());
        let mut part = Vec::new();
        let mut bytes = 0;
        for (rev, m) in writes {
            let version = new_version();
            let mut d = MessageDoc::new(sid, m);
            d.rev = Some(version);
            let set = d.update_set()?;
            let size = mongodb::bson::to_vec(&set).map_or(0, |v| v.len());
            // A message that would take the statement over its bytes
            // starts the next one (alone, if it is that large itself).
            if !part.is_empty() && bytes + size > BYTES_PER_UPDATE {
                statements.push(conditional_update(sid, std::mem::take(&mut part)));
                bytes = 0;
            }
            bytes += size;
            part.push((m.id.as_str(), rev.map_or(Bson::Null, Bson::Int64), set));
            versions.push(version);
            if part.len() >= MESSAGES_PER_UPDATE {
                statements.push(conditional_update(sid, std::mem::take(&mut part)));
                bytes = 0;
            }
        }
        if !part.is_empty() {
            statements.push(conditional_update(sid, part));
        }
        let reply = self.update_statements(MESSAGES, statements, false).await?;
        if let Some((_, code, msg)) = reply.write_errors.first() {
            return Err(StoreError::Backend(format!(
                "update of messages failed ({code}): {msg}"
            )));
        }
        if reply.modified >= writes.len() as u64 && self.trusts_modified_counts() {
            return Ok(Vec::new());
        }
        // Some did not land: those whose document holds another version.
        let ids: Vec<&str> = writes.iter().map(|(_, m)| m.id.as_str()).collect();
        let stored = self.read_versions(sid, &ids).await?;
        Ok(writes
            .iter()
            .zip(versions)
            .filter(|((_, m), version)| {
                !stored.get(&m.id).is_some_and(|held| held.contains(version))
            })
            .map(|((_, m), _)| m.id.clone())
            .collect())
    }

    /// The versions each stored message of `ids` holds: its `rev` and its
    /// `priorRevs`, by message id.
    async fn read_versions(
        &self,
        sid: &str,
        ids: &[&str],
    ) -> StoreResult<HashMap<String, Vec<i64>>> {
        let messages = self.messages.clone_with_type::<Document>();
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_READ) {
            let mut cursor = messages
                .find(doc! { "sessionId": sid, "messageId": { "$in": chunk } })
                .projection(doc! { "_id": 0, "messageId": 1, "rev": 1, "priorRevs": 1 })
                .await
                .map_err(map_err)?;
            while let Some(d) = cursor.try_next().await.map_err(map_err)? {
                let mut held: Vec<i64> = number(d.get("rev")).into_iter().collect();
                if let Ok(prior) = d.get_array("priorRevs") {
                    held.extend(prior.iter().filter_map(|v| number(Some(v))));
                }
                out.insert(d.get_str("messageId").unwrap_or_default().to_owned(), held);
            }
        }
        Ok(out)
    }

    /// Applies `changes` (message id → its changes, each with the session's
    /// `keepRevokedBodies`, and the index of its outcome) to the stored
    /// messages; outcomes go to `outcomes`. Returns the ids that are not
    /// stored.
    async fn apply_to_stored(
        &self,
        sid: &str,
        changes: &HashMap<String, Vec<(usize, MessageChange, bool)>>,
        outcomes: &mut [ChangeOutcome],
    ) -> StoreResult<Vec<String>> {
        let mut todo: Vec<&str> = changes.keys().map(String::as_str).collect();
        todo.sort_unstable();
        let mut absent = Vec::new();
        // Where the time goes, for `RUST_LOG=wasync::storage=debug`.
        let (mut read, mut written) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        let mut n_written = 0;
        for attempt in 0..CAS_ATTEMPTS {
            let started = std::time::Instant::now();
            let stored = self.read_messages(sid, &todo).await?;
            read += started.elapsed();
            let mut writes = Vec::new();
            for id in &todo {
                let Some(d) = stored.get(*id) else {
                    if attempt == 0 {
                        absent.push((*id).to_owned());
                    } else {
                        // Deleted since the last read (a purge): not
                        // brought back, and nothing was applied.
                        for (i, _, _) in &changes[*id] {
                            if let Some(o) = outcomes.get_mut(*i) {
                                *o = ChangeOutcome::Unchanged;
                            }
                        }
                    }
                    continue;
                };
                let mut m = d.clone().into_message();
                let mut any = false;
                for (i, change, keep) in &changes[*id] {
                    let applied = m.apply_change(change, *keep);
                    if let Some(o) = outcomes.get_mut(*i) {
                        *o = if applied {
                            ChangeOutcome::Applied
                        } else {
                            ChangeOutcome::Unchanged
                        };
                    }
                    any |= applied;
                }
                if any {
                    writes.push((d.rev, m));
                }
            }
            let started = std::time::Instant::now();
            let moved = self.write_if_unchanged(sid, &writes).await?;
            written += started.elapsed();
            n_written += writes.len();
            if moved.is_empty() {
                tracing::debug!(
                    messages = changes.len(),
                    written = n_written,
                    attempts = attempt + 1,
                    read_ms = read.as_millis() as u64,
                    write_ms = written.as_millis() as u64,
                    "mongo changes"
                );
                return Ok(absent);
            }
            let moved: HashSet<String> = moved.into_iter().collect();
            todo.retain(|id| moved.contains(*id));
        }
        Err(StoreError::Backend(format!(
            "messages {todo:?} kept changing while changes were applied"
        )))
    }

    pub(super) async fn apply_changes_impl(
        &self,
        sid: &str,
        updates: &[MessageUpdate],
        keep_revoked_bodies: bool,
    ) -> StoreResult<Vec<ChangeOutcome>> {
        let mut outcomes = vec![ChangeOutcome::Unchanged; updates.len()];
        let mut by_message: HashMap<String, Vec<(usize, MessageChange, bool)>> = HashMap::new();
        for (i, u) in updates.iter().enumerate() {
            by_message.entry(u.message_id.clone()).or_default().push((
                i,
                u.change.clone(),
                keep_revoked_bodies,
            ));
        }
        let absent = self
            .apply_to_stored(sid, &by_message, &mut outcomes)
            .await?;
        if absent.is_empty() {
            return Ok(outcomes);
        }
        // Not stored: kept for when the message comes.
        let absent: HashSet<String> = absent.into_iter().collect();
        let now = DateTime::from_millis(now_ms());
        let mut docs = Vec::new();
        for (i, u) in updates.iter().enumerate() {
            if !absent.contains(&u.message_id) {
                continue;
            }
            outcomes[i] = ChangeOutcome::Pending;
            docs.push(doc! {
                "_id": pending_id(sid, u),
                "sessionId": sid,
                "chatId": &u.chat_id,
                "messageId": &u.message_id,
                "change": to_document(&u.change)?,
                "keepRevokedBodies": keep_revoked_bodies,
                "receivedAt": now,
            });
        }
        if let Err(e) = self.pending.insert_many(docs).ordered(false).await {
            match e.kind.as_ref() {
                // Kept before (a repeated change): nothing to add.
                ErrorKind::InsertMany(f)
                    if f.write_concern_error.is_none()
                        && f.write_errors
                            .as_deref()
                            .unwrap_or_default()
                            .iter()
                            .all(|w| w.code == DUPLICATE_KEY) => {}
                _ => return Err(map_err(e)),
            }
        }
        // The message may have been stored meanwhile, by a write that
        // looked for pending changes before these were kept.
        let ids: Vec<&str> = absent.iter().map(String::as_str).collect();
        let now_stored = self.read_messages(sid, &ids).await?;
        if !now_stored.is_empty() {
            let chats: Vec<&str> = updates
                .iter()
                .filter(|u| now_stored.contains_key(&u.message_id))
                .map(|u| u.chat_id.as_str())
                .collect();
            let wanted: HashSet<&str> = now_stored.keys().map(String::as_str).collect();
            self.apply_pending(sid, &chats, &wanted).await?;
        }
        Ok(outcomes)
    }

    /// Applies and deletes the pending changes of messages `wanted` (of
    /// chats `chats`), just stored; returns per message how many changed it.
    pub(super) async fn apply_pending(
        &self,
        sid: &str,
        chats: &[&str],
        wanted: &HashSet<&str>,
    ) -> StoreResult<HashMap<String, u64>> {
        let mut chats: Vec<&str> = chats.to_vec();
        chats.sort_unstable();
        chats.dedup();
        let docs: Vec<Document> = self
            .pending
            .find(doc! { "sessionId": sid, "chatId": { "$in": &chats } })
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let mut waiting = Vec::new();
        for d in docs {
            let message_id = d.get_str("messageId").unwrap_or_default();
            if !wanted.contains(message_id) {
                continue;
            }
            let change = d
                .get_document("change")
                .ok()
                .and_then(|c| mongodb::bson::from_document::<MessageChange>(c.clone()).ok());
            let Some(change) = change else {
                return Err(StoreError::Corrupt(format!(
                    "a pending change of message {message_id} is unreadable"
                )));
            };
            waiting.push(Waiting {
                id: d.get_str("_id").unwrap_or_default().to_owned(),
                message_id: message_id.to_owned(),
                change,
                keep_revoked_bodies: d.get_bool("keepRevokedBodies").unwrap_or(false),
            });
        }
        if waiting.is_empty() {
            return Ok(HashMap::new());
        }
        let mut by_message: HashMap<String, Vec<(usize, MessageChange, bool)>> = HashMap::new();
        for (i, w) in waiting.iter().enumerate() {
            by_message.entry(w.message_id.clone()).or_default().push((
                i,
                w.change.clone(),
                w.keep_revoked_bodies,
            ));
        }
        let mut outcomes = vec![ChangeOutcome::Unchanged; waiting.len()];
        self.apply_to_stored(sid, &by_message, &mut outcomes)
            .await?;
        let ids: Vec<Bson> = waiting.iter().map(|w| Bson::from(w.id.as_str())).collect();
        self.pending
            .delete_many(doc! { "_id": { "$in": ids } })
            .await
            .map_err(map_err)?;
        let mut applied: HashMap<String, u64> = HashMap::new();
        for (w, o) in waiting.iter().zip(outcomes) {
            if o == ChangeOutcome::Applied {
                *applied.entry(w.message_id.clone()).or_default() += 1;
            }
        }
        Ok(applied)
    }
}
