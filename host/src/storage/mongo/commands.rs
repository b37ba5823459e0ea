//! How the store talks to the server below its own operations: commands
//! of many `update` statements cut to the server's limits, and what a
//! driver error or a command's reply means at the storage boundary.

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};

use super::MongoStore;
use super::schema::decode;
use crate::storage::{StoreError, StoreResult};

/// Server error codes that mean "the server is going away or not primary
/// right now": a retry later may succeed, so they map to `Unavailable`.
const UNAVAILABLE_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

pub(super) const DUPLICATE_KEY: i32 = 11000;

/// Statements per `update` command, and their byte budget: well under the
/// server's 100,000-statement and 16 MiB limits, so a batch never has to be
/// split by the server.
const UPDATE_BATCH_STATEMENTS: usize = 1_000;
const UPDATE_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// The parts of an `update` command reply the store acts on.
#[derive(Debug, Default)]
pub(super) struct UpdateReply {
    /// `(statement index, error code, message)` of statements that failed.
    pub(super) write_errors: Vec<(usize, i32, String)>,
    /// Documents the statements matched (the server's `n`).
    pub(super) matched: u64,
    /// Documents the statements changed (the server's `nModified`).
    pub(super) modified: u64,
}

/// A number in a document the server made, whichever of its numeric types
/// the server chose for it.
pub(super) fn number(b: Option<&Bson>) -> Option<i64> {
    match b? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}

