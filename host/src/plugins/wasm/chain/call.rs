//! One guest call: an instance made when the chat has none, the call
//! bounded by its wall-clock deadline and the sync's stop token, and what
//! it cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Resource;
use wasmtime::{Store, Trap};

use super::scope::WasmScope;
use super::trace::CallTrace;
use super::{ChainInner, Failure, HooksExport, Offload, TransformExport, failure, root_cause};
use crate::domain;
use crate::plugins::wasm::bindings::v2::BatchData;
use crate::plugins::wasm::bindings::{GuestError, v1, v2};
use crate::plugins::wasm::runtime::{self, StoreData};
use crate::plugins::wasm::stats::FailureKind;
use crate::plugins::{ChatDecision, ChatSummary, SyncContext};

/// One plugin's instance for the current chat.
pub(super) struct Live {
    store: Store<StoreData>,
    transform: Option<Transform>,
    hooks: Option<Hooks>,
}

enum Transform {
    V1(v1::TransformGuest),
    V2(v2::TransformGuest),
}

enum Hooks {
    V1(v1::HooksGuest),
    V2(v2::HooksGuest),
}

/// What every call of a chat is about, in each contract version's types
/// (converted once per chat, whichever versions the chain's plugins speak).
pub(super) struct Subject {
    pub chat_id: String,
    pub session_id: String,
    pub sync_id: String,
    v1: (v1::WitContext, v1::Chat),
    v2: (v2::WitContext, v2::Chat),
}

impl Subject {
    pub(super) fn new(ctx: &SyncContext, chat: &domain::Chat) -> Self {
        Self {
            chat_id: chat.id.clone(),
            session_id: ctx.session_id.clone(),
            sync_id: ctx.sync_id.clone(),
            v1: (v1::context(ctx), v1::chat(chat)),
            v2: (v2::context(ctx), v2::chat(chat)),
        }
    }
}

pub(super) enum Call {
    /// A 0.1 batch: the plugin's view of each message.
    Batch(Vec<v1::Message>),
    /// A 0.2 batch: the messages themselves (bodies cut to `max_body` as
    /// the plugin reads them), lent to the plugin as a resource.
    Edits {
        msgs: Arc<Vec<domain::Message>>,
        max_body: usize,
    },
    Before,
    After(ChatSummary),
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::Batch(_) | Call::Edits { .. } => "transform-batch",
            Call::Before => "before-chat-sync",
            Call::After(_) => "after-chat-sync",
        }
    }

    fn messages(&self) -> usize {
        match self {
            Call::Batch(m) => m.len(),
            Call::Edits { msgs, .. } => msgs.len(),
            _ => 0,
        }
    }
}

pub(super) enum Answer {
    Batch(Result<Vec<v1::Outcome>, GuestError>),
    Edits(Result<Vec<v2::Edit>, GuestError>),
    Before(Result<ChatDecision, GuestError>),
    After(Result<(), GuestError>),
}

