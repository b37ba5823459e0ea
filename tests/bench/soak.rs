//! Soak (`just bench --only soak`; never in a full run, `--quick` or CI):
//! the real `wasync` binary under ten minutes of steady load, watched from
//! outside for the slow failures a short benchmark cannot see — memory
//! that creeps, descriptors that are never closed, errors that show up
//! only after thousands of connections.
//!
//! Why it is written the way it is:
//!
//! - **The host is a process of its own** (`wasync_tests::wasync_binary()`,
//!   embedded store, its own temporary data directory), so its resident set
//!   (`VmRSS`), threads (`Threads`) and descriptors (`/proc/<pid>/fd`) are
//!   the host's alone, not the load generator's.
//! - **The load is steady and bounded**: 100 simulator sessions, each with a
//!   live message a second, a manual sync on a rotating tenth of them every
//!   3 s (409 `sync_running` is an answer, not an error), and 1,000
//!   WebSocket clients that connect, join 1–3 sessions, read for 5–20 s and
//!   go — a quarter by dropping the TCP connection, a quarter by closing,
//!   half by leaving each session first — then come back within 0.5 s. So
//!   about 1,000 are connected at any time and tens of thousands of
//!   connections come and go during the run: a leak of anything per
//!   connection, per join or per sync shows up as a slope.
//! - **RSS is judged by its least-squares slope after a warm-up** (60 s, a
//!   fifth of shorter runs), not by end minus start: the first minute fills
//!   caches, allocator arenas and connection buffers, and single samples
//!   jump by a few MiB with the number of clients connected at that moment.
//! - **Descriptors are judged with no client connected**, before the load
//!   and after it (once the host reports no client left): under load they
//!   move with the clients that happen to be between two connections.
//! - **Errors** are everything a well-behaved client should never see: a
//!   refused or failed connect, a join not answered with `session_state`
//!   within 10 s, an `error` event, a close the client did not ask for, a
//!   leave not answered with `left`, a sync request answered other than 202
//!   or 409 `sync_running`, any 5xx the host counted, and a host that does
//!   not exit cleanly on `SIGTERM` at the end.
//!
//! `WASYNC_BENCH_SOAK_SECS` shortens (or lengthens) the run, e.g. `60` to
//! check the code; the row names the duration it ran.

use std::process::Stdio;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::Row;

/// Names the run's length in seconds (default 600).
pub const SOAK_SECS_ENV: &str = "WASYNC_BENCH_SOAK_SECS";

const SESSIONS: usize = 100;
const CLIENTS: usize = 1_000;
/// Seconds between samples.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Manual syncs: this many sessions (the next ones in turn) every period.
const SYNCS_PER_ROUND: usize = 10;
const SYNC_EVERY: Duration = Duration::from_secs(3);
/// How long a client stays: read for 5 to 20 s after its joins.
const STAY_MS: std::ops::Range<u64> = 5_000..20_000;
/// Pause before a client comes back.
const PAUSE_MS: std::ops::Range<u64> = 0..500;
/// The clients' first connects are spread over this long.
const RAMP: Duration = Duration::from_secs(5);
/// A join, leave or close not answered within this long is an error.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// The RSS goal: slope at most this share of the post-warm-up RSS per hour.
const RSS_SLOPE_MAX_PCT_PER_HOUR: f64 = 5.0;
/// The descriptor goal: idle after the load at most this many more than
/// idle before it (room for a log file reopened or a store file split).
const FD_SLACK: usize = 8;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The host process; killed if the soak panics half-way.
struct Host {
    child: tokio::process::Child,
    pid: u32,
    base: String,
    dir: tempfile::TempDir,
}

