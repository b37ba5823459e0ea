//! P4 (WebSocket fan-out) and P6 (REST under many concurrent syncs).
//!
//! Both run a real host in this process. P4's 1,000 WebSocket clients run
//! in a child process (`bench --child fanout-clients ...`), so the row
//! measures the server, not the load generator sharing its runtime: the
//! machine has two cores and the clients still use them, but as another
//! process, as a frontend's users would.
//!
//! P4's latency is measured from the moment the sync published each event
//! (the hub stamps its frames; an in-process subscriber of the same hub
//! collects the stamps) to the moment a client read it, both on the wall
//! clock (one machine, one clock): a client's latency for event `seq` is
//! its read time minus the event's publish time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;
use wasync::domain::ServerEvent;
use wasync_tests::{HostOptions, TestHost};

/// A host on the embedded store, with room for 1,000 clients' queues
/// without closing anyone.
async fn host() -> TestHost {
    TestHost::spawn_with(HostOptions::default().var(wasync::config::WASYNC_WS_QUEUE, "100000"))
        .await
}

fn seq_of(text: &str) -> Option<u64> {
    if !text.contains("\"sync_chats\"") {
        return None;
    }
    let i = text.find("\"seq\":")? + 6;
    let rest = &text[i..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn create(http: &reqwest::Client, base: &str, id: &str, body: Value) {
    let r = http
        .post(format!("{base}/whatsapp-web/session/{id}"))
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201, "create {id}");
}

/// Polls `GET url` until `done` holds for its JSON body; returns it.
async fn poll(http: &reqwest::Client, url: String, done: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v: Value = http
            .get(&url)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .unwrap_or(Value::Null);
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_ready(http: &reqwest::Client, base: &str, id: &str) {
    poll(http, format!("{base}/whatsapp-web/session/{id}"), |v| {
        v["status"] == "ready"
    })
    .await;
}

/// Starts a manual sync and waits for its run to complete; returns its
/// duration in ms as the run recorded it.
async fn sync_once(http: &reqwest::Client, base: &str, id: &str) -> f64 {
    let r = http
        .post(format!("{base}/whatsapp-web/session/{id}/sync-chats"))
        .json(&json!({}))
        .send()
        .await
        .expect("sync");
    assert_eq!(r.status(), 202);
    let sync_id = r.json::<Value>().await.expect("json")["syncId"].clone();
    let run = poll(
        http,
        format!("{base}/whatsapp-web/session/{id}/sync"),
        |run| run["syncId"] == sync_id && run["status"] == "completed",
    )
    .await;
    (run["finishedAt"].as_i64().unwrap() - run["startedAt"].as_i64().unwrap()) as f64
}

/// CPU time this process has used, user and system, all threads (ms; the
/// kernel counts in ticks of 10 ms).
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime
    // are the 14th and 15th of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11..13).map_or(0.0, |t| {
        t.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks * 10.0
}

/// Microseconds since the Unix epoch, on the wall clock.
fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Each client's read buffer (bytes). tungstenite zero-fills its whole read
/// buffer before every read, so its default (128 KiB) made the load
/// generator spend about half of its CPU in `memset` on these two cores, CPU
/// the server then did not have. A browser does no such thing; 16 KiB holds
/// a read's worth of frames here. `WASYNC_BENCH_P4_READ_BUFFER` overrides it
/// (131072: the old behaviour).
fn client_read_buffer() -> usize {
    std::env::var("WASYNC_BENCH_P4_READ_BUFFER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16 * 1024)
}

/// The child side of P4: `n` WebSocket clients join `session` at `ws_url`,
/// say `joined` on a line, read until `sync_complete` and print, as one
/// JSON line, each progress event's read times: `reads` (`{"seq": [µs,
/// ...]}`) for the frames read, and `covered` for the events a client never
/// read because the server replaced them with a newer progress frame
/// (coalescing), timed at the read of the frame that superseded them: that
/// is when the client held that state or a newer one.
pub async fn clients(ws_url: &str, session: &str, n: usize, read_buffer: usize) -> Value {
    let mut cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    cfg.read_buffer_size = read_buffer;
    let mut joined = Vec::new();
    for _ in 0..n {
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(ws_url, Some(cfg), false)
            .await
            .expect("ws");
        ws.send(Message::Text(
            json!({"event": "join-session", "data": {"sessionId": session}})
                .to_string()
                .into(),
        ))
        .await
        .expect("join");
        joined.push(ws);
    }
    let mut tasks = Vec::new();
    for mut ws in joined {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m {
                    let at = wall_us();
                    if t.contains("\"sync_complete\"") {
                        break;
                    }
                    if let Some(seq) = seq_of(t.as_str()) {
                        got.push((seq, at));
                    }
                }
            }
            got
        }));
    }
    println!("joined");
    let cpu_before = cpu_ms();
    let mut reads: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut covered: HashMap<u64, Vec<u64>> = HashMap::new();
    for t in tasks {
        // Progress frames arrive in order; a gap is events coalesced away.
        let mut next = 0;
        for (seq, at) in t.await.expect("client") {
            for skipped in next..seq {
                covered.entry(skipped).or_default().push(at);
            }
            reads.entry(seq).or_default().push(at);
            next = next.max(seq + 1);
        }
    }
    let cpu = cpu_ms() - cpu_before;
    json!({"reads": reads, "covered": covered, "cpuMs": cpu})
}

