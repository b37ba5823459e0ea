//! The sync flow end to end over real HTTP and WebSocket (DESIGN §1–§4).

use serde_json::{Value, json};
use wasync::domain::SessionId;
use wasync_tests::{TestHost, assert_eventually};

fn sid(id: &str) -> SessionId {
    SessionId::parse(id).unwrap()
}

fn fast(mut sim: Value) -> Value {
    let o = sim.as_object_mut().unwrap();
    o.entry("qrEveryMs").or_insert(json!(40));
    o.entry("scanAfterMs").or_insert(json!(100));
    o.entry("fetchLatencyMs").or_insert(json!(0));
    sim
}

#[tokio::test]
async fn three_chats_yield_the_design_sequence_and_exact_data() {
    let host = TestHost::spawn().await;
    let mut ws = host.ws().await;
    host.create_sim(
        "design",
        fast(json!({"chats": 3, "messagesPerChat": [50, 75, 100]})),
    )
    .await;
    let snap = ws.join("design").await;
    assert_eq!(snap["sessionId"], "design");

    let events = ws.until("sync_complete").await;
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let qr_count = names.iter().filter(|n| **n == "qr").count();
    assert!(
        qr_count >= 1 || snap["status"] == "qr",
        "a QR is shown before the scan: {names:?}"
    );
    let auth = names
        .iter()
        .position(|n| *n == "authenticated")
        .expect("authenticated");
    let ready = names.iter().position(|n| *n == "ready").expect("ready");
    assert!(auth < ready);
    let progress: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "sync_chats")
        .map(|e| &e["data"])
        .collect();
    assert_eq!(progress.len(), 9, "{progress:#?}");
    let expect = [
        ("start", 0, None, 0, 0),
        ("contacts", 0, None, 0, 0),
        ("chat", 1, Some(0), 0, 0),
        ("messages", 1, Some(0), 50, 50),
        ("chat", 2, Some(1), 0, 50),
        ("messages", 2, Some(1), 75, 125),
        ("chat", 3, Some(2), 0, 125),
        ("messages", 3, Some(2), 100, 225),
        ("done", 3, None, 0, 225),
    ];
    let (_, chats) = host.get("/whatsapp-web/session/design/chats").await;
    let chats = chats["chats"].as_array().unwrap().clone();
    assert_eq!(chats.len(), 3);
    let sync_id = progress[0]["syncId"].clone();
    for (i, (p, (phase, current, chat, synced, total))) in progress.iter().zip(expect).enumerate() {
        assert_eq!(p["seq"], i as u64, "{p}");
        assert_eq!(p["phase"], phase, "{p}");
        assert_eq!(p["nChats"], 3, "{p}");
        assert_eq!(p["currentChat"], current, "{p}");
        assert_eq!(p["messagesSynced"], synced, "{p}");
        assert_eq!(p["totalMessagesSynced"], total, "{p}");
        assert_eq!(p["done"], phase == "done", "{p}");
        assert_eq!(p["syncId"], sync_id);
        assert_eq!(p["sessionId"], "design");
        if let Some(c) = chat {
            // The sync walks chats newest activity first, as listed.
            assert_eq!(p["chatId"], chats[c]["id"], "{p}");
        } else {
            assert!(p.get("chatId").is_none(), "{p}");
        }
    }
    let complete = &events.last().unwrap()["data"];
    assert_eq!(complete["nChats"], 3);
    assert_eq!(complete["totalMessagesSynced"], 225);
    assert_eq!(complete["syncId"], sync_id);

    // The stored data is exact.
    for (chat, n) in chats.iter().zip([50, 75, 100]) {
        assert_eq!(chat["messageCount"], n, "{chat}");
        let id = chat["id"].as_str().unwrap();
        let (status, page) = host
            .get(&format!(
                "/whatsapp-web/session/design/chats/{id}/messages?limit=1000"
            ))
            .await;
        assert_eq!(status, 200);
        let msgs = page["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), n);
        assert!(
            msgs.windows(2)
                .all(|w| w[0]["timestamp"].as_i64() > w[1]["timestamp"].as_i64())
        );
        assert_eq!(msgs[0]["chatId"], chat["id"]);
    }

    // Exactly one session_ready, with the 3 chat ids, written after the data.
    let store = host.app().store();
    let events = store.session_events(&sid("design")).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = &events[0];
    assert_eq!(ev.pattern, "session_ready");
    let ids: Vec<&Value> = chats.iter().map(|c| &c["id"]).collect();
    assert_eq!(
        ev.data["chats"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(ev.data["sessionId"], "design");
    let last_synced = chats
        .iter()
        .map(|c| c["syncedAt"].as_i64().unwrap())
        .max()
        .unwrap();
    assert!(ev.created_at >= last_synced);

    let (_, run) = host.get("/whatsapp-web/session/design/sync").await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["checkpoint"], 3);
    host.stop().await;
}

#[tokio::test]
async fn an_account_without_chats_completes() {
    let host = TestHost::spawn().await;
    let mut ws = host.ws().await;
    host.create_sim("empty", fast(json!({"chats": 0}))).await;
    ws.join("empty").await;
    let events = ws.until("sync_complete").await;
    let progress: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "sync_chats")
        .collect();
    let phases: Vec<&Value> = progress.iter().map(|p| &p["data"]["phase"]).collect();
    assert_eq!(phases, ["start", "contacts", "done"]);
    assert_eq!(progress[2]["data"]["done"], true);
    assert_eq!(events.last().unwrap()["data"]["nChats"], 0);
    let (_, chats) = host.get("/whatsapp-web/session/empty/chats").await;
    assert_eq!(chats["chats"], json!([]));
    host.stop().await;
}

