//! The sync engine: `syncChatsWithProgress` as a plain function of ports.
//!
//! Give it a client, a store, a plugin chain and a progress sink and it
//! walks the account (DESIGN §4):
//!
//! 1. fetch the contacts (and group members) once and store them (full
//!    and incremental runs; a deepen does not: `contacts.rs`), then the
//!    chat list, upserting every chat in one write, so `GET .../chats`
//!    shows the whole list while messages still sync;
//! 2. per chat, in order: `before-chat-sync` hooks, fetch the newest
//!    `limitPerChat` messages (retried with backoff; a chat that keeps
//!    failing is recorded as failed and the sync goes on), the message
//!    transformers, a bulk write, `after-chat-sync` hooks;
//! 3. complete the run and queue `session_ready` in one durable step, then
//!    report `done` and `sync_complete`.
//!
//! An *incremental* run ([`SyncMode::Incremental`], the automatic sync of a
//! restored session) reads each chat's [`MessageMark`] (its newest stored
//! message) once before the walk: a chat whose `lastMessageAt` is not past
//! its mark is neither fetched nor written (its two events still go out,
//! 0 messages), and any other chat is fetched only down to its mark
//! ([`WhatsAppClient::fetch_messages_after`]), so plugins, counts and
//! writes see only new messages. The invariants do not change: such chats
//! write nothing, so there is nothing for the checkpoint to run ahead of; a
//! resume re-checks them by their marks, which is cheap.
//!
//! A *history* run ([`SyncMode::History`], `POST .../chats/:chatId/sync`)
//! reads one chat's earlier messages instead of its newest, and
//! `maxAgeDays` keeps any run from reading older messages; see [`history`].
//!
//! Progress is only reported for data that is durably committed. To keep
//! that promise cheap, consecutive small chats are committed together (a
//! *group*: up to [`SyncOptions::group_messages`] messages, a size the
//! store may choose, or [`SyncOptions::group_window`] of wall time), and
//! their events are emitted in order right after the group's commit. The
//! next group is fetched while the previous one commits, and keeps filling
//! past its window until that commit is done. Memory is bounded by two groups,
//! whatever the account size.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::browser::{ClientError, WhatsAppClient};
use crate::domain::{
    Chat, ChatFailure, MessageMark, OutboxEvent, SessionId, SyncComplete, SyncFailed, SyncMode,
    SyncPhase, SyncProgress, SyncRun, SyncStatus, now_ms,
};
use crate::events::relay::RelaySignal;
use crate::plugins::{ChatDecision, ChatSummary, PluginChain, SyncContext};
use crate::storage::{ChatCommit, Store, StoreError, WriteStats};

mod contacts;
mod history;
mod revoked;

/// `sync_failed` reason of a run suspended by a store outage; the session
/// resumes it (same `syncId`) once the store answers again.
pub const STORE_UNAVAILABLE: &str = "store_unavailable";

/// Where the sync reports progress (the session: its snapshot and the hub).
pub trait ProgressSink: Send + Sync {
    fn progress(&self, p: &SyncProgress);
    fn complete(&self, c: &SyncComplete);
    fn failed(&self, f: &SyncFailed);
    /// What a group's commit did to the messages it wrote (for metrics and
    /// tests: an unchanged chat in an incremental run writes none).
    fn written(&self, stats: &WriteStats) {
        let _ = stats;
    }
}

/// Messages per group on a store without a size of its own.
pub const DEFAULT_GROUP_MESSAGES: usize = 2_000;

/// Engine tuning; the defaults suit production.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Attempts per provider call (list, fetch) before giving up.
    pub fetch_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub retry_backoff: Duration,
    /// Attempts per store write that fails for a reason other than the
    /// store being unreachable, before the run fails.
    pub store_attempts: u32,
    /// How long a write keeps being retried while the store is unreachable
    /// (backing off up to `store_max_backoff`) before the run is suspended:
    /// reported as `sync_failed` (`store_unavailable`), left `running` in the
    /// store, and resumed from its checkpoint by the session once the store
    /// answers again.
    pub store_outage_window: Duration,
    /// Ceiling of the delay between two attempts during an outage.
    pub store_max_backoff: Duration,
    /// Commit a group once it holds this many messages; `None` takes the
    /// store's own size ([`Store::group_messages`]), else
    /// [`DEFAULT_GROUP_MESSAGES`].
    pub group_messages: Option<usize>,
    /// Commit a group once it is this old, so slow providers still show
    /// progress promptly.
    pub group_window: Duration,
    /// Which optional events (`sync_failed`, `sync_complete`) are queued in
    /// the outbox: those the broker is switched on for or a webhook wants.
    pub events: crate::events::EventGate,
    /// The session keeps the bodies of messages deleted for everyone
    /// (`keepRevokedBodies`): a message a sync finds revoked keeps the body
    /// stored for it (see `revoked.rs`). Set per session by its actor.
    pub keep_revoked_bodies: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            fetch_attempts: 3,
            retry_backoff: Duration::from_millis(200),
            store_attempts: 3,
            store_outage_window: Duration::from_secs(60),
            store_max_backoff: Duration::from_secs(5),
            group_messages: None,
            group_window: Duration::from_millis(50),
            events: crate::events::EventGate::default(),
            keep_revoked_bodies: false,
        }
    }
}

