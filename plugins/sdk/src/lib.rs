//! # wasync plugin SDK
//!
//! Everything a Rust plugin for wasync needs on the guest side of
//! `wasync:plugin@0.2.0` (`wit/v0.2/plugin.wit`): the generated types, a
//! trait per exported interface, one export macro per world, the batch as
//! the host lends it ([`Batch`]), the answer as changes ([`Edits`]), typed
//! `[config]` reading, logging, and a [`testing`] module that runs a
//! plugin's logic natively in a plain `#[test]`.
//!
//! ```
//! use wasync_plugin::{Batch, Edits, PluginError, SyncContext, Transformer, config};
//!
//! /// Tags messages that mention the configured word.
//! struct Mentions;
//!
//! impl Transformer for Mentions {
//!     fn transform_batch(_ctx: SyncContext, batch: &Batch) -> Result<Edits, PluginError> {
//!         let word = config::string_or("word", "wasync");
//!         let mut edits = Edits::new();
//!         for i in 0..batch.len() {
//!             if batch.body(i).is_some_and(|b| b.contains(&word)) {
//!                 edits.add_tag(i, "mentions");
//!             }
//!         }
//!         Ok(edits)
//!     }
//! }
//!
//! wasync_plugin::export_transformer!(Mentions);
//!
//! // Natively, in a test:
//! use wasync_plugin::testing;
//! let msgs = testing::messages(&["hello", "bye"]);
//! let edits = testing::with_config(&[("word", "hello")], || {
//!     Mentions::transform_batch(testing::context(), &testing::batch(&msgs))
//! })
//! .unwrap();
//! let stored = testing::apply(&msgs, &edits);
//! assert_eq!(stored[0].as_ref().unwrap().tags, ["mentions"]);
//! assert_eq!(stored[1].as_ref(), Some(&msgs[1]));
//! ```
//!
//! # Layout
//!
//! - [`bindings`]: the generated code, one module per exporting world.
//! - this file: the [`Transformer`] and [`ChatHook`] traits a plugin
//!   implements, the `export_*!` macros, the re-exported types.
//! - [`Batch`] (`batch.rs`): the call's messages, fetched a text column at
//!   a time; [`Edits`] (`edits.rs`): the answer, one change per message.
//! - `records.rs`: helpers on [`Message`] (tags, attributes),
//!   [`PluginError`] constructors.
//! - [`config`]: the manifest's `[config]`, typed, with errors naming the key.
//! - [`log`]: the host log.
//! - [`PerInstance`]: a value computed once per plugin instance (settings).
//! - [`testing`] (not on wasm): builders, a config per test, captured logs.
//!
//! # Why it is written the way it is
//!
//! - **Bindgen runs here, once.** Plugins depend on this crate alone; the
//!   types they see are the SDK's, so helpers can be inherent methods
//!   (`msg.add_tag(..)`), and a contract change is one SDK release.
//! - **A trait per interface, a macro per world.** A plugin implements
//!   [`Transformer`], [`ChatHook`] or both, and exports with the macro named
//!   after the `world` of its `plugin.toml`. [`export_full!`] is the other
//!   two: an exported interface can be generated only once per crate, and
//!   the component metadata the two emit merges into world `full`'s.
//! - **Host calls go through this crate.** On wasm, [`config`] and [`log`]
//!   call the host's imports. Anywhere else (`cargo test`) the generated
//!   imports are stubs that panic, so they read the config of the running
//!   [`testing::Instance`] and capture its log lines instead.
//! - **Small helpers are `#[inline]`.** Their code is then generated in the
//!   plugin crate, next to the plugin's own uses of `String` and `Vec`,
//!   instead of in this crate: measured, components come out up to 0.5 KB
//!   smaller.
//! - **Only what is read crosses.** The 0.1 contract copied every field of
//!   every message into the plugin (a string allocation each) and every
//!   message back; that cost more than most plugins' work. A [`Batch`]
//!   fetches a field for the whole batch in one call when first read, and
//!   [`Edits`] sends back only the changes.
//! - **Versioned with the WIT.** This crate's version is the contract's
//!   (`wasync:plugin@0.2.0`); a new contract is a new SDK version. Plugins
//!   built on SDK 0.1 keep running: the host links both contracts.

