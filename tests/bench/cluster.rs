//! C1 (takeover after `SIGKILL`), C2 (live events across hosts) and C3
//! (sessions per host).
//!
//! The hosts are real `wasync` processes (the binary beside this one,
//! started by the harness's [`ClusterHost`]) on a fresh MongoDB-wire server
//! per measure (SecantusDB slows down once databases are dropped) and the
//! real RabbitMQ; the clients (HTTP and WebSocket) run in this process.
//! Every wait is bounded: a measure that does not finish in time panics
//! with what it last saw, or (C3) stops stepping and says so.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wasync::config::{WASYNC_LEASE_TTL_MS, WASYNC_MAX_SESSIONS};
use wasync::domain::now_ms;
use wasync_tests::cluster::{ClusterHost, ClusterSpec, sim_account};
use wasync_tests::mongo::{MongoServer, SERVER_BIN_ENV};

/// The production lease TTL (`WASYNC_LEASE_TTL_MS` unset); the renewal
/// period stays at its default, a third of it.
const PRODUCTION_TTL_MS: u64 = 15_000;

/// Whether the services the cluster measures need are there: the
/// MongoDB-wire server binary (`WASYNC_SECANTUSD`) and RabbitMQ.
pub async fn services() -> Result<(), String> {
    match std::env::var(SERVER_BIN_ENV) {
        Ok(bin) if std::path::Path::new(&bin).is_file() => {}
        Ok(bin) => return Err(format!("{SERVER_BIN_ENV}={bin} is not a file")),
        Err(_) => {
            return Err(format!(
                "{SERVER_BIN_ENV} is not set (source scripts/mongo-test-server.sh && mongo_test_server_start)"
            ));
        }
    }
    wasync_tests::amqp::broker_reachable().await
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// `GET path` on `host`, tolerating errors (a poll retries).
async fn get(host: &ClusterHost, path: &str) -> Option<Value> {
    let r = host.http.get(host.url(path)).send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

/// Session → (owner, lease expiry in ms) as `host` sees the cluster.
async fn leases(host: &ClusterHost) -> HashMap<String, (String, i64)> {
    let mut out = HashMap::new();
    let Some(view) = get(host, "/cluster").await else {
        return out;
    };
    for h in view["hosts"].as_array().into_iter().flatten() {
        let owner = h["hostId"].as_str().unwrap_or_default();
        for l in h["leases"].as_array().into_iter().flatten() {
            out.insert(
                l["sessionId"].as_str().unwrap_or_default().to_owned(),
                (owner.to_owned(), l["expiresAt"].as_i64().unwrap_or(0)),
            );
        }
    }
    out
}

/// The run of `session` as `host` reads it (`Null` on error).
async fn run_of(host: &ClusterHost, session: &str) -> Value {
    get(host, &format!("/whatsapp-web/session/{session}/sync"))
        .await
        .unwrap_or(Value::Null)
}

/// Sum of every series of `name` in `host`'s `/metrics` (all labels).
async fn metric_sum(host: &ClusterHost, name: &str) -> f64 {
    let Ok(r) = host.http.get(host.url("/metrics")).send().await else {
        return f64::NAN;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn start_hosts(spec: &ClusterSpec, n: usize) -> Vec<ClusterHost> {
    let mut hosts = Vec::with_capacity(n);
    for i in 0..n {
        hosts.push(ClusterHost::start(spec, &format!("h{i}"), None).await);
    }
    hosts
}

async fn create(host: &ClusterHost, id: &str, account: Value) {
    let (status, body) = host
        .post(&format!("/whatsapp-web/session/{id}"), account)
        .await;
    assert_eq!(status, 201, "create {id} on {}: {body}", host.host_id);
}

/// Stops the hosts (`SIGTERM`, a clean exit within 20 s), then removes the
/// cluster's broker objects. A host that does not stop cleanly is killed
/// and reported, not fatal: the figures are already taken.
async fn teardown(spec: &ClusterSpec, hosts: Vec<ClusterHost>) -> Vec<String> {
    let mut problems = Vec::new();
    for mut h in hosts {
        let id = h.host_id.clone();
        if let Err(e) = tokio::spawn(async move { h.stop().await }).await {
            eprintln!("host {id} did not stop cleanly: {e}");
            problems.push(format!("host {id} did not stop cleanly after SIGTERM"));
        }
    }
    spec.remove_broker_objects().await;
    problems
}

/// C1 results: per run, ms from the `SIGKILL`.
pub struct Takeover {
    pub runs: usize,
    pub hosts: usize,
    pub sessions: usize,
    pub ttl_ms: u64,
    /// When the victim's last lease ran out (its last renewal + TTL).
    pub expired_ms: Vec<f64>,
    /// When a survivor first held one of the victim's sessions.
    pub first_ms: Vec<f64>,
    /// When the survivors held every one of the victim's sessions.
    pub held_ms: Vec<f64>,
    /// When every interrupted sync had completed on the survivors.
    pub synced_ms: Vec<f64>,
    /// Sessions whose resumed run did not end with every message, or not
    /// as the same run.
    pub inexact: usize,
    /// Sessions whose stored message count is not the account's.
    pub misstored: usize,
    /// Takeovers the survivors counted, over all runs.
    pub takeovers: f64,
    /// What went wrong around the measure (e.g. an unclean stop).
    pub problems: Vec<String>,
}

/// The median of `v`.
pub fn median(v: &[f64]) -> f64 {
    percentile(&sorted(v.to_vec()), 0.5)
}

/// The largest of `v`.
pub fn worst(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// C1: `sessions` simulator sessions mid-sync on one host of a cluster;
/// the host is killed with `SIGKILL`; how long until the survivors hold
/// every lease, and until every interrupted sync completed on them.
pub async fn c1(quick: bool) -> Takeover {
    // Quick mode uses the harness's short TTL (3 s) so CI stays fast.
    let (runs, n_hosts, sessions, ttl_ms) = if quick {
        (1, 2, 2, 3_000)
    } else {
        (5, 3, 6, PRODUCTION_TTL_MS)
    };
    let (chats, per_chat, fetch_ms) = if quick { (8, 10, 100) } else { (20, 20, 100) };
    let mut out = Takeover {
        runs,
        hosts: n_hosts,
        sessions,
        ttl_ms,
        expired_ms: Vec::new(),
        first_ms: Vec::new(),
        held_ms: Vec::new(),
        synced_ms: Vec::new(),
        inexact: 0,
        misstored: 0,
        takeovers: 0.0,
        problems: Vec::new(),
    };
    for run in 0..runs {
        let server = MongoServer::start().await;
        let spec =
            ClusterSpec::fresh_on(&server.uri(), "c1").var(WASYNC_LEASE_TTL_MS, ttl_ms.to_string());
        let mut hosts = start_hosts(&spec, n_hosts).await;
        let ids: Vec<String> = (0..sessions).map(|i| format!("t{run}x{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            let seed = (run * 100 + i) as u64 + 1;
            create(&hosts[0], id, sim_account(chats, per_chat, fetch_ms, seed)).await;
        }
        // Kill once every session is the victim's and its sync has
        // committed part of its data.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut first_runs = HashMap::new();
        loop {
            let owned = leases(&hosts[1]).await;
            let mut all = true;
            for id in &ids {
                let r = run_of(&hosts[1], id).await;
                let mine = owned.get(id).is_some_and(|(h, _)| h == "h0");
                all &=
                    mine && r["status"] == "running" && r["checkpoint"].as_u64().unwrap_or(0) >= 1;
                if let Some(s) = r["syncId"].as_str() {
                    first_runs.insert(id.clone(), s.to_owned());
                }
            }
            if all {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "C1: the victim's syncs did not get under way within 60 s; leases {owned:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        hosts[0].kill().await;
        let killed = Instant::now();
        let killed_wall = now_ms();
        let ms = |t: Instant| t.duration_since(killed).as_secs_f64() * 1000.0;
        // The victim's leases as they will stay: nobody renews them now.
        let expiry = leases(&hosts[1])
            .await
            .values()
            .filter(|(h, _)| h == "h0")
            .map(|(_, e)| *e)
            .max();
        let deadline = killed + Duration::from_millis(3 * ttl_ms) + Duration::from_secs(60);
        let mut first = None;
        let held = loop {
            let owned = leases(&hosts[1]).await;
            let moved = ids
                .iter()
                .filter(|id| owned.get(*id).is_some_and(|(h, _)| h != "h0"))
                .count();
            if moved > 0 && first.is_none() {
                first = Some(Instant::now());
            }
            if moved == ids.len() {
                break Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "C1 run {run}: the survivors did not hold every session within {:?} of the kill; leases {owned:?}",
                deadline - killed
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut pending: Vec<&String> = ids.iter().collect();
        let synced = loop {
            let mut still = Vec::new();
            for id in pending {
                let r = run_of(&hosts[1], id).await;
                if r["status"] == "completed" {
                    let exact = r["totalMessagesSynced"].as_u64()
                        == Some(chats as u64 * per_chat as u64)
                        && r["syncId"].as_str() == first_runs.get(id).map(String::as_str);
                    if !exact {
                        eprintln!(
                            "C1 run {run}: {id} completed inexactly (want {} messages, run {:?} before the kill): {r}",
                            chats * per_chat,
                            first_runs.get(id)
                        );
                        out.inexact += 1;
                    }
                } else {
                    assert_ne!(r["status"], "failed", "C1: sync of {id} failed: {r}");
                    still.push(id);
                }
            }
            pending = still;
            if pending.is_empty() {
                break Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "C1 run {run}: syncs of {pending:?} not completed within {:?} of the kill",
                deadline - killed
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // What the store holds, beside what the runs say.
        let db = mongodb::Client::with_uri_str(server.uri())
            .await
            .expect("mongo client")
            .database(&spec.db);
        for id in &ids {
            let stored = db
                .collection::<mongodb::bson::Document>("messages")
                .count_documents(mongodb::bson::doc! { "sessionId": id.as_str() })
                .await
                .expect("count messages");
            if stored != u64::from(chats * per_chat) {
                eprintln!(
                    "C1 run {run}: {id} has {stored} messages stored, want {}",
                    chats * per_chat
                );
                out.misstored += 1;
            }
        }
        for h in &hosts[1..] {
            out.takeovers += metric_sum(h, "wasync_takeovers_total").await;
        }
        let expired = expiry.map_or(f64::NAN, |e| (e - killed_wall) as f64);
        let first = ms(first.unwrap_or(held));
        eprintln!(
            "C1 run {run}: leases ran out {expired:.0} ms after the kill; first held by a survivor at {first:.0} ms, all at {:.0} ms, synced at {:.0} ms",
            ms(held),
            ms(synced)
        );
        out.expired_ms.push(expired);
        out.first_ms.push(first);
        out.held_ms.push(ms(held));
        out.synced_ms.push(ms(synced));
        hosts.remove(0);
        out.problems.extend(teardown(&spec, hosts).await);
        drop(server);
    }
    out
}

/// C2 results.
pub struct CrossHost {
    /// Progress events the owner emitted (its highest `seq` + 1).
    pub events: u64,
    /// `sync_chats` events the client on the owner / the other host read.
    pub read_same: usize,
    pub read_cross: usize,
    /// Of `events`, not read by the client on the owner / the other host.
    pub missing_same: u64,
    pub missing_cross: u64,
    /// Events the other host's client read out of `seq` order.
    pub out_of_order: usize,
    /// Per event read by both: cross-host read − same-host read, ms.
    pub diff_p50: f64,
    pub diff_p99: f64,
    pub diff_max: f64,
    /// Same-host client: time between consecutive progress reads, ms.
    pub gap_p50: f64,
    pub gap_p99: f64,
    /// First to last progress read on the same-host client, ms.
    pub span_ms: f64,
    /// What went wrong around the measure (e.g. an unclean stop).
    pub problems: Vec<String>,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `host`'s `/ws` and joins `session`; returns once the
/// snapshot arrived, with the session's status in it.
async fn join(host: &ClusterHost, session: &str) -> (Ws, String) {
    let (mut ws, _) = tokio_tungstenite::connect_async(host.ws_url())
        .await
        .expect("ws connects");
    let join = json!({"event": "join-session", "data": {"sessionId": session}});
    ws.send(Message::Text(join.to_string().into()))
        .await
        .expect("join");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("C2: no snapshot from {} within 10 s", host.host_id))
            .expect("ws open")
            .expect("ws frame");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
            if v["event"] == "session_state" {
                let status = v["data"]["status"].as_str().unwrap_or("?").to_owned();
                return (ws, status);
            }
        }
    }
}

/// Reads `ws` until `sync_complete` (or `deadline`); every `sync_chats`
/// with the instant it was read, stamped before the frame is parsed.
async fn read_progress(mut ws: Ws, deadline: tokio::time::Instant) -> (Vec<(u64, Instant)>, bool) {
    let mut got = Vec::new();
    loop {
        let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await else {
            return (got, false);
        };
        let at = Instant::now();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
            match v["event"].as_str() {
                Some("sync_chats") => {
                    if let Some(seq) = v["data"]["seq"].as_u64() {
                        got.push((seq, at));
                    }
                }
                Some("sync_complete") => return (got, true),
                _ => {}
            }
        }
    }
}

/// C2: one session syncing on host A with a client on A and one on B,
/// both joined before the sync starts; per progress event, B's read time
/// minus A's.
pub async fn c2(quick: bool) -> CrossHost {
    let chats = if quick { 50 } else { 500 };
    let server = MongoServer::start().await;
    let spec = ClusterSpec::fresh_on(&server.uri(), "c2")
        .var(WASYNC_LEASE_TTL_MS, PRODUCTION_TTL_MS.to_string());
    let hosts = start_hosts(&spec, 2).await;
    let (a, b) = (&hosts[0], &hosts[1]);
    let mut account = sim_account(chats, 1, 1, 21);
    // A QR phase long enough for both clients to join before the sync.
    account["simulator"]["qrEveryMs"] = json!(10_000);
    account["simulator"]["scanAfterMs"] = json!(2_500);
    create(a, "xh", account).await;
    let (ws_a, status_a) = join(a, "xh").await;
    let (ws_b, status_b) = join(b, "xh").await;
    assert!(
        [&status_a, &status_b]
            .iter()
            .all(|s| !["ready", "syncing"].contains(&s.as_str())),
        "C2: joined too late (snapshots {status_a}, {status_b}): the sync may have started"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let task_a = tokio::spawn(read_progress(ws_a, deadline));
    let task_b = tokio::spawn(read_progress(ws_b, deadline));
    let (got_a, done_a) = task_a.await.expect("client on A");
    let (got_b, done_b) = task_b.await.expect("client on B");
    assert!(
        done_a && done_b,
        "C2: sync_complete not read within 120 s (A {done_a}, B {done_b}; {} and {} progress events read)",
        got_a.len(),
        got_b.len()
    );
    assert_eq!(
        leases(b).await.get("xh").map(|(h, _)| h.as_str()),
        Some("h0"),
        "C2: the session ran on A"
    );
    let events = got_a
        .iter()
        .chain(&got_b)
        .map(|(s, _)| s + 1)
        .max()
        .unwrap_or(0);
    let at_a: HashMap<u64, Instant> = got_a.iter().copied().collect();
    let mut diffs = Vec::new();
    for (seq, tb) in &got_b {
        if let Some(ta) = at_a.get(seq) {
            let d = if *tb >= *ta {
                tb.duration_since(*ta).as_secs_f64()
            } else {
                -ta.duration_since(*tb).as_secs_f64()
            };
            diffs.push(d * 1000.0);
        }
    }
    let diffs = sorted(diffs);
    let gaps = sorted(
        got_a
            .windows(2)
            .map(|w| w[1].1.duration_since(w[0].1).as_secs_f64() * 1000.0)
            .collect(),
    );
    let out_of_order = got_b.windows(2).filter(|w| w[1].0 <= w[0].0).count();
    let distinct = |got: &[(u64, Instant)]| {
        let mut s: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        s.sort_unstable();
        s.dedup();
        s.len() as u64
    };
    let span_ms = match (got_a.first(), got_a.last()) {
        (Some(f), Some(l)) => l.1.duration_since(f.1).as_secs_f64() * 1000.0,
        _ => 0.0,
    };
    let mut out = CrossHost {
        events,
        read_same: got_a.len(),
        read_cross: got_b.len(),
        missing_same: events - distinct(&got_a),
        missing_cross: events - distinct(&got_b),
        out_of_order,
        diff_p50: percentile(&diffs, 0.5),
        diff_p99: percentile(&diffs, 0.99),
        diff_max: diffs.last().copied().unwrap_or(f64::NAN),
        gap_p50: percentile(&gaps, 0.5),
        gap_p99: percentile(&gaps, 0.99),
        span_ms,
        problems: Vec::new(),
    };
    out.problems = teardown(&spec, hosts).await;
    drop(server);
    out
}

/// One step of C3.
pub struct Step {
    pub sessions: usize,
    pub p50: f64,
    pub p99: f64,
    /// Requests that did not answer 200.
    pub errors: usize,
    /// From the step's first create until every session was ready and its
    /// sync completed; `None` if that did not happen within the bound.
    pub settle_ms: Option<f64>,
    /// Leases the host lost so far (it stops a session whose lease it
    /// could not renew in time).
    pub leases_lost: f64,
    /// Live messages the host stored per second over the 3 s before the
    /// requests and during them (one per session per second is the load).
    pub live_per_sec: f64,
}

/// C3 results.
pub struct Capacity {
    pub requests: usize,
    /// What went wrong around the measure (e.g. an unclean stop).
    pub problems: Vec<String>,
    pub idle_p50: f64,
    pub idle_p99: f64,
    pub steps: Vec<Step>,
}

impl Capacity {
    /// The largest step that settled with p99 ≤ `ms` and no errors.
    pub fn largest_within(&self, ms: f64) -> Option<usize> {
        self.steps
            .iter()
            .filter(|s| s.settle_ms.is_some() && s.errors == 0 && s.p99 <= ms)
            .map(|s| s.sessions)
            .max()
    }
}

/// `requests` reads (`GET .../session/:id` and `GET .../chats` in turn)
/// over `ids`, 8 in flight from a client of its own; sorted latencies (ms)
/// and the number of non-200 answers.
async fn rest_latency(base: &str, ids: &[String], requests: usize) -> (Vec<f64>, usize) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let per_worker = requests / 8;
    let mut workers = Vec::new();
    for w in 0..8 {
        let (http, base, ids) = (http.clone(), base.to_owned(), ids.to_vec());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_worker);
            let mut errors = 0;
            for i in 0..per_worker {
                let id = &ids[(w * 7919 + i * 31) % ids.len()];
                let path = if (w + i) % 2 == 0 {
                    format!("{base}/whatsapp-web/session/{id}")
                } else {
                    format!("{base}/whatsapp-web/session/{id}/chats?limit=50")
                };
                let t = Instant::now();
                match http.get(path).send().await {
                    Ok(r) => {
                        let ok = r.status() == 200;
                        let _ = r.bytes().await;
                        errors += usize::from(!ok);
                    }
                    Err(_) => errors += 1,
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for w in workers {
        let (lat, e) = w.await.expect("worker");
        all.extend(lat);
        errors += e;
    }
    (sorted(all), errors)
}

/// Waits until `host` reports `ready` sessions ready and `completed` syncs
/// completed, up to `within`; the time it took, or `None`.
async fn settle(host: &ClusterHost, ready: f64, completed: f64, within: Duration) -> Option<f64> {
    let start = Instant::now();
    loop {
        let done = metric_sum(host, "wasync_syncs_completed_total").await;
        let up = ready_count(host).await;
        if done >= completed && up >= ready {
            return Some(start.elapsed().as_secs_f64() * 1000.0);
        }
        if start.elapsed() > within {
            eprintln!(
                "C3: not settled within {within:?}: {done} of {completed} syncs completed, {up} of {ready} sessions ready"
            );
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Sessions `host` reports `ready` in `/metrics`.
async fn ready_count(host: &ClusterHost) -> f64 {
    let Ok(r) = host.http.get(host.url("/metrics")).send().await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("wasync_sessions{") && l.contains("status=\"ready\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// C3: one host on a fresh MongoDB-wire server; sessions added in steps,
/// each a small account that keeps producing live messages after its sync;
/// REST latency at each step, beside the same reads on the host with one
/// idle session.
pub async fn c3(quick: bool) -> Capacity {
    let (steps, requests): (&[usize], usize) = if quick {
        (&[10, 20], 80)
    } else {
        (&[50, 100, 200, 400], 400)
    };
    let server = MongoServer::start().await;
    let max = steps.iter().max().copied().unwrap_or(0) + 10;
    let spec = ClusterSpec::fresh_on(&server.uri(), "c3")
        .var(WASYNC_LEASE_TTL_MS, PRODUCTION_TTL_MS.to_string())
        .var(WASYNC_MAX_SESSIONS, max.to_string());
    let host = ClusterHost::start(&spec, "h0", None).await;
    let account = |seed: u64, live: bool| {
        let mut a = sim_account(5, 20, 2, seed);
        if live {
            a["simulator"]["liveMessageEveryMs"] = json!(1000);
        }
        a
    };
    create(&host, "idle", account(1, false)).await;
    settle(&host, 1.0, 1.0, Duration::from_secs(60))
        .await
        .expect("C3: the idle session did not sync within 60 s");
    let (idle, idle_errors) = rest_latency(&host.base, &["idle".to_owned()], requests).await;
    assert_eq!(idle_errors, 0, "C3: reads failed on the idle host");
    let mut ids: Vec<String> = Vec::new();
    let mut out = Capacity {
        requests,
        idle_p50: percentile(&idle, 0.5),
        idle_p99: percentile(&idle, 0.99),
        steps: Vec::new(),
        problems: Vec::new(),
    };
    for &n in steps {
        // The step's creates and its settling share one bound.
        let started = Instant::now();
        let bound = Duration::from_secs(60) + Duration::from_millis(500 * (n - ids.len()) as u64);
        let mut created_all = true;
        while ids.len() < n {
            let id = format!("live{}", ids.len());
            let (status, body) = host
                .post(
                    &format!("/whatsapp-web/session/{id}"),
                    account(ids.len() as u64 + 2, true),
                )
                .await;
            if status != 201 || started.elapsed() > bound {
                eprintln!(
                    "C3: stopped creating at {} sessions after {:?} (create {id}: {status} {body})",
                    ids.len(),
                    started.elapsed()
                );
                created_all = status == 201 && ids.len() + 1 == n;
                if status == 201 {
                    ids.push(id);
                }
                break;
            }
            ids.push(id);
        }
        let left = bound.saturating_sub(started.elapsed());
        let total = ids.len() as f64 + 1.0;
        let settle_ms = match settle(&host, total, total, left).await {
            Some(_) if created_all => Some(started.elapsed().as_secs_f64() * 1000.0),
            _ => None,
        };
        // Let every new session's live messages start; the rate of stored
        // live messages is taken over this wait and the requests.
        let live0 = metric_sum(&host, "wasync_live_messages_total").await;
        let t = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (lat, errors) = rest_latency(&host.base, &ids, requests).await;
        let live1 = metric_sum(&host, "wasync_live_messages_total").await;
        let live_per_sec = (live1 - live0) / t.elapsed().as_secs_f64();
        let step = Step {
            sessions: ids.len(),
            p50: percentile(&lat, 0.5),
            p99: percentile(&lat, 0.99),
            errors,
            settle_ms,
            leases_lost: metric_sum(&host, "wasync_leases_lost_total").await,
            live_per_sec,
        };
        eprintln!(
            "C3 {} sessions: p50 {:.2} ms p99 {:.2} ms, {errors} errors, settled in {:?} ms, {live_per_sec:.0} live msgs/s stored, {} leases lost so far",
            step.sessions, step.p50, step.p99, step.settle_ms, step.leases_lost
        );
        let give_up = step.settle_ms.is_none() || step.p99 > 1000.0;
        out.steps.push(step);
        if give_up {
            break;
        }
    }
    out.problems = teardown(&spec, vec![host]).await;
    drop(server);
    out
}
