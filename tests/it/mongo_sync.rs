//! The sync flow end to end with the MongoDB store (a real host over HTTP
//! and WebSocket, a real MongoDB-wire server): stored documents, injected
//! write failures, and a server that stops and comes back while the host
//! keeps running.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use serde_json::{Value, json};
use wasync::config::{MONGODB_DB, MONGODB_URI};
use wasync_tests::mongo::{
    MongoServer, fail_command, fail_command_off, fail_commands, fresh_db_name, test_mongodb_uri,
};
use wasync_tests::{HostOptions, TestHost, fast_tuning};

fn fast(mut sim: Value) -> Value {
    let o = sim.as_object_mut().unwrap();
    o.entry("qrEveryMs").or_insert(json!(40));
    o.entry("scanAfterMs").or_insert(json!(100));
    o.entry("fetchLatencyMs").or_insert(json!(0));
    sim
}

/// `uri` with extra query options appended.
fn with_options(uri: &str, options: &str) -> String {
    let base = uri.trim_end_matches('/');
    if base.contains('?') {
        format!("{base}&{options}")
    } else {
        format!("{base}/?{options}")
    }
}

async fn mongo_host(uri: &str, db: &str) -> TestHost {
    TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(MONGODB_URI, uri)
        .var(MONGODB_DB, db),
    )
    .await
}

async fn raw_db(uri: &str, db: &str) -> mongodb::Database {
    mongodb::Client::with_uri_str(uri)
        .await
        .unwrap()
        .database(db)
}

