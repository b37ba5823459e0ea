//! One plugin loaded on its own, for the developer kit (`wasync plugin
//! check` and `run`): the upload's checks, and a chain of that one plugin.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::chain::{LoadedPlugin, WasmChain};
use super::stats::PluginStats;
use super::{Offload, PluginCounters, PluginError, PluginInfo, PluginRuntime, Trace, admit, load};
use crate::plugins::PluginChain;

/// One plugin loaded on its own, outside any manager and any directory,
/// for the developer kit (`wasync plugin check`, `wasync plugin run`): the
/// same checks as an upload, in the same order, and nothing written.
pub struct Trial {
    runtime: Arc<PluginRuntime>,
    plugin: Arc<LoadedPlugin>,
}

impl std::fmt::Debug for Trial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trial")
            .field("plugin", &self.plugin.manifest.name)
            .finish_non_exhaustive()
    }
}

impl Trial {
    /// Validates `wasm` against `manifest_toml` as `POST /plugins` would
    /// with `max_component_bytes` as its size cap, compiling on the calling
    /// thread.
    pub fn load(
        runtime: Arc<PluginRuntime>,
        manifest_toml: &str,
        wasm: &[u8],
        max_component_bytes: usize,
    ) -> Result<Self, PluginError> {
        let manifest = admit(&runtime, max_component_bytes, manifest_toml, wasm)?;
        let stats = Arc::new(PluginStats::default());
        let plugin = load(&runtime, manifest, wasm, stats)?;
        Ok(Self {
            runtime,
            plugin: Arc::new(plugin),
        })
    }

    /// What `GET /plugins` would show of it once installed.
    pub fn info(&self) -> PluginInfo {
        self.plugin.info()
    }

    /// The component's imports and exports, by name.
    pub fn interfaces(&self) -> (Vec<String>, Vec<String>) {
        let ty = self.plugin.pre.component().component_type();
        let engine = &self.runtime.engine;
        (
            ty.imports(engine).map(|(n, _)| n.to_owned()).collect(),
            ty.exports(engine).map(|(n, _)| n.to_owned()).collect(),
        )
    }

    /// A chain of this one plugin, run as a sync runs it (sub-batches,
    /// deadlines, memory cap, log budget, `on_error`, tripping), recording
    /// every call into `trace`. Calls run on the calling task.
    pub fn chain(&self, trace: Trace) -> Arc<dyn PluginChain> {
        Arc::new(WasmChain::new(
            self.runtime.clone(),
            vec![self.plugin.clone()],
            Offload::Inline,
            CancellationToken::new(),
            Some(trace),
        ))
    }

    /// The plugin's counters (log lines written and dropped among them).
    pub fn counters(&self) -> PluginCounters {
        self.plugin.stats.snapshot(&self.plugin.manifest.name)
    }
}