/// Maps a driver error onto the storage boundary.
pub(super) fn map_err(e: mongodb::error::Error) -> StoreError {
    match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => StoreError::Unavailable(e.to_string()),
        ErrorKind::Command(c) if UNAVAILABLE_CODES.contains(&c.code) => {
            StoreError::Unavailable(e.to_string())
        }
        ErrorKind::Write(WriteFailure::WriteError(w)) if UNAVAILABLE_CODES.contains(&w.code) => {
            StoreError::Unavailable(e.to_string())
        }
        ErrorKind::BsonDeserialization(_) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// The documents an unordered `insert_many` into `collection` found stored
/// already (a duplicate key), by index; any other failure is an error.
pub(super) fn duplicate_indexes<T>(
    collection: &str,
    inserted: Result<T, mongodb::error::Error>,
) -> StoreResult<Vec<usize>> {
    let e = match inserted {
        Ok(_) => return Ok(Vec::new()),
        Err(e) => e,
    };
    match e.kind.as_ref() {
        ErrorKind::InsertMany(f) if f.write_concern_error.is_none() => {
            let errors = f.write_errors.as_deref().unwrap_or_default();
            if let Some(other) = errors.iter().find(|w| w.code != DUPLICATE_KEY) {
                return Err(StoreError::Backend(format!(
                    "insert into {collection} failed ({}): {}",
                    other.code, other.message
                )));
            }
            Ok(errors.iter().map(|w| w.index).collect())
        }
        _ => Err(map_err(e)),
    }
}

pub(super) fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

/// `statements` cut into commands of at most `max_statements` statements
/// and `max_bytes` of encoded statements, in order. A statement that would
/// take a command over its bytes starts the next one, so only a statement
/// larger than `max_bytes` on its own makes a command that large.
fn command_batches(
    statements: Vec<Document>,
    max_statements: usize,
    max_bytes: usize,
) -> Vec<Vec<Document>> {
    let mut batches: Vec<Vec<Document>> = Vec::new();
    let mut bytes = 0;
    for stmt in statements {
        let size = mongodb::bson::to_vec(&stmt).map_or(0, |v| v.len());
        match batches.last_mut() {
            Some(batch) if batch.len() < max_statements && bytes + size <= max_bytes => {
                batch.push(stmt);
                bytes += size;
            }
            _ => {
                batches.push(vec![stmt]);
                bytes = size;
            }
        }
    }
    batches
}

impl MongoStore {
    /// Runs `update` statements on `collection` in as few commands as the
    /// size limits allow. Statement errors are returned (indexes into
    /// `statements`), not raised, so callers can decide what a duplicate
    /// key means for them; a write-concern failure is an error.
    pub(super) async fn update_statements(
        &self,
        collection: &str,
        statements: Vec<Document>,
        ordered: bool,
    ) -> StoreResult<UpdateReply> {
        let mut reply = UpdateReply::default();
        let mut offset = 0;
        for batch in command_batches(statements, UPDATE_BATCH_STATEMENTS, UPDATE_BATCH_BYTES) {
            let n = batch.len();
            let cmd = doc! {
                "update": collection,
                "updates": batch,
                "ordered": ordered,
                "writeConcern": self.write_concern.clone(),
            };
            let out = self.db.run_command(cmd).await.map_err(map_err)?;
            reply.matched += number(out.get("n"))
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0);
            reply.modified += number(out.get("nModified"))
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0);
            if let Ok(wce) = out.get_document("writeConcernError") {
                return Err(StoreError::Backend(format!(
                    "write concern failed on {collection}: {wce}"
                )));
            }
            if let Ok(errors) = out.get_array("writeErrors") {
                for e in errors.iter().filter_map(Bson::as_document) {
                    let index = number(e.get("index")).unwrap_or(0) as usize;
                    let code = number(e.get("code")).unwrap_or(0) as i32;
                    let msg = e.get_str("errmsg").unwrap_or_default().to_owned();
                    reply.write_errors.push((offset + index, code, msg));
                }
                if ordered && !reply.write_errors.is_empty() {
                    return Ok(reply);
                }
            }
            offset += n;
        }
        Ok(reply)
    }

    /// Upserts whose only possible failure is the race of two writers
    /// creating the same new document: the loser hits the unique index, and
    /// running its statement again updates the winner's document.
    pub(super) async fn upsert_statements(
        &self,
        collection: &str,
        statements: Vec<Document>,
    ) -> StoreResult<()> {
        let reply = self
            .update_statements(collection, statements.clone(), false)
            .await?;
        if reply.write_errors.is_empty() {
            return Ok(());
        }
        if let Some((_, code, msg)) = reply.write_errors.iter().find(|e| e.1 != DUPLICATE_KEY) {
            return Err(StoreError::Backend(format!(
                "upsert into {collection} failed ({code}): {msg}"
            )));
        }
        let again: Vec<Document> = reply
            .write_errors
            .iter()
            .filter_map(|(i, _, _)| statements.get(*i).cloned())
            .collect();
        let reply = self.update_statements(collection, again, false).await?;
        match reply.write_errors.first() {
            None => Ok(()),
            Some((_, code, msg)) => Err(StoreError::Backend(format!(
                "upsert into {collection} failed ({code}): {msg}"
            ))),
        }
    }

    pub(super) async fn collect_docs<T: serde::de::DeserializeOwned>(
        cursor: mongodb::Cursor<Document>,
        dates: &[&str],
    ) -> StoreResult<Vec<T>> {
        let docs: Vec<Document> = cursor.try_collect().await.map_err(map_err)?;
        docs.into_iter().map(|d| decode(d, dates)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(d: &Document) -> usize {
        mongodb::bson::to_vec(d).unwrap().len()
    }

    fn statement(i: usize, body: usize) -> Document {
        doc! {"q": {"messageId": i as i64}, "u": {"$set": {"body": "x".repeat(body)}}}
    }

    #[test]
    fn many_small_statements_are_cut_at_the_byte_budget() {
        // 3,000 statements of ~4 KiB: under the statement count per
        // command, over the bytes, so the bytes cut them.
        let statements: Vec<Document> = (0..3_000).map(|i| statement(i, 4_000)).collect();
        let size = encoded(&statements[0]);
        let batches = command_batches(statements.clone(), UPDATE_BATCH_STATEMENTS, 1 << 20);
        assert!(batches.len() > 1);
        for b in &batches {
            let bytes: usize = b.iter().map(encoded).sum();
            assert!(bytes <= 1 << 20, "a command of {bytes} bytes");
            assert!(b.len() < UPDATE_BATCH_STATEMENTS);
        }
        // Full commands: each holds as many as fit.
        assert_eq!(batches[0].len(), (1 << 20) / size);
        // Nothing lost, nothing reordered.
        let flat: Vec<Document> = batches.into_iter().flatten().collect();
        assert_eq!(flat, statements);
    }

    #[test]
    fn many_tiny_statements_are_cut_at_the_statement_count() {
        let statements: Vec<Document> = (0..2_500).map(|i| statement(i, 1)).collect();
        let batches = command_batches(statements, UPDATE_BATCH_STATEMENTS, UPDATE_BATCH_BYTES);
        let lens: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(lens, [1_000, 1_000, 500]);
    }

    #[test]
    fn a_statement_that_would_overflow_a_command_starts_the_next() {
        // 0.6 + 0.6 of the budget do not share a command; a statement
        // larger than the budget travels alone.
        let budget = 100_000;
        let statements = vec![
            statement(0, 60_000),
            statement(1, 60_000),
            statement(2, 150_000),
            statement(3, 10),
            statement(4, 10),
        ];
        let lens: Vec<usize> = command_batches(statements, 1_000, budget)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(lens, [1, 1, 1, 2]);
    }

    #[test]
    fn the_default_budget_keeps_a_command_under_the_server_limit() {
        // The real budget, many statements summing far past 16 MiB.
        let statements: Vec<Document> = (0..900).map(|i| statement(i, 60_000)).collect();
        let batches = command_batches(statements, UPDATE_BATCH_STATEMENTS, UPDATE_BATCH_BYTES);
        assert!(batches.len() >= 6);
        for b in batches {
            let cmd = doc! {"update": "messages", "updates": b, "ordered": false};
            assert!(encoded(&cmd) < 16 * 1024 * 1024);
        }
    }

    #[test]
    fn no_statements_no_commands() {
        assert!(command_batches(Vec::new(), 10, 10).is_empty());
    }
}
