//! [`Edits`]: what a transformer answers, the changes only.

use crate::{Change, Edit, Message, Update};

/// The changes a transformer makes to its batch, at most one [`Change`] per
/// message (the host refuses two). Messages without one are kept as they
/// came, so an empty `Edits` keeps the whole batch and costs nothing.
///
/// Several calls for one message merge: [`set_body`](Edits::set_body),
/// [`add_tag`](Edits::add_tag) and [`set_attribute`](Edits::set_attribute)
/// build one update (or change a replacement made earlier);
/// [`replace`](Edits::replace) and [`drop`](Edits::drop) decide the
/// message's fate from then on, and later updates of a dropped message are
/// ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    /// By index, ascending, one per message. A plugin usually goes through
    /// its batch in order, so a change is appended or finds its message
    /// last: no search, no tree, and the list is what `transform-batch`
    /// returns as it is.
    changes: Vec<Edit>,
}

impl Edits {
    /// No changes: every message kept.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when every message is kept as it came.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Messages with a change.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// The change for message `i`, if any.
    pub fn get(&self, i: usize) -> Option<&Change> {
        let at = self.find(i as u32).ok()?;
        Some(&self.changes[at].change)
    }

    /// The changes, by index.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Change)> {
        self.changes.iter().map(|e| (e.index as usize, &e.change))
    }

    /// Where message `index`'s change is (`Ok`) or goes (`Err`): the last
    /// one is looked at first.
    fn find(&self, index: u32) -> Result<usize, usize> {
        match self.changes.last() {
            None => Err(0),
            Some(e) if e.index == index => Ok(self.changes.len() - 1),
            Some(e) if e.index < index => Err(self.changes.len()),
            Some(_) => self.changes.binary_search_by_key(&index, |e| e.index),
        }
    }

    /// Sets message `i`'s change, whatever it had.
    fn put(&mut self, i: usize, change: Change) {
        let index = i as u32;
        match self.find(index) {
            Ok(at) => self.changes[at].change = change,
            Err(at) => self.changes.insert(at, Edit { index, change }),
        }
    }

    /// The change of message `i`, an empty update when it has none.
    fn entry(&mut self, i: usize) -> &mut Change {
        let index = i as u32;
        let at = match self.find(index) {
            Ok(at) => at,
            Err(at) => {
                let change = Change::Update(Update {
                    body: None,
                    add_tags: Vec::new(),
                    set_attributes: Vec::new(),
                });
                self.changes.insert(at, Edit { index, change });
                at
            }
        };
        &mut self.changes[at].change
    }

    /// Stores message `i` with this body.
    pub fn set_body(&mut self, i: usize, body: impl Into<String>) {
        match self.entry(i) {
            Change::Update(u) => u.body = Some(body.into()),
            Change::Replace(m) => m.body = Some(body.into()),
            Change::Drop(_) => {}
        }
    }

    /// Adds `tag` to message `i` (the host does not repeat a tag the
    /// message has).
    pub fn add_tag(&mut self, i: usize, tag: &str) {
        match self.entry(i) {
            Change::Update(u) => {
                if !u.add_tags.iter().any(|t| t == tag) {
                    u.add_tags.push(tag.to_owned())
                }
            }
            Change::Replace(m) => {
                m.add_tag(tag);
            }
            Change::Drop(_) => {}
        }
    }

    /// Sets attribute `key` of message `i` to `value` (replacing its value).
    pub fn set_attribute(&mut self, i: usize, key: &str, value: impl Into<String>) {
        match self.entry(i) {
            Change::Update(u) => match u.set_attributes.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value.into(),
                None => u.set_attributes.push((key.to_owned(), value.into())),
            },
            Change::Replace(m) => m.set_attribute(key, value),
            Change::Drop(_) => {}
        }
    }

    /// Stores `m` instead of message `i` (same `id` and `chat-id`; get it
    /// with [`Batch::message`](crate::Batch::message) and change it).
    pub fn replace(&mut self, i: usize, m: Message) {
        self.put(i, Change::Replace(m));
    }

    /// Leaves message `i` out, for `reason`; later plugins do not see it.
    pub fn drop(&mut self, i: usize, reason: impl Into<String>) {
        self.put(i, Change::Drop(reason.into()));
    }

    /// The list `transform-batch` returns.
    pub fn into_list(self) -> Vec<Edit> {
        self.changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::message;

    #[test]
    fn changes_to_one_message_merge() {
        let mut e = Edits::new();
        assert!(e.is_empty());
        e.set_body(2, "x");
        e.add_tag(2, "a");
        e.add_tag(2, "a");
        e.set_attribute(2, "k", "1");
        e.set_attribute(2, "k", "2");
        e.drop(0, "spam");
        e.add_tag(0, "ignored");
        let mut m = message("y");
        m.tags.push("b".into());
        e.replace(1, m);
        e.add_tag(1, "b");
        e.set_body(1, "z");
        let list = e.into_list();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].index, 0);
        assert_eq!(list[0].change, Change::Drop("spam".into()));
        match &list[1].change {
            Change::Replace(m) => {
                assert_eq!(
                    (m.body.as_deref(), &m.tags[..]),
                    (Some("z"), &["b".to_owned()][..])
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            list[2].change,
            Change::Update(Update {
                body: Some("x".into()),
                add_tags: vec!["a".into()],
                set_attributes: vec![("k".into(), "2".into())],
            })
        );
    }
}