/// What the engine needs.
#[derive(Clone)]
pub struct SyncDeps {
    pub client: Arc<dyn WhatsAppClient>,
    pub store: Arc<dyn Store>,
    pub chain: Arc<dyn PluginChain>,
    pub sink: Arc<dyn ProgressSink>,
    pub relay: RelaySignal,
    pub options: SyncOptions,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncEnd {
    Completed(SyncRun),
    /// Failed (provider or store); the run is persisted as failed if the
    /// store allowed it.
    Failed(SyncRun),
    /// Stopped by the session (`DELETE`), reported as `sync_failed`
    /// `cancelled`.
    Cancelled(SyncRun),
    /// The host is shutting down (or the session's lease moved to another
    /// host): nothing is reported or persisted, so the run resumes from its
    /// checkpoint at the next start, or on the host that took the session.
    Interrupted,
    /// The store stayed unreachable past the outage window (or the run's
    /// completion could not be written): reported as `sync_failed`
    /// (`store_unavailable`) but left `running` in the store, never marked
    /// failed, so the session resumes it from its checkpoint once the store
    /// is back. A run whose `session_ready` may already be queued is never
    /// downgraded to failed this way.
    Suspended(SyncRun),
}

/// Why a step stopped the run.
enum Stop {
    Cancelled,
    Shutdown,
    /// The store stayed unreachable past the outage window.
    StoreDown(String),
    /// The session's lease moved to another host.
    Fenced,
    Failed(String),
}

/// What a store write that gave up ended with.
enum StoreStop {
    Down(String),
    Fenced,
    Failed(String),
    Shutdown,
}

impl From<StoreStop> for Stop {
    fn from(s: StoreStop) -> Self {
        match s {
            StoreStop::Down(e) => Stop::StoreDown(e),
            StoreStop::Fenced => Stop::Fenced,
            StoreStop::Failed(e) => Stop::Failed(e),
            StoreStop::Shutdown => Stop::Shutdown,
        }
    }
}

/// Retries a store write: a write the store refused for a reason of its
/// own up to `store_attempts` times, an unreachable store for up to
/// `store_outage_window`, a fenced one never. Stops early at `shutdown`.
async fn retry_store<T, F, Fut>(
    options: &SyncOptions,
    what: &str,
    shutdown: &CancellationToken,
    mut call: F,
) -> Result<T, StoreStop>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let started = Instant::now();
    let mut delay = options.retry_backoff;
    let mut failures = 0u32;
    loop {
        let e = match call().await {
            Ok(v) => return Ok(v),
            Err(StoreError::Fenced(e)) => {
                tracing::warn!(error = %e, "{what}: fenced off; the session moved to another host");
                return Err(StoreStop::Fenced);
            }
            Err(e) => e,
        };
        let unavailable = matches!(e, StoreError::Unavailable(_));
        failures += 1;
        if unavailable && started.elapsed() >= options.store_outage_window {
            return Err(StoreStop::Down(format!("{what}: {e}")));
        }
        if !unavailable && failures >= options.store_attempts.max(1) {
            return Err(StoreStop::Failed(format!("{what}: {e}")));
        }
        tracing::warn!(attempt = failures, error = %e, retry_in = ?delay, "{what} failed; retrying");
        tokio::select! {
            _ = shutdown.cancelled() => return Err(StoreStop::Shutdown),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(options.store_max_backoff);
    }
}

/// The events of chats fetched but not yet committed.
struct Group {
    commits: Vec<ChatCommit>,
    /// Per chat of the group: (position, chat id, messages stored, event
    /// seqs of its `chat` and `messages` events).
    chats: Vec<(u32, String, u64, u64, u64)>,
    messages: usize,
    opened: Instant,
    /// A chat of the group changed the run beyond its position (failed,
    /// skipped by a plugin): the run record must be written with it.
    noted: bool,
}

impl Group {
    fn new() -> Self {
        Self {
            commits: Vec::new(),
            chats: Vec::new(),
            messages: 0,
            opened: Instant::now(),
            noted: false,
        }
    }
}

/// Creates the record of a new run.
pub fn new_run(
    session: &SessionId,
    trigger: crate::domain::SyncTrigger,
    limit_per_chat: u32,
    chat_ids: Option<Vec<String>>,
) -> SyncRun {
    SyncRun {
        sync_id: uuid::Uuid::now_v7().to_string(),
        session_id: session.to_string(),
        trigger,
        mode: SyncMode::Full,
        limit_per_chat,
        chat_ids,
        status: SyncStatus::Running,
        started_at: now_ms(),
        finished_at: None,
        n_chats: 0,
        current_chat: 0,
        checkpoint: 0,
        checkpoint_chat_id: None,
        total_messages_synced: 0,
        next_seq: 0,
        failed_chats: vec![],
        skipped_chats: 0,
        quarantined: 0,
        reason: None,
        epoch: 0,
        checkpoint_synced_at: None,
        before: None,
        max_age_days: None,
    }
}

/// How long a finished run took, as `sync_complete` reports it (the same
/// figure on the WebSocket and in a webhook).
fn duration_ms(run: &SyncRun) -> u64 {
    (run.finished_at.unwrap_or_else(now_ms) - run.started_at).max(0) as u64
}

/// Runs (or resumes) `run` to its end.
#[tracing::instrument(name = "sync.run", skip_all, fields(session_id = %run.session_id, sync_id = %run.sync_id))]
pub async fn run(
    deps: &SyncDeps,
    mut run: SyncRun,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
) -> SyncEnd {
    let started = Instant::now();
    match walk(deps, &mut run, cancel, shutdown).await {
        Ok(()) => {
            let end = SyncComplete {
                session_id: run.session_id.clone(),
                sync_id: run.sync_id.clone(),
                n_chats: run.n_chats,
                total_messages_synced: run.total_messages_synced,
                duration_ms: duration_ms(&run),
            };
            tracing::info!(
                n_chats = run.n_chats,
                messages = run.total_messages_synced,
                failed_chats = run.failed_chats.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "sync complete"
            );
            deps.sink.complete(&end);
            SyncEnd::Completed(run)
        }
        Err(Stop::Shutdown) | Err(Stop::Fenced) => SyncEnd::Interrupted,
        Err(Stop::StoreDown(reason)) => {
            tracing::warn!(%reason, "store unreachable: sync suspended, it resumes when the store is back");
            deps.sink.failed(&SyncFailed {
                session_id: run.session_id.clone(),
                sync_id: run.sync_id.clone(),
                reason: STORE_UNAVAILABLE.into(),
                current_chat: run.current_chat,
            });
            SyncEnd::Suspended(run)
        }
        Err(Stop::Cancelled) => {
            run.status = SyncStatus::Cancelled;
            run.reason = Some("cancelled".into());
            run.finished_at = Some(now_ms());
            if let Err(e) = deps.store.put_sync_run(&run).await {
                tracing::warn!(error = %e, "could not record the cancelled run");
            }
            deps.sink.failed(&SyncFailed {
                session_id: run.session_id.clone(),
                sync_id: run.sync_id.clone(),
                reason: "cancelled".into(),
                current_chat: run.current_chat,
            });
            SyncEnd::Cancelled(run)
        }
        Err(Stop::Failed(reason)) => {
            tracing::warn!(%reason, "sync failed");
            run.status = SyncStatus::Failed;
            run.reason = Some(reason.clone());
            run.finished_at = Some(now_ms());
            let failed = SyncFailed {
                session_id: run.session_id.clone(),
                sync_id: run.sync_id.clone(),
                reason,
                current_chat: run.current_chat,
            };
            let wanted = deps
                .options
                .events
                .wants(crate::events::SYNC_FAILED, &run.session_id);
            let event = wanted.then(|| {
                OutboxEvent::for_run(
                    crate::events::SYNC_FAILED,
                    &SessionId::parse(&run.session_id).expect("run of a valid session"),
                    &run.sync_id,
                    serde_json::to_value(&failed).unwrap_or_default(),
                )
            });
            match deps.store.finish_sync(&run, event.as_slice()).await {
                Ok(()) => deps.relay.kick(),
                Err(e) => tracing::warn!(error = %e, "could not record the failed run"),
            }
            deps.sink.failed(&failed);
            SyncEnd::Failed(run)
        }
    }
}

fn emit(
    deps: &SyncDeps,
    run: &SyncRun,
    seq: u64,
    phase: SyncPhase,
    chat_id: Option<String>,
    messages_synced: u64,
) {
    deps.sink.progress(&SyncProgress {
        session_id: run.session_id.clone(),
        sync_id: run.sync_id.clone(),
        seq,
        n_chats: run.n_chats,
        current_chat: run.current_chat,
        chat_id,
        messages_synced,
        total_messages_synced: run.total_messages_synced,
        phase,
        done: phase == SyncPhase::Done,
        contacts: None,
    });
}

/// Waits for `fut` unless the run is cancelled or the host stops first.
async fn guarded<T>(
    fut: impl Future<Output = T>,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<T, Stop> {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Err(Stop::Shutdown),
        _ = cancel.cancelled() => Err(Stop::Cancelled),
        v = fut => Ok(v),
    }
}

/// Retries a provider call with exponential backoff.
async fn with_retry<T, F, Fut>(
    deps: &SyncDeps,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
    mut call: F,
) -> Result<Result<T, (u32, ClientError)>, Stop>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let attempts = deps.options.fetch_attempts.max(1);
    let mut delay = deps.options.retry_backoff;
    for attempt in 1..=attempts {
        match guarded(call(), cancel, shutdown).await? {
            Ok(v) => return Ok(Ok(v)),
            Err(e @ ClientError::Disconnected(_)) | Err(e @ ClientError::Unsupported(_)) => {
                return Ok(Err((attempt, e)));
            }
            Err(e) if attempt == attempts => return Ok(Err((attempt, e))),
            Err(e) => {
                tracing::debug!(attempt, error = %e, "provider call failed; retrying");
                guarded(tokio::time::sleep(delay), cancel, shutdown).await?;
                delay *= 2;
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// Retries a store write ([`retry_store`]) unless the run is cancelled or
/// the host stops first.
async fn store_retry<T, F, Fut>(
    deps: &SyncDeps,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
    what: &str,
    call: F,
) -> Result<T, Stop>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    guarded(
        retry_store(&deps.options, what, shutdown, call),
        cancel,
        shutdown,
    )
    .await?
    .map_err(Stop::from)
}

async fn walk(
    deps: &SyncDeps,
    run: &mut SyncRun,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<(), Stop> {
    let sid = SessionId::parse(&run.session_id)
        .map_err(|e| Stop::Failed(format!("invalid session id: {e}")))?;
    let resuming = run.next_seq > 0;
    let ctx = SyncContext {
        session_id: run.session_id.clone(),
        sync_id: run.sync_id.clone(),
        trigger: run.trigger.as_str().to_owned(),
    };

    // A deepen reads one chat further back: the address book is the
    // business of the account's syncs, not of it.
    let with_contacts = run.mode != SyncMode::History;
    let began = Instant::now();
    let book = if with_contacts {
        contacts::fetch_and_store(deps, &sid, cancel, shutdown).await?
    } else {
        crate::domain::AddressBook::default()
    };
    let n_contacts = book.contacts.len() as u64;

    let mut chats: Vec<Chat> =
        match with_retry(deps, cancel, shutdown, || deps.client.list_chats()).await? {
            Ok(c) => c,
            Err((_, e)) => return Err(Stop::Failed(format!("listing chats: {e}"))),
        };
    if let Some(only) = &run.chat_ids {
        chats.retain(|c| only.contains(&c.id));
    }
    run.n_chats = chats.len() as u32;
    store_retry(deps, cancel, shutdown, "storing the chat list", || {
        deps.store.upsert_chats(&sid, &chats)
    })
    .await?;
    contacts::store_participants(deps, &sid, &book, &chats, cancel, shutdown).await?;
    drop(book);
    tracing::debug!(
        elapsed_ms = began.elapsed().as_millis() as u64,
        "contacts, chat list and members stored"
    );

    // A resumed run goes on by membership, not by position: the chat list
    // is fetched afresh and its order may have changed while the run was
    // interrupted (new messages move chats up), so it skips exactly the
    // chats this run already wrote (`syncedAt` since the run started) and
    // those it recorded as failed, and syncs every other chat of the list.
    let done = if resuming {
        // Runs written before `checkpointSyncedAt` existed: every chat
        // synced since the start counts.
        let until = run.checkpoint_synced_at.unwrap_or(i64::MAX);
        let mut done = store_retry(deps, cancel, shutdown, "reading the synced chats", || {
            synced_between(&*deps.store, &sid, run.started_at, until)
        })
        .await?;
        done.extend(run.failed_chats.iter().map(|f| f.chat_id.clone()));
        tracing::info!(
            done = done.len(),
            of = chats.len(),
            "resuming sync: chats this run already wrote are skipped"
        );
        done
    } else {
        let seq = run.next_seq;
        run.next_seq += if with_contacts { 2 } else { 1 };
        store_retry(deps, cancel, shutdown, "recording the run", || {
            deps.store.put_sync_run(run)
        })
        .await?;
        emit(deps, run, seq, SyncPhase::Start, None, 0);
        if with_contacts {
            contacts::emit(deps, run, seq + 1, n_contacts);
        }
        HashSet::new()
    };

    // An incremental run reads where each chat's stored messages end, once
    // per run (or resume), before the walk.
    let marks = match run.mode {
        SyncMode::Full | SyncMode::History => HashMap::new(),
        SyncMode::Incremental => {
            incremental_marks(deps, &sid, &chats, &done, cancel, shutdown).await?
        }
    };
    tracing::debug!(
        elapsed_ms = began.elapsed().as_millis() as u64,
        "marks read"
    );
    let reads = store_retry(deps, cancel, shutdown, "reading the stored history", || {
        history::Reads::prepare(deps, &sid, run, &chats, &done)
    })
    .await?;

    // Commits overlap with fetching the next group; whatever happens, the
    // commit in flight is awaited before the run ends, so the run record it
    // writes can never land after the run's final status.
    let mut pending: Option<InFlight> = None;
    let walked = walk_chats(
        deps,
        &sid,
        run,
        &chats,
        &done,
        &marks,
        &reads,
        &ctx,
        cancel,
        shutdown,
        &mut pending,
    )
    .await;
    let drained = match pending.take() {
        Some(p) => finish_flush(deps, p).await,
        None => Ok(()),
    };
    walked?;
    drained?;
    tracing::debug!(
        elapsed_ms = began.elapsed().as_millis() as u64,
        "chats walked"
    );

    // Complete the run and queue `session_ready` in one durable step: the
    // event exists if and only if everything it announces is stored.
    run.status = SyncStatus::Completed;
    run.finished_at = Some(now_ms());
    run.current_chat = run.n_chats;
    let done_seq = run.next_seq;
    run.next_seq += 1;
    let event = OutboxEvent::for_run(
        "session_ready",
        &sid,
        &run.sync_id,
        serde_json::json!({
            "sessionId": run.session_id,
            "syncId": run.sync_id,
            "chats": chats.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            "nChats": run.n_chats,
            "contacts": n_contacts,
            "totalMessagesSynced": run.total_messages_synced,
            "failedChats": run.failed_chats.iter().map(|f| f.chat_id.as_str()).collect::<Vec<_>>(),
        }),
    );
    // A webhook that wants `sync_complete` gets it from the same step, with
    // the data the WebSocket's `sync_complete` carries.
    let mut events = vec![event];
    if deps
        .options
        .events
        .wants(crate::events::SYNC_COMPLETE, &run.session_id)
    {
        let complete = SyncComplete {
            session_id: run.session_id.clone(),
            sync_id: run.sync_id.clone(),
            n_chats: run.n_chats,
            total_messages_synced: run.total_messages_synced,
            duration_ms: duration_ms(run),
        };
        let mut complete = OutboxEvent::for_run(
            crate::events::SYNC_COMPLETE,
            &sid,
            &run.sync_id,
            serde_json::to_value(&complete).unwrap_or_default(),
        );
        // After `session_ready` in the outbox's order (time, then id), as
        // on the WebSocket: a millisecond later if they share one.
        complete.created_at = complete.created_at.max(events[0].created_at + 1);
        events.push(complete);
    }
    // A completion that cannot be written suspends the run rather than
    // failing it: its `session_ready` may be queued already (the MongoDB
    // store queues the event first), so the run must end completed, by a
    // resume that writes the same event id again.
    match store_retry(deps, cancel, shutdown, "completing the run", || {
        deps.store.finish_sync(run, &events)
    })
    .await
    {
        Ok(()) => {}
        Err(Stop::Failed(e)) => return Err(Stop::StoreDown(e)),
        Err(other) => return Err(other),
    }
    deps.relay.kick();
    emit(deps, run, done_seq, SyncPhase::Done, None, 0);
    Ok(())
}

/// Where an incremental run starts in each chat to walk: first the time
/// of each chat's newest stored message, for the whole list in one cheap
/// read; then the exact mark (every id at that time) only of the chats
/// whose last activity is newer, the only ones the run reads. A chat that
/// has not moved gets a mark of its time alone, which only the walk's
/// "nothing new" test looks at.
async fn incremental_marks(
    deps: &SyncDeps,
    sid: &SessionId,
    chats: &[Chat],
    done: &HashSet<String>,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<HashMap<String, MessageMark>, Stop> {
    let ids: Vec<String> = chats
        .iter()
        .filter(|c| !done.contains(&c.id))
        .map(|c| c.id.clone())
        .collect();
    let newest = store_retry(deps, cancel, shutdown, "reading the stored marks", || {
        deps.store.newest_message_times(sid, &ids)
    })
    .await?;
    let mut unmoved = HashMap::new();
    let mut moved = Vec::new();
    for chat in chats.iter().filter(|c| !done.contains(&c.id)) {
        match (newest.get(&chat.id), chat.last_message_at) {
            (Some(&t), Some(last)) if last <= t => {
                unmoved.insert(
                    chat.id.clone(),
                    MessageMark {
                        timestamp: t,
                        ids: Vec::new(),
                    },
                );
            }
            _ => moved.push(chat.id.clone()),
        }
    }
    let mut marks = store_retry(deps, cancel, shutdown, "reading the stored marks", || {
        deps.store.message_marks(sid, &moved)
    })
    .await?;
    marks.extend(unmoved);
    Ok(marks)
}

/// The chats of `sid` whose messages a sync wrote between `since` and
/// `until` (ms, both included).
async fn synced_between(
    store: &dyn Store,
    sid: &SessionId,
    since: i64,
    until: i64,
) -> Result<HashSet<String>, StoreError> {
    let mut out = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list_chats(sid, 1000, cursor.as_deref()).await?;
        out.extend(
            page.chats
                .iter()
                .filter(|c| c.synced_at.is_some_and(|t| t >= since && t <= until))
                .map(|c| c.chat.id.clone()),
        );
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// Walks the chats not in `done`, committing them in groups.
#[allow(clippy::too_many_arguments)]
async fn walk_chats(
    deps: &SyncDeps,
    sid: &SessionId,
    run: &mut SyncRun,
    chats: &[Chat],
    done: &HashSet<String>,
    marks: &HashMap<String, MessageMark>,
    reads: &history::Reads,
    ctx: &SyncContext,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
    pending: &mut Option<InFlight>,
) -> Result<(), Stop> {
    let mut group = Group::new();
    let last = chats.iter().rposition(|c| !done.contains(&c.id));
    for (i, chat) in chats.iter().enumerate() {
        if done.contains(&chat.id) {
            continue;
        }
        if shutdown.is_cancelled() {
            return Err(Stop::Shutdown);
        }
        if cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        let position = i as u32 + 1;
        let chat_seq = run.next_seq;
        let messages_seq = run.next_seq + 1;
        run.next_seq += 2;

        // Incremental: a chat whose last activity is not newer than its
        // newest stored message has nothing to read. It still reports its
        // two events (0 messages), writes nothing and opens no plugin
        // scope. A chat without a `lastMessageAt` is read from its mark.
        let mark = match run.mode {
            SyncMode::Full | SyncMode::History => None,
            SyncMode::Incremental => marks.get(&chat.id),
        };
        // History: a chat that holds enough messages is not read either.
        let plan = reads.plan(&chat.id);
        let unchanged =
            mark.is_some_and(|mark| chat.last_message_at.is_some_and(|t| t <= mark.timestamp));
        if unchanged || plan.is_some_and(|p| p.want == 0) {
            group
                .chats
                .push((position, chat.id.clone(), 0, chat_seq, messages_seq));
            flush_if_due(deps, sid, run, &mut group, i, last, shutdown, pending).await?;
            continue;
        }

        let mut scope = deps.chain.chat_scope(ctx, chat).await;
        let limit = match scope.before_chat_sync().await {
            ChatDecision::Skip { reason } => {
                tracing::debug!(chat_id = %chat.id, %reason, "chat skipped by a plugin");
                run.skipped_chats += 1;
                group.noted = true;
                group
                    .chats
                    .push((position, chat.id.clone(), 0, chat_seq, messages_seq));
                None
            }
            ChatDecision::Proceed {
                max_messages,
                since_ms,
            } => Some((
                max_messages.map_or(run.limit_per_chat, |m| m.min(run.limit_per_chat)),
                since_ms,
            )),
        };

        if let Some((limit, since_ms)) = limit {
            let fetched = with_retry(deps, cancel, shutdown, || async move {
                match (mark, plan) {
                    (Some(mark), _) => deps.client.fetch_messages_after(chat, limit, mark).await,
                    (None, Some(plan)) => {
                        history::fetch(deps, chat, plan, limit, reads.cutoff).await
                    }
                    (None, None) => deps.client.fetch_messages(chat, limit).await,
                }
            })
            .await?;
            match fetched {
                Err((attempts, e)) => {
                    tracing::warn!(chat_id = %chat.id, attempts, error = %e, "chat failed; going on");
                    run.failed_chats.push(ChatFailure {
                        chat_id: chat.id.clone(),
                        attempts,
                        reason: e.to_string(),
                    });
                    group.noted = true;
                    group
                        .chats
                        .push((position, chat.id.clone(), 0, chat_seq, messages_seq));
                    scope
                        .after_chat_sync(ChatSummary {
                            failed: 1,
                            ..Default::default()
                        })
                        .await;
                }
                Ok(mut messages) => {
                    if let Some(since) = since_ms {
                        messages.retain(|m| m.timestamp >= since);
                    }
                    reads.trim(&mut messages);
                    let fetched_n = messages.len() as u32;
                    let mut out = if deps.chain.is_empty() {
                        crate::plugins::Transformed {
                            keep: messages,
                            ..Default::default()
                        }
                    } else {
                        scope.transform(messages).await
                    };
                    // A stop during the plugin calls cut them short: what
                    // they answered is not this chat's true outcome, so the
                    // chat is not committed (a resumed run syncs it again).
                    if shutdown.is_cancelled() {
                        return Err(Stop::Shutdown);
                    }
                    if cancel.is_cancelled() {
                        return Err(Stop::Cancelled);
                    }
                    if deps.options.keep_revoked_bodies {
                        revoked::keep_stored_bodies(deps, sid, &mut out.keep, cancel, shutdown)
                            .await?;
                    }
                    let stored = out.keep.len() as u64;
                    run.quarantined += out.quarantined.len() as u64;
                    group.messages += out.keep.len() + out.quarantined.len();
                    // Incremental reads that found nothing new write
                    // nothing (a full sync still stamps `syncedAt`).
                    let nothing = out.keep.is_empty() && out.quarantined.is_empty();
                    if run.mode == SyncMode::Full || !nothing {
                        group.commits.push(ChatCommit {
                            chat_id: chat.id.clone(),
                            messages: out.keep,
                            quarantined: out.quarantined,
                            synced_at: now_ms(),
                        });
                    }
                    group
                        .chats
                        .push((position, chat.id.clone(), stored, chat_seq, messages_seq));
                    scope
                        .after_chat_sync(ChatSummary {
                            fetched: fetched_n,
                            stored: stored as u32,
                            modified: out.modified as u32,
                            dropped: out.dropped as u32,
                            failed: 0,
                        })
                        .await;
                }
            }
        }
        drop(scope);
        flush_if_due(deps, sid, run, &mut group, i, last, shutdown, pending).await?;
    }
    Ok(())
}

/// Commits the group when it is full, old, or holds the last chat to walk
/// (`i` is the chat just added, `last` the last one the walk visits).
#[allow(clippy::too_many_arguments)]
async fn flush_if_due(
    deps: &SyncDeps,
    sid: &SessionId,
    run: &mut SyncRun,
    group: &mut Group,
    i: usize,
    last: Option<usize>,
    shutdown: &CancellationToken,
    pending: &mut Option<InFlight>,
) -> Result<(), Stop> {
    // A commit that is done reports its chats now, not at the next flush.
    if pending.as_ref().is_some_and(|p| p.task.is_finished())
        && let Some(p) = pending.take()
    {
        finish_flush(deps, p).await?;
    }
    let limit = deps
        .options
        .group_messages
        .or_else(|| deps.store.group_messages())
        .unwrap_or(DEFAULT_GROUP_MESSAGES)
        .max(1);
    let full = group.messages >= limit;
    // A group past its window while the previous commit still runs keeps
    // filling (up to `limit`) instead of waiting for it: its chats could
    // not be reported before that commit anyway, and a store slower than
    // the provider gets larger commits, with fewer fixed costs.
    let slow = pending.is_none() && group.opened.elapsed() >= deps.options.group_window;
    if full || slow || Some(i) == last {
        if let Some(p) = pending.take() {
            finish_flush(deps, p).await?;
        }
        *pending = start_flush(deps, sid, run, group, shutdown);
        // Overlap the commit with the next fetch only when the provider
        // is fast (the group filled up); a slow provider's progress is
        // reported as soon as it is durable.
        if !full && let Some(p) = pending.take() {
            finish_flush(deps, p).await?;
        }
    }
    Ok(())
}

/// A group whose commit is under way.
struct InFlight {
    task: tokio::task::JoinHandle<Result<WriteStats, StoreStop>>,
    chats: Vec<(u32, String, u64, u64, u64)>,
    /// The run as this commit writes it.
    run: SyncRun,
    before_total: u64,
}

/// Starts committing a group (messages, chat counters and the checkpoint
/// in one durable step) in the background.
fn start_flush(
    deps: &SyncDeps,
    sid: &SessionId,
    run: &mut SyncRun,
    group: &mut Group,
    shutdown: &CancellationToken,
) -> Option<InFlight> {
    if group.chats.is_empty() {
        return None;
    }
    let g = std::mem::replace(group, Group::new());
    let (last_pos, last_id, ..) = g.chats.last().cloned().expect("non-empty group");
    let before_total = run.total_messages_synced;
    let added: u64 = g.chats.iter().map(|c| c.2).sum();
    // The checkpoint written with the data already counts the group, and
    // bounds which chats a resume may take as written (see
    // `SyncRun::checkpoint_synced_at`); it never goes back.
    let newest = g.commits.iter().map(|c| c.synced_at).max();
    run.checkpoint_synced_at = run.checkpoint_synced_at.max(newest);
    run.checkpoint = last_pos;
    run.checkpoint_chat_id = Some(last_id);
    run.current_chat = last_pos;
    run.total_messages_synced = before_total + added;
    let snapshot = run.clone();
    let store = deps.store.clone();
    let sid = sid.clone();
    let options = deps.options.clone();
    let shutdown = shutdown.clone();
    let commits = g.commits;
    let committed = snapshot.clone();
    // An incremental group of chats with nothing new has nothing to make
    // durable: its events go out without a write (the run record catches
    // up at the next commit or the run's end; a resume re-checks those
    // chats by their marks).
    if commits.is_empty() && !g.noted && snapshot.mode == SyncMode::Incremental {
        return Some(InFlight {
            task: tokio::spawn(async { Ok(WriteStats::default()) }),
            chats: g.chats,
            run: snapshot,
            before_total,
        });
    }
    let task = tokio::spawn(async move {
        retry_store(&options, "writing messages", &shutdown, || {
            store.commit_chats(&sid, &commits, &committed)
        })
        .await
        .map(|per_chat| {
            per_chat
                .iter()
                .fold(WriteStats::default(), |a, s| a.plus(*s))
        })
    });
    Some(InFlight {
        task,
        chats: g.chats,
        run: snapshot,
        before_total,
    })
}

/// Waits for a group's commit, then reports its chats in order, one chat at
/// a time, as they would have been reported without grouping.
async fn finish_flush(deps: &SyncDeps, p: InFlight) -> Result<(), Stop> {
    match p.task.await {
        Ok(Ok(stats)) => deps.sink.written(&stats),
        Ok(Err(stop)) => return Err(stop.into()),
        Err(e) => return Err(Stop::Failed(format!("writing messages: {e}"))),
    }
    let mut view = p.run;
    let mut total = p.before_total;
    for (position, chat_id, stored, chat_seq, messages_seq) in p.chats {
        view.current_chat = position;
        view.total_messages_synced = total;
        emit(
            deps,
            &view,
            chat_seq,
            SyncPhase::Chat,
            Some(chat_id.clone()),
            0,
        );
        total += stored;
        view.total_messages_synced = total;
        emit(
            deps,
            &view,
            messages_seq,
            SyncPhase::Messages,
            Some(chat_id),
            stored,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
