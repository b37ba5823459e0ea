//! A chat's plugin calls: the hooks before and after, the batches split by
//! the manifest's limits, the host's checks on what comes back, and the
//! `on_error` policy and tripping when a call fails.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;

use super::call::{Answer, Call, Live, Subject};
use super::part::{Applied, Part, Verdict};
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
        mut pending: Part,
        out: &mut Transformed,
    ) -> Part {
        let p = &self.inner.plugins[i];
        let n = pending.len() as u64;
        match p.manifest.on_error {
            OnError::FailClosed => {
                p.stats.quarantined(n);
                let at = now_ms();
                out.quarantined
                    .extend(
                        pending.msgs.into_iter().map(|message| QuarantinedMessage {
                            session_id: self.subject.session_id.clone(),
                            sync_id: (!self.subject.sync_id.is_empty())
                                .then(|| self.subject.sync_id.clone()),
                            plugin: p.manifest.name.clone(),
                            reason: reason.to_owned(),
                            quarantined_at: at,
                            message,
                        }),
                    );
                Part::default()
            }
            OnError::FailOpen => {
                p.stats.skipped_open(n);
                let tag = format!("plugin-skipped:{}", p.manifest.name);
                for m in &mut pending.msgs {
                    if !m.tags.contains(&tag) {
                        m.tags.push(tag.clone());
                    }
                }
                pending
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
        let mut pending = Part::new(messages);
        for i in 0..self.inner.plugins.len() {
            if pending.is_empty() {
                break;
            }
            if self.inner.plugins[i].transform.is_none() {
                continue;
            }
            let limits = self.inner.plugins[i].manifest.limits;
            if fits_one_call(&pending.msgs, &limits) {
                // The usual chat: one call, and the messages are not moved
                // into a sub-batch and back.
                pending = self.transform_part(i, pending, &mut out).await;
                continue;
            }
            let mut next = Part::default();
            for part in pending.split(|rest| sub_batch_len(rest, &limits)) {
                next.append(self.transform_part(i, part, &mut out).await);
            }
            pending = next;
        }
        out.modified = pending.changed_count();
        out.keep = pending.msgs;
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

/// True when `msgs` make one sub-batch (as [`sub_batch_len`] would cut it).
fn fits_one_call(msgs: &[domain::Message], limits: &Limits) -> bool {
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
    for m in msgs {
        bytes += seen_size(m, max_body);
        if bytes > max_bytes {
            return false;
        }
    }
    true
}

/// How many of `rest`'s first messages make the next sub-batch: at most
/// `max_batch_messages` and, past the first, at most `max_batch_bytes` as
/// the plugin sees them (bodies cut to `max_body_bytes`).
fn sub_batch_len(rest: &[domain::Message], limits: &Limits) -> usize {
    let max_n = limits.max_batch_messages.max(1) as usize;
    let max_bytes = limits.max_batch_bytes as usize;
    let mut bytes = 0usize;
    for (n, m) in rest.iter().take(max_n).enumerate() {
        let size = seen_size(m, limits.max_body_bytes as usize);
        if n > 0 && bytes + size > max_bytes {
            return n;
        }
        bytes += size;
    }
    rest.len().min(max_n)
}

impl WasmScope {
    /// Runs plugin `i` on one sub-batch; returns the messages that go on
    /// down the chain (kept, replaced, or passed by a fail-open policy).
    async fn transform_part(&mut self, i: usize, mut part: Part, out: &mut Transformed) -> Part {
        let p = self.inner.plugins[i].clone();
        if self.tripped(i) {
            let reason = format!("plugin {} is tripped off for this sync", p.manifest.name);
            return self.apply_policy(i, &reason, part, out);
        }
        let limits = p.manifest.limits;
        let deadline = Duration::from_millis(limits.deadline_ms.into());
        let max_body = limits.max_body_bytes as usize;
        let max_output = limits.max_output_bytes as usize;
        let (mut part, result) = match &p.transform {
            Some(TransformExport::V2(_)) => {
                let shared = Arc::new(std::mem::take(&mut part.msgs));
                let call = Call::Edits {
                    msgs: shared.clone(),
                    max_body,
                };
                let answer = self.run(i, call, deadline).await;
                // The store gave its reference back (the call deleted the
                // batch from its table, or the store is gone).
                part.msgs = Arc::try_unwrap(shared).unwrap_or_else(|a| (*a).clone());
                let result = match answer {
                    Ok(Answer::Edits(Ok(list))) => {
                        edits::apply(&part.msgs, list, max_body, max_output).map_err(|reason| {
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
                    part.msgs.iter().map(|m| v1::message(m, max_body)).collect();
                let cuts: Vec<Option<String>> = seen.iter().map(v1::cut_body).collect();
                let result = match self.run(i, Call::Batch(seen), deadline).await {
                    Ok(Answer::Batch(Ok(outcomes))) => {
                        match check(&outcomes, &part.msgs, max_output) {
                            Ok(()) => Ok(Answer2::Outcomes(outcomes, cuts)),
                            Err(reason) => {
                                self.live[i] = None;
                                Err(failure(FailureKind::Fault, reason))
                            }
                        }
                    }
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
                            trace.annotate(at, traced(&part.msgs, &outcomes));
                        }
                        apply_outcomes(&mut part, outcomes, cuts)
                    }
                    Answer2::Edits(changes) => {
                        if let (Some(trace), Some(at)) = (&self.inner.trace, self.traced) {
                            trace.annotate(at, changes.traced(&part.msgs));
                        }
                        changes.commit(&mut part)
                    }
                };
                out.dropped += applied.dropped;
                p.stats
                    .outcomes(n, applied.kept, applied.replaced, applied.dropped);
                part
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

/// A 0.1 answer (checked) applied in place: one outcome per message, in
/// order.
fn apply_outcomes(part: &mut Part, outcomes: Vec<Outcome>, cuts: Vec<Option<String>>) -> Applied {
    let mut answers = outcomes.into_iter().zip(cuts);
    part.apply(|m| match answers.next() {
        None | Some((Outcome::Keep, _)) => Verdict::Kept,
        Some((Outcome::Replace(r), cut)) => {
            *m = v1::apply(m, cut.as_deref(), r);
            Verdict::Changed
        }
        Some((Outcome::Drop(_reason), _)) => Verdict::Dropped,
    })
}

/// A checked batch's answers, for the trace.
fn traced(part: &[domain::Message], outcomes: &[Outcome]) -> Vec<TracedOutcome> {
    part.iter()
        .zip(outcomes)
        .map(|(m, o)| {
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
    pending: &[domain::Message],
    max_output: usize,
) -> Result<(), String> {
    if outcomes.len() != pending.len() {
        return Err(format!(
            "returned {} outcomes for {} messages",
            outcomes.len(),
            pending.len()
        ));
    }
    for (o, m) in outcomes.iter().zip(pending) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::wasm::test_message;

    #[test]
    fn a_0_1_answer_applies_in_place_with_each_flag_on_its_message() {
        let mut part = Part::new(vec![
            test_message("a", "x"),
            test_message("b", "y"),
            test_message("c", "z"),
            test_message("d", "w"),
        ]);
        let mut c = v1::message(&part.msgs[2], 64);
        c.body = Some("Z".into());
        let mut a = v1::message(&part.msgs[0], 64);
        a.body = Some("X".into());
        let outcomes = vec![
            Outcome::Replace(a),
            Outcome::Drop("spam".into()),
            Outcome::Replace(c),
            Outcome::Keep,
        ];
        let applied = apply_outcomes(&mut part, outcomes, vec![None; 4]);
        assert_eq!((applied.kept, applied.replaced, applied.dropped), (1, 2, 1));
        let ids: Vec<&str> = part.msgs.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "d"]);
        assert_eq!(part.changed, [true, true, false]);
        assert_eq!(part.msgs[1].body.as_deref(), Some("Z"));
    }

    #[test]
    fn a_sub_batch_ends_at_its_byte_budget_but_takes_at_least_one() {
        let msgs: Vec<domain::Message> = (0..5)
            .map(|i| test_message(&format!("m{i}"), &"x".repeat(100)))
            .collect();
        let size = seen_size(&msgs[0], 1 << 20);
        let limits = |n: u32, bytes: usize| Limits {
            max_batch_messages: n,
            max_batch_bytes: bytes as u32,
            ..Limits::default()
        };
        assert_eq!(
            sub_batch_len(&msgs, &limits(10, 3 * size)),
            3,
            "exactly at the cap"
        );
        assert_eq!(
            sub_batch_len(&msgs, &limits(10, 3 * size - 1)),
            2,
            "a byte short"
        );
        assert_eq!(
            sub_batch_len(&msgs, &limits(2, 100 * size)),
            2,
            "the count cap"
        );
        assert_eq!(
            sub_batch_len(&msgs, &limits(10, 1)),
            1,
            "one over the cap still goes"
        );
        assert_eq!(sub_batch_len(&msgs, &limits(10, 100 * size)), 5);
        assert!(!fits_one_call(&msgs, &limits(10, 3 * size)));
        assert!(fits_one_call(&msgs, &limits(10, 5 * size)));
    }
}
