//! Writes fenced by the session lease's epoch.
//!
//! A record carries the epoch of the host that wrote it. Each fenced write
//! is one conditional statement, "replace if the stored epoch is not newer
//! than mine, or insert if there is none": when a newer epoch is stored the
//! filter matches nothing, the upsert then tries to insert a second
//! document with the same `_id`, and the server refuses it with E11000,
//! which is reported as [`StoreError::Fenced`]. So the check and the write
//! are one atomic server operation, with no transaction and no read first.

use mongodb::bson::{Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};

use super::schema::{RUN_DATES, SESSION_DATES, encode};
use super::{DUPLICATE_KEY, MongoStore, map_err};
use crate::domain::SyncRun;
use crate::storage::{SessionRecord, StoreError, StoreResult};

/// Matches a document whose epoch is at most `epoch` (documents written
/// before epochs existed have none, and count as epoch 0).
fn not_newer(id: &str, epoch: u64) -> Document {
    doc! {
        "_id": id,
        "$or": [
            { "epoch": { "$lte": epoch as i64 } },
            { "epoch": { "$exists": false } },
        ],
    }
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

impl MongoStore {
    /// Replaces (or inserts) `doc` as `_id: id` in `coll` unless a newer
    /// epoch is stored.
    async fn fenced_replace(
        &self,
        coll: &mongodb::Collection<Document>,
        what: String,
        id: &str,
        epoch: u64,
        mut d: Document,
    ) -> StoreResult<()> {
        d.insert("_id", id);
        d.insert("epoch", epoch as i64);
        match coll.replace_one(not_newer(id, epoch), d).upsert(true).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Err(StoreError::Fenced(format!(
                "{what} has a newer epoch than {epoch}"
            ))),
            Err(e) => Err(map_err(e)),
        }
    }

    pub(super) async fn put_session_fenced(&self, rec: &SessionRecord) -> StoreResult<()> {
        let d = encode(rec, SESSION_DATES)?;
        self.fenced_replace(
            &self.sessions,
            format!("session {}", rec.session_id),
            &rec.session_id,
            rec.epoch,
            d,
        )
        .await
    }

    pub(super) async fn put_run(&self, run: &SyncRun) -> StoreResult<()> {
        let d = encode(run, RUN_DATES)?;
        self.fenced_replace(
            &self.runs,
            format!("run {}", run.sync_id),
            &run.sync_id,
            run.epoch,
            d,
        )
        .await
    }

    /// Fails with `Fenced` if run `run` is stored with a newer epoch than
    /// the writer's; a run not stored yet passes. Checked before a write
    /// whose parts are not fenced themselves (messages, the outbox event),
    /// so a stale writer normally writes nothing at all; the fenced run
    /// write after them closes the gap of a writer paused in between.
    pub(super) async fn check_run_epoch(&self, run: &SyncRun) -> StoreResult<()> {
        let stored = self
            .runs
            .find_one(doc! { "_id": run.sync_id.as_str() })
            .projection(doc! { "epoch": 1 })
            .await
            .map_err(map_err)?;
        let epoch = stored
            .and_then(|d| d.get("epoch").cloned())
            .and_then(|b| match b {
                mongodb::bson::Bson::Int64(v) => Some(v as u64),
                mongodb::bson::Bson::Int32(v) => Some(v as u64),
                _ => None,
            });
        match epoch {
            Some(e) if e > run.epoch => Err(StoreError::Fenced(format!(
                "run {} has epoch {e}, newer than {}",
                run.sync_id, run.epoch
            ))),
            _ => Ok(()),
        }
    }
}
