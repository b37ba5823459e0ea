//! What each guest call did: wall time, instructions, memory, result and,
//! for a batch, what the plugin answered per message. Recorded only when a
//! chain is built with a [`Trace`] (the plugin developer kit's `wasync
//! plugin run`); a production sync builds none and pays nothing.

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One guest call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallTrace {
    pub plugin: String,
    /// `transform-batch`, `before-chat-sync` or `after-chat-sync`.
    pub call: &'static str,
    pub chat_id: String,
    /// Messages handed to a `transform-batch` call (0 for the hooks).
    pub messages: usize,
    /// Time to make the instance this call ran on, ms, when the call made
    /// one (the first call of a chat, or the first after a failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instantiate_ms: Option<f64>,
    /// Wall time of the call, instantiation included, ms.
    pub wall_ms: f64,
    /// WebAssembly instructions the call executed (wasmtime's fuel: about
    /// one unit per instruction), instantiation not included. `None` when
    /// the call was cut while waiting in a host call (its instance is gone)
    /// or when the engine does not count.
    pub instructions: Option<u64>,
    /// The instance's linear memory after the call, bytes: its high-water
    /// mark, as WebAssembly memories never shrink. `None` when the instance
    /// is gone.
    pub memory_bytes: Option<u64>,
    /// `ok`, or how the call failed (`deadline`, `memory`, `trap`, `error`,
    /// `fault`, `instantiate`, `cancelled`).
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Per message of a `transform-batch` the plugin answered, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<TracedOutcome>,
}

/// What the plugin answered for one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TracedOutcome {
    pub id: String,
    /// `keep`, `replace` or `drop`.
    pub outcome: &'static str,
    /// A drop's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The calls of one chain, in the order they were made.
#[derive(Debug, Clone, Default)]
pub struct Trace(Arc<Mutex<Vec<CallTrace>>>);

impl Trace {
    /// Records a call; returns its index for [`Trace::annotate`].
    pub(crate) fn push(&self, call: CallTrace) -> usize {
        let mut calls = self.0.lock().unwrap_or_else(|e| e.into_inner());
        calls.push(call);
        calls.len() - 1
    }

    /// Adds a batch call's per-message answers, once they are checked.
    pub(crate) fn annotate(&self, index: usize, outcomes: Vec<TracedOutcome>) {
        let mut calls = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = calls.get_mut(index) {
            c.outcomes = outcomes;
        }
    }

    /// Takes the calls recorded so far.
    pub fn take(&self) -> Vec<CallTrace> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