async fn docs(db: &mongodb::Database, coll: &str, filter: Document) -> Vec<Document> {
    db.collection::<Document>(coll)
        .find(filter)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// Every message of the session exactly once, counted per chat.
async fn assert_exact_messages(db: &mongodb::Database, session: &str, expect: &[(String, u64)]) {
    let msgs = docs(db, "messages", doc! {"sessionId": session}).await;
    let mut seen = HashSet::new();
    for m in &msgs {
        let id = m.get_str("messageId").unwrap();
        assert!(seen.insert(id.to_owned()), "message {id} stored twice");
    }
    let total: u64 = expect.iter().map(|(_, n)| n).sum();
    assert_eq!(msgs.len() as u64, total, "messages of {session}");
    let chats = docs(db, "chats", doc! {"sessionId": session}).await;
    for (chat, n) in expect {
        let stored = msgs
            .iter()
            .filter(|m| m.get_str("chatId").unwrap() == chat)
            .count() as u64;
        assert_eq!(stored, *n, "messages of chat {chat}");
        let c = chats
            .iter()
            .find(|c| c.get_str("chatId").unwrap() == chat)
            .unwrap_or_else(|| panic!("chat {chat} not stored"));
        assert_eq!(
            c.get_i64("messageCount").unwrap() as u64,
            *n,
            "messageCount of {chat}"
        );
    }
}

/// Chat ids and their expected message counts, newest activity first, as
/// the REST API lists them.
async fn chat_counts(host: &TestHost, session: &str, per_chat: &[u64]) -> Vec<(String, u64)> {
    let (status, body) = host
        .get(&format!("/whatsapp-web/session/{session}/chats"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["chats"]
        .as_array()
        .unwrap()
        .iter()
        .zip(per_chat)
        .map(|(c, n)| (c["id"].as_str().unwrap().to_owned(), *n))
        .collect()
}

#[tokio::test]
async fn mongo_sync_flow_stores_design_documents() {
    let uri = test_mongodb_uri();
    let db = fresh_db_name("flow");
    let host = mongo_host(&uri, &db).await;
    let (status, ready) = host.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["store"]["kind"], "mongo");

    let mut ws = host.ws().await;
    host.create_sim(
        "flow",
        fast(json!({"chats": 3, "messagesPerChat": [50, 75, 100]})),
    )
    .await;
    ws.join("flow").await;
    let events = ws.until("sync_complete").await;
    let progress: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "sync_chats")
        .map(|e| &e["data"])
        .collect();
    assert_eq!(progress.len(), 9, "{progress:#?}");
    let synced: Vec<u64> = progress
        .iter()
        .filter(|p| p["phase"] == "messages")
        .map(|p| p["messagesSynced"].as_u64().unwrap())
        .collect();
    assert_eq!(synced, [50, 75, 100]);
    assert_eq!(events.last().unwrap()["data"]["totalMessagesSynced"], 225);

    // REST reads back what MongoDB holds.
    let (_, chats) = host.get("/whatsapp-web/session/flow/chats").await;
    let chats = chats["chats"].as_array().unwrap().clone();
    assert_eq!(chats.len(), 3);
    for (chat, n) in chats.iter().zip([50, 75, 100]) {
        assert_eq!(chat["messageCount"], n, "{chat}");
        let id = chat["id"].as_str().unwrap();
        let (status, page) = host
            .get(&format!(
                "/whatsapp-web/session/flow/chats/{id}/messages?limit=1000"
            ))
            .await;
        assert_eq!(status, 200);
        let msgs = page["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), n);
        assert!(
            msgs.windows(2)
                .all(|w| w[0]["timestamp"].as_i64() > w[1]["timestamp"].as_i64())
        );
    }

    // The documents themselves (DESIGN §6).
    let raw = raw_db(&uri, &db).await;
    let expect = chat_counts(&host, "flow", &[50, 75, 100]).await;
    assert_exact_messages(&raw, "flow", &expect).await;
    let m = &docs(&raw, "messages", doc! {"sessionId": "flow"}).await[0];
    for k in [
        "sessionId",
        "messageId",
        "chatId",
        "from",
        "to",
        "author",
        "body",
        "type",
        "timestamp",
        "fromMe",
        "hasMedia",
        "ack",
        "tags",
        "attributes",
    ] {
        assert!(m.contains_key(k), "message field {k} missing: {m}");
    }
    assert!(matches!(m.get("timestamp"), Some(Bson::DateTime(_))), "{m}");
    let c = &docs(&raw, "chats", doc! {"sessionId": "flow"}).await[0];
    for k in [
        "chatId",
        "name",
        "isGroup",
        "unreadCount",
        "archived",
        "pinned",
        "lastMessageAt",
        "syncedAt",
        "messageCount",
    ] {
        assert!(c.contains_key(k), "chat field {k} missing: {c}");
    }
    assert!(matches!(c.get("syncedAt"), Some(Bson::DateTime(_))), "{c}");
    let session = docs(&raw, "sessions", doc! {"_id": "flow"}).await;
    assert_eq!(session.len(), 1);
    assert!(matches!(
        session[0].get("createdAt"),
        Some(Bson::DateTime(_))
    ));
    let runs = docs(&raw, "sync_runs", doc! {"sessionId": "flow"}).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].get_str("status").unwrap(), "completed");
    assert_eq!(runs[0].get_i64("totalMessagesSynced").unwrap(), 225);
    assert!(matches!(runs[0].get("finishedAt"), Some(Bson::DateTime(_))));
    let outbox = docs(&raw, "outbox", doc! {"sessionId": "flow"}).await;
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0].get_str("pattern").unwrap(), "session_ready");
    assert_eq!(
        outbox[0]
            .get_document("data")
            .unwrap()
            .get_array("chats")
            .unwrap()
            .len(),
        3
    );

    // A manual re-sync updates, never duplicates.
    let (status, body) = host
        .post("/whatsapp-web/session/flow/sync-chats", json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    let run = host.wait_sync_done("flow").await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_exact_messages(&raw, "flow", &expect).await;
    host.stop().await;
    let _ = raw.drop().await;
}

