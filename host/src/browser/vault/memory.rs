//! In-process vault: the reference the contract suite checks the GridFS
//! adapter against, and a vault for tests that need no server. Logins in it
//! die with the process, so it makes nothing portable in production.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{LoginVault, SavedLogin, VaultError, check_size};
use crate::domain::SessionId;

/// Archives in a map, replaced whole on save (so never half written).
#[derive(Debug, Default)]
pub struct MemoryVault {
    logins: Mutex<HashMap<String, SavedLogin>>,
}

impl MemoryVault {
    fn logins(&self) -> std::sync::MutexGuard<'_, HashMap<String, SavedLogin>> {
        self.logins.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl LoginVault for MemoryVault {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn save(&self, session: &SessionId, archive: Vec<u8>) -> Result<String, VaultError> {
        check_size(archive.len())?;
        let revision = uuid::Uuid::now_v7().to_string();
        let saved = SavedLogin {
            revision: revision.clone(),
            archive,
        };
        self.logins().insert(session.as_str().to_owned(), saved);
        Ok(revision)
    }

    async fn load(&self, session: &SessionId) -> Result<Option<SavedLogin>, VaultError> {
        Ok(self.logins().get(session.as_str()).cloned())
    }

    async fn delete(&self, session: &SessionId) -> Result<(), VaultError> {
        self.logins().remove(session.as_str());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_contract() {
        super::super::contract::run(&MemoryVault::default()).await;
    }
}
