//! The WebAssembly adapter of the plugin port: components run by wasmtime,
//! each in its own sandbox.
//!
//! - [`runtime`]: the engine (epoch deadlines, pooling allocator, compile
//!   cache), the shared linker, the store data (WASI with nothing granted).
//! - [`manifest`]: the TOML beside each component.
//! - `bindings`: the only `bindgen!`s, one per version of the contract
//!   (0.1 and 0.2, linked side by side); converts WIT types to domain types.
//! - `chain`: a sync's snapshot of the plugins and its per-chat scopes:
//!   sub-batches, calls bounded by wall-clock deadlines and a stop token.
//! - `logs`: what plugins write to the host log, escaped and budgeted.
//! - [`stats`]: per-plugin counters.
//!
//! [`PluginManager`] owns the installed set: it loads a directory at start,
//! installs, removes and reloads by swapping the whole set at once, so a
//! running sync keeps the `Arc` of the set it started with.
//!
//! On disk an installed plugin is `<name>.toml` plus `<name>.<sha256>.wasm`:
//! a component is never overwritten in place, so the manifest (written last,
//! the commit point, directory fsynced) always finds the component its
//! `sha256` pins, whenever the host crashes. A hand-copied `<name>.wasm`
//! beside its manifest works too.

mod bindings;
mod chain;
mod files;
mod logs;
pub mod manifest;
pub mod runtime;
pub mod stats;
mod trial;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

pub use chain::Offload;
pub use chain::trace::{CallTrace, Trace, TracedOutcome};
pub use manifest::{Limits, Manifest, OnError, World};
pub use runtime::{PluginRuntime, RuntimeOptions};
pub use stats::{FailureKind, Failures, PluginCounters, render_prometheus};
pub use trial::Trial;

use self::files::{commit_manifest, component_path, stage_component, sweep_components, sync_dir};

use self::bindings::{v1, v2};
use self::chain::{HooksExport, LoadedPlugin, TransformExport, WasmChain};
use self::runtime::PluginData;
use self::stats::PluginStats;
use crate::plugins::{PluginChain, PluginHost};

/// Everything that can go wrong managing plugins. Variants marked "client"
/// are the uploader's fault (the gateway answers 4xx, see
/// [`PluginError::http_status`]); the rest are the host's.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// Client: the manifest is not valid TOML or breaks a rule.
    #[error("invalid manifest: {reason}")]
    BadManifest { reason: String },
    /// Client: the upload does not start with the WebAssembly magic.
    #[error("not a WebAssembly binary")]
    NotWasm,
    /// Client: a core module, where a component is required.
    #[error(
        "a core WebAssembly module, not a component: build for wasm32-wasip2 or run `wasm-tools component new`"
    )]
    CoreModule,
    /// Client: the component does not validate or compile.
    #[error("invalid component: {reason}")]
    InvalidComponent { reason: String },
    /// Client: the component does not fit the world its manifest names
    /// (missing exports, or imports the host does not provide).
    #[error("component does not implement world {world:?}: {reason}")]
    WorldMismatch { world: &'static str, reason: String },
    /// Client: the upload exceeds the size cap.
    #[error("component is {size} bytes, over the {max}-byte cap")]
    TooLarge { size: usize, max: usize },
    /// Client: the component's sha256 is not the one its manifest names.
    #[error("sha256 mismatch: manifest says {expected}, component is {actual}")]
    Sha256Mismatch { expected: String, actual: String },
    /// Client: no plugin by that name.
    #[error("no plugin named {name:?}")]
    NotFound { name: String },
    /// Host: a file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Host: the engine could not be set up.
    #[error("plugin engine: {reason}")]
    Engine { reason: String },
}

impl PluginError {
    /// The HTTP status the gateway answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            PluginError::BadManifest { .. }
            | PluginError::NotWasm
            | PluginError::CoreModule
            | PluginError::InvalidComponent { .. } => 400,
            PluginError::WorldMismatch { .. } | PluginError::Sha256Mismatch { .. } => 422,
            PluginError::TooLarge { .. } => 413,
            PluginError::NotFound { .. } => 404,
            PluginError::Io { .. } | PluginError::Engine { .. } => 500,
        }
    }

    /// The stable code of the refusal, as the API's problem `code` and
    /// `wasync plugin check` name it; `None` for the host's own trouble.
    pub fn code(&self) -> Option<&'static str> {
        Some(match self {
            PluginError::BadManifest { .. } => "bad_manifest",
            PluginError::NotWasm => "not_wasm",
            PluginError::CoreModule => "core_module",
            PluginError::InvalidComponent { .. } => "invalid_component",
            PluginError::WorldMismatch { .. } => "world_mismatch",
            PluginError::TooLarge { .. } => "component_too_large",
            PluginError::Sha256Mismatch { .. } => "sha256_mismatch",
            PluginError::NotFound { .. } => "plugin_not_found",
            PluginError::Io { .. } | PluginError::Engine { .. } => return None,
        })
    }

    /// True when the request was at fault (4xx), false for host trouble.
    pub fn is_client_error(&self) -> bool {
        self.http_status() < 500
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PluginError + 'a {
    move |source| PluginError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Manager settings (the runtime's are in [`RuntimeOptions`]).
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Largest component `install` accepts.
    pub max_component_bytes: usize,
    /// Where guest calls run (see [`Offload`]).
    pub offload: Offload,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self {
            max_component_bytes: 16 * 1024 * 1024,
            offload: Offload::default(),
        }
    }
}