impl Host {
    async fn start() -> Host {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.path().join("host.log")).expect("host log");
        let mut host = tokio::process::Command::new(wasync_tests::wasync_binary());
        host.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        // The allocator's settings and the embedded store's cache size pass
        // through, for memory experiments (`MIMALLOC_PURGE_DELAY=0 just
        // bench --only soak`; glibc's `MALLOC_*` for a build without
        // mimalloc; `WASYNC_STORE_CACHE_MIB=1`).
        for (k, v) in std::env::vars().filter(|(k, _)| {
            k.starts_with("MIMALLOC_")
                || k.starts_with("MALLOC_")
                || k == wasync::config::WASYNC_STORE_CACHE_MIB
        }) {
            host.env(k, v);
        }
        let child = host
            .env(wasync::config::WASYNC_LISTEN, format!("127.0.0.1:{port}"))
            .env(wasync::config::WASYNC_DATA_DIR, dir.path().join("data"))
            .env(wasync::config::WASYNC_MAX_CLIENTS, "5000")
            .env(
                wasync::config::WASYNC_MAX_SESSIONS,
                (SESSIONS * 2).to_string(),
            )
            .env(wasync::config::RUST_LOG, "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the wasync binary");
        let pid = child.id().expect("a pid");
        let mut host = Host {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", host.base)).send().await
                && r.status() == 200
            {
                return host;
            }
            if let Ok(Some(status)) = host.child.try_wait() {
                panic!("soak: host exited with {status} at start:\n{}", host.log());
            }
            assert!(
                Instant::now() < deadline,
                "soak: host did not serve within 30 s:\n{}",
                host.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default()
    }

    /// `SIGTERM`; whether the host exited with success within 20 s.
    async fn stop(mut self) -> Result<(), String> {
        let sent = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .map_err(|e| format!("kill -TERM: {e}"))?;
        if !sent.success() {
            return Err(format!("kill -TERM {} failed", self.pid));
        }
        match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("host exited with {status}")),
            Ok(Err(e)) => Err(format!("wait for the host: {e}")),
            Err(_) => Err("host still running 20 s after SIGTERM".into()),
        }
    }
}

/// What `/proc` says about the host.
#[derive(Debug, Clone, Copy)]
struct Proc {
    rss_kib: u64,
    threads: u64,
    fds: usize,
}

fn proc_of(pid: u32) -> Option<Proc> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(Proc {
        rss_kib: field("VmRSS:")?,
        threads: field("Threads:")?,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count(),
    })
}

/// The host's own counts, from `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct HostMetrics {
    /// `wasync_clients`, every transport.
    clients: f64,
    session_actors: f64,
    /// `wasync_http_requests_total{status="5xx"}`.
    http_5xx: f64,
    live_messages: f64,
}

/// The sum of the samples of metric `name` (every label set).
fn metric(text: &str, name: &str, labels: Option<&str>) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let series = l.split(' ').next().unwrap_or("");
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name && labels.is_none_or(|want| rest.contains(want))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .fold(0.0, |a, b| a + b)
}

async fn host_metrics(http: &reqwest::Client, base: &str) -> Option<HostMetrics> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(HostMetrics {
        clients: metric(&text, "wasync_clients", None),
        session_actors: metric(&text, "wasync_session_actors", None),
        http_5xx: metric(&text, "wasync_http_requests_total", Some("\"5xx\"")),
        live_messages: metric(&text, "wasync_live_messages_total", None),
    })
}