#![warn(missing_docs)]

mod alloc;
mod batch;
pub mod bindings;
pub mod config;
mod edits;
mod instance;
pub mod log;
mod records;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use alloc::SmallAlloc;
pub use batch::Batch;
pub use bindings::transformer::wasync::plugin::host::Level;
pub use bindings::transformer::wasync::plugin::types::{
    Change, Chat, ChatDecision, ChatSummary, Edit, Message, MessageMeta, PluginError, SyncContext,
    SyncLimits, TextField, Update,
};
pub use edits::Edits;
pub use instance::PerInstance;
pub use records::BAD_CONFIG;

/// A plugin that rewrites, tags or drops messages: world `transformer`, or
/// half of `full`. Export it with [`export_transformer!`].
pub trait Transformer {
    /// One chat's messages, in order, read from `batch` as needed; returns
    /// the changes ([`Edits`]): messages without one are stored as they
    /// came. An `Err` applies the manifest's `on_error`.
    fn transform_batch(ctx: SyncContext, batch: &Batch) -> Result<Edits, PluginError>;
}

/// A plugin that decides which chats get synced: world `chat-hook`, or half
/// of `full`. Export it with [`export_chat_hook!`]. Both methods have a
/// default that does nothing, so implement only the one you need.
///
/// ```
/// use wasync_plugin::{Batch, Chat, ChatDecision, ChatHook, Edits, PluginError, SyncContext, Transformer};
///
/// /// World `full`: skips groups, keeps every message.
/// struct NoGroups;
///
/// impl ChatHook for NoGroups {
///     fn before_chat_sync(_ctx: SyncContext, c: Chat) -> Result<ChatDecision, PluginError> {
///         Ok(if c.is_group { ChatDecision::Skip("group".into()) } else { ChatDecision::Proceed(Default::default()) })
///     }
/// }
///
/// impl Transformer for NoGroups {
///     fn transform_batch(_ctx: SyncContext, _batch: &Batch) -> Result<Edits, PluginError> {
///         Ok(Edits::new())
///     }
/// }
///
/// wasync_plugin::export_full!(NoGroups);
/// ```
pub trait ChatHook {
    /// Before a chat's messages are fetched: `Proceed` (with limits, or
    /// [`SyncLimits::default()`] for none) or `Skip(reason)`. The default
    /// proceeds without limits.
    fn before_chat_sync(ctx: SyncContext, chat: Chat) -> Result<ChatDecision, PluginError> {
        let _ = (ctx, chat);
        Ok(ChatDecision::Proceed(SyncLimits::default()))
    }

    /// After a chat was synced, with its counts. The default does nothing.
    fn after_chat_sync(
        ctx: SyncContext,
        chat: Chat,
        summary: ChatSummary,
    ) -> Result<(), PluginError> {
        let _ = (ctx, chat, summary);
        Ok(())
    }
}

/// Exports a [`Transformer`] as the plugin's component: world `transformer`.
/// Invoke it once, at the crate root.
#[macro_export]
macro_rules! export_transformer {
    ($plugin:ident) => {
        $crate::bindings::transformer::export!($plugin with_types_in $crate::bindings::transformer);
    };
}

/// Exports a [`ChatHook`] as the plugin's component: world `chat-hook`.
/// Invoke it once, at the crate root.
#[macro_export]
macro_rules! export_chat_hook {
    ($plugin:ident) => {
        $crate::bindings::chat_hook::export!($plugin with_types_in $crate::bindings::chat_hook);
    };
}

/// Exports a type implementing both [`Transformer`] and [`ChatHook`]: world
/// `full`. Invoke it once, at the crate root.
#[macro_export]
macro_rules! export_full {
    ($plugin:ident) => {
        $crate::export_transformer!($plugin);
        $crate::export_chat_hook!($plugin);
    };
}

/// The host's two calls. On wasm they are the component's imports; anywhere
/// else the generated imports are stubs that panic, so they go to the
/// running [`testing::Instance`].
mod host {
    #[cfg(target_arch = "wasm32")]
    pub(crate) use crate::bindings::transformer::wasync::plugin::host::{config_get, log};
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) use crate::testing::host::{config_get, log};
}
