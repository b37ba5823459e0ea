//! A chat's plugin calls: the hooks before and after, the batches split by
//! the manifest's limits, the host's checks on what comes back, and the
//! `on_error` policy and tripping when a call fails.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;

use super::call::{Answer, Call, Live, Subject};
use super::trace::TracedOutcome;
use super::{ChainInner, Failure, TransformExport, edits, failure};
use crate::domain::{self, QuarantinedMessage, now_ms};
use crate::plugins::wasm::bindings::v1::{self, Message, Outcome};
use crate::plugins::wasm::bindings::{GuestError, seen_size};
use crate::plugins::wasm::manifest::{Limits, OnError};
use crate::plugins::wasm::stats::FailureKind;
use crate::plugins::{ChatDecision, ChatScope, ChatSummary, SyncContext, Transformed};

pub(super) struct WasmScope {
    pub(super) inner: Arc<ChainInner>,
    /// The context and chat every call is about.
    pub(super) subject: Arc<Subject>,
    /// Each plugin's instance for this chat, made by its first call.
    pub(super) live: Vec<Option<Live>>,
    /// Where the last call went in the chain's trace, when it has one.
    pub(super) traced: Option<usize>,
}

impl WasmScope {
    pub(super) fn new(inner: Arc<ChainInner>, ctx: &SyncContext, chat: &domain::Chat) -> Self {
        let live = (0..inner.plugins.len()).map(|_| None).collect();
        Self {
            inner,
            subject: Arc::new(Subject::new(ctx, chat)),
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
                    .extend(
                        pending.into_iter().map(|(message, _)| QuarantinedMessage {
                            session_id: self.subject.session_id.clone(),
                            sync_id: (!self.subject.sync_id.is_empty())
                                .then(|| self.subject.sync_id.clone()),
                            plugin: p.manifest.name.clone(),
                            reason: reason.to_owned(),
                            quarantined_at: at,
                            message,
                        }),
                    );
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
                    Ok(Answer::Before(Ok(ChatDecision::Skip { reason }))) => {
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
                        } = d
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
                    Ok(Answer::Before(Err(ge))) => Some(guest_failure(ge)),
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
            if fits_one_call(&pending, &limits) {
                // The usual chat: one call, and the messages are not moved
                // into a sub-batch and back.
                pending = self.transform_part(i, pending, &mut out).await;
                continue;
            }
            let mut next = Vec::with_capacity(pending.len());
            let mut rest = pending.into_iter().peekable();
            while rest.peek().is_some() {
                let part = sub_batch(&mut rest, &limits);
                let survivors = self.transform_part(i, part, &mut out).await;
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
            let f = match self.run(i, Call::After(summary), deadline).await {
                Ok(Answer::After(Ok(()))) => None,
                Ok(Answer::After(Err(ge))) => Some(guest_failure(ge)),
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

/// True when `msgs` make one sub-batch (as [`sub_batch`] would cut it).
fn fits_one_call(msgs: &[(domain::Message, bool)], limits: &Limits) -> bool {
    let max_n = limits.max_batch_messages.max(1) as usize;
    let max_bytes = limits.max_batch_bytes as usize;
    if msgs.len() > max_n {
        return false;
    }
    if msgs.len() <= 1 {
        return true;
    }
    let max_body = limits.max_body_bytes as usize;
    let mut bytes = 0usize;
    for (m, _) in msgs {
        bytes += seen_size(m, max_body);
        if bytes > max_bytes {
            return false;
        }
    }
    true
}

/// Takes the next sub-batch off `rest`: at most `max_batch_messages`
/// messages and, past the first, at most `max_batch_bytes` as the plugin
/// sees them (bodies cut to `max_body_bytes`).
fn sub_batch(
    rest: &mut std::iter::Peekable<std::vec::IntoIter<(domain::Message, bool)>>,
    limits: &Limits,
) -> Vec<(domain::Message, bool)> {
    let max_n = limits.max_batch_messages.max(1) as usize;
    let max_bytes = limits.max_batch_bytes as usize;
    let mut part = Vec::with_capacity(max_n.min(rest.len()));
    let mut bytes = 0usize;
    while part.len() < max_n
        && let Some((m, _)) = rest.peek()
    {
        let size = seen_size(m, limits.max_body_bytes as usize);
        if !part.is_empty() && bytes + size > max_bytes {
            break;
        }
        bytes += size;
        part.extend(rest.next());
    }
    part
}

/// What a plugin answered for a sub-batch, checked: the messages that go
/// on down the chain (with whether a plugin changed them) and the counts.
pub(super) struct Applied {
    pub next: Vec<(domain::Message, bool)>,
    pub kept: u64,
    pub replaced: u64,
    pub dropped: u64,
}

impl WasmScope {
    /// Runs plugin `i` on one sub-batch; returns the messages that go on
    /// down the chain (kept, replaced, or passed by a fail-open policy).
    async fn transform_part(
        &mut self,
        i: usize,
        part: Vec<(domain::Message, bool)>,
        out: &mut Transformed,
    ) -> Vec<(domain::Message, bool)> {
        let p = self.inner.plugins[i].clone();
        if self.tripped(i) {
            let reason = format!("plugin {} is tripped off for this sync", p.manifest.name);
            return self.apply_policy(i, &reason, part, out);
        }
        let limits = p.manifest.limits;
        let deadline = Duration::from_millis(limits.deadline_ms.into());
        let max_body = limits.max_body_bytes as usize;
        let max_output = limits.max_output_bytes as usize;
        let (part, result) = match &p.transform {
            Some(TransformExport::V2(_)) => {
                let shared = Arc::new(part);
                let call = Call::Edits {
                    msgs: shared.clone(),
                    max_body,
                };
                let answer = self.run(i, call, deadline).await;
                // The store gave its reference back (the call deleted the
                // batch from its table, or the store is gone).
                let part = Arc::try_unwrap(shared).unwrap_or_else(|a| (*a).clone());
                let result = match answer {
                    Ok(Answer::Edits(Ok(list))) => {
                        edits::apply(&part, list, max_body, max_output).map_err(|reason| {
                            // Output the host refuses also means the
                            // instance is not to be trusted with the next
                            // batch.
                            self.live[i] = None;
                            failure(FailureKind::Fault, reason)
                        })
                    }
                    other => Err(answer_failure(other)),
                };
                (part, result.map(Answer2::Edits))
            }
            _ => {
                let seen: Vec<Message> =
                    part.iter().map(|(m, _)| v1::message(m, max_body)).collect();
                let cuts: Vec<Option<String>> = seen.iter().map(v1::cut_body).collect();
                let result = match self.run(i, Call::Batch(seen), deadline).await {
                    Ok(Answer::Batch(Ok(outcomes))) => match check(&outcomes, &part, max_output) {
                        Ok(()) => Ok(Answer2::Outcomes(outcomes, cuts)),
                        Err(reason) => {
                            self.live[i] = None;
                            Err(failure(FailureKind::Fault, reason))
                        }
                    },
                    other => Err(answer_failure(other)),
                };
                (part, result)
            }
        };
        match result {
            Ok(answer) => {
                let n = part.len() as u64;
                let applied = match answer {
                    Answer2::Outcomes(outcomes, cuts) => {
                        if let (Some(trace), Some(at)) = (&self.inner.trace, self.traced) {
                            trace.annotate(at, traced(&part, &outcomes));
                        }
                        apply_outcomes(part, outcomes, cuts)
                    }
                    Answer2::Edits(changes) => {
                        if let (Some(trace), Some(at)) = (&self.inner.trace, self.traced) {
                            trace.annotate(at, changes.traced(&part));
                        }
                        changes.commit(part)
                    }
                };
                out.dropped += applied.dropped;
                p.stats
                    .outcomes(n, applied.kept, applied.replaced, applied.dropped);
                applied.next
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

/// A checked answer to a batch, of either version.
enum Answer2 {
    Outcomes(Vec<Outcome>, Vec<Option<String>>),
    Edits(edits::Checked),
}

/// Why a batch call did not give a usable answer.
fn answer_failure(r: Result<Answer, Failure>) -> Failure {
    match r {
        Ok(Answer::Batch(Err(ge)) | Answer::Edits(Err(ge))) => guest_failure(ge),
        Ok(_) => failure(FailureKind::Fault, "answered the wrong call"),
        Err(f) => f,
    }
}

fn guest_failure(ge: GuestError) -> Failure {
    failure(FailureKind::Error, format!("{}: {}", ge.code, ge.message))
}

/// A 0.1 answer (checked) applied: one outcome per message, in order.
fn apply_outcomes(
    part: Vec<(domain::Message, bool)>,
    outcomes: Vec<Outcome>,
    cuts: Vec<Option<String>>,
) -> Applied {
    let mut a = Applied {
        next: Vec::with_capacity(part.len()),
        kept: 0,
        replaced: 0,
        dropped: 0,
    };
    for (((m, modified), o), cut) in part.into_iter().zip(outcomes).zip(cuts) {
        match o {
            Outcome::Keep => {
                a.kept += 1;
                a.next.push((m, modified));
            }
            Outcome::Replace(r) => {
                a.replaced += 1;
                a.next.push((v1::apply(&m, cut.as_deref(), r), true));
            }
            Outcome::Drop(_reason) => a.dropped += 1,
        }
    }
    a
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
            let size = v1::size(r);
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
