//! Restarts: sessions come back, and an interrupted sync resumes from its
//! checkpoint with exact final data.

use serde_json::json;
use wasync::domain::SessionId;
use wasync_tests::{TestHost, assert_eventually};

#[tokio::test]
async fn an_interrupted_sync_resumes_from_its_checkpoint() {
    let mut host = TestHost::spawn().await;
    host.create_sim(
        "resume",
        json!({"chats": 25, "messagesPerChat": 4, "fetchLatencyMs": 40, "qrEveryMs": 40, "scanAfterMs": 50}),
    )
    .await;
    assert_eventually!(
        host.get("/whatsapp-web/session/resume/sync").await.1["checkpoint"]
            .as_u64()
            .unwrap_or(0)
            >= 3
    );
    let (_, before) = host.get("/whatsapp-web/session/resume/sync").await;
    assert_eq!(before["status"], "running");
    host.restart().await;

    // The session comes back on its own, with its login, and the same run
    // finishes.
    let run = host.wait_sync_done("resume").await;
    assert_eq!(run["syncId"], before["syncId"], "the same run resumed");
    assert_eq!(run["status"], "completed");
    assert_eq!(run["totalMessagesSynced"], 100);
    let store = host.app().store();
    let id = SessionId::parse("resume").unwrap();
    assert_eq!(store.count_messages(&id, None).await.unwrap(), 100);
    let events = store.session_events(&id).await.unwrap();
    assert_eq!(events.len(), 1, "one session_ready for the resumed run");
    let (_, chats) = host
        .get("/whatsapp-web/session/resume/chats?limit=100")
        .await;
    assert!(
        chats["chats"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["messageCount"] == 4)
    );
    host.stop().await;
}

#[tokio::test]
async fn stopped_sessions_stay_stopped_after_a_restart() {
    let mut host = TestHost::spawn().await;
    host.create_sim(
        "keep",
        json!({"chats": 1, "qrEveryMs": 40, "scanAfterMs": 50}),
    )
    .await;
    host.create_sim(
        "gone",
        json!({"chats": 1, "qrEveryMs": 40, "scanAfterMs": 50}),
    )
    .await;
    host.wait_sync_done("keep").await;
    host.wait_sync_done("gone").await;
    let (status, _) = host.delete("/whatsapp-web/session/gone").await;
    assert_eq!(status, 200);
    host.restart().await;
    assert_eventually!(host.get("/whatsapp-web/session/keep").await.1["status"] == "ready");
    let (_, gone) = host.get("/whatsapp-web/session/gone").await;
    assert_eq!(gone["status"], "stopped");
    // A stopped session may be started again.
    let (status, _) = host
        .post(
            "/whatsapp-web/session/gone",
            json!({"simulator": {"chats": 1, "qrEveryMs": 40, "scanAfterMs": 50}}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eventually!(host.get("/whatsapp-web/session/gone").await.1["status"] == "ready");
    host.stop().await;
}
