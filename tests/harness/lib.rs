//! The shared integration harness: real hosts on port 0, real HTTP and
//! WebSocket clients.
//!
//! `TestHost::spawn()` starts a host in-process with its own temporary data
//! directory (so tests run in parallel), `restart()` stops it and starts a
//! new one on the same data (a crash-restart as far as the store can tell),
//! and `WsClient` speaks the `/ws` protocol.
//!
//! - [`proxy`]: a TCP proxy to cut and restore a real service's network.
//! - [`upstream_proxy`]: HTTP and SOCKS5 proxies that demand credentials.
//! - [`logs`]: capturing the host's log lines.
//! - [`amqp`]: the test broker, per-test queues, a real consumer, the relay bench.
//! - [`receiver`]: a real HTTP server (hyper) that takes webhook deliveries,
//!   fails or stalls on demand, and checks their signatures.

pub mod amqp;
pub mod cluster;
pub mod logs;
pub mod proxy;
pub mod upstream_proxy;

pub mod mongo;
pub mod whatsapp_fixture;

pub mod plugins;
pub mod receiver;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wasync::app::{App, Tuning};
use wasync::config::Config;

/// Waits up to `$secs` seconds (default 10) for `$cond` to hold, polling.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr) => {
        $crate::assert_eventually!($cond, 10)
    };
    ($cond:expr, $secs:expr) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs($secs);
        loop {
            if $cond {
                break;
            }
            if std::time::Instant::now() > deadline {
                panic!("condition not met within {}s: {}", $secs, stringify!($cond));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}

/// Installs a test log subscriber once (`RUST_LOG` picks the level).
pub fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        let printed = tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            );
        let _ = tracing_subscriber::registry()
            .with(printed)
            .with(logs::CaptureLayer.with_filter(logs::WhileCapturing))
            .try_init();
    });
}

/// How to start a host.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// Configuration variables (as the environment would give them).
    pub env: HashMap<String, String>,
    pub tuning: Tuning,
}

impl HostOptions {
    pub fn var(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.insert(k.to_owned(), v.into());
        self
    }
}

/// Fast retries, so failure paths take milliseconds in tests.
pub fn fast_tuning() -> Tuning {
    let mut t = Tuning::default();
    t.sync.retry_backoff = Duration::from_millis(5);
    t.sync.store_outage_window = Duration::from_secs(2);
    t.sync.store_max_backoff = Duration::from_millis(200);
    t.relay.poll = Duration::from_millis(50);
    t.relay.min_backoff = Duration::from_millis(20);
    t.relay.max_backoff = Duration::from_millis(200);
    t.webhooks.poll = Duration::from_millis(50);
    t
}

/// A host running in this process.
pub struct TestHost {
    app: Option<App>,
    pub base: String,
    pub http: reqwest::Client,
    data: tempfile::TempDir,
    opts: HostOptions,
    api_key: Option<String>,
}

