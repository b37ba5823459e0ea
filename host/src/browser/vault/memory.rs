//! In-process vault: the reference the contract suite checks the GridFS
//! adapter against, and a vault for tests that need no server. Logins in it
//! die with the process, so it makes nothing portable in production.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{LoginVault, VaultError, check_size};
use crate::domain::SessionId;

/// Archives in a map, replaced whole on save (so never half written).
#[derive(Debug, Default)]
pub struct MemoryVault {
    logins: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryVault {
    fn logins(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        self.logins.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl LoginVault for MemoryVault {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn save(&self, session: &SessionId, archive: Vec<u8>) -> Result<(), VaultError> {
        check_size(archive.len())?;
        self.logins().insert(session.as_str().to_owned(), archive);
        Ok(())
    }

    async fn load(&self, session: &SessionId) -> Result<Option<Vec<u8>>, VaultError> {
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
