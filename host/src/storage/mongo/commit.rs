//! The commit of a sync's group (messages, then quarantine and chat
//! counters, then the checkpoint) and of live messages; the scheme is in the
//! module docs of [`super`].

use std::collections::{HashMap, HashSet};

use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, doc};

use super::counts::{Added, ChatTouch};
use super::schema::{MESSAGES, MessageDoc, QUARANTINE};
use super::{CAS_ATTEMPTS, MongoStore, duplicate_indexes, map_err, quarantine_doc};
use crate::domain::{Message, QuarantinedMessage, SessionId, SyncRun};
use crate::storage::{ChatCommit, StoreError, StoreResult, WriteStats};

/// What one message of a write turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Inserted,
    Updated,
    Unchanged,
}

pub(super) fn sum_stats(outcomes: &[(Outcome, u64)]) -> WriteStats {
    let mut s = WriteStats::default();
    for (o, applied) in outcomes {
        s.changes_applied += applied;
        match o {
            Outcome::Inserted => s.inserted += 1,
            Outcome::Updated => s.updated += 1,
            Outcome::Unchanged => s.unchanged += 1,
        }
    }
    s
}

impl MongoStore {
    pub(super) async fn commit_chats_impl(
        &self,
        id: &SessionId,
        chats: &[ChatCommit],
        run: &SyncRun,
    ) -> StoreResult<Vec<WriteStats>> {
        let sid = id.as_str();
        // Where a commit's time goes, for `RUST_LOG=wasync::storage=debug`.
        let started = std::time::Instant::now();
        // 0. A writer that lost the session's lease writes nothing.
        self.check_run_epoch(run).await?;
        let checked = started.elapsed();
        // The chats' counters stay this writer's from its insert to their
        // update (see `counts`).
        let mut chat_ids: Vec<&str> = Vec::with_capacity(chats.len());
        for c in chats {
            chat_ids.push(&c.chat_id);
            chat_ids.extend(c.messages.iter().map(|m| m.chat_id.as_str()));
        }
        let locked = self.chat_locks.lock(sid, chat_ids).await;
        // The chats' counters are this epoch's from here on: a writer whose
        // lease this one took over can no longer touch them (see `counts`).
        self.claim_counters(sid, &locked.chat_ids(), run.epoch)
            .await?;
        let claimed = started.elapsed();
        // 1. Messages of every chat in one bulk write.
        let all: Vec<Message> = chats
            .iter()
            .flat_map(|c| c.messages.iter().cloned())
            .collect();
        let outcomes = self.write_messages(sid, &all).await?;
        let written = started.elapsed();
        let mut stats = Vec::with_capacity(chats.len());
        let mut at = 0;
        for c in chats {
            stats.push(sum_stats(&outcomes[at..at + c.messages.len()]));
            at += c.messages.len();
        }

        // 2. Quarantine, keyed like messages so a re-sync overwrites, and
        // the chat counters (incremented, or recounted where the insert
        // was not clean) with each chat's newest message: independent, so
        // both are in flight at once.
        let quarantined: Vec<&QuarantinedMessage> =
            chats.iter().flat_map(|c| c.quarantined.iter()).collect();
        let mut refresh = ChatTouch::of(&all, outcomes.iter().map(|o| o.0 == Outcome::Inserted));
        for c in chats {
            match refresh.iter_mut().find(|t| t.chat_id == c.chat_id) {
                Some(t) => t.synced_at = Some(c.synced_at),
                None => refresh.push(ChatTouch {
                    chat_id: c.chat_id.clone(),
                    synced_at: Some(c.synced_at),
                    newest: None,
                    added: Added::Exactly(0),
                }),
            }
        }
        tokio::try_join!(
            self.write_quarantine(sid, &quarantined),
            self.refresh_chats(sid, &refresh, run.epoch)
        )?;
        drop(locked);
        let counted = started.elapsed();

        // 3. The checkpoint, last: it never runs ahead of the data, and it is
        // fenced, so a writer that lost the lease meanwhile fails here.
        self.put_run(run).await?;
        tracing::debug!(
            messages = all.len(),
            chats = chats.len(),
            recounted = refresh.iter().filter(|t| t.added == Added::Recount).count(),
            epoch_ms = checked.as_millis() as u64,
            claim_ms = (claimed - checked).as_millis() as u64,
            messages_ms = (written - claimed).as_millis() as u64,
            counters_ms = (counted - written).as_millis() as u64,
            checkpoint_ms = (started.elapsed() - counted).as_millis() as u64,
            "mongo commit"
        );
        Ok(stats)
    }

