//! `just bench`: wasync's benchmarks, each beside a baseline measured in the
//! same run (these machines are shared and noisy, so only ratios and
//! same-run comparisons mean much). Results go to `BENCHMARKS.md`.
//!
//! Every measure that needs a fresh process (peak memory) re-runs this
//! binary in a child mode, so one measure's heap never inflates another's.
//!
//! `--quick` runs tiny sizes: CI uses it to keep the code working; its
//! figures are not kept.

use std::time::Instant;

mod changes;
mod cluster;
mod fanout;
mod soak;
mod startup;

use serde_json::{Value, json};

/// The allocator the `wasync` binary ships with, so the rows that measure
/// the host inside this process (memory above all) measure what runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    quick: bool,
    out: String,
    /// Measures to run (`--only P2,P3`); empty runs them all.
    only: Vec<String>,
    child: Option<Vec<String>>,
}

impl Args {
    fn wants(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o.eq_ignore_ascii_case(id))
    }
}

fn parse_args() -> Args {
    let mut args = Args {
        quick: false,
        out: "BENCHMARKS.md".into(),
        only: Vec::new(),
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--out" => args.out = it.next().expect("--out FILE"),
            "--only" => {
                args.only = it
                    .next()
                    .expect("--only P2,P3")
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .collect()
            }
            "--child" => {
                args.child = Some(it.collect());
                break;
            }
            other => {
                eprintln!(
                    "bench: unknown argument {other:?}\nusage: bench [--quick] [--only P1,P2,...] [--out FILE]"
                );
                std::process::exit(2);
            }
        }
    }
    args
}

/// Peak resident set size of this process, in KiB (Linux `VmHWM`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs one simulator sync of `chats × per_chat` messages through a real
/// host (embedded store, no plugins, no clients) and reports it.
async fn sync_embedded(chats: u32, per_chat: u32) -> Value {
    // The store's page cache can be set for a trial run of the child
    // (`WASYNC_STORE_CACHE_MIB=2 bench --child sync-embedded …`).
    let mut opts = wasync_tests::HostOptions::default();
    let cache = wasync::config::WASYNC_STORE_CACHE_MIB;
    if let Ok(mib) = std::env::var(cache) {
        opts.env.insert(cache.into(), mib);
    }
    let run = wasync_tests::bench_sync(opts, chats, per_chat).await;
    let ms = wasync_tests::run_ms(&run);
    let messages = run["totalMessagesSynced"].as_u64().unwrap();
    assert_eq!(messages, chats as u64 * per_chat as u64);
    json!({
        "messages": messages,
        "ms": ms,
        "msgsPerSec": messages as f64 * 1000.0 / ms as f64,
        "peakRssKiB": peak_rss_kib(),
    })
}

