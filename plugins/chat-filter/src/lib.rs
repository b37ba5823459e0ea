//! `chat-filter`: decides which chats a sync fetches, before any message is
//! read: skips archived chats and chats whose name matches a pattern, and
//! caps how many messages each remaining chat contributes.
//!
//! Config (manifest `[config]`, all optional):
//! - `skip-archived`: `"true"` (default) or `"false"`
//! - `skip-names`: one pattern per line (a TOML array is passed one item per
//!   line); `*` matches any run of characters, matching ignores case
//! - `max-messages`: cap per chat (default: no cap of its own)
//! - `skip-groups`: `"true"` skips group chats (default `"false"`)

use std::sync::OnceLock;

use exports::wasync::plugin::chat_hooks::{Chat, ChatDecision, ChatSummary, Guest, PluginError, SyncContext, SyncLimits};
use wasync::plugin::host::{Level, config_get, log};

wit_bindgen::generate!({ path: "../../wit", world: "chat-hook" });

struct Settings {
    skip_archived: bool,
    skip_groups: bool,
    patterns: Vec<String>,
    max_messages: Option<u32>,
}

fn settings() -> &'static Result<Settings, String> {
    static S: OnceLock<Result<Settings, String>> = OnceLock::new();
    S.get_or_init(|| {
        let max_messages = match config_get("max-messages") {
            None => None,
            Some(v) => Some(v.trim().parse::<u32>().map_err(|_| format!("max-messages must be a whole number, got {v:?}"))?),
        };
        Ok(Settings {
            skip_archived: config_get("skip-archived").is_none_or(|v| v != "false"),
            skip_groups: config_get("skip-groups").is_some_and(|v| v == "true"),
            patterns: config_get("skip-names")
                .unwrap_or_default()
                .lines()
                .map(|p| p.trim().to_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
            max_messages,
        })
    })
}

/// Glob match with `*` only, on lower-cased text.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(at) => rest = &rest[at + mid.len()..],
            None => return false,
        }
    }
    true
}

struct ChatFilter;

impl Guest for ChatFilter {
    fn before_chat_sync(_ctx: SyncContext, c: Chat) -> Result<ChatDecision, PluginError> {
        let s = settings().as_ref().map_err(|e| PluginError { code: "bad-config".to_owned(), message: e.clone() })?;
        if s.skip_archived && c.archived {
            return Ok(ChatDecision::Skip("archived".to_owned()));
        }
        if s.skip_groups && c.is_group {
            return Ok(ChatDecision::Skip("group".to_owned()));
        }
        if let Some(name) = c.name.as_deref().map(str::to_lowercase) {
            if let Some(p) = s.patterns.iter().find(|p| glob(p, &name)) {
                return Ok(ChatDecision::Skip(format!("name matches {p:?}")));
            }
        }
        Ok(ChatDecision::Proceed(SyncLimits { max_messages: s.max_messages, since_ms: None }))
    }

    fn after_chat_sync(_ctx: SyncContext, c: Chat, s: ChatSummary) -> Result<(), PluginError> {
        if s.failed > 0 {
            log(Level::Warn, &format!("chat {}: {} of {} messages failed", c.id, s.failed, s.fetched));
        }
        Ok(())
    }
}

export!(ChatFilter);