    /// Live messages by the holder of the session's lease at `epoch` (0:
    /// no lease).
    pub(super) async fn put_messages_impl(
        &self,
        id: &SessionId,
        messages: &[Message],
        epoch: u64,
    ) -> StoreResult<WriteStats> {
        let sid = id.as_str();
        let chat_ids: Vec<&str> = messages.iter().map(|m| m.chat_id.as_str()).collect();
        let locked = self.chat_locks.lock(sid, chat_ids).await;
        self.claim_counters(sid, &locked.chat_ids(), epoch).await?;
        let outcomes = self.write_messages(sid, messages).await?;
        let touched = ChatTouch::of(messages, outcomes.iter().map(|o| o.0 == Outcome::Inserted));
        self.refresh_chats(sid, &touched, epoch).await?;
        drop(locked);
        Ok(sum_stats(&outcomes))
    }

    /// Writes messages of one session; see the module docs for the scheme.
    /// Returns one outcome per input message, in order.
    pub(super) async fn write_messages(
        &self,
        sid: &str,
        messages: &[Message],
    ) -> StoreResult<Vec<(Outcome, u64)>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let docs: Vec<MessageDoc> = messages.iter().map(|m| MessageDoc::new(sid, m)).collect();
        let mut outcomes = vec![(Outcome::Inserted, 0u64); docs.len()];
        let started = std::time::Instant::now();
        let duplicates = duplicate_indexes(
            MESSAGES,
            self.messages.insert_many(&docs).ordered(false).await,
        )?;
        let insert_ms = started.elapsed().as_millis() as u64;

        // Changes that came before their message: applied to it now.
        let is_duplicate: HashSet<usize> = duplicates.iter().copied().collect();
        let inserted: Vec<usize> = (0..docs.len())
            .filter(|i| !is_duplicate.contains(i))
            .collect();
        if !inserted.is_empty() {
            let chats: Vec<&str> = inserted.iter().map(|&i| docs[i].chat_id.as_str()).collect();
            let wanted: HashSet<&str> = inserted
                .iter()
                .map(|&i| docs[i].message_id.as_str())
                .collect();
            let applied = self.apply_pending(sid, &chats, &wanted).await?;
            if !applied.is_empty() {
                for &i in &inserted {
                    if let Some(n) = applied.get(&docs[i].message_id) {
                        outcomes[i].1 = *n;
                    }
                }
            }
        }
        tracing::debug!(
            messages = docs.len(),
            duplicates = duplicates.len(),
            insert_ms,
            pending_ms = started.elapsed().as_millis() as u64 - insert_ms,
            "mongo insert"
        );
        if duplicates.is_empty() {
            return Ok(outcomes);
        }

