//! Sessions: one actor task per WhatsApp session, and the registry that
//! creates, finds, stops and restores them.
//!
//! The actor owns everything about its session: the provider client, the
//! lifecycle state ([`state`]), the running sync. Every request reaches it
//! through its command channel, so "one sync per session" is a property of
//! a single task, not of locks. Reads (snapshots) go to a small shared view
//! the actor keeps current, so they never wait for the actor.

pub mod spool;
pub mod state;

mod actor;
mod history;

pub use history::SyncRequest;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::browser::Providers;
use crate::cluster::fence::{Fence, FencedStore};
use crate::cluster::leases::{Acquired, LeaseTable};
use crate::domain::{SessionId, SessionSnapshot, SessionStatus, SyncMode, SyncTrigger, now_ms};
use crate::events::relay::RelaySignal;
use crate::hub::Hub;
use crate::plugins::PluginHost;
use crate::storage::{SessionRecord, Store, StoreError};
use crate::sync::SyncOptions;

/// Bounds of `limitPerChat`.
pub const LIMIT_PER_CHAT: std::ops::RangeInclusive<u32> = 1..=10_000;
/// `limitPerChat` when the request names none.
pub const DEFAULT_LIMIT_PER_CHAT: u32 = 100;

/// The body of `POST /whatsapp-web/session/:id`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOptions {
    /// Messages per chat for the automatic sync (1–10,000; default 100).
    pub limit_per_chat: Option<u32>,
    /// Start a sync when the session becomes ready (default true).
    pub auto_sync: Option<bool>,
    /// The automatic syncs neither read nor store messages older than this
    /// many days (1–36,500; default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 36500)]
    pub max_age_days: Option<u32>,
    /// `simulator` or `webdriver`; default `WASYNC_PROVIDER`.
    pub provider: Option<String>,
    /// The simulated account's shape (simulator only): `chats`,
    /// `messagesPerChat`, `qrEveryMs`, `pairingCodeEveryMs`, `scanAfterMs`, `maxQrAttempts`,
    /// `fetchLatencyMs`, `liveMessageEveryMs`, `seed`, `failFetch`, `failAuth`,
    /// `newMessages`, `changes`.
    #[schema(value_type = Option<Object>)]
    pub simulator: Option<serde_json::Value>,
    /// Options of the webdriver provider (all optional): `maxQrAttempts`,
    /// `qrTtlMs`, `pollMs`, `callTimeoutMs`, `pageLoadTimeoutMs`,
    /// `connectTimeoutMs`, and `proxy`: `http://`, `socks5://` or
    /// `socks5h://` with `host:port` and optional percent-encoded
    /// credentials (`socks5h://user:pass@proxy.example:1080`); the session's
    /// browser traffic goes through it. The credentials are stored with the
    /// session (a restart needs them) and never returned or logged.
    #[schema(value_type = Option<Object>)]
    pub webdriver: Option<serde_json::Value>,
    /// Link with a pairing code for this phone number instead of QR codes:
    /// `{"phoneNumber": "+49 151 2345678"}`. The session shows
    /// `pairingCode` (and emits `pairing_code`) where it would show `qr`;
    /// the rest of the lifecycle is the same. Stored with the session, so
    /// a restart before the link asks for a new code, not a QR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<crate::domain::LoginOptions>,
    /// Your own labels, echoed in the session's snapshots, lists and every
    /// event: at most 32 entries; keys 1–64 of letters, digits, `_`, `-`,
    /// `.`; values up to 512 bytes; 4 KiB in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<HashMap<String, String>>)]
    pub metadata: Option<crate::domain::Metadata>,
    /// Keep the body of a message deleted for everyone (default false: the
    /// record stays, `revoked: true`, its body is removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_revoked_bodies: Option<bool>,
}

