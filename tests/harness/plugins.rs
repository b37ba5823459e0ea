//! Plugin test helpers: where the built `.wasm` files are, a shared engine,
//! plugin directories made of chosen plugins, and the redaction benchmark.
//!
//! The guest plugins are built by `scripts/build-plugins.sh` into
//! `plugins/dist/`; `scripts/test.sh` exports that path as
//! `WASYNC_TEST_PLUGINS_DIR`, and a plain `cargo test` finds it relative to
//! this crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasync::domain::{Chat, Message};
use wasync::plugins::wasm::{
    ManagerOptions, Offload, PluginManager, PluginRuntime, RuntimeOptions,
};
use wasync::plugins::{PluginHost, SyncContext};

/// Names the directory of built plugins for the tests.
pub const WASYNC_TEST_PLUGINS_DIR: &str = "WASYNC_TEST_PLUGINS_DIR";

/// The native twin of the redaction plugin: the very same source file.
#[path = "../../plugins/redact-pii/src/redact.rs"]
#[allow(dead_code)]
pub mod native_redact;

/// The built plugins; panics with the fix when they are missing.
pub fn dist_dir() -> PathBuf {
    let dir = std::env::var_os(WASYNC_TEST_PLUGINS_DIR)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist"));
    assert!(
        dir.join("redact-pii.wasm").is_file(),
        "built plugins not found in {} (set {WASYNC_TEST_PLUGINS_DIR} or run scripts/build-plugins.sh)",
        dir.display()
    );
    dir
}

/// One engine for the whole test process, as in production, with a compile
/// cache shared by test runs (debug-built cranelift is slow, and each test
/// loads its plugins afresh).
///
/// It is the process-wide engine hosts started by `TestHost` use too, as
/// long as this runs first (the plugin e2e tests call it before spawning).
pub fn runtime() -> Arc<PluginRuntime> {
    PluginRuntime::global(RuntimeOptions {
        cache_dir: Some(std::env::temp_dir().join("wasync-test-plugin-cache")),
        ..RuntimeOptions::default()
    })
    .expect("plugin runtime")
}

/// Loads built plugin `name` once in this process, before a test needs it,
/// so that its compiled code is in the compile cache ([`runtime`]) when tests
/// that start at the same time load it. Worth it for a large component: the
/// JavaScript plugin embeds SpiderMonkey, which a debug build's Cranelift
/// takes minutes to compile; without this, every test loading it at once
/// would compile it on its own.
pub fn compile_once(name: &str) {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if !done.iter().any(|d| d == name) {
        drop(PluginDir::new().with(name).manager());
        done.push(name.to_owned());
    }
}

/// A temporary plugin directory holding copies of built plugins.
pub struct PluginDir {
    pub dir: tempfile::TempDir,
}

impl Default for PluginDir {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginDir {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies a built plugin as is.
    pub fn with(self, name: &str) -> Self {
        self.with_edited(name, |m| m)
    }

    /// Copies a built plugin, editing its manifest text on the way.
    pub fn with_edited(self, name: &str, edit: impl FnOnce(String) -> String) -> Self {
        let (manifest, wasm) = built(name);
        std::fs::write(self.path().join(format!("{name}.wasm")), wasm).expect("copy wasm");
        std::fs::write(self.path().join(format!("{name}.toml")), edit(manifest))
            .expect("write manifest");
        self
    }

    /// A manager over this directory with the shared engine.
    pub fn manager(&self) -> PluginManager {
        self.manager_with(ManagerOptions::default())
    }

