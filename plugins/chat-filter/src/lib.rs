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

use wasync_plugin::{
    Chat, ChatDecision, ChatHook, ChatSummary, PerInstance, PluginError, SyncContext, SyncLimits,
    config, log,
};

struct Settings {
    skip_archived: bool,
    skip_groups: bool,
    /// Lower-cased.
    patterns: Vec<String>,
    max_messages: Option<u32>,
}

/// Read once per instance (the host makes one per chat). The two switches
/// read as documented: `skip-archived` is on unless `"false"`,
/// `skip-groups` is off unless `"true"`.
static SETTINGS: PerInstance<Result<Settings, PluginError>> = PerInstance::new();

fn read_settings() -> Result<Settings, PluginError> {
    Ok(Settings {
        max_messages: config::parse("max-messages")?,
        skip_archived: config::get("skip-archived").is_none_or(|v| v != "false"),
        skip_groups: config::get("skip-groups").is_some_and(|v| v == "true"),
        patterns: config::list("skip-names")
            .iter()
            .map(|p| p.to_lowercase())
            .collect(),
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

impl ChatHook for ChatFilter {
    fn before_chat_sync(_ctx: SyncContext, c: Chat) -> Result<ChatDecision, PluginError> {
        let s = SETTINGS.try_get_or_init(read_settings)?;
        if s.skip_archived && c.archived {
            return Ok(ChatDecision::Skip("archived".to_owned()));
        }
        if s.skip_groups && c.is_group {
            return Ok(ChatDecision::Skip("group".to_owned()));
        }
        if let Some(name) = c.name.as_deref().map(str::to_lowercase)
            && let Some(p) = s.patterns.iter().find(|p| glob(p, &name))
        {
            return Ok(ChatDecision::Skip(format!("name matches {p:?}")));
        }
        Ok(ChatDecision::Proceed(SyncLimits {
            max_messages: s.max_messages,
            since_ms: None,
        }))
    }

    fn after_chat_sync(_ctx: SyncContext, c: Chat, s: ChatSummary) -> Result<(), PluginError> {
        if s.failed > 0 {
            log::warn(&format!(
                "chat {}: {} of {} messages failed",
                c.id, s.failed, s.fetched
            ));
        }
        Ok(())
    }
}

wasync_plugin::export_chat_hook!(ChatFilter);

#[global_allocator]
static ALLOC: wasync_plugin::SmallAlloc = wasync_plugin::SmallAlloc::new();

#[cfg(test)]
mod tests {
    use super::*;
    use wasync_plugin::Level;
    use wasync_plugin::testing::{self, Instance};

    /// The manifest's `[config]` (plugin.toml).
    const MANIFEST: [(&str, &str); 3] = [
        ("skip-archived", "true"),
        ("skip-names", "*newsletter*\nspam *"),
        ("max-messages", "200"),
    ];

    fn decide(config: &[(&str, &str)], c: Chat) -> Result<ChatDecision, PluginError> {
        testing::with_config(config, || {
            ChatFilter::before_chat_sync(testing::context(), c)
        })
    }

    fn skip(reason: &str) -> Result<ChatDecision, PluginError> {
        Ok(ChatDecision::Skip(reason.to_owned()))
    }

    #[test]
    fn skips_archived_and_named_chats_and_caps_the_rest() {
        let archived = Chat {
            archived: true,
            ..testing::chat("Family")
        };
        assert_eq!(decide(&MANIFEST, archived), skip("archived"));
        assert_eq!(
            decide(&MANIFEST, testing::chat("Weekly Newsletter")),
            skip("name matches \"*newsletter*\"")
        );
        assert_eq!(
            decide(&MANIFEST, testing::chat("SPAM offers")),
            skip("name matches \"spam *\"")
        );
        let limits = SyncLimits {
            max_messages: Some(200),
            since_ms: None,
        };
        assert_eq!(
            decide(&MANIFEST, testing::chat("Friends")),
            Ok(ChatDecision::Proceed(limits))
        );
        let unnamed = Chat {
            name: None,
            ..testing::chat("")
        };
        assert_eq!(
            decide(&MANIFEST, unnamed),
            Ok(ChatDecision::Proceed(limits))
        );
    }

    #[test]
    fn defaults_and_switches() {
        let archived_group = Chat {
            archived: true,
            is_group: true,
            ..testing::chat("Team")
        };
        assert_eq!(decide(&[], archived_group.clone()), skip("archived"));
        let config = [("skip-archived", "false"), ("skip-groups", "true")];
        assert_eq!(decide(&config, archived_group.clone()), skip("group"));
        let config = [("skip-archived", "false"), ("skip-groups", "yes")];
        assert_eq!(
            decide(&config, archived_group),
            Ok(ChatDecision::Proceed(SyncLimits::default()))
        );
    }

    #[test]
    fn a_bad_max_messages_is_a_config_error_naming_it() {
        let err = decide(&[("max-messages", "lots")], testing::chat("Friends")).unwrap_err();
        assert_eq!(err.code, "bad-config");
        assert_eq!(
            err.message,
            "max-messages must be a whole number, got \"lots\""
        );
    }

    #[test]
    fn after_chat_sync_warns_only_about_failures() {
        let plugin = Instance::new(&MANIFEST);
        let failed = ChatSummary {
            failed: 2,
            ..testing::summary(5)
        };
        plugin
            .run(|| {
                ChatFilter::after_chat_sync(
                    testing::context(),
                    testing::chat("x"),
                    testing::summary(5),
                )
            })
            .unwrap();
        plugin
            .run(|| ChatFilter::after_chat_sync(testing::context(), testing::chat("x"), failed))
            .unwrap();
        assert_eq!(
            plugin.logs(),
            [(Level::Warn, "chat c1: 2 of 5 messages failed".to_owned())]
        );
    }

    #[test]
    fn globs() {
        assert!(glob("*newsletter*", "weekly newsletter"));
        assert!(glob("spam *", "spam offers"));
        assert!(!glob("spam *", "no spam here"));
        assert!(glob("a*b*c", "abc") && glob("a*b*c", "a-b-c") && !glob("a*b*c", "acb"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
        assert!(!glob("ab*ba", "aba"), "the ends may not overlap");
    }
}
