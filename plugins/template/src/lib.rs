//! `__NAME__`: tags every message whose body contains the configured text.
//! Replace the body of `transform_batch` with your own logic, and the tests
//! below with yours. The SDK (`wasync_plugin`) is documented in
//! docs/plugins.md and by `cargo doc -p wasync-plugin-sdk --open`.

use wasync_plugin::{
    Message, Outcome, PerInstance, PluginError, SyncContext, Transformer, Verdict, config, log,
    map_batch,
};

struct Settings {
    /// Lower-cased.
    contains: String,
    tag: String,
}

/// Config is read once per instance; the host makes one instance per chat.
static SETTINGS: PerInstance<Settings> = PerInstance::new();

fn read_settings() -> Settings {
    Settings {
        contains: config::string_or("contains", "").to_lowercase(),
        tag: config::string_or("tag", "__NAME__"),
    }
}

struct Plugin;

impl Transformer for Plugin {
    /// One call per batch (a chat's messages): return exactly one outcome per
    /// message, in order. `map_batch` does that: say `Keep` to store the
    /// message as is, `Replace` to store it as you changed it (same `id` and
    /// `chat-id`), `Drop(reason)` to leave it out.
    fn transform_batch(ctx: SyncContext, msgs: Vec<Message>) -> Result<Vec<Outcome>, PluginError> {
        let s = SETTINGS.get_or_init(read_settings);
        if s.contains.is_empty() {
            return Err(PluginError::bad_config("config `contains` is empty"));
        }
        log::debug(&format!(
            "session {}: {} messages",
            ctx.session_id,
            msgs.len()
        ));
        Ok(map_batch(msgs, |m| {
            let hit = m
                .body
                .as_deref()
                .is_some_and(|b| b.to_lowercase().contains(&s.contains));
            Verdict::replace_if(hit && m.add_tag(&s.tag))
        }))
    }
}

wasync_plugin::export_transformer!(Plugin);

/// Native tests: `cargo test --manifest-path plugins/Cargo.toml -p __NAME__`.
#[cfg(test)]
mod tests {
    use super::*;
    use wasync_plugin::Level;
    use wasync_plugin::testing::{self, Instance};

    /// The manifest's `[config]` (plugin.toml).
    const CONFIG: [(&str, &str); 2] = [("contains", "hello"), ("tag", "greeting")];

    #[test]
    fn tags_messages_containing_the_text() {
        let plugin = Instance::new(&CONFIG);
        let msgs = testing::messages(&["Hello world", "goodbye"]); // ids m0, m1 in chat c1
        let out = plugin
            .run(|| Plugin::transform_batch(testing::context(), msgs))
            .unwrap();
        assert!(matches!(&out[0], Outcome::Replace(m) if m.tags == ["greeting"]));
        assert_eq!(out[1], Outcome::Keep);
        assert_eq!(
            plugin.logs(),
            [(Level::Debug, "session s1: 2 messages".to_owned())]
        );
    }

    #[test]
    fn an_empty_text_is_a_config_error() {
        let err = testing::with_config(&[], || {
            Plugin::transform_batch(testing::context(), testing::messages(&["hi"]))
        });
        assert_eq!(err.unwrap_err().code, "bad-config");
    }
}