    pub fn manager_with(&self, opts: ManagerOptions) -> PluginManager {
        PluginManager::open(runtime(), self.path(), opts).expect("plugins load")
    }
}

/// A built plugin's manifest text and component bytes.
pub fn built(name: &str) -> (String, Vec<u8>) {
    let dist = dist_dir();
    let manifest = std::fs::read_to_string(dist.join(format!("{name}.toml")))
        .unwrap_or_else(|e| panic!("{name}.toml in {}: {e}", dist.display()));
    let wasm = std::fs::read(dist.join(format!("{name}.wasm")))
        .unwrap_or_else(|e| panic!("{name}.wasm in {}: {e}", dist.display()));
    (manifest, wasm)
}

/// A text message for tests.
pub fn message(chat: &str, n: usize, body: &str) -> Message {
    Message {
        id: format!("{chat}-m{n}"),
        chat_id: chat.to_owned(),
        from: "4915100000001@c.us".into(),
        to: "4915100000002@c.us".into(),
        author: None,
        body: Some(body.to_owned()),
        kind: "chat".into(),
        timestamp: 1_700_000_000_000 + n as i64,
        from_me: n.is_multiple_of(2),
        has_media: false,
        ack: 2,
        quoted_id: None,
        tags: Vec::new(),
        attributes: BTreeMap::new(),
        changes: Default::default(),
    }
}

/// A private chat for tests.
pub fn chat(id: &str, name: &str) -> Chat {
    Chat {
        id: id.to_owned(),
        name: Some(name.to_owned()),
        is_group: false,
        unread_count: 0,
        archived: false,
        pinned: false,
        last_message_at: Some(1_700_000_000_000),
    }
}

pub fn context(sync_id: &str) -> SyncContext {
    SyncContext {
        session_id: "plugin-test".into(),
        sync_id: sync_id.into(),
        trigger: "manual".into(),
    }
}

/// What [`bench_redaction`] measured.
#[derive(Debug, Clone)]
pub struct RedactionBench {
    pub messages: usize,
    pub batch: usize,
    pub pooling: bool,
    pub offload: Offload,
    /// Mean time to create a store and instantiate the plugin from its
    /// pre-instance (one per chat).
    pub instantiate: Duration,
    /// Per message through the plugin (batch per chat, instance per chat).
    pub plugin_per_message: Duration,
    /// Per message through the same redaction code compiled natively.
    pub native_per_message: Duration,
}

impl RedactionBench {
    /// The sandbox's added cost per message.
    pub fn added_per_message(&self) -> Duration {
        self.plugin_per_message
            .saturating_sub(self.native_per_message)
    }
}

impl std::fmt::Display for RedactionBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "redact-pii: {} messages in batches of {} (pooling {}, {:?}): plugin {:.3} µs/msg, native {:.3} µs/msg, added {:.3} µs/msg; instantiate {:.1} µs/chat",
            self.messages,
            self.batch,
            self.pooling,
            self.offload,
            self.plugin_per_message.as_secs_f64() * 1e6,
            self.native_per_message.as_secs_f64() * 1e6,
            self.added_per_message().as_secs_f64() * 1e6,
            self.instantiate.as_secs_f64() * 1e6,
        )
    }
}

/// Realistic bodies: most clean, some with a phone number or an address.
/// `bodies` as chats of `batch` messages each (`chat0`, `chat1`, ...).
fn bench_chats(bodies: &[String], batch: usize) -> Vec<Vec<Message>> {
    bodies
        .chunks(batch)
        .enumerate()
        .map(|(c, chunk)| {
            chunk
                .iter()
                .enumerate()
                .map(|(n, b)| message(&format!("chat{c}"), n, b))
                .collect()
        })
        .collect()
}

/// Runs the first chats once, untimed: the first instantiations touch the
/// pool and the code pages.
async fn warm_up(
    chain: &dyn wasync::plugins::PluginChain,
    ctx: &SyncContext,
    chats: &[Vec<Message>],
) {
    for msgs in chats.iter().take(3) {
        let mut scope = chain.chat_scope(ctx, &chat(&msgs[0].chat_id, "warm")).await;
        let _ = scope.transform(msgs.clone()).await;
    }
}

/// A host (embedded store, fast tuning) loading the plugins of `dir`, on
/// the process's engine with the test compile cache.
pub async fn host_with(dir: &PluginDir) -> crate::TestHost {
    let _ = runtime();
    crate::TestHost::spawn_with(
        crate::HostOptions {
            tuning: crate::fast_tuning(),
            ..Default::default()
        }
        .var(
            wasync::config::WASYNC_PLUGINS_DIR,
            dir.path().display().to_string(),
        ),
    )
    .await
}

