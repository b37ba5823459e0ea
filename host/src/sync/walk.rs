//! The walk over the chat list: per chat the hooks, the fetch, the
//! transformers, and the chat's place in the current group.

use std::collections::{HashMap, HashSet};

use tokio_util::sync::CancellationToken;

use super::groups::{Group, InFlight, flush_if_due};
use super::retry::with_retry;
use super::{Stop, SyncDeps, history, revoked};
use crate::domain::Chat;
use crate::domain::{ChatFailure, MessageMark, SessionId, SyncMode, SyncRun, now_ms};
use crate::plugins::{ChatDecision, ChatSummary, SyncContext};
use crate::storage::ChatCommit;

/// Walks the chats not in `done`, committing them in groups.
#[allow(clippy::too_many_arguments)]
pub(super) async fn walk_chats(
    deps: &SyncDeps,
    sid: &SessionId,
    run: &mut SyncRun,
    chats: &[Chat],
    done: &HashSet<String>,
    marks: &HashMap<String, MessageMark>,
    reads: &history::Reads,
    ctx: &SyncContext,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
    pending: &mut Option<InFlight>,
) -> Result<(), Stop> {
    let mut group = Group::new();
    let last = chats.iter().rposition(|c| !done.contains(&c.id));
    for (i, chat) in chats.iter().enumerate() {
        if done.contains(&chat.id) {
            continue;
        }
        if shutdown.is_cancelled() {
            return Err(Stop::Shutdown);
        }
        if cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        let position = i as u32 + 1;
        let chat_seq = run.next_seq;
        let messages_seq = run.next_seq + 1;
        run.next_seq += 2;

        // Incremental: a chat whose last activity is not newer than its
        // newest stored message has nothing to read. It still reports its
        // two events (0 messages), writes nothing and opens no plugin
        // scope. A chat without a `lastMessageAt` is read from its mark.
        let mark = match run.mode {
            SyncMode::Full | SyncMode::History => None,
            SyncMode::Incremental => marks.get(&chat.id),
        };
        // History: a chat that holds enough messages is not read either.
        let plan = reads.plan(&chat.id);
        let unchanged =
            mark.is_some_and(|mark| chat.last_message_at.is_some_and(|t| t <= mark.timestamp));
        if unchanged || plan.is_some_and(|p| p.want == 0) {
            group
                .chats
                .push((position, chat.id.clone(), 0, chat_seq, messages_seq));
            flush_if_due(deps, sid, run, &mut group, i, last, shutdown, pending).await?;
            continue;
        }

        let mut scope = deps.chain.chat_scope(ctx, chat).await;
        let limit = match scope.before_chat_sync().await {
            ChatDecision::Skip { reason } => {
                tracing::debug!(chat_id = %chat.id, %reason, "chat skipped by a plugin");
                run.skipped_chats += 1;
                group.noted = true;
                group
                    .chats
                    .push((position, chat.id.clone(), 0, chat_seq, messages_seq));
                None
            }
            ChatDecision::Proceed {
                max_messages,
                since_ms,
            } => Some((
                max_messages.map_or(run.limit_per_chat, |m| m.min(run.limit_per_chat)),
                since_ms,
            )),
        };

        if let Some((limit, since_ms)) = limit {
            let fetched = with_retry(deps, cancel, shutdown, || async move {
                match (mark, plan) {
                    (Some(mark), _) => deps.client.fetch_messages_after(chat, limit, mark).await,
                    (None, Some(plan)) => {
                        history::fetch(deps, chat, plan, limit, reads.cutoff).await
                    }
                    (None, None) => deps.client.fetch_messages(chat, limit).await,
                }
            })
            .await?;
            match fetched {
                Err((attempts, e)) => {
                    tracing::warn!(chat_id = %chat.id, attempts, error = %e, "chat failed; going on");
                    run.failed_chats.push(ChatFailure {
                        chat_id: chat.id.clone(),
                        attempts,
                        reason: e.to_string(),
                    });
                    group.noted = true;
                    group
                        .chats
                        .push((position, chat.id.clone(), 0, chat_seq, messages_seq));
                    scope
                        .after_chat_sync(ChatSummary {
                            failed: 1,
                            ..Default::default()
                        })
                        .await;
                }
                Ok(mut messages) => {
                    if let Some(since) = since_ms {
                        messages.retain(|m| m.timestamp >= since);
                    }
                    reads.trim(&mut messages);
                    let fetched_n = messages.len() as u32;
                    let mut out = if deps.chain.is_empty() {
                        crate::plugins::Transformed {
                            keep: messages,
                            ..Default::default()
                        }
                    } else {
                        scope.transform(messages).await
                    };
                    // A stop during the plugin calls cut them short: what
                    // they answered is not this chat's true outcome, so the
                    // chat is not committed (a resumed run syncs it again).
                    if shutdown.is_cancelled() {
                        return Err(Stop::Shutdown);
                    }
                    if cancel.is_cancelled() {
                        return Err(Stop::Cancelled);
                    }
                    if deps.options.keep_revoked_bodies {
                        revoked::keep_stored_bodies(deps, sid, &mut out.keep, cancel, shutdown)
                            .await?;
                    }
                    let stored = out.keep.len() as u64;
                    run.quarantined += out.quarantined.len() as u64;
                    group.messages += out.keep.len() + out.quarantined.len();
                    // Incremental reads that found nothing new write
                    // nothing (a full sync still stamps `syncedAt`).
                    let nothing = out.keep.is_empty() && out.quarantined.is_empty();
                    if run.mode == SyncMode::Full || !nothing {
                        group.commits.push(ChatCommit {
                            chat_id: chat.id.clone(),
                            messages: out.keep.into(),
                            quarantined: out.quarantined,
                            synced_at: now_ms(),
                        });
                    }
                    group
                        .chats
                        .push((position, chat.id.clone(), stored, chat_seq, messages_seq));
                    scope
                        .after_chat_sync(ChatSummary {
                            fetched: fetched_n,
                            stored: stored as u32,
                            modified: out.modified as u32,
                            dropped: out.dropped as u32,
                            failed: 0,
                        })
                        .await;
                }
            }
        }
        drop(scope);
        flush_if_due(deps, sid, run, &mut group, i, last, shutdown, pending).await?;
    }
    Ok(())
}
