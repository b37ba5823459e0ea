//! One guest call: an instance made when the chat has none, the call
//! bounded by its wall-clock deadline and the sync's stop token, and what
//! it cost.

use std::time::{Duration, Instant};

use wasmtime::{Store, Trap};

use super::scope::WasmScope;
use super::trace::CallTrace;
use super::{ChainInner, Failure, Offload, failure, root_cause};
use crate::plugins::wasm::bindings::{
    Chat, GuestError, HooksGuest, Message, Outcome, TransformGuest, WitContext, WitDecision,
    WitSummary,
};
use crate::plugins::wasm::runtime::StoreData;
use crate::plugins::wasm::stats::FailureKind;

/// One plugin's instance for the current chat.
pub(super) struct Live {
    store: Store<StoreData>,
    transform: Option<TransformGuest>,
    hooks: Option<HooksGuest>,
}

pub(super) enum Call {
    Batch(Vec<Message>),
    Before,
    After(WitSummary),
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::Batch(_) => "transform-batch",
            Call::Before => "before-chat-sync",
            Call::After(_) => "after-chat-sync",
        }
    }

    fn messages(&self) -> usize {
        match self {
            Call::Batch(m) => m.len(),
            _ => 0,
        }
    }
}

pub(super) enum Answer {
    Batch(Result<Vec<Outcome>, GuestError>),
    Before(Result<WitDecision, GuestError>),
    After(Result<(), GuestError>),
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
/// instance when it may serve the chat's next call, and what the call cost.
async fn attempt(
    inner: &ChainInner,
    i: usize,
    live: Option<Live>,
    ctx: &WitContext,
    chat: &Chat,
    call: Call,
    deadline: Duration,
) -> (Option<Live>, Result<Answer, Failure>, Cost) {
    let started = Instant::now();
    let until = started + deadline;
    let stop = &inner.stop;
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
        let fuel = live.store.get_fuel().ok();
        let r = invoke(&mut live, ctx, chat, call).await;
        Ok::<_, Failure>((live, r, made, fuel))
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
                chat_id: self.chat.id.clone(),
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