pub fn bench_bodies(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 5 {
            0 => format!("call me at +49 151 {:08} tomorrow", 10_000_000 + i),
            1 => format!("mail user{i}@example.com the invoice please"),
            _ => format!("message {i}: see you at the meeting, bring the slides and the notes"),
        })
        .collect()
}

/// Per-message cost of the redaction plugin (one instance and one batch
/// per chat of `batch` messages) beside the same redaction run natively,
/// same messages, same process. Call from a multi-threaded runtime.
pub async fn bench_redaction(messages: usize, batch: usize, offload: Offload) -> RedactionBench {
    let dir = PluginDir::new().with("redact-pii");
    let mgr = dir.manager_with(ManagerOptions {
        offload,
        ..ManagerOptions::default()
    });
    let bodies = bench_bodies(messages);
    let batch = batch.max(1);
    let chats = bench_chats(&bodies, batch);
    let ctx = context("bench");

    let chain = mgr.chain();
    warm_up(&*chain, &ctx, &chats).await;

    let before = mgr.counters();
    let inst_before = before
        .first()
        .map_or((0, 0.0), |c| (c.instantiations, c.instantiate_seconds));
    let inputs: Vec<Vec<Message>> = chats.clone();
    let started = Instant::now();
    let mut stored = 0usize;
    for msgs in inputs {
        let c = chat(&msgs[0].chat_id, "bench");
        let mut scope = chain.chat_scope(&ctx, &c).await;
        let out = scope.transform(msgs).await;
        stored += out.keep.len();
    }
    let plugin_total = started.elapsed();
    assert_eq!(stored, messages, "the plugin kept every message");
    let after = mgr.counters();
    let (n_inst, inst_secs) = after.first().map_or((0, 0.0), |c| {
        (
            c.instantiations - inst_before.0,
            c.instantiate_seconds - inst_before.1,
        )
    });

    let opts = native_redact::Options::default();
    let inputs: Vec<Vec<Message>> = chats.clone();
    let started = Instant::now();
    let mut changed = 0usize;
    for msgs in inputs {
        let out: Vec<Message> = msgs
            .into_iter()
            .map(|mut m| {
                if let Some((b, _)) = m
                    .body
                    .as_deref()
                    .and_then(|b| native_redact::redact(b, &opts))
                {
                    m.body = Some(b);
                    m.tags.push("pii-redacted".into());
                    changed += 1;
                }
                m
            })
            .collect();
        std::hint::black_box(out);
    }
    let native_total = started.elapsed();
    std::hint::black_box(changed);

    RedactionBench {
        messages,
        batch,
        pooling: mgr.runtime().pooling(),
        offload,
        instantiate: Duration::from_secs_f64(inst_secs / n_inst.max(1) as f64),
        plugin_per_message: plugin_total / messages.max(1) as u32,
        native_per_message: native_total / messages.max(1) as u32,
    }
}

/// One plugin's cost in [`bench_abi`].
#[derive(Debug, Clone)]
pub struct PluginCost {
    pub plugin: String,
    /// Per message through it (one instance and one batch per chat), the
    /// best of the rounds.
    pub per_message: Duration,
    /// Mean instantiation per chat in that best round.
    pub instantiate: Duration,
}

/// What [`bench_abi`] measured.
#[derive(Debug, Clone)]
pub struct AbiBench {
    pub messages: usize,
    pub batch: usize,
    pub rounds: usize,
    /// The redaction compiled natively, same messages, best round.
    pub native_per_message: Duration,
    pub plugins: Vec<PluginCost>,
}

impl AbiBench {
    /// The cost of plugin `name`.
    pub fn cost(&self, name: &str) -> &PluginCost {
        self.plugins
            .iter()
            .find(|p| p.plugin == name)
            .unwrap_or_else(|| panic!("{name} was not measured"))
    }
}

