//! Deeper history of one chat (`POST .../chats/:chatId/sync`) and
//! `maxAgeDays`, end to end over HTTP and WebSocket on both stores.

use std::collections::HashSet;

use serde_json::{Value, json};
use wasync::browser::simulator::{Account, SimulatorConfig};
use wasync::config::{MONGODB_DB, MONGODB_URI};
use wasync_tests::mongo::{fresh_db_name, test_mongodb_uri};
use wasync_tests::{HostOptions, TestHost, fast_tuning};

/// A simulated account: the given chat sizes, no waiting.
fn sim(per_chat: Value) -> Value {
    json!({
        "chats": per_chat.as_array().map_or(1, |a| a.len()),
        "messagesPerChat": per_chat,
        "qrEveryMs": 40,
        "scanAfterMs": 100,
        "fetchLatencyMs": 0,
    })
}

/// Creates a simulator session with `extra` create options beside it.
async fn create(host: &TestHost, id: &str, simulator: Value, extra: Value) {
    let mut body = json!({"provider": "simulator", "simulator": simulator});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, answer) = host
        .post(&format!("/whatsapp-web/session/{id}"), body)
        .await;
    assert_eq!(status, 201, "create {id}: {answer}");
}

/// The simulated account a session with `simulator` links.
fn account(simulator: &Value) -> Account {
    Account::new(SimulatorConfig::from_options(&json!({ "simulator": simulator })).unwrap())
}

/// Every stored message id of a chat, paging through the listing; panics
/// on an id listed twice.
async fn stored_ids(host: &TestHost, session: &str, chat: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/whatsapp-web/session/{session}/chats/{chat}/messages?limit=1000");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", urlencode(c)));
        }
        let (status, page) = host.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for m in page["messages"].as_array().unwrap() {
            let id = m["id"].as_str().unwrap().to_owned();
            assert!(seen.insert(id.clone()), "message {id} stored twice");
            ids.push(id);
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn message_count(host: &TestHost, session: &str, chat: &str) -> u64 {
    let (_, page) = host
        .get(&format!("/whatsapp-web/session/{session}/chats?limit=1000"))
        .await;
    let chats = page["chats"].as_array().unwrap();
    let c = chats.iter().find(|c| c["id"] == chat).expect("chat stored");
    c["messageCount"].as_u64().unwrap()
}

/// Deepens `chat` to `limit` and returns the run's events, from its
/// `sync_chats` start to `sync_complete`.
async fn deepen(host: &TestHost, session: &str, chat: &str, body: Value) -> Vec<Value> {
    let mut ws = host.ws().await;
    ws.join(session).await;
    let (status, answer) = host
        .post(
            &format!("/whatsapp-web/session/{session}/chats/{chat}/sync"),
            body,
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let sync_id = answer["syncId"].clone();
    // One commit of a few thousand messages: on the suite's shared
    // MongoDB-wire server under load it has taken more than 10 s.
    let events = ws
        .until_within("sync_complete", std::time::Duration::from_secs(60))
        .await;
    let events: Vec<Value> = events
        .into_iter()
        .filter(|e| e["data"]["syncId"] == sync_id)
        .collect();
    let run = host.wait_sync_done(session).await;
    assert_eq!(run["syncId"], sync_id);
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["mode"], "history", "{run}");
    assert_eq!(run["chatIds"], json!([chat]));
    events
}

/// A chat of 5,000 messages synced at 100, then deepened to 3,000: 3,000
/// stored, none twice, exactly the chat's newest 3,000; the run reports as
/// any sync; deepening again to 3,000 reads nothing, and past the start of
/// the chat stops there.
async fn deepen_5000_synced_at_100_to_3000(host: &TestHost, session: &str) {
    let simulator = sim(json!([5000, 40]));
    create(
        host,
        session,
        simulator.clone(),
        json!({"limitPerChat": 100}),
    )
    .await;
    let first = host.wait_sync_done(session).await;
    assert_eq!(first["status"], "completed", "{first}");
    let acc = account(&simulator);
    let chat = acc.chat(0).id;
    assert_eq!(message_count(host, session, &chat).await, 100);

    let events = deepen(host, session, &chat, json!({"limit": 3000})).await;
    let progress: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "sync_chats")
        .map(|e| &e["data"])
        .collect();
    let phases: Vec<&str> = progress
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["start", "chat", "messages", "done"],
        "{progress:#?}"
    );
    assert_eq!(progress[2]["chatId"], chat.as_str());
    assert_eq!(progress[2]["messagesSynced"], 2900);
    assert!(progress.iter().all(|p| p["nChats"] == 1), "{progress:#?}");
    let complete = &events.last().unwrap()["data"];
    assert_eq!(complete["totalMessagesSynced"], 2900);

    let ids = stored_ids(host, session, &chat).await;
    assert_eq!(ids.len(), 3000);
    assert_eq!(message_count(host, session, &chat).await, 3000);
    let want: HashSet<String> = acc.newest(0, 3000).into_iter().map(|m| m.id).collect();
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), want);
    // The other chat was not touched.
    assert_eq!(message_count(host, session, &acc.chat(1).id).await, 40);

    // Deep enough already: nothing is read.
    let again = deepen(host, session, &chat, json!({"limit": 3000})).await;
    assert_eq!(again.last().unwrap()["data"]["totalMessagesSynced"], 0);
    assert_eq!(message_count(host, session, &chat).await, 3000);
    // Past the start of the chat: every message, once.
    let all = deepen(host, session, &chat, json!({"limit": 6000})).await;
    assert_eq!(all.last().unwrap()["data"]["totalMessagesSynced"], 2000);
    assert_eq!(stored_ids(host, session, &chat).await.len(), 5000);
    assert_eq!(message_count(host, session, &chat).await, 5000);
}

