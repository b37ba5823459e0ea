//! A cluster of real host processes on one MongoDB-wire server and the real
//! RabbitMQ: each host is the `wasync` binary with its own port, data
//! directory and host id, so a test can `SIGKILL`, `SIGSTOP` and `SIGCONT`
//! it like an operator's incident would.
//!
//! Every cluster gets its own database, `session_ready` queue and live
//! exchange, so cluster tests run beside every other test.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::amqp::{amqp_url, unique_queue};
use crate::mongo::{fresh_db_name, test_mongodb_uri};
use crate::{WsClient, wasync_binary};

/// Lease TTL of test clusters: short, so takeovers take seconds, yet long
/// enough that a renewal slowed by the whole suite running on two cores
/// stays within its deadline (TTL − TTL/5).
pub const TEST_LEASE_TTL_MS: u64 = 5_000;

/// What every host of a cluster shares.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub mongodb_uri: String,
    pub db: String,
    pub amqp_url: String,
    pub queue: String,
    pub exchange: String,
    /// Extra variables for every host.
    pub env: HashMap<String, String>,
}

impl ClusterSpec {
    /// A fresh database, queue and exchange on the test servers.
    pub fn fresh(tag: &str) -> Self {
        Self {
            mongodb_uri: test_mongodb_uri(),
            db: fresh_db_name(tag),
            amqp_url: amqp_url(),
            queue: unique_queue(tag),
            exchange: format!("wasync.test.live.{}", uuid::Uuid::new_v4().simple()),
            env: HashMap::new(),
        }
    }

    pub fn var(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.insert(k.to_owned(), v.into());
        self
    }
}

/// One host process.
pub struct ClusterHost {
    pub host_id: String,
    pub base: String,
    pub port: u16,
    pub http: reqwest::Client,
    data: PathBuf,
    env: HashMap<String, String>,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for ClusterHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHost")
            .field("host_id", &self.host_id)
            .field("base", &self.base)
            .finish()
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("addr").port()
}

impl ClusterHost {
    /// Starts host `host_id` of `spec` (with `mongodb_uri` in place of the
    /// spec's, e.g. a proxy) and waits until it serves.
    pub async fn start(spec: &ClusterSpec, host_id: &str, mongodb_uri: Option<&str>) -> Self {
        Self::start_with(spec, host_id, mongodb_uri, &HashMap::new()).await
    }

    /// [`ClusterHost::start`] with variables for this host only.
    pub async fn start_with(
        spec: &ClusterSpec,
        host_id: &str,
        mongodb_uri: Option<&str>,
        extra: &HashMap<String, String>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut env: HashMap<String, String> = HashMap::from([
            ("WASYNC_LISTEN".into(), format!("127.0.0.1:{port}")),
            ("WASYNC_DATA_DIR".into(), dir.path().display().to_string()),
            ("WASYNC_HOST_ID".into(), host_id.into()),
            (
                "MONGODB_URI".into(),
                mongodb_uri.unwrap_or(&spec.mongodb_uri).to_owned(),
            ),
            ("MONGODB_DB".into(), spec.db.clone()),
            ("AMQP_URL".into(), spec.amqp_url.clone()),
            ("AMQP_QUEUE".into(), spec.queue.clone()),
            ("AMQP_LIVE_EXCHANGE".into(), spec.exchange.clone()),
            ("WASYNC_LEASE_TTL_MS".into(), TEST_LEASE_TTL_MS.to_string()),
            ("RUST_LOG".into(), "warn,wasync=info".into()),
        ]);
        env.extend(spec.env.clone());
        env.extend(extra.clone());
        let mut host = Self {
            host_id: host_id.to_owned(),
            base: format!("http://127.0.0.1:{port}"),
            port,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            data: dir.path().to_owned(),
            env,
            child: None,
            _dir: dir,
        };
        host.launch().await;
        host
    }

