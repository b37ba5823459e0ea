//! Webhooks end to end: a real host delivering to a real HTTP receiver
//! (hyper, `wasync_tests::receiver`) on 127.0.0.1, which the hosts here
//! allow explicitly (`WASYNC_WEBHOOK_ALLOW_PRIVATE`): the default refuses
//! loopback and every other private target, which the first test checks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasync::config::{
    MONGODB_DB, MONGODB_URI, WASYNC_MAX_WEBHOOKS, WASYNC_WEBHOOK_ALLOW_PRIVATE,
    WASYNC_WEBHOOK_MAX_AGE_SECS, WASYNC_WEBHOOK_RETRY_MAX_MS, WASYNC_WEBHOOK_RETRY_MIN_MS,
};
use wasync_tests::mongo::{fresh_db_name, test_mongodb_uri};
use wasync_tests::receiver::{Received, Receiver};
use wasync_tests::{HostOptions, TestHost, answer, assert_eventually, fast_tuning};

const SECRET: &str = "whsec-0123456789abcdef";

/// A host whose deliveries may reach loopback, retrying fast.
fn options() -> HostOptions {
    HostOptions {
        tuning: fast_tuning(),
        ..Default::default()
    }
    .var(WASYNC_WEBHOOK_ALLOW_PRIVATE, "127.0.0.0/8,::1")
    .var(WASYNC_WEBHOOK_RETRY_MIN_MS, "20")
    .var(WASYNC_WEBHOOK_RETRY_MAX_MS, "100")
}

async fn hook(host: &TestHost, body: Value) -> Value {
    let (status, v) = host.post("/webhooks", body).await;
    assert_eq!(status, 201, "{v}");
    v
}

/// The deliveries received for each event id, in arrival order.
fn by_delivery(got: &[Received]) -> HashMap<String, Vec<Received>> {
    let mut m: HashMap<String, Vec<Received>> = HashMap::new();
    for r in got {
        m.entry(r.delivery().to_owned())
            .or_default()
            .push(r.clone());
    }
    m
}

fn sim(chats: u32) -> Value {
    json!({"chats": chats, "messagesPerChat": 5, "scanAfterMs": 1, "qrEveryMs": 50, "fetchLatencyMs": 0})
}