/// What the load generator counted; errors by kind, the first few kept
/// word for word.
#[derive(Default)]
struct Counters {
    connected: AtomicI64,
    connects: AtomicU64,
    joins: AtomicU64,
    frames: AtomicU64,
    syncs_started: AtomicU64,
    syncs_busy: AtomicU64,
    connect_errors: AtomicU64,
    join_errors: AtomicU64,
    close_errors: AtomicU64,
    leave_errors: AtomicU64,
    sync_errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Counters {
    fn error(&self, kind: &AtomicU64, what: String) {
        kind.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().expect("errors lock");
        if first.len() < 10 {
            eprintln!("soak: error: {what}");
            first.push(what);
        }
    }

    fn errors(&self) -> u64 {
        [
            &self.connect_errors,
            &self.join_errors,
            &self.close_errors,
            &self.leave_errors,
            &self.sync_errors,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

fn session_id(i: usize) -> String {
    format!("soak{i}")
}

/// Reads frames until `want` events named `event` arrived; an `error`
/// event, a close or `ANSWER_WITHIN` passing is an error.
async fn await_events(ws: &mut Ws, event: &str, want: usize, c: &Counters) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
    let mut seen = 0;
    while seen < want {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => {
                return Err(format!(
                    "{seen} of {want} `{event}` within {ANSWER_WITHIN:?}"
                ));
            }
            Ok(None) => return Err(format!("connection ended awaiting `{event}`")),
            Ok(Some(Err(e))) => return Err(format!("awaiting `{event}`: {e}")),
            Ok(Some(Ok(Message::Close(f)))) => {
                return Err(format!("closed by the host awaiting `{event}`: {f:?}"));
            }
            Ok(Some(Ok(Message::Text(t)))) => {
                c.frames.fetch_add(1, Ordering::Relaxed);
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if v["event"] == "error" {
                    return Err(format!("`error` event awaiting `{event}`: {t}"));
                }
                if v["event"] == event {
                    seen += 1;
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
    Ok(())
}

async fn send(ws: &mut Ws, event: &str, data: Value) -> Result<(), String> {
    ws.send(Message::Text(
        json!({"event": event, "data": data}).to_string().into(),
    ))
    .await
    .map_err(|e| format!("send `{event}`: {e}"))
}

/// One visit of a connected client: join, read, go.
async fn visit(mut ws: Ws, rng: &mut fastrand::Rng, stop: &CancellationToken, c: &Counters) {
    let mut rooms = Vec::new();
    let k = rng.usize(1..=3);
    while rooms.len() < k {
        let s = rng.usize(..SESSIONS);
        if !rooms.contains(&s) {
            rooms.push(s);
        }
    }
    for s in &rooms {
        if let Err(e) = send(
            &mut ws,
            "join-session",
            json!({"sessionId": session_id(*s)}),
        )
        .await
        {
            return c.error(&c.join_errors, e);
        }
    }
    if let Err(e) = await_events(&mut ws, "session_state", k, c).await {
        return c.error(&c.join_errors, format!("join {rooms:?}: {e}"));
    }
    c.joins.fetch_add(k as u64, Ordering::Relaxed);

    // Read what the sessions send until it is time to go.
    let until = tokio::time::Instant::now() + Duration::from_millis(rng.u64(STAY_MS));
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            n = tokio::time::timeout_at(until, ws.next()) => n,
        };
        match next {
            Err(_) => break,
            Ok(None) => return c.error(&c.close_errors, "connection ended by the host".into()),
            Ok(Some(Err(e))) => return c.error(&c.close_errors, format!("read: {e}")),
            Ok(Some(Ok(Message::Close(f)))) => {
                return c.error(&c.close_errors, format!("closed by the host: {f:?}"));
            }
            Ok(Some(Ok(Message::Text(t)))) => {
                c.frames.fetch_add(1, Ordering::Relaxed);
                if t.as_str().contains(r#""event":"error""#) {
                    return c.error(&c.close_errors, format!("`error` event: {t}"));
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }

    // Go: drop the connection, close it, or leave every session and close.
    match rng.u8(0..4) {
        0 => drop(ws),
        mode => {
            if mode >= 2 {
                for s in &rooms {
                    if let Err(e) = send(
                        &mut ws,
                        "leave-session",
                        json!({"sessionId": session_id(*s)}),
                    )
                    .await
                    {
                        return c.error(&c.leave_errors, e);
                    }
                }
                if let Err(e) = await_events(&mut ws, "left", k, c).await {
                    return c.error(&c.leave_errors, format!("leave {rooms:?}: {e}"));
                }
            }
            if let Err(e) = close(&mut ws).await {
                c.error(&c.close_errors, e);
            }
        }
    }
}

/// Sends a normal close and reads until the host's answer; anything but a
/// normal close back is an error.
async fn close(ws: &mut Ws) -> Result<(), String> {
    ws.close(None).await.map_err(|e| format!("close: {e}"))?;
    let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err("no close answer".into()),
            Ok(None) => return Ok(()),
            Ok(Some(Ok(Message::Close(Some(f))))) if f.code != CloseCode::Normal => {
                return Err(format!("closing: host answered {f:?}"));
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => {
                use tokio_tungstenite::tungstenite::Error;
                return match e {
                    Error::ConnectionClosed => Ok(()),
                    e => Err(format!("closing: {e}")),
                };
            }
        }
    }
}

/// One of the 1,000 clients: visits until `stop`.
async fn client(n: usize, url: String, stop: CancellationToken, c: Arc<Counters>) {
    let mut rng = fastrand::Rng::with_seed(0x50a6 + n as u64);
    tokio::time::sleep(RAMP.mul_f64(n as f64 / CLIENTS as f64)).await;
    while !stop.is_cancelled() {
        c.connects.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(ANSWER_WITHIN, tokio_tungstenite::connect_async(&url)).await {
            Ok(Ok((ws, _))) => {
                c.connected.fetch_add(1, Ordering::Relaxed);
                visit(ws, &mut rng, &stop, &c).await;
                c.connected.fetch_sub(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => c.error(&c.connect_errors, format!("connect: {e}")),
            Err(_) => c.error(
                &c.connect_errors,
                format!("connect: no answer within {ANSWER_WITHIN:?}"),
            ),
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(rng.u64(PAUSE_MS))) => {}
        }
    }
}

/// Manual syncs on the next `SYNCS_PER_ROUND` sessions every `SYNC_EVERY`.
async fn syncs(http: reqwest::Client, base: String, stop: CancellationToken, c: Arc<Counters>) {
    let mut next = 0usize;
    let mut tick = tokio::time::interval(SYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for _ in 0..SYNCS_PER_ROUND {
            let id = session_id(next % SESSIONS);
            next += 1;
            let r = http
                .post(format!("{base}/whatsapp-web/session/{id}/sync-chats"))
                .json(&json!({}))
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 202 => {
                    c.syncs_started.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) => {
                    let status = r.status();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    if status == 409 && body["code"] == "sync_running" {
                        c.syncs_busy.fetch_add(1, Ordering::Relaxed);
                    } else {
                        c.error(&c.sync_errors, format!("sync {id}: {status} {body}"));
                    }
                }
                Err(e) => c.error(&c.sync_errors, format!("sync {id}: {e}")),
            }
        }
    }
}

/// One sample of the host under load.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    proc: Proc,
    metrics: HostMetrics,
    /// Clients connected as the load generator counts them.
    connected: i64,
    errors: u64,
}

impl Sample {
    fn rss_mib(&self) -> f64 {
        self.proc.rss_kib as f64 / 1024.0
    }
}

/// Least-squares slope of `(x, y)`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), (x, y)| {
        (sxy + (x - mx) * (y - my), sxx + (x - mx) * (x - mx))
    });
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// The soak's figures.
struct Soak {
    secs: u64,
    warmup_secs: u64,
    samples: Vec<Sample>,
    before: Proc,
    after: Option<Proc>,
    /// RSS slope over the samples after the warm-up, MiB per hour.
    slope_mib_h: f64,
    /// The same as a share of the first post-warm-up sample, % per hour.
    slope_pct_h: f64,
    counters: Arc<Counters>,
    http_5xx: f64,
    live_messages: f64,
    stop_error: Option<String>,
}

impl Soak {
    fn errors(&self) -> u64 {
        self.counters.errors() + self.http_5xx as u64 + u64::from(self.stop_error.is_some())
    }

    fn fds_flat(&self) -> bool {
        self.after
            .is_some_and(|a| a.fds <= self.before.fds + FD_SLACK)
    }

    fn met(&self) -> bool {
        self.slope_pct_h <= RSS_SLOPE_MAX_PCT_PER_HOUR && self.fds_flat() && self.errors() == 0
    }
}

async fn run(secs: u64) -> Soak {
    let warmup_secs = 60.min(secs / 5);
    let host = Host::start().await;
    let base = host.base.clone();
    let pid = host.pid;
    let probe = reqwest::Client::new();

    // The sessions, each ready before the load starts.
    for i in 0..SESSIONS {
        let r = probe
            .post(format!("{base}/whatsapp-web/session/{}", session_id(i)))
            .json(&json!({
                "provider": "simulator",
                "simulator": {"chats": 5, "messagesPerChat": 20, "liveMessageEveryMs": 1000,
                              "scanAfterMs": 100, "qrEveryMs": 1000, "seed": i},
            }))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201, "create {}: {}", session_id(i), host.log());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..SESSIONS {
        loop {
            let v: Value = probe
                .get(format!("{base}/whatsapp-web/session/{}", session_id(i)))
                .send()
                .await
                .expect("get")
                .json()
                .await
                .unwrap_or(Value::Null);
            if v["status"] == "ready" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "soak: {} not ready within 60 s: {v}",
                session_id(i)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The first syncs settle; then the idle picture.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = proc_of(pid).expect("the host's /proc");
    eprintln!(
        "soak: {SESSIONS} sessions ready; host idle: RSS {:.1} MiB, {} fds, {} threads",
        before.rss_kib as f64 / 1024.0,
        before.fds,
        before.threads
    );

    // The load.
    let stop = CancellationToken::new();
    let c = Arc::new(Counters::default());
    let sync_http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let sync_task = tokio::spawn(syncs(sync_http, base.clone(), stop.clone(), c.clone()));
    let ws_url = format!("{}/ws", base.replacen("http", "ws", 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client(n, ws_url.clone(), stop.clone(), c.clone())))
        .collect();

    let started = Instant::now();
    let mut samples = Vec::new();
    eprintln!("soak:    t   RSS MiB  fds  threads  clients(host/load)  actors  5xx  errors");
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let secs_now = started.elapsed().as_secs_f64();
        let Some(p) = proc_of(pid) else {
            c.error(&c.close_errors, format!("host gone at {secs_now:.0} s"));
            break;
        };
        let m = host_metrics(&probe, &base).await.unwrap_or_default();
        let s = Sample {
            secs: secs_now,
            proc: p,
            metrics: m,
            connected: c.connected.load(Ordering::Relaxed),
            errors: c.errors() + m.http_5xx as u64,
        };
        eprintln!(
            "soak: {:>4.0} {:>9.1} {:>4} {:>8} {:>9.0}/{:<9} {:>6.0} {:>4.0} {:>7}",
            s.secs,
            s.rss_mib(),
            p.fds,
            p.threads,
            m.clients,
            s.connected,
            m.session_actors,
            m.http_5xx,
            s.errors
        );
        samples.push(s);
        if secs_now >= secs as f64 {
            break;
        }
    }

    // Wind down: every client goes, then the idle picture again.
    stop.cancel();
    let _ = sync_task.await;
    for t in clients {
        if tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .is_err()
        {
            c.error(
                &c.close_errors,
                "a client did not finish within 30 s".into(),
            );
        }
    }
    let drained = Instant::now() + Duration::from_secs(30);
    let mut last = host_metrics(&probe, &base).await.unwrap_or_default();
    while last.clients > 0.0 && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = host_metrics(&probe, &base).await.unwrap_or_default();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = proc_of(pid);
    let last = host_metrics(&probe, &base).await.unwrap_or(last);
    if let Some(a) = after {
        eprintln!(
            "soak: load gone ({} clients left on the host): RSS {:.1} MiB, {} fds, {} threads",
            last.clients,
            a.rss_kib as f64 / 1024.0,
            a.fds,
            a.threads
        );
    }
    drop(probe);
    let stop_error = host.stop().await.err();
    if let Some(e) = &stop_error {
        eprintln!("soak: error: {e}");
    }

    let window: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.secs >= warmup_secs as f64)
        .map(|s| (s.secs / 3600.0, s.rss_mib()))
        .collect();
    let slope_mib_h = slope(&window);
    let window_start = window.first().map_or(1.0, |w| w.1);
    Soak {
        secs,
        warmup_secs,
        slope_pct_h: slope_mib_h / window_start * 100.0,
        slope_mib_h,
        samples,
        before,
        after,
        counters: c,
        http_5xx: last.http_5xx,
        live_messages: last.live_messages,
        stop_error,
    }
}

/// The soak row.
pub async fn row() -> Row {
    let secs = std::env::var(SOAK_SECS_ENV)
        .ok()
        .map(|v| v.parse().expect("WASYNC_BENCH_SOAK_SECS: whole seconds"))
        .unwrap_or(600);
    let s = run(secs).await;
    let c = &s.counters;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let rss: Vec<f64> = s.samples.iter().map(Sample::rss_mib).collect();
    let fds: Vec<usize> = s.samples.iter().map(|x| x.proc.fds).collect();
    let threads: Vec<u64> = s.samples.iter().map(|x| x.proc.threads).collect();
    let warm = s
        .samples
        .iter()
        .find(|x| x.secs >= s.warmup_secs as f64)
        .copied();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let after = s.after.unwrap_or(Proc {
        rss_kib: 0,
        threads: 0,
        fds: usize::MAX,
    });

    eprintln!("soak: samples (t s, RSS MiB, fds, threads, host clients, actors):");
    for x in &s.samples {
        eprintln!(
            "  {:.0}\t{:.1}\t{}\t{}\t{:.0}\t{:.0}",
            x.secs,
            x.rss_mib(),
            x.proc.fds,
            x.proc.threads,
            x.metrics.clients,
            x.metrics.session_actors
        );
    }
    let errors = s.errors();
    eprintln!(
        "soak: {} connects, {} joins, {} frames read, {} syncs started ({} answered sync_running), {:.0} live messages stored; errors {errors}: connect {}, join {}, close {}, leave {}, sync {}, 5xx {:.0}, stop {:?}",
        n(&c.connects),
        n(&c.joins),
        n(&c.frames),
        n(&c.syncs_started),
        n(&c.syncs_busy),
        s.live_messages,
        n(&c.connect_errors),
        n(&c.join_errors),
        n(&c.close_errors),
        n(&c.leave_errors),
        n(&c.sync_errors),
        s.http_5xx,
        s.stop_error
    );

    let max = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
    Row {
        id: "S1",
        measure: format!(
            "soak, {} s (`{SOAK_SECS_ENV}`; warm-up {} s, sample every {} s): {SESSIONS} simulator sessions (a live message/s each, {} manual syncs, {} answered `sync_running`), {CLIENTS} WebSocket clients coming and going ({} connects, {} joins, {} frames read): RSS {:.1} MiB after the warm-up, {:.1} MiB at the end, max {:.1}; slope {:+.2} MiB/h; fds under load {}–{} (end {}); threads {}–{}; errors {errors}",
            s.secs,
            s.warmup_secs,
            SAMPLE_EVERY.as_secs(),
            n(&c.syncs_started),
            n(&c.syncs_busy),
            n(&c.connects),
            n(&c.joins),
            n(&c.frames),
            warm.map_or(f64::NAN, |w| w.rss_mib()),
            rss.last().copied().unwrap_or(f64::NAN),
            max(&rss),
            s.slope_mib_h,
            fds.iter().min().copied().unwrap_or(0),
            fds.iter().max().copied().unwrap_or(0),
            fds.last().copied().unwrap_or(0),
            threads.iter().min().copied().unwrap_or(0),
            threads.iter().max().copied().unwrap_or(0),
        ),
        baseline: format!(
            "the same host idle, no client: before the load RSS {:.1} MiB, {} fds, {} threads; after it {:.1} MiB, {} fds, {} threads",
            mib(s.before.rss_kib),
            s.before.fds,
            s.before.threads,
            mib(after.rss_kib),
            after.fds,
            after.threads
        ),
        result: format!(
            "RSS slope {:+.2} %/h; idle fds {} → {}; {errors} errors",
            s.slope_pct_h, s.before.fds, after.fds
        ),
        target: "RSS slope ≤ 5 %/h; idle fds after ≤ before + 8; 0 errors",
        met: Some(s.met()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 + 2.0 * i as f64)).collect();
        assert!((slope(&pts) - 2.0).abs() < 1e-9);
        assert_eq!(slope(&pts[..1]), 0.0);
    }

    #[test]
    fn metric_sums_label_sets() {
        let text = "# TYPE wasync_clients gauge\nwasync_clients{transport=\"ws\"} 3\nwasync_clients{transport=\"socketio\"} 1\nwasync_http_requests_total{status=\"2xx\"} 9\nwasync_http_requests_total{status=\"5xx\"} 2\n";
        assert_eq!(metric(text, "wasync_clients", None), 4.0);
        assert_eq!(
            metric(text, "wasync_http_requests_total", Some("\"5xx\"")),
            2.0
        );
        assert_eq!(metric(text, "wasync_session_actors", None), 0.0);
    }
}
