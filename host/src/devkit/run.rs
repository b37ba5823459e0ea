//! `wasync plugin run`: one plugin on messages and chats, as a sync runs
//! it, with what every call cost.
//!
//! Per chat, in the sync's order: `before-chat-sync` (its limits applied to
//! the chat's messages the way a fetch applies them: the newest
//! `max-messages`, none older than `since-ms`), the messages oldest first in
//! sub-batches, then `after-chat-sync` with the chat's summary. What the
//! host would store, quarantine or drop is reported beside each call.

use std::path::PathBuf;

use serde::Serialize;

use super::{DevkitError, engine, input, read, read_text};
use crate::domain::{Chat, Message};
use crate::plugins::wasm::{CallTrace, OnError, PluginInfo, Trace, Trial};
use crate::plugins::{ChatDecision, ChatSummary, SyncContext};

/// What to run and on what.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub wasm: PathBuf,
    pub manifest: PathBuf,
    /// Messages (`-`: standard input).
    pub input: Option<PathBuf>,
    /// Chats: their names and flags for the hooks; chats with no messages
    /// still get their hooks called.
    pub chats: Option<PathBuf>,
    /// Runs of the whole input, for a per-message cost (at least 1).
    pub repeat: u32,
    /// The sync context the calls see.
    pub session_id: String,
    pub trigger: String,
    /// The upload size cap the plugin is checked against.
    pub max_component_bytes: usize,
}

/// The result of a run.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub plugin: PluginInfo,
    /// What the host does with a batch when a call fails (the manifest's
    /// `on_error`).
    pub on_failure: String,
    /// True when any call failed (the exit status is then 1).
    pub failed: bool,
    /// The first run, chat by chat.
    pub chats: Vec<ChatReport>,
    /// The cost over every run, with `--repeat`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Repeat>,
    /// Lines the plugin logged (to standard error) and lines over its
    /// per-call budget, over every run.
    pub log_lines: u64,
    pub logs_dropped: u64,
}

/// One chat of the first run.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatReport {
    pub chat_id: String,
    /// The chat hook's verdict (`{"proceed": {...}}` or `{"skip": reason}`);
    /// absent for a plugin without chat hooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<serde_json::Value>,
    /// Messages handed to the plugin, after the hook's limits.
    pub fetched: usize,
    /// What the host would store, as it would store it.
    pub stored: Vec<Message>,
    /// Messages a failed fail-closed call sends to quarantine, with why.
    pub quarantined: Vec<Quarantined>,
    pub dropped: u64,
    pub modified: u64,
    /// Every call, in order.
    pub calls: Vec<CallTrace>,
}

/// A quarantined message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quarantined {
    pub id: String,
    pub reason: String,
}

/// `transform-batch` cost over `--repeat` runs; instantiation excluded.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Repeat {
    pub runs: u32,
    pub calls: usize,
    /// Messages per run.
    pub messages: usize,
    /// Wall time per message, µs: the fastest run and the median run.
    pub us_per_message_min: f64,
    pub us_per_message_median: f64,
    /// Instructions per message (the same every run for a deterministic
    /// plugin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions_per_message: Option<f64>,
}