/// What `GET /plugins` shows of a plugin.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub world: World,
    pub priority: i32,
    pub on_error: OnError,
    pub limits: Limits,
    pub sha256: String,
    pub size_bytes: usize,
    /// When this version was loaded, ms.
    pub loaded_at: i64,
}

impl LoadedPlugin {
    fn info(&self) -> PluginInfo {
        let m = &self.manifest;
        PluginInfo {
            name: m.name.clone(),
            version: m.version.clone(),
            description: m.description.clone(),
            world: m.world,
            priority: m.priority,
            on_error: m.on_error,
            limits: m.limits,
            sha256: self.sha256.clone(),
            size_bytes: self.size,
            loaded_at: self.loaded_at,
        }
    }
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 0x01, 0];

/// Compiles and validates one plugin against its manifest's world.
fn load(
    rt: &PluginRuntime,
    manifest: Manifest,
    wasm: &[u8],
    stats: Arc<PluginStats>,
) -> Result<LoadedPlugin, PluginError> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(PluginError::NotWasm);
    }
    if wasm[4..8] == CORE_VERSION {
        return Err(PluginError::CoreModule);
    }
    if wasm[4..8] != COMPONENT_VERSION {
        return Err(PluginError::InvalidComponent {
            reason: format!("unknown binary version {:02x?}", &wasm[4..8]),
        });
    }
    let sha256 = sha256_hex(wasm);
    if let Some(expected) = &manifest.sha256
        && *expected != sha256
    {
        return Err(PluginError::Sha256Mismatch {
            expected: expected.clone(),
            actual: sha256,
        });
    }
    let mut manifest = manifest;
    let ceiling = rt.max_memory_mib();
    if manifest.limits.memory_mib > ceiling {
        // Uploads are refused (`install`); a manifest already in the
        // directory (accepted by an older host) runs at the ceiling rather
        // than failing the start, and says so.
        tracing::warn!(
            plugin = %manifest.name,
            asked = manifest.limits.memory_mib,
            ceiling,
            "plugins: memory_mib over the host's ceiling; running at the ceiling"
        );
        manifest.limits.memory_mib = ceiling;
    }
    let component = rt.compile(wasm)?;
    let world = manifest.world.as_str();
    let pre = rt
        .linker
        .instantiate_pre(&component)
        .map_err(|e| PluginError::WorldMismatch {
            world,
            reason: format!("it imports what the host does not provide: {e:#}"),
        })?;
    let missing = |what: &str, e: wasmtime::Error| PluginError::WorldMismatch {
        world,
        reason: format!("it does not export {what}: {e:#}"),
    };
    // The exports say which contract the component speaks: 0.2 first,
    // else 0.1 (whose plugins keep running unchanged).
    let transform =
        match manifest.world.transforms() {
            true => Some(match v2::TransformIndices::new(&pre) {
                Ok(ix) => TransformExport::V2(ix),
                Err(_) => TransformExport::V1(v1::TransformIndices::new(&pre).map_err(|e| {
                    missing("wasync:plugin/message-transform (@0.2.0 or @0.1.0)", e)
                })?),
            }),
            false => None,
        };
    let hooks = match manifest.world.hooks() {
        true => Some(match v2::HooksIndices::new(&pre) {
            Ok(ix) => HooksExport::V2(ix),
            Err(_) => HooksExport::V1(
                v1::HooksIndices::new(&pre)
                    .map_err(|e| missing("wasync:plugin/chat-hooks (@0.2.0 or @0.1.0)", e))?,
            ),
        }),
        false => None,
    };
    let data = PluginData {
        name: Arc::from(manifest.name.as_str()),
        config: Arc::new(manifest.config.clone()),
        stats: stats.clone(),
    };
    Ok(LoadedPlugin {
        manifest,
        sha256,
        size: wasm.len(),
        loaded_at: crate::domain::now_ms(),
        pre,
        transform,
        hooks,
        stats,
        data,
    })
}