/// Runs a child measure in a fresh process and returns its JSON line.
fn child(args: &[&str]) -> Value {
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .arg("--child")
        .args(args)
        .output()
        .expect("child runs");
    assert!(
        out.status.success(),
        "child {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("null")).expect("child JSON")
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

struct Row {
    id: &'static str,
    measure: String,
    baseline: String,
    result: String,
    target: &'static str,
    met: Option<bool>,
}

fn main() {
    // As the `wasync` binary does before it serves.
    if let Err(e) = wasync::app::small_pages() {
        eprintln!("bench: transparent huge pages stay on (prctl PR_SET_THP_DISABLE failed: {e})");
    }
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Some(child_args) = args.child {
        let v = match child_args.first().map(String::as_str) {
            Some("sync-embedded") => {
                let chats: u32 = child_args[1].parse().expect("chats");
                let per: u32 = child_args[2].parse().expect("per chat");
                rt.block_on(sync_embedded(chats, per))
            }
            // One relay run on its own: `bench --child relay-rabbitmq N BATCH WINDOW`.
            Some("relay-rabbitmq") => {
                let n: usize = child_args[1].parse().expect("events");
                let batch: u32 = child_args[2].parse().expect("batch");
                let window: usize = child_args[3].parse().expect("window");
                let r = rt.block_on(wasync_tests::amqp::bench_outbox_relay(n, batch, window));
                eprintln!("{r}");
                json!({"events": r.events, "eventsPerSec": r.events_per_sec(), "drainMs": r.drain.as_millis() as u64})
            }
            // The redaction measure alone, for profiling:
            // `bench --child redaction MESSAGES BATCH inline|pool`.
            Some("redaction") => {
                let n: usize = child_args[1].parse().expect("messages");
                let batch: usize = child_args[2].parse().expect("batch");
                let offload = match child_args.get(3).map(String::as_str) {
                    Some("inline") => wasync::plugins::wasm::Offload::Inline,
                    _ => wasync::plugins::wasm::Offload::BlockingPool,
                };
                let r = rt.block_on(wasync_tests::plugins::bench_redaction(n, batch, offload));
                eprintln!("{r}");
                json!({"pluginUsPerMsg": r.plugin_per_message.as_secs_f64() * 1e6, "nativeUsPerMsg": r.native_per_message.as_secs_f64() * 1e6})
            }
            // P3's chain sync alone, for profiling:
            // `bench --child chain-sync CHATS PER_CHAT plugins|none`.
            Some("chain-sync") => {
                let chats: u32 = child_args[1].parse().expect("chats");
                let per: u32 = child_args[2].parse().expect("per chat");
                let with = child_args.get(3).map(String::as_str) == Some("plugins");
                let (n, ms) =
                    rt.block_on(wasync_tests::plugins::bench_chain_sync(chats, per, with));
                json!({"messages": n, "ms": ms, "msgsPerSec": n as f64 * 1000.0 / ms as f64})
            }
            // The MongoDB row at another size: `bench --child mongo CHATS PER_CHAT`.
            Some("mongo") => {
                let chats: u32 = child_args[1].parse().expect("chats");
                let per: u32 = child_args[2].parse().expect("per chat");
                let rows = rt.block_on(mongo_row_sized(chats, per));
                json!(rows.iter().map(|row| json!({"measure": row.measure, "baseline": row.baseline, "result": row.result})).collect::<Vec<_>>())
            }
            // P4's clients: `bench --child fanout-clients WS_URL SESSION N READ_BUFFER`.
            Some("fanout-clients") => {
                let n: usize = child_args[3].parse().expect("clients");
                let read_buffer: usize = child_args[4].parse().expect("read buffer");
                rt.block_on(fanout::clients(
                    &child_args[1],
                    &child_args[2],
                    n,
                    read_buffer,
                ))
            }
            // One batch at the size a plugin's limits allow, limits lifted:
            // `bench --child batch PLUGIN MESSAGES BODY_BYTES`.
            Some("batch") => {
                let count: usize = child_args[2].parse().expect("messages");
                let bytes: usize = child_args[3].parse().expect("body bytes");
                let (took, replaced) = rt.block_on(wasync_tests::plugins::time_one_batch(
                    &child_args[1],
                    count,
                    bytes,
                ));
                eprintln!(
                    "{}: {count} × {bytes} bytes in {took:?}, {replaced} replaced",
                    child_args[1]
                );
                json!({"ms": took.as_secs_f64() * 1e3, "replaced": replaced})
            }
            // I1 on its own: `bench --child incremental embedded|mongo CHATS PER_CHAT`.
            Some("incremental") => {
                let chats: u32 = child_args[2].parse().expect("chats");
                let per: u32 = child_args[3].parse().expect("per chat");
                // A fresh server where one can be started (see `BenchServers`),
                // kept until the measure ends.
                let (opts, _server) = match child_args[1].as_str() {
                    "mongo" => match wasync_tests::mongo::BenchServers::from_env() {
                        Some(servers) => {
                            let (uri, server) = rt.block_on(servers.server());
                            let opts = wasync_tests::HostOptions::default()
                                .var(wasync::config::MONGODB_URI, uri)
                                .var(
                                    wasync::config::MONGODB_DB,
                                    wasync_tests::mongo::fresh_db_name("bench-i1"),
                                );
                            (opts, server)
                        }
                        None => {
                            println!("null");
                            return;
                        }
                    },
                    _ => (wasync_tests::HostOptions::default(), None),
                };
                rt.block_on(incremental_vs_full(opts, chats, per))
            }
            other => panic!("unknown child measure {other:?}"),
        };
        println!("{v}");
        return;
    }

    let started = Instant::now();
    let mut rows = Vec::new();

    if !args.quick && !args.only.is_empty() && args.wants("soak") {
        // The 10-minute soak: only when `--only soak` names it.
        rows.push(rt.block_on(soak::row()));
    }

    if args.wants("P2") {
        // P2: the 100k-message sync into the embedded store.
        let (chats, per) = if args.quick { (50, 20) } else { (1000, 100) };
        let p2 = child(&["sync-embedded", &chats.to_string(), &per.to_string()]);
        let rate = p2["msgsPerSec"].as_f64().unwrap();
        eprintln!("P2 sync into embedded: {p2}");
        rows.push(Row {
            id: "P2",
            measure: format!(
                "{} messages ({chats} chats × {per}) synced into the embedded store: {:.0} msgs/s ({} ms), peak RSS {:.1} MiB",
                p2["messages"],
                rate,
                p2["ms"],
                p2["peakRssKiB"].as_f64().unwrap() / 1024.0
            ),
            baseline: "target rate".into(),
            result: format!("{:.2}× the target", rate / 150_000.0),
            target: "≥ 150k msgs/s",
            met: Some(rate >= 150_000.0),
        });
    }

    if args.wants("P5") {
        // P5: peak memory, 1M messages against 10k messages (100 per chat).
        // A child's peak moves by a fifth between runs (the 10k baseline
        // 32-41 MiB on one machine), so the full bench runs three
        // interleaved pairs and compares the medians; every run is shown.
        let (small, big) = if args.quick { (10, 100) } else { (100, 10_000) };
        let pairs = if args.quick { 1 } else { 3 };
        let (mut s_rss, mut b_rss, mut rates) = (Vec::new(), Vec::new(), Vec::new());
        // And as many messages as the baseline in as many chats as the big
        // run (one each): what the chat count alone adds.
        let mut wide_rss = Vec::new();
        let wide_per = (small * 100 / big).max(1);
        let mut counts = (Value::Null, Value::Null);
        for _ in 0..pairs {
            let s = child(&["sync-embedded", &small.to_string(), "100"]);
            let b = child(&["sync-embedded", &big.to_string(), "100"]);
            let w = child(&["sync-embedded", &big.to_string(), &wide_per.to_string()]);
            eprintln!("P5 peak RSS: small {s} big {b} wide {w}");
            s_rss.push(s["peakRssKiB"].as_f64().unwrap() / 1024.0);
            b_rss.push(b["peakRssKiB"].as_f64().unwrap() / 1024.0);
            wide_rss.push(w["peakRssKiB"].as_f64().unwrap() / 1024.0);
            rates.push(b["msgsPerSec"].as_f64().unwrap());
            counts = (s["messages"].clone(), b["messages"].clone());
        }
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (s_med, b_med) = (cluster::median(&s_rss), cluster::median(&b_rss));
        let ratio = b_med / s_med;
        let b_max = b_rss.iter().copied().fold(0.0, f64::max);
        let runs = if pairs > 1 {
            format!(" (median of {pairs} runs, interleaved with the baseline's")
        } else {
            " (one run".to_owned()
        };
        rows.push(Row {
            id: "P5",
            measure: format!(
                "peak RSS syncing {} messages ({big} chats × 100): {b_med:.1} MiB{runs}: {} MiB; {:.0} msgs/s)",
                counts.1,
                list(&b_rss),
                cluster::median(&rates)
            ),
            baseline: format!(
                "peak RSS syncing {} messages ({small} chats × 100): {s_med:.1} MiB ({} MiB); \
                 the same messages in {big} chats × {wide_per}, as many chats as the measure: {:.1} MiB \
                 ({} MiB; the measure is {:.2}× that)",
                counts.0,
                list(&s_rss),
                cluster::median(&wide_rss),
                list(&wide_rss),
                b_med / cluster::median(&wide_rss)
            ),
            result: format!("{ratio:.2}×"),
            target: "≤ 1.5× and < 150 MB",
            met: Some(ratio <= 1.5 && b_max < 150.0),
        });
    }

    if args.wants("I1") {
        // I1: an incremental re-sync of an unchanged account against its
        // full sync, same host, same run (issue 16).
        let (chats, per) = if args.quick { (50, 20) } else { (1000, 100) };
        for store in ["embedded", "mongo"] {
            let r = child(&["incremental", store, &chats.to_string(), &per.to_string()]);
            eprintln!("I1 {store}: {r}");
            if r.is_null() {
                eprintln!(
                    "I1 mongo skipped: no MongoDB server (WASYNC_BENCH_MONGODB_URI, scripts/setup.sh's SecantusDB or WASYNC_TEST_MONGODB_URI)"
                );
                continue;
            }
            let (full, incr) = (
                r["fullMs"].as_f64().unwrap(),
                r["incrementalMs"].as_f64().unwrap(),
            );
            let ratio = incr / full;
            rows.push(Row {
                id: "I1",
                measure: format!(
                    "incremental re-sync of an unchanged {}-message account ({chats} chats × {per}), {store} store: {incr:.0} ms, {} messages written",
                    r["messages"],
                    r["incrementalWrites"].as_f64().unwrap_or(0.0) as u64
                ),
                baseline: format!("its full sync, same host: {full:.0} ms"),
                result: format!("{ratio:.3}×"),
                target: "≤ 0.05×",
                met: Some(ratio <= 0.05),
            });
        }
    }

    if args.wants("P1") {
        // M1: the 100k-message sync into MongoDB beside the raw driver's
        // insert_many of the same documents, same server, same run.
        rows.extend(rt.block_on(mongo_row(args.quick)));
    }

    if args.wants("U1") {
        // U1: applying 10k message changes in place beside inserting the
        // same messages, same store (embedded; MongoDB when configured).
        rows.push(rt.block_on(changes::row(args.quick)));
    }

    if args.wants("E1") {
        // E1: the outbox relay draining into RabbitMQ, publisher confirms on.
        rows.push(rt.block_on(relay_to_rabbitmq(args.quick)));
    }

    if args.wants("W1") {
        // W1: webhook deliveries to a local receiver, signing on, beside the
        // broker relay's rate (E1's measure) in the same run.
        rows.push(rt.block_on(webhooks_row(args.quick)));
    }

    if args.wants("P3") {
        // P3: plugin cost per message, batch per chat, on both contracts in
        // one run beside the same redaction compiled natively: redact-pii
        // on 0.2 and its 0.1 build (as deployed before 0.2), and a plugin
        // that keeps everything and reads nothing on each; then a sync with
        // the 3-plugin chain beside none.
        let (msgs, batch, rounds) = if args.quick {
            (400, 50, 1)
        } else {
            (20_000, 100, 3)
        };
        let r = rt.block_on(wasync_tests::plugins::bench_abi(
            msgs,
            batch,
            rounds,
            wasync::plugins::wasm::Offload::default(),
            &[
                "redact-pii",
                "redact-pii-v01",
                "fixture-abi2",
                "fixture-noop",
            ],
        ));
        eprintln!("P3 {r}");
        let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
        let native = us(r.native_per_message);
        let (v2, v1) = (r.cost("redact-pii"), r.cost("redact-pii-v01"));
        let added = us(v2.per_message) - native;
        rows.push(Row {
            id: "P3",
            measure: format!(
                "redact-pii on `wasync:plugin@0.2.0` on {} messages, batch of {} per chat (instance per chat, instantiate {:.1} µs), best of {} rounds: {:.2} µs/msg; its 0.1 build, same run: {:.2} µs/msg (+{:.2})",
                r.messages,
                r.batch,
                us(v2.instantiate),
                r.rounds,
                us(v2.per_message),
                us(v1.per_message),
                us(v1.per_message) - native,
            ),
            baseline: format!("the same redaction compiled natively: {native:.2} µs/msg"),
            result: format!("+{added:.2} µs/msg"),
            target: "≤ +0.5 µs/msg per plugin",
            met: Some(added <= 0.5),
        });
        let (n2, n1) = (r.cost("fixture-abi2"), r.cost("fixture-noop"));
        rows.push(Row {
            id: "P3",
            measure: format!(
                "a plugin that keeps every message and reads nothing, same messages: on 0.2 {:.2} µs/msg (instantiate {:.1} µs), on 0.1 {:.2} µs/msg (instantiate {:.1} µs)",
                us(n2.per_message),
                us(n2.instantiate),
                us(n1.per_message),
                us(n1.instantiate),
            ),
            baseline: "no plugin: 0 µs/msg".into(),
            result: format!(
                "+{:.2} µs/msg on 0.2, +{:.2} on 0.1",
                us(n2.per_message),
                us(n1.per_message)
            ),
            target: "–",
            met: None,
        });
        let (chats, per) = if args.quick { (10, 20) } else { (200, 100) };
        // Interleaved, best of the rounds for each: the sync's rate swings
        // with the machine's load.
        let (mut rate0, mut rate3, mut n3) = (0f64, 0f64, 0);
        for _ in 0..rounds {
            let (n0, ms0) = rt.block_on(wasync_tests::plugins::bench_chain_sync(chats, per, false));
            let (n, ms3) = rt.block_on(wasync_tests::plugins::bench_chain_sync(chats, per, true));
            rate0 = rate0.max(n0 as f64 * 1000.0 / ms0.max(1) as f64);
            rate3 = rate3.max(n as f64 * 1000.0 / ms3.max(1) as f64);
            n3 = n;
        }
        rows.push(Row {
            id: "P3",
            measure: format!("sync of {n3} messages with a 3-plugin chain on 0.2 (chat-filter, keyword-tagger, redact-pii), best of {rounds}: {rate3:.0} msgs/s"),
            baseline: format!("the same sync without plugins, interleaved, best of {rounds}: {rate0:.0} msgs/s"),
            result: format!("{:.2}×", rate3 / rate0.max(1.0)),
            target: "≥ 0.9×",
            met: Some(rate3 / rate0.max(1.0) >= 0.9),
        });
    }

    if args.wants("P8") {
        // P8: the JavaScript plugin (SpiderMonkey inside the component)
        // beside a Rust plugin of the same kind, same messages: size,
        // compile cold and cached (not in quick mode: a debug build takes
        // minutes), instantiation, cost per message.
        let (msgs, batch) = if args.quick {
            (200, 100)
        } else {
            (20_000, 100)
        };
        let bodies = wasync_tests::plugins::bench_link_bodies(msgs);
        let bench = |name| {
            rt.block_on(wasync_tests::plugins::bench_plugin(
                name,
                &bodies,
                batch,
                !args.quick,
            ))
        };
        let js = bench("link-tagger");
        let rust = bench("keyword-tagger");
        eprintln!("P8 {js}\nP8 {rust}");
        let s = |d: Option<std::time::Duration>| d.map_or(0.0, |d| d.as_secs_f64());
        let describe = |b: &wasync_tests::plugins::PluginBench| {
            format!(
                "{:.1} MiB component, compiled in {:.1} s cold / {:.0} ms from the cache; instantiate {:.0} µs per chat; {:.2} µs/msg",
                b.size_bytes as f64 / (1024.0 * 1024.0),
                s(b.compile_cold),
                s(b.compile_cached) * 1e3,
                b.instantiate.as_secs_f64() * 1e6,
                b.per_message.as_secs_f64() * 1e6,
            )
        };
        rows.push(Row {
            id: "P8",
            measure: format!(
                "link-tagger (JavaScript, ComponentizeJS) on {} messages, batch of {} per chat, {} with a link: {}",
                js.messages,
                js.batch,
                js.replaced,
                describe(&js)
            ),
            baseline: format!(
                "keyword-tagger (Rust), same messages ({} tagged): {}",
                rust.replaced,
                describe(&rust)
            ),
            result: format!(
                "{:.1}× per message, {:.0}× per instantiation",
                js.per_message.as_secs_f64() / rust.per_message.as_secs_f64().max(1e-9),
                js.instantiate.as_secs_f64() / rust.instantiate.as_secs_f64().max(1e-9)
            ),
            target: "–",
            met: None,
        });
    }

    if args.wants("P4") {
        // P4: 1,000 WebSocket clients on one syncing session; a stalled client.
        let f = rt.block_on(fanout::p4(args.quick));
        eprintln!(
            "P4 fan-out: {} clients, {} events, p50 {:.2} ms p99 {:.2} ms, coalesced {}, missed {}; CPU during the sync: server {:.0} ms, clients {:.0} ms; sync {:.0} ms alone, {:.0} ms with a stalled client",
            f.clients,
            f.events,
            f.p50_ms,
            f.p99_ms,
            f.coalesced,
            f.missed,
            f.server_cpu_ms,
            f.clients_cpu_ms,
            f.baseline_ms,
            f.stalled_ms
        );
        let stall_ratio = f.stalled_ms / f.baseline_ms.max(1.0);
        rows.push(Row {
            id: "P4",
            measure: format!(
                "{} WebSocket clients joined to one syncing session, {} progress events each: delivery latency p50 {:.2} ms, p99 {:.2} ms ({} of {} client-events coalesced into a newer progress frame, timed at that frame's read; {} never delivered); first sync of a session with one client that never reads: {:.0} ms (median of {}, interleaved)",
                f.clients,
                f.events,
                f.p50_ms,
                f.p99_ms,
                f.coalesced,
                f.clients * f.events,
                f.missed,
                f.stalled_ms,
                fanout::STALL_PAIRS
            ),
            baseline: format!(
                "latency from the moment the sync published each event (the hub's stamp) to the client's read; the same first sync of a session with no client: {:.0} ms (median of {})",
                f.baseline_ms,
                fanout::STALL_PAIRS
            ),
            result: format!("p99 {:.2} ms; stalled {:.2}×", f.p99_ms, stall_ratio),
            target: "p99 ≤ 20 ms; stalled ≤ 1.05×",
            met: Some(f.p99_ms <= 20.0 && stall_ratio <= 1.05 && f.missed == 0),
        });
    }

    if args.wants("P6") {
        // P6: REST latency while 200 sessions sync at once.
        let b = rt.block_on(fanout::p6(args.quick));
        eprintln!(
            "P6 busy REST: p50 {:.2} p99 {:.2} ms; idle p50 {:.2} p99 {:.2} ms",
            b.busy_p50, b.busy_p99, b.idle_p50, b.idle_p99
        );
        rows.push(Row {
            id: "P6",
            measure: format!(
                "{} sessions syncing at once: {} `GET .../chats` (8 in flight) p50 {:.2} ms, p99 {:.2} ms",
                b.sessions, b.requests, b.busy_p50, b.busy_p99
            ),
            baseline: format!(
                "the same requests on the idle host: p50 {:.2} ms, p99 {:.2} ms",
                b.idle_p50, b.idle_p99
            ),
            result: format!("p99 {:.2}× idle", b.busy_p99 / b.idle_p99.max(0.001)),
            target: "p99 ≤ 50 ms",
            met: Some(b.busy_p99 <= 50.0),
        });
    }

    if args.wants("P7") {
        // P7: exec to serving with five plugins, compile cache cold and warm.
        let s = rt.block_on(startup::p7(args.quick));
        eprintln!(
            "P7 start-up with {} plugins: cold {:.0} ms, warm {:.0} ms (median of {})",
            s.plugins, s.cold_ms, s.warm_ms, s.runs
        );
        rows.push(Row {
            id: "P7",
            measure: format!(
                "`wasync` exec to first `/readyz` 200 with {} plugins, compile cache warm: {:.0} ms (median of {})",
                s.plugins, s.warm_ms, s.runs
            ),
            baseline: format!("the same start with the cache cold: {:.0} ms", s.cold_ms),
            result: format!("{:.0} ms warm; {:.2}× cold", s.warm_ms, s.warm_ms / s.cold_ms.max(0.001)),
            target: "≤ 300 ms warm",
            met: Some(s.warm_ms <= 300.0),
        });
    }

    // C1-C3: a cluster of real host processes on a fresh MongoDB-wire
    // server per measure and RabbitMQ; the clients run in this process.
    let cluster_ids = ["C1", "C2", "C3"];
    let cluster_services = if cluster_ids.iter().any(|id| args.wants(id)) {
        let ready = rt.block_on(cluster::services());
        // The smoke run is a test: it must fail. A full run keeps the other rows.
        if let Err(why) = &ready {
            assert!(!args.quick, "cluster measures: {why}");
        }
        ready
    } else {
        Ok(())
    };

    if args.wants("C1") {
        // C1: takeover of a SIGKILLed host's sessions.
        let target = "≤ 30 s to hold every lease and complete every sync";
        rows.push(match &cluster_services {
            Err(why) => not_measured("C1", why, target),
            Ok(()) => {
                let t = rt.block_on(cluster::c1(args.quick));
                let (held, synced) = (&t.held_ms, &t.synced_ms);
                eprintln!(
                    "C1 takeover: leases ran out at {:?} ms, held at {held:?} ms, synced at {synced:?} ms after the kill; {} inexact, {} takeovers counted",
                    t.expired_ms, t.inexact, t.takeovers
                );
                let s = |ms: f64| ms / 1000.0;
                Row {
                    id: "C1",
                    measure: format!(
                        "{} hosts (separate processes, lease TTL {} ms{}, renewal TTL/3), {} simulator sessions mid-sync on one, which gets SIGKILL: a survivor holds the first of them after {:.1} s median, the survivors hold every lease after {:.1} s median, {:.1} s worst; every interrupted sync completed (same run, every message) after {:.1} s median, {:.1} s worst ({} of {}; {} run(s), polling `GET /cluster` and `/sync` every 50 ms from this process){}{}{}",
                        t.hosts,
                        t.ttl_ms,
                        if t.ttl_ms == 15_000 {
                            ", the production default"
                        } else {
                            ", short for the smoke run"
                        },
                        t.sessions,
                        s(cluster::median(&t.first_ms)),
                        s(cluster::median(held)),
                        s(cluster::worst(held)),
                        s(cluster::median(synced)),
                        s(cluster::worst(synced)),
                        t.sessions * t.runs - t.inexact,
                        t.sessions * t.runs,
                        t.runs,
                        if t.misstored > 0 {
                            format!("; {} sessions with a wrong stored message count", t.misstored)
                        } else {
                            String::new()
                        },
                        if t.takeovers as usize == t.sessions * t.runs {
                            String::new()
                        } else {
                            format!("; survivors counted {} takeovers", t.takeovers)
                        },
                        problems(&t.problems),
                    ),
                    baseline: format!(
                        "the lease TTL, {:.1} s; the victim's leases actually ran out {:.1} s median after the kill (its last renewal + TTL), so the survivors took {:.1} s median past that",
                        s(t.ttl_ms as f64),
                        s(cluster::median(&t.expired_ms)),
                        s(cluster::median(
                            &held
                                .iter()
                                .zip(&t.expired_ms)
                                .map(|(h, e)| h - e)
                                .collect::<Vec<_>>()
                        )),
                    ),
                    result: format!(
                        "worst {:.1} s held, {:.1} s synced ({:.2}× TTL)",
                        s(cluster::worst(held)),
                        s(cluster::worst(synced)),
                        cluster::worst(synced) / t.ttl_ms as f64
                    ),
                    target,
                    met: Some(
                        cluster::worst(synced) <= 30_000.0 && t.inexact == 0 && t.misstored == 0,
                    ),
                }
            }
        });
    }

    if args.wants("C2") {
        // C2: live events of a session on host A read by a client on host B.
        let target = "p99 of (cross − same) ≤ 5 ms, none lost";
        rows.push(match &cluster_services {
            Err(why) => not_measured("C2", why, target),
            Ok(()) => {
                let x = rt.block_on(cluster::c2(args.quick));
                eprintln!(
                    "C2 cross-host: {} events; read {} on A, {} on B; missing {} / {}; {} out of order; B−A p50 {:.2} p99 {:.2} max {:.2} ms; A gaps p50 {:.2} p99 {:.2} ms over {:.0} ms",
                    x.events, x.read_same, x.read_cross, x.missing_same, x.missing_cross, x.out_of_order, x.diff_p50, x.diff_p99, x.diff_max, x.gap_p50, x.gap_p99, x.span_ms
                );
                Row {
                    id: "C2",
                    measure: format!(
                        "one session syncing on host A ({} `sync_chats` events over {:.0} ms), a WebSocket client on A and one on host B (separate processes; events cross through RabbitMQ), both in this process and joined before the sync: per event, B's read − A's read p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; lost {} on B, {} on A{}{}",
                        x.events,
                        x.span_ms,
                        x.diff_p50,
                        x.diff_p99,
                        x.diff_max,
                        x.missing_cross,
                        x.missing_same,
                        if x.out_of_order > 0 {
                            format!(", {} out of order on B", x.out_of_order)
                        } else {
                            String::new()
                        },
                        problems(&x.problems),
                    ),
                    baseline: format!(
                        "the same events read on A (the owner): time between consecutive reads p50 {:.2} ms, p99 {:.2} ms",
                        x.gap_p50, x.gap_p99
                    ),
                    result: format!(
                        "+{:.2} ms p99; {} lost",
                        x.diff_p99,
                        x.missing_cross + x.missing_same
                    ),
                    target,
                    met: Some(x.diff_p99 <= 5.0 && x.missing_cross + x.missing_same == 0),
                }
            }
        });
    }

    if args.wants("C3") {
        // C3: sessions one host carries with REST reads still prompt.
        let target = "p99 ≤ 50 ms up to the default 100 sessions";
        rows.push(match &cluster_services {
            Err(why) => not_measured("C3", why, target),
            Ok(()) => {
                let c = rt.block_on(cluster::c3(args.quick));
                let steps: Vec<String> = c
                    .steps
                    .iter()
                    .map(|s| {
                        format!(
                            "{}: p99 {:.1} ms (p50 {:.1}, {:.0} live msgs/s{}{}{})",
                            s.sessions,
                            s.p99,
                            s.p50,
                            s.live_per_sec,
                            if s.errors > 0 {
                                format!(", {} errors", s.errors)
                            } else {
                                String::new()
                            },
                            if s.leases_lost > 0.0 {
                                format!(
                                    ", {} leases lost so far (renewal late: the host stopped those sessions)",
                                    s.leases_lost
                                )
                            } else {
                                String::new()
                            },
                            if s.settle_ms.is_none() {
                                ", not settled: stopped here"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect();
                let largest = c.largest_within(50.0);
                let met = c
                    .steps
                    .iter()
                    .filter(|s| s.sessions <= 100)
                    .all(|s| s.settle_ms.is_some() && s.errors == 0 && s.p99 <= 50.0);
                eprintln!("C3 sessions per host: {}", steps.join("; "));
                Row {
                    id: "C3",
                    measure: format!(
                        "one host (separate process, lease TTL 15 s, fresh MongoDB-wire server) with N sessions, each 5 chats × 20 messages synced, then a live message every 1 s; {} REST reads (`GET .../session/:id` and `.../chats`, 8 in flight, from this process) per step: {}{}",
                        c.requests,
                        steps.join("; "),
                        problems(&c.problems),
                    ),
                    baseline: format!(
                        "the same reads on the host with one idle session: p50 {:.1} ms, p99 {:.1} ms",
                        c.idle_p50, c.idle_p99
                    ),
                    result: match largest {
                        Some(n) => format!("{n} sessions with p99 ≤ 50 ms"),
                        None => "no step with p99 ≤ 50 ms".into(),
                    },
                    target,
                    met: Some(met),
                }
            }
        });
    }

    let mut md = String::new();
    md.push_str("# wasync benchmarks\n\n");
    md.push_str(&format!(
        "- date: {}\n- machine: {}\n- command: `just bench{}`\n- wall time: {:.0} s\n\n",
        date(),
        machine(),
        if args.quick { " --quick" } else { "" },
        started.elapsed().as_secs_f64()
    ));
    md.push_str("| # | measure | baseline (same run) | result | target | met |\n|---|---|---|---|---|---|\n");
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.id,
            r.measure,
            r.baseline,
            r.result,
            r.target,
            match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            }
        ));
    }
    // The hand-written analysis below the table (`## Notes` onwards) is
    // kept across runs.
    if let Some(notes) = std::fs::read_to_string(&args.out)
        .ok()
        .and_then(|old| old.find("\n## Notes").map(|i| old[i..].to_owned()))
    {
        md.push_str(&notes);
    }
    std::fs::write(&args.out, &md).expect("write results");
    println!("{md}");
    eprintln!("bench: results written to {}", args.out);
}

/// E1: events/s through the outbox relay into a fresh RabbitMQ queue with a
/// window of confirms in flight, against the same relay awaiting each
/// confirm before the next publish (window 1).
async fn relay_to_rabbitmq(quick: bool) -> Row {
    use wasync_tests::amqp::{bench_outbox_relay, broker_reachable};
    if let Err(why) = broker_reachable().await {
        // The smoke run is a test: it must fail. A full run keeps the other rows.
        assert!(!quick, "{why}; start it with `rabbitmq-server -detached`");
        return Row {
            id: "E1",
            measure: format!("not measured: {why}"),
            baseline: "–".into(),
            result: "–".into(),
            target: "–",
            met: None,
        };
    }
    let (n, n_base) = if quick { (300, 30) } else { (20_000, 500) };
    let base = bench_outbox_relay(n_base, 256, 1).await;
    let piped = bench_outbox_relay(n, 256, 256).await;
    eprintln!("E1 {base}");
    eprintln!("E1 {piped}");
    Row {
        id: "E1",
        measure: format!(
            "outbox relay -> RabbitMQ, confirms on, {n} persistent events (batch 256, window 256): {:.0} events/s",
            piped.events_per_sec()
        ),
        baseline: format!(
            "same relay awaiting each confirm (window 1), {n_base} events: {:.0} events/s",
            base.events_per_sec()
        ),
        result: format!("{:.1}×", piped.events_per_sec() / base.events_per_sec()),
        target: "–",
        met: None,
    }
}

/// W1: signed webhook deliveries per second to a receiver on loopback
/// (many sessions: lanes side by side; one session: its lane in order),
/// beside the outbox relay into RabbitMQ measured in the same run.
async fn webhooks_row(quick: bool) -> Row {
    use wasync_tests::amqp::{bench_outbox_relay, broker_reachable};
    use wasync_tests::receiver::bench_deliveries;
    let n = if quick { 200 } else { 5_000 };
    let spread = bench_deliveries(n, 64, 4).await;
    let lane = bench_deliveries(n / 5, 1, 4).await;
    eprintln!("W1 {spread}");
    eprintln!("W1 {lane}");
    let (baseline, ratio) = match broker_reachable().await {
        Ok(()) => {
            let relay = bench_outbox_relay(n, 256, 256).await;
            eprintln!("W1 {relay}");
            (
                format!(
                    "outbox relay -> RabbitMQ, confirms on, {n} events: {:.0} events/s",
                    relay.events_per_sec()
                ),
                format!("{:.2}×", spread.per_sec() / relay.events_per_sec()),
            )
        }
        Err(why) => {
            assert!(!quick, "{why}");
            (format!("not measured: {why}"), "–".into())
        }
    };
    Row {
        id: "W1",
        measure: format!(
            "webhook deliveries -> local receiver, HMAC-signed, each recorded durably: {n} over 64 sessions (concurrency 4): {:.0}/s; one session (in order): {:.0}/s",
            spread.per_sec(),
            lane.per_sec()
        ),
        baseline,
        result: ratio,
        target: "–",
        met: None,
    }
}

/// Problems around a measure, for the end of its row's text.
fn problems(p: &[String]) -> String {
    if p.is_empty() {
        String::new()
    } else {
        format!("; **{}**", p.join("; "))
    }
}

/// A row for a measure whose services are missing (full mode only; the
/// smoke run fails instead).
fn not_measured(id: &'static str, why: &str, target: &'static str) -> Row {
    Row {
        id,
        measure: format!("not measured: {why}"),
        baseline: "–".into(),
        result: "–".into(),
        target,
        met: None,
    }
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// I1: a host on `opts` syncs a simulated `chats × per_chat` account (its
/// first sync: full), then re-syncs the unchanged account incrementally
/// (`POST .../sync-chats {"mode": "incremental"}`); both timed by the runs'
/// own timestamps. The incremental run must write no message.
async fn incremental_vs_full(opts: wasync_tests::HostOptions, chats: u32, per_chat: u32) -> Value {
    let host = wasync_tests::TestHost::spawn_with(opts).await;
    let full = wasync_tests::bench_session(&host, chats, per_chat).await;
    assert_eq!(full["mode"], "full");
    let before = message_writes(&host).await;
    let (status, body) = host
        .post(
            "/whatsapp-web/session/bench/sync-chats",
            json!({"mode": "incremental", "limitPerChat": per_chat}),
        )
        .await;
    assert_eq!(status, 202, "incremental re-sync: {body}");
    let incr = loop {
        let r = wasync_tests::wait_run_completed(&host.http, &host.base, "bench").await;
        if r["syncId"] == body["syncId"] {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(incr["totalMessagesSynced"], 0);
    let written = message_writes(&host).await - before;
    host.stop().await;
    json!({
        "messages": full["totalMessagesSynced"],
        "fullMs": wasync_tests::run_ms(&full),
        "incrementalMs": wasync_tests::run_ms(&incr),
        "incrementalWrites": written,
    })
}

/// Messages sync commits wrote so far (every outcome).
async fn message_writes(host: &wasync_tests::TestHost) -> f64 {
    let mut n = 0.0;
    for outcome in ["inserted", "updated", "unchanged"] {
        let name = format!("wasync_sync_message_writes_total{{outcome=\"{outcome}\"}}");
        n += host.metric(&name).await.unwrap_or(0.0);
    }
    n
}

async fn mongo_row(quick: bool) -> Vec<Row> {
    let (chats, per) = if quick { (20, 20) } else { (1000, 100) };
    mongo_row_sized(chats, per).await
}

/// P1: the host's sync into MongoDB beside the fastest raw driver path for
/// the same documents and beside the seed's storage path, each on a fresh
/// private SecantusDB (`WASYNC_SECANTUSD`, else `.venv`), or all on
/// `WASYNC_BENCH_MONGODB_URI` when that is set (`BenchServers::from_env`).
async fn mongo_row_sized(chats: u32, per: u32) -> Vec<Row> {
    use wasync_tests::mongo::{BenchServers, bench_sync_paths};
    let Some(servers) = BenchServers::from_env() else {
        eprintln!(
            "P1 skipped: no MongoDB server (set WASYNC_BENCH_MONGODB_URI or run scripts/setup.sh)"
        );
        return vec![Row {
            id: "P1",
            measure: "sync into MongoDB: not run (no server; run scripts/setup.sh)".into(),
            baseline: "–".into(),
            result: "–".into(),
            target: "≤ 1.15× the fastest raw path",
            met: None,
        }];
    };
    // Batch shapes for the raw driver: the seed's per-chat size with
    // batches in flight at once, and larger single and paired batches.
    let shapes: &[(usize, usize)] = if chats * per <= 1000 {
        &[(100, 4), (400, 1)]
    } else {
        &[(100, 4), (1_000, 1), (5_000, 2)]
    };
    // Rounds of the host and every raw shape, interleaved; each path's
    // figure is its median (identical runs spread by ±8 % on SecantusDB).
    let rounds = if chats * per <= 1000 { 1 } else { 3 };
    let r = bench_sync_paths(&servers, chats, per, shapes, rounds, true).await;
    let ms = |d: std::time::Duration| format!("{:.2?} ({:.0} msgs/s)", d, r.rate(d));
    let runs = |p: &wasync_tests::mongo::PathTime| {
        let each: Vec<String> = p.runs.iter().map(|t| format!("{:.2?}", t)).collect();
        each.join(", ")
    };
    for p in r.raw.iter().chain(&r.seed).chain([&r.host]) {
        eprintln!("P1 {}: {} (runs: {})", p.what, ms(p.took), runs(p));
    }
    let raw = r.fastest_raw();
    let others: Vec<String> = r
        .raw
        .iter()
        .filter(|p| p.what != raw.what)
        .map(|p| format!("{} {:.0} msgs/s", p.what, r.rate(p.took)))
        .collect();
    let vs_raw = r.host.took.as_secs_f64() / raw.took.as_secs_f64();
    let host = format!(
        "{} messages ({chats} chats × {per}) synced through the host into MongoDB: {} (median of {} rounds: {})",
        r.messages,
        ms(r.host.took),
        r.host.runs.len(),
        runs(&r.host)
    );
    let mut rows = vec![Row {
        id: "P1",
        measure: host.clone(),
        baseline: format!(
            "fastest raw driver path for the same documents (the sync's {} chats and {} contacts in a command each, then its messages), same indexes, `w: majority, j: true`, fresh server per run, rounds interleaved with the host's: unordered insert_many, {}: {} (runs: {}; also tried, medians: {})",
            r.chats,
            r.contacts,
            raw.what,
            ms(raw.took),
            runs(raw),
            others.join(", ")
        ),
        result: format!("{vs_raw:.2}× the time"),
        target: "≤ 1.15× the fastest raw path",
        met: Some(vs_raw <= 1.15),
    }];
    if let [durable, default] = &r.seed[..] {
        let speedup = durable.took.as_secs_f64() / r.host.took.as_secs_f64();
        rows.push(Row {
            id: "P1",
            measure: host,
            baseline: format!(
                "the seed's storage path (Node driver, per chat one updateOne upsert + one insertMany), fresh server, one run each after the rounds: {} at `w: majority, j: true`; {} at the driver's default",
                ms(durable.took),
                ms(default.took)
            ),
            result: format!(
                "{speedup:.2}× the seed's rate at equal durability ({:.2}× its default)",
                default.took.as_secs_f64() / r.host.took.as_secs_f64()
            ),
            target: "≥ 2× the seed at equal durability",
            met: Some(speedup >= 2.0),
        });
    }
    rows
}