#[tokio::test]
async fn webhook_routes_validate_their_input_and_never_show_the_secret() {
    let host = TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(WASYNC_MAX_WEBHOOKS, "2"),
    )
    .await;
    let bad = |body: Value, code: &'static str| (body, code);
    // The default refuses every private, loopback and link-local target,
    // names that resolve to one included.
    for (body, code) in [
        bad(json!([]), "bad_json"),
        bad(
            json!({"url": "http://x.example", "events": ["session_ready"], "extra": 1}),
            "bad_json",
        ),
        bad(
            json!({"url": "ftp://example.com/", "events": ["session_ready"]}),
            "invalid_webhook_url",
        ),
        bad(
            json!({"url": "https://u:p@example.com/", "events": ["session_ready"]}),
            "invalid_webhook_url",
        ),
        bad(
            json!({"url": format!("https://example.com/{}", "a".repeat(2100)), "events": ["session_ready"]}),
            "invalid_webhook_url",
        ),
        bad(
            json!({"url": "http://127.0.0.1:9/", "events": ["session_ready"]}),
            "webhook_url_not_allowed",
        ),
        bad(
            json!({"url": "http://10.1.2.3/", "events": ["session_ready"]}),
            "webhook_url_not_allowed",
        ),
        bad(
            json!({"url": "http://169.254.169.254/latest/meta-data", "events": ["session_ready"]}),
            "webhook_url_not_allowed",
        ),
        bad(
            json!({"url": "http://[::1]:9/", "events": ["session_ready"]}),
            "webhook_url_not_allowed",
        ),
        bad(
            json!({"url": "http://[::ffff:127.0.0.1]:9/", "events": ["session_ready"]}),
            "webhook_url_not_allowed",
        ),
        bad(
            json!({"url": "http://localhost:9/", "events": ["session_ready"]}),
            "webhook_url_not_allowed",
        ),
        bad(
            json!({"url": "https://example.com/", "events": ["session_redy"]}),
            "unknown_event",
        ),
        bad(
            json!({"url": "https://example.com/", "events": []}),
            "invalid_webhook",
        ),
        bad(
            json!({"url": "https://example.com/", "events": ["ready"], "secret": "short"}),
            "invalid_webhook",
        ),
        bad(
            json!({"url": "https://example.com/", "events": ["ready"], "sessionId": "../x"}),
            "invalid_webhook",
        ),
    ] {
        let (status, v) = host.post("/webhooks", body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["code"], code, "{body}: {v}");
        assert!(!v["detail"].as_str().unwrap().is_empty());
    }
    let (status, _, v) = answer(
        host.req(reqwest::Method::POST, "/webhooks")
            .header("content-type", "text/plain")
            .body(r#"{"url":"https://example.com/","events":["ready"]}"#),
    )
    .await;
    assert_eq!(status, 415, "{v}");
    let (_, v) = host
        .post(
            "/webhooks",
            json!({"url": "http://localhost:9/", "events": ["ready"]}),
        )
        .await;
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("WASYNC_WEBHOOK_ALLOW_PRIVATE"),
        "{v}"
    );

    // A public target (an IP literal: no DNS needed) is accepted.
    let created = hook(
        &host,
        json!({"url": "https://93.184.216.34/hook", "events": ["ready", "ready", "session_ready"], "secret": SECRET}),
    )
    .await;
    assert_eq!(created["events"], json!(["ready", "session_ready"]));
    assert_eq!(created["hasSecret"], true);
    assert!(
        created["secretHint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let id = created["webhookId"].as_str().unwrap().to_owned();
    let (status, one) = host.get(&format!("/webhooks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(one, created);
    let (_, list) = host.get("/webhooks").await;
    assert_eq!(list["webhooks"], json!([created.clone()]));
    for v in [&created, &one, &list] {
        assert!(
            !v.to_string().contains(SECRET),
            "the secret never comes back: {v}"
        );
    }
    let scoped = hook(
        &host,
        json!({"url": "https://93.184.216.34/a", "events": ["qr"], "sessionId": "s1"}),
    )
    .await;
    assert_eq!(scoped["hasSecret"], false);
    let (_, list) = host.get("/webhooks?sessionId=s2").await;
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1, "{list}");
    let (status, v) = host
        .post(
            "/webhooks",
            json!({"url": "https://93.184.216.34/b", "events": ["qr"]}),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("too_many_webhooks")),
        "{v}"
    );

    let (status, page) = host.get(&format!("/webhooks/{id}/deliveries")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["deliveries"], json!([]));
    for q in ["status=nope", "limit=0", "limit=201", "cursor=x"] {
        let (status, v) = host.get(&format!("/webhooks/{id}/deliveries?{q}")).await;
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("invalid_query")),
            "{q}: {v}"
        );
    }
    let (status, v) = host
        .post(
            &format!("/webhooks/{id}/deliveries/nope/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("delivery_not_found")),
        "{v}"
    );
    let (status, _) = host.delete(&format!("/webhooks/{id}")).await;
    assert_eq!(status, 204);
    let (status, v) = host.get(&format!("/webhooks/{id}")).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("webhook_not_found"))
    );
    let (status, _) = host.delete(&format!("/webhooks/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn deliveries_are_signed_in_order_and_carry_the_brokers_data() {
    let rx = Receiver::start().await;
    let host = TestHost::spawn_with(options()).await;
    let all = hook(
        &host,
        json!({"url": rx.url("/all"), "secret": SECRET,
               "events": ["authenticated", "ready", "session_ready", "sync_complete", "message_received"]}),
    )
    .await;
    // Only session `b`'s events, unsigned.
    hook(
        &host,
        json!({"url": rx.url("/b"), "events": ["session_ready"], "sessionId": "b"}),
    )
    .await;
    host.create_sim("a", sim(3)).await;
    host.wait_sync_done("a").await;
    host.create_sim(
        "b",
        json!({"chats": 1, "messagesPerChat": 1, "scanAfterMs": 1, "qrEveryMs": 50, "liveMessageEveryMs": 30}),
    )
    .await;
    host.wait_sync_done("b").await;
    assert_eventually!(
        rx.delivered()
            .iter()
            .filter(|r| r.json()["event"] == "message_received")
            .count()
            >= 5,
        20
    );
    let got = rx.delivered();
    for r in &got {
        assert_eq!(r.header("content-type"), "application/json");
        let body = r.json();
        assert_eq!(r.header("x-wasync-event"), body["event"]);
        assert_eq!(r.delivery(), body["eventId"]);
        let ts: i64 = r.header("x-wasync-timestamp").parse().unwrap();
        assert!((ts - wasync::domain::now_ms() / 1000).abs() < 60);
        if r.path == "/all" {
            assert!(r.signed_with(SECRET), "signature of {body}");
            assert!(!r.signed_with("another-secret-123"));
        } else {
            assert_eq!(
                r.header("x-wasync-signature"),
                "",
                "no secret, no signature"
            );
        }
    }
    // The unsigned endpoint saw session `b` only.
    let unsigned: Vec<&Received> = got
        .iter()
        .filter(|r| r.header("x-wasync-signature").is_empty())
        .collect();
    assert_eq!(unsigned.len(), 1, "one session_ready of b");
    assert_eq!(unsigned[0].json()["sessionId"], "b");
    // Session a's events, in the order they happened, each once.
    let a: Vec<Value> = got
        .iter()
        .filter(|r| r.signed_with(SECRET))
        .map(Received::json)
        .filter(|b| b["sessionId"] == "a")
        .collect();
    let names: Vec<&str> = a.iter().map(|b| b["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["authenticated", "ready", "session_ready", "sync_complete"]
    );
    // The body's data is the broker's data (the outbox event's), hostId included.
    let sid = wasync::domain::SessionId::parse("a").unwrap();
    let outbox = host.app().store().session_events(&sid).await.unwrap();
    let ready = outbox
        .iter()
        .find(|e| e.pattern == "session_ready")
        .unwrap();
    assert_eq!(a[2]["eventId"], ready.event_id.as_str());
    assert_eq!(a[2]["data"], ready.data);
    assert!(a[2]["data"]["hostId"].is_string());
    assert_eq!(a[2]["data"]["chats"].as_array().unwrap().len(), 3);
    assert_eq!(a[3]["data"]["totalMessagesSynced"], 15);
    // Live messages of b in the order they arrived.
    let live: Vec<i64> = got
        .iter()
        .map(Received::json)
        .filter(|b| b["event"] == "message_received")
        .map(|b| b["createdAt"].as_i64().unwrap())
        .collect();
    assert!(live.windows(2).all(|w| w[0] <= w[1]), "{live:?}");
    // Each delivery is recorded as delivered.
    let id = all["webhookId"].as_str().unwrap();
    let (_, page) = host
        .get(&format!(
            "/webhooks/{id}/deliveries?status=delivered&limit=200"
        ))
        .await;
    let n = page["deliveries"].as_array().unwrap().len();
    assert!(n >= 4 + 5, "{page}");
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_each_event_once_after_success() {
    let rx = Receiver::start().await;
    rx.fail_next(3);
    let host = TestHost::spawn_with(options()).await;
    let h = hook(
        &host,
        json!({"url": rx.url("/"), "secret": SECRET, "events": ["ready", "session_ready", "sync_complete"]}),
    )
    .await;
    host.create_sim("f3", sim(2)).await;
    host.wait_sync_done("f3").await;
    assert_eventually!(rx.delivered().len() == 3, 20);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = rx.received();
    assert_eq!(got.len(), 3 + 3, "3 failed attempts, then each event once");
    let per = by_delivery(&got);
    assert_eq!(per.len(), 3);
    for (id, attempts) in &per {
        assert_eq!(
            attempts.iter().filter(|r| r.ok()).count(),
            1,
            "{id} delivered once"
        );
        assert!(
            attempts.last().unwrap().ok(),
            "{id}: nothing after the success"
        );
    }
    // The first event took the failures (its lane held the others back).
    let first = got[0].delivery().to_owned();
    assert_eq!(per[&first].len(), 4);
    assert!(got[..4].iter().all(|r| r.delivery() == first));
    let names: Vec<String> = rx
        .delivered()
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["ready", "session_ready", "sync_complete"]);
    let id = h["webhookId"].as_str().unwrap();
    let (_, page) = host
        .get(&format!("/webhooks/{id}/deliveries?status=delivered"))
        .await;
    let d = &page["deliveries"][0];
    assert_eq!(d["eventId"], first.as_str());
    assert_eq!(d["attempts"], 4);
    assert_eq!(d["lastStatus"], 200);
    let outcome = |o: &str| format!("wasync_webhook_deliveries_total{{outcome=\"{o}\"}}");
    assert_eq!(host.metric(&outcome("failed")).await, Some(3.0));
    assert_eq!(host.metric(&outcome("delivered")).await, Some(3.0));
    assert!(host.metric("wasync_webhook_delivery_seconds_count").await >= Some(6.0));
}

#[tokio::test]
async fn a_receiver_down_for_the_whole_window_ends_dead_and_redeliverable() {
    let rx = Receiver::start().await;
    rx.set_down(true);
    let host = TestHost::spawn_with(options().var(WASYNC_WEBHOOK_MAX_AGE_SECS, "1")).await;
    let h = hook(
        &host,
        json!({"url": rx.url("/"), "events": ["session_ready"]}),
    )
    .await;
    let id = h["webhookId"].as_str().unwrap().to_owned();
    host.create_sim("down", sim(1)).await;
    host.wait_sync_done("down").await;
    let dead = || async {
        host.get(&format!("/webhooks/{id}/deliveries?status=dead"))
            .await
            .1["deliveries"]
            .as_array()
            .unwrap()
            .clone()
    };
    assert_eventually!(dead().await.len() == 1, 15);
    let d = dead().await[0].clone();
    assert!(d["attempts"].as_u64().unwrap() >= 3, "retried: {d}");
    assert_eq!(d["lastStatus"], 503);
    assert_eq!(d["event"], "session_ready");
    let attempts = rx.count();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), attempts, "a dead delivery is not retried");
    assert_eq!(
        host.metric("wasync_webhook_deliveries_total{outcome=\"dead\"}")
            .await,
        Some(1.0)
    );

    rx.set_down(false);
    let event_id = d["eventId"].as_str().unwrap();
    let (status, v) = host
        .post(
            &format!("/webhooks/{id}/deliveries/{event_id}/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["status"], "pending");
    assert_eventually!(rx.delivered().len() == 1, 10);
    assert_eq!(rx.delivered()[0].delivery(), event_id);
    assert!(dead().await.is_empty());
    assert_eventually!(
        host.get(&format!("/webhooks/{id}/deliveries?status=delivered"))
            .await
            .1["deliveries"]
            .as_array()
            .is_some_and(|d| d.len() == 1)
    );
    // Only a finished delivery can be sent again.
    let (status, v) = host
        .post(
            &format!("/webhooks/{id}/deliveries/{event_id}/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "a delivered one may be sent again: {v}");
    assert_eventually!(rx.delivered().len() == 2, 10);
}

#[tokio::test]
async fn a_host_restart_mid_retry_loses_nothing() {
    let rx = Receiver::start().await;
    rx.set_down(true);
    let mut host = TestHost::spawn_with(options()).await;
    hook(
        &host,
        json!({"url": rx.url("/"), "secret": SECRET, "events": ["ready", "session_ready", "sync_complete"]}),
    )
    .await;
    host.create_sim("rs", sim(2)).await;
    host.wait_sync_done("rs").await;
    assert_eventually!(rx.count() >= 3, 10);
    // What the first run queued, before the host goes.
    let sid = wasync::domain::SessionId::parse("rs").unwrap();
    let mut events = host.app().store().session_events(&sid).await.unwrap();
    // In the order deliveries go: creation time, then id.
    events.sort_by(|a, b| (a.created_at, &a.event_id).cmp(&(b.created_at, &b.event_id)));
    let queued: Vec<String> = events
        .into_iter()
        .filter(|e| ["ready", "session_ready", "sync_complete"].contains(&e.pattern.as_str()))
        .map(|e| e.event_id)
        .collect();
    assert_eq!(queued.len(), 3);
    host.restart().await;
    rx.set_down(false);
    // The restored session becomes ready again (a new `ready`) and syncs
    // again (a new run: new session_ready and sync_complete ids).
    assert_eventually!(rx.delivered().len() >= 3, 20);
    host.wait_sync_done("rs").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per = by_delivery(&rx.received());
    let delivered = rx.delivered();
    // Everything queued before the restart went out once, first.
    for id in &queued {
        let got = per.get(id.as_str()).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            got.iter().filter(|r| r.ok()).count(),
            1,
            "{id} delivered exactly once after the restart"
        );
    }
    let firsts: Vec<&str> = delivered[..3].iter().map(Received::delivery).collect();
    assert_eq!(
        firsts,
        queued.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let names: Vec<String> = delivered
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        &names[..3],
        ["ready", "session_ready", "sync_complete"],
        "{names:?}"
    );
    for r in &delivered {
        assert!(r.signed_with(SECRET));
    }
}

#[tokio::test]
async fn a_slow_receiver_does_not_slow_the_sync() {
    let rx = Receiver::start().await;
    rx.set_delay(Duration::from_secs(3));
    let host = TestHost::spawn_with(options()).await;
    hook(
        &host,
        json!({"url": rx.url("/"), "events": ["authenticated", "ready", "session_ready", "sync_complete", "message_received"]}),
    )
    .await;
    let started = Instant::now();
    host.create_sim("slow", json!({"chats": 5, "messagesPerChat": 200, "scanAfterMs": 1, "qrEveryMs": 50, "fetchLatencyMs": 0})).await;
    let run = host.wait_sync_done("slow").await;
    let took = started.elapsed();
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(rx.count(), 0, "no delivery answered yet");
    assert!(took < Duration::from_secs(3), "sync took {took:?}");
    // ...and the deliveries arrive afterwards, in order.
    rx.set_delay(Duration::ZERO);
    assert_eventually!(rx.delivered().len() >= 4, 30);
    let names: Vec<String> = rx
        .delivered()
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        &names[..4],
        ["authenticated", "ready", "session_ready", "sync_complete"]
    );
}

#[tokio::test]
async fn webhooks_deliver_through_the_mongodb_store() {
    let rx = Receiver::start().await;
    rx.fail_next(2);
    let db = fresh_db_name("hooks");
    let host = TestHost::spawn_with(
        options()
            .var(MONGODB_URI, test_mongodb_uri())
            .var(MONGODB_DB, db.as_str()),
    )
    .await;
    let h = hook(
        &host,
        json!({"url": rx.url("/"), "secret": SECRET, "events": ["ready", "session_ready", "sync_complete"]}),
    )
    .await;
    host.create_sim("m1", sim(2)).await;
    host.wait_sync_done("m1").await;
    assert_eventually!(rx.delivered().len() == 3, 20);
    let per = by_delivery(&rx.received());
    assert_eq!(per.len(), 3);
    assert!(rx.delivered().iter().all(|r| r.signed_with(SECRET)));
    let names: Vec<String> = rx
        .delivered()
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["ready", "session_ready", "sync_complete"]);
    let id = h["webhookId"].as_str().unwrap();
    let (_, page) = host
        .get(&format!(
            "/webhooks/{id}/deliveries?status=delivered&limit=2"
        ))
        .await;
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 2);
    let cursor = page["nextCursor"].as_str().unwrap();
    let (_, page) = host
        .get(&format!(
            "/webhooks/{id}/deliveries?status=delivered&cursor={cursor}"
        ))
        .await;
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 1, "{page}");
}