/// Waits for the first `messages` progress event, so a failpoint armed
/// after it lands in the middle of the sync.
async fn until_first_commit(ws: &mut wasync_tests::WsClient) {
    loop {
        let ev = ws.recv().await;
        if ev["event"] == "sync_chats" && ev["data"]["phase"] == "messages" {
            return;
        }
        assert_ne!(ev["event"], "sync_complete", "the sync ended too soon");
    }
}

#[tokio::test]
async fn mongo_failpoints_mid_sync_then_resync_is_exact() {
    let _failpoint = wasync_tests::mongo::fail_command_lock(&test_mongodb_uri()).await;
    let uri = test_mongodb_uri();
    let db = fresh_db_name("fpsync");
    let app = format!("wasync-{db}");
    let host = mongo_host(&with_options(&uri, &format!("appName={app}")), &db).await;
    let raw = raw_db(&uri, &db).await;
    let per_chat = [40u64, 30, 20, 10];
    // Slow fetches, so every chat is its own commit and there is a "middle".
    let sim = fast(json!({"chats": 4, "messagesPerChat": per_chat, "fetchLatencyMs": 150}));

    // A few failures mid-sync: the engine retries and the sync completes.
    let mut ws = host.ws().await;
    host.create_sim("fp", sim).await;
    ws.join("fp").await;
    until_first_commit(&mut ws).await;
    fail_commands(&uri, &["insert", "update"], 2, &app).await;
    ws.until("sync_complete").await;
    fail_command_off(&uri).await;
    let run = host.wait_sync_done("fp").await;
    assert_eq!(run["status"], "completed", "{run}");
    let expect = chat_counts(&host, "fp", &per_chat).await;
    assert_exact_messages(&raw, "fp", &expect).await;

    // Failures that outlast the retries: the run fails cleanly.
    let (status, body) = host
        .post("/whatsapp-web/session/fp/sync-chats", json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    until_first_commit(&mut ws).await;
    // Only message inserts fail, as often as the engine tries (3 times):
    // recording the failed run itself still works.
    fail_commands(&uri, &["insert"], 3, &app).await;
    let events = ws.until("sync_failed").await;
    fail_command_off(&uri).await;
    let failed = &events.last().unwrap()["data"];
    assert!(failed["reason"].as_str().is_some(), "{failed}");
    let run = host.wait_sync_done("fp").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_exact_messages(&raw, "fp", &expect).await;

    // A re-sync completes with exact counts.
    let (status, body) = host
        .post("/whatsapp-web/session/fp/sync-chats", json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    let run = host.wait_sync_done("fp").await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_exact_messages(&raw, "fp", &expect).await;
    host.stop().await;
    let _ = raw.drop().await;
}

#[tokio::test]
async fn mongo_server_down_gives_503_and_the_host_recovers() {
    let mut server = MongoServer::start().await;
    let db = fresh_db_name("down");
    let uri = with_options(&server.uri(), "serverSelectionTimeoutMS=1000");
    let host = mongo_host(&uri, &db).await;
    let per_chat = [20u64, 15, 10];
    let mut ws = host.ws().await;
    host.create_sim(
        "down",
        fast(json!({"chats": 3, "messagesPerChat": per_chat})),
    )
    .await;
    ws.join("down").await;
    ws.until("sync_complete").await;
    let expect = chat_counts(&host, "down", &per_chat).await;

    server.stop().await;
    let (status, ready) = host.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["store"]["ok"], false, "{ready}");
    assert_eq!(ready["store"]["kind"], "mongo");
    let resp = host
        .req(reqwest::Method::GET, "/whatsapp-web/session/down/chats")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    // A sync with the store down fails cleanly (or is refused with 503).
    let (status, body) = host
        .post("/whatsapp-web/session/down/sync-chats", json!({}))
        .await;
    match status {
        202 => {
            let events = ws.until("sync_failed").await;
            let reason = events.last().unwrap()["data"]["reason"].clone();
            assert!(reason.as_str().is_some(), "{reason}");
        }
        503 => {}
        other => panic!("sync with the store down: {other} {body}"),
    }

    // Back: the same host (no restart) is ready again and syncs.
    server.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, ready) = host.get("/readyz").await;
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "host did not become ready again: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A run left `running` by the outage may still be winding down.
    let run = host.wait_sync_done("down").await;
    assert_ne!(run["status"], "running");
    let (status, body) = host
        .post("/whatsapp-web/session/down/sync-chats", json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    let run = host.wait_sync_done("down").await;
    assert_eq!(run["status"], "completed", "{run}");
    let raw = raw_db(&server.uri(), &db).await;
    assert_exact_messages(&raw, "down", &expect).await;
    host.stop().await;
}

/// Stored live messages of `session`: their sequence numbers (the
/// simulator numbers them `live message N`).
async fn live_numbers(db: &mongodb::Database, session: &str) -> Vec<u64> {
    let mut n: Vec<u64> = docs(db, "messages", doc! {"sessionId": session})
        .await
        .iter()
        .filter_map(|d| d.get_str("body").ok())
        .filter_map(|b| b.strip_prefix("live message "))
        .filter_map(|v| v.parse().ok())
        .collect();
    n.sort_unstable();
    n
}

/// The store goes away for 20 s in the middle of a sync: the run is
/// suspended (`sync_failed`, `store_unavailable`), never marked failed, and
/// resumes by itself under the same `syncId` once the server is back,
/// ending with exact data.
#[tokio::test]
async fn a_store_outage_mid_sync_suspends_the_run_and_it_resumes() {
    let mut server = MongoServer::start().await;
    let db = fresh_db_name("outage");
    let uri = with_options(&server.uri(), "serverSelectionTimeoutMS=1000");
    let host = mongo_host(&uri, &db).await;
    let mut ws = host.ws().await;
    host.create_sim(
        "out",
        fast(json!({"chats": 60, "messagesPerChat": 10, "fetchLatencyMs": 60})),
    )
    .await;
    ws.join("out").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let sync_id = loop {
        let (_, run) = host.get("/whatsapp-web/session/out/sync").await;
        if run["checkpoint"].as_u64().unwrap_or(0) >= 5 {
            break run["syncId"].as_str().unwrap().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sync did not start: {run}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    server.stop().await;
    let events = ws.until("sync_failed").await;
    let failed = &events.last().unwrap()["data"];
    assert_eq!(failed["reason"], "store_unavailable", "{failed}");
    assert_eq!(failed["syncId"], sync_id.as_str());
    tokio::time::sleep(Duration::from_secs(20)).await;
    server.restart().await;
    let events = ws.until("sync_complete").await;
    let done = &events.last().unwrap()["data"];
    assert_eq!(done["syncId"], sync_id.as_str(), "the same run resumed");
    let run = host.wait_sync_done("out").await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["syncId"], sync_id.as_str());
    let raw = raw_db(&server.uri(), &db).await;
    assert_eq!(
        docs(&raw, "messages", doc! {"sessionId": "out"})
            .await
            .len(),
        600
    );
    let ready = docs(&raw, "outbox", doc! {"sessionId": "out"}).await;
    assert_eq!(ready.len(), 1, "one session_ready");
    host.stop().await;
}

/// Live messages keep arriving while the store is down for 30 s: they are
/// kept in the spool and stored, none missing, once it is back.
#[tokio::test]
async fn live_messages_during_a_store_outage_are_stored_when_it_is_back() {
    let mut server = MongoServer::start().await;
    let db = fresh_db_name("livespool");
    let uri = with_options(&server.uri(), "serverSelectionTimeoutMS=1000");
    let host = mongo_host(&uri, &db).await;
    let mut ws = host.ws().await;
    host.create_sim(
        "live",
        fast(json!({"chats": 2, "messagesPerChat": 2, "liveMessageEveryMs": 100})),
    )
    .await;
    ws.join("live").await;
    ws.until("sync_complete").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.stop().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    server.restart().await;
    let raw = raw_db(&server.uri(), &db).await;
    // Everything the simulator sent until now reaches the store.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = live_numbers(&raw, "live").await;
        if n.len() > 150 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} live messages",
            n.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = host.delete("/whatsapp-web/session/live").await;
    assert_eq!(status, 200, "{body}");
    let n = live_numbers(&raw, "live").await;
    let expect: Vec<u64> = (0..n.len() as u64).collect();
    assert_eq!(n, expect, "no live message lost or repeated");
    let spooled = host
        .metric("wasync_live_messages_spooled_total")
        .await
        .unwrap_or(0.0);
    assert!(spooled > 100.0, "spooled {spooled}");
    host.stop().await;
}

/// Incremental re-sync on MongoDB: the same scenario as the embedded store
/// (`sync_flow::incremental_resync_is_exact`), on a server of its own: its
/// 10,000-message syncs stalled twice on the suite's shared test server
/// while other tests wrote and dropped databases there (a whole group's
/// write waiting more than 25 s), never alone.
#[tokio::test]
async fn mongo_incremental_resync_writes_only_new_messages() {
    let mut server = wasync_tests::mongo::MongoServer::start().await;
    let db = fresh_db_name("incr");
    let mut host = mongo_host(&server.uri(), &db).await;
    crate::sync_flow::incremental_resync_is_exact(&mut host, "incr").await;
    host.stop().await;
    server.stop().await;
}

/// A host stopped right after its sync completed, while the session is
/// still recording the run's summary: the lease stays the host's until its
/// sessions stopped, so the summary (`lastSync`) lands. Every `find` of the
/// host is held on the server for 1 s from the first commit on, so the
/// stop reliably falls between the summary's read of the session and its
/// write (which a stopping host's fence used to refuse).
#[tokio::test]
async fn mongo_a_host_stopped_as_its_sync_completes_records_the_summary() {
    let _failpoint = wasync_tests::mongo::fail_command_lock(&test_mongodb_uri()).await;
    let uri = test_mongodb_uri();
    let db = fresh_db_name("stoplast");
    let app = format!("wasync-{db}");
    let host = mongo_host(&with_options(&uri, &format!("appName={app}")), &db).await;
    let raw = raw_db(&uri, &db).await;
    // Slow fetches, so the first chat is a commit of its own.
    let sim = fast(json!({"chats": 2, "messagesPerChat": [5, 4], "fetchLatencyMs": 150}));
    let mut ws = host.ws().await;
    host.create_sim("stop", sim).await;
    ws.join("stop").await;
    until_first_commit(&mut ws).await;
    fail_command(
        &uri,
        "alwaysOn",
        doc! {
            "failCommands": ["find"],
            "appName": &app,
            "blockConnection": true,
            "blockTimeMS": 1000,
        },
    )
    .await;
    ws.until("sync_complete").await;
    host.stop().await;
    fail_command_off(&uri).await;

    let runs = docs(&raw, "sync_runs", doc! {"sessionId": "stop"}).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        runs[0].get_str("status").unwrap(),
        "completed",
        "{:?}",
        runs[0]
    );
    let sync_id = runs[0].get_str("_id").unwrap().to_owned();
    let session = docs(&raw, "sessions", doc! {"sessionId": "stop"}).await;
    assert_eq!(session.len(), 1, "{session:?}");
    let last = session[0]
        .get_document("lastSync")
        .unwrap_or_else(|_| panic!("no sync summary recorded: {:?}", session[0]));
    assert_eq!(last.get_str("syncId").unwrap(), sync_id);
    assert_eq!(last.get_str("status").unwrap(), "completed");
    let synced = match last.get("totalMessagesSynced") {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        other => panic!("totalMessagesSynced: {other:?}"),
    };
    assert_eq!(synced, 9);
    let _ = raw.drop().await;
}