/// Syncs of each side in P4's stalled-client comparison. One sync is
/// ~0.2 s, and a single one moves by ±10 % with the machine (fsync waits,
/// the other core's load): three of each left the medians 1.07× and 1.14×
/// apart in two runs of the same build, a spread the 1.05× target cannot be
/// read through. Seven of each cost ~3 s more.
pub const STALL_PAIRS: usize = 7;

/// P4 results.
pub struct FanOut {
    pub clients: usize,
    pub events: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU used during the sync (and its delivery) by the server's process
    /// and by the clients' process.
    pub server_cpu_ms: f64,
    pub clients_cpu_ms: f64,
    /// Events a client never got, not even as a newer progress frame.
    pub missed: u64,
    /// Events a client got only as a newer progress frame (coalesced by
    /// the server); their latency counts to that frame's read.
    pub coalesced: u64,
    pub baseline_ms: f64,
    pub stalled_ms: f64,
}

pub async fn p4(quick: bool) -> FanOut {
    let (n_clients, chats) = if quick { (20, 20) } else { (1000, 200) };
    let host = host().await;
    let base = host.base.clone();
    let http = reqwest::Client::new();
    create(
        &http,
        &base,
        "fan",
        json!({"autoSync": false, "simulator": {"chats": chats, "messagesPerChat": 20, "fetchLatencyMs": 2, "qrEveryMs": 50, "scanAfterMs": 10}}),
    )
    .await;
    wait_ready(&http, &base, "fan").await;

    // The reference subscriber: publish times on the wall clock.
    let hub = host.app().hub();
    let reference = hub.connect().expect("a client slot");
    hub.join(&reference, "fan", || ServerEvent::Pong {})
        .expect("a room slot");
    let ref_task = tokio::spawn(async move {
        let mut at = HashMap::new();
        while let Some(f) = reference.next().await {
            if f.text.contains("\"sync_complete\"") {
                break;
            }
            if let Some(seq) = seq_of(&f.text) {
                let published = wall_us().saturating_sub(f.published.elapsed().as_micros() as u64);
                at.insert(seq, published);
            }
        }
        at
    });

    // The clients, in their own process: connected and joined before the
    // sync starts.
    let ws_url = format!("{}/ws", base.replacen("http", "ws", 1));
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("own path"))
        .args([
            "--child",
            "fanout-clients",
            &ws_url,
            "fan",
            &n_clients.to_string(),
            &client_read_buffer().to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the clients' process");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next_line().await.expect("read").unwrap_or_default();
    assert_eq!(first, "joined", "the clients' process did not join");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu_before = cpu_ms();
    sync_once(&http, &base, "fan").await;
    let at = ref_task.await.expect("reference");
    let server_cpu_ms = cpu_ms() - cpu_before;
    let mut result = String::new();
    while let Some(l) = lines.next_line().await.expect("read") {
        result = l;
    }
    assert!(
        child.wait().await.expect("clients").success(),
        "the clients' process failed"
    );
    #[derive(serde::Deserialize)]
    struct Reads {
        reads: HashMap<String, Vec<u64>>,
        covered: HashMap<String, Vec<u64>>,
        #[serde(rename = "cpuMs")]
        cpu_ms: f64,
    }
    let got: Reads = serde_json::from_str(&result).expect("clients' JSON");
    let published = |seq: &String| seq.parse().ok().and_then(|s: u64| at.get(&s)).copied();
    let mut lat = Vec::new();
    let (mut read, mut coalesced) = (0u64, 0u64);
    for (map, count) in [(&got.reads, &mut read), (&got.covered, &mut coalesced)] {
        for (seq, times) in map {
            let Some(published) = published(seq) else {
                continue;
            };
            *count += times.len() as u64;
            for t in times {
                lat.push(t.saturating_sub(published) as f64 / 1000.0);
            }
        }
    }
    let missed = (at.len() as u64 * n_clients as u64).saturating_sub(read + coalesced);
    lat.sort_by(|a, b| a.total_cmp(b));

    // Sync time with one client that never reads, against none: each the
    // first sync of a session of its own with the same account, so both
    // insert every message (a second sync of one session would only
    // compare what is stored, a different amount of work). STALL_PAIRS of
    // each, interleaved; the medians are compared.
    let none: Vec<String> = (0..STALL_PAIRS)
        .map(|i| format!("stall-none-{i}"))
        .collect();
    let stall: Vec<String> = (0..STALL_PAIRS).map(|i| format!("stall-{i}")).collect();
    for id in none.iter().chain(&stall) {
        create(
            &http,
            &base,
            id,
            json!({"autoSync": false, "simulator": {"chats": chats * 5, "messagesPerChat": 20, "fetchLatencyMs": 0, "qrEveryMs": 50, "scanAfterMs": 10}}),
        )
        .await;
        wait_ready(&http, &base, id).await;
    }
    let addr = base.trim_start_matches("http://").to_owned();
    // A small receive window, so the client's socket is full within the
    // sync: with the system's default buffers (up to 32 MiB here) it took
    // every frame, and the client that never reads cost what any client
    // costs. The server's kernel send buffer (up to `tcp_wmem`, 4 MiB
    // here) still takes a sync's few hundred KB, so its writer does not
    // block (BENCHMARKS.md, P4).
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    let mut stalled = socket
        .connect(addr.parse().expect("host address"))
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stalled
        .write_all(format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").as_bytes())
        .await
        .expect("handshake");
    let mut buf = [0u8; 512];
    let _ = stalled.read(&mut buf).await;
    // The client joins every session of the `stall` side, then reads
    // nothing more.
    for id in &stall {
        let payload = format!(r#"{{"event":"join-session","data":"{id}"}}"#);
        let payload = payload.as_bytes();
        let mask = [7u8, 1, 3, 9];
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        stalled.write_all(&frame).await.expect("join frame");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut base_runs, mut stall_runs) = (Vec::new(), Vec::new());
    // ABA order (none, stall; stall, none; ...): each sync writes into a
    // store that holds more than before, which would favour whichever
    // side always went first.
    for (i, (n, s)) in none.iter().zip(&stall).enumerate() {
        if i % 2 == 0 {
            base_runs.push(sync_once(&http, &base, n).await);
            stall_runs.push(sync_once(&http, &base, s).await);
        } else {
            stall_runs.push(sync_once(&http, &base, s).await);
            base_runs.push(sync_once(&http, &base, n).await);
        }
    }
    let baseline_ms = crate::cluster::median(&base_runs);
    let stalled_ms = crate::cluster::median(&stall_runs);
    eprintln!(
        "P4 syncs alone (ms, in order): {base_runs:?}; with a stalled client: {stall_runs:?}"
    );
    drop(stalled);
    host.stop().await;
    FanOut {
        clients: n_clients,
        events: at.len(),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        missed,
        coalesced,
        server_cpu_ms,
        clients_cpu_ms: got.cpu_ms,
        baseline_ms,
        stalled_ms,
    }
}

/// P6 results.
pub struct Busy {
    pub sessions: usize,
    pub requests: usize,
    pub busy_p50: f64,
    pub busy_p99: f64,
    pub idle_p50: f64,
    pub idle_p99: f64,
}

async fn hammer(http: &reqwest::Client, base: &str, sessions: usize, requests: usize) -> Vec<f64> {
    let http = Arc::new(http.clone());
    let per_worker = requests / 8;
    let mut workers = Vec::new();
    for w in 0..8 {
        let http = http.clone();
        let base = base.to_owned();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_worker);
            for i in 0..per_worker {
                let s = (w * 7919 + i * 31) % sessions;
                let t = Instant::now();
                let r = http
                    .get(format!(
                        "{base}/whatsapp-web/session/load{s}/chats?limit=50"
                    ))
                    .send()
                    .await
                    .expect("get");
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    all.sort_by(|a, b| a.total_cmp(b));
    all
}

pub async fn p6(quick: bool) -> Busy {
    let (sessions, requests, chats) = if quick { (10, 200, 5) } else { (200, 4000, 50) };
    // More sessions than a host takes by default (100).
    let host = TestHost::spawn_with(
        HostOptions::default().var(wasync::config::WASYNC_MAX_SESSIONS, sessions.to_string()),
    )
    .await;
    let base = host.base.clone();
    let http = reqwest::Client::new();
    for s in 0..sessions {
        create(
            &http,
            &base,
            &format!("load{s}"),
            json!({"autoSync": false, "simulator": {"chats": chats, "messagesPerChat": 40, "fetchLatencyMs": 2, "qrEveryMs": 50, "scanAfterMs": 10, "seed": s}}),
        )
        .await;
    }
    for s in 0..sessions {
        wait_ready(&http, &base, &format!("load{s}")).await;
    }
    // The requests while every session syncs, then the same requests on the
    // idle host (same data).
    let mut syncs = Vec::new();
    for s in 0..sessions {
        let r = http
            .post(format!("{base}/whatsapp-web/session/load{s}/sync-chats"))
            .json(&json!({}))
            .send()
            .await
            .expect("sync");
        assert_eq!(r.status(), 202);
        syncs.push(s);
    }
    let busy = hammer(&http, &base, sessions, requests).await;
    for s in syncs {
        poll(
            &http,
            format!("{base}/whatsapp-web/session/load{s}/sync"),
            |r| r["status"] == "completed",
        )
        .await;
    }
    let idle = hammer(&http, &base, sessions, requests).await;
    host.stop().await;
    Busy {
        sessions,
        requests: busy.len(),
        busy_p50: percentile(&busy, 0.5),
        busy_p99: percentile(&busy, 0.99),
        idle_p50: percentile(&idle, 0.5),
        idle_p99: percentile(&idle, 0.99),
    }
}