        // Already stored: read those back and rewrite only what changed,
        // keeping what changed about them since they were written. A
        // message repeated within one write ends as its last copy.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for &i in &duplicates {
            outcomes[i].0 = Outcome::Unchanged;
            last.insert(docs[i].message_id.as_str(), i);
        }
        let mut todo: Vec<usize> = last.into_values().collect();
        todo.sort_unstable();
        for _ in 0..CAS_ATTEMPTS {
            let stored = self.read_back(sid, &docs, &todo).await?;
            let mut writes: Vec<(Option<i64>, Message)> = Vec::new();
            let mut index_of: HashMap<&str, usize> = HashMap::new();
            for &i in &todo {
                let Some(old) = stored.get(&docs[i].message_id) else {
                    // Gone since the insert (a concurrent purge): nothing to keep.
                    outcomes[i].0 = Outcome::Unchanged;
                    continue;
                };
                let old_message = old.clone().into_message();
                let mut merged = messages[i].clone();
                if !old_message.changes.is_empty() {
                    merged.merge_stored(&old_message);
                }
                if merged == old_message {
                    outcomes[i].0 = Outcome::Unchanged;
                } else {
                    outcomes[i].0 = Outcome::Updated;
                    index_of.insert(docs[i].message_id.as_str(), i);
                    writes.push((old.rev, merged));
                }
            }
            let moved = self.write_if_unchanged(sid, &writes).await?;
            if moved.is_empty() {
                return Ok(outcomes);
            }
            todo = moved
                .iter()
                .filter_map(|id| index_of.get(id.as_str()).copied())
                .collect();
        }
        Err(StoreError::Backend(
            "messages kept changing while a write merged them".into(),
        ))
    }

    /// The stored versions of `docs[i]` for every `i` in `which`, by
    /// message id.
    ///
    /// A sync's batch is a run of whole chats over a time window, so the
    /// read is a range scan of the `(sessionId, chatId, timestamp)` index
    /// over those chats and that window, filtered to the wanted ids here;
    /// a long `$in` list on message ids is far slower on some servers. Ids
    /// the range misses (a message whose stored timestamp differs) are
    /// looked up by id.
    pub(super) async fn read_back(
        &self,
        sid: &str,
        docs: &[MessageDoc],
        which: &[usize],
    ) -> StoreResult<HashMap<String, MessageDoc>> {
        let wanted: HashSet<&str> = which.iter().map(|&i| docs[i].message_id.as_str()).collect();
        let mut chats: Vec<&str> = which.iter().map(|&i| docs[i].chat_id.as_str()).collect();
        chats.sort_unstable();
        chats.dedup();
        let (lo, hi) = which.iter().map(|&i| docs[i].timestamp).fold(
            (None, None),
            |(lo, hi): (Option<DateTime>, Option<DateTime>), t| {
                (
                    Some(lo.map_or(t, |l| l.min(t))),
                    Some(hi.map_or(t, |h| h.max(t))),
                )
            },
        );
        let mut filter = doc! { "sessionId": sid, "chatId": { "$in": &chats } };
        if let (Some(lo), Some(hi)) = (lo, hi) {
            filter.insert("timestamp", doc! { "$gte": lo, "$lte": hi });
        }
        let mut stored: HashMap<String, MessageDoc> = HashMap::with_capacity(wanted.len());
        let mut cursor = self.messages.find(filter).await.map_err(map_err)?;
        while let Some(d) = cursor.try_next().await.map_err(map_err)? {
            if wanted.contains(d.message_id.as_str()) {
                stored.insert(d.message_id.clone(), d);
            }
        }
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|id| !stored.contains_key(*id))
            .collect();
        if !missing.is_empty() {
            stored.extend(self.read_messages(sid, &missing).await?);
        }
        Ok(stored)
    }

    /// Upserts quarantined messages by `(sessionId, messageId)`, in one
    /// command.
    pub(super) async fn write_quarantine(
        &self,
        sid: &str,
        items: &[&QuarantinedMessage],
    ) -> StoreResult<()> {
        if items.is_empty() {
            return Ok(());
        }
        let statements = items
            .iter()
            .map(|q| {
                Ok(doc! {
                    "q": { "sessionId": sid, "messageId": q.message.id.as_str() },
                    "u": quarantine_doc(q)?,
                    "upsert": true,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        self.upsert_statements(QUARANTINE, statements).await
    }
}
