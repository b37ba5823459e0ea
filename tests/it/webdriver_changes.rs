//! Changes after the sync through the webdriver provider: the fixture page
//! edits, deletes for everyone, acks and reacts to a synced message the way
//! WhatsApp Web's models do, the bridge reports them, and the store and the
//! room follow.

use serde_json::Value;
use wasync::domain::{Message, SessionId};
use wasync::storage::Store;
use wasync_tests::whatsapp_fixture::WhatsAppFixture;

use crate::webdriver::{LONG, is, log_in, require_browser, wait_for};

/// The stored message `id`.
async fn stored(store: &dyn Store, sid: &SessionId, id: &str) -> Message {
    store.get_message(sid, id).await.unwrap().unwrap().message
}

fn updated(kind: &'static str, id: String) -> impl Fn(&Value) -> bool {
    move |e| {
        e["event"] == "message_updated"
            && e["data"]["messageId"] == id.as_str()
            && e["data"]["change"]["kind"] == kind
    }
}

#[tokio::test]
async fn webdriver_edits_revokes_acks_and_reactions_reach_the_store() {
    require_browser();
    let fixture = WhatsAppFixture::start().await;
    let host = crate::webdriver::host_for(&fixture).await;
    let id = "wd-changes";
    let mut ws = log_in(&host, &fixture, id, 20, "sync_complete").await;
    let ana = "4915100000001@c.us";
    let synced = fixture.seed.expected_messages(ana, 20);
    let (a, b) = (&synced[synced.len() - 1], &synced[synced.len() - 2]);
    let sid = SessionId::parse(id).unwrap();
    let store = host.app().store();
    let at = wasync::domain::now_ms();

    // An edit: the new text and its time.
    fixture.edit(&a.id, "edited on the phone", at).await;
    let evs = wait_for(&mut ws, 30, "edit", updated("edit", a.id.clone())).await;
    let change = &evs.last().unwrap()["data"]["change"];
    assert_eq!(change["body"], "edited on the phone");
    assert_eq!(change["at"], at);
    let m = stored(&*store, &sid, &a.id).await;
    assert_eq!(m.body.as_deref(), Some("edited on the phone"));
    assert_eq!(m.changes.edited_at, Some(at));

    // A reaction, then an ack.
    fixture
        .react(&a.id, "4915199999999@c.us", "👍", at + 1)
        .await;
    wait_for(&mut ws, 30, "reaction", updated("reaction", a.id.clone())).await;
    fixture.ack(&a.id, 3).await;
    wait_for(&mut ws, 30, "ack", updated("ack", a.id.clone())).await;
    let m = stored(&*store, &sid, &a.id).await;
    assert_eq!(m.changes.reactions.len(), 1, "{m:?}");
    assert_eq!(m.changes.reactions[0].emoji, "👍");
    assert_eq!(m.ack, 3);
    assert!(m.changes.ack_at.is_some());

    // Deleted for everyone: the record stays, the body goes (and the body
    // clearing that follows is no edit).
    fixture.revoke(&b.id).await;
    wait_for(&mut ws, 30, "revoke", updated("revoke", b.id.clone())).await;
    let m = stored(&*store, &sid, &b.id).await;
    assert!(m.changes.revoked && m.changes.revoked_at.is_some(), "{m:?}");
    assert_eq!(m.body, None);
    assert_eq!(m.changes.edited_at, None, "a revoke is no edit");

    // A full re-sync reads the page again: the changes stay.
    let (status, _) = host
        .post(
            &format!("/whatsapp-web/session/{id}/sync-chats"),
            serde_json::json!({"limitPerChat": 20}),
        )
        .await;
    assert_eq!(status, 202);
    wait_for(&mut ws, LONG, "sync_complete", is("sync_complete")).await;
    let m = stored(&*store, &sid, &a.id).await;
    assert_eq!(m.body.as_deref(), Some("edited on the phone"));
    assert_eq!(m.changes.reactions.len(), 1);
    let m = stored(&*store, &sid, &b.id).await;
    assert!(m.changes.revoked && m.body.is_none());
    host.delete(&format!("/whatsapp-web/session/{id}")).await;
}