impl std::fmt::Display for AbiBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} messages in batches of {}, best of {} rounds: native {:.3} µs/msg",
            self.messages,
            self.batch,
            self.rounds,
            self.native_per_message.as_secs_f64() * 1e6
        )?;
        for p in &self.plugins {
            write!(
                f,
                "; {} {:.3} µs/msg (instantiate {:.1} µs/chat)",
                p.plugin,
                p.per_message.as_secs_f64() * 1e6,
                p.instantiate.as_secs_f64() * 1e6
            )?;
        }
        Ok(())
    }
}

/// The redaction natively over `chats`: the baseline of the plugin rows.
fn native_redaction(chats: &[Vec<Message>]) -> Duration {
    let opts = native_redact::Options::default();
    let started = Instant::now();
    let mut changed = 0usize;
    for msgs in chats.iter().cloned() {
        let out: Vec<Message> = msgs
            .into_iter()
            .map(|mut m| {
                if let Some((b, _)) = m
                    .body
                    .as_deref()
                    .and_then(|b| native_redact::redact(b, &opts))
                {
                    m.body = Some(b);
                    m.tags.push("pii-redacted".into());
                    changed += 1;
                }
                m
            })
            .collect();
        std::hint::black_box(out);
    }
    std::hint::black_box(changed);
    started.elapsed()
}

/// Per-message cost of each of `plugins` (built plugins, one at a time, one
/// instance and one batch per chat of `batch` messages, as a sync runs
/// them) beside the redaction compiled natively, on the same messages
/// ([`bench_bodies`]). The measures are interleaved over `rounds` rounds and
/// the best round of each is kept, so a burst of load on the shared
/// machine does not land on one contract only. Call from a multi-threaded
/// runtime.
pub async fn bench_abi(
    messages: usize,
    batch: usize,
    rounds: usize,
    offload: Offload,
    plugins: &[&str],
) -> AbiBench {
    let bodies = bench_bodies(messages);
    let batch = batch.max(1);
    let chats = bench_chats(&bodies, batch);
    let ctx = context("bench");
    let dirs: Vec<(String, PluginDir, PluginManager)> = plugins
        .iter()
        .map(|name| {
            let dir = PluginDir::new().with(name);
            let mgr = dir.manager_with(ManagerOptions {
                offload,
                ..ManagerOptions::default()
            });
            (name.to_string(), dir, mgr)
        })
        .collect();
    let mut best: Vec<Option<PluginCost>> = vec![None; dirs.len()];
    let mut native = Duration::MAX;
    let per = |d: Duration| d / messages.max(1) as u32;
    for _ in 0..rounds.max(1) {
        native = native.min(per(native_redaction(&chats)));
        for ((name, _, mgr), best) in dirs.iter().zip(&mut best) {
            let chain = mgr.chain();
            warm_up(&*chain, &ctx, &chats).await;
            let before = counters_of(mgr, name);
            let started = Instant::now();
            let mut stored = 0usize;
            for msgs in chats.iter().cloned() {
                let mut scope = chain
                    .chat_scope(&ctx, &chat(&msgs[0].chat_id, "bench"))
                    .await;
                stored += scope.transform(msgs).await.keep.len();
            }
            let took = per(started.elapsed());
            let after = counters_of(mgr, name);
            assert_eq!(stored, messages, "{name} kept every message");
            assert_eq!(after.failures.total(), 0, "{name} failed: {after:?}");
            let n = (after.instantiations - before.instantiations).max(1);
            let inst = Duration::from_secs_f64(
                (after.instantiate_seconds - before.instantiate_seconds) / n as f64,
            );
            if best.as_ref().is_none_or(|b| took < b.per_message) {
                *best = Some(PluginCost {
                    plugin: name.clone(),
                    per_message: took,
                    instantiate: inst,
                });
            }
        }
    }
    AbiBench {
        messages,
        batch,
        rounds: rounds.max(1),
        native_per_message: native,
        plugins: best.into_iter().map(|b| b.expect("measured")).collect(),
    }
}

