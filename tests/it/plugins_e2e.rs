//! Plugins through a real host: a full sync with the real components, the
//! store checked; the `/plugins` REST routes; a fail-closed plugin failing
//! during a full sync.

use base64::Engine as _;
use serde_json::{Value, json};
use wasync::domain::SessionId;
use wasync_tests::TestHost;
use wasync_tests::plugins::{PluginDir, built, host_with};

fn fast(mut sim: Value) -> Value {
    let o = sim.as_object_mut().unwrap();
    o.entry("qrEveryMs").or_insert(json!(40));
    o.entry("scanAfterMs").or_insert(json!(100));
    o.entry("fetchLatencyMs").or_insert(json!(0));
    sim
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_stores_what_the_real_plugins_decided() {
    let dir = PluginDir::new()
        .with_edited("chat-filter", |m| {
            m.replace("max-messages = \"200\"", "max-messages = \"10\"")
                .replace(
                    "skip-names = [\"*newsletter*\", \"spam *\"]",
                    "skip-names = [\"family *\"]",
                )
        })
        .with("keyword-tagger")
        .with("redact-pii");
    let host = host_with(&dir).await;
    host.create_sim("plug", fast(json!({"chats": 12, "messagesPerChat": 30})))
        .await;
    let run = host.wait_sync_done("plug").await;
    assert_eq!(run["status"], "completed", "{run}");

    let store = host.app().store();
    let sid = SessionId::parse("plug").unwrap();
    let chats = store.list_chats(&sid, 100, None).await.unwrap().chats;
    assert_eq!(chats.len(), 12);
    let (mut skipped, mut tagged) = (0, 0);
    for c in &chats {
        let n = store.count_messages(&sid, Some(&c.chat.id)).await.unwrap();
        let name = c.chat.name.clone().unwrap_or_default().to_lowercase();
        if c.chat.archived || name.starts_with("family ") {
            assert_eq!(
                n, 0,
                "{name} (archived {}) must be skipped",
                c.chat.archived
            );
            skipped += 1;
            continue;
        }
        assert_eq!(n, 10, "chat-filter caps {name} at 10");
        for m in store
            .list_messages(&sid, &c.chat.id, 100, None)
            .await
            .unwrap()
        {
            let body = m.message.body.clone().unwrap_or_default();
            let words: Vec<&str> = body.split(' ').collect();
            assert_eq!(
                words.contains(&"invoice"),
                m.message.tags.contains(&"billing".to_string()),
                "{body:?} {:?}",
                m.message.tags
            );
            let meeting = words.contains(&"meeting") || body.contains("call me");
            assert_eq!(
                meeting,
                m.message.tags.contains(&"meeting".to_string()),
                "{body:?} {:?}",
                m.message.tags
            );
            tagged += usize::from(!m.message.tags.is_empty());
        }
    }
    assert!(
        skipped > 0,
        "the simulated account has archived or Family chats"
    );
    assert!(
        tagged > 0,
        "some simulated bodies mention an invoice or a meeting"
    );
    assert_eq!(run["skippedChats"], json!(skipped), "{run}");
    let mgr = host.app().plugins().expect("plugins enabled");
    assert!(mgr.counters().iter().all(|c| c.failures.total() == 0));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_fail_closed_plugin_quarantines_and_the_sync_completes() {
    // Traps on every batch that mentions an invoice: those chats' messages
    // must be in quarantine and never in the messages collection.
    let dir = PluginDir::new().with_edited("fixture-trap", |m| {
        format!(
            "{m}\n[limits]\nmax_failures = 1000\n\n[config]\nwhen-body-contains = \"invoice\"\n"
        )
    });
    let host = host_with(&dir).await;
    host.create_sim("trap", fast(json!({"chats": 6, "messagesPerChat": 20})))
        .await;
    let run = host.wait_sync_done("trap").await;
    assert_eq!(run["status"], "completed", "{run}");
    let store = host.app().store();
    let sid = SessionId::parse("trap").unwrap();
    let quarantined = store.list_quarantine(&sid).await.unwrap();
    assert!(!quarantined.is_empty(), "some chat mentions an invoice");
    assert_eq!(run["quarantined"], json!(quarantined.len()));
    for q in &quarantined {
        assert_eq!(q.plugin, "fixture-trap");
        let stored = store
            .list_messages(&sid, &q.message.chat_id, 1000, None)
            .await
            .unwrap();
        assert!(
            stored.iter().all(|m| m.message.id != q.message.id),
            "quarantined {} was stored",
            q.message.id
        );
    }
    let total = store.count_messages(&sid, None).await.unwrap();
    assert_eq!(total + quarantined.len() as u64, 6 * 20);
    // The host still serves.
    let (status, _) = host.get("/healthz").await;
    assert_eq!(status, 200);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_routes_list_upload_remove_and_reload() {
    let dir = PluginDir::new().with("redact-pii");
    let host = host_with(&dir).await;

    let (status, body) = host.get("/plugins").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plugins"][0]["name"], "redact-pii");
    assert_eq!(body["plugins"][0]["onError"], "fail-closed");

    let b64 = |w: &[u8]| base64::engine::general_purpose::STANDARD.encode(w);
    let (toml, wasm) = built("keyword-tagger");
    let (status, body) = host
        .post(
            "/plugins",
            json!({"manifest": toml, "component": b64(&wasm)}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "keyword-tagger");

    // Bad uploads: a clear 4xx with a stable code, and nothing changes.
    let unsigned = toml.replace("sha256", "# sha256");
    let (_, filter) = built("chat-filter");
    for (manifest, component, want_status, want_code) in [
        (unsigned.clone(), b64(b"not wasm"), 400, "not_wasm"),
        (
            unsigned.clone(),
            b64(b"\0asm\x01\0\0\0"),
            400,
            "core_module",
        ),
        (unsigned.clone(), b64(&filter), 422, "world_mismatch"),
        (toml.clone(), b64(&filter), 422, "sha256_mismatch"),
        ("name = 1".to_string(), b64(&wasm), 400, "bad_manifest"),
    ] {
        let (status, body) = host
            .post(
                "/plugins",
                json!({"manifest": manifest, "component": component}),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str().unwrap_or("")),
            (want_status, want_code),
            "{body}"
        );
    }
    let (status, body) = host.post("/plugins", json!({"manifest": toml})).await;
    assert_eq!(status, 400, "{body}");
    let (_, body) = host.get("/plugins").await;
    let names: Vec<&str> = body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["redact-pii", "keyword-tagger"]);

    let (status, body) = host.delete("/plugins/redact-pii").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = host.delete("/plugins/redact-pii").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("plugin_not_found")),
        "{body}"
    );
    let (status, body) = host.get("/plugins/keyword-tagger").await;
    assert_eq!(status, 200, "{body}");

    let (t, w) = built("chat-filter");
    std::fs::write(dir.path().join("chat-filter.wasm"), w).unwrap();
    std::fs::write(dir.path().join("chat-filter.toml"), t).unwrap();
    let (status, body) = host.post("/plugins/reload", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plugins"].as_array().unwrap().len(), 2);
    let (status, _) = host.get("/plugins/reload").await;
    assert_eq!(status, 405);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_routes_say_when_plugins_are_off() {
    let host = TestHost::spawn().await;
    let (status, body) = host.get("/plugins").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("plugins_disabled")),
        "{body}"
    );
    host.stop().await;
}

