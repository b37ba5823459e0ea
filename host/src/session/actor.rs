//! The session actor: one task per session, driven by its command channel,
//! its provider's events and its running sync.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::spool::{Spool, SpoolRecord};
use super::state::{Effect, Input, State, transition};
use super::{Command, CreateOptions, DEFAULT_LIMIT_PER_CHAT, SessionDeps, SessionError, lock};
use crate::browser::{ClientEvent, WhatsAppClient};
use crate::domain::{
    OutboxEvent, ServerEvent, SessionId, SessionSnapshot, StoredMessage, SyncComplete, SyncFailed,
    SyncMode, SyncProgress, SyncRun, SyncStatus, SyncTrigger, SyncView, now_ms,
};
use crate::plugins::{ChatDecision, SyncContext};
use crate::storage::StoreError;
use crate::sync::{self, ProgressSink, SyncDeps, SyncEnd};

mod changes;

pub(super) struct Actor {
    pub id: SessionId,
    pub provider: String,
    pub opts: CreateOptions,
    pub restored: bool,
    pub resume: Option<SyncRun>,
    pub deps: SessionDeps,
    pub view: Arc<Mutex<SessionSnapshot>>,
    /// Fires at the host's shutdown and when the session's lease is lost.
    pub shutdown: CancellationToken,
    /// The host's own shutdown: tells a clean stop (the login is saved for
    /// whichever host runs the session next) from a lost lease (the new
    /// owner has it: nothing more is written from here).
    pub host_shutdown: CancellationToken,
    /// A run a store outage suspended; resumed once the store answers.
    pub suspended: Option<SyncRun>,
    /// When to try the store again (a suspended run, a spool to store).
    pub retry_at: Option<tokio::time::Instant>,
    /// Live messages the store did not take yet.
    pub spool: Option<Spool>,
    /// A sync of this actor started already: the next automatic one (after
    /// a reconnect) is incremental, as after a restore.
    pub synced: bool,
}

/// How long the actor waits before asking an unreachable store again.
const STORE_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

struct Running {
    sync_id: String,
    cancel: CancellationToken,
    /// Ends a plugin call in progress: fires with the run's cancel, the
    /// host's shutdown and a lost lease.
    plugins_stop: CancellationToken,
    task: JoinHandle<SyncEnd>,
}

/// Reports sync progress to the session's view and room.
struct Sink {
    id: String,
    view: Arc<Mutex<SessionSnapshot>>,
    hub: Arc<crate::hub::Hub>,
    metrics: Arc<crate::telemetry::Metrics>,
}

impl Sink {
    fn set_sync(&self, f: impl FnOnce(&mut Option<SyncView>)) {
        f(&mut lock(&self.view).sync);
    }
}

impl ProgressSink for Sink {
    fn written(&self, stats: &crate::storage::WriteStats) {
        for (outcome, n) in [
            ("inserted", stats.inserted),
            ("updated", stats.updated),
            ("unchanged", stats.unchanged),
        ] {
            if n > 0 {
                self.metrics
                    .sync_message_writes
                    .get_or_create(&crate::telemetry::OutcomeLabel {
                        outcome: outcome.into(),
                    })
                    .inc_by(n);
            }
        }
    }

    fn progress(&self, p: &SyncProgress) {
        if p.phase == crate::domain::SyncPhase::Messages {
            self.metrics.messages_synced.inc_by(p.messages_synced);
        }
        self.set_sync(|s| {
            *s = Some(SyncView {
                status: SyncStatus::Running,
                progress: p.clone(),
            })
        });
        self.hub
            .publish(&self.id, &ServerEvent::SyncChats(p.clone()));
    }

    fn complete(&self, c: &SyncComplete) {
        self.metrics.syncs_completed.inc();
        self.metrics
            .sync_duration
            .observe(c.duration_ms as f64 / 1000.0);
        self.set_sync(|s| {
            if let Some(v) = s {
                v.status = SyncStatus::Completed;
            }
        });
        self.hub
            .publish(&self.id, &ServerEvent::SyncComplete(c.clone()));
    }

