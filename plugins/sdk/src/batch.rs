//! [`Batch`]: the messages of one `transform-batch` call, read as needed.
//!
//! The host keeps the messages; every method copies in only what it
//! returns. Text fields are fetched a whole column at a time (one host call
//! and two buffers for the batch, whatever its length) and kept for the
//! rest of the call, so `body(i)` in a loop costs one copy of the bodies.

use std::cell::OnceCell;

use crate::bindings::transformer::wasync::plugin::types::{Batch as HostBatch, TextColumn};
use crate::{Message, MessageMeta, TextField};

const FIELDS: usize = 8;

fn slot(f: TextField) -> usize {
    match f {
        TextField::Id => 0,
        TextField::ChatId => 1,
        TextField::Sender => 2,
        TextField::Recipient => 3,
        TextField::Author => 4,
        TextField::Body => 5,
        TextField::Kind => 6,
        TextField::QuotedId => 7,
    }
}

/// One call's messages: the host's (on wasm) or a test's (natively, built
/// with [`testing::batch`](crate::testing::batch)). Indices run from 0 to
/// `len() - 1`; an index past the end panics natively and traps on wasm
/// (the manifest's `on_error` applies).
pub struct Batch<'a> {
    source: Source<'a>,
    columns: [OnceCell<Column>; FIELDS],
    truncated: OnceCell<Vec<u32>>,
}

enum Source<'a> {
    Host(&'a HostBatch),
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    Native(&'a [Message]),
}

/// A text column as the host sends it.
struct Column {
    text: String,
    ends: Vec<u32>,
    absent: Vec<u32>,
}

impl Column {
    fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)? as usize;
        if self.absent.binary_search(&(i as u32)).is_ok() {
            return None;
        }
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1] as usize,
        };
        self.text.get(start..end)
    }
}

impl<'a> Batch<'a> {
    pub(crate) fn host(b: &'a HostBatch) -> Self {
        Self::with(Source::Host(b))
    }

    /// A batch of these messages, for tests.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn native(msgs: &'a [Message]) -> Self {
        Self::with(Source::Native(msgs))
    }

    fn with(source: Source<'a>) -> Self {
        Batch {
            source,
            columns: Default::default(),
            truncated: OnceCell::new(),
        }
    }

    /// How many messages.
    #[inline]
    pub fn len(&self) -> usize {
        match self.source {
            Source::Host(b) => b.len() as usize,
            Source::Native(m) => m.len(),
        }
    }

    /// True when there are none (the host never sends an empty batch).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A text field of message `i`; the first use of a field fetches it for
    /// the whole batch.
    pub fn text(&self, i: usize, field: TextField) -> Option<&str> {
        match self.source {
            Source::Host(b) => {
                let col = self.columns[slot(field)].get_or_init(|| {
                    let TextColumn { text, ends, absent } = b.column(field);
                    Column { text, ends, absent }
                });
                if i >= col.ends.len() {
                    // The host's answer for an index out of range: a trap.
                    let _ = b.text(i as u32, field);
                }
                col.get(i)
            }
            Source::Native(msgs) => {
                let m = &msgs[i];
                match field {
                    TextField::Id => Some(&m.id),
                    TextField::ChatId => Some(&m.chat_id),
                    TextField::Sender => Some(&m.sender),
                    TextField::Recipient => Some(&m.recipient),
                    TextField::Author => m.author.as_deref(),
                    TextField::Body => m.body.as_deref(),
                    TextField::Kind => Some(&m.kind),
                    TextField::QuotedId => m.quoted_id.as_deref(),
                }
            }
        }
    }

    /// The body (text or caption) of message `i`, cut to the manifest's
    /// `max_body_bytes` (see [`Batch::truncated`]).
    #[inline]
    pub fn body(&self, i: usize) -> Option<&str> {
        self.text(i, TextField::Body)
    }

    /// The provider's id of message `i`.
    #[inline]
    pub fn id(&self, i: usize) -> &str {
        self.text(i, TextField::Id).unwrap_or_default()
    }

    /// The sender address of message `i`.
    #[inline]
    pub fn sender(&self, i: usize) -> &str {
        self.text(i, TextField::Sender).unwrap_or_default()
    }

    /// WhatsApp's message type of message `i` (`chat`, `image`, ...).
    #[inline]
    pub fn kind(&self, i: usize) -> &str {
        self.text(i, TextField::Kind).unwrap_or_default()
    }

    /// The fields of message `i` that are not text (timestamp, from-me,
    /// has-media, ack, truncated): one host call, nothing allocated.
    pub fn meta(&self, i: usize) -> MessageMeta {
        match self.source {
            Source::Host(b) => b.meta(i as u32),
            Source::Native(msgs) => {
                let m = &msgs[i];
                MessageMeta {
                    timestamp_ms: m.timestamp_ms,
                    from_me: m.from_me,
                    has_media: m.has_media,
                    ack: m.ack,
                    truncated: m.truncated,
                }
            }
        }
    }

    /// True when the host cut message `i`'s body to `max_body_bytes`.
    /// Handing the cut body back unchanged keeps the full original; a
    /// changed body is stored as written. The first use asks the host once
    /// for the whole batch.
    pub fn truncated(&self, i: usize) -> bool {
        match self.source {
            Source::Host(b) => self
                .truncated
                .get_or_init(|| b.truncated())
                .binary_search(&(i as u32))
                .is_ok(),
            Source::Native(msgs) => msgs[i].truncated,
        }
    }

    /// The tags of message `i` (copied on each call).
    pub fn tags(&self, i: usize) -> Vec<String> {
        match self.source {
            Source::Host(b) => b.tags(i as u32),
            Source::Native(msgs) => msgs[i].tags.clone(),
        }
    }

    /// The attributes of message `i` (copied on each call).
    pub fn attributes(&self, i: usize) -> Vec<(String, String)> {
        match self.source {
            Source::Host(b) => b.attributes(i as u32),
            Source::Native(msgs) => msgs[i].attributes.clone(),
        }
    }

    /// Every field of message `i`, as 0.1 passed it: the most expensive
    /// read, for a plugin that needs the whole record (e.g. to `replace`).
    pub fn message(&self, i: usize) -> Message {
        match self.source {
            Source::Host(b) => b.message(i as u32),
            Source::Native(msgs) => msgs[i].clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_split_by_ends_and_skip_the_absent() {
        let c = Column {
            text: "abcdé".into(),
            ends: vec![2, 2, 2, 6],
            absent: vec![2],
        };
        assert_eq!(c.get(0), Some("ab"));
        assert_eq!(c.get(1), Some(""));
        assert_eq!(c.get(2), None);
        assert_eq!(c.get(3), Some("cdé"));
        assert_eq!(c.get(4), None);
    }
}
