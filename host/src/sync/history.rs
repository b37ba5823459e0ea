//! What a run reads beyond the newest messages: the deeper history of a
//! chat (`mode: history`) and the `maxAgeDays` cutoff of any run.
//!
//! A history run plans each chat once per run (or resume), before the
//! walk: how many messages it still lacks (`limitPerChat`, the depth asked
//! for, minus the messages stored for it) and where the read goes on (its
//! oldest stored message, or the run's `before`). A chat that already
//! holds enough is not read. A chat with nothing stored is read from its
//! newest message. Whatever is read is written like any sync's messages:
//! by id, so a message is never stored twice and `messageCount` stays
//! exact. A resumed run plans again from what is stored, so it continues
//! where the interrupted one stopped.

use std::collections::{HashMap, HashSet};

use crate::browser::{ClientError, HistoryRequest};
use crate::domain::{Chat, Message, MessageMark, SessionId, SyncMode, SyncRun};
use crate::storage::StoreError;

use super::SyncDeps;

const DAY_MS: i64 = 86_400_000;

/// One chat's share of a history run.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Plan {
    /// Messages still to read.
    pub want: u32,
    /// Read messages older than this; `None`: nothing stored, read the
    /// newest.
    pub before: Option<MessageMark>,
}

/// What a run reads besides the newest messages.
#[derive(Debug, Default)]
pub(super) struct Reads {
    /// Per chat of a history run.
    plans: HashMap<String, Plan>,
    /// Nothing older than this (ms) is read or stored (`maxAgeDays`, by the
    /// provider's clock).
    pub cutoff: Option<i64>,
}

impl Reads {
    /// Plans the run's chats not in `done`.
    pub async fn prepare(
        deps: &SyncDeps,
        sid: &SessionId,
        run: &SyncRun,
        chats: &[Chat],
        done: &HashSet<String>,
    ) -> Result<Reads, StoreError> {
        let cutoff = run
            .max_age_days
            .map(|d| deps.client.clock_ms().saturating_sub(i64::from(d) * DAY_MS));
        let mut plans = HashMap::new();
        if run.mode == SyncMode::History {
            for chat in chats.iter().filter(|c| !done.contains(&c.id)) {
                let stored = deps.store.count_messages(sid, Some(&chat.id)).await?;
                let want = u64::from(run.limit_per_chat).saturating_sub(stored) as u32;
                let before = match run.before {
                    Some(ms) => Some(MessageMark::before(ms)),
                    None => deps.store.oldest_mark(sid, &chat.id).await?,
                };
                plans.insert(chat.id.clone(), Plan { want, before });
            }
        }
        Ok(Reads { plans, cutoff })
    }

    /// The plan of `chat_id` in a history run.
    pub fn plan(&self, chat_id: &str) -> Option<&Plan> {
        self.plans.get(chat_id)
    }

    /// Drops what is older than the cutoff.
    pub fn trim(&self, messages: &mut Vec<Message>) {
        if let Some(t) = self.cutoff {
            messages.retain(|m| m.timestamp >= t);
        }
    }
}

/// Reads a planned chat: at most `limit` (and what it lacks) messages.
pub(super) async fn fetch(
    deps: &SyncDeps,
    chat: &Chat,
    plan: &Plan,
    limit: u32,
    cutoff: Option<i64>,
) -> Result<Vec<Message>, ClientError> {
    let limit = limit.min(plan.want);
    match &plan.before {
        Some(before) => {
            let req = HistoryRequest {
                limit,
                before: before.clone(),
                not_before: cutoff,
            };
            deps.client.fetch_messages_before(chat, &req).await
        }
        None => deps.client.fetch_messages(chat, limit).await,
    }
}
