//! The cluster, with real host processes on one MongoDB-wire server and the
//! real RabbitMQ: placement, exactly one owner per session, commands and
//! live events through any host, takeover after `SIGKILL`, fencing of a
//! host paused past its lease (`SIGSTOP`), self-stop when cut off from
//! MongoDB, and one host per data directory.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use wasync_tests::amqp::QueueConsumer;
use wasync_tests::cluster::{ClusterHost, ClusterSpec, TEST_LEASE_TTL_MS, sim_account, wait_until};
use wasync_tests::proxy::TcpProxy;

async fn database(spec: &ClusterSpec) -> mongodb::Database {
    mongodb::Client::with_uri_str(&spec.mongodb_uri)
        .await
        .expect("mongo client")
        .database(&spec.db)
}

async fn start_hosts(spec: &ClusterSpec, n: usize) -> Vec<ClusterHost> {
    let mut hosts = Vec::new();
    for i in 0..n {
        hosts.push(ClusterHost::start(spec, &format!("h{i}"), None).await);
    }
    hosts
}

/// Messages stored for `session`, and whether any message id repeats.
async fn stored_messages(db: &mongodb::Database, session: &str) -> (u64, bool) {
    let docs: Vec<Document> = db
        .collection::<Document>("messages")
        .find(doc! { "sessionId": session })
        .projection(doc! { "messageId": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect");
    let mut seen = HashSet::new();
    let dup = docs
        .iter()
        .any(|d| !seen.insert(d.get_str("messageId").unwrap_or_default().to_owned()));
    (docs.len() as u64, dup)
}

async fn stored_chats(db: &mongodb::Database, session: &str) -> u64 {
    db.collection::<Document>("chats")
        .count_documents(doc! { "sessionId": session })
        .await
        .expect("count")
}

/// The run of `session` once completed (read through `host`).
async fn completed_run(host: &ClusterHost, session: &str, within: Duration) -> Value {
    let path = format!("/whatsapp-web/session/{session}/sync");
    wait_until(within, &format!("sync of {session} completes"), || async {
        let (status, run) = host.get(&path).await;
        assert_ne!(run["status"], "failed", "sync of {session} failed: {run}");
        (status == 200 && run["status"] == "completed", run)
    })
    .await
}

/// The lease owner of every session, as `host` sees the cluster.
async fn owners(host: &ClusterHost) -> HashMap<String, (String, u64)> {
    let view = host.cluster().await;
    let mut out = HashMap::new();
    for h in view["hosts"].as_array().cloned().unwrap_or_default() {
        let id = h["hostId"].as_str().unwrap_or_default().to_owned();
        for l in h["leases"].as_array().cloned().unwrap_or_default() {
            out.insert(
                l["sessionId"].as_str().unwrap_or_default().to_owned(),
                (id.clone(), l["epoch"].as_u64().unwrap_or(0)),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_thirty_sessions_each_run_on_exactly_one_host() {
    let spec = ClusterSpec::fresh("place");
    let hosts = start_hosts(&spec, 3).await;
    let db = database(&spec).await;
    let ids: Vec<String> = (0..30).map(|i| format!("s{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let host = &hosts[(i * 7 + 1) % 3];
        let (status, body) = host
            .post(
                &format!("/whatsapp-web/session/{id}"),
                sim_account(4, 25, 5, i as u64 + 1),
            )
            .await;
        assert_eq!(status, 201, "create {id} on {}: {body}", host.host_id);
    }
    // Sample the actors of every host while the syncs run: a session never
    // has an actor on two hosts, and its lease names the host it runs on.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done: HashSet<String> = HashSet::new();
    while done.len() < ids.len() {
        let mut seen: HashMap<String, String> = HashMap::new();
        for h in &hosts {
            for s in h.actors().await {
                if let Some(other) = seen.insert(s.clone(), h.host_id.clone()) {
                    panic!("{s} has actors on {other} and {}", h.host_id);
                }
            }
        }
        let leases = owners(&hosts[0]).await;
        for (s, host) in &seen {
            if let Some((owner, _)) = leases.get(s) {
                assert_eq!(
                    owner, host,
                    "{s} runs on {host} but its lease names {owner}"
                );
            }
        }
        for id in &ids {
            if done.contains(id) {
                continue;
            }
            let (_, run) = hosts[2]
                .get(&format!("/whatsapp-web/session/{id}/sync"))
                .await;
            if run["status"] == "completed" {
                done.insert(id.clone());
            }
        }
        assert!(Instant::now() < deadline, "syncs not done: {done:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every session is held (a renewal that a loaded machine delayed past
    // its deadline hands a session over; it is held again a moment later).
    let leases = {
        let ids = ids.clone();
        let hosts = &hosts;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = owners(&hosts[1]).await;
            if ids.iter().all(|id| o.contains_key(id)) {
                break o;
            }
            assert!(
                Instant::now() < deadline,
                "sessions without a lease: {:?}",
                ids.iter()
                    .filter(|id| !o.contains_key(*id))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut per_host: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        let (owner, epoch) = leases
            .get(id)
            .unwrap_or_else(|| panic!("{id} has no lease"));
        assert!(*epoch >= 1, "{id}: epoch {epoch}");
        *per_host.entry(owner.clone()).or_default() += 1;
        let (n, dup) = stored_messages(&db, id).await;
        assert_eq!((n, dup), (100, false), "{id}: messages exact, none twice");
        assert_eq!(stored_chats(&db, id).await, 4, "{id}");
    }
    assert_eq!(
        per_host.len(),
        3,
        "creates land where they are received: {per_host:?}"
    );
    let view = hosts[0].cluster().await;
    assert_eq!(view["hosts"].as_array().unwrap().len(), 3, "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_client_on_another_host_sees_the_whole_sequence() {
    let spec = ClusterSpec::fresh("fanout");
    let hosts = start_hosts(&spec, 2).await;
    let (a, b) = (&hosts[0], &hosts[1]);
    let mut account = sim_account(5, 10, 20, 3);
    account["simulator"]["qrEveryMs"] = json!(1000);
    account["simulator"]["scanAfterMs"] = json!(1500);
    let (status, body) = b.post("/whatsapp-web/session/seen", account).await;
    assert_eq!(status, 201, "{body}");
    let mut ws = a.ws().await;
    let snap = ws.join("seen").await;
    assert_eq!(snap["sessionId"], "seen");
    let events = ws.until("sync_complete").await;
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for want in ["authenticated", "ready", "sync_chats", "sync_complete"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let seqs: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "sync_chats")
        .filter_map(|e| e["data"]["seq"].as_u64())
        .collect();
    assert_eq!(seqs.first(), Some(&0), "starts at start: {seqs:?}");
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "every progress event, in order"
    );
    let phases: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "sync_chats")
        .filter_map(|e| e["data"]["phase"].as_str())
        .collect();
    assert_eq!(phases.first(), Some(&"start"));
    assert_eq!(phases.last(), Some(&"done"));
    for e in events.iter().filter(|e| e["event"] != "session_state") {
        assert_eq!(e["data"]["hostId"], "h1", "events come from the owner: {e}");
    }
    assert!(a.metric("wasync_cluster_events_in_total").await >= seqs.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_commands_sent_to_a_non_owner_act_on_the_owner() {
    let spec = ClusterSpec::fresh("forward");
    let hosts = start_hosts(&spec, 2).await;
    let (owner, other) = (&hosts[0], &hosts[1]);
    let mut account = sim_account(3, 10, 0, 5);
    account["autoSync"] = json!(false);
    account["simulator"]["qrEveryMs"] = json!(2000);
    account["simulator"]["scanAfterMs"] = json!(2500);
    let (status, body) = owner
        .post("/whatsapp-web/session/fw", account.clone())
        .await;
    assert_eq!(status, 201, "{body}");
    // The owner shows its first code once its provider has started (on a
    // loaded machine, not at once).
    wait_until(Duration::from_secs(20), "the first QR", || async {
        let (_, s) = owner.get("/whatsapp-web/session/fw").await;
        (s["status"] == "qr", s)
    })
    .await;
    // QR through the other host: the owner's pending code.
    let resp = other
        .http
        .get(other.url("/whatsapp-web/session/fw/qr"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-wasync-served-by"], "h0");
    let qr: Value = resp.json().await.unwrap();
    assert!(qr["qr"].as_str().is_some_and(|q| !q.is_empty()), "{qr}");
    // A create of the same session through the other host is the owner's
    // idempotent answer.
    let (status, _) = other.post("/whatsapp-web/session/fw", account).await;
    assert_eq!(status, 200);
    wait_until(Duration::from_secs(20), "ready", || async {
        let (_, s) = other.get("/whatsapp-web/session/fw").await;
        (s["status"] == "ready", s)
    })
    .await;
    // A manual sync through the other host runs on the owner.
    let (status, body) = other
        .post(
            "/whatsapp-web/session/fw/sync-chats",
            json!({"limitPerChat": 5}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let run = completed_run(other, "fw", Duration::from_secs(20)).await;
    assert_eq!(run["syncId"], body["syncId"]);
    assert_eq!(run["totalMessagesSynced"], 15);
    assert_eq!(owner.actors().await, vec!["fw".to_string()]);
    assert!(other.actors().await.is_empty());
    assert!(other.metric("wasync_forwarded_requests_total").await >= 3.0);
    // DELETE through the other host stops the owner's actor.
    let (status, body) = other.delete("/whatsapp-web/session/fw").await;
    assert_eq!(status, 200, "{body}");
    assert!(owner.actors().await.is_empty());
    let (_, s) = owner.get("/whatsapp-web/session/fw").await;
    assert_eq!(s["status"], "stopped");
    // Stopped sessions are nobody's: no host takes them up.
    tokio::time::sleep(Duration::from_millis(TEST_LEASE_TTL_MS + 1500)).await;
    assert!(owner.actors().await.is_empty() && other.actors().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_killed_hosts_syncs_resume_elsewhere_and_complete_exactly() {
    let spec = ClusterSpec::fresh("takeover");
    let mut consumer = QueueConsumer::start(&spec.queue).await;
    let mut hosts = start_hosts(&spec, 3).await;
    let db = database(&spec).await;
    let ids: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let (status, body) = hosts[0]
            .post(
                &format!("/whatsapp-web/session/{id}"),
                sim_account(20, 30, 150, 100 + i as u64),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // Kill the owner once every sync has written part of its data.
    wait_until(Duration::from_secs(30), "every sync under way", || async {
        let mut all = true;
        let mut last = Value::Null;
        for id in &ids {
            let (_, run) = hosts[1]
                .get(&format!("/whatsapp-web/session/{id}/sync"))
                .await;
            all &= run["status"] == "running" && run["checkpoint"].as_u64().unwrap_or(0) >= 1;
            last = run;
        }
        (all, last)
    })
    .await;
    let mut first_runs = HashMap::new();
    for id in &ids {
        let (_, run) = hosts[1]
            .get(&format!("/whatsapp-web/session/{id}/sync"))
            .await;
        first_runs.insert(id.clone(), run["syncId"].as_str().unwrap().to_owned());
    }
    hosts[0].kill().await;
    let killed = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "survivors hold every session",
        || async {
            let o = owners(&hosts[1]).await;
            let ok = ids
                .iter()
                .all(|id| o.get(id).is_some_and(|(h, _)| h == "h1" || h == "h2"));
            (ok, json!(format!("{o:?}")))
        },
    )
    .await;
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(30), "takeover took {took:?}");
    for id in &ids {
        let run = completed_run(&hosts[2], id, Duration::from_secs(90)).await;
        assert_eq!(
            run["syncId"],
            first_runs[id].as_str(),
            "{id}: the same run resumed"
        );
        assert_eq!(run["totalMessagesSynced"], 600, "{id}: {run}");
        let (n, dup) = stored_messages(&db, id).await;
        assert_eq!((n, dup), (600, false), "{id}: exact, none twice");
        assert_eq!(stored_chats(&db, id).await, 20, "{id}");
    }
    // Every run's session_ready reached the queue; a repeat has the same id.
    let want: HashSet<String> = ids.iter().map(|s| s.to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        consumer.settle(Duration::from_millis(300)).await;
        let seen: HashSet<String> = consumer
            .seen
            .iter()
            .filter_map(|r| r.body["data"]["sessionId"].as_str().map(str::to_owned))
            .collect();
        if want.is_subset(&seen) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "session_ready missing for {:?}",
            want.difference(&seen).collect::<Vec<_>>()
        );
    }
    let mut ids_per_session: HashMap<String, HashSet<String>> = HashMap::new();
    for r in &consumer.seen {
        let s = r.body["data"]["sessionId"].as_str().unwrap_or_default();
        ids_per_session
            .entry(s.to_owned())
            .or_default()
            .insert(r.message_id.clone().unwrap_or_default());
        assert_eq!(
            r.body["data"]["syncId"].as_str(),
            first_runs.get(s).map(String::as_str),
            "{s}: announces the resumed run"
        );
        let by = r.body["data"]["hostId"].as_str().unwrap_or_default();
        assert!(
            by == "h1" || by == "h2",
            "{s}: completed by a survivor, not {by:?}"
        );
    }
    for (s, mids) in ids_per_session {
        assert_eq!(
            mids.len(),
            1,
            "{s}: duplicates only with the same message_id"
        );
    }
    let takeovers = hosts[1].metric("wasync_takeovers_total").await
        + hosts[2].metric("wasync_takeovers_total").await;
    assert_eq!(takeovers, 10.0);
    consumer.delete().await;
}

/// Polls `/sync` of `session` until the loop gives up; used while a host
/// is frozen, so it must only read.
async fn run_of(host: &ClusterHost, session: &str) -> Value {
    host.get(&format!("/whatsapp-web/session/{session}/sync"))
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_paused_owner_writes_nothing_after_losing_its_lease() {
    let spec = ClusterSpec::fresh("pause");
    let hosts = start_hosts(&spec, 2).await;
    let (a, b) = (&hosts[0], &hosts[1]);
    let db = database(&spec).await;
    let (status, body) = a
        .post("/whatsapp-web/session/zz", sim_account(30, 20, 150, 9))
        .await;
    assert_eq!(status, 201, "{body}");
    wait_until(Duration::from_secs(20), "sync under way", || async {
        let run = run_of(b, "zz").await;
        (run["checkpoint"].as_u64().unwrap_or(0) >= 2, run)
    })
    .await;
    a.pause();
    let took_over = wait_until(
        Duration::from_secs(30),
        "the other host takes the session",
        || async {
            let o = owners(b).await;
            let ok = o.get("zz").is_some_and(|(h, _)| h == "h1");
            (ok, json!(o.get("zz").map(|(h, e)| format!("{h}@{e}"))))
        },
    )
    .await;
    let new_epoch = owners(b).await["zz"].1;
    // Let the new owner write under its epoch before the old one wakes.
    wait_until(Duration::from_secs(10), "new owner writes", || async {
        let run = run_of(b, "zz").await;
        (run["epoch"].as_u64() == Some(new_epoch), run)
    })
    .await;
    a.resume();
    let run = completed_run(b, "zz", Duration::from_secs(60)).await;
    assert_eq!(run["epoch"].as_u64(), Some(new_epoch), "{took_over}: {run}");
    assert_eq!(run["totalMessagesSynced"], 600);
    let (n, dup) = stored_messages(&db, "zz").await;
    assert_eq!((n, dup), (600, false));
    // The old owner stopped the session by itself and wrote nothing more:
    // records carry the new epoch, and every event of the session is the
    // new owner's.
    wait_until(Duration::from_secs(10), "old owner let go", || async {
        let actors = a.actors().await;
        (actors.is_empty(), json!(actors))
    })
    .await;
    assert!(a.metric("wasync_leases_lost_total").await >= 1.0);
    let rec = db
        .collection::<Document>("sessions")
        .find_one(doc! { "_id": "zz" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.get_i64("epoch").unwrap() as u64, new_epoch);
    let events: Vec<Document> = db
        .collection::<Document>("outbox")
        .find(doc! { "sessionId": "zz" })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "one session_ready");
    let data = events[0].get_document("data").unwrap();
    assert_eq!(data.get_str("hostId").unwrap(), "h1");
    // And it stays with the new owner.
    tokio::time::sleep(Duration::from_millis(TEST_LEASE_TTL_MS)).await;
    assert_eq!(owners(a).await["zz"].0, "h1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_host_cut_off_from_mongodb_stops_its_sessions_within_the_ttl() {
    let spec = ClusterSpec::fresh("cut");
    let upstream: std::net::SocketAddr = spec
        .mongodb_uri
        .trim_start_matches("mongodb://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .expect("test URI is mongodb://ip:port");
    let proxy = TcpProxy::start(upstream).await;
    let via = format!(
        "mongodb://{}/?directConnection=true&serverSelectionTimeoutMS=1000&connectTimeoutMS=1000",
        proxy.addr()
    );
    let a = ClusterHost::start(&spec, "h0", Some(&via)).await;
    let b = ClusterHost::start(&spec, "h1", None).await;
    let (status, body) = a
        .post("/whatsapp-web/session/cut", sim_account(3, 5, 0, 4))
        .await;
    assert_eq!(status, 201, "{body}");
    completed_run(&b, "cut", Duration::from_secs(20)).await;
    assert_eq!(a.metric("wasync_leases_held").await, 1.0);
    proxy.cut();
    let cut_at = Instant::now();
    wait_until(
        Duration::from_millis(3 * TEST_LEASE_TTL_MS),
        "the cut-off host stops its session",
        || async {
            let held = a.metric("wasync_leases_held").await;
            (held == 0.0, json!(format!("{held} {}", a.log())))
        },
    )
    .await;
    let stopped = cut_at.elapsed();
    assert!(
        stopped < Duration::from_millis(TEST_LEASE_TTL_MS),
        "stopped after {stopped:?}; log:\n{}",
        a.log()
    );
    wait_until(
        Duration::from_secs(20),
        "the other host runs it",
        || async {
            let actors = b.actors().await;
            (actors == vec!["cut".to_string()], json!(actors))
        },
    )
    .await;
    proxy.restore();
    tokio::time::sleep(Duration::from_millis(TEST_LEASE_TTL_MS)).await;
    assert_eq!(owners(&a).await["cut"].0, "h1", "it stays where it went");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_create_past_capacity_lands_on_the_host_with_room() {
    let spec = ClusterSpec::fresh("capacity");
    let one = HashMap::from([("WASYNC_MAX_SESSIONS".to_string(), "1".to_string())]);
    let full = ClusterHost::start_with(&spec, "h0", None, &one).await;
    let roomy = ClusterHost::start(&spec, "h1", None).await;
    // Heartbeats carry each host's room; wait until the full host knows.
    wait_until(Duration::from_secs(10), "both hosts listed", || async {
        let v = full.cluster().await;
        (v["hosts"].as_array().map_or(0, Vec::len) == 2, v)
    })
    .await;
    let (status, body) = full
        .post("/whatsapp-web/session/c1", sim_account(2, 3, 0, 1))
        .await;
    assert_eq!(status, 201, "{body}");
    let resp = full
        .http
        .post(full.url("/whatsapp-web/session/c2"))
        .json(&sim_account(2, 3, 0, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.headers()["x-wasync-served-by"],
        "h1",
        "placed on the host with room"
    );
    assert_eq!(full.actors().await, vec!["c1".to_string()]);
    assert_eq!(roomy.actors().await, vec!["c2".to_string()]);
    // With no room anywhere the answer says so.
    drop(roomy);
    let spec2 = ClusterSpec::fresh("nocapacity");
    let solo = ClusterHost::start_with(&spec2, "h0", None, &one).await;
    let (status, _) = solo
        .post("/whatsapp-web/session/d1", sim_account(1, 1, 0, 1))
        .await;
    assert_eq!(status, 201);
    let (status, body) = solo
        .post("/whatsapp-web/session/d2", sim_account(1, 1, 0, 1))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "at_capacity");
    assert_eq!(body["capacity"], 1);
}

/// A webdriver session logged in on one host runs on another after the
/// first is killed, without a new QR code: the periodic save of its login
/// (GridFS) is restored before the new host launches Chromium.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_webdriver_login_survives_its_host_being_killed() {
    use crate::webdriver::{
        LONG, assert_no_processes_left, create_body, is, processes_under, require_browser, wait_for,
    };
    require_browser();
    let fixture = wasync_tests::whatsapp_fixture::WhatsAppFixture::start().await;
    let spec = ClusterSpec::fresh("wdmove")
        .var("WHATSAPP_WEB_URL", fixture.url.clone())
        .var("WASYNC_LOGIN_SAVE_SECS", "1");
    let db = database(&spec).await;
    let mut a = ClusterHost::start(&spec, "h0", None).await;
    let b = ClusterHost::start(&spec, "h1", None).await;
    let (status, body) = a
        .post("/whatsapp-web/session/wdk", create_body(5, json!({})))
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ws = a.ws().await;
    let snap = ws.join("wdk").await;
    if snap["qr"].is_null() {
        wait_for(&mut ws, LONG, "qr", is("qr")).await;
    }
    fixture.scan().await;
    wait_for(&mut ws, LONG, "ready", is("ready")).await;
    // The save at ready, then at least one periodic save after it.
    let files = db.collection::<Document>("logins.files");
    wait_until(
        Duration::from_secs(LONG),
        "two saves of the login",
        || async {
            let n = files
                .count_documents(doc! { "_id.session": "wdk" })
                .await
                .unwrap_or(0);
            let saves = a.log().matches("login saved").count();
            (n >= 1 && saves >= 2, json!(saves))
        },
    )
    .await;
    a.kill().await;
    // A SIGKILLed host leaves its browser behind; a real machine loss
    // takes it too.
    for (pid, _) in processes_under(a.data_dir()) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    // Joined on the survivor before it takes over: its snapshot is the
    // stored state; the events that follow are the new actor's.
    let mut ws = b.ws().await;
    ws.join("wdk").await;
    let events = wait_for(&mut ws, LONG, "ready on the other host", |e| {
        e["event"] == "ready" && e["data"]["hostId"] == "h1"
    })
    .await;
    assert!(
        events.iter().all(|e| e["event"] != "qr"),
        "a QR code on the new host: {events:?}"
    );
    assert_eq!(b.actors().await, vec!["wdk".to_string()]);
    let mut b = b;
    let dir = b.data_dir().to_path_buf();
    b.stop().await;
    assert_no_processes_left(&dir).await;
}

#[tokio::test]
async fn a_second_host_on_one_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = |port: u16| {
        std::process::Command::new(wasync_tests::wasync_binary())
            .env("WASYNC_LISTEN", format!("127.0.0.1:{port}"))
            .env("WASYNC_DATA_DIR", dir.path())
            .env_remove("MONGODB_URI")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let port = |_: ()| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let first_port = port(());
    let mut first = run(first_port);
    let http = reqwest::Client::new();
    wait_until(Duration::from_secs(20), "first host serves", || async {
        let ok = http
            .get(format!("http://127.0.0.1:{first_port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        (ok, Value::Null)
    })
    .await;
    let second = run(port(())).wait_with_output().expect("second host ends");
    let _ = first.kill();
    let _ = first.wait();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("in use by another running wasync host") && err.contains("WASYNC_DATA_DIR"),
        "{err}"
    );
}
