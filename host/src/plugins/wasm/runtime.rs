//! The engine, the shared linker and the per-instance store data.
//!
//! One [`PluginRuntime`] per process: compiling and the pooling allocator's
//! reservations are per engine, and the epoch ticker that enforces
//! deadlines is one thread per engine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::PluginError;
use super::bindings::{self, Full, Level};

/// How the engine is set up. `Default` suits production and tests.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled components are cached across restarts, keyed by the
    /// component's hash and the engine's settings; `None` compiles on every
    /// load. Only this host writes there, so it never runs artifacts it did
    /// not compile itself.
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling allocator (pre-reserved instance slots, copy-on-write
    /// memory images: microsecond instantiation). Falls back to on-demand
    /// allocation when the machine refuses the reservation.
    pub pooling: bool,
    /// Instances that can be alive at once (one per plugin per chat being
    /// synced); past it, instantiation fails and the plugin's policy applies.
    pub pool_slots: u32,
    /// Memory ceiling of any instance; manifests may ask for less.
    pub max_memory_mib: u32,
    /// Epoch tick: deadlines are counted in these, so a deadline trips
    /// between `deadline` and `deadline + tick`.
    pub epoch_tick: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            pooling: true,
            pool_slots: 256,
            max_memory_mib: 256,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

/// Bytes of each pooled linear memory kept resident between instances.
const KEEP_RESIDENT: usize = 4 * 1024 * 1024;

/// The engine, its linker, and what kind of allocator it ended up with.
pub struct PluginRuntime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StoreData>,
    pub(crate) tick: Duration,
    pub(crate) max_memory_bytes: usize,
    pooling: bool,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("pooling", &self.pooling)
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

fn engine_err(what: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::Engine {
        reason: format!("{what}: {e}"),
    }
}

fn config(opts: &RuntimeOptions, pooling: bool) -> Result<Config, PluginError> {
    let mut cfg = Config::new();
    cfg.wasm_component_model(true)
        .epoch_interruption(true)
        // No component-model-async in our worlds: skipping its bookkeeping
        // halves the cost of a call.
        .concurrency_support(false)
        .max_wasm_stack(1024 * 1024)
        .async_stack_size(2 * 1024 * 1024);
    if let Some(dir) = &opts.cache_dir {
        std::fs::create_dir_all(dir).map_err(|e| engine_err("creating the cache dir", e))?;
        let mut cc = wasmtime::CacheConfig::new();
        cc.with_directory(dir);
        let cache = wasmtime::Cache::new(cc).map_err(|e| engine_err("opening the cache", e))?;
        cfg.cache(Some(cache));
    }
    if pooling {
        let n = opts.pool_slots.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_core_instances_per_component(16)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_memory_size(opts.max_memory_mib as usize * 1024 * 1024)
            // A slot is reused chat after chat: resetting the pages an
            // instance dirtied with memset (found with PAGEMAP_SCAN where
            // the kernel has it) keeps them resident, where madvise would
            // make the next instance fault each one in again.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 * 1024)
            .pagemap_scan(wasmtime::Enabled::Auto);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Ok(cfg)
}

impl PluginRuntime {
    /// Builds the engine, starts its epoch ticker and links the host
    /// imports plus WASI (with nothing granted).
    pub fn new(opts: RuntimeOptions) -> Result<Arc<Self>, PluginError> {
        let (engine, pooling) = match opts.pooling {
            true => match Engine::new(&config(&opts, true)?) {
                Ok(e) => (e, true),
                Err(e) => {
                    tracing::warn!(error = %e, "plugins: pooling allocator unavailable, using on-demand allocation");
                    (
                        Engine::new(&config(&opts, false)?).map_err(|e| engine_err("engine", e))?,
                        false,
                    )
                }
            },
            false => (
                Engine::new(&config(&opts, false)?).map_err(|e| engine_err("engine", e))?,
                false,
            ),
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| engine_err("linking WASI", e))?;
        Full::add_to_linker::<_, HasSelf<StoreData>>(&mut linker, |s| s)
            .map_err(|e| engine_err("linking host imports", e))?;
        let tick = opts.epoch_tick.max(Duration::from_millis(1));
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                // Ends with the engine: a weak handle keeps the thread from
                // holding the engine alive.
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(tick);
                }
            })
            .map_err(|e| engine_err("starting the epoch ticker", e))?;
        Ok(Arc::new(Self {
            engine,
            linker,
            tick,
            max_memory_bytes: opts.max_memory_mib as usize * 1024 * 1024,
            pooling,
        }))
    }

    /// The process's engine: the first call creates it (its options win),
    /// later calls share it, so every host in a process (tests start many)
    /// has one engine, one ticker and one pool.
    pub fn global(opts: RuntimeOptions) -> Result<Arc<Self>, PluginError> {
        static RT: std::sync::OnceLock<Arc<PluginRuntime>> = std::sync::OnceLock::new();
        if let Some(rt) = RT.get() {
            return Ok(rt.clone());
        }
        let rt = Self::new(opts)?;
        Ok(RT.get_or_init(|| rt).clone())
    }

    /// True when the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Compiles (or loads from the cache) a component.
    pub(crate) fn compile(&self, wasm: &[u8]) -> Result<Component, PluginError> {
        Component::new(&self.engine, wasm).map_err(|e| PluginError::InvalidComponent {
            reason: format!("{e:#}"),
        })
    }

    /// Epoch ticks for a deadline, rounded up.
    pub(crate) fn ticks(&self, deadline: Duration) -> u64 {
        let tick = self.tick.as_nanos().max(1);
        (deadline.as_nanos().div_ceil(tick) as u64).max(1)
    }

    /// A fresh store for one plugin instance: WASI with no dirs, env,
    /// args or sockets, stdout/stderr into a capped in-memory log.
    pub(crate) fn store(&self, data: PluginData, memory_bytes: usize) -> Store<StoreData> {
        let stdout = MemoryOutputPipe::new(LOG_CAP);
        let stderr = MemoryOutputPipe::new(LOG_CAP);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut store = Store::new(
            &self.engine,
            StoreData {
                wasi,
                table: ResourceTable::new(),
                limiter: Limiter {
                    memory_bytes: memory_bytes.min(self.max_memory_bytes),
                    hit_memory_cap: false,
                },
                plugin: data,
                log_budget: LOG_PER_CALL,
                logs_dropped: 0,
                stdout,
                stderr,
                stdio_seen: (0, 0),
            },
        );
        store.limiter(|s| &mut s.limiter);
        store
    }
}

