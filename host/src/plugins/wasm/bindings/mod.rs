//! The only places that call `bindgen!`, one module per version of the
//! contract the host links: generated types stay in here and in the
//! adapter, and these modules convert them to and from the domain types.
//!
//! - [`v1`]: `wasync:plugin@0.1.0`, whole records in, one outcome per
//!   message out;
//! - [`v2`]: `wasync:plugin@0.2.0`, the batch as a resource the plugin reads
//!   from, the changes out.
//!
//! Both are linked into the one linker (their interface names differ by
//! version); a component's exports say which one it speaks.

/// The conversions between the domain and a version's generated records
/// that both versions share field for field (`message`, `chat`,
/// `sync-context`, `chat-summary`, `chat-decision` are the same records in
/// 0.1 and 0.2, generated as distinct types per version): one definition,
/// expanded in each version's module, where those names are in scope.
macro_rules! shared_conversions {
    () => {
        /// The guest's view of a message (every field); bodies over
        /// `max_body` are cut.
        pub(crate) fn message(m: &$crate::domain::Message, max_body: usize) -> Message {
            let (body, truncated) = match &m.body {
                Some(b) if b.len() > max_body => (Some(super::cut(b, max_body).to_owned()), true),
                other => (other.clone(), false),
            };
            Message {
                id: m.id.clone(),
                chat_id: m.chat_id.clone(),
                sender: m.from.clone(),
                recipient: m.to.clone(),
                author: m.author.clone(),
                body,
                truncated,
                kind: m.kind.clone(),
                timestamp_ms: m.timestamp,
                from_me: m.from_me,
                has_media: m.has_media,
                ack: m.ack,
                quoted_id: m.quoted_id.clone(),
                tags: m.tags.clone(),
                attributes: m
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }
        }

        /// Applies a guest's replacement to the stored message. When the
        /// guest saw a cut body (`cut`) and handed the same text back, the
        /// full original body stays; a changed body is stored as the guest
        /// wrote it.
        pub(crate) fn apply(
            original: &$crate::domain::Message,
            cut: Option<&str>,
            new: Message,
        ) -> $crate::domain::Message {
            let body = if cut.is_some() && new.body.as_deref() == cut {
                original.body.clone()
            } else {
                new.body
            };
            $crate::domain::Message {
                id: new.id,
                chat_id: new.chat_id,
                from: new.sender,
                to: new.recipient,
                author: new.author,
                body,
                kind: new.kind,
                timestamp: new.timestamp_ms,
                from_me: new.from_me,
                has_media: new.has_media,
                ack: new.ack,
                quoted_id: new.quoted_id,
                tags: new.tags,
                attributes: new
                    .attributes
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
                changes: original.changes.clone(),
            }
        }

        pub(crate) fn context(ctx: &$crate::plugins::SyncContext) -> WitContext {
            WitContext {
                session_id: ctx.session_id.clone(),
                sync_id: ctx.sync_id.clone(),
                trigger: ctx.trigger.clone(),
            }
        }

        pub(crate) fn chat(c: &$crate::domain::Chat) -> Chat {
            Chat {
                id: c.id.clone(),
                name: c.name.clone(),
                is_group: c.is_group,
                unread_count: c.unread_count,
                archived: c.archived,
                pinned: c.pinned,
                last_message_ms: c.last_message_at,
            }
        }

        pub(crate) fn summary(s: $crate::plugins::ChatSummary) -> WitSummary {
            WitSummary {
                fetched: s.fetched,
                stored: s.stored,
                modified: s.modified,
                dropped: s.dropped,
                failed: s.failed,
            }
        }

        pub(crate) fn decision(d: WitDecision) -> $crate::plugins::ChatDecision {
            match d {
                WitDecision::Proceed(l) => $crate::plugins::ChatDecision::Proceed {
                    max_messages: l.max_messages,
                    since_ms: l.since_ms,
                },
                WitDecision::Skip(reason) => $crate::plugins::ChatDecision::Skip { reason },
            }
        }
    };
}

pub(crate) mod v1;
pub(crate) mod v2;

use crate::domain;

/// A `plugin-error` of either version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GuestError {
    pub code: String,
    pub message: String,
}

/// The largest char boundary at or below `max`.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    &s[..at]
}

/// The body as the plugin sees it when it is longer than `max_body` (cut),
/// `None` when the plugin sees it whole.
pub(crate) fn cut_of(m: &domain::Message, max_body: usize) -> Option<&str> {
    m.body
        .as_deref()
        .filter(|b| b.len() > max_body)
        .map(|b| cut(b, max_body))
}

/// The size of a message as a plugin sees it (bodies cut to `max_body`):
/// what `max_batch_bytes` counts, the same figure for both versions.
pub(crate) fn seen_size(m: &domain::Message, max_body: usize) -> usize {
    let body = m.body.as_ref().map_or(0, |b| b.len().min(max_body));
    fields_size(m) + body
}

/// Rough size of a stored message but its body: ids, addresses, kind,
/// tags, attributes.
pub(crate) fn fields_size(m: &domain::Message) -> usize {
    m.id.len()
        + m.chat_id.len()
        + m.from.len()
        + m.to.len()
        + m.author.as_ref().map_or(0, String::len)
        + m.kind.len()
        + m.quoted_id.as_ref().map_or(0, String::len)
        + m.tags.iter().map(String::len).sum::<usize>()
        + m.attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}
