//! The engine, the shared linker and the per-instance store data.
//!
//! One [`PluginRuntime`] per process: compiling and the pooling allocator's
//! reservations are per engine, and the epoch ticker that enforces
//! deadlines is one thread per engine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasmtime::component::{Component, HasData, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    UpdateDeadline,
};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::PluginError;
use super::bindings::v1::{self, Level};
use super::bindings::v2;
use super::logs::{self, LogBudget, StdioSink};
use super::stats::PluginStats;

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
    /// Epoch tick: while guest code runs, each tick checks its call's
    /// wall-clock deadline and stop token, so a computing guest is stopped
    /// between `deadline` and `deadline + tick` (a waiting one by a timer).
    pub epoch_tick: Duration,
    /// Count the instructions each call executes (wasmtime's fuel, with
    /// an unlimited supply): for the developer kit's `wasync plugin run`.
    /// Costs a few percent of guest speed, so production leaves it off.
    pub count_instructions: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            pooling: true,
            pool_slots: 256,
            max_memory_mib: 256,
            epoch_tick: Duration::from_millis(10),
            count_instructions: false,
        }
    }
}

/// Host resources (streams, pollables) one instance may hold at once. A
/// plugin built from Rust's standard library holds a handful; each entry
/// is host memory the plugin's `memory_mib` does not count, so a plugin
/// that makes and forgets them (a pollable per loop turn) is stopped here,
/// with a trap, instead of at wasmtime's default of a million.
pub const MAX_RESOURCES: usize = 4096;

/// What the host may copy out of a plugin's memory in one transfer (a
/// call's answer, or the arguments of one host call the plugin makes) with
/// nothing but the call's fixed parts: errors, drop and skip reasons, log
/// lines (cut to 1 KiB afterwards, but copied whole first).
pub const LIFT_BASE_BYTES: usize = 1024 * 1024;

/// What one transfer may copy per message of the batch on top of
/// `max_output_bytes`: the host-side records of the answer's lists (an
/// edit, a tag, an attribute) count their size in host memory.
pub const LIFT_PER_MESSAGE_BYTES: usize = 4 * 1024;

/// Wasmtime's own cap on one transfer, which the budget never exceeds.
pub const LIFT_MAX_BYTES: usize = 128 * 1024 * 1024;

/// The lifting budget of a call on `messages` messages whose changed
/// messages may be `max_output` bytes each: an honest answer names each
/// message at most once, so it fits; an answer whose strings all point at
/// one large buffer (copied once each by the canonical ABI) does not, and
/// the call fails while it is being copied, before the host holds more
/// than this (wasmtime's "hostcall fuel", counted per transfer).
pub fn lift_budget(messages: usize, max_output: usize) -> usize {
    messages
        .saturating_mul(max_output.saturating_add(LIFT_PER_MESSAGE_BYTES))
        .saturating_add(LIFT_BASE_BYTES)
        .min(LIFT_MAX_BYTES)
}

