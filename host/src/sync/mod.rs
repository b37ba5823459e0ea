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

use crate::browser::WhatsAppClient;
use crate::domain::{
    Chat, OutboxEvent, SessionId, SyncComplete, SyncFailed, SyncMode, SyncPhase, SyncProgress,
    SyncRun, SyncStatus, now_ms,
};
use crate::events::relay::RelaySignal;
use crate::plugins::{PluginChain, SyncContext};
use crate::storage::{Store, StoreError, WriteStats};

mod contacts;
mod groups;
mod history;
mod marks;
mod retry;
mod revoked;
mod walk;

use self::groups::{InFlight, finish_flush};
use self::marks::incremental_marks;
use self::retry::{store_retry, with_retry};
use self::walk::walk_chats;

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
    let (n_contacts, groups) = if with_contacts {
        contacts::fetch_and_store(deps, &sid, cancel, shutdown).await?
    } else {
        (0, Vec::new())
    };

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
    contacts::store_participants(deps, &sid, groups, &chats, cancel, shutdown).await?;
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
    // What the walk needed goes before the completion's writes and the
    // relay's read of the event allocate theirs: for a large account the
    // chat list alone is a few MB (10,000 chats), and the event as large.
    drop((chats, done, marks, reads));
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
    // Stored: the relay reads the events back from the store, so this copy
    // goes before it does.
    drop(events);
    deps.relay.kick();
    emit(deps, run, done_seq, SyncPhase::Done, None, 0);
    Ok(())
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

#[cfg(test)]
mod tests;