/// Loads the plugin as an upload would, then runs it.
pub async fn run(opts: &RunOptions) -> Result<RunReport, DevkitError> {
    let manifest = read_text(&opts.manifest)?;
    let wasm = read(&opts.wasm)?;
    let messages = match &opts.input {
        Some(p) => Some(input::messages(p)?),
        None => None,
    };
    let chats = match &opts.chats {
        Some(p) => input::chats(p)?,
        None => Vec::new(),
    };
    let trial = Trial::load(engine(true)?, &manifest, &wasm, opts.max_component_bytes)?;
    let info = trial.info();
    if messages.is_none() && chats.is_empty() {
        return Err(DevkitError::Usage(
            "nothing to run on: give --input (messages) and/or --chat (chats)".into(),
        ));
    }
    if info.world.transforms() && messages.is_none() {
        return Err(DevkitError::Usage(format!(
            "plugin {} transforms messages ({} world): give --input",
            info.name,
            info.world.as_str()
        )));
    }
    let work = plan(messages.unwrap_or_default(), chats);
    let ctx = SyncContext {
        session_id: opts.session_id.clone(),
        sync_id: "plugin-run".into(),
        trigger: opts.trigger.clone(),
    };

    let runs = opts.repeat.max(1);
    let mut first = Vec::new();
    let mut per_run: Vec<(f64, u64, usize, usize)> = Vec::new();
    for r in 0..runs {
        let trace = Trace::default();
        let chain = trial.chain(trace.clone());
        let mut reports = Vec::new();
        for (chat, messages) in &work {
            reports.push(
                run_chat(
                    &*chain,
                    &trace,
                    &ctx,
                    chat,
                    messages.clone(),
                    info.world.hooks(),
                )
                .await,
            );
        }
        let batches = reports
            .iter()
            .flat_map(|c| &c.calls)
            .filter(|c| c.call == "transform-batch" && c.result == "ok");
        let (mut ms, mut instructions, mut calls, mut n) = (0.0, 0u64, 0, 0);
        for c in batches {
            ms += c.wall_ms - c.instantiate_ms.unwrap_or(0.0);
            instructions += c.instructions.unwrap_or(0);
            calls += 1;
            n += c.messages;
        }
        per_run.push((ms, instructions, calls, n));
        if r == 0 {
            first = reports;
        }
    }

    let failed = first
        .iter()
        .flat_map(|c| &c.calls)
        .any(|c| c.result != "ok");
    let counters = trial.counters();
    let repeat = (runs > 1).then(|| {
        let (_, instructions, calls, n) = per_run[0];
        let mut us: Vec<f64> = per_run
            .iter()
            .filter(|r| r.3 > 0)
            .map(|(ms, _, _, n)| ms * 1000.0 / *n as f64)
            .collect();
        us.sort_by(f64::total_cmp);
        Repeat {
            runs,
            calls,
            messages: n,
            us_per_message_min: us.first().copied().unwrap_or(0.0),
            us_per_message_median: us.get(us.len() / 2).copied().unwrap_or(0.0),
            instructions_per_message: (n > 0 && instructions > 0)
                .then(|| instructions as f64 / n as f64),
        }
    });
    Ok(RunReport {
        on_failure: match info.on_error {
            OnError::FailClosed => {
                "fail-closed: the call's messages go to quarantine, not stored".into()
            }
            OnError::FailOpen => format!(
                "fail-open: the call's messages are stored unchanged, tagged plugin-skipped:{}",
                info.name
            ),
        },
        plugin: info,
        failed,
        chats: first,
        repeat,
        log_lines: counters.log_lines,
        logs_dropped: counters.logs_dropped,
    })
}

/// The chats to run, in input order, each with its messages oldest first
/// (a page of the API is newest first; a sync hands a chat over in order).
fn plan(messages: Vec<Message>, chats: Vec<Chat>) -> Vec<(Chat, Vec<Message>)> {
    let mut work: Vec<(Chat, Vec<Message>)> = chats.into_iter().map(|c| (c, Vec::new())).collect();
    for m in messages {
        match work.iter_mut().find(|(c, _)| c.id == m.chat_id) {
            Some((_, ms)) => ms.push(m),
            None => work.push((
                Chat {
                    id: m.chat_id.clone(),
                    name: None,
                    is_group: m.chat_id.ends_with("@g.us"),
                    unread_count: 0,
                    archived: false,
                    pinned: false,
                    last_message_at: None,
                },
                vec![m],
            )),
        }
    }
    for (chat, ms) in &mut work {
        ms.sort_by(|a, b| (a.timestamp, &a.id).cmp(&(b.timestamp, &b.id)));
        if chat.last_message_at.is_none() {
            chat.last_message_at = ms.last().map(|m| m.timestamp);
        }
    }
    work
}

async fn run_chat(
    chain: &dyn crate::plugins::PluginChain,
    trace: &Trace,
    ctx: &SyncContext,
    chat: &Chat,
    mut messages: Vec<Message>,
    hooks: bool,
) -> ChatReport {
    let mut scope = chain.chat_scope(ctx, chat).await;
    let decision = scope.before_chat_sync().await;
    let shown = hooks.then(|| match &decision {
        ChatDecision::Proceed {
            max_messages,
            since_ms,
        } => serde_json::json!({"proceed": {"maxMessages": max_messages, "sinceMs": since_ms}}),
        ChatDecision::Skip { reason } => serde_json::json!({ "skip": reason }),
    });
    let mut report = ChatReport {
        chat_id: chat.id.clone(),
        decision: shown,
        fetched: 0,
        stored: Vec::new(),
        quarantined: Vec::new(),
        dropped: 0,
        modified: 0,
        calls: Vec::new(),
    };
    if let ChatDecision::Proceed {
        max_messages,
        since_ms,
    } = decision
    {
        if let Some(max) = max_messages {
            let cut = messages.len().saturating_sub(max as usize);
            messages.drain(..cut);
        }
        if let Some(since) = since_ms {
            messages.retain(|m| m.timestamp >= since);
        }
        report.fetched = messages.len();
        let out = scope.transform(messages).await;
        report.dropped = out.dropped;
        report.modified = out.modified;
        report.quarantined = out
            .quarantined
            .into_iter()
            .map(|q| Quarantined {
                id: q.message.id,
                reason: q.reason,
            })
            .collect();
        report.stored = out.keep;
        scope
            .after_chat_sync(ChatSummary {
                fetched: report.fetched as u32,
                stored: report.stored.len() as u32,
                modified: report.modified as u32,
                dropped: report.dropped as u32,
                failed: 0,
            })
            .await;
    }
    report.calls = trace.take();
    report
}
