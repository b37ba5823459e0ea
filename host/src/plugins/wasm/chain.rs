//! The chain of one sync and its per-chat scopes: instances, calls with
//! deadlines, output checks, failure policy and tripping.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap};

use super::bindings::{
    self, Chat, GuestError, HooksGuest, HooksIndices, Message, Outcome, TransformGuest,
    TransformIndices, WitContext, WitDecision, WitSummary,
};
use super::logs;
use super::manifest::{Limits, Manifest, OnError};
use super::runtime::{PluginData, PluginRuntime, StoreData};
use super::stats::{FailureKind, PluginStats};
use crate::domain::{self, QuarantinedMessage, now_ms};
use crate::plugins::{ChatDecision, ChatScope, ChatSummary, PluginChain, SyncContext, Transformed};

/// A compiled, validated plugin, ready to instantiate.
pub(crate) struct LoadedPlugin {
    pub manifest: Manifest,
    pub sha256: String,
    pub size: usize,
    pub loaded_at: i64,
    pub pre: InstancePre<StoreData>,
    pub transform: Option<TransformIndices>,
    pub hooks: Option<HooksIndices>,
    pub stats: Arc<PluginStats>,
    pub data: PluginData,
}

/// How guest calls are run relative to the async runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Offload {
    /// Off the async workers, so a slow plugin (up to its deadline) never
    /// holds one. On a multi-thread runtime the calling worker turns into a
    /// blocking thread for the call (`block_in_place`: its queued tasks move
    /// to another worker, and no thread hand-off is paid when there are
    /// none); on a current-thread runtime the call goes to the blocking pool.
    #[default]
    BlockingPool,
    /// On the calling task: cheapest, but a call holds its worker thread
    /// for as long as it runs (bounded by the deadline).
    Inline,
}

/// The plugins of one sync: a snapshot of the manager's set plus this
/// sync's failure counts (tripping is per sync).
pub(crate) struct WasmChain {
    inner: Arc<ChainInner>,
}

struct ChainInner {
    runtime: Arc<PluginRuntime>,
    plugins: Vec<Arc<LoadedPlugin>>,
    failures: Vec<AtomicU32>,
    tripped: Vec<AtomicBool>,
    offload: Offload,
    /// Cancelled when the sync stops: a running call ends within a tick and
    /// no further call is made.
    stop: CancellationToken,
}

impl WasmChain {
    pub fn new(
        runtime: Arc<PluginRuntime>,
        plugins: Vec<Arc<LoadedPlugin>>,
        offload: Offload,
        stop: CancellationToken,
    ) -> Self {
        let n = plugins.len();
        Self {
            inner: Arc::new(ChainInner {
                runtime,
                plugins,
                failures: (0..n).map(|_| AtomicU32::new(0)).collect(),
                tripped: (0..n).map(|_| AtomicBool::new(false)).collect(),
                offload,
                stop,
            }),
        }
    }
}

#[async_trait]
impl PluginChain for WasmChain {
    fn is_empty(&self) -> bool {
        self.inner.plugins.is_empty()
    }

    async fn chat_scope(&self, ctx: &SyncContext, chat: &domain::Chat) -> Box<dyn ChatScope> {
        Box::new(WasmScope {
            inner: self.inner.clone(),
            ctx: bindings::context(ctx),
            chat: bindings::chat(chat),
            live: (0..self.inner.plugins.len()).map(|_| None).collect(),
        })
    }
}

/// One plugin's instance for the current chat.
struct Live {
    store: Store<StoreData>,
    transform: Option<TransformGuest>,
    hooks: Option<HooksGuest>,
}

enum Call {
    Batch(Vec<Message>),
    Before,
    After(WitSummary),
}

enum Answer {
    Batch(Result<Vec<Outcome>, GuestError>),
    Before(Result<WitDecision, GuestError>),
    After(Result<(), GuestError>),
}

