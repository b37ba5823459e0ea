//! Changes after the sync end to end, on both stores: the simulated
//! account edits, deletes, acks and reacts to messages it synced (two edits
//! of one message out of order, and a reaction and an edit that come before
//! their message among them); the store holds exactly what the phone shows,
//! the room gets `message_updated`, the REST listing shows the fields, and
//! a re-sync keeps them.

use std::time::Duration;

use serde_json::{Value, json};
use wasync::browser::simulator::changes::Step;
use wasync::browser::simulator::{Account, SimulatorConfig};
use wasync::config::{AMQP_PUBLISH_UPDATES, MONGODB_DB, MONGODB_URI};
use wasync::domain::{Message, SessionId, StoredMessage};
use wasync_tests::mongo::{fresh_db_name, test_mongodb_uri};
use wasync_tests::{HostOptions, TestHost, WsClient, assert_eventually, fast_tuning};

fn sim(changes: Value) -> Value {
    json!({
        "chats": 3, "messagesPerChat": [6, 4, 5], "qrEveryMs": 40, "scanAfterMs": 100,
        "fetchLatencyMs": 0, "changes": changes,
    })
}

fn every_kind() -> Value {
    json!({"edits": 2, "revokes": 2, "acks": 2, "reactions": 3, "unreactions": 1,
        "outOfOrder": true, "beforeMessage": true, "afterMs": 1500, "everyMs": 15})
}

fn account(sim: &Value) -> Account {
    Account::new(SimulatorConfig::from_options(&json!({ "simulator": sim })).unwrap())
}

async fn listing(host: &TestHost, id: &str, chat: &str) -> Vec<Message> {
    let (status, page) = host
        .get(&format!(
            "/whatsapp-web/session/{id}/chats/{chat}/messages?limit=100"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let stored: Vec<StoredMessage> = serde_json::from_value(page["messages"].clone()).unwrap();
    let mut v: Vec<Message> = stored.into_iter().map(|m| m.message).collect();
    v.reverse();
    v
}

/// The stored chats equal the simulated account after all its changes
/// (the message the changes came before included).
async fn assert_store_is_the_phone(host: &TestHost, id: &str, acc: &Account) {
    let early = {
        let mut m = acc.early_message();
        for step in acc.change_plan() {
            if let Step::Change(u) = step
                && u.message_id == m.id
            {
                m.apply_change(&u.change, false);
            }
        }
        m
    };
    for i in 0..3 {
        let chat = acc.chat(i);
        let mut want = acc.changed(i, 100);
        if i == 0 {
            want.push(early.clone());
        }
        let got = listing(host, id, &chat.id).await;
        assert_eq!(got, want, "chat {i} of {id}");
    }
}

/// Events until the early message arrived (the plan's last step).
async fn until_early_message(ws: &mut WsClient, early: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = ws
            .try_recv(left)
            .await
            .expect("the early message within 30 s");
        let done = ev["event"] == "message" && ev["data"]["id"] == early;
        seen.push(ev);
        if done {
            return seen;
        }
    }
}

async fn changes_end_to_end(host: &TestHost, id: &str) {
    let shape = sim(every_kind());
    let acc = account(&shape);
    let early = acc.early_message();
    let mut ws = host.ws().await;
    host.create_sim(id, shape.clone()).await;
    ws.join(id).await;
    let events = until_early_message(&mut ws, &early.id).await;

    // The early message arrives with what came before it.
    let arrived = events.last().unwrap();
    assert_eq!(arrived["data"]["body"], "edited before it arrived");
    assert_eq!(arrived["data"]["reactions"][0]["emoji"], "👀");

    // Every `message_updated` is a planned change; the older edit of the
    // out-of-order pair changes nothing, so it is never announced.
    let updates: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "message_updated")
        .collect();
    let plan: Vec<Value> = acc
        .change_plan()
        .into_iter()
        .filter_map(|s| match s {
            Step::Change(u) => Some(serde_json::to_value(u).unwrap()),
            Step::Message(_) => None,
        })
        .collect();
    for u in &updates {
        let d = &u["data"];
        assert_eq!(d["sessionId"], id);
        let as_planned =
            json!({"chatId": d["chatId"], "messageId": d["messageId"], "change": d["change"]});
        assert!(plan.contains(&as_planned), "unplanned {u}");
        assert_ne!(d["change"]["body"], "out of order: older", "{u}");
    }
    let synced_first = events.iter().position(|e| e["event"] == "sync_complete")
        < events.iter().position(|e| e["event"] == "message_updated");
    if synced_first {
        // Every planned change but the stale edit and the two that came
        // before their message.
        assert_eq!(updates.len(), plan.len() - 3, "{updates:#?}");
    }
    assert_store_is_the_phone(host, id, &acc).await;

    // The wire shape: a revoked message keeps its record, not its body.
    let chat0 = acc.chat(0);
    let (_, page) = host
        .get(&format!(
            "/whatsapp-web/session/{id}/chats/{}/messages?limit=100",
            chat0.id
        ))
        .await;
    let msgs = page["messages"].as_array().unwrap();
    let revoked: Vec<&Value> = msgs.iter().filter(|m| m["revoked"] == true).collect();
    assert!(!revoked.is_empty(), "{page}");
    for m in &revoked {
        assert!(m["body"].is_null() && m["revokedAt"].is_i64(), "{m}");
    }
    let edited = msgs
        .iter()
        .find(|m| !m["editedAt"].is_null())
        .expect("an edit");
    assert!(
        edited["body"].as_str().unwrap().starts_with("edited"),
        "{edited}"
    );

    // A full re-sync reads the phone again: the store stays the same.
    let (status, _) = host
        .post(
            &format!("/whatsapp-web/session/{id}/sync-chats"),
            json!({"mode": "full"}),
        )
        .await;
    assert_eq!(status, 202);
    ws.until("sync_complete").await;
    assert_store_is_the_phone(host, id, &acc).await;
}

