//! The login vault port: where a session's saved WhatsApp Web login lives
//! off the host, so another host can take the session over without a new
//! QR code.
//!
//! # Why it is written the way it is
//!
//! - **Bytes in, bytes out.** A vault stores one opaque archive per session
//!   and knows nothing about browsers: what goes into the archive (and how
//!   it is unpacked safely) is the webdriver adapter's business
//!   (`webdriver/login/`). A vault that only moves bytes is easy to test
//!   and easy to replace.
//! - **Revisions.** Every save gets a new revision id, returned by
//!   [`LoginVault::save`] and by [`LoginVault::load`]. A host remembers the
//!   revision its profile was last saved as or restored from, so it can
//!   tell whether another host has run the session since (and its own
//!   profile is stale).
//! - **A save never leaves no login.** [`LoginVault::save`] replaces the
//!   previous archive only once the new one is completely stored; a crash
//!   in the middle leaves the previous archive readable.
//! - **Optional.** Without a vault (the embedded store: one host, whose
//!   profile folder already survives restarts) nothing is saved or
//!   restored; the webdriver settings hold `Option<Arc<dyn LoginVault>>`.
//! - **The archive is a credential.** Whoever can read it can use the
//!   WhatsApp account; adapters keep it where the host's other data is
//!   (the same MongoDB database) and log sizes, never contents.
//!
//! Adapters: [`gridfs`] (MongoDB GridFS, when `MONGODB_URI` is set) and
//! [`memory`] (in-process, the contract's reference and for tests).

pub mod gridfs;
pub mod memory;

#[doc(hidden)]
pub mod contract;

use async_trait::async_trait;

use crate::domain::SessionId;

/// The largest archive a vault accepts or hands out (64 MiB). A WhatsApp
/// Web login is a few hundred KiB to a few MiB; far more means the profile
/// holds something else (a cached message database), which is not worth
/// moving between hosts on every save.
pub const MAX_ARCHIVE_BYTES: usize = 64 << 20;

/// Errors at the vault boundary.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The backing server cannot be reached right now; a later save or
    /// restore may work.
    #[error("login vault unavailable: {0}")]
    Unavailable(String),
    /// An archive is larger than [`MAX_ARCHIVE_BYTES`].
    #[error("login archive of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// A stored archive is incomplete or unreadable.
    #[error("stored login is corrupt: {0}")]
    Corrupt(String),
    /// Anything else the backend reported.
    #[error("login vault error: {0}")]
    Backend(String),
}

/// A saved login as [`LoginVault::load`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedLogin {
    /// The revision the save returned; a new one per save.
    pub revision: String,
    /// The archive, as saved.
    pub archive: Vec<u8>,
}

/// Saved logins, one archive per session.
#[async_trait]
pub trait LoginVault: Send + Sync + std::fmt::Debug + 'static {
    /// Adapter name for logs (`gridfs`, `memory`).
    fn kind(&self) -> &'static str;

    /// Stores `archive` as the session's login, replacing the previous one
    /// only after the new one is completely stored. Returns the new
    /// revision.
    async fn save(&self, session: &SessionId, archive: Vec<u8>) -> Result<String, VaultError>;

    /// The session's newest complete archive, `None` when there is none.
    async fn load(&self, session: &SessionId) -> Result<Option<SavedLogin>, VaultError>;

    /// Forgets the session's login (logout). Deleting nothing is `Ok`.
    async fn delete(&self, session: &SessionId) -> Result<(), VaultError>;
}

/// Refuses archives over [`MAX_ARCHIVE_BYTES`]; every adapter checks both
/// ways, so an oversized stored file is never read into memory whole.
pub fn check_size(size: usize) -> Result<(), VaultError> {
    if size > MAX_ARCHIVE_BYTES {
        return Err(VaultError::TooLarge {
            size,
            limit: MAX_ARCHIVE_BYTES,
        });
    }
    Ok(())
}