/// Cap of what a plugin may print to stdout or stderr over one instance's
/// life; past it, its writes fail.
const LOG_CAP: usize = 64 * 1024;
/// Log bytes one call may emit through `host.log`.
pub(crate) const LOG_PER_CALL: usize = 64 * 1024;
const LOG_LINE: usize = 1024;

/// What a plugin's host imports need to know about it.
#[derive(Debug, Clone)]
pub(crate) struct PluginData {
    pub name: Arc<str>,
    pub config: Arc<BTreeMap<String, String>>,
}

/// Refuses memory growth past the plugin's cap and remembers that it did,
/// so the resulting trap is reported as out-of-memory.
pub(crate) struct Limiter {
    memory_bytes: usize,
    pub hit_memory_cap: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit_memory_cap = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// Everything one plugin instance's store holds.
pub struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) plugin: PluginData,
    pub(crate) log_budget: usize,
    pub(crate) logs_dropped: u64,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    stdio_seen: (usize, usize),
}

impl StoreData {
    /// Forwards what the guest printed since the last call to the host log.
    pub(crate) fn flush_stdio(&mut self) {
        let name = &self.plugin.name;
        for (pipe, seen, stream) in [
            (&self.stdout, &mut self.stdio_seen.0, "stdout"),
            (&self.stderr, &mut self.stdio_seen.1, "stderr"),
        ] {
            let all = pipe.contents();
            if all.len() > *seen {
                let new = String::from_utf8_lossy(&all[*seen..]);
                for line in new.lines().filter(|l| !l.is_empty()) {
                    tracing::info!(plugin = %name, stream, "{}", truncate(line, LOG_LINE));
                }
                *seen = all.len();
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    &s[..at]
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::Host for StoreData {
    fn log(&mut self, level: Level, msg: String) {
        let line = truncate(&msg, LOG_LINE);
        if line.len() > self.log_budget {
            self.logs_dropped += 1;
            return;
        }
        self.log_budget -= line.len();
        let name = &self.plugin.name;
        match level {
            Level::Trace => tracing::trace!(plugin = %name, "{line}"),
            Level::Debug => tracing::debug!(plugin = %name, "{line}"),
            Level::Info => tracing::info!(plugin = %name, "{line}"),
            Level::Warn => tracing::warn!(plugin = %name, "{line}"),
            Level::Error => tracing::error!(plugin = %name, "{line}"),
        }
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        self.plugin.config.get(&key).cloned()
    }
}