#[tokio::test]
async fn a_failing_chat_is_retried_then_recorded_and_the_rest_syncs() {
    let host = TestHost::spawn().await;
    host.create_sim(
        "failing",
        fast(json!({"chats": 3, "messagesPerChat": 10, "failFetch": {"2": 1000}})),
    )
    .await;
    let run = host.wait_sync_done("failing").await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["totalMessagesSynced"], 20);
    let failed = run["failedChats"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["attempts"], 3);
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("simulated fetch failure")
    );
    host.stop().await;
}

#[tokio::test]
async fn manual_sync_is_single_flight_and_needs_a_ready_session() {
    let host = TestHost::spawn().await;
    host.create_sim(
        "manual",
        fast(json!({"chats": 8, "messagesPerChat": 5, "fetchLatencyMs": 40})),
    )
    .await;
    let first = host.wait_sync_done("manual").await;
    let (status, body) = host
        .post(
            "/whatsapp-web/session/manual/sync-chats",
            json!({"limitPerChat": 3}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let sync_id = body["syncId"].as_str().unwrap().to_owned();
    assert_ne!(sync_id, first["syncId"]);
    let (status, conflict) = host
        .post("/whatsapp-web/session/manual/sync-chats", json!({}))
        .await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["code"], "sync_running");
    assert_eq!(conflict["syncId"], sync_id.as_str());
    let run = host.wait_sync_done("manual").await;
    assert_eq!(run["syncId"], sync_id.as_str());
    assert_eq!(run["limitPerChat"], 3);
    assert_eq!(run["trigger"], "manual");

    // Not ready: the phone never scans.
    host.create_sim(
        "unscanned",
        json!({"scanAfterMs": null, "qrEveryMs": 10000}),
    )
    .await;
    let (status, body) = host
        .post("/whatsapp-web/session/unscanned/sync-chats", json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "session_not_ready");
    // ...and a session that does not exist.
    let (status, _) = host
        .post("/whatsapp-web/session/nobody/sync-chats", json!({}))
        .await;
    assert_eq!(status, 404);
    host.stop().await;
}

#[tokio::test]
async fn reads_never_start_a_sync() {
    let host = TestHost::spawn().await;
    let (status, _) = host
        .post(
            "/whatsapp-web/session/reader",
            json!({"autoSync": false, "simulator": fast(json!({"chats": 2}))}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eventually!(host.get("/whatsapp-web/session/reader").await.1["status"] == "ready");
    for _ in 0..3 {
        let (status, chats) = host.get("/whatsapp-web/session/reader/chats").await;
        assert_eq!(status, 200);
        assert_eq!(chats["chats"], json!([]));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (status, body) = host.get("/whatsapp-web/session/reader/sync").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "no_sync");
    host.stop().await;
}

#[tokio::test]
async fn stopping_mid_sync_reports_cancelled_and_keeps_what_was_written() {
    let host = TestHost::spawn().await;
    let mut ws = host.ws().await;
    host.create_sim(
        "stopper",
        fast(json!({"chats": 30, "messagesPerChat": 4, "fetchLatencyMs": 60})),
    )
    .await;
    ws.join("stopper").await;
    // Wait until some chats are stored.
    loop {
        let ev = ws.recv().await;
        if ev["event"] == "sync_chats"
            && ev["data"]["phase"] == "messages"
            && ev["data"]["currentChat"] == 2
        {
            break;
        }
    }
    let (status, body) = host.delete("/whatsapp-web/session/stopper").await;
    assert_eq!(status, 200, "{body}");
    let events = ws.until("sync_failed").await;
    let failed = &events.last().unwrap()["data"];
    assert_eq!(failed["reason"], "cancelled");
    assert!(failed["currentChat"].as_u64().unwrap() >= 2);
    let (_, run) = host.get("/whatsapp-web/session/stopper/sync").await;
    assert_eq!(run["status"], "cancelled");
    // Stored chats stay after a stop (no purge)...
    let (status, snap) = host.get("/whatsapp-web/session/stopper").await;
    assert_eq!(status, 200);
    assert_eq!(snap["status"], "stopped");
    let (_, chats) = host
        .get("/whatsapp-web/session/stopper/chats?limit=1000")
        .await;
    assert_eq!(chats["chats"].as_array().unwrap().len(), 30);
    // ...and go with purge.
    let (status, _) = host
        .delete("/whatsapp-web/session/stopper?purge=true")
        .await;
    assert_eq!(status, 200);
    let (status, _) = host.get("/whatsapp-web/session/stopper/chats").await;
    assert_eq!(status, 404);
    host.stop().await;
}

#[tokio::test]
async fn a_resync_updates_and_never_duplicates() {
    let host = TestHost::spawn().await;
    host.create_sim(
        "again",
        fast(json!({"chats": 4, "messagesPerChat": [7, 9, 11, 13]})),
    )
    .await;
    host.wait_sync_done("again").await;
    for _ in 0..2 {
        let (status, _) = host
            .post("/whatsapp-web/session/again/sync-chats", json!({}))
            .await;
        assert_eq!(status, 202);
        let run = host.wait_sync_done("again").await;
        assert_eq!(run["totalMessagesSynced"], 40);
    }
    let store = host.app().store();
    assert_eq!(store.count_messages(&sid("again"), None).await.unwrap(), 40);
    let (_, chats) = host.get("/whatsapp-web/session/again/chats").await;
    let counts: Vec<u64> = chats["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["messageCount"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [7, 9, 11, 13]);
    // Three syncs, three session_ready events.
    assert_eq!(store.session_events(&sid("again")).await.unwrap().len(), 3);
    host.stop().await;
}

#[tokio::test]
async fn a_late_joiner_gets_the_current_progress() {
    let host = TestHost::spawn().await;
    host.create_sim(
        "late",
        fast(json!({"chats": 20, "messagesPerChat": 3, "fetchLatencyMs": 50})),
    )
    .await;
    assert_eventually!(
        host.get("/whatsapp-web/session/late").await.1["sync"]["currentChat"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    );
    let mut ws = host.ws().await;
    let snap = ws.join("late").await;
    assert_eq!(snap["status"], "ready");
    let sync = &snap["sync"];
    assert_eq!(sync["status"], "running", "{snap}");
    assert!(sync["seq"].as_u64().unwrap() >= 3, "{snap}");
    assert_eq!(sync["nChats"], 20);
    // ...and then the rest of the sequence, ending in done.
    let events = ws.until("sync_complete").await;
    let seqs: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "sync_chats")
        .map(|e| e["data"]["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // start, contacts, 20 × (chat, messages), done.
    assert_eq!(*seqs.last().unwrap(), 42);
    host.stop().await;
}

#[tokio::test]
async fn creating_twice_is_idempotent_and_sessions_are_listed() {
    let host = TestHost::spawn().await;
    host.create_sim("twice", fast(json!({"chats": 1}))).await;
    let (status, body) = host.post("/whatsapp-web/session/twice", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessionId"], "twice");
    let (status, list) = host.get("/whatsapp-web/sessions").await;
    assert_eq!(status, 200);
    assert!(
        list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["sessionId"] == "twice")
    );
    host.stop().await;
}

#[tokio::test]
async fn qr_is_served_while_pending() {
    let host = TestHost::spawn().await;
    host.create_sim("qr", json!({"scanAfterMs": null, "qrEveryMs": 60000}))
        .await;
    assert_eventually!(host.get("/whatsapp-web/session/qr/qr").await.0 == 200);
    let (_, qr) = host.get("/whatsapp-web/session/qr/qr").await;
    assert_eq!(qr["attempt"], 1);
    assert!(qr["qr"].as_str().unwrap().starts_with("2@"));
    assert!(qr["expiresAt"].as_i64().unwrap() > 0);
    let (status, body) = host.get("/whatsapp-web/session/qr/qr?format=bmp").await;
    assert_eq!(status, 400, "{body}");

    host.create_sim("noqr", fast(json!({"chats": 1}))).await;
    host.wait_sync_done("noqr").await;
    let (status, body) = host.get("/whatsapp-web/session/noqr/qr").await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "no_qr");
    host.stop().await;
}

#[tokio::test]
async fn live_messages_are_stored_and_pushed_after_the_sync() {
    let host = TestHost::spawn().await;
    let mut ws = host.ws().await;
    host.create_sim(
        "live",
        fast(json!({"chats": 2, "messagesPerChat": 2, "liveMessageEveryMs": 30})),
    )
    .await;
    ws.join("live").await;
    let events = ws.until("message").await;
    let msg = &events.last().unwrap()["data"];
    assert_eq!(msg["sessionId"], "live");
    assert!(msg["body"].as_str().unwrap().starts_with("live message"));
    let chat = msg["chatId"].as_str().unwrap();
    let id = msg["id"].clone();
    assert_eventually!({
        let (_, page) = host
            .get(&format!(
                "/whatsapp-web/session/live/chats/{chat}/messages?limit=100"
            ))
            .await;
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == id)
    });
    host.stop().await;
}

/// Issue 16 (incremental re-sync), end to end on whichever store `host`
/// runs: a fresh session's first sync is full (10,000 messages); a manual
/// incremental re-sync of the unchanged account writes no message; after
/// 10 new messages in 3 chats the restarted host's automatic sync is
/// incremental and stores exactly those 10, every `messageCount` exact.
pub(crate) async fn incremental_resync_is_exact(host: &mut TestHost, id: &str) {
    let writes =
        |outcome: &str| format!("wasync_sync_message_writes_total{{outcome=\"{outcome}\"}}");
    host.create_sim(id, fast(json!({"chats": 100, "messagesPerChat": 100})))
        .await;
    let first = host.wait_sync_done(id).await;
    assert_eq!(first["mode"], "full", "{first}");
    assert_eq!(first["totalMessagesSynced"], 10_000);
    assert_eq!(host.metric(&writes("inserted")).await, Some(10_000.0));

    let (status, accepted) = host
        .post(
            &format!("/whatsapp-web/session/{id}/sync-chats"),
            json!({"mode": "incremental"}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let run = host.wait_sync_done(id).await;
    assert_eq!(run["syncId"], accepted["syncId"]);
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["mode"], "incremental");
    assert_eq!(run["totalMessagesSynced"], 0);
    assert_eq!(run["nChats"], 100);
    // No message write of any kind.
    assert_eq!(host.metric(&writes("inserted")).await, Some(10_000.0));
    assert_eq!(host.metric(&writes("updated")).await, None);
    assert_eq!(host.metric(&writes("unchanged")).await, None);
    let store = host.app().store();
    let s = sid(id);
    assert_eq!(store.count_messages(&s, None).await.unwrap(), 10_000);

    // New messages arrive while the host is down.
    let mut rec = store.get_session(&s).await.unwrap().unwrap();
    rec.options["simulator"]["newMessages"] = json!({"2": 3, "50": 3, "100": 4});
    store.put_session(&rec).await.unwrap();
    // The embedded store's file is free again only once every handle is.
    drop(store);
    host.restart().await;
    let manual = accepted["syncId"].clone();
    assert_eventually!({
        let (_, r) = host.get(&format!("/whatsapp-web/session/{id}/sync")).await;
        r["syncId"] != manual && r["status"] == "completed"
    });
    let (_, run) = host.get(&format!("/whatsapp-web/session/{id}/sync")).await;
    assert_eq!(run["trigger"], "auto");
    assert_eq!(run["mode"], "incremental", "a restored session catches up");
    assert_eq!(run["totalMessagesSynced"], 10);
    assert_eq!(host.metric(&writes("inserted")).await, Some(10.0));
    assert_eq!(host.metric(&writes("unchanged")).await, None);
    let store = host.app().store();
    assert_eq!(store.count_messages(&s, None).await.unwrap(), 10_010);
    let (_, chats) = host
        .get(&format!("/whatsapp-web/session/{id}/chats?limit=100"))
        .await;
    let chats = chats["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 100);
    let mut grown = 0;
    for c in chats {
        let chat_id = c["id"].as_str().unwrap();
        let n = store.count_messages(&s, Some(chat_id)).await.unwrap();
        assert_eq!(c["messageCount"], n, "{chat_id}");
        grown += usize::from(n > 100);
    }
    assert_eq!(grown, 3);
}

#[tokio::test]
async fn incremental_resync_writes_only_new_messages() {
    let mut host = TestHost::spawn().await;
    incremental_resync_is_exact(&mut host, "incr").await;
    host.stop().await;
}