struct Failure {
    kind: FailureKind,
    reason: String,
}

/// A failure whose reason is fit for the host log: cut to 1 KiB and with
/// control characters escaped (reasons carry text the plugin chose: its
/// `plugin-error`, its skip reason, names in its trap's backtrace).
fn failure(kind: FailureKind, reason: impl AsRef<str>) -> Failure {
    Failure {
        kind,
        reason: logs::clean(reason.as_ref(), logs::LINE_BYTES),
    }
}

struct WasmScope {
    inner: Arc<ChainInner>,
    ctx: WitContext,
    chat: Chat,
    live: Vec<Option<Live>>,
}

async fn invoke(
    live: &mut Live,
    ctx: &WitContext,
    chat: &Chat,
    call: Call,
) -> wasmtime::Result<Answer> {
    let store = &mut live.store;
    Ok(match call {
        Call::Batch(msgs) => {
            let g = live
                .transform
                .as_ref()
                .ok_or_else(|| wasmtime::format_err!("no message-transform export"))?;
            Answer::Batch(g.call_transform_batch(&mut *store, ctx, &msgs).await?)
        }
        Call::Before => {
            let g = live
                .hooks
                .as_ref()
                .ok_or_else(|| wasmtime::format_err!("no chat-hooks export"))?;
            Answer::Before(g.call_before_chat_sync(&mut *store, ctx, chat).await?)
        }
        Call::After(s) => {
            let g = live
                .hooks
                .as_ref()
                .ok_or_else(|| wasmtime::format_err!("no chat-hooks export"))?;
            Answer::After(g.call_after_chat_sync(&mut *store, ctx, chat, s).await?)
        }
    })
}

/// A fresh instance of plugin `i` from its pre-instance, under the bounds
/// of the call it is made for. A free function (not a `&self` method) so
/// the scope's futures stay `Send`.
async fn instantiate(inner: &ChainInner, i: usize, until: Instant) -> Result<Live, Failure> {
    let p = &inner.plugins[i];
    let rt = &inner.runtime;
    let started = Instant::now();
    let mut store = rt.store(
        p.data.clone(),
        p.manifest.limits.memory_mib as usize * 1024 * 1024,
    );
    store.data_mut().begin_call(until, inner.stop.clone());
    let instance = p
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| failure(FailureKind::Instantiate, format!("{e:#}")))?;
    let transform = match &p.transform {
        Some(ix) => Some(
            ix.load(&mut store, &instance)
                .map_err(|e| failure(FailureKind::Instantiate, format!("{e:#}")))?,
        ),
        None => None,
    };
    let hooks = match &p.hooks {
        Some(ix) => Some(
            ix.load(&mut store, &instance)
                .map_err(|e| failure(FailureKind::Instantiate, format!("{e:#}")))?,
        ),
        None => None,
    };
    p.stats.instantiated(started.elapsed());
    Ok(Live {
        store,
        transform,
        hooks,
    })
}

/// Why a call was cut short from outside the guest.
enum Cut {
    /// The wall-clock deadline passed while the guest waited in a host call
    /// (a sleep, a poll): epoch interruption only stops guest code.
    Deadline,
    /// The chain's stop token was cancelled.
    Cancelled,
}