    fn failed(&self, f: &SyncFailed) {
        let status = if f.reason == "cancelled" {
            SyncStatus::Cancelled
        } else {
            SyncStatus::Failed
        };
        self.metrics
            .syncs_failed
            .get_or_create(&crate::telemetry::StatusLabel {
                status: if status == SyncStatus::Cancelled {
                    "cancelled"
                } else {
                    "failed"
                }
                .into(),
            })
            .inc();
        self.set_sync(|s| {
            if let Some(v) = s {
                v.status = status;
            }
        });
        self.hub
            .publish(&self.id, &ServerEvent::SyncFailed(f.clone()));
    }
}

impl Actor {
    /// Stores what a fail-closed plugin refused on the live path (a new
    /// message or an edit); while the store is out, into the spool.
    async fn quarantine_live(&mut self, items: &[crate::domain::QuarantinedMessage]) {
        let stored = if self.spooling() {
            Err(StoreError::Unavailable("spooling".into()))
        } else {
            self.deps.store.put_quarantine(&self.id, items).await
        };
        if let Err(e) = stored
            && keep_for_later(&e)
        {
            let records: Vec<SpoolRecord> = items
                .iter()
                .map(|q| SpoolRecord::Quarantine(Box::new(q.clone())))
                .collect();
            self.spool(&records);
        }
    }

    fn emit(&self, ev: ServerEvent) {
        self.deps.hub.publish(self.id.as_str(), &ev);
    }

    /// Queues a lifecycle event in the outbox when a webhook wants it,
    /// with the data the WebSocket gets. A store that is unreachable keeps
    /// it in the spool, like a live message's event.
    async fn announce(&mut self, ev: &ServerEvent) {
        let Ok(serde_json::Value::Object(mut frame)) = serde_json::to_value(ev) else {
            return;
        };
        let Some(serde_json::Value::String(name)) = frame.remove("event") else {
            return;
        };
        if !crate::events::WEBHOOK_ONLY.contains(&name.as_str())
            || !self.deps.events.wants(&name, self.id.as_str())
        {
            return;
        }
        let data = frame.remove("data").unwrap_or_default();
        let event = OutboxEvent::new(&name, &self.id, data);
        let stored = if self.spooling() {
            Err(StoreError::Unavailable("spooling".into()))
        } else {
            self.deps.store.enqueue_event(&event).await
        };
        match stored {
            Ok(()) => self.deps.relay.kick(),
            Err(e) if keep_for_later(&e) => {
                self.spool(&[SpoolRecord::Event(Box::new(event))]);
            }
            Err(e) => {
                tracing::warn!(error = %e, event = %name, "could not queue a lifecycle event")
            }
        }
    }