/// The checks an upload gets before its component is compiled: size cap,
/// manifest, memory within the host's ceiling.
fn admit(
    rt: &PluginRuntime,
    max_component_bytes: usize,
    manifest_toml: &str,
    wasm: &[u8],
) -> Result<Manifest, PluginError> {
    if wasm.len() > max_component_bytes {
        return Err(PluginError::TooLarge {
            size: wasm.len(),
            max: max_component_bytes,
        });
    }
    let manifest = Manifest::parse(manifest_toml)?;
    let ceiling = rt.max_memory_mib();
    if manifest.limits.memory_mib > ceiling {
        return Err(PluginError::BadManifest {
            reason: format!(
                "limits.memory_mib = {} is over this host's ceiling of {ceiling} MiB",
                manifest.limits.memory_mib
            ),
        });
    }
    Ok(manifest)
}

/// The installed plugins, in chain order (priority, then name).
struct PluginSet {
    plugins: Vec<Arc<LoadedPlugin>>,
}

impl PluginSet {
    fn new(mut plugins: Vec<Arc<LoadedPlugin>>) -> Self {
        plugins.sort_by(|a, b| {
            (a.manifest.priority, &a.manifest.name).cmp(&(b.manifest.priority, &b.manifest.name))
        });
        Self { plugins }
    }
}

/// Loads, installs, removes and reloads plugins, and hands each sync the
/// current set as a [`PluginChain`].
pub struct PluginManager {
    runtime: Arc<PluginRuntime>,
    dir: PathBuf,
    opts: ManagerOptions,
    current: RwLock<Arc<PluginSet>>,
    stats: StatsMap,
    /// Serialises install / remove / reload so two changes never race on
    /// the directory or the swap.
    changes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginManager")
            .field("dir", &self.dir)
            .field("plugins", &self.list().len())
            .finish_non_exhaustive()
    }
}

impl PluginManager {
    /// Loads every `<name>.toml` + `<name>.wasm` pair in `dir` (created when
    /// missing). Any broken plugin fails the whole start: skipping, say, a
    /// redaction plugin would store what it exists to hide.
    ///
    /// Compiles on the calling thread (fast with a warm cache); call it from
    /// `spawn_blocking` inside a runtime if the directory is large.
    pub fn open(
        runtime: Arc<PluginRuntime>,
        dir: impl Into<PathBuf>,
        opts: ManagerOptions,
    ) -> Result<Self, PluginError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let mgr = Self {
            runtime,
            dir,
            opts,
            current: RwLock::new(Arc::new(PluginSet::new(Vec::new()))),
            stats: StatsMap::default(),
            changes: tokio::sync::Mutex::new(()),
        };
        let set = load_dir(&mgr.runtime, &mgr.dir, &mgr.stats)?;
        *mgr.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(mgr)
    }

    /// The directory plugins are loaded from and installed into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The engine, e.g. to check whether pooling is in use.
    pub fn runtime(&self) -> &Arc<PluginRuntime> {
        &self.runtime
    }

    fn stats_for(&self, name: &str) -> Arc<PluginStats> {
        self.stats.get(name)
    }

    fn swap(&self, set: PluginSet) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }

    fn snapshot(&self) -> Arc<PluginSet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The installed plugins in chain order.
    pub fn list(&self) -> Vec<PluginInfo> {
        self.snapshot().plugins.iter().map(|p| p.info()).collect()
    }

    /// Validates and installs (or upgrades) a plugin, then swaps it into the
    /// set. Nothing changes unless every check passes: size cap, manifest,
    /// wasm magic, component (not core module), sha256, world.
    pub async fn install(
        &self,
        manifest_toml: &str,
        wasm: Vec<u8>,
    ) -> Result<PluginInfo, PluginError> {
        let manifest = admit(
            &self.runtime,
            self.opts.max_component_bytes,
            manifest_toml,
            &wasm,
        )?;
        let _guard = self.changes.lock().await;
        let rt = self.runtime.clone();
        let stats = self.stats_for(&manifest.name);
        let text = manifest_toml.to_owned();
        let (plugin, wasm) = tokio::task::spawn_blocking(move || {
            load(&rt, manifest, &wasm, stats).map(|p| (p, wasm))
        })
        .await
        .map_err(|e| PluginError::Engine {
            reason: format!("compile task failed: {e}"),
        })??;
        let name = plugin.manifest.name.clone();
        let text = manifest::with_sha256(&text, &plugin.manifest, &plugin.sha256);
        // The new component beside the old one, then the manifest that
        // switches to it: a crash at any point leaves a manifest whose
        // component is on disk (the old pair or the new one).
        let keep = stage_component(&self.dir, &name, &plugin.sha256, &wasm)?;
        commit_manifest(&self.dir, &name, &text)?;
        sweep_components(&self.dir, &name, Some(&keep));
        let info = plugin.info();
        let mut plugins: Vec<Arc<LoadedPlugin>> = self
            .snapshot()
            .plugins
            .iter()
            .filter(|p| p.manifest.name != name)
            .cloned()
            .collect();
        plugins.push(Arc::new(plugin));
        self.swap(PluginSet::new(plugins));
        tracing::info!(plugin = %name, version = %info.version, sha256 = %info.sha256, "plugins.installed");
        Ok(info)
    }

    /// Uninstalls a plugin: its files go and the next sync runs without it.
    pub async fn remove(&self, name: &str) -> Result<(), PluginError> {
        let not_found = || PluginError::NotFound {
            name: name.to_owned(),
        };
        if !manifest::valid_name(name) {
            return Err(not_found());
        }
        let _guard = self.changes.lock().await;
        let set = self.snapshot();
        if !set.plugins.iter().any(|p| p.manifest.name == name) {
            return Err(not_found());
        }
        let toml = self.dir.join(format!("{name}.toml"));
        match std::fs::remove_file(&toml) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing", &toml)(e)),
        }
        sync_dir(&self.dir)?;
        sweep_components(&self.dir, name, None);
        self.swap(PluginSet::new(
            set.plugins
                .iter()
                .filter(|p| p.manifest.name != name)
                .cloned()
                .collect(),
        ));
        tracing::info!(plugin = %name, "plugins.removed");
        Ok(())
    }

    /// Re-reads the directory and swaps in the new set; on any error the
    /// current set stays.
    pub async fn reload(&self) -> Result<Vec<PluginInfo>, PluginError> {
        let _guard = self.changes.lock().await;
        let (rt, dir, stats) = (self.runtime.clone(), self.dir.clone(), self.stats.clone());
        let set = tokio::task::spawn_blocking(move || load_dir(&rt, &dir, &stats))
            .await
            .map_err(|e| PluginError::Engine {
                reason: format!("reload task failed: {e}"),
            })??;
        self.swap(set);
        Ok(self.list())
    }

    /// Per-plugin counters, installed plugins first (also those of removed
    /// plugins, which keep their totals).
    pub fn counters(&self) -> Vec<PluginCounters> {
        let stats = self.stats.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<PluginCounters> = stats.iter().map(|(n, s)| s.snapshot(n)).collect();
        out.sort_by(|a, b| a.plugin.cmp(&b.plugin));
        out
    }

    /// [`PluginManager::counters`] in the Prometheus text format.
    pub fn render_prometheus(&self) -> String {
        render_prometheus(&self.counters())
    }
}