/// One guest call (instantiating first when the chat has no instance yet),
/// bounded two ways: epoch interruption stops guest code within a tick of
/// `deadline` or of the stop token, and the wall-clock timer and the stop
/// token drop the call (and its store) wherever it waits. Returns the
/// instance when it may serve the chat's next call.
async fn attempt(
    inner: &ChainInner,
    i: usize,
    live: Option<Live>,
    ctx: &WitContext,
    chat: &Chat,
    call: Call,
    deadline: Duration,
) -> (Option<Live>, Result<Answer, Failure>) {
    let started = Instant::now();
    let until = started + deadline;
    let stop = &inner.stop;
    let work = async {
        let mut live = match live {
            Some(l) => l,
            None => instantiate(inner, i, until).await?,
        };
        live.store.data_mut().begin_call(until, stop.clone());
        live.store.set_epoch_deadline(1);
        let r = invoke(&mut live, ctx, chat, call).await;
        Ok::<_, Failure>((live, r))
    };
    let outcome = tokio::select! {
        biased;
        _ = stop.cancelled() => Err(Cut::Cancelled),
        _ = tokio::time::sleep_until(until.into()) => Err(Cut::Deadline),
        r = work => Ok(r),
    };
    let took = started.elapsed();
    let p = &inner.plugins[i];
    p.stats.call(took);
    let past_deadline = || {
        failure(
            FailureKind::Deadline,
            format!(
                "ran past its {} ms deadline (stopped after {} ms)",
                deadline.as_millis(),
                took.as_millis()
            ),
        )
    };
    let cancelled = || failure(FailureKind::Cancelled, "stopped: its sync is stopping");
    match outcome {
        Err(Cut::Deadline) => (None, Err(past_deadline())),
        Err(Cut::Cancelled) => (None, Err(cancelled())),
        Ok(Err(f)) => (None, Err(f)),
        Ok(Ok((mut live, Ok(answer)))) => {
            live.store.data_mut().end_call();
            (Some(live), Ok(answer))
        }
        Ok(Ok((mut live, Err(e)))) => {
            // A trapped instance cannot be re-entered and its state is
            // suspect: it goes, and the next call gets a fresh one.
            let hit_memory = live.store.data().limiter.hit_memory_cap;
            live.store.data_mut().end_call();
            let f = if hit_memory {
                failure(
                    FailureKind::Memory,
                    format!("ran out of its {} MiB memory", p.manifest.limits.memory_mib),
                )
            } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                match stop.is_cancelled() {
                    true => cancelled(),
                    false => past_deadline(),
                }
            } else {
                failure(FailureKind::Trap, format!("trapped: {}", root_cause(&e)))
            };
            (None, Err(f))
        }
    }
}

