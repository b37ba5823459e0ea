//! The cluster: many hosts on one MongoDB and one RabbitMQ, each session
//! run by exactly one of them, any of them serving any session.
//!
//! # Why it is written the way it is
//!
//! - **Leases, not consensus.** Who runs a session is a lease document
//!   `{_id: sessionId, owner, epoch, expiresAt}` taken and renewed with one
//!   conditional write each ([`Coordinator`]). MongoDB already orders
//!   concurrent writes to one document; a home-made election would only add
//!   ways to be wrong.
//! - **The epoch fences.** Every change of owner increments the epoch, and
//!   every write that belongs to a session's lifecycle or run carries it
//!   ([`fence::FencedStore`]); the store refuses a write whose epoch is older
//!   than the stored one. So a host that was paused or cut off past its
//!   lease cannot overwrite its successor's state when it wakes up.
//! - **A host stops itself first.** A lease is renewed every
//!   `renew_every`; a host that has not renewed by `ttl - margin` (counted
//!   from when it *sent* its last successful renewal, on its monotonic
//!   clock) stops its actors for those sessions by itself, before another
//!   host may take them ([`leases::LeaseTable`]). The fence catches what
//!   slips past (a host frozen between its check and its write).
//! - **Takeover is restore.** A session whose lease expired is restored by
//!   whichever live host acquires its lease first (every host watches,
//!   [`keeper`]): provider restore, and an interrupted sync resumes from its
//!   checkpoint with the same `syncId` and continuing `seq`, exactly as after
//!   a restart of a single host.
//! - **Commands go to the owner, reads to the store.** A command for a
//!   session another host owns is forwarded over plain HTTP ([`forward`]);
//!   reads are answered from MongoDB by whichever host receives them. Live
//!   events cross hosts through a RabbitMQ topic exchange ([`fabric`]), so a
//!   client can be connected to any host.
//! - **One host needs none of it.** On the embedded store the
//!   [`solo::SoloCoordinator`] grants every lease at epoch 0, so the same
//!   code runs with nothing shared.

pub mod fabric;
pub mod fence;
pub mod forward;
pub mod identity;
pub mod keeper;
pub mod leases;
pub mod mongo;
pub mod solo;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::now_ms;

/// Errors at the cluster boundary.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The coordination store cannot be reached; leases cannot be renewed.
    #[error("cluster store unavailable: {0}")]
    Unavailable(String),
    /// Anything else the backend reported.
    #[error("cluster store error: {0}")]
    Backend(String),
}

/// A host as the others see it (`hosts` collection).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostInfo {
    pub host_id: String,
    /// How the other hosts reach this one's HTTP.
    pub advertise_url: String,
    pub version: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// The host counts as alive until then.
    pub expires_at: i64,
    /// Sessions it may hold (`WASYNC_MAX_SESSIONS`).
    pub capacity: u32,
    /// Session leases it holds.
    pub held: u32,
}

impl HostInfo {
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at > now
    }

    /// Free room for sessions.
    pub fn room(&self) -> u32 {
        self.capacity.saturating_sub(self.held)
    }
}

/// A session lease (`leases` collection).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub session_id: String,
    /// The holder; `None` once released.
    pub owner: Option<String>,
    /// Grows with every change of owner: the fencing token.
    pub epoch: u64,
    pub expires_at: i64,
}

impl Lease {
    /// Held by someone, and not expired.
    pub fn is_held(&self, now: i64) -> bool {
        self.owner.is_some() && self.expires_at > now
    }
}

/// What [`Coordinator::acquire`] got.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller holds the lease now; `previous_owner` held it before
    /// (expired), if anyone did.
    Granted {
        lease: Lease,
        previous_owner: Option<String>,
    },
    /// Another host holds it.
    Held(Lease),
}

