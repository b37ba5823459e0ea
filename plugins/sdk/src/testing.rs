//! Run a plugin's logic natively, in a plain `#[test]` (`cargo test`, no
//! wasm, no host): builders for the host's records with sensible defaults,
//! a `[config]` per test, and the log lines the plugin wrote.
//!
//! A test is one or more calls on an [`Instance`], the way the host makes
//! one instance per chat and calls it for each of the chat's batches:
//! inside [`Instance::run`], [`config`](crate::config) answers from the
//! instance's config, [`log`](crate::log) lines are captured (and echoed to
//! stderr, which `cargo test` shows for a failing test), and each
//! [`PerInstance`](crate::PerInstance) value is the instance's own.
//!
//! ```
//! use wasync_plugin::testing::{self, Instance};
//! use wasync_plugin::{Batch, Edits, Level, PluginError, SyncContext, Transformer, log};
//!
//! struct Counter;
//! impl Transformer for Counter {
//!     fn transform_batch(_ctx: SyncContext, batch: &Batch) -> Result<Edits, PluginError> {
//!         log::info(&format!("{} messages", batch.len()));
//!         Ok(Edits::new())
//!     }
//! }
//!
//! let plugin = Instance::new(&[("rules", "a\nb")]); // an array: one item per line
//! let msgs = testing::messages(&["one", "two"]);
//! let out = plugin.run(|| Counter::transform_batch(testing::context(), &testing::batch(&msgs))).unwrap();
//! assert!(out.is_empty());
//! assert_eq!(testing::apply(&msgs, &out), [Some(msgs[0].clone()), Some(msgs[1].clone())]);
//! assert_eq!(plugin.logs(), [(Level::Info, "2 messages".to_owned())]);
//! ```
//!
//! Outside any `run` a thread has an instance of its own with no config.
//! Adjust a built record with struct update syntax:
//! `Message { truncated: true, ..testing::message("long") }`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Batch, Change, Chat, ChatSummary, Edits, Level, Message, SyncContext};

/// The batch a call gets, over these messages (the host's `batch`
/// natively).
pub fn batch(msgs: &[Message]) -> Batch<'_> {
    Batch::native(msgs)
}

/// What the host would store after `edits`: per message, the message as
/// stored, or `None` when dropped. Applies the host's rules: a tag already
/// there is not repeated, an attribute's value is replaced; a `replace` is
/// stored as given. (A truncated body handed back unchanged keeps the full
/// original in the host; here the test's message is all there is.)
pub fn apply(msgs: &[Message], edits: &Edits) -> Vec<Option<Message>> {
    msgs.iter()
        .enumerate()
        .map(|(i, m)| match edits.get(i) {
            None => Some(m.clone()),
            Some(Change::Drop(_)) => None,
            Some(Change::Replace(r)) => Some(r.clone()),
            Some(Change::Update(u)) => {
                let mut m = m.clone();
                if let Some(b) = &u.body {
                    m.body = Some(b.clone());
                }
                for t in &u.add_tags {
                    m.add_tag(t);
                }
                for (k, v) in &u.set_attributes {
                    m.set_attribute(k, v.clone());
                }
                Some(m)
            }
        })
        .collect()
}

/// A message in chat `c1` with this body: id `m0`, from
/// `4915100000001@c.us` to `4915100000002@c.us`, kind `chat`, no tags or
/// attributes.
pub fn message(body: &str) -> Message {
    Message {
        id: "m0".to_owned(),
        chat_id: "c1".to_owned(),
        sender: "4915100000001@c.us".to_owned(),
        recipient: "4915100000002@c.us".to_owned(),
        author: None,
        body: Some(body.to_owned()),
        truncated: false,
        kind: "chat".to_owned(),
        timestamp_ms: 1_700_000_000_000,
        from_me: false,
        has_media: false,
        ack: 1,
        quoted_id: None,
        tags: Vec::new(),
        attributes: Vec::new(),
    }
}

/// A batch of [`message`]s with these bodies, ids `m0`, `m1`, ... one
/// second apart.
pub fn messages(bodies: &[&str]) -> Vec<Message> {
    bodies
        .iter()
        .zip(0..)
        .map(|(body, i)| Message {
            id: format!("m{i}"),
            timestamp_ms: 1_700_000_000_000 + i * 1000,
            ..message(body)
        })
        .collect()
}

/// A private chat `c1` with this name, not archived, nothing unread.
pub fn chat(name: &str) -> Chat {
    Chat {
        id: "c1".to_owned(),
        name: Some(name.to_owned()),
        is_group: false,
        unread_count: 0,
        archived: false,
        pinned: false,
        last_message_ms: None,
    }
}

/// A manual sync `sync-1` of session `s1`.
pub fn context() -> SyncContext {
    SyncContext {
        session_id: "s1".to_owned(),
        sync_id: "sync-1".to_owned(),
        trigger: "manual".to_owned(),
    }
}