impl WasmScope {
    /// Runs one call of plugin `i` under its deadline, off the async
    /// workers as [`Offload`] says. After a failure of any kind the
    /// instance is gone; the next call gets a fresh one.
    async fn run(&mut self, i: usize, call: Call, deadline: Duration) -> Result<Answer, Failure> {
        if self.inner.stop.is_cancelled() {
            return Err(failure(
                FailureKind::Cancelled,
                "not called: its sync is stopping",
            ));
        }
        let live = self.live[i].take();
        let (live, result) = match self.inner.offload {
            Offload::Inline => {
                attempt(&self.inner, i, live, &self.ctx, &self.chat, call, deadline).await
            }
            Offload::BlockingPool
                if tokio::runtime::Handle::current().runtime_flavor()
                    == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                let handle = tokio::runtime::Handle::current();
                tokio::task::block_in_place(|| {
                    handle.block_on(attempt(
                        &self.inner,
                        i,
                        live,
                        &self.ctx,
                        &self.chat,
                        call,
                        deadline,
                    ))
                })
            }
            Offload::BlockingPool => {
                let handle = tokio::runtime::Handle::current();
                let (inner, ctx, chat) = (self.inner.clone(), self.ctx.clone(), self.chat.clone());
                tokio::task::spawn_blocking(move || {
                    handle.block_on(attempt(&inner, i, live, &ctx, &chat, call, deadline))
                })
                .await
                .unwrap_or_else(|e| {
                    (
                        None,
                        Err(failure(
                            FailureKind::Trap,
                            format!("plugin call task failed: {e}"),
                        )),
                    )
                })
            }
        };
        self.live[i] = live;
        result
    }

    /// Counts a failure; trips the plugin once it reaches its limit. A
    /// cancelled call is counted apart and never trips.
    fn record(&self, i: usize, f: &Failure) {
        let p = &self.inner.plugins[i];
        p.stats.failed(f.kind);
        if f.kind == FailureKind::Cancelled {
            tracing::debug!(plugin = %p.manifest.name, reason = %f.reason, "plugins.cancelled");
            return;
        }
        tracing::warn!(plugin = %p.manifest.name, kind = f.kind.as_str(), reason = %f.reason, "plugins.failure");
        let n = self.inner.failures[i].fetch_add(1, Ordering::Relaxed) + 1;
        if n >= p.manifest.limits.max_failures
            && !self.inner.tripped[i].swap(true, Ordering::Relaxed)
        {
            p.stats.tripped();
            tracing::warn!(plugin = %p.manifest.name, failures = n, "plugins.tripped: off for the rest of this sync");
        }
    }

    fn tripped(&self, i: usize) -> bool {
        self.inner.tripped[i].load(Ordering::Relaxed)
    }

    /// Applies the plugin's `on_error` to the batch: quarantine it all
    /// (fail-closed) or pass it on tagged (fail-open).
    fn apply_policy(
        &self,
        i: usize,
        reason: &str,
        pending: Vec<(domain::Message, bool)>,
        out: &mut Transformed,
    ) -> Vec<(domain::Message, bool)> {
        let p = &self.inner.plugins[i];
        let n = pending.len() as u64;
        match p.manifest.on_error {
            OnError::FailClosed => {
                p.stats.quarantined(n);
                let at = now_ms();
                out.quarantined
                    .extend(pending.into_iter().map(|(message, _)| QuarantinedMessage {
                        session_id: self.ctx.session_id.clone(),
                        sync_id: (!self.ctx.sync_id.is_empty()).then(|| self.ctx.sync_id.clone()),
                        plugin: p.manifest.name.clone(),
                        reason: reason.to_owned(),
                        quarantined_at: at,
                        message,
                    }));
                Vec::new()
            }
            OnError::FailOpen => {
                p.stats.skipped_open(n);
                let tag = format!("plugin-skipped:{}", p.manifest.name);
                pending
                    .into_iter()
                    .map(|(mut m, modified)| {
                        if !m.tags.contains(&tag) {
                            m.tags.push(tag.clone());
                        }
                        (m, modified)
                    })
                    .collect()
            }
        }
    }
}

fn root_cause(e: &wasmtime::Error) -> String {
    let mut s = format!("{e:#}");
    if let Some(t) = e.downcast_ref::<Trap>() {
        s = format!("{t}: {s}");
    }
    s
}

#[async_trait]
impl ChatScope for WasmScope {
    async fn before_chat_sync(&mut self) -> ChatDecision {
        let mut max_messages: Option<u32> = None;
        let mut since_ms: Option<i64> = None;
        for i in 0..self.inner.plugins.len() {
            let p = self.inner.plugins[i].clone();
            if p.hooks.is_none() {
                continue;
            }
            let name = &p.manifest.name;
            let failed = if self.tripped(i) {
                Some(format!("plugin {name} is tripped off for this sync"))
            } else {
                let deadline = Duration::from_millis(p.manifest.limits.hook_deadline_ms.into());
                let f = match self.run(i, Call::Before, deadline).await {
                    Ok(Answer::Before(Ok(WitDecision::Skip(reason)))) => {
                        p.stats.chat_skipped();
                        let reason = failure(FailureKind::Error, reason).reason;
                        return ChatDecision::Skip {
                            reason: format!("{name}: {reason}"),
                        };
                    }
                    Ok(Answer::Before(Ok(d))) => {
                        if let ChatDecision::Proceed {
                            max_messages: m,
                            since_ms: s,
                        } = bindings::decision(d)
                        {
                            max_messages = match (max_messages, m) {
                                (Some(a), Some(b)) => Some(a.min(b)),
                                (a, b) => a.or(b),
                            };
                            since_ms = match (since_ms, s) {
                                (Some(a), Some(b)) => Some(a.max(b)),
                                (a, b) => a.or(b),
                            };
                        }
                        None
                    }
                    Ok(Answer::Before(Err(ge))) => Some(failure(
                        FailureKind::Error,
                        format!("{}: {}", ge.code, ge.message),
                    )),
                    Ok(_) => Some(failure(FailureKind::Fault, "answered the wrong call")),
                    Err(f) => Some(f),
                };
                f.map(|f| {
                    self.record(i, &f);
                    format!("plugin {name} failed ({}): {}", f.kind.as_str(), f.reason)
                })
            };
            if let Some(reason) = failed
                && p.manifest.on_error == OnError::FailClosed
            {
                p.stats.chat_skipped();
                return ChatDecision::Skip { reason };
            }
        }
        ChatDecision::Proceed {
            max_messages,
            since_ms,
        }
    }

