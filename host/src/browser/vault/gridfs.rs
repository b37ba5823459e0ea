//! MongoDB GridFS vault: one file per session in the bucket `logins`
//! (`logins.files` / `logins.chunks`), written and read with the official
//! driver's [`GridFsBucket`].
//!
//! # Why it is written the way it is
//!
//! - **GridFS, not a document.** An archive may pass MongoDB's 16 MiB
//!   document limit; GridFS splits it into 255 KiB chunks, and every
//!   MongoDB tool can list, back up or delete the files.
//! - **Replace after the new file is whole.** A save uploads a new
//!   revision under its own id, `{session, rev}` (`rev` a fresh
//!   `ObjectId`). GridFS writes the `files` document only after the last
//!   chunk, so until then readers still see the previous revision; only
//!   then are older revisions (and chunks a crashed save left behind)
//!   deleted. A crash at any point leaves at least one complete login, and
//!   at most one revision survives a completed save.
//! - **The session is in the id.** Chunks carry their file's id, so the
//!   chunks of a session (orphans included) are found by
//!   `files_id.session` without knowing which files existed.
//! - **Durable.** The bucket writes with `w: "majority", j: true`, whatever
//!   the database's default, so an acknowledged save survives a crash of
//!   the server.
//! - **Bounded.** Archives over [`MAX_ARCHIVE_BYTES`] are refused on save
//!   and not read on load (the length in the `files` document is checked
//!   before any chunk is fetched).

use std::time::Duration;

use async_trait::async_trait;
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::gridfs::GridFsBucket;
use mongodb::options::{Acknowledgment, ClientOptions, GridFsBucketOptions, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};

use super::{LoginVault, MAX_ARCHIVE_BYTES, SavedLogin, VaultError, check_size};
use crate::domain::SessionId;

/// The bucket's name: collections `logins.files` and `logins.chunks`.
pub const BUCKET: &str = "logins";

/// Saved logins in a GridFS bucket of `db`.
#[derive(Debug, Clone)]
pub struct GridFsVault {
    bucket: GridFsBucket,
    files: Collection<Document>,
    chunks: Collection<Document>,
}

impl GridFsVault {
    /// A vault in `db` (the store's database).
    pub fn new(db: &Database) -> Self {
        let wc = WriteConcern::builder()
            .w(Acknowledgment::Majority)
            .journal(true)
            .build();
        let bucket = db.gridfs_bucket(
            GridFsBucketOptions::builder()
                .bucket_name(BUCKET.to_owned())
                .write_concern(wc.clone())
                .build(),
        );
        let opts = mongodb::options::CollectionOptions::builder()
            .write_concern(wc)
            .build();
        Self {
            bucket,
            files: db.collection_with_options(&format!("{BUCKET}.files"), opts.clone()),
            chunks: db.collection_with_options(&format!("{BUCKET}.chunks"), opts),
        }
    }

    /// A vault on its own client of `uri`, database `db`. The driver
    /// connects lazily, so this does no I/O but resolving a
    /// `mongodb+srv://` name.
    pub async fn connect(uri: &str, db: &str) -> Result<Self, VaultError> {
        let mut opts = ClientOptions::parse(uri)
            .await
            .map_err(|e| VaultError::Backend(format!("invalid MONGODB_URI: {e}")))?;
        opts.server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        opts.app_name
            .get_or_insert_with(|| "wasync-logins".to_owned());
        let client = Client::with_options(opts)
            .map_err(|e| VaultError::Backend(format!("invalid MONGODB_URI: {e}")))?;
        Ok(Self::new(&client.database(db)))
    }

    /// Finds chunks by session, for the sweep after a save and for delete.
    async fn ensure_index(&self) -> Result<(), VaultError> {
        self.chunks
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"files_id.session": 1})
                    .build(),
            )
            .await
            .map(|_| ())
            .map_err(backend)
    }

    /// Deletes the session's files and chunks older than `before` (all of
    /// them when `None`): files first, so no reader finds a file whose
    /// chunks are already gone.
    async fn purge(&self, session: &SessionId, before: Option<ObjectId>) -> Result<(), VaultError> {
        let mut files = doc! {"_id.session": session.as_str()};
        let mut chunks = doc! {"files_id.session": session.as_str()};
        if let Some(rev) = before {
            files.insert("_id.rev", doc! {"$lt": rev});
            chunks.insert("files_id.rev", doc! {"$lt": rev});
        }
        self.files.delete_many(files).await.map_err(backend)?;
        self.chunks.delete_many(chunks).await.map_err(backend)?;
        Ok(())
    }
}

fn backend(e: mongodb::error::Error) -> VaultError {
    use mongodb::error::ErrorKind;
    match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. } => VaultError::Unavailable(e.to_string()),
        _ => VaultError::Backend(e.to_string()),
    }
}

#[async_trait]
impl LoginVault for GridFsVault {
    fn kind(&self) -> &'static str {
        "gridfs"
    }

    async fn save(&self, session: &SessionId, archive: Vec<u8>) -> Result<String, VaultError> {
        check_size(archive.len())?;
        self.ensure_index().await?;
        let rev = ObjectId::new();
        let id = doc! {"session": session.as_str(), "rev": rev};
        let mut upload = self
            .bucket
            .open_upload_stream(format!("session-{}", session.as_str()))
            .id(Bson::Document(id))
            .metadata(doc! {
                "session": session.as_str(),
                "savedAt": DateTime::now(),
                "bytes": archive.len() as i64,
            })
            .await
            .map_err(backend)?;
        let written = async {
            upload.write_all(&archive).await?;
            upload.close().await
        }
        .await;
        if let Err(e) = written {
            // Best effort: a save that fails here leaves chunks without a
            // `files` document, which the next save's purge removes.
            let _ = upload.abort().await;
            return Err(VaultError::Unavailable(format!("uploading the login: {e}")));
        }
        self.purge(session, Some(rev)).await?;
        Ok(rev.to_hex())
    }

    async fn load(&self, session: &SessionId) -> Result<Option<SavedLogin>, VaultError> {
        let newest = self
            .files
            .find_one(doc! {"_id.session": session.as_str()})
            .sort(doc! {"_id.rev": -1})
            .await
            .map_err(backend)?;
        let Some(file) = newest else {
            return Ok(None);
        };
        let length = match file.get("length") {
            Some(Bson::Int64(n)) => *n,
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Double(n)) => *n as i64,
            _ => return Err(VaultError::Corrupt("file without a length".into())),
        };
        let length = usize::try_from(length)
            .map_err(|_| VaultError::Corrupt(format!("negative length {length}")))?;
        check_size(length)?;
        let id = file
            .get_document("_id")
            .map_err(|_| VaultError::Corrupt("file without an id".into()))?
            .clone();
        let revision = id
            .get_object_id("rev")
            .map_err(|_| VaultError::Corrupt("file id without a revision".into()))?
            .to_hex();
        let id = Bson::Document(id);
        let download = self
            .bucket
            .open_download_stream(id)
            .await
            .map_err(backend)?;
        let mut archive = Vec::with_capacity(length);
        download
            .take(MAX_ARCHIVE_BYTES as u64 + 1)
            .read_to_end(&mut archive)
            .await
            .map_err(|e| VaultError::Corrupt(format!("reading the login: {e}")))?;
        if archive.len() != length {
            return Err(VaultError::Corrupt(format!(
                "read {} bytes of a {length}-byte login",
                archive.len()
            )));
        }
        Ok(Some(SavedLogin { revision, archive }))
    }

    async fn delete(&self, session: &SessionId) -> Result<(), VaultError> {
        self.purge(session, None).await
    }
}