fn counters_of(mgr: &PluginManager, name: &str) -> wasync::plugins::wasm::PluginCounters {
    mgr.counters()
        .into_iter()
        .find(|c| c.plugin == name)
        .unwrap_or_else(|| panic!("no counters for {name}"))
}

/// The three real plugins, configured so that every chat and message still
/// goes through (no skips, no caps): a throughput comparison with a
/// plugin-free sync then stores the same messages.
pub fn bench_chain_dir() -> PluginDir {
    PluginDir::new()
        .with_edited("chat-filter", |m| {
            m.replace("skip-archived = \"true\"", "skip-archived = \"false\"")
                .replace(
                    "skip-names = [\"*newsletter*\", \"spam *\"]",
                    "skip-names = []",
                )
                .replace("max-messages = \"200\"\n", "")
        })
        .with("keyword-tagger")
        .with("redact-pii")
}

/// One simulator sync of `chats × per_chat` messages through a real host
/// (embedded store), with the [`bench_chain_dir`] plugins or none; returns
/// (messages stored, sync milliseconds).
pub async fn bench_chain_sync(chats: u32, per_chat: u32, with_plugins: bool) -> (u64, u64) {
    let plugins = with_plugins.then(bench_chain_dir);
    let mut opts = crate::HostOptions::default();
    if let Some(p) = &plugins {
        let _ = runtime();
        opts = opts.var(
            wasync::config::WASYNC_PLUGINS_DIR,
            p.path().display().to_string(),
        );
    }
    let run = crate::bench_sync(opts, chats, per_chat).await;
    let messages = run["totalMessagesSynced"].as_u64().unwrap_or(0);
    (messages, crate::run_ms(&run))
}

/// What [`bench_plugin`] measured for one plugin.
#[derive(Debug, Clone)]
pub struct PluginBench {
    pub plugin: String,
    pub size_bytes: usize,
    /// Loading it (compiling) with an empty compile cache; `None` when not
    /// measured.
    pub compile_cold: Option<Duration>,
    /// Loading it again from the compile cache; `None` when not measured.
    pub compile_cached: Option<Duration>,
    pub messages: usize,
    pub batch: usize,
    /// Mean time to instantiate it for a chat (from its pre-instance).
    pub instantiate: Duration,
    /// Per message through it (one instance and one batch per chat).
    pub per_message: Duration,
    /// Messages it replaced.
    pub replaced: u64,
}

impl std::fmt::Display for PluginBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Option<Duration>| {
            d.map_or("not measured".to_owned(), |d| {
                format!("{:.0} ms", d.as_secs_f64() * 1e3)
            })
        };
        write!(
            f,
            "{}: {} bytes; compile {} cold, {} cached; {} messages in batches of {}: {:.2} µs/msg, instantiate {:.1} µs/chat, {} replaced",
            self.plugin,
            self.size_bytes,
            ms(self.compile_cold),
            ms(self.compile_cached),
            self.messages,
            self.batch,
            self.per_message.as_secs_f64() * 1e6,
            self.instantiate.as_secs_f64() * 1e6,
            self.replaced,
        )
    }
}

/// Chat-like bodies, one in five with a link (for `link-tagger`) and some
/// with `keyword-tagger`'s keywords.
pub fn bench_link_bodies(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 5 {
            0 => format!("look at https://news.example.com/story/{i} before the meeting"),
            1 => format!("message {i}: the invoice is attached, please check it today"),
            _ => format!("message {i}: see you at lunch, bring the slides and the notes"),
        })
        .collect()
}