async fn invoke(live: &mut Live, s: &Subject, call: Call) -> wasmtime::Result<Answer> {
    let store = &mut live.store;
    let missing = |what: &str| wasmtime::format_err!("no {what} export for this call");
    Ok(match (call, &live.transform, &live.hooks) {
        (Call::Batch(msgs), Some(Transform::V1(g)), _) => Answer::Batch(
            g.call_transform_batch(&mut *store, &s.v1.0, &msgs)
                .await?
                .map_err(Into::into),
        ),
        (Call::Edits { msgs, max_body }, Some(Transform::V2(g)), _) => {
            let own = store
                .data_mut()
                .table()
                .push(BatchData { msgs, max_body })?;
            let lent = Resource::<BatchData>::new_borrow(own.rep());
            let r = g.call_transform_batch(&mut *store, &s.v2.0, lent).await;
            // Taken back whatever the call did: a handle the plugin kept
            // finds nothing in the next call.
            let _ = store.data_mut().table().delete(own);
            Answer::Edits(r?.map_err(Into::into))
        }
        (Call::Batch(_) | Call::Edits { .. }, _, _) => return Err(missing("message-transform")),
        (Call::Before, _, Some(Hooks::V1(g))) => Answer::Before(
            g.call_before_chat_sync(&mut *store, &s.v1.0, &s.v1.1)
                .await?
                .map(v1::decision)
                .map_err(Into::into),
        ),
        (Call::Before, _, Some(Hooks::V2(g))) => Answer::Before(
            g.call_before_chat_sync(&mut *store, &s.v2.0, &s.v2.1)
                .await?
                .map(v2::decision)
                .map_err(Into::into),
        ),
        (Call::After(sum), _, Some(Hooks::V1(g))) => Answer::After(
            g.call_after_chat_sync(&mut *store, &s.v1.0, &s.v1.1, v1::summary(sum))
                .await?
                .map_err(Into::into),
        ),
        (Call::After(sum), _, Some(Hooks::V2(g))) => Answer::After(
            g.call_after_chat_sync(&mut *store, &s.v2.0, &s.v2.1, v2::summary(sum))
                .await?
                .map_err(Into::into),
        ),
        (Call::Before | Call::After(_), _, None) => return Err(missing("chat-hooks")),
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
    let err = |e: wasmtime::Error| failure(FailureKind::Instantiate, format!("{e:#}"));
    let transform = match &p.transform {
        Some(TransformExport::V1(ix)) => {
            Some(Transform::V1(ix.load(&mut store, &instance).map_err(err)?))
        }
        Some(TransformExport::V2(ix)) => {
            Some(Transform::V2(ix.load(&mut store, &instance).map_err(err)?))
        }
        None => None,
    };
    let hooks = match &p.hooks {
        Some(HooksExport::V1(ix)) => Some(Hooks::V1(ix.load(&mut store, &instance).map_err(err)?)),
        Some(HooksExport::V2(ix)) => Some(Hooks::V2(ix.load(&mut store, &instance).map_err(err)?)),
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
/// instance when it may serve the chat's next call, and what the call cost.
async fn attempt(
    inner: &ChainInner,
    i: usize,
    live: Option<Live>,
    subject: &Subject,
    call: Call,
    deadline: Duration,
) -> (Option<Live>, Result<Answer, Failure>, Cost) {
    let started = Instant::now();
    let until = started + deadline;
    let stop = &inner.stop;
    let p = &inner.plugins[i];
    let lift = match call.messages() {
        0 => runtime::LIFT_BASE_BYTES,
        n => runtime::lift_budget(n, p.manifest.limits.max_output_bytes as usize),
    };
    let work = async {
        let (mut live, made) = match live {
            Some(l) => (l, None),
            None => {
                let t = Instant::now();
                (instantiate(inner, i, until).await?, Some(t.elapsed()))
            }
        };
        live.store.data_mut().begin_call(until, stop.clone());
        live.store.set_epoch_deadline(1);
        live.store.set_hostcall_fuel(lift);
        let fuel = live.store.get_fuel().ok();
        let r = invoke(&mut live, subject, call).await;
        Ok::<_, Failure>((live, r, made, fuel))
    };
    let outcome = tokio::select! {
        biased;
        _ = stop.cancelled() => Err(Cut::Cancelled),
        _ = tokio::time::sleep_until(until.into()) => Err(Cut::Deadline),
        r = work => Ok(r),
    };
    let took = started.elapsed();
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
    let cut = Cost::took(took);
    let cost = |live: &Live, made: Option<Duration>, fuel: Option<u64>| Cost {
        took,
        instantiate: made,
        instructions: fuel
            .zip(live.store.get_fuel().ok())
            .map(|(before, after)| before.saturating_sub(after)),
        memory_bytes: Some(live.store.data().limiter.peak_bytes as u64),
    };
    match outcome {
        Err(Cut::Deadline) => (None, Err(past_deadline()), cut),
        Err(Cut::Cancelled) => (None, Err(cancelled()), cut),
        Ok(Err(f)) => (None, Err(f), cut),
        Ok(Ok((mut live, Ok(answer), made, fuel))) => {
            live.store.data_mut().end_call();
            let cost = cost(&live, made, fuel);
            (Some(live), Ok(answer), cost)
        }
        Ok(Ok((mut live, Err(e), made, fuel))) => {
            // A trapped instance cannot be re-entered and its state is
            // suspect: it goes, and the next call gets a fresh one.
            let hit_memory = live.store.data().limiter.hit_memory_cap;
            live.store.data_mut().end_call();
            let f = if hit_memory {
                failure(
                    FailureKind::Memory,
                    format!("ran out of its {} MiB memory", p.manifest.limits.memory_mib),
                )
            } else if runtime::over_lift_budget(&e) {
                // All or nothing: the answer is refused as it is copied,
                // before any of it is applied.
                failure(
                    FailureKind::Fault,
                    format!(
                        "copied more than {lift} bytes to the host in one transfer \
                         (its answer or a host call's arguments): over the call's \
                         lifting budget"
                    ),
                )
            } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                match stop.is_cancelled() {
                    true => cancelled(),
                    false => past_deadline(),
                }
            } else {
                failure(FailureKind::Trap, format!("trapped: {}", root_cause(&e)))
            };
            (None, Err(f), cost(&live, made, fuel))
        }
    }
}

/// What one call cost (all but `took` only for the developer kit's trace).
pub(super) struct Cost {
    took: Duration,
    instantiate: Option<Duration>,
    instructions: Option<u64>,
    memory_bytes: Option<u64>,
}

impl Cost {
    /// A call whose instance is gone: only its wall time is known.
    fn took(took: Duration) -> Self {
        Self {
            took,
            instantiate: None,
            instructions: None,
            memory_bytes: None,
        }
    }
}

impl WasmScope {
    /// Runs one call of plugin `i` under its deadline, off the async
    /// workers as [`Offload`] says. After a failure of any kind the
    /// instance is gone; the next call gets a fresh one. With a trace, the
    /// call is recorded and `self.traced` says where.
    pub(super) async fn run(
        &mut self,
        i: usize,
        call: Call,
        deadline: Duration,
    ) -> Result<Answer, Failure> {
        self.traced = None;
        if self.inner.stop.is_cancelled() {
            return Err(failure(
                FailureKind::Cancelled,
                "not called: its sync is stopping",
            ));
        }
        let (name, messages) = (call.name(), call.messages());
        let live = self.live[i].take();
        let (live, result, cost) = match self.inner.offload {
            Offload::Inline => attempt(&self.inner, i, live, &self.subject, call, deadline).await,
            Offload::BlockingPool
                if tokio::runtime::Handle::current().runtime_flavor()
                    == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                let handle = tokio::runtime::Handle::current();
                tokio::task::block_in_place(|| {
                    handle.block_on(attempt(&self.inner, i, live, &self.subject, call, deadline))
                })
            }
            Offload::BlockingPool => {
                let handle = tokio::runtime::Handle::current();
                let (inner, subject) = (self.inner.clone(), self.subject.clone());
                tokio::task::spawn_blocking(move || {
                    handle.block_on(attempt(&inner, i, live, &subject, call, deadline))
                })
                .await
                .unwrap_or_else(|e| {
                    (
                        None,
                        Err(failure(
                            FailureKind::Trap,
                            format!("plugin call task failed: {e}"),
                        )),
                        Cost::took(Duration::ZERO),
                    )
                })
            }
        };
        self.live[i] = live;
        if let Some(trace) = &self.inner.trace {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let (status, error) = match &result {
                Ok(_) => ("ok", None),
                Err(f) => (f.kind.as_str(), Some(f.reason.clone())),
            };
            self.traced = Some(trace.push(CallTrace {
                plugin: self.inner.plugins[i].manifest.name.clone(),
                call: name,
                chat_id: self.subject.chat_id.clone(),
                messages,
                instantiate_ms: cost.instantiate.map(ms),
                wall_ms: ms(cost.took),
                instructions: cost.instructions,
                memory_bytes: cost.memory_bytes,
                result: status,
                error,
                outcomes: Vec::new(),
            }));
        }
        result
    }
}
