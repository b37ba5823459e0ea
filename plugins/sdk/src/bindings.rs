//! The code `wit_bindgen` generates for `wasync:plugin@0.2.0` (`wit/v0.2/plugin.wit`), generated here
//! once so that plugin crates neither run bindgen nor depend on it.
//!
//! One module per exporting world, because an exported interface can be
//! generated only once per crate (its export macro is crate-global):
//!
//! - [`transformer`] owns the shared types, the `host` imports and the
//!   `message-transform` export;
//! - [`chat_hook`] reuses those types and imports (`with`) and owns the
//!   `chat-hooks` export.
//!
//! World `full` needs no module of its own: its exports are those two, so a
//! `full` plugin invokes both export macros ([`export_full!`](crate::export_full)),
//! and the component metadata of the two worlds merges into `full`'s.
//!
//! With `pub_export_macro` the library itself carries only the worlds'
//! imports; a world's exports are described by the section its export macro
//! emits in the plugin crate. So a transformer never claims `chat-hooks`.
//!
//! Plugins normally use the crate root's re-exports and traits instead.

use crate::{ChatHook, Transformer};

/// World `transformer`: the types, the host imports, `message-transform`.
#[allow(missing_docs)] // generated; the WIT's comments become its docs
pub mod transformer {
    wit_bindgen::generate!({
        path: "../../wit/v0.2",
        world: "transformer",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "wasync_plugin::bindings::transformer",
        // For assertions in plugin tests; unused impls cost nothing in a build.
        additional_derives: [PartialEq, Eq],
    });
}

/// World `chat-hook`: `chat-hooks`, on the types of [`transformer`].
#[allow(missing_docs)] // generated; the WIT's comments become its docs
pub mod chat_hook {
    wit_bindgen::generate!({
        path: "../../wit/v0.2",
        world: "chat-hook",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "wasync_plugin::bindings::chat_hook",
        with: {
            "wasync:plugin/types@0.2.0": crate::bindings::transformer::wasync::plugin::types,
            "wasync:plugin/host@0.2.0": crate::bindings::transformer::wasync::plugin::host,
        },
    });
}

use crate::{Batch, Chat, ChatDecision, ChatSummary, Edit, PluginError, SyncContext};

impl<T: Transformer> transformer::exports::wasync::plugin::message_transform::Guest for T {
    fn transform_batch(
        ctx: SyncContext,
        msgs: &transformer::wasync::plugin::types::Batch,
    ) -> Result<Vec<Edit>, PluginError> {
        <T as Transformer>::transform_batch(ctx, &Batch::host(msgs)).map(crate::Edits::into_list)
    }
}

impl<T: ChatHook> chat_hook::exports::wasync::plugin::chat_hooks::Guest for T {
    fn before_chat_sync(ctx: SyncContext, c: Chat) -> Result<ChatDecision, PluginError> {
        <T as ChatHook>::before_chat_sync(ctx, c)
    }

    fn after_chat_sync(ctx: SyncContext, c: Chat, s: ChatSummary) -> Result<(), PluginError> {
        <T as ChatHook>::after_chat_sync(ctx, c, s)
    }
}
