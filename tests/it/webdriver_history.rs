//! Deeper history through the webdriver provider: real Chromium against the
//! fixture page, whose chat loads earlier pages with `loadEarlierMsgs` and
//! says where its history starts (`msgLoadState.noEarlierMsgs`).

use serde_json::{Value, json};
use wasync::domain::{Message, SessionId};
use wasync_tests::whatsapp_fixture::WhatsAppFixture;
use wasync_tests::{TestHost, WsClient};

use crate::webdriver::{LONG, assert_no_processes_left, is, log_in, require_browser, wait_for};

const FAMILY: &str = "120363000000000001@g.us";

async fn stored(host: &TestHost, id: &str, chat: &str) -> Vec<Message> {
    let sid = SessionId::parse(id).unwrap();
    let mut got: Vec<Message> = host
        .app()
        .store()
        .list_messages(&sid, chat, 1000, None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message)
        .collect();
    got.reverse();
    got
}

async fn deepen(host: &TestHost, ws: &mut WsClient, id: &str, body: Value) -> Value {
    let (status, answer) = host
        .post(
            &format!("/whatsapp-web/session/{id}/chats/{FAMILY}/sync"),
            body,
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let evs = wait_for(ws, LONG, "sync_complete", is("sync_complete")).await;
    let done = evs.last().unwrap()["data"].clone();
    assert_eq!(done["syncId"], answer["syncId"]);
    let run = host.wait_sync_done(id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["mode"], "history");
    done
}

/// A chat of 30 messages synced at 8 (the page loads 5, then pages of 10)
/// deepens to 25, exactly the chat's newest 25, then past its start to all
/// 30, each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdriver_deepens_one_chat_page_by_page() {
    require_browser();
    let fixture = WhatsAppFixture::start().await;
    let host = crate::webdriver::host_for(&fixture).await;
    let id = "wd-deep";
    let mut ws = log_in(&host, &fixture, id, 8, "sync_complete").await;
    assert_eq!(
        stored(&host, id, FAMILY).await,
        fixture.seed.expected_messages(FAMILY, 8)
    );

    let done = deepen(&host, &mut ws, id, json!({"limit": 25})).await;
    assert_eq!(done["totalMessagesSynced"], 17);
    assert_eq!(
        stored(&host, id, FAMILY).await,
        fixture.seed.expected_messages(FAMILY, 25)
    );
    let done = deepen(&host, &mut ws, id, json!({"limit": 1000})).await;
    assert_eq!(done["totalMessagesSynced"], 5, "the history starts there");
    assert_eq!(
        stored(&host, id, FAMILY).await,
        fixture.seed.expected_messages(FAMILY, 1000)
    );
    let (_, chats) = host.get(&format!("/whatsapp-web/session/{id}/chats")).await;
    let family = chats["chats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == FAMILY)
        .unwrap()
        .clone();
    assert_eq!(family["messageCount"], 30, "{family}");
    assert!(
        fixture
            .reports()
            .iter()
            .any(|r| r.get("loadEarlierMsgs").is_some()),
        "the page loaded earlier messages"
    );

    let (status, _) = host.delete(&format!("/whatsapp-web/session/{id}")).await;
    assert_eq!(status, 200);
    let dir = host.data_dir().to_path_buf();
    host.stop().await;
    assert_no_processes_left(&dir).await;
}
