//! `__NAME__`: tags every message whose body contains the configured text.
//! Replace the body of `transform_batch` with your own logic, and the tests
//! below with yours. The SDK (`wasync_plugin`) is documented in
//! docs/plugins.md and by `cargo doc -p wasync-plugin-sdk --open`.

use wasync_plugin::{Batch, Edits, PerInstance, PluginError, SyncContext, Transformer, config, log};

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
    /// One call per batch (a chat's messages). Read what you need from
    /// `batch` (`body(i)`, `sender(i)`, `meta(i)`, `tags(i)`, `message(i)`:
    /// only what you read is copied in) and return the changes: `Edits`
    /// with `set_body`, `add_tag`, `set_attribute`, `replace` or `drop` per
    /// message index. Messages you do not name are stored as they came.
    fn transform_batch(ctx: SyncContext, batch: &Batch) -> Result<Edits, PluginError> {
        let s = SETTINGS.get_or_init(read_settings);
        if s.contains.is_empty() {
            return Err(PluginError::bad_config("config `contains` is empty"));
        }
        log::debug(&format!(
            "session {}: {} messages",
            ctx.session_id,
            batch.len()
        ));
        let mut edits = Edits::new();
        for i in 0..batch.len() {
            if batch
                .body(i)
                .is_some_and(|b| b.to_lowercase().contains(&s.contains))
            {
                // The host does not repeat a tag the message has already.
                edits.add_tag(i, &s.tag);
            }
        }
        Ok(edits)
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
        let edits = plugin
            .run(|| Plugin::transform_batch(testing::context(), &testing::batch(&msgs)))
            .unwrap();
        // What the host would store: the first tagged, the second as it came.
        let stored = testing::apply(&msgs, &edits);
        assert_eq!(stored[0].as_ref().unwrap().tags, ["greeting"]);
        assert_eq!(stored[1].as_ref(), Some(&msgs[1]));
        assert_eq!(edits.len(), 1);
        assert_eq!(
            plugin.logs(),
            [(Level::Debug, "session s1: 2 messages".to_owned())]
        );
    }

    #[test]
    fn an_empty_text_is_a_config_error() {
        let msgs = testing::messages(&["hi"]);
        let err = testing::with_config(&[], || {
            Plugin::transform_batch(testing::context(), &testing::batch(&msgs))
        });
        assert_eq!(err.unwrap_err().code, "bad-config");
    }
}