/// Loads `name` as the host does and times it: with `cold`, on a fresh
/// engine with an empty compile cache and then again from that cache
/// (default options otherwise: pooling, 256 slots); then runs `bodies`
/// through it in chats of `batch` messages (one instance and one call per
/// chat, as a sync does) on the process's engine. Call from a multi-threaded
/// runtime.
pub async fn bench_plugin(name: &str, bodies: &[String], batch: usize, cold: bool) -> PluginBench {
    let dir = PluginDir::new().with(name);
    let size_bytes = built(name).1.len();
    let (compile_cold, compile_cached) = if cold {
        let cache = tempfile::tempdir().expect("cache dir");
        let rt = PluginRuntime::new(RuntimeOptions {
            cache_dir: Some(cache.path().to_owned()),
            ..RuntimeOptions::default()
        })
        .expect("runtime");
        let time_open = || {
            let started = Instant::now();
            drop(
                PluginManager::open(rt.clone(), dir.path(), ManagerOptions::default())
                    .expect("plugins load"),
            );
            started.elapsed()
        };
        let cold = time_open();
        (Some(cold), Some(time_open()))
    } else {
        (None, None)
    };

    let mgr = dir.manager();
    let batch = batch.max(1);
    let chats = bench_chats(bodies, batch);
    let ctx = context("bench");
    let chain = mgr.chain();
    warm_up(&*chain, &ctx, &chats).await;
    let before = mgr.counters().first().cloned().expect("counters");
    let started = Instant::now();
    let mut stored = 0;
    for msgs in chats {
        let mut scope = chain
            .chat_scope(&ctx, &chat(&msgs[0].chat_id, "bench"))
            .await;
        let out = scope.transform(msgs).await;
        stored += out.keep.len();
    }
    let total = started.elapsed();
    let after = mgr.counters().first().cloned().expect("counters");
    assert_eq!(stored, bodies.len(), "{name} kept every message");
    assert_eq!(after.failures.total(), 0, "{name} failed: {after:?}");
    let instantiations = (after.instantiations - before.instantiations).max(1);
    PluginBench {
        plugin: name.to_owned(),
        size_bytes,
        compile_cold,
        compile_cached,
        messages: bodies.len(),
        batch,
        instantiate: Duration::from_secs_f64(
            (after.instantiate_seconds - before.instantiate_seconds) / instantiations as f64,
        ),
        per_message: total / bodies.len().max(1) as u32,
        replaced: after.replaced - before.replaced,
    }
}

/// One chat's batch of `count` messages with `body_bytes`-long bodies (each
/// starting with a link) through `name`, deadline and batch limits lifted:
/// how long the worst batch its manifest allows takes. Returns the call's
/// time (instantiation excluded) and how many messages it replaced.
pub async fn time_one_batch(name: &str, count: usize, body_bytes: usize) -> (Duration, u64) {
    let lifted = ["deadline_ms", "max_batch_bytes", "max_batch_messages"];
    let dir = PluginDir::new().with_edited(name, |m| {
        let kept: Vec<&str> = m
            .lines()
            .filter(|l| !lifted.iter().any(|k| l.starts_with(k)))
            .collect();
        let limits = "[limits]\ndeadline_ms = 10000\nmax_batch_bytes = 16777216\nmax_batch_messages = 10000\n";
        let kept = kept.join("\n");
        match kept.contains("[limits]\n") {
            true => kept.replacen("[limits]\n", limits, 1),
            false => format!("{kept}\n{limits}"),
        }
    });
    let mgr = dir.manager();
    let body = format!(
        "https://example.com/ {}",
        "x".repeat(body_bytes.saturating_sub(21))
    );
    let msgs: Vec<Message> = (0..count).map(|n| message("c", n, &body)).collect();
    let chain = mgr.chain();
    let mut scope = chain.chat_scope(&context("bench"), &chat("c", "c")).await;
    // Instantiate first (an empty batch is not sent): one message.
    let _ = scope.transform(vec![message("c", count, "warm")]).await;
    let before = mgr.counters().first().cloned().expect("counters");
    let out = scope.transform(msgs).await;
    let after = mgr.counters().first().cloned().expect("counters");
    assert_eq!(after.failures.total(), 0, "{name} failed: {after:?}");
    assert_eq!(out.keep.len(), count);
    (
        Duration::from_secs_f64(after.call_seconds - before.call_seconds),
        after.replaced - before.replaced,
    )
}