/// The coordination port: host heartbeats and session leases. Adapters:
/// [`mongo::MongoCoordinator`] (shared), [`solo::SoloCoordinator`] (one host).
#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    fn kind(&self) -> &'static str;

    /// Records `host` as alive (until `host.expires_at`) with its load.
    async fn heartbeat(&self, host: &HostInfo) -> Result<(), ClusterError>;
    /// Every registered host, live or not (callers check `is_live`).
    async fn hosts(&self) -> Result<Vec<HostInfo>, ClusterError>;
    /// Removes a host that stops cleanly.
    async fn retire(&self, host_id: &str) -> Result<(), ClusterError>;

    /// Takes the lease of `session` for `host` until `until` (ms) if it is
    /// free, expired or already `host`'s, incrementing its epoch; one
    /// conditional write.
    async fn acquire(&self, session: &str, host: &str, until: i64) -> Result<Claim, ClusterError>;
    /// Extends every lease of `sessions` that `host` holds and has not
    /// expired to `until`; returns the stored leases of `sessions` after
    /// the write (a lease renewed is owned by `host` with `expires_at ==
    /// until`).
    async fn renew(
        &self,
        host: &str,
        sessions: &[String],
        until: i64,
    ) -> Result<Vec<Lease>, ClusterError>;
    /// Frees a lease `host` holds at `epoch` (the epoch stays, so the next
    /// owner's is larger).
    async fn release(&self, session: &str, host: &str, epoch: u64) -> Result<(), ClusterError>;
    async fn lease(&self, session: &str) -> Result<Option<Lease>, ClusterError>;
    async fn leases(&self) -> Result<Vec<Lease>, ClusterError>;
}

/// How this host takes part.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub host_id: String,
    pub advertise_url: String,
    /// Sessions this host may hold.
    pub max_sessions: u32,
    /// Lease lifetime.
    pub lease_ttl: Duration,
    /// Renewal (and heartbeat) period.
    pub renew_every: Duration,
    /// Period of the watch for expired leases to take over.
    pub watch_every: Duration,
}

impl ClusterSettings {
    /// How long before a lease's expiry a host stops its sessions when it
    /// could not renew: a fifth of the TTL, at least 500 ms. Covers the
    /// time to stop an actor and modest clock skew between hosts.
    pub fn margin(&self) -> Duration {
        (self.lease_ttl / 5).max(Duration::from_millis(500))
    }
}

/// A live host another host can forward to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub host_id: String,
    pub url: String,
}

/// `GET /cluster`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// The host that answered.
    pub host_id: String,
    /// `mongo` (shared) or `solo` (one host, embedded store).
    pub coordinator: String,
    /// Live hosts, each with the sessions it holds.
    pub hosts: Vec<HostView>,
    /// Sessions with a live actor on the answering host.
    pub local_actors: Vec<String>,
}

/// One host in [`ClusterView`].
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostView {
    #[serde(flatten)]
    pub info: HostInfo,
    /// Session leases it holds, with their epochs.
    pub leases: Vec<Lease>,
}

/// The cluster as the rest of the host sees it: identity, the coordinator,
/// the leases this host holds, the live hosts (cached from the last
/// heartbeat) and the forwarder.
pub struct Cluster {
    pub settings: ClusterSettings,
    pub coordinator: Arc<dyn Coordinator>,
    pub leases: Arc<leases::LeaseTable>,
    pub forwarder: forward::Forwarder,
    pub metrics: Arc<crate::telemetry::Metrics>,
    started_at: i64,
    peers: Mutex<Vec<HostInfo>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("host_id", &self.settings.host_id)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn new(
        settings: ClusterSettings,
        coordinator: Arc<dyn Coordinator>,
        api_key: Option<String>,
        metrics: Arc<crate::telemetry::Metrics>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        let leases = Arc::new(leases::LeaseTable::new(
            coordinator.clone(),
            settings.clone(),
            metrics.clone(),
            shutdown,
        ));
        Self {
            forwarder: forward::Forwarder::new(settings.host_id.clone(), api_key),
            settings,
            coordinator,
            leases,
            metrics,
            started_at: now_ms(),
            peers: Mutex::new(Vec::new()),
        }
    }

    pub fn host_id(&self) -> &str {
        &self.settings.host_id
    }

    /// Whether other hosts can exist (false on the embedded store).
    pub fn is_shared(&self) -> bool {
        self.coordinator.kind() != "solo"
    }

    /// This host's entry, as its next heartbeat writes it.
    pub fn me(&self) -> HostInfo {
        let now = now_ms();
        HostInfo {
            host_id: self.settings.host_id.clone(),
            advertise_url: self.settings.advertise_url.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: self.started_at,
            heartbeat_at: now,
            expires_at: now + self.settings.lease_ttl.as_millis() as i64,
            capacity: self.settings.max_sessions,
            held: self.leases.count() as u32,
        }
    }

