//! The coordinator on MongoDB: `hosts` (heartbeats) and `leases` in the
//! store's own database, written with the store's durable write concern.
//!
//! `leases`: `{_id: sessionId, owner, epoch, expiresAt, acquiredAt}`.
//! Acquiring is one `findOneAndUpdate` with upsert whose filter only
//! matches a lease that is free, expired or already the caller's; when
//! another host holds it, the filter matches nothing, the upsert tries to
//! insert a second document with the same `_id`, and the server refuses it
//! with E11000, which reads as "held". Lease documents are never deleted: the
//! epoch must keep growing for the fence to work (so the `leases`
//! collection must not be dropped while hosts run).
//!
//! `hosts`: `{_id: hostId, advertiseUrl, version, startedAt, heartbeatAt,
//! expiresAt, capacity, held}`, a TTL index removes an hour after expiry
//! the entries of hosts that died without retiring.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, Database, IndexModel};

use super::{Claim, ClusterError, Coordinator, HostInfo, Lease};
use crate::domain::now_ms;

pub const LEASES: &str = "leases";
pub const HOSTS: &str = "hosts";

/// Leases and heartbeats in MongoDB.
#[derive(Debug, Clone)]
pub struct MongoCoordinator {
    leases: Collection<Document>,
    hosts: Collection<Document>,
}

fn map_err(e: mongodb::error::Error) -> ClusterError {
    match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::Shutdown => ClusterError::Unavailable(e.to_string()),
        _ => ClusterError::Backend(e.to_string()),
    }
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

fn ms(d: &Document, key: &str) -> i64 {
    match d.get(key) {
        Some(Bson::DateTime(t)) => t.timestamp_millis(),
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        _ => 0,
    }
}

fn int(d: &Document, key: &str) -> u64 {
    match d.get(key) {
        Some(Bson::Int64(v)) => (*v).max(0) as u64,
        Some(Bson::Int32(v)) => (*v).max(0) as u64,
        Some(Bson::Double(v)) => v.max(0.0) as u64,
        _ => 0,
    }
}

/// Every document of `coll` matching `filter`.
async fn find_all(
    coll: &Collection<Document>,
    filter: Document,
) -> Result<Vec<Document>, ClusterError> {
    coll.find(filter)
        .await
        .map_err(map_err)?
        .try_collect()
        .await
        .map_err(map_err)
}

fn lease_of(d: &Document) -> Lease {
    Lease {
        session_id: d.get_str("_id").unwrap_or_default().to_owned(),
        owner: d.get_str("owner").ok().map(str::to_owned),
        epoch: int(d, "epoch"),
        expires_at: ms(d, "expiresAt"),
    }
}

fn host_of(d: &Document) -> HostInfo {
    HostInfo {
        host_id: d.get_str("_id").unwrap_or_default().to_owned(),
        advertise_url: d.get_str("advertiseUrl").unwrap_or_default().to_owned(),
        version: d.get_str("version").unwrap_or_default().to_owned(),
        started_at: ms(d, "startedAt"),
        heartbeat_at: ms(d, "heartbeatAt"),
        expires_at: ms(d, "expiresAt"),
        capacity: int(d, "capacity") as u32,
        held: int(d, "held") as u32,
    }
}

impl MongoCoordinator {
    /// Uses `db` (the store's database, on the store's client) and creates
    /// the indexes. A client of its own was tried, so that renewals would
    /// not queue behind a sync's bulk writes: against the test server it
    /// made renewals miss their deadlines under load (two pools and two
    /// monitors per host), so the store's client it is.
    pub async fn open(db: &Database) -> Result<Self, ClusterError> {
        let c = Self {
            leases: db.collection(LEASES),
            hosts: db.collection(HOSTS),
        };
        c.leases
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "expiresAt": 1 })
                    .options(IndexOptions::builder().name("expires".to_owned()).build())
                    .build(),
            )
            .await
            .map_err(map_err)?;
        c.hosts
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "expiresAt": 1 })
                    .options(
                        IndexOptions::builder()
                            .name("ttl_expired_hosts".to_owned())
                            .expire_after(std::time::Duration::from_secs(3600))
                            .build(),
                    )
                    .build(),
            )
            .await
            .map_err(map_err)?;
        Ok(c)
    }
}