/// Counters by plugin name; shared with the blocking tasks that load.
#[derive(Default, Clone)]
struct StatsMap(Arc<Mutex<HashMap<String, Arc<PluginStats>>>>);

impl StatsMap {
    fn get(&self, name: &str) -> Arc<PluginStats> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone()
    }
}

/// Loads every plugin of a directory; the first broken one fails it all.
fn load_dir(rt: &PluginRuntime, dir: &Path, stats: &StatsMap) -> Result<PluginSet, PluginError> {
    let mut plugins = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(io("reading", dir))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(io("reading", &path))?;
        let manifest = Manifest::parse(&text).map_err(|e| match e {
            PluginError::BadManifest { reason } => PluginError::BadManifest {
                reason: format!("{}: {reason}", path.display()),
            },
            e => e,
        })?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if stem != manifest.name {
            return Err(PluginError::BadManifest {
                reason: format!(
                    "{} names plugin {:?}; the file must be called {}.toml",
                    path.display(),
                    manifest.name,
                    manifest.name
                ),
            });
        }
        let wasm_path = component_path(dir, &manifest);
        let wasm = std::fs::read(&wasm_path).map_err(io("reading", &wasm_path))?;
        let stats = stats.get(&manifest.name);
        let plugin = load(rt, manifest, &wasm, stats)?;
        tracing::info!(plugin = %plugin.manifest.name, version = %plugin.manifest.version, sha256 = %plugin.sha256, "plugins.loaded");
        plugins.push(Arc::new(plugin));
    }
    Ok(PluginSet::new(plugins))
}

impl PluginHost for PluginManager {
    fn chain(&self) -> Arc<dyn PluginChain> {
        self.chain_until(CancellationToken::new())
    }

    fn chain_until(&self, stop: CancellationToken) -> Arc<dyn PluginChain> {
        let set = self.snapshot();
        Arc::new(WasmChain::new(
            self.runtime.clone(),
            set.plugins.clone(),
            self.opts.offload,
            stop,
            None,
        ))
    }
}

#[cfg(test)]
mod tests;

/// A message with one tag and one attribute, for the unit tests of the
/// conversions and of applying a plugin's edits.
#[cfg(test)]
fn test_message(id: &str, body: &str) -> crate::domain::Message {
    crate::domain::Message {
        id: id.into(),
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
        attributes: std::collections::BTreeMap::from([("k".into(), "v".into())]),
        changes: Default::default(),
    }
}