#[tokio::test]
async fn a_chat_synced_at_100_deepens_to_3000_on_the_embedded_store() {
    let host = TestHost::spawn().await;
    deepen_5000_synced_at_100_to_3000(&host, "deep-embedded").await;
}

#[tokio::test]
async fn a_chat_synced_at_100_deepens_to_3000_on_mongodb() {
    let host = TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(MONGODB_URI, test_mongodb_uri())
        .var(MONGODB_DB, fresh_db_name("history")),
    )
    .await;
    deepen_5000_synced_at_100_to_3000(&host, "deep-mongo").await;
}

/// `before` starts at a time instead of the oldest stored message.
#[tokio::test]
async fn before_starts_at_a_time() {
    let host = TestHost::spawn().await;
    let simulator = sim(json!([500]));
    create(
        &host,
        "deep-before",
        simulator.clone(),
        json!({"limitPerChat": 10}),
    )
    .await;
    host.wait_sync_done("deep-before").await;
    let acc = account(&simulator);
    let chat = acc.chat(0).id;
    let all = acc.newest(0, 500);
    // 40 messages older than message 200: 190..200, then 10 stored.
    let before = all[200].timestamp;
    deepen(
        &host,
        "deep-before",
        &chat,
        json!({"limit": 50, "before": before}),
    )
    .await;
    let ids: HashSet<String> = stored_ids(&host, "deep-before", &chat)
        .await
        .into_iter()
        .collect();
    let want: HashSet<String> = all[160..200]
        .iter()
        .chain(&all[490..])
        .map(|m| m.id.clone())
        .collect();
    assert_eq!(ids, want);
}