#[async_trait]
impl Coordinator for MongoCoordinator {
    fn kind(&self) -> &'static str {
        "mongo"
    }

    async fn heartbeat(&self, h: &HostInfo) -> Result<(), ClusterError> {
        self.hosts
            .replace_one(
                doc! { "_id": &h.host_id },
                doc! {
                    "_id": &h.host_id,
                    "advertiseUrl": &h.advertise_url,
                    "version": &h.version,
                    "startedAt": DateTime::from_millis(h.started_at),
                    "heartbeatAt": DateTime::from_millis(h.heartbeat_at),
                    "expiresAt": DateTime::from_millis(h.expires_at),
                    "capacity": i64::from(h.capacity),
                    "held": i64::from(h.held),
                },
            )
            .upsert(true)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn hosts(&self) -> Result<Vec<HostInfo>, ClusterError> {
        Ok(find_all(&self.hosts, doc! {})
            .await?
            .iter()
            .map(host_of)
            .collect())
    }

    async fn retire(&self, host_id: &str) -> Result<(), ClusterError> {
        self.hosts
            .delete_one(doc! { "_id": host_id })
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn acquire(&self, session: &str, host: &str, until: i64) -> Result<Claim, ClusterError> {
        let now = now_ms();
        let filter = doc! {
            "_id": session,
            "$or": [
                { "owner": Bson::Null },
                { "owner": host },
                { "expiresAt": { "$lte": DateTime::from_millis(now) } },
            ],
        };
        let update = doc! {
            "$set": {
                "owner": host,
                "expiresAt": DateTime::from_millis(until),
                "acquiredAt": DateTime::from_millis(now),
            },
            "$inc": { "epoch": 1_i64 },
        };
        let r = self
            .leases
            .find_one_and_update(filter, update)
            .upsert(true)
            .return_document(ReturnDocument::Before)
            .await;
        match r {
            Ok(before) => {
                let (epoch, previous_owner) = match &before {
                    Some(d) => (int(d, "epoch") + 1, lease_of(d).owner),
                    None => (1, None),
                };
                Ok(Claim::Granted {
                    lease: Lease {
                        session_id: session.to_owned(),
                        owner: Some(host.to_owned()),
                        epoch,
                        expires_at: until,
                    },
                    previous_owner,
                })
            }
            Err(e) if is_duplicate(&e) => match self.lease(session).await? {
                Some(l) => Ok(Claim::Held(l)),
                None => Err(ClusterError::Backend(format!(
                    "lease of {session} contended and then gone"
                ))),
            },
            Err(e) => Err(map_err(e)),
        }
    }

    async fn renew(
        &self,
        host: &str,
        sessions: &[String],
        until: i64,
    ) -> Result<Vec<Lease>, ClusterError> {
        let now = now_ms();
        self.leases
            .update_many(
                doc! {
                    "_id": { "$in": sessions },
                    "owner": host,
                    "expiresAt": { "$gt": DateTime::from_millis(now) },
                },
                doc! { "$set": { "expiresAt": DateTime::from_millis(until) } },
            )
            .await
            .map_err(map_err)?;
        Ok(find_all(&self.leases, doc! { "_id": { "$in": sessions } })
            .await?
            .iter()
            .map(lease_of)
            .collect())
    }

    async fn release(&self, session: &str, host: &str, epoch: u64) -> Result<(), ClusterError> {
        self.leases
            .update_one(
                doc! { "_id": session, "owner": host, "epoch": epoch as i64 },
                doc! { "$set": { "owner": Bson::Null, "expiresAt": DateTime::from_millis(0) } },
            )
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn lease(&self, session: &str) -> Result<Option<Lease>, ClusterError> {
        Ok(self
            .leases
            .find_one(doc! { "_id": session })
            .await
            .map_err(map_err)?
            .as_ref()
            .map(lease_of))
    }

    async fn leases(&self) -> Result<Vec<Lease>, ClusterError> {
        Ok(find_all(&self.leases, doc! {})
            .await?
            .iter()
            .map(lease_of)
            .collect())
    }
}
