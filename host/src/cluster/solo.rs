//! The coordinator of a host that shares nothing (the embedded store): it
//! grants every lease at epoch 0 and knows one host, itself. Nothing else
//! can write to its store (the store file is locked), so there is nothing
//! to fence off; epoch 0 keeps every record writable across restarts.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Claim, ClusterError, Coordinator, HostInfo, Lease};

#[derive(Debug, Default)]
pub struct SoloCoordinator {
    host: Mutex<Option<HostInfo>>,
    leases: Mutex<HashMap<String, Lease>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Coordinator for SoloCoordinator {
    fn kind(&self) -> &'static str {
        "solo"
    }

    async fn heartbeat(&self, host: &HostInfo) -> Result<(), ClusterError> {
        *lock(&self.host) = Some(host.clone());
        Ok(())
    }

    async fn hosts(&self) -> Result<Vec<HostInfo>, ClusterError> {
        Ok(lock(&self.host).iter().cloned().collect())
    }

    async fn retire(&self, _host_id: &str) -> Result<(), ClusterError> {
        *lock(&self.host) = None;
        Ok(())
    }

    async fn acquire(&self, session: &str, host: &str, until: i64) -> Result<Claim, ClusterError> {
        let lease = Lease {
            session_id: session.to_owned(),
            owner: Some(host.to_owned()),
            epoch: 0,
            expires_at: until,
        };
        lock(&self.leases).insert(session.to_owned(), lease.clone());
        Ok(Claim::Granted {
            lease,
            previous_owner: None,
        })
    }

    async fn renew(
        &self,
        _host: &str,
        sessions: &[String],
        until: i64,
    ) -> Result<Vec<Lease>, ClusterError> {
        let mut leases = lock(&self.leases);
        Ok(sessions
            .iter()
            .filter_map(|s| {
                let l = leases.get_mut(s)?;
                l.expires_at = until;
                Some(l.clone())
            })
            .collect())
    }

    async fn release(&self, session: &str, _host: &str, _epoch: u64) -> Result<(), ClusterError> {
        lock(&self.leases).remove(session);
        Ok(())
    }

    async fn lease(&self, session: &str) -> Result<Option<Lease>, ClusterError> {
        Ok(lock(&self.leases).get(session).cloned())
    }

    async fn leases(&self) -> Result<Vec<Lease>, ClusterError> {
        Ok(lock(&self.leases).values().cloned().collect())
    }
}
