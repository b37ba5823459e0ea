//! `wasync:plugin@0.1.0` (`wit/plugin.wit`): whole message records in,
//! one outcome per message out. Still linked, so deployed 0.1 plugins run
//! unchanged.

use super::GuestError as HostGuestError;

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

shared_conversions!();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain;

    fn msg(body: &str) -> domain::Message {
        crate::plugins::wasm::test_message("m1", body)
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
