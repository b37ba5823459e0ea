//! A chat's messages on their way down the chain.

use crate::domain::Message;

/// A chat's messages on their way down the chain, with whether a plugin
/// changed each. Two columns rather than a `(Message, bool)` per message: a
/// message is 360-odd bytes, and pairing them on the way in and unpairing
/// them on the way out moved every message twice per chat.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Part {
    pub(crate) msgs: Vec<Message>,
    /// `changed[i]`: a plugin replaced or edited `msgs[i]`.
    pub(crate) changed: Vec<bool>,
}

/// What a plugin's answer did to one message.
pub(crate) enum Verdict {
    Kept,
    /// Edited or replaced.
    Changed,
    Dropped,
}

/// What a plugin's answer did to a part.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Applied {
    pub(crate) kept: u64,
    pub(crate) replaced: u64,
    pub(crate) dropped: u64,
}

impl Part {
    /// Messages as fetched: none changed yet.
    pub(crate) fn new(msgs: Vec<Message>) -> Self {
        let changed = vec![false; msgs.len()];
        Self { msgs, changed }
    }

    pub(crate) fn len(&self) -> usize {
        self.msgs.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// How many messages a plugin changed.
    pub(crate) fn changed_count(&self) -> u64 {
        self.changed.iter().filter(|c| **c).count() as u64
    }

    /// Puts `other`'s messages after these.
    pub(crate) fn append(&mut self, mut other: Part) {
        self.msgs.append(&mut other.msgs);
        self.changed.append(&mut other.changed);
    }

    /// Applies a plugin's answer in place, message by message in order:
    /// `verdict` may change the message and says what the answer did to
    /// it; a changed message is marked, a dropped one goes.
    pub(crate) fn apply(&mut self, mut verdict: impl FnMut(&mut Message) -> Verdict) -> Applied {
        let mut a = Applied::default();
        self.retain(|m, changed| match verdict(m) {
            Verdict::Kept => {
                a.kept += 1;
                true
            }
            Verdict::Changed => {
                *changed = true;
                a.replaced += 1;
                true
            }
            Verdict::Dropped => {
                a.dropped += 1;
                false
            }
        });
        a
    }

    /// Keeps the messages `keep` says yes to, in order. `keep` sees each
    /// message with its flag and may change both. Nothing moves before the
    /// first message dropped.
    fn retain(&mut self, mut keep: impl FnMut(&mut Message, &mut bool) -> bool) {
        let Part { msgs, changed } = self;
        debug_assert_eq!(msgs.len(), changed.len(), "a flag per message");
        let mut i = 0;
        let mut dropped = Vec::new();
        msgs.retain_mut(|m| {
            let k = keep(m, &mut changed[i]);
            if !k {
                dropped.push(i);
            }
            i += 1;
            k
        });
        if !dropped.is_empty() {
            let mut dropped = dropped.into_iter().peekable();
            let mut j = 0;
            changed.retain(|_| {
                let gone = dropped.next_if_eq(&j).is_some();
                j += 1;
                !gone
            });
        }
    }

    /// Cuts the messages into consecutive parts, in order: `next_len` gets
    /// the messages left and says how many the next part takes (at least
    /// one).
    pub(crate) fn split(self, mut next_len: impl FnMut(&[Message]) -> usize) -> Vec<Part> {
        let mut msgs = self.msgs.into_iter();
        let mut changed = self.changed.into_iter();
        let mut parts = Vec::new();
        while !msgs.as_slice().is_empty() {
            let k = next_len(msgs.as_slice()).max(1);
            parts.push(Part {
                msgs: msgs.by_ref().take(k).collect(),
                changed: changed.by_ref().take(k).collect(),
            });
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::wasm::test_message;

    fn part(ids: &[&str]) -> Part {
        Part::new(ids.iter().map(|id| test_message(id, "x")).collect())
    }

    fn ids(p: &Part) -> Vec<&str> {
        p.msgs.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn retain_keeps_each_flag_with_its_message() {
        let mut p = part(&["a", "b", "c", "d", "e"]);
        p.retain(|m, changed| {
            *changed = m.id == "c" || m.id == "e";
            m.id != "b" && m.id != "d"
        });
        assert_eq!(ids(&p), ["a", "c", "e"]);
        assert_eq!(p.changed, [false, true, true]);
        assert_eq!(p.changed_count(), 2);
        p.retain(|m, _| m.id != "a");
        assert_eq!(
            (ids(&p), p.changed.clone()),
            (vec!["c", "e"], vec![true, true])
        );
        p.retain(|_, _| false);
        assert!(p.is_empty() && p.changed.is_empty());
    }

    #[test]
    fn split_and_append_give_the_messages_back_in_order() {
        let mut p = part(&["a", "b", "c", "d", "e"]);
        p.changed[3] = true;
        let parts = p.clone().split(|rest| if rest.len() > 2 { 2 } else { 0 });
        assert_eq!(
            parts.iter().map(|p| ids(p)).collect::<Vec<_>>(),
            [vec!["a", "b"], vec!["c", "d"], vec!["e"]],
            "two at a time, then at least one"
        );
        assert_eq!(parts[1].changed, [false, true]);
        let mut back = Part::default();
        for q in parts {
            back.append(q);
        }
        assert_eq!(back, p);
    }
}
