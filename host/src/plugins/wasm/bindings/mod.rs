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