/// `maxAgeDays` stops every kind of run at older messages, by the
/// simulated account's clock (2025-01-01T00:00:00Z, its newest message):
/// messages are 45 s apart, so one day holds 1,921 of them (both ends).
#[tokio::test]
async fn max_age_days_stops_syncs_and_deepens_at_older_messages() {
    let host = TestHost::spawn().await;
    let simulator = sim(json!([5000, 3000]));
    create(
        &host,
        "deep-age",
        simulator.clone(),
        json!({"limitPerChat": 2500, "maxAgeDays": 1}),
    )
    .await;
    let run = host.wait_sync_done("deep-age").await;
    assert_eq!(run["maxAgeDays"], 1, "{run}");
    let acc = account(&simulator);
    let within = |i: u32, n: u32, days: i64| {
        let cutoff = wasync::browser::simulator::CLOCK_MS - days * 86_400_000;
        acc.newest(i, n)
            .iter()
            .filter(|m| m.timestamp >= cutoff)
            .count() as u64
    };
    let (a, b) = (acc.chat(0).id, acc.chat(1).id);
    assert_eq!(within(0, 2500, 1), 1921);
    assert_eq!(message_count(&host, "deep-age", &a).await, 1921);
    assert_eq!(
        message_count(&host, "deep-age", &b).await,
        within(1, 2500, 1)
    );

    // sync-chats takes its own.
    let (status, answer) = host
        .post(
            "/whatsapp-web/session/deep-age/sync-chats",
            json!({"limitPerChat": 5000, "chatIds": [a], "maxAgeDays": 2}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let run = host.wait_sync_done("deep-age").await;
    assert_eq!(run["maxAgeDays"], 2, "{run}");
    assert_eq!(within(0, 5000, 2), 3841);
    assert_eq!(message_count(&host, "deep-age", &a).await, 3841);
    // A deepen with it stops at the cutoff; without it, it goes on.
    deepen(
        &host,
        "deep-age",
        &b,
        json!({"limit": 3000, "maxAgeDays": 1}),
    )
    .await;
    assert_eq!(
        message_count(&host, "deep-age", &b).await,
        within(1, 3000, 1)
    );
    deepen(&host, "deep-age", &b, json!({"limit": 3000})).await;
    assert_eq!(message_count(&host, "deep-age", &b).await, 3000);
}

/// One run per session: a deepen while a sync runs is a 409, and a sync
/// while a deepen runs too; `DELETE` cancels a deepen.
#[tokio::test]
async fn a_deepen_and_a_sync_refuse_each_other_and_delete_cancels() {
    let host = TestHost::spawn().await;
    let mut simulator = sim(json!([400, 400, 400, 400]));
    simulator["fetchLatencyMs"] = json!(1000);
    create(
        &host,
        "deep-busy",
        simulator.clone(),
        json!({"limitPerChat": 10}),
    )
    .await;
    let chat = account(&simulator).chat(0).id;
    // The chat list is stored before the first chat's messages.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, run) = host.get("/whatsapp-web/session/deep-busy/sync").await;
        let (_, chats) = host.get("/whatsapp-web/session/deep-busy/chats").await;
        if status == 200 && chats["chats"].as_array().is_some_and(|c| !c.is_empty()) {
            assert_eq!(run["status"], "running", "{run}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no chats stored");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let path = format!("/whatsapp-web/session/deep-busy/chats/{chat}/sync");
    let (status, busy) = host.post(&path, json!({"limit": 300})).await;
    assert_eq!(status, 409, "{busy}");
    assert_eq!(busy["code"], "sync_running");
    assert!(busy["syncId"].is_string(), "{busy}");
    host.wait_sync_done("deep-busy").await;

    let (status, started) = host.post(&path, json!({"limit": 300})).await;
    assert_eq!(status, 202, "{started}");
    let (status, busy) = host
        .post("/whatsapp-web/session/deep-busy/sync-chats", json!({}))
        .await;
    assert_eq!(status, 409, "{busy}");
    assert_eq!(busy["code"], "sync_running");
    assert_eq!(busy["syncId"], started["syncId"]);
    let (status, again) = host.post(&path, json!({"limit": 300})).await;
    assert_eq!(status, 409, "{again}");

    let (status, _) = host.delete("/whatsapp-web/session/deep-busy").await;
    assert_eq!(status, 200);
    let run = host.wait_sync_done("deep-busy").await;
    assert_eq!(run["syncId"], started["syncId"]);
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(run["reason"], "cancelled");
}

/// Bad input is a 400 naming the field, an unknown chat or session a 404,
/// a stopped session a 409; `sync-chats` takes no history mode.
#[tokio::test]
async fn bad_deepens_are_refused_with_their_reason() {
    let host = TestHost::spawn().await;
    let simulator = sim(json!([20]));
    create(&host, "deep-bad", simulator.clone(), json!({})).await;
    host.wait_sync_done("deep-bad").await;
    let chat = account(&simulator).chat(0).id;
    let path = format!("/whatsapp-web/session/deep-bad/chats/{chat}/sync");
    let raw = |body: &'static str| {
        host.req(reqwest::Method::POST, &path)
            .header("content-type", "application/json")
            .body(body)
    };
    for (body, code, names) in [
        ("", "bad_json", ""),
        ("[3000]", "bad_json", "object"),
        ("null", "bad_json", "object"),
        ("{}", "bad_json", "limit"),
        (r#"{"limit": "many"}"#, "bad_json", "limit"),
        (r#"{"limit": 10, "depth": 3}"#, "bad_json", "depth"),
        (r#"{"limit": 0}"#, "invalid_body", "limit"),
        (r#"{"limit": 50001}"#, "invalid_body", "limit"),
        (r#"{"limit": 10, "before": 0}"#, "invalid_body", "before"),
        (r#"{"limit": 10, "before": -5}"#, "invalid_body", "before"),
        (
            r#"{"limit": 10, "before": "yesterday"}"#,
            "bad_json",
            "before",
        ),
        (
            r#"{"limit": 10, "maxAgeDays": 0}"#,
            "invalid_body",
            "maxAgeDays",
        ),
        (
            r#"{"limit": 10, "maxAgeDays": 36501}"#,
            "invalid_body",
            "maxAgeDays",
        ),
    ] {
        let (status, _, problem) = wasync_tests::answer(raw(body)).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert_eq!(problem["code"], code, "{body}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(names),
            "{body}: {problem}"
        );
    }
    let (status, problem) = host
        .post(
            "/whatsapp-web/session/deep-bad/chats/nobody%40c.us/sync",
            json!({"limit": 10}),
        )
        .await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["code"], "chat_not_found");
    let (status, problem) = host
        .post(
            &format!("/whatsapp-web/session/nobody/chats/{chat}/sync"),
            json!({"limit": 10}),
        )
        .await;
    assert_eq!(status, 404, "{problem}");
    for (body, names) in [
        (json!({"mode": "history"}), "mode"),
        (json!({"maxAgeDays": 0}), "maxAgeDays"),
    ] {
        let (status, problem) = host
            .post("/whatsapp-web/session/deep-bad/sync-chats", body.clone())
            .await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(names),
            "{problem}"
        );
    }
    let (status, problem) = host
        .post(
            "/whatsapp-web/session/deep-bad2",
            json!({"provider": "simulator", "maxAgeDays": 0}),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("maxAgeDays"));
    // A stopped session keeps its chats but runs nothing.
    host.delete("/whatsapp-web/session/deep-bad").await;
    let (status, problem) = host.post(&path, json!({"limit": 10})).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "session_not_ready");
}
