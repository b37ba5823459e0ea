//! The chain of one sync and its per-chat scopes.
//!
//! - this file: the chain (a snapshot of the installed plugins plus the
//!   sync's failure counts) and what its parts share;
//! - `call`: one guest call, instantiating first when needed, bounded by a
//!   wall-clock deadline and the sync's stop token;
//! - `scope`: a chat's hooks and batches, output checks, the `on_error`
//!   policy and tripping;
//! - `edits`: a 0.2 plugin's answer checked and applied to its batch;
//! - [`trace`]: what each call did, recorded only for the plugin developer
//!   kit (`wasync plugin run`).

mod call;
mod edits;
mod part;
mod scope;
pub mod trace;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use wasmtime::Trap;
use wasmtime::component::InstancePre;

use self::scope::WasmScope;
use self::trace::Trace;
use super::bindings::{v1, v2};
use super::logs;
use super::manifest::Manifest;
use super::runtime::{PluginData, PluginRuntime, StoreData};
use super::stats::{FailureKind, PluginStats};
use crate::domain;
use crate::plugins::{ChatScope, PluginChain, SyncContext};

/// A compiled, validated plugin, ready to instantiate.
pub(crate) struct LoadedPlugin {
    pub manifest: Manifest,
    pub sha256: String,
    pub size: usize,
    pub loaded_at: i64,
    pub pre: InstancePre<StoreData>,
    pub transform: Option<TransformExport>,
    pub hooks: Option<HooksExport>,
    pub stats: Arc<PluginStats>,
    pub data: PluginData,
}

/// A component's `message-transform` export, by contract version.
pub(crate) enum TransformExport {
    V1(v1::TransformIndices),
    V2(v2::TransformIndices),
}

/// A component's `chat-hooks` export, by contract version.
pub(crate) enum HooksExport {
    V1(v1::HooksIndices),
    V2(v2::HooksIndices),
}

/// How guest calls are run relative to the async runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Offload {
    /// Off the async workers, so a slow plugin (up to its deadline) never
    /// holds one. On a multi-thread runtime the calling worker turns into a
    /// blocking thread for the call (`block_in_place`: its queued tasks move
    /// to another worker, and no thread hand-off is paid when there are
    /// none); on a current-thread runtime the call goes to the blocking pool.
    #[default]
    BlockingPool,
    /// On the calling task: cheapest, but a call holds its worker thread
    /// for as long as it runs (bounded by the deadline).
    Inline,
}

/// The plugins of one sync: a snapshot of the manager's set plus this
/// sync's failure counts (tripping is per sync).
pub(crate) struct WasmChain {
    inner: Arc<ChainInner>,
}

struct ChainInner {
    runtime: Arc<PluginRuntime>,
    plugins: Vec<Arc<LoadedPlugin>>,
    failures: Vec<AtomicU32>,
    tripped: Vec<AtomicBool>,
    offload: Offload,
    /// Cancelled when the sync stops: a running call ends within a tick and
    /// no further call is made.
    stop: CancellationToken,
    /// Where each call is recorded; `None` (production) records nothing.
    trace: Option<Trace>,
}

impl WasmChain {
    pub fn new(
        runtime: Arc<PluginRuntime>,
        plugins: Vec<Arc<LoadedPlugin>>,
        offload: Offload,
        stop: CancellationToken,
        trace: Option<Trace>,
    ) -> Self {
        let n = plugins.len();
        Self {
            inner: Arc::new(ChainInner {
                runtime,
                plugins,
                failures: (0..n).map(|_| AtomicU32::new(0)).collect(),
                tripped: (0..n).map(|_| AtomicBool::new(false)).collect(),
                offload,
                stop,
                trace,
            }),
        }
    }
}

#[async_trait]
impl PluginChain for WasmChain {
    fn is_empty(&self) -> bool {
        self.inner.plugins.is_empty()
    }

    async fn chat_scope(&self, ctx: &SyncContext, chat: &domain::Chat) -> Box<dyn ChatScope> {
        Box::new(WasmScope::new(self.inner.clone(), ctx, chat))
    }
}

struct Failure {
    kind: FailureKind,
    reason: String,
}

/// A failure whose reason is fit for the host log: cut to 1 KiB and with
/// control characters escaped (reasons carry text the plugin chose: its
/// `plugin-error`, its skip reason, names in its trap's backtrace).
fn failure(kind: FailureKind, reason: impl AsRef<str>) -> Failure {
    Failure {
        kind,
        reason: logs::clean(reason.as_ref(), logs::LINE_BYTES),
    }
}

fn root_cause(e: &wasmtime::Error) -> String {
    let mut s = format!("{e:#}");
    if let Some(t) = e.downcast_ref::<Trap>() {
        s = format!("{t}: {s}");
    }
    s
}