    async fn transform(&mut self, messages: Vec<domain::Message>) -> Transformed {
        let mut out = Transformed::default();
        // Each message with whether a plugin replaced it.
        let mut pending: Vec<(domain::Message, bool)> =
            messages.into_iter().map(|m| (m, false)).collect();
        for i in 0..self.inner.plugins.len() {
            if pending.is_empty() {
                break;
            }
            if self.inner.plugins[i].transform.is_none() {
                continue;
            }
            let limits = self.inner.plugins[i].manifest.limits;
            let mut next = Vec::with_capacity(pending.len());
            let mut rest = pending.into_iter().peekable();
            while rest.peek().is_some() {
                let (part, seen) = sub_batch(&mut rest, &limits);
                let survivors = self.transform_part(i, part, seen, &mut out).await;
                next.extend(survivors);
            }
            pending = next;
        }
        out.modified = pending.iter().filter(|(_, m)| *m).count() as u64;
        out.keep = pending.into_iter().map(|(m, _)| m).collect();
        out
    }

    async fn after_chat_sync(&mut self, summary: ChatSummary) {
        for i in 0..self.inner.plugins.len() {
            if self.inner.plugins[i].hooks.is_none() || self.tripped(i) {
                continue;
            }
            let deadline = Duration::from_millis(
                self.inner.plugins[i]
                    .manifest
                    .limits
                    .hook_deadline_ms
                    .into(),
            );
            let f = match self
                .run(i, Call::After(bindings::summary(summary)), deadline)
                .await
            {
                Ok(Answer::After(Ok(()))) => None,
                Ok(Answer::After(Err(ge))) => Some(failure(
                    FailureKind::Error,
                    format!("{}: {}", ge.code, ge.message),
                )),
                Ok(_) => Some(failure(FailureKind::Fault, "answered the wrong call")),
                Err(f) => Some(f),
            };
            if let Some(f) = f {
                self.record(i, &f);
            }
        }
        // The chat is done: its instances go, so no state crosses chats.
        self.live.iter_mut().for_each(|l| *l = None);
    }
}

/// Takes the next sub-batch off `rest`: at most `max_batch_messages`
/// messages and, past the first, at most `max_batch_bytes` as the plugin
/// sees them (bodies cut to `max_body_bytes`). Returns the messages and the
/// plugin's view of them.
fn sub_batch(
    rest: &mut std::iter::Peekable<std::vec::IntoIter<(domain::Message, bool)>>,
    limits: &Limits,
) -> (Vec<(domain::Message, bool)>, Vec<Message>) {
    let max_n = limits.max_batch_messages.max(1) as usize;
    let max_bytes = limits.max_batch_bytes as usize;
    let (mut part, mut seen) = (Vec::new(), Vec::new());
    let mut bytes = 0usize;
    while part.len() < max_n
        && let Some((m, _)) = rest.peek()
    {
        let view = bindings::message(m, limits.max_body_bytes as usize);
        let size = bindings::size(&view);
        if !part.is_empty() && bytes + size > max_bytes {
            break;
        }
        bytes += size;
        seen.push(view);
        part.extend(rest.next());
    }
    (part, seen)
}