    #[tracing::instrument(name = "session.actor", skip_all, fields(session_id = %self.id))]
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let (tx, mut events) = mpsc::channel::<ClientEvent>(64);
        let Some(provider) = self.deps.providers.get(&self.provider) else {
            self.fail_start(format!("unknown provider {:?}", self.provider))
                .await;
            return;
        };
        let options = serde_json::to_value(&self.opts).unwrap_or_default();
        // The start (a browser launch, a WebDriver handshake) can take long;
        // commands are answered meanwhile, and a stop ends it: dropping the
        // start kills whatever it launched.
        let id = self.id.clone();
        let client = {
            let start = provider.start(&id, &options, self.restored, tx);
            tokio::pin!(start);
            loop {
                tokio::select! {
                    c = &mut start => break c,
                    _ = self.shutdown.cancelled() => return,
                    cmd = commands.recv() => match cmd {
                        None => return,
                        Some(Command::Stop { reply, .. }) => {
                            tracing::info!("stopped while starting");
                            let _ = reply.send(());
                            return;
                        }
                        Some(Command::StartSync { reply, .. }) => {
                            let _ = reply.send(Err(SessionError::NotReady {
                                session_id: self.id.to_string(),
                                status: crate::domain::SessionStatus::Starting,
                            }));
                        }
                    },
                }
            }
        };
        let client: Arc<dyn WhatsAppClient> = match client {
            Ok(c) => c,
            Err(e) => {
                self.fail_start(e.to_string()).await;
                return;
            }
        };
        let mut state = State::Starting;
        let mut running: Option<Running> = None;
        if self.spool.as_ref().is_some_and(|s| !s.is_empty()) {
            // Left by an outage before the last stop: store it soon.
            self.retry_at = Some(tokio::time::Instant::now());
        }
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    // Host shutdown or lost lease: the sync stops between
                    // batches and its run stays `running`, to resume at the
                    // next start or on the host that took the session.
                    // A run that ended just before the stop, its end not
                    // yet taken here, gets its summary at a clean stop: the
                    // lease is still this host's until the actors stopped.
                    // A lost lease writes nothing more.
                    let end = match running.take() {
                        Some(r) => Some(r.task.await.unwrap_or(SyncEnd::Interrupted)),
                        None => None,
                    };
                    if self.host_shutdown.is_cancelled() {
                        if let Some(end) = end {
                            self.sync_ended(end).await;
                        }
                        client.stop(false).await;
                    } else {
                        client.abandon().await;
                    }
                    return;
                }
                cmd = commands.recv() => match cmd {
                    None => {
                        client.stop(false).await;
                        return;
                    }
                    Some(Command::Stop { logout, reply }) => {
                        self.apply(&mut state, Input::Stop, &client, &mut running, logout).await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(Command::StartSync { trigger, mode, limit_per_chat, chat_ids, before, max_age_days, reply }) => {
                        // A run that already reported its end is only
                        // returning: collect it rather than refuse.
                        let ending = lock(&self.view)
                            .sync
                            .as_ref()
                            .is_some_and(|s| s.status != SyncStatus::Running);
                        if ending && let Some(r) = running.take() {
                            let end = r.task.await.unwrap_or(SyncEnd::Interrupted);
                            self.sync_ended(end).await;
                        }
                        let busy = running
                            .as_ref()
                            .map(|r| r.sync_id.clone())
                            .or_else(|| self.suspended.as_ref().map(|r| r.sync_id.clone()));
                        let r = if let Some(sync_id) = busy {
                            // A suspended run still counts: it resumes by
                            // itself once the store is back.
                            Err(SessionError::SyncRunning {
                                session_id: self.id.to_string(),
                                sync_id,
                            })
                        } else if !state.is_ready() {
                            Err(SessionError::NotReady {
                                session_id: self.id.to_string(),
                                status: state.status(),
                            })
                        } else {
                            let mut run = sync::new_run(&self.id, trigger, limit_per_chat, chat_ids);
                            run.mode = mode;
                            run.before = before;
                            run.max_age_days = max_age_days;
                            // Recorded before the 202, so `GET .../sync`
                            // shows the new run at once.
                            match self.deps.store.put_sync_run(&run).await {
                                Ok(()) => {
                                    let id = run.sync_id.clone();
                                    running = Some(self.start_sync(&client, run));
                                    Ok(id)
                                }
                                Err(e) => Err(SessionError::Store(e)),
                            }
                        };
                        let _ = reply.send(r);
                    }
                },
                ev = events.recv() => match ev {
                    None => {
                        // The provider dropped its sender without a word.
                        let input = Input::Disconnected { reason: "provider ended".into() };
                        if self.apply(&mut state, input, &client, &mut running, false).await {
                            return;
                        }
                    }
                    Some(ClientEvent::Message { message }) => {
                        if state.is_ready() {
                            self.live_message(*message).await;
                        }
                    }
                    Some(ClientEvent::MessageChanged { update }) => {
                        if state.is_ready() {
                            self.message_changed(*update).await;
                        }
                    }
                    Some(ev) => {
                        let input = match ev {
                            ClientEvent::Qr { code } => Input::Qr { qr: code },
                            ClientEvent::PairingCode { code } => Input::PairingCode { code },
                            ClientEvent::Authenticated => Input::Authenticated,
                            ClientEvent::AuthFailure { reason } => Input::AuthFailure { reason },
                            ClientEvent::Ready { me } => Input::Ready { me },
                            ClientEvent::Disconnected { reason } => Input::Disconnected { reason },
                            ClientEvent::Message { .. } | ClientEvent::MessageChanged { .. } => {
                                unreachable!("handled above")
                            }
                        };
                        if self.apply(&mut state, input, &client, &mut running, false).await {
                            return;
                        }
                    }
                },
                end = async { (&mut running.as_mut().expect("guarded").task).await }, if running.is_some() => {
                    running = None;
                    self.sync_ended(end.unwrap_or(SyncEnd::Interrupted)).await;
                }
                _ = sleep_until_opt(self.retry_at), if self.retry_at.is_some() && running.is_none() => {
                    self.retry_at = None;
                    self.recover(&client, &state, &mut running).await;
                }
            }
        }
    }

    /// The store may be back: store the spool, resume a suspended run.
    async fn recover(
        &mut self,
        client: &Arc<dyn WhatsAppClient>,
        state: &State,
        running: &mut Option<Running>,
    ) {
        let up = matches!(
            tokio::time::timeout(std::time::Duration::from_secs(5), self.deps.store.ping()).await,
            Ok(Ok(()))
        );
        if !up || !self.flush_spool().await {
            self.retry_at = Some(tokio::time::Instant::now() + STORE_RETRY);
            return;
        }
        let Some(run) = self.suspended.take() else {
            return;
        };
        match self.deps.store.get_sync_run(&run.sync_id).await {
            // The stored run is the truth: it resumes after its checkpoint.
            Ok(Some(stored)) if stored.status == SyncStatus::Running => {
                tracing::info!(sync_id = %stored.sync_id, "store back: resuming the suspended sync");
                if state.is_ready() {
                    *running = Some(self.start_sync(client, stored));
                } else {
                    self.resume = Some(stored);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "store still failing; the sync stays suspended");
                self.suspended = Some(run);
                self.retry_at = Some(tokio::time::Instant::now() + STORE_RETRY);
            }
        }
    }

    /// Stores what the spool holds, in order; true when it is empty after.
    async fn flush_spool(&mut self) -> bool {
        let keep_revoked_bodies = self.keep_revoked_bodies();
        let Some(spool) = self.spool.as_mut() else {
            return true;
        };
        if spool.is_empty() {
            return true;
        }
        let records = match spool.read() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the live-message spool");
                return false;
            }
        };
        let (mut messages, mut quarantined, mut events) = (Vec::new(), Vec::new(), Vec::new());
        let mut changes = Vec::new();
        for r in records {
            match r {
                SpoolRecord::Message(m) => messages.push(*m),
                SpoolRecord::Quarantine(q) => quarantined.push(*q),
                SpoolRecord::Event(e) => events.push(*e),
                SpoolRecord::Change(u) => changes.push(*u),
            }
        }
        let store = &self.deps.store;
        if !quarantined.is_empty() && store.put_quarantine(&self.id, &quarantined).await.is_err() {
            return false;
        }
        if !messages.is_empty() && store.put_messages(&self.id, &messages).await.is_err() {
            return false;
        }
        // After the messages: a change of one of them applies in place.
        let outcomes = match store
            .apply_changes(&self.id, &changes, keep_revoked_bodies)
            .await
        {
            Ok(o) => o,
            Err(_) => return false,
        };
        for ev in &events {
            if store.enqueue_event(ev).await.is_err() {
                return false;
            }
        }
        if let Err(e) = spool.clear() {
            tracing::warn!(error = %e, "cannot clear the live-message spool; its records will be stored again (idempotent)");
        }
        tracing::info!(
            messages = messages.len(),
            quarantined = quarantined.len(),
            events = events.len(),
            "stored the live messages kept during a store outage"
        );
        if !events.is_empty() {
            self.deps.relay.kick();
        }
        self.deps
            .metrics
            .live_messages
            .inc_by(messages.len() as u64);
        for message in messages {
            self.emit(ServerEvent::Message(StoredMessage {
                session_id: self.id.to_string(),
                message,
            }));
        }
        self.announce_changes(&changes, &outcomes).await;
        true
    }

    /// Keeps `records` for later; false if the spool cannot take them.
    fn spool(&mut self, records: &[SpoolRecord]) -> bool {
        let kept = match self.spool.as_mut() {
            Some(s) => match s.append(records) {
                Ok(true) => true,
                Ok(false) => {
                    tracing::warn!(
                        limit = super::spool::MAX_RECORDS,
                        "live-message spool full: dropping"
                    );
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write the live-message spool: dropping");
                    false
                }
            },
            None => false,
        };
        if kept {
            self.deps
                .metrics
                .live_messages_spooled
                .inc_by(records.len() as u64);
        } else {
            self.deps
                .metrics
                .live_messages_dropped
                .inc_by(records.len() as u64);
        }
        if self.retry_at.is_none() {
            self.retry_at = Some(tokio::time::Instant::now() + STORE_RETRY);
        }
        kept
    }

    /// Applies an input; returns true when the actor must exit.
    async fn apply(
        &mut self,
        state: &mut State,
        input: Input,
        client: &Arc<dyn WhatsAppClient>,
        running: &mut Option<Running>,
        logout: bool,
    ) -> bool {
        let Some((next, effects)) = transition(state, input) else {
            return false;
        };
        *state = next;
        {
            let mut v = lock(&self.view);
            v.status = state.status();
            v.qr = state.qr().cloned();
            v.pairing_code = state.pairing_code().cloned();
            if let State::Ready { me } = &*state {
                v.me = me.clone();
            }
        }
        let mut exit = false;
        for effect in effects {
            match effect {
                Effect::Emit => {
                    let ev = self.event_for(state);
                    self.emit(ev.clone());
                    self.announce(&ev).await;
                }
                Effect::Persist => self.persist(state).await,
                Effect::AutoSync => {
                    if running.is_none() {
                        if let Some(run) = self.resume.take() {
                            *running = Some(self.start_sync(client, run));
                        } else if self.opts.auto_sync.unwrap_or(true) {
                            let mut run = sync::new_run(
                                &self.id,
                                SyncTrigger::Auto,
                                self.opts.limit_per_chat.unwrap_or(DEFAULT_LIMIT_PER_CHAT),
                                None,
                            );
                            // A fresh session's first sync reads everything;
                            // a restored session (host restart, takeover) or
                            // a reconnect only catches up.
                            if self.restored || self.synced {
                                run.mode = SyncMode::Incremental;
                            }
                            run.max_age_days = self.opts.max_age_days;
                            *running = Some(self.start_sync(client, run));
                        }
                    }
                }
                Effect::CancelSync { reason } => {
                    if let Some(r) = running.take() {
                        tracing::info!(sync_id = %r.sync_id, %reason, "cancelling sync");
                        r.cancel.cancel();
                        r.plugins_stop.cancel();
                        if let Ok(end) = r.task.await {
                            self.sync_ended(end).await;
                        }
                    } else if let Some(mut run) = self.suspended.take() {
                        // A suspended run ends here: recorded cancelled if the
                        // store takes it; else it resumes at the next start.
                        run.status = SyncStatus::Cancelled;
                        run.reason = Some(reason.clone());
                        run.finished_at = Some(now_ms());
                        if let Err(e) = self.deps.store.put_sync_run(&run).await {
                            tracing::warn!(error = %e, "could not record the suspended run as cancelled");
                        }
                    }
                }
                Effect::StopClient => {
                    client.stop(logout).await;
                    exit = true;
                }
            }
        }
        exit
    }

    fn event_for(&self, state: &State) -> ServerEvent {
        let session_id = self.id.to_string();
        match state {
            State::WaitingForScan { qr } => ServerEvent::Qr {
                session_id,
                qr: qr.qr.clone(),
                attempt: qr.attempt,
                expires_at: qr.expires_at,
            },
            State::WaitingForCode { code } => ServerEvent::PairingCode {
                session_id,
                code: code.code.clone(),
                attempt: code.attempt,
                expires_at: code.expires_at,
            },
            State::Authenticated => ServerEvent::Authenticated { session_id },
            State::Ready { .. } => ServerEvent::Ready { session_id },
            State::AuthFailed { reason } => ServerEvent::AuthFailure {
                session_id,
                reason: reason.clone(),
            },
            State::Disconnected { reason } => ServerEvent::Disconnected {
                session_id,
                reason: reason.clone(),
            },
            State::Starting | State::Stopped => ServerEvent::SessionState(lock(&self.view).clone()),
        }
    }

    async fn persist(&self, state: &State) {
        let rec = match self.deps.store.get_session(&self.id).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the session record");
                return;
            }
        };
        let mut rec = rec;
        rec.status = state.status().as_str().into();
        rec.updated_at = now_ms();
        if let State::Ready { me } = state {
            rec.me = me.clone();
        }
        if matches!(state, State::Stopped) {
            rec.active = false;
        }
        if let Err(e) = self.deps.store.put_session(&rec).await {
            tracing::warn!(error = %e, "could not persist the session status");
        }
    }

    async fn fail_start(&mut self, reason: String) {
        tracing::warn!(%reason, "provider failed to start");
        lock(&self.view).status = crate::domain::SessionStatus::Disconnected;
        let ev = ServerEvent::Disconnected {
            session_id: self.id.to_string(),
            reason: reason.clone(),
        };
        self.emit(ev.clone());
        self.announce(&ev).await;
        self.persist(&State::Disconnected { reason }).await;
    }

    fn start_sync(&mut self, client: &Arc<dyn WhatsAppClient>, run: SyncRun) -> Running {
        self.synced = true;
        let plugins_stop = self.shutdown.child_token();
        let deps = SyncDeps {
            client: client.clone(),
            store: self.deps.store.clone(),
            chain: self.deps.plugins.chain_until(plugins_stop.clone()),
            sink: Arc::new(Sink {
                id: self.id.to_string(),
                view: self.view.clone(),
                hub: self.deps.hub.clone(),
                metrics: self.deps.metrics.clone(),
            }),
            relay: self.deps.relay.clone(),
            options: crate::sync::SyncOptions {
                keep_revoked_bodies: self.keep_revoked_bodies(),
                ..self.deps.sync.clone()
            },
        };
        self.deps.metrics.syncs_started.inc();
        // The view shows the new run from now on (not the last one's end).
        lock(&self.view).sync = Some(SyncView {
            status: SyncStatus::Running,
            progress: SyncProgress {
                session_id: run.session_id.clone(),
                sync_id: run.sync_id.clone(),
                seq: run.next_seq,
                n_chats: run.n_chats,
                current_chat: run.current_chat,
                chat_id: None,
                messages_synced: 0,
                total_messages_synced: run.total_messages_synced,
                phase: crate::domain::SyncPhase::Start,
                done: false,
                contacts: None,
            },
        });
        let cancel = CancellationToken::new();
        let shutdown = self.shutdown.clone();
        let sync_id = run.sync_id.clone();
        let c = cancel.clone();
        let task = tokio::spawn(async move { sync::run(&deps, run, &c, &shutdown).await });
        Running {
            sync_id,
            cancel,
            plugins_stop,
            task,
        }
    }

    async fn sync_ended(&mut self, end: SyncEnd) {
        let run = match end {
            SyncEnd::Completed(r) | SyncEnd::Failed(r) | SyncEnd::Cancelled(r) => r,
            SyncEnd::Interrupted => return,
            SyncEnd::Suspended(r) => {
                self.suspended = Some(r);
                self.retry_at = Some(tokio::time::Instant::now() + STORE_RETRY);
                return;
            }
        };
        if let Ok(Some(mut rec)) = self.deps.store.get_session(&self.id).await {
            rec.last_sync = Some(serde_json::json!({
                "syncId": run.sync_id,
                "status": run.status,
                "nChats": run.n_chats,
                "totalMessagesSynced": run.total_messages_synced,
                "failedChats": run.failed_chats.len(),
                "finishedAt": run.finished_at,
            }));
            rec.updated_at = now_ms();
            if let Err(e) = self.deps.store.put_session(&rec).await {
                tracing::warn!(error = %e, "could not record the sync summary");
            }
        }
    }

    /// A message that arrived after ready: through the plugins, stored,
    /// then shown to the room.
    async fn live_message(&mut self, message: crate::domain::Message) {
        let chain = self.deps.plugins.chain();
        let mut message = Some(message);
        if !chain.is_empty() {
            let ctx = SyncContext {
                session_id: self.id.to_string(),
                sync_id: String::new(),
                trigger: "live".into(),
            };
            let chat = match self
                .deps
                .store
                .get_chat(&self.id, &message.as_ref().expect("set").chat_id)
                .await
            {
                Ok(Some(c)) => c.chat,
                _ => crate::domain::Chat {
                    id: message.as_ref().expect("set").chat_id.clone(),
                    name: None,
                    is_group: false,
                    unread_count: 0,
                    archived: false,
                    pinned: false,
                    last_message_at: None,
                },
            };
            let mut scope = chain.chat_scope(&ctx, &chat).await;
            if let ChatDecision::Skip { .. } = scope.before_chat_sync().await {
                return;
            }
            let out = scope.transform(vec![message.take().expect("set")]).await;
            drop(scope);
            if !out.quarantined.is_empty() {
                self.quarantine_live(&out.quarantined).await;
            }
            message = out.keep.into_iter().next();
        }
        let Some(message) = message else {
            return;
        };
        let wanted = self
            .deps
            .events
            .wants(crate::events::MESSAGE_RECEIVED, self.id.as_str());
        let event = wanted.then(|| {
            OutboxEvent::new(
                crate::events::MESSAGE_RECEIVED,
                &self.id,
                serde_json::json!({"sessionId": self.id.as_str(), "message": message}),
            )
        });
        // While an outage's spool holds messages, new ones queue behind
        // them, so they reach the store in the order they arrived.
        let stored = if self.spooling() {
            Err(StoreError::Unavailable("spooling".into()))
        } else {
            self.deps
                .store
                .put_messages(&self.id, std::slice::from_ref(&message))
                .await
        };
        let stats = match stored {
            Ok(stats) => stats,
            Err(e) => {
                if keep_for_later(&e) {
                    tracing::warn!(error = %e, message_id = %message.id, "store unreachable: live message kept in the spool");
                    let mut records = vec![SpoolRecord::Message(Box::new(message))];
                    records.extend(event.map(|ev| SpoolRecord::Event(Box::new(ev))));
                    self.spool(&records);
                } else {
                    tracing::warn!(error = %e, message_id = %message.id, "could not store a live message");
                }
                return;
            }
        };
        // Changes that came before the message were applied to it: what is
        // announced is what is stored.
        let (message, event) = self.as_stored(message, event, &stats).await;
        self.deps.metrics.live_messages.inc();
        if let Some(ev) = event {
            match self.deps.store.enqueue_event(&ev).await {
                Ok(()) => self.deps.relay.kick(),
                Err(e) if keep_for_later(&e) => {
                    self.spool(&[SpoolRecord::Event(Box::new(ev))]);
                }
                Err(e) => tracing::warn!(error = %e, "could not queue message_received"),
            }
        }
        self.emit(ServerEvent::Message(StoredMessage {
            session_id: self.id.to_string(),
            message,
        }));
    }

    /// Whether live messages go to the spool (it holds some already).
    fn spooling(&self) -> bool {
        self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }
}

/// A write worth keeping for later: the store was unreachable (not a
/// refusal, and not a lost lease: the new owner has the session).
fn keep_for_later(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_))
}