    async fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("host log");
        let child = Command::new(wasync_binary())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the wasync binary");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await
                && r.status() == 200
            {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "host {} exited with {status} at start; its log:\n{}",
                    self.host_id,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "host {} did not serve within 30s; its log:\n{}",
                self.host_id,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The host's data directory (profiles, plugin cache, its log).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data
    }

    fn log_path(&self) -> PathBuf {
        self.data.join("host.log")
    }

    /// The host's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(|c| c.id())
            .expect("host running")
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {} failed", self.pid());
    }

    /// `SIGKILL`: the host dies with no chance to clean up.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
            let _ = c.wait().await;
        }
    }

    /// `SIGSTOP`: the host freezes (its leases run out while it sleeps).
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// `SIGCONT`.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// `SIGTERM`, then waits for a clean exit.
    pub async fn stop(&mut self) {
        if self.child.is_some() {
            self.signal("TERM");
            let mut c = self.child.take().expect("running");
            let status = tokio::time::timeout(Duration::from_secs(20), c.wait())
                .await
                .expect("host stops within 20s after SIGTERM")
                .expect("wait");
            assert!(
                status.success(),
                "host {} exited with {status}",
                self.host_id
            );
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub async fn ws(&self) -> WsClient {
        WsClient::connect(&self.ws_url()).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        crate::send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        crate::send(self.http.post(self.url(path)).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        crate::send(self.http.delete(self.url(path))).await
    }

    /// `GET /cluster` as this host sees it.
    pub async fn cluster(&self) -> Value {
        let (status, body) = self.get("/cluster").await;
        assert_eq!(status, 200, "GET /cluster on {}: {body}", self.host_id);
        body
    }

    /// Sessions with a running actor on this host.
    pub async fn actors(&self) -> Vec<String> {
        self.cluster().await["localActors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One metric's value from `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, _, text) = crate::answer(self.http.get(self.url("/metrics"))).await;
        crate::metric_value(text.as_str().unwrap_or_default(), name).unwrap_or(0.0)
    }
}

/// A simulator account for cluster tests: `chats` chats of `per_chat`
/// messages, fetched slowly enough (`fetch_ms` per chat) that a sync can be
/// interrupted in the middle.
pub fn sim_account(chats: u32, per_chat: u32, fetch_ms: u64, seed: u64) -> Value {
    json!({
        "provider": "simulator",
        "limitPerChat": per_chat,
        "simulator": {
            "chats": chats,
            "messagesPerChat": per_chat,
            "qrEveryMs": 200,
            "scanAfterMs": 100,
            "fetchLatencyMs": fetch_ms,
            "seed": seed,
        }
    })
}

/// Polls until `cond` holds for the value `probe` returns, or panics with
/// the last value after `within`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut probe: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, Value)>,
{
    let deadline = Instant::now() + within;
    loop {
        let (ok, last) = probe().await;
        if ok {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl ClusterSpec {
    /// A fresh database, queue and exchange like [`ClusterSpec::fresh`], on
    /// the MongoDB-wire server at `mongodb_uri` (a private one, e.g. the
    /// bench's fresh server per measure) instead of the shared test server.
    pub fn fresh_on(mongodb_uri: &str, tag: &str) -> Self {
        Self {
            mongodb_uri: mongodb_uri.to_owned(),
            db: fresh_db_name(tag),
            amqp_url: amqp_url(),
            queue: unique_queue(tag),
            exchange: format!("wasync.test.live.{}", uuid::Uuid::new_v4().simple()),
            env: HashMap::new(),
        }
    }

    /// Deletes the cluster's `session_ready` queue and live exchange from
    /// the broker once its hosts are gone, so repeated runs (the bench)
    /// leave nothing behind. Errors are ignored: this is cleanup.
    pub async fn remove_broker_objects(&self) {
        crate::amqp::delete_queue(&self.queue).await;
        let conn = crate::amqp::connect().await;
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .exchange_delete(
                    self.exchange.as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await;
        }
        let _ = conn.close(200, "cleanup".into()).await;
    }
}