/// Errors the registry reports to the gateway.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session {0} not found")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("a sync is already running for session {session_id}")]
    SyncRunning { session_id: String, sync_id: String },
    #[error("session {session_id} is not ready (status: {})", status.as_str())]
    NotReady {
        session_id: String,
        status: SessionStatus,
    },
    #[error("the host is shutting down")]
    ShuttingDown,
    /// Another live host holds the session's lease: the command belongs
    /// there (the gateway forwards it).
    #[error("session {session_id} is held by host {owner}")]
    Elsewhere { session_id: String, owner: String },
    /// This host holds `WASYNC_MAX_SESSIONS` sessions already.
    #[error("this host is at its capacity of {max} sessions")]
    AtCapacity { max: u32 },
    /// The cluster's coordination store cannot be reached.
    #[error("cluster coordination unavailable: {0}")]
    Cluster(String),
    /// The provider could not drop the login (`?logout=true`).
    #[error("logout failed: {0}")]
    Logout(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the actors share.
#[derive(Clone)]
pub struct SessionDeps {
    pub store: Arc<dyn Store>,
    pub providers: Arc<Providers>,
    pub hub: Arc<Hub>,
    pub plugins: Arc<dyn PluginHost>,
    pub relay: RelaySignal,
    pub sync: SyncOptions,
    /// Provider for create bodies that name none.
    pub default_provider: String,
    /// Which optional events go to the outbox (`message_received`, the
    /// lifecycle events): the broker's switches and what webhooks want.
    pub events: crate::events::EventGate,
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// The session leases of this host (every session runs under one).
    pub leases: Arc<LeaseTable>,
    /// Sessions this host may hold (`WASYNC_MAX_SESSIONS`).
    pub max_sessions: u32,
    /// Where live messages wait while the store is unreachable
    /// (`<data>/spool`); `None` keeps no spool.
    pub spool_dir: Option<std::path::PathBuf>,
}

/// Commands an actor accepts.
enum Command {
    StartSync {
        trigger: SyncTrigger,
        mode: SyncMode,
        limit_per_chat: u32,
        chat_ids: Option<Vec<String>>,
        /// A history run reads older than this (ms).
        before: Option<i64>,
        max_age_days: Option<u32>,
        reply: oneshot::Sender<Result<String, SessionError>>,
    },
    Stop {
        logout: bool,
        reply: oneshot::Sender<()>,
    },
}

/// The registry's handle on a live actor.
struct Handle {
    view: Arc<Mutex<SessionSnapshot>>,
    commands: mpsc::Sender<Command>,
    /// Cancelled when the actor has exited.
    exited: CancellationToken,
}

fn cluster_err(e: crate::cluster::ClusterError) -> SessionError {
    SessionError::Cluster(e.to_string())
}

/// The sessions of this host.
pub struct Sessions {
    deps: SessionDeps,
    live: Mutex<HashMap<SessionId, Handle>>,
    /// One lock per session id, held through create, stop and restore, so
    /// lifecycle commands of one session run one after the other: a create
    /// waits for a stop in progress (its purge, its browser's exit) instead
    /// of starting a second actor beside the stopping one.
    lifecycle: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<()>>>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sessions {
    pub fn new(deps: SessionDeps, shutdown: CancellationToken) -> Self {
        Self {
            deps,
            live: Mutex::new(HashMap::new()),
            lifecycle: Mutex::new(HashMap::new()),
            shutdown,
            tasks: TaskTracker::new(),
        }
    }

    pub fn deps(&self) -> &SessionDeps {
        &self.deps
    }

    /// Checks a create body; the message names the bad field.
    pub fn validate(&self, opts: &CreateOptions) -> Result<String, SessionError> {
        if let Some(m) = &opts.metadata {
            crate::domain::validate_metadata(m).map_err(SessionError::BadRequest)?;
        }
        if let Some(l) = opts.limit_per_chat
            && !LIMIT_PER_CHAT.contains(&l)
        {
            return Err(SessionError::BadRequest(format!(
                "limitPerChat must be between {} and {}, got {l}",
                LIMIT_PER_CHAT.start(),
                LIMIT_PER_CHAT.end()
            )));
        }
        history::check_max_age(opts.max_age_days)?;
        let name = opts
            .provider
            .clone()
            .unwrap_or_else(|| self.deps.default_provider.clone());
        let provider = self.deps.providers.get(&name).ok_or_else(|| {
            SessionError::BadRequest(format!(
                "unknown provider {name:?}; this host offers {:?}",
                self.deps.providers.names()
            ))
        })?;
        if opts.login.is_some() && !provider.links_with_phone_number() {
            return Err(SessionError::BadRequest(format!(
                "login.phoneNumber: provider {name:?} cannot link with a pairing code; leave login out to link with a QR code"
            )));
        }
        provider
            .validate(&serde_json::to_value(opts).unwrap_or_default())
            .map_err(|e| SessionError::BadRequest(e.to_string()))?;
        Ok(name)
    }

    /// Creates and starts a session. Returns `(created, snapshot)`;
    /// `created` is false when it was already running (idempotent).
    pub async fn create(
        &self,
        id: &SessionId,
        opts: CreateOptions,
    ) -> Result<(bool, SessionSnapshot), SessionError> {
        if self.shutdown.is_cancelled() {
            return Err(SessionError::ShuttingDown);
        }
        let provider = self.validate(&opts)?;
        let _lifecycle = self.lifecycle_lock(id).await;
        if let Some(snap) = self.running_snapshot(id) {
            return Ok((false, snap));
        }
        let fence = self.lease_for_new(id).await?;
        let now = now_ms();
        let created_at = match self.deps.store.get_session(id).await? {
            Some(r) => r.created_at,
            None => now,
        };
        let rec = SessionRecord {
            session_id: id.to_string(),
            status: SessionStatus::Starting.as_str().into(),
            provider: provider.clone(),
            options: serde_json::to_value(&opts).unwrap_or_default(),
            created_at,
            updated_at: now,
            me: None,
            last_sync: None,
            active: true,
            epoch: fence.epoch(),
        };
        self.deps.store.put_session(&rec).await?;
        // Two racing creates: the second finds the first's actor here.
        let mut live = lock(&self.live);
        if let Some(h) = live.get(id)
            && !h.exited.is_cancelled()
        {
            return Ok((false, lock(&h.view).clone()));
        }
        let handle = self.spawn(id.clone(), provider, opts, false, None, fence);
        let snap = lock(&handle.view).clone();
        live.insert(id.clone(), handle);
        Ok((true, snap))
    }

    /// Waits for the session's other lifecycle commands, then holds it off
    /// until the guard is dropped.
    async fn lifecycle_lock(&self, id: &SessionId) -> LifecycleGuard<'_> {
        let m = lock(&self.lifecycle).entry(id.clone()).or_default().clone();
        let guard = m.clone().lock_owned().await;
        LifecycleGuard {
            sessions: self,
            id: id.clone(),
            guard: Some(guard),
            lock: m,
        }
    }

    /// The lease for a session about to start here: refused at capacity
    /// (unless this host already has it) and when another host holds it.
    async fn lease_for_new(&self, id: &SessionId) -> Result<Fence, SessionError> {
        let known = lock(&self.live).contains_key(id);
        if !known && self.held() >= self.deps.max_sessions as usize {
            return Err(SessionError::AtCapacity {
                max: self.deps.max_sessions,
            });
        }
        match self
            .deps
            .leases
            .acquire(id.as_str())
            .await
            .map_err(cluster_err)?
        {
            Acquired::Granted { fence, .. } => Ok(fence),
            Acquired::HeldBy(lease) => Err(SessionError::Elsewhere {
                session_id: id.to_string(),
                owner: lease.owner.unwrap_or_default(),
            }),
        }
    }

    /// Sessions this host holds (live actors, and ended ones it keeps).
    pub fn held(&self) -> usize {
        lock(&self.live).len()
    }

    /// Ids of the sessions with a running actor here.
    pub fn local_actors(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.live)
            .iter()
            .filter(|(_, h)| !h.exited.is_cancelled())
            .map(|(id, _)| id.to_string())
            .collect();
        v.sort();
        v
    }

    fn running_snapshot(&self, id: &SessionId) -> Option<SessionSnapshot> {
        let live = lock(&self.live);
        let h = live.get(id)?;
        let snap = lock(&h.view).clone();
        // A session whose actor ended (disconnected, auth failure) may be
        // started again.
        (!h.exited.is_cancelled()).then_some(snap)
    }

    fn spawn(
        &self,
        id: SessionId,
        provider: String,
        opts: CreateOptions,
        restored: bool,
        resume: Option<crate::domain::SyncRun>,
        fence: Fence,
    ) -> Handle {
        let metadata = opts.metadata.clone().unwrap_or_default();
        let view = Arc::new(Mutex::new(SessionSnapshot {
            session_id: id.to_string(),
            status: SessionStatus::Starting,
            provider: provider.clone(),
            qr: None,
            pairing_code: None,
            me: None,
            sync: None,
            metadata: metadata.clone(),
        }));
        let (tx, rx) = mpsc::channel(32);
        let exited = CancellationToken::new();
        // The actor writes through its lease's fence, and stops (as at a
        // host shutdown: a running sync stays resumable) when it is lost.
        let mut deps = self.deps.clone();
        deps.store = Arc::new(
            FencedStore::new(self.deps.store.clone(), fence.clone()).with_metadata(&metadata),
        );
        // Every event of the session carries its metadata: the live ones
        // through the hub, the durable ones through the store above.
        let registered = self.deps.hub.set_metadata(id.as_str(), &metadata);
        let spool = self.deps.spool_dir.as_ref().and_then(|dir| {
            spool::Spool::open(dir, &id)
                .map_err(|e| tracing::warn!(session_id = %id, error = %e, "no live-message spool"))
                .ok()
        });
        let id_for_hub = id.to_string();
        let actor = actor::Actor {
            id,
            provider,
            opts,
            restored,
            resume,
            deps,
            view: view.clone(),
            shutdown: fence.revoked().clone(),
            host_shutdown: self.shutdown.clone(),
            suspended: None,
            retry_at: None,
            spool,
            synced: false,
        };
        let done = exited.clone();
        let actors = self.deps.metrics.session_actors.clone();
        let hub = self.deps.hub.clone();
        let session = id_for_hub;
        actors.inc();
        self.tasks.spawn(async move {
            actor.run(rx).await;
            if let Some(r) = registered {
                hub.forget_metadata(&session, &r);
            }
            actors.dec();
            done.cancel();
        });
        Handle {
            view,
            commands: tx,
            exited,
        }
    }

    /// The snapshot of a live session, or of a stored one that is stopped.
    pub async fn snapshot(&self, id: &SessionId) -> Result<SessionSnapshot, SessionError> {
        if let Some(s) = self.live_snapshot(id) {
            return Ok(s);
        }
        match self.deps.store.get_session(id).await? {
            Some(rec) => Ok(snapshot_of(&rec)),
            None => Err(SessionError::NotFound(id.to_string())),
        }
    }

    /// Live snapshot for the WebSocket join, without touching the store.
    pub fn live_snapshot(&self, id: &SessionId) -> Option<SessionSnapshot> {
        lock(&self.live).get(id).map(|h| lock(&h.view).clone())
    }

    /// Every session: live ones and stored ones.
    pub async fn list(&self) -> Result<Vec<SessionSnapshot>, SessionError> {
        let mut out: HashMap<String, SessionSnapshot> = self
            .deps
            .store
            .list_sessions()
            .await?
            .iter()
            .map(|r| (r.session_id.clone(), snapshot_of(r)))
            .collect();
        for h in lock(&self.live).values() {
            let s = lock(&h.view).clone();
            out.insert(s.session_id.clone(), s);
        }
        let mut v: Vec<_> = out.into_values().collect();
        v.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        Ok(v)
    }

    /// Starts a manual sync; returns its id. `mode` defaults to full: a
    /// manual sync is what an operator asks for when the store may be off
    /// (a plugin changed, a chat looks wrong), and full rewrites it.
    pub async fn start_sync(
        &self,
        id: &SessionId,
        mode: Option<SyncMode>,
        limit_per_chat: Option<u32>,
        chat_ids: Option<Vec<String>>,
    ) -> Result<String, SessionError> {
        let req = SyncRequest {
            mode,
            limit_per_chat,
            chat_ids,
            ..Default::default()
        };
        self.start_run(id, req).await
    }

    /// Starts a run as `req` asks (a manual sync or a history run; see
    /// [`SyncRequest`]); returns its id.
    pub async fn start_run(
        &self,
        id: &SessionId,
        req: SyncRequest,
    ) -> Result<String, SessionError> {
        req.check()?;
        let SyncRequest {
            mode,
            limit_per_chat,
            chat_ids,
            before,
            max_age_days,
        } = req;
        let commands = lock(&self.live).get(id).map(|h| h.commands.clone());
        let Some(commands) = commands else {
            return match self.deps.store.get_session(id).await? {
                Some(rec) => Err(SessionError::NotReady {
                    session_id: id.to_string(),
                    status: snapshot_of(&rec).status,
                }),
                None => Err(SessionError::NotFound(id.to_string())),
            };
        };
        let (reply, rx) = oneshot::channel();
        let cmd = Command::StartSync {
            trigger: SyncTrigger::Manual,
            mode: mode.unwrap_or_default(),
            limit_per_chat: limit_per_chat.unwrap_or(DEFAULT_LIMIT_PER_CHAT),
            chat_ids,
            before,
            max_age_days,
            reply,
        };
        if commands.send(cmd).await.is_err() {
            return Err(self.not_ready(id).await);
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(self.not_ready(id).await),
        }
    }

    async fn not_ready(&self, id: &SessionId) -> SessionError {
        match self.snapshot(id).await {
            Ok(s) => SessionError::NotReady {
                session_id: id.to_string(),
                status: s.status,
            },
            Err(e) => e,
        }
    }

    /// Stops a session: cancels its sync (reported as `cancelled`), stops
    /// the client (`logout` drops the WhatsApp login), keeps the stored data
    /// unless `purge`.
    pub async fn stop(
        &self,
        id: &SessionId,
        logout: bool,
        purge: bool,
    ) -> Result<(), SessionError> {
        let _lifecycle = self.lifecycle_lock(id).await;
        let known = lock(&self.live).contains_key(id);
        let record = self.deps.store.get_session(id).await?;
        if !known && record.is_none() {
            return Err(SessionError::NotFound(id.to_string()));
        }
        // The stop is written under the session's lease, like everything
        // else about it: held here already, or free (no live owner).
        let fence = match self
            .deps
            .leases
            .acquire(id.as_str())
            .await
            .map_err(cluster_err)?
        {
            Acquired::Granted { fence, .. } => fence,
            Acquired::HeldBy(lease) => {
                return Err(SessionError::Elsewhere {
                    session_id: id.to_string(),
                    owner: lease.owner.unwrap_or_default(),
                });
            }
        };
        let handle = lock(&self.live).remove(id);
        if let Some(h) = handle {
            let (reply, rx) = oneshot::channel();
            if h.commands
                .send(Command::Stop { logout, reply })
                .await
                .is_ok()
            {
                let _ = rx.await;
            }
            h.exited.cancelled().await;
        }
        // The actor logged out if it was running; a session that was not
        // (disconnected, failed, never restored) has no client to do it:
        // its provider drops the stored login itself.
        if logout
            && let Some(provider) = record
                .as_ref()
                .and_then(|r| self.deps.providers.get(&r.provider))
            && let Err(e) = provider.forget_login(id).await
        {
            self.deps.leases.release(id.as_str()).await;
            return Err(SessionError::Logout(e.to_string()));
        }
        let written = if purge {
            self.deps.store.delete_session(id, true).await
        } else {
            match self.deps.store.get_session(id).await {
                Ok(Some(mut rec)) => {
                    rec.active = false;
                    rec.status = SessionStatus::Stopped.as_str().into();
                    rec.updated_at = now_ms();
                    rec.epoch = fence.epoch();
                    self.deps.store.put_session(&rec).await
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            }
        };
        self.deps.leases.release(id.as_str()).await;
        written?;
        Ok(())
    }

    /// Starts, under a fresh lease, sessions of `orphans` (found by
    /// [`Sessions::orphans`]: active, and run by no live host): at start, the ones this host ran before it stopped; later, those of
    /// a host that died or was cut off (a takeover). Takes at most `limit`
    /// (and never past `WASYNC_MAX_SESSIONS`); a sync interrupted on the
    /// previous host resumes from its checkpoint once the session is ready.
    pub async fn restore(
        &self,
        orphans: &[SessionId],
        limit: usize,
    ) -> Result<usize, SessionError> {
        let mut n = 0;
        for id in orphans {
            if n >= limit || self.held() >= self.deps.max_sessions as usize {
                break;
            }
            let _lifecycle = self.lifecycle_lock(id).await;
            if lock(&self.live).contains_key(id) || self.shutdown.is_cancelled() {
                continue;
            }
            // Read under the lock: a stop may have run since [`Sessions::orphans`].
            let Some(rec) = self.deps.store.get_session(id).await?.filter(|r| r.active) else {
                continue;
            };
            let opts: CreateOptions = match serde_json::from_value(rec.options.clone()) {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(session_id = %id, error = %e, "skipping a stored session with unreadable options");
                    continue;
                }
            };
            let (fence, took_over) = match self
                .deps
                .leases
                .acquire(id.as_str())
                .await
                .map_err(cluster_err)?
            {
                Acquired::Granted { fence, took_over } => (fence, took_over),
                Acquired::HeldBy(_) => continue,
            };
            match self.adopt(id, rec, opts, fence, took_over).await {
                Ok(()) => n += 1,
                Err(e) => {
                    tracing::warn!(session_id = %id, error = %e, "could not restore a session");
                    self.deps.leases.release(id.as_str()).await;
                }
            }
        }
        Ok(n)
    }

    /// Active stored sessions that neither a live lease (`taken`) nor this
    /// host holds: what [`Sessions::restore`] may take.
    pub async fn orphans(
        &self,
        taken: &std::collections::HashSet<String>,
    ) -> Result<Vec<SessionId>, SessionError> {
        let records = self.deps.store.list_sessions().await?;
        let live = lock(&self.live);
        Ok(records
            .iter()
            .filter(|r| r.active && !taken.contains(&r.session_id))
            .filter_map(|r| match SessionId::parse(&r.session_id) {
                Ok(id) => (!live.contains_key(&id)).then_some(id),
                Err(_) => {
                    tracing::warn!(session_id = %r.session_id, "skipping a stored session with an invalid id");
                    None
                }
            })
            .collect())
    }

    /// Starts a stored session under `fence`. The record and the
    /// interrupted run are written with the new epoch first, so from here
    /// on the store refuses the previous owner's writes, even if it wakes
    /// up before its own deadline check runs.
    async fn adopt(
        &self,
        id: &SessionId,
        mut rec: SessionRecord,
        opts: CreateOptions,
        fence: Fence,
        took_over: bool,
    ) -> Result<(), SessionError> {
        rec.epoch = fence.epoch();
        self.deps.store.put_session(&rec).await?;
        let mut resume = self
            .deps
            .store
            .latest_sync_run(id)
            .await?
            .filter(|r| r.status == crate::domain::SyncStatus::Running);
        if let Some(run) = &mut resume {
            run.epoch = fence.epoch();
            self.deps.store.put_sync_run(run).await?;
        }
        tracing::info!(session_id = %id, epoch = fence.epoch(), took_over, resume = resume.is_some(), "restoring session");
        let mut live = lock(&self.live);
        if live.contains_key(id) {
            return Ok(());
        }
        let handle = self.spawn(id.clone(), rec.provider.clone(), opts, true, resume, fence);
        live.insert(id.clone(), handle);
        Ok(())
    }

    /// Drops a session whose lease this host lost; its actor is already
    /// stopping (the fence was revoked). Its handle stays until the actor
    /// ended, so this host cannot start the session a second time beside
    /// the one still stopping (a browser on the same profile).
    pub async fn forget(&self, id: &str) {
        let Ok(id) = SessionId::parse(id) else { return };
        let exited = lock(&self.live).get(&id).map(|h| h.exited.clone());
        if let Some(exited) = exited {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(30), exited.cancelled()).await;
        }
        let mut live = lock(&self.live);
        if live.get(&id).is_some_and(|h| h.exited.is_cancelled()) {
            live.remove(&id);
        }
    }

    /// Number of live sessions per status (for metrics).
    pub fn status_counts(&self) -> HashMap<SessionStatus, usize> {
        let mut out = HashMap::new();
        for h in lock(&self.live).values() {
            *out.entry(lock(&h.view).status).or_default() += 1;
        }
        out
    }

    /// Waits for every actor to exit (after the shutdown token fired).
    pub async fn join(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Holds a session's lifecycle lock; the map entry goes with the last user.
struct LifecycleGuard<'a> {
    sessions: &'a Sessions,
    id: SessionId,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for LifecycleGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = lock(&self.sessions.lifecycle);
        // Two references: the map's and this guard's; nobody waits.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.id);
        }
    }
}

fn snapshot_of(rec: &SessionRecord) -> SessionSnapshot {
    let status = SessionStatus::parse(&rec.status).unwrap_or(SessionStatus::Stopped);
    SessionSnapshot {
        session_id: rec.session_id.clone(),
        status: if rec.active {
            status
        } else {
            SessionStatus::Stopped
        },
        provider: rec.provider.clone(),
        qr: None,
        pairing_code: None,
        me: rec.me.clone(),
        sync: None,
        metadata: metadata_of(rec),
    }
}

/// The metadata of a stored session (kept in its create options).
fn metadata_of(rec: &SessionRecord) -> crate::domain::Metadata {
    rec.options
        .get("metadata")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default()
}
