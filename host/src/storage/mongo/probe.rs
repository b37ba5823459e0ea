//! What the store checks of the server when it connects.
//!
//! A conditional write (a message change's compare-and-set, a chat
//! counter update fenced by its lease's epoch) is one update whose pipeline
//! keeps the document as it is (`$$ROOT`) when the condition fails, and
//! the store learns whether all landed from the reply's `nModified`: a
//! count below the statements' means some did not, and the store reads
//! them back. MongoDB counts a document only when the update changed it.
//! A server that also counted unchanged documents would make a write that
//! did not land look landed: a lost change, a missed fence. So the store
//! checks this once at start, on a document of its own in
//! [`SERVER_CHECKS`], and where the server fails the check (or the
//! deployment asks, [`super::MongoOptions::read_back_every_write`]) it
//! reads back after every conditional write instead.

use mongodb::bson::{Document, doc};

use super::{MongoStore, map_err, number};
use crate::storage::{StoreError, StoreResult};

/// The collection of the start-up check's documents: one per check, by a
/// random id, deleted when it is done.
pub(super) const SERVER_CHECKS: &str = "serverChecks";

impl MongoStore {
    /// Whether the server's `nModified` counts only the documents an
    /// update changed: an update that keeps a document as it is must
    /// count 0, one that changes it 1.
    pub(super) async fn counts_only_changed_documents(&self) -> StoreResult<bool> {
        let checks = self.db.collection::<Document>(SERVER_CHECKS);
        let id = uuid::Uuid::new_v4().to_string();
        checks
            .insert_one(doc! { "_id": &id, "v": 1 })
            .await
            .map_err(map_err)?;
        let modified = |u: Document| {
            let cmd = doc! {
                "update": SERVER_CHECKS,
                "updates": [{ "q": { "_id": &id }, "u": [{ "$replaceWith": u }] }],
                "writeConcern": self.write_concern.clone(),
            };
            async move {
                let out = self.db.run_command(cmd).await.map_err(map_err)?;
                number(out.get("nModified")).ok_or_else(|| {
                    StoreError::Backend(format!(
                        "the server's reply to an update has no nModified: {out}"
                    ))
                })
            }
        };
        let kept = modified(doc! { "$cond": [{ "$eq": ["$v", 0] }, { "v": 0 }, "$$ROOT"] }).await;
        let changed = modified(doc! { "$mergeObjects": ["$$ROOT", { "v": 2 }] }).await;
        checks
            .delete_one(doc! { "_id": &id })
            .await
            .map_err(map_err)?;
        Ok(kept? == 0 && changed? == 1)
    }
}