/// Whether `e` is wasmtime refusing a transfer over the store's lifting
/// budget (its error type is private; its message is what it has).
pub(crate) fn over_lift_budget(e: &wasmtime::Error) -> bool {
    e.chain().any(|c| {
        c.to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
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
    counts_instructions: bool,
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
        .async_stack_size(2 * 1024 * 1024)
        .consume_fuel(opts.count_instructions);
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
        link_wasi(&mut linker).map_err(|e| engine_err("linking WASI", e))?;
        // Both versions of the contract: a component's imports and exports
        // name theirs, so 0.1 plugins keep running beside 0.2 ones.
        v1::Full::add_to_linker::<_, HasSelf<StoreData>>(&mut linker, |s| s)
            .map_err(|e| engine_err("linking host imports (0.1)", e))?;
        v2::Full::add_to_linker::<_, HasSelf<StoreData>>(&mut linker, |s| s)
            .map_err(|e| engine_err("linking host imports (0.2)", e))?;
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
            counts_instructions: opts.count_instructions,
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

    /// A fresh store for one plugin instance: WASI with no env, args or
    /// stdin, stdout/stderr into the per-call log budget. While guest code
    /// runs, every epoch tick checks the call's wall-clock deadline and its
    /// stop token (see [`StoreData::begin_call`]): a deadline is kept to
    /// within one tick whatever the ticker's pace.
    pub(crate) fn store(&self, data: PluginData, memory_bytes: usize) -> Store<StoreData> {
        let stdout = StdioSink::default();
        let stderr = StdioSink::default();
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let mut store = Store::new(
            &self.engine,
            StoreData {
                wasi,
                table,
                limiter: Limiter {
                    memory_bytes: memory_bytes.min(self.max_memory_bytes),
                    hit_memory_cap: false,
                    peak_bytes: 0,
                },
                plugin: data,
                log: LogBudget::fresh(),
                stdout,
                stderr,
                call: CallBounds {
                    until: Instant::now(),
                    stop: CancellationToken::new(),
                },
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|ctx| {
            let call = &ctx.data().call;
            Ok(
                if call.stop.is_cancelled() || Instant::now() >= call.until {
                    UpdateDeadline::Interrupt
                } else {
                    UpdateDeadline::Continue(1)
                },
            )
        });
        store.set_epoch_deadline(1);
        // Instantiation and hooks answer small records; a batch call sets
        // its own budget (`lift_budget`).
        store.set_hostcall_fuel(LIFT_BASE_BYTES);
        if self.counts_instructions {
            // Counted, not limited: deadlines stay the only bound.
            let _ = store.set_fuel(u64::MAX);
        }
        store
    }

    /// The memory ceiling of any instance, MiB: manifests asking for more
    /// are refused.
    pub fn max_memory_mib(&self) -> u32 {
        (self.max_memory_bytes / (1024 * 1024)) as u32
    }

    /// The epoch tick: guest code is stopped within one tick of its
    /// deadline.
    pub fn tick(&self) -> Duration {
        self.tick
    }
}

/// Links the WASI interfaces a plugin built for `wasm32-wasip2` needs and
/// nothing else: `wasi:io`, `wasi:clocks`, `wasi:random` and `wasi:cli`
/// (Rust's standard library imports stdio, environment and exit even when a
/// plugin never uses them; the environment and arguments are empty, stdin
/// is closed). `wasi:filesystem` and `wasi:sockets` are not linked at all,
/// so a component that imports them is refused at upload (`world_mismatch`)
/// instead of being handed interfaces that could only fail.
fn link_wasi(l: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::{cli, clocks, io, random};
    io::error::add_to_linker::<_, Io>(l, |t| &mut t.table)?;
    io::poll::add_to_linker::<_, Io>(l, |t| &mut t.table)?;
    io::streams::add_to_linker::<_, Io>(l, |t| &mut t.table)?;
    clocks::wall_clock::add_to_linker::<_, WasiClocks>(l, |t| t.clocks())?;
    clocks::monotonic_clock::add_to_linker::<_, WasiClocks>(l, |t| t.clocks())?;
    random::random::add_to_linker::<_, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<_, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<_, WasiRandom>(l, |t| t.wasi.random())?;
    cli::exit::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::environment::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::stdin::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::stdout::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::stderr::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::terminal_input::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::terminal_output::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::terminal_stdin::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::terminal_stdout::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::terminal_stderr::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    Ok(())
}

/// `wasi:io` host functions work on the store's resource table.
struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

/// What a plugin's host imports need to know about it.
#[derive(Debug, Clone)]
pub(crate) struct PluginData {
    pub name: Arc<str>,
    pub config: Arc<BTreeMap<String, String>>,
    /// Where log lines are counted (also when the store is dropped mid-call).
    pub stats: Arc<PluginStats>,
}

/// Refuses memory growth past the plugin's cap and remembers that it did,
/// so the resulting trap is reported as out-of-memory.
pub(crate) struct Limiter {
    memory_bytes: usize,
    pub hit_memory_cap: bool,
    /// The largest memory granted so far (instantiation included), bytes.
    pub peak_bytes: usize,
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
        self.peak_bytes = self.peak_bytes.max(desired);
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

/// The bounds of the call in progress, read by the epoch callback.
struct CallBounds {
    /// Wall-clock deadline.
    until: Instant,
    /// Cancelled when the sync stops.
    stop: CancellationToken,
}

/// Everything one plugin instance's store holds.
pub struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) plugin: PluginData,
    log: LogBudget,
    stdout: StdioSink,
    stderr: StdioSink,
    call: CallBounds,
}

impl StoreData {
    /// Arms a call: its wall-clock deadline, the token that stops it, a
    /// fresh log budget.
    pub(crate) fn begin_call(&mut self, until: Instant, stop: CancellationToken) {
        self.call = CallBounds { until, stop };
        self.limiter.hit_memory_cap = false;
        self.log = LogBudget::fresh();
    }

    /// Ends a call: writes what the guest printed (charged to the same
    /// budget as its `log` lines) and reports the lines dropped over it.
    pub(crate) fn end_call(&mut self) {
        let sinks = [
            (self.stdout.clone(), "stdout"),
            (self.stderr.clone(), "stderr"),
        ];
        for (sink, stream) in sinks {
            let (held, overflow) = sink.take();
            if overflow > 0 {
                self.log.dropped += overflow;
                self.plugin.stats.logs_dropped(overflow);
            }
            let text = String::from_utf8_lossy(&held);
            for line in text.lines().filter(|l| !l.is_empty()) {
                self.write(Level::Info, line, stream);
            }
        }
        if self.log.dropped > 0 {
            tracing::warn!(
                plugin = %self.plugin.name,
                dropped = self.log.dropped,
                "plugins.logs_dropped: over the per-call budget of {} lines, {} bytes",
                logs::LINES_PER_CALL,
                logs::BYTES_PER_CALL
            );
            self.log.dropped = 0;
        }
    }

    /// Writes one line of the plugin's to the host log if the call's budget
    /// allows: cut to [`logs::LINE_BYTES`], control characters escaped.
    fn write(&mut self, level: Level, text: &str, stream: &'static str) {
        let line = logs::clean(text, logs::LINE_BYTES);
        if !self.log.charge(line.len()) {
            self.plugin.stats.logs_dropped(1);
            return;
        }
        self.plugin.stats.log_line();
        let name = &self.plugin.name;
        match level {
            Level::Trace => tracing::trace!(plugin = %name, stream, "{line}"),
            Level::Debug => tracing::debug!(plugin = %name, stream, "{line}"),
            Level::Info => tracing::info!(plugin = %name, stream, "{line}"),
            Level::Warn => tracing::warn!(plugin = %name, stream, "{line}"),
            Level::Error => tracing::error!(plugin = %name, stream, "{line}"),
        }
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl StoreData {
    /// The store's resource table (WASI's handles, 0.2's batches).
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// The `log` import of either version.
    pub(crate) fn plugin_log(&mut self, level: Level, msg: &str) {
        self.write(level, msg, "log");
    }

    /// The `config-get` import of either version.
    pub(crate) fn plugin_config(&self, key: &str) -> Option<String> {
        self.plugin.config.get(key).cloned()
    }
}

impl v1::Host for StoreData {
    fn log(&mut self, level: Level, msg: String) {
        self.plugin_log(level, &msg);
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        self.plugin_config(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifting_budget_grows_with_the_batch_up_to_wasmtimes_cap() {
        assert_eq!(lift_budget(0, 262_144), LIFT_BASE_BYTES);
        assert_eq!(lift_budget(2, 262_144), 1_581_056);
        assert_eq!(lift_budget(10_000, 4 << 20), LIFT_MAX_BYTES);
        assert_eq!(lift_budget(usize::MAX, usize::MAX), LIFT_MAX_BYTES);
    }
}
