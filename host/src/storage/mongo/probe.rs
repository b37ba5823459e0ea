//! What the store checks of the server when it connects.
//!
//! A conditional write (a message change's compare-and-set, a chat
//! counter update fenced by its lease's epoch) is an update whose pipeline
//! keeps a document as it is (`$$ROOT`) where the condition fails, and the
//! store learns whether all landed from the reply's `nModified`: a count
//! below the messages' means some did not, and the store reads them back.
//! MongoDB counts a document only when the update changed it. A server
//! that also counted the documents it kept would make a write that did not
//! land look landed: a lost change, a missed fence. So the store checks
//! this once at start with the statement its changes send
//! ([`super::changes::conditional_update`]), on two documents of its own in
//! [`SERVER_CHECKS`]: one whose version is the one read, one whose version
//! moved. The reply must say 2 matched and 1 modified. Where it does not,
//! or the check cannot run (no right to write that collection, no
//! acknowledgement in time), the store logs a warning and reads back after
//! every conditional write instead ([`super::MongoOptions::read_back_every_write`]
//! asks for that outright).

use std::time::Duration;

use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{Acknowledgment, WriteConcern};

use super::changes::conditional_update;
use super::{MongoStore, map_err, number};
use crate::storage::StoreResult;

/// The collection of the start-up check's documents: two per check, under
/// a random `sessionId`, deleted when it is done.
pub(super) const SERVER_CHECKS: &str = "serverChecks";

/// How long the check may take before the store stops waiting for it.
const CHECK_TIME: Duration = Duration::from_secs(10);

/// What the check found: `(matched, modified)` of the statement, as the
/// server counted them.
fn counts_only_changed(matched: Option<i64>, modified: Option<i64>) -> bool {
    matched == Some(2) && modified == Some(1)
}

impl MongoStore {
    /// Whether the server's `nModified` counts only the documents an
    /// update changed; `false`, with a warning, where it does not or the
    /// check could not run.
    pub(super) async fn counts_only_changed_documents(&self) -> bool {
        match tokio::time::timeout(CHECK_TIME, self.check_modified_counts()).await {
            Ok(Ok((n, modified))) if counts_only_changed(n, modified) => true,
            Ok(Ok((n, modified))) => {
                tracing::warn!(
                    matched = ?n,
                    modified = ?modified,
                    "the MongoDB server counted a document an update kept as it was as \
                     modified (expected 2 matched, 1 modified); every conditional write is read back"
                );
                false
            }
            Ok(Err(e)) => {
                tracing::warn!(
                    error = %e,
                    "could not check how the MongoDB server counts modified documents \
                     (collection {SERVER_CHECKS}); every conditional write is read back"
                );
                false
            }
            Err(_) => {
                tracing::warn!(
                    "the check of how the MongoDB server counts modified documents took over \
                     {} s; every conditional write is read back",
                    CHECK_TIME.as_secs()
                );
                false
            }
        }
    }

    /// Runs the check: `(n, nModified)` of one conditional statement over
    /// a document whose version is the one read and one whose version
    /// moved. Its writes need only the primary's acknowledgement: they are
    /// deleted at once, and the counts do not depend on durability.
    async fn check_modified_counts(&self) -> StoreResult<(Option<i64>, Option<i64>)> {
        let checks = self.db.collection::<Document>(SERVER_CHECKS);
        let one = WriteConcern::builder().w(Acknowledgment::Nodes(1)).build();
        let sid = format!("check-{}", uuid::Uuid::new_v4().simple());
        checks
            .insert_many([
                doc! { "sessionId": &sid, "messageId": "kept", "rev": 1_i64 },
                doc! { "sessionId": &sid, "messageId": "moved", "rev": 2_i64 },
            ])
            .write_concern(one.clone())
            .await
            .map_err(map_err)?;
        let statement = conditional_update(
            &sid,
            vec![
                ("kept", Bson::Int64(1), doc! { "rev": 3_i64, "v": 1 }),
                ("moved", Bson::Int64(1), doc! { "rev": 4_i64, "v": 1 }),
            ],
        );
        let out = self
            .db
            .run_command(doc! {
                "update": SERVER_CHECKS,
                "updates": [statement],
                "writeConcern": { "w": 1 },
            })
            .await
            .map_err(map_err);
        let deleted = checks
            .delete_many(doc! { "sessionId": &sid })
            .write_concern(one)
            .await;
        if let Err(e) = deleted {
            tracing::warn!(error = %e, "the check's documents in {SERVER_CHECKS} stay");
        }
        let out = out?;
        Ok((number(out.get("n")), number(out.get("nModified"))))
    }
}

#[cfg(test)]
mod tests {
    use super::counts_only_changed;

    #[test]
    fn only_two_matched_and_one_modified_pass() {
        assert!(counts_only_changed(Some(2), Some(1)));
        // Counted the kept document as modified.
        assert!(!counts_only_changed(Some(2), Some(2)));
        // Matched nothing or one: the statement's shape did not work.
        assert!(!counts_only_changed(Some(0), Some(0)));
        assert!(!counts_only_changed(Some(1), Some(1)));
        // No counts in the reply.
        assert!(!counts_only_changed(Some(2), None));
        assert!(!counts_only_changed(None, None));
    }
}
