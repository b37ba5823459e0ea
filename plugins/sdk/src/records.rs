//! Helpers on the generated records: tags and attributes on a [`Message`]
//! (for a `replace`, and in tests), errors with the usual codes, defaults.

use crate::{ChatSummary, Message, PluginError, SyncLimits};

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
    use crate::testing::message;

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
    fn errors_carry_their_code() {
        let e = PluginError::bad_config("x is wrong");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("bad-config", "x is wrong")
        );
    }
}
