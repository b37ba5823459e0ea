//! The plugin port: what the sync asks of the plugin chain.
//!
//! The sync takes one [`PluginChain`] snapshot when it starts (so a reload
//! never changes the plugins of a running sync) and opens a [`ChatScope`]
//! per chat: `before_chat_sync` may skip the chat or tighten its limits,
//! `transform` sees the chat's messages as one batch, `after_chat_sync` gets
//! the chat's summary. A scope owns whatever per-chat state the adapter
//! needs (the WASM adapter: one store per plugin) and drops it at the end,
//! so nothing crosses chats or sessions.

use std::sync::Arc;

pub mod wasm;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::domain::{Chat, Message, QuarantinedMessage};

/// Who is syncing, passed to every hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncContext {
    pub session_id: String,
    /// Empty for live messages outside a sync.
    pub sync_id: String,
    /// `auto`, `manual` or `live`.
    pub trigger: String,
}

/// What the chain decided for a chat before its messages are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatDecision {
    /// Sync it, fetching at most `max_messages` (if set) and only messages at
    /// or after `since_ms` (if set).
    Proceed {
        max_messages: Option<u32>,
        since_ms: Option<i64>,
    },
    /// Do not sync it; the chat still gets its progress events.
    Skip { reason: String },
}

/// The chain's verdict on one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transformed {
    /// Messages to store, possibly rewritten or tagged.
    pub keep: Vec<Message>,
    /// Messages a fail-closed plugin could not vouch for.
    pub quarantined: Vec<QuarantinedMessage>,
    /// Messages a plugin dropped on purpose.
    pub dropped: u64,
    /// Messages a plugin replaced.
    pub modified: u64,
}

/// A chat's outcome, handed to `after_chat_sync`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatSummary {
    pub fetched: u32,
    pub stored: u32,
    pub modified: u32,
    pub dropped: u32,
    pub failed: u32,
}

/// The plugins of one sync.
#[async_trait]
pub trait PluginChain: Send + Sync {
    /// True when there is nothing to run, so the sync can skip the calls.
    fn is_empty(&self) -> bool;

    /// Opens the per-chat scope.
    async fn chat_scope(&self, ctx: &SyncContext, chat: &Chat) -> Box<dyn ChatScope>;
}

/// Per-chat plugin state.
#[async_trait]
pub trait ChatScope: Send {
    async fn before_chat_sync(&mut self) -> ChatDecision;
    async fn transform(&mut self, messages: Vec<Message>) -> Transformed;
    async fn after_chat_sync(&mut self, summary: ChatSummary);
}

/// Where the current chain comes from (swapped atomically on reload).
pub trait PluginHost: Send + Sync {
    /// The chain a sync starting now uses.
    fn chain(&self) -> Arc<dyn PluginChain>;

    /// The chain of a sync that stops when `stop` is cancelled (the run
    /// cancelled, `DELETE`, the host shutting down): a plugin call running
    /// then ends within one epoch tick wherever it is (computing or waiting
    /// in a host call), and no further call is made. The messages of a call
    /// cut short get the plugin's `on_error` policy, like any call that did
    /// not answer; the cut is counted as a cancelled call, not a failure.
    fn chain_until(&self, stop: CancellationToken) -> Arc<dyn PluginChain> {
        let _ = stop;
        self.chain()
    }
}

/// No plugins: every chat proceeds, every message is kept.
#[derive(Debug, Default)]
pub struct NoPlugins;

struct PassThrough;

#[async_trait]
impl ChatScope for PassThrough {
    async fn before_chat_sync(&mut self) -> ChatDecision {
        ChatDecision::Proceed {
            max_messages: None,
            since_ms: None,
        }
    }

    async fn transform(&mut self, messages: Vec<Message>) -> Transformed {
        Transformed {
            keep: messages,
            ..Default::default()
        }
    }

    async fn after_chat_sync(&mut self, _summary: ChatSummary) {}
}

#[async_trait]
impl PluginChain for NoPlugins {
    fn is_empty(&self) -> bool {
        true
    }

    async fn chat_scope(&self, _ctx: &SyncContext, _chat: &Chat) -> Box<dyn ChatScope> {
        Box::new(PassThrough)
    }
}

impl PluginHost for NoPlugins {
    fn chain(&self) -> Arc<dyn PluginChain> {
        Arc::new(NoPlugins)
    }
}