impl WasmScope {
    /// Runs plugin `i` on one sub-batch; returns the messages that go on
    /// down the chain (kept, replaced, or passed by a fail-open policy).
    async fn transform_part(
        &mut self,
        i: usize,
        part: Vec<(domain::Message, bool)>,
        seen: Vec<Message>,
        out: &mut Transformed,
    ) -> Vec<(domain::Message, bool)> {
        let p = self.inner.plugins[i].clone();
        if self.tripped(i) {
            let reason = format!("plugin {} is tripped off for this sync", p.manifest.name);
            return self.apply_policy(i, &reason, part, out);
        }
        let limits = p.manifest.limits;
        let cuts: Vec<Option<String>> = seen.iter().map(bindings::cut_body).collect();
        let deadline = Duration::from_millis(limits.deadline_ms.into());
        let result = match self.run(i, Call::Batch(seen), deadline).await {
            Ok(Answer::Batch(Ok(outcomes))) => {
                match check(&outcomes, &part, limits.max_output_bytes as usize) {
                    Ok(()) => Ok(outcomes),
                    Err(reason) => {
                        // Output the host refuses also means the instance
                        // is not to be trusted with the next batch.
                        self.live[i] = None;
                        Err(failure(FailureKind::Fault, reason))
                    }
                }
            }
            Ok(Answer::Batch(Err(ge))) => Err(failure(
                FailureKind::Error,
                format!("{}: {}", ge.code, ge.message),
            )),
            Ok(_) => Err(failure(FailureKind::Fault, "answered the wrong call")),
            Err(f) => Err(f),
        };
        match result {
            Ok(outcomes) => {
                let (mut kept, mut replaced, mut dropped) = (0, 0, 0);
                let n = part.len() as u64;
                let mut next = Vec::with_capacity(part.len());
                for (((m, modified), o), cut) in part.into_iter().zip(outcomes).zip(cuts) {
                    match o {
                        Outcome::Keep => {
                            kept += 1;
                            next.push((m, modified));
                        }
                        Outcome::Replace(r) => {
                            replaced += 1;
                            next.push((bindings::apply(&m, cut.as_deref(), r), true));
                        }
                        Outcome::Drop(_reason) => {
                            dropped += 1;
                            out.dropped += 1;
                        }
                    }
                }
                p.stats.outcomes(n, kept, replaced, dropped);
                next
            }
            Err(f) => {
                self.record(i, &f);
                let reason = format!(
                    "plugin {} failed ({}): {}",
                    p.manifest.name,
                    f.kind.as_str(),
                    f.reason
                );
                self.apply_policy(i, &reason, part, out)
            }
        }
    }
}

/// Refuses output the host must not store: a different count, a replace
/// that moves a message to another id or chat, an oversized replacement.
fn check(
    outcomes: &[Outcome],
    pending: &[(domain::Message, bool)],
    max_output: usize,
) -> Result<(), String> {
    if outcomes.len() != pending.len() {
        return Err(format!(
            "returned {} outcomes for {} messages",
            outcomes.len(),
            pending.len()
        ));
    }
    for (o, (m, _)) in outcomes.iter().zip(pending) {
        if let Outcome::Replace(r) = o {
            if r.id != m.id || r.chat_id != m.chat_id {
                return Err(format!(
                    "replace changed message {:?} (chat {:?}) into {:?} (chat {:?})",
                    m.id, m.chat_id, r.id, r.chat_id
                ));
            }
            let size = bindings::size(r);
            if size > max_output {
                return Err(format!(
                    "replacement of {:?} is {size} bytes, over the {max_output}-byte cap",
                    m.id
                ));
            }
        }
    }
    Ok(())
}