/// `fixture-sleep` (sleeps 30 s in a host call, 50 ms deadline) with extra
/// manifest lines.
fn sleeping_plugin(extra_limits: &str) -> PluginDir {
    let extra = extra_limits.to_owned();
    PluginDir::new().with_edited("fixture-sleep", move |m| {
        m.replace("deadline_ms = 50", &format!("deadline_ms = 50\n{extra}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_plugin_fails_on_its_deadline_and_its_sync_completes_promptly() {
    let dir = sleeping_plugin("");
    let host = host_with(&dir).await;
    host.create_sim("sleepy", fast(json!({"chats": 6, "messagesPerChat": 10})))
        .await;
    let run = host.wait_sync_done("sleepy").await;
    let ms = wasync_tests::run_ms(&run);
    eprintln!("sync of 6 chats through a plugin sleeping 30 s per call (50 ms deadline): {ms} ms");
    assert_eq!(run["status"], "completed", "{run}");
    // Three deadline failures trip it; fail-closed keeps quarantining.
    assert_eq!(run["quarantined"], json!(60), "{run}");
    assert!(ms < 3_000, "the sync took {ms} ms");
    let mgr = host.app().plugins().expect("plugins enabled");
    let c = mgr
        .counters()
        .into_iter()
        .find(|c| c.plugin == "fixture-sleep")
        .unwrap();
    assert_eq!((c.failures.deadline, c.trips), (3, 1), "{c:?}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_session_during_a_sleeping_plugin_call_returns_at_once() {
    // Never tripped: every chat's call sleeps into its deadline.
    let dir = sleeping_plugin("max_failures = 1000");
    let host = host_with(&dir).await;
    let mut ws = host.ws().await;
    host.create_sim("doze", fast(json!({"chats": 60, "messagesPerChat": 3})))
        .await;
    ws.join("doze").await;
    loop {
        let ev = ws.recv().await;
        if ev["event"] == "sync_chats" && ev["data"]["currentChat"] == 2 {
            break;
        }
    }
    let started = std::time::Instant::now();
    let (status, body) = host.delete("/whatsapp-web/session/doze").await;
    let took = started.elapsed();
    eprintln!("DELETE during a sleeping plugin's call: {took:?}");
    assert_eq!(status, 200, "{body}");
    assert!(
        took < std::time::Duration::from_millis(1_000),
        "DELETE took {took:?}"
    );
    let (_, run) = host.get("/whatsapp-web/session/doze/sync").await;
    assert_eq!(run["status"], "cancelled", "{run}");
    host.stop().await;
}
