//! Changes after the sync in the embedded store: applied in place inside
//! one write transaction; a change whose message is not stored waits in
//! `pending_changes` (the winner per field), where the message's write
//! (`messages::write_messages`) finds and applies it.

use redb::{ReadableDatabase, ReadableTable};

use super::messages::read_message;
use super::tables::*;
use super::{EmbeddedStore, Lane, PRUNE_STEP, record};
use crate::domain::{ChangeOutcome, MessageUpdate, PendingChange, SessionId, keep_pending, now_ms};
use crate::storage::StoreResult;

impl EmbeddedStore {
    /// `Store::apply_changes`: one write transaction, aborted (no fsync)
    /// when nothing changed.
    pub(super) async fn changes(
        &self,
        id: &SessionId,
        updates: &[MessageUpdate],
        keep_revoked_bodies: bool,
    ) -> StoreResult<Vec<ChangeOutcome>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let sid = id.to_string();
        let updates = updates.to_vec();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            let out = apply_in(&txn, &sid, &updates, keep_revoked_bodies)?;
            if out.iter().all(|o| *o == ChangeOutcome::Unchanged) {
                // Nothing to write: no fsync either.
                txn.abort().db()?;
            } else {
                txn.commit().db()?;
            }
            Ok(out)
        })
        .await
    }

    /// `Store::prune_pending_changes`: found in a read, deleted in steps.
    pub(super) async fn prune_pending(&self, before: i64) -> StoreResult<u64> {
        // Found in a read, deleted in small steps (as `prune` does).
        let old = self
            .blocking(Lane::Read, move |db| {
                let txn = db.begin_read().db()?;
                let t = txn.open_table(PENDING_CHANGES).db()?;
                let mut v = Vec::new();
                for row in t.iter().db()? {
                    let (k, val) = row.db()?;
                    let waiting: Vec<PendingChange> = dec(val.value())?;
                    if waiting.iter().all(|p| p.received_at < before) {
                        let (s, m) = k.value();
                        v.push((s.to_owned(), m.to_owned()));
                    }
                }
                Ok(v)
            })
            .await?;
        self.delete_in_steps(old, PRUNE_STEP, |txn, step: &[(String, String)]| {
            let mut t = txn.open_table(PENDING_CHANGES).db()?;
            let mut n = 0u64;
            for (s, m) in step {
                if let Some(g) = t.remove((s.as_str(), m.as_str())).db()? {
                    n += dec::<Vec<PendingChange>>(g.value())?.len() as u64;
                }
            }
            Ok(n)
        })
        .await
    }
}

/// Applies `updates` to the stored messages of session `sid` inside an
/// open transaction; a change whose message is not stored is kept pending.
fn apply_in(
    txn: &redb::WriteTransaction,
    sid: &str,
    updates: &[MessageUpdate],
    keep_revoked_bodies: bool,
) -> StoreResult<Vec<ChangeOutcome>> {
    let ids = txn.open_table(MESSAGE_IDS).db()?;
    let mut docs = txn.open_table(MESSAGES).db()?;
    let mut pending = txn.open_table(PENDING_CHANGES).db()?;
    let now = now_ms();
    let mut out = Vec::with_capacity(updates.len());
    for u in updates {
        let key = (sid, u.message_id.as_str());
        match read_message(&ids, &docs, sid, &u.message_id)? {
            Some(mut m) => {
                // A change never moves a message: its place stays.
                if m.apply_change(&u.change, keep_revoked_bodies) {
                    let t = desc(Some(m.timestamp));
                    docs.insert(
                        (sid, m.chat_id.as_str(), t, m.id.as_str()),
                        record::encode(&m)?.as_slice(),
                    )
                    .db()?;
                    out.push(ChangeOutcome::Applied);
                } else {
                    out.push(ChangeOutcome::Unchanged);
                }
            }
            None => {
                let mut waiting: Vec<PendingChange> = match pending.get(key).db()? {
                    Some(g) => dec(g.value())?,
                    None => Vec::new(),
                };
                let kept = keep_pending(
                    &mut waiting,
                    PendingChange {
                        update: u.clone(),
                        keep_revoked_bodies,
                        received_at: now,
                    },
                );
                if kept {
                    pending.insert(key, enc(&waiting)?.as_slice()).db()?;
                }
                out.push(ChangeOutcome::Pending);
            }
        }
    }
    Ok(out)
}
