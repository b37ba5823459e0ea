//! A chat's plugin calls: the hooks before and after, the batches split by
//! the manifest's limits, the host's checks on what comes back, and the
//! `on_error` policy and tripping when a call fails.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;

use super::call::{Answer, Call, Live};
use super::trace::TracedOutcome;
use super::{ChainInner, Failure, failure};
use crate::domain::{self, QuarantinedMessage, now_ms};
use crate::plugins::wasm::bindings::{self, Chat, Message, Outcome, WitContext, WitDecision};
use crate::plugins::wasm::manifest::{Limits, OnError};
use crate::plugins::wasm::stats::FailureKind;
use crate::plugins::{ChatDecision, ChatScope, ChatSummary, Transformed};

pub(super) struct WasmScope {
    pub(super) inner: Arc<ChainInner>,
    pub(super) ctx: WitContext,
    pub(super) chat: Chat,
    /// Each plugin's instance for this chat, made by its first call.
    pub(super) live: Vec<Option<Live>>,
    /// Where the last call went in the chain's trace, when it has one.
    pub(super) traced: Option<usize>,
}

impl WasmScope {
    pub(super) fn new(inner: Arc<ChainInner>, ctx: WitContext, chat: Chat) -> Self {
        let live = (0..inner.plugins.len()).map(|_| None).collect();
        Self {
            inner,
            ctx,
            chat,
            live,
            traced: None,
        }
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
        if let (Some(trace), Some(at), Ok(outcomes)) = (&self.inner.trace, self.traced, &result) {
            trace.annotate(at, traced(&part, outcomes));
        }
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

/// A checked batch's answers, for the trace.
fn traced(part: &[(domain::Message, bool)], outcomes: &[Outcome]) -> Vec<TracedOutcome> {
    part.iter()
        .zip(outcomes)
        .map(|((m, _), o)| {
            let (outcome, reason) = match o {
                Outcome::Keep => ("keep", None),
                Outcome::Replace(_) => ("replace", None),
                Outcome::Drop(r) => ("drop", Some(failure(FailureKind::Error, r).reason)),
            };
            TracedOutcome {
                id: m.id.clone(),
                outcome,
                reason,
            }
        })
        .collect()
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
