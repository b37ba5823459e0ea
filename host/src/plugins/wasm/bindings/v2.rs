//! `wasync:plugin@0.2.0` (`wit/v0.2/plugin.wit`): the batch stays in the
//! host as a resource ([`BatchData`]) and the plugin copies in only what it
//! reads; it answers with its edits, checked and applied by the chain
//! (`chain::edits`).

use std::sync::Arc;

use wasmtime::component::Resource;

use super::{GuestError as HostGuestError, cut};
use crate::domain;
use crate::plugins::wasm::runtime::StoreData;

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "full",
        exports: { default: async },
        // A batch method given an index out of range traps.
        imports: { default: trappable },
        with: { "wasync:plugin/types@0.2.0.batch": super::BatchData },
    });
}

pub(crate) use generated::Full;
pub(crate) use generated::exports::wasync::plugin::chat_hooks::{
    Guest as HooksGuest, GuestIndices as HooksIndices,
};
pub(crate) use generated::exports::wasync::plugin::message_transform::{
    Guest as TransformGuest, GuestIndices as TransformIndices,
};
use generated::wasync::plugin::host::Level;
pub(crate) use generated::wasync::plugin::types::{
    Change, Chat, ChatDecision as WitDecision, ChatSummary as WitSummary, Edit, Message,
    MessageMeta, PluginError, SyncContext as WitContext, TextColumn, TextField, Update,
};

/// The messages of one `transform-batch` call, in the store's resource
/// table for the length of the call (the plugin holds a borrow), then taken
/// back. Shared (`Arc`) so that the messages survive a store dropped in the
/// middle of the call: the chain still needs them for `on_error`.
pub struct BatchData {
    pub(crate) msgs: Arc<Vec<domain::Message>>,
    pub(crate) max_body: usize,
}

impl BatchData {
    fn get(&self, index: u32) -> wasmtime::Result<&domain::Message> {
        self.msgs.get(index as usize).ok_or_else(|| {
            wasmtime::format_err!(
                "batch index {index} out of range (the batch has {} messages)",
                self.msgs.len()
            )
        })
    }

    /// A text field as the plugin sees it (the body cut to `max_body`).
    fn text<'a>(&self, m: &'a domain::Message, field: TextField) -> Option<&'a str> {
        match field {
            TextField::Id => Some(&m.id),
            TextField::ChatId => Some(&m.chat_id),
            TextField::Sender => Some(&m.from),
            TextField::Recipient => Some(&m.to),
            TextField::Author => m.author.as_deref(),
            TextField::Body => m.body.as_deref().map(|b| cut(b, self.max_body)),
            TextField::Kind => Some(&m.kind),
            TextField::QuotedId => m.quoted_id.as_deref(),
        }
    }
}

impl generated::wasync::plugin::types::HostBatch for StoreData {
    fn len(&mut self, r: Resource<BatchData>) -> wasmtime::Result<u32> {
        Ok(self.table().get(&r)?.msgs.len() as u32)
    }

    fn text(
        &mut self,
        r: Resource<BatchData>,
        index: u32,
        field: TextField,
    ) -> wasmtime::Result<Option<String>> {
        let b = self.table().get(&r)?;
        let m = b.get(index)?;
        Ok(b.text(m, field).map(str::to_owned))
    }

    fn column(&mut self, r: Resource<BatchData>, field: TextField) -> wasmtime::Result<TextColumn> {
        let b = self.table().get(&r)?;
        let n = b.msgs.len();
        let mut text = String::new();
        let mut ends = Vec::with_capacity(n);
        let mut absent = Vec::new();
        for (i, m) in b.msgs.iter().enumerate() {
            match b.text(m, field) {
                Some(t) => text.push_str(t),
                None => absent.push(i as u32),
            }
            let end = u32::try_from(text.len())
                .map_err(|_| wasmtime::format_err!("column over 4 GiB"))?;
            ends.push(end);
        }
        Ok(TextColumn { text, ends, absent })
    }

    fn truncated(&mut self, r: Resource<BatchData>) -> wasmtime::Result<Vec<u32>> {
        let b = self.table().get(&r)?;
        Ok(b.msgs
            .iter()
            .enumerate()
            .filter(|(_, m)| m.body.as_ref().is_some_and(|x| x.len() > b.max_body))
            .map(|(i, _)| i as u32)
            .collect())
    }

    fn meta(&mut self, r: Resource<BatchData>, index: u32) -> wasmtime::Result<MessageMeta> {
        let b = self.table().get(&r)?;
        let m = b.get(index)?;
        Ok(MessageMeta {
            timestamp_ms: m.timestamp,
            from_me: m.from_me,
            has_media: m.has_media,
            ack: m.ack,
            truncated: m.body.as_ref().is_some_and(|x| x.len() > b.max_body),
        })
    }

    fn tags(&mut self, r: Resource<BatchData>, index: u32) -> wasmtime::Result<Vec<String>> {
        Ok(self.table().get(&r)?.get(index)?.tags.clone())
    }

    fn attributes(
        &mut self,
        r: Resource<BatchData>,
        index: u32,
    ) -> wasmtime::Result<Vec<(String, String)>> {
        let m = self.table().get(&r)?.get(index)?;
        Ok(m.attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn message(&mut self, r: Resource<BatchData>, index: u32) -> wasmtime::Result<Message> {
        let b = self.table().get(&r)?;
        Ok(message(b.get(index)?, b.max_body))
    }

    /// The plugin only ever holds a borrow; the host takes the batch back
    /// after the call.
    fn drop(&mut self, _r: Resource<BatchData>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl generated::wasync::plugin::types::Host for StoreData {}

impl generated::wasync::plugin::host::Host for StoreData {
    fn log(&mut self, level: Level, msg: String) -> wasmtime::Result<()> {
        use super::v1::Level as L1;
        let level = match level {
            Level::Trace => L1::Trace,
            Level::Debug => L1::Debug,
            Level::Info => L1::Info,
            Level::Warn => L1::Warn,
            Level::Error => L1::Error,
        };
        self.plugin_log(level, &msg);
        Ok(())
    }

    fn config_get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.plugin_config(&key))
    }
}

impl From<PluginError> for HostGuestError {
    fn from(e: PluginError) -> Self {
        HostGuestError {
            code: e.code,
            message: e.message,
        }
    }
}

shared_conversions!();