#[tokio::test]
async fn simulated_changes_stay_true_after_the_sync_embedded() {
    let host = TestHost::spawn().await;
    changes_end_to_end(&host, "changes-emb").await;
}

#[tokio::test]
async fn simulated_changes_stay_true_after_the_sync_mongo() {
    let host = TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(MONGODB_URI, test_mongodb_uri())
        .var(MONGODB_DB, fresh_db_name("changes")),
    )
    .await;
    changes_end_to_end(&host, "changes-mongo").await;
}

/// `keepRevokedBodies` keeps a deleted message's text; a bad value is a
/// 400 naming it. With `AMQP_PUBLISH_UPDATES` each applied change is
/// queued as `message_updated` in the outbox.
#[tokio::test]
async fn kept_revoked_bodies_and_published_updates() {
    let host = TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(AMQP_PUBLISH_UPDATES, "true"),
    )
    .await;
    let (status, body) = host
        .post(
            "/whatsapp-web/session/keep-bad",
            json!({"provider": "simulator", "keepRevokedBodies": "yes"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("keepRevokedBodies"),
        "{body}"
    );

    let shape = sim(json!({"revokes": 2, "afterMs": 300, "everyMs": 10}));
    let acc = account(&shape);
    let (status, body) = host
        .post(
            "/whatsapp-web/session/keep",
            json!({"provider": "simulator", "simulator": shape, "keepRevokedBodies": true}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let sid = SessionId::parse("keep").unwrap();
    let store = host.app().store();
    let plan = acc.change_plan();
    assert_eq!(plan.len(), 2);
    for step in &plan {
        let Step::Change(u) = step else { panic!() };
        let original = (0..3)
            .flat_map(|i| acc.newest(i, 100))
            .find(|m| m.id == u.message_id)
            .unwrap();
        assert_eventually!(
            store
                .get_message(&sid, &u.message_id)
                .await
                .unwrap()
                .is_some_and(|m| m.message.changes.revoked),
            30
        );
        let m = store
            .get_message(&sid, &u.message_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.message.body, original.body, "the body is kept");
    }
    assert_eventually!(
        store
            .session_events(&sid)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.pattern == "message_updated")
            .count()
            == 2,
        30
    );
    let ev = store
        .session_events(&sid)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.pattern == "message_updated")
        .unwrap();
    assert_eq!(ev.data["sessionId"], "keep");
    assert_eq!(ev.data["change"]["kind"], "revoke");
    assert!(ev.data["messageId"].is_string() && ev.data["chatId"].is_string());
}

/// Plugins see edited text as they see a new message: a transformer's
/// `replace` applies to the new body, and a fail-closed plugin that fails
/// on it quarantines the edit (the stored body stays as it was).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_run_on_edited_bodies() {
    let dir = wasync_tests::plugins::PluginDir::new()
        .with_edited("fixture-append", |m| {
            m.replace("rules = []", r##"rules = ["#0 [appended]"]"##)
        })
        .with_edited("fixture-trap", |m| {
            format!("{m}\n[limits]\nmax_failures = 1000\n\n[config]\nwhen-body-contains = \"#1\"\n")
        });
    let host = wasync_tests::plugins::host_with(&dir).await;
    let shape = sim(json!({"edits": 2, "afterMs": 300, "everyMs": 10}));
    let acc = account(&shape);
    host.create_sim("plug-edits", shape).await;
    let sid = SessionId::parse("plug-edits").unwrap();
    let store = host.app().store();
    let plan = acc.change_plan();
    let ids: Vec<String> = plan
        .iter()
        .map(|s| match s {
            Step::Change(u) => u.message_id.clone(),
            Step::Message(_) => unreachable!(),
        })
        .collect();
    // Edit #0: replaced by the transformer, as a new message would be.
    assert_eventually!(
        store
            .get_message(&sid, &ids[0])
            .await
            .unwrap()
            .is_some_and(|m| m.message.changes.edited_at.is_some()),
        30
    );
    let first = store.get_message(&sid, &ids[0]).await.unwrap().unwrap();
    assert_eq!(first.message.body.as_deref(), Some("edited #0 [appended]"));
    // Edit #1: quarantined, never stored.
    assert_eventually!(
        store
            .list_quarantine(&sid)
            .await
            .unwrap()
            .iter()
            .any(|q| q.message.id == ids[1]),
        30
    );
    let q = store.list_quarantine(&sid).await.unwrap();
    let q = q.iter().find(|q| q.message.id == ids[1]).unwrap();
    assert_eq!(q.message.body.as_deref(), Some("edited #1"));
    let second = store.get_message(&sid, &ids[1]).await.unwrap().unwrap();
    let original = (0..3)
        .flat_map(|i| acc.newest(i, 100))
        .find(|m| m.id == ids[1])
        .unwrap();
    assert_eq!(second.message.body, original.body, "the stored body stays");
    assert_eq!(second.message.changes.edited_at, None);
    host.stop().await;
}

/// Changes that come while the store is down wait in the session's spool
/// and are applied, in place, once it is back.
#[tokio::test]
async fn changes_during_a_store_outage_are_applied_when_it_is_back() {
    let mut server = wasync_tests::mongo::MongoServer::start().await;
    let uri = format!(
        "{}/?serverSelectionTimeoutMS=1000",
        server.uri().trim_end_matches('/')
    );
    let host = TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(MONGODB_URI, uri)
        .var(MONGODB_DB, fresh_db_name("changespool")),
    )
    .await;
    let shape = sim(json!({"edits": 3, "revokes": 1, "acks": 1, "reactions": 2,
        "afterMs": 1500, "everyMs": 200}));
    let acc = account(&shape);
    let mut ws = host.ws().await;
    host.create_sim("spooled", shape).await;
    ws.join("spooled").await;
    ws.until("sync_complete").await;
    server.stop().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    server.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let mut same = true;
        for i in 0..3 {
            let (status, page) = host
                .get(&format!(
                    "/whatsapp-web/session/spooled/chats/{}/messages?limit=100",
                    acc.chat(i).id
                ))
                .await;
            let got: Vec<Message> = if status == 200 {
                let stored: Vec<StoredMessage> =
                    serde_json::from_value(page["messages"].clone()).unwrap();
                stored.into_iter().rev().map(|m| m.message).collect()
            } else {
                Vec::new()
            };
            same &= got == acc.changed(i, 100);
        }
        if same {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the spooled changes did not reach the store"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let spooled = host
        .metric("wasync_live_messages_spooled_total")
        .await
        .unwrap_or(0.0);
    assert!(spooled >= 1.0, "spooled {spooled}");
    host.stop().await;
}