impl TestHost {
    /// Embedded store, local events, simulator.
    pub async fn spawn() -> TestHost {
        Self::spawn_with(HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        })
        .await
    }

    /// Like [`TestHost::spawn`], with `key` required on REST and WebSocket;
    /// the host's own requests send it.
    pub async fn spawn_with_key(key: &str) -> TestHost {
        Self::spawn_with(
            HostOptions {
                tuning: fast_tuning(),
                ..Default::default()
            }
            .var(wasync::config::WASYNC_API_KEY, key),
        )
        .await
    }

    pub async fn spawn_with(opts: HostOptions) -> TestHost {
        init_logs();
        let data = tempfile::tempdir().expect("temp dir");
        let api_key = opts.env.get(wasync::config::WASYNC_API_KEY).cloned();
        let mut host = TestHost {
            app: None,
            base: String::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            data,
            opts,
            api_key,
        };
        host.start().await;
        host
    }

    async fn start(&mut self) {
        let mut env = self.opts.env.clone();
        env.entry(wasync::config::WASYNC_DATA_DIR.into())
            .or_insert_with(|| self.data.path().display().to_string());
        // An in-process host shares the test's one-thread runtime, and on
        // MongoDB the one test server, with every test running at once; on
        // a loaded machine a renewal can take longer than the production
        // TTL allows, and the host then rightly gives its sessions up. No
        // in-process test is about leases (the cluster suite runs hosts as
        // processes with a 5 s TTL), so these hold theirs for two minutes.
        env.entry(wasync::config::WASYNC_LEASE_TTL_MS.into())
            .or_insert_with(|| "120000".into());
        let config = Config::load(&env, None).expect("test config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let app = App::start(config, listener, self.opts.tuning.clone())
            .await
            .expect("host starts");
        self.base = format!("http://{}", app.local_addr());
        self.app = Some(app);
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().expect("running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self) -> String {
        format!("{}/ws", self.base.replacen("http", "ws", 1))
    }

    /// A request with the host's API key, if it has one.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, self.url(path));
        match &self.api_key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        send(self.req(reqwest::Method::POST, path).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::DELETE, path)).await
    }

    /// One metric's value from `/metrics` (`None` when absent).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, _, text) = answer(self.req(reqwest::Method::GET, "/metrics")).await;
        metric_value(text.as_str().unwrap_or_default(), name)
    }

    /// Creates a simulator session with the given account shape.
    pub async fn create_sim(&self, id: &str, simulator: Value) -> Value {
        let (status, body) = self
            .post(
                &format!("/whatsapp-web/session/{id}"),
                json!({"provider": "simulator", "simulator": simulator}),
            )
            .await;
        assert_eq!(status, 201, "create {id}: {body}");
        body
    }

    /// Polls until the session's last sync is no longer running.
    pub async fn wait_sync_done(&self, id: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, run) = self.get(&format!("/whatsapp-web/session/{id}/sync")).await;
            if status == 200 && run["status"] != "running" {
                return run;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sync of {id} did not end: {run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens a WebSocket client.
    pub async fn ws(&self) -> WsClient {
        let mut url = self.ws_url();
        if let Some(k) = &self.api_key {
            url = format!("{url}?apiKey={k}");
        }
        WsClient::connect(&url).await
    }

    /// Stops the host and starts a new one on the same data directory.
    pub async fn restart(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        self.start().await;
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
    }

    /// A path under this host's data directory.
    pub fn data_path(&self, rel: &str) -> PathBuf {
        self.data.path().join(rel)
    }
}

/// One benchmark sync through a real host started with `opts` (its own
/// data directory unless `opts` names one, `opts.tuning` as given): creates
/// session `bench` on a simulated account of `chats × per_chat` messages
/// with no fetch latency, waits for its run to complete, stops the host and
/// returns the run.
pub async fn bench_sync(opts: HostOptions, chats: u32, per_chat: u32) -> Value {
    let host = TestHost::spawn_with(opts).await;
    let run = bench_session(&host, chats, per_chat).await;
    host.stop().await;
    run
}

/// Creates session `bench` on `host`, a simulated account of `chats ×
/// per_chat` messages with no fetch latency, and returns its first (full)
/// run once completed.
pub async fn bench_session(host: &TestHost, chats: u32, per_chat: u32) -> Value {
    let (status, body) = host
        .post(
            "/whatsapp-web/session/bench",
            json!({
                "limitPerChat": per_chat,
                "simulator": {"chats": chats, "messagesPerChat": per_chat,
                              "qrEveryMs": 10, "scanAfterMs": 1, "fetchLatencyMs": 0}
            }),
        )
        .await;
    assert_eq!(status, 201, "create the bench session: {body}");
    wait_run_completed(&host.http, &host.base, "bench").await
}

/// A run's duration in ms as the run recorded it (`finishedAt -
/// startedAt`, at least 1).
pub fn run_ms(run: &Value) -> u64 {
    let ms = run["finishedAt"].as_i64().unwrap_or(0) - run["startedAt"].as_i64().unwrap_or(0);
    ms.max(1) as u64
}

/// Polls `GET {base}/whatsapp-web/session/{session}/sync` until the run is
/// `completed` and returns it; a `failed` run panics. The benchmarks use
/// it with their own (key-less) client. They measure a sync by the run's
/// own timestamps, so a slow poll only adds wall time, while a fast one
/// would load the very server being measured (each poll is a read).
pub async fn wait_run_completed(http: &reqwest::Client, base: &str, session: &str) -> Value {
    loop {
        let r: Value = http
            .get(format!("{base}/whatsapp-web/session/{session}/sync"))
            .send()
            .await
            .expect("poll")
            .json()
            .await
            .unwrap_or(Value::Null);
        if r["status"] == "completed" {
            return r;
        }
        assert!(r["status"] != "failed", "sync of {session} failed: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(r: reqwest::RequestBuilder) -> (u16, Value) {
    let (status, _, body) = answer(r).await;
    (status, body)
}

/// Sends `r`; returns the status, the `content-type` (empty if none) and
/// the body, parsed as JSON when it is JSON, else as a string.
pub async fn answer(r: reqwest::RequestBuilder) -> (u16, String, Value) {
    let resp = r.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, ct, body)
}

/// The value of metric `name` in a Prometheus text exposition: the first
/// sample line `name ...` or `name{...} ...`; `name` may carry labels
/// itself (`wasync_sessions{status="ready"}`).
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A `/ws` client.
pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    pub async fn connect(url: &str) -> WsClient {
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        WsClient { stream }
    }

    pub async fn send(&mut self, event: &str, data: Value) {
        self.send_raw(json!({"event": event, "data": data}).to_string())
            .await;
    }

    pub async fn send_raw(&mut self, text: impl Into<String>) {
        self.stream
            .send(Message::Text(text.into().into()))
            .await
            .expect("ws send");
    }

    /// The next event, or a panic after 10 s.
    pub async fn recv(&mut self) -> Value {
        self.try_recv(Duration::from_secs(10))
            .await
            .expect("an event within 10s")
    }

    /// The next event within `wait`, or `None`.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            match msg.expect("ws frame") {
                Message::Text(t) => {
                    return Some(serde_json::from_str(t.as_str()).expect("JSON frame"));
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Events until (and including) the first named `event`.
    pub async fn until(&mut self, event: &str) -> Vec<Value> {
        self.until_within(event, Duration::from_secs(10)).await
    }

    /// As [`Self::until`], waiting up to `wait` for each event (a store
    /// write that commits thousands of messages at once on the suite's
    /// shared MongoDB-wire server may take longer than 10 s).
    pub async fn until_within(&mut self, event: &str, wait: Duration) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let ev = self
                .try_recv(wait)
                .await
                .unwrap_or_else(|| panic!("an event within {wait:?} (waiting for {event})"));
            let done = ev["event"] == event;
            seen.push(ev);
            if done {
                return seen;
            }
        }
    }

    /// Joins a session and returns the `session_state` snapshot.
    pub async fn join(&mut self, session: &str) -> Value {
        self.send("join-session", json!({ "sessionId": session }))
            .await;
        let ev = self.recv().await;
        assert_eq!(ev["event"], "session_state", "{ev}");
        ev["data"].clone()
    }
}

/// The `wasync` binary of this build: beside the running executable (the
/// bench, `target/<profile>/bench`) or one level up (a test binary,
/// `target/<profile>/deps/it-<hash>`). `scripts/test.sh` and `just bench`
/// build it.
pub fn wasync_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().expect("executable's directory");
    let candidates = [dir.join("wasync"), dir.join("../wasync")];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no wasync binary beside {}: run `cargo build -p wasync --bin wasync` (scripts/test.sh and `just bench` do)",
                exe.display()
            )
        })
}
