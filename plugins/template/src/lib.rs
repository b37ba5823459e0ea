//! `__NAME__`: tags every message whose body contains the configured text.
//! Replace the body of `transform_batch` with your own logic.

use std::sync::OnceLock;

use exports::wasync::plugin::message_transform::{Guest, Message, Outcome, PluginError, SyncContext};
use wasync::plugin::host::{Level, config_get, log};

wit_bindgen::generate!({ path: "../../wit", world: "transformer" });

struct Settings {
    contains: String,
    tag: String,
}

/// Config is read once per instance; the host makes one instance per chat.
fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| Settings {
        contains: config_get("contains").unwrap_or_default().to_lowercase(),
        tag: config_get("tag").unwrap_or_else(|| "__NAME__".to_owned()),
    })
}

struct Plugin;

impl Guest for Plugin {
    /// One call per batch (a chat's messages): return exactly one outcome per
    /// message, in order. `Keep` stores it as is, `Replace` stores your
    /// version (same `id` and `chat-id`), `Drop` leaves it out.
    fn transform_batch(ctx: SyncContext, msgs: Vec<Message>) -> Result<Vec<Outcome>, PluginError> {
        let s = settings();
        if s.contains.is_empty() {
            return Err(PluginError { code: "bad-config".into(), message: "config `contains` is empty".into() });
        }
        log(Level::Debug, &format!("session {}: {} messages", ctx.session_id, msgs.len()));
        Ok(msgs
            .into_iter()
            .map(|mut m| {
                let hit = m.body.as_deref().is_some_and(|b| b.to_lowercase().contains(&s.contains));
                if hit && !m.tags.contains(&s.tag) {
                    m.tags.push(s.tag.clone());
                    Outcome::Replace(m)
                } else {
                    Outcome::Keep
                }
            })
            .collect())
    }
}

export!(Plugin);
