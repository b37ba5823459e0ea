//! `wasync:plugin@0.1.0` (`wit/plugin.wit`): whole message records in,
//! one outcome per message out. Still linked, so deployed 0.1 plugins run
//! unchanged.

use std::collections::BTreeMap;

use super::{GuestError as HostGuestError, cut};
use crate::domain;
use crate::plugins::{ChatDecision, ChatSummary, SyncContext};

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "full",
        exports: { default: async },
    });
}

pub(crate) use generated::Full;
pub(crate) use generated::exports::wasync::plugin::chat_hooks::{
    Guest as HooksGuest, GuestIndices as HooksIndices,
};
pub(crate) use generated::exports::wasync::plugin::message_transform::{
    Guest as TransformGuest, GuestIndices as TransformIndices,
};
pub(crate) use generated::wasync::plugin::host::{Host, Level};
pub(crate) use generated::wasync::plugin::types::{
    Chat, ChatDecision as WitDecision, ChatSummary as WitSummary, Message, Outcome,
    PluginError as GuestError, SyncContext as WitContext,
};

/// The types interface has no functions; the trait still needs an impl.
impl generated::wasync::plugin::types::Host for crate::plugins::wasm::runtime::StoreData {}

impl From<GuestError> for HostGuestError {
    fn from(e: GuestError) -> Self {
        HostGuestError {
            code: e.code,
            message: e.message,
        }
    }
}

pub(crate) fn context(ctx: &SyncContext) -> WitContext {
    WitContext {
        session_id: ctx.session_id.clone(),
        sync_id: ctx.sync_id.clone(),
        trigger: ctx.trigger.clone(),
    }
}

pub(crate) fn chat(c: &domain::Chat) -> Chat {
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

pub(crate) fn summary(s: ChatSummary) -> WitSummary {
    WitSummary {
        fetched: s.fetched,
        stored: s.stored,
        modified: s.modified,
        dropped: s.dropped,
        failed: s.failed,
    }
}

pub(crate) fn decision(d: WitDecision) -> ChatDecision {
    match d {
        WitDecision::Proceed(l) => ChatDecision::Proceed {
            max_messages: l.max_messages,
            since_ms: l.since_ms,
        },
        WitDecision::Skip(reason) => ChatDecision::Skip { reason },
    }
}

/// The guest's view of a message; bodies over `max_body` are cut.
pub(crate) fn message(m: &domain::Message, max_body: usize) -> Message {
    let (body, truncated) = match &m.body {
        Some(b) if b.len() > max_body => (Some(cut(b, max_body).to_owned()), true),
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

/// Rough size of what a `replace` asks the host to store.
pub(crate) fn size(m: &Message) -> usize {
    m.id.len()
        + m.chat_id.len()
        + m.sender.len()
        + m.recipient.len()
        + m.author.as_ref().map_or(0, String::len)
        + m.body.as_ref().map_or(0, String::len)
        + m.kind.len()
        + m.quoted_id.as_ref().map_or(0, String::len)
        + m.tags.iter().map(String::len).sum::<usize>()
        + m.attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// The body the guest saw, when the host cut it (`None` otherwise).
pub(crate) fn cut_body(seen: &Message) -> Option<String> {
    seen.truncated.then(|| seen.body.clone()).flatten()
}

/// Applies a guest's replacement to the stored message. When the guest saw a
/// cut body (`cut`) and handed the same text back, the full original body
/// stays; a changed body is stored as the guest wrote it.
pub(crate) fn apply(
    original: &domain::Message,
    cut: Option<&str>,
    new: Message,
) -> domain::Message {
    let body = if cut.is_some() && new.body.as_deref() == cut {
        original.body.clone()
    } else {
        new.body
    };
    domain::Message {
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
        attributes: new.attributes.into_iter().collect::<BTreeMap<_, _>>(),
        changes: original.changes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str) -> domain::Message {
        domain::Message {
            id: "m1".into(),
            chat_id: "c1".into(),
            from: "a@c.us".into(),
            to: "b@c.us".into(),
            author: None,
            body: Some(body.into()),
            kind: "chat".into(),
            timestamp: 1,
            from_me: false,
            has_media: false,
            ack: 1,
            quoted_id: None,
            tags: vec!["t".into()],
            attributes: BTreeMap::from([("k".into(), "v".into())]),
            changes: Default::default(),
        }
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let m = msg("hello");
        let seen = message(&m, 1024);
        assert!(!seen.truncated);
        assert_eq!(apply(&m, cut_body(&seen).as_deref(), seen.clone()), m);
    }

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary_and_restored_when_untouched() {
        let m = msg(&"é".repeat(100));
        let seen = message(&m, 51);
        assert!(seen.truncated);
        assert_eq!(seen.body.as_deref().unwrap().len(), 50);
        let cut = cut_body(&seen);
        assert_eq!(apply(&m, cut.as_deref(), seen.clone()).body, m.body);
        let mut changed = seen.clone();
        changed.body = Some("cut".into());
        assert_eq!(
            apply(&m, cut.as_deref(), changed).body.as_deref(),
            Some("cut")
        );
    }
}