    /// Writes this host's heartbeat and refreshes the cached host list.
    pub async fn heartbeat(&self) -> Result<(), ClusterError> {
        self.coordinator.heartbeat(&self.me()).await?;
        let hosts = self.coordinator.hosts().await?;
        *self.peers.lock().unwrap_or_else(|p| p.into_inner()) = hosts;
        Ok(())
    }

    /// Live hosts from the last heartbeat (this one included).
    pub fn live_hosts(&self) -> Vec<HostInfo> {
        let now = now_ms();
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|h| h.is_live(now))
            .cloned()
            .collect()
    }

    /// Re-reads the host list (a host that joined since the last
    /// heartbeat is not in the cached one).
    async fn refresh_hosts(&self) -> Result<Vec<HostInfo>, ClusterError> {
        let hosts = self.coordinator.hosts().await?;
        *self.peers.lock().unwrap_or_else(|p| p.into_inner()) = hosts;
        Ok(self.live_hosts())
    }

    /// The live host `host_id`, from the cached list or, if it is not
    /// there, a fresh one.
    async fn peer(&self, host_id: &str) -> Option<Peer> {
        if host_id == self.settings.host_id {
            return None;
        }
        let find = |hosts: Vec<HostInfo>| {
            hosts
                .into_iter()
                .find(|h| h.host_id == host_id)
                .map(|h| Peer {
                    host_id: h.host_id,
                    url: h.advertise_url,
                })
        };
        match find(self.live_hosts()) {
            Some(p) => Some(p),
            None => find(self.refresh_hosts().await.ok()?),
        }
    }

    /// The live host that owns `session`, when it is not this one. A
    /// session nobody holds (or whose owner's lease ran out) is this
    /// host's to handle.
    pub async fn owner_elsewhere(&self, session: &str) -> Result<Option<Peer>, ClusterError> {
        if !self.is_shared() || self.leases.holds(session) {
            return Ok(None);
        }
        let Some(lease) = self.coordinator.lease(session).await? else {
            return Ok(None);
        };
        if !lease.is_held(now_ms()) {
            return Ok(None);
        }
        match lease.owner.as_deref() {
            Some(owner) if owner != self.settings.host_id => Ok(self.peer(owner).await),
            _ => Ok(None),
        }
    }

    /// The owner of a lease another host holds, if it is live.
    pub async fn peer_of(&self, owner: &str) -> Option<Peer> {
        self.peer(owner).await
    }

    /// The least-loaded other live host with room for a session, from a
    /// fresh host list (loads move between heartbeats; this path is rare).
    pub async fn host_with_room(&self) -> Option<Peer> {
        self.refresh_hosts()
            .await
            .ok()?
            .into_iter()
            .filter(|h| h.host_id != self.settings.host_id && h.room() > 0)
            .max_by_key(|h| (h.room(), std::cmp::Reverse(h.held)))
            .map(|h| Peer {
                host_id: h.host_id,
                url: h.advertise_url,
            })
    }

    /// `GET /cluster`: live hosts with their leases, and this host's actors.
    pub async fn view(&self, local_actors: Vec<String>) -> Result<ClusterView, ClusterError> {
        let now = now_ms();
        let mut hosts = if self.is_shared() {
            self.coordinator.hosts().await?
        } else {
            vec![self.me()]
        };
        hosts.retain(|h| h.is_live(now) || h.host_id == self.settings.host_id);
        if !hosts.iter().any(|h| h.host_id == self.settings.host_id) {
            hosts.push(self.me());
        }
        let leases = if self.is_shared() {
            self.coordinator.leases().await?
        } else {
            self.leases.snapshot()
        };
        let mut out: Vec<HostView> = hosts
            .into_iter()
            .map(|info| {
                let mine = leases
                    .iter()
                    .filter(|l| l.is_held(now) && l.owner.as_deref() == Some(&info.host_id))
                    .cloned()
                    .collect();
                HostView { info, leases: mine }
            })
            .collect();
        out.sort_by(|a, b| a.info.host_id.cmp(&b.info.host_id));
        Ok(ClusterView {
            host_id: self.settings.host_id.clone(),
            coordinator: self.coordinator.kind().to_owned(),
            hosts: out,
            local_actors,
        })
    }
}
