//! The session actor: one task per session, driven by its command channel,
//! its provider's events and its running sync.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::state::{Effect, Input, State, transition};
use super::{Command, CreateOptions, DEFAULT_LIMIT_PER_CHAT, SessionDeps, SessionError, lock};
use crate::browser::{ClientEvent, WhatsAppClient};
use crate::domain::{
    OutboxEvent, ServerEvent, SessionId, SessionSnapshot, StoredMessage, SyncComplete, SyncFailed,
    SyncProgress, SyncRun, SyncStatus, SyncTrigger, SyncView, now_ms,
};
use crate::plugins::{ChatDecision, SyncContext};
use crate::sync::{self, ProgressSink, SyncDeps, SyncEnd};

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
}

struct Running {
    sync_id: String,
    cancel: CancellationToken,
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
    fn emit(&self, ev: ServerEvent) {
        self.deps.hub.publish(self.id.as_str(), &ev);
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
        let client = tokio::select! {
            c = provider.start(&self.id, &options, self.restored, tx) => c,
            _ = self.shutdown.cancelled() => return,
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
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    // Host shutdown or lost lease: the sync stops between
                    // batches and its run stays `running`, to resume at the
                    // next start or on the host that took the session.
                    if let Some(r) = running.take() {
                        let _ = r.task.await;
                    }
                    if self.host_shutdown.is_cancelled() {
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
                    Some(Command::StartSync { trigger, limit_per_chat, chat_ids, reply }) => {
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
                        let r = if let Some(r) = &running {
                            Err(SessionError::SyncRunning {
                                session_id: self.id.to_string(),
                                sync_id: r.sync_id.clone(),
                            })
                        } else if !state.is_ready() {
                            Err(SessionError::NotReady {
                                session_id: self.id.to_string(),
                                status: state.status(),
                            })
                        } else {
                            let run = sync::new_run(&self.id, trigger, limit_per_chat, chat_ids);
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
                    Some(ev) => {
                        let input = match ev {
                            ClientEvent::Qr { code } => Input::Qr { qr: code },
                            ClientEvent::Authenticated => Input::Authenticated,
                            ClientEvent::AuthFailure { reason } => Input::AuthFailure { reason },
                            ClientEvent::Ready { me } => Input::Ready { me },
                            ClientEvent::Disconnected { reason } => Input::Disconnected { reason },
                            ClientEvent::Message { .. } => unreachable!("handled above"),
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
            }
        }
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
            if let State::Ready { me } = &*state {
                v.me = me.clone();
            }
        }
        let mut exit = false;
        for effect in effects {
            match effect {
                Effect::Emit => self.emit(self.event_for(state)),
                Effect::Persist => self.persist(state).await,
                Effect::AutoSync => {
                    if running.is_none() {
                        if let Some(run) = self.resume.take() {
                            *running = Some(self.start_sync(client, run));
                        } else if self.opts.auto_sync.unwrap_or(true) {
                            let run = sync::new_run(
                                &self.id,
                                SyncTrigger::Auto,
                                self.opts.limit_per_chat.unwrap_or(DEFAULT_LIMIT_PER_CHAT),
                                None,
                            );
                            *running = Some(self.start_sync(client, run));
                        }
                    }
                }
                Effect::CancelSync { reason } => {
                    if let Some(r) = running.take() {
                        tracing::info!(sync_id = %r.sync_id, %reason, "cancelling sync");
                        r.cancel.cancel();
                        if let Ok(end) = r.task.await {
                            self.sync_ended(end).await;
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

    async fn fail_start(&self, reason: String) {
        tracing::warn!(%reason, "provider failed to start");
        lock(&self.view).status = crate::domain::SessionStatus::Disconnected;
        self.emit(ServerEvent::Disconnected {
            session_id: self.id.to_string(),
            reason: reason.clone(),
        });
        self.persist(&State::Disconnected { reason }).await;
    }

    fn start_sync(&self, client: &Arc<dyn WhatsAppClient>, run: SyncRun) -> Running {
        let deps = SyncDeps {
            client: client.clone(),
            store: self.deps.store.clone(),
            chain: self.deps.plugins.chain(),
            sink: Arc::new(Sink {
                id: self.id.to_string(),
                view: self.view.clone(),
                hub: self.deps.hub.clone(),
                metrics: self.deps.metrics.clone(),
            }),
            relay: self.deps.relay.clone(),
            options: self.deps.sync.clone(),
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
            task,
        }
    }

    async fn sync_ended(&self, end: SyncEnd) {
        let run = match end {
            SyncEnd::Completed(r) | SyncEnd::Failed(r) | SyncEnd::Cancelled(r) => r,
            SyncEnd::Interrupted => return,
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
    async fn live_message(&self, message: crate::domain::Message) {
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
            if !out.quarantined.is_empty()
                && let Err(e) = self
                    .deps
                    .store
                    .put_quarantine(&self.id, &out.quarantined)
                    .await
            {
                tracing::warn!(error = %e, "could not quarantine a live message");
            }
            message = out.keep.into_iter().next();
        }
        let Some(message) = message else {
            return;
        };
        if let Err(e) = self
            .deps
            .store
            .put_messages(&self.id, std::slice::from_ref(&message))
            .await
        {
            tracing::warn!(error = %e, message_id = %message.id, "could not store a live message");
            return;
        }
        self.deps.metrics.live_messages.inc();
        if self.deps.publish_messages {
            let ev = OutboxEvent::new(
                "message_received",
                &self.id,
                serde_json::json!({"sessionId": self.id.as_str(), "message": message}),
            );
            match self.deps.store.enqueue_event(&ev).await {
                Ok(()) => self.deps.relay.kick(),
                Err(e) => tracing::warn!(error = %e, "could not queue message_received"),
            }
        }
        self.emit(ServerEvent::Message(StoredMessage {
            session_id: self.id.to_string(),
            message,
        }));
    }
}
