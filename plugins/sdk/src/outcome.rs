//! Helpers for the common outcomes: tags and attributes on a [`Message`], a
//! batch mapped with a closure, errors with the usual codes.

use crate::{ChatSummary, Message, Outcome, PluginError, SyncLimits};

/// The `plugin-error` code for a bad `[config]` value, used by
/// [`config`](crate::config) and [`PluginError::bad_config`].
pub const BAD_CONFIG: &str = "bad-config";

impl Message {
    /// True when the message carries `tag`.
    #[inline]
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// Adds `tag` unless the message already has it; true when it was added
    /// (so the message changed).
    #[inline]
    pub fn add_tag(&mut self, tag: &str) -> bool {
        if self.has_tag(tag) {
            return false;
        }
        self.tags.push(tag.to_owned());
        true
    }

    /// The value of attribute `key`. The host keeps the last value of a
    /// repeated key, and so does this.
    #[inline]
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets attribute `key` to `value`, replacing its value if it is there.
    pub fn set_attribute(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        match self.attributes.iter_mut().rev().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.attributes.push((key.to_owned(), value)),
        }
    }
}

/// What to do with one message, for [`map_batch`]: an [`Outcome`] whose
/// `Replace` is the message as the closure left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Store the message as it came in; changes the closure made are
    /// discarded.
    Keep,
    /// Store the message as the closure changed it.
    Replace,
    /// Do not store it, for this reason; later plugins do not see it.
    Drop(String),
}

impl Verdict {
    /// `Replace` when `changed`, else `Keep`: the usual end of a closure
    /// that changed the message only sometimes.
    #[inline]
    pub fn replace_if(changed: bool) -> Self {
        if changed {
            Verdict::Replace
        } else {
            Verdict::Keep
        }
    }
}

/// Applies `f` to each message and returns one outcome per message, in
/// order: the shape `transform-batch` must return. `f` gets the message
/// mutably and says whether to keep, replace (with its changes) or drop it.
pub fn map_batch(msgs: Vec<Message>, mut f: impl FnMut(&mut Message) -> Verdict) -> Vec<Outcome> {
    msgs.into_iter()
        .map(|mut m| match f(&mut m) {
            Verdict::Keep => Outcome::Keep,
            Verdict::Replace => Outcome::Replace(m),
            Verdict::Drop(reason) => Outcome::Drop(reason),
        })
        .collect()
}

impl PluginError {
    /// An error with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        PluginError {
            code: code.into(),
            message: message.into(),
        }
    }

    /// A [`BAD_CONFIG`] error: the manifest's `[config]` is not usable.
    pub fn bad_config(message: impl Into<String>) -> Self {
        PluginError::new(BAD_CONFIG, message)
    }
}

/// No limits: the hook has no opinion.
impl Default for SyncLimits {
    fn default() -> Self {
        SyncLimits {
            max_messages: None,
            since_ms: None,
        }
    }
}

/// All counts zero.
impl Default for ChatSummary {
    fn default() -> Self {
        ChatSummary {
            fetched: 0,
            stored: 0,
            modified: 0,
            dropped: 0,
            failed: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{message, messages};

    #[test]
    fn tags_are_added_once() {
        let mut m = message("x");
        assert!(m.add_tag("a"));
        assert!(!m.add_tag("a"));
        assert!(m.add_tag("b"));
        assert_eq!(m.tags, ["a", "b"]);
        assert!(m.has_tag("b") && !m.has_tag("c"));
    }

    #[test]
    fn attributes_read_and_replace_the_last_value() {
        let mut m = message("x");
        assert_eq!(m.attribute("k"), None);
        m.set_attribute("k", "1");
        m.set_attribute("j", "2");
        m.set_attribute("k", "3");
        assert_eq!(
            m.attributes,
            [
                ("k".to_owned(), "3".to_owned()),
                ("j".to_owned(), "2".to_owned())
            ]
        );
        m.attributes.push(("k".into(), "4".into()));
        assert_eq!(m.attribute("k"), Some("4"));
        m.set_attribute("k", "5");
        assert_eq!(m.attribute("k"), Some("5"));
        assert_eq!(m.attributes[0].1, "3");
    }

    #[test]
    fn map_batch_keeps_order_and_length() {
        let out = map_batch(messages(&["keep", "change", "drop"]), |m| {
            match m.body.as_deref() {
                Some("change") => {
                    m.body = Some("changed".into());
                    Verdict::Replace
                }
                Some("drop") => Verdict::Drop("spam".into()),
                _ => {
                    m.body = None; // discarded: the verdict is Keep
                    Verdict::Keep
                }
            }
        });
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], Outcome::Keep);
        match &out[1] {
            Outcome::Replace(m) => {
                assert_eq!((m.id.as_str(), m.body.as_deref()), ("m1", Some("changed")))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(out[2], Outcome::Drop("spam".into()));
        assert_eq!(Verdict::replace_if(true), Verdict::Replace);
        assert_eq!(Verdict::replace_if(false), Verdict::Keep);
    }

    #[test]
    fn errors_carry_their_code() {
        let e = PluginError::bad_config("x is wrong");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("bad-config", "x is wrong")
        );
    }
}