/// A chat's counts: everything fetched was stored unchanged.
pub fn summary(fetched: u32) -> ChatSummary {
    ChatSummary {
        fetched,
        stored: fetched,
        ..ChatSummary::default()
    }
}

/// Runs `f` as one plugin instance with this `[config]` (a TOML array is
/// one item per line): [`Instance::new`] then [`Instance::run`].
pub fn with_config<R>(config: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
    Instance::new(config).run(f)
}

/// One plugin instance as the host would make it for a chat: its config,
/// its captured log, its [`PerInstance`](crate::PerInstance) values. Stays
/// on the thread that made it.
pub struct Instance {
    state: Rc<State>,
}

struct State {
    id: u64,
    config: Vec<(String, String)>,
    logs: RefCell<Vec<(Level, String)>>,
}

impl Instance {
    /// An instance whose `config-get` answers from `config` (the last of a
    /// repeated key wins).
    pub fn new(config: &[(&str, &str)]) -> Self {
        Instance {
            state: State::new(
                config
                    .iter()
                    .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
        }
    }

    /// Calls `f` inside this instance: the plugin's host calls and
    /// per-instance values are this instance's until `f` returns. Call it
    /// again for the chat's next batch.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Puts the previous instance back, also when `f` panics.
        struct Restore(Option<Rc<State>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| *c.borrow_mut() = self.0.take());
            }
        }
        let _restore = Restore(CURRENT.with(|c| c.borrow_mut().replace(self.state.clone())));
        f()
    }

    /// The lines logged so far, in order.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.state.logs.borrow().clone()
    }
}

impl State {
    fn new(config: Vec<(String, String)>) -> Rc<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Rc::new(State {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            config,
            logs: RefCell::default(),
        })
    }
}

thread_local! {
    /// The instance inside [`Instance::run`].
    static CURRENT: RefCell<Option<Rc<State>>> = const { RefCell::new(None) };
    /// The thread's instance outside any `run`: no config.
    static DEFAULT: Rc<State> = State::new(Vec::new());
}

fn current() -> Rc<State> {
    CURRENT
        .with(|c| c.borrow().clone())
        .unwrap_or_else(|| DEFAULT.with(Rc::clone))
}

/// The host calls, natively: what `crate::host` points to off wasm.
pub(crate) mod host {
    use super::current;
    use crate::Level;

    pub(crate) fn config_get(key: &str) -> Option<String> {
        current()
            .config
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    pub(crate) fn log(level: Level, msg: &str) {
        eprintln!("plugin log {level:?}: {msg}");
        current().logs.borrow_mut().push((level, msg.to_owned()));
    }

    /// Which instance [`PerInstance`](crate::PerInstance) values belong to.
    pub(crate) fn instance_id() -> u64 {
        current().id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PerInstance, config, log};

    #[test]
    fn config_and_logs_belong_to_the_running_instance() {
        let a = Instance::new(&[("k", "a")]);
        let b = Instance::new(&[("k", "b"), ("k", "b2")]);
        a.run(|| {
            assert_eq!(config::get("k").as_deref(), Some("a"));
            log::warn("in a");
            b.run(|| {
                assert_eq!(config::get("k").as_deref(), Some("b2"));
                log::info("in b");
            });
            assert_eq!(config::get("k").as_deref(), Some("a"), "back in a after b");
        });
        assert_eq!(config::get("k"), None, "outside any run: no config");
        assert_eq!(a.logs(), [(Level::Warn, "in a".to_owned())]);
        assert_eq!(b.logs(), [(Level::Info, "in b".to_owned())]);
    }

    #[test]
    fn a_panic_inside_run_restores_the_previous_instance() {
        let a = Instance::new(&[("k", "a")]);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            a.run(|| panic!("plugin bug"))
        }));
        assert!(caught.is_err());
        assert_eq!(config::get("k"), None);
    }

    #[test]
    fn per_instance_values_are_computed_once_per_instance() {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        static VALUE: PerInstance<String> = PerInstance::new();
        fn value() -> String {
            let v = VALUE.get_or_init(|| {
                CALLS.fetch_add(1, Ordering::Relaxed);
                config::string_or("k", "none")
            });
            v.clone()
        }
        let a = Instance::new(&[("k", "a")]);
        let b = Instance::new(&[("k", "b")]);
        assert_eq!(a.run(value), "a");
        assert_eq!(b.run(value), "b");
        assert_eq!(a.run(value), "a", "a's value is kept across runs");
        assert_eq!(CALLS.load(Ordering::Relaxed), 2);
        assert_eq!(value(), "none");
    }

    #[test]
    fn builders_give_distinct_ids_in_one_chat() {
        let msgs = messages(&["a", "b", "c"]);
        let ids: Vec<_> = msgs.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["m0", "m1", "m2"]);
        assert!(msgs.iter().all(|m| m.chat_id == chat("x").id));
        assert_eq!(msgs[0], message("a"));
        assert_eq!(summary(3).stored, 3);
    }
}
