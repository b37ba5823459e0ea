//! Portable logins: the part of a Chromium profile that holds the WhatsApp
//! Web login, packed into a `tar.gz` archive for a [`LoginVault`] and
//! unpacked, safely, into the empty profile of a host that takes the
//! session over.
//!
//! # Which copy wins
//!
//! The profile remembers (in `wasync-login-revision`, not archived) the
//! vault revision it was last saved as or restored from. At start, a
//! profile without a login gets the saved one; a profile with a login
//! keeps it when the vault's newest revision is that one (the profile is
//! then as new or newer: it kept running after the save), and is replaced
//! when the vault holds another revision: another host ran the session
//! since and WhatsApp Web may have renewed keys there, so this profile is
//! stale.
//!
//! The archive itself, what goes in it and how it is unpacked safely, is
//! `archive.rs`.

mod archive;
#[cfg(test)]
mod fixtures;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::browser::vault::{LoginVault, MAX_ARCHIVE_BYTES};
use crate::domain::SessionId;
use archive::{has_login, pack, unpack};

/// The vault revision the profile was last saved as or restored from.
const REVISION_FILE: &str = "wasync-login-revision";

fn read_revision(profile: &Path) -> Option<String> {
    std::fs::read_to_string(profile.join(REVISION_FILE))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Best effort: without the file, the next start takes the vault's copy,
/// which is then the same login.
fn write_revision(profile: &Path, revision: &str) {
    if let Err(e) = std::fs::write(profile.join(REVISION_FILE), revision) {
        tracing::warn!(error = %e, "could not record the login revision in the profile");
    }
}

/// One session's link to the vault: restore before launch, save after
/// `ready` / periodically / on a clean stop, forget on logout. Failures
/// are logged and never end the session: the worst case is a QR code.
#[derive(Debug, Clone)]
pub(super) struct Logins {
    pub(super) vault: Arc<dyn LoginVault>,
    pub(super) session: SessionId,
    pub(super) profile: PathBuf,
}

impl Logins {
    /// Unpacks the saved login into the profile when the profile has none,
    /// or a stale one (see "Which copy wins"). Returns whether a login was
    /// restored. Never fails: the worst case is a QR code.
    #[tracing::instrument(name = "webdriver.restore_login", skip_all, fields(session_id = %self.session))]
    pub(super) async fn restore(&self) -> bool {
        let saved = match self.vault.load(&self.session).await {
            Ok(Some(s)) => s,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, vault = self.vault.kind(), "could not read the saved login; the profile is used as it is");
                return false;
            }
        };
        if has_login(&self.profile) {
            if read_revision(&self.profile).as_deref() == Some(saved.revision.as_str()) {
                tracing::debug!("the profile is at the saved revision or newer; kept");
                return false;
            }
            tracing::info!(
                revision = %saved.revision,
                "the login was saved elsewhere after this profile's; the saved one replaces it"
            );
        }
        let profile = self.profile.clone();
        let size = saved.archive.len();
        let archive = saved.archive;
        let r = tokio::task::spawn_blocking(move || {
            unpack(&archive, &profile, MAX_ARCHIVE_BYTES as u64)
        })
        .await;
        match r {
            Ok(Ok(p)) => {
                write_revision(&self.profile, &saved.revision);
                tracing::info!(
                    bytes = size,
                    files = p.files,
                    raw_bytes = p.raw_bytes,
                    revision = %saved.revision,
                    "saved login restored into the profile"
                );
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the saved login could not be restored; the profile is used as it is");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "restoring the saved login failed");
                false
            }
        }
    }

    /// Packs the profile's login and saves it; `reason` is for the log
    /// (`ready`, `periodic`, `stop`). Returns whether it was saved.
    #[tracing::instrument(name = "webdriver.save_login", skip_all, fields(session_id = %self.session, reason = %reason))]
    pub(super) async fn save(&self, reason: &'static str) -> bool {
        let profile = self.profile.clone();
        let packed =
            tokio::task::spawn_blocking(move || pack(&profile, MAX_ARCHIVE_BYTES as u64)).await;
        let packed = match packed {
            Ok(Ok(p)) if p.files > 0 => p,
            Ok(Ok(_)) => {
                tracing::warn!("the profile holds no login files; nothing saved");
                return false;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the login was not saved");
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "packing the login failed");
                return false;
            }
        };
        let (bytes, files, raw_bytes) = (packed.archive.len(), packed.files, packed.raw_bytes);
        match self.vault.save(&self.session, packed.archive).await {
            Ok(revision) => {
                write_revision(&self.profile, &revision);
                tracing::info!(
                    bytes,
                    files,
                    raw_bytes,
                    %revision,
                    vault = self.vault.kind(),
                    "login saved"
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, vault = self.vault.kind(), "the login was not saved");
                false
            }
        }
    }

    /// Deletes the saved login (logout).
    pub(super) async fn forget(&self) {
        match self.vault.delete(&self.session).await {
            Ok(()) => tracing::info!(session_id = %self.session, "saved login deleted"),
            Err(e) => {
                tracing::warn!(session_id = %self.session, error = %e, "could not delete the saved login")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{sample_profile, write};
    use super::*;

    fn logins(vault: &Arc<crate::browser::vault::memory::MemoryVault>, profile: &Path) -> Logins {
        Logins {
            vault: vault.clone(),
            session: SessionId::parse("s1").unwrap(),
            profile: profile.to_path_buf(),
        }
    }

    #[tokio::test]
    async fn which_copy_wins_at_start() {
        let vault = Arc::new(crate::browser::vault::memory::MemoryVault::default());
        let host_a = sample_profile();
        let a = logins(&vault, host_a.path());
        assert!(!a.restore().await, "nothing saved: the profile stays");
        assert!(a.save("ready").await);
        let saved = vault.load(&a.session).await.unwrap().unwrap();
        assert_eq!(read_revision(host_a.path()), Some(saved.revision.clone()));
        assert!(!a.restore().await, "the profile is at the saved revision");

        // Host B: an empty profile gets the saved login.
        let host_b = tempfile::tempdir().unwrap();
        let profile_b = host_b.path().join("session-s1");
        let b = logins(&vault, &profile_b);
        assert!(b.restore().await);
        assert!(has_login(&profile_b));
        assert_eq!(read_revision(&profile_b), Some(saved.revision.clone()));

        // B runs on and saves; A's profile is now stale and is replaced.
        write(
            &profile_b,
            "Default/Local Storage/leveldb/000003.log",
            b"renewed",
        );
        assert!(b.save("periodic").await);
        assert!(a.restore().await, "a stale profile takes the newer login");
        assert_eq!(
            std::fs::read(
                host_a
                    .path()
                    .join("Default/Local Storage/leveldb/000003.log")
            )
            .unwrap(),
            b"renewed"
        );
        assert!(!a.restore().await, "and then is current");

        // A saved login that cannot be unpacked changes nothing.
        vault.save(&a.session, b"garbage".to_vec()).await.unwrap();
        assert!(!a.restore().await);
        assert!(has_login(host_a.path()));

        // Logout: nothing left to restore.
        a.forget().await;
        let host_c = tempfile::tempdir().unwrap();
        assert!(!logins(&vault, host_c.path()).restore().await);
        assert!(!has_login(host_c.path()));
    }
}
